import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { analyzeStep, defaultGates, parsePlan, type PlanStep, type WindowStats } from '../domain/gray-plan.js';
import { createLogger } from '../domain/log.js';
import { GrayController } from '../gateway/gray-controller.js';
import { GrayStore } from '../gateway/gray-store.js';
import { accountBucket, compileRules, decideVersion, emptyRules, parseRulesUpdate, type GrayRules, type RequestFacts } from '../domain/gray.js';
import { ApiError } from '../domain/errors.js';
import { makeAccountId } from '../domain/pan.js';
import { createRandom } from '../loadtest/random.js';

const facts = (over: Partial<RequestFacts> = {}): RequestFacts => ({
  force: null, accountKey: '62258800000001', channel: 'pos', unitId: 'dsu-1', cardHashHex: () => 'hash-of-card', ...over,
});
const rules = (over: Partial<GrayRules> = {}): GrayRules => ({ ...emptyRules, ...over });
// A fixed, seeded set of random account ids: the split of any set is binomial
// (std 0.43 point at 25% of 10,000), so the test fixes its sample.
const random = createRandom(20261121);
const accountIds = Array.from({ length: 10_000 }, () => makeAccountId('622588', random.intBelow(100_000_000)));

describe('gray rules', () => {
  // Every row: rules, request facts, expected version and the rule that decided it.
  const table: Array<[string, Partial<GrayRules>, Partial<RequestFacts>, 'stable' | 'gray', string]> = [
    ['header on beats everything', { channels: ['atm'], units: ['dsu-9'] }, { force: 'on' }, 'gray', 'header'],
    ['header off beats the whitelist', { whitelist: { cards: [], accounts: ['62258800000001'] }, percentBps: 10_000 }, { force: 'off' }, 'stable', 'header'],
    ['whitelisted account', { whitelist: { cards: [], accounts: ['62258800000001'] } }, {}, 'gray', 'whitelist'],
    ['whitelisted card beats the channel rule', { whitelist: { cards: [{ hashHex: 'hash-of-card', last4: '1234' }], accounts: [] }, channels: ['atm'] }, {}, 'gray', 'whitelist'],
    ['channel not listed', { channels: ['atm'], percentBps: 10_000 }, {}, 'stable', 'channel'],
    ['channel listed, unit not listed', { channels: ['pos'], units: ['dsu-2'], percentBps: 10_000 }, {}, 'stable', 'unit'],
    ['channel and unit listed, 100%', { channels: ['pos'], units: ['dsu-1'], percentBps: 10_000 }, {}, 'gray', 'percent'],
    ['0%', { percentBps: 0 }, {}, 'stable', 'percent'],
  ];
  it.each(table)('%s', (_name, given, request, version, reason) => {
    expect(decideVersion(compileRules(rules(given)), facts(request))).toEqual({ version, reason });
  });

  it('hashes the card only when cards are whitelisted', () => {
    let hashed = 0;
    const cardHashHex = (): string => {
      hashed++;
      return 'x';
    };
    decideVersion(compileRules(rules({ percentBps: 5_000 })), facts({ cardHashHex }));
    expect(hashed).toBe(0);
    decideVersion(compileRules(rules({ whitelist: { cards: [{ hashHex: 'y', last4: '0000' }], accounts: [] } })), facts({ cardHashHex }));
    expect(hashed).toBe(1);
  });

  it('keeps an account on gray while the percentage only grows', () => {
    const grayAt = (bps: number) => new Set(accountIds.filter((accountId) => decideVersion(compileRules(rules({ percentBps: bps })), facts({ accountKey: accountId })).version === 'gray'));
    let previous = grayAt(0);
    expect(previous.size).toBe(0);
    for (const bps of [1, 100, 500, 2_500, 5_000, 9_999, 10_000]) {
      const current = grayAt(bps);
      for (const accountId of previous) expect(current.has(accountId)).toBe(true);
      previous = current;
    }
    expect(previous.size).toBe(accountIds.length);
  });

  it.each([1, 5, 25, 50, 75])('puts %i percent of 10,000 accounts on gray, within 1 point', (percent) => {
    const gray = accountIds.filter((accountId) => accountBucket(accountId) < percent * 100).length;
    expect(Math.abs(gray / accountIds.length - percent / 100)).toBeLessThanOrEqual(0.01);
  });

  it('validates an update and keeps cards only as keyed hashes', () => {
    const update = parseRulesUpdate({ percent: 2.5, whitelist: { cards: ['6225880000000017'] }, reason: 'r' }, emptyRules, ['dsu-1'], (pan) => `h(${pan.slice(-4)})`);
    expect(update).toEqual({ rules: { ...emptyRules, percentBps: 250, whitelist: { cards: [{ hashHex: 'h(0017)', last4: '0017' }], accounts: [] } }, reason: 'r' });
    const cases: Array<[Record<string, unknown>, string]> = [
      [{ percent: 101 }, 'percent'], [{ percent: 1.234 }, 'percent'], [{ units: ['dsu-7'] }, 'units[0]'], [{ channels: ['fax'] }, 'channels[0]'],
      [{ whitelist: { cards: ['123'] } }, 'whitelist.cards[0]'], [{ fallback: 'maybe' }, 'fallback'], [{ colour: 'gray' }, 'colour'],
    ];
    for (const [body, field] of cases) {
      const error = parseRulesUpdate(body, emptyRules, ['dsu-1'], () => '');
      expect(error).toBeInstanceOf(ApiError);
      expect((error as ApiError).field).toBe(field);
    }
  });
});

