import { existsSync } from 'node:fs';
import { readdir, readFile } from 'node:fs/promises';
import { basename, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { getHookAction, hookActionNames } from './hooks.js';
import type { ScenarioHook } from './hooks.js';
import { loadtestLimits } from './limits.js';
import { phaseModes } from './run-result.js';
import type { PhaseMode } from './run-result.js';
import { parseWorkloadOverrides } from './workload-config.js';
import type { WorkloadOverrides } from './workload-config.js';

// A scenario is a list of phases run one after the other, plus hooks fired at
// given seconds of the run. Files are JSON in loadtest/scenarios/ and are
// validated here with messages that name the file and the field.

export interface ScenarioPhase {
  name: string;
  durationSeconds: number;
  /** "closed": `connections` clients send back to back (throughput). "rate": a fixed request rate (latency). */
  mode: PhaseMode;
  /** Concurrent connections; in rate mode, the pool that carries the rate. */
  connections: number;
  /** Requests per second in rate mode; null in closed mode. */
  rate: number | null;
  /** Applied over the scenario's workload for this phase only. */
  workload: WorkloadOverrides;
}

export interface SaturationRule {
  /** A closed phase whose median throughput beats the best earlier one by less than this ends the run. */
  throughputGainMinPercent: number;
}

export interface Scenario {
  name: string;
  description: string;
  phases: ScenarioPhase[];
  hooks: ScenarioHook[];
  workload: WorkloadOverrides;
  stopAtSaturation: SaturationRule | null;
}

/** scenarios/ next to the source file, or loadtest/scenarios/ seen from dist/loadtest/ (tsc does not copy JSON). */
export function defaultScenariosDir(): string {
  const candidates = [new URL('./scenarios/', import.meta.url), new URL('../../loadtest/scenarios/', import.meta.url)];
  const found = candidates.map((url) => fileURLToPath(url)).find((dir) => existsSync(dir));
  return found ?? fileURLToPath(candidates[0]!);
}

export const connectionsDefault = 64;

type Json = Record<string, unknown>;

function fail(where: string, message: string): never {
  throw new Error(`${where} ${message}`);
}

function objectAt(value: unknown, where: string): Json {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) fail(where, 'must be an object');
  return value as Json;
}

function intAt(value: unknown, where: string, min: number, max: number): number {
  if (!Number.isInteger(value) || (value as number) < min || (value as number) > max) fail(where, `must be an integer in [${min}, ${max}], got ${JSON.stringify(value)}`);
  return value as number;
}

function onlyKeys(object: Json, allowed: readonly string[], where: string): void {
  for (const key of Object.keys(object)) if (!allowed.includes(key)) fail(`${where}.${key}`, `is not a known field (known: ${allowed.join(', ')})`);
}

function parsePhase(value: unknown, where: string, index: number): ScenarioPhase {
  const phase = objectAt(value, where);
  onlyKeys(phase, ['name', 'durationSeconds', 'mode', 'connections', 'rate', 'workload', 'note'], where);
  const mode = phase['mode'];
  if (!phaseModes.includes(mode as PhaseMode)) fail(`${where}.mode`, `must be one of ${phaseModes.map((m) => `"${m}"`).join(', ')}`);
  const rate = mode === 'rate' ? intAt(phase['rate'], `${where}.rate`, 1, loadtestLimits.rateMax) : null;
  if (mode === 'closed' && phase['rate'] !== undefined) fail(`${where}.rate`, 'is only for mode "rate" (closed-loop phases send as fast as the server answers)');
  const name = phase['name'] ?? `phase-${index + 1}`;
  if (typeof name !== 'string' || name.length === 0 || name.length > 64) fail(`${where}.name`, 'must be a string of 1-64 characters');
  return {
    name,
    durationSeconds: intAt(phase['durationSeconds'], `${where}.durationSeconds`, 1, loadtestLimits.phaseSecondsMax),
    mode: mode as PhaseMode,
    connections: intAt(phase['connections'] ?? connectionsDefault, `${where}.connections`, 1, loadtestLimits.connectionsMax),
    rate,
    workload: phase['workload'] === undefined ? {} : parseWorkloadOverrides(phase['workload'], `${where}.workload`),
  };
}

function parseHook(value: unknown, where: string, totalSeconds: number): ScenarioHook {
  const hook = objectAt(value, where);
  onlyKeys(hook, ['atSecond', 'action', 'args', 'note'], where);
  const atSecond = intAt(hook['atSecond'], `${where}.atSecond`, 0, Math.max(0, totalSeconds - 1));
  const action = hook['action'];
  if (typeof action !== 'string') fail(`${where}.action`, 'must be a string');
  const definition = getHookAction(action);
  if (definition === undefined) {
    fail(`${where}.action`, `"${action}" is not a registered hook action (registered: ${hookActionNames().join(', ')}); ` +
      'actions of other modules (such as batch-start) must be registered with registerHookAction() before the scenario is loaded (--register)');
  }
  const args = hook['args'] === undefined ? {} : objectAt(hook['args'], `${where}.args`);
  const problem = definition.validateArgs?.(args) ?? null;
  if (problem !== null) fail(`${where}`, `(${action}): ${problem}`);
  return { atSecond, action, args };
}

