// Inline SVG line charts for the HTML report: no scripts, no external files,
// so the report opens anywhere and can be attached to an issue as is.

export interface ChartSeries {
  label: string;
  /** One value per x position; null leaves a gap. */
  values: ReadonlyArray<number | null>;
}

export interface ChartMarker {
  x: number;
  /** Drawn beside the line: short, it shares the chart's top edge with the other markers. */
  label: string;
  /** Longer text (a hook's outcome), shown as the marker's tooltip. */
  detail?: string;
  /** Where a click on the marker leads, e.g. "#hook-0" (the hook's row in the report). */
  href?: string;
}

export interface LineChartOptions {
  id: string;
  title: string;
  yLabel: string;
  xs: readonly number[];
  series: readonly ChartSeries[];
  /** Vertical lines, e.g. hook moments; drawn on every time chart. */
  markers: readonly ChartMarker[];
  width?: number;
  height?: number;
}

const palette = ['#1f77b4', '#d62728', '#2ca02c', '#ff7f0e', '#9467bd', '#8c564b', '#e377c2', '#7f7f7f', '#bcbd22', '#17becf'] as const;

export function escapeHtml(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;').replace(/'/g, '&#39;');
}

/** A round step for about `count` ticks over [0, max]. */
function niceStep(max: number, count: number): number {
  const raw = max / count;
  const magnitude = 10 ** Math.floor(Math.log10(raw));
  const normalized = raw / magnitude;
  const nice = normalized <= 1 ? 1 : normalized <= 2 ? 2 : normalized <= 5 ? 5 : 10;
  return nice * magnitude;
}

function formatTick(value: number): string {
  if (value >= 1_000_000) return `${+(value / 1_000_000).toFixed(1)}M`;
  if (value >= 10_000) return `${+(value / 1000).toFixed(1)}k`;
  return String(+value.toFixed(2));
}

function axes(xs: readonly number[], yMax: number, plot: Plot): string[] {
  const parts: string[] = [];
  const yStep = niceStep(yMax, 5);
  for (let y = 0; y <= yMax + 1e-9; y += yStep) {
    const py = plot.y(y);
    parts.push(`<line x1="${plot.left}" x2="${plot.right}" y1="${py}" y2="${py}" stroke="#eee"/>`);
    parts.push(`<text x="${plot.left - 6}" y="${py + 4}" text-anchor="end" font-size="11">${formatTick(y)}</text>`);
  }
  const xMin = xs[0] ?? 0;
  const xMax = xs[xs.length - 1] ?? 1;
  const xStep = niceStep(Math.max(1, xMax - xMin), 8);
  for (let x = Math.ceil(xMin / xStep) * xStep; x <= xMax; x += xStep) {
    parts.push(`<text x="${plot.x(x)}" y="${plot.bottom + 16}" text-anchor="middle" font-size="11">${formatTick(x)}s</text>`);
  }
  parts.push(`<line x1="${plot.left}" x2="${plot.right}" y1="${plot.bottom}" y2="${plot.bottom}" stroke="#999"/>`);
  return parts;
}

interface Plot {
  left: number;
  right: number;
  top: number;
  bottom: number;
  x(value: number): number;
  y(value: number): number;
}

function makePlot(xs: readonly number[], yMax: number, width: number, height: number): Plot {
  const left = 56;
  const right = width - 16;
  const top = 12;
  const bottom = height - 28;
  const xMin = xs[0] ?? 0;
  const xSpan = Math.max(1, (xs[xs.length - 1] ?? 1) - xMin);
  const round = (value: number): number => Math.round(value * 10) / 10;
  return {
    left, right, top, bottom,
    x: (value) => round(left + ((value - xMin) / xSpan) * (right - left)),
    y: (value) => round(bottom - (value / yMax) * (bottom - top)),
  };
}

function seriesPath(xs: readonly number[], values: ReadonlyArray<number | null>, plot: Plot): string {
  let path = '';
  let penDown = false;
  xs.forEach((x, index) => {
    const value = values[index] ?? null;
    if (value === null || !Number.isFinite(value)) {
      penDown = false;
      return;
    }
    path += `${penDown ? 'L' : 'M'}${plot.x(x)},${plot.y(value)} `;
    penDown = true;
  });
  return path.trim();
}

/** A dashed vertical line with its label; the tooltip holds the detail, a link (inline SVG supports <a>) leads to more. */
function markerSvg(marker: ChartMarker, plot: Plot): string {
  const px = plot.x(marker.x);
  const tooltip = marker.detail === undefined ? marker.label : `${marker.label}: ${marker.detail}`;
  const body = `<line x1="${px}" x2="${px}" y1="${plot.top}" y2="${plot.bottom}" stroke="#000" stroke-dasharray="4 3"/>` +
    `<text x="${px + 3}" y="${plot.top + 10}" font-size="10">${escapeHtml(marker.label)}</text><title>${escapeHtml(tooltip)}</title>`;
  const linked = marker.href === undefined ? body : `<a href="${escapeHtml(marker.href)}">${body}</a>`;
  return `<g class="hook-marker">${linked}</g>`;
}

export function lineChart(options: LineChartOptions): string {
  const width = options.width ?? 920;
  const height = options.height ?? 260;
  const all = options.series.flatMap((series) => series.values.filter((v): v is number => v !== null && Number.isFinite(v)));
  const yMax = Math.max(1, ...all) * 1.05;
  const plot = makePlot(options.xs, yMax, width, height);
  const parts = axes(options.xs, yMax, plot);
  options.series.forEach((series, index) => {
    const color = palette[index % palette.length]!;
    const d = seriesPath(options.xs, series.values, plot);
    if (d !== '') parts.push(`<path d="${d}" fill="none" stroke="${color}" stroke-width="1.5"><title>${escapeHtml(series.label)}</title></path>`);
  });
  for (const marker of options.markers) parts.push(markerSvg(marker, plot));
  const legend = options.series.map((series, index) =>
    `<span class="legend-item"><span class="swatch" style="background:${palette[index % palette.length]!}"></span>${escapeHtml(series.label)}</span>`).join(' ');
  return `<figure class="chart" id="${escapeHtml(options.id)}"><figcaption>${escapeHtml(options.title)} <small>(${escapeHtml(options.yLabel)})</small></figcaption>` +
    `<svg width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" role="img" aria-label="${escapeHtml(options.title)}">` +
    `${parts.join('')}</svg><div class="legend">${legend}</div></figure>`;
}
