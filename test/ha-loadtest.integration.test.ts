import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Cluster } from '../deploy/cluster.js';
import { issueCards, syntheticApplicants } from '../deploy/bulk-issuance.js';
import { loadCards } from '../loadtest/cards.js';
import { createWorkload, parseScenario, readRunResult, renderReportHtml, runScenario, writeReport } from '../loadtest/index.js';
import { call, startCluster } from './helpers.js';

// The load tester's kill-unit hook against real processes: 2 units, each an HA
// pair, supervised as npm start -- --ha runs them. A fixed-rate load runs while
// the hook kills dsu-1's primary; the hook's record must name the switch, the
// gateway must list it, no request may get a 5xx, the report must carry the
// hook, and the launcher must bring the killed copy back as an in-sync standby.

const admin = { authorization: 'Bearer demo-admin-token' };

let cluster: Cluster;
let root: string;
let close: () => Promise<void>;
const launcherLines: string[] = [];

beforeAll(async () => {
  ({ cluster, root, close } = await startCluster(2, { ha: true, superviseCopies: true, onLauncherLine: (line) => launcherLines.push(line) }));
  const summary = await issueCards({
    gatewayUrl: cluster.gatewayUrl, applicants: syntheticApplicants(300, 5), bands: [{ minScore: 0, creditLimitMinor: 50_000_000 }],
    currency: 'CNY', cardsPath: join(root, 'cards.ndjson'),
  });
  expect(summary.failed).toBe(0);
});

afterAll(async () => {
  await close();
});

async function haStatus(): Promise<any> {
  return (await call(cluster.gatewayUrl, 'GET', '/admin/ha', undefined, admin)).body;
}

async function waitFor(what: string, timeoutMs: number, check: () => Promise<boolean>): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`${what} not within ${timeoutMs} ms; launcher: ${launcherLines.join(' | ')}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

const dsu1InSync = async (): Promise<boolean> => {
  const unit = (await haStatus()).units.find((each: any) => each.unit === 'dsu-1');
  return unit.state === 'up' && unit.replication === 'sync' && unit.copies.every((copy: any) => copy.status !== null);
};

describe('kill-unit hook in a load test', () => {
  it('kills dsu-1\'s primary under fixed-rate load; the report shows the switch and no request gets a 5xx', async () => {
    await waitFor('both units in sync', 10_000, async () => (await haStatus()).units.every((unit: any) => unit.state === 'up' && unit.replication === 'sync'));
    const primaryBefore = (await haStatus()).units.find((unit: any) => unit.unit === 'dsu-1').primary as string;
    const scenario = parseScenario({
      name: 'unit-kill-test',
      phases: [
        { name: 'before', mode: 'rate', rate: 300, connections: 16, durationSeconds: 2 },
        { name: 'kill', mode: 'rate', rate: 300, connections: 16, durationSeconds: 4 },
      ],
      hooks: [{ atSecond: 2, action: 'kill-unit', args: { unit: 'dsu-1' } }],
    }, 'inline');
    const workload = createWorkload({ cards: await loadCards(join(root, 'cards.ndjson')), seed: 9, keyPrefix: 'unit-kill' });
    const result = await runScenario({ scenario, url: cluster.gatewayUrl, workload, seed: 9, log: () => {} });

    const hook = result.hooks[0]!;
    expect(hook, hook.detail).toMatchObject({ action: 'kill-unit', ok: true, atSecond: 2 });
    const named = /^killed dsu-1 primary \(pid \d+, (http:\/\/127\.0\.0\.1:\d+)\); switched to (http:\/\/127\.0\.0\.1:\d+) in ([\d.]+) ms$/.exec(hook.detail);
    expect(named, hook.detail).not.toBeNull();
    expect(named![1]).toBe(primaryBefore);
    expect(named![2]).not.toBe(primaryBefore);
    const switched = (await haStatus()).switches.filter((record: any) => record.unit === 'dsu-1' && record.from !== null);
    expect(switched).toHaveLength(1);
    expect(switched[0]).toMatchObject({ planned: false, switchMs: Number(named![3]) });
    expect(switched[0].switchMs).toBeLessThan(2_000);

    const serverErrors = Object.entries(result.totals.status).filter(([status]) => Number(status) >= 500);
    expect(serverErrors).toEqual([]);
    expect(result.totals.errors).toMatchObject({ connection: 0, timeout: 0 });
    const unavailable = result.totals.responseCodes['91'] ?? 0;
    process.stdout.write(`kill-unit: ${hook.detail}; answered ${result.totals.completed}, 91s ${unavailable}, p99 ${result.totals.latencyMs.p99} ms, max ${result.totals.latencyMs.max} ms\n`);
    // Every request of the workload carries an Idempotency-Key, so the failover buffer holds
    // those caught by the kill until the new primary takes them (the switch is well inside its 2 s).
    expect(unavailable).toBe(0);

    const out = mkdtempSync(join(tmpdir(), 'dsu-report-'));
    try {
      const paths = await writeReport(result, out);
      const reread = await readRunResult(paths.jsonPath);
      expect(reread.hooks).toEqual([hook]);
      expect(renderReportHtml(reread)).toContain(`kill-unit @2s: ${hook.detail}`.replace(/>/g, '&gt;'));
    } finally {
      rmSync(out, { recursive: true, force: true });
    }

    // The launcher restarts the killed copy; it rejoins as the standby and catches up.
    await waitFor('dsu-1/a back in sync', 10_000, dsu1InSync);
    expect(launcherLines.some((line) => /^dsu-1\/[ab] exited \(SIGKILL\); restarting it in 1000 ms/.test(line))).toBe(true);
    expect(launcherLines.some((line) => /^dsu-1\/[ab] restarted/.test(line))).toBe(true);
    expect((await haStatus()).units.find((unit: any) => unit.unit === 'dsu-1').primary).toBe(named![2]);
  });
});
