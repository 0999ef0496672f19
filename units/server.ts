import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Worker } from 'node:worker_threads';
import { openToBuyMinor } from '../domain/authorize-rules.js';
import type { CardKeys } from '../domain/card-protect.js';
import { OffsetClock } from '../domain/clock.js';
import { ApiError, errorCodes, type ApiErrorBody } from '../domain/errors.js';
import { answerClientErrorsAsJson, decodeSegment, readBody, sendError, sendJson, sendJsonText } from '../domain/http-util.js';
import { assert, limits } from '../domain/limits.js';
import type { Logger } from '../domain/log.js';
import type { Version } from '../domain/gray.js';
import { batchLanes, type BatchLane } from '../domain/protocol.js';
import { releaseProducts, type Topology } from '../domain/topology.js';
import { UnitEngine } from './engine.js';
import { feedFormats, isFeedFormat } from './feed-reader.js';
import { GroupCommitter } from './group-commit.js';
import type { RewindOutcome } from './wal-checkpointer.js';
import { UnitMetrics } from './metrics.js';
import { decodeOps } from './op-decode.js';
import { attachWire, type WireEndpoint } from './wire-server.js';
import { frameKinds, type FrameKind } from '../domain/wire.js';
import { openUnitDatabases, withLockWait, type UnitDatabases } from './store.js';
import { swapStoreFile, UnitHa } from './ha.js';
import { prepareWriteStatements } from './statements.js';
import type Database from 'better-sqlite3';

// A DSU unit: an HTTP server over its own store. Writes go through the group
// committer; balance inquiries and the journal feed read on a separate read-only
// connection and never wait for a commit.

export interface UnitServerOptions {
  unitId: string;
  host: string;
  port: number;
  dataDir: string;
  topology: Topology;
  keys: CardKeys;
  log: Logger;
  /** The role for operations without a version tag; the gateway tags the ones it routes. */
  role: Version;
  /** The release this instance runs (its parameters); reported in health and metrics. */
  release: string;
  /** A member of an HA pair (starts as standby; the gateway promotes one copy), or a unit on its own. */
  ha: boolean;
}

const batchBodyBytesMax = 8 * 1024 * 1024;
/** A feed thread that ran this long before failing had started fine: the next restart is immediate. */
const feedWorkerStableMs = 10_000;
const feedRestartDelayMsMin = 100;
const feedRestartDelayMsMax = 10_000;
/** Entry kinds one feed request may filter on (there are about twenty). */
const feedKindsMax = 32;

/** A parameter that lists entry kinds (`kinds`, `sums`): comma-separated, or absent. */
function checkKinds(kinds: string | null, name = 'kinds'): ApiError | null {
  if (kinds !== null && !/^[a-z.]+(,[a-z.]+)*$/.test(kinds)) return new ApiError('INVALID_FIELD', `${name} is a comma-separated list of entry kinds`, name);
  if (kinds !== null && kinds.split(',').length > feedKindsMax) return new ApiError('INVALID_FIELD', `${name} lists at most ${feedKindsMax} entry kinds`, name);
  return null;
}
const sweepIntervalMs = 1_000;
const sweepHoldsMax = 1_000;

export class UnitServer {
  readonly metrics: UnitMetrics;
  readonly clock: OffsetClock;
  private readonly server: Server;
  private readonly wire: WireEndpoint;
  private readonly sweepTimer: NodeJS.Timeout;
  private lastSweepMs = 0;
  private readonly feedWaiters = new Map<number, (text: string, error?: string) => void>();
  private feedRequestSeq = 0;
  private readonly ha: UnitHa;
  // Everything below belongs to the open store; a standby replaces it whole when it installs a snapshot.
  private databases!: UnitDatabases;
  private engine!: UnitEngine;
  private committer!: GroupCommitter;
  /** The journal feed's thread; null while it is being restarted after a failure. */
  private feedWorker: Worker | null = null;
  private feedRestartTimer: NodeJS.Timeout | null = null;
  /** Failures of the feed thread in a row, each within feedWorkerStableMs of its start: they space its restarts. */
  private feedFailures = 0;
  private feedStarts = 0;
  private readAccount!: Database.Statement;
  private readLastSeq!: Database.Statement;
  private readClockOffset!: Database.Statement;

