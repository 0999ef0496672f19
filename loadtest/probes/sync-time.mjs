// Times one unit's feed sync into a fresh ledger against a kept bench:batch data folder.
// node loadtest/probes/sync-time.mjs <kept root> [--prof-units]
import { rmSync } from 'node:fs';
import { Cluster } from '../../dist/deploy/cluster.js';
import { openLedger } from '../../dist/batch/ledger-store.js';
import { syncFeed } from '../../dist/batch/feed-sync.js';
import { loadTopology } from '../../dist/domain/topology.js';
const root = process.argv[2];
const prof = process.argv.includes('--prof-units');
const cluster = new Cluster({ root, units: 4, ...(prof ? { nodeArgs: ['--cpu-prof', '--cpu-prof-dir=/tmp/prof-units'] } : {}) });
await cluster.start();
try {
  const unit = cluster.topology.units[0];
  const { fx, file } = loadTopology(cluster.topologyPath);
  for (let round = 0; round < 2; round++) {
    rmSync('/tmp/sync-ledger', { recursive: true, force: true });
    const db = openLedger('/tmp/sync-ledger/ledger.db');
    const t0 = performance.now(); const c0 = process.cpuUsage();
    const n = await syncFeed(db, { unitUrl: unit.url, partitions: 8, fx, utcOffsetMinutes: file.businessDayUtcOffsetMinutes });
    const c = process.cpuUsage(c0);
    console.log('sync', n, 'entries', ((performance.now() - t0) / 1000).toFixed(2), 's wall; batch cpu user', (c.user / 1e6).toFixed(2), 'sys', (c.system / 1e6).toFixed(2));
    db.close();
  }
} finally { await cluster.close(); }
