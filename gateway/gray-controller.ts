import { ApiError } from '../domain/errors.js';
import { analyzeStep, type PlanSpec, type PlanStep, type WindowStats } from '../domain/gray-plan.js';
import {
  compileRules, decideVersion, describeRules, emptyRules, type CompiledRules, type GrayDecision, type GrayRules, type Version,
} from '../domain/gray.js';
import { assert } from '../domain/limits.js';
import type { Logger } from '../domain/log.js';
import { GrayWindow } from './gray-window.js';
import type { AuditEntry, GrayState, GrayStore, PlanRecord } from './gray-store.js';

// The gateway's gray release: the rules every request is decided by, the
// release plan that moves the rules step by step, the analysis that gates each
// step, and the operators' changes, each recorded in the audit log first.
//
// A change replaces the compiled rules object in one assignment. A request
// decides its version once, when it arrives, and keeps it: a change takes effect
// on the next request, and requests in flight finish on the version that took them.

export const planTickMs = 250;

export interface GrayControllerOptions {
  store: GrayStore;
  unitIds: readonly string[];
  /** Units that run a gray instance. */
  unitsWithGray: ReadonlySet<string>;
  log: Logger;
  /** Wall-clock milliseconds: audit entries and analyses are stamped with it, step durations measured by it. */
  nowMs: () => number;
  /** Called after every change of the rules (metrics). */
  onRulesChange: (rules: GrayRules) => void;
  /** An account id's key on the authorization path: the card prefix its cards carry. */
  accountKeyOf: (accountId: string) => string;
  /** Whether a unit's gray instance answers now (promote refuses a down one). */
  grayInstanceUp: (unitId: string) => boolean;
}

export interface Actor {
  who: string;
  reason: string;
}

export class GrayController {
  private state: GrayState;
  private compiled: CompiledRules;
  /** No whitelist and 0%: every request is stable unless forced, without hashing anything. */
  private idle = true;
  private window: GrayWindow;
  /** When the current plan step started (this process's clock). */
  private stepStartedMs = 0;
  /** The stable window of the plan's last passed step with enough stable requests: the baseline of steps that have too few. */
  private baseline: WindowStats | null = null;
  private readonly timer: NodeJS.Timeout;

  constructor(private readonly options: GrayControllerOptions) {
    this.state = options.store.loadState();
    this.compiled = compileRules(this.state.rules, options.accountKeyOf);
    this.idle = isIdle(this.state.rules);
    this.window = new GrayWindow(options.nowMs());
    this.stepStartedMs = options.nowMs();
    options.onRulesChange(this.state.rules);
    this.timer = setInterval(() => this.tick(), planTickMs);
    this.timer.unref();
  }

  close(): void {
    clearInterval(this.timer);
  }

  get rules(): GrayRules {
    return this.state.rules;
  }

  /** The version for an authorization; `cardHashHex` is called only when cards are whitelisted. */
  decide(force: 'on' | 'off' | null, accountKey: string, channel: string, unitId: string, cardHashHex: () => string): GrayDecision {
    if (this.idle && force === null) return stableByPercent;
    const decision = decideVersion(this.compiled, { force, accountKey, channel, unitId, cardHashHex });
    this.window.onDecision(decision.version, decision.reason === 'percent');
    return decision;
  }

  /** Whether gray takes any traffic besides forced probes; follow-ups of gray authorizations stay gray while it does. */
  get grayLive(): boolean {
    return !this.idle;
  }

  /** Which instance of a unit serves as stable: 0 the unit's own, 1 its gray instance after a promotion. */
  stableSlot(unitId: string): 0 | 1 {
    return this.state.promotedUnits.includes(unitId) ? 1 : 0;
  }

  onAnswer(version: Version, status: number, code: string, approved: boolean, latencyMs: number): void {
    this.window.onAnswer(version, status, code, approved, latencyMs);
  }

