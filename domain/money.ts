import { assert } from './limits.js';

// Money is integer minor units with an explicit currency. Conversion between
// currencies uses exact decimal rates (parsed from strings, never floats) and
// BigInt arithmetic with one half-up rounding at the end.

export const currencyExponents = {
  CNY: 2,
  HKD: 2,
  MOP: 2,
  USD: 2,
  EUR: 2,
  GBP: 2,
  JPY: 0,
  SGD: 2,
  TWD: 2,
  KRW: 0,
} as const;

export type Currency = keyof typeof currencyExponents;
export const billingCurrencies = ['CNY', 'HKD', 'MOP'] as const;
export type BillingCurrency = (typeof billingCurrencies)[number];

export interface Money {
  value: number;
  currency: Currency;
}

export function isCurrency(text: unknown): text is Currency {
  return typeof text === 'string' && Object.hasOwn(currencyExponents, text);
}

export function isBillingCurrency(text: unknown): text is BillingCurrency {
  return typeof text === 'string' && (billingCurrencies as readonly string[]).includes(text);
}

/** A decimal rate as an exact fraction: value = numerator / 10^scale. */
export interface DecimalRate {
  numerator: bigint;
  scale: number;
}

const decimalPattern = /^(0|[1-9][0-9]{0,8})(\.[0-9]{1,9})?$/;

export function parseDecimalRate(text: string): DecimalRate {
  const match = decimalPattern.exec(text);
  if (match === null) throw new Error(`rate "${text}" is not a positive decimal string`);
  const fraction = (match[2] ?? '').slice(1);
  const numerator = BigInt((match[1] ?? '0') + fraction);
  assert(numerator > 0n, `rate "${text}" is positive`);
  return { numerator, scale: fraction.length };
}

/**
 * Rates against one pivot currency: 1 major unit of X is worth rate(X) major units of the pivot.
 * The pivot's own rate is 1.
 */
export interface FxTable {
  pivot: Currency;
  rates: Map<Currency, DecimalRate>;
}

export function makeFxTable(pivot: Currency, rates: Record<string, string>): FxTable {
  const table = new Map<Currency, DecimalRate>();
  table.set(pivot, { numerator: 1n, scale: 0 });
  for (const [currency, text] of Object.entries(rates)) {
    if (!isCurrency(currency)) throw new Error(`unknown currency ${currency} in rates`);
    table.set(currency, parseDecimalRate(text));
  }
  return { pivot, rates: table };
}

/** Converts minor units of `from` into minor units of `to`; null if a rate is missing. */
export function convertMinor(amountMinor: number, from: Currency, to: Currency, fx: FxTable): number | null {
  assert(Number.isSafeInteger(amountMinor), 'amountMinor is a safe integer');
  if (from === to) return amountMinor;
  const rateFrom = fx.rates.get(from);
  const rateTo = fx.rates.get(to);
  if (rateFrom === undefined || rateTo === undefined) return null;
  // to = amount * 10^-expFrom * rateFrom / rateTo * 10^expTo
  const numerator =
    BigInt(amountMinor) * rateFrom.numerator * 10n ** BigInt(rateTo.scale + currencyExponents[to]);
  const denominator = rateTo.numerator * 10n ** BigInt(rateFrom.scale + currencyExponents[from]);
  return Number(divideHalfUp(numerator, denominator));
}

/** Basis-point fee on an amount, rounded half up (150 bps of 10000 is 150). */
export function feeMinor(amountMinor: number, feeBps: number): number {
  assert(Number.isSafeInteger(amountMinor) && amountMinor >= 0, 'fee base is a non-negative integer');
  assert(Number.isInteger(feeBps) && feeBps >= 0, 'feeBps is a non-negative integer');
  return Number(divideHalfUp(BigInt(amountMinor) * BigInt(feeBps), 10_000n));
}

/** amountMinor * part / whole, exactly, rounded half up (a share of an amount: a partial reversal's share of a hold). */
export function shareMinor(amountMinor: number, part: number, whole: number): number {
  assert(Number.isSafeInteger(amountMinor) && amountMinor >= 0, 'the amount is a non-negative integer');
  assert(Number.isSafeInteger(part) && part >= 0 && Number.isSafeInteger(whole) && whole > 0, 'the share is of non-negative integers');
  return Number(divideHalfUp(BigInt(amountMinor) * BigInt(part), BigInt(whole)));
}

function divideHalfUp(numerator: bigint, denominator: bigint): bigint {
  assert(denominator > 0n, 'denominator is positive');
  assert(numerator >= 0n, 'numerator is non-negative');
  return (numerator * 2n + denominator) / (denominator * 2n);
}
