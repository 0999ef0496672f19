import { setPriority } from 'node:os';
import { parentPort, workerData } from 'node:worker_threads';
import Database from 'better-sqlite3';
import { FeedReader, type FeedRequest } from './feed-reader.js';

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
const checkpointIntervalMs = 1_000;
const checkpointer = new Database(path);
checkpointer.pragma('busy_timeout = 1000');
setInterval(() => {
  try {
    checkpointer.pragma('wal_checkpoint(PASSIVE)');
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
