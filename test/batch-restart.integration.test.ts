import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { repoRoot, type Cluster } from '../deploy/cluster.js';
import { issueCards, syntheticApplicants } from '../deploy/bulk-issuance.js';
import { calendarOf } from '../domain/authorize-rules.js';
import { addDays } from '../batch/accounting-rules.js';
import { runEndOfDay, type EndOfDayResult } from '../batch/end-of-day.js';
import { ledgerPath, openLedger } from '../batch/ledger-store.js';
import { createWorkload, loadCards, runPhase } from '../loadtest/index.js';
import { call, startCluster } from './helpers.js';

// A simulated stretch of days: 2,000 accounts, a few seconds of realistic traffic
// (purchases, cash, refunds, reversals, increments, foreign currency), then end of
// day for twelve business days with the units' clock moving a day before each run
// (so holds expire and late presentments arrive). Every day must reconcile with
// no unexplained mismatch, and over the stretch every clearing case must occur.
// On the busiest day copies of the ledger are run by the CLI, killed with SIGKILL
// midway (once between tasks, once inside the clearing step after some of its
// pieces committed, once inside the send step between a unit's answer and the
// ledger's mark of it), and run again: each must end identical to the uninterrupted run.

let cluster: Cluster;
let root: string;
let close: () => Promise<void>;

beforeAll(async () => {
  ({ cluster, root, close } = await startCluster(2));
  await issueCards({
    gatewayUrl: cluster.gatewayUrl, applicants: syntheticApplicants(2_000, 11), bands: cluster.topology.issuance.scoreBands,
    currency: 'CNY', cardsPath: join(root, 'cards.ndjson'),
  });
  const cards = await loadCards(join(root, 'cards.ndjson'));
  await runPhase({ url: cluster.gatewayUrl, workload: createWorkload({ cards, seed: 5, keyPrefix: `restart-${Date.now()}` }), mode: 'closed', connections: 32, durationSeconds: 3 });
});

afterAll(async () => {
  await close();
});

const tables = ['authorizations', 'accounts', 'clearing', 'entries', 'lines', 'statements', 'outbox', 'day_totals'] as const;

function dump(path: string): Record<string, unknown[]> {
  const db = new Database(path, { readonly: true });
  try {
    return Object.fromEntries(tables.map((table) => [table, db.prepare(`SELECT * FROM ${table} ORDER BY 1, 2`).all()]));
  } finally {
    db.close();
  }
}

/**
 * Reconciliation reads per-day totals and a counter of the postings sent, not the
 * ledger's history: its figures must be what a scan of every day's entries and of
 * the whole outbox gives, day after day and after a killed run resumed.
 */
function expectTotalsOfFullScan(batchRoot: string, result: Pick<EndOfDayResult, 'date' | 'units'>): void {
  for (const unit of result.units) {
    const db = new Database(ledgerPath(batchRoot, unit.unit), { readonly: true });
    try {
      const full = db.prepare(`SELECT count(*) AS entries, coalesce(sum(amount_minor), 0) AS amount,
        coalesce(sum(CASE WHEN debit_ledger LIKE 'customer:%' THEN amount_minor ELSE 0 END) - sum(CASE WHEN credit_ledger LIKE 'customer:%' THEN amount_minor ELSE 0 END), 0) AS receivable
        FROM entries`).get() as { entries: number; amount: number; receivable: number };
      const sent = db.prepare('SELECT coalesce(sum(post_minor), 0) FROM outbox WHERE sent = 1').pluck().get() as number;
      const what = `${unit.unit} ${result.date}`;
      expect(unit.ledger, what).toMatchObject({ entries: full.entries, debitMinor: full.amount, creditMinor: full.amount, receivableMinor: full.receivable });
      expect(unit.postings.sentMinor, what).toBe(sent);
    } finally {
      db.close();
    }
  }
}

function backup(from: string, to: string): Promise<unknown> {
  mkdirSync(join(to, '..'), { recursive: true });
  const db = openLedger(from);
  return db.backup(to).finally(() => db.close());
}

function runCli(date: string, batchRoot: string, env: Record<string, string> = {}, args: string[] = []): ReturnType<typeof spawnSync> {
  return spawnSync(process.execPath, [join(repoRoot, 'dist/batch/cli.js'), 'eod', '--date', date, '--topology', cluster.topologyPath, '--batch-dir', batchRoot, '--partitions', '4', '--json', ...args], {
    env: { ...process.env, ...env }, encoding: 'utf8', timeout: 60_000,
  });
}

