import type Database from 'better-sqlite3';
import { assert } from '../domain/limits.js';

// The background checkpoint of a unit's store (run by its feed thread, on its own
// connection), so that the writer's commits never copy pages into the database file.
//
// Every tick is a PASSIVE checkpoint: it copies the log's frames into the database
// file and syncs it without taking the write lock, so it never holds up a commit.
//
// PASSIVE alone never lets the log start over while writes go on. SQLite rewinds the
// log only when a writer begins a transaction and finds every frame already copied
// back, and under steady writes new frames always arrive during a pass. Measured:
// issuing 300,000 accounts into one unit left a 2.2 GB WAL beside a 108 MB database.
//
// A RESTART checkpoint gets it rewound (the writer's next transaction starts the log
// over), but it takes the write lock first, then copies the frames written since the
// last pass, syncs the log and the database file and waits for readers, all under
// it. Measured at 8,000 authorizations/s (loadtest/probes/tail-where.mjs): a RESTART
// every 1-3 s per unit, 16 ms at its median and up to 116 ms, and 170-290 commits
// per 15 s that found the lock taken and retried.
//
// So once the log holds rewindFramesMin frames the checkpointer chases the writer
// instead: it runs short PASSIVE passes one after another, each copying only what
// the last one missed, until one finishes inside a gap between two commits. The
// next commit then finds the log wholly copied and rewinds it itself; a pass sees
// the log shorter than before and the chase ends. Nothing waits on a lock. Measured
// in the same run: 29 of 32 chases ended with the writer's rewind after 2-38 passes
// (18-230 ms), and no commit retried.
//
// A chase can fail: a reader (the journal feed) may hold an old snapshot, or the
// writer may never pause (bulk issuance). Then the next tick chases again, and a
// chase that fails with the log past restartFramesMin ends in a RESTART, so the log
// stays bounded. Durability does not depend on any of this: a checkpoint syncs the
// log and the database file before it records frames as copied, and only then may a
// commit write over them.

export const rewindOutcomes = ['writer', 'next-commit', 'restart', 'deferred'] as const;
/**
 * How a chase ended: the writer rewound the log; the log was wholly copied and the
 * writer, idle for writerIdleMs, rewinds it at its next commit; a RESTART copied it
 * all (the writer's next transaction rewinds it); or none of these (the next tick
 * tries again).
 */
export type RewindOutcome = (typeof rewindOutcomes)[number];

export interface WalCheckpointerOptions {
  /** Between ticks (a PASSIVE checkpoint each). */
  intervalMs: number;
  /** Frames in the log at which a tick starts a chase. */
  rewindFramesMin: number;
  /** Frames in the log past which a failed chase ends in a RESTART. */
  restartFramesMin: number;
  /** Passes in one chase. */
  chasePassesMax: number;
  /** How long the log must stay the same, wholly copied, before the writer counts as idle. */
  writerIdleMs: number;
  /** How long a RESTART waits for the writer's transaction and for readers. */
  restartWaitMs: number;
  onChase(outcome: RewindOutcome, passes: number): void;
}

interface Pass {
  /** Frames in the log when the pass began. */
  log: number;
  /** Frames copied back into the database file, of those. */
  checkpointed: number;
}

export class WalCheckpointer {
  private timer: NodeJS.Timeout | null = null;
  private immediate: NodeJS.Immediate | null = null;
  private stopped = false;
  /** The log's length when a chase last ended with the writer idle, or -1. */
  private idleLog = -1;

  constructor(private readonly db: Database.Database, private readonly options: WalCheckpointerOptions) {
    assert(options.intervalMs >= 1, 'intervalMs >= 1');
    assert(options.rewindFramesMin >= 1, 'rewindFramesMin >= 1');
    assert(options.restartFramesMin >= options.rewindFramesMin, 'restartFramesMin >= rewindFramesMin');
    assert(options.chasePassesMax >= 2, 'chasePassesMax >= 2');
    assert(options.writerIdleMs >= 1, 'writerIdleMs >= 1');
    assert(options.restartWaitMs >= 0, 'restartWaitMs >= 0');
  }

