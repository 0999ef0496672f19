import { convertMinor, feeMinor, type BillingCurrency, type FxTable, type Money } from './money.js';
import type { Channel, Product, TransactionType } from './products.js';
import { responseCodes, type ResponseCode } from './response-codes.js';

// The authorization decision as a pure function over plain data. The unit reads
// the card and account, calls decide(), and writes what the decision says. The
// order of the checks follows issuer practice: the card itself first (does it
// exist, is it blocked, expired, is the CVV right), then what the transaction
// asks for (merchant, country, amount), then money (cash limits, open-to-buy).

export const cardStatuses = ['active', 'lost', 'stolen', 'frozen'] as const;
export type CardStatus = (typeof cardStatuses)[number];

export interface CardState {
  status: CardStatus;
  /** YYYY-MM, the last month in which the card is valid. */
  expiry: string;
  /** Business day (YYYY-MM-DD) the cash counters refer to. */
  cashDay: string;
  cashAmountMinor: number;
  cashCount: number;
}

export interface AccountState {
  currency: BillingCurrency;
  creditLimitMinor: number;
  postedBalanceMinor: number;
  openHoldsMinor: number;
}

export interface AuthorizationFacts {
  type: TransactionType;
  channel: Channel;
  amount: Money;
  mcc: string;
  country: string;
  partialAllowed: boolean;
  /** Expiry as the channel sent it. */
  expiry: string;
  /** null when the channel sent no CVV. */
  cvvMatches: boolean | null;
  /** Current month YYYY-MM and business day YYYY-MM-DD by the unit's clock. */
  month: string;
  day: string;
}

export interface Decision {
  code: ResponseCode;
  /** Amount the hold takes from open-to-buy, in billing currency (0 when nothing is held). */
  holdMinor: number;
  /** Approved amount in the transaction currency. */
  approvedMinor: number;
  /** Cross-border fee included in holdMinor. */
  feeMinor: number;
}

const decline = (code: ResponseCode): Decision => ({ code, holdMinor: 0, approvedMinor: 0, feeMinor: 0 });

export function openToBuyMinor(account: AccountState): number {
  return account.creditLimitMinor - account.postedBalanceMinor - account.openHoldsMinor;
}

export function decide(card: CardState, account: AccountState, product: Product, fx: FxTable, facts: AuthorizationFacts): Decision {
  const cardCode = checkCard(card, product, facts);
  if (cardCode !== null) return decline(cardCode);
  if (facts.type === 'refund') {
    // A refund credit places no hold: the credit reaches the balance when it clears.
    return { code: responseCodes.approved, holdMinor: 0, approvedMinor: facts.amount.value, feeMinor: 0 };
  }
  if (product.blockedMccs.includes(facts.mcc)) return decline(responseCodes.notPermitted);
  if (facts.type === 'cash' && !product.cashAllowed) return decline(responseCodes.notPermitted);
  if (product.restrictedCountries.includes(facts.country)) return decline(responseCodes.restrictedCountry);
  const billing = billingAmount(facts.amount, account.currency, product, fx);
  if (billing === null) return decline(responseCodes.invalidAmount);
  if (billing.baseMinor > product.transactionAmountMinorMax) return decline(responseCodes.invalidAmount);
  if (facts.type === 'cash') {
    const cashCode = checkCashLimits(card, product, facts.day, billing.baseMinor);
    if (cashCode !== null) return decline(cashCode);
  }
  return checkOpenToBuy(account, facts, billing);
}

function checkCard(card: CardState, product: Product, facts: AuthorizationFacts): ResponseCode | null {
  if (card.status === 'lost') return responseCodes.lostCard;
  if (card.status === 'stolen') return responseCodes.stolenCard;
  if (card.status === 'frozen') return responseCodes.notPermitted;
  if (card.expiry < facts.month) return responseCodes.expiredCard;
  if (facts.expiry !== card.expiry) return responseCodes.expiredCard;
  if (facts.cvvMatches === false) return responseCodes.wrongCvv;
  if (facts.cvvMatches === null && product.cvvRequiredChannels.includes(facts.channel)) return responseCodes.wrongCvv;
  return null;
}

interface BillingAmount {
  baseMinor: number;
  feeMinor: number;
  totalMinor: number;
}

export function billingAmount(amount: Money, currency: BillingCurrency, product: Product, fx: FxTable): BillingAmount | null {
  const baseMinor = convertMinor(amount.value, amount.currency, currency, fx);
  if (baseMinor === null || baseMinor <= 0) return null;
  const fee = amount.currency === currency ? 0 : feeMinor(baseMinor, product.crossBorderFeeBps);
  return { baseMinor, feeMinor: fee, totalMinor: baseMinor + fee };
}

function checkCashLimits(card: CardState, product: Product, day: string, amountMinor: number): ResponseCode | null {
  const sameDay = card.cashDay === day;
  const count = sameDay ? card.cashCount : 0;
  const total = sameDay ? card.cashAmountMinor : 0;
  if (count + 1 > product.cashDailyCountMax) return responseCodes.cashCountLimit;
  if (total + amountMinor > product.cashDailyAmountMinorMax) return responseCodes.cashAmountLimit;
  return null;
}

function checkOpenToBuy(account: AccountState, facts: AuthorizationFacts, billing: BillingAmount): Decision {
  const available = openToBuyMinor(account);
  if (billing.totalMinor <= available) {
    return { code: responseCodes.approved, holdMinor: billing.totalMinor, approvedMinor: facts.amount.value, feeMinor: billing.feeMinor };
  }
  // Partial approval only for purchases in the billing currency, where the approved
  // amount is exactly what is held; a converted partial amount would need a reverse rate.
  const partialPossible = facts.partialAllowed && facts.type === 'purchase' && facts.amount.currency === account.currency;
  if (partialPossible && available > 0) {
    return { code: responseCodes.partialApproval, holdMinor: available, approvedMinor: available, feeMinor: 0 };
  }
  return decline(responseCodes.insufficientFunds);
}

/** Cash counters after an approved cash withdrawal of amountMinor on `day`. */
export function nextCashCounters(card: CardState, day: string, amountMinor: number): Pick<CardState, 'cashDay' | 'cashAmountMinor' | 'cashCount'> {
  const sameDay = card.cashDay === day;
  return {
    cashDay: day,
    cashAmountMinor: (sameDay ? card.cashAmountMinor : 0) + amountMinor,
    cashCount: (sameDay ? card.cashCount : 0) + 1,
  };
}

/** Business day and month of an instant, in the bank's time zone (offset from UTC in minutes). */
export function calendarOf(nowMs: number, utcOffsetMinutes: number): { day: string; month: string } {
  const day = new Date(nowMs + utcOffsetMinutes * 60_000).toISOString().slice(0, 10);
  return { day, month: day.slice(0, 7) };
}