  onFallback(rejected: boolean): void {
    if (rejected) this.window.rejected++;
    else this.window.fallbacks++;
  }

  status(): object {
    const split = this.window.splitStats();
    const plan = this.state.plan;
    return {
      rules: describeRules(this.state.rules),
      split: {
        configuredPercent: this.state.rules.percentBps / 100,
        observedPercent: split.decided === 0 ? null : Math.round((split.gray / split.decided) * 10_000) / 100,
        decidedByPercent: split.decided,
        since: new Date(this.window.openedMs).toISOString(),
      },
      window: { stable: this.window.stats('stable'), gray: this.window.stats('gray'), fallbacks: this.window.fallbacks, rejected: this.window.rejected },
      plan: plan === null ? null : describePlan(plan, plan.state === 'running' ? (this.options.nowMs() - this.stepStartedMs) / 1000 : null),
      promotedUnits: this.state.promotedUnits,
    };
  }

  history(limit: number, afterSeq: number): AuditEntry[] {
    return this.options.store.history(limit, afterSeq);
  }

  updateRules(rules: GrayRules, actor: Actor): AuditEntry | ApiError {
    const plan = this.state.plan;
    if (plan !== null && plan.state === 'running' && rules.percentBps !== this.state.rules.percentBps) {
      return new ApiError('GRAY_PLAN_ACTIVE', `plan ${plan.id} sets the percentage; pause or abort it first`, 'percent');
    }
    return this.change('rules', actor, { ...this.state, rules });
  }

  startPlan(spec: PlanSpec, actor: Actor): AuditEntry | ApiError {
    const current = this.state.plan;
    if (current !== null && (current.state === 'running' || current.state === 'paused')) {
      return new ApiError('GRAY_PLAN_ACTIVE', `plan ${current.id} is ${current.state}; abort it first`, null);
    }
    const first = spec.steps[0] as PlanStep;
    const whitelist = this.state.rules.whitelist;
    if (first.whitelistOnly && whitelist.cards.length === 0 && whitelist.accounts.length === 0) {
      return new ApiError('INVALID_FIELD', 'the first step is whitelist only but the whitelist is empty; PUT /admin/gray a whitelist first', 'steps[0].whitelistOnly');
    }
    const id = this.state.planSeq + 1;
    const plan: PlanRecord = { id, spec, state: 'running', stepIndex: 0, note: '', analyses: [] };
    this.baseline = null;
    return this.change('plan.start', actor, { ...this.state, planSeq: id, plan, rules: { ...this.state.rules, percentBps: first.percentBps } });
  }

  pause(actor: Actor): AuditEntry | ApiError {
    const plan = this.state.plan;
    if (plan === null || plan.state !== 'running') return new ApiError('GRAY_NO_PLAN', 'no plan is running', null);
    return this.change('plan.pause', actor, { ...this.state, plan: { ...plan, state: 'paused', note: `paused by ${actor.who}` } });
  }

  resume(actor: Actor): AuditEntry | ApiError {
    const plan = this.state.plan;
    if (plan === null || plan.state !== 'paused') return new ApiError('GRAY_NO_PLAN', 'no plan is paused', null);
    const step = plan.spec.steps[plan.stepIndex] as PlanStep;
    return this.change('plan.resume', actor, { ...this.state, plan: { ...plan, state: 'running', note: '' }, rules: { ...this.state.rules, percentBps: step.percentBps } });
  }

  /**
   * Instant rollback: the percentage goes to zero in one assignment. The
   * whitelist stays (test cards keep probing gray); requests in flight finish
   * on the version that took them.
   */
  abort(actor: Actor, evidence?: unknown): AuditEntry {
    const plan = this.state.plan;
    // A completed plan that is rolled back is aborted too: its release was judged
    // fit by the gates and then unfit by an operator (promote then needs force).
    const aborted = plan !== null && plan.state !== 'aborted' ? { ...plan, state: 'aborted' as const, note: actor.reason } : plan;
    const entry = this.change('abort', actor, { ...this.state, plan: aborted, rules: { ...this.state.rules, percentBps: 0 } }, evidence);
    assert(!(entry instanceof ApiError), 'an abort always applies');
    return entry;
  }

