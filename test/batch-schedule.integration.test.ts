import { spawn, spawnSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { repoRoot, stopProcess, type Cluster } from '../deploy/cluster.js';
import { calendarOf } from '../domain/authorize-rules.js';
import { call, startCluster } from './helpers.js';

// The schedule follows the units' simulated clock: when the clock crosses into a
// new business day, end of day runs for the day that ended, and only once.

let cluster: Cluster;
let root: string;
let close: () => Promise<void>;

beforeAll(async () => {
  ({ cluster, root, close } = await startCluster(1));
});

afterAll(async () => {
  await close();
});

describe('npm run batch -- schedule', () => {
  it('runs end of day for each business day the simulated clock leaves behind', async () => {
    const unit = cluster.topology.units[0]!;
    const today = calendarOf((await call(unit.url, 'GET', '/healthz')).body.nowMs as number, cluster.topology.businessDayUtcOffsetMinutes).day;
    const child = spawn(process.execPath, [join(repoRoot, 'dist/batch/cli.js'), 'schedule', '--topology', cluster.topologyPath, '--batch-dir', join(root, 'batch'), '--poll-seconds', '1', '--idle', '--json'], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    try {
      const results: Array<{ date: string; mismatches: number }> = [];
      const lines = createInterface({ input: child.stdout });
      lines.on('line', (line) => results.push(JSON.parse(line) as { date: string; mismatches: number }));
      await new Promise((resolve) => setTimeout(resolve, 1_500));
      expect(results).toEqual([]);
      // --idle: the batch is the process started (what SIGSTOP and SIGTERM reach), not
      // a child of it, and every one of its threads is at SCHED_IDLE where chrt exists.
      expect(childrenOf(child.pid as number)).toEqual([]);
      if (spawnSync('chrt', ['--version'], { stdio: 'ignore' }).status === 0) expect(new Set(threadPolicies(child.pid as number))).toEqual(new Set([schedIdle]));
      else process.stdout.write('batch-schedule: chrt is missing here, so the SCHED_IDLE check of the batch threads was skipped\n');
      // Two days pass on the bank's clock: the schedule closes today and tomorrow.
      expect((await call(unit.url, 'POST', '/admin/clock', { advanceMs: 2 * 86_400_000 })).status).toBe(200);
      const deadline = Date.now() + 30_000;
      while (results.length < 2 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 200));
      await new Promise((resolve) => setTimeout(resolve, 1_500));
      expect(results.map((result) => result.date)).toEqual([today, new Date(Date.parse(`${today}T00:00:00Z`) + 86_400_000).toISOString().slice(0, 10)]);
      expect(results.every((result) => result.mismatches === 0)).toBe(true);
    } finally {
      await stopProcess(child, 'SIGTERM');
    }
  });
});

/** SCHED_IDLE's number in the kernel's scheduling policies. */
const schedIdle = 5;

/** The pids whose parent is `pid`. */
function childrenOf(pid: number): number[] {
  const children: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^[0-9]+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      if (Number(stat.slice(stat.lastIndexOf(') ') + 2).split(' ')[1]) === pid) children.push(Number(entry));
    } catch { /* the process ended */ }
  }
  return children;
}

/** The scheduling policy of each thread of `pid` (field 41 of its stat). */
function threadPolicies(pid: number): number[] {
  return readdirSync(`/proc/${pid}/task`).map((tid) => {
    const stat = readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8');
    return Number(stat.slice(stat.lastIndexOf(') ') + 2).split(' ')[38]);
  });
}
