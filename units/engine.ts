import { randomBytes, randomInt } from 'node:crypto';
import type Database from 'better-sqlite3';
import {
  billingAmount, calendarOf, decide, nextCashCounters, openToBuyMinor,
  type AccountState, type CardState, type CardStatus, type Decision,
} from '../domain/authorize-rules.js';
import { cvvHash, panHash, type CardKeys } from '../domain/card-protect.js';
import type { Version } from '../domain/gray.js';
import { fingerprint } from '../domain/fingerprint.js';
import { msPerDay, type Clock } from '../domain/clock.js';
import { ApiError } from '../domain/errors.js';
import { assert, limits } from '../domain/limits.js';
import { shareMinor, type BillingCurrency, type FxTable, type Money } from '../domain/money.js';
import { makePan } from '../domain/pan.js';
import { holdExpiryDays, type Product, type ProductTable } from '../domain/products.js';
import {
  authorizationIdSeparator, decodeResultLine, encodeResultLine,
  type AddCardOp, type AdviceOp, type AuthorizeOp, type IncrementOp, type OpenAccountOp, type ResultLine,
  type ReverseOp, type SetCardStatusOp, type SettleOp, type UnitOp,
} from '../domain/protocol.js';
import { responseCodes, isApproval, type ResponseCode } from '../domain/response-codes.js';
import type { ChangeRecorder } from './change-log.js';
import { prepareStatements, type AccountRow, type CardAccountRow, type HoldRow, type Statements } from './statements.js';

// Applies operations to a unit's store. Every method runs inside the caller's
// transaction (group commit); an expected failure is a result line, never a throw.
// A throw means a bug: the caller rolls the whole transaction back.

export interface EngineOptions {
  unitId: string;
  db: Database.Database;
  keys: CardKeys;
  products: ProductTable;
  fx: FxTable;
  clock: Clock;
  utcOffsetMinutes: number;
  /** The role this instance takes for operations that carry no version tag. */
  role: Version;
  /** Records the writes for replication (a primary with a standby). */
  recorder?: ChangeRecorder;
}

export class UnitEngine {
  readonly unitId: string;
  private readonly statements: Statements;
  private readonly options: EngineOptions;
  /** Authorization ids: unit, version marker, a random prefix drawn at start-up, then a counter (see nextAuthorizationId). */
  private readonly authorizationIdPrefixes: Record<Version, string>;
  private authorizationCounter = 0;
  /** The version of the operation being applied: its tag, or this instance's role. */
  private version: Version;
  private calendarCache = { startMs: Number.NaN, day: '', month: '' };

  constructor(options: EngineOptions) {
    assert(options.unitId.length > 0, 'unitId is set');
    this.options = options;
    this.unitId = options.unitId;
    this.statements = prepareStatements(options.db, options.recorder);
    const random = randomBytes(8).toString('base64url');
    this.authorizationIdPrefixes = {
      stable: options.unitId + authorizationIdSeparator + 's' + random,
      gray: options.unitId + authorizationIdSeparator + 'g' + random,
    };
    this.version = options.role;
  }

  /**
   * Ids are unique without coordination between processes over the same store (a
   * stable and a gray instance, a restart): each process draws a 64-bit random
   * prefix. Within a process the counter makes ids ascend, so inserts append to
   * the right edge of the holds B-tree instead of dirtying a random page each
   * (another 4 KiB frame in the WAL at every commit). Measured with
   * loadtest/probes/engine-micro.mjs (60,000 authorizations in transactions of 25,
   * synchronous FULL): 66.8-74.2 us per authorization against 84.9-106.6 us with 9
   * random bytes per id, and the gap grows with the holds table.
   */
  private nextAuthorizationId(): string {
    this.authorizationCounter++;
    return this.authorizationIdPrefixes[this.version] + this.authorizationCounter.toString(36).padStart(8, '0');
  }

