import { appendFileSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { createLogger } from '../domain/log.js';
import { appendDurably, readCompleteLines } from '../domain/durable-file.js';
import { CardNumberCipher } from '../domain/card-number.js';
import { deriveCardKeys, demoCardHashKeyHex } from '../domain/card-protect.js';
import { luhnCheckDigit, luhnValid } from '../domain/luhn.js';
import { makeAccountId, makePan, maskCardNumbers, maskPan, parsePan } from '../domain/pan.js';
import { convertMinor, feeMinor, makeFxTable, parseDecimalRate, shareMinor } from '../domain/money.js';
import { Router } from '../gateway/router.js';
import { creditLimitForScore, parseApplicants } from '../deploy/bulk-issuance.js';

const cipher = deriveCardKeys(demoCardHashKeyHex).cardNumber;

describe('card numbers', () => {
  it('computes Luhn check digits (known test numbers)', () => {
    expect(luhnValid('4111111111111111')).toBe(true);
    expect(luhnValid('4111111111111112')).toBe(false);
    expect(luhnCheckDigit('7992739871')).toBe(3);
  });

  it('carries the IIN, the enciphered account number and the card sequence, and is Luhn-valid', () => {
    const accountId = makeAccountId('622588', 1234);
    expect(accountId).toBe('62258800001234');
    const prefix = cipher.cardPrefix(accountId);
    for (let sequence = 0; sequence <= 9; sequence++) {
      const pan = makePan(cipher, accountId, sequence);
      expect(pan).toHaveLength(16);
      expect(luhnValid(pan)).toBe(true);
      expect(parsePan(pan)).toEqual({ ok: true, cardPrefix: prefix, cardSequence: sequence });
    }
    // The account id is not in the card number; only the key leads from one to the other.
    expect(prefix.slice(0, 6)).toBe('622588');
    expect(prefix).not.toBe(accountId);
    expect(cipher.accountIdOf(prefix)).toBe(accountId);
    expect(new CardNumberCipher(Buffer.alloc(32, 7)).cardPrefix(accountId)).not.toBe(prefix);
    expect(parsePan('6225880000123401').ok).toBe(false);
  });

  it('enciphers account numbers as a permutation', () => {
    const seen = new Set<number>();
    for (let number = 0; number < 20_000; number++) {
      const enciphered = cipher.encipher(number);
      expect(enciphered).toBeGreaterThanOrEqual(0);
      expect(enciphered).toBeLessThan(100_000_000);
      expect(cipher.decipher(enciphered)).toBe(number);
      seen.add(enciphered);
    }
    expect(seen.size).toBe(20_000);
    for (const number of [99_999_999, 12_345_678, 50_000_000]) expect(cipher.decipher(cipher.encipher(number))).toBe(number);
    // Consecutive account numbers land far apart (no visible order in card numbers).
    const gaps = Array.from({ length: 100 }, (_, i) => Math.abs(cipher.encipher(i + 1) - cipher.encipher(i)));
    expect(gaps.filter((gap) => gap < 1_000).length).toBeLessThan(5);
  });

  it('masks card numbers in logs, and only card numbers', () => {
    const pan = makePan(cipher, '62258800001234', 0);
    expect(maskPan(pan)).toBe(`622588******${pan.slice(-4)}`);
    // 4111111111111111 is a Luhn-valid card number of another IIN; 1234567890123456 fails Luhn.
    const line = JSON.stringify({ msg: `declined ${pan}`, account: '62258800001234', visa: '4111111111111111', other: '1234567890123456' });
    const masked = maskCardNumbers(line);
    expect(masked.includes(pan)).toBe(false);
    expect(masked.includes(maskPan(pan))).toBe(true);
    expect(masked.includes('4111111111111111')).toBe(false);
    expect(masked.includes('411111******1111')).toBe(true);
    expect(masked.includes('62258800001234')).toBe(true);
    expect(masked.includes('1234567890123456')).toBe(true);
  });

  it('the logger masks a card number wherever a caller puts it', () => {
    const pan = makePan(cipher, '62258800001234', 0);
    const lines: string[] = [];
    const log = createLogger('test', (line) => lines.push(line));
    log.warn(`declined card ${pan}`, { pan, nested: { card: pan } });
    expect(lines).toHaveLength(1);
    expect(lines[0]).not.toContain(pan);
    expect(lines[0]!.split(maskPan(pan)).length - 1).toBe(3);
  });
});

describe('money', () => {
  const fx = makeFxTable('CNY', { HKD: '0.9140', USD: '7.1200', JPY: '0.0476' });

  it('parses decimal rates exactly, never through a float', () => {
    expect(parseDecimalRate('7.1200')).toEqual({ numerator: 71200n, scale: 4 });
    expect(() => parseDecimalRate('-1')).toThrow();
    expect(() => parseDecimalRate('1e5')).toThrow();
  });

  it('converts with one half-up rounding, across minor-unit exponents', () => {
    expect(convertMinor(10_000, 'USD', 'CNY', fx)).toBe(71_200);
    expect(convertMinor(10_000, 'JPY', 'CNY', fx)).toBe(47_600);
    expect(convertMinor(71_200, 'CNY', 'HKD', fx)).toBe(77_899);
    expect(convertMinor(1, 'USD', 'HKD', fx)).toBe(8); // 0.0712 / 0.914 = 0.0779 HKD
    expect(convertMinor(100, 'EUR', 'CNY', fx)).toBe(null);
    // Far beyond 2^53 in the intermediate product, exact in BigInt.
    expect(convertMinor(9_000_000_000_000, 'USD', 'CNY', fx)).toBe(64_080_000_000_000);
  });

  it('rounds basis-point fees half up', () => {
    expect(feeMinor(10_000, 150)).toBe(150);
    expect(feeMinor(33, 150)).toBe(0); // 0.495
    expect(feeMinor(34, 150)).toBe(1); // 0.51
    expect(feeMinor(0, 150)).toBe(0);
  });

  it('takes a share of an amount exactly, half up, past the range where a double is exact', () => {
    expect(shareMinor(5, 1, 2)).toBe(3);
    expect(shareMinor(3, 1, 2)).toBe(2);
    expect(shareMinor(1_000, 1, 3)).toBe(333);
    // hold * reversed passes 2^53 here, and Math.round(hold * reversed / txn) gives
    // 2,692,946,969,551: one minor unit more than the exact half-up share.
    expect(shareMinor(6_026_262_558_018, 2_340_214_472_878, 5_236_919_633_063)).toBe(2_692_946_969_550);
  });
});

describe('routing ring', () => {
  const accounts = Array.from({ length: 100_000 }, (_, i) => makeAccountId('622588', (i * 7_919 + 13) % 100_000_000));

  function shares(router: Router): Map<string, number> {
    const counts = new Map<string, number>();
    for (const accountId of accounts) {
      const unit = router.unitOfAccount(accountId);
      counts.set(unit, (counts.get(unit) ?? 0) + 1);
    }
    return counts;
  }

  it('gives each unit its weight share of accounts within 5% (relative)', () => {
    const members = [{ id: 'dsu-1', weight: 1 }, { id: 'dsu-2', weight: 1 }, { id: 'dsu-3', weight: 1 }, { id: 'dsu-4', weight: 2 }];
    const counts = shares(new Router(members, 1000, cipher));
    for (const member of members) {
      const expected = (accounts.length * member.weight) / 5;
      const actual = counts.get(member.id) ?? 0;
      expect(Math.abs(actual - expected) / expected, member.id).toBeLessThan(0.05);
    }
  });

  it('moves only the new unit share of accounts when a unit is added', () => {
    const four = new Router(['dsu-1', 'dsu-2', 'dsu-3', 'dsu-4'].map((id) => ({ id, weight: 1 })), 1000, cipher);
    const five = new Router(['dsu-1', 'dsu-2', 'dsu-3', 'dsu-4', 'dsu-5'].map((id) => ({ id, weight: 1 })), 1000, cipher);
    let moved = 0;
    for (const accountId of accounts) {
      const before = four.unitOfAccount(accountId);
      const after = five.unitOfAccount(accountId);
      if (before !== after) {
        moved++;
        expect(after).toBe('dsu-5');
      }
    }
    expect(moved / accounts.length).toBeGreaterThan(0.15);
    expect(moved / accounts.length).toBeLessThan(0.25);
  });

  it('routes authorization ids to the unit they name', () => {
    const router = new Router([{ id: 'dsu-1', weight: 1 }], 10, cipher);
    expect(router.unitOfAuthorization('dsu-1~abc')).toBe('dsu-1');
    expect(router.unitOfAuthorization('dsu-7~abc')).toBe(null);
    expect(router.unitOfAuthorization('abc')).toBe(null);
  });
});

describe('bulk issuance inputs', () => {
  const bands = [{ minScore: 800, creditLimitMinor: 10_000_000 }, { minScore: 650, creditLimitMinor: 2_000_000 }];

  it('maps a score to the limit of its band and declines below the lowest', () => {
    expect(creditLimitForScore(bands, 850)).toBe(10_000_000);
    expect(creditLimitForScore(bands, 800)).toBe(10_000_000);
    expect(creditLimitForScore(bands, 799)).toBe(2_000_000);
    expect(creditLimitForScore(bands, 649)).toBe(null);
  });

  it('reads CSV and JSON applicant files and rejects bad rows with their line', () => {
    expect(parseApplicants('id,score\nA1,700\nA2,810\n', 'csv')).toEqual([{ id: 'A1', score: 700 }, { id: 'A2', score: 810 }]);
    expect(parseApplicants('[{"id":"B1","score":640,"product":"platinum"}]', 'json')).toEqual([{ id: 'B1', score: 640, product: 'platinum' }]);
    expect(() => parseApplicants('id,score\nA1,high\n', 'csv')).toThrow(/applicant 1/);
    expect(() => parseApplicants('name,score\nA1,700\n', 'csv')).toThrow(/header/);
  });
});

describe('append-only files', () => {
  it('cut a torn last line off, so that the next append is not glued onto it', () => {
    const dir = mkdtempSync(join(tmpdir(), 'dsu-append-'));
    try {
      const path = join(dir, 'log.ndjson');
      expect(readCompleteLines(path)).toEqual([]);
      appendDurably(path, '{"seq":1}\n');
      appendDurably(path, '{"seq":2}\n');
      // A crash in the middle of the third append.
      appendFileSync(path, '{"seq":3,"at');
      expect(readCompleteLines(path)).toEqual(['{"seq":1}', '{"seq":2}']);
      appendDurably(path, '{"seq":3}\n');
      expect(readCompleteLines(path)).toEqual(['{"seq":1}', '{"seq":2}', '{"seq":3}']);
      expect(readFileSync(path, 'utf8')).toBe('{"seq":1}\n{"seq":2}\n{"seq":3}\n');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
