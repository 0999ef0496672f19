import { BoundedPool } from './bounded-pool.js';
import type { PortfolioCard } from './cards.js';
import { assertLoadtest, loadtestLimits } from './limits.js';
import { createRandom, createZipf, WeightedTable } from './random.js';
import type { Random } from './random.js';
import {
  currencyFacts, drawTicketMinor, foreignCurrencies, isKnownCurrency, mccOfMerchant, merchantPrefix,
} from './workload-catalog.js';
import type { CurrencyCode } from './workload-catalog.js';
import { channels, declineProbeKinds, defaultWorkloadConfig, resolveWorkloadConfig } from './workload-config.js';
import type { Channel, DeclineProbeKind, WorkloadConfig, WorkloadOverrides } from './workload-config.js';

// The workload model: a seeded stream of requests that looks like a card
// portfolio at work. The parent (`next`) holds all branching; the builders
// below it are small. For a given seed, cards and the same sequence of
// `observe` calls, the sequence of requests is identical; `observe` matters
// because reversals and increments only follow approvals the gateway gave.

export const requestKinds = {
  authorization: 'authorization',
  refund: 'refund',
  overLimit: 'over-limit',
  wrongExpiry: 'wrong-expiry',
  wrongCvv: 'wrong-cvv',
  reversal: 'reversal',
  increment: 'increment',
  retry: 'retry',
} as const;
export type RequestKind = (typeof requestKinds)[keyof typeof requestKinds];

const probeKindOf: Readonly<Record<DeclineProbeKind, RequestKind>> = {
  overLimit: requestKinds.overLimit, wrongExpiry: requestKinds.wrongExpiry, wrongCvv: requestKinds.wrongCvv,
};

export type TransactionType = 'purchase' | 'cash' | 'refund';

export interface LoadRequest {
  /** Position in the stream, from 0; a retry gets its own seq. */
  readonly seq: number;
  readonly kind: RequestKind;
  readonly channel: Channel;
  readonly method: 'POST';
  readonly path: string;
  readonly headers: Readonly<Record<string, string>>;
  /** JSON text, sent byte for byte. */
  readonly body: string;
  readonly idempotencyKey: string;
  /** Seq of the request this one resends, for retries. */
  readonly retryOf: number | null;
  /** The authorization a reversal or increment refers to. */
  readonly authorizationId: string | null;
  readonly transactionType: TransactionType | null;
  readonly currency: string;
  readonly amountMinor: number;
  readonly merchantId: string | null;
  readonly accountId: string | null;
}

export interface Workload {
  next(): LoadRequest;
  /** Feeds a response back; `body` is the parsed JSON (or its text, or null). */
  observe(request: LoadRequest, status: number, body: unknown): void;
  /** Applies a phase's overrides on top of the model's base configuration. */
  reconfigure(overrides: WorkloadOverrides): void;
}

export interface WorkloadOptions {
  cards: readonly PortfolioCard[];
  seed: number;
  /** Prefix of every idempotency key; make it unique per run so reruns are not duplicates. */
  keyPrefix?: string;
  config?: WorkloadOverrides;
}

interface Approval {
  authorizationId: string;
  transactionType: TransactionType;
  channel: Channel;
  currency: string;
  amountMinor: number;
}

interface NewAuthorization {
  kind: RequestKind;
  channel: Channel;
  card: PortfolioCard;
  type: TransactionType;
  currency: CurrencyCode;
  amountMinor: number;
  merchant: { id: string; mcc: string; country: string };
  expiry: string;
  cvv: string;
}

export class WorkloadModel implements Workload {
  readonly #random: Random;
  readonly #cards: readonly PortfolioCard[];
  readonly #keyPrefix: string;
  readonly #baseConfig: WorkloadConfig;
  readonly #hotCardIndexes: readonly number[];
  readonly #hotCardSet: ReadonlySet<number>;
  readonly #approvals = new BoundedPool<Approval>(loadtestLimits.approvalsRememberedMax);
  /** Increment requests in flight and the approval each one raises. */
  readonly #incrementOf = new WeakMap<LoadRequest, Approval>();
  readonly #retryWindow = new BoundedPool<LoadRequest>(loadtestLimits.retryWindowMax);
  #config: WorkloadConfig;
  #channelTable!: WeightedTable<Channel>;
  #probeTable!: WeightedTable<DeclineProbeKind>;
  #merchantRank!: (random: Random) => number;
  #seq = 0;

