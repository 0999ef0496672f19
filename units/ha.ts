import { closeSync, createWriteStream, fsyncSync, openSync, renameSync, rmSync } from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import Database from 'better-sqlite3';
import { fsyncDirectory } from '../domain/durable-file.js';
import { ApiError } from '../domain/errors.js';
import { parseJsonObject, readBody, sendError, sendJson } from '../domain/http-util.js';
import { assert, limits } from '../domain/limits.js';
import type { Logger } from '../domain/log.js';
import { applyChanges, type Change, type ChangeRecorder } from './change-log.js';
import type { CommitReplication } from './group-commit.js';
import { Replicator, type ReplicationState } from './replication.js';
import { withLockWait } from './store.js';

// A unit's place in its HA pair, and the /ha/* endpoints the gateway and the
// other copy call. Roles:
//   solo      no HA pair: the unit takes writes and replicates nothing
//   standby   takes no writes from the gateway; applies the primary's commits
//             (POST /ha/replicate) or a snapshot (POST /ha/snapshot)
//   primary   takes writes and replicates them to its standby (replication.ts)
// An HA unit always starts as standby; the gateway promotes one copy of each
// pair (POST /ha/role), with an epoch one above any it has seen. A copy never
// applies replication from an epoch older than its own, so a deposed primary
// that comes back (or wakes from SIGSTOP) cannot overwrite the new one.

export type HaRole = 'solo' | 'primary' | 'standby';

/** What the HA side needs from the unit's store, which it may replace (snapshot). */
export interface HaStore {
  writer(): Database.Database;
  /** Stops using the store files, swaps in `path` as the store, and opens it again. */
  replaceStore(path: string): Promise<void>;
  /** Resolves when no commit is queued or running. */
  drainCommits(): Promise<void>;
  clockOffsetMs(): number;
  adoptClockOffsetMs(offsetMs: number): void;
  dataDir: string;
  storePath: string;
}

interface ReplicatedCommit {
  seq: number;
  epoch: number;
  changes: Change[];
}

export class UnitHa implements CommitReplication {
  role: HaRole;
  readonly recorder: ChangeRecorder = { changes: null };
  private replicator: Replicator | null = null;
  private demoting = false;
  private applyStatements: Map<string, Database.Statement> | null = null;
  private applyCommits: ((commits: ReplicatedCommit[]) => number) | null = null;

  constructor(
    private readonly unitId: string,
    enabled: boolean,
    private readonly store: HaStore,
    private readonly log: Logger,
    private readonly prepareWrites: (db: Database.Database) => Map<string, Database.Statement>,
    private readonly onState: (role: HaRole, replication: ReplicationState | null) => void,
  ) {
    this.role = enabled ? 'standby' : 'solo';
    onState(this.role, null);
  }

  /**
   * Called once the store is open at start-up. A solo unit's commits take no
   * commit sequence, so a store written solo (npm start without --ha) would
   * look, to the gateway and to a replicating primary, like a copy that never
   * took a write: its new standby would count as in sync while lacking every
   * account. So a solo unit marks its store (meta soloWrites), and an HA copy
   * that opens a marked store counts the solo writes as one commit and clears
   * the mark: the gateway then promotes this copy over an emptier one, and the
   * standby, whose sequence is below this copy's first, gets a snapshot.
   */
  reconcileSoloWrites(): void {
    const writer = this.store.writer();
    if (this.role === 'solo') {
      withLockWait(writer, () => this.statements().setMeta.run('soloWrites', '1'));
      return;
    }
    const marked = writer.prepare("SELECT 1 FROM meta WHERE key = 'soloWrites'").pluck().get() === 1;
    if (!marked) return;
    const seq = withLockWait(writer, () => writer.transaction(() => {
      writer.prepare("DELETE FROM meta WHERE key = 'soloWrites'").run();
      return this.nextCommitSeq();
    }).immediate());
    this.log.warn('store was written outside an HA pair: counted as one commit, so the standby gets a snapshot', { unit: this.unitId, commitSeq: seq });
  }

  /** Whether the gateway's writes are taken now. */
  get acceptsWrites(): boolean {
    return this.role === 'solo' || (this.role === 'primary' && !this.demoting);
  }

  active(): boolean {
    return this.replicator !== null;
  }

