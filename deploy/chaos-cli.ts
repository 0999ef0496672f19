import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { request } from 'undici';
import { demoAdminToken } from '../gateway/admin-auth.js';
import { issueCards, syntheticApplicants, type IssuedCard } from './bulk-issuance.js';
import { ChaosLoad, checkStores, longestUnitSilenceMs, type ChaosAnswer, type CheckResult } from './chaos.js';
import { Cluster, repoRoot, type Copy } from './cluster.js';

// `npm run chaos`: fault injection against HA pairs under load. Each scenario
// starts its own cluster (every unit a primary and a standby with their own
// stores), issues cards, runs a closed-loop load of purchases whose clients
// retry with the same Idempotency-Key, injects one fault into unit dsu-1 (or the
// gateway), brings everything back, waits until every standby is in sync, stops
// the processes and checks every answer against every store (deploy/chaos.ts).

const help = `Usage: npm run chaos [-- options]

Runs fault scenarios against a cluster of HA units it starts, under load, and
checks afterwards that no answered approval was lost, no hold placed twice, no
account over its limit, and both copies of every unit identical.

Scenarios (all by default):
  kill-primary     kill -9 of dsu-1's primary; it restarts and rejoins as standby
  kill-standby     kill -9 of dsu-1's standby; the primary runs single-copy, then resyncs it
  kill-both        kill -9 of both copies of dsu-1: stand-in answers, then advices replayed
  freeze-primary   SIGSTOP of dsu-1's primary for 2 s: the unit switches; the woken copy is fenced
  slow-disk        every commit of dsu-1's primary 40 ms slower for 3 s
  gateway-restart  kill -9 of the gateway, restarted 0.5 s later

Options:
  --scenario NAME   run only this scenario (repeatable)
  --units N         units in the cluster (default 2)
  --seconds S       load per scenario, fault included (default 8)
  --concurrency N   client connections (default 32)
  --out DIR         folder of the JSON and HTML report (default reports)
  --json            print one JSON object {"scenarios": [...]} instead of the table
  --help            this text

Per scenario: approved (answered approvals), lost (must be 0), duplicates (must
be 0), failed (requests whose last answer was not a decision, after up to 5
retries), switchMs (the unit's switch away from a primary that was up, null when
it did not switch), unavailableMs (the longest dsu-1 went without a decision of
its own after the fault: failures and stand-in answers do not count), overLimit
(accounts whose holds plus posted balance exceed the limit, must be 0), diverged
(units whose copies differ, must be empty), standIn (stand-in approvals).
Exit status 1 when any "must" above fails.`;

interface Scenario {
  name: string;
  description: string;
  fault: (context: FaultContext) => Promise<void>;
}

interface FaultContext {
  cluster: Cluster;
  primaryOf: (unitId: string) => Promise<Copy>;
  sleep: (ms: number) => Promise<void>;
}

const other = (copy: Copy): Copy => (copy === 'a' ? 'b' : 'a');

