import type Database from 'better-sqlite3';
import { request } from 'undici';
import { decodeResultLine, type SettleOp } from '../domain/protocol.js';

// Sends the outbox of one partition to the owning unit as settle operations, in
// batches over the unit's batch endpoint. Each posting carries its ledger
// reference as idempotency key, so a rerun after a crash between the unit's
// commit and our "sent" mark lands nothing twice. A posting the unit refuses
// (an account it does not know) is marked rejected and listed by reconciliation.

const postingsPerRequest = 1_000;

interface OutboxRow {
  reference: string;
  account_id: string;
  releases: string;
  post_minor: number;
  kind: string;
}

export async function sendPostings(db: Database.Database, unitUrl: string, partition: number): Promise<number> {
  const select = db.prepare(`SELECT reference, account_id, releases, post_minor, kind FROM outbox
    WHERE partition = ? AND sent = 0 ORDER BY reference LIMIT ${postingsPerRequest}`);
  const mark = db.prepare('UPDATE outbox SET sent = ? WHERE reference = ?');
  let sent = 0;
  for (;;) {
    const rows = select.all(partition) as OutboxRow[];
    if (rows.length === 0) return sent;
    const ops: SettleOp[] = rows.map((row) => ({
      op: 'settle', idempotencyKey: `batch:${row.reference}`, accountId: row.account_id,
      releases: (JSON.parse(row.releases) as Array<[string, number]>).map(([authorizationId, minor]) => ({ authorizationId, minor })),
      postMinor: row.post_minor, kind: row.kind,
    }));
    const response = await request(`${unitUrl}/v1/batch`, {
      method: 'POST', body: ops.map((op) => JSON.stringify(op)).join('\n'), headers: { 'content-type': 'application/x-ndjson' },
      headersTimeout: 30_000, bodyTimeout: 30_000,
    });
    const text = await response.body.text();
    if (response.statusCode !== 200) throw new Error(`unit ${unitUrl} refused postings: ${response.statusCode} ${text.slice(0, 200)}`);
    const results = text.split('\n').map(decodeResultLine);
    if (results.length !== rows.length) throw new Error(`unit ${unitUrl} answered ${results.length} of ${rows.length} postings`);
    if (results.some((result) => result.status >= 500)) throw new Error(`unit ${unitUrl} failed to commit postings; the run can be resumed`);
    db.transaction(() => {
      rows.forEach((row, index) => mark.run((results[index]?.status ?? 500) === 200 ? 1 : 2, row.reference));
    })();
    sent += rows.length;
  }
}
