import { describe, it, expect } from 'vitest';
import type { PortfolioCard } from '../loadtest/cards.js';
import { parseCardLine } from '../loadtest/cards.js';
import { loadtestLimits } from '../loadtest/limits.js';
import { createRandom } from '../loadtest/random.js';
import { parseScenario } from '../loadtest/scenario.js';
import { applyScenarioOverrides } from '../loadtest/scenario-overrides.js';
import { createWorkload, requestKinds } from '../loadtest/workload.js';
import type { LoadRequest, WorkloadModel } from '../loadtest/workload.js';
import type { WorkloadOverrides } from '../loadtest/workload-config.js';

const currencies = ['CNY', 'HKD', 'MOP'] as const;

function makeCards(count: number): PortfolioCard[] {
  return Array.from({ length: count }, (_, i) => ({
    accountId: String(62258800000000 + i),
    unit: `dsu-${1 + (i % 4)}`,
    pan: String(6225880000000000 + i * 10),
    expiry: '2029-11',
    cvv: String(100 + (i % 900)),
    creditLimit: { value: 5_000_000, currency: currencies[i % 3]! },
    product: 'classic',
  }));
}

const cards = makeCards(2_000);
const cardsByAccount = new Map(cards.map((card) => [card.accountId, card]));

/** Only new authorizations, no follow-ups, probes or retries: the pure mix. */
const pureMix: WorkloadOverrides = { reversalShare: 0, incrementShare: 0, retryShare: 0, declineShare: 0, refundShare: 0 };

function bodyOf(request: LoadRequest): Record<string, any> {
  return JSON.parse(request.body) as Record<string, any>;
}

/** A stand-in gateway: approves every purchase and cash authorization. */
function approveAll(model: WorkloadModel, request: LoadRequest): string | null {
  if (request.path !== '/v1/authorizations' || request.kind === requestKinds.retry) {
    model.observe(request, 200, { responseCode: '00', unit: 'dsu-1' });
    return null;
  }
  const id = `dsu-1~${request.seq}`;
  model.observe(request, 200, { authorizationId: id, approved: true, responseCode: '00', approvedAmount: { value: request.amountMinor, currency: request.currency }, unit: 'dsu-1' });
  return request.transactionType === 'refund' ? null : id;
}

function draw(model: WorkloadModel, count: number, approve = false): LoadRequest[] {
  const out: LoadRequest[] = [];
  for (let i = 0; i < count; i += 1) {
    const request = model.next();
    out.push(request);
    if (approve) approveAll(model, request);
  }
  return out;
}

describe('random', () => {
  it('is seeded and stays in range', () => {
    const a = createRandom(7);
    const b = createRandom(7);
    const c = createRandom(8);
    const seqA = Array.from({ length: 50 }, () => a.float());
    expect(Array.from({ length: 50 }, () => b.float())).toEqual(seqA);
    expect(Array.from({ length: 50 }, () => c.float())).not.toEqual(seqA);
    const r = createRandom(1);
    const counts = [0, 0, 0, 0];
    for (let i = 0; i < 20_000; i += 1) counts[r.intBelow(4)]! += 1;
    for (const count of counts) expect(Math.abs(count / 20_000 - 0.25)).toBeLessThan(0.015);
    const draws = Array.from({ length: 10_001 }, () => r.lognormal(100, 1)).sort((x, y) => x - y);
    expect(draws[5_000]!).toBeGreaterThan(90);
    expect(draws[5_000]!).toBeLessThan(110);
  });
});