const scenarios: Scenario[] = [
  {
    name: 'kill-primary', description: 'kill -9 of a primary',
    fault: async ({ cluster, primaryOf, sleep }) => {
      const victim = await primaryOf('dsu-1');
      await cluster.signalCopy('dsu-1', victim, 'SIGKILL');
      await sleep(2_000);
      await cluster.startCopy('dsu-1', victim);
    },
  },
  {
    name: 'kill-standby', description: 'kill -9 of a standby',
    fault: async ({ cluster, primaryOf, sleep }) => {
      const victim = other(await primaryOf('dsu-1'));
      await cluster.signalCopy('dsu-1', victim, 'SIGKILL');
      await sleep(2_000);
      await cluster.startCopy('dsu-1', victim);
    },
  },
  {
    name: 'kill-both', description: 'kill -9 of both copies',
    fault: async ({ cluster, sleep }) => {
      await Promise.all([cluster.signalCopy('dsu-1', 'a', 'SIGKILL'), cluster.signalCopy('dsu-1', 'b', 'SIGKILL')]);
      await sleep(2_000);
      await Promise.all([cluster.startCopy('dsu-1', 'a'), cluster.startCopy('dsu-1', 'b')]);
    },
  },
  {
    name: 'freeze-primary', description: 'SIGSTOP of a primary for 2 s',
    fault: async ({ cluster, primaryOf, sleep }) => {
      const victim = await primaryOf('dsu-1');
      await cluster.signalCopy('dsu-1', victim, 'SIGSTOP');
      await sleep(2_000);
      await cluster.signalCopy('dsu-1', victim, 'SIGCONT');
    },
  },
  {
    name: 'slow-disk', description: 'every commit of a primary 40 ms slower for 3 s',
    fault: async ({ cluster, primaryOf, sleep }) => {
      const copy = await primaryOf('dsu-1');
      const spec = cluster.unitSpec('dsu-1');
      const url = copy === 'a' ? spec.url : (spec.standby?.url as string);
      const inject = (commitDelayMs: number) => request(`${url}/admin/fault`, { method: 'POST', body: JSON.stringify({ commitDelayMs }) }).then((answer) => answer.body.text());
      await inject(40);
      await sleep(3_000);
      await inject(0);
    },
  },
  {
    name: 'gateway-restart', description: 'kill -9 of the gateway, restarted after 0.5 s',
    fault: async ({ cluster, sleep }) => {
      await cluster.stopGateway('SIGKILL');
      await sleep(500);
      await cluster.startGateway();
    },
  },
];

interface ScenarioResult extends Omit<CheckResult, 'lostIds'> {
  name: string;
  description: string;
  requests: number;
  retried: number;
  switchMs: number | null;
  /** The longest dsu-1 went without a decision of its own after the fault (see longestUnitSilenceMs). */
  unavailableMs: number;
  standIn: number;
  seconds: number;
  timeline: Array<{ second: number; ok: number; failed: number }>;
}

async function adminGet(cluster: Cluster, path: string): Promise<any> {
  const answer = await request(cluster.gatewayUrl + path, { headers: { authorization: `Bearer ${process.env['ADMIN_TOKEN'] ?? demoAdminToken}` } });
  return answer.body.json();
}

