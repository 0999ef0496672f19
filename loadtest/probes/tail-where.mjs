// Where the p99 of a fixed-rate run sits: client-side latency vs the gateway's own histogram
// (request start to answer), the unit batch round trips, the units' commit durations and
// store lock retries, and how the units' WAL checkpoint chases ended. RATE (default 9500), SECONDS (15), RUNS (2).
import { startLoadedCluster, measure } from '../../dist/loadtest/bench-lib.js';
import { request } from 'undici';
import { rmSync } from 'node:fs';
const rate = Number(process.env.RATE ?? 9500);
const loaded = await startLoadedCluster(100000, 4, 42, true);
const scrape = async () => {
  const r = await request(loaded.cluster.gatewayUrl + '/metrics'); const text = await r.body.text();
  const hist = (name, filter) => { const b = new Map(); for (const line of text.split('\n')) { if (!line.startsWith(name + '_bucket') || !filter(line)) continue; const le = line.match(/le="([^"]+)"/)[1]; b.set(le, (b.get(le) ?? 0) + Number(line.split(' ').pop())); } return b; };
  return { auth: hist('dsu_gateway_request_duration_seconds', (l) => l.includes('route="authorize"')), batch: hist('dsu_gateway_unit_batch_duration_seconds', () => true), ops: hist('dsu_gateway_unit_batch_operations', () => true) };
};
const unitText = async () => Promise.all(loaded.cluster.topology.units.map(async (unit) => (await (await request(unit.url + '/metrics')).body.text())));
const unitScrape = async () => {
  const texts = await unitText();
  const commit = new Map(); const chases = new Map(); let retries = 0;
  for (const text of texts) for (const line of text.split('\n')) {
    if (line.startsWith('dsu_unit_group_commit_duration_seconds_bucket')) { const le = line.match(/le="([^"]+)"/)[1]; commit.set(le, (commit.get(le) ?? 0) + Number(line.split(' ').pop())); }
    if (line.startsWith('dsu_unit_store_lock_retries_total')) retries += Number(line.split(' ').pop());
    if (line.startsWith('dsu_unit_wal_chases_total{')) { const outcome = line.match(/outcome="([^"]+)"/)[1]; chases.set(outcome, (chases.get(outcome) ?? 0) + Number(line.split(' ').pop())); }
  }
  return { commit, chases, retries };
};
const opts = { connections: 512, durationSeconds: 4, rounds: 1, rateDurationSeconds: Number(process.env.SECONDS ?? 15), seed: 42, json: true };
await measure(loaded.target, loaded.cards, opts, 0, 'closed');
for (let i = 0; i < Number(process.env.RUNS ?? 2); i++) {
  const before = await scrape();
  const unitsBefore = await unitScrape();
  const { phase } = await measure(loaded.target, loaded.cards, opts, i + 1, 'rate', rate);
  const after = await scrape();
  const unitsAfter = await unitScrape();
  const show = (name) => { const a = after[name], b = before[name]; const total = (a.get('+Inf') ?? 0) - (b.get('+Inf') ?? 0); return [...a.keys()].map((le) => `${le}:${(100 * ((a.get(le) - (b.get(le) ?? 0)) / total)).toFixed(2)}%`).join(' ') + ` (n=${total})`; };
  console.log(`run ${i + 1} at ${rate}/s: client p50 ${phase.totals.latencyMs.p50} p90 ${phase.totals.latencyMs.p90} p99 ${phase.totals.latencyMs.p99} p999 ${phase.totals.latencyMs.p999}`);
  console.log('  gateway authorize <= ', show('auth'));
  console.log('  unit batch rtt <= ', show('batch'));
  console.log('  batch ops <= ', show('ops'));
  const total = unitsAfter.commit.get('+Inf') - unitsBefore.commit.get('+Inf');
  console.log('  unit commits <= ', [...unitsAfter.commit.keys()].map((le) => `${le}:${(100 * (unitsAfter.commit.get(le) - unitsBefore.commit.get(le)) / total).toFixed(3)}%`).join(' '), `(n=${total}), store lock retries ${unitsAfter.retries - unitsBefore.retries}`);
  console.log('  WAL chases ended by', [...unitsAfter.chases.keys()].map((outcome) => `${outcome}:${unitsAfter.chases.get(outcome) - (unitsBefore.chases.get(outcome) ?? 0)}`).join(' ') || 'none');
}
await loaded.cluster.close();
rmSync(loaded.root, { recursive: true, force: true });
