import { readdirSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { benchFailed, machine, measure, median, startLoadedCluster, wholeNumberOptions, type LoadedCluster, type Measured } from './bench-lib.js';

// Scale of the store: the same authorization benchmark against two clusters that
// differ only in accounts per unit (default 10,000 and 2,000,000, the reference
// system's shard size), measured in interleaved rounds in one run so that the
// machine's noise hits both alike. The target: authTps at the large size within
// 10% of the small size. scaleRatio is the median of the rounds' ratios (each
// round measures both clusters back to back, so its ratio sees one state of the
// machine); the ratio of the two medians, which pairs measurements minutes apart,
// is reported beside it as scaleRatioOfMedians. Each round also records what the
// machine did (CPUs busy, iowait, steal, disk writes) and the size of the units' WAL
// files after it, since a large store's cost can be write-back the units leave to the
// kernel. A WAL file is reused from its start once checkpointed and kept up to the
// units' journal_size_limit (64 MiB), so its size is an upper bound of what waits to be
// copied back, not that amount.

const help = `Usage: npm run bench:scale -- [options]

  --small N         accounts per unit of the small cluster (default 10000)
  --large N         accounts per unit of the large cluster (default 2000000)
  --connections N   closed-loop connections (default 256)
  --duration S      seconds per measured phase (default 10)
  --rounds N        interleaved rounds (default 5)
  --seed N          workload seed (default 42)
  --json            print one JSON object
  --help            this text
Issuing 4 x 2,000,000 accounts through the gateway takes a few minutes.`;

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      small: { type: 'string', default: '10000' }, large: { type: 'string', default: '2000000' },
      connections: { type: 'string', default: '256' }, duration: { type: 'string', default: '10' },
      rounds: { type: 'string', default: '5' }, seed: { type: 'string', default: '42' },
      json: { type: 'boolean', default: false }, help: { type: 'boolean', default: false },
    },
  });
  if (values.help === true) {
    process.stdout.write(help + '\n');
    return;
  }
  const numbers = wholeNumberOptions(values, {
    small: [1, 10_000_000], large: [1, 10_000_000], connections: [1, 10_000], duration: [1, 600], rounds: [1, 20], seed: [0, 2 ** 31],
  });
  const quiet = values.json === true;
  const options = { connections: numbers.connections, durationSeconds: numbers.duration, rateDurationSeconds: numbers.duration, seed: numbers.seed };
  const clusters: LoadedCluster[] = [];
  try {
    clusters.push(await startLoadedCluster(numbers.small * 4, 4, numbers.seed, quiet));
    clusters.push(await startLoadedCluster(numbers.large * 4, 4, numbers.seed + 1, quiet));
    // Warm both up first: the large cluster's first round ran cold right after issuance.
    for (const loaded of clusters) await measure(loaded.target, loaded.cards, { ...options, durationSeconds: 4 }, 0, 'closed');
    const rounds: Array<Measured & { accountsPerUnit: number; walFileMBAfter: number }> = [];
    for (let round = 1; round <= numbers.rounds; round++) {
      for (let i = 0; i < clusters.length; i++) {
        const loaded = clusters[(i + round - 1) % clusters.length] as LoadedCluster;
        const { measured } = await measure(loaded.target, loaded.cards, options, round, 'closed');
        const accountsPerUnit = Math.round(loaded.issuance.issued / 4);
        const walFileMBAfter = Math.round(walBytes(loaded.root) / 1e5) / 10;
        rounds.push({ ...measured, accountsPerUnit, walFileMBAfter });
        if (!quiet) process.stderr.write(`round ${round} ${String(accountsPerUnit).padStart(8)} accounts/unit ${String(measured.tps).padStart(7)} req/s  errors ${measured.errors + measured.non2xx}  disk ${measured.machine.diskWrittenMB} MB written, iowait ${measured.machine.iowaitPercent}%, WAL files ${walFileMBAfter} MB\n`);
      }
    }
    const [small, large] = clusters as [LoadedCluster, LoadedCluster];
    const perUnit = (loaded: LoadedCluster): number => Math.round(loaded.issuance.issued / 4);
    const tpsOf = (loaded: LoadedCluster): number => median(rounds.filter((m) => m.accountsPerUnit === perUnit(loaded)).map((m) => m.tps));
    const roundRatios = Array.from({ length: numbers.rounds }, (_, index) => {
      const inRound = rounds.filter((m) => m.round === index + 1);
      const tps = (loaded: LoadedCluster): number => (inRound.find((m) => m.accountsPerUnit === perUnit(loaded)) as Measured).tps;
      return Math.round((tps(large) / tps(small)) * 1000) / 1000;
    });
    const result = {
      accountsPerUnitSmall: perUnit(small), accountsPerUnitLarge: perUnit(large),
      authTpsSmall: tpsOf(small), authTpsLarge: tpsOf(large), scaleRatio: median(roundRatios), roundRatios,
      scaleRatioOfMedians: Math.round((tpsOf(large) / tpsOf(small)) * 1000) / 1000,
      issuanceSecondsLarge: Math.round(large.issuance.seconds), connections: numbers.connections, durationSeconds: numbers.duration, rounds, machine: machine(),
    };
    if (quiet) process.stdout.write(JSON.stringify(result) + '\n');
    else process.stdout.write(`authTps ${result.authTpsSmall} at ${result.accountsPerUnitSmall}/unit, ${result.authTpsLarge} at ${result.accountsPerUnitLarge}/unit: ratio ${result.scaleRatio} (median of the rounds ${result.roundRatios.join(", ")}; target >= 0.9)\n`);
  } finally {
    for (const loaded of clusters) {
      await loaded.cluster.close();
      rmSync(loaded.root, { recursive: true, force: true });
    }
  }
}

/** Bytes of the SQLite write-ahead log files under a cluster's folder (the units' stores). */
function walBytes(folder: string, depth = 3): number {
  let total = 0;
  for (const entry of readdirSync(folder, { withFileTypes: true })) {
    const path = join(folder, entry.name);
    if (entry.isDirectory() && depth > 0) total += walBytes(path, depth - 1);
    else if (entry.isFile() && entry.name.endsWith('-wal')) total += statSync(path).size;
  }
  return total;
}

main().catch((error: unknown) => benchFailed('bench:scale', error));
