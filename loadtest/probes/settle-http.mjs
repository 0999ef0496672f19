// Probe: a unit process fed settle requests over POST /v1/batch (as batch accounting sends them);
// prints the unit's CPU and the bytes it wrote per settlement. env: ACCOUNTS (50000), PER (250), INFLIGHT (2), LANE (normal)
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { request } from 'undici';
import { writeUnitFixture } from '../../dist/batch/fixture.js';
import { Cluster } from '../../dist/deploy/cluster.js';
const cpu = (pid) => { const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' '); return Number(f[11]) * 10 + Number(f[12]) * 10; };
const root = mkdtempSync(join(tmpdir(), 'dsu-sh-'));
const cluster = new Cluster({ root, units: 1, nodeArgs: (process.env.NODE_ARGS ?? '').split(' ').filter(Boolean) });
const unit = cluster.topology.units[0];
writeUnitFixture({ dataDir: unit.dataDir, unitId: unit.id, unitIds: [unit.id], vnodesPerWeight: cluster.topology.ring.vnodesPerWeight, accounts: Number(process.env.ACCOUNTS ?? 50000), days: [{ date: '2026-11-29', authorizationsPerAccount: 2 }, { date: '2026-11-30', authorizationsPerAccount: 2 }], utcOffsetMinutes: 480, creditLimitMinor: 10_000_000 });
const db = new Database(join(unit.dataDir, 'unit.db'), { readonly: true });
const holds = db.prepare('SELECT authorization_id, account_id, hold_amount FROM holds ORDER BY account_id').all();
db.close();
await cluster.start();
const pid = cluster.units.get(unit.id).child.pid;
const byAccount = new Map();
for (const h of holds) { if (!byAccount.has(h.account_id)) byAccount.set(h.account_id, []); const l = byAccount.get(h.account_id); if (l.length < 2) l.push(h); }
const lines = [...byAccount.entries()].map(([accountId, hs]) => JSON.stringify({ op: 'settle', idempotencyKey: `batch:clearing:2026-11-30:${accountId}`, accountId, releases: hs.map((h) => ({ authorizationId: h.authorization_id, minor: h.hold_amount })), postMinor: hs.reduce((s, h) => s + h.hold_amount, 0), kind: 'clearing' }));
const per = Number(process.env.PER ?? 250); const lane = process.env.LANE ?? 'normal';
let next = 0;
const written = () => Number(/wchar: (\d+)/.exec(readFileSync(`/proc/${pid}/io`, 'utf8'))[1]);
const c0 = cpu(pid); const w0 = written(); const t0 = performance.now();
await Promise.all(Array.from({ length: Number(process.env.INFLIGHT ?? 2) }, async () => {
  while (next < lines.length) {
    const chunk = lines.slice(next, next + per); next += chunk.length;
    const r = await request(`${unit.url}/v1/batch?lane=${lane}`, { method: 'POST', body: chunk.join('\n'), headers: { 'content-type': 'application/x-ndjson' } });
    const t = await r.body.text(); if (r.statusCode !== 200 || t.includes('"status":5')) throw new Error(t.slice(0, 300));
  }
}));
const ms = performance.now() - t0; const used = cpu(pid) - c0; const bytes = written() - w0;
console.log(`${process.env.VARIANT ?? ''} ${lines.length} settlements: ${(lines.length / ms * 1000).toFixed(0)}/s, unit cpu ${(used * 1000 / lines.length).toFixed(1)} us/op, unit writes ${(bytes / lines.length / 1024).toFixed(1)} KiB/op`);
await cluster.close(); rmSync(root, { recursive: true, force: true });
