import { cardStatuses, type CardStatus } from '../domain/authorize-rules.js';
import { ApiError } from '../domain/errors.js';
import { limits } from '../domain/limits.js';
import { isCurrency, type Money } from '../domain/money.js';
import {
  cardNumberPattern, countryPattern, cvvPattern, expiryPattern, idempotencyKeyPattern, mccPattern, merchantIdPattern,
} from '../domain/field-patterns.js';
import { channels, transactionTypes, type Channel, type TransactionType } from '../domain/products.js';

// Validation of channel requests, as pure functions from parsed JSON to a typed
// request or an ApiError naming the field. Unknown fields are errors: a channel
// that misspells "partialAllowed" must hear about it rather than get a default.

type Json = Record<string, unknown>;

export interface AuthorizationRequest {
  card: { number: string; expiry: string; cvv: string | null };
  amount: Money;
  type: TransactionType;
  channel: Channel;
  merchant: { id: string; mcc: string; country: string };
  partialAllowed: boolean;
}



function object(parent: Json, name: string, path: string, allowed: readonly string[]): Json | ApiError {
  const value = parent[name];
  if (value === undefined) return new ApiError('MISSING_FIELD', `${path} is required`, path);
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return new ApiError('INVALID_FIELD', `${path} must be an object`, path);
  return onlyKnown(value as Json, path, allowed) ?? (value as Json);
}

export function onlyKnown(value: Json, path: string, allowed: readonly string[]): ApiError | null {
  for (const key of Object.keys(value)) {
    if (!allowed.includes(key)) return new ApiError('UNKNOWN_FIELD', `${path === '' ? '' : path + '.'}${key} is not a field of this request`, path === '' ? key : `${path}.${key}`);
  }
  return null;
}

function text(parent: Json, name: string, path: string, pattern: RegExp, what: string): string | ApiError {
  const value = parent[name];
  if (value === undefined) return new ApiError('MISSING_FIELD', `${path} is required`, path);
  if (typeof value !== 'string' || !pattern.test(value)) return new ApiError('INVALID_FIELD', `${path} must be ${what}`, path);
  return value;
}

function oneOf<T extends string>(parent: Json, name: string, options: readonly T[]): T | ApiError {
  const value = parent[name];
  if (value === undefined) return new ApiError('MISSING_FIELD', `${name} is required`, name);
  if (!(options as readonly unknown[]).includes(value)) return new ApiError('INVALID_FIELD', `${name} must be one of ${options.join(', ')}`, name);
  return value as T;
}

/** An amount: a positive integer number of minor units, not absurdly large, in a known currency. */
export function money(parent: Json, name: string, path: string, valueMax: number): Money | ApiError {
  const amount = object(parent, name, path, ['value', 'currency']);
  if (amount instanceof ApiError) return amount;
  const value = amount['value'];
  if (value === undefined) return new ApiError('MISSING_FIELD', `${path}.value is required`, `${path}.value`);
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value <= 0 || value > valueMax) {
    return new ApiError('INVALID_AMOUNT', `${path}.value must be an integer number of minor units, 1..${valueMax}`, `${path}.value`);
  }
  const currency = amount['currency'];
  if (currency === undefined) return new ApiError('MISSING_FIELD', `${path}.currency is required`, `${path}.currency`);
  if (!isCurrency(currency)) return new ApiError('INVALID_FIELD', `${path}.currency is not a supported ISO 4217 code`, `${path}.currency`);
  return { value, currency };
}