  apply(op: UnitOp): ResultLine {
    this.version = op.version ?? this.options.role;
    switch (op.op) {
      case 'authorize': return this.authorize(op);
      case 'reverse': return this.reverse(op);
      case 'increment': return this.increment(op);
      case 'openAccount': return this.openAccount(op);
      case 'addCard': return this.addCard(op);
      case 'setCardStatus': return this.setCardStatus(op);
      case 'settle': return this.settle(op);
      case 'advice': return this.advice(op);
    }
  }

  authorize(op: AuthorizeOp): ResultLine {
    const { keys } = this.options;
    const cardHash = panHash(keys, op.pan);
    const presentedCvvHash = op.cvv === null ? null : cvvHash(keys, op.pan, op.expiry, op.cvv);
    const fingerprintBytes = presentedCvvHash === null ? [cardHash] : [cardHash, presentedCvvHash];
    const requestPrint = fingerprint(fingerprintBytes, canonicalAuthorize(op));
    const replay = this.replay(op.idempotencyKey, requestPrint);
    if (replay !== null) return replay;
    const row = this.statements.selectCardAccount.get(cardHash) as CardAccountRow | undefined;
    const nowMs = this.options.clock.nowMs();
    if (row === undefined) {
      const unknown = this.authAnswer(null, responseCodes.unknownCard, 0, op.amount, null);
      this.journal(nowMs, 'auth.declined', '', null, 0, op.amount.currency, { code: unknown.code, type: op.type, channel: op.channel }, idempotent(op.idempotencyKey, requestPrint, unknown));
      return unknown;
    }
    const calendar = this.calendar(nowMs);
    const product = this.product(row.product);
    const card = cardState(row);
    const account = accountState(row);
    const cvvMatches = presentedCvvHash === null ? null : presentedCvvHash.equals(row.cvv_hash);
    const decision = decide(card, account, product, this.options.fx, {
      type: op.type, channel: op.channel, amount: op.amount, mcc: op.merchant.mcc, country: op.merchant.country,
      partialAllowed: op.partialAllowed, expiry: op.expiry, cvvMatches, month: calendar.month, day: calendar.day,
    });
    const authorizationId = this.nextAuthorizationId();
    if (decision.holdMinor > 0) {
      this.placeHold(op, authorizationId, cardHash, row, product, decision, nowMs);
      if (op.type === 'cash') this.countCash(cardHash, card, calendar.day, decision.holdMinor - decision.feeMinor);
    }
    const available: Money = { value: openToBuyMinor(account) - decision.holdMinor, currency: account.currency };
    const result = this.authAnswer(authorizationId, decision.code, decision.approvedMinor, op.amount, available);
    const kind = !isApproval(decision.code) ? 'auth.declined' : op.type === 'refund' ? 'auth.refund' : 'auth.approved';
    this.journal(nowMs, kind, row.account_id, authorizationId, decision.holdMinor, account.currency, {
      code: decision.code, type: op.type, channel: op.channel, amount: op.amount, fee: decision.feeMinor,
      merchant: op.merchant, card: row.last4,
    }, idempotent(op.idempotencyKey, requestPrint, result));
    return result;
  }

  /** Business day and month, recomputed only when the clock leaves the cached day. */
  private calendar(nowMs: number): { day: string; month: string } {
    const cached = this.calendarCache;
    if (nowMs >= cached.startMs && nowMs < cached.startMs + msPerDay) return cached;
    const offsetMs = this.options.utcOffsetMinutes * 60_000;
    const startMs = Math.floor((nowMs + offsetMs) / msPerDay) * msPerDay - offsetMs;
    this.calendarCache = { startMs, ...calendarOf(nowMs, this.options.utcOffsetMinutes) };
    return this.calendarCache;
  }

