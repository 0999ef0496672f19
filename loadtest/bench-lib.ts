import { mkdtempSync, readFileSync } from 'node:fs';
import { cpus, release, tmpdir, totalmem } from 'node:os';
import { join } from 'node:path';
import { Cluster, repoRoot, spawnListening, type RunningProcess } from '../deploy/cluster.js';
import { issueCards, syntheticApplicants, type IssuanceSummary } from '../deploy/bulk-issuance.js';
import { createWorkload, loadCards, runPhase, type PhaseResult, type PortfolioCard } from './index.js';
import { machineDelta, readMachineCounters, type MachineDelta } from './machine-counters.js';

// Building blocks shared by the benchmarks: clusters with a loaded portfolio,
// the yardstick processes, one measured phase with per-process CPU accounting.

export interface MeasureOptions {
  connections: number;
  durationSeconds: number;
  rateDurationSeconds: number;
  seed: number;
}

export interface Target {
  name: 'auth' | 'ceiling' | 'front';
  url: string;
  pids: Record<string, number>;
}

export function cpuSeconds(pid: number): number {
  const fields = (readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1] ?? '').split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

/** A node -e script that spins for `seconds` and then exits by itself (it outlives no benchmark that dies). */
export function spinScript(seconds: number): string {
  return `const end = Date.now() + ${seconds * 1000}; while (Date.now() < end) {}`;
}

export function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? (sorted[middle] as number) : ((sorted[middle - 1] as number) + (sorted[middle] as number)) / 2;
}

export async function startYardsticks(): Promise<{ ceiling: Target; front: Target; processes: RunningProcess[] }> {
  const script = join(repoRoot, 'dist/loadtest/naive-chain.js');
  const upstreams = await Promise.all([1, 2, 3, 4].map((i) => spawnListening({ script, args: ['--mode', 'answer'], name: `upstream-${i}` })));
  const forwarder = await spawnListening({
    script, args: ['--mode', 'forwarder', '--upstreams', upstreams.map((up) => `http://127.0.0.1:${up.port}`).join(',')], name: 'forwarder',
  });
  const front = await spawnListening({ script, args: ['--mode', 'answer'], name: 'front' });
  const pid = (running: RunningProcess): number => running.child.pid as number;
  return {
    ceiling: { name: 'ceiling', url: `http://127.0.0.1:${forwarder.port}`, pids: { gateway: pid(forwarder), ...Object.fromEntries(upstreams.map((up, i) => [`unit-${i + 1}`, pid(up)])) } },
    front: { name: 'front', url: `http://127.0.0.1:${front.port}`, pids: { gateway: pid(front) } },
    processes: [...upstreams, forwarder, front],
  };
}

export interface Measured {
  target: string;
  round: number;
  tps: number;
  errors: number;
  non2xx: number;
  p99Ms: number;
  /** CPU milliseconds per answered request, by process role (loadgen is this process). */
  cpuMsPerRequest: Record<string, number>;
  /** The whole machine during the phase: CPUs busy, waiting for I/O, stolen; the disks' writes. */
  machine: MachineDelta;
}

export async function measure(target: Target, cards: readonly PortfolioCard[], options: MeasureOptions, round: number, mode: 'closed' | 'rate', rate?: number): Promise<{ measured: Measured; phase: PhaseResult }> {
  const workload = createWorkload({ cards, seed: options.seed + round, keyPrefix: `bench-${Date.now().toString(36)}-${target.name}-${round}` });
  const pids = { ...target.pids, loadgen: process.pid };
  const before = Object.fromEntries(Object.entries(pids).map(([role, pid]) => [role, cpuSeconds(pid)]));
  const machineBefore = readMachineCounters();
  const phase = await runPhase({
    url: target.url, workload, mode, connections: options.connections, durationSeconds: mode === 'rate' ? options.rateDurationSeconds : options.durationSeconds,
    name: `${target.name}-${round}`, ...(rate === undefined ? {} : { rate }),
  });
  const machineDuring = machineDelta(machineBefore, readMachineCounters());
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
      machine: machineDuring,
    },
  };
}

