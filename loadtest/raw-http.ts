import { connect, type Socket } from 'node:net';
import { assertLoadtest } from './limits.js';

// A minimal HTTP/1.1 client for the fixed-rate load generator: a fixed set of
// keep-alive connections, one request in flight per connection, requests
// waiting in a FIFO when every connection is busy (as in an undici Pool).
//
// Why not undici: the load generator shares the machine's 2 cores with the
// system under test, so every microsecond it spends is taken from the gateway
// and the units. Measured on this machine, 4,000 req/s paced against a Node
// server answering at once, client CPU per request: undici Pool.dispatch 69-73
// us, this client 36-41 us (loadtest/probes/raw-vs-undici.mjs). The difference is
// undici's per-request machinery (handler adapter, header objects, timers).
//
// It speaks only what a load generator needs: requests with a body and a
// content-length, answers framed by content-length or chunked encoding (1xx
// answers skipped), `connection: close` honoured. A request unanswered after
// `timeoutMs` from its write fails with "timeout" and its connection is
// replaced; a connection that fails takes its request with it ("connection").

export type RawFailureKind = 'connection' | 'timeout';

/** What the client calls back; one object per request, so there is no closure per request. */
export interface RawExchange {
  /** Set by the client when the request is written on a connection. */
  onWritten(nowMs: number): void;
  onAnswer(status: number, body: Buffer | null, bodyBytes: number): void;
  onFailure(kind: RawFailureKind): void;
}

export interface RawHttpOptions {
  /** http://host:port */
  origin: string;
  connections: number;
  timeoutMs: number;
  /** Bodies longer than this are counted, not kept. */
  bodyBytesKeptMax: number;
  clock: () => number;
}

interface Pending {
  head: string;
  exchange: RawExchange;
}

const parseStates = {
  /** Waiting for a status line and headers. */
  head: 0,
  /** Reading `remaining` bytes of a content-length body. */
  body: 1,
  /** Reading a chunk-size line. */
  chunkSize: 2,
  /** Reading `remaining` bytes of chunk data, then its CRLF. */
  chunkData: 3,
  /** Reading the trailer section after the last chunk, up to an empty line. */
  trailer: 4,
} as const;
type ParseState = (typeof parseStates)[keyof typeof parseStates];

const headerBytesMax = 64 * 1024;
const crlf = Buffer.from('\r\n');
const headEnd = Buffer.from('\r\n\r\n');

/** One keep-alive connection with an incremental response parser. */
class RawConnection {
  socket: Socket | null = null;
  exchange: RawExchange | null = null;
  writtenMs = 0;
  private buffered: Buffer | null = null;
  private state: ParseState = parseStates.head;
  private remaining = 0;
  private status = 0;
  private closeAfter = false;
  private bodyChunks: Buffer[] = [];
  private bodyBytes = 0;
  /** Set while preconnect() waits: told once the socket connects (true) or fails (false). */
  private connectWaiter: ((connected: boolean) => void) | null = null;

  constructor(private readonly client: RawHttpClient) {}

  /** Opens the socket ahead of any request; settles once it is connected or has failed. */
  preconnect(): Promise<boolean> {
    if (this.socket === null) this.open();
    const socket = this.socket as Socket;
    if (!socket.connecting) return Promise.resolve(!socket.destroyed);
    return new Promise((resolve) => {
      this.connectWaiter = resolve;
    });
  }

  private settleConnect(connected: boolean): void {
    const waiter = this.connectWaiter;
    this.connectWaiter = null;
    waiter?.(connected);
  }

  send(pending: Pending, nowMs: number): void {
    assertLoadtest(this.exchange === null, 'one request in flight per connection');
    if (this.socket === null) this.open();
    this.exchange = pending.exchange;
    this.writtenMs = nowMs;
    pending.exchange.onWritten(nowMs);
    (this.socket as Socket).write(pending.head);
  }

  private open(): void {
    const { hostname, port } = this.client.target;
    const socket = connect({ host: hostname, port, noDelay: true });
    socket.once('connect', () => this.settleConnect(true));
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('error', () => this.fail('connection'));
    socket.on('close', () => this.fail('connection'));
    this.socket = socket;
    this.resetParser();
  }

  /** Drops the socket; the request on it, if any, fails with `kind`. */
  fail(kind: RawFailureKind): void {
    const socket = this.socket;
    if (socket === null) return;
    this.socket = null;
    detach(socket);
    socket.destroy();
    this.settleConnect(false);
    const exchange = this.exchange;
    this.exchange = null;
    if (exchange !== null) {
      exchange.onFailure(kind);
      this.client.released(this);
    }
  }

  private resetParser(): void {
    this.buffered = null;
    this.state = parseStates.head;
    this.bodyChunks = [];
    this.bodyBytes = 0;
  }

