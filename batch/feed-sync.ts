import type Database from 'better-sqlite3';
import { request } from 'undici';
import { calendarOf } from '../domain/authorize-rules.js';
import { assert, limits } from '../domain/limits.js';
import { convertMinor, isCurrency, type FxTable } from '../domain/money.js';
import { cycleDayOf, partitionOf } from './accounting-rules.js';
import { checkPartitionCount, heldMinorKey, holdKinds, readMeta, summedHoldKinds, writeMeta } from './ledger-store.js';
import { withRetry } from './retry.js';

// Reads a unit's journal through its feed (GET /v1/journal?after=<seq>), page by
// page, and keeps the batch's own view of accounts and authorizations. The cursor
// is saved in the same transaction as the page's effects, so a killed sync
// resumes exactly after the last page it applied.

/**
 * One entry of the feed's accounting form (units/feed-reader.ts): [seq, at, kind,
 * accountId, authorizationId, amount, currency, version, a, b, c], where a, b, c
 * are the values of the detail that batch reads, by kind. The version is the one
 * that wrote the entry (gray release): batch keeps it on authorizations.
 */
export type FeedEntry = [number, number, string, string, string | null, number, string, string, string | number | null, string | null, number | null];

export interface SyncOptions {
  unitUrl: string;
  partitions: number;
  fx: FxTable;
  utcOffsetMinutes: number;
  pageEntries?: number;
}

/**
 * Feed page size beside live traffic (a page is one ledger transaction). A full page
 * (limits.journalPageEntriesMax) is a 1-2 MB answer that the unit writes from its
 * authorization thread, and a commit of a few MB into the ledger; both stall the
 * authorizations beside them (see BENCHMARKS.md, batch isolation).
 */
export const syncPageEntriesBesideTraffic = 1_000;


/** Applies every journal entry the unit has beyond the saved cursor; returns how many. */
export async function syncFeed(db: Database.Database, options: SyncOptions): Promise<number> {
  checkPartitionCount(db, options.partitions);
  const statements = prepare(db);
  const apply = db.transaction((after: number, page: FeedPage) => {
    // The cursor again, inside the transaction: a page read after a cursor that another
    // run has moved since is not applied (hold changes add up; they are not idempotent),
    // and the loop reads on from where that run got to.
    if (Number(readMeta(db, 'feedCursor') ?? '0') !== after) return;
    let heldMinor = page.summed ?? 0;
    for (const entry of page.entries) {
      applyEntry(statements, entry, options);
      if (holdKindSet.has(entry[2])) heldMinor += entry[5];
    }
    writeMeta(db, 'feedCursor', String((page.entries[page.entries.length - 1] as FeedEntry)[0]));
    // In the cursor's transaction, so that a page counts once whatever is killed when. A
    // unit that does not sum the releases (an older version): the count stops, not compared.
    const held = readMeta(db, heldMinorKey);
    if (held !== null && page.summed === null) db.prepare('DELETE FROM meta WHERE key = ?').run(heldMinorKey);
    else if (held !== null) writeMeta(db, heldMinorKey, String(Number(held) + heldMinor));
  });
  let applied = 0;
  for (;;) {
    const after = Number(readMeta(db, 'feedCursor') ?? '0');
    const page = await withRetry(`feed of ${options.unitUrl}`, () => fetchPage(options.unitUrl, after, options.pageEntries ?? limits.journalPageEntriesMax));
    if (page.entries.length === 0) return applied;
    assert((page.entries[0] as FeedEntry)[0] > after, 'the feed answers entries after the cursor');
    apply.immediate(after, page);
    applied += page.entries.length;
  }
}

/** The kinds of journal entry batch accounting reads; the unit skips the others (declines, card events, its own acknowledgements). */
export const feedKinds = ['account.opened', ...holdKinds] as const;
const holdKindSet: ReadonlySet<string> = new Set(holdKinds);

/** A page of the feed, and the releases of settlements from its cursor through its last entry (null from a unit that does not sum them). */
interface FeedPage {
  entries: FeedEntry[];
  summed: number | null;
}

