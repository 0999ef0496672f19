import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, beforeEach, expect, it } from 'vitest';
import { repoRoot } from '../deploy/cluster.js';
import { loadTopology, type TopologyFile } from '../domain/topology.js';
import { isBusinessDate, partitionOf } from '../batch/accounting-rules.js';
import { runStep } from '../batch/eod-steps.js';
import { BatchBusyError, lockBatchRoot } from '../batch/run-lock.js';
import { runEndOfDay } from '../batch/end-of-day.js';
import { checkPartitionCount, heldMinorKey, ledgerPath, ledgerSchemaVersion, openLedger, readMeta, sentMinorKey, writeMeta } from '../batch/ledger-store.js';
import { fetchUnitTotals, reconcile, unitHoldKinds, type UnitTotals } from '../batch/reconcile.js';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';

// A task that fails in a pool thread reaches the run's caller with the task's name
// and SQLite's own message, not as a structured clone that prints "[object Object]".

let root: string;

beforeEach(() => {
  root = mkdtempSync(join(tmpdir(), 'dsu-batch-errors-'));
});

afterEach(() => {
  rmSync(root, { recursive: true, force: true });
});

it('names the failed task and keeps the SQLite error message', async () => {
  const topologyPath = join(repoRoot, 'deploy/topology.json');
  const topology = JSON.parse(readFileSync(topologyPath, 'utf8')) as TopologyFile;
  const units = topology.units.slice(0, 1);
  // The ledger's path is taken by a folder: SQLite cannot open it, before any request to the unit.
  mkdirSync(ledgerPath(root, (units[0] as { id: string }).id), { recursive: true });
  const run = runEndOfDay({ topology: { ...topology, units }, topologyPath, batchRoot: root, date: '2026-11-21', threads: 1, partitions: 1 });
  await expect(run).rejects.toThrow(new RegExp(`^${(units[0] as { id: string }).id} feed: SQLITE_CANTOPEN: unable to open database file`));
});

it('refuses a ledger written with another schema, and leaves it as it was', () => {
  const path = join(root, 'old', 'ledger.db');
  mkdirSync(join(root, 'old'));
  // A ledger of the first schema: its meta table has no schemaVersion.
  const old = new Database(path);
  old.exec("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) STRICT; INSERT INTO meta VALUES ('feedCursor', '42')");
  old.close();
  expect(() => openLedger(path)).toThrow(`ledger ${path} has schema version 1; this version of batch reads version ${ledgerSchemaVersion} and brings version 3, 4 up to it`);
  const after = new Database(path, { readonly: true });
  expect(after.prepare("SELECT name FROM sqlite_master WHERE type = 'table'").pluck().all()).toEqual(['meta']);
  after.close();
  // A new ledger gets the current version.
  const fresh = openLedger(join(root, 'new.db'));
  expect(fresh.prepare("SELECT value FROM meta WHERE key = 'schemaVersion'").pluck().get()).toBe(String(ledgerSchemaVersion));
  expect(fresh.pragma('page_size', { simple: true })).toBe(16384);
  fresh.close();
});

it('brings a version 3 ledger up to the current version in place, starting the count of postings sent from its outbox and none of holds', () => {
  const path = join(root, 'v3.db');
  const db = openLedger(path);
  // What version 3 had: no per-date totals, no counter, no index of refused postings.
  db.exec("DROP TABLE day_totals; DROP INDEX outbox_rejected; DELETE FROM meta WHERE key = 'sentMinor'; UPDATE meta SET value = '3' WHERE key = 'schemaVersion'");
  const insert = db.prepare("INSERT INTO outbox (partition, reference, account_id, releases, post_minor, kind, sent) VALUES (0, ?, 'a', '[]', ?, 'clearing', ?)");
  insert.run('r1', 1_250, 1);
  insert.run('r2', -300, 1);
  insert.run('r3', 999, 0);
  insert.run('r4', 77, 2);
  db.close();
  const upgraded = openLedger(path);
  expect(readMeta(upgraded, 'schemaVersion')).toBe(String(ledgerSchemaVersion));
  expect(readMeta(upgraded, sentMinorKey)).toBe('950');
  // The entries it read before are not read again: its holds are not counted, nor compared.
  expect(readMeta(upgraded, heldMinorKey)).toBeNull();
  expect(upgraded.prepare("SELECT name FROM sqlite_master WHERE name IN ('day_totals', 'outbox_rejected') ORDER BY name").pluck().all()).toEqual(['day_totals', 'outbox_rejected']);
  upgraded.close();
  // Opened again, the counter is left as it is (only the send step moves it).
  const again = openLedger(path);
  again.prepare("UPDATE outbox SET sent = 1 WHERE reference = 'r3'").run();
  again.close();
  const third = openLedger(path);
  expect(readMeta(third, sentMinorKey)).toBe('950');
  third.close();
  // A version 3 ledger that kept a counter (some version 3 builds did, and older ones
  // then marked postings without counting): the upgrade starts it from the outbox too.
  const stale = openLedger(path);
  stale.exec("UPDATE meta SET value = '3' WHERE key = 'schemaVersion'; UPDATE meta SET value = '0' WHERE key = 'sentMinor'");
  stale.close();
  const recounted = openLedger(path);
  expect(readMeta(recounted, sentMinorKey)).toBe('1949');
  recounted.close();
});

