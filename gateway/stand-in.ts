import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { appendDurably, readCompleteLines } from '../domain/durable-file.js';
import { assert } from '../domain/limits.js';
import type { Logger } from '../domain/log.js';
import type { Money } from '../domain/money.js';
import type { Channel } from '../domain/products.js';
import { authorizationIdSeparator, type AdviceOp, type ResultLine } from '../domain/protocol.js';
import { responseCodes, type ResponseCode } from '../domain/response-codes.js';
import type { StandInConfig } from '../domain/topology.js';

// Stand-in processing: when both copies of a unit are down, the gateway answers
// its authorizations itself, within stand-in limits per card and per channel,
// and records every stand-in approval as an advice. When the unit is back, the
// advices are replayed into it (op "advice") before any new operation reaches
// it, so its open-to-buy counts what was approved while it was away.
//
// Stand-in approves purchases only (no cash, no refunds) in the configured
// currency, and checks what the gateway can check without the store: the card
// number's form and the amount. A card's stand-in total and a channel's are
// counted over the whole outage of the unit.
//
// Advices are appended to stand-in-advices.ndjson in the gateway's state folder
// and fsynced before the channel gets its answer; a replayed advice is marked by
// a later line. A card is recorded only by its keyed hash and last four digits.


export interface StandInRequest {
  unitId: string;
  idempotencyKey: string;
  panHashHex: string;
  cvvHashHex: string | null;
  expiry: string;
  last4: string;
  amount: Money;
  type: string;
  channel: Channel;
  merchant: { id: string; mcc: string; country: string };
  partialAllowed: boolean;
}

interface AdviceRecord {
  unitId: string;
  advice: AdviceOp;
}

export class StandIn {
  private readonly path: string;
  /** Advices not yet replayed, by unit, in the order they were given. */
  private readonly pending = new Map<string, AdviceOp[]>();
  /**
   * Answers given, by unit and idempotency key, with the print of the request: a
   * retry while the unit is still down gets the same answer; another request under
   * the same key gets 94, as the unit would answer it.
   */
  private readonly answers = new Map<string, { print: string; line: ResultLine }>();
  private readonly perCard = new Map<string, number>();
  private readonly perChannel = new Map<string, number>();
  private readonly idPrefix = randomBytes(6).toString('base64url');
  private counter = 0;
  approvals = 0;
  declines = 0;

  constructor(private readonly config: StandInConfig, stateDir: string, private readonly log: Logger) {
    mkdirSync(stateDir, { recursive: true });
    this.path = join(stateDir, 'stand-in-advices.ndjson');
    this.load();
  }

  pendingFor(unitId: string): readonly AdviceOp[] {
    return this.pending.get(unitId) ?? [];
  }

  /** The stand-in answer for an authorization of a unit that is down. */
  authorize(request: StandInRequest): ResultLine {
    const print = requestPrint(request);
    const earlier = this.answers.get(answerKey(request.unitId, request.idempotencyKey));
    if (earlier !== undefined) return earlier.print === print ? earlier.line : duplicateLine(request.unitId);
    const { amount, channel } = request;
    const cardUsed = this.perCard.get(request.panHashHex) ?? 0;
    const channelUsed = this.perChannel.get(`${request.unitId}|${channel}`) ?? 0;
    const allowed = request.type === 'purchase' && amount.currency === this.config.currency
      && cardUsed + amount.value <= this.config.perCardMinor && channelUsed + amount.value <= this.config.perChannelMinor[channel];
    if (!allowed) {
      this.declines++;
      return declineLine(request.unitId);
    }
    this.counter++;
    const authorizationId = `${request.unitId}${authorizationIdSeparator}v${this.idPrefix}${this.counter.toString(36).padStart(8, '0')}`;
    const body = JSON.stringify({
      authorizationId, approved: true, responseCode: responseCodes.approved, approvedAmount: amount, availableCredit: null,
      unit: request.unitId, version: 'stable', standIn: true,
    });
    const advice: AdviceOp = {
      op: 'advice', idempotencyKey: request.idempotencyKey, authorizationId, panHashHex: request.panHashHex, cvvHashHex: request.cvvHashHex,
      expiry: request.expiry, amount, type: 'purchase', channel, merchant: request.merchant, partialAllowed: request.partialAllowed,
      atMs: Date.now(), answer: body,
    };
    // Durable before the channel hears "approved".
    this.append({ unitId: request.unitId, advice });
    this.addPending(request.unitId, advice);
    this.perCard.set(request.panHashHex, cardUsed + amount.value);
    this.perChannel.set(`${request.unitId}|${channel}`, channelUsed + amount.value);
    this.approvals++;
    const line: ResultLine = { status: 200, code: responseCodes.approved, approved: true, body };
    this.answers.set(answerKey(request.unitId, request.idempotencyKey), { print, line });
    return line;
  }

