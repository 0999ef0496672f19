import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Cluster } from '../deploy/cluster.js';
import { authorize, call, freshKey, openAccount, openStore, purchase, startCluster } from './helpers.js';

// Real processes: a gateway and 4 units on ephemeral ports, each unit with its own SQLite file.

let cluster: Cluster;
let base: string;
let close: () => Promise<void>;

beforeAll(async () => {
  const started = await startCluster(4);
  cluster = started.cluster;
  close = started.close;
  base = cluster.gatewayUrl;
});

afterAll(async () => {
  await close();
});

describe('authorization through the gateway', () => {
  it('200 parallel authorizations on one account never exceed its limit', async () => {
    const account = await openAccount(base, 100_000);
    const answers = await Promise.all(Array.from({ length: 200 }, () => authorize(base, purchase(account.card, 1_700))));
    const approved = answers.filter((answer) => answer.body.approved === true);
    expect(answers.every((answer) => answer.status === 200)).toBe(true);
    // 58 * 1700 = 98600 fits, a 59th would need 100300.
    expect(approved.length).toBe(58);
    expect(answers.filter((answer) => answer.body.responseCode === '51').length).toBe(142);
    const balance = await call(base, 'GET', `/v1/accounts/${account.accountId}`);
    expect(balance.body.openHolds.value).toBe(58 * 1_700);
    expect(balance.body.availableCredit.value).toBe(100_000 - 58 * 1_700);
  });

  it('an idempotent retry returns the first answer and places one hold', async () => {
    const account = await openAccount(base, 50_000);
    const key = freshKey();
    const body = purchase(account.card, 10_000);
    const answers = await Promise.all([authorize(base, body, key), authorize(base, body, key), authorize(base, body, key)]);
    const later = await authorize(base, body, key);
    for (const answer of [...answers, later]) expect(answer.body).toEqual(answers[0]?.body);
    const balance = await call(base, 'GET', `/v1/accounts/${account.accountId}`);
    expect(balance.body.openHolds.value).toBe(10_000);
    const reused = await authorize(base, purchase(account.card, 10_001), key);
    expect(reused.body.responseCode).toBe('94');
    expect((await call(base, 'GET', `/v1/accounts/${account.accountId}`)).body.openHolds.value).toBe(10_000);
  });

  it('full and partial reversals restore credit; increments take more', async () => {
    const account = await openAccount(base, 100_000);
    const first = await authorize(base, purchase(account.card, 30_000));
    const id = first.body.authorizationId as string;
    expect(id.startsWith(`${account.unit}~`)).toBe(true);
    const increment = await call(base, 'POST', `/v1/authorizations/${id}/increments`, { amount: { value: 5_000, currency: 'CNY' } });
    expect(increment.body).toMatchObject({ responseCode: '00', availableCredit: { value: 65_000, currency: 'CNY' } });
    const partial = await call(base, 'POST', `/v1/authorizations/${id}/reversals`, { amount: { value: 15_000, currency: 'CNY' } });
    expect(partial.body).toMatchObject({ responseCode: '00', availableCredit: { value: 80_000 } });
    const tooMuch = await call(base, 'POST', `/v1/authorizations/${id}/reversals`, { amount: { value: 20_001, currency: 'CNY' } });
    expect(tooMuch.status).toBe(409);
    expect(tooMuch.body.error.code).toBe('AMOUNT_EXCEEDS_HOLD');
    const full = await call(base, 'POST', `/v1/authorizations/${id}/reversals`, {});
    expect(full.body).toMatchObject({ responseCode: '00', availableCredit: { value: 100_000 } });
    const again = await call(base, 'POST', `/v1/authorizations/${id}/reversals`, {});
    expect(again.status).toBe(409);
    expect(again.body.error.code).toBe('AUTHORIZATION_CLOSED');
    const balance = await call(base, 'GET', `/v1/accounts/${account.accountId}`);
    expect(balance.body).toMatchObject({ openHolds: { value: 0 }, availableCredit: { value: 100_000 } });
  });

  it('a supplementary card shares its account credit line', async () => {
    const account = await openAccount(base, 20_000);
    const supplementary = await call(base, 'POST', `/v1/accounts/${account.accountId}/cards`, {});
    expect(supplementary.status).toBe(201);
    // Every card of an account starts with the same 14 digits (the ring key), which are not the account id.
    expect(supplementary.body.card.number.slice(0, 14)).toBe(account.card.number.slice(0, 14));
    expect(account.card.number.slice(0, 14)).not.toBe(account.accountId);
    expect((await authorize(base, purchase(account.card, 15_000))).body.responseCode).toBe('00');
    const second = await authorize(base, purchase(supplementary.body.card, 6_000));
    expect(second.body.responseCode).toBe('51');
    expect((await authorize(base, purchase(supplementary.body.card, 5_000))).body).toMatchObject({ responseCode: '00', availableCredit: { value: 0 } });
  });

  it('lost, stolen and frozen cards are declined with 41, 43 and 57', async () => {
    const account = await openAccount(base, 20_000);
    for (const [status, code] of [['lost', '41'], ['stolen', '43'], ['frozen', '57'], ['active', '00']] as const) {
      const changed = await call(base, 'POST', '/v1/cards/status', { card: { number: account.card.number }, status });
      expect(changed.status).toBe(200);
      expect((await authorize(base, purchase(account.card, 100))).body.responseCode).toBe(code);
    }
  });

  it('holds expire when the unit clock passes their life, and open-to-buy comes back', async () => {
    const account = await openAccount(base, 50_000);
    expect((await authorize(base, purchase(account.card, 20_000))).body.responseCode).toBe('00');
    const unit = cluster.topology.units.find((each) => each.id === account.unit)!;
    // The classic product holds for 7 days; the clock only moves forward, so move it 8.
    const moved = await call(unit.url, 'POST', '/admin/clock', { advanceMs: 8 * 86_400_000 });
    expect(moved.status).toBe(200);
    const balance = await call(base, 'GET', `/v1/accounts/${account.accountId}`);
    expect(balance.body).toMatchObject({ openHolds: { value: 0 }, availableCredit: { value: 50_000 } });
    expect((await call(unit.url, 'POST', '/admin/clock', { advanceMs: -1 })).status).toBe(400);
  });

  it('a Luhn failure or an unknown card number is a 14', async () => {
    const account = await openAccount(base, 20_000);
    const digits = account.card.number;
    const wrongCheck = digits.slice(0, 15) + String((Number(digits[15]) + 1) % 10);
    expect((await authorize(base, purchase({ ...account.card, number: wrongCheck }, 100))).body.responseCode).toBe('14');
    expect((await authorize(base, purchase({ ...account.card, number: '6225880000000000' }, 100))).body.responseCode).toBe('14');
  });

  it('every answered approval survives kill -9 of its unit and the restart', async () => {
    const accounts = await Promise.all(Array.from({ length: 40 }, () => openAccount(base, 1_000_000)));
    const victim = accounts[0]!.unit;
    const onVictim = accounts.filter((account) => account.unit === victim);
    // Keep authorizations flowing while the unit is killed: some are answered before, some get 91.
    const approvedIds: string[] = [];
    let killed = false;
    const worker = async (index: number): Promise<void> => {
      const card = onVictim[index % onVictim.length]!.card;
      for (let round = 0; round < 10_000; round++) {
        const answer = await authorize(base, purchase(card, 100));
        if (answer.body.approved === true) approvedIds.push(answer.body.authorizationId as string);
        if (killed && answer.body.responseCode === '91') return;
      }
    };
    const workers = Array.from({ length: 16 }, (_, index) => worker(index));
    await new Promise((resolve) => setTimeout(resolve, 300));
    await cluster.killUnit(victim, 'SIGKILL');
    killed = true;
    await Promise.all(workers);
    expect(approvedIds.length).toBeGreaterThan(0);
    const unavailable = await authorize(base, purchase(onVictim[0]!.card, 100));
    expect(unavailable.body.responseCode).toBe('91');
    await cluster.startUnit(victim);
    const store = openStore(cluster, victim);
    try {
      const holds = store.prepare('SELECT authorization_id FROM holds').pluck().all() as string[];
      const present = new Set(holds);
      expect(approvedIds.filter((id) => !present.has(id))).toEqual([]);
      const mismatched = store.prepare(`SELECT a.account_id FROM accounts a
        LEFT JOIN (SELECT account_id, sum(hold_amount) AS held FROM holds WHERE status = 'open' GROUP BY account_id) h ON h.account_id = a.account_id
        WHERE a.open_holds != coalesce(h.held, 0)`).all();
      expect(mismatched).toEqual([]);
    } finally {
      store.close();
    }
    // The gateway fails fast for unitDownBackoffMs after a failure, then probes again.
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect((await authorize(base, purchase(onVictim[0]!.card, 100))).body.responseCode).toBe('00');
  });
});