describe('release plan analysis', () => {
  const step: PlanStep = { percentBps: 1_000, whitelistOnly: false, minSeconds: 10, minRequests: 100, maxSeconds: 60 };
  const window = (requests: number, approvals: number, p99Ms = 10, codes: Record<string, number> = {}): WindowStats => ({
    requests, errors: 0, approvals, p99Ms, codes: Object.keys(codes).length > 0 ? codes : { '00': approvals, '51': requests - approvals },
  });
  const split = { decided: 1_000, gray: 100 };

  it('waits, then calls a step with too few samples inconclusive, never passed', () => {
    expect(analyzeStep(step, defaultGates, window(99, 95), window(900, 860), split, 30)).toBeNull();
    expect(analyzeStep(step, defaultGates, window(500, 480), window(900, 860), split, 5)).toBeNull();
    expect(analyzeStep(step, defaultGates, window(99, 95), window(900, 860), split, 60)?.verdict).toBe('inconclusive');
  });

  it('fails closed on a baseline without approvals', () => {
    expect(analyzeStep(step, defaultGates, window(200, 190), window(900, 0), split, 20)?.verdict).toBe('fail');
  });

  it('judges a step with too few stable requests (100%: none) against the last step that had them, and waits without one', () => {
    const all: PlanStep = { ...step, percentBps: 10_000 };
    const none = { decided: 1_000, gray: 1_000 };
    // No stable request at 100%, or a thin one at 99%: one stable decline must not abort the release.
    expect(analyzeStep(all, defaultGates, window(200, 190), window(0, 0), none, 20)).toBeNull();
    expect(analyzeStep(all, defaultGates, window(200, 190), window(0, 0), none, 60)?.verdict).toBe('inconclusive');
    expect(analyzeStep(all, defaultGates, window(200, 190), window(0, 0), none, 20, window(900, 860))?.verdict).toBe('pass');
    expect(analyzeStep({ ...step, percentBps: 9_900 }, defaultGates, window(200, 190), window(2, 0), { decided: 1_000, gray: 990 }, 20, window(900, 860))?.verdict).toBe('pass');
    // The earlier baseline still catches a gray that declines.
    expect(analyzeStep(all, defaultGates, window(200, 120), window(0, 0), none, 20, window(900, 860))?.verdict).toBe('fail');
  });

  it('passes a gray that behaves like stable and fails one that declines, errs, slows down or drifts', () => {
    expect(analyzeStep(step, defaultGates, window(200, 190), window(1_800, 1_720), split, 20)?.verdict).toBe('pass');
    const failed = (gray: WindowStats, splitStats = split) => analyzeStep(step, defaultGates, gray, window(1_800, 1_720), splitStats, 20)!.checks.filter((check) => !check.ok).map((check) => check.name);
    expect(failed(window(200, 150))).toContain('approvalRate');
    expect(failed({ ...window(200, 190), errors: 5 })).toEqual(['errorRate']);
    expect(failed(window(200, 190, 45))).toEqual(['p99Ms']);
    expect(failed(window(200, 190, 10, { '00': 150, '10': 40, '51': 10 }))).toEqual(['codeMixDrift']);
    expect(failed(window(200, 190, 10, { '00': 190, '91': 10 }))).toContain('unavailableRate');
    expect(failed(window(200, 190), { decided: 1_000, gray: 300 })).toEqual(['split']);
  });

  it('validates plans: percentages never go down, a whitelist step has no percent', () => {
    expect(parsePlan({ steps: [{ whitelistOnly: true }, { percent: 1 }, { percent: 50, minSeconds: 5, minRequests: 10 }] })).toMatchObject({ steps: [{ whitelistOnly: true, percentBps: 0 }, { percentBps: 100 }, { percentBps: 5_000, minSeconds: 5, maxSeconds: 30 }] });
    const fields = (body: Record<string, unknown>) => (parsePlan(body) as ApiError).field;
    expect(fields({ steps: [{ percent: 50 }, { percent: 10 }] })).toBe('steps[1].percent');
    expect(fields({ steps: [{ whitelistOnly: true, percent: 5 }] })).toBe('steps[0].percent');
    expect(fields({ steps: [] })).toBe('steps');
    expect(fields({ steps: [{ percent: 5, minSeconds: 0 }] })).toBe('steps[0].minSeconds');
    // null is not absent: a client that sent NaN as JSON (null) must not get the default.
    expect(fields({ steps: [{ percent: 5, minRequests: null }] })).toBe('steps[0].minRequests');
    expect(fields({ steps: [{ percent: 5, maxSeconds: null }] })).toBe('steps[0].maxSeconds');
    expect(fields({ steps: [{ percent: 5 }], gates: { p99RatioMax: -1 } })).toBe('gates.p99RatioMax');
    // A name every object inherits is no gate either.
    expect(parsePlan({ steps: [{ percent: 5 }], gates: { toString: 1 } })).toMatchObject({ code: 'UNKNOWN_FIELD', field: 'gates.toString' });
  });
});

