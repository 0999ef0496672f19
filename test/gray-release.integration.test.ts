import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { defaultTopologyPath, type Cluster } from '../deploy/cluster.js';
import { issueCards, syntheticApplicants, type IssuedCard } from '../deploy/bulk-issuance.js';
import type { TopologyFile } from '../domain/topology.js';
import { loadCards } from '../loadtest/cards.js';
import { createWorkload, parseScenario, runScenario } from '../loadtest/index.js';
import { call, openAccount, openStore, purchase, startCluster, type Answer } from './helpers.js';

// Gray release with real processes: 2 units, each with a stable and a gray
// instance over its store, and the gateway. The gray release of this test
// lowers the cross-border fee (1.50% -> 1.00% on classic) and caps a purchase at
// 500.00, so a load of larger purchases makes gray decline far more than stable.

const token = 'demo-admin-token';
const admin = { authorization: `Bearer ${token}`, 'x-operator': 'test-operator' };
const grayRelease = 'test-gray';

let cluster: Cluster;
let root: string;
let close: () => Promise<void>;
let base: string;
let cards: IssuedCard[];

function topologyWithGrayRelease(): TopologyFile {
  const file = JSON.parse(readFileSync(defaultTopologyPath, 'utf8')) as TopologyFile;
  file.releases = {
    stable: 'test-stable', gray: grayRelease,
    parameters: { [grayRelease]: { products: { classic: { crossBorderFeeBps: 100, transactionAmountMinorMax: 50_000 } } } },
  };
  return file;
}

beforeAll(async () => {
  // Seeded account ids: the split of a set of accounts is binomial (std 0.46 point at 30% of 10,000), so the test fixes the set.
  ({ cluster, root, close } = await startCluster(2, { gray: true, base: topologyWithGrayRelease(), env: { DSU_ACCOUNT_ID_SEED: '20261121' } }));
  base = cluster.gatewayUrl;
  const summary = await issueCards({
    gatewayUrl: base, applicants: syntheticApplicants(10_000, 11), bands: [{ minScore: 0, creditLimitMinor: 100_000_000 }],
    currency: 'CNY', cardsPath: join(root, 'cards.ndjson'),
  });
  expect(summary.failed).toBe(0);
  cards = readFileSync(join(root, 'cards.ndjson'), 'utf8').trim().split('\n').map((line) => JSON.parse(line) as IssuedCard);
});

afterAll(async () => {
  await close();
});

async function grayStatus(): Promise<any> {
  const answer = await call(base, 'GET', '/admin/gray', undefined, admin);
  expect(answer.status).toBe(200);
  return answer.body;
}

async function setGray(body: Record<string, unknown>): Promise<Answer> {
  const answer = await call(base, 'PUT', '/admin/gray', body, admin);
  expect(answer.status, JSON.stringify(answer.body)).toBe(200);
  return answer;
}

function cardPurchase(card: IssuedCard, value: number, currency = 'CNY'): Record<string, unknown> {
  return {
    card: { number: card.pan, expiry: card.expiry, cvv: card.cvv }, amount: { value, currency }, type: 'purchase', channel: 'pos',
    merchant: { id: 'm-gray', mcc: '5411', country: currency === 'CNY' ? 'CN' : 'US' },
  };
}

/** Sends one purchase per card, `concurrency` at a time, and returns the answers in card order. */
async function purchaseEach(list: readonly IssuedCard[], value: number, concurrency: number, keyPrefix: string): Promise<Answer[]> {
  const answers: Answer[] = new Array(list.length);
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < list.length) {
      const i = next++;
      answers[i] = await call(base, 'POST', '/v1/authorizations', cardPurchase(list[i]!, value), { 'idempotency-key': `${keyPrefix}-${i}` });
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  return answers;
}