  /**
   * Gray replaces stable: on every unit with a gray instance, that instance
   * becomes the stable one and the former stable instance takes the gray slot
   * (where the next release will be deployed). Gray traffic goes back to zero.
   *
   * After an aborted plan (a health gate failed, or an operator rolled back) the
   * release is the one that was just judged unfit: promoting it takes `force` and a
   * reason, and the audit entry records the plan it overrode. A new plan that
   * completes clears the way again; rules set by hand do not (no gate judged them).
   */
  promote(actor: Actor, expectPromotedUnits: readonly string[] | null = null, force = false): AuditEntry | ApiError {
    const plan = this.state.plan;
    if (plan !== null && (plan.state === 'running' || plan.state === 'paused')) {
      return new ApiError('GRAY_PLAN_ACTIVE', `plan ${plan.id} is ${plan.state}; let it complete or abort it first`, null);
    }
    if (plan !== null && plan.state === 'aborted' && !force) {
      return new ApiError('GRAY_PLAN_ABORTED', `plan ${plan.id} was aborted (${plan.note === '' ? 'no reason given' : plan.note}): run a plan that completes, or promote with force and a reason`, 'force');
    }
    if (force && actor.reason.trim() === '') return new ApiError('INVALID_FIELD', 'a forced promote needs a reason, for the audit log', 'reason');
    if (this.options.unitsWithGray.size === 0) return new ApiError('GRAY_NO_INSTANCE', 'no unit runs a gray instance', null);
    // A promote swaps the instances: sent twice (a retry after a timeout) it would
    // swap them back. The caller says which state it promotes from.
    if (expectPromotedUnits !== null && [...expectPromotedUnits].sort().join(',') !== this.state.promotedUnits.join(',')) {
      return new ApiError('GRAY_STATE_CHANGED', `the promoted units are [${this.state.promotedUnits.join(', ')}], not [${expectPromotedUnits.join(', ')}]: nothing was changed`, 'expectPromotedUnits');
    }
    // The gray instance becomes the one every request of its unit goes to: it must be up.
    const down = [...this.options.unitsWithGray].filter((unitId) => !this.options.grayInstanceUp(unitId)).sort();
    if (down.length > 0) return new ApiError('GRAY_NO_INSTANCE', `the gray instance of ${down.join(', ')} is down: promoting it would leave the unit without an instance`, null);
    const promoted = new Set(this.state.promotedUnits);
    for (const unitId of this.options.unitsWithGray) {
      if (promoted.has(unitId)) promoted.delete(unitId);
      else promoted.add(unitId);
    }
    const overridden = plan !== null && plan.state === 'aborted' ? { forced: true, abortedPlan: plan.id, abortNote: plan.note } : undefined;
    return this.change('promote', actor, { ...this.state, promotedUnits: [...promoted].sort(), plan: null, rules: emptyRules }, overridden);
  }

  /** Records, persists and applies a change, in that order. */
  private change(action: string, actor: Actor, next: GrayState, evidence?: unknown): AuditEntry | ApiError {
    const nowMs = this.options.nowMs();
    const before = summary(this.state);
    const after = summary(next);
    const entry = this.options.store.append({ who: actor.who, action, reason: actor.reason, before, after, ...(evidence === undefined ? {} : { evidence }) }, nowMs);
    try {
      this.options.store.saveState(next);
    } catch (error) {
      // The audit already says it was done: it also says that it was not applied.
      this.options.store.append({ who: actor.who, action: `${action}.failed`, reason: `not applied: the state could not be saved (${String(error)})`, before, after: before }, nowMs);
      throw error;
    }
    this.state = next;
    this.compiled = compileRules(next.rules, this.options.accountKeyOf);
    this.idle = isIdle(next.rules);
    this.window = new GrayWindow(nowMs);
    this.stepStartedMs = nowMs;
    this.options.onRulesChange(next.rules);
    this.options.log.info('gray release changed', { action, who: actor.who, reason: actor.reason, percent: next.rules.percentBps / 100 });
    return entry;
  }