describe('the gray release controller', () => {
  it('says in its audit when a change could not be saved, and keeps the rules it had', () => {
    const dir = mkdtempSync(join(tmpdir(), 'dsu-gray-'));
    const store = new GrayStore(dir);
    const controller = new GrayController({
      store, unitIds: ['dsu-1'], unitsWithGray: new Set(['dsu-1']), log: createLogger('test', () => {}), nowMs: () => Date.now(),
      onRulesChange: () => {}, accountKeyOf: (accountId) => accountId, grayInstanceUp: () => true,
    });
    try {
      // The state file cannot be written: its temporary name is taken by a folder.
      mkdirSync(join(dir, 'gray-state.json.tmp'));
      const actor = { who: 'test', reason: 'half of the accounts' };
      expect(() => controller.updateRules({ ...emptyRules, percentBps: 5_000 }, actor)).toThrow();
      expect(controller.rules.percentBps).toBe(0);
      const history = controller.history(10, 0);
      expect(history.map((entry) => entry.action)).toEqual(['rules.failed', 'rules']);
      expect(history[0]!.reason).toMatch(/^not applied/);
    } finally {
      controller.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('promote', () => {
  it('is refused when sent again from a state that has changed, or while a gray instance is down', () => {
    const dir = mkdtempSync(join(tmpdir(), 'dsu-gray-'));
    let grayUp = false;
    const controller = new GrayController({
      store: new GrayStore(dir), unitIds: ['dsu-1', 'dsu-2'], unitsWithGray: new Set(['dsu-1']), log: createLogger('test', () => {}), nowMs: () => Date.now(),
      onRulesChange: () => {}, accountKeyOf: (accountId) => accountId, grayInstanceUp: () => grayUp,
    });
    try {
      const actor = { who: 'test', reason: 'release 2' };
      expect(controller.promote(actor, [])).toMatchObject({ code: 'GRAY_NO_INSTANCE' });
      grayUp = true;
      expect(controller.promote(actor, [])).toMatchObject({ action: 'promote' });
      expect(controller.stableSlot('dsu-1')).toBe(1);
      // The same command again (a retry after a timeout) would swap the instances back.
      expect(controller.promote(actor, [])).toMatchObject({ code: 'GRAY_STATE_CHANGED', field: 'expectPromotedUnits' });
      expect(controller.stableSlot('dsu-1')).toBe(1);
      expect(controller.promote(actor, ['dsu-1'])).toMatchObject({ action: 'promote' });
      expect(controller.stableSlot('dsu-1')).toBe(0);
    } finally {
      controller.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('after an aborted plan is refused unless forced with a reason, and the audit names the plan it overrode', () => {
    const dir = mkdtempSync(join(tmpdir(), 'dsu-gray-'));
    const controller = new GrayController({
      store: new GrayStore(dir), unitIds: ['dsu-1', 'dsu-2'], unitsWithGray: new Set(['dsu-1']), log: createLogger('test', () => {}), nowMs: () => Date.now(),
      onRulesChange: () => {}, accountKeyOf: (accountId) => accountId, grayInstanceUp: () => true,
    });
    try {
      const spec = parsePlan({ steps: [{ percent: 5 }, { percent: 50 }], reason: 'release 2' });
      expect(spec).not.toBeInstanceOf(ApiError);
      expect(controller.startPlan(spec as Exclude<typeof spec, ApiError>, { who: 'ops', reason: 'release 2' })).toMatchObject({ action: 'plan.start' });
      controller.abort({ who: 'ops', reason: 'approval rate fell' });
      expect(controller.promote({ who: 'ops', reason: 'ship it' })).toMatchObject({ code: 'GRAY_PLAN_ABORTED', field: 'force' });
      expect(controller.promote({ who: 'ops', reason: ' ' }, null, true)).toMatchObject({ code: 'INVALID_FIELD', field: 'reason' });
      expect(controller.stableSlot('dsu-1')).toBe(0);
      expect(controller.history(10, 0).filter((entry) => entry.action === 'promote')).toHaveLength(0);
      const forced = controller.promote({ who: 'ops', reason: 'the gate fired on a network outage, not the release' }, null, true);
      expect(forced).toMatchObject({ action: 'promote', evidence: { forced: true, abortedPlan: 1, abortNote: 'approval rate fell' } });
      expect(controller.stableSlot('dsu-1')).toBe(1);
      // The plan is gone with the promote: the next promote (back) needs no force.
      expect(controller.promote({ who: 'ops', reason: 'back' })).toMatchObject({ action: 'promote' });
      // A plan that completed and was then rolled back by an operator counts as aborted too.
      const second = parsePlan({ steps: [{ percent: 5 }], reason: 'release 3' });
      expect(controller.startPlan(second as Exclude<typeof second, ApiError>, { who: 'ops', reason: 'release 3' })).toMatchObject({ action: 'plan.start' });
      // (Completing a plan takes windows of live traffic: the integration tests run plans; here the state is set.)
      (controller as unknown as { state: { plan: { state: string } } }).state.plan.state = 'completed';
      controller.abort({ who: 'ops', reason: 'complaints after the rollout' });
      expect(controller.status()).toMatchObject({ plan: { state: 'aborted' } });
      expect(controller.promote({ who: 'ops', reason: 'ship it' })).toMatchObject({ code: 'GRAY_PLAN_ABORTED' });
    } finally {
      controller.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
