import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { LatencySummaryMs } from './histogram.js';
import type { BreakdownSecond, BreakdownTotals, PhaseTotals, RunResult, SecondBucket } from './run-result.js';
import { escapeHtml, lineChart } from './svg-chart.js';
import type { ChartMarker, ChartSeries } from './svg-chart.js';

// The run report: the result as JSON (for tools and later comparison) and as
// one self-contained HTML page (inline SVG, inline CSS, no scripts, nothing
// fetched), with hook moments drawn on every time chart.

export const breakdownDimensions = [
  { key: 'byUnit', title: 'Per unit' },
  { key: 'byChannel', title: 'Per channel' },
  { key: 'byVersion', title: 'Per version' },
] as const;

type Dimension = (typeof breakdownDimensions)[number]['key'];

function allSeconds(result: RunResult): SecondBucket[] {
  return result.phases.flatMap((phase) => phase.seconds).sort((a, b) => a.second - b.second);
}

function perSecond(bucket: SecondBucket, count: number): number {
  return Math.round((count * 1000) / Math.max(1, bucket.spanMs));
}

function labelsOf(buckets: readonly SecondBucket[], pick: (bucket: SecondBucket) => Record<string, unknown>): string[] {
  const labels = new Set<string>();
  for (const bucket of buckets) for (const label of Object.keys(pick(bucket))) labels.add(label);
  return [...labels].sort();
}

/** One marker per hook: its label on the chart, its detail (what the hook did or why it failed) as the tooltip, a link to its row. */
function markersOf(result: RunResult): ChartMarker[] {
  return result.hooks.map((hook, index) => ({
    x: hook.atSecond, label: `${hook.action}${hook.ok ? '' : ' (failed)'} @${hook.atSecond}s`, detail: hook.detail, href: `#hook-${index}`,
  }));
}

function timeCharts(result: RunResult, buckets: readonly SecondBucket[]): string[] {
  const xs = buckets.map((bucket) => bucket.second);
  const markers = markersOf(result);
  const latencyKeys = [['p50', 'p50'], ['p90', 'p90'], ['p99', 'p99'], ['p999', 'p99.9'], ['max', 'max']] as const;
  const errorSeries: ChartSeries[] = [
    { label: 'connection errors', values: buckets.map((b) => b.errors.connection) },
    { label: 'timeouts', values: buckets.map((b) => b.errors.timeout) },
    { label: 'non-2xx', values: buckets.map((b) => b.errors.non2xx) },
  ];
  const codeSeries = (pick: (b: SecondBucket) => Record<string, number>, prefix: string): ChartSeries[] =>
    labelsOf(buckets, pick).map((label) => ({ label: `${prefix}${label}`, values: buckets.map((b) => pick(b)[label] ?? 0) }));
  return [
    section('throughput', 'Throughput over time', lineChart({
      id: 'chart-throughput', title: 'Throughput', yLabel: 'requests per second', xs, markers,
      series: [
        { label: 'answered/s', values: buckets.map((b) => perSecond(b, b.completed)) },
        { label: '2xx/s', values: buckets.map((b) => perSecond(b, b.ok)) },
        { label: 'sent/s', values: buckets.map((b) => perSecond(b, b.sent)) },
      ],
    })),
    section('latency', 'Latency over time', lineChart({
      id: 'chart-latency', title: 'Latency (corrected for coordinated omission in fixed-rate phases)', yLabel: 'ms', xs, markers,
      series: latencyKeys.map(([key, label]) => ({ label, values: buckets.map((b) => (b.latencyMs.count === 0 ? null : b.latencyMs[key])) })),
    })),
    section('errors', 'Errors and response codes over time',
      lineChart({ id: 'chart-errors', title: 'Errors', yLabel: 'per second', xs, markers, series: errorSeries }) +
      lineChart({ id: 'chart-status', title: 'HTTP status', yLabel: 'per second', xs, markers, series: codeSeries((b) => b.status, 'HTTP ') }) +
      lineChart({ id: 'chart-codes', title: 'ISO 8583 response codes', yLabel: 'per second', xs, markers, series: codeSeries((b) => b.responseCodes, 'code ') })),
  ];
}

