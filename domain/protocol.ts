import type { Money } from './money.js';
import type { Channel, TransactionType } from './products.js';
import type { CardStatus } from './authorize-rules.js';
import type { Version } from './gray.js';
import { assert } from './limits.js';

// The gateway-unit protocol. The gateway packs the requests that arrive for one
// unit into one HTTP request: POST /v1/batch, one JSON operation per line. The
// unit applies the whole batch in one SQLite transaction (group commit) and
// answers one line per operation, in order:
//
//   <http status> <response code or -> <approved 1|0>\t<JSON body for the channel>
//
// The prefix lets the gateway count metrics without parsing the JSON, and the
// body is written to the channel as is. Per-request forwarding costs one
// upstream round trip and one fsync per authorization; batching amortizes both.

export interface AuthorizeOp {
  op: 'authorize';
  idempotencyKey: string;
  pan: string;
  expiry: string;
  cvv: string | null;
  amount: Money;
  type: TransactionType;
  channel: Channel;
  merchant: { id: string; mcc: string; country: string };
  partialAllowed: boolean;
}

export interface ReverseOp {
  op: 'reverse';
  idempotencyKey: string | null;
  authorizationId: string;
  /** null reverses what is left of the hold. */
  amount: Money | null;
}

export interface IncrementOp {
  op: 'increment';
  idempotencyKey: string | null;
  authorizationId: string;
  amount: Money;
}

export interface OpenAccountOp {
  op: 'openAccount';
  accountId: string;
  product: string;
  creditLimit: Money;
}

export interface AddCardOp {
  op: 'addCard';
  accountId: string;
}

export interface SetCardStatusOp {
  op: 'setCardStatus';
  pan: string;
  status: CardStatus;
}

/**
 * Batch accounting posting back to the owning unit: releases what a clearing
 * matched of a hold and moves the posted balance, in one transaction, so that
 * open-to-buy never counts the same money twice. Idempotent by key: a restarted
 * batch run sends its postings again and each lands once.
 */
export interface SettleOp {
  op: 'settle';
  idempotencyKey: string;
  accountId: string;
  /**
   * Holds the clearing matched, with the billing-currency amount to release from
   * each (capped at what is still held). Empty for force posts, fees, interest, payments.
   */
  releases: Array<{ authorizationId: string; minor: number }>;
  /** Signed change of the posted balance: purchases, fees, interest positive; refunds, payments negative. */
  postMinor: number;
  /** What the posting is, for the journal: presentment, refund, fee, interest, payment, chargeback, ... */
  kind: string;
}

/**
 * A stand-in approval given by the gateway while both copies of the unit were
 * down, replayed when the unit returns: the hold is placed as approved (no
 * limit check: the money was promised), under the authorization id and with the
 * answer the channel got, so a retry with the same key gets that answer again.
 * The card is named only by its keyed hash.
 */
export interface AdviceOp {
  op: 'advice';
  idempotencyKey: string;
  authorizationId: string;
  panHashHex: string;
  /** The keyed CVV hash of the request (null without a CVV): with the rest, it lets a retry match the original request. */
  cvvHashHex: string | null;
  expiry: string;
  amount: Money;
  type: TransactionType;
  channel: Channel;
  merchant: { id: string; mcc: string; country: string };
  partialAllowed: boolean;
  /** When the gateway approved it (the unit's hold life counts from then). */
  atMs: number;
  /** The answer the channel received, replayed to retries. */
  answer: string;
}

/**
 * Full-link gray: the version the gateway decided for the request travels with
 * the operation. The unit writes it into the journal entries the operation
 * produces and into the answer; absent, the instance's own role applies (batch
 * settlements, issuance).
 */
export interface VersionTag {
  version?: Version;
}

export type UnitOp = (AuthorizeOp | ReverseOp | IncrementOp | OpenAccountOp | AddCardOp | SetCardStatusOp | SettleOp | AdviceOp) & VersionTag;

export interface ResultLine {
  status: number;
  /** ISO 8583 response code, or '-' for operations that have none. */
  code: string;
  approved: boolean;
  body: string;
}

export function encodeResultLine(result: ResultLine): string {
  assert(!result.body.includes('\n'), 'result body is one line');
  return `${result.status} ${result.code} ${result.approved ? 1 : 0}\t${result.body}`;
}

export function decodeResultLine(line: string): ResultLine {
  const tab = line.indexOf('\t');
  assert(tab > 0, 'result line has a tab');
  const head = line.slice(0, tab).split(' ');
  assert(head.length === 3, 'result line head has three fields');
  const status = Number(head[0]);
  assert(Number.isInteger(status) && status >= 200 && status < 600, 'result status is an HTTP status');
  return { status, code: head[1] ?? '-', approved: head[2] === '1', body: line.slice(tab + 1) };
}

/**
 * Authorization ids carry their unit and the version that approved them:
 * "<unitId>~<g|s><random prefix><counter>", so follow-ups route without a lookup.
 */
export const authorizationIdSeparator = '~';

/**
 * How a unit commits a batch from POST /v1/batch: 'normal' at once, 'background'
 * a slice per commit, yielding to live traffic (units/group-commit.ts).
 */
export const batchLanes = ['normal', 'background'] as const;
export type BatchLane = (typeof batchLanes)[number];

/** The version marked in an authorization id; ids without a marker (older ones) read as stable. */
export function versionOfAuthorizationId(authorizationId: string): Version {
  const at = authorizationId.indexOf(authorizationIdSeparator);
  return authorizationId.charCodeAt(at + 1) === 0x67 /* g */ ? 'gray' : 'stable';
}

export function unitOfAuthorizationId(authorizationId: string): string | null {
  const at = authorizationId.indexOf(authorizationIdSeparator);
  if (at <= 0) return null;
  return authorizationId.slice(0, at);
}
