import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Cluster } from '../deploy/cluster.js';
import { issueCards, syntheticApplicants, type IssuedCard } from '../deploy/bulk-issuance.js';
import { call, openStore, startCluster } from './helpers.js';

// A day in miniature: 10,000 accounts issued in bulk, then 20,000 authorizations
// (purchases, cash, foreign currency, reversals) through the gateway, 64 at a
// time. Afterwards every unit's store is read directly and checked.

let cluster: Cluster;
let root: string;
let close: () => Promise<void>;
let cards: IssuedCard[];

beforeAll(async () => {
  const started = await startCluster(4);
  ({ cluster, root, close } = started);
  const summary = await issueCards({
    gatewayUrl: cluster.gatewayUrl, applicants: syntheticApplicants(10_400, 7), bands: cluster.topology.issuance.scoreBands,
    currency: 'CNY', cardsPath: join(root, 'cards.ndjson'),
  });
  expect(summary.failed).toBe(0);
  cards = readFileSync(join(root, 'cards.ndjson'), 'utf8').trim().split('\n').map((line) => JSON.parse(line) as IssuedCard);
});

afterAll(async () => {
  await close();
});

describe('a run of 20,000 authorizations over 10,000 accounts', () => {
  it('keeps every account within its limit, in every unit store', async () => {
    expect(cards.length).toBeGreaterThanOrEqual(10_000);
    const approved = new Map<string, number>();
    let next = 0;
    let reversals = 0;
    const total = 20_000;
    let overLimitDeclines = 0;
    const worker = async (): Promise<void> => {
      while (next < total) {
        const i = next++;
        // Every 10th request hits one of 20 hot accounts, so some reach their limit.
        const card = i % 10 === 0 ? cards[i % 20]! : cards[(i * 7_919) % cards.length]!;
        const cash = i % 17 === 0;
        const foreign = i % 13 === 0;
        const body = {
          card: { number: card.pan, expiry: card.expiry, cvv: card.cvv },
          amount: { value: 1_000 + ((i * 104_729) % 900_000), currency: foreign ? 'USD' : 'CNY' },
          type: cash ? 'cash' : 'purchase', channel: cash ? 'atm' : (['pos', 'ecommerce', 'wallet'] as const)[i % 3],
          merchant: { id: `m-${i % 500}`, mcc: cash ? '6011' : '5411', country: foreign ? 'US' : 'CN' },
        };
        const answer = await call(cluster.gatewayUrl, 'POST', '/v1/authorizations', body, { 'idempotency-key': `run-${i}` });
        expect(answer.status).toBe(200);
        if (answer.body.responseCode === '51') overLimitDeclines++;
        if (answer.body.approved !== true) continue;
        approved.set(answer.body.authorizationId as string, 1);
        if (i % 9 === 0) {
          const reversal = await call(cluster.gatewayUrl, 'POST', `/v1/authorizations/${answer.body.authorizationId}/reversals`, {});
          expect(reversal.body.responseCode).toBe('00');
          reversals++;
        }
      }
    };
    await Promise.all(Array.from({ length: 64 }, worker));
    expect(approved.size).toBeGreaterThan(10_000);
    expect(reversals).toBeGreaterThan(1_000);
    // The hot accounts did reach their limit: the over-limit check below ran under pressure.
    expect(overLimitDeclines).toBeGreaterThan(0);
    await cluster.stop();

    let holdsSeen = 0;
    for (const unit of cluster.topology.units) {
      const store = openStore(cluster, unit.id);
      try {
        const overLimit = store.prepare('SELECT account_id FROM accounts WHERE open_holds + posted_balance > credit_limit OR open_holds < 0').all();
        expect(overLimit).toEqual([]);
        const drift = store.prepare(`SELECT a.account_id FROM accounts a
          LEFT JOIN (SELECT account_id, sum(hold_amount) AS held FROM holds WHERE status = 'open' GROUP BY account_id) h ON h.account_id = a.account_id
          WHERE a.open_holds != coalesce(h.held, 0)`).all();
        expect(drift).toEqual([]);
        const ids = store.prepare("SELECT authorization_id FROM holds WHERE status IN ('open', 'reversed')").pluck().all() as string[];
        for (const id of ids) expect(approved.has(id), id).toBe(true);
        holdsSeen += ids.length;
        const journalHolds = store.prepare('SELECT coalesce(sum(amount), 0) FROM journal').pluck().get();
        const openHolds = store.prepare('SELECT coalesce(sum(open_holds), 0) FROM accounts').pluck().get();
        expect(journalHolds).toBe(openHolds);
      } finally {
        store.close();
      }
    }
    expect(holdsSeen).toBe(approved.size);
  });
});
