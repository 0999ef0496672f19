// Probe: how much a process at the lowest CPU priority (SCHED_IDLE) costs the p99 of a
// fixed-rate load, by the share of time it runs: none, then the same work in bursts of
// SLICE_MS * share followed by a pause of SLICE_MS * (1 - share), for each share in
// SHARES, rounds rotated. WORK=mem (JSON of a 2,000-object array, cache-hungry like the
// batch) or cpu (a counter). RATE (2000), SECONDS (20), ROUNDS (3), SHARES ("1,0.5,0.25"), SLICE_MS (20).
import { spawn } from 'node:child_process';
import { rmSync } from 'node:fs';
import { startLoadedCluster, measure } from '../../dist/loadtest/bench-lib.js';
const rate = Number(process.env.RATE ?? 2000);
const seconds = Number(process.env.SECONDS ?? 20);
const sliceMs = Number(process.env.SLICE_MS ?? 20);
const shares = (process.env.SHARES ?? '1,0.5,0.25').split(',').map(Number);
const work = process.env.WORK ?? 'mem';
const spinner = (share) => {
  const on = Math.max(1, Math.round(sliceMs * share));
  const off = Math.round(sliceMs * (1 - share));
  const step = work === 'mem' ? 'sink += JSON.stringify(data).length' : 'sink++';
  const script = `const end = Date.now() + ${(seconds + 5) * 1000}; let sink = 0;
    const data = Array.from({ length: 2000 }, (_, i) => ({ i, name: 'entry-' + i, amount: i * 7 }));
    const burst = () => { const until = Date.now() + ${on}; while (Date.now() < until) { ${step}; }
      if (Date.now() > end) process.exit(0); if (${off} === 0) setImmediate(burst); else setTimeout(burst, ${off}); };
    burst();`;
  return spawn('chrt', ['--idle', '0', process.execPath, '-e', script], { stdio: 'ignore' });
};
const loaded = await startLoadedCluster(100000, 4, 42, true);
const opts = { connections: 64, durationSeconds: 4, rounds: 1, rateDurationSeconds: seconds, seed: 42, json: true };
const kinds = ['none', ...shares.map(String)];
const results = Object.fromEntries(kinds.map((kind) => [kind, []]));
try {
  await measure(loaded.target, loaded.cards, opts, 0, 'rate', rate);
  let round = 1;
  for (let i = 0; i < Number(process.env.ROUNDS ?? 3); i++) {
    const order = kinds.map((_, k) => kinds[(k + i) % kinds.length]);
    for (const kind of order) {
      const child = kind === 'none' ? null : spinner(Number(kind));
      try {
        const { phase } = await measure(loaded.target, loaded.cards, opts, round++, 'rate', rate);
        results[kind].push(phase.totals.latencyMs.p99);
        console.log(`${kind.padEnd(5)} p50 ${phase.totals.latencyMs.p50} p99 ${phase.totals.latencyMs.p99} max ${phase.totals.latencyMs.max}`);
      } finally {
        child?.kill('SIGKILL');
      }
    }
  }
} finally {
  await loaded.cluster.close();
  rmSync(loaded.root, { recursive: true, force: true });
}
const med = (a) => [...a].sort((x, y) => x - y)[Math.floor(a.length / 2)];
const base = med(results.none);
console.log(JSON.stringify({ work, sliceMs, rate, seconds, medianP99: Object.fromEntries(kinds.map((k) => [k, med(results[k])])), ratio: Object.fromEntries(kinds.map((k) => [k, Math.round((med(results[k]) / base) * 1000) / 1000])) }));