describe('workload mix', () => {
  it('follows the channel weights over 20,000 draws', () => {
    const weights = { pos: 50, atm: 5, ecommerce: 30, wallet: 15 };
    const model = createWorkload({ cards, seed: 1, config: { ...pureMix, channelWeights: weights } });
    const requests = draw(model, 20_000);
    for (const [channel, weight] of Object.entries(weights)) {
      const share = requests.filter((r) => r.channel === channel).length / requests.length;
      expect(Math.abs(share - weight / 100)).toBeLessThan(0.015);
    }
  });

  it('sends ATM as cash with MCC 6011 and everything else as purchases with other MCCs', () => {
    const model = createWorkload({ cards, seed: 2, config: pureMix });
    const problems: string[] = [];
    for (const request of draw(model, 5_000)) {
      const body = bodyOf(request);
      const cash = request.channel === 'atm';
      if (body['channel'] !== request.channel) problems.push(`channel ${request.seq}`);
      if (body['type'] !== (cash ? 'cash' : 'purchase')) problems.push(`type ${request.seq}`);
      if ((body['merchant'].mcc === '6011') !== cash) problems.push(`mcc ${request.seq}`);
      if (!Number.isSafeInteger(body['amount'].value) || body['amount'].value <= 0) problems.push(`amount ${request.seq}`);
    }
    expect(problems).toEqual([]);
  });

  it('draws skewed amounts and the configured foreign-currency share', () => {
    const model = createWorkload({ cards, seed: 3, config: { ...pureMix, foreignShare: 0.2, channelWeights: { pos: 1, atm: 0, ecommerce: 0, wallet: 0 } } });
    const requests = draw(model, 20_000);
    const foreign = requests.filter((r) => !['CNY', 'HKD', 'MOP'].includes(r.currency));
    expect(Math.abs(foreign.length / requests.length - 0.2)).toBeLessThan(0.015);
    const cny = requests.filter((r) => r.currency === 'CNY').map((r) => r.amountMinor).sort((a, b) => a - b);
    const median = cny[cny.length >> 1]!;
    const mean = cny.reduce((sum, v) => sum + v, 0) / cny.length;
    expect(median).toBeGreaterThan(8_000); // about 120.00 CNY
    expect(median).toBeLessThan(16_000);
    expect(mean).toBeGreaterThan(median * 1.3); // a long right tail
    for (const request of requests.filter((r) => r.currency === 'JPY')) expect(bodyOf(request)['merchant'].country).toBe('JP');
  });

  it('makes the configured share of deliberate declines, each of the right kind', () => {
    const model = createWorkload({ cards, seed: 4, config: { ...pureMix, declineShare: 0.1 } });
    const requests = draw(model, 20_000);
    const probes = requests.filter((r) => r.kind === 'over-limit' || r.kind === 'wrong-expiry' || r.kind === 'wrong-cvv');
    expect(Math.abs(probes.length / requests.length - 0.1)).toBeLessThan(0.012);
    for (const probe of probes) {
      const body = bodyOf(probe);
      const card = cardsByAccount.get(probe.accountId!)!;
      if (probe.kind === 'over-limit') expect(body['amount'].value).toBeGreaterThan(card.creditLimit.value * 2);
      if (probe.kind === 'wrong-expiry') expect(body['card'].expiry).not.toBe(card.expiry);
      if (probe.kind === 'wrong-cvv') {
        expect(body['card'].cvv).not.toBe(card.cvv);
        expect(probe.channel).toBe('ecommerce');
      }
    }
    const normal = requests.filter((r) => r.kind === 'authorization');
    for (const request of normal.slice(0, 500)) {
      const card = cardsByAccount.get(request.accountId!)!;
      expect(bodyOf(request)['card']).toEqual({ number: card.pan, expiry: card.expiry, cvv: card.cvv });
    }
  });
});

describe('workload seeding', () => {
  const signature = (r: LoadRequest): string => `${r.kind} ${r.path} ${r.idempotencyKey} ${r.body}`;

  it('repeats exactly for the same seed and responses', () => {
    const a = draw(createWorkload({ cards, seed: 42 }), 3_000, true).map(signature);
    const b = draw(createWorkload({ cards, seed: 42 }), 3_000, true).map(signature);
    expect(b).toEqual(a);
  });

  it('differs for another seed', () => {
    const a = draw(createWorkload({ cards, seed: 42 }), 200).map((r) => r.body);
    const b = draw(createWorkload({ cards, seed: 43 }), 200).map((r) => r.body);
    const same = a.filter((body, i) => body === b[i]).length;
    expect(same).toBeLessThan(5);
  });
});

describe('workload hot keys', () => {
  it('puts the configured share of traffic on the hot accounts', () => {
    const model = createWorkload({ cards, seed: 5, config: { ...pureMix, hotAccountCount: 10, hotAccountShare: 0.3 } });
    const hot = new Set(model.hotAccountIds);
    expect(hot.size).toBe(10);
    const requests = draw(model, 20_000);
    const share = requests.filter((r) => hot.has(r.accountId!)).length / requests.length;
    expect(Math.abs(share - 0.3)).toBeLessThan(0.015);
  });

  it('puts the configured share of non-ATM purchases on the hot merchant, and can change per phase', () => {
    const model = createWorkload({ cards, seed: 6, config: { ...pureMix, hotMerchantShare: 0 } });
    const measure = (requests: readonly LoadRequest[]): number => {
      const purchases = requests.filter((r) => r.channel !== 'atm');
      return purchases.filter((r) => r.merchantId === model.config.hotMerchantId).length / purchases.length;
    };
    expect(measure(draw(model, 5_000))).toBe(0);
    model.reconfigure({ hotMerchantShare: 0.4 });
    expect(Math.abs(measure(draw(model, 20_000)) - 0.4)).toBeLessThan(0.015);
    model.reconfigure({});
    expect(measure(draw(model, 5_000))).toBe(0);
  });

  it('skews merchant popularity (Zipf)', () => {
    const model = createWorkload({ cards, seed: 7, config: { ...pureMix, merchantsPerChannel: 1_000 } });
    const counts = new Map<string, number>();
    for (const r of draw(model, 20_000)) counts.set(r.merchantId!, (counts.get(r.merchantId!) ?? 0) + 1);
    const sorted = [...counts.values()].sort((a, b) => b - a);
    expect(sorted[0]!).toBeGreaterThan(sorted[sorted.length >> 1]! * 20);
  });
});

