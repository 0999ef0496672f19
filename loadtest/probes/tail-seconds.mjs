// Probe: per-second p99/max, raw (from the write) vs corrected p99, per unit and per kind, of fixed-rate runs,
// beside a real-time canary process that only sleeps 1 ms at a time and records how late it wakes (the machine's own
// stalls, which no process of ours causes). RATE (5000), SECONDS (15), RUNS (2), GATEWAY_NICE (unset)
import { spawn, spawnSync } from 'node:child_process';
import { monitorEventLoopDelay, PerformanceObserver } from 'node:perf_hooks';
import { request } from 'undici';
import { rmSync } from 'node:fs';
import { startLoadedCluster, measure } from '../../dist/loadtest/bench-lib.js';
const rate = Number(process.env.RATE ?? 5000);
const loaded = await startLoadedCluster(100000, 4, 42, true);
// GATEWAY_NICE: the gateway's main thread at that nice value (root), the units and this process at 0.
if (process.env.GATEWAY_NICE !== undefined) spawnSync('renice', ['-n', process.env.GATEWAY_NICE, '-p', String(loaded.target.pids.gateway)], { stdio: 'inherit' });
const opts = { connections: 512, durationSeconds: 4, rounds: 1, rateDurationSeconds: Number(process.env.SECONDS ?? 15), seed: 42, json: true };
// The canary prints, once a second, the wall-clock second and its worst wake-up lateness in ms.
const canarySource = `let worst = 0, second = Math.floor(Date.now() / 1000), due = performance.now() + 1;
const tick = () => { const now = performance.now(); worst = Math.max(worst, now - due); const s = Math.floor(Date.now() / 1000);
  if (s !== second) { process.stdout.write(second + ' ' + worst.toFixed(1) + '\\n'); worst = 0; second = s; } due = now + 1; setTimeout(tick, 1); };
setTimeout(tick, 1);`;
// At a real-time priority (chrt -f 50, root), so that no process of ours can delay it: a late wake-up is the VM's.
const canary = spawn('chrt', ['-f', '50', process.execPath, '-e', canarySource], { stdio: ['ignore', 'pipe', 'inherit'] });
const lateBySecond = new Map();
let pending = '';
canary.stdout.on('data', (chunk) => { pending += chunk; const lines = pending.split('\n'); pending = lines.pop(); for (const line of lines) { const [s, ms] = line.split(' '); lateBySecond.set(Number(s), Number(ms)); } });
// Each process's own pauses: the event loop's longest delay and the GC pauses by kind, from the
// default metrics of the gateway and the units (prom-client resets the loop-delay figures at each
// scrape), and from perf_hooks for this process (the load generator).
const processes = [['gateway', loaded.cluster.gatewayUrl], ...loaded.cluster.topology.units.map((unit) => [unit.id, unit.url])];
const scrape = async () => Object.fromEntries(await Promise.all(processes.map(async ([name, url]) => {
  const text = await (await request(url + '/metrics')).body.text();
  const value = (suffix, ...labels) => { const line = text.split('\n').find((l) => l.includes(`nodejs_${suffix}`) && labels.every((label) => l.includes(label)) && !l.startsWith('#')); return line === undefined ? 0 : Number(line.split(' ').pop()); };
  const gc = {};
  for (const kind of ['minor', 'major', 'incremental']) gc[kind] = { count: value('gc_duration_seconds_count', `kind="${kind}"`), over10ms: value('gc_duration_seconds_count', `kind="${kind}"`) - value('gc_duration_seconds_bucket', 'le="0.01"', `kind="${kind}"`), sum: value('gc_duration_seconds_sum', `kind="${kind}"`) };
  return [name, { lagMaxMs: value('eventloop_lag_max_seconds') * 1000, lagP99Ms: value('eventloop_lag_p99_seconds') * 1000, gc }];
})));
const loop = monitorEventLoopDelay({ resolution: 5 }); loop.enable();
const ownGc = [];
new PerformanceObserver((list) => { for (const e of list.getEntries()) ownGc.push(e.duration); }).observe({ entryTypes: ['gc'] });
const pauses = (before, after) => Object.entries(after).map(([name, a]) => {
  const b = before[name];
  const gc = ['minor', 'major', 'incremental'].map((k) => `${k} ${a.gc[k].count - b.gc[k].count} (${(1000 * (a.gc[k].sum - b.gc[k].sum)).toFixed(0)} ms, ${a.gc[k].over10ms - b.gc[k].over10ms} over 10 ms)`).join(', ');
  return `    ${name.padEnd(8)} loop delay max ${a.lagMaxMs.toFixed(0)} ms p99 ${a.lagP99Ms.toFixed(1)} ms; gc ${gc}`;
}).join('\n');
try {
  await measure(loaded.target, loaded.cards, opts, 0, 'closed');
  for (let i = 0; i < Number(process.env.RUNS ?? 2); i++) {
    const startSecond = Math.floor(Date.now() / 1000);
    const before = await scrape(); loop.reset(); ownGc.length = 0;
    const { phase, measured } = await measure(loaded.target, loaded.cards, opts, i + 1, 'rate', rate);
    const t = phase.totals;
    console.log(`run ${i + 1}: p50 ${t.latencyMs.p50} p99 ${t.latencyMs.p99} max ${t.latencyMs.max}; raw p99 ${t.latencyRawMs.p99}; cpu ms per request ${JSON.stringify(measured.cpuMsPerRequest)}`);
    console.log('  by second p99/max:', phase.seconds.map((s) => `${s.latencyMs.p99.toFixed(0)}/${s.latencyMs.max.toFixed(0)}`).join(' '));
    const late = [...lateBySecond.entries()].filter(([s]) => s >= startSecond).map(([, ms]) => ms.toFixed(0));
    console.log('  canary worst wake-up lateness per second (ms, from the run start):', late.join(' '));
    console.log('  by unit p99:', Object.entries(t.byUnit).map(([u, b]) => `${u} ${b.latencyMs.p99} (${b.requests})`).join(', '));
    console.log('  by kind p99:', Object.entries(t.byKind).map(([u, b]) => `${u} ${b.latencyMs.p99} (${b.requests})`).join(', '));
    const after = await scrape();
    console.log('  pauses per process:');
    console.log(pauses(before, after));
    ownGc.sort((x, y) => y - x);
    console.log(`    loadgen  loop delay max ${(loop.max / 1e6).toFixed(0)} ms p99 ${(loop.percentile(99) / 1e6).toFixed(1)} ms; gc ${ownGc.length} (${ownGc.reduce((x, y) => x + y, 0).toFixed(0)} ms, longest ${ownGc.slice(0, 3).map((d) => d.toFixed(0)).join(', ')} ms)`);
    lateBySecond.clear();
  }
} finally {
  canary.kill();
  await loaded.cluster.close();
  rmSync(loaded.root, { recursive: true, force: true });
}
