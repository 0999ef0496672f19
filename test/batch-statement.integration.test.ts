import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Cluster } from '../deploy/cluster.js';
import { calendarOf } from '../domain/authorize-rules.js';
import { addDays, cycleDayOf, dayOfMonth } from '../batch/accounting-rules.js';
import { runEndOfDay } from '../batch/end-of-day.js';
import { ledgerPath } from '../batch/ledger-store.js';
import { presentmentPlan, unitHash } from '../batch/network-simulator.js';
import { call, freshKey, purchase, startCluster } from './helpers.js';

// One account through two billing cycles, every figure computed by hand from the
// product parameters (classic: purchases 18.25% a year, cash 21.90%, cash advance
// fee 3%, late fee 50.00, minimum payment 10% but at least 100.00, due in 20 days):
//   day A      purchase 1,000.00 and cash withdrawal 500.00, both presented on A+1
//   A+1        posted: purchase 100000, cash 50000, cash advance fee 1500
//   each day   cash accrues 50000 * 2190 / 3650000 = 30 a day, from A+1
//   S0         statement 1: interest 30 * (S0 - A), closing 151500 + interest
//   S0+20      due date; this customer pays nothing
//   S0+21      late fee 5000, grace lost: purchases accrue 100000 * 1825 / 3650000 = 50 a day from S0+22
//   S1         statement 2: interest 30 * (S1 - S0) + 50 * (S1 - S0 - 21)

let cluster: Cluster;
let root: string;
let close: () => Promise<void>;

beforeAll(async () => {
  ({ cluster, root, close } = await startCluster(1));
});

afterAll(async () => {
  await close();
});

function daysBetween(from: string, to: string): number {
  return Math.round((Date.parse(`${to}T00:00:00Z`) - Date.parse(`${from}T00:00:00Z`)) / 86_400_000);
}

function nextCycleDate(after: string, cycleDay: number): string {
  let date = addDays(after, 1);
  while (dayOfMonth(date) !== cycleDay) date = addDays(date, 1);
  return date;
}

interface Chosen {
  accountId: string;
  card: { number: string; expiry: string; cvv: string };
  s0: string;
  s1: string;
}

/** An account whose simulated customer pays nothing on statement 1 and gets no random force post. */
async function chooseAccount(today: string): Promise<Chosen> {
  const opened = await call(cluster.gatewayUrl, 'POST', '/v1/accounts/batch', { accounts: Array.from({ length: 300 }, () => ({ creditLimit: { value: 1_000_000, currency: 'CNY' } })) });
  for (const entry of opened.body.results as Array<{ result: { accountId: string; card: Chosen['card'] } }>) {
    const { accountId, card } = entry.result;
    const s0 = nextCycleDate(today, cycleDayOf(accountId));
    const s1 = nextCycleDate(s0, cycleDayOf(accountId));
    if (unitHash(`pay|${accountId}|${s0}`) < 0.9) continue;
    let forced = false;
    for (let date = today; date <= s1; date = addDays(date, 1)) forced ||= unitHash(`force|${accountId}|${date}`) < 0.0005;
    if (!forced) return { accountId, card, s0, s1 };
  }
  throw new Error('no account in 300 fits the scenario');
}

/** Authorizes until the network's plan for the authorization is a full presentment the next day without a chargeback. */
async function authorizeFullNextDay(body: Record<string, unknown>, type: string): Promise<void> {
  for (let attempt = 0; attempt < 50; attempt++) {
    const answer = await call(cluster.gatewayUrl, 'POST', '/v1/authorizations', body, { 'idempotency-key': freshKey() });
    expect(answer.body.responseCode).toBe('00');
    const id = answer.body.authorizationId as string;
    const plan = presentmentPlan({ authorizationId: id, type } as never, 7);
    const simple = plan.parts.length === 1 && plan.parts[0]?.afterDays === 1 && plan.parts[0]?.share === 1;
    if (simple && unitHash(`chargeback|${id}:p1`) >= 0.01) return;
    await call(cluster.gatewayUrl, 'POST', `/v1/authorizations/${id}/reversals`, {});
  }
  throw new Error('no suitable authorization in 50 attempts');
}