it('refuses a run with another partition count than the ledger was split into, and records the first one', () => {
  const db = openLedger(join(root, 'partitions.db'));
  checkPartitionCount(db, 8);
  expect(readMeta(db, 'partitions')).toBe('8');
  checkPartitionCount(db, 8);
  expect(() => checkPartitionCount(db, 4)).toThrow('the ledger is split into 8 partitions; this run asks for 4: run with --partitions 8');
  // A ledger from before the count was recorded: its accounts tell it.
  db.exec("DELETE FROM meta WHERE key = 'partitions'");
  const account = db.prepare("INSERT INTO accounts (partition, account_id, product, currency, cycle_day, opened_date) VALUES (?, ?, 'classic', 'CNY', 1, '2026-11-01')");
  const ids = Array.from({ length: 12 }, (_, i) => `622588000000${String(10 + i)}`);
  for (const id of ids) account.run(partitionOf(id, 4), id);
  expect(() => checkPartitionCount(db, 8)).toThrow("the ledger's accounts were not split into 8 partitions: run with --partitions 4");
  expect(readMeta(db, 'partitions')).toBeNull();
  checkPartitionCount(db, 4);
  expect(readMeta(db, 'partitions')).toBe('4');
  // A small ledger split into 8 whose accounts all landed in low partitions is not taken for a smaller count.
  db.exec("DELETE FROM meta WHERE key = 'partitions'; DELETE FROM accounts");
  const few = ids.filter((id) => partitionOf(id, 8) < 6).slice(0, 3);
  expect(few.length).toBe(3);
  for (const id of few) account.run(partitionOf(id, 8), id);
  checkPartitionCount(db, 8);
  expect(readMeta(db, 'partitions')).toBe('8');
  // A ledger split into more than 256 partitions (the CLI allows it) is still named.
  db.exec("DELETE FROM meta WHERE key = 'partitions'; DELETE FROM accounts");
  const many = Array.from({ length: 2_000 }, (_, i) => String(62258800100000 + i));
  for (const id of many) account.run(partitionOf(id, 300), id);
  expect(() => checkPartitionCount(db, 8)).toThrow("the ledger's accounts were not split into 8 partitions: run with --partitions 300");
  db.close();
});

it('names the partition count of an old ledger too large to spread into one call', () => {
  const db = openLedger(join(root, 'partitions-large.db'));
  const account = db.prepare("INSERT INTO accounts (partition, account_id, product, currency, cycle_day, opened_date) VALUES (?, ?, 'classic', 'CNY', 1, '2026-11-01')");
  db.transaction(() => {
    for (let i = 0; i < 300_000; i++) {
      const id = String(62258800000000 + i);
      account.run(partitionOf(id, 4), id);
    }
  })();
  expect(() => checkPartitionCount(db, 8)).toThrow("the ledger's accounts were not split into 8 partitions: run with --partitions 4");
  db.close();
});

