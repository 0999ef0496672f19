import { createReadStream } from 'node:fs';
import { access } from 'node:fs/promises';
import { createInterface } from 'node:readline';
import type { IssuedCard } from '../deploy/bulk-issuance.js';
import { loadtestLimits } from './limits.js';

// The card portfolio the cluster's card issuance writes: newline-delimited
// JSON, one card per line. The load tester only reads it.

/** A line of the card file as issuance writes it (deploy/bulk-issuance.ts); the applicant id is not needed here. */
export type PortfolioCard = Omit<IssuedCard, 'applicantId'>;

export const defaultCardsPath = 'deploy/data/cards.ndjson';

const expiryPattern = /^[0-9]{4}-(0[1-9]|1[0-2])$/;

/** Parses one portfolio line; returns a message instead of throwing so the caller can name the line. */
export function parseCardLine(line: string): PortfolioCard | string {
  let value: unknown;
  try {
    value = JSON.parse(line);
  } catch {
    return 'is not JSON';
  }
  if (typeof value !== 'object' || value === null) return 'is not an object';
  const card = value as Record<string, unknown>;
  for (const field of ['accountId', 'unit', 'pan', 'expiry', 'cvv', 'product'] as const) {
    if (typeof card[field] !== 'string' || card[field] === '') return `has no string "${field}"`;
  }
  if (!expiryPattern.test(card['expiry'] as string)) return 'has an expiry that is not YYYY-MM';
  const limit = card['creditLimit'] as Record<string, unknown> | undefined;
  if (typeof limit !== 'object' || limit === null) return 'has no "creditLimit"';
  if (!Number.isSafeInteger(limit['value']) || (limit['value'] as number) < 0) return 'has a creditLimit.value that is not a non-negative integer';
  if (typeof limit['currency'] !== 'string' || !/^[A-Z]{3}$/.test(limit['currency'])) return 'has a creditLimit.currency that is not ISO 4217';
  return {
    accountId: card['accountId'] as string,
    unit: card['unit'] as string,
    pan: card['pan'] as string,
    expiry: card['expiry'] as string,
    cvv: card['cvv'] as string,
    creditLimit: { value: limit['value'] as number, currency: limit['currency'] },
    product: card['product'] as string,
  };
}

/** Reads a portfolio file, at most `cardsMax` cards; throws a one-line message naming the file and line. */
export async function loadCards(path: string, cardsMax: number = loadtestLimits.cardsMax): Promise<PortfolioCard[]> {
  try {
    await access(path);
  } catch {
    throw new Error(`card portfolio ${path} does not exist (issue cards first, e.g. npm run issue-cards, or pass --cards)`);
  }
  const cards: PortfolioCard[] = [];
  const lines = createInterface({ input: createReadStream(path, 'utf8'), crlfDelay: Infinity });
  let lineNumber = 0;
  for await (const line of lines) {
    lineNumber += 1;
    if (line.trim() === '') continue;
    const parsed = parseCardLine(line);
    if (typeof parsed === 'string') {
      lines.close();
      throw new Error(`card portfolio ${path} line ${lineNumber} ${parsed}`);
    }
    cards.push(parsed);
    if (cards.length >= cardsMax) break;
  }
  lines.close();
  if (cards.length === 0) throw new Error(`card portfolio ${path} has no cards`);
  return cards;
}
