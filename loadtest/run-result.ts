import type { LatencySummaryMs } from './histogram.js';

// The plain-data shape of a run: what the runner produces, the JSON report
// holds, and the HTML report draws. Everything here survives JSON.stringify /
// JSON.parse unchanged (no Maps, no Dates, no undefined).

export const phaseModes = ['closed', 'rate'] as const;
export type PhaseMode = (typeof phaseModes)[number];

export interface ErrorCounts {
  /** Connection-level errors (refused, reset) reported by the client. */
  connection: number;
  /** Requests that got no answer within the timeout. */
  timeout: number;
  /** Answers with an HTTP status outside 2xx (429 included). */
  non2xx: number;
}

export interface BreakdownSecond {
  requests: number;
  errors: number;
  declined: number;
  p99Ms: number;
}

export interface BreakdownTotals {
  requests: number;
  errors: number;
  declined: number;
  latencyMs: LatencySummaryMs;
}

export interface SecondBucket {
  /** Whole seconds since the start of the run (scenario), so phases line up on one axis. */
  second: number;
  phase: string;
  /** Milliseconds of this second the phase actually covered (less than 1000 for the last one). */
  spanMs: number;
  sent: number;
  /** Answers received (any status). */
  completed: number;
  /** Answers with a 2xx status. */
  ok: number;
  bytesIn: number;
  /** Corrected for coordinated omission in fixed-rate phases. */
  latencyMs: LatencySummaryMs;
  status: Record<string, number>;
  responseCodes: Record<string, number>;
  errors: ErrorCounts;
  byUnit: Record<string, BreakdownSecond>;
  byChannel: Record<string, BreakdownSecond>;
  byVersion: Record<string, BreakdownSecond>;
}

export interface PhaseTotals {
  elapsedMs: number;
  sent: number;
  completed: number;
  ok: number;
  bytesIn: number;
  /** Answers per second over the whole phase. */
  throughputOverall: number;
  /** Median and maximum of the per-second answer rates (full seconds only). */
  throughputMedian: number;
  throughputMax: number;
  /** Corrected for coordinated omission in fixed-rate phases; equal to latencyRawMs otherwise. */
  latencyMs: LatencySummaryMs;
  /** Latency as measured, one sample per answer. */
  latencyRawMs: LatencySummaryMs;
  /** Synthetic samples the correction added. */
  correctionSamples: number;
  status: Record<string, number>;
  responseCodes: Record<string, number>;
  errors: ErrorCounts;
  byUnit: Record<string, BreakdownTotals>;
  byChannel: Record<string, BreakdownTotals>;
  byVersion: Record<string, BreakdownTotals>;
  byKind: Record<string, BreakdownTotals>;
}

export interface PhaseResult {
  name: string;
  mode: PhaseMode;
  connections: number;
  /** Target requests per second, or null in closed-loop mode. */
  rate: number | null;
  durationSeconds: number;
  /** Offset of the phase's first second on the run's time axis. */
  startSecond: number;
  seconds: SecondBucket[];
  totals: PhaseTotals;
}

export interface HookRecord {
  atSecond: number;
  action: string;
  args: Record<string, unknown>;
  ok: boolean;
  /** A short outcome or error message. */
  detail: string;
  durationMs: number;
}

export interface RunResult {
  /** Format version of this JSON, bumped on incompatible change. */
  formatVersion: 1;
  scenario: string;
  description: string;
  url: string;
  seed: number;
  startedAt: string;
  finishedAt: string;
  /** Why the run stopped early, or null if every phase ran. */
  stoppedEarly: string | null;
  phases: PhaseResult[];
  hooks: HookRecord[];
  totals: PhaseTotals;
}