function breakdownSection(result: RunResult, buckets: readonly SecondBucket[], dimension: Dimension, title: string): string {
  const xs = buckets.map((bucket) => bucket.second);
  const markers = markersOf(result);
  const labels = labelsOf(buckets, (bucket) => bucket[dimension]);
  const cell = (bucket: SecondBucket, label: string): BreakdownSecond | undefined => bucket[dimension][label];
  const requests = labels.map((label) => ({ label, values: buckets.map((b) => perSecond(b, cell(b, label)?.requests ?? 0)) }));
  const p99 = labels.map((label) => ({ label: `${label} p99`, values: buckets.map((b) => cell(b, label)?.p99Ms ?? null) }));
  const errors = labels.map((label) => ({ label: `${label} errors`, values: buckets.map((b) => cell(b, label)?.errors ?? 0) }));
  const id = dimension.slice(2).toLowerCase();
  return section(id, title,
    lineChart({ id: `chart-${id}-requests`, title: `${title}: answers`, yLabel: 'per second', xs, markers, series: requests }) +
    lineChart({ id: `chart-${id}-p99`, title: `${title}: p99 latency`, yLabel: 'ms', xs, markers, series: p99 }) +
    lineChart({ id: `chart-${id}-errors`, title: `${title}: errors`, yLabel: 'per second', xs, markers, series: errors }) +
    breakdownTable(result.totals[dimension]));
}

function section(id: string, title: string, body: string): string {
  return `<section id="section-${escapeHtml(id)}"><h2>${escapeHtml(title)}</h2>${body}</section>`;
}

/** `rowIds` gives rows an id, so a chart marker can link to its row. */
function table(headers: readonly string[], rows: ReadonlyArray<ReadonlyArray<string | number>>, rowIds: readonly string[] = []): string {
  const head = headers.map((h) => `<th>${escapeHtml(h)}</th>`).join('');
  const body = rows.map((row, index) => {
    const id = rowIds[index];
    return `<tr${id === undefined ? '' : ` id="${escapeHtml(id)}"`}>${row.map((c) => `<td>${escapeHtml(String(c))}</td>`).join('')}</tr>`;
  }).join('');
  return `<table><thead><tr>${head}</tr></thead><tbody>${body}</tbody></table>`;
}

function latencyCells(latency: LatencySummaryMs): number[] {
  return [latency.p50, latency.p90, latency.p99, latency.p999, latency.max];
}

function breakdownTable(totals: Record<string, BreakdownTotals>): string {
  const rows = Object.entries(totals).map(([label, t]) => [label, t.requests, t.errors, t.declined, ...latencyCells(t.latencyMs)]);
  return table(['label', 'answers', 'errors', 'declined', 'p50 ms', 'p90 ms', 'p99 ms', 'p99.9 ms', 'max ms'], rows);
}

function summaryRows(totals: PhaseTotals): Array<[string, string | number]> {
  const errors = totals.errors;
  return [
    ['sent', totals.sent], ['answered', totals.completed], ['2xx', totals.ok],
    ['throughput overall /s', totals.throughputOverall], ['throughput median /s', totals.throughputMedian], ['throughput max /s', totals.throughputMax],
    ['latency p50 / p90 / p99 / p99.9 / max ms', latencyCells(totals.latencyMs).join(' / ')],
    ['raw latency p50 / p99 / max ms', `${totals.latencyRawMs.p50} / ${totals.latencyRawMs.p99} / ${totals.latencyRawMs.max}`],
    ['coordinated-omission samples added', totals.correctionSamples],
    ['errors connection / timeout / non-2xx', `${errors.connection} / ${errors.timeout} / ${errors.non2xx}`],
    ['HTTP status', formatCounts(totals.status)], ['response codes', formatCounts(totals.responseCodes)],
  ];
}

