import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Cluster, Copy } from '../deploy/cluster.js';
import { issueCards, syntheticApplicants, type IssuedCard } from '../deploy/bulk-issuance.js';
import { ChaosLoad, checkStores } from '../deploy/chaos.js';
import { call, startCluster } from './helpers.js';

// High availability with real processes: 2 units, each an HA pair (two copies,
// two stores), and the gateway. Load runs while a primary is killed or switched;
// then every answer is checked against the stores, and the copies against each other.

const admin = { authorization: 'Bearer demo-admin-token' };

let cluster: Cluster;
let root: string;
let close: () => Promise<void>;
let cards: IssuedCard[];

beforeAll(async () => {
  ({ cluster, root, close } = await startCluster(2, { ha: true }));
  const summary = await issueCards({
    gatewayUrl: cluster.gatewayUrl, applicants: syntheticApplicants(2_000, 3), bands: [{ minScore: 0, creditLimitMinor: 5_000_000 }],
    currency: 'CNY', cardsPath: join(root, 'cards.ndjson'),
  });
  expect(summary.failed).toBe(0);
  cards = readFileSync(join(root, 'cards.ndjson'), 'utf8').trim().split('\n').map((line) => JSON.parse(line) as IssuedCard);
});

afterAll(async () => {
  await close();
});

async function haStatus(): Promise<any> {
  return (await call(cluster.gatewayUrl, 'GET', '/admin/ha', undefined, admin)).body;
}

/** Waits until every unit has a primary whose standby is in sync. */
async function waitInSync(timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const status = await haStatus();
    if (status.units.every((unit: any) => unit.state === 'up' && unit.replication === 'sync')) return;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  throw new Error(`not in sync after ${timeoutMs} ms: ${JSON.stringify((await haStatus()).units.map((unit: any) => [unit.unit, unit.state, unit.replication]))}`);
}

async function primaries(): Promise<Map<string, Copy>> {
  const status = await haStatus();
  return new Map(status.units.map((unit: any) => [unit.unit, cluster.copyAt(unit.unit, unit.primary) as Copy]));
}

function load(keyPrefix: string): ChaosLoad {
  return new ChaosLoad({ gatewayUrl: () => cluster.gatewayUrl, cards, concurrency: 24, keyPrefix, retriesMax: 3, retryDelayMs: 200 });
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe('DSU high availability', () => {
  it('fails over a killed primary under load in under 2 seconds, losing no approval', async () => {
    await waitInSync(10_000);
    const before = await primaries();
    const running = load('kill');
    running.start();
    await sleep(1_500);
    const victim = before.get('dsu-1') as Copy;
    await cluster.signalCopy('dsu-1', victim, 'SIGKILL');
    await sleep(2_500);
    const answers = await running.stop();
    const status = await haStatus();
    const switched = status.switches.filter((record: any) => record.unit === 'dsu-1' && !record.planned).at(-1);
    expect(switched).toBeDefined();
    expect(switched.switchMs).toBeLessThan(2_000);
    // The other unit was not touched.
    expect(status.switches.filter((record: any) => record.unit === 'dsu-2' && record.from !== null)).toEqual([]);
    // The old primary comes back as the standby and catches up.
    await cluster.startCopy('dsu-1', victim);
    await waitInSync(15_000);
    const after = await primaries();
    expect(after.get('dsu-1')).not.toBe(victim);
    await cluster.stop();
    const check = checkStores(cluster, answers, after);
    expect(check.approved).toBeGreaterThan(500);
    expect({ lost: check.lost, duplicates: check.duplicates, overLimit: check.overLimit, diverged: check.diverged, lostIds: check.lostIds })
      .toEqual({ lost: 0, duplicates: 0, overLimit: 0, diverged: [], lostIds: [] });
    expect(check.failed).toBe(0);
    await cluster.start();
  });

  it('switches a unit by command under load with no request failed', async () => {
    await waitInSync(15_000);
    const before = await primaries();
    const running = load('planned');
    running.start();
    await sleep(1_000);
    const switched = await call(cluster.gatewayUrl, 'POST', '/admin/ha/switch', { unit: 'dsu-2', reason: 'maintenance of data center A' }, admin);
    expect(switched.status, JSON.stringify(switched.body)).toBe(200);
    expect(switched.body).toMatchObject({ unit: 'dsu-2', planned: true });
    await sleep(1_000);
    const answers = await running.stop();
    expect(answers.filter((answer) => answer.failed || answer.attempts > 1)).toEqual([]);
    await waitInSync(10_000);
    const after = await primaries();
    expect(after.get('dsu-2')).not.toBe(before.get('dsu-2'));
    await cluster.stop();
    const check = checkStores(cluster, answers, after);
    expect({ lost: check.lost, duplicates: check.duplicates, diverged: check.diverged }).toEqual({ lost: 0, duplicates: 0, diverged: [] });
    await cluster.start();
  });
});
