import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { cpus, release, tmpdir, totalmem } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { Cluster, repoRoot, spawnListening, stopProcess, type RunningProcess } from '../deploy/cluster.js';
import { issueCards, syntheticApplicants } from '../deploy/bulk-issuance.js';
import { createWorkload, loadCards, runPhase, type PhaseResult, type PortfolioCard } from './index.js';

// The performance benchmark. One run starts its own cluster (gateway and 4
// durable units), loads the accounts, starts the yardsticks (a naive forwarding
// chain and a lone answering process), then measures the three in interleaved
// rounds with the same load generator and settings, and quotes medians:
//   authTps     end-to-end authorizations per second at saturation (closed loop)
//   ceilingTps  the naive chain: gateway forwarding each request to 4 processes that answer at once
//   frontTps    one process answering at once (the front door alone)
//   p99Ms       a fixed-rate run at 80% of authTps, corrected for coordinated omission

const help = `Usage: npm run bench -- [options]

  --accounts N      accounts to issue before measuring (default 100000)
  --connections N   closed-loop connections (default 256)
  --duration S      seconds per measured phase (default 10)
  --rounds N        interleaved rounds of auth / ceiling / front (default 3)
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

interface Target {
  name: 'auth' | 'ceiling' | 'front';
  url: string;
  pids: Record<string, number>;
}

function cpuSeconds(pid: number): number {
  const fields = (readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1] ?? '').split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? (sorted[middle] as number) : ((sorted[middle - 1] as number) + (sorted[middle] as number)) / 2;
}

async function startYardsticks(root: string): Promise<{ ceiling: Target; front: Target; processes: RunningProcess[] }> {
  const script = join(repoRoot, 'dist/loadtest/naive-chain.js');
  const upstreams = await Promise.all([1, 2, 3, 4].map((i) => spawnListening({ script, args: ['--mode', 'answer'], name: `upstream-${i}` })));
  const forwarder = await spawnListening({
    script, args: ['--mode', 'forwarder', '--upstreams', upstreams.map((up) => `http://127.0.0.1:${up.port}`).join(',')], name: 'forwarder',
  });
  const front = await spawnListening({ script, args: ['--mode', 'answer'], name: 'front' });
  void root;
  const pid = (running: RunningProcess): number => running.child.pid as number;
  return {
    ceiling: { name: 'ceiling', url: `http://127.0.0.1:${forwarder.port}`, pids: { gateway: pid(forwarder), ...Object.fromEntries(upstreams.map((up, i) => [`unit-${i + 1}`, pid(up)])) } },
    front: { name: 'front', url: `http://127.0.0.1:${front.port}`, pids: { gateway: pid(front) } },
    processes: [...upstreams, forwarder, front],
  };
}

interface Measured {
  target: string;
  round: number;
  tps: number;
  errors: number;
  non2xx: number;
  p99Ms: number;
  /** CPU milliseconds per answered request, by process role (loadgen is this process). */
  cpuMsPerRequest: Record<string, number>;
}

async function measure(target: Target, cards: readonly PortfolioCard[], options: Options, round: number, mode: 'closed' | 'rate', rate?: number): Promise<{ measured: Measured; phase: PhaseResult }> {
  const workload = createWorkload({ cards, seed: options.seed + round, keyPrefix: `bench-${Date.now().toString(36)}-${target.name}-${round}` });
  const pids = { ...target.pids, loadgen: process.pid };
  const before = Object.fromEntries(Object.entries(pids).map(([role, pid]) => [role, cpuSeconds(pid)]));
  const phase = await runPhase({
    url: target.url, workload, mode, connections: options.connections, durationSeconds: mode === 'rate' ? options.rateDurationSeconds : options.durationSeconds,
    name: `${target.name}-${round}`, ...(rate === undefined ? {} : { rate }),
  });
  const answered = Math.max(phase.totals.completed, 1);
  const cpuMsPerRequest: Record<string, number> = {};
  for (const [role, pid] of Object.entries(pids)) {
    const key = role.startsWith('unit-') || role.startsWith('dsu-') ? 'units' : role;
    cpuMsPerRequest[key] = (cpuMsPerRequest[key] ?? 0) + ((cpuSeconds(pid) - (before[role] as number)) * 1000) / answered;
  }
  const { errors } = phase.totals;
  return {
    phase,
    measured: {
      target: target.name, round, tps: Math.round(phase.totals.throughputMedian),
      errors: errors.connection + errors.timeout, non2xx: errors.non2xx, p99Ms: phase.totals.latencyMs.p99,
      cpuMsPerRequest: Object.fromEntries(Object.entries(cpuMsPerRequest).map(([role, ms]) => [role, Math.round(ms * 1000) / 1000])),
    },
  };
}

