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
  const lines = text.split('\n');
  if (lines.length > limits.groupCommitSizeMax) return new ApiError('INVALID_FIELD', `a batch holds at most ${limits.groupCommitSizeMax} operations`, null);
  const ops: UnitOp[] = [];
  for (let i = 0; i < lines.length; i++) {
    let value: unknown;
    try {
      value = JSON.parse(lines[i] as string);
    } catch {
      return new ApiError('INVALID_JSON', `batch line ${i} is not JSON`, null);
    }
    const problem = checkOp(value);
    if (problem !== null) return new ApiError('INVALID_FIELD', `batch line ${i}: ${problem}`, problem);
    ops.push(value as UnitOp);
  }
  return ops;
}

const isString = (value: unknown): value is string => typeof value === 'string' && value.length > 0;
const isMoney = (value: unknown): boolean => {
  const money = value as { value?: unknown; currency?: unknown } | null;
  return typeof money === 'object' && money !== null && Number.isSafeInteger(money.value) && (money.value as number) > 0
    && (money.value as number) <= limits.amountMinorMax && isCurrency(money.currency);
};
const isKey = (value: unknown): boolean => value === null || isString(value);

/** Returns the name of the first bad field, or null when the operation is well formed. */
function checkOp(value: unknown): string | null {
  if (typeof value !== 'object' || value === null) return 'op';
  const op = value as Record<string, unknown>;
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
    case 'setCardStatus':
      if (!isString(op['pan'])) return 'pan';
      return (cardStatuses as readonly unknown[]).includes(op['status']) ? null : 'status';
    default:
      return 'op';
  }
}
