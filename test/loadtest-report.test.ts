import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it, expect } from 'vitest';
import { LatencyHistogram } from '../loadtest/histogram.js';
import { PhaseCollector } from '../loadtest/phase-collector.js';
import { readRunResult, renderReportHtml, writeReport } from '../loadtest/report.js';
import type { PhaseResult, RunResult } from '../loadtest/run-result.js';
import { formatSummaryTable } from '../loadtest/summary-table.js';
import type { LoadRequest } from '../loadtest/workload.js';

const hostileUnit = '<script>alert("x")</script>';

function fakeRequest(seq: number, channel: LoadRequest['channel']): LoadRequest {
  return {
    seq, kind: 'authorization', channel, method: 'POST', path: '/v1/authorizations', headers: {}, body: '{}',
    idempotencyKey: `k-${seq}`, retryOf: null, authorizationId: null, transactionType: 'purchase', currency: 'CNY',
    amountMinor: 100, merchantId: 'M', accountId: 'A',
  };
}

/** A three-second phase fed through the real collector with a fake clock. */
function collectPhase(name: string, startSecond: number, correctionIntervalMs: number | null): PhaseResult {
  const collector = new PhaseCollector({ phase: name, startMs: 0, startSecond, correctionIntervalMs, durationSeconds: 3 });
  const units = ['dsu-1', 'dsu-2', hostileUnit];
  const channels = ['pos', 'atm', 'ecommerce', 'wallet'] as const;
  for (let i = 0; i < 3_000; i += 1) {
    const nowMs = i;
    collector.recordSent(nowMs);
    const status = i % 100 === 0 ? 429 : 200;
    collector.recordResponse({
      nowMs, latencyMs: 1 + (i % 10), status, bytes: 120, request: fakeRequest(i, channels[i % 4]!),
      unit: status === 200 ? units[i % 3]! : 'none', version: i % 5 === 0 ? 'gray' : 'stable',
      responseCode: status === 200 ? (i % 7 === 0 ? '51' : '00') : null, approved: status === 200 ? i % 7 !== 0 : null,
    });
  }
  collector.recordError(1_500, 'timeout');
  const totals = collector.finish(3_000);
  return { name, mode: correctionIntervalMs === null ? 'closed' : 'rate', connections: 8, rate: correctionIntervalMs === null ? null : 1000, durationSeconds: 3, startSecond, seconds: [...collector.seconds], totals };
}

function sampleResult(): RunResult {
  const first = collectPhase('warm <up>', 0, null);
  const second = collectPhase('steady', 3, 8);
  return {
    formatVersion: 1, scenario: 'test & <scenario>', description: 'a "quoted" description', url: 'http://127.0.0.1:8080',
    seed: 42, startedAt: '2025-01-01T00:00:00.000Z', finishedAt: '2025-01-01T00:00:06.000Z', stoppedEarly: null,
    phases: [first, second],
    hooks: [
      { atSecond: 2, action: 'log', args: { message: 'm' }, ok: true, detail: 'hello <b>world</b>', durationMs: 0 },
      { atSecond: 4, action: 'http', args: { url: '/admin' }, ok: false, detail: 'POST -> 500', durationMs: 3 },
    ],
    totals: second.totals,
  };
}

describe('latency histogram', () => {
  it('reports percentiles within 2 % and never below the true value', () => {
    const histogram = new LatencyHistogram();
    for (let ms = 1; ms <= 1_000; ms += 1) histogram.recordMs(ms);
    const summary = histogram.summaryMs();
    expect(summary.count).toBe(1_000);
    for (const [value, expected] of [[summary.p50, 500], [summary.p90, 900], [summary.p99, 990], [summary.p999, 999]] as const) {
      expect(value).toBeGreaterThanOrEqual(expected);
      expect(value).toBeLessThanOrEqual(expected * 1.02);
    }
    expect(summary.max).toBe(1_000);
  });

  it('corrects for coordinated omission like recordValueWithExpectedInterval', () => {
    const histogram = new LatencyHistogram();
    expect(histogram.recordMsWithExpectedInterval(100, 10)).toBe(9); // 90, 80, ..., 10
    expect(histogram.count).toBe(10);
    expect(histogram.recordMsWithExpectedInterval(5, 10)).toBe(0);
  });
});