async function waitInSync(cluster: Cluster, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      const status = await adminGet(cluster, '/admin/ha');
      if (status.units.every((unit: any) => unit.state === 'up' && unit.replication === 'sync')) return;
    } catch {
      // The gateway may be restarting.
    }
    if (Date.now() > deadline) throw new Error(`the units are not in sync after ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

async function runScenario(scenario: Scenario, options: { units: number; seconds: number; concurrency: number }, log: (line: string) => void): Promise<ScenarioResult> {
  const root = mkdtempSync(join(tmpdir(), `dsu-chaos-${scenario.name}-`));
  const cluster = new Cluster({ root, units: options.units, ha: true });
  try {
    await cluster.start();
    await waitInSync(cluster, 20_000);
    await issueCards({
      gatewayUrl: cluster.gatewayUrl, applicants: syntheticApplicants(2_000, 17), bands: [{ minScore: 0, creditLimitMinor: 5_000_000 }],
      currency: 'CNY', cardsPath: join(root, 'cards.ndjson'),
    });
    const cards = readFileSync(join(root, 'cards.ndjson'), 'utf8').trim().split('\n').map((line) => JSON.parse(line) as IssuedCard);
    const primaryOf = async (unitId: string): Promise<Copy> => {
      const status = await adminGet(cluster, '/admin/ha');
      const unit = status.units.find((each: any) => each.unit === unitId);
      return cluster.copyAt(unitId, unit.primary) as Copy;
    };
    const load = new ChaosLoad({ gatewayUrl: () => cluster.gatewayUrl, cards, concurrency: options.concurrency, keyPrefix: scenario.name, retriesMax: 5, retryDelayMs: 300 });
    const switchesBefore = (await adminGet(cluster, '/admin/ha')).switches.length;
    const startedMs = Date.now();
    load.start();
    const sleep = (ms: number) => new Promise<void>((resolvePromise) => setTimeout(resolvePromise, ms));
    await sleep(1_500);
    log(`  ${scenario.name}: fault at ${((Date.now() - startedMs) / 1000).toFixed(1)} s`);
    const faultMs = Date.now();
    await scenario.fault({ cluster, primaryOf, sleep });
    await sleep(Math.max(0, options.seconds * 1000 - (Date.now() - startedMs)));
    // The load's end, before its last requests drain (up to their 10 s timeout): a silence runs to here at most.
    const loadEndMs = Date.now();
    const answers = await load.stop();
    const unavailableMs = longestUnitSilenceMs(answers, load.answeredAtMs, 'dsu-1', faultMs, loadEndMs);
    await waitInSync(cluster, 30_000);
    const status = await adminGet(cluster, '/admin/ha');
    const switches = (status.switches as Array<{ unit: string; switchMs: number; from: number | null }>).slice(switchesBefore).filter((record) => record.unit === 'dsu-1' && record.from !== null);
    const primaries = new Map<string, Copy>(status.units.map((unit: any) => [unit.unit, cluster.copyAt(unit.unit, unit.primary) as Copy]));
    await cluster.stop();
    const check = checkStores(cluster, answers, primaries);
    if (check.lost > 0) log(`  ${scenario.name}: LOST ${check.lostIds.join(', ')}`);
    const { lostIds: _lostIds, ...figures } = check;
    return {
      name: scenario.name, description: scenario.description, ...figures, requests: answers.length,
      retried: answers.filter((answer) => answer.attempts > 1).length,
      switchMs: switches.length === 0 ? null : (switches[0] as { switchMs: number }).switchMs, unavailableMs,
      standIn: standInApprovals(answers), seconds: Math.round((Date.now() - startedMs) / 100) / 10,
      timeline: timelineOf(answers, load, startedMs),
    };
  } finally {
    await cluster.close();
    rmSync(root, { recursive: true, force: true });
  }
}

/** Stand-in authorization ids carry the marker "v" after the unit (gateway/stand-in.ts). */
function standInApprovals(answers: readonly ChaosAnswer[]): number {
  return answers.filter((answer) => answer.approved && answer.authorizationId !== null && answer.authorizationId.includes('~v')).length;
}

function timelineOf(answers: readonly ChaosAnswer[], load: ChaosLoad, startedMs: number): ScenarioResult['timeline'] {
  const seconds = new Map<number, { ok: number; failed: number }>();
  for (const [index, answer] of answers.entries()) {
    const second = Math.floor(((load.answeredAtMs[index] ?? startedMs) - startedMs) / 1000);
    const bucket = seconds.get(second) ?? { ok: 0, failed: 0 };
    if (answer.failed) bucket.failed++;
    else bucket.ok++;
    seconds.set(second, bucket);
  }
  return [...seconds.entries()].sort((x, y) => x[0] - y[0]).map(([second, bucket]) => ({ second, ...bucket }));
}

function table(results: readonly ScenarioResult[]): string {
  const header = ['scenario', 'requests', 'approved', 'lost', 'duplicates', 'failed', 'retried', 'switchMs', 'unavailableMs', 'standIn', 'overLimit', 'diverged'];
  const rows = results.map((r) => [r.name, r.requests, r.approved, r.lost, r.duplicates, r.failed, r.retried, r.switchMs ?? '-', r.unavailableMs, r.standIn, r.overLimit, r.diverged.join(' ') || '-'].map(String));
  const widths = header.map((name, i) => Math.max(name.length, ...rows.map((row) => (row[i] as string).length)));
  const line = (cells: string[]) => cells.map((cell, i) => (i === 0 ? cell.padEnd(widths[i] as number) : cell.padStart(widths[i] as number))).join('  ');
  return [line(header), ...rows.map(line)].join('\n');
}

function html(results: readonly ScenarioResult[], startedAt: string): string {
  const escape = (text: string) => text.replace(/&/g, '&amp;').replace(/</g, '&lt;');
  const bars = (r: ScenarioResult) => {
    const max = Math.max(1, ...r.timeline.map((t) => t.ok + t.failed));
    return r.timeline.map((t) => `<div title="second ${t.second}: ${t.ok} ok, ${t.failed} failed" style="display:inline-block;width:14px;margin-right:2px;vertical-align:bottom">`
      + `<div style="height:${Math.round((t.failed / max) * 80)}px;background:#c33"></div><div style="height:${Math.round((t.ok / max) * 80)}px;background:#3a7"></div></div>`).join('');
  };
  const rows = results.map((r) => `<tr><td>${escape(r.name)}</td><td>${escape(r.description)}</td><td>${r.requests}</td><td>${r.approved}</td><td>${r.lost}</td><td>${r.duplicates}</td><td>${r.failed}</td><td>${r.retried}</td><td>${r.switchMs ?? '-'}</td><td>${r.unavailableMs}</td><td>${r.standIn}</td><td>${r.overLimit}</td><td>${escape(r.diverged.join(' ') || '-')}</td><td>${bars(r)}</td></tr>`).join('\n');
  return `<!doctype html><meta charset="utf-8"><title>chaos ${escape(startedAt)}</title>
<style>body{font:14px system-ui,sans-serif;margin:2em}table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}td:nth-child(-n+2),th{text-align:left}</style>
<h1>Fault injection, ${escape(startedAt)}</h1>
<p>Answers per second (green: a decision; red: failed after retries); the fault hits at about 1.5 s.</p>
<table><tr><th>scenario</th><th>fault</th><th>requests</th><th>approved</th><th>lost</th><th>duplicates</th><th>failed</th><th>retried</th><th>switchMs</th><th>unavailableMs</th><th>standIn</th><th>overLimit</th><th>diverged</th><th>answers per second</th></tr>
${rows}</table>`;
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      scenario: { type: 'string', multiple: true }, units: { type: 'string', default: '2' }, seconds: { type: 'string', default: '8' },
      concurrency: { type: 'string', default: '32' }, out: { type: 'string', default: 'reports' }, json: { type: 'boolean' }, help: { type: 'boolean' },
    },
  });
  if (values.help === true) {
    process.stdout.write(help + '\n');
    return;
  }
  const names = values.scenario ?? scenarios.map((scenario) => scenario.name);
  const chosen = names.map((name) => {
    const scenario = scenarios.find((each) => each.name === name);
    if (scenario === undefined) throw new Error(`unknown scenario ${name}; see --help`);
    return scenario;
  });
  const options = { units: Number(values.units), seconds: Number(values.seconds), concurrency: Number(values.concurrency) };
  if (!(options.units >= 1 && options.units <= 8 && options.seconds >= 5 && options.seconds <= 120 && options.concurrency >= 1 && options.concurrency <= 512)) {
    throw new Error('--units 1..8, --seconds 5..120, --concurrency 1..512');
  }
  const log = (line: string) => process.stderr.write(line + '\n');
  const startedAt = new Date().toISOString();
  const results: ScenarioResult[] = [];
  for (const scenario of chosen) {
    log(`scenario ${scenario.name}: ${scenario.description}`);
    results.push(await runScenario(scenario, options, log));
  }
  const out = resolve(repoRoot, values.out ?? 'reports');
  mkdirSync(out, { recursive: true });
  const stamp = startedAt.replace(/[:.]/g, '-');
  const report = { startedAt, options, machine: { cpus: (await import('node:os')).cpus().length, node: process.version }, scenarios: results };
  writeFileSync(join(out, `chaos-${stamp}.json`), JSON.stringify(report, null, 2));
  writeFileSync(join(out, `chaos-${stamp}.html`), html(results, startedAt));
  if (values.json === true) process.stdout.write(JSON.stringify(report) + '\n');
  else process.stdout.write(`${table(results)}\nreport: ${join(out, `chaos-${stamp}.html`)}\n`);
  if (results.some((result) => result.lost > 0 || result.duplicates > 0 || result.overLimit > 0 || result.diverged.length > 0)) process.exitCode = 1;
}

main().catch((error: unknown) => {
  process.stderr.write(`chaos failed: ${error instanceof Error ? error.stack ?? error.message : String(error)}\n`);
  process.exit(1);
});
