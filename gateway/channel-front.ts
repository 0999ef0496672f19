import { STATUS_CODES, type Server } from 'node:http';
import type { Socket } from 'node:net';
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
}

const headEnd = Buffer.from('\r\n\r\n');
/** RFC 9110 token characters, for header names. */
const tokenPattern = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
const digitsPattern = /^[0-9]{1,9}$/;
/** Headers whose presence means the request is not the plain form. */
const handedOverHeaders = new Set(['transfer-encoding', 'expect', 'upgrade']);

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
      + (this.close ? 'connection: close\r\n\r\n' : '\r\n');
    this.text = head + json;
    this.connection.flush();
  }
}

class FrontConnection {
  private buffered: Buffer | null = null;
  /** Answers owed, oldest first. */
  private readonly slots: Slot[] = [];
  /** Set when a request is to be handed over: the bytes from its first byte on. */
  private handover: Buffer | null = null;
  /** No more requests are read: a `connection: close` request, or the front closing. */
  private ending = false;
  private readonly onData = (chunk: Buffer): void => this.read(chunk);
  private readonly onTimeout = (): void => {
    if (this.slots.length === 0) this.socket.destroy();
  };

  constructor(readonly socket: Socket, private readonly front: ChannelFront) {
    socket.setNoDelay(true);
    socket.setTimeout(front.options.idleTimeoutMs);
    socket.on('timeout', this.onTimeout);
    socket.on('data', this.onData);
    socket.on('error', () => socket.destroy());
    socket.on('close', () => front.forget(this));
  }

  get idle(): boolean {
    return this.slots.length === 0 && this.buffered === null;
  }

  /** Stops reading requests; closes now if nothing is owed, else after the last answer. */
  end(): void {
    this.ending = true;
    if (this.slots.length === 0) this.socket.end();
  }

  private read(chunk: Buffer): void {
    if (this.handover !== null) {
      // Read before the pause took effect: it goes to node:http after the handed-over request.
      this.handover = Buffer.concat([this.handover, chunk]);
      return;
    }
    if (this.ending) return;
    const data = this.buffered === null ? chunk : Buffer.concat([this.buffered, chunk]);
    this.buffered = null;
    const { headerBytesMax, bodyBytesMax } = this.front.options;
    let offset = 0;
    while (offset < data.length && !this.ending) {
      const end = data.indexOf(headEnd, offset);
      if (end < 0) {
        if (data.length - offset > headerBytesMax) return this.handOver(data.subarray(offset));
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
      handler(request.headers, body, slot, request.target);
    }
    // Keep an unfinished request; a copy, so that the chunk's memory is not held.
    if (offset < data.length && !this.ending) this.buffered = Buffer.from(data.subarray(offset));
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
    if (slots.length > 0) return;
    if (closing || this.ending) socket.end();
    else if (this.handover !== null) this.giveToNode();
  }

  private handOver(rest: Buffer): void {
    this.handover = rest;
    this.socket.pause();
    if (this.slots.length === 0) this.giveToNode();
  }

  /** node:http takes the connection from the request that was not ours. */
  private giveToNode(): void {
    const { socket } = this;
    const rest = this.handover;
    assert(rest !== null && this.slots.length === 0, 'a connection is handed over with nothing owed');
    socket.removeListener('data', this.onData);
    socket.removeListener('timeout', this.onTimeout);
    socket.setTimeout(0);
    this.front.forget(this);
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

/** The plain form of a request head, or null for anything else (handed over). */
function parseHead(head: string, bodyBytesMax: number): RequestHead | null {
  const lineEnd = head.indexOf('\r\n');
  const requestLine = lineEnd < 0 ? head : head.slice(0, lineEnd);
  const firstSpace = requestLine.indexOf(' ');
  const secondSpace = requestLine.indexOf(' ', firstSpace + 1);
  if (firstSpace <= 0 || secondSpace < 0 || requestLine.slice(secondSpace + 1) !== 'HTTP/1.1') return null;
  const method = requestLine.slice(0, firstSpace);
  const target = requestLine.slice(firstSpace + 1, secondSpace);
  if (!tokenPattern.test(method) || target.length === 0 || target.charCodeAt(0) !== 0x2f /* / */ || target.includes(' ')) return null;
  const headers: FrontHeaders = {};
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
    const value = line.slice(colon + 1).trim();
    if (value.includes('\n') || value.includes('\r') || value.includes('\0')) return null;
    headers[key] = value;
  }
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
