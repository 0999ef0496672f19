import type Database from 'better-sqlite3';
import { assert } from '../domain/limits.js';
import type { SettleOp } from '../domain/protocol.js';
import type { Product, ProductTable } from '../domain/products.js';
import {
  addDays, applyPayment, balanceEffect, dailyInterestUnits, dayOfMonth, feeOnMinor, interestToPost,
  minimumPaymentMinor, postingLines, type Buckets, type PostingKind,
} from './accounting-rules.js';
import { deleteCursor, markStepDone, readCursor, stepDone, writeCursor } from './ledger-store.js';
import {
  chargebackAfterDays, chargebacksFor, forcePostsFor, paymentFor, presentmentDelays, presentmentsFor, refundsFor,
  type AuthorizationView, type ClearingRecord,
} from './network-simulator.js';

// The steps of end of day for one business date and one partition of a unit's
// accounts. Each step is one SQLite transaction that also records the step as
// done: a run killed at any point redoes at most the step it was in, and a step
// found done is skipped. Every posting writes its balanced ledger lines, moves the
// account's balance buckets and queues the same amount for the unit (outbox).

export interface StepContext {
  db: Database.Database;
  date: string;
  partition: number;
  products: ProductTable;
  /** Accounts per transaction of the clearing step (see clearAndPost); default pieceAccountsDefault. */
  pieceAccounts?: number;
  /** Called after each committed piece of the clearing step (fault injection for the restart tests). */
  onPiece?: () => void;
}

/**
 * Accounts per piece of the clearing step. A piece of 2,048 accounts writes about
 * 1-2 MB, so a ledger beside live traffic checkpoints every few pieces instead of
 * once per partition (see clearAndPost).
 */
export const pieceAccountsDefault = 2048;

interface AccountRow {
  account_id: string;
  product: string;
  currency: string;
  cycle_day: number;
  purchase_minor: number;
  cash_minor: number;
  fee_minor: number;
  interest_minor: number;
  accrued_units: number;
  grace: number;
  statement_date: string;
  statement_closing: number;
  minimum_due: number;
  due_date: string;
  paid_since_statement: number;
  period_purchases_minor: number;
  period_cash_minor: number;
  period_credits_minor: number;
  period_payments_minor: number;
  period_fees_minor: number;
  period_interest_minor: number;
}

/** The cycle-to-date total each kind of entry adds to (see the accounts table). */
const periodColumn: Record<PostingKind, keyof AccountRow & `period_${string}`> = {
  purchase: 'period_purchases_minor', force: 'period_purchases_minor', cash: 'period_cash_minor', refund: 'period_credits_minor',
  chargeback: 'period_credits_minor', payment: 'period_payments_minor', fee: 'period_fees_minor', interest: 'period_interest_minor',
};

/**
 * The steps of a date, in order. 'clear' takes the network's clearing file and
 * posts it (with the customers' payments), piece by piece, so the records are
 * posted from memory: reading them back cost 40% of the posting.
 */
export const stepNames = ['clear', 'accrue'] as const;
export type StepName = (typeof stepNames)[number];

export function runStep(step: StepName, context: StepContext): number {
  const { db, date, partition } = context;
  if (stepDone(db, date, step, partition)) return 0;
  if (step === 'clear') return clearAndPost(context);
  return db.transaction(() => {
    const count = accrue(context);
    markStepDone(db, date, step, partition);
    return count;
  }).immediate();
}

/**
 * Clearing and posting of a partition, in pieces of consecutive accounts. Each
 * piece is one transaction that stores and posts the clearing records and the
 * payments of its accounts and moves the step's cursor (the last account done)
 * past them; the last piece also marks the step done. The clearing file is a
 * function of what the step does not write (the authorizations, the accounts and
 * an earlier date's clearing), so a run killed inside the step builds the same
 * file again and starts after the cursor: nothing posts twice, nothing is missed,
 * and the ledger is the same whatever the piece size.
 *
 * Why pieces: a checkpoint cannot run inside a transaction. With the partition in
 * one transaction, a 1,000,000-account day wrote tens of MB to the log and then
 * copied and synced it at once, and the units' commits beside it waited for that
 * flush (the per-second p99 of the load beside the step: 10.6-11.3 ms against
 * about 5.5 ms in the send step).
 */
