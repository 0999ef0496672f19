// Every bound of the load tester in one place, so a reader can see how they
// relate and the start-up assertions below can check it.

export const loadtestLimits = {
  /** Cards read from a portfolio file; more would only cost memory. */
  cardsMax: 2_000_000,
  /** Approved authorizations remembered for reversals and increments (FIFO). */
  approvalsRememberedMax: 10_000,
  /** Earlier requests remembered for idempotent retries (ring buffer). */
  retryWindowMax: 1_024,
  /** Distinct merchant ids per channel in the synthetic merchant population. */
  merchantsPerChannelMax: 100_000,
  /** Cards in the hot set. */
  hotAccountsMax: 1_000,
  /** One phase never runs longer than an hour. */
  phaseSecondsMax: 3_600,
  /** A whole scenario never runs longer than two hours. */
  scenarioSecondsMax: 7_200,
  /** Phases in one scenario. */
  phasesMax: 64,
  /** Hooks in one scenario. */
  hooksMax: 256,
  /** Concurrent connections (closed loop) or connection pool (fixed rate). */
  connectionsMax: 4_096,
  /** Requests per second in fixed-rate mode. */
  rateMax: 200_000,
  /**
   * Requests sent and not yet answered in fixed-rate mode, whatever rate * timeout
   * says. Each costs its request, body and the client's bookkeeping, measured at
   * 0.9 KB of heap and 1.3 KB of RSS with undici 7 (the raw client keeps less), so the backlog stays
   * under about 130 MB.
   */
  outstandingRequestsMax: 100_000,
  /** Distinct keys kept per breakdown dimension (unit, channel, version); the rest fold into "other". */
  breakdownKeysMax: 32,
  /** Distinct status / response-code labels kept per second. */
  codeLabelsMax: 64,
  /** Synthetic samples one response may add in the coordinated-omission correction. */
  correctionSamplesPerResponseMax: 100_000,
  /** Latencies above this are clamped into the top histogram bucket (one hour, in microseconds). */
  latencyMicrosMax: 3_600_000_000,
  /** A hook that runs longer is abandoned and recorded as failed. */
  hookTimeoutMsMax: 60_000,
  /** Longest the kill-unit hook waits for the gateway to switch the unit to its standby. */
  killUnitWaitSwitchMsMax: 30_000,
  /** Longest the kill-unit hook keeps a copy frozen (SIGSTOP) before it sends SIGCONT. */
  killUnitResumeAfterMsMax: 30_000,
  /** Response bodies longer than this are not parsed (they are not ours). */
  responseBodyCharsMax: 64 * 1024,
} as const;

export function assertLoadtest(condition: boolean, message: string): asserts condition {
  if (!condition) throw new Error(`loadtest assertion failed: ${message}`);
}

assertLoadtest(loadtestLimits.phaseSecondsMax <= loadtestLimits.scenarioSecondsMax, 'a phase fits in a scenario');
assertLoadtest(loadtestLimits.hotAccountsMax < loadtestLimits.cardsMax, 'the hot set is a subset of the cards');
assertLoadtest(loadtestLimits.connectionsMax <= loadtestLimits.outstandingRequestsMax, 'the backlog bound can keep every connection busy');
assertLoadtest(loadtestLimits.retryWindowMax <= loadtestLimits.approvalsRememberedMax, 'retry window is the smaller memory');
// The kill-unit hook waits for the switch while the copy is frozen, so the longer of the two must fit in a hook.
assertLoadtest(Math.max(loadtestLimits.killUnitWaitSwitchMsMax, loadtestLimits.killUnitResumeAfterMsMax) < loadtestLimits.hookTimeoutMsMax, 'a kill-unit hook fits in the hook timeout');
