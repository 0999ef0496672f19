import Database from 'better-sqlite3';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { assert } from '../domain/limits.js';

// A unit's own store: one SQLite file in WAL mode with synchronous=FULL, so a
// committed transaction is on disk before the unit answers. Two connections: the
// writer (group commit) and a read-only reader for balance inquiries and the
// journal feed; in WAL mode readers never block the writer nor wait for it.
// The schema is shared by every code version that runs over the store (stable
// and gray instances), so changes to it must stay backward compatible.

const schema = `
CREATE TABLE IF NOT EXISTS meta (
  key TEXT PRIMARY KEY,
  value TEXT NOT NULL
) STRICT;

CREATE TABLE IF NOT EXISTS accounts (
  account_id TEXT PRIMARY KEY,
  product TEXT NOT NULL,
  currency TEXT NOT NULL,
  credit_limit INTEGER NOT NULL CHECK (credit_limit >= 0),
  posted_balance INTEGER NOT NULL DEFAULT 0,
  open_holds INTEGER NOT NULL DEFAULT 0 CHECK (open_holds >= 0),
  cards INTEGER NOT NULL DEFAULT 0,
  opened_at INTEGER NOT NULL
) STRICT, WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS cards (
  pan_hash BLOB PRIMARY KEY,
  account_id TEXT NOT NULL REFERENCES accounts(account_id),
  sequence INTEGER NOT NULL,
  last4 TEXT NOT NULL,
  expiry TEXT NOT NULL,
  cvv_hash BLOB NOT NULL,
  status TEXT NOT NULL,
  cash_day TEXT NOT NULL DEFAULT '',
  cash_amount INTEGER NOT NULL DEFAULT 0,
  cash_count INTEGER NOT NULL DEFAULT 0
) STRICT, WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS holds (
  authorization_id TEXT PRIMARY KEY,
  account_id TEXT NOT NULL,
  pan_hash BLOB NOT NULL,
  type TEXT NOT NULL,
  channel TEXT NOT NULL,
  merchant_id TEXT NOT NULL,
  mcc TEXT NOT NULL,
  txn_currency TEXT NOT NULL,
  txn_amount INTEGER NOT NULL CHECK (txn_amount >= 0),
  hold_amount INTEGER NOT NULL CHECK (hold_amount >= 0),
  fee_amount INTEGER NOT NULL,
  status TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  expires_at INTEGER NOT NULL
) STRICT, WITHOUT ROWID;

CREATE INDEX IF NOT EXISTS holds_open_by_expiry ON holds (expires_at) WHERE status = 'open';

-- A stand-in authorization whose request had reached the unit before it went
-- down (the channel's answer was lost with the unit): the channel holds the
-- stand-in id, the unit the original one. Follow-ups on the alias act on the original.
CREATE TABLE IF NOT EXISTS authorization_aliases (
  alias TEXT PRIMARY KEY,
  authorization_id TEXT NOT NULL
) STRICT, WITHOUT ROWID;

-- Append-only: every state change, numbered. Batch accounting and replication
-- consume it through the unit's feed, never by opening this file. An operation
-- that came with an Idempotency-Key keeps its key, the fingerprint of its content
-- and its answer here, so a retry is answered from its own journal entry: one
-- append per operation instead of a second insert into a separate table (which
-- cost ~10% of a unit's CPU; see BENCHMARKS.md).
CREATE TABLE IF NOT EXISTS journal (
  seq INTEGER PRIMARY KEY,
  at INTEGER NOT NULL,
  kind TEXT NOT NULL,
  account_id TEXT NOT NULL,
  authorization_id TEXT,
  amount INTEGER NOT NULL,
  currency TEXT NOT NULL,
  detail TEXT NOT NULL,
  idempotency_key TEXT,
  fingerprint BLOB,
  answer TEXT,
  version TEXT
) STRICT;

CREATE UNIQUE INDEX IF NOT EXISTS journal_by_idempotency_key ON journal (idempotency_key) WHERE idempotency_key IS NOT NULL;
`;

/**
 * Brings a store written by an older version up to this schema, additively only
 * (a stable and a gray instance of different versions share the store). Run in
 * an IMMEDIATE transaction, so two instances starting together migrate once.
 */
function migrate(writer: Database.Database): void {
  const hasColumn = (table: string, column: string): boolean =>
    (writer.prepare(`SELECT name FROM pragma_table_info('${table}')`).pluck().all() as string[]).includes(column);
  if (hasColumn('journal', 'version')) return;
  writer.transaction(() => {
    // The version that handled the entry's operation (stable or gray); NULL in
    // entries written before gray release existed, which were all stable.
    if (!hasColumn('journal', 'version')) writer.exec('ALTER TABLE journal ADD COLUMN version TEXT');
  }).immediate();
}

