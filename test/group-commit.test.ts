import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, expect, it } from 'vitest';
import { deriveCardKeys, demoCardHashKeyHex } from '../domain/card-protect.js';
import { ManualClock } from '../domain/clock.js';
import { limits } from '../domain/limits.js';
import { createLogger } from '../domain/log.js';
import { decodeResultLine, type UnitOp } from '../domain/protocol.js';
import { makeTopology, type TopologyFile } from '../domain/topology.js';
import { UnitEngine } from '../units/engine.js';
import { GroupCommitter } from '../units/group-commit.js';
import { openUnitDatabases, type UnitDatabases } from '../units/store.js';

// The group committer's background lane against a real store: batch accounting's
// postings yield to live traffic, a slice per commit, and every one is answered.

const topologyFile = JSON.parse(readFileSync(new URL('../deploy/topology.json', import.meta.url), 'utf8')) as TopologyFile;
const topology = makeTopology(topologyFile);

let dir: string;
let databases: UnitDatabases;
let engine: UnitEngine;
let commits: number[];
let committer: GroupCommitter;

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'dsu-commit-'));
  databases = openUnitDatabases({ dataDir: dir, cacheKiB: 2048 });
  engine = new UnitEngine({
    unitId: 'dsu-9', db: databases.writer, keys: deriveCardKeys(demoCardHashKeyHex), products: topology.products,
    fx: topology.fx, clock: new ManualClock(Date.UTC(2026, 10, 21, 2)), utcOffsetMinutes: topologyFile.businessDayUtcOffsetMinutes, role: 'stable',
  });
  commits = [];
  const stats = { onCommit: (ops: number) => commits.push(ops), onOp: () => {}, onLockRetry: () => {} };
  committer = new GroupCommitter(databases.writer, engine, stats, createLogger('test', () => {}), () => {});
});

afterEach(() => {
  databases.reader.close();
  databases.writer.close();
  rmSync(dir, { recursive: true, force: true });
});

function commit(ops: UnitOp[], lane: 'normal' | 'background'): Promise<string[]> {
  return new Promise((resolve) => {
    const job = { ops, done: resolve };
    if (lane === 'background') committer.submitBackground(job);
    else committer.submit(job);
  });
}

const openings = (count: number, from: number): UnitOp[] => Array.from({ length: count }, (_, index) => ({
  op: 'openAccount', accountId: `622588${String(10_000_000 + from + index).slice(-8)}`, product: 'classic', creditLimit: { value: 100_000, currency: 'CNY' },
}));

const settlements = (accountIds: string[]): UnitOp[] => accountIds.map((accountId) => ({
  op: 'settle', idempotencyKey: `batch:${accountId}`, accountId, releases: [], postMinor: 1_000, kind: 'clearing',
}));

it('answers live traffic from the first commit while background work goes a slice per commit', async () => {
  const accounts = (await commit(openings(40, 0), 'normal')).map((line) => JSON.parse(decodeResultLine(line).body).accountId as string);
  commits = [];
  const order: string[] = [];
  const background = commit(settlements(accounts), 'background').then((lines) => {
    order.push('background');
    return lines;
  });
  const live = commit(openings(1, 100), 'normal').then((lines) => {
    order.push('live');
    return lines;
  });
  const [backgroundLines, liveLines] = await Promise.all([background, live]);
  expect(order).toEqual(['live', 'background']);
  expect(decodeResultLine(liveLines[0] as string).status).toBe(201);
  // 40 postings, a slice per commit: the live opening with a small slice, then the
  // larger slices of commits with no live operation in them.
  const slice = limits.backgroundOpsPerCommit;
  const idleSlice = limits.backgroundOpsPerIdleCommit;
  expect(idleSlice).toBeGreaterThan(slice);
  const slices: number[] = [];
  for (let left = 40 - slice; left > 0; left -= idleSlice) slices.push(Math.min(idleSlice, left));
  expect(slices.length).toBeGreaterThan(1);
  expect(commits).toEqual([1 + slice, ...slices]);
  expect(backgroundLines.map((line) => decodeResultLine(line).status)).toEqual(accounts.map(() => 200));
  const balances = databases.reader.prepare('SELECT posted_balance FROM accounts WHERE account_id = ?').pluck();
  for (const accountId of accounts) expect(balances.get(accountId)).toBe(1_000);
  expect(committer.pendingOps).toBe(0);
});

it('keeps the answers of several background jobs apart and in order', async () => {
  const accounts = (await commit(openings(20, 0), 'normal')).map((line) => JSON.parse(decodeResultLine(line).body).accountId as string);
  const first = commit(settlements(accounts.slice(0, 13)), 'background');
  const second = commit(settlements(accounts.slice(13)), 'background');
  expect(committer.pendingBackgroundOps).toBe(20);
  const [a, b] = await Promise.all([first, second]);
  expect(a.map((line) => JSON.parse(decodeResultLine(line).body).accountId)).toEqual(accounts.slice(0, 13));
  expect(b.map((line) => JSON.parse(decodeResultLine(line).body).accountId)).toEqual(accounts.slice(13));
  expect(committer.pendingOps).toBe(0);
});

