import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { Version } from '../domain/gray.js';
import type { UnitOp } from '../domain/protocol.js';
import type { CommitStats } from './group-commit.js';
import type { RewindOutcome } from './wal-checkpointer.js';

// Unit metrics, labelled children cached so the authorization path does not hash label sets.

export class UnitMetrics implements CommitStats {
  readonly registry = new Registry();
  private readonly operations: Counter<'unit' | 'op' | 'channel' | 'code' | 'version'>;
  private readonly commitOps: Histogram<'unit'>;
  private readonly commitSeconds: Histogram<'unit'>;
  private readonly children = new Map<string, Counter.Internal>();

  constructor(private readonly unitId: string, release: string, private readonly role: Version) {
    // Every series of an instance carries its release, so a stable and a gray
    // instance of one unit are told apart (the version of each operation is a label below).
    this.registry.setDefaultLabels({ release });
    collectDefaultMetrics({ register: this.registry, prefix: 'dsu_unit_' });
    this.operations = new Counter({
      name: 'dsu_unit_operations_total',
      help: 'Operations applied by the unit, by operation, channel and ISO 8583 response code (- when none).',
      labelNames: ['unit', 'op', 'channel', 'code', 'version'],
      registers: [this.registry],
    });
    this.commitOps = new Histogram({
      name: 'dsu_unit_group_commit_operations',
      help: 'Operations per group commit (one SQLite transaction and one fsync).',
      labelNames: ['unit'],
      buckets: [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096],
      registers: [this.registry],
    });
    this.commitSeconds = new Histogram({
      name: 'dsu_unit_group_commit_duration_seconds',
      help: 'Time to apply and commit one group commit, fsync included.',
      labelNames: ['unit'],
      buckets: [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25],
      registers: [this.registry],
    });
  }

  private readonly lockRetries = new Counter({
    name: 'dsu_unit_store_lock_retries_total',
    help: 'Group commits retried on the next turn because the store\'s write lock was held: by a RESTART checkpoint, or by the unit\'s other instance (gray release).',
    registers: [this.registry],
  });

  private readonly walChases = new Counter({
    name: 'dsu_unit_wal_chases_total',
    help: 'Chases of the store\'s background checkpoint after the writer (units/wal-checkpointer.ts), by how they ended: writer (a commit rewound the log), next-commit (log wholly copied, the idle writer rewinds it), restart (a RESTART checkpoint rewound it, holding commits back), deferred.',
    labelNames: ['outcome'],
    registers: [this.registry],
  });

  private readonly walChasePasses = new Histogram({
    name: 'dsu_unit_wal_chase_passes',
    help: 'PASSIVE checkpoint passes in one chase of the writer.',
    buckets: [1, 2, 4, 8, 16, 32, 64],
    registers: [this.registry],
  });

  private readonly haRole = new Gauge({
    name: 'dsu_unit_ha_role',
    help: 'This copy\'s role in its HA pair: 1 for the role it has (solo, primary or standby), 0 for the others.',
    labelNames: ['role'],
    registers: [this.registry],
  });

  private readonly singleCopy = new Gauge({
    name: 'dsu_unit_single_copy',
    help: '1 while a primary runs without a standby in sync: an approval is then durable on the primary alone.',
    registers: [this.registry],
  });

  onHaState(role: string, replication: string | null): void {
    for (const each of ['solo', 'primary', 'standby']) this.haRole.labels(each).set(each === role ? 1 : 0);
    this.singleCopy.set(role === 'primary' && replication !== 'sync' ? 1 : 0);
  }

  onWalChase(outcome: RewindOutcome, passes: number): void {
    this.walChases.labels(outcome).inc();
    this.walChasePasses.observe(passes);
  }

  onLockRetry(): void {
    this.lockRetries.inc();
  }

  onCommit(opsCount: number, seconds: number): void {
    this.commitOps.labels(this.unitId).observe(opsCount);
    this.commitSeconds.labels(this.unitId).observe(seconds);
  }

  onOp(op: UnitOp, code: string): void {
    const channel = op.op === 'authorize' ? op.channel : '-';
    const version = op.version ?? this.role;
    const key = `${op.op}|${channel}|${code}|${version}`;
    let child = this.children.get(key);
    if (child === undefined) {
      child = this.operations.labels(this.unitId, op.op, channel, code, version);
      this.children.set(key, child);
    }
    child.inc();
  }
}
