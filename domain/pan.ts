import type { CardNumberCipher } from './card-number.js';
import { luhnCheckDigit, luhnValid } from './luhn.js';

// Card number layout (16 digits):
//   IIN (6) | enciphered account number (8) | card sequence (1) | Luhn check digit (1)
// The first 14 digits, the card prefix, are the same for every card of an account,
// and the routing ring is keyed by them: the gateway routes a card to its unit
// without a directory lookup or a key. The account id (IIN and account number in
// clear) maps to the card prefix only through the key (domain/card-number.ts), so
// an account id in a store, a ledger or a log reveals no card number. Each IIN
// holds 10^8 accounts; products with more customers get more IINs.
// Sequence 0 is the primary card, 1..9 are supplementary cards.

export const panLength = 16;
export const accountIdLength = 14;
/** The card prefix (IIN and enciphered account number) is as long as an account id. */
export const cardPrefixLength = accountIdLength;
const iinLength = 6;

const digitsOnly = /^[0-9]+$/;

export function isDigits(text: string): boolean {
  return digitsOnly.test(text);
}

export function makePan(cipher: CardNumberCipher, accountId: string, cardSequence: number): string {
  if (accountId.length !== accountIdLength || !isDigits(accountId)) throw new Error('accountId must be 14 digits');
  if (!Number.isInteger(cardSequence) || cardSequence < 0 || cardSequence > 9) throw new Error('card sequence 0..9');
  const payload = cipher.cardPrefix(accountId) + String(cardSequence);
  return payload + String(luhnCheckDigit(payload));
}

export function makeAccountId(iin: string, accountNumber: number): string {
  if (iin.length !== iinLength || !isDigits(iin)) throw new Error('IIN must be 6 digits');
  if (!Number.isInteger(accountNumber) || accountNumber < 0 || accountNumber >= 1e8) throw new Error('account number 0..99999999');
  return iin + String(accountNumber).padStart(8, '0');
}

export type PanParse = { ok: true; cardPrefix: string; cardSequence: number } | { ok: false };

/** Splits a well-formed card number; a wrong length or Luhn failure is { ok: false }. */
export function parsePan(pan: string): PanParse {
  if (pan.length !== panLength || !isDigits(pan) || !luhnValid(pan)) return { ok: false };
  return { ok: true, cardPrefix: pan.slice(0, cardPrefixLength), cardSequence: pan.charCodeAt(cardPrefixLength) - 48 };
}

export function isAccountId(text: string): boolean {
  return text.length === accountIdLength && isDigits(text);
}

/** The only form in which a card number may appear in a log: IIN and last four. */
export function maskPan(pan: string): string {
  if (pan.length < 10) return '*'.repeat(pan.length);
  return pan.slice(0, 6) + '*'.repeat(pan.length - 10) + pan.slice(-4);
}

const panLike = /(?<![0-9])[0-9]{16,19}(?![0-9])/g;

/** Masks every digit run in text that looks like a card number (16-19 digits, Luhn-valid). */
export function maskCardNumbers(text: string): string {
  return text.replace(panLike, (digits) => (luhnValid(digits) ? maskPan(digits) : digits));
}
