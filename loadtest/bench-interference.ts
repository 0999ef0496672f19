import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { Cluster } from '../deploy/cluster.js';
import { issueCards, syntheticApplicants } from '../deploy/bulk-issuance.js';
import { machine, median, spinScript } from './bench-lib.js';
import { createWorkload, loadCards, runPhase } from './index.js';

// What work beside the authorizations does to their tail latency on this machine,
// whatever that work is: the same fixed-rate load (coordinated omission corrected)
// alone and beside processes that only spin at the lowest CPU priorities, or only
// write to the disk at the idle I/O class, in interleaved rounds. It is the floor
// for the batch isolation target (npm run bench:batch): a batch run cannot disturb
// the load less than work the kernel already ranks below everything else.
// Every disturbing process stops by itself after its phase, even if this one dies.

const help = `Usage: npm run bench:interference -- [options]

  --rate N          authorizations per second (default 2000)
  --seconds S       seconds per run (default 12)
  --rounds N        interleaved rounds (default 3)
  --json            print one JSON object
  --help            this text

Neighbours, each run beside the same load:
  none              nothing
  idle-spin         one process spinning under SCHED_IDLE (chrt --idle)
  idle-spin-x2      two such processes (every core busy at the lowest priority)
  nice19-spin       one process spinning at nice 19
  idle-io-fsync     one process writing 64 MiB files with fsync, idle I/O class (ionice -c 3)
  idle-io-buffered  the same without fsync (the kernel writes the pages back)`;

type Neighbour = (seconds: number, dir: string) => ChildProcess[];

function writerScript(seconds: number, dir: string, fsync: boolean): string {
  return `const fs = require('node:fs'); const end = Date.now() + ${seconds * 1000}; const chunk = Buffer.alloc(1 << 20, 7);
    const path = ${JSON.stringify(join(dir, 'neighbour.bin'))};
    while (Date.now() < end) { const fd = fs.openSync(path, 'w'); for (let i = 0; i < 64 && Date.now() < end; i++) fs.writeSync(fd, chunk); ${fsync ? 'fs.fsyncSync(fd);' : ''} fs.closeSync(fd); }
    fs.rmSync(path, { force: true });`;
}

/** Runs node with a script under a wrapper (chrt, nice, ionice from util-linux and coreutils). */
function wrapped(wrapper: string[], script: string): ChildProcess {
  return spawn(wrapper[0] as string, [...wrapper.slice(1), process.execPath, '-e', script], { stdio: 'ignore' });
}

/** A neighbour whose wrapper is missing here is left out of the run rather than run mislabeled. */
function available(tool: string): boolean {
  return spawnSync(tool, ['--version'], { stdio: 'ignore' }).error === undefined;
}

const wrapperOf: Record<string, string> = {
  'idle-spin': 'chrt', 'idle-spin-x2': 'chrt', 'nice19-spin': 'nice', 'idle-io-fsync': 'ionice', 'idle-io-buffered': 'ionice',
};

const neighbours: Record<string, Neighbour> = {
  none: () => [],
  'idle-spin': (s) => [wrapped(['chrt', '--idle', '0'], spinScript(s))],
  'idle-spin-x2': (s) => [wrapped(['chrt', '--idle', '0'], spinScript(s)), wrapped(['chrt', '--idle', '0'], spinScript(s))],
  'nice19-spin': (s) => [wrapped(['nice', '-n', '19'], spinScript(s))],
  'idle-io-fsync': (s, dir) => [wrapped(['ionice', '-c', '3'], writerScript(s, dir, true))],
  'idle-io-buffered': (s, dir) => [wrapped(['ionice', '-c', '3'], writerScript(s, dir, false))],
};

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      rate: { type: 'string', default: '2000' }, seconds: { type: 'string', default: '12' }, rounds: { type: 'string', default: '3' },
      json: { type: 'boolean', default: false }, help: { type: 'boolean', default: false },
    },
  });
  if (values.help === true) {
    process.stdout.write(help + '\n');
    return;
  }
  const numbers = { rate: Number(values.rate), seconds: Number(values.seconds), rounds: Number(values.rounds) };
  for (const [name, value] of Object.entries(numbers)) if (!Number.isInteger(value) || value <= 0) throw new Error(`--${name} must be a positive integer`);
  const log = (text: string): void => { if (values.json !== true) process.stderr.write(text + '\n'); };
  const root = mkdtempSync(join(tmpdir(), 'dsu-interference-'));
  const cluster = new Cluster({ root, units: 4 });
  try {
    await cluster.start();
    const cardsPath = join(root, 'cards.ndjson');
    await issueCards({ gatewayUrl: cluster.gatewayUrl, applicants: syntheticApplicants(20_000, 9), bands: cluster.topology.issuance.scoreBands, currency: 'CNY', cardsPath });
    const cards = await loadCards(cardsPath);
    const load = async (name: string): Promise<number> => {
      const phase = await runPhase({
        url: cluster.gatewayUrl, workload: createWorkload({ cards, seed: 3, keyPrefix: `nb-${name}-${Date.now()}` }),
        mode: 'rate', rate: numbers.rate, connections: 64, durationSeconds: numbers.seconds, name,
      });
      return phase.totals.latencyMs.p99;
    };
    await load('warm-up');
    const chosen = Object.entries(neighbours).filter(([name]) => wrapperOf[name] === undefined || available(wrapperOf[name] as string));
    const skipped = Object.keys(neighbours).filter((name) => !chosen.some(([chosenName]) => chosenName === name));
    if (skipped.length > 0) log(`left out (wrapper missing): ${skipped.join(', ')}`);
    const runs: Record<string, number[]> = Object.fromEntries(chosen.map(([name]) => [name, []]));
    for (let round = 1; round <= numbers.rounds; round++) {
      for (const [name, start] of chosen) {
        const children = start(numbers.seconds + 2, root);
        // Let the neighbours get going before the load starts.
        await new Promise((resolve) => setTimeout(resolve, 500));
        const p99 = await load(name);
        for (const child of children) child.kill('SIGKILL');
        (runs[name] as number[]).push(Math.round(p99 * 100) / 100);
        log(`round ${round} ${name.padEnd(16)} p99 ${p99.toFixed(2)} ms`);
        await new Promise((resolve) => setTimeout(resolve, 1_000));
      }
    }
    const alone = median(runs['none'] as number[]);
    const result = {
      rate: numbers.rate, seconds: numbers.seconds, rounds: numbers.rounds,
      p99Ms: Object.fromEntries(Object.entries(runs).map(([name, list]) => [name, median(list)])),
      p99Ratio: Object.fromEntries(Object.entries(runs).map(([name, list]) => [name, Math.round((median(list) / alone) * 1000) / 1000])),
      runsMs: runs, skipped, machine: machine(),
    };
    process.stdout.write(values.json === true ? JSON.stringify(result) + '\n' : `${JSON.stringify(result, null, 2)}\n`);
  } finally {
    await cluster.close();
    rmSync(root, { recursive: true, force: true });
  }
}

main().catch((error: unknown) => {
  process.stderr.write(`bench:interference failed: ${error instanceof Error ? error.stack : String(error)}\n`);
  process.exit(1);
});
