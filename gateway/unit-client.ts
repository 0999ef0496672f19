import { Pool } from 'undici';
import { assert, limits } from '../domain/limits.js';
import type { Logger } from '../domain/log.js';
import { decodeResultLine, type ResultLine, type UnitOp } from '../domain/protocol.js';
import { UnitWire, type WireAnswer } from './unit-wire.js';

// The gateway's connection to one unit. Operations for the unit queue here and go
// out as one batch per frame on the unit wire (domain/protocol.ts, domain/wire.ts). At most
// batchesInflightPerUnitMax batches are in flight: while they are, new operations
// wait and form the next, larger batch. At low load a request goes out alone on
// the next event-loop turn, so batching adds no latency when there is no queue.
//
// States: up (normal), down (the last batch failed: answer at once with
// "unavailable" until unitDownBackoffMs has passed, then let one batch probe).

export type OpCallback = (result: ResultLine | null) => void;

export interface UnitClientStats {
  onBatch(unitId: string, instance: string, opsCount: number, seconds: number, ok: boolean): void;
}

export class UnitClient {
  /** Batches of writes: one upgraded connection (domain/wire.ts). */
  readonly wire: UnitWire;
  /** Balance inquiries and health checks use HTTP on their own connections, never queued behind batches. */
  readonly readPool: Pool;
  private queueLines: string[] = [];
  private queueCallbacks: OpCallback[] = [];
  private inflightBatches = 0;
  private scheduled = false;
  private downUntilMs = 0;

  constructor(
    readonly unitId: string,
    /** Which of the unit's instances: "a" its own, "b" its gray instance (roles swap on promotion). */
    readonly instance: 'a' | 'b',
    readonly url: string,
    private readonly stats: UnitClientStats,
    private readonly log: Logger,
  ) {
    this.wire = new UnitWire({ url, connectTimeoutMs: limits.unitConnectTimeoutMs, answerTimeoutMs: limits.unitRequestTimeoutMs });
    this.readPool = new Pool(url, {
      connections: limits.unitReadConnectionsMax,
      pipelining: 1,
      keepAliveTimeout: 30_000,
      connect: { timeout: limits.unitConnectTimeoutMs },
      headersTimeout: limits.unitRequestTimeoutMs,
      bodyTimeout: limits.unitRequestTimeoutMs,
    });
  }

  get isDown(): boolean {
    return Date.now() < this.downUntilMs;
  }

  /** Nothing queued and no batch in flight. */
  get idle(): boolean {
    return this.queueLines.length === 0 && this.inflightBatches === 0;
  }

  get queuedOps(): number {
    return this.queueLines.length;
  }

  submit(op: UnitOp, callback: OpCallback): void {
    if (this.isDown) {
      callback(null);
      return;
    }
    this.queueLines.push(JSON.stringify(op));
    this.queueCallbacks.push(callback);
    this.schedule();
  }

  private schedule(): void {
    if (this.scheduled || this.inflightBatches >= limits.batchesInflightPerUnitMax) return;
    this.scheduled = true;
    setImmediate(this.flushScheduled);
  }

  private readonly flushScheduled = (): void => {
    this.scheduled = false;
    this.flush();
  };

  private flush(): void {
    while (this.queueLines.length > 0 && this.inflightBatches < limits.batchesInflightPerUnitMax) {
      const lines = this.queueLines.splice(0, limits.batchOpsMax);
      const callbacks = this.queueCallbacks.splice(0, limits.batchOpsMax);
      this.inflightBatches++;
      const started = process.hrtime.bigint();
      this.wire.send(lines.join('\n'), (answer) => {
        this.inflightBatches--;
        this.settle(answer, lines.length, callbacks, started);
        if (this.queueLines.length > 0) this.schedule();
      });
    }
  }

  private settle(answer: WireAnswer, opsCount: number, callbacks: OpCallback[], started: bigint): void {
    let results: ResultLine[] | null = null;
    if (answer.ok) {
      results = decodeAnswers(answer.text, opsCount);
      if (results === null) {
        // A unit (another release, a bug) answered what this gateway cannot read: the
        // batch fails like a broken connection (its operations get 91 or are retried),
        // and the connection goes, since later frames may be misaligned too. Thrown
        // from the socket's data handler instead, it ended the gateway.
        const reason = `the unit answered a batch of ${opsCount} that does not decode: ${answer.text.slice(0, 120)}`;
        this.markDown(reason);
        this.wire.abandon(reason);
      }
    } else {
      this.markDown(answer.reason);
    }
    this.stats.onBatch(this.unitId, this.instance, opsCount, Number(process.hrtime.bigint() - started) / 1e9, results !== null);
    for (let i = 0; i < callbacks.length; i++) (callbacks[i] as OpCallback)(results === null ? null : (results[i] as ResultLine));
  }

  private markDown(error: unknown): void {
    if (!this.isDown) this.log.warn('unit unavailable', { unit: this.unitId, instance: this.instance, url: this.url, error: String(error) });
    this.downUntilMs = Date.now() + limits.unitDownBackoffMs;
    // Operations queued behind the failed batch would meet the same fate: answer them now.
    const callbacks = this.queueCallbacks;
    this.queueLines = [];
    this.queueCallbacks = [];
    for (const callback of callbacks) callback(null);
  }

  async close(): Promise<void> {
    this.wire.close();
    await this.readPool.close();
  }
}

/** A batch's answer lines, one per operation, or null when they do not decode. */
function decodeAnswers(text: string, opsCount: number): ResultLine[] | null {
  const lines = text.split('\n');
  if (lines.length !== opsCount) return null;
  try {
    return lines.map(decodeResultLine);
  } catch {
    return null;
  }
}