  private placeHold(op: AuthorizeOp, authorizationId: string, cardHash: Buffer, row: CardAccountRow, product: Product, decision: Decision, nowMs: number): void {
    const expiresAt = nowMs + holdExpiryDays(product, op.merchant.mcc) * msPerDay;
    this.statements.insertHold.run(
      authorizationId, row.account_id, cardHash, op.type, op.channel, op.merchant.id, op.merchant.mcc,
      op.amount.currency, decision.approvedMinor, decision.holdMinor, decision.feeMinor, nowMs, expiresAt,
    );
    this.statements.addOpenHolds.run(decision.holdMinor, row.account_id);
  }

  private countCash(cardHash: Buffer, card: CardState, day: string, amountMinor: number): void {
    const next = nextCashCounters(card, day, amountMinor);
    this.statements.updateCashCounters.run(next.cashDay, next.cashAmountMinor, next.cashCount, cardHash);
  }

  reverse(op: ReverseOp): ResultLine {
    const requestPrint = fingerprint([], `r|${op.authorizationId}|${moneyText(op.amount)}`);
    const replay = this.replay(op.idempotencyKey, requestPrint);
    if (replay !== null) return replay;
    const hold = this.openHold(op.authorizationId, op.amount);
    if (hold instanceof ApiError) return errorLine(hold);
    let reversedTxn = hold.txn_amount;
    if (op.amount !== null) {
      if (op.amount.value > hold.txn_amount) return errorLine(new ApiError('AMOUNT_EXCEEDS_HOLD', `the open hold is ${hold.txn_amount}`, 'amount.value'));
      reversedTxn = op.amount.value;
    }
    const full = reversedTxn === hold.txn_amount;
    // A partial reversal releases the same share of the held billing amount (fee included).
    const releaseMinor = full ? hold.hold_amount : shareMinor(hold.hold_amount, reversedTxn, hold.txn_amount);
    const nowMs = this.options.clock.nowMs();
    this.statements.updateHold.run(hold.txn_amount - reversedTxn, hold.hold_amount - releaseMinor, full ? 'reversed' : 'open', hold.expires_at, hold.authorization_id);
    this.statements.addOpenHolds.run(-releaseMinor, hold.account_id);
    const account = this.account(hold.account_id);
    const result = this.followUpAnswer(op.authorizationId, responseCodes.approved, account);
    this.journal(nowMs, 'hold.reversed', hold.account_id, hold.authorization_id, -releaseMinor, account.currency, {
      amount: { value: reversedTxn, currency: hold.txn_currency }, full,
    }, idempotent(op.idempotencyKey, requestPrint, result));
    return result;
  }

  increment(op: IncrementOp): ResultLine {
    const requestPrint = fingerprint([], `i|${op.authorizationId}|${moneyText(op.amount)}`);
    const replay = this.replay(op.idempotencyKey, requestPrint);
    if (replay !== null) return replay;
    const hold = this.openHold(op.authorizationId, op.amount);
    if (hold instanceof ApiError) return errorLine(hold);
    const account = this.account(hold.account_id);
    const product = this.product(account.product);
    const billing = billingAmount(op.amount, account.currency as BillingCurrency, product, this.options.fx);
    let code: ResponseCode = responseCodes.approved;
    if (billing === null) code = responseCodes.invalidAmount;
    else if (billing.totalMinor > openToBuyMinor(accountState(account))) code = responseCodes.insufficientFunds;
    const nowMs = this.options.clock.nowMs();
    const heldMinor = code === responseCodes.approved && billing !== null ? billing.totalMinor : 0;
    if (heldMinor > 0) {
      const expiresAt = Math.max(hold.expires_at, nowMs + holdExpiryDays(product, hold.mcc) * msPerDay);
      this.statements.updateHold.run(hold.txn_amount + op.amount.value, hold.hold_amount + heldMinor, 'open', expiresAt, hold.authorization_id);
      this.statements.addOpenHolds.run(heldMinor, hold.account_id);
    }
    const kind = heldMinor > 0 ? 'hold.incremented' : 'increment.declined';
    const after = heldMinor > 0 ? this.account(hold.account_id) : account;
    const result = this.followUpAnswer(op.authorizationId, code, after);
    this.journal(nowMs, kind, hold.account_id, hold.authorization_id, heldMinor, account.currency, { code, amount: op.amount },
      idempotent(op.idempotencyKey, requestPrint, result));
    return result;
  }