async function run(options: Options): Promise<Record<string, unknown>> {
  const root = mkdtempSync(join(tmpdir(), 'dsu-bench-'));
  // DSU_BENCH_NODE_ARGS (e.g. "--cpu-prof --cpu-prof-dir=/tmp/prof") profiles the cluster's processes.
  const nodeArgs = (process.env['DSU_BENCH_NODE_ARGS'] ?? '').split(' ').filter((arg) => arg.length > 0);
  const cluster = new Cluster({ root, units: 4, nodeArgs });
  let yardsticks: Awaited<ReturnType<typeof startYardsticks>> | null = null;
  try {
    await cluster.start();
    const cardsPath = join(root, 'cards.ndjson');
    const issuance = await issueCards({
      gatewayUrl: cluster.gatewayUrl, applicants: syntheticApplicants(Math.ceil(options.accounts * 1.002), options.seed),
      bands: cluster.topology.issuance.scoreBands, currency: cluster.topology.issuance.currency, cardsPath,
      onProgress: (done, total) => { if (!options.json) process.stderr.write(`\rissuing ${done}/${total}`); },
    });
    if (!options.json) process.stderr.write(`\n${issuance.issued} accounts in ${issuance.seconds.toFixed(1)} s (${Math.round(issuance.cardsPerSecond)} cards/s)\n`);
    const cards = await loadCards(cardsPath);
    yardsticks = await startYardsticks(root);
    const pid = (unitId: string): number => cluster.units.get(unitId)?.child.pid as number;
    const auth: Target = {
      name: 'auth', url: cluster.gatewayUrl,
      pids: { gateway: cluster.gateway?.child.pid as number, ...Object.fromEntries(cluster.topology.units.map((unit) => [unit.id, pid(unit.id)])) },
    };
    const targets = [auth, yardsticks.ceiling, yardsticks.front];
    const rounds: Measured[] = [];
    for (let round = 1; round <= options.rounds; round++) {
      // Rotate the order so that no target always runs first (after a pause) or last.
      for (let i = 0; i < targets.length; i++) {
        const target = targets[(i + round - 1) % targets.length] as Target;
        const { measured } = await measure(target, cards, options, round, 'closed');
        rounds.push(measured);
        if (!options.json) process.stderr.write(`round ${round} ${target.name.padEnd(8)} ${String(measured.tps).padStart(7)} req/s  p99 ${measured.p99Ms.toFixed(1)} ms  errors ${measured.errors}  cpu ms/req ${JSON.stringify(measured.cpuMsPerRequest)}\n`);
      }
    }
    const tpsOf = (name: string): number => median(rounds.filter((m) => m.target === name).map((m) => m.tps));
    const authTps = tpsOf('auth');
    const ceilingTps = tpsOf('ceiling');
    const frontTps = tpsOf('front');
    const rate = Math.round(authTps * 0.8);
    const latency = await measure(auth, cards, options, options.rounds + 1, 'rate', rate);
    if (!options.json) process.stderr.write(`fixed rate ${rate}/s: p99 ${latency.measured.p99Ms.toFixed(2)} ms (corrected), ${latency.measured.tps} req/s\n`);
    return {
      authTps, ceilingTps, frontTps, ratio: Math.round((authTps / ceilingTps) * 1000) / 1000,
      p99Ms: Math.round(latency.measured.p99Ms * 100) / 100, p99RateTps: rate,
      p99LatencyMs: latency.phase.totals.latencyMs, accounts: issuance.issued, durable: true,
      issuanceCardsPerSecond: Math.round(issuance.cardsPerSecond),
      connections: options.connections, durationSeconds: options.durationSeconds, rounds,
      authErrors: rounds.filter((m) => m.target === 'auth').reduce((sum, m) => sum + m.errors + m.non2xx, 0) + latency.measured.errors + latency.measured.non2xx,
      machine: { cpus: cpus().length, model: cpus()[0]?.model ?? 'unknown', memoryGiB: Math.round(totalmem() / 2 ** 30), node: process.version, kernel: release() },
    };
  } finally {
    await cluster.close();
    if (yardsticks !== null) await Promise.all(yardsticks.processes.map((running) => stopProcess(running.child, 'SIGTERM')));
    rmSync(root, { recursive: true, force: true });
  }
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      accounts: { type: 'string', default: '100000' }, connections: { type: 'string', default: '256' },
      duration: { type: 'string', default: '10' }, rounds: { type: 'string', default: '3' },
      'rate-duration': { type: 'string', default: '15' }, seed: { type: 'string', default: '42' },
      json: { type: 'boolean', default: false }, help: { type: 'boolean', default: false },
    },
  });
  if (values.help === true) {
    process.stdout.write(help + '\n');
    return;
  }
  const options: Options = {
    accounts: Number(values.accounts), connections: Number(values.connections), durationSeconds: Number(values.duration),
    rounds: Number(values.rounds), rateDurationSeconds: Number(values['rate-duration']), seed: Number(values.seed), json: values.json === true,
  };
  for (const [name, value] of Object.entries(options)) {
    if (typeof value === 'number' && (!Number.isInteger(value) || value <= 0)) throw new Error(`--${name} must be a positive integer`);
  }
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
    ['accounts', String(result['accounts']), '>= 100000'],
    ['durable', String(result['durable']), 'true'],
  ];
  for (const row of table) process.stdout.write(`${(row[0] as string).padEnd(12)} ${(row[1] as string).padStart(10)}   ${row[2]}\n`);
}

main().catch((error: unknown) => {
  process.stderr.write(`bench failed: ${error instanceof Error ? error.stack : String(error)}\n`);
  process.exit(1);
});
