import { assertLoadtest, loadtestLimits } from './limits.js';
import { RawHttpClient, type RawExchange, type RawFailureKind } from './raw-http.js';
import type { LoadRequest } from './workload.js';

// An open-loop sender at a fixed rate, paced the way wrk2 paces: request k is
// due at startMs + k * 1000 / rate, whatever happened to the requests before
// it. A timer wakes about when the next request is due (never sooner than
// 1 ms later, so it does not spin a core the system under test needs) and
// sends every request whose time has come, so sends are evenly spaced rather
// than bunched at the start of each second.
//
// Each answer carries two times: when the request was due (intendedMs) and
// when it was written on a connection (writtenMs). Latency from the due time
// includes every wait the sender imposed (every connection busy, a late timer), which is
// the coordinated-omission correction measured rather than synthesized; latency
// from the write is the "raw" service time a closed-loop client would report.
//
// Requests sent and not yet answered are bounded by `outstandingMax`. A request
// that falls due while the bound is reached is not sent: it is reported to the
// sink as a timeout, because the backlog ahead of it is already a full timeout
// deep (the runner sets the bound to rate * timeoutSeconds), and counted in
// `refused`. At the planned end the sender stops sending, waits up to the
// timeout for the answers still owed, reports those that never came as
// timeouts (`abandoned`), and closes its connections. The client's timeouts
// start at the write (loadtest/raw-http.ts); a request waiting for a free
// connection is bounded only by outstandingMax, and its wait shows in the
// corrected latency.

export type PacedFailureKind = 'connection' | 'timeout';

/** One answered request, as the sink sees it. */
export interface PacedAnswer {
  readonly request: LoadRequest;
  /** When the schedule said to send it (clock milliseconds). */
  readonly intendedMs: number;
  /** When it was written on a connection (clock milliseconds). */
  readonly writtenMs: number;
  readonly status: number;
  /** Bytes of the response body received. */
  readonly bodyBytes: number;
  /** The body as text; empty when it was longer than responseBodyCharsMax (it is not ours then). */
  bodyText(): string;
}

/** Where the sender reports. One object per phase, so there is no closure per request. */
export interface PacedSink {
  /** `intendedMs`: the time the schedule made the request due, not the time it left. */
  sent(intendedMs: number): void;
  answered(answer: PacedAnswer, nowMs: number): void;
  failed(nowMs: number, kind: PacedFailureKind): void;
}

export interface PacedSenderOptions {
  /**
   * Open connections to the server (connectPaced); the sender closes them when it
   * finishes. The client's timeout is each request's and the longest wait for
   * answers after the end.
   */
  client: RawHttpClient;
  /** Requests per second. */
  rate: number;
  durationSeconds: number;
  /** Requests sent and not yet answered, at most. */
  outstandingMax: number;
  /** Clock milliseconds of request 0's due time; the schedule's origin. */
  startMs: number;
  /** Monotonic milliseconds, the same clock as startMs. */
  clock: () => number;
  source: { next(): LoadRequest };
  sink: PacedSink;
}

export interface PacedConnectionOptions {
  /** Origin of the server (http); the path of each request comes from the source. */
  url: string;
  connections: number;
  /** Each request's timeout from its write, and the longest wait for the connections to open. */
  timeoutSeconds: number;
  clock: () => number;
  /** Ends the wait for the connections early (they go on opening; see RawHttpClient.connected). */
  signal?: AbortSignal;
}

export interface PacedStats {
  /** Requests the schedule made due (sent + refused). */
  due: number;
  sent: number;
  /** Due while `outstandingMax` requests were outstanding; not sent, reported as timeouts. */
  refused: number;
  answered: number;
  /** Failed with a connection error or a timeout. */
  failed: number;
  /** Still unanswered when the wait after the end ran out; reported as timeouts. */
  abandoned: number;
}

export interface PacedRun {
  /** Settles once the connections are closed; the sink gets nothing after that. */
  readonly done: Promise<PacedStats>;
  /** Stops sending now and waits (up to the timeout) for the answers still owed. */
  stop(): void;
}

const pacedStates = {
  /** The schedule is running. */
  sending: 'sending',
  /** No more sends; waiting for the planned end and for answers owed, up to a deadline. */
  draining: 'draining',
  /** The connections are closed; late callbacks are ignored. */
  finished: 'finished',
} as const;
type PacedState = (typeof pacedStates)[keyof typeof pacedStates];

/**
 * Node timers have millisecond resolution; a shorter wait would only spin. The
 * ticks are not free: at 2,000 req/s, transport only, a 1 ms tick cost 113 us
 * of CPU per request, a 5 ms tick 90 us, and autocannon's once-a-second burst
 * 65 us, because every wake-up and every lone read is a separate trip through
 * the event loop (the server pays the same: 80 against 35 us per request).
 * Evenly spaced arrivals are the point of this sender, so 1 ms it is.
 */
const tickMsMin = 1;

