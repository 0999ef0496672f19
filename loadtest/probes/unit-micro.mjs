// Probe: drive one unit process directly with /v1/batch of B authorizations, one batch in
// flight (as the gateway does), and report the unit's CPU per operation and per batch, and
// per thread of the unit (its main thread, the feed thread, V8's helpers) per batch.
import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Pool } from 'undici';
import { UnitWire } from '../../dist/gateway/unit-wire.js';
import { Cluster } from '../../dist/deploy/cluster.js';
import { issueCards, syntheticApplicants } from '../../dist/deploy/bulk-issuance.js';
// CPU milliseconds (user + system) of each thread of a process, by "name:tid".
const threads = (pid) => Object.fromEntries(readdirSync(`/proc/${pid}/task`).map((tid) => {
  const [head, rest] = readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8').split(') ');
  const f = rest.split(' ');
  return [`${head.split(' (')[1]}:${tid}`, (Number(f[11]) + Number(f[12])) * 10];
}));
const cpu = (pid) => { const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' '); return [Number(f[11]) * 10, Number(f[12]) * 10]; };
const root = mkdtempSync(join(tmpdir(), 'dsu-um-'));
const cluster = new Cluster({ root, units: 1, env: process.env, nodeArgs: (process.env.NODE_ARGS ?? "").split(" ").filter(Boolean) });
await cluster.start();
const cardsPath = join(root, 'cards.ndjson');
await issueCards({ gatewayUrl: cluster.gatewayUrl, applicants: syntheticApplicants(20000, 1), bands: cluster.topology.issuance.scoreBands, currency: cluster.topology.issuance.currency, cardsPath, batchSize: 2000 });
const cards = readFileSync(cardsPath, 'utf8').trim().split('\n').map((l) => JSON.parse(l));
const unit = cluster.topology.units[0];
const pid = cluster.units.get(unit.id).child.pid;
const pool = new Pool(unit.url, { connections: 1, pipelining: 1 });
const wire = new UnitWire({ url: unit.url, connectTimeoutMs: 1000, answerTimeoutMs: 3000 });
let seq = 0;
const op = process.env.NOOP ? () => JSON.stringify({ op: 'reverse', idempotencyKey: null, authorizationId: 'dsu-1~nope' + (seq++), amount: null }) : () => { const c = cards[seq % cards.length]; seq++; return JSON.stringify({ op: 'authorize', idempotencyKey: `um-${process.pid}-${seq}`, pan: c.pan, expiry: c.expiry, cvv: c.cvv, amount: { value: 100 + (seq % 900), currency: 'CNY' }, type: 'purchase', channel: 'pos', merchant: { id: 'm-1', mcc: '5411', country: 'CN' }, partialAllowed: false }); };
for (const B of (process.env.SIZES ?? '1,8,64').split(',').map(Number)) {
  const batches = Math.max(200, Math.round(Number(process.env.OPS ?? 20000) / B));
  const th0 = threads(pid); const [u0, s0] = cpu(pid); const t0 = performance.now();
  for (let i = 0; i < batches; i++) {
    const lines = []; for (let j = 0; j < B; j++) lines.push(op());
    if (process.env.WIRE) { const a = await new Promise((res) => wire.send(lines.join('\n'), res)); if (!a.ok) throw new Error(a.reason); }
    else { const r = await pool.request({ path: '/v1/batch', method: 'POST', body: lines.join('\n'), headers: { 'content-type': 'application/x-ndjson' } });
    const t = await r.body.text(); if (r.statusCode !== 200) throw new Error(t); }
  }
  const [u1, s1] = cpu(pid); const ms = performance.now() - t0; const ops = batches * B;
  const th1 = threads(pid);
  console.log('  threads:', Object.entries(th1).map(([name, ms]) => `${name} ${((ms - (th0[name] ?? 0)) * 1000 / batches).toFixed(0)} us/batch`).filter((text) => !text.endsWith(' 0 us/batch')).join(', '));
  console.log(`B=${B}: ${(ops / ms * 1000).toFixed(0)} ops/s, unit cpu/op user ${((u1 - u0) * 1000 / ops).toFixed(1)} sys ${((s1 - s0) * 1000 / ops).toFixed(1)} us, cpu/batch ${(((u1 - u0) + (s1 - s0)) * 1000 / batches).toFixed(0)} us, wall/batch ${(ms * 1000 / batches).toFixed(0)} us`);
}
await pool.close(); wire.close(); await cluster.close(); rmSync(root, { recursive: true, force: true });
