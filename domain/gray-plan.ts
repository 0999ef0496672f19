import { ApiError } from './errors.js';
import { grayLimits, parseReason, percentToBps } from './gray.js';

// Release plans and the analysis that gates each of their steps, as pure data
// and pure functions; the gateway's gray controller runs them on its clock.
//
// A plan is a list of steps. Each step sets the gray share (whitelist only, or a
// percentage of accounts) and lasts at least minSeconds and until gray has
// served minRequests. Then the gateway compares gray with stable over the same
// window. The verdict is one of:
//   pass          every check holds: the next step starts (or the plan completes)
//   fail          a check failed, or the stable baseline is empty (fails closed):
//                 the plan aborts and the percentage goes to zero at once
//   inconclusive  maxSeconds passed without enough samples: the plan pauses and
//                 waits for an operator; a step is never passed on too little data

export interface PlanStep {
  /** Gray share of accounts in basis points; 0 with whitelistOnly. */
  percentBps: number;
  whitelistOnly: boolean;
  minSeconds: number;
  minRequests: number;
  maxSeconds: number;
}

export interface Gates {
  /** Gray's error rate (5xx, gateway failures) may exceed stable's by at most this (absolute). */
  errorRateDeltaMax: number;
  /** Gray's approval rate may fall short of stable's by at most this (absolute). */
  approvalRateDropMax: number;
  /** Gray's p99 may be at most stable's times this, plus p99SlackMs. */
  p99RatioMax: number;
  p99SlackMs: number;
  /** Total variation distance between the response-code mixes, 0..1. */
  codeMixDriftMax: number;
  /** Rates of 91 (unit unavailable) and 96 (system error): gray may exceed stable by at most this. */
  unavailableRateDeltaMax: number;
  /** Observed gray share of percentage-decided requests vs the configured one (absolute, 0..1). */
  splitDeviationMax: number;
}

export const defaultGates: Gates = {
  errorRateDeltaMax: 0.005,
  approvalRateDropMax: 0.05,
  p99RatioMax: 2,
  p99SlackMs: 10,
  codeMixDriftMax: 0.1,
  unavailableRateDeltaMax: 0.005,
  splitDeviationMax: 0.05,
};

export interface PlanSpec {
  steps: PlanStep[];
  gates: Gates;
  reason: string;
}

/** What one version did over a step's window, as the gateway counted it. */
export interface WindowStats {
  requests: number;
  /** HTTP 5xx and requests the gateway could not hand to a unit. */
  errors: number;
  approvals: number;
  codes: Record<string, number>;
  p99Ms: number;
}

export interface SplitStats {
  /** Requests decided by the percentage rule, and how many of them went gray. */
  decided: number;
  gray: number;
}

export interface Check {
  name: string;
  ok: boolean;
  gray: number;
  stable: number;
  limit: string;
}

export type Verdict = 'pass' | 'fail' | 'inconclusive';

export interface Analysis {
  verdict: Verdict;
  checks: Check[];
  gray: WindowStats;
  stable: WindowStats;
  split: SplitStats & { configuredPercent: number };
  why: string;
}

const rate = (part: number, whole: number): number => (whole === 0 ? 0 : part / whole);

/**
 * Compares gray with stable over one step's window. `elapsedSeconds` is the
 * step's age; the caller asks again later while the verdict is null (wait).
 *
 * Stable is judged on as many requests as gray (step.minRequests). At a high
 * percentage stable gets few requests (none at 100%), so the step is judged
 * against `earlier`: the stable window of the last step that had enough of them.
 * Without either, the step waits and then pauses as inconclusive: a thin baseline
 * proves nothing either way, and one stable decline must not abort a release.
 */