  constructor(private readonly options: UnitServerOptions) {
    this.metrics = new UnitMetrics(options.unitId, options.release, options.role);
    this.clock = new OffsetClock(0);
    const unit = this;
    this.ha = new UnitHa(options.unitId, options.ha, {
      writer: () => unit.databases.writer,
      replaceStore: (path) => unit.replaceStore(path),
      drainCommits: () => unit.drainCommits(),
      clockOffsetMs: () => unit.clock.offsetMs,
      adoptClockOffsetMs: (offsetMs) => unit.adoptClockOffset(offsetMs),
      dataDir: options.dataDir,
      get storePath() {
        return unit.databases.path;
      },
    }, options.log, prepareWriteStatements, (role, replication) => this.metrics.onHaState(role, replication));
    this.openStore();
    this.ha.reconcileSoloWrites();
    this.server = createServer({ keepAliveTimeout: 60_000 }, (request, response) => this.route(request, response));
    answerClientErrorsAsJson(this.server);
    this.wire = attachWire(this.server, (text, answer) => this.applyBatch(text, 'normal', answer), options.log, options.unitId);
    this.sweepTimer = setInterval(() => this.committer.tick(), sweepIntervalMs);
    this.sweepTimer.unref();
  }

  private openStore(): void {
    const options = this.options;
    this.databases = openUnitDatabases({ dataDir: options.dataDir, cacheKiB: 64 * 1024 });
    const { writer, reader } = this.databases;
    this.readClockOffset = writer.prepare("SELECT value FROM meta WHERE key = 'clockOffsetMs'").pluck();
    const offset = this.readClockOffset.get() as string | undefined;
    this.clock.offsetMs = Math.max(this.clock.offsetMs, offset === undefined ? 0 : Number(offset));
    this.engine = new UnitEngine({
      unitId: options.unitId, db: writer, keys: options.keys, products: releaseProducts(options.topology.file, options.release),
      fx: options.topology.fx, clock: this.clock, utcOffsetMinutes: options.topology.file.businessDayUtcOffsetMinutes, role: options.role,
      recorder: this.ha.recorder,
    });
    this.committer = new GroupCommitter(writer, this.engine, this.metrics, options.log, () => this.sweepIfDue(), this.ha, () => this.ha.role !== 'standby');
    this.readAccount = reader.prepare('SELECT account_id, currency, credit_limit, posted_balance, open_holds FROM accounts WHERE account_id = ?');
    this.readLastSeq = reader.prepare('SELECT coalesce(max(seq), 0) AS seq FROM journal').pluck();
    this.feedWorker = this.startFeedWorker();
  }

  /** A standby installs a snapshot: close the store, swap the file in, open it again. */
  private async replaceStore(path: string): Promise<void> {
    assert(this.committer.pendingOps === 0, 'a standby has no commits of its own to lose');
    await this.stopFeedWorker();
    this.databases.reader.close();
    this.databases.writer.close();
    swapStoreFile(this.databases.path, path);
    this.openStore();
  }

  private async drainCommits(): Promise<void> {
    while (this.committer.pendingOps > 0) await new Promise((resolve) => setTimeout(resolve, 1));
  }

  /** The primary's clock offset arrives with its commits; a standby keeps the largest. */
  private adoptClockOffset(offsetMs: number): void {
    if (offsetMs <= this.clock.offsetMs) return;
    this.clock.offsetMs = offsetMs;
    const { writer } = this.databases;
    writer.prepare("INSERT INTO meta (key, value) VALUES ('clockOffsetMs', ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value").run(String(offsetMs));
  }

  async listen(): Promise<number> {
    await new Promise<void>((resolve) => this.server.listen(this.options.port, this.options.host, resolve));
    return (this.server.address() as AddressInfo).port;
  }

