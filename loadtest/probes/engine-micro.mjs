// Probe: the unit engine in process, authorizations in transactions of BATCH (default 25)
// at synchronous FULL, as the group committer runs them: wall microseconds per
// authorization with the engine's ascending authorization ids (a random prefix per
// process, then a counter) against 9 random bytes per id (what the engine did before).
// Random ids put each new hold on a random page of the holds B-tree, and each such
// page is another 4 KiB frame in the WAL at every commit.
// env: ACCOUNTS (20000), AUTHS (60000), BATCH (25), ROUNDS (2: each variant per round, alternated).
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { UnitEngine } from '../../dist/units/engine.js';
import { openUnitDatabases } from '../../dist/units/store.js';
import { loadTopology } from '../../dist/domain/topology.js';
import { deriveCardKeys } from '../../dist/domain/card-protect.js';
import { OffsetClock } from '../../dist/domain/clock.js';

const accounts = Number(process.env.ACCOUNTS ?? 20000);
const auths = Number(process.env.AUTHS ?? 60000);
const batch = Number(process.env.BATCH ?? 25);
const rounds = Number(process.env.ROUNDS ?? 2);
const topology = loadTopology(new URL('../../deploy/topology.json', import.meta.url).pathname);
const keys = deriveCardKeys('11'.repeat(32));

function run(variant) {
  const root = mkdtempSync(join(tmpdir(), 'dsu-em-'));
  try {
    const { writer, reader } = openUnitDatabases({ dataDir: root, cacheKiB: 64 * 1024 });
    const engine = new UnitEngine({
      unitId: 'dsu-1', db: writer, keys, products: topology.products, fx: topology.fx, clock: new OffsetClock(),
      utcOffsetMinutes: topology.file.businessDayUtcOffsetMinutes, role: 'stable',
    });
    // 9 random bytes per id, base64url: the engine's ids before they ascended.
    if (variant === 'random') engine.nextAuthorizationId = () => 'dsu-1~' + randomBytes(9).toString('base64url');
    const cards = [];
    const open = writer.transaction((from, to) => {
      for (let i = from; i < to; i++) {
        const answer = engine.apply({ op: 'openAccount', accountId: String(10_000_000_000_000 + i), product: 'classic', creditLimit: { value: 100_000_000, currency: 'CNY' } });
        cards.push(JSON.parse(answer.body).card);
      }
    });
    for (let i = 0; i < accounts; i += 1000) open.immediate(i, Math.min(i + 1000, accounts));
    const commit = writer.transaction((ops) => { for (const op of ops) engine.apply(op); });
    let seed = 7;
    const next = () => (seed = (Math.imul(seed, 1103515245) + 12345) >>> 0);
    const ops = Array.from({ length: auths }, (_, k) => {
      const card = cards[next() % cards.length];
      return {
        op: 'authorize', idempotencyKey: `em-${variant}-${k}`, pan: card.number, expiry: card.expiry, cvv: card.cvv,
        amount: { value: 1000 + (next() % 50_000), currency: 'CNY' }, type: 'purchase', channel: 'pos',
        merchant: { id: 'm-1', mcc: '5411', country: 'CN' }, partialAllowed: false,
      };
    });
    const started = process.hrtime.bigint();
    for (let k = 0; k < ops.length; k += batch) commit.immediate(ops.slice(k, k + batch));
    const us = Number(process.hrtime.bigint() - started) / 1e3 / ops.length;
    const approved = writer.prepare("SELECT count(*) FROM holds").pluck().get();
    reader.close();
    writer.close();
    return { us, approved };
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
}

for (let round = 1; round <= rounds; round++) {
  for (const variant of ['ascending', 'random']) {
    const { us, approved } = run(variant);
    console.log(`round ${round} ${variant.padEnd(9)} ${us.toFixed(1)} us per authorization (${auths} in transactions of ${batch}, ${approved} holds)`);
  }
}