describe('workload follow-ups and retries', () => {
  it('sends no reversal or increment before any approval is observed', () => {
    const model = createWorkload({ cards, seed: 8, config: { reversalShare: 0.2, incrementShare: 0.2 } });
    const requests = draw(model, 5_000);
    expect(requests.filter((r) => r.kind === 'reversal' || r.kind === 'increment')).toHaveLength(0);
  });

  it('only follows up approvals it observed, never after a reversal, with bounded memory', () => {
    const model = createWorkload({ cards, seed: 9, config: { reversalShare: 0.15, incrementShare: 0.1 } });
    const approved = new Set<string>();
    const reversed = new Set<string>();
    let followUps = 0;
    const problems: string[] = [];
    for (let i = 0; i < 30_000; i += 1) {
      const request = model.next();
      if (request.kind === 'reversal' || request.kind === 'increment') {
        const id = request.authorizationId!;
        followUps += 1;
        if (!approved.has(id)) problems.push(`${request.seq} follows unknown ${id}`);
        if (reversed.has(id)) problems.push(`${request.seq} follows reversed ${id}`);
        if (request.path !== `/v1/authorizations/${encodeURIComponent(id)}/${request.kind}s`) problems.push(`${request.seq} path ${request.path}`);
        if (request.kind === 'reversal') reversed.add(id);
        if (request.kind === 'increment' && !(bodyOf(request)['amount'].value > 0)) problems.push(`${request.seq} increment amount`);
      }
      const id = approveAll(model, request);
      if (id !== null) approved.add(id);
      if (model.approvalsRemembered > loadtestLimits.approvalsRememberedMax) problems.push(`${request.seq} memory ${model.approvalsRemembered}`);
    }
    expect(problems).toEqual([]);
    expect(followUps / 30_000).toBeGreaterThan(0.2);
  });

  it('sends no follow-up of an authorization while an increment of it is unanswered', () => {
    const model = createWorkload({ cards, seed: 12, config: { reversalShare: 0.2, incrementShare: 0.2 } });
    // Approve some authorizations, then hold every increment's answer back for a while.
    for (let i = 0; i < 2_000; i += 1) approveAll(model, model.next());
    const unanswered = new Map<string, LoadRequest>();
    const problems: string[] = [];
    let increments = 0;
    for (let i = 0; i < 20_000; i += 1) {
      const request = model.next();
      const id = request.authorizationId;
      if (id !== null && unanswered.has(id)) problems.push(`${request.seq} ${request.kind} of ${id} while its increment is in flight`);
      if (request.kind === 'increment') {
        increments += 1;
        unanswered.set(id as string, request);
      } else {
        approveAll(model, request);
      }
      if (unanswered.size >= 50) {
        // Answer the increments: their approvals come back and may be followed up again.
        for (const increment of unanswered.values()) model.observe(increment, 200, { responseCode: '00', approved: true, unit: 'dsu-1' });
        unanswered.clear();
      }
    }
    expect(problems).toEqual([]);
    expect(increments).toBeGreaterThan(1_000);
  });

  it('does not remember declines or errors', () => {
    const model = createWorkload({ cards, seed: 10, config: { reversalShare: 0.3 } });
    for (let i = 0; i < 2_000; i += 1) {
      const request = model.next();
      expect(request.kind).not.toBe('reversal');
      // A decline (200, not approved), or an error status whose body would otherwise read as an approval.
      const error = i % 2 === 1;
      model.observe(request, error ? 429 : 200, { authorizationId: `x~${i}`, approved: error, responseCode: error ? '00' : '51' });
    }
    expect(model.approvalsRemembered).toBe(0);
  });

  it('retries resend an earlier request with the same key and body', () => {
    const model = createWorkload({ cards, seed: 11, config: { retryShare: 0.1 } });
    const requests = draw(model, 10_000, true);
    const bySeq = new Map(requests.map((r) => [r.seq, r]));
    const retries = requests.filter((r) => r.kind === 'retry');
    expect(Math.abs(retries.length / requests.length - 0.1)).toBeLessThan(0.015);
    for (const retry of retries) {
      const original = bySeq.get(retry.retryOf!)!;
      expect(original.seq).toBeLessThan(retry.seq);
      expect(original.kind).not.toBe('retry');
      expect(retry.idempotencyKey).toBe(original.idempotencyKey);
      expect(retry.body).toBe(original.body);
      expect(retry.path).toBe(original.path);
      expect(retry.headers).toEqual(original.headers);
    }
  });

  it('gives every non-retry request a fresh key and a distinct request', () => {
    const model = createWorkload({ cards, seed: 12, keyPrefix: 'run-x' });
    const requests = draw(model, 20_000, true).filter((r) => r.kind !== 'retry');
    const keys = new Set(requests.map((r) => r.idempotencyKey));
    expect(keys.size).toBe(requests.length);
    for (const r of requests.slice(0, 100)) {
      expect(r.idempotencyKey.startsWith('run-x-')).toBe(true);
      expect(r.headers['idempotency-key']).toBe(r.idempotencyKey);
    }
    const distinct = new Set(requests.map((r) => `${r.path} ${r.body}`));
    expect(distinct.size / requests.length).toBeGreaterThan(0.995);
  });
});

