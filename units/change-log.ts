import type Database from 'better-sqlite3';

// The unit's replication log is made of the writes themselves: every write
// statement the engine runs inside a transaction is recorded by name with its
// bound values, and the list is shipped to the standby, which runs the same
// statements with the same values in the same order. The values are concrete
// (ids, amounts, hashes, times), so the standby's store ends identical to the
// primary's, journal sequence numbers included, with no clock or randomness
// involved on its side. The journal is part of it: every journal entry the
// primary appends is one recorded insert.

/** One recorded write: statement name, then its bound values (Buffers as {b: base64}). */
export type Change = [string, ...unknown[]];

export interface ChangeRecorder {
  /** The writes of the current transaction; null when the unit does not replicate. */
  changes: Change[] | null;
}

export interface WriteStatement {
  run(...values: unknown[]): Database.RunResult;
  get(...values: unknown[]): unknown;
}

/** Wraps a prepared write statement so that every execution is recorded first. */
export function recorded(name: string, statement: Database.Statement, recorder: ChangeRecorder): WriteStatement {
  const record = (values: unknown[]): void => {
    const changes = recorder.changes;
    if (changes !== null) changes.push([name, ...values.map(encodeValue)]);
  };
  return {
    run: (...values) => {
      record(values);
      return statement.run(...values);
    },
    get: (...values) => {
      record(values);
      return statement.get(...values);
    },
  };
}

function encodeValue(value: unknown): unknown {
  return Buffer.isBuffer(value) ? { b: value.toString('base64') } : value;
}

function decodeValue(value: unknown): unknown {
  if (typeof value === 'object' && value !== null && typeof (value as { b?: unknown }).b === 'string') return Buffer.from((value as { b: string }).b, 'base64');
  return value;
}

/** Runs recorded writes on another store (the standby's), by the same statements. */
export function applyChanges(statements: ReadonlyMap<string, Database.Statement>, changes: readonly Change[]): void {
  for (const change of changes) {
    const statement = statements.get(change[0]);
    if (statement === undefined) throw new Error(`unknown replicated statement ${change[0]}`);
    const values = change.slice(1).map(decodeValue);
    // A statement with RETURNING must be run with get().
    if (statement.reader) statement.get(...values);
    else statement.run(...values);
  }
}
