import { connect, type Socket } from 'node:net';
import { assert } from '../domain/limits.js';
import { encodeFrame, FrameReader, frameKinds, wirePath, wireUpgradeToken } from '../domain/wire.js';

// The gateway's end of the gateway-unit wire (domain/wire.ts): one upgraded TCP
// connection to a unit instance, batches written as frames, answers matched to
// batches by order. States:
//   closed     no socket; the next batch opens one
//   upgrading  connected or connecting, the 101 not read yet (batches wait, written once it is)
//   open       frames flow
// A connection that fails, breaks framing or leaves its oldest batch unanswered
// past the timeout is destroyed, and every batch on it fails; the caller (the
// unit client) decides what a failed batch means. Nothing is retried here.

export type WireAnswer = { ok: true; text: string } | { ok: false; reason: string };
export type WireCallback = (answer: WireAnswer) => void;

export interface UnitWireOptions {
  url: string;
  connectTimeoutMs: number;
  /** From the write of a batch to its answer. */
  answerTimeoutMs: number;
}

const wireStates = { closed: 'closed', upgrading: 'upgrading', open: 'open' } as const;
type WireState = (typeof wireStates)[keyof typeof wireStates];

/** How often the oldest unanswered batch is checked against the timeout; a fraction of it. */
const timeoutSweepDivisor = 10;
const upgradeHeadBytesMax = 4096;

export class UnitWire {
  private state: WireState = wireStates.closed;
  private socket: Socket | null = null;
  private reader = new FrameReader();
  private upgradeHead = '';
  /** Batches written (or waiting for the upgrade), oldest first. */
  private readonly callbacks: WireCallback[] = [];
  private readonly sentAtMs: number[] = [];
  private readonly waitingFrames: Buffer[] = [];
  private readonly timer: NodeJS.Timeout;
  private readonly host: string;
  private readonly port: number;

  constructor(private readonly options: UnitWireOptions) {
    const url = new URL(options.url);
    assert(url.protocol === 'http:', 'a unit URL is http');
    assert(options.connectTimeoutMs > 0 && options.answerTimeoutMs > options.connectTimeoutMs, 'wire timeouts: 0 < connect < answer');
    this.host = url.hostname;
    this.port = Number(url.port || 80);
    this.timer = setInterval(() => this.checkTimeout(), Math.max(10, Math.floor(options.answerTimeoutMs / timeoutSweepDivisor)));
    this.timer.unref();
  }

  get connected(): boolean {
    return this.state === wireStates.open;
  }

  /** Batches sent and not answered. */
  get inflight(): number {
    return this.callbacks.length;
  }

  send(payload: string, callback: WireCallback): void {
    const frame = encodeFrame(frameKinds.batch, payload);
    this.callbacks.push(callback);
    this.sentAtMs.push(performance.now());
    if (this.state === wireStates.open) {
      (this.socket as Socket).write(frame);
      return;
    }
    this.waitingFrames.push(frame);
    if (this.state === wireStates.closed) this.open();
  }

  private open(): void {
    this.state = wireStates.upgrading;
    this.reader = new FrameReader();
    this.upgradeHead = '';
    const socket = connect({ host: this.host, port: this.port, noDelay: true, timeout: this.options.connectTimeoutMs });
    this.socket = socket;
    socket.once('timeout', () => this.fail(socket, `no connection within ${this.options.connectTimeoutMs} ms`));
    socket.once('connect', () => {
      socket.setTimeout(0);
      socket.write(`GET ${wirePath} HTTP/1.1\r\nhost: ${this.host}:${this.port}\r\nupgrade: ${wireUpgradeToken}\r\nconnection: upgrade\r\n\r\n`);
    });
    socket.on('data', (chunk: Buffer) => this.onData(socket, chunk));
    socket.on('error', (error) => this.fail(socket, String(error)));
    socket.on('close', () => this.fail(socket, 'the unit closed the connection'));
  }

  private onData(socket: Socket, chunk: Buffer): void {
    if (socket !== this.socket) return;
    let data = chunk;
    if (this.state === wireStates.upgrading) {
      this.upgradeHead += chunk.toString('latin1');
      const end = this.upgradeHead.indexOf('\r\n\r\n');
      if (end < 0) {
        if (this.upgradeHead.length > upgradeHeadBytesMax) this.fail(socket, 'the unit sent no upgrade answer');
        return;
      }
      if (!this.upgradeHead.startsWith('HTTP/1.1 101')) return this.fail(socket, `the unit refused the wire: ${this.upgradeHead.slice(0, 80)}`);
      data = Buffer.from(this.upgradeHead.slice(end + 4), 'latin1');
      this.state = wireStates.open;
      const frames = this.waitingFrames.splice(0);
      socket.write(frames.length === 1 ? (frames[0] as Buffer) : Buffer.concat(frames));
    }
    const frames = this.reader.push(data);
    if (typeof frames === 'string') return this.fail(socket, frames);
    for (const frame of frames) {
      const callback = this.callbacks.shift();
      this.sentAtMs.shift();
      if (callback === undefined) return this.fail(socket, 'the unit answered a batch that was not sent');
      const text = frame.payload.toString('utf8');
      callback(frame.kind === frameKinds.results ? { ok: true, text } : { ok: false, reason: `the unit refused the batch: ${text.slice(0, 200)}` });
    }
  }

  private checkTimeout(): void {
    const oldest = this.sentAtMs[0];
    if (oldest === undefined || this.socket === null) return;
    if (performance.now() - oldest > this.options.answerTimeoutMs) this.fail(this.socket, `no answer within ${this.options.answerTimeoutMs} ms`);
  }

  /** Destroys the connection; every batch on it (or waiting for it) fails. */
  private fail(socket: Socket, reason: string): void {
    if (socket !== this.socket) return;
    this.socket = null;
    this.state = wireStates.closed;
    this.waitingFrames.length = 0;
    socket.removeAllListeners('data');
    socket.removeAllListeners('close');
    socket.on('error', () => {});
    socket.destroy();
    const callbacks = this.callbacks.splice(0);
    this.sentAtMs.length = 0;
    for (const callback of callbacks) callback({ ok: false, reason });
  }

  /** The unit's answers cannot be trusted (one did not decode): drop the connection and every batch on it. */
  abandon(reason: string): void {
    if (this.socket !== null) this.fail(this.socket, reason);
  }

  close(): void {
    clearInterval(this.timer);
    if (this.socket !== null) this.fail(this.socket, 'the gateway closed the connection');
  }
}
