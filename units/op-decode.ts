import { cardStatuses } from '../domain/authorize-rules.js';
import { ApiError } from '../domain/errors.js';
import { limits } from '../domain/limits.js';
import { cardNumberPattern, countryPattern, cvvPattern, expiryPattern, mccPattern, merchantIdPattern } from '../domain/field-patterns.js';
import { isBillingCurrency, isCurrency } from '../domain/money.js';
import { isAccountId } from '../domain/pan.js';
import { channels, transactionTypes } from '../domain/products.js';
import type { UnitOp } from '../domain/protocol.js';

// The unit's side of the protocol boundary: the gateway validated the channel's
// request, and the unit checks again what it decodes before it writes anything,
// so a gateway bug cannot put a malformed operation into the store.

export function decodeOps(text: string): UnitOp[] | ApiError {
  let values: unknown[];
  try {
    // One parse of the whole batch: NDJSON lines joined by commas form a JSON array
    // (a line holds no raw newline, so the split points are exactly the separators).
    values = JSON.parse('[' + text.replaceAll('\n', ',') + ']') as unknown[];
  } catch {
    return new ApiError('INVALID_JSON', 'a batch line is not JSON', null);
  }
  let lines = 1;
  for (let at = text.indexOf('\n'); at !== -1; at = text.indexOf('\n', at + 1)) lines++;
  if (values.length !== lines) return new ApiError('INVALID_FIELD', 'every batch line holds exactly one operation', null);
  if (values.length > limits.groupCommitSizeMax) return new ApiError('INVALID_FIELD', `a batch holds at most ${limits.groupCommitSizeMax} operations`, null);
  for (let i = 0; i < values.length; i++) {
    const problem = checkOp(values[i]);
    if (problem !== null) return new ApiError('INVALID_FIELD', `batch line ${i}: ${problem}`, problem);
  }
  return values as UnitOp[];
}

const isString = (value: unknown): value is string => typeof value === 'string' && value.length > 0;
const isMoney = (value: unknown): boolean => {
  const money = value as { value?: unknown; currency?: unknown } | null;
  return typeof money === 'object' && money !== null && Number.isSafeInteger(money.value) && (money.value as number) > 0
    && (money.value as number) <= limits.amountMinorMax && isCurrency(money.currency);
};
const isKey = (value: unknown): boolean => value === null || isString(value);
const matches = (value: unknown, pattern: RegExp): boolean => typeof value === 'string' && pattern.test(value);
const isAccount = (value: unknown): boolean => typeof value === 'string' && isAccountId(value);
const isMerchant = (value: unknown): boolean => {
  const merchant = value as Record<string, unknown> | null;
  return typeof merchant === 'object' && merchant !== null && matches(merchant['id'], merchantIdPattern)
    && matches(merchant['mcc'], mccPattern) && matches(merchant['country'], countryPattern);
};
const isCreditLimit = (value: unknown): boolean => {
  const money = value as { value?: unknown; currency?: unknown } | null;
  return typeof money === 'object' && money !== null && Number.isSafeInteger(money.value) && (money.value as number) > 0
    && (money.value as number) <= limits.creditLimitMinorMax && isBillingCurrency(money.currency);
};
/** The answer a stand-in approval gave the channel: one JSON object, which the unit stores as one line. */
const isAnswer = (value: unknown): boolean => {
  if (typeof value !== 'string' || value.length === 0 || value.includes('\n')) return false;
  try {
    const parsed = JSON.parse(value) as unknown;
    return typeof parsed === 'object' && parsed !== null && !Array.isArray(parsed);
  } catch {
    return false;
  }
};
const isRelease = (value: unknown): boolean => {
  const release = value as { authorizationId?: unknown; minor?: unknown } | null;
  return typeof release === 'object' && release !== null && isString(release.authorizationId)
    && Number.isSafeInteger(release.minor) && (release.minor as number) >= 0 && (release.minor as number) <= limits.amountMinorMax;
};

/** Returns the name of the first bad field, or null when the operation is well formed. */
function checkOp(value: unknown): string | null {
  if (typeof value !== 'object' || value === null) return 'op';
  const op = value as Record<string, unknown>;
  if (op['version'] !== undefined && op['version'] !== 'stable' && op['version'] !== 'gray') return 'version';
  switch (op['op']) {
    case 'authorize': {
      if (!isString(op['idempotencyKey'])) return 'idempotencyKey';
      if (!matches(op['pan'], cardNumberPattern) || !matches(op['expiry'], expiryPattern)) return 'card';
      if (op['cvv'] !== null && !matches(op['cvv'], cvvPattern)) return 'cvv';
      if (!isMoney(op['amount'])) return 'amount';
      if (!(transactionTypes as readonly unknown[]).includes(op['type'])) return 'type';
      if (!(channels as readonly unknown[]).includes(op['channel'])) return 'channel';
      if (!isMerchant(op['merchant'])) return 'merchant';
      return typeof op['partialAllowed'] === 'boolean' ? null : 'partialAllowed';
    }
    case 'reverse':
      if (!isKey(op['idempotencyKey'])) return 'idempotencyKey';
      if (!isString(op['authorizationId'])) return 'authorizationId';
      return op['amount'] === null || isMoney(op['amount']) ? null : 'amount';
    case 'increment':
      if (!isKey(op['idempotencyKey'])) return 'idempotencyKey';
      if (!isString(op['authorizationId'])) return 'authorizationId';
      return isMoney(op['amount']) ? null : 'amount';
    case 'openAccount':
      if (!isAccount(op['accountId'])) return 'accountId';
      if (!isString(op['product'])) return 'product';
      return isCreditLimit(op['creditLimit']) ? null : 'creditLimit';
    case 'addCard':
      return isAccount(op['accountId']) ? null : 'accountId';
    case 'settle':
      if (!isString(op['idempotencyKey'])) return 'idempotencyKey';
      if (!isString(op['accountId'])) return 'accountId';
      if (!Array.isArray(op['releases']) || !(op['releases'] as unknown[]).every(isRelease)) return 'releases';
      if (!Number.isSafeInteger(op['postMinor']) || Math.abs(op['postMinor'] as number) > limits.amountMinorMax) return 'postMinor';
      return isString(op['kind']) ? null : 'kind';
    case 'advice': {
      if (!isString(op['idempotencyKey']) || !isString(op['authorizationId'])) return 'idempotencyKey';
      if (typeof op['panHashHex'] !== 'string' || !/^[0-9a-f]{32}$/.test(op['panHashHex'])) return 'panHashHex';
      if (!isMoney(op['amount'])) return 'amount';
      if (!(transactionTypes as readonly unknown[]).includes(op['type'])) return 'type';
      if (!(channels as readonly unknown[]).includes(op['channel'])) return 'channel';
      if (!isMerchant(op['merchant'])) return 'merchant';
      if (op['cvvHashHex'] !== null && (typeof op['cvvHashHex'] !== 'string' || !/^[0-9a-f]{32}$/.test(op['cvvHashHex']))) return 'cvvHashHex';
      if (!matches(op['expiry'], expiryPattern)) return 'expiry';
      if (typeof op['partialAllowed'] !== 'boolean') return 'partialAllowed';
      if (!Number.isSafeInteger(op['atMs'])) return 'atMs';
      return isAnswer(op['answer']) ? null : 'answer';
    }
    case 'setCardStatus':
      if (!matches(op['pan'], cardNumberPattern)) return 'pan';
      return (cardStatuses as readonly unknown[]).includes(op['status']) ? null : 'status';
    default:
      return 'op';
  }
}
