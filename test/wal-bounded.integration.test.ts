import { readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Cluster } from '../deploy/cluster.js';
import { issueCards, syntheticApplicants } from '../deploy/bulk-issuance.js';
import { walBytesKeptMax } from '../units/store.js';
import { call, freshKey, openAccount, purchase, startCluster } from './helpers.js';

// A unit's WAL stays bounded under steady writes. Before the background
// checkpoint rewound the log (units/wal-checkpointer.ts), issuing 300,000 accounts
// into one unit left a 2.2 GB WAL beside a 108 MB database, and it never shrank.

let cluster: Cluster;
let close: () => Promise<void>;

beforeAll(async () => {
  const started = await startCluster(1);
  cluster = started.cluster;
  close = started.close;
});

afterAll(async () => {
  await close();
});

/** The WAL header's checkpoint sequence: SQLite adds one each time the log is rewound and started again. */
function walRewinds(path: string): number {
  try {
    return readFileSync(path).readUInt32BE(12);
  } catch {
    return 0;
  }
}

function megabytes(path: string): number {
  try {
    return statSync(path).size / 2 ** 20;
  } catch {
    return 0;
  }
}

describe('the unit store under steady writes', () => {
  it('rewinds and trims its WAL instead of growing it with every commit', async () => {
    const dataDir = (cluster.topology.units[0] as { dataDir: string }).dataDir;
    const wal = join(dataDir, 'unit.db-wal');
    let walMaxMb = 0;
    const rewindsBefore = walRewinds(wal);
    const watch = setInterval(() => (walMaxMb = Math.max(walMaxMb, megabytes(wal))), 100);
    try {
      // About 360 MB of WAL frames if nothing rewound the log; 32 MB trigger a rewind.
      await issueCards({
        gatewayUrl: cluster.gatewayUrl, applicants: syntheticApplicants(80_000, 3), bands: cluster.topology.issuance.scoreBands,
        currency: cluster.topology.issuance.currency, cardsPath: join(dataDir, '..', 'cards.ndjson'), batchSize: 500,
      });
      // A few writes after two checkpoint ticks: the first commit after a rewind trims the file.
      const { card } = await openAccount(cluster.gatewayUrl, 1_000_000);
      for (let round = 0; round < 3; round++) {
        await new Promise((resolve) => setTimeout(resolve, 1_100));
        const answer = await call(cluster.gatewayUrl, 'POST', '/v1/authorizations', purchase(card, 100), { 'idempotency-key': freshKey() });
        expect(answer.body.approved).toBe(true);
      }
    } finally {
      clearInterval(watch);
    }
    const dbMb = megabytes(join(dataDir, 'unit.db'));
    expect(dbMb).toBeGreaterThan(10);
    expect(megabytes(wal)).toBeLessThanOrEqual(walBytesKeptMax / 2 ** 20);
    // The log was rewound while the accounts were issued, not merely small enough.
    expect(walRewinds(wal)).toBeGreaterThan(rewindsBefore);
    // Without the rewind the file ended at 358 MB here; with it, the peak while the
    // accounts were issued was a second or two of issuance (191 MB seen). The peak
    // depends on the machine's pace, so it is printed, not asserted.
    process.stdout.write(`wal-bounded: peak WAL ${walMaxMb.toFixed(1)} MB, final ${megabytes(wal).toFixed(1)} MB, database ${dbMb.toFixed(1)} MB\n`);
  });
});