  settle(op: SettleOp): ResultLine {
    const releasesText = op.releases.map((release) => `${release.authorizationId}=${release.minor}`).join(',');
    const requestPrint = fingerprint([], `s|${op.accountId}|${releasesText}|${op.postMinor}|${op.kind}`);
    const replay = this.replay(op.idempotencyKey, requestPrint);
    if (replay !== null) return replay;
    // Every hold is checked before anything is written, so a refused settlement changes nothing.
    const holds: HoldRow[] = [];
    for (const release of op.releases) {
      const hold = this.statements.selectHold.get({ id: release.authorizationId }) as HoldRow | undefined;
      if (hold === undefined || hold.account_id !== op.accountId) {
        return errorLine(new ApiError('AUTHORIZATION_NOT_FOUND', `no authorization ${release.authorizationId} on account ${op.accountId}`, 'releases'));
      }
      holds.push(hold);
    }
    let releasedMinor = 0;
    /** Each hold as the releases before leave it: one named twice (two presentments in one settlement) is not released twice over. */
    const current = new Map<string, { left: number; status: string }>();
    holds.forEach((hold, index) => {
      const state = current.get(hold.authorization_id) ?? { left: hold.hold_amount, status: hold.status };
      // A late presentment finds its hold expired (nothing left to release); a split
      // clearing releases the hold in parts; a hold never goes below zero.
      const released = state.status === 'open' ? Math.min((op.releases[index] as { minor: number }).minor, state.left) : 0;
      state.left -= released;
      if (state.status === 'open' && state.left === 0) state.status = 'cleared';
      current.set(hold.authorization_id, state);
      this.statements.updateHold.run(hold.txn_amount, state.left, state.status, hold.expires_at, hold.authorization_id);
      releasedMinor += released;
    });
    const after = this.statements.settleAccount.get(releasedMinor, op.postMinor, op.accountId) as AccountRow | undefined;
    if (after === undefined) return errorLine(new ApiError('ACCOUNT_NOT_FOUND', `no account ${op.accountId}`, 'accountId'));
    const currency = after.currency;
    const body = `{"accountId":"${op.accountId}","unit":"${this.unitId}","releasedHold":{"value":${releasedMinor},"currency":"${currency}"},`
      + `"postedBalance":{"value":${after.posted_balance},"currency":"${currency}"},"availableCredit":{"value":${openToBuyMinor(accountState(after))},"currency":"${currency}"}}`;
    const result: ResultLine = { status: 200, code: '-', approved: false, body };
    this.journal(this.options.clock.nowMs(), 'balance.posted', op.accountId, null, -releasedMinor, currency,
      { kind: op.kind, posted: op.postMinor, released: releasedMinor, holds: op.releases.length }, idempotent(op.idempotencyKey, requestPrint, result));
    return result;
  }

