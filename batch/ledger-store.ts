import Database from 'better-sqlite3';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { partitionOf } from './accounting-rules.js';

// Batch accounting's own store, one SQLite file per unit, never the unit's file.
// It holds the batch's view of the unit's authorizations (built from the unit's
// journal feed), the clearing records, the double-entry ledger, the per-account
// balances and statements, the outbox of postings owed to the unit, and the
// progress of every run step so that a killed run resumes where it stopped.
// Ledger rows are keyed by deterministic references, never by insertion order,
// so an interrupted and resumed run yields exactly the rows of an uninterrupted one.

// The tables that batch writes per account and partition (accounts, clearing,
// entries, outbox) lead their keys with the business date and/or the partition, so
// that one step of one partition writes a contiguous run of pages. With the
// account id first, the accounts of the 8 partitions sat interleaved on every
// page: each partition's step rewrote nearly every page of the accounts, entries
// and outbox (1.06 GB of writes in the post step of a 200,000-account day, 5.3 KB
// per account). Measured in BENCHMARKS.md.
// Version 3: version 2 with the outbox's releases as the settle operation's JSON and
// clearing and posting in one step (version 2 existed for a few commits only).
// Version 4: version 3 with the per-date totals (day_totals), the counter of the
// postings sent (meta sentMinor) and the index of refused postings, so that
// reconciliation reads no history. A version 3 ledger is brought up to it in place
// (the change is additive); a build of version 3 refuses a version 4 ledger, so it
// cannot mark postings sent without counting them.
// Version 5: version 4 with the count of the open holds the unit's journal moved
// (meta heldMinor), kept by the feed sync. A ledger of version 3 or 4 is brought up
// to it in place without the count (its holds are not compared: the entries it read
// before cannot be counted again); a build of version 4 refuses a version 5 ledger,
// so it cannot move the cursor without counting.
export const ledgerSchemaVersion = 5;
/** Older versions that openLedger brings up to ledgerSchemaVersion in place. */
const upgradableVersions: readonly number[] = [3, 4];

