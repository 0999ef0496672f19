import { addDays } from './accounting-rules.js';

// A simulated card network: for a business date it presents clearing records for
// earlier approved authorizations, the way acquirers send them over the following
// days. Every choice is a pure function of the authorization id and the date, so
// a rerun presents exactly the same records. The mix covers every clearing case:
//   full presentment (most, next day), partial (the rest of the hold is released),
//   split (two presentments on two days), late presentment after the hold expired,
//   never presented (the hold expires), force post with no authorization, refunds,
//   and chargebacks of earlier presentments.

export interface AuthorizationView {
  authorizationId: string;
  accountId: string;
  type: string;
  approvedDate: string;
  baseMinor: number;
  feeMinor: number;
  holdMinor: number;
  status: string;
}

export type ClearingKind = 'purchase' | 'cash' | 'force' | 'refund' | 'chargeback';
export type ClearingMatch = 'matched' | 'late' | 'force' | 'refund' | 'chargeback';

export interface ClearingRecord {
  recordId: string;
  kind: ClearingKind;
  match: ClearingMatch;
  authorizationId: string | null;
  accountId: string;
  /** What the network presents, in the account's billing currency. */
  amountMinor: number;
  /** Cross-border fee carried by the authorization, posted with the (last) presentment. */
  feeMinor: number;
  /** Hold to release in the unit. */
  releaseMinor: number;
}

/** Uniform [0, 1) from a string: FNV-1a then a 32-bit finalizer. */
export function unitHash(text: string): number {
  let hash = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) hash = Math.imul(hash ^ text.charCodeAt(i), 0x01000193);
  hash ^= hash >>> 16;
  hash = Math.imul(hash, 0x85ebca6b);
  hash ^= hash >>> 13;
  return (hash >>> 0) / 4_294_967_296;
}

export const presentmentLookbackDays = 45;

/**
 * The days after its approval on which an authorization can be presented: every
 * afterDays of presentmentPlan, for holds that expire after these numbers of days,
 * within the lookback. Clearing reads only the authorizations approved that many
 * days before the date (a handful of dates instead of 45 days of them).
 */
export function presentmentDelays(holdExpiryDays: Iterable<number>): number[] {
  const delays = new Set([1, 2]);
  for (const days of holdExpiryDays) delays.add(days + 2);
  return [...delays].filter((days) => days <= presentmentLookbackDays).sort((a, b) => a - b);
}

interface Plan {
  /** Presentments as (days after approval, share of the base amount, releases the rest of the hold). */
  parts: Array<{ afterDays: number; share: number; last: boolean }>;
}

/** What the network will do with one authorization, decided once from its id. Its afterDays are those of presentmentDelays. */
export function presentmentPlan(auth: AuthorizationView, holdExpiryDays: number): Plan {
  if (auth.type === 'cash') return { parts: [{ afterDays: 1, share: 1, last: true }] };
  const u = unitHash(auth.authorizationId);
  if (u < 0.8) return { parts: [{ afterDays: 1, share: 1, last: true }] };
  if (u < 0.86) return { parts: [{ afterDays: 1, share: 0.9, last: true }] };
  if (u < 0.91) return { parts: [{ afterDays: 1, share: 0.6, last: false }, { afterDays: 2, share: 0.4, last: true }] };
  if (u < 0.94) return { parts: [{ afterDays: holdExpiryDays + 2, share: 1, last: true }] };
  if (u < 0.97) return { parts: [] };
  return { parts: [{ afterDays: 2, share: 1, last: true }] };
}

/** Presentments of `date` for authorizations approved before it. */
export function presentmentsFor(date: string, auths: readonly AuthorizationView[], holdExpiryDays: (auth: AuthorizationView) => number): ClearingRecord[] {
  const records: ClearingRecord[] = [];
  for (const auth of auths) {
    if (auth.type !== 'purchase' && auth.type !== 'cash') continue;
    if (auth.status === 'reversed' || auth.baseMinor <= 0) continue;
    const plan = presentmentPlan(auth, holdExpiryDays(auth));
    let presentedBefore = 0;
    plan.parts.forEach((part, index) => {
      // The last part of a split presents what is left, so the parts add up to the base exactly.
      const amount = part.last && index > 0 ? auth.baseMinor - presentedBefore : Math.round(auth.baseMinor * part.share);
      const dueDate = addDays(auth.approvedDate, part.afterDays);
      if (dueDate === date && amount > 0) {
        const late = auth.status === 'expired';
        records.push({
          recordId: `${auth.authorizationId}:p${index + 1}`, kind: auth.type === 'cash' ? 'cash' : 'purchase', match: late ? 'late' : 'matched',
          authorizationId: auth.authorizationId, accountId: auth.accountId, amountMinor: amount, feeMinor: part.last ? auth.feeMinor : 0,
          // The last presentment releases all that is still held; an earlier one its share.
          releaseMinor: part.last ? auth.holdMinor : Math.round(auth.holdMinor * part.share),
        });
      }
      presentedBefore += amount;
    });
  }
  return records;
}

/** Refund credits of `date` for refund authorizations approved the day before. */
export function refundsFor(date: string, auths: readonly AuthorizationView[]): ClearingRecord[] {
  return auths
    .filter((auth) => auth.type === 'refund' && auth.baseMinor > 0 && addDays(auth.approvedDate, 1) === date)
    .map((auth) => ({
      recordId: `${auth.authorizationId}:r`, kind: 'refund', match: 'refund', authorizationId: auth.authorizationId,
      accountId: auth.accountId, amountMinor: auth.baseMinor, feeMinor: 0, releaseMinor: 0,
    }));
}

/** About 1 in 2000 accounts a day gets a force post: a presentment the issuer never authorized. */
export function forcePostsFor(date: string, accountIds: readonly string[]): ClearingRecord[] {
  const records: ClearingRecord[] = [];
  for (const accountId of accountIds) {
    const u = unitHash(`force|${accountId}|${date}`);
    if (u >= 0.0005) continue;
    records.push({
      recordId: `force:${accountId}:${date}`, kind: 'force', match: 'force', authorizationId: null, accountId,
      amountMinor: 1_000 + Math.floor(u * 2_000 * 50_000), feeMinor: 0, releaseMinor: 0,
    });
  }
  return records;
}

export const chargebackAfterDays = 5;

/** About 1% of presentments come back as chargebacks five days after they posted. */
export function chargebacksFor(presented: ReadonlyArray<{ recordId: string; accountId: string; amountMinor: number }>): ClearingRecord[] {
  return presented
    .filter((record) => unitHash(`chargeback|${record.recordId}`) < 0.01)
    .map((record) => ({
      recordId: `${record.recordId}:cb`, kind: 'chargeback', match: 'chargeback', authorizationId: null,
      accountId: record.accountId, amountMinor: record.amountMinor, feeMinor: 0, releaseMinor: 0,
    }));
}

/** Customers pay three days before the due date: 60% in full, 30% the minimum, 10% nothing. */
export function paymentFor(accountId: string, statementDate: string, closingMinor: number, minimumMinor: number): number {
  if (closingMinor <= 0) return 0;
  const u = unitHash(`pay|${accountId}|${statementDate}`);
  if (u < 0.6) return closingMinor;
  if (u < 0.9) return minimumMinor;
  return 0;
}