  /**
   * A stand-in approval replayed from the gateway (see AdviceOp): the hold is
   * placed whatever the open-to-buy, since the channel was told "approved".
   */
  advice(op: AdviceOp): ResultLine {
    const cardHash = Buffer.from(op.panHashHex, 'hex');
    // The fingerprint of the channel's request, as authorize() computes it, so that
    // the channel's retry with the same key and content gets the stand-in answer.
    const original = { ...op, op: 'authorize', pan: '', cvv: op.cvvHashHex === null ? null : '-' } as AuthorizeOp;
    const requestPrint = fingerprint(op.cvvHashHex === null ? [cardHash] : [cardHash, Buffer.from(op.cvvHashHex, 'hex')], canonicalAuthorize(original));
    const answer: ResultLine = { status: 200, code: responseCodes.approved, approved: true, body: op.answer };
    const replay = this.replay(op.idempotencyKey, requestPrint);
    if (replay !== null && replay.approved) {
      // The request had reached this unit before it went down: one hold, known by both ids.
      const firstId = (JSON.parse(replay.body) as { authorizationId?: string | null }).authorizationId;
      if (typeof firstId === 'string' && firstId !== op.authorizationId) this.statements.insertAlias.run(op.authorizationId, firstId);
      return replay;
    }
    // Not seen, or answered otherwise here (a decline whose answer was lost with the
    // unit, or the key used before for another request): the channel holds the
    // stand-in approval, so it is recorded. Under the key it already has, the unit's
    // own answer stays; the stand-in answer goes under the key's stand-in form, which
    // replay() prefers for this request's retries.
    const key = replay === null ? op.idempotencyKey : standInKey(op.idempotencyKey);
    const row = this.statements.selectCardAccount.get(cardHash) as CardAccountRow | undefined;
    if (row === undefined) return errorLine(new ApiError('CARD_NOT_FOUND', 'the stand-in advice names no card of this unit', 'panHashHex'));
    const product = this.product(row.product);
    const billing = billingAmount(op.amount, row.currency as BillingCurrency, product, this.options.fx);
    if (billing === null) return errorLine(new ApiError('INVALID_AMOUNT', 'the stand-in advice has no rate to the billing currency', 'amount'));
    const decision: Decision = { code: responseCodes.approved, holdMinor: billing.totalMinor, approvedMinor: op.amount.value, feeMinor: billing.feeMinor };
    this.placeHold(original, op.authorizationId, cardHash, row, product, decision, op.atMs);
    this.journal(this.options.clock.nowMs(), 'auth.approved', row.account_id, op.authorizationId, decision.holdMinor, row.currency, {
      code: responseCodes.approved, type: op.type, channel: op.channel, amount: op.amount, fee: decision.feeMinor,
      merchant: op.merchant, card: row.last4, standIn: true, approvedAtMs: op.atMs,
    }, idempotent(key, requestPrint, answer));
    return answer;
  }

  /** Releases holds whose life ended; returns how many expired. */
  expireHolds(nowMs: number, holdsMax: number): number {
    this.version = this.options.role;
    const expired = this.statements.selectExpiredHolds.all(nowMs, holdsMax) as HoldRow[];
    for (const hold of expired) {
      this.statements.updateHold.run(hold.txn_amount, 0, 'expired', hold.expires_at, hold.authorization_id);
      this.statements.addOpenHolds.run(-hold.hold_amount, hold.account_id);
      const account = this.account(hold.account_id);
      this.journal(nowMs, 'hold.expired', hold.account_id, hold.authorization_id, -hold.hold_amount, account.currency, {
        amount: { value: hold.txn_amount, currency: hold.txn_currency },
      });
    }
    return expired.length;
  }

  openAccount(op: OpenAccountOp): ResultLine {
    const product = this.options.products.get(op.product);
    if (product === undefined) return errorLine(new ApiError('INVALID_FIELD', `unknown product "${op.product}"`, 'product'));
    if (this.statements.selectAccount.get(op.accountId) !== undefined) {
      return errorLine(new ApiError('ACCOUNT_EXISTS', `account ${op.accountId} exists`, 'accountId'));
    }
    const nowMs = this.options.clock.nowMs();
    this.statements.insertAccount.run(op.accountId, product.name, op.creditLimit.currency, op.creditLimit.value, nowMs);
    this.journal(nowMs, 'account.opened', op.accountId, null, 0, op.creditLimit.currency, {
      product: product.name, creditLimit: op.creditLimit,
    });
    const card = this.issueCard(op.accountId, 0, product, nowMs);
    const body = { accountId: op.accountId, unit: this.unitId, product: product.name, creditLimit: op.creditLimit, card };
    return { status: 201, code: '-', approved: false, body: JSON.stringify(body) };
  }

