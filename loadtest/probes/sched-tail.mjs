// Probe: client p99 of a fixed-rate run with the cluster (and this load generator) under the
// default policy and under a real-time one, alternated. RATE (8000), SECONDS (15), PAIRS (3), POLICY ("-r 1").
import { execFileSync } from 'node:child_process';
import { rmSync } from 'node:fs';
import { startLoadedCluster, measure } from '../../dist/loadtest/bench-lib.js';
const rate = Number(process.env.RATE ?? 8000);
const policy = (process.env.POLICY ?? '-r 1').split(' ');
const loaded = await startLoadedCluster(100000, 4, 42, true);
const pids = [...Object.values(loaded.target.pids), process.pid];
const set = (args) => { for (const pid of pids) execFileSync('chrt', ['--all-tasks', '-p', ...args, String(pid)]); };
const opts = { connections: 512, durationSeconds: 4, rounds: 1, rateDurationSeconds: Number(process.env.SECONDS ?? 15), seed: 42, json: true };
await measure(loaded.target, loaded.cards, opts, 0, 'closed');
const results = { default: [], tuned: [] };
try {
  for (let i = 0; i < Number(process.env.PAIRS ?? 3); i++) {
    for (const kind of i % 2 === 0 ? ['default', 'tuned'] : ['tuned', 'default']) {
      if (kind === 'tuned') set(policy); else set(['-o', '0']);
      const { phase } = await measure(loaded.target, loaded.cards, opts, i * 2 + (kind === 'tuned' ? 1 : 2), 'rate', rate);
      const l = phase.totals.latencyMs;
      results[kind].push(l.p99);
      console.log(`${kind.padEnd(8)} p50 ${l.p50} p90 ${l.p90} p99 ${l.p99} p999 ${l.p999} max ${l.max}`);
    }
  }
} finally {
  set(['-o', '0']);
  await loaded.cluster.close();
  rmSync(loaded.root, { recursive: true, force: true });
}
const med = (a) => [...a].sort((x, y) => x - y)[Math.floor(a.length / 2)];
console.log(`median p99: default ${med(results.default)} tuned ${med(results.tuned)} (${policy.join(' ')})`);
