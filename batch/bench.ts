import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { setTimeout as sleep } from 'node:timers/promises';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { Cluster, repoRoot } from '../deploy/cluster.js';
import { issueCards, syntheticApplicants } from '../deploy/bulk-issuance.js';
import { calendarOf } from '../domain/authorize-rules.js';
import { createWorkload, loadCards, runPhase } from '../loadtest/index.js';
import type { PhaseResult, SecondBucket } from '../loadtest/run-result.js';
import { PhaseCollector } from '../loadtest/phase-collector.js';
import { benchFailed, benchNodeArgs, cpuSeconds, machine, median, spinScript, wholeNumberOptions } from '../loadtest/bench-lib.js';
import { addDays } from './accounting-rules.js';
import { partitionsDefault, runEndOfDay, type EndOfDayResult } from './end-of-day.js';
import { latencyBySteps, unitsFinishedAtSeconds } from './timeline.js';
import { writeClusterFixtures } from './cluster-fixture.js';

// The batch benchmarks, in one run:
//   1. end of day over 4 units holding `accounts` accounts with 5 journal entries
//      each (an account.opened and four approvals over two days), measured alone:
//      accounts, entries, seconds, accountsPerSecond (target: 60 s or less), and
//      holdsCompared: the units whose open holds reconciliation compared;
//   2. isolation: a fixed-rate authorization load without a batch run (3 runs),
//      then with one for as long as the batch runs (end of day of the next date,
//      its own process, bounded and idle-scheduled; windows as long as the runs
//      without), each window followed by one with the batch process stopped
//      (SIGSTOP, then SIGCONT), then after it; p99RatioDuringBatch = p99 of every
//      request while the batch ran / p99 of every request while it was stopped, the
//      two interleaved over the same minutes (target: 1.25 or less);
//      p99RatioAgainstRunsBefore compares with the three runs before the batch
//      instead; the run after is reported as recovery. Beside
//      them, the same load next to a process that only spins at the lowest CPU
//      priority: p99RatioBesideIdleSpin is the floor the machine itself sets.
//      p99DuringBatchBySteps splits the load beside the batch by the step of the
//      batch that ran in each second (median and maximum of the per-second p99).

const help = `Usage: npm run bench:batch -- [options]

  --accounts N          accounts over 4 units (default 1000000)
  --threads N           worker threads of the measured end of day (default 2)
  --partitions N        partitions per unit (default ${partitionsDefault})
  --rate N              authorizations per second of the isolation load (default 2000)
  --load-seconds S      seconds of each isolation phase (default 20); the isolation runs
                        are 3 without a batch, interleaved with 3 beside a process that
                        spins at SCHED_IDLE (the machine's floor), then one for as long as
                        a batch run takes (at most 1,500 s of it, in windows of S seconds,
                        each followed by a window with the batch process stopped), then
                        one after it; the JSON splits the run beside the batch by the
                        batch's steps
  --skip-isolation      measure end of day only
  --keep                keep the data folder (stores, ledgers, cluster.log) and print its path
  --batch-dir DIR       put the ledger stores there (another disk, or /dev/shm to see what
                        the units' disk shares with the batch), default: beside the unit stores
  --json                print one JSON object
  --help                this text`;