  nextCommitSeq(): number {
    return this.statements().nextSeq.get() as number;
  }

  submit(seq: number | null, changes: Change[] | null, release: () => void): void {
    assert(this.replicator !== null, 'a commit is replicated only by a primary');
    this.replicator.submit(seq, changes, release);
  }

  /** The store was replaced: statements prepared on the old connection are gone. */
  onStoreReplaced(): void {
    this.applyStatements = null;
    this.applyCommits = null;
    this.cached = null;
  }

  close(): void {
    this.replicator?.close();
  }

  async handle(request: IncomingMessage, response: ServerResponse, path: string): Promise<void> {
    const method = request.method ?? 'GET';
    if (method === 'GET' && path === '/ha/status') return this.status(request, response);
    if (method === 'POST' && path === '/ha/replicate') return this.replicate(request, response);
    if (method === 'POST' && path === '/ha/snapshot') return this.snapshot(request, response);
    if (method === 'POST' && path === '/ha/role') return this.changeRole(request, response);
    request.resume();
    sendError(response, new ApiError('NOT_FOUND', `no route ${method} ${path}`, null));
  }

  private cached: { seq: Database.Statement; epoch: Database.Statement; nextSeq: Database.Statement; haEpoch: Database.Statement; setMeta: Database.Statement } | null = null;

  private statements(): NonNullable<UnitHa['cached']> {
    if (this.cached === null) {
      const writer = this.store.writer();
      this.cached = {
        seq: writer.prepare("SELECT CAST(value AS INTEGER) FROM meta WHERE key = 'commitSeq'").pluck(),
        epoch: writer.prepare("SELECT CAST(value AS INTEGER) FROM meta WHERE key = 'commitEpoch'").pluck(),
        nextSeq: writer.prepare("UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'commitSeq' RETURNING CAST(value AS INTEGER)").pluck(),
        haEpoch: writer.prepare("SELECT coalesce((SELECT CAST(value AS INTEGER) FROM meta WHERE key = 'haEpoch'), 0)").pluck(),
        setMeta: writer.prepare('INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value'),
      };
    }
    return this.cached;
  }

  private get appliedSeq(): number {
    return this.statements().seq.get() as number;
  }

  private get appliedEpoch(): number {
    return this.statements().epoch.get() as number;
  }

  /** The highest epoch this copy has seen (promoted in, or replicated from). */
  private get epoch(): number {
    return this.statements().haEpoch.get() as number;
  }

  private setEpoch(epoch: number): void {
    this.statements().setMeta.run('haEpoch', String(epoch));
  }

  private status(request: IncomingMessage, response: ServerResponse): void {
    // The gateway reading a degraded status is how it learns it (see Replicator);
    // only a gateway that routes to this copy's epoch counts.
    const params = new URL(request.url ?? '/', 'http://unit').searchParams;
    const gatewayEpoch = Number(params.get('epoch'));
    const recordedDegradedSeq = Number(params.get('degradedSeq') ?? 'NaN');
    if (this.replicator !== null && gatewayEpoch === this.replicator.epoch && Number.isSafeInteger(recordedDegradedSeq)) {
      this.replicator.noteStatusObserved(recordedDegradedSeq);
    }
    sendJson(response, 200, {
      unit: this.unitId, pid: process.pid, role: this.role, epoch: this.epoch, appliedSeq: this.appliedSeq, appliedEpoch: this.appliedEpoch,
      replication: this.replicator?.state ?? null, degradedSeq: this.replicator?.degradedSeq ?? null, peer: this.replicator?.peerUrl ?? null, demoting: this.demoting,
    });
  }

