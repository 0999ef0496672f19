import type Database from 'better-sqlite3';
import { recorded, type ChangeRecorder, type WriteStatement } from './change-log.js';

// Statements are prepared once at start-up; the authorization path only binds and runs.

export interface CardAccountRow {
  account_id: string;
  last4: string;
  expiry: string;
  cvv_hash: Buffer;
  status: string;
  cash_day: string;
  cash_amount: number;
  cash_count: number;
  product: string;
  currency: string;
  credit_limit: number;
  posted_balance: number;
  open_holds: number;
}

export interface AccountRow {
  account_id: string;
  product: string;
  currency: string;
  credit_limit: number;
  posted_balance: number;
  open_holds: number;
  cards: number;
}

export interface HoldRow {
  authorization_id: string;
  account_id: string;
  mcc: string;
  txn_currency: string;
  txn_amount: number;
  hold_amount: number;
  status: string;
  expires_at: number;
}

/** Every write the engine makes, by name: recorded on the primary, replayed by name on the standby. */
const writeSql = {
  insertAccount: 'INSERT INTO accounts (account_id, product, currency, credit_limit, opened_at) VALUES (?, ?, ?, ?, ?)',
  incrementCards: 'UPDATE accounts SET cards = cards + 1 WHERE account_id = ?',
  addOpenHolds: 'UPDATE accounts SET open_holds = open_holds + ? WHERE account_id = ?',
  settleAccount: `UPDATE accounts SET open_holds = open_holds - ?, posted_balance = posted_balance + ? WHERE account_id = ?
      RETURNING account_id, product, currency, credit_limit, posted_balance, open_holds, cards`,
  insertCard: 'INSERT INTO cards (pan_hash, account_id, sequence, last4, expiry, cvv_hash, status) VALUES (?, ?, ?, ?, ?, ?, ?)',
  updateCardStatus: 'UPDATE cards SET status = ? WHERE pan_hash = ?',
  updateCashCounters: 'UPDATE cards SET cash_day = ?, cash_amount = ?, cash_count = ? WHERE pan_hash = ?',
  insertHold: `
      INSERT INTO holds (authorization_id, account_id, pan_hash, type, channel, merchant_id, mcc, txn_currency,
                         txn_amount, hold_amount, fee_amount, status, created_at, expires_at)
      VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'open', ?, ?)`,
  updateHold: 'UPDATE holds SET txn_amount = ?, hold_amount = ?, status = ?, expires_at = ? WHERE authorization_id = ?',
  insertJournal: `
      INSERT INTO journal (at, kind, account_id, authorization_id, amount, currency, detail, idempotency_key, fingerprint, answer, version)
      VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
  insertAlias: 'INSERT OR IGNORE INTO authorization_aliases (alias, authorization_id) VALUES (?, ?)',
  setMeta: 'INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value',
} as const;

type WriteName = keyof typeof writeSql;

/** The standby's side: the same write statements, by name, to replay recorded changes. */
export function prepareWriteStatements(db: Database.Database): Map<string, Database.Statement> {
  return new Map(Object.entries(writeSql).map(([name, sql]) => [name, db.prepare(sql)]));
}

export function prepareStatements(db: Database.Database, recorder: ChangeRecorder = { changes: null }) {
  const write = (name: WriteName): WriteStatement => recorded(name, db.prepare(writeSql[name]), recorder);
  return {
    selectCardAccount: db.prepare(`
      SELECT c.account_id, c.last4, c.expiry, c.cvv_hash, c.status, c.cash_day, c.cash_amount, c.cash_count,
             a.product, a.currency, a.credit_limit, a.posted_balance, a.open_holds
      FROM cards c JOIN accounts a ON a.account_id = c.account_id WHERE c.pan_hash = ?`),
    selectAccount: db.prepare('SELECT account_id, product, currency, credit_limit, posted_balance, open_holds, cards FROM accounts WHERE account_id = ?'),
    insertAccount: write('insertAccount'),
    incrementCards: write('incrementCards'),
    addOpenHolds: write('addOpenHolds'),
    settleAccount: write('settleAccount'),
    insertCard: write('insertCard'),
    updateCardStatus: write('updateCardStatus'),
    updateCashCounters: write('updateCashCounters'),
    insertHold: write('insertHold'),
    selectHold: db.prepare(`SELECT authorization_id, account_id, mcc, txn_currency, txn_amount, hold_amount, status, expires_at FROM holds
      WHERE authorization_id = coalesce((SELECT authorization_id FROM authorization_aliases WHERE alias = @id), @id)`),
    insertAlias: write('insertAlias'),
    updateHold: write('updateHold'),
    selectExpiredHolds: db.prepare(`
      SELECT authorization_id, account_id, mcc, txn_currency, txn_amount, hold_amount, status, expires_at
      FROM holds WHERE status = 'open' AND expires_at <= ? ORDER BY expires_at LIMIT ?`),
    selectIdempotency: db.prepare('SELECT fingerprint, answer FROM journal WHERE idempotency_key = ?'),
    insertJournal: write('insertJournal'),
  };
}

export type Statements = ReturnType<typeof prepareStatements>;