/** What the benchmark was doing, for the message when it fails. */
let stage = 'starting';

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      accounts: { type: 'string', default: '1000000' }, threads: { type: 'string', default: '2' }, partitions: { type: 'string', default: String(partitionsDefault) },
      rate: { type: 'string', default: '2000' }, 'load-seconds': { type: 'string', default: '20' },
      'skip-isolation': { type: 'boolean', default: false }, keep: { type: 'boolean', default: false }, 'batch-dir': { type: 'string' }, json: { type: 'boolean', default: false }, help: { type: 'boolean', default: false },
    },
  });
  if (values.help === true) {
    process.stdout.write(help + '\n');
    return;
  }
  const numbers = wholeNumberOptions(values, {
    accounts: [1_000, 100_000_000], threads: [1, 64], partitions: [1, 256], rate: [1, 100_000], 'load-seconds': [1, 600],
  });
  const log = (text: string): void => { if (values.json !== true) process.stderr.write(text + '\n'); };
  const root = mkdtempSync(join(tmpdir(), 'dsu-bench-batch-'));
  let separateLedgers: string | null = null;
  const cluster = new Cluster({ root, units: 4, nodeArgs: benchNodeArgs() });
  try {
    const today = calendarOf(Date.now(), cluster.topology.businessDayUtcOffsetMinutes).day;
    const days = [addDays(today, -2), addDays(today, -1)];
    stage = 'writing the fixture';
    const fixtures = await writeClusterFixtures(cluster, numbers.accounts, days);
    const entries = fixtures.reduce((sum, f) => sum + f.journalEntries, 0);
    const accounts = fixtures.reduce((sum, f) => sum + f.accounts, 0);
    log(`fixture: ${accounts} accounts, ${entries} journal entries in ${Math.max(...fixtures.map((f) => f.seconds)).toFixed(1)} s`);
    stage = 'starting the cluster';
    await cluster.start();
    stage = 'the measured end of day';
    const batchRoot = values['batch-dir'] !== undefined ? mkdtempSync(join(values['batch-dir'], 'dsu-ledgers-')) : join(root, 'batch');
    separateLedgers = values['batch-dir'] !== undefined ? batchRoot : null;
    const base = { topology: cluster.topology, topologyPath: cluster.topologyPath, batchRoot, partitions: numbers.partitions };
    // Measured alone: the whole machine is the batch window's, postings at full pressure.
    const eod = await runEndOfDay({ ...base, date: days[1] as string, threads: numbers.threads, pressure: 'full', niceness: 0 });
    log(`end of day ${eod.date}: ${eod.seconds.toFixed(1)} s, ${eod.mismatches} mismatches`);
    const result: Record<string, unknown> = {
      accounts, entries, seconds: Math.round(eod.seconds * 10) / 10, accountsPerSecond: Math.round(accounts / eod.seconds),
      mismatches: eod.mismatches, taskSeconds: eod.taskSeconds, unitsFinishedAtSeconds: unitsFinishedAtSeconds(eod.timeline),
      threads: numbers.threads, partitions: numbers.partitions,
      ledgerEntries: eod.units.reduce((sum, unit) => sum + unit.ledger.entries, 0),
      // Whether reconciliation compared each unit's open holds with its journal (the
      // mismatches count them only then), and why not where it did not.
      holdsCompared: eod.units.filter((unit) => unit.holds !== null).length,
      holdsNotCompared: Object.fromEntries(eod.units.flatMap((unit) => (unit.holdsNotCompared === null ? [] : [[unit.unit, unit.holdsNotCompared]]))),
      machine: machine(),
    };
    stage = 'the isolation runs';
    if (values['skip-isolation'] !== true) Object.assign(result, await isolation(cluster, root, { ...base, date: today }, numbers.rate, numbers['load-seconds'], log));
    process.stdout.write(values.json === true ? JSON.stringify(result) + '\n' : `${JSON.stringify(result, null, 2)}\n`);
  } finally {
    await cluster.close();
    if (values.keep === true) process.stderr.write(`data kept in ${root}\n`);
    else rmSync(root, { recursive: true, force: true });
    if (separateLedgers !== null && values.keep !== true) rmSync(separateLedgers, { recursive: true, force: true });
  }
}

/** The load beside the batch run ends with it, or after the batch has run this long. */
const duringSecondsMax = 1_500;
/**
 * After the batch is stopped, the window without it waits until the units and the
 * gateway are idle (under idleCoreShare of one core over a sample, with no load
 * running), at least minMs and at most maxMs, so that the work the batch left them
 * (the request it had sent, a WAL its settlements grew) is not counted as "without".
 * clusterCpuPercent.batchStopped against withoutBatch shows whether they were. (Before
 * batch --idle stopped re-running itself under chrt, SIGSTOP reached only a wrapper
 * and the units were still busy after maxMs in 9 stops of 12, BENCHMARKS.md.)
 */
const stoppedSettle = { minMs: 2_000, maxMs: 15_000, sampleMs: 500, idleCoreShare: 0.1 };

