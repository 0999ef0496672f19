import { createCipheriv } from 'node:crypto';
import { assert } from './limits.js';

// The account number inside a card number is enciphered. A card number is
//   IIN (6) | enciphered account number (8) | card sequence (1) | Luhn check digit (1)
// and its first 14 digits (the card prefix) are the same for every card of an
// account, so the routing ring is keyed by the card prefix: an authorization is
// routed from the card number alone, with no key and no directory. The account id
// (IIN and the account number in clear) is what stores, ledgers, logs and the API
// carry; without the key it says nothing of the account's card numbers beyond the
// IIN, which may be shown anyway. (When the middle digits were the account number
// itself, every store and ledger held each card number but for a digit anyone
// could compute.)
//
// The cipher is a format-preserving permutation of the 10^8 account numbers: an
// 8-round Feistel network over two 4-digit halves (addition modulo 10^4), whose
// round functions are tables of 10^4 values drawn from an AES-256-CTR keystream
// under the key, so that a round is a table lookup (routing an account operation
// costs well under a microsecond; issuing a card too). This is the construction of
// NIST SP 800-38G's FF1 with tabulated rounds; a bank would use FF1 itself in its
// HSM. Enciphering and deciphering need the key: the gateway (account routes,
// issuance) and the units (issuing cards) hold it.

const half = 10_000;
const rounds = 8;
export const accountNumberDigits = 8;
const iinDigits = 6;

export class CardNumberCipher {
  /** rounds x 10^4 round-function values, each in [0, 10^4). */
  private readonly tables: Uint16Array;

  constructor(key: Buffer) {
    assert(key.length === 32, 'the card-number key is 32 bytes');
    const stream = createCipheriv('aes-256-ctr', key, Buffer.alloc(16)).update(Buffer.alloc(rounds * half * 4));
    this.tables = new Uint16Array(rounds * half);
    for (let i = 0; i < this.tables.length; i++) this.tables[i] = stream.readUInt32LE(i * 4) % half;
  }

  /** The enciphered form of an account number (0 .. 10^8 - 1). */
  encipher(accountNumber: number): number {
    assert(Number.isInteger(accountNumber) && accountNumber >= 0 && accountNumber < half * half, 'an account number has 8 digits');
    let left = Math.floor(accountNumber / half);
    let right = accountNumber % half;
    for (let round = 0; round < rounds; round++) {
      const next = (left + (this.tables[round * half + right] as number)) % half;
      left = right;
      right = next;
    }
    return left * half + right;
  }

  decipher(enciphered: number): number {
    assert(Number.isInteger(enciphered) && enciphered >= 0 && enciphered < half * half, 'an enciphered account number has 8 digits');
    let left = Math.floor(enciphered / half);
    let right = enciphered % half;
    for (let round = rounds - 1; round >= 0; round--) {
      const previous = (right - (this.tables[round * half + left] as number) + half) % half;
      right = left;
      left = previous;
    }
    return left * half + right;
  }

  /** The first 14 digits of every card number of an account (its ring key). */
  cardPrefix(accountId: string): string {
    const number = Number(accountId.slice(iinDigits));
    return accountId.slice(0, iinDigits) + String(this.encipher(number)).padStart(accountNumberDigits, '0');
  }

  /** The account id a card prefix belongs to. */
  accountIdOf(cardPrefix: string): string {
    const number = Number(cardPrefix.slice(iinDigits));
    return cardPrefix.slice(0, iinDigits) + String(this.decipher(number)).padStart(accountNumberDigits, '0');
  }
}
