import { ApiError } from './errors.js';
import { assert } from './limits.js';
import { isAccountId } from './pan.js';
import { channels, type Channel } from './products.js';

// Gray release rules as pure data and pure functions. The gateway holds the
// rules, evaluates them per request in a fixed order, and tags the request with
// the version that won; the tag then travels through every hop (see protocol.ts).
//
// Order of evaluation (first match decides):
//   1. force header   x-gray: on -> gray, x-gray: off -> stable (probes)
//   2. whitelist      the card (by keyed hash) or the account is listed -> gray
//   3. channel        channels listed and this channel is not -> stable
//   4. unit scope     units listed and the owning unit is not -> stable
//   5. percentage     bucket(account key) < percent -> gray, else stable
//
// An account is known on the authorization path by its key, the card prefix (the
// first 14 digits of each of its cards, domain/card-number.ts), which needs no
// deciphering; whitelisted account ids are turned into keys when the rules are
// compiled. The bucket is a hash of the account key in 0..9999, so a percentage is
// held in basis points and one account always lands on the same side: raising the
// percentage only moves more accounts to gray, never back.

export const versions = ['stable', 'gray'] as const;
export type Version = (typeof versions)[number];

export type GrayReason = 'header' | 'whitelist' | 'channel' | 'unit' | 'percent';

export const grayLimits = {
  bucketsCount: 10_000,
  whitelistCardsMax: 1_000,
  whitelistAccountsMax: 10_000,
  reasonCharsMax: 500,
  planStepsMax: 20,
  stepSecondsMax: 24 * 3600,
  stepRequestsMax: 100_000_000,
} as const;

/** A whitelisted card: never the number itself, only its keyed hash and last four digits. */
export interface CardRef {
  hashHex: string;
  last4: string;
}

export interface GrayRules {
  /** Share of accounts on gray, in basis points (0..10000). */
  percentBps: number;
  whitelist: { cards: CardRef[]; accounts: string[] };
  /** Empty: every channel. */
  channels: Channel[];
  /** Empty: every unit. */
  units: string[];
  /** What a gray-tagged request does when its unit has no gray instance up. */
  fallback: 'stable' | 'reject';
}

export const emptyRules: GrayRules = { percentBps: 0, whitelist: { cards: [], accounts: [] }, channels: [], units: [], fallback: 'stable' };

/** The rules in the form the gateway evaluates per request: sets instead of lists. */
export interface CompiledRules {
  rules: GrayRules;
  cardHashes: Set<string>;
  accounts: Set<string>;
  channels: Set<string> | null;
  units: Set<string> | null;
}

/** accountKeyOf: an account id's key on the authorization path (the gateway's: its card prefix). */
export function compileRules(rules: GrayRules, accountKeyOf: (accountId: string) => string = (accountId) => accountId): CompiledRules {
  return {
    rules,
    cardHashes: new Set(rules.whitelist.cards.map((card) => card.hashHex)),
    accounts: new Set(rules.whitelist.accounts.map(accountKeyOf)),
    channels: rules.channels.length === 0 ? null : new Set(rules.channels),
    units: rules.units.length === 0 ? null : new Set(rules.units),
  };
}

export interface RequestFacts {
  /** The x-gray header: 'on', 'off', or null when absent. */
  force: 'on' | 'off' | null;
  /** The account's key (see compileRules): its card prefix at the gateway. */
  accountKey: string;
  channel: string;
  unitId: string;
  /** Keyed hash of the card number, computed only when the whitelist has cards. */
  cardHashHex: (() => string) | null;
}

export interface GrayDecision {
  version: Version;
  reason: GrayReason;
}

const decisions = {
  headerOn: { version: 'gray', reason: 'header' },
  headerOff: { version: 'stable', reason: 'header' },
  whitelist: { version: 'gray', reason: 'whitelist' },
  channel: { version: 'stable', reason: 'channel' },
  unit: { version: 'stable', reason: 'unit' },
  percentGray: { version: 'gray', reason: 'percent' },
  percentStable: { version: 'stable', reason: 'percent' },
} as const satisfies Record<string, GrayDecision>;

export function decideVersion(compiled: CompiledRules, facts: RequestFacts): GrayDecision {
  if (facts.force === 'on') return decisions.headerOn;
  if (facts.force === 'off') return decisions.headerOff;
  if (compiled.accounts.has(facts.accountKey)) return decisions.whitelist;
  if (compiled.cardHashes.size > 0 && facts.cardHashHex !== null && compiled.cardHashes.has(facts.cardHashHex())) return decisions.whitelist;
  if (compiled.channels !== null && !compiled.channels.has(facts.channel)) return decisions.channel;
  if (compiled.units !== null && !compiled.units.has(facts.unitId)) return decisions.unit;
  return accountBucket(facts.accountKey) < compiled.rules.percentBps ? decisions.percentGray : decisions.percentStable;
}

/**
 * The account's bucket, 0..9999: FNV-1a over its key, then the murmur3 finalizer
 * so that keys differing in their last digits spread over all buckets. Kept
 * independent of the routing ring's hash, so gray accounts are spread over units.
 */
export function accountBucket(accountKey: string): number {
  let hash = 0x811c9dc5;
  for (let i = 0; i < accountKey.length; i++) hash = Math.imul(hash ^ accountKey.charCodeAt(i), 0x01000193);
  hash ^= hash >>> 16;
  hash = Math.imul(hash, 0x85ebca6b);
  hash ^= hash >>> 13;
  hash = Math.imul(hash, 0xc2b2ae35);
  hash ^= hash >>> 16;
  return (hash >>> 0) % grayLimits.bucketsCount;
}

