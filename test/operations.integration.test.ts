import { readFileSync } from 'node:fs';
import Database from 'better-sqlite3';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Cluster } from '../deploy/cluster.js';
import { limits } from '../domain/limits.js';
import { authorize, call, openAccount, openStore, purchase, startCluster } from './helpers.js';

// What operators and performance engineers rely on: metrics on every process,
// logs without card numbers, and a unit that stops answering costs a bounded
// wait once and then fast 91s, never a hang.

let cluster: Cluster;
let root: string;
let close: () => Promise<void>;

beforeAll(async () => {
  ({ cluster, root, close } = await startCluster(2));
});

afterAll(async () => {
  await close();
});

describe('operations', () => {
  it('exposes Prometheus metrics on the gateway and on every unit', async () => {
    // Thirty accounts: every unit gets traffic (a labelled histogram shows only once observed).
    const accounts = await Promise.all(Array.from({ length: 30 }, () => openAccount(cluster.gatewayUrl, 100_000)));
    for (const each of accounts) expect((await authorize(cluster.gatewayUrl, purchase(each.card, 1_000))).body.responseCode).toBe('00');
    const account = accounts[0]!;
    const onItsUnit = accounts.filter((each) => each.unit === account.unit).length;
    const gateway = await call(cluster.gatewayUrl, 'GET', '/metrics');
    expect(gateway.status).toBe(200);
    for (const name of ['dsu_gateway_authorizations_total', 'dsu_gateway_request_duration_seconds_bucket', 'dsu_gateway_inflight_requests', 'dsu_gateway_unit_batch_operations_bucket', 'dsu_gateway_unit_wire_connected', 'dsu_gateway_unit_up']) {
      expect(String(gateway.body), name).toContain(name);
    }
    expect(String(gateway.body)).toMatch(new RegExp(`dsu_gateway_authorizations_total\\{channel="pos",unit="${account.unit}",version="stable",decision="approved",code="00"\\} ${onItsUnit}`));
    for (const unit of cluster.topology.units) {
      const metrics = String((await call(unit.url, 'GET', '/metrics')).body);
      for (const name of ['dsu_unit_operations_total', 'dsu_unit_group_commit_operations_bucket', 'dsu_unit_group_commit_duration_seconds_bucket']) expect(metrics, `${unit.id} ${name}`).toContain(name);
      expect((await call(unit.url, 'GET', '/healthz')).body).toMatchObject({ status: 'ok', unit: unit.id });
    }
  });

  it('a clock moved by the other instance on the store is followed from the next commit', async () => {
    const account = await openAccount(cluster.gatewayUrl, 100_000);
    const unit = cluster.unitSpec(account.unit);
    // The other instance (gray release) moves the clock: it writes the offset into the shared store.
    const store = new Database(join(unit.dataDir, 'unit.db'));
    const threeDaysMs = 3 * 86_400_000;
    try {
      const offset = Number(store.prepare("SELECT coalesce((SELECT value FROM meta WHERE key = 'clockOffsetMs'), '0')").pluck().get());
      store.prepare("INSERT INTO meta (key, value) VALUES ('clockOffsetMs', ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value").run(String(offset + threeDaysMs));
    } finally {
      store.close();
    }
    const written = Date.now();
    const answer = await authorize(cluster.gatewayUrl, purchase(account.card, 1_000));
    expect(answer.body.responseCode).toBe('00');
    const reader = openStore(cluster, account.unit);
    try {
      const createdAt = reader.prepare('SELECT created_at FROM holds WHERE authorization_id = ?').pluck().get(answer.body.authorizationId) as number;
      // The hold was placed on the moved clock, not up to a sweep (a second) later.
      expect(createdAt).toBeGreaterThanOrEqual(written + threeDaysMs - 60_000);
    } finally {
      reader.close();
    }
  });

  it('writes no card number in clear to any log', async () => {
    const accounts = await Promise.all(Array.from({ length: 20 }, () => openAccount(cluster.gatewayUrl, 100_000)));
    for (const account of accounts) {
      await authorize(cluster.gatewayUrl, purchase(account.card, 1_000));
      await authorize(cluster.gatewayUrl, purchase({ ...account.card, cvv: account.card.cvv === '000' ? '001' : '000' }, 1_000));
    }
    const log = readFileSync(join(root, 'cluster.log'), 'utf8');
    expect(log.length).toBeGreaterThan(0);
    for (const account of accounts) expect(log.includes(account.card.number)).toBe(false);
  });

  it('answers 91 within the upstream timeout when a unit freezes, then fails fast until it is back', async () => {
    const account = await openAccount(cluster.gatewayUrl, 100_000);
    const frozen = cluster.units.get(account.unit)!;
    frozen.child.kill('SIGSTOP');
    try {
      let started = performance.now();
      const first = await authorize(cluster.gatewayUrl, purchase(account.card, 1_000));
      expect(first.body.responseCode).toBe('91');
      expect(performance.now() - started).toBeLessThan(limits.unitRequestTimeoutMs + 1_000);
      started = performance.now();
      const second = await authorize(cluster.gatewayUrl, purchase(account.card, 1_000));
      expect(second.body.responseCode).toBe('91');
      // Inside the backoff window the gateway does not wait for the unit at all.
      expect(performance.now() - started).toBeLessThan(limits.unitDownBackoffMs);
    } finally {
      frozen.child.kill('SIGCONT');
    }
    await new Promise((resolve) => setTimeout(resolve, limits.unitDownBackoffMs + 50));
    expect((await authorize(cluster.gatewayUrl, purchase(account.card, 1_000))).body.responseCode).toBe('00');
  });
});

