import { maskCardNumbers } from '../domain/pan.js';
import { loadtestLimits } from './limits.js';
import type { HookRecord } from './run-result.js';

// Scenario hooks: actions run at a given second of a run (toggle a gray
// release, start a batch, kill a unit, call an admin endpoint). Actions live
// in a registry so other modules can add theirs without this folder knowing
// them: `registerHookAction('batch-start', {...})`. A scenario is checked
// against the registry when it is loaded, so an action must be registered
// before `loadScenario` is called; `http` and `log` are registered here, the
// gray actions in gray-hooks.ts and kill-unit in ha-hooks.ts (both imported by
// the CLI and index.ts, so they are there by default).

export interface HookContext {
  /** Base URL of the gateway under test, e.g. http://127.0.0.1:8080. */
  gatewayUrl: string;
  atSecond: number;
  /** Aborted when the hook's timeout passes or the run is interrupted. */
  signal: AbortSignal;
  log(line: string): void;
}

/** Runs the action; the returned text is recorded as the hook's outcome. Throwing records a failure. */
export type HookRun = (args: Readonly<Record<string, unknown>>, context: HookContext) => Promise<string | void>;

export interface HookActionDefinition {
  /** One line for --help. */
  description: string;
  run: HookRun;
  /** Checks args at scenario load time; returns a message or null. */
  validateArgs?: (args: Readonly<Record<string, unknown>>) => string | null;
}

export interface ScenarioHook {
  atSecond: number;
  action: string;
  args: Record<string, unknown>;
}

const registry = new Map<string, HookActionDefinition>();

const actionNamePattern = /^[a-z][a-z0-9-]{0,39}$/;

/** Registers an action under `name`; registering a name twice is a programming error. */
export function registerHookAction(name: string, definition: HookActionDefinition): void {
  if (!actionNamePattern.test(name)) throw new Error(`hook action name "${name}" must be lowercase letters, digits and dashes`);
  if (registry.has(name)) throw new Error(`hook action "${name}" is already registered`);
  registry.set(name, definition);
}

/** Removes an action (tests, or a module replacing its own action). */
export function unregisterHookAction(name: string): boolean {
  return registry.delete(name);
}

export function getHookAction(name: string): HookActionDefinition | undefined {
  return registry.get(name);
}

export function hookActionNames(): string[] {
  return [...registry.keys()].sort();
}

export const hookTimeoutMsDefault = 10_000;

/** For validateArgs: the first field of `args` that the action does not define, as a message, or null. `timeoutMs` belongs to every action. */
export function unknownArg(args: Readonly<Record<string, unknown>>, allowed: readonly string[]): string | null {
  const unknown = Object.keys(args).find((key) => key !== 'timeoutMs' && !allowed.includes(key));
  return unknown === undefined ? null : `args.${unknown} is not a field of this action (${allowed.join(', ')})`;
}

/** The time a hook may run: its args.timeoutMs, or the default, never more than hookTimeoutMsMax. */
export function hookTimeoutMs(args: Readonly<Record<string, unknown>>): number {
  return Math.min(numberArg(args, 'timeoutMs') ?? hookTimeoutMsDefault, loadtestLimits.hookTimeoutMsMax);
}

/** Runs one hook with a bounded time; never throws, the outcome is in the record. */
export async function runHook(hook: ScenarioHook, gatewayUrl: string, log: (line: string) => void, outer?: AbortSignal): Promise<HookRecord> {
  const started = performance.now();
  const record = (ok: boolean, detail: string): HookRecord => ({
    atSecond: hook.atSecond, action: hook.action, args: hook.args, ok, detail: detail.slice(0, 500),
    durationMs: Math.round(performance.now() - started),
  });
  const definition = registry.get(hook.action);
  if (definition === undefined) return record(false, `hook action "${hook.action}" is not registered`);
  const timeoutMs = hookTimeoutMs(hook.args);
  const signals = [AbortSignal.timeout(timeoutMs), ...(outer === undefined ? [] : [outer])];
  const signal = AbortSignal.any(signals);
  try {
    const outcome = await Promise.race([
      definition.run(hook.args, { gatewayUrl, atSecond: hook.atSecond, signal, log }),
      new Promise<never>((_, reject) => signal.addEventListener('abort', () => reject(new Error(`aborted after ${timeoutMs} ms or by the run`)), { once: true })),
    ]);
    return record(true, outcome ?? 'ok');
  } catch (error) {
    return record(false, error instanceof Error ? error.message : String(error));
  }
}

function numberArg(args: Readonly<Record<string, unknown>>, name: string): number | null {
  const value = args[name];
  return typeof value === 'number' && Number.isFinite(value) && value > 0 ? value : null;
}

const httpMethods = ['GET', 'POST', 'PUT', 'PATCH', 'DELETE'] as const;

function validateHttpArgs(args: Readonly<Record<string, unknown>>): string | null {
  const url = args['url'];
  if (typeof url !== 'string' || !(url.startsWith('/') || /^https?:\/\//.test(url))) return 'args.url must be an absolute http(s) URL or a path starting with /';
  const method = args['method'];
  if (method !== undefined && !httpMethods.includes(method as (typeof httpMethods)[number])) return `args.method must be one of ${httpMethods.join(', ')}`;
  const headers = args['headers'];
  if (headers !== undefined && (typeof headers !== 'object' || headers === null || Object.values(headers).some((v) => typeof v !== 'string'))) {
    return 'args.headers must be an object of strings';
  }
  const expectStatus = args['expectStatus'];
  if (expectStatus !== undefined && !Number.isInteger(expectStatus)) return 'args.expectStatus must be an integer';
  return null;
}

async function runHttpHook(args: Readonly<Record<string, unknown>>, context: HookContext): Promise<string> {
  const target = new URL(args['url'] as string, context.gatewayUrl).toString();
  const body = args['body'];
  const method = (args['method'] as string | undefined) ?? (body === undefined ? 'GET' : 'POST');
  const headers: Record<string, string> = { ...((args['headers'] as Record<string, string> | undefined) ?? {}) };
  let payload: string | undefined;
  if (body !== undefined) {
    payload = typeof body === 'string' ? body : JSON.stringify(body);
    if (typeof body !== 'string') headers['content-type'] ??= 'application/json';
  }
  const response = await fetch(target, { method, headers, signal: context.signal, ...(payload === undefined ? {} : { body: payload }) });
  // Masked before it is cut: a card number or CVV cut in half would no longer be recognized.
  const text = maskCardNumbers(await response.text()).replace(/"cvv"\s*:\s*"[0-9]*"/g, '"cvv":"***"').slice(0, 200).replace(/\s+/g, ' ');
  const expected = args['expectStatus'];
  const ok = typeof expected === 'number' ? response.status === expected : response.ok;
  // The line goes into the report: a card the answer issued is masked, its CVV dropped.
  const line = maskCardNumbers(`${method} ${target} -> ${response.status} ${text}`);
  if (!ok) throw new Error(line);
  return line;
}

registerHookAction('http', {
  description: 'call a URL: args {url (absolute or /path on the gateway), method?, headers?, body? (object is sent as JSON), expectStatus?, timeoutMs?}',
  run: runHttpHook,
  validateArgs: validateHttpArgs,
});

registerHookAction('log', {
  description: 'write a line to the progress output and the report: args {message}',
  validateArgs: (args) => (typeof args['message'] === 'string' ? null : 'args.message must be a string'),
  run: async (args, context) => {
    const message = String(args['message']);
    context.log(`[hook @${context.atSecond}s] ${message}`);
    return message;
  },
});
