import type Database from 'better-sqlite3';
import { request } from 'undici';
import { assert } from '../domain/limits.js';
import { decodeResultLine, type BatchLane } from '../domain/protocol.js';
import { readMeta, sentMinorKey, writeMeta } from './ledger-store.js';
import { withRetry } from './retry.js';

// Sends the unsent outbox of a unit's ledger to the unit as settle operations, in
// batches over the unit's batch endpoint. Each posting carries its ledger
// reference as idempotency key, so a rerun after a crash between the unit's
// commit and our "sent" mark lands nothing twice. A posting the unit refuses
// (an account it does not know) is marked rejected and listed by reconciliation.

/**
 * How hard the postings press on a unit. 'full', for a batch window alone: 250 per
 * request, three in flight (the unit always has the next one waiting), each request one transaction of the unit (~10 ms of its
 * event loop). 'bounded', while authorizations run: one request at a time in the
 * unit's background lane, which applies 4 postings per commit of live traffic and
 * 16 in a commit of their own (domain/limits.ts), so an authorization never waits
 * behind a whole request.
 *
 * Answered rows are marked sent in runs of at least markRows rows (and at the end),
 * by one UPDATE per partition over the run's range of references in the index of
 * unsent rows. Measured on a 50,000-row outbox: 1.9 us per row in runs of 5,000,
 * 3.6 in runs of 1,000, 5.4 in runs of 200, against 4.0 for an UPDATE by key per row
 * in transactions of 250. The same range over the table's key instead of the index
 * scans the rows of earlier days that sort between (and, without a lower bound,
 * every row of the partition before it: 15 us per row in runs of 200). Beside live
 * traffic the runs are shorter, so the ledger writes in small pieces (see
 * openLedger). A run killed before a mark sends those rows again, and the unit
 * answers them from their idempotency keys without applying them twice.
 */
export const sendPressures = {
  full: { postingsPerRequest: 250, requestsInflightMax: 3, lane: 'normal', markRows: 5_000 },
  bounded: { postingsPerRequest: 200, requestsInflightMax: 1, lane: 'background', markRows: 1_000 },
} as const;
export type SendPressure = keyof typeof sendPressures;

interface OutboxRow {
  partition: number;
  reference: string;
  account_id: string;
  releases: string;
  post_minor: number;
  kind: string;
}

export interface SendOptions {
  /** Rows per mark of the outbox (default: the pressure's markRows); the ledger is the same whatever the number. */
  markRows?: number;
  /** Called when a request is answered, before its rows are marked (fault injection for the restart tests). */
  onAnswered?: () => void;
}