  async close(): Promise<void> {
    clearInterval(this.sweepTimer);
    this.ha.close();
    // New batches are refused from here on; the ones accepted are committed and
    // answered, then the wire connections (no longer the HTTP server's) are closed.
    this.wire.refuseBatches();
    this.server.closeIdleConnections();
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    while (this.committer.pendingOps > 0) await new Promise((resolve) => setImmediate(resolve));
    this.wire.destroyAll();
    await closed;
    await this.stopFeedWorker();
    this.databases.reader.close();
    this.databases.writer.close();
  }

  private sweepIfDue(): void {
    // A standby writes only what its primary sends; the primary's expiries reach it as commits.
    if (!this.ha.acceptsWrites) return;
    // Every commit, inside its transaction: the other instance on this store (gray
    // release) may have moved the clock, and a commit on the day before would, for
    // one, start a card's daily cash counters again (about 1 us a commit).
    this.followStoredClock();
    if (this.clock.nowMs() - this.lastSweepMs < sweepIntervalMs) return;
    const nowMs = this.clock.nowMs();
    this.lastSweepMs = nowMs;
    const expired = this.engine.expireHolds(nowMs, sweepHoldsMax);
    if (expired > 0) this.options.log.info('holds expired', { unit: this.options.unitId, expired });
  }

  /**
   * The simulated clock's offset lives in the store, shared by the stable and the
   * gray instance: an instance whose clock another one advanced catches up at its
   * next commit, so both decide on the same business day and expire holds on the same days.
   */
  private followStoredClock(): void {
    const stored = Number(this.readClockOffset.get() ?? 0);
    if (stored > this.clock.offsetMs) this.clock.offsetMs = stored;
  }

  private route(request: IncomingMessage, response: ServerResponse): void {
    const url = request.url ?? '/';
    if (request.method === 'POST' && (url === '/v1/batch' || url.startsWith('/v1/batch?'))) {
      this.guard(this.batch(request, response, url), response);
    } else if (url.startsWith('/ha/')) {
      this.guard(this.ha.handle(request, response, url.split('?')[0] ?? url), response);
    } else if (request.method === 'GET' && url.startsWith('/v1/accounts/')) {
      this.account(decodeSegment(url.slice('/v1/accounts/'.length)), response);
    } else if (request.method === 'GET' && url.startsWith('/v1/journal')) {
      this.journal(new URL(url, 'http://unit').searchParams, response);
    } else if (request.method === 'GET' && (url === '/v1/totals' || url.startsWith('/v1/totals?'))) {
      this.totals(new URL(url, 'http://unit').searchParams, response);
    } else if (request.method === 'GET' && url === '/healthz') {
      const { unitId, role, release } = this.options;
      sendJson(response, 200, { status: 'ok', unit: unitId, role, release, ha: this.ha.role, journalSeq: this.readLastSeq.get(), nowMs: this.clock.nowMs() });
    } else if (request.method === 'GET' && url === '/metrics') {
      this.guard(this.sendMetrics(response), response);
    } else if (request.method === 'POST' && url === '/admin/fault') {
      this.guard(this.setFault(request, response), response);
    } else if (request.method === 'POST' && url === '/admin/clock') {
      if (!this.ha.acceptsWrites) {
        request.resume();
        return sendError(response, new ApiError('NOT_PRIMARY', 'move the clock on the primary; it reaches the standby with the commits', null));
      }
      this.guard(this.setClock(request, response), response);
    } else {
      request.resume();
      sendError(response, new ApiError('NOT_FOUND', `no route ${request.method} ${url}`, null));
    }
  }

  /**
   * The safety net of the asynchronous routes: a handler that throws is a bug (its
   * input checks should have answered 4xx), so it is logged and answered 500, and
   * the unit goes on serving. Left alone, the rejection would end the process.
   */
  private guard(handling: Promise<void>, response: ServerResponse): void {
    handling.catch((error: unknown) => {
      this.options.log.error('request handler failed', { unit: this.options.unitId, error: String(error) });
      if (response.headersSent) response.destroy();
      else sendError(response, new ApiError('INTERNAL', 'the unit failed to handle the request', null));
    });
  }

