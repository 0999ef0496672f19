import { Breakdown, countLabel, countsToRecord } from './breakdown.js';
import { LatencyHistogram } from './histogram.js';
import { assertLoadtest, loadtestLimits } from './limits.js';
import type { ErrorCounts, PhaseTotals, SecondBucket } from './run-result.js';
import type { LoadRequest } from './workload.js';

// Collects one phase's measurements into per-second buckets and phase totals.
// A response is counted in the second it completed in, so once the clock has
// passed the end of a second that second can be finalized and reported.

export interface ResponseSample {
  nowMs: number;
  latencyMs: number;
  status: number;
  bytes: number;
  request: LoadRequest;
  unit: string;
  version: string;
  responseCode: string | null;
  approved: boolean | null;
}

interface LiveSecond {
  sent: number;
  completed: number;
  ok: number;
  bytesIn: number;
  histogram: LatencyHistogram;
  status: Map<string, number>;
  codes: Map<string, number>;
  errors: ErrorCounts;
  byUnit: Breakdown;
  byChannel: Breakdown;
  byVersion: Breakdown;
}

function newLiveSecond(): LiveSecond {
  return {
    sent: 0, completed: 0, ok: 0, bytesIn: 0, histogram: new LatencyHistogram(),
    status: new Map(), codes: new Map(), errors: { connection: 0, timeout: 0, non2xx: 0 },
    byUnit: new Breakdown(), byChannel: new Breakdown(), byVersion: new Breakdown(),
  };
}

export interface PhaseCollectorOptions {
  phase: string;
  startMs: number;
  /** Offset of this phase on the run's time axis. */
  startSecond: number;
  /** Expected gap between sends on one connection in fixed-rate mode, or null (closed loop). */
  correctionIntervalMs: number | null;
  /**
   * Planned length; answers that land in the few milliseconds after it (the
   * load generator stops on its own one-second tick) count in the last second
   * rather than opening a nearly empty extra one. Null for a run-level collector.
   */
  durationSeconds: number | null;
}

/**
 * A time this close below a second boundary belongs to the later second: the
 * paced schedule's startMs + k * 1000 / rate can land 1e-10 ms short of it.
 */
const boundaryToleranceMs = 1e-6;

export class PhaseCollector {
  readonly #options: PhaseCollectorOptions;
  readonly #live = new Map<number, LiveSecond>();
  readonly #finalized: SecondBucket[] = [];
  readonly #total = newLiveSecond();
  /** What happened after the planned end of the phase (see #second). */
  readonly #drain = newLiveSecond();
  readonly #raw = new LatencyHistogram();
  readonly #byKind = new Breakdown();
  #correctionSamples = 0;
  #nextToFinalize = 0;
  /** A run-level collector only absorbs finished phases; it never buckets seconds itself. */
  #absorbing = false;

  constructor(options: PhaseCollectorOptions) {
    assertLoadtest(options.correctionIntervalMs === null || options.correctionIntervalMs > 0, 'correction interval is positive');
    this.#options = options;
  }