export function analyzeStep(step: PlanStep, gates: Gates, gray: WindowStats, stable: WindowStats, split: SplitStats, elapsedSeconds: number, earlier: WindowStats | null = null): Analysis | null {
  const base = { checks: [] as Check[], gray, stable, split: { ...split, configuredPercent: step.percentBps / 100 } };
  const enough = gray.requests >= step.minRequests && elapsedSeconds >= step.minSeconds;
  const baseline = stable.requests >= step.minRequests ? stable : earlier;
  if (!enough || baseline === null) {
    if (elapsedSeconds < step.maxSeconds) return null;
    const short = !enough ? `gray served ${gray.requests}` : `stable served ${stable.requests}, and no earlier step had a stable baseline`;
    return { ...base, verdict: 'inconclusive', why: `after ${elapsedSeconds.toFixed(1)} s ${short} of the ${step.minRequests} requests the step needs` };
  }
  if (baseline.approvals === 0) {
    return { ...base, verdict: 'fail', why: 'the stable baseline has no approvals: fails closed' };
  }
  const checks = compare(gates, gray, baseline);
  if (baseline !== stable) base.stable = baseline;
  if (!step.whitelistOnly && step.percentBps > 0 && split.decided >= step.minRequests) {
    const observed = rate(split.gray, split.decided);
    const configured = step.percentBps / 10_000;
    checks.push({ name: 'split', ok: Math.abs(observed - configured) <= gates.splitDeviationMax, gray: observed, stable: configured, limit: `|observed - configured| <= ${gates.splitDeviationMax}` });
  }
  const failed = checks.filter((check) => !check.ok);
  if (failed.length > 0) return { ...base, checks, verdict: 'fail', why: `failed: ${failed.map((check) => check.name).join(', ')}` };
  return { ...base, checks, verdict: 'pass', why: 'every check held' };
}

function compare(gates: Gates, gray: WindowStats, stable: WindowStats): Check[] {
  const errorGray = rate(gray.errors, gray.requests);
  const errorStable = rate(stable.errors, stable.requests);
  const approvalGray = rate(gray.approvals, gray.requests);
  const approvalStable = rate(stable.approvals, stable.requests);
  const unavailable = (stats: WindowStats): number => rate((stats.codes['91'] ?? 0) + (stats.codes['96'] ?? 0), stats.requests);
  const p99Limit = stable.p99Ms * gates.p99RatioMax + gates.p99SlackMs;
  return [
    { name: 'errorRate', ok: errorGray - errorStable <= gates.errorRateDeltaMax, gray: errorGray, stable: errorStable, limit: `gray - stable <= ${gates.errorRateDeltaMax}` },
    { name: 'approvalRate', ok: approvalStable - approvalGray <= gates.approvalRateDropMax, gray: approvalGray, stable: approvalStable, limit: `stable - gray <= ${gates.approvalRateDropMax}` },
    { name: 'p99Ms', ok: gray.p99Ms <= p99Limit, gray: gray.p99Ms, stable: stable.p99Ms, limit: `gray <= stable * ${gates.p99RatioMax} + ${gates.p99SlackMs}` },
    { name: 'codeMixDrift', ok: codeMixDrift(gray, stable) <= gates.codeMixDriftMax, gray: codeMixDrift(gray, stable), stable: 0, limit: `<= ${gates.codeMixDriftMax}` },
    { name: 'unavailableRate', ok: unavailable(gray) - unavailable(stable) <= gates.unavailableRateDeltaMax, gray: unavailable(gray), stable: unavailable(stable), limit: `gray - stable <= ${gates.unavailableRateDeltaMax} (codes 91 and 96)` },
  ];
}

/** Total variation distance between two response-code distributions: 0 same mix, 1 disjoint. */
export function codeMixDrift(a: WindowStats, b: WindowStats): number {
  const codes = new Set([...Object.keys(a.codes), ...Object.keys(b.codes)]);
  let sum = 0;
  for (const code of codes) sum += Math.abs(rate(a.codes[code] ?? 0, a.requests) - rate(b.codes[code] ?? 0, b.requests));
  return sum / 2;
}

export const defaultStepSeconds = { min: 10, maxFactor: 6 } as const;

/**
 * Validates POST /admin/gray/plans: {"steps": [{"percent": 5, "minSeconds": 30,
 * "minRequests": 500, "maxSeconds": 300} | {"whitelistOnly": true, ...}], "gates": {...}, "reason"}.
 * Percentages must not decrease: a plan only moves accounts towards gray.
 */
