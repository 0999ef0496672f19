import type { SecondBucket } from './run-result.js';

// The live line on stderr, once a second: enough to see a run go wrong
// without waiting for the report.

export function formatProgressLine(bucket: SecondBucket, elapsedSeconds: number, totalSeconds: number): string {
  const rate = Math.round((bucket.completed * 1000) / Math.max(1, bucket.spanMs));
  const errors = bucket.errors.connection + bucket.errors.timeout + bucket.errors.non2xx;
  const declined = Object.values(bucket.byChannel).reduce((sum, cell) => sum + cell.declined, 0);
  return [
    `[${String(elapsedSeconds).padStart(4)}s/${totalSeconds}s]`,
    bucket.phase.padEnd(12),
    `rps ${String(rate).padStart(6)}`,
    `p50 ${bucket.latencyMs.p50.toFixed(1).padStart(7)}ms`,
    `p99 ${bucket.latencyMs.p99.toFixed(1).padStart(7)}ms`,
    `errors ${errors}`,
    `declined ${declined}`,
  ].join('  ');
}