  constructor(options: WorkloadOptions) {
    assertLoadtest(options.cards.length > 0, 'workload has cards');
    this.#random = createRandom(options.seed);
    this.#cards = options.cards;
    this.#keyPrefix = options.keyPrefix ?? `lt-${options.seed}`;
    this.#baseConfig = resolveWorkloadConfig(defaultWorkloadConfig, options.config ?? {});
    this.#config = this.#baseConfig;
    this.#hotCardIndexes = sampleDistinct(this.#random, options.cards.length, Math.min(loadtestLimits.hotAccountsMax, options.cards.length - 1));
    this.#hotCardSet = new Set(this.#hotCardIndexes);
    this.#applyConfig(this.#baseConfig);
  }

  get config(): Readonly<WorkloadConfig> {
    return this.#config;
  }

  /** The cards of the current hot set. */
  get hotAccountIds(): readonly string[] {
    return this.#hotCardIndexes.slice(0, this.#config.hotAccountCount).map((index) => this.#cards[index]!.accountId);
  }

  get approvalsRemembered(): number {
    return this.#approvals.size;
  }

  reconfigure(overrides: WorkloadOverrides): void {
    this.#applyConfig(resolveWorkloadConfig(this.#baseConfig, overrides));
  }

  #applyConfig(config: WorkloadConfig): void {
    const merchantsChanged = config.merchantsPerChannel !== this.#config.merchantsPerChannel
      || config.merchantZipfExponent !== this.#config.merchantZipfExponent;
    this.#config = config;
    this.#channelTable = new WeightedTable(channels.map((channel) => [channel, config.channelWeights[channel]] as const));
    this.#probeTable = new WeightedTable(declineProbeKinds.map((kind) => [kind, config.declineWeights[kind]] as const));
    if (merchantsChanged || this.#seq === 0) this.#merchantRank = createZipf(config.merchantsPerChannel, config.merchantZipfExponent);
  }

  next(): LoadRequest {
    const random = this.#random;
    const config = this.#config;
    const roll = random.float();
    if (roll < config.retryShare && this.#retryWindow.size > 0) return this.#retry();
    if (roll < config.retryShare + config.reversalShare && this.#approvals.size > 0) return this.#reversal();
    if (roll < config.retryShare + config.reversalShare + config.incrementShare && this.#approvals.size > 0) return this.#increment();
    const request = this.#authorizationRequest(this.#newAuthorization());
    this.#retryWindow.add(request);
    return request;
  }

  observe(request: LoadRequest, status: number, body: unknown): void {
    if (status !== 200) return;
    const response = typeof body === 'string' ? safeParse(body) : body;
    if (typeof response !== 'object' || response === null) return;
    const fields = response as Record<string, unknown>;
    if (request.kind === requestKinds.increment) {
      this.#returnApproval(request, fields['responseCode'] === '00');
      return;
    }
    // Retries answer with the original's id, which is already remembered.
    if (request.kind === requestKinds.retry || request.kind === requestKinds.reversal) return;
    if (request.transactionType !== 'purchase' && request.transactionType !== 'cash') return;
    if (fields['approved'] !== true || typeof fields['authorizationId'] !== 'string') return;
    const approved = fields['approvedAmount'] as { value?: unknown; currency?: unknown } | undefined;
    const amountMinor = typeof approved?.value === 'number' ? approved.value : request.amountMinor;
    if (amountMinor <= 0) return;
    this.#approvals.add({
      authorizationId: fields['authorizationId'],
      transactionType: request.transactionType,
      channel: request.channel,
      currency: typeof approved?.currency === 'string' ? approved.currency : request.currency,
      amountMinor,
    });
  }

  /**
   * An increment takes its approval out of the pool while it is in flight, so
   * no reversal of the same authorization overtakes it (the increment would then
   * meet a closed hold and get a 409: seen once per 100,000 requests in the
   * benchmark). It comes back with the answer, grown by the increment if approved.
   * The increment carries its approval (a scan of the remembered approvals cost
   * ~10% of the load generator's CPU in a profile of the benchmark).
   */
  #returnApproval(request: LoadRequest, approved: boolean): void {
    const approval = this.#incrementOf.get(request);
    if (approval === undefined) return;
    if (approved) approval.amountMinor += request.amountMinor;
    this.#approvals.add(approval);
  }