export async function sendPostings(db: Database.Database, unitUrl: string, pressure: SendPressure, options: SendOptions = {}): Promise<number> {
  const { postingsPerRequest, requestsInflightMax, lane } = sendPressures[pressure];
  const markRows = options.markRows ?? sendPressures[pressure].markRows;
  assert(Number.isInteger(markRows) && markRows >= 1, 'a mark covers at least one row');
  // The partial index holds only unsent rows: a scan of the table would read every day's postings.
  // In the order of the references, which is the accounts' within each kind of
  // posting: the unit then updates its accounts and holds page after page. In the
  // order of the partitions (the outbox's key) it swept its accounts table eight
  // times, and the send step took 11.6-12.4 s against 8.9-9.3 s (200,000 accounts).
  const rows = db.prepare('SELECT partition, reference, account_id, releases, post_minor, kind FROM outbox INDEXED BY outbox_unsent WHERE sent = 0 ORDER BY reference').all() as OutboxRow[];
  const partitions = [...new Set(rows.map((row) => row.partition))];
  /** Each row's answer status, once its request is answered. */
  const statuses: number[] = new Array<number>(rows.length);
  const answered: boolean[] = new Array<boolean>(rows.length).fill(false);
  const markRejected = db.prepare('UPDATE outbox SET sent = 2 WHERE partition = ? AND reference = ? AND sent = 0');
  const markSent = db.prepare('UPDATE outbox INDEXED BY outbox_unsent SET sent = 1 WHERE partition = ? AND sent = 0 AND reference >= ? AND reference <= ?');
  // Every unsent row is in `rows`, in reference order, and nothing adds to the outbox
  // while a unit's postings are sent (a unit's steps run one after another): so the
  // unsent rows from the reference of row `from` to that of row `to - 1` are exactly rows[from..to).
  // The sum of the rows marked sent is added to the ledger's counter in the same
  // transaction (reconciliation compares it with the ledger's receivables); the
  // marks' row count is checked against the rows answered 200, so the counter
  // cannot drift from the rows it counts.
  const mark = db.transaction((from: number, to: number) => {
    let sentRows = 0;
    let sentMinor = 0;
    for (let i = from; i < to; i++) {
      const row = rows[i] as OutboxRow;
      if (statuses[i] !== 200) {
        markRejected.run(row.partition, row.reference);
      } else {
        sentRows++;
        sentMinor += row.post_minor;
      }
    }
    const low = (rows[from] as OutboxRow).reference;
    const high = (rows[to - 1] as OutboxRow).reference;
    let changed = 0;
    for (const partition of partitions) changed += markSent.run(partition, low, high).changes;
    assert(changed === sentRows, `a mark of the outbox changed ${changed} rows for ${sentRows} answered`);
    const counted = Number(readMeta(db, sentMinorKey) ?? Number.NaN) + sentMinor;
    assert(Number.isSafeInteger(counted), 'the ledger counts the postings sent (openLedger starts the counter)');
    writeMeta(db, sentMinorKey, String(counted));
  });
  /** Rows [0, marked) are marked; rows [0, answeredThrough) are answered. */
  let marked = 0;
  let answeredThrough = 0;
  /** Marks the answered rows that follow the marked ones without a gap, if there are enough of them (or `all`). */
  const markAnswered = (all: boolean): void => {
    while (answeredThrough < rows.length && answered[answeredThrough] === true) answeredThrough++;
    if (answeredThrough === marked || (!all && answeredThrough - marked < markRows)) return;
    mark(marked, answeredThrough);
    marked = answeredThrough;
  };
  let next = 0;
  const sender = async (): Promise<void> => {
    while (next < rows.length) {
      const from = next;
      const chunk = rows.slice(from, from + postingsPerRequest);
      next += chunk.length;
      const chunkStatuses = await withRetry(`postings to ${unitUrl}`, () => sendChunk(unitUrl, lane, chunk));
      for (let i = 0; i < chunk.length; i++) {
        statuses[from + i] = chunkStatuses[i] as number;
        answered[from + i] = true;
      }
      options.onAnswered?.();
      markAnswered(false);
    }
  };
  await Promise.all(Array.from({ length: requestsInflightMax }, sender));
  markAnswered(true);
  return rows.length;
}

async function sendChunk(unitUrl: string, lane: BatchLane, rows: readonly OutboxRow[]): Promise<number[]> {
  // A SettleOp per line; the releases are stored as the operation's JSON and spliced in.
  const body = rows.map((row) => `{"op":"settle","idempotencyKey":${JSON.stringify(`batch:${row.reference}`)},"accountId":${JSON.stringify(row.account_id)},`
    + `"releases":${row.releases},"postMinor":${row.post_minor},"kind":${JSON.stringify(row.kind)}}`).join('\n');
  const response = await request(`${unitUrl}/v1/batch?lane=${lane}`, {
    method: 'POST', body, headers: { 'content-type': 'application/x-ndjson' }, headersTimeout: 30_000, bodyTimeout: 30_000,
  });
  const text = await response.body.text();
  if (response.statusCode !== 200) throw new Error(`unit ${unitUrl} refused postings: ${response.statusCode} ${text.slice(0, 200)}`);
  const results = text.split('\n').map(decodeResultLine);
  if (results.length !== rows.length) throw new Error(`unit ${unitUrl} answered ${results.length} of ${rows.length} postings`);
  if (results.some((result) => result.status >= 500)) throw new Error(`unit ${unitUrl} failed to commit postings; the run can be resumed`);
  return results.map((result) => result.status);
}
