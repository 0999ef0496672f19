import { assert } from '../domain/limits.js';
import type { Product } from '../domain/products.js';

// Accounting rules as pure functions over plain data: interest accrual, minimum
// payment, billing cycles, and the double-entry lines of every kind of posting.
// Amounts are integer minor units of the account's billing currency.

/** Interest accrues in exact units of 1/(365 * 10000) minor unit: balance * aprBps per day. */
export const interestUnitsPerMinor = 365 * 10_000;

export function dailyInterestUnits(balanceMinor: number, aprBps: number): number {
  if (balanceMinor <= 0) return 0;
  const units = balanceMinor * aprBps;
  assert(Number.isSafeInteger(units), 'daily interest units stay exact');
  return units;
}

/** Whole minor units to post from accrued units; the remainder carries to the next cycle. */
export function interestToPost(accruedUnits: number): { postMinor: number; remainderUnits: number } {
  const postMinor = Math.floor(accruedUnits / interestUnitsPerMinor);
  return { postMinor, remainderUnits: accruedUnits - postMinor * interestUnitsPerMinor };
}

export function minimumPaymentMinor(closingMinor: number, product: Pick<Product, 'minimumPaymentBps' | 'minimumPaymentMinor'>): number {
  if (closingMinor <= 0) return 0;
  const share = Math.ceil((closingMinor * product.minimumPaymentBps) / 10_000);
  return Math.min(closingMinor, Math.max(product.minimumPaymentMinor, share));
}

export function feeOnMinor(amountMinor: number, bps: number): number {
  return Math.round((amountMinor * bps) / 10_000);
}

/** The partition of a unit's accounts an account belongs to, for a ledger split into `partitions`. */
export function partitionOf(accountId: string, partitions: number): number {
  let hash = 0x9747b28c;
  for (let i = 0; i < accountId.length; i++) hash = Math.imul(hash ^ accountId.charCodeAt(i), 0x5bd1e995);
  return (hash >>> 0) % partitions;
}

/** Day of the month (1..28) on which an account's statement is cut, spread over accounts by a hash of the id. */
export function cycleDayOf(accountId: string): number {
  let hash = 0x811c9dc5;
  for (let i = 0; i < accountId.length; i++) hash = Math.imul(hash ^ accountId.charCodeAt(i), 0x01000193);
  return 1 + ((hash >>> 0) % 28);
}

const addDaysMemo = new Map<string, string>();
const addDaysMemoMax = 4096;

/**
 * The date `days` after `date` (YYYY-MM-DD). A run asks for the same few dates
 * millions of times (clearing asks for each authorization's), so answers are kept:
 * parsing and formatting a Date was 8% of the clearing step.
 */
export function addDays(date: string, days: number): string {
  const key = date + days;
  let answer = addDaysMemo.get(key);
  if (answer === undefined) {
    answer = new Date(Date.parse(`${date}T00:00:00Z`) + days * 86_400_000).toISOString().slice(0, 10);
    if (addDaysMemo.size >= addDaysMemoMax) addDaysMemo.clear();
    addDaysMemo.set(key, answer);
  }
  return answer;
}

export function dayOfMonth(date: string): number {
  return Number(date.slice(8, 10));
}

export const isoDatePattern = /^[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])$/;

/** A date that exists (2026-02-29 and 2026-04-31 match the pattern but are not on the calendar). */
export function isBusinessDate(text: unknown): text is string {
  return typeof text === 'string' && isoDatePattern.test(text) && new Date(`${text}T00:00:00Z`).toISOString().slice(0, 10) === text;
}

// Ledger accounts. Each customer account is a receivable; money flows between it
// and the card network (settlement), the bank's cash (payments) and income.
export const ledgerAccounts = {
  network: 'network:settlement',
  cash: 'bank:cash',
  interestIncome: 'income:interest',
  feeIncome: 'income:fees',
} as const;

export function customerLedger(accountId: string): string {
  return `customer:${accountId}`;
}

export const postingKinds = ['purchase', 'cash', 'force', 'refund', 'chargeback', 'payment', 'fee', 'interest'] as const;
export type PostingKind = (typeof postingKinds)[number];

export interface LedgerLine {
  ledgerAccount: string;
  debitMinor: number;
  creditMinor: number;
}

/** The balanced lines of one posting. The customer's receivable rises with a debit. */
export function postingLines(kind: PostingKind, accountId: string, amountMinor: number): LedgerLine[] {
  assert(Number.isSafeInteger(amountMinor) && amountMinor > 0, 'a posting amount is a positive integer');
  const customer = customerLedger(accountId);
  const debitCustomer = (counter: string): LedgerLine[] => [
    { ledgerAccount: customer, debitMinor: amountMinor, creditMinor: 0 },
    { ledgerAccount: counter, debitMinor: 0, creditMinor: amountMinor },
  ];
  const creditCustomer = (counter: string): LedgerLine[] => [
    { ledgerAccount: counter, debitMinor: amountMinor, creditMinor: 0 },
    { ledgerAccount: customer, debitMinor: 0, creditMinor: amountMinor },
  ];
  switch (kind) {
    case 'purchase':
    case 'cash':
    case 'force':
      return debitCustomer(ledgerAccounts.network);
    case 'fee':
      return debitCustomer(ledgerAccounts.feeIncome);
    case 'interest':
      return debitCustomer(ledgerAccounts.interestIncome);
    case 'refund':
    case 'chargeback':
      return creditCustomer(ledgerAccounts.network);
    case 'payment':
      return creditCustomer(ledgerAccounts.cash);
  }
}

/** Signed effect of a posting on the customer's balance. */
export function balanceEffect(kind: PostingKind, amountMinor: number): number {
  return kind === 'refund' || kind === 'chargeback' || kind === 'payment' ? -amountMinor : amountMinor;
}

export interface Buckets {
  purchaseMinor: number;
  cashMinor: number;
  feeMinor: number;
  interestMinor: number;
}

/**
 * A payment pays interest and fees first, then cash advances (the dearer rate),
 * then purchases; what is left makes the purchase bucket negative (a credit).
 */
export function applyPayment(buckets: Buckets, paymentMinor: number): Buckets {
  let left = paymentMinor;
  const take = (owed: number): number => {
    const paid = Math.min(Math.max(owed, 0), left);
    left -= paid;
    return owed - paid;
  };
  const interestMinor = take(buckets.interestMinor);
  const feeMinor = take(buckets.feeMinor);
  const cashMinor = take(buckets.cashMinor);
  return { interestMinor, feeMinor, cashMinor, purchaseMinor: buckets.purchaseMinor - left };
}