it('lists a unit whose open holds differ from what its journal accounts for, and says why when it does not compare', () => {
  const db = openLedger(join(root, 'holds.db'));
  try {
    // A new ledger counts from its first entry; say it has read through sequence 40, holds of 1000 net.
    writeMeta(db, 'feedCursor', '40');
    writeMeta(db, heldMinorKey, '1000');
    const totals = (openHoldsMinor: number, after = 40, minor = -50): UnitTotals => ({
      accounts: 0, postedMinor: 0, openHoldsMinor, journalSeq: 55, amountsAfter: { after, kinds: [...unitHoldKinds], minor },
    });
    const holdMismatches = (unit: UnitTotals): string[] => reconcile(db, 'dsu-1', '2026-11-21', unit).mismatches.filter((text) => text.includes('open holds'));
    // 1000 through the cursor, -50 after it (released more than placed): 950.
    expect(reconcile(db, 'dsu-1', '2026-11-21', totals(950)).holds).toEqual({ journalSeq: 55, throughCursorMinor: 1000, afterCursorMinor: -50, expectedMinor: 950 });
    expect(holdMismatches(totals(950))).toEqual([]);
    expect(holdMismatches(totals(949))).toEqual(["unit open holds 949 != 950 its journal accounts for at sequence 55 (1000 through the ledger's cursor, -50 after it)"]);
    // Sums after another point than the ledger's cursor, from a unit that does not sum its journal, or on a
    // ledger brought up from an older version: not compared, and the report says why.
    expect(reconcile(db, 'dsu-1', '2026-11-21', totals(949, 39))).toMatchObject({ holds: null, holdsNotCompared: "the unit summed after 39, not the ledger's cursor 40" });
    expect(reconcile(db, 'dsu-1', '2026-11-21', { accounts: 0, postedMinor: 0, openHoldsMinor: 949 })).toMatchObject({ holds: null, holdsNotCompared: 'the unit does not sum its journal (an older version)' });
    db.prepare('DELETE FROM meta WHERE key = ?').run(heldMinorKey);
    expect(reconcile(db, 'dsu-1', '2026-11-21', totals(949))).toMatchObject({ holds: null, holdsNotCompared: 'the ledger was made before it counted holds' });
  } finally {
    db.close();
  }
});

it('asks a unit of a version before the journal sums for its plain totals', async () => {
  const asked: string[] = [];
  // What such a unit answers: its totals on the plain route, 404 on any other.
  const unit = createServer((request, response) => {
    asked.push(request.url ?? '');
    const plain = request.url === '/v1/totals';
    response.writeHead(plain ? 200 : 404, { 'content-type': 'application/json' });
    response.end(JSON.stringify(plain ? { unit: 'dsu-1', accounts: 3, postedMinor: 10, openHoldsMinor: 20 } : { error: { code: 'NOT_FOUND', message: 'no route', field: null } }));
  });
  await new Promise<void>((resolve) => unit.listen(0, '127.0.0.1', resolve));
  try {
    const totals = await fetchUnitTotals(`http://127.0.0.1:${(unit.address() as AddressInfo).port}`, 40);
    expect(totals).toEqual({ unit: 'dsu-1', accounts: 3, postedMinor: 10, openHoldsMinor: 20 });
    expect(asked).toEqual([`/v1/totals?after=40&kinds=${unitHoldKinds.join(',')}`, '/v1/totals']);
  } finally {
    unit.closeAllConnections();
    await new Promise<void>((resolve) => unit.close(() => resolve()));
  }
});

it('knows the calendar: 2026-02-29 and 2026-04-31 are no business dates', () => {
  for (const date of ['2026-02-28', '2028-02-29', '2026-04-30', '2026-12-31']) expect(isBusinessDate(date), date).toBe(true);
  for (const date of ['2026-02-29', '2026-02-30', '2026-04-31', '2026-13-01', '2026-1-01', 20261201]) expect(isBusinessDate(date), String(date)).toBe(false);
});

