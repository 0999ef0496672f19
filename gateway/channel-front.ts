import { STATUS_CODES, type Server } from 'node:http';
import type { Socket } from 'node:net';
import { ApiError } from '../domain/errors.js';
import { assert } from '../domain/limits.js';

// The gateway's front door for channel traffic: a lean HTTP/1.1 reader on the
// listening socket that serves the channel routes (authorizations and their
// follow-ups) itself and hands every other request, with its connection, to
// node:http.
//
// Why: at saturation node:http's own machinery (parser callbacks, IncomingMessage
// and ServerResponse objects, header handling, stream events) was most of the
// gateway's CPU per request, on a machine whose 2 cores the gateway shares with
// 4 units and the load generator. Measured in BENCHMARKS.md.
//
// It reads only the plain form of a request: a request line with HTTP/1.1, header
// lines `name: value` with a token name, a Host, no Transfer-Encoding, no Expect, no
// Upgrade, at most one Content-Length, and a route that `route` accepts. Anything
// else (chunked bodies, HTTP/1.0, a malformed line, a long header block, a body
// over the limit, an admin route) is handed over at that request, before a byte
// of it is taken, so node:http parses it and answers it as it would have. Once
// handed over, a connection stays with node:http. Requests may be pipelined:
// answers go out in order.
//
// test/channel-front-differential.test.ts holds it to that: seeded malformed and
// pipelined inputs, whole or in packets, with or without the client's FIN, get the
// same answers behind the front as from node:http alone. Where they still differ,
// node:http is the one that drops answers: requests pipelined after a malformed one
// or after `connection: close` make it close before it has answered the earlier
// ones (timing decides); the front answers those first.

/** The headers the channel routes read, lowercased; a header sent twice is handed over. */
export type FrontHeaders = Record<string, string>;

/** Where a channel route writes its one answer: a JSON body and its status. */
export interface FrontReply {
  send(status: number, json: string): void;
}

export type FrontHandler = (headers: FrontHeaders, body: Buffer, reply: FrontReply, target: string) => void;

/** The handler for a request line, or null to hand the request to node:http. */
export type FrontRoute = (method: string, target: string) => FrontHandler | null;

export interface FrontOptions {
  /** Header block bytes read before the request is handed over (node:http then answers 431 past its own limit). */
  headerBytesMax: number;
  /** Bodies declared larger are handed over (node:http's route answers 413). */
  bodyBytesMax: number;
  /** A connection with nothing in flight is closed after this long idle. */
  idleTimeoutMs: number;
  /** A request whose bytes take longer than this to arrive is dropped (node:http's requestTimeout). */
  requestTimeoutMs: number;
  /** Told of an exception thrown by a route (the request is answered 500). */
  onError: (error: unknown) => void;
}

const headEnd = Buffer.from('\r\n\r\n');
/** Answers a connection may owe before the front stops reading it (node:http holds one). */
const pipelinedMax = 64;
/** Packets an unfinished request may take before it is handed to node:http's streaming parser. */
const partialPacketsMax = 32;
/** node:http's answer to a request it cannot parse, when its server has no clientError listener. */
const badRequestAnswer = 'HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n';
const internalErrorBody = JSON.stringify(new ApiError('INTERNAL', 'the gateway failed unexpectedly', null).body());
/** RFC 9110 token characters, for methods and header names. */
const tokenPattern = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
/** An origin-form target: visible ASCII, nothing else (node:http refuses controls, spaces, DEL and bytes of 0x80 and above). */
const targetPattern = /^\/[\x21-\x7e]*$/;
/** A header value after its optional whitespace: visible characters, spaces and tabs inside, no controls. */
const valuePattern = /^(?:[\x21-\x7e\x80-\xff](?:[\t\x20-\x7e\x80-\xff]*[\x21-\x7e\x80-\xff])?)?$/;
/** Optional whitespace around a header value (RFC 9110: spaces and tabs only). */
const owsPattern = /^[ \t]+|[ \t]+$/g;
const digitsPattern = /^[0-9]{1,9}$/;
/** Headers whose presence means the request is not the plain form (llhttp reads Proxy-Connection as Connection). */
const handedOverHeaders = new Set(['transfer-encoding', 'expect', 'upgrade', 'proxy-connection']);

