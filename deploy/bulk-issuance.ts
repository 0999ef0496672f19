import { openSync, writeSync, closeSync } from 'node:fs';
import { request } from 'undici';
import { assert, limits } from '../domain/limits.js';
import type { ScoreBand } from '../domain/topology.js';

// Bulk card issuance from a file of applicants with a credit-evaluation score
// (the way a bank issues cards in batch from a cross-border credit report). A
// score band table maps the score to a credit limit; applicants below the lowest
// band are declined. Accounts are opened through the gateway in batches, several
// batches in flight, and the issued cards go to the card file: the embossing file
// a bank hands to its card manufacturer, and the test-card file the load tester
// reads. It is the only place a card number exists in clear, so it is written
// with mode 0600 inside the data folder and never logged.

export interface Applicant {
  id: string;
  score: number;
  product?: string;
}

export interface IssuedCard {
  applicantId: string;
  accountId: string;
  unit: string;
  pan: string;
  expiry: string;
  cvv: string;
  creditLimit: { value: number; currency: string };
  product: string;
}

export interface IssuanceSummary {
  applicants: number;
  issued: number;
  declined: number;
  failed: number;
  seconds: number;
  cardsPerSecond: number;
}

export function creditLimitForScore(bands: readonly ScoreBand[], score: number): number | null {
  for (const band of bands) if (score >= band.minScore) return band.creditLimitMinor;
  return null;
}

export function parseApplicants(text: string, format: 'csv' | 'json'): Applicant[] {
  const raw: unknown[] = format === 'json' ? (JSON.parse(text) as unknown[]) : csvRows(text);
  if (!Array.isArray(raw)) throw new Error('a JSON applicant file holds an array of applicants');
  return raw.map((item, index) => checkApplicant(item, index));
}

function csvRows(text: string): Record<string, string>[] {
  const lines = text.split(/\r?\n/).filter((line) => line.trim().length > 0);
  const header = (lines[0] ?? '').split(',').map((name) => name.trim());
  if (!header.includes('id') || !header.includes('score')) throw new Error('the CSV header names at least the columns id and score');
  return lines.slice(1).map((line, index) => {
    if (line.includes('"')) throw new Error(`CSV line ${index + 2}: quoted fields are not supported`);
    const cells = line.split(',').map((cell) => cell.trim());
    if (cells.length !== header.length) throw new Error(`CSV line ${index + 2}: ${cells.length} fields, header has ${header.length}`);
    return Object.fromEntries(header.map((name, i) => [name, cells[i] ?? '']));
  });
}

function checkApplicant(item: unknown, index: number): Applicant {
  const record = item as Record<string, unknown>;
  const where = `applicant ${index + 1}`;
  if (typeof record !== 'object' || record === null) throw new Error(`${where}: not an object`);
  const id = String(record['id'] ?? '');
  if (!/^[A-Za-z0-9._-]{1,64}$/.test(id)) throw new Error(`${where}: id must be 1-64 letters, digits or ._-`);
  const score = Number(record['score']);
  if (!Number.isInteger(score) || score < 0 || score > 1000) throw new Error(`${where}: score must be an integer 0..1000`);
  const product = record['product'];
  if (product !== undefined && product !== '' && typeof product !== 'string') throw new Error(`${where}: product is a string`);
  return typeof product === 'string' && product !== '' ? { id, score, product } : { id, score };
}

export interface IssuanceOptions {
  gatewayUrl: string;
  applicants: readonly Applicant[];
  bands: readonly ScoreBand[];
  currency: string;
  cardsPath: string;
  batchSize?: number;
  /** Batches in flight at once. */
  concurrency?: number;
  onProgress?: (done: number, total: number) => void;
}

export async function issueCards(options: IssuanceOptions): Promise<IssuanceSummary> {
  const batchSize = options.batchSize ?? 1000;
  const concurrency = options.concurrency ?? 4;
  assert(batchSize > 0 && batchSize <= limits.issuanceBatchAccountsMax, 'issuance batch size within the gateway limit');
  const started = performance.now();
  const eligible = options.applicants.filter((applicant) => creditLimitForScore(options.bands, applicant.score) !== null);
  const summary = { applicants: options.applicants.length, issued: 0, declined: options.applicants.length - eligible.length, failed: 0 };
  const file = openSync(options.cardsPath, 'a', 0o600);
  let next = 0;
  let done = 0;
  let failed = false;
  const worker = async (): Promise<void> => {
    while (next < eligible.length && !failed) {
      const batch = eligible.slice(next, next + batchSize);
      next += batch.length;
      let cards: IssuedCard[];
      try {
        cards = await issueBatch(options, batch);
      } catch (error) {
        // The other workers stop at their next batch: the failure is reported now, not after the whole portfolio.
        failed = true;
        throw error;
      }
      summary.issued += cards.length;
      summary.failed += batch.length - cards.length;
      if (cards.length > 0) writeSync(file, cards.map((card) => JSON.stringify(card)).join('\n') + '\n');
      done += batch.length;
      options.onProgress?.(done, eligible.length);
    }
  };
  // Every worker has stopped writing before the file is closed, even when one failed
  // (Promise.all would close it under the others, whose writes could then land in
  // whatever file reused the descriptor).
  const outcomes = await Promise.allSettled(Array.from({ length: concurrency }, worker));
  closeSync(file);
  const failure = outcomes.find((outcome) => outcome.status === 'rejected');
  if (failure !== undefined) throw (failure as PromiseRejectedResult).reason;
  const seconds = (performance.now() - started) / 1000;
  return { ...summary, seconds, cardsPerSecond: summary.issued / Math.max(seconds, 1e-9) };
}

async function issueBatch(options: IssuanceOptions, batch: readonly Applicant[]): Promise<IssuedCard[]> {
  const accounts = batch.map((applicant) => ({
    creditLimit: { value: creditLimitForScore(options.bands, applicant.score) as number, currency: options.currency },
    ...(applicant.product === undefined ? {} : { product: applicant.product }),
  }));
  const response = await request(`${options.gatewayUrl}/v1/accounts/batch`, {
    method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ accounts }),
  });
  const body = (await response.body.json()) as { results?: Array<{ status: number; result: Record<string, unknown> }>; error?: { message: string } };
  if (response.statusCode !== 200 || body.results === undefined) throw new Error(`bulk issuance refused: ${body.error?.message ?? response.statusCode}`);
  const cards: IssuedCard[] = [];
  body.results.forEach((entry, index) => {
    if (entry.status !== 201) return;
    const result = entry.result as { accountId: string; unit: string; product: string; creditLimit: IssuedCard['creditLimit']; card: { number: string; expiry: string; cvv: string } };
    cards.push({
      applicantId: (batch[index] as Applicant).id, accountId: result.accountId, unit: result.unit, pan: result.card.number,
      expiry: result.card.expiry, cvv: result.card.cvv, creditLimit: result.creditLimit, product: result.product,
    });
  });
  return cards;
}

/** Synthetic applicants with scores from a seeded generator, for the demo portfolio and benchmarks. */
export function syntheticApplicants(count: number, seed: number): Applicant[] {
  let state = seed >>> 0;
  const next = (): number => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  // Scores cluster around 700 like a credit bureau's population (sum of uniforms ~ bell curve).
  return Array.from({ length: count }, (_, i) => ({ id: `A${String(i + 1).padStart(9, '0')}`, score: Math.round(560 + (next() + next() + next()) * 100) }));
}
