import type Database from 'better-sqlite3';
import { ApiError } from '../domain/errors.js';
import { assert, limits } from '../domain/limits.js';
import { decodeResultLine, encodeResultLine, type UnitOp } from '../domain/protocol.js';
import { responseCodes } from '../domain/response-codes.js';
import type { Logger } from '../domain/log.js';
import type { Change, ChangeRecorder } from './change-log.js';
import type { UnitEngine } from './engine.js';

// Group commit: the operations that arrive during one event-loop turn (several
// upstream batches, account openings, the expiry sweep) are applied in one SQLite
// transaction and made durable by one fsync. Answers are released only after the
// commit returns, so an answered approval is always on disk. A crash before the
// commit loses only unanswered work, which the channel retries with its
// idempotency key.

export interface CommitJob {
  ops: UnitOp[];
  done: (lines: string[]) => void;
  /** The job is refused whole, nothing of it written (the copy stopped being primary before its commit). */
  refuse?: (error: ApiError) => void;
}

export interface CommitStats {
  onCommit(opsCount: number, seconds: number): void;
  onOp(op: UnitOp, code: string): void;
  /** A commit found the store's write lock held by the unit's other instance and will retry. */
  onLockRetry(): void;
}

/** A primary's replication, as the committer sees it (units/replication.ts). */
export interface CommitReplication {
  /** Whether commits are recorded and shipped now (a primary in an HA pair). */
  active(): boolean;
  recorder: ChangeRecorder;
  /** Takes the next commit sequence number; runs inside the transaction. */
  nextCommitSeq(): number;
  /** Hands over a committed transaction; `release` delivers its answers when replication allows. */
  submit(seq: number | null, changes: Change[] | null, release: () => void): void;
}

/**
 * A job of the background lane (batch accounting's postings while authorizations
 * run): applied a slice at a time, each slice riding a commit of live traffic or,
 * with none, a small commit of its own after a pause, so that the unit's
 * authorizations never wait behind a whole batch of postings.
 */
interface BackgroundJob {
  job: CommitJob;
  /** Index of the next operation to hand to a commit. */
  next: number;
  /** Answers of the operations committed so far, in order. */
  lines: string[];
}

export class GroupCommitter {
  private queue: CommitJob[] = [];
  private queuedOps = 0;
  private scheduled = false;
  private background: BackgroundJob[] = [];
  private backgroundOps = 0;
  private backgroundTimer: NodeJS.Timeout | null = null;
  /** How long the last commit took if it carried background work alone, else 0. */
  private lastBackgroundCommitMs = 0;
  /**
   * Fault injection (a slow disk): every commit takes this much longer, with the
   * event loop blocked as a slow fsync blocks it. Set by POST /admin/fault.
   */
  injectedCommitDelayMs = 0;
  /** The commit sequence the transaction being applied took, or null (nothing written, or no replication). */
  private commitSeq: number | null = null;
  /** The response code of each operation the transaction being applied answered, in order. */
  private appliedCodes: string[] | null = null;
  /** When the current run of SQLITE_BUSY answers began, or null. */
  private busySinceMs: number | null = null;
  private readonly runTransaction: (jobs: CommitJob[]) => string[][];

  constructor(
    db: Database.Database,
    private readonly engine: UnitEngine,
    private readonly stats: CommitStats,
    private readonly log: Logger,
    private readonly sweep: () => void,
    private readonly replication: CommitReplication | null = null,
    /**
     * Whether this copy may write its store now. A copy of an HA pair fenced or
     * demoted to standby must not commit what it accepted as primary: it would be
     * answered and never replicated (the new primary never hears of it).
     */
    private readonly mayCommit: () => boolean = () => true,
  ) {
    const apply = (jobs: CommitJob[]): string[][] => {
      const recorder = this.replication !== null && this.replication.active() ? this.replication.recorder : null;
      if (recorder !== null) recorder.changes = [];
      this.sweep();
      // The codes are counted once the transaction has committed (see flush): a
      // rollback answers every operation with a system error instead.
      this.appliedCodes = [];
      const answers = jobs.map((job) => job.ops.map((op) => {
        const line = this.engine.apply(op);
        (this.appliedCodes as string[]).push(line.code);
        return encodeResultLine(line);
      }));
      if (this.injectedCommitDelayMs > 0) Atomics.wait(sleepCell, 0, 0, this.injectedCommitDelayMs);
      this.commitSeq = recorder !== null && (recorder.changes as Change[]).length > 0 ? (this.replication as CommitReplication).nextCommitSeq() : null;
      return answers;
    };
    // IMMEDIATE takes the write lock up front: with a second instance on the store
    // (gray release) a deferred transaction could deadlock on lock upgrade.
    const transaction = db.transaction(apply);
    this.runTransaction = (jobs) => transaction.immediate(jobs);
  }