  /**
   * POST /v1/batch: the HTTP form of the batch, for clients other than the gateway
   * (batch accounting, tools). With ?lane=background the operations yield to live
   * traffic (see GroupCommitter.submitBackground); the default lane commits them at once.
   */
  private async batch(request: IncomingMessage, response: ServerResponse, url: string): Promise<void> {
    const lane = (new URL(url, 'http://unit').searchParams.get('lane') ?? 'normal') as BatchLane;
    if (!batchLanes.includes(lane)) {
      request.resume();
      return sendError(response, new ApiError('INVALID_FIELD', 'lane is normal or background', 'lane'));
    }
    const read = await readBody(request, batchBodyBytesMax);
    if (!read.ok) return sendError(response, read.error);
    this.applyBatch(read.body.toString('utf8'), lane, (kind, payload) => {
      if (kind === frameKinds.error) return sendJsonText(response, errorStatus(payload), payload);
      response.writeHead(200, { 'content-type': 'application/x-ndjson', 'content-length': Buffer.byteLength(payload) });
      response.end(payload);
    });
  }

  /** One batch, from the wire or from HTTP: refused whole (nothing written) or committed, then answered. */
  private applyBatch(text: string, lane: BatchLane, answer: (kind: FrameKind, payload: string) => void): void {
    if (!this.ha.acceptsWrites) {
      return answer(frameKinds.error, errorJson(new ApiError('NOT_PRIMARY', `this copy of ${this.options.unitId} is ${this.ha.role}`, null)));
    }
    const decoded = decodeOps(text);
    if (decoded instanceof ApiError) return answer(frameKinds.error, errorJson(decoded));
    const job = {
      ops: decoded,
      done: (lines: string[]) => answer(frameKinds.results, lines.join('\n')),
      refuse: (error: ApiError) => answer(frameKinds.error, errorJson(error)),
    };
    if (lane === 'background') this.committer.submitBackground(job);
    else this.committer.submit(job);
  }

  private account(accountId: string | null, response: ServerResponse): void {
    const row = accountId === null ? undefined
      : this.readAccount.get(accountId) as { account_id: string; currency: 'CNY'; credit_limit: number; posted_balance: number; open_holds: number } | undefined;
    if (row === undefined) return sendError(response, new ApiError('ACCOUNT_NOT_FOUND', `no account ${accountId ?? 'with this id'}`, 'accountId'));
    const money = (value: number) => ({ value, currency: row.currency });
    const available = openToBuyMinor({ currency: row.currency, creditLimitMinor: row.credit_limit, postedBalanceMinor: row.posted_balance, openHoldsMinor: row.open_holds });
    sendJson(response, 200, {
      accountId: row.account_id, unit: this.options.unitId, creditLimit: money(row.credit_limit),
      availableCredit: money(available), openHolds: money(row.open_holds), postedBalance: money(row.posted_balance),
    });
  }

  /** GET /v1/totals, and with `after` and `kinds` the journal's amounts of those kinds after `after` (see FeedReader.renderTotals). */
  private totals(params: URLSearchParams, response: ServerResponse): void {
    const afterText = params.get('after');
    const kinds = params.get('kinds');
    if (afterText === null && kinds === null) return this.askFeedWorker({ totals: true }, response);
    const after = Number(afterText ?? Number.NaN);
    if (!Number.isSafeInteger(after) || after < 0) return sendError(response, new ApiError('INVALID_FIELD', 'after is a non-negative integer', 'after'));
    const kindsError = checkKinds(kinds);
    if (kinds === null) return sendError(response, new ApiError('MISSING_FIELD', 'kinds names the entry kinds whose amounts are summed after `after`', 'kinds'));
    if (kindsError !== null) return sendError(response, kindsError);
    this.askFeedWorker({ totals: true, amounts: { after, kinds: kinds.split(',') } }, response);
  }

