// Probe: client CPU per request of undici Pool.dispatch against a minimal raw HTTP/1.1 client, paced at 4,000/s
// against a node:http server that answers at once (why loadtest/raw-http.ts exists).
import { createServer } from 'node:http';
import net from 'node:net';
import { Pool } from 'undici';
import { fork } from 'node:child_process';
const mode = process.argv[2];
if (mode === 'server') {
  const s = createServer((req, res) => { req.on('data', () => {}); req.on('end', () => { const b = '{"approved":true,"responseCode":"00","unit":"dsu-1","version":"stable"}'; res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(b) }); res.end(b); }); });
  s.listen(0, '127.0.0.1', () => process.send(s.address().port));
} else {
  const child = fork(new URL(import.meta.url).pathname, ['server']);
  const port = await new Promise((r) => child.once('message', r));
  const rate = 4000, seconds = 5, conns = 64;
  const body = JSON.stringify({ card: { number: '6225880000000000', expiry: '2029-11', cvv: '123' }, amount: { value: 1000, currency: 'CNY' }, type: 'purchase', channel: 'pos', merchant: { id: 'm1', mcc: '5411', country: 'CN' } });
  let answered = 0; const c0 = process.cpuUsage(); const t0 = performance.now();
  let send;
  if (mode === 'undici') {
    const pool = new Pool(`http://127.0.0.1:${port}`, { connections: conns, pipelining: 1 });
    send = () => pool.dispatch({ method: 'POST', path: '/v1/authorizations', headers: { 'content-type': 'application/json', 'idempotency-key': 'k' + answered }, body }, {
      onRequestStart() {}, onResponseStart() {}, onResponseData() {}, onResponseEnd() { answered++; }, onResponseError(_, e) { console.error(e); } });
  } else {
    const free = [];
    const sockets = [];
    for (let i = 0; i < conns; i++) { const s = net.connect(port, '127.0.0.1'); s.setNoDelay(true); let buf = '';
      s.on('data', (chunk) => { // minimal: assume one full response per chunk
        const text = chunk.latin1Slice(0, chunk.length); const he = text.indexOf('\r\n\r\n'); const cl = /content-length: (\d+)/i.exec(text); const status = Number(text.slice(9, 12)); const bodyText = chunk.toString('utf8', he + 4); answered++; free.push(s); });
      free.push(s); sockets.push(s); }
    send = () => { const s = free.pop(); const b = Buffer.from(body); s.write(`POST /v1/authorizations HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\nidempotency-key: k${answered}\r\ncontent-length: ${b.length}\r\n\r\n` + body); };
  }
  await new Promise((r) => setTimeout(r, 300));
  const start = performance.now(); let k = 0; const due = rate * seconds;
  await new Promise((resolve) => { const tick = () => { const now = performance.now(); while (k < due && start + k * 1000 / rate <= now) { send(); k++; } if (k < due) setTimeout(tick, 1); else resolve(); }; tick(); });
  await new Promise((r) => setTimeout(r, 500));
  const c = process.cpuUsage(c0);
  console.log(mode, 'answered', answered, 'client cpu us/req', ((c.user + c.system) / answered).toFixed(1), 'user', (c.user / answered).toFixed(1), 'sys', (c.system / answered).toFixed(1));
  child.kill();
  process.exit(0);
}
