import { readFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { adminHeaders } from './admin-request.js';
import { hookTimeoutMs, registerHookAction, unknownArg, type HookContext } from './hooks.js';
import { loadtestLimits } from './limits.js';

// Hook action "kill-unit": a fault in one copy of an HA unit during a load test,
// so the report shows what a failover costs at the moment it happens.
//
// It reads GET /admin/ha on the gateway to find the copy (the unit's primary or
// its standby), reads the copy's pid from GET {copy}/ha/status, and signals it
// with process.kill: the load tester must run on the cluster's machine, so it
// refuses a gateway or a copy whose URL is not a loopback address, and a pid
// that is not a DSU unit process here. After killing a primary it waits for
// the gateway's switch record of that unit, whose time is the hook's outcome:
//   killed dsu-1 primary (pid 1234, http://127.0.0.1:8101); switched to http://127.0.0.1:8301 in 142 ms
// A SIGSTOP (a frozen process: a long GC pause, a stalled disk) is followed by
// SIGCONT after resumeAfterMs, also when the run ends or the hook times out first.

export const killUnitCopies = ['primary', 'standby'] as const;
export const killUnitSignals = ['SIGKILL', 'SIGSTOP'] as const;
type KillCopy = (typeof killUnitCopies)[number];
type KillSignal = (typeof killUnitSignals)[number];

export const killUnitWaitSwitchMsDefault = 5_000;
// Longer than the gateway takes to notice a frozen copy (about 2 s: its health checks time out rather than being refused).
export const killUnitResumeAfterMsDefault = 3_000;
/** Time the hook needs beside its waits: the status reads before the signal. */
const killUnitReadsMs = 1_000;
/** How often the hook reads GET /admin/ha while it waits for the switch; the gateway checks copies every 100 ms. */
const switchPollIntervalMs = 25;

const argFields = ['unit', 'copy', 'signal', 'resumeAfterMs', 'waitSwitchMs'];

interface KillUnitArgs {
  unit: string;
  copy: KillCopy;
  signal: KillSignal;
  /** For SIGSTOP only, else null. */
  resumeAfterMs: number | null;
  /** For a primary only, else null. */
  waitSwitchMs: number | null;
}

/** The args with their defaults; call only after validateKillUnitArgs returned null. */
function killUnitArgs(args: Readonly<Record<string, unknown>>): KillUnitArgs {
  const copy = (args['copy'] as KillCopy | undefined) ?? 'primary';
  const signal = (args['signal'] as KillSignal | undefined) ?? 'SIGKILL';
  return {
    unit: args['unit'] as string, copy, signal,
    resumeAfterMs: signal === 'SIGSTOP' ? (args['resumeAfterMs'] as number | undefined) ?? killUnitResumeAfterMsDefault : null,
    waitSwitchMs: copy === 'primary' ? (args['waitSwitchMs'] as number | undefined) ?? killUnitWaitSwitchMsDefault : null,
  };
}

function integerIn(value: unknown, min: number, max: number): boolean {
  return typeof value === 'number' && Number.isInteger(value) && value >= min && value <= max;
}

/** Checks kill-unit's args when the scenario is loaded; a message naming the field, or null. */
export function validateKillUnitArgs(args: Readonly<Record<string, unknown>>): string | null {
  const unknown = unknownArg(args, argFields);
  if (unknown !== null) return unknown;
  if (typeof args['unit'] !== 'string' || !/^[a-z0-9-]{1,32}$/.test(args['unit'])) return 'args.unit must be a unit id such as "dsu-1"';
  if (args['copy'] !== undefined && !killUnitCopies.includes(args['copy'] as KillCopy)) return `args.copy must be one of ${killUnitCopies.join(', ')}`;
  if (args['signal'] !== undefined && !killUnitSignals.includes(args['signal'] as KillSignal)) return `args.signal must be one of ${killUnitSignals.join(', ')}`;
  if (args['resumeAfterMs'] !== undefined) {
    if (args['signal'] !== 'SIGSTOP') return 'args.resumeAfterMs goes with signal "SIGSTOP" only (a killed process does not resume)';
    if (!integerIn(args['resumeAfterMs'], 1, loadtestLimits.killUnitResumeAfterMsMax)) return `args.resumeAfterMs must be an integer in [1, ${loadtestLimits.killUnitResumeAfterMsMax}]`;
  }
  if (args['waitSwitchMs'] !== undefined) {
    if (args['copy'] === 'standby') return 'args.waitSwitchMs goes with copy "primary" only (a standby\'s death switches nothing)';
    if (!integerIn(args['waitSwitchMs'], 1, loadtestLimits.killUnitWaitSwitchMsMax)) return `args.waitSwitchMs must be an integer in [1, ${loadtestLimits.killUnitWaitSwitchMsMax}]`;
  }
  const parsed = killUnitArgs(args);
  const neededMs = Math.max(parsed.resumeAfterMs ?? 0, parsed.waitSwitchMs ?? 0) + killUnitReadsMs;
  if (neededMs > hookTimeoutMs(args)) return `this hook may take ${neededMs} ms (its waits and ${killUnitReadsMs} ms of status reads): set args.timeoutMs to at least ${neededMs}`;
  return null;
}

/** True for http(s) URLs on this machine: 127.0.0.0/8, localhost or [::1]. */
export function isLoopbackUrl(url: string): boolean {
  const host = new URL(url).hostname;
  return host === 'localhost' || host === '[::1]' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(host);
}

function requireLoopback(url: string, what: string): void {
  if (!isLoopbackUrl(url)) throw new Error(`kill-unit signals processes on this machine only, and ${what} is at ${url}, not a loopback address: run the load tester on the cluster's machine`);
}

interface HaCopyView {
  url: string;
}

interface HaUnitView {
  unit: string;
  state: string;
  primary: string | null;
  copies: HaCopyView[];
}

interface SwitchView {
  unit: string;
  to: number;
  switchMs: number;
}

interface HaView {
  units: HaUnitView[];
  switches: SwitchView[];
}

async function readHa(context: HookContext): Promise<HaView> {
  const response = await fetch(new URL('/admin/ha', context.gatewayUrl), { headers: adminHeaders(), signal: context.signal });
  const text = await response.text();
  if (response.status !== 200) throw new Error(`GET /admin/ha -> ${response.status} ${text.slice(0, 200)}${response.status === 401 ? ' (set ADMIN_TOKEN to the gateway\'s admin token)' : ''}`);
  return JSON.parse(text) as HaView;
}

/** The URL of the copy to signal, from the gateway's view of the unit; throws when there is none. */
export function copyUrlOf(view: HaView, unitId: string, copy: KillCopy): string {
  const unit = view.units.find((each) => each.unit === unitId);
  if (unit === undefined) {
    const haUnits = view.units.map((each) => each.unit).join(', ') || 'none';
    throw new Error(`unit ${unitId} has no standby: the gateway runs no HA pair for it (HA units: ${haUnits}); start the cluster with npm start -- --ha`);
  }
  if (unit.state !== 'up' || unit.primary === null) throw new Error(`unit ${unitId} is ${unit.state} with no primary taking writes: nothing to fail over from`);
  if (copy === 'primary') return unit.primary;
  const standby = unit.copies.find((each) => each.url !== unit.primary);
  if (standby === undefined) throw new Error(`unit ${unitId} lists no copy besides its primary`);
  return standby.url;
}

/** The pid the copy reports, checked to be a unit process of this machine that plays the expected role. */
async function pidOf(url: string, unitId: string, copy: KillCopy, context: HookContext): Promise<number> {
  const response = await fetch(new URL('/ha/status', url), { signal: context.signal });
  if (response.status !== 200) throw new Error(`GET ${url}/ha/status -> ${response.status}`);
  const status = (await response.json()) as { unit?: unknown; pid?: unknown; role?: unknown };
  if (status.unit !== unitId || status.role !== copy) throw new Error(`${url} says it is unit ${String(status.unit)}'s ${String(status.role)}, not ${unitId}'s ${copy}`);
  const pid = status.pid;
  if (typeof pid !== 'number' || !Number.isInteger(pid) || pid <= 1 || pid === process.pid) throw new Error(`${url} reports pid ${String(pid)}, not a unit process`);
  requireUnitProcess(pid);
  return pid;
}

/** Where /proc exists (Linux), the pid must be a DSU unit process here: a pid from another machine would name some other process. */
function requireUnitProcess(pid: number): void {
  let commandLine: string;
  try {
    commandLine = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT' && !procMounted()) return;
    throw new Error(`pid ${pid} is no process on this machine: run the load tester on the cluster's machine`);
  }
  if (!commandLine.includes('units/main')) throw new Error(`pid ${pid} is not a DSU unit process (${commandLine.replace(/\0/g, ' ').slice(0, 120)})`);
}

function procMounted(): boolean {
  try {
    readFileSync('/proc/self/cmdline');
    return true;
  } catch {
    return false;
  }
}

/** Waits for the gateway's next switch record of the unit; null after `waitMs`. */
async function nextSwitch(context: HookContext, unitId: string, switchesBefore: number, waitMs: number): Promise<{ record: SwitchView; url: string } | null> {
  const deadline = performance.now() + waitMs;
  for (;;) {
    const view = await readHa(context);
    const records = view.switches.filter((record) => record.unit === unitId);
    const record = records[switchesBefore];
    if (record !== undefined) return { record, url: view.units.find((unit) => unit.unit === unitId)?.copies[record.to]?.url ?? '?' };
    if (performance.now() >= deadline) return null;
    await sleep(switchPollIntervalMs, undefined, { signal: context.signal });
  }
}

/** Sends SIGCONT after `ms`, or at once when the hook is aborted; a frozen copy is never left behind. */
async function resumeAfter(pid: number, ms: number, signal: AbortSignal): Promise<void> {
  try {
    await sleep(ms, undefined, { signal });
  } catch {
    // Aborted: resume now.
  }
  try {
    process.kill(pid, 'SIGCONT');
  } catch {
    // The process is gone already.
  }
}

async function runKillUnit(rawArgs: Readonly<Record<string, unknown>>, context: HookContext): Promise<string> {
  const args = killUnitArgs(rawArgs);
  requireLoopback(context.gatewayUrl, 'the gateway');
  const before = await readHa(context);
  const url = copyUrlOf(before, args.unit, args.copy);
  requireLoopback(url, `the ${args.copy} of ${args.unit}`);
  const pid = await pidOf(url, args.unit, args.copy, context);
  const switchesBefore = before.switches.filter((record) => record.unit === args.unit).length;
  process.kill(pid, args.signal);
  const what = args.signal === 'SIGKILL' ? `killed ${args.unit} ${args.copy}` : `froze ${args.unit} ${args.copy} for ${args.resumeAfterMs} ms`;
  const done = `${what} (pid ${pid}, ${url})`;
  context.log(`[hook @${context.atSecond}s] ${done}`);
  const resumed = args.resumeAfterMs === null ? Promise.resolve() : resumeAfter(pid, args.resumeAfterMs, context.signal);
  try {
    if (args.waitSwitchMs === null) return `${done}; the primary stays ${before.units.find((unit) => unit.unit === args.unit)?.primary ?? '?'}`;
    const switched = await nextSwitch(context, args.unit, switchesBefore, args.waitSwitchMs);
    if (switched === null) throw new Error(`${done}; no switch of ${args.unit} within ${args.waitSwitchMs} ms`);
    return `${done}; switched to ${switched.url} in ${switched.record.switchMs} ms`;
  } finally {
    await resumed;
  }
}

registerHookAction('kill-unit', {
  description: 'kill -9 (or SIGSTOP) one copy of an HA unit and wait for the switch: args {unit, copy? (primary|standby, default primary), ' +
    `signal? (SIGKILL|SIGSTOP), resumeAfterMs? (SIGSTOP: SIGCONT after, default ${killUnitResumeAfterMsDefault}), waitSwitchMs? (default ${killUnitWaitSwitchMsDefault})}. ` +
    'Signals the process itself: the load tester must run on the cluster\'s machine (loopback URLs only); needs npm start -- --ha',
  validateArgs: validateKillUnitArgs,
  run: runKillUnit,
});
