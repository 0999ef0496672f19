// Every bound in the system lives here, named with its unit, so that the
// relations between them can be asserted once at start-up (see assertLimits).

export const limits = {
  /** Largest channel request body the gateway accepts. */
  requestBodyBytesMax: 16 * 1024,
  /** Largest amount in minor units that any request may carry (10^13 = 100 billion major units). */
  amountMinorMax: 10_000_000_000_000,
  /**
   * Largest credit limit an account may be opened with, in minor units (10^10 = 100
   * million major units). It bounds the balances interest accrues on: see assertLimits.
   */
  creditLimitMinorMax: 10_000_000_000,
  /** Largest annual rate a product may charge, in basis points (100%). */
  aprBpsMax: 10_000,
  /** Operations the gateway packs into one upstream batch to a unit. */
  batchOpsMax: 1024,
  /** Upstream batches in flight per unit; later requests wait and form the next batch. */
  batchesInflightPerUnitMax: 1,
  /** Operations a unit applies in one SQLite transaction (group commit). */
  groupCommitSizeMax: 4096,
  /**
   * Background operations (batch accounting's postings beside live traffic) one
   * commit carries at most: a settlement costs a unit ~35 us, so a commit grows by
   * about 0.15 ms at most. With 16, the send step of a 200,000-account batch beside
   * 2,000 authorizations/s raised their per-second p99 to a median of 8.6 ms
   * (4.7 ms without the batch); with 4, to 5.7 ms, while the send took 77 s instead
   * of 30 s (BENCHMARKS.md). Beside live traffic the batch yields; a batch window
   * without it uses the normal lane.
   */
  backgroundOpsPerCommit: 4,
  /**
   * Background operations a commit carries when no live operation is in it (the unit
   * had nothing else to do after backgroundPauseMs). Each commit costs its fsync and
   * writes every page it dirtied to the WAL whole, so 4 settlements alone cost a unit
   * 129-156 us of CPU and 10.4 KiB of writes each, 16 alone 75 us and 5.4 KiB, and 250 in
   * a batch window 46 us and 2.3 KiB (loadtest/probes/settle-http.mjs). An authorization
   * that arrives during such a commit waits for it: 16 settlements are under 1 ms.
   */
  backgroundOpsPerIdleCommit: 16,
  /** Pause before a commit that carries background operations alone, for waiting live traffic to go first. */
  backgroundPauseMs: 1,
  /**
   * Share of a unit's time that its commits of background work alone may take: after
   * one that took t ms, the next waits t * (1 - share) / share (3t at 0.25). 4 postings
   * alone after a 1 ms pause took about 30% of a core at 2,000/s per unit.
   */
  backgroundIdleShareMax: 0.25,
  /** Requests in flight per channel at the gateway before it sheds with 429. */
  inflightPerChannelMax: 4096,
  /**
   * Connections the gateway's listening socket queues before accepting them (the
   * kernel caps it at net.core.somaxconn). Node's default of 511 made a surge of
   * new connections wait for SYN retransmits (1 s, then 3 s) instead of reaching
   * the per-channel bound.
   */
  acceptBacklogConnections: 4096,
  /** Time the gateway waits for a unit to answer a batch before answering 91. */
  unitRequestTimeoutMs: 3_000,
  /** Time the gateway waits to connect to a unit. */
  unitConnectTimeoutMs: 1_000,
  /** After a unit failed, the gateway answers its requests with a fast 91 for this long before probing again. */
  unitDownBackoffMs: 250,
  /** Keep-alive HTTP connections per unit for reads (balance inquiries, health checks); writes go on the unit wire. */
  unitReadConnectionsMax: 2,
  /** Account ids tried when a freshly drawn one already exists. */
  accountIdAttemptsMax: 5,
  /** Accounts opened per bulk-issuance request. */
  issuanceBatchAccountsMax: 2_000,
  /** Journal entries per feed page. */
  journalPageEntriesMax: 10_000,
  /** A commit finding the store's write lock taken (the unit's other instance) retries after this long. */
  storeLockRetryMs: 1,
  /** After this long without the write lock, a commit gives up and answers 96 (system error). */
  storeLockWaitMsMax: 5_000,
  /** The primary waits this long for the standby to acknowledge commits before it goes single-copy. */
  replicationTimeoutMs: 500,
  /** Commits one replication request carries at most. */
  replicationBatchCommitsMax: 512,
  /** Commits the primary keeps to catch a returning standby up without a snapshot. */
  replicationLogCommitsMax: 100_000,
  /** A single-copy primary looks for its standby this often. */
  replicationResyncIntervalMs: 500,
  /** Time to send a store snapshot to a standby. */
  replicationSnapshotTimeoutMs: 120_000,
  /** The gateway reads the HA status of every unit copy this often. */
  haPollIntervalMs: 100,
  /** A status read unanswered this long counts as a failed health check. */
  haPollTimeoutMs: 250,
  /** Consecutive failed health checks of a primary before its unit switches to the standby. */
  haFailuresToSwitch: 2,
  /** Operations the gateway holds per unit while it switches; more get a fast 91. */
  failoverBufferOpsMax: 20_000,
  /** Longest an operation waits in the failover buffer before it gets a 91. */
  failoverBufferMsMax: 2_000,
  /** Largest commit delay the fault injection (POST /admin/fault on a unit) may set. */
  injectedCommitDelayMsMax: 2_000,
  /** How far the simulated clock may run ahead of the real one, in all: 100 years. */
  clockOffsetMsMax: 100 * 366 * 24 * 3_600_000,
  /** The launcher (npm start -- --ha) restarts a unit copy that died this long after its exit. */
  copyRestartDelayMs: 1_000,
  /** Most restarts of one copy within copyRestartWindowMs; a copy that keeps dying is left down and said so. */
  copyRestartsPerWindowMax: 5,
  copyRestartWindowMs: 60_000,
  /** Supplementary cards per account (card sequence digit 1..9). */
  supplementaryCardsMax: 9,
} as const;

