// Probe: per-second p99/max, raw (from the write) vs corrected p99, per unit and per kind, of fixed-rate runs. RATE (5000), SECONDS (15), RUNS (2)
import { rmSync } from 'node:fs';
import { startLoadedCluster, measure } from '../../dist/loadtest/bench-lib.js';
const rate = Number(process.env.RATE ?? 5000);
const loaded = await startLoadedCluster(100000, 4, 42, true);
const opts = { connections: 512, durationSeconds: 4, rounds: 1, rateDurationSeconds: Number(process.env.SECONDS ?? 15), seed: 42, json: true };
await measure(loaded.target, loaded.cards, opts, 0, 'closed');
for (let i = 0; i < Number(process.env.RUNS ?? 2); i++) {
  const { phase } = await measure(loaded.target, loaded.cards, opts, i + 1, 'rate', rate);
  const t = phase.totals;
  console.log(`run ${i + 1}: p50 ${t.latencyMs.p50} p99 ${t.latencyMs.p99} max ${t.latencyMs.max}; raw p99 ${t.latencyRawMs.p99}; corrections ${t.correctionSamples}`);
  console.log('  by second p99/max:', phase.seconds.map((s) => `${s.latencyMs.p99.toFixed(0)}/${s.latencyMs.max.toFixed(0)}`).join(' '));
  console.log('  by unit p99:', Object.entries(t.byUnit).map(([u, b]) => `${u} ${b.latencyMs.p99} (${b.requests})`).join(', '));
  console.log('  by kind p99:', Object.entries(t.byKind).map(([u, b]) => `${u} ${b.latencyMs.p99} (${b.requests})`).join(', '));
}
await loaded.cluster.close();
rmSync(loaded.root, { recursive: true, force: true });
