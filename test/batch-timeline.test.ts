import { expect, it } from 'vitest';
import { latencyBySteps, unitsFinishedAtSeconds } from '../batch/timeline.js';
import type { SecondBucket } from '../loadtest/run-result.js';

// The isolation benchmark splits the load beside a batch run by the batch's steps.

function bucket(second: number, p99: number, completed = 100): SecondBucket {
  return {
    second, phase: 'during-batch', spanMs: 1000, sent: completed, completed, ok: completed, bytesIn: 0,
    latencyMs: { count: completed, p50: p99 / 4, p90: p99 / 2, p99, p999: p99, max: p99, mean: p99 / 4 },
    status: {}, responseCodes: {}, errors: {} as SecondBucket['errors'], byUnit: {}, byChannel: {}, byVersion: {},
  } as SecondBucket;
}

it('attributes each second of load to the task that ran in its middle', () => {
  const start = 1_000_000;
  // feed from 0.2 s to 2.2 s, clear from 2.2 s to 4.8 s, nothing until 5.6 s, send until 7.1 s.
  const timeline = [
    { task: 'dsu-1 feed', kind: 'sync', endedAtMs: start + 2_200, seconds: 2 },
    { task: 'dsu-1 clear 0', kind: 'clear', endedAtMs: start + 4_800, seconds: 2.6 },
    { task: 'dsu-1 send', kind: 'send', endedAtMs: start + 7_100, seconds: 1.5 },
  ];
  const buckets = [bucket(0, 4), bucket(1, 6), bucket(2, 10), bucket(3, 30), bucket(4, 20), bucket(5, 5), bucket(6, 50), bucket(7, 3), bucket(8, 9, 0)];
  expect(latencyBySteps(buckets, start, timeline)).toEqual({
    sync: { seconds: 2, p99MedianMs: 5, p99MaxMs: 6 },
    clear: { seconds: 3, p99MedianMs: 20, p99MaxMs: 30 },
    between: { seconds: 2, p99MedianMs: 4, p99MaxMs: 5 },
    send: { seconds: 1, p99MedianMs: 50, p99MaxMs: 50 },
  });
});

it('finds when each unit\'s last task ended, from the start of the first task', () => {
  const start = 2_000_000;
  const timeline = [
    { task: 'dsu-1 feed', kind: 'sync', endedAtMs: start + 3_000, seconds: 2.5 },
    { task: 'dsu-2 feed', kind: 'sync', endedAtMs: start + 2_000, seconds: 2 },
    { task: 'dsu-2 send', kind: 'send', endedAtMs: start + 9_260, seconds: 5 },
    { task: 'dsu-1 reconcile', kind: 'reconcile', endedAtMs: start + 7_000, seconds: 0.5 },
  ];
  // The first task (dsu-2 feed) started at start + 0 ms.
  expect(unitsFinishedAtSeconds(timeline)).toEqual({ 'dsu-1': 7, 'dsu-2': 9.3 });
});