  #newAuthorization(): NewAuthorization {
    const random = this.#random;
    const config = this.#config;
    let channel = this.#channelTable.pick(random);
    const card = this.#pickCard();
    let kind: RequestKind = requestKinds.authorization;
    if (random.chance(config.declineShare)) kind = probeKindOf[this.#probeTable.pick(random)];
    // The products check CVV on e-commerce only, so a wrong-CVV probe goes there.
    if (kind === requestKinds.wrongCvv) channel = 'ecommerce';
    let type: TransactionType = channel === 'atm' ? 'cash' : 'purchase';
    if (kind === requestKinds.authorization && type === 'purchase' && random.chance(config.refundShare)) {
      kind = requestKinds.refund;
      type = 'refund';
    }
    const billing = isKnownCurrency(card.creditLimit.currency) ? card.creditLimit.currency : 'CNY';
    const foreign = kind !== requestKinds.overLimit && random.chance(config.foreignShare);
    const currency = foreign ? foreignCurrencies.pick(random) : billing;
    const merchant = this.#pickMerchant(channel, currency, type);
    let amountMinor = drawTicketMinor(random, channel, currency, config.amountSigma);
    if (kind === requestKinds.overLimit) amountMinor = overLimitAmount(random, card);
    return {
      kind, channel, card, type, currency, amountMinor, merchant,
      expiry: kind === requestKinds.wrongExpiry ? wrongExpiry(random, card.expiry) : card.expiry,
      cvv: kind === requestKinds.wrongCvv ? wrongCvv(random, card.cvv) : card.cvv,
    };
  }

  #pickCard(): PortfolioCard {
    const random = this.#random;
    const hotCount = Math.min(this.#config.hotAccountCount, this.#hotCardIndexes.length);
    if (hotCount > 0 && random.chance(this.#config.hotAccountShare)) {
      return this.#cards[this.#hotCardIndexes[random.intBelow(hotCount)]!]!;
    }
    // Rejection keeps the hot share exact; the hot set is a sliver of the portfolio, so this ends fast.
    let index = random.intBelow(this.#cards.length);
    for (let attempt = 0; attempt < 16 && this.#isHot(index, hotCount); attempt += 1) index = random.intBelow(this.#cards.length);
    return this.#cards[index]!;
  }

  #isHot(index: number, hotCount: number): boolean {
    if (hotCount === 0 || !this.#hotCardSet.has(index)) return false;
    return this.#hotCardIndexes.indexOf(index) < hotCount;
  }

  #pickMerchant(channel: Channel, currency: CurrencyCode, type: TransactionType): NewAuthorization['merchant'] {
    const country = currencyFacts[currency].country;
    if (type !== 'cash' && this.#random.chance(this.#config.hotMerchantShare)) {
      return { id: this.#config.hotMerchantId, mcc: '5732', country };
    }
    const rank = this.#merchantRank(this.#random);
    const id = `${merchantPrefix[channel]}-${country}-${String(rank).padStart(6, '0')}`;
    return { id, mcc: mccOfMerchant(channel, rank), country };
  }

  #authorizationRequest(draft: NewAuthorization): LoadRequest {
    const body = JSON.stringify({
      card: { number: draft.card.pan, expiry: draft.expiry, cvv: draft.cvv },
      amount: { value: draft.amountMinor, currency: draft.currency },
      type: draft.type,
      channel: draft.channel,
      merchant: draft.merchant,
      partialAllowed: false,
    });
    return this.#request(draft.kind, draft.channel, '/v1/authorizations', body, {
      transactionType: draft.type, currency: draft.currency, amountMinor: draft.amountMinor,
      merchantId: draft.merchant.id, accountId: draft.card.accountId, authorizationId: null,
    });
  }

