// Probe: where the unit's settle op spends its time, statement by statement (in-process).
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { writeUnitFixture } from '../../dist/batch/fixture.js';
import { openUnitDatabases } from '../../dist/units/store.js';
import { UnitEngine as Engine } from '../../dist/units/engine.js';
import { loadTopology } from '../../dist/domain/topology.js';
import { deriveCardKeys } from '../../dist/domain/card-protect.js';
import { OffsetClock } from '../../dist/domain/clock.js';
const root = mkdtempSync(join(tmpdir(), 'dsu-sm-'));
const accounts = Number(process.env.ACCOUNTS ?? 50000);
writeUnitFixture({ dataDir: root, unitId: 'u1', unitIds: ['u1'], vnodesPerWeight: 40, accounts, days: [{ date: '2026-11-29', authorizationsPerAccount: 2 }, { date: '2026-11-30', authorizationsPerAccount: 2 }], utcOffsetMinutes: 480, creditLimitMinor: 10_000_000 });
const { writer, reader } = openUnitDatabases({ dataDir: root, cacheKiB: Number(process.env.CACHE ?? 65536) }); if (process.env.MMAP) writer.pragma('mmap_size = ' + process.env.MMAP);
const topo = loadTopology(new URL('../../deploy/topology.json', import.meta.url).pathname);
const engine = new Engine({ unitId: 'u1', db: writer, keys: deriveCardKeys('00'.repeat(32)), products: topo.products, fx: topo.fx, clock: new OffsetClock(0), utcOffsetMinutes: 480, role: 'stable' });
const times = new Map();
for (const [name, st] of Object.entries(engine.statements)) {
  const wrap = {};
  for (const m of ['run', 'get', 'all']) {
    if (typeof st[m] !== 'function') continue;
    const f = st[m].bind(st);
    wrap[m] = (...a) => { const t = process.hrtime.bigint(); const r = f(...a); const d = Number(process.hrtime.bigint() - t); const k = name + '.' + m; const e = times.get(k) ?? [0, 0]; e[0] += d; e[1]++; times.set(k, e); return r; };
  }
  engine.statements[name] = new Proxy(st, { get: (o, p) => wrap[p] ?? o[p] });
}
const holds = writer.prepare('SELECT authorization_id, account_id, hold_amount FROM holds ORDER BY account_id').all();
const byAccount = new Map();
for (const h of holds) { if (!byAccount.has(h.account_id)) byAccount.set(h.account_id, []); const l = byAccount.get(h.account_id); if (l.length < 2) l.push(h); }
const ops = [...byAccount.entries()].map(([accountId, hs]) => ({ op: 'settle', idempotencyKey: `batch:clearing:2026-11-30:${accountId}`, accountId, releases: hs.map((h) => ({ authorizationId: h.authorization_id, minor: h.hold_amount })), postMinor: hs.reduce((s, h) => s + h.hold_amount, 0), kind: 'clearing' }));
const per = 250;
let commitNs = 0;
const tx = writer.transaction((chunk) => { for (const op of chunk) { const r = engine.apply(op); if (r.status !== 200) throw new Error(r.body); } });
const t0 = performance.now();
for (let i = 0; i < ops.length; i += per) tx.immediate(ops.slice(i, i + per));
const ms = performance.now() - t0;
console.log(`settles ${ops.length}: ${(ms * 1000 / ops.length).toFixed(1)} us/op`);
for (const [k, [ns, n]] of [...times.entries()].sort((a, b) => b[1][0] - a[1][0])) console.log(`${k.padEnd(28)} ${(ns / 1000 / ops.length).toFixed(2)} us/op  (${n} calls, ${(ns / n / 1000).toFixed(2)} us each)`);
writer.close(); reader.close(); rmSync(root, { recursive: true, force: true });
