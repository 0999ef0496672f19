import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { request } from 'undici';
import { repoRoot } from '../deploy/cluster.js';
import { calendarOf } from '../domain/authorize-rules.js';
import { loadTopology } from '../domain/topology.js';
import { addDays, isBusinessDate } from './accounting-rules.js';
import { partitionsDefault, runEndOfDay, type EndOfDayResult } from './end-of-day.js';
import { pieceAccountsDefault } from './eod-steps.js';
import { sendPressures } from './send-postings.js';

const help = `Usage: npm run batch -- <command> [options]

Batch accounting, apart from authorization: clearing, posting, interest, fees,
statements and reconciliation, with its own ledger store per unit. It reads each
unit's journal through the unit's feed and sends postings back to the unit.

Commands:
  eod --date YYYY-MM-DD   run end of day for one business date that has ended by the
                          units' clock (restartable: run it again after a crash and it
                          resumes; nothing posts twice)
  schedule                follow the simulated clock of the units and run end of day
                          for every business day that ends (Ctrl-C to stop)

Options:
  --topology FILE   cluster topology with unit URLs (default: deploy/data/topology.json,
                    written by npm start, else deploy/topology.json)
  --batch-dir DIR   folder of the ledger stores (default: deploy/data/batch)
  --threads N       worker threads (default 1: leaves the units their CPU)
  --window          a batch window with no authorization traffic: threads at normal
                    priority and postings at full pressure (default: bounded, niced)
  --idle            run under the SCHED_IDLE scheduling policy (chrt --idle) and the
                    idle I/O class (ionice -c 3): the kernel gives the batch CPU and
                    disk only when no authorization work wants them
  --partitions N    partitions per unit (default ${partitionsDefault}); a ledger keeps the count
                    of its first run, and refuses another
  --piece-accounts N  accounts per transaction of the clearing step (default
                    ${pieceAccountsDefault}); a crash inside the step resumes after the last piece
  --mark-rows N     postings marked sent per transaction of the send step (default
                    ${sendPressures.bounded.markRows}, with --window ${sendPressures.full.markRows}); a crash resends the unmarked
                    ones, which the unit answers from their idempotency keys
  --poll-seconds S  schedule: how often to read the clock (default 5)
  --open-day        eod: allow the units' current business day, before it ends (the
                    benchmarks put a batch beside live traffic this way); approvals
                    made after the run are never presented
  --json            print the result as one JSON object
  --help            this text`;

function printResult(result: EndOfDayResult, json: boolean): void {
  if (json) {
    process.stdout.write(JSON.stringify(result) + '\n');
    return;
  }
  process.stdout.write(`end of day ${result.date}: ${result.tasks} tasks in ${result.seconds.toFixed(1)} s, ${result.mismatches} unexplained mismatches\n`);
  for (const unit of result.units) {
    const clearing = Object.entries(unit.clearing).map(([match, c]) => `${match} ${c.count}`).join(', ') || 'none';
    process.stdout.write(`  ${unit.unit}: clearing ${clearing}; ledger entries ${unit.ledger.entries}, debits ${unit.ledger.debitMinor} = credits ${unit.ledger.creditMinor}; `
      + `receivables ${unit.ledger.receivableMinor}, unit posted ${unit.unitTotals.postedMinor}; statements ${unit.statements}\n`);
    for (const mismatch of unit.mismatches) process.stdout.write(`    MISMATCH ${mismatch}\n`);
  }
}

/**
 * Puts this process under SCHED_IDLE (nice only lowers a thread's share; an
 * idle-policy thread runs only when a core would otherwise be idle) and in the idle
 * I/O class (ionice -c 3: the disk's mq-deadline scheduler serves the batch's writes
 * only when the units' commits leave it idle), with chrt and ionice from util-linux,
 * before the worker pool starts: threads created later inherit both from the main
 * thread. The policy is set on this process rather than by running the command
 * again under chrt, so that the pid an operator or a benchmark signals (SIGTERM,
 * SIGSTOP) is the batch itself. A wrapper's child went on running while the wrapper
 * was stopped: every "batch stopped" window of bench:batch before this change had
 * the batch running (BENCHMARKS.md). Without chrt the batch threads stay niced.
 */
function becomeIdle(): void {
  const pid = String(process.pid);
  const io = spawnSync('ionice', ['-c', '3', '-p', pid], { stdio: 'ignore' });
  const cpu = spawnSync('chrt', ['--all-tasks', '--idle', '-p', '0', pid], { stdio: 'ignore' });
  if (cpu.status !== 0) process.stderr.write('chrt is not available: running niced instead of --idle\n');
  else if (io.status !== 0) process.stderr.write('ionice is not available: --idle leaves the I/O class as it is\n');
}

function wholeNumber(text: string, flag: string): number {
  const value = Number(text);
  if (!/^[0-9]+$/.test(text) || !Number.isSafeInteger(value) || value < 1) throw new Error(`${flag} must be a whole number of at least 1`);
  return value;
}

async function unitDay(unitUrl: string, utcOffsetMinutes: number): Promise<string> {
  const response = await request(`${unitUrl}/healthz`);
  const body = (await response.body.json()) as { nowMs: number };
  return calendarOf(body.nowMs, utcOffsetMinutes).day;
}

