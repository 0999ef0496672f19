import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { Cluster } from '../deploy/cluster.js';
import { issueCards, syntheticApplicants, type IssuedCard } from '../deploy/bulk-issuance.js';
import { call } from './helpers.js';

// A data folder first run without HA (npm start), then with it (npm start -- --ha):
// the new standby must get everything the unit wrote solo, not count as in sync
// with an empty store. Checked by a planned switch to the standby and an
// authorization of a card issued before HA.

const admin = { authorization: 'Bearer demo-admin-token' };
const root = mkdtempSync(join(tmpdir(), 'dsu-solo-then-ha-'));
const clusters: Cluster[] = [];

afterAll(async () => {
  for (const cluster of clusters) await cluster.close();
  rmSync(root, { recursive: true, force: true });
});

async function waitInSync(cluster: Cluster, timeoutMs: number): Promise<any> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const status = (await call(cluster.gatewayUrl, 'GET', '/admin/ha', undefined, admin)).body;
    if (status.units.every((unit: any) => unit.state === 'up' && unit.replication === 'sync')) return status;
    if (Date.now() > deadline) throw new Error(`not in sync: ${JSON.stringify(status.units)}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

describe('a store written without HA, then run as an HA pair', () => {
  it('gives the new standby every account written solo', async () => {
    const solo = new Cluster({ root, units: 1 });
    clusters.push(solo);
    await solo.start();
    await issueCards({
      gatewayUrl: solo.gatewayUrl, applicants: syntheticApplicants(40, 2), bands: [{ minScore: 0, creditLimitMinor: 1_000_000 }],
      currency: 'CNY', cardsPath: join(root, 'cards.ndjson'),
    });
    await solo.close();
    const card = JSON.parse(readFileSync(join(root, 'cards.ndjson'), 'utf8').split('\n')[0]!) as IssuedCard;

    const paired = new Cluster({ root, units: 1, ha: true });
    clusters.push(paired);
    await paired.start();
    const status = await waitInSync(paired, 15_000);
    expect(status.units[0].primary).toBe(paired.unitSpec('dsu-1').url);
    const standbyUrl = paired.unitSpec('dsu-1').standby!.url;
    expect((await call(standbyUrl, 'GET', `/v1/accounts/${card.accountId}`)).status).toBe(200);

    const switched = await call(paired.gatewayUrl, 'POST', '/admin/ha/switch', { unit: 'dsu-1', reason: 'test' }, admin);
    expect(switched.status, JSON.stringify(switched.body)).toBe(200);
    const answer = await call(paired.gatewayUrl, 'POST', '/v1/authorizations', {
      card: { number: card.pan, expiry: card.expiry, cvv: card.cvv }, amount: { value: 1_000, currency: 'CNY' }, type: 'purchase', channel: 'pos',
      merchant: { id: 'm-1', mcc: '5411', country: 'CN' },
    }, { 'idempotency-key': 'after-switch' });
    expect(answer.body).toMatchObject({ approved: true, responseCode: '00', unit: 'dsu-1' });
  });
});
