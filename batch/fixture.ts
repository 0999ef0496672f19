import { calendarOf } from '../domain/authorize-rules.js';
import { msPerDay } from '../domain/clock.js';
import { deriveCardKeys, demoCardHashKeyHex } from '../domain/card-protect.js';
import { makeAccountId } from '../domain/pan.js';
import { authorizationIdSeparator } from '../domain/protocol.js';
import { Router } from '../gateway/router.js';
import { openUnitDatabases } from '../units/store.js';

// A benchmark fixture: a unit store with many accounts and a day's worth of
// approved authorizations per business date, written straight into the unit's
// schema (the way a migration or a restore would load a unit), because issuing a
// million accounts and authorizing millions of times through the API would take
// the benchmark longer than the batch run it measures. The journal entries are
// the ones the unit writes itself (account.opened, auth.approved), so batch reads
// them through the unit's feed exactly as in production. Accounts are drawn so
// that the ring routes each to this unit.

export interface FixtureOptions {
  dataDir: string;
  unitId: string;
  unitIds: string[];
  vnodesPerWeight: number;
  accounts: number;
  /** Business dates (YYYY-MM-DD) and approved authorizations per account on each. */
  days: Array<{ date: string; authorizationsPerAccount: number }>;
  utcOffsetMinutes: number;
  creditLimitMinor: number;
}

export interface FixtureResult {
  accounts: number;
  journalEntries: number;
  seconds: number;
}

const iin = '622588';

export function writeUnitFixture(options: FixtureOptions): FixtureResult {
  const started = performance.now();
  // The cluster's units and gateway take the key from the same place (CARD_HASH_KEY, or the demo key).
  const keys = deriveCardKeys(process.env['CARD_HASH_KEY'] ?? demoCardHashKeyHex);
  const router = new Router(options.unitIds.map((id) => ({ id, weight: 1 })), options.vnodesPerWeight, keys.cardNumber);
  const { writer, reader } = openUnitDatabases({ dataDir: options.dataDir, cacheKiB: 256 * 1024 });
  reader.close();
  writer.pragma('synchronous = OFF');
  const insertAccount = writer.prepare('INSERT INTO accounts (account_id, product, currency, credit_limit, open_holds, opened_at) VALUES (?, ?, ?, ?, ?, ?)');
  const insertHold = writer.prepare(`INSERT INTO holds (authorization_id, account_id, pan_hash, type, channel, merchant_id, mcc, txn_currency, txn_amount, hold_amount, fee_amount, status, created_at, expires_at)
    VALUES (?, ?, ?, 'purchase', 'pos', ?, '5411', 'CNY', ?, ?, 0, 'open', ?, ?)`);
  const insertJournal = writer.prepare('INSERT INTO journal (at, kind, account_id, authorization_id, amount, currency, detail) VALUES (?, ?, ?, ?, ?, ?, ?)');
  const noonMs = (date: string): number => Date.parse(`${date}T12:00:00Z`) - options.utcOffsetMinutes * 60_000;
  const openedAt = noonMs(options.days[0]?.date ?? '2026-01-01') - msPerDay;
  const unitIndex = options.unitIds.indexOf(options.unitId);
  let candidate = 50_000_000 + unitIndex * 10_000_000;
  let authorizations = 0;
  let journalEntries = 0;
  const panHashPlaceholder = Buffer.alloc(16);
  const accountDetail = JSON.stringify({ product: 'classic', creditLimit: { value: options.creditLimitMinor, currency: 'CNY' } });
  const chunk = writer.transaction((count: number) => {
    for (let made = 0; made < count; made++) {
      let accountId = makeAccountId(iin, candidate++);
      while (router.unitOfAccount(accountId) !== options.unitId) accountId = makeAccountId(iin, candidate++);
      const amounts: Array<{ date: string; minor: number; at: number }> = [];
      for (const day of options.days) {
        for (let i = 0; i < day.authorizationsPerAccount; i++) amounts.push({ date: day.date, minor: 1_000 + ((candidate * 7_919 + i * 104_729) % 90_000), at: noonMs(day.date) + i * 60_000 });
      }
      insertAccount.run(accountId, 'classic', 'CNY', options.creditLimitMinor, amounts.reduce((sum, a) => sum + a.minor, 0), openedAt);
      insertJournal.run(openedAt, 'account.opened', accountId, null, 0, 'CNY', accountDetail);
      journalEntries++;
      for (const amount of amounts) {
        const authorizationId = `${options.unitId}${authorizationIdSeparator}fixture${(authorizations++).toString(36).padStart(10, '0')}`;
        insertHold.run(authorizationId, accountId, panHashPlaceholder, 'm-fixture', amount.minor, amount.minor, amount.at, amount.at + 7 * msPerDay);
        insertJournal.run(amount.at, 'auth.approved', accountId, authorizationId, amount.minor, 'CNY', JSON.stringify({
          code: '00', type: 'purchase', channel: 'pos', amount: { value: amount.minor, currency: 'CNY' }, fee: 0,
          merchant: { id: 'm-fixture', mcc: '5411', country: 'CN' }, card: '0000', day: calendarOf(amount.at, options.utcOffsetMinutes).day,
        }));
        journalEntries++;
      }
    }
  });
  for (let done = 0; done < options.accounts; done += 10_000) chunk(Math.min(10_000, options.accounts - done));
  writer.pragma('wal_checkpoint(TRUNCATE)');
  writer.close();
  return { accounts: options.accounts, journalEntries, seconds: (performance.now() - started) / 1000 };
}
