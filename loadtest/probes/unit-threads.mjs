// Probe: where the units' and the gateway's CPU goes at saturation, by thread. A
// 100,000-account cluster (4 units) under the benchmark's closed loop (512 connections,
// ROUNDS of SECONDS each after a warm-up): per unit operation, the user and system CPU
// of the units' main threads and of their other threads together, and the gateway's;
// and the operations per unit batch (the gateway's histogram). PERF=1 also records the
// first unit with `perf record -g` for 9 s into /tmp/unit.perf (run with
// DSU_BENCH_NODE_ARGS=--perf-basic-prof for JavaScript names; delete isolate-*.log after).
import { spawn } from 'node:child_process';
import { readFileSync, readdirSync, rmSync } from 'node:fs';
import { request } from 'undici';
import { startLoadedCluster, measure } from '../../dist/loadtest/bench-lib.js';

const rounds = Number(process.env.ROUNDS ?? 2);
const seconds = Number(process.env.SECONDS ?? 10);
const loaded = await startLoadedCluster(100000, 4, 42, true);
// Clock ticks (user, system) of each thread of a process: its main thread, and the others together.
const ticks = (pid) => {
  const out = { main: [0, 0], other: [0, 0] };
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    const stat = readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const into = out[tid === String(pid) ? 'main' : 'other'];
    into[0] += Number(fields[11]);
    into[1] += Number(fields[12]);
  }
  return out;
};
const sum = (pids) => pids.map(ticks).reduce((a, b) => ({ main: [a.main[0] + b.main[0], a.main[1] + b.main[1]], other: [a.other[0] + b.other[0], a.other[1] + b.other[1]] }));
const unitPids = [...loaded.cluster.units.values()].map((unit) => unit.child.pid);
const gatewayPid = loaded.cluster.gateway.child.pid;
const batches = async () => {
  const text = await (await request(`${loaded.cluster.gatewayUrl}/metrics`)).body.text();
  let ops = 0;
  let count = 0;
  for (const line of text.split('\n')) {
    if (line.startsWith('dsu_gateway_unit_batch_operations_sum')) ops += Number(line.split(' ').pop());
    if (line.startsWith('dsu_gateway_unit_batch_operations_count')) count += Number(line.split(' ').pop());
  }
  return { ops, count };
};
const options = { connections: 512, durationSeconds: seconds, rounds: 1, rateDurationSeconds: seconds, seed: 42, json: true };
await measure(loaded.target, loaded.cards, options, 0, 'closed');
let perf = null;
if (process.env.PERF === '1') {
  const recorder = spawn('perf', ['record', '-F', '999', '-g', '-o', '/tmp/unit.perf', '-p', String(unitPids[0]), '--', 'sleep', '9'], { stdio: 'inherit' });
  perf = new Promise((resolve) => recorder.on('exit', resolve));
}
// Ticks per operation in microseconds (100 ticks a second); a thread that ended between two readings takes its ticks with it, hence the floor at 0.
const us = (ticksDelta, ops) => ((Math.max(0, ticksDelta) * 10_000) / ops).toFixed(1);
try {
  for (let round = 1; round <= rounds; round++) {
    const [unitsBefore, gatewayBefore, batchesBefore] = [sum(unitPids), ticks(gatewayPid), await batches()];
    const { phase } = await measure(loaded.target, loaded.cards, options, round, 'closed');
    const [unitsAfter, gatewayAfter, batchesAfter] = [sum(unitPids), ticks(gatewayPid), await batches()];
    const ops = batchesAfter.ops - batchesBefore.ops;
    const line = (name, before, after) => `${name} user ${us(after[0] - before[0], ops)} system ${us(after[1] - before[1], ops)}`;
    console.log(`round ${round}: ${phase.totals.throughputOverall}/s, ${ops} unit operations in ${batchesAfter.count - batchesBefore.count} batches `
      + `(${(ops / (batchesAfter.count - batchesBefore.count)).toFixed(1)} per batch); CPU us per operation:`);
    console.log(`  units: ${line('main threads', unitsBefore.main, unitsAfter.main)}; ${line('other threads', unitsBefore.other, unitsAfter.other)}`);
    console.log(`  gateway: ${line('main thread', gatewayBefore.main, gatewayAfter.main)}; ${line('other threads', gatewayBefore.other, gatewayAfter.other)}`);
  }
  if (perf !== null) await perf;
} finally {
  await loaded.cluster.close();
  rmSync(loaded.root, { recursive: true, force: true });
}
