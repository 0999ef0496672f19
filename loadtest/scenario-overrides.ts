import { loadtestLimits } from './limits.js';
import { scenarioSeconds } from './scenario.js';
import type { Scenario } from './scenario.js';

// How command-line overrides change a scenario. Each one rescales the
// scenario's shape rather than flattening it, so a ramp stays a ramp and a
// spike stays a spike:
//   rate         every fixed-rate phase is scaled so the highest rate equals it
//   duration     every phase (and every hook's second) is scaled so the total equals it
//   connections  every phase is scaled so the largest connection count equals it

export interface ScenarioOverrides {
  rate?: number;
  durationSeconds?: number;
  connections?: number;
}

function scaleTo(values: readonly number[], target: number, min: number, max: number): number[] {
  const peak = Math.max(...values);
  return values.map((value) => Math.min(max, Math.max(min, Math.round((value * target) / peak))));
}

export function applyScenarioOverrides(scenario: Scenario, overrides: ScenarioOverrides): Scenario {
  let phases = scenario.phases.map((phase) => ({ ...phase }));
  let hooks = scenario.hooks.map((hook) => ({ ...hook }));
  if (overrides.rate !== undefined) {
    const ratePhases = phases.filter((phase) => phase.rate !== null);
    if (ratePhases.length === 0) throw new Error(`--rate applies to fixed-rate phases and scenario "${scenario.name}" has none (use --connections for closed-loop phases)`);
    const scaled = scaleTo(ratePhases.map((phase) => phase.rate!), overrides.rate, 1, loadtestLimits.rateMax);
    ratePhases.forEach((phase, index) => { phase.rate = scaled[index]!; });
  }
  if (overrides.connections !== undefined) {
    const scaled = scaleTo(phases.map((phase) => phase.connections), overrides.connections, 1, loadtestLimits.connectionsMax);
    phases = phases.map((phase, index) => ({ ...phase, connections: scaled[index]! }));
  }
  if (overrides.durationSeconds !== undefined) {
    const target = overrides.durationSeconds;
    if (target < phases.length) throw new Error(`--duration ${target} is shorter than one second per phase (scenario "${scenario.name}" has ${phases.length} phases)`);
    const total = scenarioSeconds(scenario);
    const factor = target / total;
    phases = phases.map((phase) => ({ ...phase, durationSeconds: Math.max(1, Math.round(phase.durationSeconds * factor)) }));
    fixTotal(phases, target);
    const long = phases.find((phase) => phase.durationSeconds > loadtestLimits.phaseSecondsMax);
    if (long !== undefined) {
      throw new Error(`--duration ${target} makes a phase of scenario "${scenario.name}" last ${long.durationSeconds} s, over the ${loadtestLimits.phaseSecondsMax} s a phase may last`);
    }
    hooks = hooks.map((hook) => ({ ...hook, atSecond: Math.min(target - 1, Math.floor(hook.atSecond * factor)) }));
  }
  return { ...scenario, phases, hooks };
}

/** Rounding can miss the requested total by a few seconds; take them from (or give them to) the longest phases. */
function fixTotal(phases: Array<{ durationSeconds: number }>, target: number): void {
  let difference = target - phases.reduce((sum, phase) => sum + phase.durationSeconds, 0);
  for (let guard = 0; difference !== 0 && guard < 10_000; guard += 1) {
    const longest = phases.reduce((best, phase) => (phase.durationSeconds > best.durationSeconds ? phase : best));
    if (difference > 0) {
      longest.durationSeconds += 1;
      difference -= 1;
    } else if (longest.durationSeconds > 1) {
      longest.durationSeconds -= 1;
      difference += 1;
    } else {
      break;
    }
  }
}
