import type Database from 'better-sqlite3';
import { request } from 'undici';
import { heldMinorKey, holdKinds, readMeta, sentMinorKey, summedHoldKinds } from './ledger-store.js';

// Reconciliation of one unit for one business date: authorizations against
// clearing against the ledger against the unit. Every total that must agree is
// compared, and every disagreement is listed with what it concerns. Explained
// differences (late presentments, force posts, expiries) are counted by kind and
// are not mismatches.

export interface Reconciliation {
  unit: string;
  date: string;
  /** The authorizations approved on the date, by their status now. */
  authorizations: Record<string, { count: number; holdMinor: number }>;
  clearing: Record<string, { count: number; amountMinor: number }>;
  ledger: { debitMinor: number; creditMinor: number; receivableMinor: number; accountBalancesMinor: number; entries: number };
  postings: { sentMinor: number; unsent: number; rejected: number };
  /** The unit's own sums over its accounts, read after the postings were sent. */
  unitTotals: UnitTotals;
  /**
   * The unit's open holds against its journal, at the journal sequence its sums were
   * read at: the hold changes of the entries the ledger read (through its cursor) and
   * of those after it (summed by the unit in the same snapshot). Null when not
   * compared, with the reason in holdsNotCompared.
   */
  holds: { journalSeq: number; throughCursorMinor: number; afterCursorMinor: number; expectedMinor: number } | null;
  holdsNotCompared: string | null;
  statements: number;
  mismatches: string[];
}

export interface UnitTotals {
  accounts: number;
  postedMinor: number;
  openHoldsMinor: number;
  /** The journal's last sequence number when the sums were read, and its amounts of some kinds after a cursor (units/feed-reader.ts). */
  journalSeq?: number;
  amountsAfter?: { after: number; kinds: string[]; minor: number };
}

/** Every kind of entry that moves open holds: those batch reads and those it counts unread. */
export const unitHoldKinds: readonly string[] = [...holdKinds, ...summedHoldKinds];

/** The unit's sums; with `holdsAfter` (the ledger's feed cursor), also its journal's hold changes after it. */
export async function fetchUnitTotals(unitUrl: string, holdsAfter: number | null = null): Promise<UnitTotals> {
  const query = holdsAfter === null ? '' : `?after=${holdsAfter}&kinds=${unitHoldKinds.join(',')}`;
  const response = await request(`${unitUrl}/v1/totals${query}`, { headersTimeout: 30_000, bodyTimeout: 30_000 });
  const body = (await response.body.json()) as UnitTotals;
  // A unit of a version before the journal sums (gray release mixes versions) knows only the plain route: its holds are not compared.
  if (response.statusCode === 404 && holdsAfter !== null) return fetchUnitTotals(unitUrl, null);
  if (response.statusCode !== 200) throw new Error(`unit ${unitUrl} totals answered ${response.statusCode}`);
  return body;
}

