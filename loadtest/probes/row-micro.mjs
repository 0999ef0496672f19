// Probe: the authorization's card-and-account read alone, in four forms, alternated, on a
// store built by store-scale.mjs: as the unit reads it (an object with the CVV hash as a
// Buffer), as a raw array, with the CVV hash compared in SQL instead of returned, and both.
// Microseconds per read, over cards in a fixed scattered order.
// env: STORE (/tmp/dsu-store-scale/10000/unit.db), READS (300000), ROUNDS (3).
import Database from 'better-sqlite3';

const store = process.env.STORE ?? '/tmp/dsu-store-scale/10000/unit.db';
const reads = Number(process.env.READS ?? 300000);
const rounds = Number(process.env.ROUNDS ?? 3);
const db = new Database(store, { readonly: true });
const hashes = db.prepare('SELECT pan_hash FROM cards').pluck().all();
const asRead = `SELECT c.account_id, c.last4, c.expiry, c.cvv_hash, c.status, c.cash_day, c.cash_amount, c.cash_count,
  a.product, a.currency, a.credit_limit, a.posted_balance, a.open_holds FROM cards c JOIN accounts a ON a.account_id = c.account_id WHERE c.pan_hash = ?`;
// The probe binds the card's hash as the CVV hash too: the comparison is always false, its cost the same.
const cvvInSql = asRead.replace('c.cvv_hash,', 'c.cvv_hash = ? AS cvv_matches,');
const forms = {
  object: ((s) => (hash) => s.get(hash))(db.prepare(asRead)),
  raw: ((s) => (hash) => s.get(hash))(db.prepare(asRead).raw()),
  cvvInSql: ((s) => (hash) => s.get(hash, hash))(db.prepare(cvvInSql)),
  cvvInSqlRaw: ((s) => (hash) => s.get(hash, hash))(db.prepare(cvvInSql).raw()),
};
for (let round = 1; round <= rounds; round++) {
  for (const [name, read] of Object.entries(forms)) {
    let found = 0;
    const started = process.hrtime.bigint();
    for (let i = 0; i < reads; i++) if (read(hashes[(i * 7919) % hashes.length]) !== undefined) found++;
    const us = Number(process.hrtime.bigint() - started) / 1000 / reads;
    console.log(`round ${round} ${name.padEnd(11)} ${us.toFixed(2)} us per read (${found} found)`);
  }
}
db.close();
