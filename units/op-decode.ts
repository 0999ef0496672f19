import { cardStatuses } from '../domain/authorize-rules.js';
import { ApiError } from '../domain/errors.js';
import { limits } from '../domain/limits.js';
import { isCurrency } from '../domain/money.js';
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
      const merchant = op['merchant'] as Record<string, unknown> | null;
      if (!isString(op['idempotencyKey'])) return 'idempotencyKey';
      if (!isString(op['pan']) || !isString(op['expiry'])) return 'card';
      if (op['cvv'] !== null && !isString(op['cvv'])) return 'cvv';
      if (!isMoney(op['amount'])) return 'amount';
      if (!(transactionTypes as readonly unknown[]).includes(op['type'])) return 'type';
      if (!(channels as readonly unknown[]).includes(op['channel'])) return 'channel';
      if (typeof merchant !== 'object' || merchant === null || !isString(merchant['id']) || !isString(merchant['mcc']) || !isString(merchant['country'])) return 'merchant';
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
      if (!isString(op['accountId']) || !isString(op['product'])) return 'accountId';
      return isMoney(op['creditLimit']) ? null : 'creditLimit';
    case 'addCard':
      return isString(op['accountId']) ? null : 'accountId';
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
      const merchant = op['merchant'] as Record<string, unknown> | null;
      if (typeof merchant !== 'object' || merchant === null || !isString(merchant['id']) || !isString(merchant['mcc']) || !isString(merchant['country'])) return 'merchant';
      if (op['cvvHashHex'] !== null && (typeof op['cvvHashHex'] !== 'string' || !/^[0-9a-f]{32}$/.test(op['cvvHashHex']))) return 'cvvHashHex';
      if (!isString(op['expiry'])) return 'expiry';
      if (typeof op['partialAllowed'] !== 'boolean') return 'partialAllowed';
      if (!Number.isSafeInteger(op['atMs'])) return 'atMs';
      return isString(op['answer']) ? null : 'answer';
    }
    case 'setCardStatus':
      if (!isString(op['pan'])) return 'pan';
      return (cardStatuses as readonly unknown[]).includes(op['status']) ? null : 'status';
    default:
      return 'op';
  }
}