export function reconcile(db: Database.Database, unitId: string, date: string, unitTotals: UnitTotals): Reconciliation {
  // Every read here is bounded by one day's rows or by the accounts, never by the
  // ledger's history: the ledger's totals add up per-day rows (ledger-store.ts,
  // day_totals), the postings sent are a counter kept by the send step, and the
  // unsent and rejected postings are read through their partial indexes.
  const authorizations: Reconciliation['authorizations'] = {};
  const byStatus = db.prepare(`SELECT status, count(*) AS count, coalesce(sum(hold_minor), 0) AS hold FROM authorizations INDEXED BY authorizations_by_day
    WHERE partition = ? AND approved_date = ? GROUP BY status`);
  for (const partition of distinctKeys(db, 'SELECT partition FROM authorizations INDEXED BY authorizations_by_day WHERE partition > ? ORDER BY partition LIMIT 1', -1)) {
    for (const row of byStatus.all(partition, date) as Array<{ status: string; count: number; hold: number }>) {
      const total = authorizations[row.status] ?? { count: 0, holdMinor: 0 };
      authorizations[row.status] = { count: total.count + row.count, holdMinor: total.holdMinor + row.hold };
    }
  }
  const clearing: Reconciliation['clearing'] = {};
  for (const row of db.prepare('SELECT match, count(*) AS count, sum(amount_minor) AS amount FROM clearing WHERE business_date = ? GROUP BY match').all(date) as Array<{ match: string; count: number; amount: number }>) {
    clearing[row.match] = { count: row.count, amountMinor: row.amount };
  }
  const ledger = ledgerTotals(db, date);
  const totals = { debit: ledger.amount, credit: ledger.amount };
  const { receivable, entries } = ledger;
  const balances = db.prepare('SELECT coalesce(sum(purchase_minor + cash_minor + fee_minor + interest_minor), 0) FROM accounts').pluck().get() as number;
  const sentMinor = Number(readMeta(db, sentMinorKey));
  const unsent = db.prepare('SELECT count(*) FROM outbox INDEXED BY outbox_unsent WHERE sent = 0').pluck().get() as number;
  const rejected = db.prepare('SELECT reference, account_id FROM outbox INDEXED BY outbox_rejected WHERE sent = 2').all() as Array<{ reference: string; account_id: string }>;
  // Each entry is one debit and one credit of one amount (see ledger-store.ts), so the
  // ledger's debits and credits agree by construction: reported, not compared (a
  // comparison that cannot fail checks nothing). What can go wrong is an entry whose
  // two sides name the same ledger, which would not move money: that is compared.
  const degenerate = ledger.degenerateDates.flatMap((day) => db.prepare('SELECT reference FROM entries WHERE business_date = ? AND debit_ledger = credit_ledger').pluck().all(day) as string[]);
  const unmatched = db.prepare(`SELECT c.record_id FROM clearing c LEFT JOIN authorizations a ON a.authorization_id = c.authorization_id
    WHERE c.business_date = ? AND c.authorization_id IS NOT NULL AND a.authorization_id IS NULL`).pluck().all(date) as string[];
  const unposted = db.prepare(`SELECT DISTINCT c.partition FROM clearing c LEFT JOIN steps s ON s.business_date = c.business_date AND s.step = 'post' AND s.partition = c.partition
    WHERE c.business_date = ? AND s.step IS NULL`).pluck().all(date) as number[];
  const mismatches: string[] = [];
  for (const reference of degenerate) mismatches.push(`entry ${reference} debits and credits the same ledger`);
  if (receivable !== balances) mismatches.push(`customer receivables ${receivable} != account balances ${balances}`);
  // Every posted balance in the unit comes from batch postings: the unit's sum must be the ledger's receivables.
  if (unitTotals.postedMinor !== receivable) mismatches.push(`unit posted balances ${unitTotals.postedMinor} != ledger receivables ${receivable}`);
  if (sentMinor !== receivable) mismatches.push(`postings sent ${sentMinor} != ledger receivables ${receivable}`);
  if (unsent > 0) mismatches.push(`${unsent} postings not yet sent to the unit`);
  for (const row of rejected) mismatches.push(`posting ${row.reference} rejected by the unit (account ${row.account_id})`);
  for (const id of unmatched) mismatches.push(`clearing ${id} names an authorization the unit never approved`);
  for (const partition of unposted) mismatches.push(`clearing of partition ${partition} not posted`);
  const compared = compareHolds(db, unitTotals);
  const holds = typeof compared === 'string' ? null : compared;
  if (holds !== null && holds.expectedMinor !== unitTotals.openHoldsMinor) {
    mismatches.push(`unit open holds ${unitTotals.openHoldsMinor} != ${holds.expectedMinor} its journal accounts for at sequence ${holds.journalSeq} `
      + `(${holds.throughCursorMinor} through the ledger's cursor, ${holds.afterCursorMinor} after it)`);
  }
  const statements = db.prepare('SELECT count(*) FROM statements WHERE statement_date = ?').pluck().get(date) as number;
  return {
    unit: unitId, date, authorizations, clearing,
    ledger: { debitMinor: totals.debit, creditMinor: totals.credit, receivableMinor: receivable, accountBalancesMinor: balances, entries },
    postings: { sentMinor, unsent, rejected: rejected.length }, unitTotals, holds, holdsNotCompared: typeof compared === 'string' ? compared : null, statements, mismatches,
  };
}

