import { runHook } from './hooks.js';
import type { ScenarioHook } from './hooks.js';
import { PhaseCollector } from './phase-collector.js';
import type { HookRecord, PhaseResult, RunResult, SecondBucket } from './run-result.js';
import { runPhase } from './runner.js';
import { scenarioSeconds } from './scenario.js';
import type { Scenario } from './scenario.js';
import type { Workload } from './workload.js';

// Runs a scenario: its phases one after the other on one workload model (so
// follow-ups learned in one phase continue in the next), and its hooks on a
// timer measured from the start of the run, beside the load.

export interface RunScenarioOptions {
  scenario: Scenario;
  url: string;
  workload: Workload;
  /** Recorded in the result so the run can be replayed. */
  seed: number;
  timeoutSeconds?: number;
  /** Called once per finished second with the elapsed run seconds and the planned total. */
  onSecond?: (bucket: SecondBucket, elapsedSeconds: number, totalSeconds: number) => void;
  log?: (line: string) => void;
  signal?: AbortSignal;
  /** Monotonic milliseconds; injectable for tests. */
  clock?: () => number;
  /** Wall clock for the start and finish stamps; injectable for tests. */
  wallClock?: () => Date;
}

interface HookSchedule {
  /** Cancels hooks not yet started and waits for the started ones. */
  finish(): Promise<HookRecord[]>;
}

function scheduleHooks(hooks: readonly ScenarioHook[], url: string, log: (line: string) => void, signal: AbortSignal | undefined): HookSchedule {
  const running: Array<Promise<HookRecord>> = [];
  const pending = new Map<ScenarioHook, NodeJS.Timeout>();
  for (const hook of hooks) {
    const timer = setTimeout(() => {
      pending.delete(hook);
      running.push(runHook(hook, url, log, signal).then((record) => {
        // The log action already printed its line.
        if (hook.action !== 'log' || !record.ok) log(`[hook @${hook.atSecond}s] ${hook.action} ${record.ok ? 'ok' : 'FAILED'}: ${record.detail}`);
        return record;
      }));
    }, hook.atSecond * 1000);
    pending.set(hook, timer);
  }
  return {
    finish: async () => {
      const skipped: HookRecord[] = [...pending].map(([hook, timer]) => {
        clearTimeout(timer);
        return { atSecond: hook.atSecond, action: hook.action, args: hook.args, ok: false, detail: 'not run: the run ended first', durationMs: 0 };
      });
      const ran = await Promise.all(running);
      return [...ran, ...skipped].sort((a, b) => a.atSecond - b.atSecond);
    },
  };
}

/** Why a closed-loop ramp should stop here, or null to go on. */
export function saturationReason(scenario: Scenario, done: readonly PhaseResult[]): string | null {
  const rule = scenario.stopAtSaturation;
  const last = done[done.length - 1];
  if (rule === null || last === undefined || last.mode !== 'closed') return null;
  const earlier = done.slice(0, -1).filter((phase) => phase.mode === 'closed');
  if (earlier.length === 0) return null;
  const best = Math.max(...earlier.map((phase) => phase.totals.throughputMedian));
  if (last.totals.throughputMedian >= best * (1 + rule.throughputGainMinPercent / 100)) return null;
  return `saturated: phase "${last.name}" with ${last.connections} connections reached ${last.totals.throughputMedian}/s, ` +
    `less than ${rule.throughputGainMinPercent}% above the best earlier phase (${best}/s)`;
}

export async function runScenario(options: RunScenarioOptions): Promise<RunResult> {
  const { scenario, workload } = options;
  const clock = options.clock ?? (() => performance.now());
  const wallClock = options.wallClock ?? (() => new Date());
  const log = options.log ?? ((line: string) => process.stderr.write(`${line}\n`));
  const startedAt = wallClock().toISOString();
  const runStartMs = clock();
  const totalSeconds = scenarioSeconds(scenario);
  const runCollector = new PhaseCollector({ phase: 'run', startMs: runStartMs, startSecond: 0, correctionIntervalMs: null, durationSeconds: null });
  const hooks = scheduleHooks(scenario.hooks, options.url, log, options.signal);
  const phases: PhaseResult[] = [];
  let stoppedEarly: string | null = null;
  for (const phase of scenario.phases) {
    if (isAborted(options.signal)) {
      stoppedEarly = 'interrupted';
      break;
    }
    workload.reconfigure(phase.workload);
    // Phases are laid end to end on the time axis; hooks run on the wall clock, within a second of it.
    const previous = phases[phases.length - 1];
    const startSecond = previous === undefined ? 0 : previous.startSecond + previous.seconds.length;
    phases.push(await runPhase({
      url: options.url, workload, mode: phase.mode, connections: phase.connections, rate: phase.rate,
      durationSeconds: phase.durationSeconds, name: phase.name, startSecond, runCollector, clock,
      ...(options.timeoutSeconds === undefined ? {} : { timeoutSeconds: options.timeoutSeconds }),
      ...(options.signal === undefined ? {} : { signal: options.signal }),
      onSecond: (bucket) => options.onSecond?.(bucket, bucket.second + 1, totalSeconds),
    }));
    stoppedEarly = isAborted(options.signal) ? 'interrupted' : saturationReason(scenario, phases);
    if (stoppedEarly !== null) break;
  }
  const hookRecords = await hooks.finish();
  return {
    formatVersion: 1,
    scenario: scenario.name,
    description: scenario.description,
    url: options.url,
    seed: options.seed,
    startedAt,
    finishedAt: wallClock().toISOString(),
    stoppedEarly,
    phases,
    hooks: hookRecords,
    totals: runCollector.finish(clock()),
  };
}

/** A function rather than an inline check: the signal changes while the phase awaits. */
function isAborted(signal: AbortSignal | undefined): boolean {
  return signal?.aborted === true;
}