/**
 * The sender's connections, opened before its schedule starts (the caller takes
 * startMs after this settles), so that no request of the run waits for a handshake
 * unless its connection failed or was replaced (a timeout, `connection: close`).
 */
export function connectPaced(options: PacedConnectionOptions): Promise<RawHttpClient> {
  assertLoadtest(/^http:\/\//.test(options.url), 'paced url is http');
  assertLoadtest(Number.isInteger(options.connections) && options.connections >= 1, 'paced connections >= 1');
  assertLoadtest(options.connections <= loadtestLimits.connectionsMax, 'paced connections <= connectionsMax');
  assertLoadtest(Number.isFinite(options.timeoutSeconds) && options.timeoutSeconds > 0, 'paced timeoutSeconds > 0');
  return RawHttpClient.connected({
    origin: new URL(options.url).origin, connections: options.connections, timeoutMs: options.timeoutSeconds * 1000,
    bodyBytesKeptMax: loadtestLimits.responseBodyCharsMax, clock: options.clock,
  }, options.signal);
}

function checkPacedOptions(options: PacedSenderOptions): void {
  assertLoadtest(Number.isInteger(options.rate) && options.rate >= 1, 'paced rate >= 1');
  assertLoadtest(options.rate <= loadtestLimits.rateMax, 'paced rate <= rateMax');
  assertLoadtest(Number.isInteger(options.durationSeconds) && options.durationSeconds >= 1, 'paced durationSeconds >= 1');
  assertLoadtest(options.durationSeconds <= loadtestLimits.phaseSecondsMax, 'paced durationSeconds <= phaseSecondsMax');
  assertLoadtest(Number.isInteger(options.outstandingMax) && options.outstandingMax >= 1, 'paced outstandingMax >= 1');
  assertLoadtest(options.outstandingMax <= loadtestLimits.outstandingRequestsMax, 'paced outstandingMax <= outstandingRequestsMax');
  assertLoadtest(Number.isFinite(options.startMs), 'paced startMs is finite');
}

/** Starts sending at once (request 0 is due at options.startMs). */
export function sendPaced(options: PacedSenderOptions): PacedRun {
  try {
    checkPacedOptions(options);
  } catch (error) {
    // The sender owns the client from here: refused options must not leave its sockets open.
    options.client.destroy();
    throw error;
  }
  const sender = new PacedSender(options);
  return { done: sender.done, stop: () => sender.stop() };
}

class PacedSender {
  readonly #options: PacedSenderOptions;
  readonly #client: RawHttpClient;
  readonly #dueCount: number;
  readonly #timeoutMs: number;
  readonly #stats: PacedStats = { due: 0, sent: 0, refused: 0, answered: 0, failed: 0, abandoned: 0 };
  readonly done: Promise<PacedStats>;
  #resolve!: (stats: PacedStats) => void;
  #reject!: (error: unknown) => void;
  #state: PacedState = pacedStates.sending;
  #timer: NodeJS.Timeout | null = null;
  #nextIndex = 0;
  #outstanding = 0;
  /** While draining: do not finish before this, even with nothing outstanding (the phase's planned end). */
  #endNotBeforeMs = 0;
  /** While draining: finish at this time whatever is outstanding. */
  #drainDeadlineMs = 0;

  constructor(options: PacedSenderOptions) {
    this.#options = options;
    this.#dueCount = options.rate * options.durationSeconds;
    this.#timeoutMs = options.client.options.timeoutMs;
    this.#client = options.client;
    this.done = new Promise<PacedStats>((resolve, reject) => {
      this.#resolve = resolve;
      this.#reject = reject;
    });
    this.#tick();
  }

  get now(): number {
    return this.#options.clock();
  }

  /** One function for the whole run, so the timer allocates no closure per tick. */
  readonly #tick = (): void => {
    this.#timer = null;
    if (this.#state !== pacedStates.sending) return;
    const { startMs, rate } = this.#options;
    const nowMs = this.#options.clock();
    for (; this.#nextIndex < this.#dueCount; this.#nextIndex += 1) {
      // Computed from the index, not accumulated, so float error cannot drift the schedule.
      const intendedMs = startMs + (this.#nextIndex * 1000) / rate;
      if (intendedMs > nowMs) break;
      this.#sendOne(intendedMs, nowMs);
    }
    if (this.#nextIndex >= this.#dueCount) {
      this.#beginDraining(nowMs, startMs + this.#options.durationSeconds * 1000);
      return;
    }
    const nextDueMs = startMs + (this.#nextIndex * 1000) / rate;
    // Floor rather than round: a timer that fires early costs one empty tick, a late one adds latency.
    this.#timer = setTimeout(this.#tick, Math.max(tickMsMin, Math.floor(nextDueMs - nowMs)));
  };

  #sendOne(intendedMs: number, nowMs: number): void {
    const { sink } = this.#options;
    this.#stats.due += 1;
    if (this.#outstanding >= this.#options.outstandingMax) {
      this.#stats.refused += 1;
      sink.failed(nowMs, 'timeout');
      return;
    }
    const request = this.#options.source.next();
    this.#outstanding += 1;
    this.#stats.sent += 1;
    // Counted in the second it was due in: the per-second "sent" series is the
    // offered schedule, and a timer that fires a millisecond late must not move
    // a request across a second boundary.
    sink.sent(intendedMs);
    // request() may call back synchronously (onWritten, or onFailure once
    // closed), so the counters above are already up to date when it does.
    this.#client.request(request.method, request.path, request.headers, request.body, new PacedRequest(this, request, intendedMs));
  }

  /** Called by PacedRequest once, when its answer is complete. */
  settleAnswer(answer: PacedRequest): void {
    if (this.#state === pacedStates.finished) return;
    const nowMs = this.#options.clock();
    this.#outstanding -= 1;
    this.#stats.answered += 1;
    this.#options.sink.answered(answer, nowMs);
    if (this.#state === pacedStates.draining && this.#outstanding === 0) this.#checkDrained();
  }

  /** Called by PacedRequest once, when its request failed. */
  settleError(kind: RawFailureKind): void {
    if (this.#state === pacedStates.finished) return;
    const nowMs = this.#options.clock();
    this.#outstanding -= 1;
    this.#stats.failed += 1;
    this.#options.sink.failed(nowMs, kind);
    if (this.#state === pacedStates.draining && this.#outstanding === 0) this.#checkDrained();
  }

  stop(): void {
    if (this.#state === pacedStates.finished) return;
    const nowMs = this.#options.clock();
    if (this.#state === pacedStates.sending) {
      this.#beginDraining(nowMs, nowMs);
      return;
    }
    this.#endNotBeforeMs = Math.min(this.#endNotBeforeMs, nowMs);
    this.#drainDeadlineMs = Math.min(this.#drainDeadlineMs, nowMs + this.#timeoutMs);
    this.#checkDrained();
  }

  #beginDraining(nowMs: number, endNotBeforeMs: number): void {
    this.#state = pacedStates.draining;
    this.#endNotBeforeMs = endNotBeforeMs;
    this.#drainDeadlineMs = Math.max(nowMs, endNotBeforeMs) + this.#timeoutMs;
    this.#checkDrained();
  }

  /** Finishes if the drain is over, or re-arms the timer for the moment it will be. */
  readonly #checkDrained = (): void => {
    if (this.#timer !== null) clearTimeout(this.#timer);
    this.#timer = null;
    if (this.#state !== pacedStates.draining) return;
    const nowMs = this.#options.clock();
    const drained = this.#outstanding === 0 && nowMs >= this.#endNotBeforeMs;
    if (drained || nowMs >= this.#drainDeadlineMs) {
      this.#finish(nowMs);
      return;
    }
    const wakeMs = this.#outstanding === 0 ? this.#endNotBeforeMs : this.#drainDeadlineMs;
    this.#timer = setTimeout(this.#checkDrained, Math.max(tickMsMin, Math.ceil(wakeMs - nowMs)));
  };

  #finish(nowMs: number): void {
    this.#state = pacedStates.finished;
    const abandoned = this.#outstanding;
    this.#stats.abandoned = abandoned;
    for (let index = 0; index < abandoned; index += 1) this.#options.sink.failed(nowMs, 'timeout');
    this.#outstanding = 0;
    const stats = this.#stats;
    assertLoadtest(stats.due === stats.sent + stats.refused, 'every due request was sent or refused');
    assertLoadtest(stats.sent === stats.answered + stats.failed + stats.abandoned, 'every sent request was settled once');
    // destroy() fails the requests still queued or in flight (their callbacks
    // are ignored now, in state finished).
    try {
      this.#client.destroy();
      this.#resolve({ ...stats });
    } catch (error) {
      this.#reject(error);
    }
  }
}

/**
 * One request: the client calls back on this object, whose methods live on the
 * prototype, so a request costs this one object and no closures.
 */
class PacedRequest implements RawExchange, PacedAnswer {
  readonly #sender: PacedSender;
  readonly request: LoadRequest;
  readonly intendedMs: number;
  writtenMs: number;
  status = 0;
  bodyBytes = 0;
  #body: Buffer | null = null;

  constructor(sender: PacedSender, request: LoadRequest, intendedMs: number) {
    this.#sender = sender;
    this.request = request;
    this.intendedMs = intendedMs;
    this.writtenMs = intendedMs;
  }

  onWritten(nowMs: number): void {
    this.writtenMs = nowMs;
  }

  onAnswer(status: number, body: Buffer | null, bodyBytes: number): void {
    this.status = status;
    this.#body = body;
    this.bodyBytes = bodyBytes;
    this.#sender.settleAnswer(this);
  }

  onFailure(kind: RawFailureKind): void {
    this.#sender.settleError(kind);
  }

  bodyText(): string {
    return this.#body === null ? '' : this.#body.toString('utf8');
  }
}