function clearAndPost(context: StepContext): number {
  const { db, date, partition } = context;
  const pieceAccounts = context.pieceAccounts ?? pieceAccountsDefault;
  assert(Number.isInteger(pieceAccounts) && pieceAccounts >= 1, 'a piece holds at least one account');
  const file = clearingFile(context);
  const after = readCursor(db, date, 'clear', partition);
  const ids = file.accountIds.filter((id) => id > after);
  let index = 0;
  while (index < file.records.length && (file.records[index] as ClearingRecord).accountId <= after) index++;
  const poster = new Poster(db, date, partition);
  const posting = new ClearingPoster(context, poster, file.accounts);
  let count = 0;
  let low = after;
  for (let start = 0; start < ids.length || start === 0; start += pieceAccounts) {
    const last = start + pieceAccounts >= ids.length;
    const high = ids[Math.min(start + pieceAccounts, ids.length) - 1] ?? after;
    db.transaction(() => {
      let end = index;
      while (end < file.records.length && (file.records[end] as ClearingRecord).accountId <= high) end++;
      for (let i = index; i < end; i++) file.insert(file.records[i] as ClearingRecord);
      count += posting.clearing(file.records, index, end);
      count += posting.payments(low, high);
      index = end;
      if (last) {
        assert(index === file.records.length, 'every clearing record names an account of the partition');
        deleteCursor(db, date, 'clear', partition);
        // Reconciliation lists a partition whose clearing is not posted.
        markStepDone(db, date, 'post', partition);
        markStepDone(db, date, 'clear', partition);
      } else {
        writeCursor(db, date, 'clear', partition, high);
      }
    }).immediate();
    low = high;
    context.onPiece?.();
  }
  return count;
}

/** An account's product and billing currency, by id. */
type AccountTerms = Map<string, { product: string; currency: string }>;

interface ClearingFile {
  /** In key order: account by account. */
  records: ClearingRecord[];
  accounts: AccountTerms;
  /** Every account of the partition, in key order. */
  accountIds: string[];
  insert: (record: ClearingRecord) => void;
}

/** The hold expiry the clearing file assumes for an account whose product is not in the product table. */
const defaultHoldExpiryDays = 7;