/** The open holds the unit's journal accounts for, or why they are not compared (see Reconciliation.holds). */
function compareHolds(db: Database.Database, unitTotals: UnitTotals): NonNullable<Reconciliation['holds']> | string {
  const held = readMeta(db, heldMinorKey);
  if (held === null) return 'the ledger was made before it counted holds';
  const after = unitTotals.amountsAfter;
  if (after === undefined || unitTotals.journalSeq === undefined) return 'the unit does not sum its journal (an older version)';
  const cursor = Number(readMeta(db, 'feedCursor') ?? '0');
  // Sums for another cursor, or of other kinds, would not add up to the unit's.
  if (after.after !== cursor) return `the unit summed after ${after.after}, not the ledger's cursor ${cursor}`;
  if (after.kinds.join(',') !== unitHoldKinds.join(',')) return `the unit summed ${after.kinds.join(',')}, not ${unitHoldKinds.join(',')}`;
  const throughCursorMinor = Number(held);
  return { journalSeq: unitTotals.journalSeq, throughCursorMinor, afterCursorMinor: after.minor, expectedMinor: throughCursorMinor + after.minor };
}

interface DayTotals {
  entries: number;
  amount: number;
  receivable: number;
  degenerate: number;
}

/**
 * The ledger's totals over every day: the date's own, read from its entries and
 * saved as its row of day_totals (this runs after every step of the date), plus
 * the saved rows of the other days. A day with entries and no row (a run killed
 * before its reconciliation, or a ledger from before day_totals) is read from its
 * entries. The days are found by seeking the entries' key, one seek per day.
 */
function ledgerTotals(db: Database.Database, date: string): DayTotals & { degenerateDates: string[] } {
  const readDay = db.prepare(`SELECT count(*) AS entries, coalesce(sum(amount_minor), 0) AS amount,
    coalesce(sum(CASE WHEN debit_ledger LIKE 'customer:%' THEN amount_minor ELSE 0 END)
      - sum(CASE WHEN credit_ledger LIKE 'customer:%' THEN amount_minor ELSE 0 END), 0) AS receivable,
    coalesce(sum(debit_ledger = credit_ledger), 0) AS degenerate FROM entries WHERE business_date = ?`);
  const saved = db.prepare('SELECT entries, amount_minor AS amount, receivable_minor AS receivable, degenerate FROM day_totals WHERE business_date = ?');
  const today = readDay.get(date) as DayTotals;
  db.prepare(`INSERT INTO day_totals (business_date, entries, amount_minor, receivable_minor, degenerate) VALUES (?, ?, ?, ?, ?)
    ON CONFLICT (business_date) DO UPDATE SET entries = excluded.entries, amount_minor = excluded.amount_minor,
      receivable_minor = excluded.receivable_minor, degenerate = excluded.degenerate`).run(date, today.entries, today.amount, today.receivable, today.degenerate);
  const sum: DayTotals & { degenerateDates: string[] } = { entries: 0, amount: 0, receivable: 0, degenerate: 0, degenerateDates: [] };
  for (const day of distinctKeys(db, 'SELECT business_date FROM entries WHERE business_date > ? ORDER BY business_date LIMIT 1', '')) {
    const totals = day === date ? today : (saved.get(day) as DayTotals | undefined) ?? (readDay.get(day) as DayTotals);
    sum.entries += totals.entries;
    sum.amount += totals.amount;
    sum.receivable += totals.receivable;
    sum.degenerate += totals.degenerate;
    if (totals.degenerate > 0) sum.degenerateDates.push(day);
  }
  return sum;
}

/** The distinct values of an index's first column, by seeking past each one (`sql` selects the next one after `?`). */
function distinctKeys<K extends string | number>(db: Database.Database, sql: string, before: K): K[] {
  const next = db.prepare(sql).pluck();
  const keys: K[] = [];
  for (let key = next.get(before) as K | undefined; key !== undefined; key = next.get(key) as K | undefined) keys.push(key);
  return keys;
}
