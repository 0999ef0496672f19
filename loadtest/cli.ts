import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { defaultCardsPath, loadCards } from './cards.js';
import { getHookAction, hookActionNames } from './hooks.js';
import './gray-hooks.js';
import './ha-hooks.js';
import { loadtestLimits } from './limits.js';
import { formatProgressLine } from './progress.js';
import { writeReport } from './report.js';
import { defaultScenariosDir, listScenarios, loadScenario, scenarioSeconds } from './scenario.js';
import { applyScenarioOverrides } from './scenario-overrides.js';
import type { ScenarioOverrides } from './scenario-overrides.js';
import { runScenario } from './scenario-runner.js';
import { formatSummaryTable } from './summary-table.js';
import { parseWorkloadOverrides } from './workload-config.js';
import { createWorkload } from './workload.js';

// Command line of the load tester: node dist/loadtest/cli.js --help

const exitCodes = { ok: 0, runFailed: 1, badArguments: 2, interrupted: 130 } as const;

const optionSpec = {
  scenario: { type: 'string', default: 'steady' },
  url: { type: 'string', default: 'http://127.0.0.1:8080' },
  cards: { type: 'string', default: defaultCardsPath },
  seed: { type: 'string', default: '42' },
  rate: { type: 'string' },
  duration: { type: 'string' },
  connections: { type: 'string' },
  timeout: { type: 'string', default: '10' },
  workload: { type: 'string' },
  register: { type: 'string', multiple: true },
  out: { type: 'string', default: 'reports' },
  json: { type: 'boolean', default: false },
  quiet: { type: 'boolean', default: false },
  list: { type: 'boolean', default: false },
  help: { type: 'boolean', short: 'h', default: false },
} as const;

class UsageError extends Error {}

async function helpText(): Promise<string> {
  const scenarios = await listScenarios();
  const hooks = hookActionNames().map((name) => `  ${name.padEnd(12)} ${getHookAction(name)?.description ?? ''}`);
  return `Usage: npm run loadtest -- [options]
       node dist/loadtest/cli.js [options]

Drives the gateway with a seeded, realistic card workload (autocannon), then
prints a summary table and writes a JSON and a self-contained HTML report.

Options:
  --scenario NAME|PATH  scenario name from ${defaultScenariosDir()}
                        or a path to a scenario JSON file (default: steady)
  --url URL             gateway base URL (default: http://127.0.0.1:8080)
  --cards PATH          card portfolio, NDJSON (default: ${defaultCardsPath})
  --seed N              seed of the workload; same seed, same request stream (default: 42)
  --rate N              scale the fixed-rate phases so the highest rate is N req/s
                        (an error for scenarios without fixed-rate phases)
  --duration SECONDS    scale every phase (and hook times) so the run lasts SECONDS in all
  --connections N       scale every phase's connections so the largest is N
  --timeout SECONDS     a request unanswered this long counts as a timeout (default: 10)
  --workload JSON       workload overrides for the whole run, e.g. '{"declineShare":0.1,"hotMerchantShare":0.3}'
  --register MODULE     import MODULE first (repeatable), so it can call registerHookAction()
  --out DIR             folder for the JSON and HTML reports (default: reports)
  --json                print the full result JSON on stdout instead of the table
  --quiet               no live progress line on stderr
  --list                list the scenarios and hook actions, then exit
  -h, --help            this text

Scenarios:
${scenarios.map((s) => `  ${s.name.padEnd(12)} ${s.description}`).join('\n') || '  (none found)'}

Hook actions registered now:
${hooks.join('\n')}
  Other modules add actions with registerHookAction(); load them with
  --register (batch-start: --register ./dist/batch/loadtest-hooks.js). A
  scenario naming an action that is not registered is rejected when it is loaded.
  kill-unit signals a unit process of this machine (process.kill): run the load
  tester on the cluster's machine; it refuses a gateway or copy URL that is not
  a loopback address.

Fixed-rate phases report latency corrected for coordinated omission; closed-loop
phases measure throughput. Exit status: 0 done, 1 run failed, 2 bad arguments, 130 interrupted.
`;
}

function intOption(value: string | undefined, name: string, min: number, max: number): number | undefined {
  if (value === undefined) return undefined;
  const parsed = Number(value);
  if (!/^-?[0-9]+$/.test(value) || !Number.isSafeInteger(parsed) || parsed < min || parsed > max) {
    throw new UsageError(`--${name} must be an integer in [${min}, ${max}], got "${value}"`);
  }
  return parsed;
}

