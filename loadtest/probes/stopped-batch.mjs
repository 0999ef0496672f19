// Probe: what the units do after the batch process is stopped. The question behind
// bench:batch's unclean "batch stopped" windows (a unit's main thread measured at
// ~29% of a core for more than 15 s after SIGSTOP, with no load).
// Writes a fixture of ACCOUNTS accounts over two days, runs end of day of the first
// (batch window), then runs a fixed-rate load of RATE/s beside end of day of today
// (the batch CLI: one thread, --idle, bounded pressure, as bench:batch runs it).
// Every second it prints each cluster process's CPU per thread. After STOP_AFTER
// seconds it stops the batch (SIGSTOP) and the load, samples for SETTLE seconds,
// and profiles the unit whose main thread is busiest for PROFILE_MS through its
// inspector (SIGUSR1), printing the functions with the most self time.
// Run: node --experimental-websocket loadtest/probes/stopped-batch.mjs
// env: ACCOUNTS (200000), RATE (2000), STOP_AFTER (60), SETTLE (20), PROFILE_MS (5000).
import { spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { Cluster, repoRoot } from '../../dist/deploy/cluster.js';
import { writeClusterFixtures } from '../../dist/batch/cluster-fixture.js';
import { issueCards, syntheticApplicants } from '../../dist/deploy/bulk-issuance.js';
import { runEndOfDay } from '../../dist/batch/end-of-day.js';
import { addDays } from '../../dist/batch/accounting-rules.js';
import { calendarOf } from '../../dist/domain/authorize-rules.js';
import { createWorkload, loadCards, runPhase } from '../../dist/loadtest/index.js';

const accounts = Number(process.env.ACCOUNTS ?? 200000);
const rate = Number(process.env.RATE ?? 2000);
const stopAfterSeconds = Number(process.env.STOP_AFTER ?? 60);
const settleSeconds = Number(process.env.SETTLE ?? 20);
const profileMs = Number(process.env.PROFILE_MS ?? 5000);
if (typeof WebSocket !== 'function') throw new Error('run with node --experimental-websocket');

/** CPU seconds per thread of a process: Map of "tid comm" to seconds. */
function threadCpu(pid) {
  const threads = new Map();
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    try {
      const stat = readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8');
      const comm = stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'));
      const fields = stat.slice(stat.lastIndexOf(') ') + 2).split(' ');
      threads.set(`${tid === String(pid) ? 'main' : tid} ${comm}`, (Number(fields[11]) + Number(fields[12])) / 100);
    } catch { /* the thread ended */ }
  }
  return threads;
}

/** Prints every thread that used more than 2% of a core since `before`; returns the new sample. */
function report(label, pids, before, seconds) {
  const now = new Map(pids.map(([name, pid]) => [name, threadCpu(pid)]));
  const busy = [];
  for (const [name] of pids) {
    for (const [thread, cpu] of now.get(name)) {
      const share = (cpu - (before.get(name)?.get(thread) ?? cpu)) / seconds;
      if (share > 0.02) busy.push(`${name}/${thread} ${(share * 100).toFixed(0)}%`);
    }
  }
  console.log(`${label}: ${busy.join(', ') || 'idle'}`);
  return now;
}

/** Profiles a node process for `ms` through its inspector; prints the top self time. */
async function profile(pid, ms) {
  process.kill(pid, 'SIGUSR1');
  let targets = null;
  for (let attempt = 0; attempt < 50 && targets === null; attempt++) {
    await sleep(100);
    try { targets = await (await fetch('http://127.0.0.1:9229/json/list')).json(); } catch { /* not listening yet */ }
  }
  const socket = new WebSocket(targets[0].webSocketDebuggerUrl);
  await new Promise((resolve, reject) => { socket.onopen = resolve; socket.onerror = reject; });
  let id = 0;
  const pending = new Map();
  socket.onmessage = (event) => {
    const message = JSON.parse(event.data);
    if (message.id !== undefined) pending.get(message.id)?.(message.result);
  };
  const call = (method, params = {}) => new Promise((resolve) => { id++; pending.set(id, resolve); socket.send(JSON.stringify({ id, method, params })); });
  await call('Profiler.enable');
  await call('Profiler.setSamplingInterval', { interval: 200 });
  await call('Profiler.start');
  await sleep(ms);
  const { profile: result } = await call('Profiler.stop');
  socket.close();
  const nodes = new Map(result.nodes.map((node) => [node.id, node]));
  const self = new Map();
  for (const sample of result.samples) {
    const frame = nodes.get(sample).callFrame;
    const key = `${frame.functionName || '(anonymous)'} ${frame.url.split('/').slice(-2).join('/')}:${frame.lineNumber + 1}`;
    self.set(key, (self.get(key) ?? 0) + 1);
  }
  const total = result.samples.length;
  console.log(`profile of pid ${pid}, ${ms} ms, ${total} samples:`);
  for (const [key, count] of [...self].sort((a, b) => b[1] - a[1]).slice(0, 25)) console.log(`  ${((count / total) * 100).toFixed(1).padStart(5)}%  ${key}`);
}