it('refuses whole, writing nothing, the jobs waiting when the copy stops being primary', async () => {
  let primary = true;
  const stats = { onCommit: () => {}, onOp: () => {}, onLockRetry: () => {} };
  const guarded = new GroupCommitter(databases.writer, engine, stats, createLogger('test', () => {}), () => {}, null, () => primary);
  const accounts = await new Promise<string[]>((resolve) => guarded.submit({ ops: openings(4, 0), done: resolve }));
  expect(accounts).toHaveLength(4);
  const journal = () => databases.reader.prepare('SELECT count(*) FROM journal').pluck().get() as number;
  const before = journal();
  const ids = accounts.map((line) => JSON.parse(decodeResultLine(line).body).accountId as string);
  // Accepted while primary; fenced before the next commit (the turn after submit).
  const outcome = (lane: 'normal' | 'background') => new Promise<string>((resolve) => {
    const job = { ops: lane === 'normal' ? openings(2, 100) : settlements(ids), done: () => resolve('committed'), refuse: (error: { code: string }) => resolve(error.code) };
    if (lane === 'background') guarded.submitBackground(job);
    else guarded.submit(job);
  });
  const live = outcome('normal');
  const background = outcome('background');
  const barrier = new Promise<string>((resolve) => guarded.barrier(() => resolve('released')));
  primary = false;
  expect(await live).toBe('NOT_PRIMARY');
  expect(await background).toBe('NOT_PRIMARY');
  expect(await barrier).toBe('released');
  expect(guarded.pendingOps).toBe(0);
  expect(journal()).toBe(before);
});

it('counts each operation with the code it was answered with, after a rollback too', async () => {
  const counted: string[] = [];
  const stats = { onCommit: () => {}, onOp: (_op: UnitOp, code: string) => counted.push(code), onLockRetry: () => {} };
  const counting = new GroupCommitter(databases.writer, engine, stats, createLogger('test', () => {}), () => {});
  const submit = (ops: UnitOp[]) => new Promise<string[]>((resolve) => counting.submit({ ops, done: resolve }));
  const [opened] = await submit(openings(1, 500));
  const card = JSON.parse(decodeResultLine(opened as string).body).card as { number: string; expiry: string; cvv: string };
  const authorize: UnitOp = {
    op: 'authorize', idempotencyKey: 'count-1', pan: card.number, expiry: card.expiry, cvv: card.cvv, amount: { value: 100, currency: 'CNY' },
    type: 'purchase', channel: 'pos', merchant: { id: 'm', mcc: '5411', country: 'CN' }, partialAllowed: false,
  };
  // The second operation cannot be applied (no such account id form): the whole transaction rolls back.
  const broken: UnitOp = { op: 'openAccount', accountId: 'x', product: 'classic', creditLimit: { value: 1_000, currency: 'CNY' } };
  counted.length = 0;
  const lines = await submit([authorize, broken]);
  expect(lines.map((line) => decodeResultLine(line).code)).toEqual(['96', '-']);
  // The authorization was applied as an approval before the rollback; it is counted as what it was answered: 96.
  expect(counted).toEqual(['96', '-']);
  expect((await submit([{ ...authorize, idempotencyKey: 'count-2' }])).map((line) => decodeResultLine(line).code)).toEqual(['00']);
  expect(counted).toEqual(['96', '-', '00']);
});

it('answers a background job fenced halfway with its committed answers and a failure for the rest', async () => {
  let primary = true;
  let fenceAfterCommit = false;
  const stats = {
    onCommit: (ops: number) => {
      if (fenceAfterCommit && ops > 0) primary = false;
    },
    onOp: () => {}, onLockRetry: () => {},
  };
  const guarded = new GroupCommitter(databases.writer, engine, stats, createLogger('test', () => {}), () => {}, null, () => primary);
  const opened = await new Promise<string[]>((resolve) => guarded.submit({ ops: openings(20, 700), done: resolve }));
  const ids = opened.map((line) => JSON.parse(decodeResultLine(line).body).accountId as string);
  fenceAfterCommit = true;
  // 20 settlements: a first slice of 16 commits, then the copy is fenced before the rest.
  const outcome = await new Promise<string[] | string>((resolve) => guarded.submitBackground({ ops: settlements(ids), done: resolve, refuse: (error) => resolve(error.code) }));
  expect(Array.isArray(outcome)).toBe(true);
  const statuses = (outcome as string[]).map((line) => decodeResultLine(line).status);
  expect(statuses.slice(0, 16)).toEqual(Array(16).fill(200));
  expect(statuses.slice(16)).toEqual(Array(4).fill(500));
  const posted = databases.reader.prepare("SELECT count(*) FROM journal WHERE kind = 'balance.posted'").pluck().get();
  expect(posted).toBe(16);
});