export function formatCounts(counts: Record<string, number>): string {
  return Object.entries(counts).map(([label, count]) => `${label}:${count}`).join(' ') || '-';
}

const css = `body{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#222}table{border-collapse:collapse;margin:8px 0 16px}
td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}td:first-child,th:first-child{text-align:left}
figure.chart{margin:12px 0}figcaption{font-weight:600}.legend{font-size:12px}.legend-item{margin-right:12px}
.swatch{display:inline-block;width:10px;height:10px;margin-right:4px}#section-hooks td:last-child{text-align:left}tr:target{background:#ffd}`;

/** The whole report as one HTML string; a pure function of the result. */
export function renderReportHtml(result: RunResult): string {
  const buckets = allSeconds(result);
  const phases = table(['phase', 'mode', 'connections', 'rate /s', 'seconds', 'answered', 'median /s', 'p99 ms', 'errors'],
    result.phases.map((p) => [p.name, p.mode, p.connections, p.rate ?? '-', p.durationSeconds, p.totals.completed, p.totals.throughputMedian,
      p.totals.latencyMs.p99, p.totals.errors.connection + p.totals.errors.timeout + p.totals.errors.non2xx]));
  const hooks = table(['second', 'action', 'ok', 'ms', 'detail'],
    result.hooks.map((h) => [h.atSecond, h.action, h.ok ? 'yes' : 'no', h.durationMs, h.detail]), result.hooks.map((_, index) => `hook-${index}`));
  const kinds = breakdownTable(result.totals.byKind);
  return `<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>Load test ${escapeHtml(result.scenario)}</title><style>${css}</style></head><body>` +
    `<h1>Load test: ${escapeHtml(result.scenario)}</h1><p>${escapeHtml(result.description)}</p>` +
    `<p>Target ${escapeHtml(result.url)}, seed ${result.seed}, ${escapeHtml(result.startedAt)} to ${escapeHtml(result.finishedAt)}` +
    `${result.stoppedEarly === null ? '' : `, stopped early: ${escapeHtml(result.stoppedEarly)}`}.</p>` +
    section('summary', 'Summary', table(['measure', 'value'], summaryRows(result.totals)) + phases) +
    timeCharts(result, buckets).join('') +
    breakdownDimensions.map(({ key, title }) => breakdownSection(result, buckets, key, title)).join('') +
    section('kinds', 'Per request kind', kinds) +
    section('hooks', 'Hooks', hooks) +
    '</body></html>\n';
}

export interface ReportPaths {
  jsonPath: string;
  htmlPath: string;
}

/** Writes `<base>.json` and `<base>.html` into `outDir` (created if missing). */
export async function writeReport(result: RunResult, outDir: string, baseName?: string): Promise<ReportPaths> {
  await mkdir(outDir, { recursive: true });
  const stamp = result.startedAt.replace(/[:.]/g, '-');
  const base = baseName ?? `loadtest-${result.scenario.replace(/[^A-Za-z0-9-]/g, '_')}-${stamp}`;
  const jsonPath = join(outDir, `${base}.json`);
  const htmlPath = join(outDir, `${base}.html`);
  await writeFile(jsonPath, `${JSON.stringify(result, null, 2)}\n`, 'utf8');
  await writeFile(htmlPath, renderReportHtml(result), 'utf8');
  return { jsonPath, htmlPath };
}

/** Reads a JSON report back (for comparisons and the benchmark). */
export async function readRunResult(path: string): Promise<RunResult> {
  const parsed = JSON.parse(await readFile(path, 'utf8')) as Partial<RunResult>;
  if (parsed.formatVersion !== 1) throw new Error(`${path} is not a load-test report of format version 1`);
  return parsed as RunResult;
}