describe('gray release', () => {
  it('refuses the admin API without the token, or with a wrong one, with 401, and changes nothing', async () => {
    const before = await grayStatus();
    for (const headers of [{}, { authorization: 'Bearer wrong' }, { authorization: token }]) {
      const put = await call(base, 'PUT', '/admin/gray', { percent: 50 }, headers);
      expect(put.status).toBe(401);
      expect(put.body.error).toMatchObject({ code: 'UNAUTHORIZED', field: 'authorization' });
      expect((await call(base, 'POST', '/admin/gray/promote', {}, headers)).status).toBe(401);
      expect((await call(base, 'GET', '/admin/gray/history', undefined, headers)).status).toBe(401);
    }
    const bad = await call(base, 'PUT', '/admin/gray', { percent: 12.345 }, admin);
    expect(bad.status).toBe(400);
    expect(bad.body.error.field).toBe('percent');
    expect(await grayStatus()).toMatchObject({ rules: before.rules });
    expect((await call(base, 'GET', '/admin/gray/history', undefined, admin)).body.entries).toEqual([]);
  });

  it('whitelist only sends exactly the whitelisted cards and accounts to gray, through every hop', async () => {
    const accounts = await Promise.all(Array.from({ length: 8 }, () => openAccount(base, 10_000_000)));
    const [byCard, byAccount] = accounts;
    await setGray({ whitelist: { cards: [byCard!.card.number], accounts: [byAccount!.accountId] }, reason: 'verify with test cards' });
    const status = await grayStatus();
    expect(status.rules.whitelist.cards).toEqual([`************${byCard!.card.number.slice(-4)}`]);
    expect(JSON.stringify(status)).not.toContain(byCard!.card.number);

    // A cross-border purchase of 50.00 USD (below gray's purchase cap): gray charges 1.00%, stable 1.50%.
    const usd = (card: NonNullable<typeof byCard>['card']) => purchase(card, 5_000, { amount: { value: 5_000, currency: 'USD' }, merchant: { id: 'm-1', mcc: '5411', country: 'US' } });
    const answers = await Promise.all(accounts.map((account) => call(base, 'POST', '/v1/authorizations', usd(account.card), { 'idempotency-key': `wl-${account.accountId}` })));
    expect(answers.map((answer) => answer.body.responseCode)).toEqual(Array(8).fill('00'));
    expect(answers.map((answer) => answer.body.version)).toEqual(['gray', 'gray', 'stable', 'stable', 'stable', 'stable', 'stable', 'stable']);
    const held = answers.map((answer) => 10_000_000 - answer.body.availableCredit.value);
    expect(held[0]).toBe(held[1]);
    expect(held[2]).toBeGreaterThan(held[0]!);

    // The header decides before the whitelist, both ways.
    const forcedOff = await call(base, 'POST', '/v1/authorizations', purchase(byCard!.card, 100), { 'idempotency-key': 'wl-off', 'x-gray': 'off' });
    const forcedOn = await call(base, 'POST', '/v1/authorizations', purchase(accounts[5]!.card, 100), { 'idempotency-key': 'wl-on', 'x-gray': 'on' });
    expect([forcedOff.body.version, forcedOn.body.version]).toEqual(['stable', 'gray']);
    const badHeader = await call(base, 'POST', '/v1/authorizations', purchase(byCard!.card, 100), { 'idempotency-key': 'wl-bad', 'x-gray': 'maybe' });
    expect(badHeader.status).toBe(400);
    expect(badHeader.body.error.field).toBe('x-gray');

    // A follow-up goes to the same unit and stays on the authorization's version.
    const reversal = await call(base, 'POST', `/v1/authorizations/${answers[0]!.body.authorizationId}/reversals`, {});
    expect(reversal.body).toMatchObject({ responseCode: '00', version: 'gray', unit: byCard!.unit });

    // The journal of the unit records the version of every entry.
    const store = openStore(cluster, byCard!.unit);
    try {
      const versions = store.prepare('SELECT kind, version FROM journal WHERE authorization_id = ? ORDER BY seq').all(answers[0]!.body.authorizationId);
      expect(versions).toEqual([{ kind: 'auth.approved', version: 'gray' }, { kind: 'hold.reversed', version: 'gray' }]);
    } finally {
      store.close();
    }
    // The feed batch reads (its accounting form) carries the version too, and the
    // values of each detail that batch needs, as the full form has them.
    const unitUrl = cluster.unitSpec(byCard!.unit).url;
    const kinds = 'account.opened,auth.approved,auth.refund,hold.incremented,hold.reversed,hold.expired';
    const feed = await call(unitUrl, 'GET', `/v1/journal?after=0&limit=10000&kinds=${kinds}&format=accounting`);
    const entry = feed.body.entries.find((row: unknown[]) => row[4] === answers[0]!.body.authorizationId);
    expect(entry[7]).toBe('gray');
    expect(feed.body.entries.find((row: unknown[]) => row[4] === answers[2]!.body.authorizationId)?.[7]).toBe('stable');
    expect(feed.body.entries.find((row: unknown[]) => row[4] === answers[0]!.body.authorizationId && row[2] === 'hold.reversed')?.[8]).toBe(1);
    const full = await call(unitUrl, 'GET', `/v1/journal?after=0&limit=10000&kinds=${kinds}`);
    expect(full.body.entries.length).toBe(feed.body.entries.length);
    full.body.entries.forEach((e: { seq: number; at: number; kind: string; accountId: string; authorizationId: string | null; amount: number; currency: string; version: string; detail: Record<string, any> }, index: number) => {
      const d = e.detail;
      const picked = e.kind === 'account.opened' ? [d.product, d.creditLimit.currency, null]
        : e.kind === 'auth.approved' ? [d.type, d.amount.currency, d.fee ?? null]
          : e.kind === 'auth.refund' ? [d.amount.value, d.amount.currency, null]
            : e.kind === 'hold.reversed' ? [d.full === true ? 1 : 0, null, null] : [null, null, null];
      expect(feed.body.entries[index]).toEqual([e.seq, e.at, e.kind, e.accountId, e.authorizationId, e.amount, e.currency, e.version, ...picked]);
    });
    await setGray({ whitelist: { cards: [], accounts: [] }, reason: 'verified' });
  });

  it('splits 10,000 requests over 10,000 accounts within 1 point of the configured 30%', async () => {
    await setGray({ percent: 30, reason: 'split check' });
    const answers = await purchaseEach(cards.slice(0, 10_000), 1_000, 64, 'split');
    expect(answers.every((answer) => answer.status === 200 && answer.body.approved === true)).toBe(true);
    const gray = answers.filter((answer) => answer.body.version === 'gray').length;
    expect(Math.abs(gray / 10_000 - 0.3)).toBeLessThanOrEqual(0.01);
    const status = await grayStatus();
    expect(status.split.configuredPercent).toBe(30);
    expect(Math.abs(status.split.observedPercent - 30)).toBeLessThanOrEqual(1);
    // Sticky: the same accounts again, at 30% and then at 60%; none of the gray ones goes back.
    const again = await purchaseEach(cards.slice(0, 2_000), 1_000, 64, 'split-again');
    expect(again.map((answer) => answer.body.version)).toEqual(answers.slice(0, 2_000).map((answer) => answer.body.version));
    await setGray({ percent: 60, reason: 'stickiness check' });
    const wider = await purchaseEach(cards.slice(0, 2_000), 1_000, 64, 'split-wider');
    wider.forEach((answer, i) => {
      if (answers[i]!.body.version === 'gray') expect(answer.body.version).toBe('gray');
    });
    await setGray({ percent: 0, reason: 'split checked' });
  });

  it('compares only what the rules put on either side: no probes, nothing the channel scope kept stable', async () => {
    await setGray({ percent: 100, channels: ['ecommerce'], reason: 'ecommerce first' });
    const ecommerce = (card: IssuedCard) => ({ ...cardPurchase(card, 1_000), channel: 'ecommerce' });
    for (const [i, card] of cards.slice(0, 20).entries()) {
      // Kept stable by the channel scope; a stable probe; then the compared request.
      await call(base, 'POST', '/v1/authorizations', cardPurchase(card, 1_000), { 'idempotency-key': `scope-pos-${i}` });
      await call(base, 'POST', '/v1/authorizations', ecommerce(card), { 'idempotency-key': `scope-probe-${i}`, 'x-gray': 'off' });
      const compared = await call(base, 'POST', '/v1/authorizations', ecommerce(card), { 'idempotency-key': `scope-ecommerce-${i}` });
      expect(compared.body.version).toBe('gray');
    }
    const { window } = await grayStatus();
    expect(window.gray.requests).toBe(20);
    expect(window.stable.requests).toBe(0);
    await setGray({ percent: 0, channels: [], reason: 'scope checked' });
  });

  it('aborts a release plan automatically when gray declines too much, failing no request', async () => {
    const plan = await call(base, 'POST', '/admin/gray/plans', {
      steps: [{ percent: 20, minSeconds: 1, minRequests: 150, maxSeconds: 30 }, { percent: 50, minSeconds: 1, minRequests: 150 }],
      reason: 'release 2026.12 with a purchase cap',
    }, admin);
    expect(plan.status, JSON.stringify(plan.body)).toBe(200);
    // Purchases of 600.00: stable approves them, gray (capped at 500.00) declines with 13.
    const answers: Array<{ answer: Answer; sentAfterAbortMs: number }> = [];
    let abortedAtMs: number | null = null;
    const deadline = Date.now() + 25_000;
    let next = 0;
    const worker = async (): Promise<void> => {
      while (Date.now() < deadline && (abortedAtMs === null || Date.now() < abortedAtMs + 1_000)) {
        const i = next++;
        const sentMs = Date.now();
        const answer = await call(base, 'POST', '/v1/authorizations', cardPurchase(cards[i % cards.length]!, 60_000), { 'idempotency-key': `plan-${i}` });
        answers.push({ answer, sentAfterAbortMs: abortedAtMs === null ? -1 : sentMs - abortedAtMs });
      }
    };
    const watcher = async (): Promise<void> => {
      while (Date.now() < deadline && abortedAtMs === null) {
        await new Promise((resolve) => setTimeout(resolve, 100));
        if ((await grayStatus()).plan.state === 'aborted') abortedAtMs = Date.now();
      }
    };
    await Promise.all([watcher(), ...Array.from({ length: 16 }, worker)]);
    expect(abortedAtMs).not.toBeNull();
    const status = await grayStatus();
    expect(status.rules.percent).toBe(0);
    expect(status.plan).toMatchObject({ state: 'aborted', step: 1 });
    const analysis = status.plan.analyses.at(-1);
    expect(analysis.verdict).toBe('fail');
    expect(analysis.checks.find((check: { name: string }) => check.name === 'approvalRate').ok).toBe(false);
    // No request failed: every answer is a 200 with an authorization decision, none 91 or 96.
    expect(answers.every(({ answer }) => answer.status === 200 && ['00', '13'].includes(answer.body.responseCode))).toBe(true);
    expect(answers.filter(({ answer }) => answer.body.version === 'gray').length).toBeGreaterThanOrEqual(150);
    // Requests sent once the abort was visible all went to stable.
    const late = answers.filter(({ sentAfterAbortMs }) => sentAfterAbortMs > 0);
    expect(late.length).toBeGreaterThan(0);
    expect(late.every(({ answer }) => answer.body.version === 'stable')).toBe(true);
    const history = (await call(base, 'GET', '/admin/gray/history?limit=5', undefined, admin)).body.entries;
    expect(history[0]).toMatchObject({ who: 'gray-analysis', action: 'abort' });
    expect(history[0].evidence.verdict).toBe('fail');
  });

  it('toggles gray 0 -> 50% -> 0 at saturation in a load test with no error from the toggles', async () => {
    const scenario = parseScenario({
      name: 'gray-toggle-test',
      phases: [
        { name: 'stable', mode: 'closed', connections: 32, durationSeconds: 3 },
        { name: 'gray-50', mode: 'closed', connections: 32, durationSeconds: 3 },
        { name: 'back-to-0', mode: 'closed', connections: 32, durationSeconds: 3 },
      ],
      hooks: [
        { atSecond: 3, action: 'gray', args: { percent: 50, reason: 'load test toggle on' } },
        { atSecond: 6, action: 'gray', args: { percent: 0, reason: 'load test toggle off' } },
      ],
    }, 'inline');
    const workload = createWorkload({ cards: await loadCards(join(root, 'cards.ndjson')), seed: 5, keyPrefix: 'toggle' });
    const result = await runScenario({ scenario, url: base, workload, seed: 5 });
    expect(result.hooks.map((hook) => hook.ok)).toEqual([true, true]);
    const [before, during, after] = result.phases;
    expect(during!.totals.byVersion['gray']?.requests ?? 0).toBeGreaterThan(during!.totals.completed * 0.3);
    // The hook and the phase boundary share one second mark, so the first phase's last moments may already see gray.
    expect(before!.totals.byVersion['gray']?.requests ?? 0).toBeLessThanOrEqual(before!.totals.completed * 0.02);
    expect(after!.totals.byVersion['gray']?.requests ?? 0).toBeLessThanOrEqual(after!.totals.completed * 0.02);
    for (const phase of result.phases) {
      expect(phase.totals.errors).toMatchObject({ connection: 0, timeout: 0 });
      expect(phase.totals.responseCodes['91'] ?? 0).toBe(0);
      expect(phase.totals.responseCodes['96'] ?? 0).toBe(0);
    }
    // Non-2xx answers are the workload's own (for example a reversal of an expired hold): no more with the toggles than without.
    const non2xxRate = (phase: typeof before) => phase!.totals.errors.non2xx / Math.max(1, phase!.totals.completed);
    expect(non2xxRate(during)).toBeLessThanOrEqual(non2xxRate(before) + 0.001);
    expect(non2xxRate(after)).toBeLessThanOrEqual(non2xxRate(before) + 0.001);
  });

  it('keeps the rules and the audit log across a gateway restart, then promotes gray to stable', async () => {
    const historyBefore = (await call(base, 'GET', '/admin/gray/history?limit=1000', undefined, admin)).body.entries;
    expect(historyBefore.length).toBeGreaterThanOrEqual(8);
    await setGray({ percent: 5, reason: 'before restart' });
    await cluster.stopGateway();
    await cluster.startGateway();
    base = cluster.gatewayUrl;
    const status = await grayStatus();
    expect(status.rules.percent).toBe(5);
    const historyAfter = (await call(base, 'GET', '/admin/gray/history?limit=1000', undefined, admin)).body.entries;
    expect(historyAfter.length).toBe(historyBefore.length + 1);
    expect(historyAfter[0]).toMatchObject({ who: 'test-operator', action: 'rules', reason: 'before restart' });
    expect(historyAfter[0].before.rules.percent).toBe(0);
    expect(historyAfter[0].after.rules.percent).toBe(5);

    // A promote naming a release the gray instances do not run changes nothing.
    const wrong = await call(base, 'POST', '/admin/gray/promote', { reason: 'typo', release: 'no-such-release' }, admin);
    expect(wrong.status).toBe(409);
    expect(wrong.body.error).toMatchObject({ code: 'GRAY_NO_INSTANCE', field: 'release' });
    // The plan before was aborted by its gates: promoting that release takes force and a reason.
    const unforced = await call(base, 'POST', '/admin/gray/promote', { reason: 'release 2026.12 verified', release: grayRelease }, admin);
    expect(unforced.status).toBe(409);
    expect(unforced.body.error).toMatchObject({ code: 'GRAY_PLAN_ABORTED', field: 'force' });
    const badForce = await call(base, 'POST', '/admin/gray/promote', { reason: 'release 2026.12 verified', release: grayRelease, force: 'yes' }, admin);
    expect(badForce.status).toBe(400);
    expect(badForce.body.error).toMatchObject({ code: 'INVALID_FIELD', field: 'force' });
    expect((await grayStatus()).rules.percent).toBe(5);
    const promoted = await call(base, 'POST', '/admin/gray/promote', { reason: 'release 2026.12 verified', release: grayRelease, force: true }, admin);
    expect(promoted.status, JSON.stringify(promoted.body)).toBe(200);
    expect(promoted.body.change).toMatchObject({ action: 'promote', evidence: { forced: true } });
    // The same command again (its answer lost, say): the release is stable already, nothing is swapped back.
    const again = await call(base, 'POST', '/admin/gray/promote', { reason: 'release 2026.12 verified', release: grayRelease }, admin);
    expect(again.status).toBe(409);
    expect(again.body.error).toMatchObject({ code: 'GRAY_STATE_CHANGED', field: 'release' });
    const after = await grayStatus();
    expect(after.rules.percent).toBe(0);
    expect(after.instances.map((unit: any) => [unit.stable.release, unit.gray.release])).toEqual([[grayRelease, 'test-stable'], [grayRelease, 'test-stable']]);
    // Stable now runs the gray release: the lower fee, and the purchase cap.
    const answer = await call(base, 'POST', '/v1/authorizations', cardPurchase(cards[0]!, 60_000), { 'idempotency-key': 'after-promote' });
    expect(answer.body).toMatchObject({ version: 'stable', responseCode: '13' });
  });
});
