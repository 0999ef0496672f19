import { join } from 'node:path';
import { Piscina } from 'piscina';
import { repoRoot, type Cluster } from '../deploy/cluster.js';
import type { FixtureOptions, FixtureResult } from './fixture.js';

/**
 * Writes the benchmark fixture into every unit store of a cluster that is not
 * started yet: `accounts` accounts spread over the units, each with two approved
 * authorizations on every date of `days`. Two worker threads, one unit at a time each.
 * Used by bench:batch and the batch probes.
 */
export async function writeClusterFixtures(cluster: Cluster, accounts: number, days: readonly string[]): Promise<FixtureResult[]> {
  const pool = new Piscina<FixtureOptions, FixtureResult>({ filename: join(repoRoot, 'dist/batch/fixture-worker.js'), minThreads: 2, maxThreads: 2 });
  try {
    const unitIds = cluster.topology.units.map((unit) => unit.id);
    return await Promise.all(cluster.topology.units.map((unit) => pool.run({
      dataDir: unit.dataDir, unitId: unit.id, unitIds, vnodesPerWeight: cluster.topology.ring.vnodesPerWeight,
      accounts: Math.ceil(accounts / unitIds.length), days: days.map((date) => ({ date, authorizationsPerAccount: 2 })),
      utcOffsetMinutes: cluster.topology.businessDayUtcOffsetMinutes, creditLimitMinor: 10_000_000,
    })));
  } finally {
    await pool.destroy();
  }
}
