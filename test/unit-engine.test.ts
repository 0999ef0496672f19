import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { cvvHash, deriveCardKeys, demoCardHashKeyHex, panHash } from '../domain/card-protect.js';
import { ManualClock, msPerDay } from '../domain/clock.js';
import { decodeResultLine, encodeResultLine, type AdviceOp, type AuthorizeOp, type UnitOp } from '../domain/protocol.js';
import { makeTopology, type TopologyFile } from '../domain/topology.js';
import { UnitEngine } from '../units/engine.js';
import { openUnitDatabases, type UnitDatabases } from '../units/store.js';

// The unit's rules against a real SQLite store, with a manual clock so that time
// (hold expiry, the business day of cash limits, card expiry) can move.

const topologyFile = JSON.parse(readFileSync(new URL('../deploy/topology.json', import.meta.url), 'utf8')) as TopologyFile;
const topology = makeTopology(topologyFile);
const start = Date.UTC(2026, 10, 21, 2, 0, 0); // 10:00 in Shanghai

let dir: string;
let databases: UnitDatabases;
let clock: ManualClock;
let engine: UnitEngine;
let keyCounter = 0;

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'dsu-engine-'));
  databases = openUnitDatabases({ dataDir: dir, cacheKiB: 2048 });
  clock = new ManualClock(start);
  engine = new UnitEngine({
    unitId: 'dsu-9', db: databases.writer, keys: deriveCardKeys(demoCardHashKeyHex), products: topology.products,
    fx: topology.fx, clock, utcOffsetMinutes: topologyFile.businessDayUtcOffsetMinutes, role: 'stable',
  });
});

afterEach(() => {
  databases.reader.close();
  databases.writer.close();
  rmSync(dir, { recursive: true, force: true });
});

function apply(op: UnitOp): { status: number; code: string; body: any } {
  const line = databases.writer.transaction(() => engine.apply(op))();
  // Round-trip through the wire format, as the gateway sees it.
  const decoded = decodeResultLine(encodeResultLine(line));
  return { status: decoded.status, code: decoded.code, body: JSON.parse(decoded.body) };
}

function open(limitMinor: number, product = 'classic', currency: 'CNY' | 'HKD' | 'MOP' = 'CNY') {
  const accountId = `622588${String(10_000_000 + keyCounter++).slice(-8)}`;
  const answer = apply({ op: 'openAccount', accountId, product, creditLimit: { value: limitMinor, currency } });
  expect(answer.status).toBe(201);
  return answer.body as { accountId: string; card: { number: string; expiry: string; cvv: string } };
}

function auth(card: { number: string; expiry: string; cvv: string }, value: number, extra: Partial<AuthorizeOp> = {}): AuthorizeOp {
  return {
    op: 'authorize', idempotencyKey: `k${keyCounter++}`, pan: card.number, expiry: card.expiry, cvv: card.cvv,
    amount: { value, currency: 'CNY' }, type: 'purchase', channel: 'pos', merchant: { id: 'm', mcc: '5411', country: 'CN' },
    partialAllowed: false, ...extra,
  };
}