async function fetchPage(unitUrl: string, after: number, limit: number): Promise<FeedPage> {
  const url = `${unitUrl}/v1/journal?after=${after}&limit=${limit}&format=accounting&kinds=${feedKinds.join(',')}&sums=${summedHoldKinds.join(',')}`;
  const response = await request(url, { headersTimeout: 30_000, bodyTimeout: 30_000 });
  const body = (await response.body.json()) as { entries?: FeedEntry[]; summed?: number };
  if (response.statusCode !== 200 || body.entries === undefined) throw new Error(`unit feed ${unitUrl} answered ${response.statusCode}`);
  // A unit built before the accounting form answers objects (it does not know the format).
  if (body.entries.length > 0 && !Array.isArray(body.entries[0])) throw new Error(`unit feed ${unitUrl} does not serve format=accounting (a unit of an older version?)`);
  return { entries: body.entries, summed: typeof body.summed === 'number' ? body.summed : null };
}

function prepare(db: Database.Database) {
  return {
    insertAccount: db.prepare(`INSERT OR IGNORE INTO accounts (account_id, partition, product, currency, cycle_day, opened_date) VALUES (?, ?, ?, ?, ?, ?)`),
    insertAuthorization: db.prepare(`INSERT OR IGNORE INTO authorizations
      (authorization_id, account_id, partition, type, approved_date, txn_currency, base_minor, fee_minor, hold_minor, status, gray) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`),
    changeHold: db.prepare('UPDATE authorizations SET hold_minor = max(0, hold_minor + ?), base_minor = max(0, base_minor + ?), status = ? WHERE authorization_id = ?'),
    setStatus: db.prepare('UPDATE authorizations SET status = ? WHERE authorization_id = ?'),
  };
}

type Statements = ReturnType<typeof prepare>;

/** Business days by day number since the epoch (calendarOf per entry cost ~5% of a sync). */
const dayNames = new Map<number, string>();

function businessDay(atMs: number, utcOffsetMinutes: number): string {
  const dayNumber = Math.floor((atMs + utcOffsetMinutes * 60_000) / 86_400_000);
  let name = dayNames.get(dayNumber);
  if (name === undefined) {
    name = calendarOf(atMs, utcOffsetMinutes).day;
    dayNames.set(dayNumber, name);
  }
  return name;
}

function applyEntry(statements: Statements, entry: FeedEntry, options: SyncOptions): void {
  const [, at, kind, accountId, authorizationId, amount, currency, version, a, b, c] = entry;
  const day = businessDay(at, options.utcOffsetMinutes);
  const gray = version === 'gray' ? 1 : 0;
  switch (kind) {
    case 'account.opened':
      // a: product, b: the credit limit's currency.
      statements.insertAccount.run(accountId, partitionOf(accountId, options.partitions), String(a), String(b), cycleDayOf(accountId), day);
      return;
    case 'auth.approved': {
      // a: type, b: transaction currency, c: fee.
      const fee = c ?? 0;
      statements.insertAuthorization.run(authorizationId, accountId, partitionOf(accountId, options.partitions), String(a), day, String(b), amount - fee, fee, amount, 'open', gray);
      return;
    }
    case 'auth.refund': {
      // a: transaction amount, b: transaction currency; converted into the billing currency.
      const base = typeof a === 'number' && b !== null && isCurrency(b) && isCurrency(currency) ? convertMinor(a, b, currency, options.fx) : null;
      statements.insertAuthorization.run(authorizationId, accountId, partitionOf(accountId, options.partitions), 'refund', day, String(b), base ?? 0, 0, 0, 'refund', gray);
      return;
    }
    case 'hold.incremented':
      statements.changeHold.run(amount, amount, 'open', authorizationId);
      return;
    case 'hold.reversed':
      // a: 1 when the reversal was full.
      statements.changeHold.run(amount, amount, a === 1 ? 'reversed' : 'open', authorizationId);
      return;
    case 'hold.expired':
      // The amounts stay: a late presentment after expiry is for what was authorized.
      statements.setStatus.run('expired', authorizationId);
      return;
    default:
      return;
  }
}
