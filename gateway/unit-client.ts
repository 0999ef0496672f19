import { Pool } from 'undici';
import { assert, limits } from '../domain/limits.js';
import type { Logger } from '../domain/log.js';
import { decodeResultLine, type ResultLine, type UnitOp } from '../domain/protocol.js';

// The gateway's connection to one unit. Operations for the unit queue here and go
// out as one batch per upstream request (see domain/protocol.ts). At most
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
  readonly writePool: Pool;
  /** Balance inquiries and health checks use their own connections, never queued behind batches. */
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
    const options = {
      connections: limits.unitPoolConnectionsMax,
      pipelining: 1,
      keepAliveTimeout: 30_000,
      connect: { timeout: limits.unitConnectTimeoutMs },
      headersTimeout: limits.unitRequestTimeoutMs,
      bodyTimeout: limits.unitRequestTimeoutMs,
    };
    this.writePool = new Pool(url, options);
    this.readPool = new Pool(url, { ...options, connections: 2 });
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
    setImmediate(() => {
      this.scheduled = false;
      this.flush();
    });
  }

  private flush(): void {
    while (this.queueLines.length > 0 && this.inflightBatches < limits.batchesInflightPerUnitMax) {
      const lines = this.queueLines.splice(0, limits.batchOpsMax);
      const callbacks = this.queueCallbacks.splice(0, limits.batchOpsMax);
      this.inflightBatches++;
      void this.send(lines, callbacks).finally(() => {
        this.inflightBatches--;
        if (this.queueLines.length > 0) this.schedule();
      });
    }
  }

  private async send(lines: string[], callbacks: OpCallback[]): Promise<void> {
    const started = process.hrtime.bigint();
    let results: ResultLine[] | null = null;
    try {
      const response = await this.writePool.request({
        path: '/v1/batch', method: 'POST', body: lines.join('\n'),
        headers: { 'content-type': 'application/x-ndjson' },
      });
      const text = await response.body.text();
      if (response.statusCode !== 200) throw new Error(`unit answered ${response.statusCode}: ${text.slice(0, 200)}`);
      const answerLines = text.split('\n');
      assert(answerLines.length === lines.length, 'a unit answers every operation of a batch');
      results = answerLines.map(decodeResultLine);
    } catch (error) {
      this.markDown(error);
    }
    this.stats.onBatch(this.unitId, this.instance, lines.length, Number(process.hrtime.bigint() - started) / 1e9, results !== null);
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
    await Promise.all([this.writePool.close(), this.readPool.close()]);
  }
}
