import { ApiError } from '../domain/errors.js';
import { assert, limits } from '../domain/limits.js';
import type { Logger } from '../domain/log.js';
import type { ResultLine, UnitOp } from '../domain/protocol.js';
import type { OpCallback, UnitClient } from './unit-client.js';

// The gateway's side of DSU high availability. Each HA unit is a pair of copies
// (two processes with their own stores); the gateway watches both, decides which
// one is primary, and switches a unit alone when its primary fails.
//
// Per pair, states:
//   up         the primary takes the unit's operations
//   switching  the primary failed (or an operator asked for a switch): the
//              unit's operations wait in the failover buffer while the standby
//              is promoted
//   down       no copy can take writes (both down, or the survivor may lack
//              answered commits): operations get a fast 91 after the buffer's wait
//
// The failover buffer holds operations that carry an idempotency key (so a
// retry on the new primary returns the first answer, never a second hold):
// those arriving while the unit switches, and those whose batch failed when the
// primary died. It is bounded in operations (failoverBufferOpsMax) and in time
// per operation (failoverBufferMsMax); what cannot wait is answered 91 at once.
//
// A standby is promoted only if the primary's last status said its standby was
// in sync. A primary that loses its standby answers nothing more until this
// gateway has read its single-copy status (units/replication.ts), so "in sync
// at the last poll" means the standby holds every answered approval.

export interface CopyStatus {
  role: 'primary' | 'standby' | 'solo';
  epoch: number;
  appliedSeq: number;
  appliedEpoch: number;
  replication: 'sync' | 'degraded' | 'catching-up' | null;
  /** The primary's single-copy episode (units/replication.ts), or null. */
  degradedSeq?: number | null;
}

interface BufferedOp {
  op: UnitOp;
  callback: OpCallback;
  deadlineMs: number;
}

/** An operation sent to the primary and not yet answered. */
interface InFlightOp {
  op: UnitOp;
  callback: OpCallback;
  deadlineMs: number | null;
  /** Answered, or taken away from the copy by a switch: a later answer from the copy is dropped. */
  settled: boolean;
}

export interface SwitchRecord {
  unit: string;
  at: string;
  from: number | null;
  to: number;
  reason: string;
  planned: boolean;
  /** From the first missed poll (or the operator's command) until the new primary took writes. */
  switchMs: number;
}

export class UnitPair {
  primary: 0 | 1 | null = null;
  state: 'up' | 'switching' | 'down' = 'down';
  epoch = 0;
  readonly status: [CopyStatus | null, CopyStatus | null] = [null, null];
  readonly failures: [number, number] = [0, 0];
  readonly polling: [boolean, boolean] = [false, false];
  /** Replication state the primary reported last: whether its standby can take over without loss. */
  lastPrimaryReplication: CopyStatus['replication'] = null;
  /**
   * The primary's single-copy episode recorded with lastPrimaryReplication, or -1:
   * sent with every poll, it is what lets the primary release the answers it held
   * (only once this gateway has recorded that it may not promote the standby).
   */
  recordedDegradedSeq = -1;
  /** When the current primary was first seen failing. */
  failingSinceMs: number | null = null;
  buffer: BufferedOp[] = [];
  /** Operations sent to the current primary and not answered yet (a switch re-routes them at once). */
  readonly inFlight = new Set<InFlightOp>();

  constructor(readonly unitId: string, readonly copies: [UnitClient, UnitClient]) {}

  get primaryClient(): UnitClient | null {
    return this.primary === null ? null : this.copies[this.primary];
  }
}

export interface HaOptions {
  log: Logger;
  onSwitch: (record: SwitchRecord) => void;
  /** Runs before a unit takes operations again (stand-in advices are replayed here); the unit stays switching meanwhile. */
  beforeUp?: (pair: UnitPair, primary: UnitClient) => Promise<void>;
  nowMs?: () => number;
}

const isRetryable = (op: UnitOp): boolean => 'idempotencyKey' in op && typeof op.idempotencyKey === 'string';