const lockWaitMsStartup = 5_000;

/**
 * The card-number layout the store's cards were issued with (domain/card-number.ts):
 * 2, the account number enciphered. A store without the mark that holds accounts was
 * written with layout 1 (the account id was the card's first 14 digits): this build
 * would route its cards by their prefix to units that do not hold them, and open new
 * accounts on ids it already has elsewhere. It is refused at start, not misrouted.
 */
export const cardNumberLayout = '2';

function checkCardNumberLayout(writer: Database.Database, path: string): void {
  const layout = writer.prepare("SELECT value FROM meta WHERE key = 'cardNumberLayout'").pluck().get() as string | undefined;
  if (layout === cardNumberLayout) return;
  const hasAccounts = writer.prepare('SELECT 1 FROM accounts LIMIT 1').get() !== undefined;
  if (layout !== undefined || hasAccounts) {
    writer.close();
    throw new Error(`the store ${path} holds cards issued with card-number layout ${layout ?? '1'}; this build issues and routes layout ${cardNumberLayout}: `
      + 'start from an empty data folder (npm start -- --fresh) and issue the portfolio again');
  }
  writer.prepare("INSERT OR IGNORE INTO meta (key, value) VALUES ('cardNumberLayout', ?)").run(cardNumberLayout);
}

/** Runs a rare write outside the group committer, waiting for the write lock inside SQLite. */
export function withLockWait<T>(writer: Database.Database, write: () => T): T {
  writer.pragma(`busy_timeout = ${lockWaitMsStartup}`);
  try {
    return write();
  } finally {
    writer.pragma('busy_timeout = 0');
  }
}

export interface StoreOptions {
  dataDir: string;
  /** SQLite page cache per connection, in KiB. */
  cacheKiB: number;
  /** The page size of a store created now (SQLite's default when unset); an existing file keeps its own. */
  pageSize?: number;
}

export interface UnitDatabases {
  writer: Database.Database;
  reader: Database.Database;
  path: string;
}

/** The WAL file kept between rewinds; a few seconds of a unit's writes at saturation fit. */
export const walBytesKeptMax = 64 * 1024 * 1024;

export function openUnitDatabases(options: StoreOptions): UnitDatabases {
  if (options.pageSize !== undefined) {
    // SQLite ignores any other value without a word.
    assert(Number.isInteger(Math.log2(options.pageSize)) && options.pageSize >= 512 && options.pageSize <= 65_536, 'pageSize is a power of two, 512..65536');
  }
  mkdirSync(options.dataDir, { recursive: true });
  const path = join(options.dataDir, 'unit.db');
  const writer = new Database(path);
  // Only a file without pages takes a new page size, and only before it is in WAL mode.
  if (options.pageSize !== undefined) writer.pragma(`page_size = ${options.pageSize}`);
  writer.pragma('journal_mode = WAL');
  // FULL: the WAL is fsynced at every commit, so an answered approval survives kill -9 and power loss.
  writer.pragma('synchronous = FULL');
  // A stable and a gray instance may share the store. Start-up waits for the
  // other's commit; from then on the group committer does not wait inside SQLite
  // (see units/group-commit.ts) and rare writes outside it use withLockWait().
  writer.pragma(`busy_timeout = ${lockWaitMsStartup}`);
  writer.pragma(`cache_size = -${options.cacheKiB}`);
  writer.pragma('foreign_keys = OFF');
  // No checkpoint on the writer: an automatic checkpoint runs inside the commit that
  // crosses the threshold, on the authorization event loop, copying up to the whole
  // WAL into the database file. The unit's background thread checkpoints instead
  // (units/wal-checkpointer.ts). On this machine the p99 at 1,000-4,500/s did not move
  // measurably either way (12-22 ms; the tail follows fsync stalls of the disk),
  // but the work no longer sits in the commit path.
  writer.pragma('wal_autocheckpoint = 0');
  // When the log is rewound (see units/wal-checkpointer.ts), a file grown past this is trimmed back to it.
  writer.pragma(`journal_size_limit = ${walBytesKeptMax}`);
  writer.exec(schema);
  // The replication commit sequence (units/replication.ts) and the epoch of the last commit.
  writer.prepare("INSERT OR IGNORE INTO meta (key, value) VALUES ('commitSeq', '0'), ('commitEpoch', '0')").run();
  migrate(writer);
  checkCardNumberLayout(writer, path);
  writer.pragma('busy_timeout = 0');
  const reader = new Database(path, { readonly: true });
  reader.pragma('busy_timeout = 5000');
  reader.pragma(`cache_size = -${options.cacheKiB}`);
  return { writer, reader, path };
}
