import { setPriority } from 'node:os';
import { parentPort, workerData } from 'node:worker_threads';
import Database from 'better-sqlite3';
import { FeedReader, type FeedRequest } from './feed-reader.js';
import { walBytesKeptMax } from './store.js';

// A worker thread of the unit that serves the journal feed, so that rendering a
// page for batch accounting (tens of milliseconds for 10,000 entries) never holds
// up the unit's authorization event loop.

const { path, unitId } = workerData as { path: string; unitId: string };
// Below the authorization thread in the kernel's eyes (Linux niceness is per thread).
try {
  setPriority(10);
} catch {
  // Not permitted: normal priority.
}
const reader = new FeedReader(path);

// The WAL checkpoint also runs here, on its own connection, once a second and
// PASSIVE (it never waits for or blocks the writer), so the writer's commits never
// pay for copying pages into the database file.
//
// PASSIVE alone never lets the WAL start over while writes go on: SQLite rewinds
// the log only when a writer finds it wholly copied back, and under steady writes
// new frames always arrived during the copy. Measured: issuing 300,000 accounts
// into one unit left a 2.2 GB WAL beside a 108 MB database, and 8 million accounts
// filled the disk. So once the log holds walFramesRestartMin frames, a RESTART
// checkpoint follows the PASSIVE one: it waits for the writer's transaction (at
// most restartWaitMs; the group committer retries a commit that finds the lock
// taken on its next turn), copies the few frames the PASSIVE pass missed, and the
// next commit writes the log from its start again, over blocks the file already
// has (an fdatasync then has no file growth to journal). journal_size_limit trims
// a log that grew past it, once it has been rewound.
const checkpointIntervalMs = 1_000;
/** 32 MiB of 4 KiB pages: a few seconds of a unit's writes at saturation. */
const walFramesRestartMin = 8_192;
const restartWaitMs = 100;
const checkpointer = new Database(path);
checkpointer.pragma('busy_timeout = 1000');
checkpointer.pragma(`journal_size_limit = ${walBytesKeptMax}`);
setInterval(() => {
  try {
    const [passive] = checkpointer.pragma('wal_checkpoint(PASSIVE)') as Array<{ busy: number; log: number; checkpointed: number }>;
    if (passive === undefined || passive.log < walFramesRestartMin) return;
    checkpointer.pragma(`busy_timeout = ${restartWaitMs}`);
    try {
      checkpointer.pragma('wal_checkpoint(RESTART)');
    } finally {
      checkpointer.pragma('busy_timeout = 1000');
    }
  } catch {
    // Busy: the next tick tries again.
  }
}, checkpointIntervalMs);

parentPort?.on('message', (request: { id: number; totals: boolean } & FeedRequest) => {
  try {
    parentPort?.postMessage({ id: request.id, text: request.totals ? reader.renderTotals(unitId) : reader.render(unitId, request) });
  } catch (error) {
    parentPort?.postMessage({ id: request.id, error: String(error) });
  }
});
