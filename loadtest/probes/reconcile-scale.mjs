// Probe: reconciliation of one date on a ledger holding DAYS business dates of
// ENTRIES entries each (synthetic rows, one unit's ledger), against the scans of the
// whole ledger it did before, each earlier day having been reconciled once as its end of day would (every day's entries summed, the whole outbox summed).
// Prints milliseconds per call, medians of ROUNDS. env: ENTRIES (250000), DAYS (1,10,30), ROUNDS (5).
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openLedger } from '../../dist/batch/ledger-store.js';
import { addDays } from '../../dist/batch/accounting-rules.js';
import { reconcile } from '../../dist/batch/reconcile.js';

const perDay = Number(process.env.ENTRIES ?? 250000);
const dayCounts = (process.env.DAYS ?? '1,10,30').split(',').map(Number);
const rounds = Number(process.env.ROUNDS ?? 5);
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const root = mkdtempSync(join(tmpdir(), 'dsu-rs-'));
try {
  const db = openLedger(join(root, 'ledger.db'));
  const insertEntry = db.prepare(`INSERT INTO entries (business_date, partition, account_id, reference, kind, amount_minor, currency, debit_ledger, credit_ledger)
    VALUES (?, ?, ?, ?, 'purchase', ?, 'CNY', ?, 'network:settlement')`);
  const insertOutbox = db.prepare("INSERT INTO outbox (partition, reference, account_id, releases, post_minor, kind, sent) VALUES (?, ?, ?, '[]', ?, 'clearing', 1)");
  // The send step counts what it marks sent (meta sentMinor); these rows are born sent, so the probe counts them.
  const count = db.prepare("UPDATE meta SET value = CAST(CAST(value AS INTEGER) + ? AS TEXT) WHERE key = 'sentMinor'");
  const addDay = db.transaction((date) => {
    let sent = 0;
    for (let i = 0; i < perDay; i++) {
      const account = String(10_000_000 + i);
      insertEntry.run(date, i % 8, account, `clearing:${date}:${account}`, 100 + (i % 977), `customer:${account}`);
      if (i % 2 === 0) {
        insertOutbox.run(i % 8, `clearing:${date}:${account}`, account, 100 + (i % 977));
        sent += 100 + (i % 977);
      }
    }
    count.run(sent);
  });
  const oldScans = () => {
    db.prepare(`SELECT coalesce(sum(amount_minor), 0) AS debit, coalesce(sum(CASE WHEN debit_ledger LIKE 'customer:%' THEN amount_minor ELSE 0 END)
      - sum(CASE WHEN credit_ledger LIKE 'customer:%' THEN amount_minor ELSE 0 END), 0) AS receivable, count(*) AS entries,
      coalesce(sum(debit_ledger = credit_ledger), 0) AS degenerate FROM entries`).get();
    db.prepare('SELECT coalesce(sum(post_minor), 0) FROM outbox WHERE sent = 1').pluck().get();
    db.prepare('SELECT count(*) FROM outbox WHERE sent = 2').pluck().get();
  };
  const totals = { accounts: 0, postedMinor: 0, openHoldsMinor: 0 };
  let days = 0;
  for (const target of dayCounts) {
    // Each day reconciled once as its end of day would (which saves its row of totals).
    while (days < target) {
      const day = addDays('2026-01-01', days++);
      addDay(day);
      reconcile(db, 'u', day, totals);
    }
    db.pragma('wal_checkpoint(TRUNCATE)');
    const date = addDays('2026-01-01', days - 1);
    const now = [];
    const before = [];
    for (let r = 0; r < rounds; r++) {
      let t = performance.now(); reconcile(db, 'u', date, totals); now.push(performance.now() - t);
      t = performance.now(); oldScans(); before.push(performance.now() - t);
    }
    console.log(`${days} days, ${days * perDay} entries: reconcile ${median(now).toFixed(1)} ms; the whole-ledger scans it replaced ${median(before).toFixed(1)} ms`);
  }
  db.close();
} finally {
  rmSync(root, { recursive: true, force: true });
}