type ParsedValues = ReturnType<typeof parseArgs<{ options: typeof optionSpec; strict: true; allowPositionals: false }>>['values'];

function parseCommandLine(argv: readonly string[]): ParsedValues {
  try {
    return parseArgs({ args: [...argv], options: optionSpec, strict: true, allowPositionals: false }).values;
  } catch (error) {
    throw new UsageError(error instanceof Error ? error.message : String(error));
  }
}

function overridesOf(values: ParsedValues): ScenarioOverrides {
  const rate = intOption(values.rate, 'rate', 1, loadtestLimits.rateMax);
  const durationSeconds = intOption(values.duration, 'duration', 1, loadtestLimits.scenarioSecondsMax);
  const connections = intOption(values.connections, 'connections', 1, loadtestLimits.connectionsMax);
  return {
    ...(rate === undefined ? {} : { rate }),
    ...(durationSeconds === undefined ? {} : { durationSeconds }),
    ...(connections === undefined ? {} : { connections }),
  };
}

async function prepare(values: ParsedValues): Promise<Parameters<typeof runScenario>[0] & { outDir: string }> {
  if (!/^https?:\/\/[^/]+/.test(values.url)) throw new UsageError(`--url must be an http(s) URL, got "${values.url}"`);
  const seed = intOption(values.seed, 'seed', 0, Number.MAX_SAFE_INTEGER)!;
  const timeoutSeconds = intOption(values.timeout, 'timeout', 1, 600)!;
  let workloadOverrides = {};
  if (values.workload !== undefined) {
    try {
      workloadOverrides = parseWorkloadOverrides(JSON.parse(values.workload), '--workload');
    } catch (error) {
      throw new UsageError(error instanceof Error ? error.message : String(error));
    }
  }
  for (const module of values.register ?? []) await import(pathToFileURL(resolve(module)).href);
  let scenario;
  try {
    scenario = applyScenarioOverrides(await loadScenario(values.scenario), overridesOf(values));
  } catch (error) {
    throw error instanceof UsageError ? error : new UsageError(error instanceof Error ? error.message : String(error));
  }
  const cards = await loadCards(values.cards).catch((error: unknown) => {
    throw new UsageError(error instanceof Error ? error.message : String(error));
  });
  // The key prefix carries the start time so a rerun with the same seed is not answered from the idempotency store.
  const keyPrefix = `lt${seed}-${Date.now().toString(36)}`;
  const workload = createWorkload({ cards, seed, keyPrefix, config: { ...scenario.workload, ...workloadOverrides } });
  return { scenario, url: values.url.replace(/\/+$/, ''), workload, seed, timeoutSeconds, outDir: values.out };
}

async function main(argv: readonly string[]): Promise<number> {
  const values = parseCommandLine(argv);
  if (values.help || values.list) {
    process.stdout.write(await helpText());
    return exitCodes.ok;
  }
  const { outDir, ...options } = await prepare(values);
  const controller = new AbortController();
  let interrupts = 0;
  const interrupt = (): void => {
    interrupts += 1;
    if (interrupts > 1) process.exit(exitCodes.interrupted);
    process.stderr.write('\ninterrupted: finishing the current second and writing the report (Ctrl-C again to quit)\n');
    controller.abort();
  };
  process.on('SIGINT', interrupt);
  process.on('SIGTERM', interrupt);
  const total = scenarioSeconds(options.scenario);
  process.stderr.write(`scenario ${options.scenario.name}: ${options.scenario.phases.length} phase(s), ${total} s, seed ${options.seed}, ${options.url}\n`);
  const result = await runScenario({
    ...options,
    signal: controller.signal,
    onSecond: (bucket, elapsed, planned) => {
      if (!values.quiet) process.stderr.write(`${formatProgressLine(bucket, elapsed, planned)}\n`);
    },
  });
  const paths = await writeReport(result, outDir);
  if (values.json) process.stdout.write(`${JSON.stringify(result)}\n`);
  else process.stdout.write(`${formatSummaryTable(result)}\n`);
  process.stderr.write(`report JSON: ${paths.jsonPath}\nreport HTML: ${paths.htmlPath}\n`);
  return result.stoppedEarly === 'interrupted' ? exitCodes.interrupted : exitCodes.ok;
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (error: unknown) => {
    const usage = error instanceof UsageError;
    process.stderr.write(`loadtest: ${error instanceof Error ? error.message : String(error)}\n${usage ? 'Run with --help for the options.\n' : ''}`);
    process.exit(usage ? exitCodes.badArguments : exitCodes.runFailed);
  },
);