describe('authorization rules in the unit', () => {
  it('declines per the product parameters, with the ISO 8583 code of each rule', () => {
    const { card } = open(1_000_000);
    const cases: Array<[string, AuthorizeOp, string]> = [
      ['approved', auth(card, 1_000), '00'],
      ['wrong cvv', auth(card, 1_000, { cvv: card.cvv === '000' ? '001' : '000' }), '55'],
      ['missing cvv on e-commerce', auth(card, 1_000, { cvv: null, channel: 'ecommerce' }), '55'],
      ['missing cvv at a POS terminal is allowed', auth(card, 1_000, { cvv: null }), '00'],
      ['wrong expiry', auth(card, 1_000, { expiry: '2099-01' }), '54'],
      ['blocked MCC (gambling)', auth(card, 1_000, { merchant: { id: 'm', mcc: '7995', country: 'CN' } }), '57'],
      ['restricted country', auth(card, 1_000, { merchant: { id: 'm', mcc: '5411', country: 'KP' } }), '62'],
      ['over the product single-transaction maximum', auth(card, 100_000_001), '13'],
      ['over open-to-buy', auth(card, 999_001), '51'],
      ['refund credit places no hold', auth(card, 5_000, { type: 'refund' }), '00'],
    ];
    for (const [name, op, code] of cases) expect([name, apply(op).body.responseCode]).toEqual([name, code]);
    const account = databases.reader.prepare('SELECT open_holds FROM accounts').get() as { open_holds: number };
    expect(account.open_holds).toBe(2_000);
  });

  it('an expired card is a 54 once its month has passed', () => {
    const { card } = open(1_000_000);
    expect(apply(auth(card, 100)).body.responseCode).toBe('00');
    clock.advanceMs(61 * 31 * msPerDay);
    expect(apply(auth(card, 100)).body.responseCode).toBe('54');
  });

  it('partial approval only when the request allows it', () => {
    const { card } = open(10_000);
    expect(apply(auth(card, 12_000)).body.responseCode).toBe('51');
    const partial = apply(auth(card, 12_000, { partialAllowed: true })).body;
    expect(partial).toMatchObject({ responseCode: '10', approved: true, approvedAmount: { value: 10_000, currency: 'CNY' }, availableCredit: { value: 0 } });
  });

  it('cash withdrawals count against daily amount (61) and count (65) limits per card, reset the next business day', () => {
    const { card } = open(100_000_000);
    const cash = (value: number) => auth(card, value, { type: 'cash', channel: 'atm', merchant: { id: 'atm-1', mcc: '6011', country: 'CN' } });
    expect(apply(cash(1_500_000)).body.responseCode).toBe('00');
    expect(apply(cash(600_000)).body.responseCode).toBe('61'); // 2,100,000 > 2,000,000
    for (let i = 0; i < 4; i++) expect(apply(cash(10_000)).body.responseCode).toBe('00');
    expect(apply(cash(10_000)).body.responseCode).toBe('65'); // the sixth of the day
    clock.advanceMs(msPerDay);
    expect(apply(cash(600_000)).body.responseCode).toBe('00');
  });

  it('converts foreign currency at the configured rate plus the cross-border fee', () => {
    const { card } = open(1_000_000, 'classic', 'HKD');
    // 100.00 USD = 712.00 CNY = 778.99 HKD (712 / 0.914, half up); 1.5% fee = 11.68 HKD.
    const answer = apply(auth(card, 10_000, { amount: { value: 10_000, currency: 'USD' } })).body;
    expect(answer).toMatchObject({ responseCode: '00', approvedAmount: { value: 10_000, currency: 'USD' } });
    expect(answer.availableCredit).toEqual({ value: 1_000_000 - 77_899 - 1_168, currency: 'HKD' });
    // JPY has no minor unit: 10000 JPY = 476.00 CNY, plus 1.5% = 7.14.
    const { card: cnyCard } = open(1_000_000);
    const yen = apply(auth(cnyCard, 10_000, { amount: { value: 10_000, currency: 'JPY' } })).body;
    expect(yen.availableCredit).toEqual({ value: 1_000_000 - 47_600 - 714, currency: 'CNY' });
  });

  it('holds expire after the product hold life, and hotels hold longer', () => {
    const { card } = open(100_000);
    apply(auth(card, 10_000));
    apply(auth(card, 20_000, { merchant: { id: 'hotel', mcc: '7011', country: 'CN' } }));
    const holds = () => (databases.reader.prepare('SELECT open_holds FROM accounts').get() as { open_holds: number }).open_holds;
    clock.advanceMs(7 * msPerDay - 1);
    databases.writer.transaction(() => engine.expireHolds(clock.nowMs(), 100))();
    expect(holds()).toBe(30_000);
    clock.advanceMs(1);
    expect(databases.writer.transaction(() => engine.expireHolds(clock.nowMs(), 100))()).toBe(1);
    expect(holds()).toBe(20_000);
    clock.advanceMs(23 * msPerDay);
    expect(databases.writer.transaction(() => engine.expireHolds(clock.nowMs(), 100))()).toBe(1);
    expect(holds()).toBe(0);
    const kinds = databases.reader.prepare("SELECT count(*) FROM journal WHERE kind = 'hold.expired'").pluck().get();
    expect(kinds).toBe(2);
  });

  it('a reused idempotency key with other content is a 94 and changes nothing', () => {
    const { card } = open(100_000);
    const first = auth(card, 1_000);
    expect(apply(first).body.responseCode).toBe('00');
    expect(apply({ ...first }).body).toEqual(apply(first).body);
    expect(apply({ ...first, amount: { value: 1_001, currency: 'CNY' } }).body.responseCode).toBe('94');
    const count = databases.reader.prepare('SELECT count(*) FROM holds').pluck().get();
    expect(count).toBe(1);
  });

  it('records a stand-in approval whose request it had declined, and answers its retries with it', () => {
    const { accountId, card } = open(10_000);
    const request = auth(card, 50_000);
    // The unit declined (over the limit), and the answer was lost with the unit; the gateway's stand-in approved.
    expect(apply(request).body.responseCode).toBe('51');
    const keys = deriveCardKeys(demoCardHashKeyHex);
    const standInId = 'dsu-9~vtest00000001';
    const answer = JSON.stringify({ authorizationId: standInId, approved: true, responseCode: '00', approvedAmount: request.amount, availableCredit: null, unit: 'dsu-9', version: 'stable', standIn: true });
    const advice: AdviceOp = {
      op: 'advice', idempotencyKey: request.idempotencyKey, authorizationId: standInId, panHashHex: panHash(keys, card.number).toString('hex'),
      cvvHashHex: cvvHash(keys, card.number, card.expiry, card.cvv).toString('hex'), expiry: card.expiry, amount: request.amount, type: 'purchase',
      channel: 'pos', merchant: request.merchant, partialAllowed: false, atMs: clock.nowMs(), answer,
    };
    expect(apply(advice).body).toMatchObject({ authorizationId: standInId, approved: true });
    const openHolds = () => databases.reader.prepare('SELECT open_holds FROM accounts WHERE account_id = ?').pluck().get(accountId);
    expect(openHolds()).toBe(50_000);
    // The advice replayed again (the gateway died before marking it) changes nothing.
    expect(apply(advice).body.authorizationId).toBe(standInId);
    expect(openHolds()).toBe(50_000);
    // The channel's retry gets the approval it holds; another request under the key is a 94.
    expect(apply({ ...request }).body).toMatchObject({ authorizationId: standInId, responseCode: '00' });
    expect(apply({ ...request, amount: { value: 1, currency: 'CNY' } }).body.responseCode).toBe('94');
    // And the hold is an ordinary one: a reversal releases it.
    expect(apply({ op: 'reverse', idempotencyKey: null, authorizationId: standInId, amount: null }).body.responseCode).toBe('00');
    expect(openHolds()).toBe(0);
  });

  it('stores no card number or CVV in clear, nor an account id that spells one', () => {
    const { accountId, card } = open(100_000);
    apply(auth(card, 1_000));
    databases.writer.pragma('wal_checkpoint(TRUNCATE)');
    const bytes = readFileSync(join(dir, 'unit.db')).toString('latin1');
    expect(bytes.includes(card.number)).toBe(false);
    expect(bytes.includes(card.number.slice(-4))).toBe(true);
    // The store keys everything by the account id, which is not the card number's first 14 digits.
    expect(bytes.includes(accountId)).toBe(true);
    expect(card.number.slice(0, 14)).not.toBe(accountId);
    expect(bytes.includes(card.number.slice(0, 14))).toBe(false);
  });

  it('a journal entry for every state change, numbered without gaps', () => {
    const { card } = open(100_000);
    const approved = apply(auth(card, 1_000)).body;
    apply({ op: 'increment', idempotencyKey: null, authorizationId: approved.authorizationId, amount: { value: 500, currency: 'CNY' } });
    apply({ op: 'reverse', idempotencyKey: null, authorizationId: approved.authorizationId, amount: null });
    apply(auth(card, 1_000_000));
    const rows = databases.reader.prepare('SELECT seq, kind, amount FROM journal ORDER BY seq').all() as Array<{ seq: number; kind: string; amount: number }>;
    expect(rows.map((row) => row.kind)).toEqual(['account.opened', 'card.issued', 'auth.approved', 'hold.incremented', 'hold.reversed', 'auth.declined']);
    expect(rows.map((row) => row.seq)).toEqual([1, 2, 3, 4, 5, 6]);
    expect(rows.reduce((sum, row) => sum + row.amount, 0)).toBe(0);
  });
});