export function parsePlan(body: Record<string, unknown>): PlanSpec | ApiError {
  for (const key of Object.keys(body)) if (!['steps', 'gates', 'reason'].includes(key)) return new ApiError('UNKNOWN_FIELD', `unknown field "${key}"`, key);
  const stepsValue = body['steps'];
  if (!Array.isArray(stepsValue) || stepsValue.length === 0 || stepsValue.length > grayLimits.planStepsMax) {
    return new ApiError('INVALID_FIELD', `steps is an array of 1..${grayLimits.planStepsMax} steps`, 'steps');
  }
  const steps: PlanStep[] = [];
  for (let i = 0; i < stepsValue.length; i++) {
    const step = parseStep(stepsValue[i], `steps[${i}]`);
    if (step instanceof ApiError) return step;
    if (steps.length > 0 && step.percentBps < (steps[steps.length - 1] as PlanStep).percentBps) {
      return new ApiError('INVALID_FIELD', `steps[${i}] lowers the percentage; a plan only moves accounts towards gray`, `steps[${i}].percent`);
    }
    steps.push(step);
  }
  const gates = parseGates(body['gates']);
  if (gates instanceof ApiError) return gates;
  const reason = parseReason(body['reason']);
  if (reason instanceof ApiError) return reason;
  return { steps, gates, reason };
}

function parseStep(value: unknown, field: string): PlanStep | ApiError {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return new ApiError('INVALID_FIELD', `${field} is an object`, field);
  const step = value as Record<string, unknown>;
  for (const key of Object.keys(step)) {
    if (!['percent', 'whitelistOnly', 'minSeconds', 'minRequests', 'maxSeconds'].includes(key)) return new ApiError('UNKNOWN_FIELD', `unknown field "${field}.${key}"`, `${field}.${key}`);
  }
  const whitelistOnly = step['whitelistOnly'] === true;
  if (step['whitelistOnly'] !== undefined && typeof step['whitelistOnly'] !== 'boolean') return new ApiError('INVALID_FIELD', `${field}.whitelistOnly is a boolean`, `${field}.whitelistOnly`);
  if (whitelistOnly && step['percent'] !== undefined) return new ApiError('INVALID_FIELD', `${field} is whitelist only and has no percent`, `${field}.percent`);
  const percentBps = whitelistOnly ? 0 : percentToBps(step['percent']);
  if (percentBps === null || (!whitelistOnly && percentBps === 0)) return new ApiError('INVALID_FIELD', `${field}.percent is a number above 0 and at most 100, two decimals at most`, `${field}.percent`);
  const minSeconds = integerIn((step['minSeconds'] === undefined ? defaultStepSeconds.min : step['minSeconds']), 1, grayLimits.stepSecondsMax);
  if (minSeconds === null) return new ApiError('INVALID_FIELD', `${field}.minSeconds is an integer 1..${grayLimits.stepSecondsMax}`, `${field}.minSeconds`);
  const minRequests = integerIn((step['minRequests'] === undefined ? 100 : step['minRequests']), 1, grayLimits.stepRequestsMax);
  if (minRequests === null) return new ApiError('INVALID_FIELD', `${field}.minRequests is an integer 1..${grayLimits.stepRequestsMax}`, `${field}.minRequests`);
  const maxSeconds = integerIn((step['maxSeconds'] === undefined ? minSeconds * defaultStepSeconds.maxFactor : step['maxSeconds']), minSeconds, grayLimits.stepSecondsMax);
  if (maxSeconds === null) return new ApiError('INVALID_FIELD', `${field}.maxSeconds is an integer from minSeconds to ${grayLimits.stepSecondsMax}`, `${field}.maxSeconds`);
  return { percentBps, whitelistOnly, minSeconds, minRequests, maxSeconds };
}

function parseGates(value: unknown): Gates | ApiError {
  if (value === undefined) return defaultGates;
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return new ApiError('INVALID_FIELD', 'gates is an object', 'gates');
  const gates: Gates = { ...defaultGates };
  for (const [key, given] of Object.entries(value)) {
    if (!Object.hasOwn(defaultGates, key)) return new ApiError('UNKNOWN_FIELD', `unknown field "gates.${key}"`, `gates.${key}`);
    if (typeof given !== 'number' || !Number.isFinite(given) || given < 0) return new ApiError('INVALID_FIELD', `gates.${key} is a non-negative number`, `gates.${key}`);
    gates[key as keyof Gates] = given;
  }
  return gates;
}

function integerIn(value: unknown, min: number, max: number): number | null {
  return typeof value === 'number' && Number.isInteger(value) && value >= min && value <= max ? value : null;
}