/** The Date header, recomputed at most once a second. */
let dateText = '';
let dateAtMs = 0;
function httpDate(): string {
  const now = Date.now();
  if (now - dateAtMs >= 1000) {
    dateAtMs = now - (now % 1000);
    dateText = new Date(dateAtMs).toUTCString();
  }
  return dateText;
}

/** The status line and fixed headers of each status, built once. */
const statusLines = new Map<number, string>();
function statusLine(status: number): string {
  let line = statusLines.get(status);
  if (line === undefined) {
    line = `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? 'Unknown'}\r\ncontent-type: application/json\r\n`;
    statusLines.set(status, line);
  }
  return line;
}

/** One request's place in its connection's answer order. */
class Slot implements FrontReply {
  text: string | null = null;
  constructor(private readonly connection: FrontConnection, readonly close: boolean) {}

  send(status: number, json: string): void {
    if (this.text !== null) return;
    const head = statusLine(status) + `content-length: ${Buffer.byteLength(json)}\r\ndate: ${httpDate()}\r\n`
      + (this.close ? 'connection: close\r\n\r\n' : this.connection.keepAlive);
    this.text = head + json;
    this.connection.flush();
  }
}

class FrontConnection {
  /** The end of an answer's head on a connection that stays open, as node:http writes it. */
  readonly keepAlive: string;
  private buffered: Buffer | null = null;
  /** Packets the unfinished request in `buffered` came in, and when its first byte came. */
  private partialPackets = 0;
  private partialSinceMs = 0;
  /** Answers owed, oldest first. */
  private readonly slots: Slot[] = [];
  /** Set when a request is to be handed over: the bytes from its first byte on. */
  private handover: Buffer | null = null;
  /** No more requests are read: a `connection: close` request, the client's end, or the front closing. */
  private ending = false;
  /** The client ended in the middle of a request. */
  private cutShort = false;
  /** The client ended while a request waited to be handed over. */
  private endedBeforeHandover = false;
  /** The client has sent its FIN. */
  private clientEnded = false;
  /** Reading paused until answers go out (pipelinedMax answers owed, or the socket's buffer full). */
  private held = false;
  private readonly onData = (chunk: Buffer): void => this.read(chunk);
  private readonly onTimeout = (): void => {
    if (this.slots.length === 0) this.socket.destroy();
  };
  private readonly onError = (): void => {
    this.socket.destroy();
  };
  private readonly onEnd = (): void => {
    this.clientEnded = true;
    if (this.handover !== null) {
      // A request waits to be handed over behind answers owed: node:http gets the end with it.
      this.endedBeforeHandover = true;
      return;
    }
    // Reading is held (answers owed): the requests buffered are read once they go out.
    if (!this.held) this.finishEnded();
  };
  private readonly onDrain = (): void => this.release();
  private readonly onClose = (): void => this.front.forget(this);

  constructor(readonly socket: Socket, private readonly front: ChannelFront) {
    this.keepAlive = `connection: keep-alive\r\nkeep-alive: timeout=${Math.floor(front.options.idleTimeoutMs / 1000)}\r\n\r\n`;
    socket.setNoDelay(true);
    socket.setTimeout(front.options.idleTimeoutMs);
    socket.on('timeout', this.onTimeout);
    socket.on('data', this.onData);
    socket.on('error', this.onError);
    socket.on('end', this.onEnd);
    socket.on('drain', this.onDrain);
    socket.on('close', this.onClose);
  }

  get idle(): boolean {
    return this.slots.length === 0 && this.buffered === null;
  }

  /** Stops reading requests; closes now if nothing is owed, else after the last answer. */
  end(): void {
    this.ending = true;
    if (this.slots.length === 0) this.socket.end();
  }