  private onData(chunk: Buffer): void {
    let data = this.buffered === null ? chunk : Buffer.concat([this.buffered, chunk]);
    this.buffered = null;
    while (data.length > 0 && this.socket !== null) {
      const used = this.step(data);
      if (used < 0) {
        // Not enough bytes for the next step: keep them for the next chunk.
        if (data.length > headerBytesMax) return this.fail('connection');
        this.buffered = data;
        return;
      }
      data = data.subarray(used);
    }
  }

  /** Consumes a prefix of `data` and returns its length, or -1 when more bytes are needed. */
  private step(data: Buffer): number {
    switch (this.state) {
      case parseStates.head: return this.readHead(data);
      case parseStates.body: return this.readBody(data);
      case parseStates.chunkSize: return this.readChunkSize(data);
      case parseStates.chunkData: return this.readChunkData(data);
      case parseStates.trailer: return this.readTrailer(data);
    }
  }

  private readHead(data: Buffer): number {
    const end = data.indexOf(headEnd);
    if (end < 0) return -1;
    const head = data.toString('latin1', 0, end);
    const status = Number(head.slice(9, 12));
    if (!head.startsWith('HTTP/1.') || !Number.isInteger(status) || status < 100) {
      this.fail('connection');
      return data.length;
    }
    const lower = head.toLowerCase();
    this.closeAfter = lower.includes('\r\nconnection: close');
    if (status < 200) return end + 4; // 1xx: the real answer follows.
    this.status = status;
    const lengthAt = lower.indexOf('\r\ncontent-length:');
    if (lengthAt >= 0) {
      this.remaining = Number.parseInt(lower.slice(lengthAt + 17, lower.indexOf('\r\n', lengthAt + 17) >>> 0), 10);
      if (!(this.remaining >= 0)) {
        this.fail('connection');
        return data.length;
      }
      this.state = parseStates.body;
    } else if (lower.includes('\r\ntransfer-encoding: chunked')) {
      this.state = parseStates.chunkSize;
    } else {
      this.remaining = 0;
      this.state = parseStates.body;
    }
    if (this.state === parseStates.body && this.remaining === 0) this.complete();
    return end + 4;
  }

  private readBody(data: Buffer): number {
    const take = Math.min(this.remaining, data.length);
    this.keep(data.subarray(0, take));
    this.remaining -= take;
    if (this.remaining === 0) this.complete();
    return take;
  }

  private readChunkSize(data: Buffer): number {
    const end = data.indexOf(crlf);
    if (end < 0) return -1;
    const size = Number.parseInt(data.toString('latin1', 0, end), 16);
    if (!(size >= 0)) {
      this.fail('connection');
      return data.length;
    }
    this.remaining = size;
    this.state = size === 0 ? parseStates.trailer : parseStates.chunkData;
    return end + 2;
  }

  private readChunkData(data: Buffer): number {
    if (this.remaining > 0) {
      const take = Math.min(this.remaining, data.length);
      this.keep(data.subarray(0, take));
      this.remaining -= take;
      return take;
    }
    if (data.length < 2) return -1;
    this.state = parseStates.chunkSize;
    return 2;
  }

  private readTrailer(data: Buffer): number {
    const end = data.indexOf(crlf);
    if (end < 0) return -1;
    if (end === 0) this.complete();
    return end + 2;
  }

  private keep(part: Buffer): void {
    this.bodyBytes += part.length;
    if (this.bodyBytes <= this.client.options.bodyBytesKeptMax) this.bodyChunks.push(part);
    else this.bodyChunks = [];
  }

  private complete(): void {
    const exchange = this.exchange;
    const kept = this.bodyBytes <= this.client.options.bodyBytesKeptMax;
    const body = !kept || this.bodyChunks.length === 0 ? null : this.bodyChunks.length === 1 ? (this.bodyChunks[0] as Buffer) : Buffer.concat(this.bodyChunks);
    const status = this.status;
    const bodyBytes = this.bodyBytes;
    this.exchange = null;
    this.state = parseStates.head;
    this.bodyChunks = [];
    this.bodyBytes = 0;
    if (this.closeAfter) {
      // The server closes after this answer: the next request opens a new connection.
      const socket = this.socket;
      this.socket = null;
      if (socket !== null) {
        detach(socket);
        socket.end();
      }
    }
    if (exchange === null) return;
    exchange.onAnswer(status, body, bodyBytes);
    this.client.released(this);
  }
}

export class RawHttpClient {
  readonly target: { hostname: string; port: number; host: string };
  readonly options: RawHttpOptions;
  private readonly idle: RawConnection[] = [];
  private readonly all: RawConnection[] = [];
  private readonly waiting: Pending[] = [];
  private waitingHead = 0;
  private readonly timer: NodeJS.Timeout;
  private closed = false;

