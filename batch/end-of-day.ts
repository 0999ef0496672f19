import { join } from 'node:path';
import { Piscina } from 'piscina';
import { repoRoot } from '../deploy/cluster.js';
import { assert } from '../domain/limits.js';
import type { TopologyFile } from '../domain/topology.js';
import { isoDatePattern } from './accounting-rules.js';
import { stepNames } from './eod-steps.js';
import { ledgerPath } from './ledger-store.js';
import type { Reconciliation } from './reconcile.js';
import { lockBatchRoot } from './run-lock.js';
import type { SendPressure } from './send-postings.js';
import type { BatchTask } from './worker.js';

// End of day for one business date over every unit: per unit, read the journal
// feed, take the network's clearing file, post it and the payments, accrue
// interest, cut statements, send the postings back to the unit, and reconcile
// against the unit's own totals. A unit's partitions are
// tasks in a piscina pool whose thread count is bounded (default 1), so the run
// leaves the authorization processes their CPU. Units proceed independently.

export interface EndOfDayOptions {
  topology: TopologyFile;
  topologyPath: string;
  /** Folder of the ledger stores (one subfolder per unit). */
  batchRoot: string;
  date: string;
  threads: number;
  partitions: number;
  /** Scheduling niceness of the batch threads (0 normal .. 19 lowest); default 10. */
  niceness?: number;
  /** Accounts per transaction of the clearing step (see eod-steps.ts); the ledger is the same whatever the size. */
  pieceAccounts?: number;
  /** How hard postings press on the units (see send-postings.ts); default 'bounded'. */
  pressure?: SendPressure;
  /** Rows per mark of the outbox as sent (see send-postings.ts); the ledger is the same whatever the number. */
  markRows?: number;
  onProgress?: (done: number, total: number, what: string) => void;
}

export interface EndOfDayResult {
  date: string;
  seconds: number;
  /** Seconds the tasks of each kind ran in the workers (summed over units and partitions): where a run's time goes. */
  taskSeconds: Record<string, number>;
  tasks: number;
  /** Every task as it finished: its name, kind, end (epoch ms) and how long it ran in a worker; the run's phases on a clock, for benchmarks that line them up with live traffic. */
  timeline: TimelineTask[];
  units: Reconciliation[];
  mismatches: number;
}

export interface TimelineTask {
  task: string;
  kind: string;
  endedAtMs: number;
  seconds: number;
}

export const partitionsDefault = 8;

export async function runEndOfDay(options: EndOfDayOptions): Promise<EndOfDayResult> {
  assert(isoDatePattern.test(options.date), 'the business date is YYYY-MM-DD');
  assert(Number.isInteger(options.threads) && options.threads >= 1, 'threads >= 1');
  assert(Number.isInteger(options.partitions) && options.partitions >= 1, 'partitions >= 1');
  const release = lockBatchRoot(options.batchRoot);
  try {
    return await runLocked(options);
  } finally {
    release();
  }
}

async function runLocked(options: EndOfDayOptions): Promise<EndOfDayResult> {
  const started = performance.now();
  const pool = new Piscina<BatchTask, unknown>({
    filename: join(repoRoot, 'dist/batch/worker.js'), minThreads: options.threads, maxThreads: options.threads, idleTimeout: 1_000,
    // Beside live traffic (bounded pressure) the ledgers write in small pieces (see openLedger).
    workerData: { niceness: options.niceness ?? 10, smallWrites: (options.pressure ?? 'bounded') === 'bounded' },
  });
  const perUnit = 3 + stepNames.length * options.partitions;
  const total = perUnit * options.topology.units.length;
  let done = 0;
  const taskSeconds: Record<string, number> = {};
  const timeline: TimelineTask[] = [];
  const run = async <R>(task: BatchTask, what: string): Promise<R> => {
    const { value, seconds } = (await pool.run(task).catch((error: unknown) => {
      throw new Error(`${what}: ${workerErrorText(error)}`, { cause: error });
    })) as { value: R; seconds: number };
    const kind = task.kind === 'step' ? task.step : task.kind;
    taskSeconds[kind] = (taskSeconds[kind] ?? 0) + seconds;
    timeline.push({ task: what, kind, endedAtMs: Date.now(), seconds });
    done++;
    options.onProgress?.(done, total, what);
    return value;
  };
  try {
    const units = await Promise.all(options.topology.units.map((unit) => runUnit(unit.id, unit.url, options, run)));
    return {
      date: options.date, seconds: (performance.now() - started) / 1000, taskSeconds, tasks: done, timeline, units,
      mismatches: units.reduce((sum, unit) => sum + unit.mismatches.length, 0),
    };
  } finally {
    await pool.destroy();
  }
}

type Runner = <R>(task: BatchTask, what: string) => Promise<R>;

async function runUnit(unitId: string, unitUrl: string, options: EndOfDayOptions, run: Runner): Promise<Reconciliation> {
  const path = ledgerPath(options.batchRoot, unitId);
  const partitions = Array.from({ length: options.partitions }, (_, index) => index);
  const sync = (): Promise<number> => run({ kind: 'sync', ledgerPath: path, unitUrl, topologyPath: options.topologyPath, partitions: options.partitions }, `${unitId} feed`);
  await sync();
  // A step writes the unit's ledger in one IMMEDIATE transaction, so two steps of
  // one unit cannot run at once: the second would hold a pool thread blocked in
  // SQLite's busy wait. The steps of a unit run one after another; the pool's
  // threads are kept busy by the other units.
  for (const step of stepNames) {
    for (const partition of partitions) {
      const pieces = options.pieceAccounts === undefined ? {} : { pieceAccounts: options.pieceAccounts };
      await run({ kind: 'step', step, ledgerPath: path, date: options.date, partition, topologyPath: options.topologyPath, ...pieces }, `${unitId} ${step} ${partition}`);
    }
  }
  // One task sends all of the unit's postings, with several requests in flight: with
  // a task per partition the pool's threads all sent to one unit at a time, and
  // that unit's single thread kept the machine at 60-70% of its CPU.
  const marks = options.markRows === undefined ? {} : { markRows: options.markRows };
  await run({ kind: 'send', ledgerPath: path, unitUrl, pressure: options.pressure ?? 'bounded', ...marks }, `${unitId} send`);
  return run<Reconciliation>({ kind: 'reconcile', ledgerPath: path, unitId, unitUrl, date: options.date }, `${unitId} reconcile`);
}

/**
 * An error from a pool thread arrives as a structured clone. The worker rethrows
 * what it can as a plain Error (batch/worker.ts); anything else thrown there would
 * arrive as a bare object and print as "[object Object]".
 */
function workerErrorText(error: unknown): string {
  if (error instanceof Error) return error.message;
  if (typeof error === 'object' && error !== null) return JSON.stringify(error);
  return String(error);
}
