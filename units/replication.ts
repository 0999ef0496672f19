import { createReadStream, rmSync, statSync } from 'node:fs';
import { Pool } from 'undici';
import { assert, limits } from '../domain/limits.js';
import type { Logger } from '../domain/log.js';
import type { Change } from './change-log.js';

// The primary's side of a unit's replication to its standby.
//
// Every transaction that wrote something gets the next commit sequence number
// (taken inside the transaction, see statements.ts) and its recorded writes go
// into the replication log here. A sender ships the commits not yet sent, as one
// request, to the standby's POST /ha/replicate; the standby applies them in one
// transaction with synchronous=FULL and answers with the last sequence applied.
// One request is in flight at a time, so under load one round trip carries many
// commits (the same batching as the gateway's).
//
// States:
//   sync         answers of a commit wait until the standby has it on disk
//   degraded     no standby in sync (down, slow, or none assigned): single-copy
//                mode. Entering it is loud (log line, metric, status flag), and
//                the answers waiting at that moment are released only once the
//                gateway has recorded the degraded status, so the gateway never
//                promotes a standby that lacks an answered approval. Each entry
//                into single-copy mode is numbered (degradedSeq, in the status);
//                the gateway's later polls carry the number it has recorded, and a
//                poll with the current one releases the answers (noteStatusObserved).
//                Reading the status is not enough: a poll the gateway gave up on
//                (its timeout) may still be read by a unit that wakes from a stall.
//   catching-up  a standby is back: it gets a snapshot (or only the commits it
//                lacks), then the commits made meanwhile, then the unit is in sync again.

export type ReplicationState = 'sync' | 'degraded' | 'catching-up';

interface Commit {
  seq: number;
  epoch: number;
  changes: Change[];
}

interface Release {
  seq: number;
  release: () => void;
}

export interface ReplicatorOptions {
  unitId: string;
  log: Logger;
  /** The epoch this unit is primary in; every commit carries it. */
  epoch: number;
  /** The last commit already in the store when this unit became primary, and its epoch. */
  anchor: { seq: number; epoch: number };
  /** Writes a consistent copy of the store to `path` (the online backup of the writer connection). */
  backup: (path: string) => Promise<void>;
  /** A temporary file for snapshots. */
  snapshotPath: string;
  clockOffsetMs: () => number;
  onStateChange: (state: ReplicationState) => void;
}

export class Replicator {
  state: ReplicationState = 'degraded';
  peerUrl: string | null = null;
  private pool: Pool | null = null;
  private readonly commits: Commit[] = [];
  private lastSeq: number;
  /** The last commit the standby has acknowledged in this sync period. */
  private ackedSeq = -1;
  private nextToSend: number;
  private sending = false;
  private readonly waiting: Release[] = [];
  /** Releases held back when sync was lost, until the gateway has read the degraded status. */
  private held: Array<() => void> = [];
  private observedSinceDegraded = true;
  /** How many times this primary has entered single-copy mode: the current episode's number. */
  degradedSeq = 0;
  private resyncTimer: NodeJS.Timeout | null = null;
  private resyncing = false;
  private closed = false;
  /** The oldest log entry and what precedes it: a standby at `anchor` can be caught up from the log alone. */
  private anchor: { seq: number; epoch: number };

  constructor(private readonly options: ReplicatorOptions) {
    this.anchor = options.anchor;
    this.lastSeq = options.anchor.seq;
    this.nextToSend = this.lastSeq + 1;
  }

  get epoch(): number {
    return this.options.epoch;
  }

  get commitSeq(): number {
    return this.lastSeq;
  }

  /** Sets (or changes) the standby; a degraded unit starts catching it up at once. */
  setPeer(peerUrl: string | null): void {
    if (peerUrl === this.peerUrl) return;
    void this.pool?.close();
    this.peerUrl = peerUrl;
    this.pool = peerUrl === null ? null : new Pool(peerUrl, {
      connections: 1, pipelining: 1, keepAliveTimeout: 30_000,
      connect: { timeout: limits.replicationTimeoutMs }, headersTimeout: limits.replicationTimeoutMs, bodyTimeout: limits.replicationTimeoutMs,
    });
    this.degrade('standby changed');
    this.scheduleResync(0);
  }