  start(): void {
    this.later(this.options.intervalMs, () => this.tick());
  }

  stop(): void {
    this.stopped = true;
    if (this.timer !== null) clearTimeout(this.timer);
    if (this.immediate !== null) clearImmediate(this.immediate);
    this.timer = null;
    this.immediate = null;
  }

  private later(delayMs: number, step: () => void): void {
    if (this.stopped) return;
    this.timer = setTimeout(step, delayMs);
  }

  private now(step: () => void): void {
    if (this.stopped) return;
    this.immediate = setImmediate(step);
  }

  private tick(): void {
    const pass = this.pass('PASSIVE');
    if (pass === null || pass.log < this.options.rewindFramesMin) return this.later(this.options.intervalMs, () => this.tick());
    // Nothing published since the last chase found the writer idle: its next commit rewinds the log.
    if (pass.log === this.idleLog && pass.checkpointed === pass.log) return this.later(this.options.intervalMs, () => this.tick());
    this.chase(pass, 1, null);
  }

  /**
   * One pass of a chase. steadySinceMs: when the log was first seen wholly copied at
   * its present length, or null.
   */
  private chase(previous: Pass, passes: number, steadySinceMs: number | null): void {
    const pass = this.pass('PASSIVE');
    // The log is shorter than at the last pass: a commit found it wholly copied and
    // rewound it (only walRestartHdr, at a rewind, lowers a log's length).
    if (pass !== null && pass.log < previous.log) return this.chaseEnded('writer', passes + 1);
    const nowMs = performance.now();
    // A pass copies the frames published when it began, so it is nearly always
    // "caught up"; that says nothing of the writer. A commit is published only after
    // its fsync, so the log staying the same for a pass or two does not mean the
    // writer is idle either: it must stay the same for writerIdleMs.
    const caughtUp = pass !== null && pass.log === pass.checkpointed;
    let steadyMs: number | null = null;
    if (caughtUp) steadyMs = pass.log === previous.log && steadySinceMs !== null ? steadySinceMs : nowMs;
    if (pass !== null && steadyMs !== null && nowMs - steadyMs >= this.options.writerIdleMs) {
      this.idleLog = pass.log;
      return this.chaseEnded('next-commit', passes + 1);
    }
    if (passes + 1 >= this.options.chasePassesMax) {
      const log = pass === null ? previous.log : pass.log;
      if (log < this.options.restartFramesMin) return this.chaseEnded('deferred', passes + 1);
      return this.chaseEnded(this.restart() ? 'restart' : 'deferred', passes + 1);
    }
    const next = (): void => this.chase(pass ?? previous, passes + 1, steadyMs);
    // Caught up: give the writer a moment to begin its next commit (and rewind) before
    // looking again. Otherwise copy what arrived during this pass on the next turn.
    if (caughtUp) this.later(1, next);
    else this.now(next);
  }

  private chaseEnded(outcome: RewindOutcome, passes: number): void {
    this.later(this.options.intervalMs, () => this.tick());
    this.options.onChase(outcome, passes);
  }

  /**
   * Copies every frame and waits for readers, with the write lock held (at most
   * restartWaitMs for each); the writer's next transaction then starts the log over.
   */
  private restart(): boolean {
    this.db.pragma(`busy_timeout = ${this.options.restartWaitMs}`);
    try {
      return this.pass('RESTART') !== null;
    } finally {
      this.db.pragma('busy_timeout = 0');
    }
  }

  /** One checkpoint; null when it could not finish (another checkpoint, a lock held, readers, an I/O error). */
  private pass(mode: 'PASSIVE' | 'RESTART'): Pass | null {
    try {
      const [row] = this.db.pragma(`wal_checkpoint(${mode})`) as Array<{ busy: number; log: number; checkpointed: number }>;
      // busy: the checkpoint lock was taken (both counts are then -1), or a RESTART
      // could not take the write lock or found readers in its way.
      if (row === undefined || row.busy !== 0 || row.log < 0) return null;
      return { log: row.log, checkpointed: row.checkpointed };
    } catch {
      return null;
    }
  }
}
