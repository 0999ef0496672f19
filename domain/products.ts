import { assert, limits } from './limits.js';
import { isDigits } from './pan.js';

// Product parameters: every authorization rule and limit is data, loaded from the
// topology file, so a new product or a changed limit needs no new code.

export const channels = ['pos', 'atm', 'ecommerce', 'wallet'] as const;
export type Channel = (typeof channels)[number];
export const transactionTypes = ['purchase', 'cash', 'refund'] as const;
export type TransactionType = (typeof transactionTypes)[number];

export interface Product {
  name: string;
  /** Issuer identification number (first six digits) of this product's cards. */
  iin: string;
  /** Days an open hold lives before it expires and its amount returns to open-to-buy. */
  holdExpiryDays: number;
  /** Longer or shorter hold lives for some merchant categories (hotels, car rental). */
  holdExpiryDaysByMcc: Record<string, number>;
  /** Merchant category codes the product refuses (57). */
  blockedMccs: string[];
  /** ISO 3166 alpha-2 countries where the product refuses transactions (62). */
  restrictedCountries: string[];
  cashAllowed: boolean;
  /** Daily cash withdrawal amount per card, in the account's billing currency (61). */
  cashDailyAmountMinorMax: number;
  /** Daily cash withdrawal count per card (65). */
  cashDailyCountMax: number;
  /** Fee on transactions in a currency other than the billing currency, in basis points. */
  crossBorderFeeBps: number;
  /** Largest single transaction in billing currency; above it the answer is 13. */
  transactionAmountMinorMax: number;
  /** Channels where a missing CVV is a decline (55); elsewhere a present CVV must still match. */
  cvvRequiredChannels: Channel[];
  /** Months from issuance to card expiry. */
  cardValidityMonths: number;
  /** Annual interest on purchases carried past the grace period, in basis points (1825 = 18.25%). */
  purchaseAprBps: number;
  /** Annual interest on cash advances, from the posting day, in basis points. */
  cashAprBps: number;
  /** Fee on each cash advance, in basis points of the amount. */
  cashAdvanceFeeBps: number;
  /** Fee when the minimum payment has not arrived by the due date, in billing-currency minor units. */
  lateFeeMinor: number;
  /** Minimum payment: this share of the statement balance, in basis points ... */
  minimumPaymentBps: number;
  /** ... but at least this much (or the whole balance when smaller). */
  minimumPaymentMinor: number;
  /** Days from the statement date to the payment due date. */
  paymentDueDays: number;
}

export type ProductTable = Map<string, Product>;

export function makeProductTable(products: Record<string, Omit<Product, 'name'>>): ProductTable {
  const table: ProductTable = new Map();
  for (const [name, params] of Object.entries(products)) {
    const product: Product = { ...params, name };
    assertProduct(product);
    table.set(name, product);
  }
  assert(table.size > 0, 'at least one product');
  return table;
}

function assertProduct(product: Product): void {
  const where = `product ${product.name}`;
  assert(product.iin.length === 6 && isDigits(product.iin), `${where}: iin is 6 digits`);
  assert(Number.isInteger(product.holdExpiryDays) && product.holdExpiryDays > 0, `${where}: holdExpiryDays > 0`);
  for (const days of Object.values(product.holdExpiryDaysByMcc)) {
    assert(Number.isInteger(days) && days > 0, `${where}: holdExpiryDaysByMcc values > 0`);
  }
  assert(Number.isSafeInteger(product.cashDailyAmountMinorMax) && product.cashDailyAmountMinorMax >= 0, `${where}: cash amount`);
  assert(Number.isInteger(product.cashDailyCountMax) && product.cashDailyCountMax >= 0, `${where}: cash count`);
  assert(Number.isInteger(product.crossBorderFeeBps) && product.crossBorderFeeBps >= 0, `${where}: crossBorderFeeBps`);
  assert(Number.isSafeInteger(product.transactionAmountMinorMax) && product.transactionAmountMinorMax > 0, `${where}: max amount`);
  assert(Number.isInteger(product.cardValidityMonths) && product.cardValidityMonths > 0, `${where}: validity`);
  for (const name of ['purchaseAprBps', 'cashAprBps', 'cashAdvanceFeeBps', 'lateFeeMinor', 'minimumPaymentBps', 'minimumPaymentMinor'] as const) {
    assert(Number.isSafeInteger(product[name]) && product[name] >= 0, `${where}: ${name} is a non-negative integer`);
  }
  for (const name of ['purchaseAprBps', 'cashAprBps'] as const) {
    assert(product[name] <= limits.aprBpsMax, `${where}: ${name} is at most ${limits.aprBpsMax} (100% a year)`);
  }
  assert(Number.isInteger(product.paymentDueDays) && product.paymentDueDays > 0 && product.paymentDueDays < 28, `${where}: paymentDueDays 1..27`);
  for (const channel of product.cvvRequiredChannels) {
    assert((channels as readonly string[]).includes(channel), `${where}: cvvRequiredChannels has known channels`);
  }
}

export function holdExpiryDays(product: Product, mcc: string): number {
  return product.holdExpiryDaysByMcc[mcc] ?? product.holdExpiryDays;
}
