import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
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
db.pragma('busy_timeout = 5000');
db.pragma('synchronous = FULL');
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
let workers: Worker[];

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'dsu-wal-'));
  path = join(dir, 'unit.db');
  const db = new Database(path);
  db.pragma('journal_mode = WAL');
  db.exec('CREATE TABLE rows (id INTEGER PRIMARY KEY, payload BLOB NOT NULL)');
  db.close();
  checkpointer = null;
  connections = [];
  workers = [];
});

afterEach(async () => {
  checkpointer?.stop();
  for (const worker of workers) await worker.terminate();
  for (const connection of connections) connection.close();
  rmSync(dir, { recursive: true, force: true });
});

function open(): Database.Database {
  const db = new Database(path);
  connections.push(db);
  return db;
}

function startWriter(busy = false): { stop: () => Promise<number> } {
  const worker = new Worker(writerSource, { eval: true, workerData: { path, busy, betterSqlite3: fileURLToPath(import.meta.resolve('better-sqlite3')) } });
  workers.push(worker);
  // A writer that fails (SQLITE_BUSY past its timeout) fails the test at stop().
  const outcome = new Promise<number>((resolve, reject) => {
    worker.once('message', resolve);
    worker.once('error', reject);
    worker.once('exit', (code) => reject(new Error(`writer exited with ${code} before it was stopped`)));
  });
  outcome.catch(() => {});
  return {
    stop: async () => {
      worker.postMessage('stop');
      return outcome;
    },
  };
}