export interface LoadedCluster {
  cluster: Cluster;
  root: string;
  target: Target;
  cards: PortfolioCard[];
  issuance: IssuanceSummary;
}

/**
 * Node options for a benchmark's cluster processes, from DSU_BENCH_NODE_ARGS (e.g.
 * "--cpu-prof --cpu-prof-dir=/tmp/prof" profiles them; NODE_OPTIONS may not carry --cpu-prof).
 */
export function benchNodeArgs(): string[] {
  return (process.env['DSU_BENCH_NODE_ARGS'] ?? '').split(' ').filter((arg) => arg.length > 0);
}

/** A durable cluster (gateway and `units` units) with `accounts` accounts issued through the gateway. */
export async function startLoadedCluster(accounts: number, units: number, seed: number, quiet: boolean): Promise<LoadedCluster> {
  const root = mkdtempSync(join(tmpdir(), 'dsu-bench-'));
  const cluster = new Cluster({ root, units, nodeArgs: benchNodeArgs() });
  await cluster.start();
  const cardsPath = join(root, 'cards.ndjson');
  const progress = process.stderr.isTTY === true && !quiet;
  const issuance = await issueCards({
    gatewayUrl: cluster.gatewayUrl, applicants: syntheticApplicants(Math.ceil(accounts * 1.002), seed),
    bands: cluster.topology.issuance.scoreBands, currency: cluster.topology.issuance.currency, cardsPath, batchSize: 2000,
    onProgress: (done, total) => { if (progress) process.stderr.write(`\rissuing ${done}/${total}`); },
  });
  if (!quiet) process.stderr.write(`${progress ? '\n' : ''}${issuance.issued} accounts in ${issuance.seconds.toFixed(1)} s (${Math.round(issuance.cardsPerSecond)} cards/s)\n`);
  const cards = await loadCards(cardsPath);
  const pid = (unitId: string): number => cluster.units.get(unitId)?.child.pid as number;
  const target: Target = {
    name: 'auth', url: cluster.gatewayUrl,
    pids: { gateway: cluster.gateway?.child.pid as number, ...Object.fromEntries(cluster.topology.units.map((unit) => [unit.id, pid(unit.id)])) },
  };
  return { cluster, root, target, cards, issuance };
}

export function machine(): Record<string, unknown> {
  return { cpus: cpus().length, model: cpus()[0]?.model ?? 'unknown', memoryGiB: Math.round(totalmem() / 2 ** 30), node: process.version, kernel: release() };
}

/** A benchmark's command line that cannot run: said in one line, exit code 2, before any work. */
export class BenchUsageError extends Error {}

/**
 * The named options as whole numbers within their bounds ([min, max]), or a
 * BenchUsageError naming the first flag that is not: checked before a cluster or a
 * fixture is built, so that a typo fails at once and not after minutes of setup.
 */
export function wholeNumberOptions<K extends string>(values: { readonly [name: string]: unknown }, bounds: Record<K, readonly [number, number]>): Record<K, number> {
  const numbers = {} as Record<K, number>;
  for (const name of Object.keys(bounds) as K[]) {
    const given = values[name];
    const text = typeof given === 'string' ? given : '';
    const [min, max] = bounds[name];
    const value = Number(text);
    if (!/^[0-9]+$/.test(text) || value < min || value > max) throw new BenchUsageError(`--${name} must be a whole number in [${min}, ${max}], got "${text}"`);
    numbers[name] = value;
  }
  return numbers;
}

/** The end of a benchmark that failed: one line and exit 2 for its command line, the stack and exit 1 otherwise. */
export function benchFailed(name: string, error: unknown, during = ''): never {
  const usage = error instanceof BenchUsageError || (typeof (error as { code?: unknown }).code === 'string' && (error as { code: string }).code.startsWith('ERR_PARSE_ARGS'));
  if (usage) {
    process.stderr.write(`${name}: ${(error as Error).message} (--help lists the options)\n`);
    process.exit(2);
  }
  process.stderr.write(`${name} failed${during}: ${error instanceof Error ? error.stack : String(error)}\n`);
  process.exit(1);
}