async function advanceUnitClocks(days: number): Promise<void> {
  for (const unit of cluster.topology.units) {
    const answer = await call(unit.url, 'POST', '/admin/clock', { advanceMs: days * 86_400_000 });
    expect(answer.status).toBe(200);
  }
}

describe('end of day over a simulated stretch of days', () => {
  it('reconciles every day, covers every clearing case, and resumes after kill -9 to the same ledger', async () => {
    const health = await call(cluster.topology.units[0]!.url, 'GET', '/healthz');
    const today = calendarOf(health.body.nowMs as number, cluster.topology.businessDayUtcOffsetMinutes).day;
    const batchRoot = join(root, 'batch-a');
    const results: EndOfDayResult[] = [];
    for (let offset = 0; offset < 12; offset++) {
      const date = addDays(today, offset);
      await advanceUnitClocks(1);
      if (offset !== 1) {
        results.push(await runEndOfDay({ topology: cluster.topology, topologyPath: cluster.topologyPath, batchRoot, date, threads: 1, partitions: 4 }));
        expectTotalsOfFullScan(batchRoot, results[results.length - 1]!);
        continue;
      }
      // The busiest day: most presentments land the day after the traffic.
      const kills = [
        { name: 'between-tasks', env: { DSU_BATCH_KILL_AFTER_TASKS: '20' }, args: [] as string[] },
        // 250 accounts a partition in pieces of 16: the kill lands inside a partition's clearing step.
        { name: 'inside-a-step', env: { DSU_BATCH_KILL_AFTER_PIECES: '20' }, args: ['--piece-accounts', '16'] },
        // Three requests of postings answered (200 rows each), the third one's rows not yet marked sent.
        { name: 'inside-the-send', env: { DSU_BATCH_KILL_AFTER_ANSWERS: '3' }, args: ['--mark-rows', '200'] },
      ];
      for (const kill of kills) {
        const copy = join(root, kill.name);
        for (const unit of cluster.topology.units) await backup(ledgerPath(batchRoot, unit.id), ledgerPath(copy, unit.id));
      }
      results.push(await runEndOfDay({ topology: cluster.topology, topologyPath: cluster.topologyPath, batchRoot, date, threads: 1, partitions: 4 }));
      expectTotalsOfFullScan(batchRoot, results[results.length - 1]!);
      for (const kill of kills) {
        const copy = join(root, kill.name);
        const killed = runCli(date, copy, kill.env, kill.args);
        expect(killed.signal, kill.name).toBe('SIGKILL');
        if (kill.name === 'inside-a-step') {
          const cursors = cluster.topology.units.map((unit) => {
            const db = new Database(ledgerPath(copy, unit.id), { readonly: true });
            try {
              return db.prepare("SELECT count(*) FROM step_cursors WHERE step = 'clear'").pluck().get() as number;
            } finally {
              db.close();
            }
          });
          expect(cursors.reduce((sum, count) => sum + count, 0), 'a clearing step was left in progress').toBeGreaterThan(0);
        }
        if (kill.name === 'inside-the-send') {
          const halfSent = cluster.topology.units.filter((unit) => {
            const db = new Database(ledgerPath(copy, unit.id), { readonly: true });
            try {
              // The date's postings (the earlier day's are all sent).
              const counts = db.prepare(`SELECT coalesce(sum(sent = 1), 0) AS sent, coalesce(sum(sent = 0), 0) AS unsent FROM outbox
                WHERE reference LIKE 'clearing:' || ? || ':%' OR reference LIKE 'accrue:' || ? || ':%'`).get(date, date) as { sent: number; unsent: number };
              return counts.sent > 0 && counts.unsent > 0;
            } finally {
              db.close();
            }
          });
          expect(halfSent.length, 'a unit\'s postings were left partly marked sent').toBeGreaterThan(0);
        }
        // Resumed with the default piece size: the ledger does not depend on it.
        const resumed = runCli(date, copy);
        expect(resumed.status, String(resumed.stderr)).toBe(0);
        const resumedResult = JSON.parse(String(resumed.stdout)) as EndOfDayResult;
        expectTotalsOfFullScan(copy, resumedResult);
        // The holds' counters live in the transactions of the pages and marks they count: a kill counts nothing twice.
        expect(resumedResult.units.flatMap((unit) => unit.mismatches), kill.name).toEqual([]);
        for (const unit of resumedResult.units) expect(unit.holds, `${kill.name} ${unit.unit}`).not.toBeNull();
        for (const unit of cluster.topology.units) {
          expect(dump(ledgerPath(copy, unit.id)), kill.name).toEqual(dump(ledgerPath(batchRoot, unit.id)));
        }
      }
    }
    for (const result of results) expect(result.units.flatMap((unit) => unit.mismatches), result.date).toEqual([]);
    // The units' open holds were compared with their journals every day, and there were holds to compare.
    for (const result of results) for (const unit of result.units) expect(unit.holds, `${result.date} ${unit.unit}`).not.toBeNull();
    expect(results.some((result) => result.units.some((unit) => unit.unitTotals.openHoldsMinor > 0))).toBe(true);
    // The totals compared day by day were not vacuous: the ledgers grew over the days.
    const entriesOf = (result: EndOfDayResult): number => result.units.reduce((sum, unit) => sum + unit.ledger.entries, 0);
    expect(entriesOf(results[results.length - 1]!)).toBeGreaterThan(entriesOf(results[2]!));
    expect(entriesOf(results[2]!)).toBeGreaterThan(0);
    const matches = new Set(results.flatMap((result) => result.units.flatMap((unit) => Object.keys(unit.clearing))));
    expect([...matches].sort()).toEqual(['chargeback', 'force', 'late', 'matched', 'refund']);
    // A new ledger on units that earlier ledgers settled: it reads their releases from the feed
    // (balance.posted) with everything else, so its count of holds agrees with the units'. (Its
    // receivables do not: the units' posted balances came from the other ledgers' postings.)
    const fresh = runCli(results[results.length - 1]!.date, join(root, 'fresh-ledgers'));
    expect(fresh.status, String(fresh.stderr)).toBe(3); // the CLI's exit status for a run with mismatches
    const freshResult = JSON.parse(String(fresh.stdout)) as EndOfDayResult;
    for (const unit of freshResult.units) {
      expect(unit.holds, unit.unit).not.toBeNull();
      expect(unit.mismatches.filter((text) => text.includes('open holds')), unit.unit).toEqual([]);
    }
    // An earlier date run again after the later ones: its steps are done, its row is
    // written again, and the totals are still those of the whole ledger.
    const earlier = runCli(results[2]!.date, batchRoot);
    expect(earlier.status, String(earlier.stderr)).toBe(0);
    expectTotalsOfFullScan(batchRoot, JSON.parse(String(earlier.stdout)) as EndOfDayResult);
    // A ledger of version 3 (no per-day totals, no counter of the postings sent, no count of holds) is
    // brought up to the current version: its days without a row are read from their entries,
    // and the counter starts from its outbox.
    for (const unit of cluster.topology.units) {
      const db = new Database(ledgerPath(batchRoot, unit.id));
      db.exec("DROP TABLE day_totals; DROP INDEX outbox_rejected; DELETE FROM meta WHERE key = 'sentMinor'; UPDATE meta SET value = '3' WHERE key = 'schemaVersion'");
      db.close();
    }
    const rerun = runCli(results[results.length - 1]!.date, batchRoot);
    expect(rerun.status, String(rerun.stderr)).toBe(0);
    const rerunResult = JSON.parse(String(rerun.stdout)) as EndOfDayResult;
    expect(rerunResult.mismatches).toBe(0);
    for (const unit of rerunResult.units) expect(unit.holdsNotCompared).toBe('the ledger was made before it counted holds');
    expectTotalsOfFullScan(batchRoot, rerunResult);
    const ledger = new Database(ledgerPath(batchRoot, cluster.topology.units[0]!.id), { readonly: true });
    try {
      expect(ledger.prepare("SELECT count(*) FROM clearing WHERE record_id LIKE '%:p2'").pluck().get()).toBeGreaterThan(0);
      expect(ledger.prepare("SELECT count(*) FROM authorizations WHERE status = 'expired'").pluck().get()).toBeGreaterThan(0);
    } finally {
      ledger.close();
    }
    // The units' business day is still open: refused by default, before any ledger is written.
    const openDay = addDays(today, 12);
    const refused = runCli(openDay, join(root, 'open-day'));
    expect(refused.status).not.toBe(0);
    expect(String(refused.stderr)).toMatch(new RegExp(`the business day ${openDay} has not ended`));
    expect(existsSync(join(root, 'open-day', cluster.topology.units[0]!.id))).toBe(false);
  });
});
