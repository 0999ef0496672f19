import { LatencyHistogram } from './histogram.js';
import { loadtestLimits } from './limits.js';
import type { BreakdownSecond, BreakdownTotals } from './run-result.js';

// Counters per label of one dimension (unit, channel, version, kind). The
// number of labels is bounded: a misbehaving server cannot grow it without
// limit, extra labels fold into "other".

export const otherLabel = 'other';

export interface BreakdownCell {
  requests: number;
  errors: number;
  declined: number;
  readonly histogram: LatencyHistogram;
}

export class Breakdown {
  readonly #cells = new Map<string, BreakdownCell>();

  cell(label: string): BreakdownCell {
    const existing = this.#cells.get(label);
    if (existing !== undefined) return existing;
    const key = this.#cells.size < loadtestLimits.breakdownKeysMax ? label.slice(0, 64) : otherLabel;
    let cell = this.#cells.get(key);
    if (cell === undefined) {
      cell = { requests: 0, errors: 0, declined: 0, histogram: new LatencyHistogram() };
      this.#cells.set(key, cell);
    }
    return cell;
  }

  mergeInto(target: Breakdown): void {
    for (const [label, cell] of this.#cells) {
      const into = target.cell(label);
      into.requests += cell.requests;
      into.errors += cell.errors;
      into.declined += cell.declined;
      into.histogram.merge(cell.histogram);
    }
  }

  secondSummary(): Record<string, BreakdownSecond> {
    const out: Record<string, BreakdownSecond> = {};
    for (const [label, cell] of [...this.#cells].sort(([a], [b]) => a.localeCompare(b))) {
      out[label] = { requests: cell.requests, errors: cell.errors, declined: cell.declined, p99Ms: cell.histogram.summaryMs().p99 };
    }
    return out;
  }

  totalsSummary(): Record<string, BreakdownTotals> {
    const out: Record<string, BreakdownTotals> = {};
    for (const [label, cell] of [...this.#cells].sort(([a], [b]) => a.localeCompare(b))) {
      out[label] = { requests: cell.requests, errors: cell.errors, declined: cell.declined, latencyMs: cell.histogram.summaryMs() };
    }
    return out;
  }
}

/** Adds one label count to a bounded record of counters. */
export function countLabel(counts: Map<string, number>, label: string, times = 1): void {
  const key = counts.has(label) || counts.size < loadtestLimits.codeLabelsMax ? label.slice(0, 32) : otherLabel;
  counts.set(key, (counts.get(key) ?? 0) + times);
}

export function countsToRecord(counts: ReadonlyMap<string, number>): Record<string, number> {
  return Object.fromEntries([...counts].sort(([a], [b]) => a.localeCompare(b)));
}