async function main(): Promise<void> {
  const { values, positionals } = parseArgs({
    allowPositionals: true,
    options: {
      date: { type: 'string' }, topology: { type: 'string' }, 'batch-dir': { type: 'string' }, threads: { type: 'string', default: '1' },
      partitions: { type: 'string', default: String(partitionsDefault) }, 'poll-seconds': { type: 'string', default: '5' },
      json: { type: 'boolean', default: false }, help: { type: 'boolean', default: false }, window: { type: 'boolean', default: false },
      idle: { type: 'boolean', default: false }, 'piece-accounts': { type: 'string', default: String(pieceAccountsDefault) },
      'mark-rows': { type: 'string' }, 'open-day': { type: 'boolean', default: false },
    },
  });
  const command = positionals[0];
  if (values.help === true || command === undefined) {
    process.stdout.write(help + '\n');
    process.exit(values.help === true ? 0 : 2);
  }
  if (values.idle === true) becomeIdle();
  const generated = join(repoRoot, 'deploy/data/topology.json');
  const topologyPath = values.topology ?? (existsSync(generated) ? generated : join(repoRoot, 'deploy/topology.json'));
  const topology = loadTopology(topologyPath);
  const batchRoot = values['batch-dir'] ?? join(repoRoot, 'deploy/data/batch');
  const threads = wholeNumber(values.threads, '--threads');
  const partitions = wholeNumber(values.partitions, '--partitions');
  const pieceAccounts = Number(values['piece-accounts']);
  if (!Number.isInteger(pieceAccounts) || pieceAccounts < 1) throw new Error('--piece-accounts must be a whole number of at least 1');
  const markRows = values['mark-rows'] === undefined ? undefined : Number(values['mark-rows']);
  if (markRows !== undefined && (!Number.isInteger(markRows) || markRows < 1)) throw new Error('--mark-rows must be a whole number of at least 1');
  const base = {
    topology: topology.file, topologyPath, batchRoot, threads, partitions, pieceAccounts, ...(markRows === undefined ? {} : { markRows }),
    ...(values.window === true ? { pressure: 'full' as const, niceness: 0 } : {}),
  };
  // Fault injection for the restart tests: DSU_BATCH_KILL_AFTER_TASKS=N kills this
  // process with SIGKILL once N tasks have finished, the way a crash would.
  const killAfter = Number(process.env['DSU_BATCH_KILL_AFTER_TASKS'] ?? 'NaN');
  const progress = (done: number, total: number, what: string): void => {
    if (done >= killAfter) process.kill(process.pid, 'SIGKILL');
    if (!values.json) process.stderr.write(`\r${done}/${total} ${what}`.padEnd(60));
  };
  if (command === 'eod') {
    if (values.date === undefined || !isBusinessDate(values.date)) throw new Error('eod needs --date YYYY-MM-DD, a date of the calendar');
    const firstUnit = topology.file.units[0];
    if (firstUnit === undefined) throw new Error('the topology has no units');
    const today = await unitDay(firstUnit.url, topology.file.businessDayUtcOffsetMinutes);
    if (values.date >= today && values['open-day'] !== true) {
      throw new Error(`the business day ${values.date} has not ended by the units' clock (today is ${today}); end of day runs for ${addDays(today, -1)} or before (--open-day to run it anyway)`);
    }
    const result = await runEndOfDay({ ...base, date: values.date, onProgress: progress });
    if (!values.json) process.stderr.write('\n');
    printResult(result, values.json === true);
    process.exitCode = result.mismatches === 0 ? 0 : 3;
    return;
  }
  if (command === 'schedule') {
    const pollSeconds = Number(values['poll-seconds']);
    if (!Number.isFinite(pollSeconds) || pollSeconds <= 0 || pollSeconds > 3_600) throw new Error('--poll-seconds must be a number of seconds, more than 0 and at most 3600');
    return schedule(base, pollSeconds, values.json === true);
  }
  throw new Error(`unknown command "${command}" (eod, schedule)`);
}

async function schedule(base: Omit<Parameters<typeof runEndOfDay>[0], 'date'>, pollSeconds: number, json: boolean): Promise<void> {
  const statePath = join(base.batchRoot, 'schedule.json');
  mkdirSync(base.batchRoot, { recursive: true });
  const firstUnit = base.topology.units[0];
  if (firstUnit === undefined) throw new Error('the topology has no units');
  const today = await unitDay(firstUnit.url, base.topology.businessDayUtcOffsetMinutes);
  let last = existsSync(statePath) ? (JSON.parse(readFileSync(statePath, 'utf8')) as { lastDate: string }).lastDate : addDays(today, -1);
  process.stderr.write(`following the units' clock: today is ${today}, last end of day ${last}\n`);
  for (;;) {
    const now = await unitDay(firstUnit.url, base.topology.businessDayUtcOffsetMinutes);
    while (addDays(last, 1) < now) {
      const date = addDays(last, 1);
      const result = await runEndOfDay({ ...base, date });
      printResult(result, json);
      last = date;
      writeFileSync(statePath, JSON.stringify({ lastDate: last }));
    }
    await new Promise((resolve) => setTimeout(resolve, pollSeconds * 1000));
  }
}

main().catch((error: unknown) => {
  process.stderr.write(`batch: ${error instanceof Error ? error.message : String(error)}\n`);
  process.exit(1);
});