  /** `chunk` is a packet from the socket, or empty to read on in what is buffered. */
  private read(chunk: Buffer): void {
    if (this.handover !== null) {
      // Read before the pause took effect: it goes to node:http after the handed-over request.
      this.handover = Buffer.concat([this.handover, chunk]);
      return;
    }
    if (this.ending) return;
    const { headerBytesMax, bodyBytesMax, requestTimeoutMs } = this.front.options;
    let data: Buffer;
    if (this.buffered === null) {
      data = chunk;
      this.partialPackets = 1;
      this.partialSinceMs = Date.now();
    } else {
      data = chunk.length === 0 ? this.buffered : Buffer.concat([this.buffered, chunk]);
      if (chunk.length > 0) this.partialPackets++;
      // A request that trickles in goes to node:http, which parses a stream without
      // copying it again per packet; one that takes too long is dropped, as node:http's
      // requestTimeout would.
      if (Date.now() - this.partialSinceMs > requestTimeoutMs) {
        this.socket.destroy();
        return;
      }
      if (this.partialPackets > partialPacketsMax) return this.handOver(data);
    }
    this.buffered = null;
    let offset = 0;
    while (offset < data.length && !this.ending) {
      if (this.slots.length >= pipelinedMax || this.socket.writableNeedDrain) {
        // A client that sends and does not read: stop reading until its answers go out.
        this.hold();
        break;
      }
      const end = data.indexOf(headEnd, offset);
      if (end < 0) {
        // An unfinished head that is already not the plain form goes to node:http now,
        // which answers it at once (a bare LF, say) instead of when it would end.
        if (data.length - offset > headerBytesMax || !plainSoFar(data.toString('latin1', offset))) return this.handOver(data.subarray(offset));
        break;
      }
      if (end - offset > headerBytesMax) return this.handOver(data.subarray(offset));
      const request = parseHead(data.toString('latin1', offset, end), bodyBytesMax);
      const handler = request === null ? null : this.front.route(request.method, request.target);
      if (request === null || handler === null) return this.handOver(data.subarray(offset));
      const bodyStart = end + 4;
      if (data.length - bodyStart < request.bodyBytes) break;
      const body = data.subarray(bodyStart, bodyStart + request.bodyBytes);
      offset = bodyStart + request.bodyBytes;
      const slot = new Slot(this, request.close);
      this.slots.push(slot);
      if (request.close) this.ending = true;
      try {
        handler(request.headers, body, slot, request.target);
      } catch (error) {
        // A bug in a route: that request gets a 500, the connection and the process go on.
        this.front.onHandlerError(error);
        slot.send(500, internalErrorBody);
      }
    }
    if (offset < data.length && !this.ending) {
      // Keep the unfinished request; a copy, so that the chunk's memory is not held.
      if (offset > 0) {
        this.partialPackets = 1;
        this.partialSinceMs = Date.now();
      }
      this.buffered = offset === 0 && data !== chunk ? data : Buffer.from(data.subarray(offset));
    }
  }

  /**
   * The client sent all it will and every whole request of it has been read: answer
   * what is owed, then close. A request it left unfinished is then refused as node:http
   * refuses one (400, or the server's clientError listener); node:http does that at
   * once, before the answers owed. Line breaks alone are not a request (llhttp skips them).
   */
  private finishEnded(): void {
    this.ending = true;
    this.cutShort = this.buffered !== null && !lineBreaksOnlyPattern.test(this.buffered.toString('latin1'));
    this.buffered = null;
    if (this.handover === null && this.slots.length === 0) this.close();
  }

  /** Closes the connection once nothing is owed, refusing first a request the client left unfinished. */
  private close(): void {
    if (this.cutShort) this.front.refuseUnfinished(this.socket);
    else this.socket.end();
  }

  private hold(): void {
    if (this.held) return;
    this.held = true;
    this.socket.pause();
  }

  /** Reads on once answers have gone out, starting with the requests already buffered. */
  private release(): void {
    if (!this.held || this.slots.length >= pipelinedMax || this.socket.writableNeedDrain) return;
    this.held = false;
    if (this.buffered !== null) this.read(Buffer.alloc(0));
    if (this.held || this.handover !== null) return;
    if (this.clientEnded) this.finishEnded();
    else this.socket.resume();
  }