  /** The plan's timer: a failure (the state file cannot be written) is logged; the gateway goes on serving. */
  private tick(): void {
    try {
      this.runPlan();
    } catch (error) {
      this.options.log.error('gray release plan step failed; retrying at the next tick', { error: String(error) });
    }
  }

  /** Runs the plan: analyzes the current step and moves on, aborts, or pauses. */
  private runPlan(): void {
    const plan = this.state.plan;
    if (plan === null || plan.state !== 'running') return;
    const step = plan.spec.steps[plan.stepIndex] as PlanStep;
    const elapsedSeconds = (this.options.nowMs() - this.stepStartedMs) / 1000;
    const stable = this.window.stats('stable');
    const analysis = analyzeStep(step, plan.spec.gates, this.window.stats('gray'), stable, this.window.splitStats(), elapsedSeconds, this.baseline);
    if (analysis === null) return;
    if (analysis.verdict === 'pass' && stable.requests >= step.minRequests) this.baseline = stable;
    const analyses = [...plan.analyses, { stepIndex: plan.stepIndex, at: new Date(this.options.nowMs()).toISOString(), ...analysis }];
    const recorded = { ...plan, analyses };
    const actor = { who: 'gray-analysis', reason: `step ${plan.stepIndex + 1} of ${plan.spec.steps.length}: ${analysis.verdict}, ${analysis.why}` };
    if (analysis.verdict === 'fail') {
      this.state = { ...this.state, plan: recorded };
      this.abort(actor, analysis);
      return;
    }
    if (analysis.verdict === 'inconclusive') {
      this.change('plan.pause', actor, { ...this.state, plan: { ...recorded, state: 'paused', note: actor.reason } }, analysis);
      return;
    }
    const nextIndex = plan.stepIndex + 1;
    if (nextIndex >= plan.spec.steps.length) {
      this.change('plan.complete', actor, { ...this.state, plan: { ...recorded, state: 'completed', note: 'every step passed; promote to make gray the stable version' } }, analysis);
      return;
    }
    const next = plan.spec.steps[nextIndex] as PlanStep;
    this.change('plan.step', actor, { ...this.state, plan: { ...recorded, stepIndex: nextIndex }, rules: { ...this.state.rules, percentBps: next.percentBps } }, analysis);
  }
}

const stableByPercent: GrayDecision = { version: 'stable', reason: 'percent' };

function isIdle(rules: GrayRules): boolean {
  return rules.percentBps === 0 && rules.whitelist.cards.length === 0 && rules.whitelist.accounts.length === 0;
}

function summary(state: GrayState): object {
  const plan = state.plan;
  return {
    rules: describeRules(state.rules),
    plan: plan === null ? null : { id: plan.id, state: plan.state, step: plan.stepIndex + 1, steps: plan.spec.steps.length },
    promotedUnits: state.promotedUnits,
  };
}

function describePlan(plan: PlanRecord, stepElapsedSeconds: number | null): object {
  return {
    id: plan.id, state: plan.state, note: plan.note, step: plan.stepIndex + 1,
    stepElapsedSeconds: stepElapsedSeconds === null ? null : Math.round(stepElapsedSeconds * 10) / 10,
    steps: plan.spec.steps.map((step) => ({ ...(step.whitelistOnly ? { whitelistOnly: true } : { percent: step.percentBps / 100 }), minSeconds: step.minSeconds, minRequests: step.minRequests, maxSeconds: step.maxSeconds })),
    gates: plan.spec.gates,
    analyses: plan.analyses,
  };
}