  #reversal(approval: Approval = this.#approvals.take(this.#random)!): LoadRequest {
    const partial = approval.amountMinor >= 2 && this.#random.chance(this.#config.partialReversalShare);
    const amountMinor = partial ? this.#random.intBetween(1, Math.floor(approval.amountMinor / 2)) : approval.amountMinor;
    const body = partial ? JSON.stringify({ amount: { value: amountMinor, currency: approval.currency } }) : '{}';
    return this.#followUp(requestKinds.reversal, approval, 'reversals', body, amountMinor);
  }

  #increment(): LoadRequest {
    const approval = this.#approvals.take(this.#random)!;
    // Cash is dispensed once; an ATM hold is never incremented, only reversed.
    if (approval.transactionType === 'cash') return this.#reversal(approval);
    const amountMinor = Math.max(1, Math.round(approval.amountMinor * (0.05 + 0.25 * this.#random.float())));
    const body = JSON.stringify({ amount: { value: amountMinor, currency: approval.currency } });
    const request = this.#followUp(requestKinds.increment, approval, 'increments', body, amountMinor);
    this.#incrementOf.set(request, approval);
    return request;
  }

  #followUp(kind: RequestKind, approval: Approval, action: string, body: string, amountMinor: number): LoadRequest {
    const path = `/v1/authorizations/${encodeURIComponent(approval.authorizationId)}/${action}`;
    return this.#request(kind, approval.channel, path, body, {
      transactionType: null, currency: approval.currency, amountMinor,
      merchantId: null, accountId: null, authorizationId: approval.authorizationId,
    });
  }

  #retry(): LoadRequest {
    const original = this.#retryWindow.pick(this.#random)!;
    const seq = this.#seq;
    this.#seq += 1;
    return { ...original, seq, kind: requestKinds.retry, retryOf: original.seq };
  }

  #request(
    kind: RequestKind, channel: Channel, path: string, body: string,
    details: Pick<LoadRequest, 'transactionType' | 'currency' | 'amountMinor' | 'merchantId' | 'accountId' | 'authorizationId'>,
  ): LoadRequest {
    const seq = this.#seq;
    this.#seq += 1;
    const idempotencyKey = `${this.#keyPrefix}-${seq.toString(36)}`;
    const headers = { 'content-type': 'application/json', 'idempotency-key': idempotencyKey };
    return { seq, kind, channel, method: 'POST', path, headers, body, idempotencyKey, retryOf: null, ...details };
  }
}

export function createWorkload(options: WorkloadOptions): WorkloadModel {
  return new WorkloadModel(options);
}

/** `count` distinct indexes below `bound`, in draw order. */
function sampleDistinct(random: Random, bound: number, count: number): number[] {
  const chosen = new Set<number>();
  const order: number[] = [];
  while (order.length < count) {
    const index = random.intBelow(bound);
    if (chosen.has(index)) continue;
    chosen.add(index);
    order.push(index);
  }
  return order;
}

function overLimitAmount(random: Random, card: PortfolioCard): number {
  const limit = Math.max(card.creditLimit.value, 100_000);
  return limit * random.intBetween(3, 10) + random.intBelow(100);
}

/** Either long expired or a year off the real one: both must decline with 54. */
function wrongExpiry(random: Random, expiry: string): string {
  if (random.chance(0.5)) return `20${random.intBetween(10, 20)}-${String(random.intBetween(1, 12)).padStart(2, '0')}`;
  const year = Number(expiry.slice(0, 4)) + random.intBetween(1, 3);
  return `${year}${expiry.slice(4)}`;
}

function wrongCvv(random: Random, cvv: string): string {
  const digits = Math.max(3, cvv.length);
  const modulus = 10 ** digits;
  const wrong = ((Number(cvv) || 0) + random.intBetween(1, modulus - 1)) % modulus;
  return String(wrong).padStart(digits, '0');
}

function safeParse(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return null;
  }
}
