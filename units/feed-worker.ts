import { setPriority } from 'node:os';
import { parentPort, workerData } from 'node:worker_threads';
import Database from 'better-sqlite3';
import { FeedReader, type AmountsAfter, type FeedRequest } from './feed-reader.js';
import { WalCheckpointer } from './wal-checkpointer.js';

// A worker thread of the unit that serves the journal feed, so that rendering a
// page for batch accounting (tens of milliseconds for 10,000 entries) never holds
// up the unit's authorization event loop.

const { path, unitId, failAtStart } = workerData as { path: string; unitId: string; failAtStart?: boolean };
// Fault injection for the restart test (DSU_FEED_WORKER_FAILS in units/server.ts): a thread that cannot start.
if (failAtStart === true) throw new Error('fault injection: the journal feed thread fails at start');
// Below the authorization thread in the kernel's eyes (Linux niceness is per thread).
try {
  setPriority(10);
} catch {
  // Not permitted: normal priority.
}
const reader = new FeedReader(path);

// The store's WAL checkpoint also runs here, on its own connection (see
// units/wal-checkpointer.ts); the unit's main thread counts how its chases end.
// (The writer's journal_size_limit trims the file after a rewind: see units/store.ts.)
const checkpointer = new Database(path);
checkpointer.pragma('busy_timeout = 0');
// A checkpoint syncs the log before it copies and the database file after, whatever
// the level; set here rather than left to the build's default.
checkpointer.pragma('synchronous = FULL');
new WalCheckpointer(checkpointer, {
  intervalMs: 1_000,
  // 32 MiB of 4 KiB pages: a few seconds of a unit's writes at saturation.
  rewindFramesMin: 8_192,
  // 128 MiB: four failed chases in a row at saturation, or a burst of bulk issuance.
  restartFramesMin: 32_768,
  // A chase measured at 8,000/s took 2-38 passes.
  chasePassesMax: 64,
  // Commits are published after their fsync; at 8,000/s at most 3 in 10,000 took over 25 ms.
  writerIdleMs: 25,
  restartWaitMs: 100,
  onChase: (outcome, passes) => parentPort?.postMessage({ chase: outcome, passes }),
}).start();

parentPort?.on('message', (request: { id: number; totals: boolean; amounts?: AmountsAfter | null } & FeedRequest) => {
  try {
    parentPort?.postMessage({ id: request.id, text: request.totals ? reader.renderTotals(unitId, request.amounts ?? null) : reader.render(unitId, request) });
  } catch (error) {
    parentPort?.postMessage({ id: request.id, error: String(error) });
  }
});
