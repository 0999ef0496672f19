import { mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, beforeEach, expect, it } from 'vitest';
import { repoRoot } from '../deploy/cluster.js';
import type { TopologyFile } from '../domain/topology.js';
import { runEndOfDay } from '../batch/end-of-day.js';
import { ledgerPath, ledgerSchemaVersion, openLedger } from '../batch/ledger-store.js';

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
  expect(() => openLedger(path)).toThrow(`ledger ${path} has schema version 1; this version of batch reads version ${ledgerSchemaVersion} only`);
  const after = new Database(path, { readonly: true });
  expect(after.prepare("SELECT name FROM sqlite_master WHERE type = 'table'").pluck().all()).toEqual(['meta']);
  after.close();
  // A new ledger gets the current version.
  const fresh = openLedger(join(root, 'new.db'));
  expect(fresh.prepare("SELECT value FROM meta WHERE key = 'schemaVersion'").pluck().get()).toBe(String(ledgerSchemaVersion));
  expect(fresh.pragma('page_size', { simple: true })).toBe(16384);
  fresh.close();
});