  /** Writes the answers that are ready, in request order; hands over or closes once nothing is owed. */
  flush(): void {
    const { socket, slots } = this;
    let ready = 0;
    while (ready < slots.length && (slots[ready] as Slot).text !== null) ready++;
    if (ready === 0) return;
    if (socket.destroyed) {
      slots.splice(0, ready);
      return;
    }
    let closing = false;
    if (ready === 1) {
      const slot = slots.shift() as Slot;
      socket.write(slot.text as string);
      closing = slot.close;
    } else {
      socket.cork();
      for (const slot of slots.splice(0, ready)) {
        socket.write(slot.text as string);
        closing ||= slot.close;
      }
      socket.uncork();
    }
    if (slots.length > 0) {
      this.release();
      return;
    }
    if (closing || this.ending) this.close();
    else if (this.handover !== null) this.giveToNode();
    else this.release();
  }

  private handOver(rest: Buffer): void {
    this.handover = rest;
    // Reached from the requests buffered while reading was held, after the client's FIN.
    if (this.clientEnded) this.endedBeforeHandover = true;
    this.buffered = null;
    this.socket.pause();
    if (this.slots.length === 0) this.giveToNode();
  }

  /** node:http takes the connection from the request that was not ours. */
  private giveToNode(): void {
    const { socket } = this;
    const rest = this.handover;
    assert(rest !== null && this.slots.length === 0, 'a connection is handed over with nothing owed');
    for (const [event, listener] of [['data', this.onData], ['timeout', this.onTimeout], ['error', this.onError], ['end', this.onEnd], ['drain', this.onDrain], ['close', this.onClose]] as const) {
      socket.removeListener(event, listener);
    }
    socket.setTimeout(0);
    this.front.forget(this);
    if (this.endedBeforeHandover) {
      // The stream has ended, so the bytes cannot go back into it (unshift after the
      // end fails): node:http's listeners get them, then the end, as the socket's events,
      // the end a turn later, as it would come after the data that preceded it.
      this.front.giveToNode(socket);
      if (rest.length > 0) socket.emit('data', rest);
      // Not once node:http has closed the socket (a refusal): its parser is back in node's pool.
      setImmediate(() => {
        if (!socket.destroyed) socket.emit('end');
      });
      return;
    }
    socket.pause();
    if (rest.length > 0) socket.unshift(rest);
    this.front.giveToNode(socket);
    socket.resume();
  }
}

interface RequestHead {
  method: string;
  target: string;
  headers: FrontHeaders;
  bodyBytes: number;
  close: boolean;
}

/** Bytes that llhttp skips before a request line. */
const lineBreaksOnlyPattern = /^[\r\n]*$/;
/** A line break that is not CRLF, or a control other than a tab: no plain head has one. */
const notPlainPattern = /[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]|\r(?!\n)|(?<!\r)\n/;

/**
 * Whether the start of a head, up to its last CRLF, could still be the plain form: its
 * request line and each whole header line pass, and no byte so far is out of place
 * (a CR that ends the bytes may be followed by its LF).
 */
function plainSoFar(start: string): boolean {
  const lastLineEnd = start.lastIndexOf('\r\n');
  const trailing = start.endsWith('\r') ? start.slice(0, -1) : start;
  if (notPlainPattern.test(trailing)) return false;
  return lastLineEnd < 0 || parseHead(start.slice(0, lastLineEnd), Number.MAX_SAFE_INTEGER, true) !== null;
}

/**
 * The plain form of a request head, or null for anything else (handed over). With
 * `partial`, the head's first lines only: the request as a whole (Host, Content-Length)
 * is not checked.
 */