const schema = `
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) STRICT;

CREATE TABLE IF NOT EXISTS authorizations (
  authorization_id TEXT PRIMARY KEY,
  account_id TEXT NOT NULL,
  partition INTEGER NOT NULL,
  type TEXT NOT NULL,
  approved_date TEXT NOT NULL,
  txn_currency TEXT NOT NULL,
  base_minor INTEGER NOT NULL,
  fee_minor INTEGER NOT NULL,
  hold_minor INTEGER NOT NULL,
  status TEXT NOT NULL,
  gray INTEGER NOT NULL DEFAULT 0
) STRICT, WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS authorizations_by_day ON authorizations (partition, approved_date);

-- The period_* columns are the cycle-to-date totals of the statement being built
-- (what card systems keep in the account master): every entry adds to one, the
-- statement reads them and starts them again at zero. They replace an index of
-- the entries by account and a query per statement.
CREATE TABLE IF NOT EXISTS accounts (
  partition INTEGER NOT NULL,
  account_id TEXT NOT NULL,
  product TEXT NOT NULL,
  currency TEXT NOT NULL,
  cycle_day INTEGER NOT NULL,
  opened_date TEXT NOT NULL,
  purchase_minor INTEGER NOT NULL DEFAULT 0,
  cash_minor INTEGER NOT NULL DEFAULT 0,
  fee_minor INTEGER NOT NULL DEFAULT 0,
  interest_minor INTEGER NOT NULL DEFAULT 0,
  accrued_units INTEGER NOT NULL DEFAULT 0,
  grace INTEGER NOT NULL DEFAULT 1,
  statement_date TEXT NOT NULL DEFAULT '',
  statement_closing INTEGER NOT NULL DEFAULT 0,
  minimum_due INTEGER NOT NULL DEFAULT 0,
  due_date TEXT NOT NULL DEFAULT '',
  paid_since_statement INTEGER NOT NULL DEFAULT 0,
  period_purchases_minor INTEGER NOT NULL DEFAULT 0,
  period_cash_minor INTEGER NOT NULL DEFAULT 0,
  period_credits_minor INTEGER NOT NULL DEFAULT 0,
  period_payments_minor INTEGER NOT NULL DEFAULT 0,
  period_fees_minor INTEGER NOT NULL DEFAULT 0,
  period_interest_minor INTEGER NOT NULL DEFAULT 0,
  PRIMARY KEY (partition, account_id)
) STRICT, WITHOUT ROWID;

-- Keyed by account within a date and partition: a partition's clearing file is
-- inserted in key order, appending.
CREATE TABLE IF NOT EXISTS clearing (
  business_date TEXT NOT NULL,
  partition INTEGER NOT NULL,
  account_id TEXT NOT NULL,
  record_id TEXT NOT NULL,
  kind TEXT NOT NULL,
  match TEXT NOT NULL,
  authorization_id TEXT,
  amount_minor INTEGER NOT NULL,
  fee_minor INTEGER NOT NULL,
  release_minor INTEGER NOT NULL,
  PRIMARY KEY (business_date, partition, account_id, record_id)
) STRICT, WITHOUT ROWID;

-- The double-entry ledger. Every posting here moves one amount from one ledger
-- account to another (a debit line and a credit line of the same amount), so each
-- entry balances by construction; a posting with more legs is several entries.
-- One row per posting instead of a row per line halved the inserts of a run.
-- A day's entries append after the earlier days'.
CREATE TABLE IF NOT EXISTS entries (
  business_date TEXT NOT NULL,
  partition INTEGER NOT NULL,
  account_id TEXT NOT NULL,
  reference TEXT NOT NULL,
  kind TEXT NOT NULL,
  amount_minor INTEGER NOT NULL CHECK (amount_minor > 0),
  currency TEXT NOT NULL,
  debit_ledger TEXT NOT NULL,
  credit_ledger TEXT NOT NULL,
  PRIMARY KEY (business_date, partition, account_id, reference)
) STRICT, WITHOUT ROWID;

CREATE VIEW IF NOT EXISTS lines (reference, ledger_account, debit_minor, credit_minor) AS
  SELECT reference, debit_ledger, amount_minor, 0 FROM entries
  UNION ALL SELECT reference, credit_ledger, 0, amount_minor FROM entries;

CREATE TABLE IF NOT EXISTS statements (
  statement_date TEXT NOT NULL,
  account_id TEXT NOT NULL,
  opening_minor INTEGER NOT NULL,
  purchases_minor INTEGER NOT NULL,
  cash_minor INTEGER NOT NULL,
  credits_minor INTEGER NOT NULL,
  payments_minor INTEGER NOT NULL,
  fees_minor INTEGER NOT NULL,
  interest_minor INTEGER NOT NULL,
  closing_minor INTEGER NOT NULL,
  minimum_payment_minor INTEGER NOT NULL,
  due_date TEXT NOT NULL,
  PRIMARY KEY (statement_date, account_id)
) STRICT, WITHOUT ROWID;

-- What each account's unit must apply, one row per account and kind of posting of a date
-- (clearing, payment, interest and fees):
-- the holds to release (the JSON of the settle operation's releases,
-- [{"authorizationId", "minor"}], so that sending splices it in) and the change of
-- the posted balance.
CREATE TABLE IF NOT EXISTS outbox (
  partition INTEGER NOT NULL,
  reference TEXT NOT NULL,
  account_id TEXT NOT NULL,
  releases TEXT NOT NULL,
  post_minor INTEGER NOT NULL,
  kind TEXT NOT NULL,
  sent INTEGER NOT NULL DEFAULT 0,
  PRIMARY KEY (partition, reference)
) STRICT, WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS outbox_unsent ON outbox (partition) WHERE sent = 0;
-- Postings the unit refused (rare), so that reconciliation lists them without a scan of every day's outbox.
CREATE INDEX IF NOT EXISTS outbox_rejected ON outbox (partition) WHERE sent = 2;

-- Each business date's own movement of the ledger: written by the date's
-- reconciliation, which runs after every step of the date has committed (the
-- steps of a date are the only writers of its entries, and a step done is never
-- run again). Reconciliation adds these rows up instead of reading every day's
-- entries, so that a day's run does not slow down as the ledger's history grows.
-- A date without a row (a run killed before its reconciliation, a ledger
-- brought up from version 3) is read from its entries.
CREATE TABLE IF NOT EXISTS day_totals (
  business_date TEXT PRIMARY KEY,
  entries INTEGER NOT NULL,
  amount_minor INTEGER NOT NULL,
  receivable_minor INTEGER NOT NULL,
  degenerate INTEGER NOT NULL
) STRICT, WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS steps (
  business_date TEXT NOT NULL,
  step TEXT NOT NULL,
  partition INTEGER NOT NULL,
  done_at TEXT NOT NULL,
  PRIMARY KEY (business_date, step, partition)
) STRICT, WITHOUT ROWID;

-- A step that commits in pieces (clearing and posting) records here the last
-- account it has done, until the step is done. Added in version 3 without a new
-- version: a ledger without the table has no step in progress.
CREATE TABLE IF NOT EXISTS step_cursors (
  business_date TEXT NOT NULL,
  step TEXT NOT NULL,
  partition INTEGER NOT NULL,
  last_account TEXT NOT NULL,
  PRIMARY KEY (business_date, step, partition)
) STRICT, WITHOUT ROWID;
`;

