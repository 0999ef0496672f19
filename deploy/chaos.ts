import { createHash } from 'node:crypto';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { Pool } from 'undici';
import type { IssuedCard } from './bulk-issuance.js';
import type { Cluster, Copy } from './cluster.js';

// Fault injection for the HA pairs, in the manner of a bank's workload: clients
// send authorizations (each with its own Idempotency-Key, retried with the same
// key after a 91 or a broken connection, as an acquirer does) while a fault hits;
// afterwards every answer the clients received is checked against every store.
//
// The checker's rules:
//   lost        an approval a client received that its unit's primary does not hold
//   duplicates  a key answered with two different authorizations, or a key with
//               more than one journal entry in a store
//   overLimit   an account whose open holds plus posted balance exceed its limit
//   diverged    a unit whose two copies differ (accounts, cards, holds, journal)
//   failed      requests whose last answer was not a decision (a 91, a 5xx, no answer)

export interface ChaosAnswer {
  key: string;
  accountId: string;
  unit: string;
  approved: boolean;
  authorizationId: string | null;
  code: string;
  failed: boolean;
  /** Answered by the gateway in stand-in (both copies of the unit down), not by the unit. */
  standIn: boolean;
  attempts: number;
}

export interface ChaosLoadOptions {
  gatewayUrl: () => string;
  cards: readonly IssuedCard[];
  concurrency: number;
  keyPrefix: string;
  /** An attempt answered 91, 5xx or with a broken connection is sent again (same key) at most this often. */
  retriesMax: number;
  retryDelayMs: number;
}

/** A closed-loop load of purchases that keeps every answer. */
export class ChaosLoad {
  readonly answers: ChaosAnswer[] = [];
  /** Wall-clock time of each answer's last attempt, by index in answers. */
  readonly answeredAtMs: number[] = [];
  private stopped = false;
  private next = 0;
  private running: Promise<void> | null = null;
  private pool: Pool | null = null;
  private poolUrl = '';

  constructor(private readonly options: ChaosLoadOptions) {}

  start(): void {
    this.running = Promise.all(Array.from({ length: this.options.concurrency }, () => this.worker())).then(() => undefined);
  }

  async stop(): Promise<ChaosAnswer[]> {
    this.stopped = true;
    await this.running;
    await this.pool?.close();
    return this.answers;
  }

  private client(): Pool {
    const url = this.options.gatewayUrl();
    if (this.pool === null || url !== this.poolUrl) {
      void this.pool?.close();
      this.pool = new Pool(url, { connections: this.options.concurrency, headersTimeout: 10_000, bodyTimeout: 10_000 });
      this.poolUrl = url;
    }
    return this.pool;
  }

  private async worker(): Promise<void> {
    while (!this.stopped) {
      const index = this.next++;
      const card = this.options.cards[(index * 7_919) % this.options.cards.length] as IssuedCard;
      const key = `${this.options.keyPrefix}-${index}`;
      const body = JSON.stringify({
        card: { number: card.pan, expiry: card.expiry, cvv: card.cvv }, amount: { value: 100 + (index % 50) * 37, currency: 'CNY' },
        type: 'purchase', channel: (['pos', 'ecommerce', 'wallet'] as const)[index % 3], merchant: { id: `m-${index % 97}`, mcc: '5411', country: 'CN' },
      });
      this.answers.push(await this.send(key, body, card));
      this.answeredAtMs.push(Date.now());
    }
  }

  private async send(key: string, body: string, card: IssuedCard): Promise<ChaosAnswer> {
    let last: ChaosAnswer = { key, accountId: card.accountId, unit: card.unit, approved: false, authorizationId: null, code: '-', failed: true, standIn: false, attempts: 0 };
    for (let attempt = 1; attempt <= this.options.retriesMax + 1; attempt++) {
      try {
        const response = await this.client().request({
          path: '/v1/authorizations', method: 'POST', body, headers: { 'content-type': 'application/json', 'idempotency-key': key },
        });
        const answer = (await response.body.json()) as { approved?: boolean; authorizationId?: string | null; responseCode?: string; standIn?: boolean };
        const code = answer.responseCode ?? String(response.statusCode);
        const failed = response.statusCode !== 200 || code === '91' || code === '96';
        last = { ...last, approved: answer.approved === true, authorizationId: answer.authorizationId ?? null, code, failed, standIn: answer.standIn === true, attempts: attempt };
        if (!failed) return last;
      } catch {
        last = { ...last, code: 'connection', failed: true, attempts: attempt };
      }
      if (this.stopped && attempt > 1) return last;
      await new Promise((resolve) => setTimeout(resolve, this.options.retryDelayMs));
    }
    return last;
  }
}