it('posts no late fee for a product without one, and the accrue step goes on', () => {
  const topology = loadTopology(join(repoRoot, 'deploy/topology.json'));
  const classic = topology.products.get('classic')!;
  const products = new Map([['classic', { ...classic, lateFeeMinor: 0 }]]);
  const db = openLedger(join(root, 'fee', 'ledger.db'));
  try {
    // A statement of 50,000 due yesterday, of which nothing was paid.
    db.prepare(`INSERT INTO accounts (partition, account_id, product, currency, cycle_day, opened_date, purchase_minor, statement_date, statement_closing,
      minimum_due, due_date, paid_since_statement) VALUES (0, '62258800000001', 'classic', 'CNY', 28, '2026-10-01', 50000, '2026-11-01', 50000, 10000, '2026-11-21', 0)`).run();
    expect(() => runStep('accrue', { db, date: '2026-11-22', partition: 0, products })).not.toThrow();
    expect(db.prepare("SELECT count(*) FROM entries WHERE kind = 'fee'").pluck().get()).toBe(0);
    const account = db.prepare('SELECT grace, fee_minor FROM accounts').get() as { grace: number; fee_minor: number };
    // The missed due date still costs the grace period.
    expect(account).toEqual({ grace: 0, fee_minor: 0 });
    // With the product's fee, the same account is charged it.
    const other = openLedger(join(root, 'fee2', 'ledger.db'));
    try {
      other.prepare(`INSERT INTO accounts (partition, account_id, product, currency, cycle_day, opened_date, purchase_minor, statement_date, statement_closing,
        minimum_due, due_date, paid_since_statement) VALUES (0, '62258800000001', 'classic', 'CNY', 28, '2026-10-01', 50000, '2026-11-01', 50000, 10000, '2026-11-21', 0)`).run();
      runStep('accrue', { db: other, date: '2026-11-22', partition: 0, products: topology.products });
      expect(other.prepare("SELECT amount_minor FROM entries WHERE kind = 'fee'").pluck().all()).toEqual([classic.lateFeeMinor]);
    } finally {
      other.close();
    }
  } finally {
    db.close();
  }
});

it('lets one end of day at a time hold a folder of ledgers, and takes over the lock of a run that died', () => {
  const release = lockBatchRoot(root);
  expect(readFileSync(join(root, 'run.lock'), 'utf8')).toBe(String(process.pid));
  expect(() => lockBatchRoot(root)).toThrow(BatchBusyError);
  release();
  // Held by a live process of someone else: refused, naming it.
  writeFileSync(join(root, 'run.lock'), String(process.ppid));
  expect(() => lockBatchRoot(root)).toThrow(new RegExp(`pid ${process.ppid}`));
  // Left by a process that is gone: taken over.
  const dead = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], { encoding: 'utf8' });
  writeFileSync(join(root, 'run.lock'), dead.stdout);
  const again = lockBatchRoot(root);
  expect(readFileSync(join(root, 'run.lock'), 'utf8')).toBe(String(process.pid));
  again();
  expect(existsSync(join(root, 'run.lock'))).toBe(false);
  // A lock without a readable owner is not taken over (the lock appears with its pid in it, so this is no run's half-made lock).
  writeFileSync(join(root, 'run.lock'), '');
  expect(() => lockBatchRoot(root)).toThrow(/unreadable/);
  rmSync(join(root, 'run.lock'));
  // No file of the lock's making is left behind.
  expect(readdirSync(root).filter((name) => name.startsWith('run.lock'))).toEqual([]);
});

it('refuses command-line input it cannot run with one line and a non-zero exit, before any work', () => {
  const cli = (args: string[]) => spawnSync(process.execPath, [join(repoRoot, 'dist/batch/cli.js'), ...args, '--batch-dir', root], { encoding: 'utf8', timeout: 20_000 });
  const cases: Array<[string[], RegExp]> = [
    [['eod', '--date', '2026-02-30'], /a date of the calendar/],
    [['eod', '--date', '2026-11-21', '--threads', '0'], /--threads must be a whole number/],
    [['eod', '--date', '2026-11-21', '--partitions', 'x'], /--partitions must be a whole number/],
    [['schedule', '--poll-seconds', '0'], /--poll-seconds must be/],
    [['schedule', '--poll-seconds', 'abc'], /--poll-seconds must be/],
  ];
  for (const [args, message] of cases) {
    const run = cli(args);
    expect(run.status, args.join(' ')).not.toBe(0);
    expect(run.stderr.trim().split('\n')).toHaveLength(1);
    expect(run.stderr).toMatch(message);
  }
  expect(existsSync(join(root, 'run.lock'))).toBe(false);
});