  private async replicate(request: IncomingMessage, response: ServerResponse): Promise<void> {
    const read = await readBody(request, 256 * 1024 * 1024);
    if (!read.ok) return sendError(response, read.error);
    if (this.role !== 'standby') return sendError(response, new ApiError('NOT_STANDBY', `this copy is ${this.role}`, null));
    const body = parseReplicateBody(read.body);
    if (body instanceof ApiError) return sendError(response, body);
    if (body.epoch < this.epoch) return sendError(response, new ApiError('STALE_EPOCH', `epoch ${body.epoch} is older than ${this.epoch}`, 'epoch'));
    const first = body.commits[0];
    if (first !== undefined && first.seq > this.appliedSeq + 1) {
      return sendError(response, new ApiError('REPLICATION_GAP', `this copy has applied ${this.appliedSeq}; the next commit sent is ${first.seq}`, null));
    }
    let appliedSeq: number;
    try {
      appliedSeq = this.applier()(body.commits);
    } catch (error) {
      // The transaction rolled back: nothing of the request was applied.
      if (!isMalformedChange(error)) throw error;
      return sendError(response, new ApiError('INVALID_FIELD', `a replicated change does not apply: ${String(error)}`, 'commits'));
    }
    if (body.epoch > this.epoch) this.setEpoch(body.epoch);
    this.store.adoptClockOffsetMs(body.clockOffsetMs);
    sendJson(response, 200, { appliedSeq });
  }

  /** One IMMEDIATE transaction for the request's commits; synchronous=FULL makes the answer mean "on disk". */
  private applier(): (commits: ReplicatedCommit[]) => number {
    if (this.applyCommits === null) {
      const writer = this.store.writer();
      const statements = this.applyStatements ?? this.prepareWrites(writer);
      this.applyStatements = statements;
      const meta = this.statements();
      const apply = writer.transaction((commits: ReplicatedCommit[]) => {
        let applied = meta.seq.get() as number;
        for (const commit of commits) {
          if (commit.seq <= applied) continue;
          assert(commit.seq === applied + 1, 'replicated commits are applied in sequence');
          applyChanges(statements, commit.changes);
          meta.setMeta.run('commitSeq', String(commit.seq));
          meta.setMeta.run('commitEpoch', String(commit.epoch));
          applied = commit.seq;
        }
        return applied;
      });
      this.applyCommits = (commits) => apply.immediate(commits);
    }
    return this.applyCommits;
  }

  private async snapshot(request: IncomingMessage, response: ServerResponse): Promise<void> {
    const epoch = Number(new URL(request.url ?? '/', 'http://unit').searchParams.get('epoch'));
    if (this.role !== 'standby' || !(epoch >= this.epoch)) {
      request.resume();
      return sendError(response, new ApiError(this.role !== 'standby' ? 'NOT_STANDBY' : 'STALE_EPOCH', `refused: role ${this.role}, epoch ${this.epoch}`, null));
    }
    const temporary = join(this.store.dataDir, 'snapshot.incoming');
    rmSync(temporary, { force: true });
    await pipeline(request, createWriteStream(temporary));
    const fd = openSync(temporary, 'r+');
    fsyncSync(fd);
    closeSync(fd);
    const problem = snapshotProblem(temporary);
    for (const suffix of ['-wal', '-shm']) rmSync(temporary + suffix, { force: true });
    if (problem !== null) {
      rmSync(temporary, { force: true });
      return sendError(response, new ApiError('INVALID_FIELD', `the snapshot is not a unit store: ${problem}; the store is unchanged`, 'body'));
    }
    await this.store.replaceStore(temporary);
    this.onStoreReplaced();
    this.setEpoch(Math.max(epoch, this.epoch));
    this.log.info('standby installed a snapshot', { unit: this.unitId, appliedSeq: this.appliedSeq, epoch });
    sendJson(response, 200, { appliedSeq: this.appliedSeq });
  }

  private async changeRole(request: IncomingMessage, response: ServerResponse): Promise<void> {
    const read = await readBody(request, 4096);
    if (!read.ok) return sendError(response, read.error);
    const body = parseRoleBody(read.body);
    if (body instanceof ApiError) return sendError(response, body);
    const epoch = body.epoch;
    if (this.role === 'solo') return sendError(response, new ApiError('NOT_STANDBY', 'this unit runs without an HA pair', null));
    if (body.force === true && body.role === 'standby' && typeof epoch === 'number' && epoch >= this.epoch) return this.fence(response, epoch);
    if (typeof epoch !== 'number' || !Number.isSafeInteger(epoch) || epoch <= this.epoch) {
      return sendError(response, new ApiError('STALE_EPOCH', `a role change needs an epoch above ${this.epoch}`, 'epoch'));
    }
    if (body.role === 'primary') return this.promote(response, epoch, body.peerUrl ?? null);
    if (body.role === 'standby') return this.demote(response, epoch);
    sendError(response, new ApiError('INVALID_FIELD', 'role is primary or standby', 'role'));
  }

