import { autocannon } from './autocannon-binding.js';
import type { AutocannonContext, AutocannonRawRequest } from './autocannon-binding.js';
import { LatencyHistogram } from './histogram.js';
import { assertLoadtest, loadtestLimits } from './limits.js';
import { connectPaced, sendPaced } from './paced-sender.js';
import type { PacedSink } from './paced-sender.js';
import { PhaseCollector } from './phase-collector.js';
import type { PhaseMode, PhaseResult, SecondBucket } from './run-result.js';
import type { LoadRequest, Workload } from './workload.js';

// Runs one phase of load. Every request comes from the workload model and
// every answer goes back to it (workload.observe), so no two requests share a
// body except deliberate retries. Two engines:
//
// Closed loop ("closed"): autocannon keeps `connections` requests in flight.
// Latency is measured from the moment setupRequest hands a request to the
// connection to the moment its answer is parsed; there is no schedule, so there
// is nothing to correct.
//
// Fixed rate ("rate"): paced-sender.ts sends request k at start + k / rate on its
// own HTTP client (raw-http.ts), evenly spaced (the wrk2 approach), its connections
// opened before start. autocannon's overallRate was
// replaced because it refills each connection's quota once per wall-clock
// second and so fires a second's requests in a burst at its start; the queueing
// that burst causes is the load generator's, and it made the p99 of a
// fixed-rate run meaningless. The corrected latency (latencyMs) is measured
// from each request's intended send time, so coordinated omission is corrected
// exactly, by measurement; the synthetic samples of HdrHistogram's
// recordValueWithExpectedInterval are no longer added (correctionSamples is 0).
// latencyRawMs is measured from the moment the request was written on a
// connection. At most rate * timeoutSeconds requests (and never more than
// outstandingRequestsMax) are outstanding; a request due beyond that is not
// sent and counts as a timeout, as does one still unanswered timeoutSeconds
// after the phase's planned end.
//
// Limit: PhaseCollector takes one latency per answer and a run-level collector
// merges each phase's raw histogram from it, so for fixed-rate phases the
// run-level latencyRawMs holds the corrected latencies; the phase's own
// totals.latencyRawMs is right (kept here and substituted).

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
  /**
   * Seconds before a request without an answer counts as a timeout and its connection is reset.
   * In "rate" mode also the depth of the backlog (rate * timeoutSeconds requests), the
   * longest wait for the connections to open before the phase starts, and the longest
   * wait for answers after the planned end.
   */
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

/** How long before the planned end the runner raises autocannon's stop flag (closed loop only). */
const stopLeadMs = 100;