describe('workload configuration and inputs', () => {
  it('rejects bad settings with a clear message', () => {
    expect(() => createWorkload({ cards, seed: 1, config: { declineShare: 1.5 } })).toThrow(/declineShare must be a number in \[0, 1\]/);
    expect(() => createWorkload({ cards, seed: 1, config: { reversalShare: 0.4, retryShare: 0.4 } })).toThrow(/at most 0.5/);
    expect(() => createWorkload({ cards, seed: 1, config: { channelWeights: { pos: 0, atm: 0, ecommerce: 0, wallet: 0 } } })).toThrow(/positive weight/);
  });

  it('parses portfolio lines and names what is wrong', () => {
    const line = '{"accountId":"62258800000001","unit":"dsu-1","pan":"6225880000000101","expiry":"2029-11","cvv":"123","creditLimit":{"value":5000000,"currency":"CNY"},"product":"classic"}';
    expect(parseCardLine(line)).toMatchObject({ pan: '6225880000000101', creditLimit: { value: 5000000, currency: 'CNY' } });
    expect(parseCardLine('{')).toBe('is not JSON');
    expect(parseCardLine(line.replace('2029-11', '2029-13'))).toMatch(/expiry/);
  });
});

describe('scenario files', () => {
  const base = { name: 't', description: 'd', phases: [{ mode: 'rate', rate: 1000, durationSeconds: 10 }, { mode: 'closed', connections: 8, durationSeconds: 30 }] };

  it('validates with messages naming the field', () => {
    expect(() => parseScenario({ ...base, phases: [{ mode: 'fast', durationSeconds: 1 }] }, 'x.json')).toThrow(/x\.json: phases\[0\]\.mode must be one of/);
    expect(() => parseScenario({ ...base, phases: [{ mode: 'rate', durationSeconds: 1 }] }, 'x.json')).toThrow(/phases\[0\]\.rate must be an integer/);
    expect(() => parseScenario({ ...base, hooks: [{ atSecond: 1, action: 'no-such-action' }] }, 'x.json')).toThrow(/"no-such-action" is not a registered hook action/);
    expect(() => parseScenario({ ...base, hooks: [{ atSecond: 99, action: 'log', args: { message: 'm' } }] }, 'x.json')).toThrow(/atSecond must be an integer in \[0, 39\]/);
    expect(() => parseScenario({ ...base, phases: [{ mode: 'closed', durationSeconds: 1, workload: { hotMerchantShare: 2 } }] }, 'x.json')).toThrow(/hotMerchantShare/);
    expect(() => parseScenario({ ...base, extra: 1 }, 'x.json')).toThrow(/extra is not a known field/);
  });

  it('applies command-line overrides by rescaling', () => {
    const scenario = parseScenario({ ...base, hooks: [{ atSecond: 20, action: 'log', args: { message: 'm' } }] }, 'x.json');
    const changed = applyScenarioOverrides(scenario, { rate: 4000, durationSeconds: 20, connections: 16 });
    expect(changed.phases.map((p) => p.rate)).toEqual([4000, null]);
    expect(changed.phases.map((p) => p.durationSeconds)).toEqual([5, 15]);
    expect(changed.phases.map((p) => p.connections)).toEqual([16, 2]);
    expect(changed.hooks[0]!.atSecond).toBe(10);
    expect(() => applyScenarioOverrides(parseScenario({ phases: [{ mode: 'closed', durationSeconds: 5 }] }, 'y.json'), { rate: 10 })).toThrow(/--rate/);
    // A duration that stretches a phase past its bound is refused here, not an hour into the run.
    expect(() => applyScenarioOverrides(scenario, { durationSeconds: 5_000 })).toThrow(/over the 3600 s a phase may last/);
  });
});