  private promote(response: ServerResponse, epoch: number, peerUrl: string | null): void {
    if (this.role === 'primary') return sendError(response, new ApiError('NOT_STANDBY', 'this copy is primary already', null));
    this.setEpoch(epoch);
    this.replicator = new Replicator({
      unitId: this.unitId, log: this.log, epoch, anchor: { seq: this.appliedSeq, epoch: this.appliedEpoch },
      backup: async (path) => {
        await this.store.writer().backup(path);
      },
      snapshotPath: join(this.store.dataDir, 'snapshot.outgoing'), clockOffsetMs: () => this.store.clockOffsetMs(),
      onStateChange: (state) => this.onState(this.role, state),
    });
    // Commits from now on carry the new epoch (the standby stores it per commit).
    this.statements().setMeta.run('commitEpoch', String(epoch));
    this.role = 'primary';
    this.onState('primary', this.replicator.state);
    this.log.info('promoted to primary', { unit: this.unitId, epoch, peer: peerUrl, appliedSeq: this.appliedSeq });
    this.replicator.setPeer(peerUrl);
    sendJson(response, 200, { role: this.role, epoch, appliedSeq: this.appliedSeq });
  }

  /**
   * A deposed primary (another copy was promoted in a later epoch): it stops at
   * once. Commits it made alone were never answered (their answers wait for a
   * standby or for the gateway), and the new primary's snapshot replaces them.
   */
  private fence(response: ServerResponse, epoch: number): void {
    this.replicator?.close();
    this.replicator = null;
    this.setEpoch(epoch);
    this.role = 'standby';
    this.onState('standby', null);
    this.log.warn('fenced: another copy is primary in a later epoch', { unit: this.unitId, epoch });
    sendJson(response, 200, { role: this.role, epoch, appliedSeq: this.appliedSeq });
  }

  /** Planned switch: stop taking writes, wait until the standby has every commit, then become standby. */
  private async demote(response: ServerResponse, epoch: number): Promise<void> {
    if (this.role !== 'primary' || this.replicator === null) return sendError(response, new ApiError('NOT_STANDBY', `this copy is ${this.role}`, null));
    this.demoting = true;
    await this.store.drainCommits();
    // Bounded by the gateway's failover buffer: the writes held there must not outwait it.
    const inSync = await this.replicator.drain(limits.failoverBufferMsMax / 2);
    if (!inSync) {
      this.demoting = false;
      return sendError(response, new ApiError('NOT_IN_SYNC', 'the standby is not in sync: a planned switch would lose commits', null));
    }
    this.replicator.close();
    this.replicator = null;
    this.setEpoch(epoch);
    this.role = 'standby';
    this.demoting = false;
    this.onState('standby', null);
    this.log.info('demoted to standby', { unit: this.unitId, epoch, appliedSeq: this.appliedSeq });
    sendJson(response, 200, { role: this.role, epoch, appliedSeq: this.appliedSeq });
  }
}

/** Replaces the store file at `storePath` with `incoming`: the caller has closed every connection. */
export function swapStoreFile(storePath: string, incoming: string): void {
  for (const suffix of ['-wal', '-shm']) rmSync(storePath + suffix, { force: true });
  renameSync(incoming, storePath);
  fsyncDirectory(storePath);
}

interface RoleBody {
  role: 'primary' | 'standby';
  epoch: number;
  peerUrl?: string | null;
  force?: boolean;
}

/** The body of POST /ha/role, checked: {role, epoch, peerUrl?, force?}. */
function parseRoleBody(raw: Buffer): RoleBody | ApiError {
  const body = parseJsonObject(raw);
  if (body instanceof ApiError) return body;
  for (const key of Object.keys(body)) {
    if (!['role', 'epoch', 'peerUrl', 'force'].includes(key)) return new ApiError('UNKNOWN_FIELD', `unknown field ${key}`, key);
  }
  if (body['role'] !== 'primary' && body['role'] !== 'standby') return new ApiError('INVALID_FIELD', 'role is primary or standby', 'role');
  if (!isCount(body['epoch'])) return new ApiError('INVALID_FIELD', 'epoch is a non-negative integer', 'epoch');
  const peerUrl = body['peerUrl'];
  if (peerUrl !== undefined && peerUrl !== null && (typeof peerUrl !== 'string' || !/^https?:\/\/[^\s]+$/.test(peerUrl))) {
    return new ApiError('INVALID_FIELD', 'peerUrl is the other copy\'s http URL, or null', 'peerUrl');
  }
  if (body['force'] !== undefined && typeof body['force'] !== 'boolean') return new ApiError('INVALID_FIELD', 'force is true or false', 'force');
  return body as unknown as RoleBody;
}

