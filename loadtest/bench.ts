import { rmSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { stopProcess } from '../deploy/cluster.js';
import { benchFailed, machine, measure, median, startLoadedCluster, startYardsticks, wholeNumberOptions, type Measured, type Target } from './bench-lib.js';

// The performance benchmark. One run starts its own cluster (gateway and 4
// durable units), loads the accounts, starts the yardsticks (a naive forwarding
// chain and a lone answering process), then measures the three in interleaved
// rounds with the same load generator and settings, and quotes medians:
//   authTps     end-to-end authorizations per second at saturation (closed loop)
//   ceilingTps  the naive chain: gateway forwarding each request to 4 processes that answer at once
//   frontTps    one process answering at once (the front door alone)
//   p99Ms       fixed-rate runs at 80% of authTps (one per round, median quoted), corrected for coordinated omission
//   p99CeilingMs the naive chain at 80% of ceilingTps, one run beside each of p99Ms's (the layout doing no work)

const help = `Usage: npm run bench -- [options]

  --accounts N      accounts to issue before measuring (default 100000)
  --connections N   closed-loop connections (default 512; a batching system needs
                    enough requests in flight to saturate; all targets get the same)
  --duration S      seconds per measured phase (default 10)
  --rounds N        interleaved rounds of auth / ceiling / front, and fixed-rate
                    runs of the p99, each paired with one of the naive chain at 80%
                    of its own throughput (default 3; medians are quoted)
  --rate-duration S seconds of the fixed-rate latency run (default 15)
  --seed N          workload seed (default 42)
  --json            print one JSON object instead of the table
  --help            this text`;

interface Options {
  accounts: number;
  connections: number;
  durationSeconds: number;
  rounds: number;
  rateDurationSeconds: number;
  seed: number;
  json: boolean;
}

async function run(options: Options): Promise<Record<string, unknown>> {
  const loaded = await startLoadedCluster(options.accounts, 4, options.seed, options.json);
  let yardsticks: Awaited<ReturnType<typeof startYardsticks>> | null = null;
  try {
    yardsticks = await startYardsticks();
    const targets = [loaded.target, yardsticks.ceiling, yardsticks.front];
    // Warm every target up first: right after issuance the units are still
    // checkpointing and the first auth round measured 35% below the later ones.
    for (const target of targets) await measure(target, loaded.cards, { ...options, durationSeconds: 4 }, 0, 'closed');
    const rounds: Measured[] = [];
    for (let round = 1; round <= options.rounds; round++) {
      // Rotate the order so that no target always runs first (after a pause) or last.
      for (let i = 0; i < targets.length; i++) {
        const target = targets[(i + round - 1) % targets.length] as Target;
        const { measured } = await measure(target, loaded.cards, options, round, 'closed');
        rounds.push(measured);
        if (!options.json) process.stderr.write(`round ${round} ${target.name.padEnd(8)} ${String(measured.tps).padStart(7)} req/s  p99 ${measured.p99Ms.toFixed(1)} ms  errors ${measured.errors + measured.non2xx}  cpu ms/req ${JSON.stringify(measured.cpuMsPerRequest)}\n`);
      }
    }
    const tpsOf = (name: string): number => median(rounds.filter((m) => m.target === name).map((m) => m.tps));
    const authTps = tpsOf('auth');
    const ceilingTps = tpsOf('ceiling');
    const frontTps = tpsOf('front');
    const rate = Math.round(authTps * 0.8);
    // A short unmeasured run at the same rate first: the load generator's own code
    // warms up (the first second of a cold fixed-rate run measured a p99 of ~96 ms
    // against 4-13 ms afterwards, all load-generator time). Each run opens its own
    // connections before its clock starts.
    await measure(loaded.target, loaded.cards, { ...options, rateDurationSeconds: 3 }, 0, 'rate', rate);
    // As many fixed-rate runs as closed-loop rounds, and the median p99: on this
    // shared machine one run's p99 moved between 26 and 69 ms from run to run.
    // Each is paired with a run of the naive chain at 80% of its own saturated
    // throughput (the order alternating): the same layout doing no work, at the same
    // share of what it can carry, on the machine of the same minutes. At the same
    // absolute rate instead, a chain with a lower ceilingTps ran at 92-98% of its
    // capacity and its p99 said nothing about ours (run 18 in BENCHMARKS.md).
    const ceilingRate = Math.round(ceilingTps * 0.8);
    await measure(yardsticks.ceiling, loaded.cards, { ...options, rateDurationSeconds: 3 }, 0, 'rate', ceilingRate);
    const latencyRuns: Array<Awaited<ReturnType<typeof measure>>> = [];
    const ceilingLatencyRuns: Array<Awaited<ReturnType<typeof measure>>> = [];
    for (let run = 1; run <= options.rounds; run++) {
      const auth = { target: loaded.target, rate, runs: latencyRuns };
      const ceiling = { target: yardsticks.ceiling, rate: ceilingRate, runs: ceilingLatencyRuns };
      for (const side of run % 2 === 1 ? [auth, ceiling] : [ceiling, auth]) {
        const measured = await measure(side.target, loaded.cards, options, options.rounds + run, 'rate', side.rate);
        side.runs.push(measured);
        if (!options.json) process.stderr.write(`fixed rate ${side.rate}/s, ${side.target.name.padEnd(8)} run ${run}: p99 ${measured.measured.p99Ms.toFixed(2)} ms (from intended send times), ${measured.measured.tps} req/s\n`);
      }
    }
    const p99s = latencyRuns.map((run) => run.measured.p99Ms);
    const ceilingP99s = ceilingLatencyRuns.map((run) => run.measured.p99Ms);
    const latency = latencyRuns.find((run) => run.measured.p99Ms === median(p99s)) ?? (latencyRuns[0] as (typeof latencyRuns)[number]);
    // The same below saturation. At a fixed rate the units' batches hold one or two
    // operations and each costs a unit ~320 us of CPU whatever it holds, so a request
    // costs more than at saturation and 80% of authTps leaves the 2 cores little
    // headroom (BENCHMARKS.md, eighth session); 50% shows the latency with some.
    const halfRate = Math.round(authTps * 0.5);
    const half = await measure(loaded.target, loaded.cards, options, 2 * options.rounds + 1, 'rate', halfRate);
    if (!options.json) process.stderr.write(`fixed rate ${halfRate}/s: p99 ${half.measured.p99Ms.toFixed(2)} ms\n`);
    const authRounds = rounds.filter((m) => m.target === 'auth');
    return {
      authTps, ceilingTps, frontTps, ratio: Math.round((authTps / ceilingTps) * 1000) / 1000,
      p99Ms: Math.round(median(p99s) * 100) / 100, p99Runs: p99s.map((value) => Math.round(value * 100) / 100), p99RateTps: rate, p99LatencyMs: latency.phase.totals.latencyMs,
      // The naive chain at 80% of its own ceilingTps, paired run by run: the layout's and the machine's share of the p99.
      p99CeilingMs: Math.round(median(ceilingP99s) * 100) / 100, p99CeilingRuns: ceilingP99s.map((value) => Math.round(value * 100) / 100), p99CeilingRateTps: ceilingRate,
      p99RatioToCeiling: Math.round((median(p99s) / median(ceilingP99s)) * 1000) / 1000,
      p99RatioToCeilingPairs: Math.round(median(p99s.map((value, i) => value / (ceilingP99s[i] as number))) * 1000) / 1000,
      // A naive chain that failed requests would make its p99 a different statistic.
      p99CeilingErrors: ceilingLatencyRuns.reduce((sum, run) => sum + run.measured.errors + run.measured.non2xx, 0),
      p99At50PercentMs: Math.round(half.measured.p99Ms * 100) / 100, p99At50PercentRateTps: halfRate,
      accounts: loaded.issuance.issued, durable: true, issuanceCardsPerSecond: Math.round(loaded.issuance.cardsPerSecond),
      connections: options.connections, durationSeconds: options.durationSeconds, rounds,
      authErrors: authRounds.reduce((sum, m) => sum + m.errors + m.non2xx, 0) + latencyRuns.reduce((sum, run) => sum + run.measured.errors + run.measured.non2xx, 0),
      // What an error of the latency runs was, so that one in a hundred thousand can be traced.
      p99RunErrors: latencyRuns.map((run) => ({ ...run.phase.totals.errors, status: run.phase.totals.status })),
      machine: machine(),
    };
  } finally {
    await loaded.cluster.close();
    if (yardsticks !== null) await Promise.all(yardsticks.processes.map((running) => stopProcess(running.child, 'SIGTERM')));
    rmSync(loaded.root, { recursive: true, force: true });
  }
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      accounts: { type: 'string', default: '100000' }, connections: { type: 'string', default: '512' },
      duration: { type: 'string', default: '10' }, rounds: { type: 'string', default: '3' },
      'rate-duration': { type: 'string', default: '15' }, seed: { type: 'string', default: '42' },
      json: { type: 'boolean', default: false }, help: { type: 'boolean', default: false },
    },
  });
  if (values.help === true) {
    process.stdout.write(help + '\n');
    return;
  }
  const numbers = wholeNumberOptions(values, {
    accounts: [1, 10_000_000], connections: [1, 10_000], duration: [1, 600], rounds: [1, 20], 'rate-duration': [1, 600], seed: [0, 2 ** 31],
  });
  const options: Options = {
    accounts: numbers.accounts, connections: numbers.connections, durationSeconds: numbers.duration,
    rounds: numbers.rounds, rateDurationSeconds: numbers['rate-duration'], seed: numbers.seed, json: values.json === true,
  };
  const result = await run(options);
  if (options.json) {
    process.stdout.write(JSON.stringify(result) + '\n');
    return;
  }
  const table = [
    ['metric', 'value', 'target'],
    ['authTps', String(result['authTps']), '>= 10000'],
    ['ceilingTps', String(result['ceilingTps']), ''],
    ['frontTps', String(result['frontTps']), ''],
    ['ratio', String(result['ratio']), '>= 1.0'],
    ['p99Ms', String(result['p99Ms']), '<= 20'],
    ['p99 at 50%', String(result['p99At50PercentMs']), ''],
    ['p99 ceiling', String(result['p99CeilingMs']), ''],
    ['accounts', String(result['accounts']), '>= 100000'],
    ['durable', String(result['durable']), 'true'],
  ];
  for (const row of table) process.stdout.write(`${(row[0] as string).padEnd(12)} ${(row[1] as string).padStart(10)}   ${row[2]}\n`);
}

main().catch((error: unknown) => benchFailed('bench', error));