/** The network's clearing file for the date; records come back in key order. Reads only. */
function clearingFile({ db, date, partition, products }: StepContext): ClearingFile {
  const accountRows = db.prepare('SELECT account_id, product, currency, opened_date FROM accounts WHERE partition = ? ORDER BY account_id').raw().all(partition) as Array<[string, string, string, string]>;
  const accounts: AccountTerms = new Map(accountRows.map(([accountId, product, currency]) => [accountId, { product, currency }]));
  const openedBefore = accountRows.filter(([, , , openedDate]) => openedDate < date).map(([accountId]) => accountId);
  const expiryDays = (auth: AuthorizationView): number => products.get(accounts.get(auth.accountId)?.product ?? '')?.holdExpiryDays ?? defaultHoldExpiryDays;
  // Only the authorizations that can be presented today: approved 1, 2 or a hold's
  // expiry plus 2 days before (refunds: 1). The whole lookback window is 45 days of
  // them, every one read again each day to find the few due.
  const approvedDates = presentmentDelays([defaultHoldExpiryDays, ...[...products.values()].map((product) => product.holdExpiryDays)]).map((days) => addDays(date, -days));
  // Rows as arrays, made objects here: better-sqlite3's own objects cost a third more (250 against 190 ms for 100,000).
  const authRows = db.prepare(`SELECT authorization_id, account_id, type, approved_date, base_minor, fee_minor, hold_minor, status
    FROM authorizations WHERE partition = ? AND approved_date IN (${approvedDates.map(() => '?').join(', ')})`).raw().all(partition, ...approvedDates) as Array<[string, string, string, string, number, number, number, string]>;
  const auths: AuthorizationView[] = authRows.map(([authorizationId, accountId, type, approvedDate, baseMinor, feeMinor, holdMinor, status]) => ({
    authorizationId, accountId, type, approvedDate, baseMinor, feeMinor, holdMinor, status,
  }));
  const presentedEarlier = db.prepare(`SELECT record_id AS recordId, account_id AS accountId, amount_minor AS amountMinor FROM clearing
    WHERE business_date = ? AND partition = ? AND kind = 'purchase'`).all(addDays(date, -chargebackAfterDays), partition) as Array<{ recordId: string; accountId: string; amountMinor: number }>;
  const records: ClearingRecord[] = [
    ...presentmentsFor(date, auths, expiryDays), ...refundsFor(date, auths), ...forcePostsFor(date, openedBefore), ...chargebacksFor(presentedEarlier),
  ];
  // In key order, so the inserts append.
  records.sort((a, b) => compare(a.accountId, b.accountId) || compare(a.recordId, b.recordId));
  const statement = db.prepare(`INSERT OR IGNORE INTO clearing (business_date, partition, account_id, record_id, kind, match, authorization_id, amount_minor, fee_minor, release_minor)
    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`);
  const insert = (r: ClearingRecord): void => {
    statement.run(date, partition, r.accountId, r.recordId, r.kind, r.match, r.authorizationId, r.amountMinor, r.feeMinor, r.releaseMinor);
  };
  return { records, accounts, accountIds: accountRows.map(([accountId]) => accountId), insert };
}