export function ledgerPath(batchRoot: string, unitId: string): string {
  return join(batchRoot, unitId, 'ledger.db');
}

export interface LedgerOptions {
  /** Write in small pieces (batch beside live traffic): see openLedger. */
  smallWrites?: boolean;
}

export function openLedger(path: string, options: LedgerOptions = {}): Database.Database {
  mkdirSync(join(path, '..'), { recursive: true });
  const db = new Database(path);
  db.pragma('busy_timeout = 10000');
  // Checked before anything is written: a ledger of another schema is left as it was.
  const existing = db.prepare("SELECT 1 FROM sqlite_master WHERE name = 'meta'").get() !== undefined;
  const version = existing ? Number(readMeta(db, 'schemaVersion') ?? '1') : ledgerSchemaVersion;
  if (version !== ledgerSchemaVersion && !upgradableVersions.includes(version)) {
    db.close();
    throw new Error(`ledger ${path} has schema version ${version}; this version of batch reads version ${ledgerSchemaVersion} and brings version ${upgradableVersions.join(', ')} up to it: move the old ledger aside to start a new one`);
  }
  // 16 KiB pages for a new ledger (an existing one keeps its own): batch writes in
  // bulk and scans by range, and larger pages mean fewer B-tree pages to split and
  // write at each commit. End of day over 200,000 accounts: 15.1-15.4 s against
  // 16.3-16.4 s with 4 KiB pages, interleaved runs.
  db.pragma('page_size = 16384');
  db.pragma('journal_mode = WAL');
  // Batch results are made durable at each step's commit: a crash resumes from the last finished step.
  db.pragma('synchronous = NORMAL');
  if (options.smallWrites) {
    // Beside live traffic, a small page cache and frequent checkpoints keep batch's
    // writes in small pieces. On ext4 (data=ordered) a unit's fsync also waits for
    // other files' newly written data, so a ledger that piles up tens of MB of dirty
    // pages and then flushes them at once stalls the units' commits: with a 64 MiB
    // cache and the default 1,000-page checkpoint, the clearing step of a
    // 200,000-account batch raised the per-second p99 of the authorizations beside it
    // to a median of 10.4 ms (max 19.7); with 8 MiB and 256 pages (4 MiB), to 5.9 ms
    // (max 9.6), against 4.5 ms without a batch. In a batch window the large cache
    // is faster: the send step's marks at 1,000,000 accounts took 63 s against 52 s.
    db.pragma('cache_size = -8192');
    db.pragma('wal_autocheckpoint = 256');
  } else {
    db.pragma('cache_size = -65536');
  }
  const upgrading = existing && version !== ledgerSchemaVersion;
  db.transaction(() => {
    db.exec(schema);
    writeMeta(db, 'schemaVersion', String(ledgerSchemaVersion));
    // The sum of the postings the unit has applied, kept by the send step in the
    // transaction that marks them (see send-postings.ts). A ledger brought up from
    // version 3 starts it from its outbox, once, whatever counter it holds: some
    // version 3 builds kept one, and older ones then marked postings without counting.
    if (upgrading || readMeta(db, sentMinorKey) === null) {
      writeMeta(db, sentMinorKey, String(db.prepare('SELECT coalesce(sum(post_minor), 0) FROM outbox WHERE sent = 1').pluck().get() as number));
    }
    // The count of holds starts with the ledger, before it has read anything. One brought
    // up from an older version has none (a count of a build between versions is dropped).
    if (!existing) writeMeta(db, heldMinorKey, '0');
    if (upgrading) db.prepare("DELETE FROM meta WHERE key IN ('heldMinor', 'releasedMinor')").run();
  }).immediate();
  return db;
}

/** Partition counts tried, above the highest partition in use, to name the one an old ledger was split into. */
const partitionCountsTriedMax = 256;

/**
 * A ledger's accounts are keyed by partition (partitionOf the account id and the
 * count), so a run with another count would file the same account twice. The first
 * run records the count; later runs must ask for the same.
 */