function checkPhaseOptions(options: RunPhaseOptions): void {
  assertLoadtest(/^https?:\/\//.test(options.url), 'url is http(s)');
  assertLoadtest(Number.isInteger(options.connections) && options.connections >= 1, 'connections >= 1');
  assertLoadtest(options.connections <= loadtestLimits.connectionsMax, 'connections <= connectionsMax');
  assertLoadtest(Number.isInteger(options.durationSeconds) && options.durationSeconds >= 1, 'durationSeconds >= 1');
  assertLoadtest(options.durationSeconds <= loadtestLimits.phaseSecondsMax, 'durationSeconds <= phaseSecondsMax');
  const timeoutSeconds = options.timeoutSeconds ?? timeoutSecondsDefault;
  assertLoadtest(Number.isFinite(timeoutSeconds) && timeoutSeconds > 0, 'timeoutSeconds > 0');
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

/** Feeds one answer to the workload and the collector; shared by both engines. */
function recordAnswer(
  collector: PhaseCollector, workload: Workload, request: LoadRequest,
  status: number, body: string, nowMs: number, latencyMs: number,
): void {
  const answer = parseAnswer(body);
  workload.observe(request, status, answer.json);
  collector.recordResponse({
    nowMs, latencyMs, status, bytes: body.length, request,
    unit: answer.unit, version: answer.version, responseCode: answer.responseCode, approved: answer.approved,
  });
}

/** Runs one phase against `url` and returns its per-second buckets and totals. */
export async function runPhase(options: RunPhaseOptions): Promise<PhaseResult> {
  checkPhaseOptions(options);
  const clock = options.clock ?? (() => performance.now());
  return options.mode === 'rate' ? runRatePhase(options, clock, options.rate!) : runClosedPhase(options, clock);
}

/**
 * Both modes record without synthetic correction samples: closed loop measures
 * throughput, and fixed rate measures from intended send times (see runRatePhase).
 */
function phaseCollector(options: RunPhaseOptions, startMs: number): PhaseCollector {
  return new PhaseCollector({
    phase: options.name ?? options.mode,
    startMs,
    startSecond: options.startSecond ?? 0,
    correctionIntervalMs: null,
    durationSeconds: options.durationSeconds,
  });
}

function runClosedPhase(options: RunPhaseOptions, clock: () => number): Promise<PhaseResult> {
  const { connections } = options;
  const startMs = clock();
  const collector = phaseCollector(options, startMs);
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
    recordAnswer(collector, workload, request, status, body, nowMs, nowMs - sentAtMs);
  };
  const instance = autocannon({
    url: options.url,
    connections,
    duration: options.durationSeconds,
    pipelining: 1,
    timeout: options.timeoutSeconds ?? timeoutSecondsDefault,
    requests: [{ method: 'POST', path: '/v1/authorizations', setupRequest, onResponse }],
    excludeErrorStats: false,
  });
  instance.on('reqError', (error) => collector.recordError(clock(), /timed out/i.test(error.message) ? 'timeout' : 'connection'));
  // autocannon checks its stop flag on a one-second tick; its own duration
  // timer races that tick and can lose, adding a whole second. Raising the flag
  // just before the last tick ends the phase on time.
  const engine: PhaseEngine = {
    done: instance, stop: () => instance.stop(),
    plannedEndMs: startMs + options.durationSeconds * 1000, stopAfterMs: options.durationSeconds * 1000 - stopLeadMs,
  };
  return superviseEngine(options, engine, collector, clock, { rate: null, connections });
}

/** The backlog bound of a fixed-rate phase: a timeout's worth of requests, within outstandingRequestsMax. */
export function outstandingMaxOf(rate: number, timeoutSeconds: number): number {
  return Math.max(1, Math.min(loadtestLimits.outstandingRequestsMax, Math.ceil(rate * timeoutSeconds)));
}

async function runRatePhase(options: RunPhaseOptions, clock: () => number, rate: number): Promise<PhaseResult> {
  const timeoutSeconds = options.timeoutSeconds ?? timeoutSecondsDefault;
  const client = await connectPaced({ url: options.url, connections: options.connections, timeoutSeconds, clock, ...(options.signal === undefined ? {} : { signal: options.signal }) });
  const startMs = clock();
  // No correction interval: latency is measured from the intended send time,
  // which already counts the waits a closed-loop client would omit; adding
  // HdrHistogram's synthetic samples on top would count them twice.
  const collector = phaseCollector(options, startMs);
  // PhaseCollector keeps one latency per answer, so it gets the corrected one
  // and the raw distribution (from the write on the connection) is kept here.
  const raw = new LatencyHistogram();
  const { workload } = options;
  const sink: PacedSink = {
    sent: (intendedMs) => collector.recordSent(intendedMs),
    // Refused at the outstanding bound, timed out, abandoned at the end or failed on
    // the connection: no answer, so at least the timeout in the corrected latency.
    failed: (nowMs, kind) => collector.recordError(nowMs, kind, timeoutSeconds * 1000),
    answered: (answer, nowMs) => {
      raw.recordMs(nowMs - answer.writtenMs);
      recordAnswer(collector, workload, answer.request, answer.status, answer.bodyText(), nowMs, nowMs - answer.intendedMs);
    },
  };
  // Aborted while the connections opened: nothing is sent (a request on a connection
  // still opening would wait out its timeout, and count in the phase, after the abort).
  const aborted = options.signal?.aborted === true;
  if (aborted) client.destroy();
  const run = aborted ? { done: Promise.resolve(), stop: () => {} } : sendPaced({
    client, rate, durationSeconds: options.durationSeconds,
    outstandingMax: outstandingMaxOf(rate, timeoutSeconds), startMs, clock, source: workload, sink,
  });
  const engine: PhaseEngine = { done: run.done, stop: run.stop, plannedEndMs: aborted ? startMs : startMs + options.durationSeconds * 1000, stopAfterMs: null };
  const phase = await superviseEngine(options, engine, collector, clock, { rate, connections: options.connections });
  return { ...phase, totals: { ...phase.totals, latencyRawMs: raw.summaryMs() } };
}

/** A running load generator as the phase supervisor sees it. */
interface PhaseEngine {
  done: PromiseLike<unknown>;
  stop(): void;
  /** Clock milliseconds at which the phase is planned to end. */
  plannedEndMs: number;
  /** When to call stop() if the engine does not stop on time by itself, or null. */
  stopAfterMs: number | null;
}

async function superviseEngine(
  options: RunPhaseOptions, engine: PhaseEngine, collector: PhaseCollector,
  clock: () => number, shape: { rate: number | null; connections: number },
): Promise<PhaseResult> {
  const report = (buckets: readonly SecondBucket[]): void => {
    for (const bucket of buckets) options.onSecond?.(bucket);
  };
  // Four checks a second so a second is reported soon after it ends. The last
  // planned second is left to collector.finish(), which closes it at the planned
  // end; answers still arriving after it (the fixed-rate sender waits for them)
  // count in the phase's totals and latency, in no second of its own.
  const flushNotPastMs = engine.plannedEndMs - 1;
  const ticker = setInterval(() => report(collector.flushThrough(Math.min(clock(), flushNotPastMs))), 250);
  const stop = (): void => engine.stop();
  options.signal?.addEventListener('abort', stop, { once: true });
  if (options.signal?.aborted === true) stop();
  const stopTimer = engine.stopAfterMs === null ? null : setTimeout(stop, engine.stopAfterMs);
  try {
    await engine.done;
  } finally {
    if (stopTimer !== null) clearTimeout(stopTimer);
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
