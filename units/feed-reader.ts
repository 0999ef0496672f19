import Database from 'better-sqlite3';

// Renders pages of the journal feed. Entries are written as JSON text directly:
// the stored detail is already JSON, so it is spliced in rather than parsed and
// serialized again (the feed of 5 million entries is batch's largest read).

type Row = [number, number, string, string, string | null, number, string, string, string | null, string | null];

export interface FeedRequest {
  after: number;
  limit: number;
  /** Only these kinds of entry (all when null); the cursor still moves past the others. */
  kinds: string[] | null;
  /** Entries as arrays [seq, at, kind, accountId, authorizationId, amount, currency, detail, version] instead of objects. */
  compact: boolean;
}

// version: the release role that wrote the entry (full-link gray); NULL in entries older than gray release, read as stable.
const columns = "seq, at, kind, account_id, authorization_id, amount, currency, detail, idempotency_key, coalesce(version, 'stable')";

export class FeedReader {
  private readonly db: Database.Database;
  private readonly page;
  private readonly filtered = new Map<string, Database.Statement>();
  private readonly last;
  private readonly totals;

  constructor(path: string) {
    this.db = new Database(path, { readonly: true });
    this.db.pragma('busy_timeout = 5000');
    this.page = this.db.prepare(`SELECT ${columns} FROM journal WHERE seq > ? ORDER BY seq LIMIT ?`).raw();
    this.last = this.db.prepare('SELECT coalesce(max(seq), 0) FROM journal').pluck();
    this.totals = this.db.prepare('SELECT count(*) AS accounts, coalesce(sum(posted_balance), 0) AS postedMinor, coalesce(sum(open_holds), 0) AS openHoldsMinor FROM accounts');
  }

  render(unitId: string, request: FeedRequest): string {
    const rows = (request.kinds === null ? this.page.all(request.after, request.limit) : this.kindsStatement(request.kinds).all(request.after, ...request.kinds, request.limit)) as Row[];
    const parts: string[] = [];
    for (const [seq, at, kind, accountId, authorizationId, amount, currency, detail, key, version] of rows) {
      parts.push(request.compact
        ? `[${seq},${at},${JSON.stringify(kind)},${JSON.stringify(accountId)},${JSON.stringify(authorizationId)},${amount},${JSON.stringify(currency)},${detail},"${version}"]`
        : `{"seq":${seq},"at":${at},"kind":${JSON.stringify(kind)},"accountId":${JSON.stringify(accountId)},"authorizationId":${JSON.stringify(authorizationId)},`
          + `"amount":${amount},"currency":${JSON.stringify(currency)},"idempotencyKey":${JSON.stringify(key)},"version":"${version}","detail":${detail}}`);
    }
    return `{"unit":${JSON.stringify(unitId)},"entries":[${parts.join(',')}],"lastSeq":${this.last.get() as number}}`;
  }

  /** Sums over the unit's accounts, for batch reconciliation: a scan, so it runs here and not on the unit's event loop. */
  renderTotals(unitId: string): string {
    return JSON.stringify({ unit: unitId, ...(this.totals.get() as object) });
  }

  private kindsStatement(kinds: string[]): Database.Statement {
    const key = kinds.join(',');
    let statement = this.filtered.get(key);
    if (statement === undefined) {
      statement = this.db.prepare(`SELECT ${columns} FROM journal WHERE seq > ? AND kind IN (${kinds.map(() => '?').join(',')}) ORDER BY seq LIMIT ?`).raw();
      this.filtered.set(key, statement);
    }
    return statement;
  }
}