  constructor(options: RawHttpOptions) {
    const url = new URL(options.origin);
    assertLoadtest(url.protocol === 'http:', 'the raw client speaks plain http');
    assertLoadtest(Number.isInteger(options.connections) && options.connections >= 1, 'raw connections >= 1');
    assertLoadtest(options.timeoutMs > 0, 'raw timeoutMs > 0');
    this.options = options;
    this.target = { hostname: url.hostname, port: Number(url.port || 80), host: url.host };
    for (let i = 0; i < options.connections; i++) {
      const connection = new RawConnection(this);
      this.all.push(connection);
      this.idle.push(connection);
    }
    // A coarse sweep rather than a timer per request: a timeout is detected within a tenth of it.
    this.timer = setInterval(() => this.sweepTimeouts(), Math.max(10, Math.floor(options.timeoutMs / 10)));
    this.timer.unref();
  }

  /**
   * A client whose connections are all open (those that could not connect open
   * again at their first request), or the wait for them ran out after timeoutMs.
   * A load generator opens its connections before its clock starts, as wrk does:
   * opened lazily, up to hundreds of TCP handshakes and accepts fell into the first
   * second of every fixed-rate run and set its p99 (30-33 ms there against 9-15 ms
   * in the seconds after; BENCHMARKS.md). A channel keeps its connections open.
   */
  static async connected(options: RawHttpOptions, signal?: AbortSignal): Promise<RawHttpClient> {
    const client = new RawHttpClient(options);
    let timer: NodeJS.Timeout | undefined;
    let onAbort: (() => void) | undefined;
    // The wait ends at the timeout, or at once when the caller aborts (a run stopped
    // while a server does not accept): the run then stops with what it has.
    const waited = new Promise<void>((resolve) => {
      timer = setTimeout(resolve, options.timeoutMs);
      onAbort = resolve;
      signal?.addEventListener('abort', onAbort, { once: true });
      if (signal?.aborted === true) resolve();
    });
    try {
      await Promise.race([Promise.all(client.all.map((connection) => connection.preconnect())), waited]);
    } finally {
      clearTimeout(timer);
      if (onAbort !== undefined) signal?.removeEventListener('abort', onAbort);
    }
    return client;
  }

  /** Requests waiting for a free connection. */
  get queued(): number {
    return this.waiting.length - this.waitingHead;
  }

  /** Sends a request now, or as soon as a connection is free. */
  request(method: string, path: string, headers: Readonly<Record<string, string>>, body: string, exchange: RawExchange): void {
    if (this.closed) return exchange.onFailure('connection');
    let head = `${method} ${path} HTTP/1.1\r\nhost: ${this.target.host}\r\n`;
    for (const name in headers) head += `${name}: ${headers[name] as string}\r\n`;
    head += `content-length: ${Buffer.byteLength(body)}\r\n\r\n${body}`;
    const pending: Pending = { head, exchange };
    const connection = this.idle.pop();
    if (connection === undefined) this.waiting.push(pending);
    else connection.send(pending, this.options.clock());
  }

  /** Called by a connection whose request settled: it takes the next waiting request. */
  released(connection: RawConnection): void {
    if (this.closed) return;
    if (this.waitingHead < this.waiting.length) {
      const next = this.waiting[this.waitingHead] as Pending;
      this.waiting[this.waitingHead] = undefined as unknown as Pending;
      this.waitingHead++;
      if (this.waitingHead > 1024 && this.waitingHead * 2 > this.waiting.length) {
        this.waiting.splice(0, this.waitingHead);
        this.waitingHead = 0;
      }
      connection.send(next, this.options.clock());
    } else {
      this.idle.push(connection);
    }
  }

  private sweepTimeouts(): void {
    const nowMs = this.options.clock();
    for (const connection of this.all) {
      if (connection.exchange !== null && nowMs - connection.writtenMs > this.options.timeoutMs) connection.fail('timeout');
    }
  }

  /** Closes every connection; requests in flight or waiting fail with "connection". */
  destroy(): void {
    if (this.closed) return;
    const waiting = this.waiting.slice(this.waitingHead);
    this.closed = true;
    clearInterval(this.timer);
    this.waiting.length = 0;
    this.waitingHead = 0;
    for (const connection of this.all) connection.fail('connection');
    for (const pending of waiting) pending.exchange.onFailure('connection');
  }
}

/**
 * A socket this connection is done with: its events no longer reach the connection,
 * which may already have opened the next socket (an error from the old one, after a
 * `connection: close`, used to fail the request on the new one). Errors are swallowed.
 */
function detach(socket: Socket): void {
  socket.removeAllListeners('data');
  socket.removeAllListeners('close');
  socket.removeAllListeners('error');
  socket.on('error', () => {});
}