  addCard(op: AddCardOp): ResultLine {
    const account = this.statements.selectAccount.get(op.accountId) as AccountRow | undefined;
    if (account === undefined) return errorLine(new ApiError('ACCOUNT_NOT_FOUND', `no account ${op.accountId}`, 'accountId'));
    if (account.cards > limits.supplementaryCardsMax) {
      return errorLine(new ApiError('CARD_LIMIT_REACHED', `an account holds at most ${limits.supplementaryCardsMax} supplementary cards`, null));
    }
    const card = this.issueCard(op.accountId, account.cards, this.product(account.product), this.options.clock.nowMs());
    return { status: 201, code: '-', approved: false, body: JSON.stringify({ accountId: op.accountId, unit: this.unitId, card }) };
  }

  private issueCard(accountId: string, sequence: number, product: Product, nowMs: number): { number: string; expiry: string; cvv: string } {
    const pan = makePan(this.options.keys.cardNumber, accountId, sequence);
    const expiry = addMonths(calendarOf(nowMs, this.options.utcOffsetMinutes).month, product.cardValidityMonths);
    const cvv = String(randomInt(0, 1000)).padStart(3, '0');
    const { keys } = this.options;
    this.statements.insertCard.run(panHash(keys, pan), accountId, sequence, pan.slice(-4), expiry, cvvHash(keys, pan, expiry, cvv), 'active');
    this.statements.incrementCards.run(accountId);
    this.journal(nowMs, 'card.issued', accountId, null, 0, '', { sequence, last4: pan.slice(-4), expiry });
    return { number: pan, expiry, cvv };
  }

  setCardStatus(op: SetCardStatusOp): ResultLine {
    const cardHash = panHash(this.options.keys, op.pan);
    const row = this.statements.selectCardAccount.get(cardHash) as CardAccountRow | undefined;
    if (row === undefined) return errorLine(new ApiError('CARD_NOT_FOUND', 'no card with this number', 'card.number'));
    this.statements.updateCardStatus.run(op.status, cardHash);
    this.journal(this.options.clock.nowMs(), 'card.status', row.account_id, null, 0, '', { last4: row.last4, from: row.status, to: op.status });
    return { status: 200, code: '-', approved: false, body: JSON.stringify({ accountId: row.account_id, last4: row.last4, status: op.status }) };
  }

  private openHold(authorizationId: string, amount: Money | null): HoldRow | ApiError {
    const hold = this.statements.selectHold.get({ id: authorizationId }) as HoldRow | undefined;
    if (hold === undefined) return new ApiError('AUTHORIZATION_NOT_FOUND', `no authorization ${authorizationId}`, 'authorizationId');
    if (hold.status !== 'open') return new ApiError('AUTHORIZATION_CLOSED', `authorization is ${hold.status}`, 'authorizationId');
    if (amount !== null && amount.currency !== hold.txn_currency) {
      return new ApiError('CURRENCY_MISMATCH', `the authorization is in ${hold.txn_currency}`, 'amount.currency');
    }
    return hold;
  }

  private replay(key: string | null, fingerprint: Buffer): ResultLine | null {
    if (key === null) return null;
    const row = this.statements.selectIdempotency.get(key) as { fingerprint: Buffer; answer: string } | undefined;
    if (row === undefined) return null;
    // A retry (rare): a stand-in approval recorded after this unit had answered the
    // key otherwise is the answer the channel holds (see advice()).
    const standIn = this.statements.selectIdempotency.get(standInKey(key)) as { fingerprint: Buffer; answer: string } | undefined;
    if (standIn !== undefined && standIn.fingerprint.equals(fingerprint)) return decodeResultLine(standIn.answer);
    if (row.fingerprint.equals(fingerprint)) return decodeResultLine(row.answer);
    return this.authAnswer(null, responseCodes.duplicateTransmission, 0, null, null);
  }