/** Percent (0..100, at most two decimals) to basis points, or null when it is not one. */
export function percentToBps(value: unknown): number | null {
  if (typeof value !== 'number' || !Number.isFinite(value) || value < 0 || value > 100) return null;
  const bps = Math.round(value * 100);
  return Math.abs(bps - value * 100) < 1e-6 ? bps : null;
}

export function bpsToPercent(bps: number): number {
  return bps / 100;
}

export interface RulesUpdate {
  rules: GrayRules;
  reason: string;
}

/**
 * Validates a PUT /admin/gray body against the current rules. Fields left out
 * keep their value; a field given replaces it whole (a whitelist given is the
 * whole whitelist). Cards arrive as numbers and leave this function as keyed
 * hashes: `hashCard` is the gateway's keyed hash.
 */
export function parseRulesUpdate(body: Record<string, unknown>, current: GrayRules, unitIds: readonly string[], hashCard: (pan: string) => string): RulesUpdate | ApiError {
  const known = new Set(['percent', 'whitelist', 'channels', 'units', 'fallback', 'reason']);
  for (const key of Object.keys(body)) if (!known.has(key)) return new ApiError('UNKNOWN_FIELD', `unknown field "${key}"`, key);
  const rules: GrayRules = { ...current, whitelist: { ...current.whitelist } };
  if (body['percent'] !== undefined) {
    const bps = percentToBps(body['percent']);
    if (bps === null) return new ApiError('INVALID_FIELD', 'percent is a number from 0 to 100 with at most two decimals', 'percent');
    rules.percentBps = bps;
  }
  if (body['whitelist'] !== undefined) {
    const whitelist = parseWhitelist(body['whitelist'], hashCard);
    if (whitelist instanceof ApiError) return whitelist;
    rules.whitelist = whitelist;
  }
  if (body['channels'] !== undefined) {
    const list = stringList(body['channels'], 'channels', channels.length, (item) => (channels as readonly string[]).includes(item));
    if (list instanceof ApiError) return list;
    rules.channels = list as Channel[];
  }
  if (body['units'] !== undefined) {
    const list = stringList(body['units'], 'units', unitIds.length, (item) => unitIds.includes(item));
    if (list instanceof ApiError) return list;
    rules.units = list;
  }
  if (body['fallback'] !== undefined) {
    if (body['fallback'] !== 'stable' && body['fallback'] !== 'reject') return new ApiError('INVALID_FIELD', 'fallback is "stable" or "reject"', 'fallback');
    rules.fallback = body['fallback'];
  }
  const reason = parseReason(body['reason']);
  if (reason instanceof ApiError) return reason;
  return { rules, reason };
}

export function parseReason(value: unknown): string | ApiError {
  if (value === undefined) return '';
  if (typeof value !== 'string' || value.length > grayLimits.reasonCharsMax) {
    return new ApiError('INVALID_FIELD', `reason is a string of at most ${grayLimits.reasonCharsMax} characters`, 'reason');
  }
  return value;
}

function parseWhitelist(value: unknown, hashCard: (pan: string) => string): GrayRules['whitelist'] | ApiError {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return new ApiError('INVALID_FIELD', 'whitelist is an object with "cards" and "accounts"', 'whitelist');
  const object = value as Record<string, unknown>;
  for (const key of Object.keys(object)) if (key !== 'cards' && key !== 'accounts') return new ApiError('UNKNOWN_FIELD', `unknown field "whitelist.${key}"`, `whitelist.${key}`);
  const cards = stringList(object['cards'] ?? [], 'whitelist.cards', grayLimits.whitelistCardsMax, (item) => /^\d{16}$/.test(item));
  if (cards instanceof ApiError) return cards;
  const accounts = stringList(object['accounts'] ?? [], 'whitelist.accounts', grayLimits.whitelistAccountsMax, isAccountId);
  if (accounts instanceof ApiError) return accounts;
  return { cards: cards.map((pan) => ({ hashHex: hashCard(pan), last4: pan.slice(-4) })), accounts };
}

function stringList(value: unknown, field: string, itemsMax: number, valid: (item: string) => boolean): string[] | ApiError {
  if (!Array.isArray(value) || value.length > itemsMax) return new ApiError('INVALID_FIELD', `${field} is an array of at most ${itemsMax} items`, field);
  for (let i = 0; i < value.length; i++) {
    const item: unknown = value[i];
    if (typeof item !== 'string' || !valid(item)) return new ApiError('INVALID_FIELD', `${field}[${i}] is not a valid entry`, `${field}[${i}]`);
  }
  return [...new Set(value as string[])];
}

/** The rules as operators see them: percent instead of basis points, cards masked. */
export function describeRules(rules: GrayRules): object {
  return {
    percent: bpsToPercent(rules.percentBps),
    whitelist: { cards: rules.whitelist.cards.map((card) => `************${card.last4}`), accounts: rules.whitelist.accounts },
    channels: rules.channels, units: rules.units, fallback: rules.fallback,
  };
}

export function assertRules(rules: GrayRules): void {
  assert(Number.isInteger(rules.percentBps) && rules.percentBps >= 0 && rules.percentBps <= grayLimits.bucketsCount, 'percentBps in 0..10000');
  assert(rules.fallback === 'stable' || rules.fallback === 'reject', 'fallback is stable or reject');
}
