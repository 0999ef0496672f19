import { WeightedTable } from './random.js';
import type { Random } from './random.js';
import type { Channel } from './workload-config.js';

// Static facts the workload draws from: currencies, merchant categories and
// typical ticket sizes. Amounts are in minor units everywhere past this file.

export interface CurrencyFacts {
  /** Minor-unit digits (JPY has none). */
  decimals: number;
  /** Approximate units of this currency per one CNY, to scale typical tickets. */
  perCny: number;
  /** Merchant country used for this currency. */
  country: string;
  /** ATM withdrawals are multiples of this many major units. */
  atmStepMajor: number;
}

export const currencyFacts = {
  CNY: { decimals: 2, perCny: 1, country: 'CN', atmStepMajor: 100 },
  HKD: { decimals: 2, perCny: 1.08, country: 'HK', atmStepMajor: 100 },
  MOP: { decimals: 2, perCny: 1.11, country: 'MO', atmStepMajor: 100 },
  USD: { decimals: 2, perCny: 0.14, country: 'US', atmStepMajor: 20 },
  EUR: { decimals: 2, perCny: 0.13, country: 'DE', atmStepMajor: 20 },
  JPY: { decimals: 0, perCny: 21, country: 'JP', atmStepMajor: 10_000 },
} as const satisfies Record<string, CurrencyFacts>;

export type CurrencyCode = keyof typeof currencyFacts;

export function isKnownCurrency(code: string): code is CurrencyCode {
  return Object.hasOwn(currencyFacts, code);
}

/** Foreign merchants' currencies and how often travellers spend in them. */
export const foreignCurrencies = new WeightedTable<CurrencyCode>([['USD', 4], ['EUR', 3], ['JPY', 3]]);

/** Typical (median) ticket per channel, in CNY major units. */
export const medianTicketCny: Readonly<Record<Channel, number>> = { pos: 120, atm: 800, ecommerce: 260, wallet: 45 };

/** The lognormal tail is cut here so one draw cannot dwarf a card's limit by accident. */
export const ticketTailFactorMax = 50;

/** Merchant category codes per channel with their relative frequency. */
const mccWeights: Readonly<Record<Channel, ReadonlyArray<readonly [string, number]>>> = {
  pos: [['5411', 30], ['5812', 25], ['5541', 15], ['5311', 10], ['5912', 10], ['7011', 5], ['5999', 5]],
  atm: [['6011', 1]],
  ecommerce: [['5732', 25], ['5691', 25], ['5311', 25], ['4722', 15], ['5942', 10]],
  wallet: [['5814', 40], ['5499', 35], ['4121', 25]],
};

function cumulativeOf(entries: ReadonlyArray<readonly [string, number]>): ReadonlyArray<readonly [string, number]> {
  const total = entries.reduce((sum, [, weight]) => sum + weight, 0);
  let running = 0;
  return entries.map(([mcc, weight]) => {
    running += weight / total;
    return [mcc, running] as const;
  });
}

const mccCumulative: Readonly<Record<Channel, ReadonlyArray<readonly [string, number]>>> = {
  pos: cumulativeOf(mccWeights.pos),
  atm: cumulativeOf(mccWeights.atm),
  ecommerce: cumulativeOf(mccWeights.ecommerce),
  wallet: cumulativeOf(mccWeights.wallet),
};

/**
 * A merchant keeps one MCC for the whole run, so the MCC is a function of the
 * merchant's rank (Knuth's multiplicative hash to a fraction), not a draw.
 */
export function mccOfMerchant(channel: Channel, rank: number): string {
  const fraction = (Math.imul(rank + 1, 0x9e3779b1) >>> 0) / 0x1_0000_0000;
  const table = mccCumulative[channel];
  for (const [mcc, cumulative] of table) if (fraction < cumulative) return mcc;
  return table[table.length - 1]![0];
}

export const merchantPrefix: Readonly<Record<Channel, string>> = { pos: 'POS', atm: 'ATM', ecommerce: 'WEB', wallet: 'WAL' };

/** A ticket in minor units of `currency`, lognormal around the channel's median. */
export function drawTicketMinor(random: Random, channel: Channel, currency: CurrencyCode, sigma: number): number {
  const facts: CurrencyFacts = currencyFacts[currency];
  const medianMajor = medianTicketCny[channel] * facts.perCny;
  const major = Math.min(random.lognormal(medianMajor, sigma), medianMajor * ticketTailFactorMax);
  const scale = 10 ** facts.decimals;
  if (channel === 'atm') {
    const steps = Math.max(1, Math.round(major / facts.atmStepMajor));
    return steps * facts.atmStepMajor * scale;
  }
  return Math.max(1, Math.round(major * scale));
}
