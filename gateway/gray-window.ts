import type { SplitStats, WindowStats } from '../domain/gray-plan.js';
import type { Version } from '../domain/gray.js';

// What each version did since the window opened (a plan step's start or the
// last rules change): counts, response codes and a latency histogram. Updated
// on every authorization answer, so it is a few array writes per answer; the
// p99 is computed only when a step is analyzed.

/** Buckets per doubling: 16 keeps a quantile within 1/16 = 6% of the true value. */
const bucketsPerOctave = 16;
/** 1 us to ~68 s. */
const bucketCount = bucketsPerOctave * 26;

class VersionCounts {
  requests = 0;
  errors = 0;
  approvals = 0;
  readonly codes = new Map<string, number>();
  readonly latency = new Float64Array(bucketCount);

  record(status: number, code: string, approved: boolean, latencyMs: number): void {
    this.requests++;
    if (status >= 500) this.errors++;
    if (approved) this.approvals++;
    this.codes.set(code, (this.codes.get(code) ?? 0) + 1);
    const micros = Math.max(1, latencyMs * 1000);
    const index = Math.min(bucketCount - 1, Math.floor(Math.log2(micros) * bucketsPerOctave));
    this.latency[index]! += 1;
  }

  quantileMs(quantile: number): number {
    if (this.requests === 0) return 0;
    const rank = Math.ceil(quantile * this.requests);
    let seen = 0;
    for (let i = 0; i < bucketCount; i++) {
      seen += this.latency[i] as number;
      // The bucket's upper edge: a quantile is never reported lower than it was.
      if (seen >= rank) return 2 ** ((i + 1) / bucketsPerOctave) / 1000;
    }
    return 2 ** (bucketCount / bucketsPerOctave) / 1000;
  }

  snapshot(): WindowStats {
    return { requests: this.requests, errors: this.errors, approvals: this.approvals, codes: Object.fromEntries(this.codes), p99Ms: this.quantileMs(0.99) };
  }
}

export class GrayWindow {
  readonly openedMs: number;
  private readonly byVersion: Record<Version, VersionCounts> = { stable: new VersionCounts(), gray: new VersionCounts() };
  private readonly split: SplitStats = { decided: 0, gray: 0 };
  /** Gray-tagged requests sent to stable because their unit had no gray instance up. */
  fallbacks = 0;
  /** Gray-tagged requests refused (fallback "reject") because their unit had no gray instance up. */
  rejected = 0;

  constructor(nowMs: number) {
    this.openedMs = nowMs;
  }

  onDecision(version: Version, byPercent: boolean): void {
    if (!byPercent) return;
    this.split.decided++;
    if (version === 'gray') this.split.gray++;
  }

  onAnswer(version: Version, status: number, code: string, approved: boolean, latencyMs: number): void {
    this.byVersion[version].record(status, code, approved, latencyMs);
  }

  stats(version: Version): WindowStats {
    return this.byVersion[version].snapshot();
  }

  splitStats(): SplitStats {
    return { ...this.split };
  }
}
