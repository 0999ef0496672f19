import { createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RawHttpClient, type RawExchange, type RawFailureKind } from '../loadtest/raw-http.js';
import { withConnectsThatNeverComplete } from './helpers.js';

// The load generator's HTTP/1.1 client against a raw TCP server on port 0 that
// answers with bytes the test chooses, split where the test chooses, so the
// framing cases (content-length, chunked, 1xx, split heads, connection: close)
// and the failures (timeout, refused connection) are each exercised.

type Script = (socket: Socket, request: string) => void;

let server: Server;
let origin = '';
let script: Script = () => {};
const sockets = new Set<Socket>();
let accepted = 0;

beforeAll(async () => {
  server = createServer((socket) => {
    accepted += 1;
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    let text = '';
    socket.on('data', (chunk) => {
      text += chunk.toString('latin1');
      const end = text.indexOf('\r\n\r\n');
      if (end < 0) return;
      const length = Number(/content-length: (\d+)/i.exec(text)?.[1] ?? 0);
      if (text.length < end + 4 + length) return;
      const request = text.slice(0, end + 4 + length);
      text = text.slice(end + 4 + length);
      script(socket, request);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterAll(async () => {
  for (const socket of sockets) socket.destroy();
  await new Promise<void>((resolve) => server.close(() => resolve()));
});

interface Outcome {
  status?: number;
  body?: string;
  bodyBytes?: number;
  failure?: RawFailureKind;
  writtenMs?: number;
}

function exchange(): { handler: RawExchange; done: Promise<Outcome> } {
  const outcome: Outcome = {};
  let settle!: (value: Outcome) => void;
  const done = new Promise<Outcome>((resolve) => (settle = resolve));
  const handler: RawExchange = {
    onWritten: (nowMs) => (outcome.writtenMs = nowMs),
    onAnswer: (status, body, bodyBytes) => settle({ ...outcome, status, body: body?.toString('utf8') ?? '', bodyBytes }),
    onFailure: (kind) => settle({ ...outcome, failure: kind }),
  };
  return { handler, done };
}

function client(options: Partial<{ connections: number; timeoutMs: number; bodyBytesKeptMax: number; origin: string }> = {}): RawHttpClient {
  return new RawHttpClient({ origin, connections: 2, timeoutMs: 2_000, bodyBytesKeptMax: 1_000, clock: () => performance.now(), ...options });
}

async function send(raw: RawHttpClient, body = '{"a":1}'): Promise<Outcome> {
  const { handler, done } = exchange();
  raw.request('POST', '/v1/authorizations', { 'content-type': 'application/json', 'idempotency-key': 'k-1' }, body, handler);
  return done;
}

/** Writes the parts with a pause between them, so each arrives as its own chunk. */
function writeSplit(socket: Socket, parts: string[]): void {
  parts.forEach((part, index) => setTimeout(() => socket.write(part), index * 15));
}

describe('the load generator HTTP client', () => {
  it('sends the request with its headers and reads a content-length answer split anywhere', async () => {
    let seen = '';
    script = (socket, request) => {
      seen = request;
      writeSplit(socket, ['HTTP/1.1 200 OK\r\ncontent-le', 'ngth: 11\r\n\r\n{"ok"', ':true}']);
    };
    const raw = client();
    const outcome = await send(raw, '{"amount":100}');
    raw.destroy();
    expect(seen.startsWith('POST /v1/authorizations HTTP/1.1\r\n')).toBe(true);
    expect(seen).toContain('idempotency-key: k-1\r\n');
    expect(seen).toContain('content-length: 14\r\n\r\n{"amount":100}');
    expect(outcome).toMatchObject({ status: 200, body: '{"ok":true}', bodyBytes: 11 });
    expect(outcome.writtenMs).toBeGreaterThan(0);
  });

  it('reads a chunked answer after a 100 Continue, and keeps the connection for the next request', async () => {
    let connectionsSeen = new Set<Socket>();
    script = (socket) => {
      connectionsSeen.add(socket);
      writeSplit(socket, ['HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhel', 'lo\r\n6\r\n world\r\n0\r\n\r\n']);
    };
    const raw = client({ connections: 1 });
    const first = await send(raw);
    const second = await send(raw);
    raw.destroy();
    expect(first).toMatchObject({ status: 201, body: 'hello world', bodyBytes: 11 });
    expect(second).toMatchObject({ status: 201, body: 'hello world' });
    expect(connectionsSeen.size).toBe(1);
    connectionsSeen = new Set();
  });

  it('opens a new connection after an answer with connection: close', async () => {
    const used = new Set<Socket>();
    script = (socket) => {
      used.add(socket);
      socket.end('HTTP/1.1 503 Service Unavailable\r\nconnection: close\r\ncontent-length: 2\r\n\r\nno');
    };
    const raw = client({ connections: 1 });
    expect(await send(raw)).toMatchObject({ status: 503, body: 'no' });
    expect(await send(raw)).toMatchObject({ status: 503, body: 'no' });
    raw.destroy();
    expect(used.size).toBe(2);
  });

  it('counts a body over the kept bound without keeping it', async () => {
    script = (socket) => socket.write(`HTTP/1.1 200 OK\r\ncontent-length: 5000\r\n\r\n${'x'.repeat(5000)}`);
    const raw = client({ bodyBytesKeptMax: 1_000 });
    const outcome = await send(raw);
    raw.destroy();
    expect(outcome).toMatchObject({ status: 200, body: '', bodyBytes: 5000 });
  });

  it('queues requests while every connection is busy and answers them in turn', async () => {
    script = (socket) => setTimeout(() => socket.write('HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok'), 20);
    const raw = client({ connections: 2 });
    const outcomes = Promise.all(Array.from({ length: 6 }, () => send(raw)));
    expect(raw.queued).toBe(4);
    const settled = await outcomes;
    raw.destroy();
    expect(settled.every((outcome) => outcome.status === 200)).toBe(true);
  });

  it('fails a request unanswered past the timeout, and one whose connection is refused', async () => {
    script = () => {};
    const raw = client({ timeoutMs: 100 });
    const timedOut = await send(raw);
    raw.destroy();
    expect(timedOut.failure).toBe('timeout');
    const closed = new RawHttpClient({ origin: 'http://127.0.0.1:1', connections: 1, timeoutMs: 1_000, bodyBytesKeptMax: 1_000, clock: () => performance.now() });
    const refused = await send(closed);
    closed.destroy();
    expect(refused.failure).toBe('connection');
  });

  it('fails what is in flight or queued when destroyed', async () => {
    script = () => {};
    const raw = client({ connections: 1 });
    const outcomes = Promise.all([send(raw), send(raw)]);
    raw.destroy();
    expect((await outcomes).map((outcome) => outcome.failure)).toEqual(['connection', 'connection']);
  });

  it('opens every connection before the first request when connected, and settles when none can open', async () => {
    script = (socket) => socket.write('HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok');
    const acceptedBefore = accepted;
    const raw = await RawHttpClient.connected({ origin, connections: 5, timeoutMs: 2_000, bodyBytesKeptMax: 1_000, clock: () => performance.now() });
    // Every connection is open once connected() settles, not merely started.
    const sockets = (raw as unknown as { all: Array<{ socket: { connecting: boolean; destroyed: boolean } | null }> }).all.map((connection) => connection.socket);
    expect(sockets.every((socket) => socket !== null && !socket.connecting && !socket.destroyed)).toBe(true);
    // The server may see the last accepts a moment after the client saw its connects.
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(accepted - acceptedBefore).toBe(5);
    const outcomes = await Promise.all(Array.from({ length: 5 }, () => send(raw)));
    raw.destroy();
    expect(outcomes.every((outcome) => outcome.status === 200)).toBe(true);
    // Five requests on five open connections: none opened another.
    expect(accepted - acceptedBefore).toBe(5);
    const startedMs = performance.now();
    const closed = await RawHttpClient.connected({ origin: 'http://127.0.0.1:1', connections: 3, timeoutMs: 5_000, bodyBytesKeptMax: 1_000, clock: () => performance.now() });
    expect(performance.now() - startedMs).toBeLessThan(4_000);
    const refused = await send(closed);
    closed.destroy();
    expect(refused.failure).toBe('connection');
  });

  it('stops waiting for its connections when the caller aborts', async () => {
    // Only the abort or the 30 s timeout can end connected().
    await withConnectsThatNeverComplete(async () => {
      const controller = new AbortController();
      const startedMs = performance.now();
      setTimeout(() => controller.abort(), 100);
      const raw = await RawHttpClient.connected({ origin, connections: 2, timeoutMs: 30_000, bodyBytesKeptMax: 1_000, clock: () => performance.now() }, controller.signal);
      raw.destroy();
      expect(performance.now() - startedMs).toBeLessThan(10_000);
      // Already aborted: no wait at all.
      const again = await RawHttpClient.connected({ origin, connections: 2, timeoutMs: 30_000, bodyBytesKeptMax: 1_000, clock: () => performance.now() }, controller.signal);
      again.destroy();
      expect(performance.now() - startedMs).toBeLessThan(10_000);
    });
  });
});