  /**
   * A transaction committed. `seq` is its commit sequence, or null when it wrote
   * nothing: its answers still wait for every earlier commit, since they may
   * show (or replay) what those commits wrote.
   */
  submit(seq: number | null, changes: Change[] | null, release: () => void): void {
    if (seq !== null) {
      assert(seq === this.lastSeq + 1, 'commits reach the replicator in sequence order');
      assert(changes !== null && changes.length > 0, 'a commit with a sequence wrote something');
      this.lastSeq = seq;
      this.commits.push({ seq, epoch: this.options.epoch, changes });
      this.trimLog();
    }
    if (this.state !== 'sync') {
      if (this.observedSinceDegraded) release();
      else this.held.push(release);
    } else if (this.lastSeq <= this.ackedSeq) {
      // Nothing of it or before it waits for the standby (an empty commit after an acknowledged one).
      release();
    } else {
      this.waiting.push({ seq: this.lastSeq, release });
    }
    this.send();
  }

  /**
   * The gateway polled with the single-copy episode it has recorded: when that is the
   * current one, the degraded state is known outside the unit, and the answers held
   * since sync was lost go out.
   */
  noteStatusObserved(recordedDegradedSeq: number): void {
    if (this.state === 'sync' || this.observedSinceDegraded || recordedDegradedSeq !== this.degradedSeq) return;
    this.releaseHeld();
  }

  private releaseHeld(): void {
    this.observedSinceDegraded = true;
    const held = this.held;
    this.held = [];
    for (const release of held) release();
  }

  /** Resolves once every commit so far is on the standby (planned switch); false when not in sync. */
  async drain(timeoutMs: number): Promise<boolean> {
    const deadline = performance.now() + timeoutMs;
    while (performance.now() < deadline) {
      if (this.state !== 'sync') return false;
      if (this.waiting.length === 0 && this.nextToSend > this.lastSeq && !this.sending) return true;
      await new Promise((resolve) => setTimeout(resolve, 2));
    }
    return false;
  }

  close(): void {
    this.closed = true;
    if (this.resyncTimer !== null) clearTimeout(this.resyncTimer);
    void this.pool?.close();
  }

  private trimLog(): void {
    const excess = this.commits.length - limits.replicationLogCommitsMax;
    if (excess <= 0) return;
    const dropped = this.commits.splice(0, excess);
    const last = dropped[dropped.length - 1] as Commit;
    this.anchor = { seq: last.seq, epoch: last.epoch };
  }

  private send(): void {
    if (this.state === 'catching-up' && !this.sending && this.nextToSend > this.lastSeq) {
      this.ackedSeq = this.lastSeq;
      this.setState('sync');
      // The standby has every commit now, those of the answers held since sync was lost
      // too: they go out, whether or not the gateway has recorded the single-copy episode
      // (it may never have: a poll lost to its timeout, then the pair back in sync).
      this.releaseHeld();
    }
    if (this.sending || this.pool === null || this.state === 'degraded' || this.nextToSend > this.lastSeq || this.closed) return;
    const first = this.nextToSend - (this.anchor.seq + 1);
    assert(first >= 0, 'commits to send are still in the log');
    const batch = this.commits.slice(first, first + limits.replicationBatchCommitsMax);
    this.sending = true;
    const pool = this.pool;
    void this.post(pool, batch).then((appliedSeq) => {
      this.sending = false;
      if (pool !== this.pool) return;
      if (appliedSeq === null) {
        this.degrade('the standby did not acknowledge');
        return;
      }
      this.nextToSend = appliedSeq + 1;
      this.ackedSeq = appliedSeq;
      this.acknowledge(appliedSeq);
      this.send();
    });
  }

  private async post(pool: Pool, batch: Commit[]): Promise<number | null> {
    try {
      const body = JSON.stringify({ epoch: this.options.epoch, clockOffsetMs: this.options.clockOffsetMs(), commits: batch });
      const answer = await pool.request({ path: '/ha/replicate', method: 'POST', body, headers: { 'content-type': 'application/json' } });
      const text = await answer.body.text();
      if (answer.statusCode !== 200) {
        this.options.log.warn('standby refused replication', { unit: this.options.unitId, status: answer.statusCode, body: text.slice(0, 200) });
        return null;
      }
      return (JSON.parse(text) as { appliedSeq: number }).appliedSeq;
    } catch (error) {
      if (!this.closed) this.options.log.warn('replication to the standby failed', { unit: this.options.unitId, error: String(error) });
      return null;
    }
  }

  private acknowledge(appliedSeq: number): void {
    while (this.waiting.length > 0 && (this.waiting[0] as Release).seq <= appliedSeq) (this.waiting.shift() as Release).release();
  }

