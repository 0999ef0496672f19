import { setPriority } from 'node:os';
import { parentPort, workerData } from 'node:worker_threads';
import Database from 'better-sqlite3';
import { FeedReader, type FeedRequest } from './feed-reader.js';
import { walBytesKeptMax } from './store.js';
import { WalCheckpointer } from './wal-checkpointer.js';

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

// The store's WAL checkpoint also runs here, on its own connection (see
// units/wal-checkpointer.ts); the unit's main thread counts how its chases end.
const checkpointer = new Database(path);
checkpointer.pragma('busy_timeout = 0');
// When the log is rewound, a file grown past this is trimmed back to it.
checkpointer.pragma(`journal_size_limit = ${walBytesKeptMax}`);
new WalCheckpointer(checkpointer, {
  intervalMs: 1_000,
  // 32 MiB of 4 KiB pages: a few seconds of a unit's writes at saturation.
  rewindFramesMin: 8_192,
  // 128 MiB: four failed chases in a row at saturation, or a burst of bulk issuance.
  restartFramesMin: 32_768,
  // A chase measured at 8,000/s took 2-38 passes.
  chasePassesMax: 64,
  restartWaitMs: 100,
  onChase: (outcome, passes) => parentPort?.postMessage({ chase: outcome, passes }),
}).start();

parentPort?.on('message', (request: { id: number; totals: boolean } & FeedRequest) => {
  try {
    parentPort?.postMessage({ id: request.id, text: request.totals ? reader.renderTotals(unitId) : reader.render(unitId, request) });
  } catch (error) {
    parentPort?.postMessage({ id: request.id, error: String(error) });
  }
});
