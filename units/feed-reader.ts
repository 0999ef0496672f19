import Database from 'better-sqlite3';

// Renders pages of the journal feed. Entries are written as JSON text directly:
// the stored detail is already JSON, so it is spliced in rather than parsed and
// serialized again (the feed of 5 million entries is batch's largest read).

export class FeedReader {
  private readonly page;
  private readonly last;

  constructor(path: string) {
    const db = new Database(path, { readonly: true });
    db.pragma('busy_timeout = 5000');
    this.page = db.prepare('SELECT seq, at, kind, account_id, authorization_id, amount, currency, detail, idempotency_key FROM journal WHERE seq > ? ORDER BY seq LIMIT ?').raw();
    this.last = db.prepare('SELECT coalesce(max(seq), 0) FROM journal').pluck();
  }

  render(unitId: string, after: number, limit: number): string {
    const rows = this.page.all(after, limit) as Array<[number, number, string, string, string | null, number, string, string, string | null]>;
    const parts: string[] = [];
    for (const [seq, at, kind, accountId, authorizationId, amount, currency, detail, key] of rows) {
      parts.push(`{"seq":${seq},"at":${at},"kind":${JSON.stringify(kind)},"accountId":${JSON.stringify(accountId)},"authorizationId":${JSON.stringify(authorizationId)},`
        + `"amount":${amount},"currency":${JSON.stringify(currency)},"idempotencyKey":${JSON.stringify(key)},"detail":${detail}}`);
    }
    return `{"unit":${JSON.stringify(unitId)},"entries":[${parts.join(',')}],"lastSeq":${this.last.get() as number}}`;
  }
}