/** Binary order, as SQLite compares TEXT keys. */
function compare(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

class Poster {
  private readonly insertEntry;
  private readonly insertOutbox;
  constructor(db: Database.Database, private readonly date: string, private readonly partition: number) {
    this.insertEntry = db.prepare(`INSERT INTO entries (business_date, partition, account_id, reference, kind, amount_minor, currency, debit_ledger, credit_ledger)
      VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`);
    this.insertOutbox = db.prepare('INSERT INTO outbox (partition, reference, account_id, releases, post_minor, kind) VALUES (?, ?, ?, ?, ?, ?)');
  }

  /** One ledger entry: a debit and a credit of the same amount, counted in the account's cycle-to-date totals. */
  entry(reference: string, account: AccountRow, kind: PostingKind, amountMinor: number): void {
    const lines = postingLines(kind, account.account_id, amountMinor);
    const debit = lines.find((line) => line.debitMinor > 0);
    const credit = lines.find((line) => line.creditMinor > 0);
    assert(lines.length === 2 && debit !== undefined && credit !== undefined, 'a posting is one debit and one credit');
    assert(debit.debitMinor === credit.creditMinor, 'every posting balances');
    this.insertEntry.run(this.date, this.partition, account.account_id, reference, kind, amountMinor, account.currency, debit.ledgerAccount, credit.ledgerAccount);
    account[periodColumn[kind]] += amountMinor;
  }

  /** What the unit must apply for this account: holds to release and the change of its posted balance. */
  outbox(reference: string, account: AccountRow, releases: SettleOp['releases'], postMinor: number, kind: string): void {
    if (releases.length === 0 && postMinor === 0) return;
    this.insertOutbox.run(this.partition, reference, account.account_id, JSON.stringify(releases), postMinor, kind);
  }
}

const selectAccount = 'SELECT * FROM accounts WHERE partition = ? AND account_id = ?';

/** An account's row with nothing in it: changes are summed on a copy. */
const zeroAccount: AccountRow = {
  account_id: '', product: '', currency: '', cycle_day: 0, purchase_minor: 0, cash_minor: 0, fee_minor: 0, interest_minor: 0, accrued_units: 0, grace: 0,
  statement_date: '', statement_closing: 0, minimum_due: 0, due_date: '', paid_since_statement: 0, period_purchases_minor: 0, period_cash_minor: 0,
  period_credits_minor: 0, period_payments_minor: 0, period_fees_minor: 0, period_interest_minor: 0,
};
const updateAccount = `UPDATE accounts SET purchase_minor = ?, cash_minor = ?, fee_minor = ?, interest_minor = ?, accrued_units = ?, grace = ?,
  statement_date = ?, statement_closing = ?, minimum_due = ?, due_date = ?, paid_since_statement = ?, period_purchases_minor = ?, period_cash_minor = ?,
  period_credits_minor = ?, period_payments_minor = ?, period_fees_minor = ?, period_interest_minor = ? WHERE partition = ? AND account_id = ?`;

function saveAccount(statement: Database.Statement, partition: number, a: AccountRow): void {
  statement.run(a.purchase_minor, a.cash_minor, a.fee_minor, a.interest_minor, a.accrued_units, a.grace, a.statement_date,
    a.statement_closing, a.minimum_due, a.due_date, a.paid_since_statement, a.period_purchases_minor, a.period_cash_minor,
    a.period_credits_minor, a.period_payments_minor, a.period_fees_minor, a.period_interest_minor, partition, a.account_id);
}

/**
 * Posts the date's clearing records and the customers' payments. Records are taken
 * account by account, so each account is updated once and sends the unit one
 * settlement for the day, whatever the number of its presentments.
 */
class ClearingPoster {
  private readonly save;
  private readonly add;
  private readonly selectPayers;
  private readonly date: string;
  private readonly partition: number;
  private readonly products: ProductTable;

  constructor(context: StepContext, private readonly poster: Poster, private readonly accounts: AccountTerms) {
    const { db } = context;
    this.date = context.date;
    this.partition = context.partition;
    this.products = context.products;
    this.save = db.prepare(updateAccount);
    // Clearing only adds to an account's buckets, so the account is not read: its
    // changes are summed on a row of zeros and added in one UPDATE. Reading and
    // rewriting every row whole cost a quarter of the step.
    this.add = db.prepare(`UPDATE accounts SET purchase_minor = purchase_minor + ?, cash_minor = cash_minor + ?, fee_minor = fee_minor + ?,
      period_purchases_minor = period_purchases_minor + ?, period_cash_minor = period_cash_minor + ?, period_credits_minor = period_credits_minor + ?,
      period_fees_minor = period_fees_minor + ? WHERE partition = ? AND account_id = ?`);
    this.selectPayers = db.prepare(`SELECT * FROM accounts WHERE partition = ? AND account_id > ? AND account_id <= ?
      AND due_date = ? AND statement_closing > 0`);
  }

  /** Posts records[from, to), which come in key order: account by account. Returns how many. */
  clearing(records: readonly ClearingRecord[], from: number, to: number): number {
    const { date, partition, poster } = this;
    let index = from;
    while (index < to) {
      const accountId = (records[index] as ClearingRecord).accountId;
      const terms = this.accounts.get(accountId);
      assert(terms !== undefined, 'a clearing record names an account of the unit');
      const change: AccountRow = { ...zeroAccount, account_id: accountId, product: terms.product, currency: terms.currency };
      const product = this.products.get(terms.product) as Product;
      const releases: SettleOp['releases'] = [];
      let postMinor = 0;
      for (; index < to && (records[index] as ClearingRecord).accountId === accountId; index++) {
        postMinor += postClearing(poster, change, records[index] as ClearingRecord, product, releases);
      }
      assert(change.interest_minor === 0 && change.period_payments_minor === 0 && change.period_interest_minor === 0, 'clearing moves purchases, cash, fees and credits only');
      poster.outbox(`clearing:${date}:${change.account_id}`, change, releases, postMinor, 'clearing');
      this.add.run(change.purchase_minor, change.cash_minor, change.fee_minor, change.period_purchases_minor, change.period_cash_minor, change.period_credits_minor,
        change.period_fees_minor, partition, change.account_id);
    }
    return to - from;
  }

  /** The payments of the accounts in (low, high] whose statement is due in three days, after their clearing. Returns how many. */
  payments(low: string, high: string): number {
    const { date, partition, poster } = this;
    const payers = this.selectPayers.all(partition, low, high, addDays(date, 3)) as AccountRow[];
    for (const account of payers) {
      const paymentMinor = paymentFor(account.account_id, account.statement_date, account.statement_closing, account.minimum_due);
      if (paymentMinor <= 0) continue;
      const reference = `pay:${account.account_id}:${account.statement_date}`;
      poster.entry(reference, account, 'payment', paymentMinor);
      poster.outbox(reference, account, [], -paymentMinor, 'payment');
      setBuckets(account, applyPayment(bucketsOf(account), paymentMinor));
      account.paid_since_statement += paymentMinor;
      saveAccount(this.save, partition, account);
    }
    return payers.length;
  }
}

/** Posts one clearing record to the ledger and the account; returns its effect on the posted balance. */
function postClearing(poster: Poster, account: AccountRow, record: ClearingRecord, product: Product, releases: SettleOp['releases']): number {
  const kind: PostingKind = record.kind;
  const amountMinor = record.amountMinor;
  // The cross-border fee rides on the authorization; a cash advance adds the product's fee.
  const feeMinor = record.feeMinor + (kind === 'cash' ? feeOnMinor(amountMinor, product.cashAdvanceFeeBps) : 0);
  poster.entry(record.recordId, account, kind, amountMinor);
  if (feeMinor > 0) poster.entry(`${record.recordId}:fee`, account, 'fee', feeMinor);
  const matched = (kind === 'purchase' || kind === 'cash') && record.authorizationId !== null;
  if (matched && record.releaseMinor > 0) releases.push({ authorizationId: record.authorizationId as string, minor: record.releaseMinor });
  if (kind === 'cash') account.cash_minor += amountMinor;
  else account.purchase_minor += balanceEffect(kind, amountMinor);
  account.fee_minor += feeMinor;
  return balanceEffect(kind, amountMinor) + feeMinor;
}

function bucketsOf(a: AccountRow): Buckets {
  return { purchaseMinor: a.purchase_minor, cashMinor: a.cash_minor, feeMinor: a.fee_minor, interestMinor: a.interest_minor };
}

function setBuckets(a: AccountRow, b: Buckets): void {
  a.purchase_minor = b.purchaseMinor;
  a.cash_minor = b.cashMinor;
  a.fee_minor = b.feeMinor;
  a.interest_minor = b.interestMinor;
}

export function balanceOf(a: Pick<AccountRow, 'purchase_minor' | 'cash_minor' | 'fee_minor' | 'interest_minor'>): number {
  return a.purchase_minor + a.cash_minor + a.fee_minor + a.interest_minor;
}

/** Daily interest accrual, late fees after a missed due date, and statements on the cycle day. */
function accrue({ db, date, partition, products }: StepContext): number {
  const poster = new Poster(db, date, partition);
  const save = db.prepare(updateAccount);
  const insertStatement = db.prepare(`INSERT INTO statements (statement_date, account_id, opening_minor, purchases_minor, cash_minor, credits_minor, payments_minor,
    fees_minor, interest_minor, closing_minor, minimum_payment_minor, due_date) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`);
  const read = db.prepare(selectAccount);
  // A narrow scan decides which accounts change today; only those are read whole
  // and written back. Reading every row whole took 0.41 s against 0.06 s for
  // 50,000 accounts, most of it building objects nobody used.
  const scan = db.prepare(`SELECT account_id, product, cash_minor, purchase_minor, grace, due_date, cycle_day FROM accounts
    WHERE partition = ? AND opened_date <= ?`).raw();
  const rows = scan.all(partition, date) as Array<[string, string, number, number, number, string, number]>;
  let statements = 0;
  const cycleToday = dayOfMonth(date);
  const dueYesterday = addDays(date, -1);
  for (const [accountId, productName, cashMinor, purchaseMinor, grace, dueDate, cycleDay] of rows) {
    const product = products.get(productName) as Product;
    const accruedUnits = dailyInterestUnits(cashMinor, product.cashAprBps) + (grace === 0 ? dailyInterestUnits(purchaseMinor, product.purchaseAprBps) : 0);
    const pastDue = dueDate !== '' && dueDate === dueYesterday;
    const cycleEnds = cycleDay === cycleToday;
    // Most accounts accrue nothing on most days (no balance, or in grace): rewriting
    // their unchanged rows dirtied every page of the table each night.
    if (accruedUnits === 0 && !pastDue && !cycleEnds) continue;
    const account = read.get(partition, accountId) as AccountRow;
    account.accrued_units += accruedUnits;
    // Exact by the bounds of limits (creditLimitMinorMax, aprBpsMax): a cycle's units stay below 2^53.
    assert(Number.isSafeInteger(account.accrued_units), 'accrued interest units stay exact');
    let postMinor = 0;
    if (pastDue) postMinor += settleDueDate(poster, account, product);
    if (cycleEnds) {
      postMinor += cutStatement(poster, account, product, date, insertStatement);
      statements++;
    }
    poster.outbox(`accrue:${date}:${account.account_id}`, account, [], postMinor, 'interest-and-fees');
    saveAccount(save, partition, account);
  }
  return statements;
}

function settleDueDate(poster: Poster, account: AccountRow, product: Product): number {
  let postedMinor = 0;
  // A product may charge no late fee (lateFeeMinor 0): then there is no posting to make.
  if (account.paid_since_statement < account.minimum_due && product.lateFeeMinor > 0) {
    poster.entry(`late:${account.account_id}:${account.statement_date}`, account, 'fee', product.lateFeeMinor);
    account.fee_minor += product.lateFeeMinor;
    postedMinor = product.lateFeeMinor;
  }
  // Paid in full by the due date keeps the interest-free grace on purchases; anything less loses it.
  account.grace = account.paid_since_statement >= account.statement_closing ? 1 : 0;
  return postedMinor;
}

function cutStatement(poster: Poster, account: AccountRow, product: Product, date: string, insert: Database.Statement): number {
  const interest = interestToPost(account.accrued_units);
  account.accrued_units = interest.remainderUnits;
  if (interest.postMinor > 0) {
    poster.entry(`interest:${account.account_id}:${date}`, account, 'interest', interest.postMinor);
    account.interest_minor += interest.postMinor;
  }
  const opening = account.statement_closing;
  const purchases = account.period_purchases_minor;
  const cash = account.period_cash_minor;
  const credits = account.period_credits_minor;
  const payments = account.period_payments_minor;
  const fees = account.period_fees_minor;
  const interestPosted = account.period_interest_minor;
  const closing = balanceOf(account);
  assert(opening + purchases + cash + fees + interestPosted - credits - payments === closing, 'a statement adds up to its closing balance');
  const minimum = minimumPaymentMinor(closing, product);
  const due = addDays(date, product.paymentDueDays);
  insert.run(date, account.account_id, opening, purchases, cash, credits, payments, fees, interestPosted, closing, minimum, due);
  account.period_purchases_minor = 0;
  account.period_cash_minor = 0;
  account.period_credits_minor = 0;
  account.period_payments_minor = 0;
  account.period_fees_minor = 0;
  account.period_interest_minor = 0;
  account.statement_date = date;
  account.statement_closing = closing;
  account.minimum_due = minimum;
  account.due_date = closing > 0 ? due : '';
  account.paid_since_statement = 0;
  return interest.postMinor;
}