export function checkPartitionCount(db: Database.Database, partitions: number): void {
  db.transaction(() => {
    const saved = readMeta(db, 'partitions');
    if (saved === null) {
      // A ledger from before the count was recorded: its accounts tell whether they were
      // split with this count (each sits in partitionOf(its id, count)). The highest
      // partition alone could not: a small ledger's accounts may all hash below it.
      const accounts = db.prepare('SELECT partition, account_id FROM accounts').raw().all() as Array<[number, string]>;
      if (accounts.some(([partition, accountId]) => partitionOf(accountId, partitions) !== partition)) {
        // The count that fits is above the highest partition used; the counts tried are a bounded
        // run of those (a loop, not Math.max(...accounts): a large ledger overflows the call stack).
        let highest = 0;
        for (const [partition] of accounts) highest = Math.max(highest, partition);
        let fits: number | undefined;
        for (let count = highest + 1; count <= highest + partitionCountsTriedMax && fits === undefined; count++) {
          if (accounts.every(([partition, accountId]) => partitionOf(accountId, count) === partition)) fits = count;
        }
        throw new Error(`the ledger's accounts were not split into ${partitions} partitions${fits === undefined ? '' : `: run with --partitions ${fits}`}`);
      }
      writeMeta(db, 'partitions', String(partitions));
    } else if (Number(saved) !== partitions) {
      throw new Error(`the ledger is split into ${saved} partitions; this run asks for ${partitions}: run with --partitions ${saved}`);
    }
  }).immediate();
}

/** Meta key of the sum of the postings marked sent (answered 200 by the unit), in minor units. */
export const sentMinorKey = 'sentMinor';

/**
 * The open holds a unit's journal accounts for, as this ledger has read it: the sum
 * of the amounts of the entries of holdKinds and summedHoldKinds through the feed
 * cursor (every entry's amount is the change it made to open holds; reconcile.ts
 * compares the sum with the unit's own). Counted from the ledger's first entry, so a
 * ledger brought up from an older version has none, and its holds are not compared.
 */
export const heldMinorKey = 'heldMinor';
/** The kinds of entry batch reads that move open holds: placed, incremented, reversed, expired. */
export const holdKinds = ['auth.approved', 'auth.refund', 'hold.incremented', 'hold.reversed', 'hold.expired'] as const;
/**
 * The kinds that move open holds which batch counts without reading them: the releases
 * of settlements (balance.posted), whichever ledger posted them (a new ledger on a unit
 * settled before counts those too). The feed sums them per page (units/feed-reader.ts).
 */
export const summedHoldKinds = ['balance.posted'] as const;

export function readMeta(db: Database.Database, key: string): string | null {
  const row = db.prepare('SELECT value FROM meta WHERE key = ?').get(key) as { value: string } | undefined;
  return row === undefined ? null : row.value;
}

export function writeMeta(db: Database.Database, key: string, value: string): void {
  db.prepare('INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value').run(key, value);
}

export function stepDone(db: Database.Database, date: string, step: string, partition: number): boolean {
  return db.prepare('SELECT 1 FROM steps WHERE business_date = ? AND step = ? AND partition = ?').get(date, step, partition) !== undefined;
}

export function markStepDone(db: Database.Database, date: string, step: string, partition: number): void {
  db.prepare('INSERT OR IGNORE INTO steps (business_date, step, partition, done_at) VALUES (?, ?, ?, ?)').run(date, step, partition, new Date().toISOString());
}

/** The last account a step in progress has done, or '' (before every account id). */
export function readCursor(db: Database.Database, date: string, step: string, partition: number): string {
  const row = db.prepare('SELECT last_account FROM step_cursors WHERE business_date = ? AND step = ? AND partition = ?').pluck().get(date, step, partition) as string | undefined;
  return row ?? '';
}

export function writeCursor(db: Database.Database, date: string, step: string, partition: number, lastAccount: string): void {
  db.prepare(`INSERT INTO step_cursors (business_date, step, partition, last_account) VALUES (?, ?, ?, ?)
    ON CONFLICT (business_date, step, partition) DO UPDATE SET last_account = excluded.last_account`).run(date, step, partition, lastAccount);
}

export function deleteCursor(db: Database.Database, date: string, step: string, partition: number): void {
  db.prepare('DELETE FROM step_cursors WHERE business_date = ? AND step = ? AND partition = ?').run(date, step, partition);
}
