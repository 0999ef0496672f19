import type Database from 'better-sqlite3';
import { setPriority } from 'node:os';
import { workerData } from 'node:worker_threads';
import { loadTopology, type Topology } from '../domain/topology.js';
import { runStep, type StepName } from './eod-steps.js';
import { syncFeed, syncPageEntriesBesideTraffic } from './feed-sync.js';
import { heldMinorKey, openLedger, readMeta } from './ledger-store.js';
import { fetchUnitTotals, reconcile, type Reconciliation } from './reconcile.js';
import { withRetry } from './retry.js';
import { sendPostings, type SendPressure } from './send-postings.js';

// A piscina worker: runs one task of an end-of-day run against one unit's ledger.
// Each worker thread keeps its own SQLite connections and parsed topology.

export type BatchTask =
  | { kind: 'sync'; ledgerPath: string; unitUrl: string; topologyPath: string; partitions: number }
  | { kind: 'step'; step: StepName; ledgerPath: string; date: string; partition: number; topologyPath: string; pieceAccounts?: number }
  | { kind: 'send'; ledgerPath: string; unitUrl: string; pressure: SendPressure; markRows?: number }
  | { kind: 'reconcile'; ledgerPath: string; unitId: string; unitUrl: string; date: string };

// Batch threads run at a lower scheduling priority (nice, default 10): on a machine
// shared with the units, the kernel gives authorization work the CPU first, and the
// batch takes what is left. On Linux the niceness of a thread is its own, so each
// worker sets it for itself. A machine that forbids it leaves the default.
const settings = (workerData ?? {}) as { niceness?: number; smallWrites?: boolean };

try {
  setPriority(settings.niceness ?? 10);
} catch {
  // Not permitted: run at normal priority.
}

// Fault injection for the restart tests, the way a crash would (DSU_BATCH_KILL_AFTER_TASKS
// in cli.ts kills between tasks): SIGKILL to the process once this thread has
// - DSU_BATCH_KILL_AFTER_PIECES=N: committed N pieces of a step;
// - DSU_BATCH_KILL_AFTER_ANSWERS=N: had N requests of postings answered by units, the
//   last one's rows applied by the unit and not yet marked sent in the ledger.
function killAfter(variable: string): (() => void) | undefined {
  const count = Number(process.env[variable] ?? 'NaN');
  if (Number.isNaN(count)) return undefined;
  let seen = 0;
  return () => {
    if (++seen >= count) process.kill(process.pid, 'SIGKILL');
  };
}
const onPiece = killAfter('DSU_BATCH_KILL_AFTER_PIECES');
const onAnswered = killAfter('DSU_BATCH_KILL_AFTER_ANSWERS');

const ledgers = new Map<string, Database.Database>();
const topologies = new Map<string, Topology>();

function ledger(path: string): Database.Database {
  let db = ledgers.get(path);
  if (db === undefined) {
    db = openLedger(path, { smallWrites: settings.smallWrites === true });
    ledgers.set(path, db);
  }
  return db;
}

function topology(path: string): Topology {
  let loaded = topologies.get(path);
  if (loaded === undefined) {
    loaded = loadTopology(path);
    topologies.set(path, loaded);
  }
  return loaded;
}

/** Runs a task and reports how long it ran in the worker (the pool's queueing excluded). */
export default async function timed(task: BatchTask): Promise<{ value: number | Reconciliation; seconds: number }> {
  const started = performance.now();
  try {
    const value = await run(task);
    return { value, seconds: (performance.now() - started) / 1000 };
  } catch (error) {
    // A SqliteError crosses to the main thread as a bare {code}, message lost; a plain Error keeps it.
    if (error instanceof Error && error.constructor !== Error) {
      const code = (error as { code?: unknown }).code;
      throw new Error(typeof code === 'string' ? `${code}: ${error.message}` : error.message);
    }
    throw error;
  }
}

async function run(task: BatchTask): Promise<number | Reconciliation> {
  switch (task.kind) {
    case 'sync': {
      const { fx, file } = topology(task.topologyPath);
      return syncFeed(ledger(task.ledgerPath), {
        unitUrl: task.unitUrl, partitions: task.partitions, fx, utcOffsetMinutes: file.businessDayUtcOffsetMinutes,
        ...(settings.smallWrites === true ? { pageEntries: syncPageEntriesBesideTraffic } : {}),
      });
    }
    case 'step':
      return runStep(task.step, {
        db: ledger(task.ledgerPath), date: task.date, partition: task.partition, products: topology(task.topologyPath).products,
        ...(task.pieceAccounts === undefined ? {} : { pieceAccounts: task.pieceAccounts }), ...(onPiece === undefined ? {} : { onPiece }),
      });
    case 'send':
      return sendPostings(ledger(task.ledgerPath), task.unitUrl, task.pressure, {
        ...(task.markRows === undefined ? {} : { markRows: task.markRows }), ...(onAnswered === undefined ? {} : { onAnswered }),
      });
    case 'reconcile': {
      const db = ledger(task.ledgerPath);
      // The ledger's cursor does not move meanwhile: a unit's steps run one after another.
      // A ledger that does not count holds does not ask the unit to sum its journal.
      const cursor = readMeta(db, heldMinorKey) === null ? null : Number(readMeta(db, 'feedCursor') ?? '0');
      return reconcile(db, task.unitId, task.date, await withRetry(`totals of ${task.unitUrl}`, () => fetchUnitTotals(task.unitUrl, cursor)));
    }
  }
}
