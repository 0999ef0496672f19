import type { LatencySummaryMs } from './histogram.js';
import { formatCounts } from './report.js';
import type { PhaseTotals, RunResult } from './run-result.js';

// The plain-text table printed at the end of a run.

function pad(cells: ReadonlyArray<string | number>, widths: readonly number[]): string {
  return cells.map((cell, index) => String(cell).padStart(widths[index] ?? 8)).join('  ');
}

function errorsOf(totals: PhaseTotals): number {
  return totals.errors.connection + totals.errors.timeout + totals.errors.non2xx;
}

function latencyText(latency: LatencySummaryMs): string[] {
  return [latency.p50, latency.p90, latency.p99, latency.p999, latency.max].map((value) => value.toFixed(1));
}

export function formatSummaryTable(result: RunResult): string {
  const widths = [14, 6, 6, 7, 9, 8, 8, 8, 8, 8, 8, 8, 8];
  const header = pad(['phase', 'mode', 'conns', 'rate', 'answered', 'median/s', 'overall/s', 'p50', 'p90', 'p99', 'p99.9', 'max', 'errors'], widths);
  const rows = result.phases.map((phase) => pad([
    phase.name.slice(0, 14), phase.mode, phase.connections, phase.rate ?? '-', phase.totals.completed,
    phase.totals.throughputMedian, phase.totals.throughputOverall, ...latencyText(phase.totals.latencyMs), errorsOf(phase.totals),
  ], widths));
  const t = result.totals;
  const total = pad(['TOTAL', '', '', '', t.completed, t.throughputMedian, t.throughputOverall, ...latencyText(t.latencyMs), errorsOf(t)], widths);
  const lines = [
    `scenario ${result.scenario}  url ${result.url}  seed ${result.seed}${result.stoppedEarly === null ? '' : `  stopped early: ${result.stoppedEarly}`}`,
    `latency in ms${result.phases.some((p) => p.mode === 'rate') ? ' (fixed-rate phases corrected for coordinated omission)' : ''}`,
    header, '-'.repeat(header.length), ...rows, '-'.repeat(header.length), total,
    `errors: connection ${t.errors.connection}, timeout ${t.errors.timeout}, non-2xx ${t.errors.non2xx}`,
    `HTTP status: ${formatCounts(t.status)}`,
    `response codes: ${formatCounts(t.responseCodes)}`,
    `per unit: ${Object.entries(t.byUnit).map(([unit, cell]) => `${unit} ${cell.requests} (p99 ${cell.latencyMs.p99}ms)`).join(', ') || '-'}`,
    `per version: ${Object.entries(t.byVersion).map(([version, cell]) => `${version} ${cell.requests}`).join(', ') || '-'}`,
  ];
  for (const hook of result.hooks) lines.push(`hook @${hook.atSecond}s ${hook.action}: ${hook.ok ? 'ok' : 'FAILED'} ${hook.detail}`);
  return lines.join('\n');
}