describe('phase collector', () => {
  it('buckets per second with totals, codes, errors and breakdowns', () => {
    const phase = collectPhase('p', 10, null);
    expect(phase.seconds.map((s) => s.second)).toEqual([10, 11, 12]);
    expect(phase.seconds.map((s) => s.completed)).toEqual([1_000, 1_000, 1_000]);
    expect(phase.totals.completed).toBe(3_000);
    expect(phase.totals.throughputMedian).toBe(1_000);
    expect(phase.totals.status['429']).toBe(30);
    expect(phase.totals.errors).toEqual({ connection: 0, timeout: 1, non2xx: 30 });
    expect(Object.keys(phase.totals.byChannel).sort()).toEqual(['atm', 'ecommerce', 'pos', 'wallet']);
    expect(phase.totals.byVersion['gray']!.requests).toBe(600);
    expect(phase.totals.byUnit['none']!.errors).toBe(30);
    expect(phase.totals.latencyMs.max).toBe(10);
  });

  it('adds corrected samples in fixed-rate mode and keeps the raw distribution', () => {
    const phase = collectPhase('p', 0, 2);
    expect(phase.totals.correctionSamples).toBeGreaterThan(0);
    expect(phase.totals.latencyMs.count).toBe(3_000 + phase.totals.correctionSamples);
    expect(phase.totals.latencyRawMs.count).toBe(3_000);
  });
});

describe('report', () => {
  it('round-trips the result through the JSON file', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'loadtest-report-'));
    try {
      const result = sampleResult();
      const paths = await writeReport(result, join(dir, 'nested'), 'run');
      expect(paths.jsonPath).toBe(join(dir, 'nested', 'run.json'));
      expect(await readRunResult(paths.jsonPath)).toEqual(result);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('is self-contained: no scripts, no external src or href', () => {
    const html = renderReportHtml(sampleResult());
    expect(html.startsWith('<!DOCTYPE html>')).toBe(true);
    expect(html).not.toMatch(/<script/i);
    expect(html).not.toMatch(/(src|href)\s*=\s*["']?\s*(https?:)?\/\//i);
    expect(html).not.toMatch(/<link/i);
    expect(html).not.toMatch(/@import/i);
  });

  it('has a chart for every section, each with the hook markers', () => {
    const html = renderReportHtml(sampleResult());
    const charts = [
      'chart-throughput', 'chart-latency', 'chart-errors', 'chart-status', 'chart-codes',
      'chart-unit-requests', 'chart-unit-p99', 'chart-unit-errors',
      'chart-channel-requests', 'chart-channel-p99', 'chart-channel-errors',
      'chart-version-requests', 'chart-version-p99', 'chart-version-errors',
    ];
    for (const id of charts) expect(html).toContain(`id="${id}"`);
    const figures = html.split('<figure class="chart"').slice(1);
    expect(figures).toHaveLength(charts.length);
    for (const figure of figures) {
      expect(figure).toContain('<svg');
      expect(figure.match(/class="hook-marker"/g)).toHaveLength(2);
      expect(figure).toContain('log @2s');
      expect(figure).toContain('http (failed) @4s');
      // The hook's outcome is the marker's tooltip, and the marker links to the hook's row.
      expect(figure).toContain('<title>http (failed) @4s: POST -&gt; 500</title>');
      expect(figure).toContain('<a href="#hook-1">');
    }
    expect(html).toContain('<tr id="hook-1"><td>4</td><td>http</td><td>no</td><td>3</td><td>POST -&gt; 500</td></tr>');
    for (const section of ['summary', 'throughput', 'latency', 'errors', 'unit', 'channel', 'version', 'hooks']) {
      expect(html).toContain(`id="section-${section}"`);
    }
    expect(html).toContain('<path d="M');
  });

  it('escapes HTML in every label', () => {
    const html = renderReportHtml(sampleResult());
    expect(html).not.toContain(hostileUnit);
    expect(html).toContain('&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;');
    expect(html).not.toContain('<b>world</b>');
    expect(html).toContain('hello &lt;b&gt;world&lt;/b&gt;');
    expect(html).toContain('test &amp; &lt;scenario&gt;');
    expect(html).toContain('warm &lt;up&gt;');
  });

  it('prints a summary table with every phase and the total', () => {
    const table = formatSummaryTable(sampleResult());
    expect(table).toMatch(/warm <up>/);
    expect(table).toMatch(/steady/);
    expect(table).toMatch(/TOTAL/);
    expect(table).toMatch(/429:30/);
  });
});