  private setState(state: ReplicationState): void {
    if (this.state === state) return;
    this.state = state;
    this.options.log.info('replication state', { unit: this.options.unitId, state, peer: this.peerUrl, commitSeq: this.lastSeq });
    this.options.onStateChange(state);
  }

  private degrade(reason: string): void {
    if (this.state === 'degraded') return;
    const wasSync = this.state === 'sync';
    this.setState('degraded');
    this.options.log.warn('unit in single-copy mode: approvals are durable on the primary only', { unit: this.options.unitId, reason, peer: this.peerUrl });
    if (wasSync) {
      // Answers that waited for the standby wait now for the gateway to learn that the unit is single-copy.
      this.degradedSeq++;
      this.observedSinceDegraded = false;
      this.held.push(...this.waiting.map((entry) => entry.release));
      this.waiting.length = 0;
    }
    this.scheduleResync(limits.replicationResyncIntervalMs);
  }

  private scheduleResync(delayMs: number): void {
    if (this.resyncTimer !== null || this.closed || this.peerUrl === null) return;
    this.resyncTimer = setTimeout(() => {
      this.resyncTimer = null;
      void this.resync();
    }, delayMs);
    this.resyncTimer.unref();
  }

  /** Brings the standby up to date: from the log when it can, from a snapshot otherwise. */
  private async resync(): Promise<void> {
    if (this.state !== 'degraded' || this.resyncing || this.pool === null) return;
    this.resyncing = true;
    const pool = this.pool;
    try {
      const status = await this.peerStatus(pool);
      if (status === null || status.role !== 'standby') return;
      let appliedSeq = status.appliedSeq;
      if (!this.canCatchUpFromLog(status.appliedSeq, status.appliedEpoch)) appliedSeq = await this.sendSnapshot(pool);
      if (pool !== this.pool) return;
      if (appliedSeq < this.anchor.seq) {
        // The log dropped commits made after the snapshot while it was sent (more than
        // limits.replicationLogCommitsMax of them): catching up from here would ask
        // the log for what it no longer has. Still degraded: the next resync sends a new one.
        this.options.log.warn('the replication log moved past the snapshot while it was sent; another snapshot follows', {
          unit: this.options.unitId, snapshotSeq: appliedSeq, logStartsAfter: this.anchor.seq,
        });
        return;
      }
      this.nextToSend = appliedSeq + 1;
      this.setState('catching-up');
      this.send();
    } catch (error) {
      this.options.log.warn('standby resync failed; retrying', { unit: this.options.unitId, error: String(error) });
    } finally {
      this.resyncing = false;
      if (this.state === 'degraded') this.scheduleResync(limits.replicationResyncIntervalMs);
    }
  }

  private canCatchUpFromLog(seq: number, epoch: number): boolean {
    if (seq === this.anchor.seq) return epoch === this.anchor.epoch;
    if (seq < this.anchor.seq || seq > this.lastSeq) return false;
    const commit = this.commits[seq - this.anchor.seq - 1] as Commit;
    return commit.epoch === epoch;
  }

  private async peerStatus(pool: Pool): Promise<{ role: string; appliedSeq: number; appliedEpoch: number } | null> {
    try {
      const answer = await pool.request({ path: '/ha/status', method: 'GET' });
      const body = (await answer.body.json()) as { role: string; appliedSeq: number; appliedEpoch: number };
      return answer.statusCode === 200 ? body : null;
    } catch {
      return null;
    }
  }

  /** Ships a consistent copy of the store; returns the last commit it holds. */
  private async sendSnapshot(pool: Pool): Promise<number> {
    const path = this.options.snapshotPath;
    rmSync(path, { force: true });
    await this.options.backup(path);
    try {
      const bytes = statSync(path).size;
      this.options.log.info('sending a snapshot to the standby', { unit: this.options.unitId, bytes, peer: this.peerUrl });
      const answer = await pool.request({
        path: `/ha/snapshot?epoch=${this.options.epoch}`, method: 'POST', body: createReadStream(path),
        headers: { 'content-type': 'application/octet-stream', 'content-length': String(bytes) },
        headersTimeout: limits.replicationSnapshotTimeoutMs, bodyTimeout: limits.replicationSnapshotTimeoutMs,
      });
      const text = await answer.body.text();
      if (answer.statusCode !== 200) throw new Error(`standby refused the snapshot: ${answer.statusCode} ${text.slice(0, 200)}`);
      return (JSON.parse(text) as { appliedSeq: number }).appliedSeq;
    } finally {
      rmSync(path, { force: true });
    }
  }
}