  /** The unit took the advice (or had it already): it leaves the pending list for good. */
  replayed(unitId: string, advice: AdviceOp): void {
    const list = this.pending.get(unitId);
    assert(list !== undefined && list[0] === advice, 'advices are replayed in order');
    list.shift();
    this.appendLine(JSON.stringify({ replayed: advice.authorizationId, unitId }));
    if (list.length === 0) this.endOutage(unitId);
  }

  /** The outage of a unit ended: its stand-in totals start again at zero next time. */
  private endOutage(unitId: string): void {
    this.pending.delete(unitId);
    for (const key of [...this.perChannel.keys()]) if (key.startsWith(`${unitId}|`)) this.perChannel.delete(key);
    this.log.info('stand-in advices replayed', { unit: unitId });
  }

  private addPending(unitId: string, advice: AdviceOp): void {
    const list = this.pending.get(unitId) ?? [];
    list.push(advice);
    this.pending.set(unitId, list);
  }

  private append(record: AdviceRecord): void {
    this.appendLine(JSON.stringify(record));
  }

  private appendLine(line: string): void {
    appendDurably(this.path, line + '\n');
  }

  /** A gateway restart keeps the advices not yet replayed. */
  private load(): void {
    const replayed = new Set<string>();
    const records: AdviceRecord[] = [];
    // A torn last line (a crash mid-append) was never answered: readCompleteLines cuts it off.
    for (const line of readCompleteLines(this.path)) {
      const value = JSON.parse(line) as AdviceRecord | { replayed: string };
      if ('replayed' in value) replayed.add(value.replayed);
      else records.push(value);
    }
    for (const record of records) {
      if (replayed.has(record.advice.authorizationId)) continue;
      this.addPending(record.unitId, record.advice);
      const { advice } = record;
      this.answers.set(answerKey(record.unitId, advice.idempotencyKey), {
        print: requestPrint({ ...advice, unitId: record.unitId, idempotencyKey: advice.idempotencyKey, last4: '' }),
        line: { status: 200, code: responseCodes.approved, approved: true, body: advice.answer },
      });
    }
  }
}

function answerKey(unitId: string, idempotencyKey: string): string {
  return `${unitId}|${idempotencyKey}`;
}

/** What a retry must repeat to get the first answer: the request's content (the card by its keyed hash). */
function requestPrint(request: StandInRequest): string {
  const { panHashHex, cvvHashHex, expiry, amount, type, channel, merchant, partialAllowed } = request;
  return JSON.stringify([panHashHex, cvvHashHex, expiry, amount.value, amount.currency, type, channel, merchant.id, merchant.mcc, merchant.country, partialAllowed]);
}

function declineLine(unitId: string): ResultLine {
  return standInDecline(unitId, responseCodes.unitUnavailable);
}

/** The key came with another request before: 94, as the unit answers a reused key. */
function duplicateLine(unitId: string): ResultLine {
  return standInDecline(unitId, responseCodes.duplicateTransmission);
}

function standInDecline(unitId: string, code: ResponseCode): ResultLine {
  const body = { authorizationId: null, approved: false, responseCode: code, approvedAmount: null, availableCredit: null, unit: unitId, version: 'stable', standIn: true };
  return { status: 200, code, approved: false, body: JSON.stringify(body) };
}
