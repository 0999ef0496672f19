import { autocannon } from './autocannon-binding.js';
import type { AutocannonContext, AutocannonRawRequest } from './autocannon-binding.js';
import { assertLoadtest, loadtestLimits } from './limits.js';
import { PhaseCollector } from './phase-collector.js';
import type { PhaseMode, PhaseResult, SecondBucket } from './run-result.js';
import type { LoadRequest, Workload } from './workload.js';

// Runs one phase of load with autocannon. Every request comes from the
// workload model (setupRequest) and every answer goes back to it (onResponse),
// so no two requests share a body except deliberate retries.
//
// Latency is measured here, from the moment setupRequest hands a request to
// the connection to the moment its answer is parsed. In fixed-rate mode
// autocannon paces each connection at rate / connections requests per second;
// a connection stuck on a slow answer cannot send the requests it owed, which
// hides exactly the latencies that matter (coordinated omission). We correct
// as HdrHistogram's recordValueWithExpectedInterval does: for an answer that
// took L > interval, where interval = 1000 * connections / rate ms, we also
// record L - interval, L - 2 * interval, ... down to interval. The raw,
// uncorrected distribution is reported beside it. autocannon's own correction
// is disabled because it passes ceil(1 / rate) as the interval, i.e. 1 ms.
//
// Limit: autocannon refills each connection's quota once per wall-clock
// second, so within a second the sends are bunched rather than evenly spaced;
// fixed-rate mode is "at most `rate` per second", and `sent` per second shows
// when the target was not met.

export interface RunPhaseOptions {
  url: string;
  workload: Workload;
  mode: PhaseMode;
  connections: number;
  /** Requests per second; required in "rate" mode, ignored in "closed" mode. */
  rate?: number | null;
  durationSeconds: number;
  name?: string;
  /** Offset of this phase on the run's time axis (for multi-phase runs). */
  startSecond?: number;
  /** Seconds before a request without an answer counts as a timeout and its connection is reset. */
  timeoutSeconds?: number;
  /** Called once per finished second, in order. */
  onSecond?: (bucket: SecondBucket) => void;
  /** Ends the phase early (the phase result covers what ran). */
  signal?: AbortSignal;
  /** Monotonic milliseconds; injectable for tests. */
  clock?: () => number;
  /** A run-level collector that absorbs this phase's totals when it ends. */
  runCollector?: PhaseCollector;
}

export const timeoutSecondsDefault = 10;

/** How long before the planned end the runner raises autocannon's stop flag. */
const stopLeadMs = 100;

