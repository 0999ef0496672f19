import { createHmac } from 'node:crypto';
import { CardNumberCipher } from './card-number.js';
import { assert } from './limits.js';

// Card data at rest is a keyed hash: a store or a backup alone cannot reveal a card
// number or brute-force it offline without the key (the PAN space is small enough
// that an unkeyed hash would fall to enumeration). The key comes from the
// environment (CARD_HASH_KEY, hex) and would live in an HSM in a bank.

export interface CardKeys {
  pan: Buffer;
  cvv: Buffer;
  /** Enciphers the account number inside card numbers (domain/card-number.ts). */
  cardNumber: CardNumberCipher;
}

export const demoCardHashKeyHex = '6473752d636172642d636f72652d64656d6f2d6b65792d6e6f742d736563726574';

export function deriveCardKeys(masterKeyHex: string): CardKeys {
  assert(/^[0-9a-fA-F]{32,}$/.test(masterKeyHex), 'card hash key is at least 16 bytes of hex');
  const master = Buffer.from(masterKeyHex, 'hex');
  const derive = (label: string): Buffer => createHmac('sha256', master).update(label).digest();
  return { pan: derive('pan'), cvv: derive('cvv'), cardNumber: new CardNumberCipher(derive('card-number')) };
}

/** 16 bytes of HMAC-SHA256: the card's primary key in a unit store. */
export function panHash(keys: CardKeys, pan: string): Buffer {
  return createHmac('sha256', keys.pan).update(pan).digest().subarray(0, 16);
}

export function cvvHash(keys: CardKeys, pan: string, expiry: string, cvv: string): Buffer {
  return createHmac('sha256', keys.cvv).update(pan).update('|').update(expiry).update('|').update(cvv).digest().subarray(0, 16);
}