export class HaController {
  readonly switches: SwitchRecord[] = [];
  private readonly timer: NodeJS.Timeout;
  private readonly nowMs: () => number;
  /** Closed: nothing flushes or expires the buffer any more, so nothing more goes into it. */
  private closed = false;

  constructor(readonly pairs: ReadonlyMap<string, UnitPair>, private readonly options: HaOptions) {
    this.nowMs = options.nowMs ?? (() => performance.now());
    this.timer = setInterval(() => this.tick(), limits.haPollIntervalMs);
    this.timer.unref();
    this.tick();
  }

  close(): void {
    this.closed = true;
    clearInterval(this.timer);
    for (const pair of this.pairs.values()) this.failBuffer(pair, pair.buffer.length);
  }

  /** Resolves once every pair has a primary, or after `timeoutMs`. */
  async ready(timeoutMs: number): Promise<boolean> {
    const deadline = this.nowMs() + timeoutMs;
    while (this.nowMs() < deadline) {
      if ([...this.pairs.values()].every((pair) => pair.state === 'up')) return true;
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    return false;
  }

  /**
   * Sends an operation to the unit's primary; buffers it while the unit switches.
   * `deadlineMs` is when a buffered operation stops waiting: set when it is
   * first buffered and kept across retries.
   */
  submit(pair: UnitPair, op: UnitOp, callback: OpCallback, deadlineMs: number | null = null): void {
    const client = pair.primaryClient;
    if (pair.state === 'up' && client !== null && !client.isDown) {
      const epoch = pair.epoch;
      const flight: InFlightOp = { op, callback, deadlineMs, settled: false };
      pair.inFlight.add(flight);
      client.submit(op, (answer: ResultLine | null) => {
        // A switch began since it was sent: it was taken away from this copy already and
        // retried where the unit's writes go next (see rerouteInFlight). The copy's
        // answer is not trusted: the copy may be deposed before its commit reached the
        // new primary.
        if (flight.settled) return;
        flight.settled = true;
        pair.inFlight.delete(flight);
        // An answer from a copy deposed meanwhile (it woke from a freeze) is not trusted
        // either: what it committed alone is discarded when it rejoins. The retry, with
        // the same key, gets the new primary's answer (the same one, if the commit had
        // reached the standby).
        const result = pair.epoch === epoch ? answer : null;
        if (result !== null || !isRetryable(op)) return callback(result);
        // The batch failed: the primary may be gone. The retry goes where the unit's writes go next.
        this.bufferOp(pair, op, callback, deadlineMs);
        this.markFailing(pair);
      });
      return;
    }
    // Down: no copy can take writes, so nothing is gained by waiting; answer at once.
    if (isRetryable(op) && pair.state !== 'down') return this.bufferOp(pair, op, callback, deadlineMs);
    callback(null);
  }

  /** Planned switch: the unit's writes wait while the primary hands over to its standby; none fails. */
  async switchover(unitId: string, reason: string): Promise<SwitchRecord | ApiError> {
    const pair = this.pairs.get(unitId);
    if (pair === undefined) return new ApiError('NOT_FOUND', `no HA unit ${unitId}`, 'unit');
    const from = pair.primary;
    if (pair.state !== 'up' || from === null) return new ApiError('NOT_IN_SYNC', `unit ${unitId} is ${pair.state}`, 'unit');
    const to = (1 - from) as 0 | 1;
    if (pair.status[to]?.role !== 'standby' || pair.lastPrimaryReplication !== 'sync') {
      return new ApiError('NOT_IN_SYNC', `the standby of ${unitId} is not in sync`, 'unit');
    }
    const startedMs = this.nowMs();
    pair.state = 'switching';
    const primary = pair.copies[from];
    while (!primary.idle) await new Promise((resolve) => setTimeout(resolve, 1));
    const epoch = pair.epoch + 1;
    const demoted = await this.postRole(primary, { role: 'standby', epoch });
    if (demoted instanceof ApiError) {
      pair.state = 'up';
      this.flush(pair);
      return demoted;
    }
    return this.promote(pair, to, epoch, startedMs, reason, true);
  }

  describe(): object[] {
    return [...this.pairs.values()].map((pair) => ({
      unit: pair.unitId, state: pair.state, primary: pair.primary === null ? null : pair.copies[pair.primary].url,
      epoch: pair.epoch, buffered: pair.buffer.length, replication: pair.lastPrimaryReplication,
      copies: pair.copies.map((client, index) => ({ url: client.url, status: pair.status[index], failures: pair.failures[index] })),
    }));
  }

  private tick(): void {
    const nowMs = this.nowMs();
    for (const pair of this.pairs.values()) {
      this.expireBuffer(pair, nowMs);
      for (const index of [0, 1] as const) void this.poll(pair, index);
      if (pair.state === 'up' && pair.buffer.length > 0) this.flush(pair);
    }
  }

  private async poll(pair: UnitPair, index: 0 | 1): Promise<void> {
    if (pair.polling[index]) return;
    pair.polling[index] = true;
    const client = pair.copies[index];
    let status: CopyStatus | null = null;
    try {
      const answer = await client.readPool.request({
        // The epoch tells a primary which epoch this gateway routes to; only then does
        // the poll count as the gateway having read its status (units/replication.ts).
        path: `/ha/status?epoch=${pair.epoch}&degradedSeq=${pair.recordedDegradedSeq}`, method: 'GET', headersTimeout: limits.haPollTimeoutMs, bodyTimeout: limits.haPollTimeoutMs,
        // undici checks its own timeouts on a coarse timer (about a second), so a
        // frozen copy held each poll for ~1 s and a switch took ~2 s; the signal
        // ends the poll on time.
        signal: AbortSignal.timeout(limits.haPollTimeoutMs),
      });
      const body = (await answer.body.json()) as CopyStatus;
      if (answer.statusCode === 200) status = body;
    } catch {
      status = null;
    } finally {
      pair.polling[index] = false;
    }
    pair.status[index] = status;
    pair.failures[index] = status === null ? pair.failures[index] + 1 : 0;
    if (status !== null && status.epoch > pair.epoch) pair.epoch = status.epoch;
    if (status !== null && index === pair.primary && status.role === 'primary') {
      pair.lastPrimaryReplication = status.replication;
      if (status.replication !== 'sync' && typeof status.degradedSeq === 'number') pair.recordedDegradedSeq = status.degradedSeq;
    }
    this.evaluate(pair);
  }

  private markFailing(pair: UnitPair): void {
    if (pair.failingSinceMs === null) pair.failingSinceMs = this.nowMs();
  }

  /** Decides from the latest statuses: adopt a primary, promote one, or fail over. */
  private evaluate(pair: UnitPair): void {
    if (pair.state === 'switching') return;
    const [a, b] = pair.status;
    const claimed = [a, b].map((status, index) => (status?.role === 'primary' ? index : -1)).filter((index) => index >= 0);
    if (claimed.length > 0) {
      const best = claimed.reduce((x, y) => ((pair.status[y]?.epoch ?? 0) > (pair.status[x]?.epoch ?? 0) ? y : x)) as 0 | 1;
      // A deposed primary that comes back (SIGCONT) still claims the role in an older
      // epoch: it is fenced and told to stand by. So is the only claimant when its epoch
      // is older than one this gateway promoted since (the copy promoted in its place
      // died while it was frozen): adopted, it would take writes whose answers it can
      // never release, since no copy acknowledges its epoch; fenced, the unit is down
      // (stand-in answers) until a copy with every commit can be promoted.
      const current = (pair.status[best]?.epoch ?? 0) >= pair.epoch;
      for (const index of claimed) {
        if (index !== best || !current) void this.postRole(pair.copies[index as 0 | 1], { role: 'standby', epoch: pair.epoch, force: true });
      }
      if (current) {
        if (pair.primary !== best || pair.state !== 'up') this.adopt(pair, best);
        return;
      }
    }
    // The known primary answers but no longer claims the role (it restarted, as every copy does, as standby).
    if (pair.primary !== null && pair.status[pair.primary] !== null) pair.primary = null;
    const primary = pair.primary;
    if (primary !== null) {
      this.markFailing(pair);
      if (pair.failures[primary] < limits.haFailuresToSwitch) return;
      const other = (1 - primary) as 0 | 1;
      if (pair.status[other]?.role === 'standby' && pair.lastPrimaryReplication === 'sync') {
        void this.promote(pair, other, pair.epoch + 1, pair.failingSinceMs ?? this.nowMs(), `primary ${pair.copies[primary].url} failed ${pair.failures[primary]} health checks`, false);
      } else {
        this.setDown(pair, 'the primary failed and its standby may lack answered commits');
      }
      return;
    }
    // No primary: at start, or after both copies were down. Promote the copy with
    // the most commits, when both answer (then neither can lack anything the other has).
    if (a?.role === 'standby' && b?.role === 'standby') {
      const pick = (b.appliedEpoch > a.appliedEpoch || (b.appliedEpoch === a.appliedEpoch && b.appliedSeq > a.appliedSeq)) ? 1 : 0;
      void this.promote(pair, pick, pair.epoch + 1, pair.failingSinceMs ?? this.nowMs(), 'no primary: the copy with the most commits', false);
    }
  }

  private adopt(pair: UnitPair, index: 0 | 1): void {
    pair.primary = index;
    pair.failingSinceMs = null;
    const status = pair.status[index];
    pair.lastPrimaryReplication = status?.replication ?? null;
    // Episodes are numbered per primary: what was recorded of another copy says nothing of this one.
    pair.recordedDegradedSeq = status !== null && status.replication !== 'sync' && typeof status.degradedSeq === 'number' ? status.degradedSeq : -1;
    this.options.log.info('unit primary', { unit: pair.unitId, primary: pair.copies[index].url, epoch: pair.status[index]?.epoch });
    void this.bringUp(pair);
  }

  /** The unit takes operations again, once whatever must reach it first has (stand-in advices). */
  private async bringUp(pair: UnitPair): Promise<void> {
    const primary = pair.primaryClient;
    assert(primary !== null, 'a unit comes up with a primary');
    if (this.options.beforeUp !== undefined) {
      pair.state = 'switching';
      try {
        await this.options.beforeUp(pair, primary);
      } catch (error) {
        this.options.log.warn('unit not brought up; retrying at the next health check', { unit: pair.unitId, error: String(error) });
        pair.state = 'down';
        pair.primary = null;
        return;
      }
    }
    pair.state = 'up';
    this.flush(pair);
  }

  private setDown(pair: UnitPair, why: string): void {
    if (pair.state === 'down') return;
    pair.state = 'down';
    this.options.log.warn('unit down: no copy can take writes', { unit: pair.unitId, why });
  }

  private async promote(pair: UnitPair, to: 0 | 1, epoch: number, startedMs: number, reason: string, planned: boolean): Promise<SwitchRecord | ApiError> {
    pair.state = 'switching';
    this.rerouteInFlight(pair);
    const from = pair.primary;
    const peer = pair.copies[(1 - to) as 0 | 1];
    const answer = await this.postRole(pair.copies[to], { role: 'primary', epoch, peerUrl: peer.url });
    if (answer instanceof ApiError) {
      pair.state = 'down';
      this.options.log.warn('promotion failed', { unit: pair.unitId, to: pair.copies[to].url, error: answer.message });
      return answer;
    }
    pair.epoch = epoch;
    pair.primary = to;
    pair.failingSinceMs = null;
    pair.recordedDegradedSeq = -1;
    // The statuses read before the promotion are stale now; until the next reads, they say what was just done.
    const promoted = pair.status[to];
    if (promoted !== null) pair.status[to] = { ...promoted, role: 'primary', epoch };
    const other = pair.status[(1 - to) as 0 | 1];
    if (other !== null && other.role === 'primary') pair.status[(1 - to) as 0 | 1] = { ...other, role: 'standby', epoch };
    pair.failures[to] = 0;
    pair.lastPrimaryReplication = 'degraded';
    const record: SwitchRecord = {
      unit: pair.unitId, at: new Date().toISOString(), from, to, reason, planned,
      switchMs: Math.round((this.nowMs() - startedMs) * 10) / 10,
    };
    this.switches.push(record);
    this.options.log.info('unit switched', { ...record, primary: pair.copies[to].url });
    this.options.onSwitch(record);
    await this.bringUp(pair);
    return record;
  }

  private async postRole(client: UnitClient, body: object): Promise<object | ApiError> {
    try {
      const answer = await client.readPool.request({
        path: '/ha/role', method: 'POST', body: JSON.stringify(body), headers: { 'content-type': 'application/json' },
        headersTimeout: limits.unitRequestTimeoutMs, bodyTimeout: limits.unitRequestTimeoutMs,
      });
      const text = await answer.body.text();
      if (answer.statusCode !== 200) return new ApiError('NOT_IN_SYNC', `${client.url} refused ${JSON.stringify(body)}: ${text.slice(0, 200)}`, null);
      return JSON.parse(text) as object;
    } catch (error) {
      return new ApiError('UNIT_UNAVAILABLE', `${client.url}: ${String(error)}`, null);
    }
  }

  /**
   * When a switch begins, the operations still waiting on the deposed primary go to
   * the new one as soon as it takes writes, instead of waiting for the old copy to
   * answer: a frozen copy holds them for as long as it is frozen (2 s of requests
   * in the chaos run, against a switch of 0.3 s), and would then be refused anyway.
   * This is the retry their answer would have caused, made early: with the same
   * idempotency key the new primary answers what it has (an operation whose commit
   * reached it before the switch gets its answer; one that did not is applied there
   * once), and the old copy, fenced, commits nothing more. An operation without a
   * key cannot be retried and fails, as its late answer would have made it.
   */
  private rerouteInFlight(pair: UnitPair): void {
    const flights = [...pair.inFlight];
    pair.inFlight.clear();
    for (const flight of flights) {
      flight.settled = true;
      if (isRetryable(flight.op)) this.bufferOp(pair, flight.op, flight.callback, flight.deadlineMs);
      else flight.callback(null);
    }
  }

  private bufferOp(pair: UnitPair, op: UnitOp, callback: OpCallback, deadlineMs: number | null): void {
    if (this.closed || pair.buffer.length >= limits.failoverBufferOpsMax) return callback(null);
    const deadline = deadlineMs ?? this.nowMs() + limits.failoverBufferMsMax;
    if (deadline <= this.nowMs()) return callback(null);
    pair.buffer.push({ op, callback, deadlineMs: deadline });
  }

  private flush(pair: UnitPair): void {
    const client = pair.primaryClient;
    if (pair.state !== 'up' || client === null || client.isDown || pair.buffer.length === 0) return;
    const waiting = pair.buffer;
    pair.buffer = [];
    for (const entry of waiting) this.submit(pair, entry.op, entry.callback, entry.deadlineMs);
  }

  private expireBuffer(pair: UnitPair, nowMs: number): void {
    // Retried operations keep their first deadline, so the buffer is not in deadline order.
    const kept: BufferedOp[] = [];
    const expired: BufferedOp[] = [];
    for (const entry of pair.buffer) (entry.deadlineMs <= nowMs ? expired : kept).push(entry);
    if (expired.length === 0) return;
    pair.buffer = kept;
    for (const entry of expired) entry.callback(null);
  }

  private failBuffer(pair: UnitPair, count: number): void {
    assert(count <= pair.buffer.length, 'fails buffered operations it holds');
    const failed = pair.buffer.splice(0, count);
    for (const entry of failed) entry.callback(null);
  }
}