  #second(nowMs: number): LiveSecond {
    const lastIndex = this.#options.durationSeconds === null ? Infinity : this.#options.durationSeconds - 1;
    const at = Math.floor((nowMs - this.#options.startMs + boundaryToleranceMs) / 1000);
    // After the planned end (answers drained, requests abandoned at the end) a sample
    // counts in the phase's totals but in none of its seconds: piled into the last
    // second it made that second's throughput look higher than anything sent.
    if (at > lastIndex) return this.#drain;
    const index = Math.max(this.#nextToFinalize, at);
    assertLoadtest(index <= loadtestLimits.phaseSecondsMax + 1, 'phase second within bounds');
    let live = this.#live.get(index);
    if (live === undefined) {
      live = newLiveSecond();
      this.#live.set(index, live);
    }
    return live;
  }

  recordSent(nowMs: number): void {
    this.#second(nowMs).sent += 1;
  }

  /**
   * A request that got no answer. With `unansweredMs` (fixed-rate runs: the
   * timeout) it also counts in the corrected latency at that value, a lower bound
   * of its latency: left out, the requests that fared worst would vanish from the
   * percentiles, and an overloaded run would show a better p99 than a healthy one.
   */
  recordError(nowMs: number, kind: 'connection' | 'timeout', unansweredMs: number | null = null): void {
    const live = this.#second(nowMs);
    live.errors[kind] += 1;
    if (unansweredMs !== null) live.histogram.recordMs(unansweredMs);
  }

  recordResponse(sample: ResponseSample): void {
    const live = this.#second(sample.nowMs);
    const isOk = sample.status >= 200 && sample.status < 300;
    live.completed += 1;
    live.bytesIn += sample.bytes;
    if (isOk) live.ok += 1;
    else live.errors.non2xx += 1;
    countLabel(live.status, String(sample.status));
    if (sample.responseCode !== null) countLabel(live.codes, sample.responseCode);
    const cells = [
      live.byUnit.cell(sample.unit), live.byChannel.cell(sample.request.channel),
      live.byVersion.cell(sample.version), this.#byKind.cell(sample.request.kind),
    ];
    for (const cell of cells) {
      cell.requests += 1;
      if (!isOk) cell.errors += 1;
      if (sample.approved === false) cell.declined += 1;
    }
    this.#raw.recordMs(sample.latencyMs);
    const interval = this.#options.correctionIntervalMs;
    if (interval === null) {
      live.histogram.recordMs(sample.latencyMs);
      for (const cell of cells) cell.histogram.recordMs(sample.latencyMs);
      return;
    }
    this.#correctionSamples += live.histogram.recordMsWithExpectedInterval(sample.latencyMs, interval);
    for (const cell of cells) cell.histogram.recordMsWithExpectedInterval(sample.latencyMs, interval);
  }

  /** Finalizes every second that ended at or before `nowMs`; returns them in order. */
  flushThrough(nowMs: number, endMs: number | null = null): SecondBucket[] {
    const flushed: SecondBucket[] = [];
    const plannedLast = this.#options.durationSeconds === null ? Infinity : this.#options.durationSeconds - 1;
    const lastIndex = endMs === null
      ? Math.floor((nowMs - this.#options.startMs) / 1000) - 1
      : Math.max(-1, ...this.#live.keys(), Math.min(plannedLast, Math.ceil((endMs - this.#options.startMs) / 1000) - 1));
    for (; this.#nextToFinalize <= lastIndex; this.#nextToFinalize += 1) {
      const index = this.#nextToFinalize;
      const live = this.#live.get(index) ?? newLiveSecond();
      this.#live.delete(index);
      const phaseEnd = endMs === null ? Infinity : endMs - this.#options.startMs;
      const spanMs = Math.max(1, Math.min(1000, Math.round(phaseEnd - index * 1000)));
      flushed.push(this.#bucket(index, live, spanMs));
      mergeLive(live, this.#total);
    }
    this.#finalized.push(...flushed);
    return flushed;
  }

  #bucket(index: number, live: LiveSecond, spanMs: number): SecondBucket {
    return {
      second: this.#options.startSecond + index,
      phase: this.#options.phase,
      spanMs,
      sent: live.sent,
      completed: live.completed,
      ok: live.ok,
      bytesIn: live.bytesIn,
      latencyMs: live.histogram.summaryMs(),
      status: countsToRecord(live.status),
      responseCodes: countsToRecord(live.codes),
      errors: { ...live.errors },
      byUnit: live.byUnit.secondSummary(),
      byChannel: live.byChannel.secondSummary(),
      byVersion: live.byVersion.secondSummary(),
    };
  }

  get seconds(): readonly SecondBucket[] {
    return this.#finalized;
  }

  /** Adds a finished phase's seconds and totals to this (run-level) collector. */
  absorb(phase: PhaseCollector): void {
    assertLoadtest(phase.#live.size === 0, 'absorbed phase is finished');
    this.#absorbing = true;
    this.#finalized.push(...phase.#finalized);
    mergeLive(phase.#total, this.#total);
    this.#raw.merge(phase.#raw);
    phase.#byKind.mergeInto(this.#byKind);
    this.#correctionSamples += phase.#correctionSamples;
  }

  /** Finalizes what is left and returns the phase totals. */
  finish(endMs: number): PhaseTotals {
    if (!this.#absorbing) {
      this.flushThrough(endMs, endMs);
      mergeLive(this.#drain, this.#total);
    }
    const total = this.#total;
    const elapsedMs = Math.max(1, endMs - this.#options.startMs);
    const fullRates = this.#finalized.filter((bucket) => bucket.spanMs >= 1000).map((bucket) => bucket.completed);
    return {
      elapsedMs,
      sent: total.sent,
      completed: total.completed,
      ok: total.ok,
      bytesIn: total.bytesIn,
      throughputOverall: Math.round((total.completed * 1000) / elapsedMs),
      throughputMedian: median(fullRates),
      throughputMax: fullRates.length === 0 ? 0 : Math.max(...fullRates),
      latencyMs: total.histogram.summaryMs(),
      latencyRawMs: this.#raw.summaryMs(),
      correctionSamples: this.#correctionSamples,
      status: countsToRecord(total.status),
      responseCodes: countsToRecord(total.codes),
      errors: { ...total.errors },
      byUnit: total.byUnit.totalsSummary(),
      byChannel: total.byChannel.totalsSummary(),
      byVersion: total.byVersion.totalsSummary(),
      byKind: this.#byKind.totalsSummary(),
    };
  }
}

function mergeLive(from: LiveSecond, into: LiveSecond): void {
  into.sent += from.sent;
  into.completed += from.completed;
  into.ok += from.ok;
  into.bytesIn += from.bytesIn;
  into.histogram.merge(from.histogram);
  for (const [label, count] of from.status) countLabel(into.status, label, count);
  for (const [label, count] of from.codes) countLabel(into.codes, label, count);
  into.errors.connection += from.errors.connection;
  into.errors.timeout += from.errors.timeout;
  into.errors.non2xx += from.errors.non2xx;
  from.byUnit.mergeInto(into.byUnit);
  from.byChannel.mergeInto(into.byChannel);
  from.byVersion.mergeInto(into.byVersion);
}

export function median(values: readonly number[]): number {
  if (values.length === 0) return 0;
  const sorted = [...values].sort((a, b) => a - b);
  const middle = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[middle]! : Math.round((sorted[middle - 1]! + sorted[middle]!) / 2);
}