  private authAnswer(authorizationId: string | null, code: ResponseCode, approvedMinor: number, amount: Money | null, available: Money | null): ResultLine {
    const approved = isApproval(code);
    const body = {
      authorizationId, approved, responseCode: code,
      approvedAmount: amount === null ? null : { value: approvedMinor, currency: amount.currency },
      availableCredit: available, unit: this.unitId, version: this.version,
    };
    return { status: 200, code, approved, body: JSON.stringify(body) };
  }

  private followUpAnswer(authorizationId: string, code: ResponseCode, account: AccountRow): ResultLine {
    const available = { value: openToBuyMinor(accountState(account)), currency: account.currency };
    const body = { authorizationId, approved: isApproval(code), responseCode: code, availableCredit: available, unit: this.unitId, version: this.version };
    return { status: 200, code, approved: isApproval(code), body: JSON.stringify(body) };
  }

  private journal(at: number, kind: string, accountId: string, authorizationId: string | null, amountMinor: number, currency: string, detail: object, retry: Idempotent | null = null): void {
    this.statements.insertJournal.run(
      at, kind, accountId, authorizationId, amountMinor, currency, JSON.stringify(detail),
      retry === null ? null : retry.key, retry === null ? null : retry.fingerprint, retry === null ? null : encodeResultLine(retry.answer),
      this.version,
    );
  }

  private account(accountId: string): AccountRow {
    const account = this.statements.selectAccount.get(accountId) as AccountRow | undefined;
    assert(account !== undefined, 'a hold belongs to an existing account');
    return account;
  }

  private product(name: string): Product {
    const product = this.options.products.get(name);
    assert(product !== undefined, `product ${name} of a stored account is configured`);
    return product;
  }
}

/** What a retry with the same Idempotency-Key needs: the fingerprint to compare and the first answer. */
interface Idempotent {
  key: string;
  fingerprint: Buffer;
  answer: ResultLine;
}

function idempotent(key: string | null, fingerprint: Buffer, answer: ResultLine): Idempotent | null {
  return key === null ? null : { key, fingerprint, answer };
}

function cardState(row: CardAccountRow): CardState {
  return { status: row.status as CardStatus, expiry: row.expiry, cashDay: row.cash_day, cashAmountMinor: row.cash_amount, cashCount: row.cash_count };
}

function accountState(row: Pick<AccountRow, 'currency' | 'credit_limit' | 'posted_balance' | 'open_holds'>): AccountState {
  return { currency: row.currency as BillingCurrency, creditLimitMinor: row.credit_limit, postedBalanceMinor: row.posted_balance, openHoldsMinor: row.open_holds };
}

function canonicalAuthorize(op: AuthorizeOp): string {
  const m = op.merchant;
  // The card number and CVV enter the fingerprint only as their keyed hashes.
  return `a|${op.expiry}|${op.cvv === null ? 0 : 1}|${moneyText(op.amount)}|${op.type}|${op.channel}|${m.id}|${m.mcc}|${m.country}|${op.partialAllowed ? 1 : 0}`;
}

function moneyText(amount: Money | null): string {
  return amount === null ? '-' : `${amount.value} ${amount.currency}`;
}

function errorLine(error: ApiError): ResultLine {
  return { status: error.status, code: '-', approved: false, body: JSON.stringify(error.body()) };
}

export function addMonths(month: string, count: number): string {
  const year = Number(month.slice(0, 4));
  const index = Number(month.slice(5, 7)) - 1 + count;
  const y = year + Math.floor(index / 12);
  const m = (index % 12) + 1;
  return `${y}-${String(m).padStart(2, '0')}`;
}

/**
 * The idempotency key under which a stand-in approval is kept when the unit had
 * already answered the channel's key otherwise. A space cannot occur in a channel's
 * key (printable ASCII without space), so the form collides with none.
 */
function standInKey(key: string): string {
  return `${key} stand-in`;
}
