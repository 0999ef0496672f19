import { spawn, type ChildProcess } from 'node:child_process';
import { appendFileSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { creditLimitForScore, syntheticApplicants, type IssuedCard } from '../deploy/bulk-issuance.js';
import { defaultTopologyPath, repoRoot } from '../deploy/cluster.js';
import type { TopologyFile } from '../domain/topology.js';

// `npm start`'s demo portfolio, issued into cards.ndjson.partial and renamed once
// whole: a start killed during issuance, started again, goes on from the cards it
// had written instead of issuing every applicant again.

const root = mkdtempSync(join(tmpdir(), 'dsu-demo-start-'));
const children: ChildProcess[] = [];

afterAll(() => {
  for (const child of children) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  rmSync(root, { recursive: true, force: true });
});

/** The shipped topology with every port 0 (the launcher binds what the kernel gives). */
function portZeroTopology(): { path: string; topology: TopologyFile } {
  const topology = JSON.parse(readFileSync(defaultTopologyPath, 'utf8')) as TopologyFile & { units: Array<Record<string, unknown>> };
  for (const unit of topology.units) {
    unit['port'] = 0;
    if (unit['gray'] !== undefined) unit['gray'] = { url: '', port: 0 };
    if (unit['standbyPort'] !== undefined) unit['standbyPort'] = 0;
  }
  const path = join(root, 'topology-port-0.json');
  writeFileSync(path, JSON.stringify(topology));
  return { path, topology };
}

function start(topologyPath: string, dataDir: string, accounts: number): { child: ChildProcess; output: () => string; exited: Promise<void> } {
  const child = spawn(process.execPath, [join(repoRoot, 'dist/deploy/start.js'), '--data-dir', dataDir, '--topology', topologyPath, '--port', '0', '--demo-accounts', String(accounts)], { stdio: ['ignore', 'pipe', 'pipe'] });
  children.push(child);
  let text = '';
  child.stdout?.on('data', (chunk: Buffer) => { text += chunk.toString(); });
  child.stderr?.on('data', (chunk: Buffer) => { text += chunk.toString(); });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  return { child, output: () => text, exited };
}

async function until(what: string, check: () => boolean, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

/** Processes whose command line names `text` (the data folder: the launcher's units and gateway). */
function processesNaming(text: string): number[] {
  const pids: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^[0-9]+$/.test(entry)) continue;
    try {
      if (readFileSync(`/proc/${entry}/cmdline`, 'utf8').includes(text)) pids.push(Number(entry));
    } catch {
      // Gone meanwhile.
    }
  }
  return pids;
}

const completeLines = (path: string): string[] => {
  if (!existsSync(path)) return [];
  const text = readFileSync(path, 'utf8');
  return text.slice(0, text.lastIndexOf('\n') + 1).split('\n').filter((line) => line.length > 0);
};

describe('npm start demo portfolio', () => {
  it('goes on from the cards written when a start is killed during issuance', async () => {
    const { path, topology } = portZeroTopology();
    const dataDir = join(root, 'data');
    const cardsPath = join(dataDir, 'cards.ndjson');
    const partial = `${cardsPath}.partial`;
    const accounts = 20_000;
    const first = start(path, dataDir, accounts);
    await until('the first cards', () => completeLines(partial).length > 0 || first.child.exitCode !== null, 60_000);
    first.child.kill('SIGKILL');
    await first.exited;
    // Its units and gateway exit with it (within a second): the next start must not share the stores with them.
    await until('the first cluster to exit', () => processesNaming(dataDir).length === 0, 10_000);
    expect(existsSync(cardsPath), first.output()).toBe(false);
    const before = completeLines(partial);
    const eligible = syntheticApplicants(accounts, 1).filter((applicant) => creditLimitForScore(topology.issuance.scoreBands, applicant.score) !== null);
    // Killed during issuance, not after it: there is something left to resume.
    expect(before.length).toBeGreaterThan(0);
    expect(before.length).toBeLessThan(eligible.length);
    // A line a crash of the machine could leave (complete, not a card), and a card written twice: both dropped.
    appendFileSync(partial, `{"applicantId": "garbled\n${before[0]}\n`);

    const second = start(path, dataDir, accounts);
    try {
      await until('the second start to be ready', () => second.output().includes('Press Ctrl-C to stop.') || second.child.exitCode !== null, 60_000);
    } finally {
      second.child.kill('SIGTERM');
      await second.exited;
    }
    expect(existsSync(partial)).toBe(false);
    const cards = completeLines(cardsPath).map((line) => JSON.parse(line) as IssuedCard);
    // Every eligible applicant has exactly one card, and the first start's cards are kept as written.
    expect(second.output()).toContain('2 lines of');
    expect(cards.map((card) => card.applicantId).sort()).toEqual(eligible.map((applicant) => applicant.id).sort());
    const kept = new Set(completeLines(cardsPath));
    expect(before.filter((line) => !kept.has(line))).toEqual([]);
    expect(second.output()).toContain(`after the ${before.length} of a start stopped halfway`);
  });
});
