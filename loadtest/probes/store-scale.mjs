// Probe: the unit engine in process at two store sizes, with and without memory-mapped
// reads: wall microseconds and disk kilobytes written per authorization (random cards, transactions of 25,
// synchronous FULL), the question behind bench:scale's scaleRatio. Each store is built
// once (accounts opened through the engine), then reopened for each variant, alternated.
// Variants (VARIANTS, default "base,mmap"): base (the units' 64 MiB page cache), mmap
// (memory-mapped reads of MMAP_MIB), cache (a page cache of CACHE_MIB), warm (that cache,
// filled with the cards and accounts tables before the timed run, as a unit's start could).
// env: SMALL (10000), LARGE (2000000), AUTHS (60000), ROUNDS (2), MMAP_MIB (2048), CACHE_MIB (1024),
// PAGE_SIZE (the stores' page size when built; SQLite's default otherwise), KEEP (a folder to reuse).
import { execSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { UnitEngine } from '../../dist/units/engine.js';
import { openUnitDatabases } from '../../dist/units/store.js';
import { loadTopology } from '../../dist/domain/topology.js';
import { deriveCardKeys } from '../../dist/domain/card-protect.js';
import { OffsetClock } from '../../dist/domain/clock.js';
import { machineDelta, readMachineCounters } from '../../dist/loadtest/machine-counters.js';

const sizes = [Number(process.env.SMALL ?? 10000), Number(process.env.LARGE ?? 2000000)];
const auths = Number(process.env.AUTHS ?? 60000);
const rounds = Number(process.env.ROUNDS ?? 2);
const mmapBytes = Number(process.env.MMAP_MIB ?? 2048) * 1024 * 1024;
const cacheKiB = Number(process.env.CACHE_MIB ?? 1024) * 1024;
const variants = (process.env.VARIANTS ?? 'base,mmap').split(',');
const pageSize = process.env.PAGE_SIZE === undefined ? undefined : Number(process.env.PAGE_SIZE);
const root = process.env.KEEP ?? `/tmp/dsu-store-scale${pageSize === undefined ? '' : `-p${pageSize}`}`;
const topology = loadTopology(new URL('../../deploy/topology.json', import.meta.url).pathname);
const keys = deriveCardKeys('11'.repeat(32));
const engineFor = (writer) => new UnitEngine({
  unitId: 'dsu-1', db: writer, keys, products: topology.products, fx: topology.fx, clock: new OffsetClock(),
  utcOffsetMinutes: topology.file.businessDayUtcOffsetMinutes, role: 'stable',
});

function build(accounts) {
  const dir = join(root, String(accounts));
  if (existsSync(join(dir, 'cards.json'))) return { dir, cards: JSON.parse(readFileSync(join(dir, 'cards.json'), 'utf8')) };
  mkdirSync(dir, { recursive: true });
  const { writer, reader } = openUnitDatabases({ dataDir: dir, cacheKiB: 64 * 1024, pageSize });
  writer.pragma('synchronous = OFF');
  const engine = engineFor(writer);
  const cards = [];
  const open = writer.transaction((from, to) => {
    for (let i = from; i < to; i++) {
      const answer = engine.apply({ op: 'openAccount', accountId: String(10_000_000_000_000 + i), product: 'classic', creditLimit: { value: 100_000_000, currency: 'CNY' } });
      const card = JSON.parse(answer.body).card;
      cards.push([card.number, card.expiry, card.cvv]);
    }
  });
  for (let i = 0; i < accounts; i += 10_000) open.immediate(i, Math.min(i + 10_000, accounts));
  writer.pragma('wal_checkpoint(TRUNCATE)');
  reader.close(); writer.close();
  writeFileSync(join(dir, 'cards.json'), JSON.stringify(cards));
  return { dir, cards };
}

let opCount = 0;
function run({ dir, cards }, variant) {
  const { writer, reader } = openUnitDatabases({ dataDir: dir, cacheKiB: variant === 'cache' || variant === 'warm' ? cacheKiB : 64 * 1024 });
  if (variant === 'warm') for (const table of ['accounts', 'cards']) writer.prepare(`SELECT count(*) FROM ${table}`).pluck().get();
  if (variant === 'mmap') { writer.pragma(`mmap_size = ${mmapBytes}`); reader.pragma(`mmap_size = ${mmapBytes}`); }
  const engine = engineFor(writer);
  const commit = writer.transaction((ops) => { for (const op of ops) engine.apply(op); });
  let seed = 7 + opCount;
  const next = () => (seed = (Math.imul(seed, 1103515245) + 12345) >>> 0);
  const ops = Array.from({ length: auths }, () => {
    const [pan, expiry, cvv] = cards[next() % cards.length];
    return {
      op: 'authorize', idempotencyKey: `ss-${process.pid}-${Date.now()}-${opCount++}`, pan, expiry, cvv,
      amount: { value: 100 + (next() % 5_000), currency: 'CNY' }, type: 'purchase', channel: 'pos',
      merchant: { id: 'm-1', mcc: '5411', country: 'CN' }, partialAllowed: false,
    };
  });
  execSync('sync'); // earlier runs' and the build's dirty pages are not this run's writes
  const counters = readMachineCounters();
  const started = process.hrtime.bigint();
  for (let k = 0; k < ops.length; k += 25) commit.immediate(ops.slice(k, k + 25));
  const us = Number(process.hrtime.bigint() - started) / 1e3 / ops.length;
  const walKb = statSync(join(dir, 'unit.db-wal')).size / 1024 / ops.length;
  writer.pragma('wal_checkpoint(TRUNCATE)');
  // Disk bytes per authorization, the log and its checkpoint both (the machine's disks, so quiet runs only).
  const kb = machineDelta(counters, readMachineCounters()).diskWrittenMB * 1024 / ops.length;
  reader.close(); writer.close();
  return { us, kb, walKb };
}

const stores = sizes.map((accounts) => { const t = Date.now(); const s = build(accounts); console.log(`store of ${accounts} accounts ready in ${((Date.now() - t) / 1000).toFixed(0)} s`); return s; });
for (let round = 1; round <= rounds; round++) {
  for (const variant of variants) {
    const line = stores.map((store, i) => { const { us, kb, walKb } = run(store, variant); return `${sizes[i]}: ${us.toFixed(1)} us ${kb.toFixed(1)} KB (log ${walKb.toFixed(1)})`; });
    console.log(`round ${round} ${variant.padEnd(5)} ${line.join('  ')}  (per authorization)`);
  }
}