describe('channel isolation', () => {
  it('a surge on one channel is shed with 429 past its in-flight bound, while other channels are served', async () => {
    const accounts = await Promise.all(Array.from({ length: 12 }, () => openAccount(cluster.gatewayUrl, 100_000_000)));
    const [first] = accounts;
    const other = accounts.find((account) => account.unit !== first!.unit);
    expect(other).toBeDefined();
    const surgeSize = limits.inflightPerChannelMax + 200;
    // Open the surge's connections first (keep-alive keeps them): otherwise, on a
    // loaded machine, thousands of TCP handshakes spread the surge's arrival past
    // the upstream timeout, and late requests meet a unit already marked down.
    await Promise.all(Array.from({ length: surgeSize + 10 }, () => call(cluster.gatewayUrl, 'GET', '/healthz')));
    // Freeze the surge's unit so its requests stay in flight at the gateway.
    const frozen = cluster.units.get(first!.unit)!;
    frozen.child.kill('SIGSTOP');
    try {
      const surge = Array.from({ length: surgeSize }, () => authorize(cluster.gatewayUrl, { ...purchase(first!.card, 100), channel: 'ecommerce' }));
      await new Promise((resolve) => setTimeout(resolve, 1_000));
      const started = performance.now();
      const pos = await authorize(cluster.gatewayUrl, purchase(other!.card, 100));
      expect(pos.body.responseCode).toBe('00');
      expect(performance.now() - started).toBeLessThan(limits.unitRequestTimeoutMs);
      frozen.child.kill('SIGCONT');
      const answers = await Promise.all(surge);
      const shed = answers.filter((answer) => answer.status === 429);
      expect(shed.length).toBeGreaterThanOrEqual(200);
      expect(shed[0]!.body.error).toMatchObject({ code: 'CHANNEL_OVERLOADED', field: 'channel' });
      expect(answers.every((answer) => answer.status === 429 || answer.status === 200)).toBe(true);
    } finally {
      frozen.child.kill('SIGCONT');
    }
  });
});

describe('the journal feed thread', () => {
  it('is restarted after failures with a growing delay, and the feed answers once it runs', async () => {
    const started = await startCluster(1, { env: { DSU_FEED_WORKER_FAILS: '4' } });
    try {
      const unit = started.cluster.topology.units[0]!;
      const deadline = Date.now() + 10_000;
      let answer = await call(unit.url, 'GET', '/v1/journal?after=0&limit=10');
      while (answer.status !== 200 && Date.now() < deadline) {
        // Meanwhile the feed says it is unavailable, never hangs.
        expect([500, 503]).toContain(answer.status);
        await new Promise((resolve) => setTimeout(resolve, 50));
        answer = await call(unit.url, 'GET', '/v1/journal?after=0&limit=10');
      }
      expect(answer.status).toBe(200);
      const restarts = readFileSync(join(started.root, 'cluster.log'), 'utf8').split('\n')
        .filter((line) => line.includes('journal feed thread failed')).map((line) => JSON.parse(line.slice(line.indexOf('{'))).inMs as number);
      expect(restarts).toEqual([0, 100, 200, 400]);
    } finally {
      await started.close();
    }
  });
});
