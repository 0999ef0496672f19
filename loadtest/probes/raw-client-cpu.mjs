// Probe: the load generator's own HTTP client (loadtest/raw-http.ts) paced at RATE (8000)/s for
// SECONDS (8) over CONNECTIONS (64) against a node:http server in another process that answers at
// once: the client's CPU per request and its young-generation collections. CLIENT names another
// build of the client to compare (a path to a compiled raw-http.js placed in dist/loadtest/).
import { createServer } from 'node:http';
import { fork } from 'node:child_process';
import { constants, PerformanceObserver } from 'node:perf_hooks';
const mode = process.argv[2];
if (mode === 'server') {
  const answer = '{"authorizationId":"dsu-1~s0000000000000001","approved":true,"responseCode":"00","approvedAmount":{"value":1000,"currency":"CNY"},"availableCredit":{"value":99000,"currency":"CNY"},"unit":"dsu-1","version":"stable"}';
  const server = createServer((request, response) => { request.resume(); request.on('end', () => { response.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(answer) }); response.end(answer); }); });
  server.listen(0, '127.0.0.1', () => process.send(server.address().port));
} else {
  const { RawHttpClient } = await import(process.env.CLIENT ?? '../../dist/loadtest/raw-http.js');
  const child = fork(new URL(import.meta.url).pathname, ['server']);
  const port = await new Promise((resolve) => child.once('message', resolve));
  const rate = Number(process.env.RATE ?? 8000), seconds = Number(process.env.SECONDS ?? 8), connections = Number(process.env.CONNECTIONS ?? 64);
  const body = JSON.stringify({ card: { number: '6225880000000000', expiry: '2029-11', cvv: '123' }, amount: { value: 1000, currency: 'CNY' }, type: 'purchase', channel: 'pos', merchant: { id: 'm1', mcc: '5411', country: 'CN' } });
  const options = { origin: `http://127.0.0.1:${port}`, connections, timeoutMs: 5000, bodyBytesKeptMax: 64 * 1024, clock: () => performance.now() };
  const client = RawHttpClient.connected === undefined ? new RawHttpClient(options) : await RawHttpClient.connected(options);
  let answered = 0, bodyChars = 0, failed = 0;
  const exchange = { onWritten() {}, onAnswer(status, answerBody) { answered++; bodyChars += answerBody === null ? 0 : answerBody.toString('utf8').length; }, onFailure() { failed++; } };
  const headers = { 'content-type': 'application/json', 'idempotency-key': 'k' };
  // Warm up, then measure.
  for (const [phase, phaseSeconds] of [['warm-up', 2], ['measured', seconds]]) {
    let scavenges = 0, scavengeMs = 0;
    const observer = new PerformanceObserver((list) => { for (const entry of list.getEntries()) { if (entry.detail?.kind !== constants.NODE_PERFORMANCE_GC_MINOR) continue; scavenges++; scavengeMs += entry.duration; } });
    observer.observe({ entryTypes: ['gc'] });
    answered = 0; bodyChars = 0; failed = 0;
    const c0 = process.cpuUsage();
    const start = performance.now(); let k = 0; const due = rate * phaseSeconds;
    await new Promise((resolve) => { const tick = () => { const now = performance.now(); while (k < due && start + (k * 1000) / rate <= now) { client.request('POST', '/v1/authorizations', headers, body, exchange); k++; } if (k < due) setTimeout(tick, 1); else resolve(); }; tick(); });
    await new Promise((resolve) => setTimeout(resolve, 300));
    const cpu = process.cpuUsage(c0);
    observer.disconnect();
    if (phase === 'measured') console.log(`${process.env.CLIENT ?? 'current'}: answered ${answered} (failed ${failed}), client CPU ${((cpu.user + cpu.system) / answered).toFixed(1)} us per request (user ${(cpu.user / answered).toFixed(1)}, system ${(cpu.system / answered).toFixed(1)}), scavenges ${scavenges} (${scavengeMs.toFixed(0)} ms), body chars per answer ${(bodyChars / answered).toFixed(0)}`);
  }
  client.destroy();
  child.kill();
}