  /** Operations accepted and not yet committed, in both lanes. */
  get pendingOps(): number {
    return this.queuedOps + this.backgroundOps;
  }

  get pendingBackgroundOps(): number {
    return this.backgroundOps;
  }

  submit(job: CommitJob): void {
    assert(job.ops.length > 0, 'a commit job has operations');
    assert(job.ops.length <= limits.groupCommitSizeMax, 'a commit job fits one group commit');
    this.queue.push(job);
    this.queuedOps += job.ops.length;
    this.schedule();
  }

  /**
   * Work that yields to live traffic: at most limits.backgroundOpsPerCommit of its
   * operations join each commit of live operations, limits.backgroundOpsPerIdleCommit
   * a commit of their own. done gets every answer once the last one is committed.
   */
  submitBackground(job: CommitJob): void {
    assert(job.ops.length > 0, 'a commit job has operations');
    this.background.push({ job, next: 0, lines: [] });
    this.backgroundOps += job.ops.length;
    if (this.queue.length === 0) this.scheduleBackground();
  }

  /** Calls done after the next commit (which also runs the sweep). */
  barrier(done: () => void): void {
    this.queue.push({ ops: [], done: () => done() });
    this.schedule();
  }

  /** Runs an empty commit so that the sweep runs even without traffic. */
  tick(): void {
    this.schedule();
  }

  private schedule(): void {
    if (this.backgroundTimer !== null) {
      // Live traffic arrived during a background pause: commit it now.
      clearTimeout(this.backgroundTimer);
      this.backgroundTimer = null;
      this.scheduled = false;
    }
    if (this.scheduled) return;
    this.scheduled = true;
    setImmediate(() => this.flush());
  }

  /**
   * A commit of background work alone waits first, so the unit's event loop reads
   * its sockets and a waiting authorization goes first: limits.backgroundPauseMs, or
   * longer after a background commit of its own, so that such commits take at most
   * limits.backgroundIdleShareMax of the unit's time (the lane's pace no longer
   * depends on how many postings a commit carries).
   */
  private scheduleBackground(): void {
    if (this.scheduled) return;
    this.scheduled = true;
    const share = limits.backgroundIdleShareMax;
    const pauseMs = Math.max(limits.backgroundPauseMs, (this.lastBackgroundCommitMs * (1 - share)) / share);
    this.backgroundTimer = setTimeout(() => {
      this.backgroundTimer = null;
      this.flush();
    }, pauseMs);
  }

  /**
   * The next slice of the background lane, as commit jobs whose answers go to their
   * background job: limits.backgroundOpsPerCommit beside live operations, more in a
   * commit of its own (limits.backgroundOpsPerIdleCommit), where nobody waits for it.
   */
  private takeBackgroundSlice(withLiveOps: boolean): CommitJob[] {
    const slice: CommitJob[] = [];
    let room = withLiveOps ? limits.backgroundOpsPerCommit : limits.backgroundOpsPerIdleCommit;
    while (room > 0 && this.background.length > 0) {
      const head = this.background[0] as BackgroundJob;
      const ops = head.job.ops.slice(head.next, head.next + room);
      head.next += ops.length;
      room -= ops.length;
      this.backgroundOps -= ops.length;
      if (head.next === head.job.ops.length) this.background.shift();
      slice.push({
        ops,
        done: (lines) => {
          head.lines.push(...lines);
          if (head.lines.length === head.job.ops.length) head.job.done(head.lines);
        },
      });
    }
    return slice;
  }

  /**
   * The store's write lock is shared with the unit's other instance (gray
   * release). The writer connection does not wait inside SQLite for it: SQLite's
   * busy handler sleeps in steps of 1 to 100 ms with the event loop blocked.
   * BEGIN IMMEDIATE fails at once instead, before anything was applied, and the
   * jobs go back to the head of the queue for the next turn, where more
   * operations join them. Measured: see BENCHMARKS.md, gray release.
   */
  private retryAfterBusy(jobs: CommitJob[], opsCount: number): boolean {
    const nowMs = performance.now();
    if (this.busySinceMs === null) this.busySinceMs = nowMs;
    if (nowMs - this.busySinceMs > limits.storeLockWaitMsMax) return false;
    this.queue.unshift(...jobs);
    this.queuedOps += opsCount;
    this.stats.onLockRetry();
    if (!this.scheduled) {
      this.scheduled = true;
      setTimeout(() => this.flush(), limits.storeLockRetryMs);
    }
    return true;
  }

