import { mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, beforeEach, expect, it } from 'vitest';
import { repoRoot } from '../deploy/cluster.js';
import type { TopologyFile } from '../domain/topology.js';
import { runEndOfDay } from '../batch/end-of-day.js';
import { checkPartitionCount, ledgerPath, ledgerSchemaVersion, openLedger, readMeta, sentMinorKey } from '../batch/ledger-store.js';

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
  expect(() => openLedger(path)).toThrow(`ledger ${path} has schema version 1; this version of batch reads version ${ledgerSchemaVersion} and brings version 3 up to it`);
  const after = new Database(path, { readonly: true });
  expect(after.prepare("SELECT name FROM sqlite_master WHERE type = 'table'").pluck().all()).toEqual(['meta']);
  after.close();
  // A new ledger gets the current version.
  const fresh = openLedger(join(root, 'new.db'));
  expect(fresh.prepare("SELECT value FROM meta WHERE key = 'schemaVersion'").pluck().get()).toBe(String(ledgerSchemaVersion));
  expect(fresh.pragma('page_size', { simple: true })).toBe(16384);
  fresh.close();
});

it('brings a version 3 ledger up to version 4 in place, starting the count of postings sent from its outbox', () => {
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
  expect(upgraded.prepare("SELECT name FROM sqlite_master WHERE name IN ('day_totals', 'outbox_rejected') ORDER BY name").pluck().all()).toEqual(['day_totals', 'outbox_rejected']);
  upgraded.close();
  // Opened again, the counter is left as it is (only the send step moves it).
  const again = openLedger(path);
  again.prepare("UPDATE outbox SET sent = 1 WHERE reference = 'r3'").run();
  again.close();
  const third = openLedger(path);
  expect(readMeta(third, sentMinorKey)).toBe('950');
  third.close();
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
  for (let partition = 0; partition < 4; partition++) account.run(partition, `a${partition}`);
  expect(() => checkPartitionCount(db, 8)).toThrow("the ledger's accounts are split into 4 partitions; this run asks for 8: run with --partitions 4");
  expect(readMeta(db, 'partitions')).toBeNull();
  checkPartitionCount(db, 4);
  expect(readMeta(db, 'partitions')).toBe('4');
  db.close();
});
