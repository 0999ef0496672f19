import type { SecondBucket } from '../loadtest/run-result.js';
import { median } from '../loadtest/bench-lib.js';
import type { TimelineTask } from './end-of-day.js';

// Lines up a fixed-rate load's per-second latency with the tasks of a batch run
// that ran beside it, to tell which step of the batch costs live traffic what.

export interface StepLatency {
  /** Seconds of load during which a task of this kind ran (by the middle of the second). */
  seconds: number;
  /** Median and maximum of those seconds' p99 latencies. */
  p99MedianMs: number;
  p99MaxMs: number;
}

/**
 * The kind of task running at each second of the load, from the tasks' end times
 * and run times (a task ran from endedAtMs - seconds to endedAtMs); 'between'
 * where none ran (the pool waiting on the main thread, or the process starting).
 * `loadStartMs` is the epoch time of the load's second 0.
 */
export function latencyBySteps(buckets: readonly SecondBucket[], loadStartMs: number, timeline: readonly TimelineTask[]): Record<string, StepLatency> {
  const p99s = new Map<string, number[]>();
  for (const bucket of buckets) {
    if (bucket.completed === 0) continue;
    const atMs = loadStartMs + bucket.second * 1000 + Math.min(bucket.spanMs, 1000) / 2;
    const running = timeline.find((task) => task.endedAtMs - task.seconds * 1000 <= atMs && atMs < task.endedAtMs);
    const kind = running?.kind ?? 'between';
    const list = p99s.get(kind) ?? [];
    list.push(bucket.latencyMs.p99);
    p99s.set(kind, list);
  }
  const round = (ms: number): number => Math.round(ms * 100) / 100;
  return Object.fromEntries([...p99s.entries()].map(([kind, list]) => [kind, { seconds: list.length, p99MedianMs: round(median(list)), p99MaxMs: round(Math.max(...list)) }]));
}

/**
 * When each unit's last task ended, in seconds from the start of the run's first
 * task (task names begin with the unit's id). The spread at the end is the part of
 * the window in which fewer units than pool threads were left to work on.
 */
export function unitsFinishedAtSeconds(timeline: readonly TimelineTask[]): Record<string, number> {
  const startMs = Math.min(...timeline.map((task) => task.endedAtMs - task.seconds * 1000));
  const finished: Record<string, number> = {};
  for (const task of timeline) {
    const unitId = task.task.split(' ')[0] as string;
    finished[unitId] = Math.max(finished[unitId] ?? 0, Math.round((task.endedAtMs - startMs) / 100) / 10);
  }
  return finished;
}
