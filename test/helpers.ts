import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { request } from 'undici';
import Database from 'better-sqlite3';
import { Cluster, type ClusterOptions } from '../deploy/cluster.js';
import { RawHttpClient } from '../loadtest/raw-http.js';

export interface Answer {
  status: number;
  body: any;
}

export async function startCluster(units = 4, options: Omit<ClusterOptions, 'root' | 'units'> = {}): Promise<{ cluster: Cluster; root: string; close: () => Promise<void> }> {
  const root = mkdtempSync(join(tmpdir(), 'dsu-test-'));
  const cluster = new Cluster({ root, units, ...options });
  try {
    await cluster.start();
  } catch (error) {
    await cluster.close();
    throw error;
  }
  return {
    cluster, root,
    close: async () => {
      await cluster.close();
      rmSync(root, { recursive: true, force: true });
    },
  };
}

export async function call(base: string, method: string, path: string, body?: unknown, headers: Record<string, string> = {}): Promise<Answer> {
  const text = body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body);
  const response = await request(base + path, {
    method: method as 'GET', headers: { ...(text === undefined ? {} : { 'content-type': 'application/json' }), ...headers }, ...(text === undefined ? {} : { body: text }),
  });
  const raw = await response.body.text();
  let parsed: unknown = raw;
  try {
    parsed = JSON.parse(raw);
  } catch {
    // not JSON: keep the text
  }
  return { status: response.statusCode, body: parsed };
}

export interface TestCard {
  number: string;
  expiry: string;
  cvv: string;
}

export async function openAccount(base: string, limitMinor: number, currency = 'CNY', product?: string): Promise<{ accountId: string; unit: string; card: TestCard }> {
  const answer = await call(base, 'POST', '/v1/accounts', { creditLimit: { value: limitMinor, currency }, ...(product === undefined ? {} : { product }) });
  if (answer.status !== 201) throw new Error(`open account: ${answer.status} ${JSON.stringify(answer.body)}`);
  return answer.body;
}

let keyCounter = 0;
export function freshKey(): string {
  keyCounter++;
  return `test-${process.pid}-${Date.now()}-${keyCounter}`;
}

export function purchase(card: TestCard, value: number, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    card: { number: card.number, expiry: card.expiry, cvv: card.cvv },
    amount: { value, currency: 'CNY' }, type: 'purchase', channel: 'pos',
    merchant: { id: 'merchant-1', mcc: '5411', country: 'CN' }, ...extra,
  };
}

export async function authorize(base: string, body: unknown, key = freshKey()): Promise<Answer> {
  return call(base, 'POST', '/v1/authorizations', body, { 'idempotency-key': key });
}

/** Opens a unit's store read-only, the way an auditor would, after or while the unit runs. */
export function openStore(cluster: Cluster, unitId: string): Database.Database {
  return new Database(join(cluster.unitSpec(unitId).dataDir, 'unit.db'), { readonly: true });
}

/**
 * Runs `body` while the load generator's connections never finish connecting (a
 * server whose accept queue is full drops the handshake; loopback cannot be made
 * to do that reliably): only an abort or the timeout ends a wait for them.
 */
export async function withConnectsThatNeverComplete<T>(body: () => Promise<T>): Promise<T> {
  const probe = new RawHttpClient({ origin: 'http://127.0.0.1:1', connections: 1, timeoutMs: 1_000, bodyBytesKeptMax: 1, clock: () => performance.now() });
  const prototype = Object.getPrototypeOf((probe as unknown as { all: object[] }).all[0]) as { preconnect: () => Promise<boolean> };
  probe.destroy();
  const preconnect = prototype.preconnect;
  prototype.preconnect = () => new Promise<boolean>(() => {});
  try {
    return await body();
  } finally {
    prototype.preconnect = preconnect;
  }
}
