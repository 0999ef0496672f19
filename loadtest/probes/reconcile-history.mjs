// Probe: end of day on consecutive business dates over one ledger, to see whether a
// day's run depends on how many days the ledger already holds. Writes a fixture of
// ACCOUNTS accounts (over 4 units) with authorizations on DAYS consecutive dates, then
// runs end of day for each date but the first, in order (batch window: full pressure),
// and prints each run's seconds and its task seconds (sync, clear, accrue, send, reconcile).
// env: ACCOUNTS (100000), DAYS (8).
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Cluster } from '../../dist/deploy/cluster.js';
import { writeClusterFixtures } from '../../dist/batch/cluster-fixture.js';
import { runEndOfDay } from '../../dist/batch/end-of-day.js';
import { addDays } from '../../dist/batch/accounting-rules.js';
import { calendarOf } from '../../dist/domain/authorize-rules.js';

const accounts = Number(process.env.ACCOUNTS ?? 100000);
const dayCount = Number(process.env.DAYS ?? 8);
const root = mkdtempSync(join(tmpdir(), 'dsu-rh-'));
const cluster = new Cluster({ root, units: 4 });
try {
  const today = calendarOf(Date.now(), cluster.topology.businessDayUtcOffsetMinutes).day;
  const days = Array.from({ length: dayCount }, (_, i) => addDays(today, i - dayCount));
  await writeClusterFixtures(cluster, accounts, days);
  await cluster.start();
  const base = { topology: cluster.topology, topologyPath: cluster.topologyPath, batchRoot: join(root, 'batch'), partitions: 8, threads: 2, pressure: 'full', niceness: 0 };
  for (const date of days.slice(1)) {
    const eod = await runEndOfDay({ ...base, date });
    const tasks = Object.entries(eod.taskSeconds).map(([kind, s]) => `${kind} ${s.toFixed(2)}`).join(', ');
    const entries = eod.units.reduce((sum, unit) => sum + unit.ledger.entries, 0);
    console.log(`${date}: ${eod.seconds.toFixed(2)} s, ${eod.mismatches} mismatches, ledger entries ${entries}; task seconds: ${tasks}`);
  }
} finally {
  await cluster.close();
  rmSync(root, { recursive: true, force: true });
}
