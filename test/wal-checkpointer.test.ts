import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import Database from 'better-sqlite3';
import { afterEach, beforeEach, expect, it } from 'vitest';
import { WalCheckpointer, type RewindOutcome, type WalCheckpointerOptions } from '../units/wal-checkpointer.js';

// The background checkpoint against a writer on another thread, as in a unit: the
// checkpointer chases the writer until a commit rewinds the log itself, and falls
// back to a RESTART only when a reader's old snapshot keeps the log from being copied.

const pageBytes = 4096;
// A writer thread that commits a page-sized row every millisecond or so until told to
// stop or, when busy, commits back to back.
const writerSource = `
const { parentPort, workerData } = require('node:worker_threads');
const Database = require(workerData.betterSqlite3);
const db = new Database(workerData.path);
db.pragma('busy_timeout = 1000');
db.pragma('wal_autocheckpoint = 0');
const insert = db.prepare('INSERT INTO rows (payload) VALUES (?)');
const payload = Buffer.alloc(${pageBytes - 200}, 7);
let stop = false;
let written = 0;
parentPort.on('message', () => (stop = true));
const step = () => {
  if (stop) { db.close(); parentPort.postMessage(written); return; }
  const commits = workerData.busy ? 20 : 1;
  for (let i = 0; i < commits; i++) insert.run(payload);
  written += commits;
  if (workerData.busy) setImmediate(step);
  else setTimeout(step, 1);
};
step();
`;

let dir: string;
let path: string;
let checkpointer: WalCheckpointer | null;
let connections: Database.Database[];

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'dsu-wal-'));
  path = join(dir, 'unit.db');
  const db = new Database(path);
  db.pragma('journal_mode = WAL');
  db.exec('CREATE TABLE rows (id INTEGER PRIMARY KEY, payload BLOB NOT NULL)');
  db.close();
  checkpointer = null;
  connections = [];
});

afterEach(() => {
  checkpointer?.stop();
  for (const connection of connections) connection.close();
  rmSync(dir, { recursive: true, force: true });
});

function open(): Database.Database {
  const db = new Database(path);
  connections.push(db);
  return db;
}

function startWriter(busy = false): { stop: () => Promise<number> } {
  const worker = new Worker(writerSource, { eval: true, workerData: { path, busy, betterSqlite3: resolvePath('better-sqlite3') } });
  return {
    stop: async () => {
      const written = new Promise<number>((resolve, reject) => {
        worker.once('message', resolve);
        worker.once('error', reject);
      });
      worker.postMessage('stop');
      const count = await written;
      await worker.terminate();
      return count;
    },
  };
}

function resolvePath(name: string): string {
  return new URL(import.meta.resolve(name)).pathname;
}

function startCheckpointer(options: Partial<WalCheckpointerOptions>): Array<{ outcome: RewindOutcome; passes: number }> {
  const chases: Array<{ outcome: RewindOutcome; passes: number }> = [];
  const db = open();
  db.pragma('busy_timeout = 0');
  checkpointer = new WalCheckpointer(db, {
    intervalMs: 20, rewindFramesMin: 200, restartFramesMin: 800, chasePassesMax: 64, restartWaitMs: 20,
    onChase: (outcome, passes) => chases.push({ outcome, passes }),
    ...options,
  });
  checkpointer.start();
  return chases;
}

async function until(condition: () => boolean, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition() && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 10));
}

function walFrames(): number {
  return Math.floor(statSync(`${path}-wal`).size / (pageBytes + 24));
}

it('gets the writer to rewind the log itself under steady writes, with no RESTART', async () => {
  const writer = startWriter();
  const chases = startCheckpointer({});
  const startedMs = Date.now();
  await until(() => chases.filter((chase) => chase.outcome === 'writer').length >= 3 && Date.now() - startedMs > 1_500, 20_000);
  const written = await writer.stop();
  expect(chases.filter((chase) => chase.outcome === 'writer').length).toBeGreaterThanOrEqual(3);
  expect(chases.filter((chase) => chase.outcome === 'restart')).toEqual([]);
  // The log was rewound, not grown: it holds far fewer frames than were written.
  expect(written).toBeGreaterThan(600);
  expect(walFrames()).toBeLessThan(written / 2);
  expect((open().prepare('SELECT count(*) AS n FROM rows').get() as { n: number }).n).toBe(written);
});

it('defers the rewind while a reader holds an old snapshot, and rewinds once it lets go', async () => {
  const writer = startWriter();
  // A reader holding a snapshot from before most of the writes: no checkpoint can copy
  // the frames after it, so no chase can catch up, and a RESTART cannot finish either.
  const reader = open();
  reader.prepare('BEGIN').run();
  reader.prepare('SELECT count(*) FROM rows').get();
  const chases = startCheckpointer({});
  await until(() => chases.some((chase) => chase.outcome === 'deferred') && walFrames() > 800, 20_000);
  expect(chases.filter((chase) => chase.outcome === 'writer' || chase.outcome === 'next-commit')).toEqual([]);
  const framesHeld = walFrames();
  expect(framesHeld).toBeGreaterThan(800);
  // The reader lets go: the next chase rewinds the log, by the writer or by a RESTART.
  reader.prepare('COMMIT').run();
  const before = chases.length;
  await until(() => chases.slice(before).some((chase) => chase.outcome !== 'deferred'), 20_000);
  const written = await writer.stop();
  expect(chases.slice(before).some((chase) => chase.outcome === 'restart' || chase.outcome === 'writer')).toBe(true);
  const [after] = open().pragma('wal_checkpoint(PASSIVE)') as Array<{ log: number }>;
  expect(after?.log).toBeLessThan(framesHeld);
  expect((open().prepare('SELECT count(*) AS n FROM rows').get() as { n: number }).n).toBe(written);
});

it('rewinds the log with a RESTART when the writer never pauses long enough for a chase', async () => {
  const writer = startWriter(true);
  // Two passes a chase: the second never finds the log wholly copied while commits run back to back.
  const chases = startCheckpointer({ chasePassesMax: 2, restartWaitMs: 2_000 });
  await until(() => chases.some((chase) => chase.outcome === 'restart'), 20_000);
  const written = await writer.stop();
  expect(chases.some((chase) => chase.outcome === 'restart')).toBe(true);
  expect((open().prepare('SELECT count(*) AS n FROM rows').get() as { n: number }).n).toBe(written);
});

it('leaves the rewind to the next commit of an idle writer, and does not chase it again every tick', async () => {
  const writer = open();
  writer.pragma('wal_autocheckpoint = 0');
  const insert = writer.prepare('INSERT INTO rows (payload) VALUES (?)');
  for (let i = 0; i < 300; i++) insert.run(Buffer.alloc(pageBytes - 200, 1));
  const chases = startCheckpointer({});
  await until(() => chases.length > 0, 5_000);
  expect(chases).toEqual([{ outcome: 'next-commit', passes: 2 }]);
  // Ten more ticks with nothing written: no new chase.
  await new Promise((resolve) => setTimeout(resolve, 10 * 20));
  expect(chases).toHaveLength(1);
  // The next commit finds the log wholly copied and writes it from its start.
  insert.run(Buffer.alloc(16, 2));
  const [after] = open().pragma('wal_checkpoint(PASSIVE)') as Array<{ log: number }>;
  expect(after?.log).toBeLessThan(10);
});