/**
 * The longest a unit went without answering from its own store after the fault: the
 * longest span, from the fault or from one of its answers, to its next answer that
 * was a decision made by the unit (not a failure, not a stand-in answer of the
 * gateway). Unlike switchMs (a switch away from a primary that was up), it covers
 * every fault, both copies dead and the gateway restarting included, as its
 * channels saw it: a request held while the unit switched counts until it is
 * answered, and a unit silent until the load ended (endMs) counts until then.
 */
export function longestUnitSilenceMs(answers: readonly ChaosAnswer[], answeredAtMs: readonly number[], unitId: string, faultMs: number, endMs: number): number {
  let lastMs = faultMs;
  let longest = 0;
  for (const [index, answer] of answers.entries()) {
    const atMs = answeredAtMs[index] as number;
    if (atMs < faultMs || answer.unit !== unitId || answer.failed || answer.standIn) continue;
    longest = Math.max(longest, atMs - lastMs);
    lastMs = atMs;
  }
  // A unit silent until the load ended was silent all that time.
  return Math.max(longest, endMs - lastMs);
}

export interface CheckResult {
  approved: number;
  lost: number;
  duplicates: number;
  failed: number;
  overLimit: number;
  diverged: string[];
  lostIds: string[];
}

/** Compares what clients were told with what the stores hold. The cluster's processes must be stopped. */
export function checkStores(cluster: Cluster, answers: readonly ChaosAnswer[], primaries: ReadonlyMap<string, Copy>): CheckResult {
  const approvedIds = new Map<string, ChaosAnswer>();
  const idsByKey = new Map<string, Set<string>>();
  for (const answer of answers) {
    if (!answer.approved || answer.authorizationId === null) continue;
    approvedIds.set(answer.authorizationId, answer);
    const ids = idsByKey.get(answer.key) ?? new Set<string>();
    ids.add(answer.authorizationId);
    idsByKey.set(answer.key, ids);
  }
  let duplicates = [...idsByKey.values()].filter((ids) => ids.size > 1).length;
  const lostIds: string[] = [];
  let overLimit = 0;
  const diverged: string[] = [];
  for (const unit of cluster.topology.units) {
    const copy = primaries.get(unit.id) ?? 'a';
    const dirs = { a: unit.dataDir, b: unit.standby?.dataDir ?? unit.dataDir };
    const store = new Database(join(dirs[copy], 'unit.db'), { readonly: true });
    try {
      // A stand-in id may name, by alias, the hold its request had placed before the unit went down.
      const hasHold = store.prepare(`SELECT 1 FROM holds WHERE authorization_id = coalesce((SELECT authorization_id FROM authorization_aliases WHERE alias = @id), @id)
        AND status IN ('open', 'cleared', 'reversed', 'expired')`).pluck();
      for (const [id, answer] of approvedIds) if (answer.unit === unit.id && hasHold.get({ id }) === undefined) lostIds.push(id);
      duplicates += store.prepare('SELECT count(*) FROM (SELECT idempotency_key FROM journal WHERE idempotency_key IS NOT NULL GROUP BY idempotency_key HAVING count(*) > 1)').pluck().get() as number;
      overLimit += store.prepare('SELECT count(*) FROM accounts WHERE open_holds + posted_balance > credit_limit OR open_holds < 0').pluck().get() as number;
    } finally {
      store.close();
    }
    if (unit.standby !== undefined && storeDigest(dirs.a) !== storeDigest(dirs.b)) diverged.push(unit.id);
  }
  return {
    approved: approvedIds.size, lost: lostIds.length, duplicates, failed: answers.filter((answer) => answer.failed).length,
    overLimit, diverged, lostIds: lostIds.slice(0, 20),
  };
}

/** A digest of everything a unit copy holds, in key order. */
export function storeDigest(dataDir: string): string {
  const store = new Database(join(dataDir, 'unit.db'), { readonly: true });
  const hash = createHash('sha256');
  try {
    for (const sql of [
      'SELECT * FROM accounts ORDER BY account_id', 'SELECT * FROM cards ORDER BY pan_hash',
      'SELECT * FROM holds ORDER BY authorization_id', 'SELECT * FROM journal ORDER BY seq',
    ]) {
      for (const row of store.prepare(sql).raw().iterate()) hash.update(JSON.stringify(row));
    }
  } finally {
    store.close();
  }
  return hash.digest('hex');
}