describe('settlement from batch accounting', () => {
  it('moves a matched hold into the posted balance, in parts, once per key', () => {
    const { accountId, card } = open(100_000);
    const approved = apply(auth(card, 30_000)).body;
    const settle = (key: string, releaseHoldMinor: number, postMinor: number, authorizationId: string | null = approved.authorizationId) =>
      apply({ op: 'settle', idempotencyKey: key, accountId, releases: authorizationId === null ? [] : [{ authorizationId, minor: releaseHoldMinor }], postMinor, kind: 'presentment' });
    // A split clearing: 10,000 then 20,000.
    expect(settle('c1', 10_000, 10_000).body).toMatchObject({ releasedHold: { value: 10_000 }, postedBalance: { value: 10_000 }, availableCredit: { value: 70_000 } });
    expect(settle('c1', 10_000, 10_000).body.postedBalance.value).toBe(10_000); // a rerun of the same posting
    expect(settle('c2', 20_000, 20_000).body).toMatchObject({ releasedHold: { value: 20_000 }, postedBalance: { value: 30_000 }, availableCredit: { value: 70_000 } });
    const hold = databases.reader.prepare('SELECT status, hold_amount FROM holds').get();
    expect(hold).toEqual({ status: 'cleared', hold_amount: 0 });
    // A payment needs no hold; it lowers the posted balance.
    expect(settle('p1', 0, -30_000, null).body).toMatchObject({ postedBalance: { value: 0 }, availableCredit: { value: 100_000 } });
    const row = databases.reader.prepare('SELECT open_holds, posted_balance FROM accounts WHERE account_id = ?').get(accountId);
    expect(row).toEqual({ open_holds: 0, posted_balance: 0 });
  });

  it('releases a hold named twice in one settlement (two presentments) no further than it holds', () => {
    const { accountId, card } = open(100_000);
    const approved = apply(auth(card, 30_000)).body;
    const releases = [{ authorizationId: approved.authorizationId, minor: 20_000 }, { authorizationId: approved.authorizationId, minor: 20_000 }];
    const settled = apply({ op: 'settle', idempotencyKey: 'twice', accountId, releases, postMinor: 40_000, kind: 'presentment' }).body;
    expect(settled).toMatchObject({ releasedHold: { value: 30_000 }, postedBalance: { value: 40_000 } });
    expect(databases.reader.prepare('SELECT status, hold_amount FROM holds').get()).toEqual({ status: 'cleared', hold_amount: 0 });
    expect(databases.reader.prepare('SELECT open_holds FROM accounts WHERE account_id = ?').pluck().get(accountId)).toBe(0);
  });

  it('posts a late presentment in full after its hold expired, releasing nothing', () => {
    const { accountId, card } = open(100_000);
    const approved = apply(auth(card, 5_000)).body;
    clock.advanceMs(8 * msPerDay);
    databases.writer.transaction(() => engine.expireHolds(clock.nowMs(), 100))();
    const late = apply({ op: 'settle', idempotencyKey: 'late', accountId, releases: [{ authorizationId: approved.authorizationId, minor: 5_000 }], postMinor: 5_000, kind: 'presentment' });
    expect(late.body).toMatchObject({ releasedHold: { value: 0 }, postedBalance: { value: 5_000 }, availableCredit: { value: 95_000 } });
  });
});