  /** Counts each operation with the code it was answered with: the applied one once committed, the failure's after a rollback. */
  private countOps(jobs: CommitJob[], answers: string[][]): void {
    const codes = this.appliedCodes;
    this.appliedCodes = null;
    let index = 0;
    for (let j = 0; j < jobs.length; j++) {
      const job = jobs[j] as CommitJob;
      for (let i = 0; i < job.ops.length; i++) {
        const code = codes !== null ? (codes[index] as string) : decodeResultLine((answers[j] as string[])[i] as string).code;
        this.stats.onOp(job.ops[i] as UnitOp, code);
        index++;
      }
    }
  }

  /** Every job waiting, in both lanes, refused whole (see mayCommit); barriers are released. */
  private refuseAll(): void {
    const jobs = this.queue.splice(0);
    this.queuedOps = 0;
    const background = this.background.splice(0);
    this.backgroundOps = 0;
    if (this.backgroundTimer !== null) {
      clearTimeout(this.backgroundTimer);
      this.backgroundTimer = null;
    }
    for (const job of jobs) refuseWhole(job);
    for (const { job, next, lines } of background) {
      // A background job whose first slices were committed is not "nothing written":
      // it gets the answers of those, and a failure for each operation not applied.
      if (next === 0) refuseWhole(job);
      else job.done([...lines, ...job.ops.slice(lines.length).map(failedLine)]);
    }
    if (jobs.length + background.length > 0) this.log.warn('refused the commits waiting: this copy is no longer primary', { jobs: jobs.length + background.length });
  }

  private flush(): void {
    this.scheduled = false;
    if (!this.mayCommit()) return this.refuseAll();
    const jobs: CommitJob[] = [];
    let opsCount = 0;
    while (this.queue.length > 0) {
      const next = this.queue[0] as CommitJob;
      if (jobs.length > 0 && opsCount + next.ops.length > limits.groupCommitSizeMax) break;
      jobs.push(next);
      this.queue.shift();
      opsCount += next.ops.length;
    }
    this.queuedOps -= opsCount;
    const liveOps = opsCount;
    for (const slice of this.takeBackgroundSlice(liveOps > 0)) {
      jobs.push(slice);
      opsCount += slice.ops.length;
    }
    const started = process.hrtime.bigint();
    let answers: string[][];
    const recorder = this.replication?.recorder ?? null;
    let replicated = false;
    try {
      answers = this.runTransaction(jobs);
      this.busySinceMs = null;
      replicated = recorder !== null && recorder.changes !== null;
    } catch (error) {
      if (recorder !== null) recorder.changes = null;
      if (isBusy(error) && this.retryAfterBusy(jobs, opsCount)) return;
      this.busySinceMs = null;
      // A throw inside the transaction is a bug or a storage failure; the transaction
      // rolled back, so nothing was written and every operation gets a system error.
      this.log.error('group commit failed, rolled back', { error: String(error), ops: opsCount });
      answers = jobs.map((job) => job.ops.map(failedLine));
      this.appliedCodes = null;
    }
    this.countOps(jobs, answers);
    const seconds = Number(process.hrtime.bigint() - started) / 1e9;
    this.stats.onCommit(opsCount, seconds);
    this.lastBackgroundCommitMs = liveOps === 0 && opsCount > 0 ? seconds * 1000 : 0;
    const deliver = (): void => {
      for (let i = 0; i < jobs.length; i++) (jobs[i] as CommitJob).done(answers[i] as string[]);
    };
    if (replicated) {
      const changes = (recorder as ChangeRecorder).changes;
      (recorder as ChangeRecorder).changes = null;
      (this.replication as CommitReplication).submit(this.commitSeq, this.commitSeq === null ? null : changes, deliver);
    } else {
      deliver();
    }
    if (this.queue.length > 0) this.schedule();
    else if (this.background.length > 0) this.scheduleBackground();
  }
}

const sleepCell = new Int32Array(new SharedArrayBuffer(4));

const notPrimary = (): ApiError => new ApiError('NOT_PRIMARY', 'this copy is no longer primary: nothing of the batch was written', null);

function refuseWhole(job: CommitJob): void {
  if (job.ops.length === 0) job.done([]);
  else if (job.refuse !== undefined) job.refuse(notPrimary());
  else job.done(job.ops.map(failedLine));
}

function isBusy(error: unknown): boolean {
  return typeof error === 'object' && error !== null && (error as { code?: unknown }).code === 'SQLITE_BUSY';
}

function failedLine(op: UnitOp): string {
  if (op.op === 'authorize' || op.op === 'increment' || op.op === 'reverse') {
    const body = { authorizationId: null, approved: false, responseCode: responseCodes.systemError, approvedAmount: null, availableCredit: null, unit: null };
    return encodeResultLine({ status: 200, code: responseCodes.systemError, approved: false, body: JSON.stringify(body) });
  }
  const body = { error: { code: 'INTERNAL', message: 'the unit failed to commit; nothing was written', field: null } };
  return encodeResultLine({ status: 500, code: '-', approved: false, body: JSON.stringify(body) });
}