export function parseAuthorization(body: Json): AuthorizationRequest | ApiError {
  const unknown = onlyKnown(body, '', ['card', 'amount', 'type', 'channel', 'merchant', 'partialAllowed']);
  if (unknown !== null) return unknown;
  const card = object(body, 'card', 'card', ['number', 'expiry', 'cvv']);
  if (card instanceof ApiError) return card;
  const number = text(card, 'number', 'card.number', cardNumberPattern, 'a string of 12 to 19 digits');
  if (number instanceof ApiError) return number;
  const expiry = text(card, 'expiry', 'card.expiry', expiryPattern, 'YYYY-MM');
  if (expiry instanceof ApiError) return expiry;
  const cvv = card['cvv'] === undefined ? null : text(card, 'cvv', 'card.cvv', cvvPattern, '3 or 4 digits');
  if (cvv instanceof ApiError) return cvv;
  const amount = money(body, 'amount', 'amount', limits.amountMinorMax);
  if (amount instanceof ApiError) return amount;
  const type = oneOf(body, 'type', transactionTypes);
  if (type instanceof ApiError) return type;
  const channel = oneOf(body, 'channel', channels);
  if (channel instanceof ApiError) return channel;
  const merchant = parseMerchant(body);
  if (merchant instanceof ApiError) return merchant;
  const partialAllowed = body['partialAllowed'] === undefined ? false : body['partialAllowed'];
  if (typeof partialAllowed !== 'boolean') return new ApiError('INVALID_FIELD', 'partialAllowed must be true or false', 'partialAllowed');
  return { card: { number, expiry, cvv }, amount, type, channel, merchant, partialAllowed };
}

function parseMerchant(body: Json): AuthorizationRequest['merchant'] | ApiError {
  const merchant = object(body, 'merchant', 'merchant', ['id', 'mcc', 'country']);
  if (merchant instanceof ApiError) return merchant;
  const id = text(merchant, 'id', 'merchant.id', merchantIdPattern, '1 to 64 letters, digits or ._:-');
  if (id instanceof ApiError) return id;
  const mcc = text(merchant, 'mcc', 'merchant.mcc', mccPattern, 'a 4-digit merchant category code');
  if (mcc instanceof ApiError) return mcc;
  const country = text(merchant, 'country', 'merchant.country', countryPattern, 'an ISO 3166 alpha-2 code such as CN');
  if (country instanceof ApiError) return country;
  return { id, mcc, country };
}

/** Body of a reversal (amount optional) or an increment (amount required). */
export function parseFollowUp(body: Json, amountRequired: boolean): { amount: Money | null } | ApiError {
  const unknown = onlyKnown(body, '', ['amount']);
  if (unknown !== null) return unknown;
  if (body['amount'] === undefined && !amountRequired) return { amount: null };
  const amount = money(body, 'amount', 'amount', limits.amountMinorMax);
  if (amount instanceof ApiError) return amount;
  return { amount };
}

export function parseIdempotencyKey(header: string | string[] | undefined, required: boolean): string | null | ApiError {
  if (header === undefined) {
    return required ? new ApiError('MISSING_FIELD', 'the Idempotency-Key header is required', 'Idempotency-Key') : null;
  }
  if (typeof header !== 'string' || !idempotencyKeyPattern.test(header)) {
    return new ApiError('INVALID_FIELD', 'Idempotency-Key must be 1 to 128 printable ASCII characters', 'Idempotency-Key');
  }
  return header;
}

export function parseOpenAccount(body: Json, productNames: readonly string[], defaultProduct: string): { creditLimit: Money; product: string } | ApiError {
  const unknown = onlyKnown(body, '', ['creditLimit', 'product']);
  if (unknown !== null) return unknown;
  const creditLimit = money(body, 'creditLimit', 'creditLimit', limits.creditLimitMinorMax);
  if (creditLimit instanceof ApiError) return creditLimit;
  if (creditLimit.currency !== 'CNY' && creditLimit.currency !== 'HKD' && creditLimit.currency !== 'MOP') {
    return new ApiError('INVALID_FIELD', 'creditLimit.currency is the billing currency: CNY, HKD or MOP', 'creditLimit.currency');
  }
  const product = body['product'] ?? defaultProduct;
  if (typeof product !== 'string' || !productNames.includes(product)) {
    return new ApiError('INVALID_FIELD', `product must be one of ${productNames.join(', ')}`, 'product');
  }
  return { creditLimit, product };
}

export function parseCardStatus(body: Json): { number: string; status: CardStatus } | ApiError {
  const unknown = onlyKnown(body, '', ['card', 'status']);
  if (unknown !== null) return unknown;
  const card = object(body, 'card', 'card', ['number']);
  if (card instanceof ApiError) return card;
  const number = text(card, 'number', 'card.number', cardNumberPattern, 'a string of 12 to 19 digits');
  if (number instanceof ApiError) return number;
  const status = oneOf(body, 'status', cardStatuses);
  if (status instanceof ApiError) return status;
  return { number, status };
}