describe('the card-number layout of a store', () => {
  it('marks a new store, and refuses one whose cards were issued with the old layout', () => {
    open(100_000);
    expect(databases.reader.prepare("SELECT value FROM meta WHERE key = 'cardNumberLayout'").pluck().get()).toBe('2');
    // What a store of the old layout looks like: accounts, and no mark.
    databases.writer.prepare("DELETE FROM meta WHERE key = 'cardNumberLayout'").run();
    expect(() => openUnitDatabases({ dataDir: dir, cacheKiB: 2048 })).toThrow(/card-number layout 1; this build issues and routes layout 2/);
  });
});

describe('the page size of a store', () => {
  it('is the one asked for when the store is created, and an existing store keeps its own', () => {
    const other = mkdtempSync(join(tmpdir(), 'dsu-pages-'));
    try {
      const created = openUnitDatabases({ dataDir: other, cacheKiB: 2048, pageSize: 1024 });
      expect(created.writer.pragma('page_size', { simple: true })).toBe(1024);
      expect(created.writer.pragma('journal_mode', { simple: true })).toBe('wal');
      created.reader.close();
      created.writer.close();
      const reopened = openUnitDatabases({ dataDir: other, cacheKiB: 2048, pageSize: 8192 });
      expect(reopened.writer.pragma('page_size', { simple: true })).toBe(1024);
      reopened.reader.close();
      reopened.writer.close();
    } finally {
      rmSync(other, { recursive: true, force: true });
    }
    // The store made by beforeEach, without the option: SQLite's default.
    expect(databases.writer.pragma('page_size', { simple: true })).toBe(4096);
    // A size SQLite would ignore without a word is refused.
    expect(() => openUnitDatabases({ dataDir: other, cacheKiB: 2048, pageSize: 1000 })).toThrow(/pageSize is a power of two/);
  });
});