async function isolation(cluster: Cluster, root: string, eodOptions: Omit<Parameters<typeof runEndOfDay>[0], 'threads'>, rate: number, seconds: number, log: (text: string) => void): Promise<Record<string, unknown>> {
  const cardsPath = join(root, 'cards.ndjson');
  await issueCards({ gatewayUrl: cluster.gatewayUrl, applicants: syntheticApplicants(20_000, 9), bands: cluster.topology.issuance.scoreBands, currency: 'CNY', cardsPath });
  const cards = await loadCards(cardsPath);
  /** Every latency of the runs given to it, in one histogram: the p99 of all their requests. */
  const merged = (): PhaseCollector => new PhaseCollector({ phase: 'merged', startMs: 0, startSecond: 0, correctionIntervalMs: null, durationSeconds: null });
  // The cluster's CPU (units and gateway) per kind of run: a stopped window that
  // used more of it than the runs before the batch would be the units still doing
  // work the batch left them (a WAL to checkpoint), counted as "without".
  const clusterPids = [...cluster.units.values(), cluster.gateway].flatMap((running) => (running?.child.pid === undefined ? [] : [running.child.pid]));
  const clusterCpuSeconds = (): number => clusterPids.reduce((sum, pid) => sum + cpuSeconds(pid), 0);
  const cpuUse: Record<'withoutBatch' | 'batchRunning' | 'batchStopped', { cpuSeconds: number; seconds: number }> = {
    withoutBatch: { cpuSeconds: 0, seconds: 0 }, batchRunning: { cpuSeconds: 0, seconds: 0 }, batchStopped: { cpuSeconds: 0, seconds: 0 },
  };
  const run = async (name: string, into: PhaseCollector | null, options: { signal?: AbortSignal; startSecond?: number; cpu?: keyof typeof cpuUse } = {}): Promise<PhaseResult> => {
    const { cpu, ...phaseOptions } = options;
    const cpuBefore = clusterCpuSeconds();
    const startedMs = performance.now();
    const phase = await runPhase({
      url: cluster.gatewayUrl, workload: createWorkload({ cards, seed: 3, keyPrefix: `iso-${name}-${Date.now()}` }), mode: 'rate', rate, connections: 64,
      durationSeconds: seconds, name, ...(into === null ? {} : { runCollector: into }), ...phaseOptions,
    });
    if (cpu !== undefined) {
      cpuUse[cpu].cpuSeconds += clusterCpuSeconds() - cpuBefore;
      cpuUse[cpu].seconds += (performance.now() - startedMs) / 1000;
    }
    log(`${name}: p99 ${phase.totals.latencyMs.p99.toFixed(2)} ms at ${rate}/s`);
    return phase;
  };
  await run('warm-up', null);
  // Without the batch and beside the idle spinner: three runs each, interleaved,
  // since one fixed-rate run's p99 on this machine varies by 2x from run to run.
  // The floor: the same load beside one process that only spins, at the lowest CPU
  // priority the kernel offers. No batch can disturb the load less than work that
  // the scheduler already ranks below everything else.
  const without = merged();
  const besideSpin = merged();
  const withoutRuns: number[] = [];
  const spinRuns: number[] = [];
  let spinPolicy = '';
  for (let round = 1; round <= 3; round++) {
    withoutRuns.push((await run(`without-batch-${round}`, without, { cpu: 'withoutBatch' })).totals.latencyMs.p99);
    const spin = spinAtIdlePriority(seconds + 5);
    spinRuns.push((await run(`beside-idle-spin-${round}`, besideSpin)).totals.latencyMs.p99);
    spin.stop();
    spinPolicy = spin.policy;
  }
  // The batch runs as the CLI would beside live traffic: its own process, one
  // niced thread, bounded posting pressure, under SCHED_IDLE (--idle).
  const started = performance.now();
  // The load runs for as long as the batch does (at most duringSecondsMax of the
  // batch running), in windows as long as the runs without it. After each window
  // the batch process is stopped (SIGSTOP) and, once the units have finished what
  // it had asked of them, the same load runs a window without it; then the batch
  // goes on (SIGCONT). So "with" and "without" are interleaved over the same
  // minutes: the three runs before the batch differ from each other by up to five
  // times on this machine (BENCHMARKS.md), more than any batch effect measured.
  const batchDone = new AbortController();
  // Today's end of day, beside today's live traffic: the day is still open (--open-day).
  const batch = runCli(['eod', '--date', eodOptions.date, '--topology', eodOptions.topologyPath, '--batch-dir', eodOptions.batchRoot, '--threads', '1', '--idle', '--open-day', '--json']);
  const batchRun = batch.result.finally(() => batchDone.abort());
  const duringStartMs = Date.now();
  const during = merged();
  const stopped = merged();
  const windows: number[] = [];
  const stoppedWindows: number[] = [];
  const buckets: SecondBucket[] = [];
  let stoppedMs = 0;
  const settleSeconds: number[] = [];
  const settleAfterStop = async (): Promise<number> => {
    const startedMs = performance.now();
    await sleep(stoppedSettle.minMs);
    for (;;) {
      const cpuBefore = clusterCpuSeconds();
      const sampleStartMs = performance.now();
      await sleep(stoppedSettle.sampleMs);
      const now = performance.now();
      const share = (clusterCpuSeconds() - cpuBefore) / ((now - sampleStartMs) / 1000);
      if (share < stoppedSettle.idleCoreShare || now - startedMs >= stoppedSettle.maxMs) return Math.round(now - startedMs) / 1000;
    }
  };
  try {
    for (let window = 1; !batchDone.signal.aborted && (Date.now() - duringStartMs - stoppedMs) / 1000 < duringSecondsMax; window++) {
      const startSecond = Math.round((Date.now() - duringStartMs) / 1000);
      const phase = await run(`during-batch-${window}`, during, { signal: batchDone.signal, startSecond, cpu: 'batchRunning' });
      buckets.push(...phase.seconds);
      // A window cut short by the batch's end is in the whole-batch figure, not in the windows'.
      if (phase.totals.elapsedMs < seconds * 900) break;
      windows.push(phase.totals.latencyMs.p99);
      if (batchDone.signal.aborted) break;
      const stopAtMs = Date.now();
      if (!batch.child.kill('SIGSTOP')) break;
      try {
        settleSeconds.push(await settleAfterStop());
        stoppedWindows.push((await run(`batch-stopped-${window}`, stopped, { cpu: 'batchStopped' })).totals.latencyMs.p99);
      } finally {
        batch.child.kill('SIGCONT');
        stoppedMs += Date.now() - stopAtMs;
      }
    }
  } finally {
    // Whatever failed above, the batch is not left stopped.
    batch.child.kill('SIGCONT');
  }
  const eod = await batchRun;
  const eodSeconds = (performance.now() - started - stoppedMs) / 1000;
  log(`end of day ${eodOptions.date} under load: ${eodSeconds.toFixed(1)} s running (1 thread, idle policy; stopped ${(stoppedMs / 1000).toFixed(0)} s more), ${eod.mismatches} mismatches`);
  // After the batch the units checkpoint the WAL its settlements grew; that run is
  // reported as recovery, not used as the baseline.
  const after = (await run('after-batch', null)).totals.latencyMs.p99;
  const withoutMs = without.finish(0).latencyMs.p99;
  const duringMs = during.finish(0).latencyMs.p99;
  const stoppedTotals = stopped.finish(0).latencyMs;
  const spinMs = besideSpin.finish(0).latencyMs.p99;
  const ms = (value: number): number => Math.round(value * 100) / 100;
  const ratio = (value: number): number => Math.round(value * 1000) / 1000;
  const pairs = stoppedWindows.map((stoppedP99, index) => (windows[index] as number) / stoppedP99);
  return {
    isolationRate: rate, isolationWindowSeconds: seconds,
    // Each p99 is that of every request of its runs together: during the whole batch
    // (all windows), in the windows with the batch stopped between them, without the
    // batch before it (3 runs), beside the idle spinner (3 runs).
    p99WithoutBatchMs: ms(withoutMs), p99DuringBatchMs: ms(duringMs), p99AfterBatchMs: ms(after),
    p99BatchStoppedMs: stoppedTotals.count === 0 ? null : ms(stoppedTotals.p99),
    // The target's ratio: the batch running against the batch stopped, interleaved
    // (null with no window stopped: a batch shorter than one window), and the median
    // of each window against the stopped window after it.
    p99RatioDuringBatch: stoppedTotals.count === 0 ? null : ratio(duringMs / stoppedTotals.p99),
    p99RatioDuringBatchPairs: pairs.length === 0 ? null : ratio(median(pairs)),
    // The whole batch against the three runs before it (how this was measured before stop 15).
    p99RatioAgainstRunsBefore: ratio(duringMs / withoutMs),
    p99BesideIdleSpinMs: ms(spinMs), p99RatioBesideIdleSpin: ratio(spinMs / withoutMs), idleSpinPolicy: spinPolicy,
    // Percent of one core that the units and the gateway used, by kind of run.
    clusterCpuPercent: Object.fromEntries(Object.entries(cpuUse).map(([kind, use]) => [kind, use.seconds === 0 ? null : Math.round((use.cpuSeconds / use.seconds) * 1000) / 10])),
    // Per run and per window, and the ratios as measured before (the whole batch's
    // p99 against the runs before it: their median run, the windows' median).
    p99WithoutBatchRunsMs: withoutRuns, p99BesideIdleSpinRunsMs: spinRuns, p99DuringBatchWindowsMs: windows,
    p99BatchStoppedWindowsMs: stoppedWindows,
    // How long the units took to go idle after each stop (stoppedSettle.maxMs: they did not).
    stoppedSettleSeconds: settleSeconds,
    p99RatioDuringBatchMedianWindows: ratio(median(windows) / median(withoutRuns)),
    p99RatioDuringBatchAgainstMedianRun: ratio(duringMs / median(withoutRuns)),
    isolationBatchSeconds: Math.round(eodSeconds * 10) / 10,
    isolationBatchMismatches: eod.mismatches, batchOutlastedLoad: eodSeconds >= duringSecondsMax,
    // Which step of the batch costs the load what: each second's p99, by the task that ran then.
    p99DuringBatchBySteps: latencyBySteps(buckets, duringStartMs, eod.timeline),
  };
}