function startCheckpointer(options: Partial<WalCheckpointerOptions>): Array<{ outcome: RewindOutcome; passes: number }> {
  const chases: Array<{ outcome: RewindOutcome; passes: number }> = [];
  const db = open();
  db.pragma('busy_timeout = 0');
  checkpointer = new WalCheckpointer(db, {
    intervalMs: 20, rewindFramesMin: 200, restartFramesMin: 800, chasePassesMax: 64, writerIdleMs: 10, restartWaitMs: 20,
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
  try {
    return Math.floor(statSync(`${path}-wal`).size / (pageBytes + 24));
  } catch {
    return 0;
  }
}

/** The WAL header's checkpoint sequence number, which SQLite increments each time the log starts over. */
function walRewinds(): number {
  return readFileSync(`${path}-wal`).readUInt32BE(12);
}

it('gets the writer to rewind the log itself under steady writes, with no RESTART', async () => {
  const writer = startWriter();
  // No RESTART possible: every rewind is the writer's own.
  await until(() => walFrames() > 0, 5_000);
  const rewindsBefore = walRewinds();
  const chases = startCheckpointer({ restartFramesMin: 1_000_000_000 });
  await until(() => chases.filter((chase) => chase.outcome === 'writer').length >= 3, 30_000);
  const written = await writer.stop();
  expect(chases.filter((chase) => chase.outcome === 'writer').length).toBeGreaterThanOrEqual(3);
  expect(walRewinds() - rewindsBefore).toBeGreaterThanOrEqual(3);
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
  // until() gives up quietly: the deferral itself is asserted, not only the absence of a rewind.
  expect(chases.some((chase) => chase.outcome === 'deferred')).toBe(true);
  expect(chases.filter((chase) => chase.outcome === 'writer' || chase.outcome === 'next-commit')).toEqual([]);
  const framesHeld = walFrames();
  expect(framesHeld).toBeGreaterThan(800);
  // The reader lets go: a later chase rewinds the log, by the writer or by a RESTART.
  reader.prepare('COMMIT').run();
  const before = chases.length;
  await until(() => chases.slice(before).some((chase) => chase.outcome === 'writer' || chase.outcome === 'restart'), 30_000);
  const written = await writer.stop();
  expect(chases.slice(before).some((chase) => chase.outcome === 'writer' || chase.outcome === 'restart')).toBe(true);
  // The writer ran on after that chase: the log it left is shorter than the one held.
  const [after] = open().pragma('wal_checkpoint(PASSIVE)') as Array<{ log: number }>;
  expect(after?.log).toBeLessThan(framesHeld);
  expect((open().prepare('SELECT count(*) AS n FROM rows').get() as { n: number }).n).toBe(written);
});

it('rewinds the log with a RESTART when the writer never pauses long enough for a chase', async () => {
  const writer = startWriter(true);
  // Two passes a chase: too few to find a gap between commits that run back to back.
  await until(() => walFrames() > 0, 5_000);
  const rewindsBefore = walRewinds();
  const chases = startCheckpointer({ chasePassesMax: 2, restartWaitMs: 2_000 });
  await until(() => chases.filter((chase) => chase.outcome === 'restart').length >= 2, 30_000);
  const written = await writer.stop();
  expect(chases.filter((chase) => chase.outcome === 'restart').length).toBeGreaterThanOrEqual(2);
  // The writer's first transaction after the first RESTART started the log over.
  expect(walRewinds()).toBeGreaterThan(rewindsBefore);
  expect((open().prepare('SELECT count(*) AS n FROM rows').get() as { n: number }).n).toBe(written);
});

it('leaves the rewind to the next commit of an idle writer, and does not chase it again every tick', async () => {
  const writer = open();
  writer.pragma('wal_autocheckpoint = 0');
  const insert = writer.prepare('INSERT INTO rows (payload) VALUES (?)');
  for (let i = 0; i < 300; i++) insert.run(Buffer.alloc(pageBytes - 200, 1));
  const chases = startCheckpointer({});
  await until(() => chases.length > 0, 5_000);
  expect(chases.map((chase) => chase.outcome)).toEqual(['next-commit']);
  // Ten more ticks with nothing written: no new chase.
  await new Promise((resolve) => setTimeout(resolve, 10 * 20));
  expect(chases).toHaveLength(1);
  // The next commit finds the log wholly copied and writes it from its start.
  insert.run(Buffer.alloc(16, 2));
  const [after] = open().pragma('wal_checkpoint(PASSIVE)') as Array<{ log: number }>;
  expect(after?.log).toBeLessThan(10);
});

// The chase's decisions on scripted checkpoint results, without a disk or a second thread.
function scripted(rows: Array<[busy: number, log: number, checkpointed: number]>): { db: Database.Database; modes: string[] } {
  const modes: string[] = [];
  const db = {
    pragma: (sql: string) => {
      const mode = /wal_checkpoint\((\w+)\)/.exec(sql)?.[1];
      if (mode === undefined) return [];
      modes.push(mode);
      // Past the script the log stays as it last was, wholly copied.
      const [busy, log, checkpointed] = rows.shift() ?? [0, 10, 10];
      return [{ busy, log, checkpointed }];
    },
  };
  return { db: db as unknown as Database.Database, modes };
}

const scriptedCases: Array<{ name: string; rows: Array<[number, number, number]>; outcome: RewindOutcome; modes: string[] }> = [
  { name: 'a shorter log is the writer\'s rewind', rows: [[0, 300, 300], [0, 320, 320], [0, 4, 4]], outcome: 'writer', modes: ['PASSIVE', 'PASSIVE', 'PASSIVE'] },
  { name: 'a busy pass (another checkpoint) is skipped', rows: [[0, 300, 250], [1, -1, -1], [0, 6, 6]], outcome: 'writer', modes: ['PASSIVE', 'PASSIVE', 'PASSIVE'] },
  { name: 'a log that never rewinds and is past restartFramesMin ends in a RESTART', rows: [[0, 900, 850], [0, 950, 900], [0, 1000, 950], [0, 1000, 1000]], outcome: 'restart', modes: ['PASSIVE', 'PASSIVE', 'PASSIVE', 'RESTART'] },
  { name: 'a RESTART that finds readers in its way defers', rows: [[0, 900, 850], [0, 950, 900], [0, 1000, 950], [1, 1000, 990]], outcome: 'deferred', modes: ['PASSIVE', 'PASSIVE', 'PASSIVE', 'RESTART'] },
  { name: 'below restartFramesMin a failed chase waits for the next tick', rows: [[0, 300, 250], [0, 350, 300], [0, 400, 350]], outcome: 'deferred', modes: ['PASSIVE', 'PASSIVE', 'PASSIVE'] },
];

for (const { name, rows, outcome, modes } of scriptedCases) {
  it(`scripted: ${name}`, async () => {
    const script = scripted(rows);
    const chases: RewindOutcome[] = [];
    checkpointer = new WalCheckpointer(script.db, {
      intervalMs: 1, rewindFramesMin: 200, restartFramesMin: 800, chasePassesMax: 3, writerIdleMs: 1_000, restartWaitMs: 0,
      onChase: (ended) => chases.push(ended),
    });
    checkpointer.start();
    await until(() => chases.length > 0, 5_000);
    checkpointer.stop();
    expect(chases[0]).toBe(outcome);
    expect(script.modes.slice(0, modes.length)).toEqual(modes);
  });
}

it('scripted: stop() during a chase leaves no pass behind', async () => {
  // A writer always a little ahead: the chase never catches up within its passes, so stop() lands inside it.
  const script = scripted(Array.from({ length: 5_000 }, (_, i): [number, number, number] => [0, 300 + i, 250 + i]));
  const chases: RewindOutcome[] = [];
  checkpointer = new WalCheckpointer(script.db, {
    intervalMs: 1, rewindFramesMin: 200, restartFramesMin: 1_000_000, chasePassesMax: 4_000, writerIdleMs: 1_000, restartWaitMs: 0,
    onChase: (ended) => chases.push(ended),
  });
  checkpointer.start();
  await until(() => script.modes.length >= 3, 5_000);
  expect(script.modes.length).toBeGreaterThanOrEqual(3);
  checkpointer.stop();
  // Still inside the chase when stopped: it had not ended.
  expect(chases).toEqual([]);
  const passes = script.modes.length;
  await new Promise((resolve) => setTimeout(resolve, 50));
  expect(script.modes.length).toBe(passes);
});