export function assertLimits(): void {
  // An upstream batch must fit into one group commit, or a batch could be split across transactions.
  assert(limits.batchOpsMax <= limits.groupCommitSizeMax, 'batchOpsMax <= groupCommitSizeMax');
  assert(limits.creditLimitMinorMax <= limits.amountMinorMax, 'creditLimitMinorMax <= amountMinorMax');
  // Interest accrues in units of balance * aprBps a day, summed over a billing cycle
  // (at most 31 days) before it is posted; with balances up to twice the largest
  // credit limit the sum stays exact in a double.
  assert(2 * limits.creditLimitMinorMax * limits.aprBpsMax * 31 < Number.MAX_SAFE_INTEGER, 'a cycle of accrued interest units stays exact');
  // A commit with live operations leaves them room; background work alone may take more, never a whole group commit.
  assert(limits.backgroundOpsPerCommit <= limits.backgroundOpsPerIdleCommit, 'backgroundOpsPerCommit <= backgroundOpsPerIdleCommit');
  assert(limits.backgroundOpsPerIdleCommit < limits.groupCommitSizeMax, 'backgroundOpsPerIdleCommit < groupCommitSizeMax');
  assert(limits.backgroundIdleShareMax > 0 && limits.backgroundIdleShareMax <= 1, '0 < backgroundIdleShareMax <= 1');
  // Sums of many holds must stay exact in a double: 2^53 / amountMinorMax leaves room for ~900 maximal holds.
  assert(limits.amountMinorMax * 900 < Number.MAX_SAFE_INTEGER, 'amountMinorMax leaves headroom for sums');
  assert(limits.unitConnectTimeoutMs < limits.unitRequestTimeoutMs, 'connect timeout < request timeout');
  // A restarted copy comes back as standby; the gateway should have switched away from it (or marked it failed) first.
  assert(limits.haPollIntervalMs * limits.haFailuresToSwitch + limits.haPollTimeoutMs < limits.copyRestartDelayMs, 'a copy restarts after the gateway has noticed its death');
  assert(limits.copyRestartDelayMs * limits.copyRestartsPerWindowMax < limits.copyRestartWindowMs, 'the restart bound can be reached within its window');
}

export function assert(condition: unknown, message: string): asserts condition {
  if (!condition) throw new Error(`assertion failed: ${message}`);
}