function checkPhaseOptions(options: RunPhaseOptions): void {
  assertLoadtest(/^https?:\/\//.test(options.url), 'url is http(s)');
  assertLoadtest(Number.isInteger(options.connections) && options.connections >= 1, 'connections >= 1');
  assertLoadtest(options.connections <= loadtestLimits.connectionsMax, 'connections <= connectionsMax');
  assertLoadtest(Number.isInteger(options.durationSeconds) && options.durationSeconds >= 1, 'durationSeconds >= 1');
  assertLoadtest(options.durationSeconds <= loadtestLimits.phaseSecondsMax, 'durationSeconds <= phaseSecondsMax');
  if (options.mode === 'rate') {
    const rate = options.rate ?? 0;
    assertLoadtest(Number.isInteger(rate) && rate >= 1 && rate <= loadtestLimits.rateMax, 'rate mode has a rate in [1, rateMax]');
  }
}

interface ParsedAnswer {
  unit: string;
  version: string;
  responseCode: string | null;
  approved: boolean | null;
  json: unknown;
}

function parseAnswer(body: string): ParsedAnswer {
  let json: unknown = null;
  if (body.length > 0 && body.length <= loadtestLimits.responseBodyCharsMax) {
    try {
      json = JSON.parse(body);
    } catch {
      json = null;
    }
  }
  const fields = (typeof json === 'object' && json !== null ? json : {}) as Record<string, unknown>;
  return {
    unit: typeof fields['unit'] === 'string' ? fields['unit'] : 'none',
    version: typeof fields['version'] === 'string' ? fields['version'] : 'stable',
    responseCode: typeof fields['responseCode'] === 'string' ? fields['responseCode'] : null,
    approved: typeof fields['approved'] === 'boolean' ? fields['approved'] : null,
    json,
  };
}

/** Runs one phase against `url` and returns its per-second buckets and totals. */
export async function runPhase(options: RunPhaseOptions): Promise<PhaseResult> {
  checkPhaseOptions(options);
  const clock = options.clock ?? (() => performance.now());
  const rate = options.mode === 'rate' ? options.rate! : null;
  // autocannon itself lowers connections to the rate when the rate is smaller.
  const connections = rate === null ? options.connections : Math.min(options.connections, rate);
  const startMs = clock();
  const collector = new PhaseCollector({
    phase: options.name ?? options.mode,
    startMs,
    startSecond: options.startSecond ?? 0,
    correctionIntervalMs: rate === null ? null : (1000 * connections) / rate,
    durationSeconds: options.durationSeconds,
  });
  const { workload } = options;
  const setupRequest = (raw: AutocannonRawRequest, context: AutocannonContext): AutocannonRawRequest => {
    const request = workload.next();
    const sentAtMs = clock();
    context['request'] = request;
    context['sentAtMs'] = sentAtMs;
    collector.recordSent(sentAtMs);
    return { ...raw, method: request.method, path: request.path, headers: { ...request.headers }, body: request.body };
  };
  const onResponse = (status: number, body: string, context: AutocannonContext): void => {
    const request = context['request'] as LoadRequest | undefined;
    const sentAtMs = context['sentAtMs'] as number | undefined;
    if (request === undefined || sentAtMs === undefined) return;
    const nowMs = clock();
    const answer = parseAnswer(body);
    workload.observe(request, status, answer.json);
    collector.recordResponse({
      nowMs, latencyMs: nowMs - sentAtMs, status, bytes: body.length, request,
      unit: answer.unit, version: answer.version, responseCode: answer.responseCode, approved: answer.approved,
    });
  };
  const instance = autocannon({
    url: options.url,
    connections,
    duration: options.durationSeconds,
    pipelining: 1,
    timeout: options.timeoutSeconds ?? timeoutSecondsDefault,
    requests: [{ method: 'POST', path: '/v1/authorizations', setupRequest, onResponse }],
    // autocannon rejects ignoreCoordinatedOmission without a rate.
    ...(rate === null ? {} : { overallRate: rate, ignoreCoordinatedOmission: true }),
    excludeErrorStats: false,
  });
  instance.on('reqError', (error) => collector.recordError(clock(), /timed out/i.test(error.message) ? 'timeout' : 'connection'));
  return finishPhase(options, instance, collector, clock, { rate, connections });
}

async function finishPhase(
  options: RunPhaseOptions, instance: ReturnType<typeof autocannon>, collector: PhaseCollector,
  clock: () => number, shape: { rate: number | null; connections: number },
): Promise<PhaseResult> {
  const report = (buckets: readonly SecondBucket[]): void => {
    for (const bucket of buckets) options.onSecond?.(bucket);
  };
  // Four checks a second so a second is reported soon after it ends.
  const ticker = setInterval(() => report(collector.flushThrough(clock())), 250);
  const stop = (): void => instance.stop();
  options.signal?.addEventListener('abort', stop, { once: true });
  if (options.signal?.aborted === true) stop();
  // autocannon checks its stop flag on a one-second tick; its own duration
  // timer races that tick and can lose, adding a whole second. Raising the flag
  // just before the last tick ends the phase on time.
  const stopTimer = setTimeout(stop, options.durationSeconds * 1000 - stopLeadMs);
  try {
    await instance;
  } finally {
    clearTimeout(stopTimer);
    clearInterval(ticker);
    options.signal?.removeEventListener('abort', stop);
  }
  const reportedBefore = collector.seconds.length;
  const totals = collector.finish(clock());
  report(collector.seconds.slice(reportedBefore));
  options.runCollector?.absorb(collector);
  return {
    name: options.name ?? options.mode,
    mode: options.mode,
    connections: shape.connections,
    rate: shape.rate,
    durationSeconds: options.durationSeconds,
    startSecond: options.startSecond ?? 0,
    seconds: [...collector.seconds],
    totals,
  };
}