interface ReplicateBody {
  epoch: number;
  clockOffsetMs: number;
  commits: ReplicatedCommit[];
}

/**
 * The body of POST /ha/replicate, checked down to the shape of each change: commits
 * numbered one after another, each with its epoch and its recorded writes. Whether a
 * write names a known statement with values it accepts is found by applying it
 * (isMalformedChange), in the one transaction that then rolls back.
 */
function parseReplicateBody(raw: Buffer): ReplicateBody | ApiError {
  const body = parseJsonObject(raw);
  if (body instanceof ApiError) return body;
  if (!isCount(body['epoch'])) return new ApiError('INVALID_FIELD', 'epoch is a non-negative integer', 'epoch');
  const offset = body['clockOffsetMs'];
  if (!isCount(offset) || offset > limits.clockOffsetMsMax) return new ApiError('INVALID_FIELD', `clockOffsetMs is an integer 0..${limits.clockOffsetMsMax}`, 'clockOffsetMs');
  const commits = body['commits'];
  if (!Array.isArray(commits)) return new ApiError('INVALID_FIELD', 'commits is an array', 'commits');
  for (let i = 0; i < commits.length; i++) {
    const commit = commits[i] as Partial<ReplicatedCommit> | null;
    const field = `commits[${i}]`;
    if (typeof commit !== 'object' || commit === null || !isCount(commit.seq) || commit.seq < 1 || !isCount(commit.epoch)) {
      return new ApiError('INVALID_FIELD', 'a commit is {seq, epoch, changes}, seq and epoch integers', field);
    }
    if (i > 0 && commit.seq !== (commits[i - 1] as ReplicatedCommit).seq + 1) return new ApiError('INVALID_FIELD', 'commits are numbered one after another', `${field}.seq`);
    if (!Array.isArray(commit.changes) || !commit.changes.every((change) => Array.isArray(change) && typeof change[0] === 'string')) {
      return new ApiError('INVALID_FIELD', 'changes is an array of [statement, ...values]', `${field}.changes`);
    }
  }
  return body as unknown as ReplicateBody;
}

function isCount(value: unknown): value is number {
  return typeof value === 'number' && Number.isSafeInteger(value) && value >= 0;
}

/** An error that applying a replicated change raises because of what was sent, not of the store. */
function isMalformedChange(error: unknown): boolean {
  if (error instanceof RangeError || error instanceof TypeError) return true;
  if (error instanceof Error && error.message.startsWith('unknown replicated statement')) return true;
  const code = (error as { code?: unknown }).code;
  return typeof code === 'string' && (code.startsWith('SQLITE_CONSTRAINT') || code === 'SQLITE_MISMATCH');
}

/** The tables every unit store has, whatever the version that wrote it. */
const storeTables = ['meta', 'accounts', 'cards', 'holds', 'journal'];

/**
 * Why the file a snapshot request delivered cannot replace the store, or null: it
 * must be an SQLite database that passes quick_check and holds the unit's tables
 * (an empty body would otherwise install an empty store, junk one that never opens).
 */
function snapshotProblem(path: string): string | null {
  let db: Database.Database | null = null;
  try {
    db = new Database(path, { fileMustExist: true });
    const check = db.pragma('quick_check', { simple: true });
    if (check !== 'ok') return `quick_check says ${String(check).slice(0, 200)}`;
    const tables = new Set(db.prepare("SELECT name FROM sqlite_schema WHERE type = 'table'").pluck().all() as string[]);
    const missing = storeTables.filter((table) => !tables.has(table));
    return missing.length === 0 ? null : `no table ${missing.join(', ')}`;
  } catch (error) {
    return String(error);
  } finally {
    db?.close();
  }
}