const root = mkdtempSync(join(tmpdir(), 'dsu-stopped-'));
const cluster = new Cluster({ root, units: 4 });
let batch = null;
try {
  const today = calendarOf(Date.now(), cluster.topology.businessDayUtcOffsetMinutes).day;
  const days = [addDays(today, -2), addDays(today, -1)];
  await writeClusterFixtures(cluster, accounts, days);
  await cluster.start();
  const batchRoot = join(root, 'batch');
  const base = { topology: cluster.topology, topologyPath: cluster.topologyPath, batchRoot, partitions: 8 };
  const first = await runEndOfDay({ ...base, date: days[1], threads: 2, pressure: 'full', niceness: 0 });
  console.log(`end of day ${days[1]} alone: ${first.seconds.toFixed(1)} s`);
  const cardsPath = join(root, 'cards.ndjson');
  await issueCards({ gatewayUrl: cluster.gatewayUrl, applicants: syntheticApplicants(20_000, 9), bands: cluster.topology.issuance.scoreBands, currency: 'CNY', cardsPath });
  const cards = await loadCards(cardsPath);
  const pids = [...[...cluster.units.entries()].map(([name, running]) => [name, running.child.pid]), ['gateway', cluster.gateway.child.pid]];
  const loadStop = new AbortController();
  const load = runPhase({
    url: cluster.gatewayUrl, workload: createWorkload({ cards, seed: 3, keyPrefix: `stopped-${Date.now()}` }), mode: 'rate', rate, connections: 64,
    durationSeconds: stopAfterSeconds + 600, name: 'beside-batch', signal: loadStop.signal,
  });
  batch = spawn(process.execPath, [join(repoRoot, 'dist/batch/cli.js'), 'eod', '--date', today, '--topology', cluster.topologyPath, '--batch-dir', batchRoot, '--threads', '1', '--idle', '--open-day', '--json'], { stdio: ['ignore', 'ignore', 'inherit'] });
  const batchExit = new Promise((resolve) => batch.on('exit', resolve));
  let sample = new Map(pids.map(([name, pid]) => [name, threadCpu(pid)]));
  for (let second = 1; second <= stopAfterSeconds; second++) {
    await sleep(1000);
    sample = report(`running ${second}s`, pids, sample, 1);
  }
  batch.kill('SIGSTOP');
  loadStop.abort();
  const phase = await load;
  console.log(`load beside the batch: p99 ${phase.totals.latencyMs.p99.toFixed(2)} ms; batch stopped, load stopped`);
  sample = new Map(pids.map(([name, pid]) => [name, threadCpu(pid)]));
  let profiled = false;
  for (let second = 1; second <= settleSeconds; second++) {
    const before = sample;
    await sleep(1000);
    sample = report(`stopped ${second}s`, pids, before, 1);
    if (!profiled) {
      // The unit whose main thread used the most in the last second.
      const busiest = pids.filter(([name]) => name !== 'gateway').map(([name, pid]) => {
        const key = [...sample.get(name).keys()].find((thread) => thread.startsWith('main'));
        return { pid, used: sample.get(name).get(key) - (before.get(name).get(key) ?? 0) };
      }).sort((a, b) => b.used - a.used)[0];
      if (busiest.used > 0.05) {
        profiled = true;
        await profile(busiest.pid, profileMs);
        sample = new Map(pids.map(([name, pid]) => [name, threadCpu(pid)]));
      }
    }
  }
  batch.kill('SIGCONT');
  batch.kill('SIGTERM');
  await batchExit;
} finally {
  if (batch !== null && batch.exitCode === null) batch.kill('SIGKILL');
  await cluster.close();
  rmSync(root, { recursive: true, force: true });
}