/** Validates a parsed scenario file; `source` names it in error messages. */
export function parseScenario(value: unknown, source: string): Scenario {
  const file = objectAt(value, source);
  onlyKeys(file, ['name', 'description', 'phases', 'hooks', 'workload', 'stopAtSaturation'], source);
  const phasesValue = file['phases'];
  if (!Array.isArray(phasesValue) || phasesValue.length === 0) fail(`${source}: phases`, 'must be a non-empty array');
  if (phasesValue.length > loadtestLimits.phasesMax) fail(`${source}: phases`, `must have at most ${loadtestLimits.phasesMax} entries`);
  const phases = phasesValue.map((phase, index) => parsePhase(phase, `${source}: phases[${index}]`, index));
  const totalSeconds = phases.reduce((sum, phase) => sum + phase.durationSeconds, 0);
  if (totalSeconds > loadtestLimits.scenarioSecondsMax) fail(`${source}: phases`, `last ${totalSeconds} s in all, more than ${loadtestLimits.scenarioSecondsMax} s`);
  const hooksValue = file['hooks'] ?? [];
  if (!Array.isArray(hooksValue) || hooksValue.length > loadtestLimits.hooksMax) fail(`${source}: hooks`, `must be an array of at most ${loadtestLimits.hooksMax}`);
  const hooks = hooksValue.map((hook, index) => parseHook(hook, `${source}: hooks[${index}]`, totalSeconds));
  const name = file['name'] ?? basename(source, '.json');
  const description = file['description'] ?? '';
  if (typeof name !== 'string' || typeof description !== 'string') fail(source, 'name and description must be strings');
  return {
    name, description, phases, hooks: hooks.sort((a, b) => a.atSecond - b.atSecond),
    workload: file['workload'] === undefined ? {} : parseWorkloadOverrides(file['workload'], `${source}: workload`),
    stopAtSaturation: parseSaturation(file['stopAtSaturation'], `${source}: stopAtSaturation`),
  };
}

function parseSaturation(value: unknown, where: string): SaturationRule | null {
  if (value === undefined || value === null) return null;
  const rule = objectAt(value, where);
  onlyKeys(rule, ['throughputGainMinPercent'], where);
  const gain = rule['throughputGainMinPercent'];
  if (typeof gain !== 'number' || gain < 0 || gain > 100) fail(`${where}.throughputGainMinPercent`, 'must be a number in [0, 100]');
  return { throughputGainMinPercent: gain };
}

/** Loads a scenario by name (a file in the scenarios folder) or by path to a JSON file. */
export async function loadScenario(nameOrPath: string, scenariosDir: string = defaultScenariosDir()): Promise<Scenario> {
  const isPath = nameOrPath.includes('/') || nameOrPath.includes('\\') || nameOrPath.endsWith('.json');
  const path = isPath ? resolve(nameOrPath) : join(scenariosDir, `${nameOrPath}.json`);
  if (!existsSync(path)) {
    const known = (await listScenarios(scenariosDir)).map((entry) => entry.name).join(', ');
    throw new Error(`scenario "${nameOrPath}" not found at ${path} (known scenarios: ${known || 'none'})`);
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(await readFile(path, 'utf8'));
  } catch (error) {
    throw new Error(`scenario ${path} is not valid JSON: ${error instanceof Error ? error.message : String(error)}`);
  }
  return parseScenario(parsed, basename(path));
}

/** The scenario files shipped in a folder, with their descriptions (unreadable files say so). */
export async function listScenarios(scenariosDir: string = defaultScenariosDir()): Promise<Array<{ name: string; description: string }>> {
  if (!existsSync(scenariosDir)) return [];
  const files = (await readdir(scenariosDir)).filter((file) => file.endsWith('.json')).sort();
  return Promise.all(files.map(async (file) => {
    const name = basename(file, '.json');
    try {
      const parsed = JSON.parse(await readFile(join(scenariosDir, file), 'utf8')) as { description?: unknown };
      return { name, description: typeof parsed.description === 'string' ? parsed.description : '' };
    } catch {
      return { name, description: '(not valid JSON)' };
    }
  }));
}

export function scenarioSeconds(scenario: Scenario): number {
  return scenario.phases.reduce((sum, phase) => sum + phase.durationSeconds, 0);
}
