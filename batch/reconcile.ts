import type Database from 'better-sqlite3';
import { request } from 'undici';

// Reconciliation of one unit for one business date: authorizations against
// clearing against the ledger against the unit. Every total that must agree is
// compared, and every disagreement is listed with what it concerns. Explained
// differences (late presentments, force posts, expiries) are counted by kind and
// are not mismatches.

export interface Reconciliation {
  unit: string;
  date: string;
  authorizations: Record<string, { count: number; holdMinor: number }>;
  clearing: Record<string, { count: number; amountMinor: number }>;
  ledger: { debitMinor: number; creditMinor: number; receivableMinor: number; accountBalancesMinor: number; entries: number };
  postings: { sentMinor: number; unsent: number; rejected: number };
  /** The unit's own sums over its accounts, read after the postings were sent. */
  unitTotals: UnitTotals;
  statements: number;
  mismatches: string[];
}

export interface UnitTotals {
  accounts: number;
  postedMinor: number;
  openHoldsMinor: number;
}

export async function fetchUnitTotals(unitUrl: string): Promise<UnitTotals> {
  const response = await request(`${unitUrl}/v1/totals`, { headersTimeout: 30_000, bodyTimeout: 30_000 });
  const body = (await response.body.json()) as UnitTotals;
  if (response.statusCode !== 200) throw new Error(`unit ${unitUrl} totals answered ${response.statusCode}`);
  return body;
}

export function reconcile(db: Database.Database, unitId: string, date: string, unitTotals: UnitTotals): Reconciliation {
  const authorizations: Reconciliation['authorizations'] = {};
  for (const row of db.prepare('SELECT status, count(*) AS count, coalesce(sum(hold_minor), 0) AS hold FROM authorizations GROUP BY status').all() as Array<{ status: string; count: number; hold: number }>) {
    authorizations[row.status] = { count: row.count, holdMinor: row.hold };
  }
  const clearing: Reconciliation['clearing'] = {};
  for (const row of db.prepare('SELECT match, count(*) AS count, sum(amount_minor) AS amount FROM clearing WHERE business_date = ? GROUP BY match').all(date) as Array<{ match: string; count: number; amount: number }>) {
    clearing[row.match] = { count: row.count, amountMinor: row.amount };
  }
  // One pass over the ledger (every day's entries) for its totals; the entries listed only when there are some.
  const ledger = db.prepare(`SELECT coalesce(sum(amount_minor), 0) AS debit, coalesce(sum(amount_minor), 0) AS credit,
    coalesce(sum(CASE WHEN debit_ledger LIKE 'customer:%' THEN amount_minor ELSE 0 END)
      - sum(CASE WHEN credit_ledger LIKE 'customer:%' THEN amount_minor ELSE 0 END), 0) AS receivable,
    count(*) AS entries, coalesce(sum(debit_ledger = credit_ledger), 0) AS degenerate FROM entries`).get() as { debit: number; credit: number; receivable: number; entries: number; degenerate: number };
  const totals = { debit: ledger.debit, credit: ledger.credit };
  const { receivable, entries } = ledger;
  const balances = db.prepare('SELECT coalesce(sum(purchase_minor + cash_minor + fee_minor + interest_minor), 0) FROM accounts').pluck().get() as number;
  const sentMinor = db.prepare('SELECT coalesce(sum(post_minor), 0) FROM outbox WHERE sent = 1').pluck().get() as number;
  const unsent = db.prepare('SELECT count(*) FROM outbox WHERE sent = 0').pluck().get() as number;
  const rejected = db.prepare('SELECT reference, account_id FROM outbox WHERE sent = 2').all() as Array<{ reference: string; account_id: string }>;
  // Each entry is one debit and one credit of one amount (see ledger-store.ts), so the
  // totals agree by construction; an entry whose two sides name the same ledger would not move money.
  const degenerate = ledger.degenerate === 0 ? [] : db.prepare('SELECT reference FROM entries WHERE debit_ledger = credit_ledger').pluck().all() as string[];
  const unmatched = db.prepare(`SELECT c.record_id FROM clearing c LEFT JOIN authorizations a ON a.authorization_id = c.authorization_id
    WHERE c.business_date = ? AND c.authorization_id IS NOT NULL AND a.authorization_id IS NULL`).pluck().all(date) as string[];
  const unposted = db.prepare(`SELECT DISTINCT c.partition FROM clearing c LEFT JOIN steps s ON s.business_date = c.business_date AND s.step = 'post' AND s.partition = c.partition
    WHERE c.business_date = ? AND s.step IS NULL`).pluck().all(date) as number[];
  const mismatches: string[] = [];
  if (totals.debit !== totals.credit) mismatches.push(`ledger debits ${totals.debit} != credits ${totals.credit}`);
  for (const reference of degenerate) mismatches.push(`entry ${reference} debits and credits the same ledger`);
  if (receivable !== balances) mismatches.push(`customer receivables ${receivable} != account balances ${balances}`);
  // Every posted balance in the unit comes from batch postings: the unit's sum must be the ledger's receivables.
  if (unitTotals.postedMinor !== receivable) mismatches.push(`unit posted balances ${unitTotals.postedMinor} != ledger receivables ${receivable}`);
  if (sentMinor !== receivable) mismatches.push(`postings sent ${sentMinor} != ledger receivables ${receivable}`);
  if (unsent > 0) mismatches.push(`${unsent} postings not yet sent to the unit`);
  for (const row of rejected) mismatches.push(`posting ${row.reference} rejected by the unit (account ${row.account_id})`);
  for (const id of unmatched) mismatches.push(`clearing ${id} names an authorization the unit never approved`);
  for (const partition of unposted) mismatches.push(`clearing of partition ${partition} not posted`);
  const statements = db.prepare('SELECT count(*) FROM statements WHERE statement_date = ?').pluck().get(date) as number;
  return {
    unit: unitId, date, authorizations, clearing,
    ledger: { debitMinor: totals.debit, creditMinor: totals.credit, receivableMinor: receivable, accountBalancesMinor: balances, entries },
    postings: { sentMinor, unsent, rejected: rejected.length }, unitTotals, statements, mismatches,
  };
}
