import { closeSync, fsyncSync, mkdirSync, openSync, readFileSync, renameSync, writeFileSync, writeSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { appendDurably, fsyncDirectory, readCompleteLines } from '../domain/durable-file.js';
import type { Analysis, PlanSpec } from '../domain/gray-plan.js';
import { assertRules, emptyRules, type GrayRules } from '../domain/gray.js';
import { assert } from '../domain/limits.js';

// The gray controller's durable state, in the gateway's state folder:
//   gray-state.json   the current rules, plan and role assignment, replaced whole
//                     (written to a temporary file, fsynced, renamed)
//   gray-audit.ndjson one line per change: who, when, what, why, before and after;
//                     appended and fsynced before the change answers, so the log
//                     never misses a change that took effect
// Changes are rare (operators and plan steps), so synchronous writes are fine.

export type PlanState = 'running' | 'paused' | 'completed' | 'aborted';

export interface PlanRecord {
  id: number;
  spec: PlanSpec;
  state: PlanState;
  stepIndex: number;
  /** Why the plan is paused, aborted or completed. */
  note: string;
  /** The analysis of every step that was analyzed, in order. */
  analyses: Array<{ stepIndex: number; at: string } & Analysis>;
}

export interface GrayState {
  rules: GrayRules;
  plan: PlanRecord | null;
  /** Units whose gray instance was promoted: its instance now serves as stable. */
  promotedUnits: string[];
  planSeq: number;
}

export interface AuditEntry {
  seq: number;
  at: string;
  who: string;
  action: string;
  reason: string;
  before: unknown;
  after: unknown;
  evidence?: unknown;
}

const auditEntriesKeptInMemoryMax = 10_000;

export class GrayStore {
  private readonly statePath: string;
  private readonly auditPath: string;
  private readonly audit: AuditEntry[] = [];
  private auditSeq = 0;

  constructor(readonly dir: string) {
    mkdirSync(dir, { recursive: true });
    this.statePath = join(dir, 'gray-state.json');
    this.auditPath = join(dir, 'gray-audit.ndjson');
    this.loadAudit();
  }

  loadState(): GrayState {
    if (!existsSync(this.statePath)) return { rules: emptyRules, plan: null, promotedUnits: [], planSeq: 0 };
    const state = JSON.parse(readFileSync(this.statePath, 'utf8')) as GrayState;
    assertRules(state.rules);
    assert(Array.isArray(state.promotedUnits), 'state has promotedUnits');
    return state;
  }

  saveState(state: GrayState): void {
    const temporary = `${this.statePath}.tmp`;
    const fd = openSync(temporary, 'w');
    try {
      writeSync(fd, JSON.stringify(state));
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(temporary, this.statePath);
    fsyncDirectory(this.statePath);
  }

  append(entry: Omit<AuditEntry, 'seq' | 'at'>, nowMs: number): AuditEntry {
    const full: AuditEntry = { seq: ++this.auditSeq, at: new Date(nowMs).toISOString(), ...entry };
    appendDurably(this.auditPath, JSON.stringify(full) + '\n');
    this.audit.push(full);
    if (this.audit.length > auditEntriesKeptInMemoryMax) this.audit.shift();
    return full;
  }

  /** The newest entries first, at most `limit`, optionally only those after `afterSeq`. */
  history(limit: number, afterSeq: number): AuditEntry[] {
    const out: AuditEntry[] = [];
    for (let i = this.audit.length - 1; i >= 0 && out.length < limit; i--) {
      const entry = this.audit[i] as AuditEntry;
      if (entry.seq <= afterSeq) break;
      out.push(entry);
    }
    return out;
  }

  private loadAudit(): void {
    if (!existsSync(this.auditPath)) {
      writeFileSync(this.auditPath, '');
      return;
    }
    // A torn last line (a crash mid-append: the change it described never answered) is cut off.
    for (const line of readCompleteLines(this.auditPath)) {
      const entry = JSON.parse(line) as AuditEntry;
      this.audit.push(entry);
      this.auditSeq = Math.max(this.auditSeq, entry.seq);
    }
    if (this.audit.length > auditEntriesKeptInMemoryMax) this.audit.splice(0, this.audit.length - auditEntriesKeptInMemoryMax);
  }
}