describe('statements and ledger over two billing cycles', () => {
  it('match the hand-computed figures', async () => {
    const unit = cluster.topology.units[0]!;
    const health = await call(unit.url, 'GET', '/healthz');
    const today = calendarOf(health.body.nowMs as number, cluster.topology.businessDayUtcOffsetMinutes).day;
    const chosen = await chooseAccount(today);
    await authorizeFullNextDay(purchase(chosen.card, 100_000), 'purchase');
    await authorizeFullNextDay({ ...purchase(chosen.card, 50_000), type: 'cash', channel: 'atm', merchant: { id: 'atm-7', mcc: '6011', country: 'CN' } }, 'cash');

    const batchRoot = join(root, 'batch');
    for (let date = today; date <= chosen.s1; date = addDays(date, 1)) {
      const result = await runEndOfDay({ topology: cluster.topology, topologyPath: cluster.topologyPath, batchRoot, date, threads: 1, partitions: 2 });
      expect(result.units[0]?.mismatches, date).toEqual([]);
    }

    const k = daysBetween(today, chosen.s0);
    const interest1 = 30 * k;
    const closing1 = 100_000 + 50_000 + 1_500 + interest1;
    const minimum1 = Math.max(10_000, Math.ceil(closing1 / 10));
    const cycle = daysBetween(chosen.s0, chosen.s1);
    const interest2 = 30 * cycle + 50 * (cycle - 21);
    const closing2 = closing1 + 5_000 + interest2;
    const minimum2 = Math.max(10_000, Math.ceil(closing2 / 10));

    const ledger = new Database(ledgerPath(batchRoot, unit.id), { readonly: true });
    try {
      const statements = ledger.prepare('SELECT * FROM statements WHERE account_id = ? AND closing_minor != 0 ORDER BY statement_date').all(chosen.accountId);
      expect(statements).toEqual([
        {
          account_id: chosen.accountId, statement_date: chosen.s0, opening_minor: 0, purchases_minor: 100_000, cash_minor: 50_000, credits_minor: 0,
          payments_minor: 0, fees_minor: 1_500, interest_minor: interest1, closing_minor: closing1, minimum_payment_minor: minimum1, due_date: addDays(chosen.s0, 20),
        },
        {
          account_id: chosen.accountId, statement_date: chosen.s1, opening_minor: closing1, purchases_minor: 0, cash_minor: 0, credits_minor: 0,
          payments_minor: 0, fees_minor: 5_000, interest_minor: interest2, closing_minor: closing2, minimum_payment_minor: minimum2, due_date: addDays(chosen.s1, 20),
        },
      ]);
      const byLedger = (account: string): { debit: number; credit: number } =>
        ledger.prepare('SELECT coalesce(sum(debit_minor), 0) AS debit, coalesce(sum(credit_minor), 0) AS credit FROM lines l JOIN entries e ON e.reference = l.reference WHERE e.account_id = ? AND l.ledger_account = ?').get(chosen.accountId, account) as { debit: number; credit: number };
      expect(byLedger(`customer:${chosen.accountId}`)).toEqual({ debit: closing2, credit: 0 });
      expect(byLedger('network:settlement')).toEqual({ debit: 0, credit: 150_000 });
      expect(byLedger('income:fees')).toEqual({ debit: 0, credit: 6_500 });
      expect(byLedger('income:interest')).toEqual({ debit: 0, credit: interest1 + interest2 });
      const unbalanced = ledger.prepare('SELECT reference FROM lines GROUP BY reference HAVING sum(debit_minor) != sum(credit_minor)').all();
      expect(unbalanced).toEqual([]);
    } finally {
      ledger.close();
    }
    const balance = await call(cluster.gatewayUrl, 'GET', `/v1/accounts/${chosen.accountId}`);
    expect(balance.body).toMatchObject({ postedBalance: { value: closing2 }, openHolds: { value: 0 }, availableCredit: { value: 1_000_000 - closing2 } });
  });
});