  private journal(params: URLSearchParams, response: ServerResponse): void {
    const after = Number(params.get('after') ?? '0');
    const limit = Number(params.get('limit') ?? String(limits.journalPageEntriesMax));
    if (!Number.isSafeInteger(after) || after < 0) return sendError(response, new ApiError('INVALID_FIELD', 'after is a non-negative integer', 'after'));
    if (!Number.isInteger(limit) || limit < 1 || limit > limits.journalPageEntriesMax) {
      return sendError(response, new ApiError('INVALID_FIELD', `limit is 1..${limits.journalPageEntriesMax}`, 'limit'));
    }
    const kinds = params.get('kinds');
    const kindsError = checkKinds(kinds);
    if (kindsError !== null) return sendError(response, kindsError);
    const sums = params.get('sums');
    const sumsError = checkKinds(sums, 'sums');
    if (sumsError !== null) return sendError(response, sumsError);
    const format = params.get('format') ?? 'full';
    if (!isFeedFormat(format)) return sendError(response, new ApiError('INVALID_FIELD', `format is one of ${feedFormats.join(', ')}`, 'format'));
    this.askFeedWorker({ totals: false, after, limit, kinds: kinds === null ? null : kinds.split(','), sums: sums === null ? null : sums.split(','), format }, response);
  }

  /** Stops the feed thread; requests waiting on it fail (batch retries them). */
  private async stopFeedWorker(): Promise<void> {
    if (this.feedRestartTimer !== null) clearTimeout(this.feedRestartTimer);
    this.feedRestartTimer = null;
    const worker = this.feedWorker;
    this.feedWorker = null;
    if (worker !== null) {
      worker.removeAllListeners('error');
      await worker.terminate();
    }
    const waiters = [...this.feedWaiters.values()];
    this.feedWaiters.clear();
    for (const waiter of waiters) waiter('', 'the store was replaced');
  }

  /**
   * The feed thread; if it dies, its pending requests fail (batch retries them) and a
   * new one starts: at once after a thread that had run a while, otherwise after a
   * delay that doubles with each failure in a row (a thread that cannot start, say on
   * a store it cannot open, would otherwise be restarted in a tight loop).
   */
  private startFeedWorker(): Worker {
    const startedMs = performance.now();
    // Fault injection for the restart test: DSU_FEED_WORKER_FAILS=N makes the first N threads fail as they start.
    const failAtStart = this.feedStarts++ < Number(process.env['DSU_FEED_WORKER_FAILS'] ?? 0);
    const worker = new Worker(new URL('./feed-worker.js', import.meta.url), { workerData: { path: this.databases.path, unitId: this.options.unitId, failAtStart } });
    worker.on('message', (message: { id: number; text?: string; error?: string } | { chase: RewindOutcome; passes: number }) => {
      if ('chase' in message) return this.metrics.onWalChase(message.chase, message.passes);
      const waiter = this.feedWaiters.get(message.id);
      this.feedWaiters.delete(message.id);
      waiter?.(message.text ?? '', message.error);
    });
    worker.on('error', (error) => {
      this.feedFailures = performance.now() - startedMs >= feedWorkerStableMs ? 1 : this.feedFailures + 1;
      const delayMs = this.feedFailures <= 1 ? 0 : Math.min(feedRestartDelayMsMax, feedRestartDelayMsMin * 2 ** (this.feedFailures - 2));
      this.options.log.error('journal feed thread failed; starting a new one', { unit: this.options.unitId, error: String(error), inMs: delayMs });
      const waiters = [...this.feedWaiters.values()];
      this.feedWaiters.clear();
      for (const waiter of waiters) waiter('', String(error));
      this.feedWorker = null;
      this.feedRestartTimer = setTimeout(() => {
        this.feedRestartTimer = null;
        this.feedWorker = this.startFeedWorker();
      }, delayMs);
      this.feedRestartTimer.unref();
    });
    worker.unref();
    return worker;
  }