function parseHead(head: string, bodyBytesMax: number, partial = false): RequestHead | null {
  const lineEnd = head.indexOf('\r\n');
  const requestLine = lineEnd < 0 ? head : head.slice(0, lineEnd);
  const firstSpace = requestLine.indexOf(' ');
  const secondSpace = requestLine.indexOf(' ', firstSpace + 1);
  if (firstSpace <= 0 || secondSpace < 0 || requestLine.slice(secondSpace + 1) !== 'HTTP/1.1') return null;
  const method = requestLine.slice(0, firstSpace);
  const target = requestLine.slice(firstSpace + 1, secondSpace);
  if (!tokenPattern.test(method) || !targetPattern.test(target)) return null;
  const headers: FrontHeaders = Object.create(null) as FrontHeaders;
  let position = lineEnd < 0 ? head.length : lineEnd + 2;
  while (position < head.length) {
    let next = head.indexOf('\r\n', position);
    if (next < 0) next = head.length;
    const line = head.slice(position, next);
    position = next + 2;
    const colon = line.indexOf(':');
    if (colon <= 0) return null;
    const name = line.slice(0, colon);
    // A name with whitespace, and obs-fold (a line that starts with whitespace), are refused by node:http too.
    if (!tokenPattern.test(name)) return null;
    const key = name.toLowerCase();
    if (handedOverHeaders.has(key) || headers[key] !== undefined) return null;
    const raw = line.slice(colon + 1);
    // A value that ends in a tab: llhttp refuses it in Content-Length and does not read
    // `close` in Connection from it, where the whitespace rule below would; node:http decides.
    if (raw.endsWith('\t')) return null;
    const value = raw.replace(owsPattern, '');
    // Bare CR or LF, NUL and other controls: node:http answers 400; so does it after handover.
    if (!valuePattern.test(value)) return null;
    headers[key] = value;
  }
  if (partial) return { method, target, headers, bodyBytes: 0, close: false };
  // HTTP/1.1 requires Host; node:http answers its absence with 400.
  if (headers['host'] === undefined) return null;
  const length = headers['content-length'];
  let bodyBytes = 0;
  if (length !== undefined) {
    if (!digitsPattern.test(length)) return null;
    bodyBytes = Number(length);
    if (bodyBytes > bodyBytesMax) return null;
  }
  const connection = headers['connection'];
  const close = connection !== undefined && connection.toLowerCase().split(',').some((token) => token.trim() === 'close');
  return { method, target, headers, bodyBytes, close };
}

export class ChannelFront {
  private readonly connections = new Set<FrontConnection>();
  private readonly nodeListeners: Array<(socket: Socket) => void>;
  private closing = false;

  /**
   * Takes over the `connection` event of a node:http server (before it listens):
   * every connection starts here, and node:http gets those handed over.
   */
  constructor(private readonly server: Server, readonly route: FrontRoute, readonly options: FrontOptions) {
    this.nodeListeners = server.listeners('connection') as Array<(socket: Socket) => void>;
    assert(this.nodeListeners.length > 0, 'node:http listens for connections');
    server.removeAllListeners('connection');
    server.on('connection', (socket: Socket) => {
      if (this.closing) {
        socket.destroy();
        return;
      }
      this.connections.add(new FrontConnection(socket, this));
    });
  }

  forget(connection: FrontConnection): void {
    this.connections.delete(connection);
  }

  onHandlerError(error: unknown): void {
    this.options.onError(error);
  }

  /**
   * A connection whose client ended in the middle of a request: refused as node:http
   * refuses one (its clientError event, else a bare 400), with the error it reports.
   */
  refuseUnfinished(socket: Socket): void {
    const error = Object.assign(new Error('Parse Error: Invalid EOF state'), { code: 'HPE_INVALID_EOF_STATE' });
    if (this.server.emit('clientError', error, socket)) return;
    if (socket.writable) socket.write(badRequestAnswer);
    socket.destroy();
  }

  giveToNode(socket: Socket): void {
    for (const listener of this.nodeListeners) listener.call(this.server, socket);
  }

  /** Closes idle connections now and the others once their answers are out; node:http's own close handles the rest. */
  close(): void {
    this.closing = true;
    for (const connection of this.connections) {
      if (connection.idle) connection.socket.destroy();
      else connection.end();
    }
  }
}
