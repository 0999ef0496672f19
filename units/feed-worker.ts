import { parentPort, workerData } from 'node:worker_threads';
import { FeedReader } from './feed-reader.js';

// A worker thread of the unit that serves the journal feed, so that rendering a
// page for batch accounting (tens of milliseconds for 10,000 entries) never holds
// up the unit's authorization event loop.

const { path, unitId } = workerData as { path: string; unitId: string };
const reader = new FeedReader(path);

parentPort?.on('message', (request: { id: number; after: number; limit: number }) => {
  try {
    parentPort?.postMessage({ id: request.id, text: reader.render(unitId, request.after, request.limit) });
  } catch (error) {
    parentPort?.postMessage({ id: request.id, error: String(error) });
  }
});