  private askFeedWorker(request: object, response: ServerResponse): void {
    const worker = this.feedWorker;
    if (worker === null) return sendError(response, new ApiError('UNIT_UNAVAILABLE', 'the journal feed is restarting; ask again shortly', null));
    const id = ++this.feedRequestSeq;
    this.feedWaiters.set(id, (text, error) => {
      if (error !== undefined) sendError(response, new ApiError('INTERNAL', 'the journal feed failed', null));
      else sendJsonText(response, 200, text);
    });
    worker.postMessage({ id, ...request });
  }

  private async sendMetrics(response: ServerResponse): Promise<void> {
    const text = await this.metrics.registry.metrics();
    response.writeHead(200, { 'content-type': this.metrics.registry.contentType });
    response.end(text);
  }

  /** Fault injection for the chaos tests: {"commitDelayMs": N} makes every commit N ms slower (0 ends it). */
  private async setFault(request: IncomingMessage, response: ServerResponse): Promise<void> {
    const max = limits.injectedCommitDelayMsMax;
    const delay = await readIntegerField(request, 'commitDelayMs', 0, max, `commitDelayMs is an integer 0..${max}`);
    if (delay instanceof ApiError) return sendError(response, delay);
    this.committer.injectedCommitDelayMs = delay;
    this.options.log.warn('fault injection: commit delay', { unit: this.options.unitId, commitDelayMs: delay });
    sendJson(response, 200, { unit: this.options.unitId, commitDelayMs: delay });
  }

  private async setClock(request: IncomingMessage, response: ServerResponse): Promise<void> {
    const advanceMs = await readIntegerField(request, 'advanceMs', 0, Number.MAX_SAFE_INTEGER, 'advanceMs is a non-negative integer (the clock only moves forward)');
    if (advanceMs instanceof ApiError) return sendError(response, advanceMs);
    this.followStoredClock();
    // The simulated clock stays within limits.clockOffsetMsMax of the real one: past
    // the range of a Date, every authorization's calendar would throw and fail its commit.
    const roomMs = limits.clockOffsetMsMax - this.clock.offsetMs;
    if (advanceMs > roomMs) {
      return sendError(response, new ApiError('INVALID_FIELD', `advanceMs is at most ${roomMs}: the clock runs at most ${limits.clockOffsetMsMax} ms ahead`, 'advanceMs'));
    }
    this.clock.offsetMs += advanceMs;
    const { writer } = this.databases;
    withLockWait(writer, () => writer.prepare("INSERT INTO meta (key, value) VALUES ('clockOffsetMs', ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value").run(String(this.clock.offsetMs)));
    this.lastSweepMs = 0;
    assert(this.clock.offsetMs >= 0, 'clock offset never negative');
    // Answer after the sweep has committed, so the caller sees the expired holds released.
    this.committer.barrier(() => {
      sendJson(response, 200, { unit: this.options.unitId, nowMs: this.clock.nowMs(), offsetMs: this.clock.offsetMs });
    });
  }
}

/** Reads a small JSON body `{"<field>": integer}` of an admin request; the integer lies in min..max. */
async function readIntegerField(request: IncomingMessage, field: string, min: number, max: number, meaning: string): Promise<number | ApiError> {
  const read = await readBody(request, 1024);
  if (!read.ok) return read.error;
  let value: unknown;
  try {
    value = (JSON.parse(read.body.toString('utf8')) as Record<string, unknown>)[field];
  } catch {
    return new ApiError('INVALID_JSON', 'the body is not valid JSON', null);
  }
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < min || value > max) return new ApiError('INVALID_FIELD', meaning, field);
  return value;
}

function errorJson(error: ApiError): string {
  return JSON.stringify(error.body());
}

/** The HTTP status of a refused batch, from the error code inside it. */
function errorStatus(payload: string): number {
  return errorCodes[(JSON.parse(payload) as ApiErrorBody).error.code].status;
}