/**
 * One process that spins for at most `seconds` (it stops by itself even if the
 * benchmark dies) under SCHED_IDLE (chrt --idle), or at nice 19 where chrt is missing.
 */
function spinAtIdlePriority(seconds: number): { stop: () => void; readonly policy: string } {
  const loop = spinScript(seconds);
  const state = { child: spawn('chrt', ['--idle', '0', process.execPath, '-e', loop], { stdio: 'ignore' }), policy: 'SCHED_IDLE' };
  state.child.on('error', () => {
    state.child = spawn(process.execPath, ['-e', `require('node:os').setPriority(19); ${loop}`], { stdio: 'ignore' });
    state.policy = 'nice 19';
  });
  return { stop: () => state.child.kill('SIGKILL'), get policy() { return state.policy; } };
}

function runCli(args: string[]): { child: ChildProcess; result: Promise<Pick<EndOfDayResult, 'mismatches' | 'timeline'>> } {
  const child = spawn(process.execPath, [join(repoRoot, 'dist/batch/cli.js'), ...args], { stdio: ['ignore', 'pipe', 'inherit'] });
  const result = new Promise<Pick<EndOfDayResult, 'mismatches' | 'timeline'>>((resolve, reject) => {
    let output = '';
    child.stdout?.on('data', (chunk: Buffer) => { output += chunk.toString(); });
    child.on('exit', (code) => {
      try {
        resolve(JSON.parse(output.trim().split('\n').pop() ?? '') as EndOfDayResult);
      } catch {
        reject(new Error(`end of day exited with ${code}: ${output.slice(0, 300)}`));
      }
    });
  });
  return { child, result };
}

main().catch((error: unknown) => benchFailed('bench:batch', error, ` during ${stage}`));
