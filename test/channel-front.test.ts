import { createServer, type Server } from 'node:http';
import { connect, type AddressInfo, type Socket } from 'node:net';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ChannelFront, type FrontReply } from '../gateway/channel-front.js';

// The gateway's lean front door over a real node:http server on a real socket:
// requests in their plain form are answered by the front's route ("front"), every
// other request, and the rest of its connection, by node:http ("node").

let server: Server;
let front: ChannelFront;
let port: number;
/** Replies the front holds back, to answer out of order. */
let held: Array<() => void>;
let errors: unknown[];

beforeEach(async () => {
  held = [];
  errors = [];
  server = createServer((request, response) => {
    const chunks: Buffer[] = [];
    request.on('data', (chunk: Buffer) => chunks.push(chunk));
    request.on('end', () => {
      const text = JSON.stringify({ by: 'node', url: request.url, body: Buffer.concat(chunks).toString() });
      response.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
      response.end(text);
    });
  });
  front = new ChannelFront(server, (method, target) => {
    if (method !== 'POST' || !target.startsWith('/fast')) return null;
    return (headers, body, reply: FrontReply) => {
      const text = JSON.stringify({ by: 'front', url: target, body: body.toString(), key: headers['idempotency-key'] ?? null });
      if (target === '/fast/throw') throw new Error('a bug in a route');
      if (target === '/fast/hold') held.push(() => reply.send(201, text));
      else reply.send(200, text);
    };
  }, { headerBytesMax: 1024, bodyBytesMax: 64, idleTimeoutMs: 5_000, requestTimeoutMs: 5_000, onError: (error) => errors.push(error) });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  port = (server.address() as AddressInfo).port;
});

afterEach(async () => {
  // Answer what a failed test left owed, so that every connection can close.
  for (const release of held) release();
  front.close();
  server.closeAllConnections();
  await new Promise<void>((resolve) => server.close(() => resolve()));
});

interface Answer {
  status: number;
  headers: Record<string, string>;
  body: { by: string; url: string; body: string; key?: string | null } | null;
}

/** Opens a connection and reads answers off it as they come. */
function open(): { socket: Socket; next: (count: number) => Promise<Answer[]>; closed: Promise<void> } {
  const socket = connect({ port, host: '127.0.0.1' });
  let data = Buffer.alloc(0);
  const answers: Answer[] = [];
  let waiting: { count: number; resolve: (answers: Answer[]) => void } | null = null;
  const parse = (): void => {
    for (;;) {
      const end = data.indexOf('\r\n\r\n');
      if (end < 0) return;
      const lines = data.subarray(0, end).toString('latin1').split('\r\n');
      const status = Number((lines[0] as string).split(' ')[1]);
      if (status < 200) {
        // 100 Continue: no body, not an answer.
        data = data.subarray(end + 4);
        continue;
      }
      const headers: Record<string, string> = {};
      for (const line of lines.slice(1)) headers[line.slice(0, line.indexOf(':')).toLowerCase()] = line.slice(line.indexOf(':') + 1).trim();
      const length = Number(headers['content-length'] ?? 0);
      if (data.length < end + 4 + length) return;
      answers.push({ status, headers, body: length > 0 ? JSON.parse(data.subarray(end + 4, end + 4 + length).toString()) : null });
      data = data.subarray(end + 4 + length);
      if (waiting !== null && answers.length >= waiting.count) {
        waiting.resolve(answers.splice(0, waiting.count));
        waiting = null;
      }
    }
  };
  socket.on('data', (chunk: Buffer) => {
    data = Buffer.concat([data, chunk]);
    parse();
  });
  const closed = new Promise<void>((resolve) => socket.on('close', () => resolve()));
  return {
    socket,
    closed,
    next: (count) => new Promise((resolve) => {
      if (answers.length >= count) return resolve(answers.splice(0, count));
      waiting = { count, resolve };
    }),
  };
}

function post(path: string, body: string, extra = ''): string {
  return `POST ${path} HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\nidempotency-key: k-${path}\r\ncontent-length: ${Buffer.byteLength(body)}\r\n${extra}\r\n${body}`;
}

/** Writes a request a few bytes at a time, a millisecond apart, as separate packets. */
async function writeInPieces(socket: Socket, request: string, pieceBytes: number): Promise<void> {
  const bytes = Buffer.from(request);
  for (let i = 0; i < bytes.length; i += pieceBytes) {
    socket.write(bytes.subarray(i, i + pieceBytes));
    await new Promise((resolve) => setTimeout(resolve, 1));
  }
}

describe('channel front door', () => {
  it('answers plain requests itself and hands the rest of a connection to node:http, answers in order', async () => {
    const client = open();
    client.socket.write(post('/fast/1', '{"a":1}') + post('/fast/2', '{"a":2}') + post('/other', '{"a":3}'));
    const [first, second, third] = await client.next(3);
    expect([first?.body?.by, second?.body?.by, third?.body?.by]).toEqual(['front', 'front', 'node']);
    expect(first?.body).toMatchObject({ url: '/fast/1', body: '{"a":1}', key: 'k-/fast/1' });
    expect(first?.headers['content-type']).toBe('application/json');
    expect(first?.headers['date']).toMatch(/GMT$/);
    expect(third?.body).toMatchObject({ url: '/other', body: '{"a":3}' });
    // Handed over for good: a plain request after it is node's too.
    client.socket.write(post('/fast/4', '{}'));
    expect((await client.next(1))[0]?.body?.by).toBe('node');
    client.socket.destroy();
  });

  it('keeps the order of pipelined answers that finish out of order, and waits for them before handing over', async () => {
    const client = open();
    client.socket.write(post('/fast/hold', '{"n":1}') + post('/fast/now', '{"n":2}') + post('/other', '{"n":3}'));
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(held).toHaveLength(1);
    (held[0] as () => void)();
    const answers = await client.next(3);
    expect(answers.map((answer) => [answer.status, answer.body?.by, answer.body?.body])).toEqual([[201, 'front', '{"n":1}'], [200, 'front', '{"n":2}'], [200, 'node', '{"n":3}']]);
    client.socket.destroy();
  });

  it('reads a request split anywhere across packets', async () => {
    const client = open();
    await writeInPieces(client.socket, post('/fast/split', '{"split":true}'), 7);
    const [answer] = await client.next(1);
    expect(answer?.body).toMatchObject({ by: 'front', body: '{"split":true}' });
    client.socket.destroy();
  });

  it.each([
    ['chunked body', 'POST /fast/c HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n3\r\n{}\n\r\n0\r\n\r\n', 200, 'node'],
    ['HTTP/1.0', 'POST /fast/c HTTP/1.0\r\nhost: x\r\ncontent-length: 2\r\n\r\n{}', 200, 'node'],
    ['body over the limit', post('/fast/big', 'x'.repeat(100)), 200, 'node'],
    ['a header sent twice', post('/fast/twice', '{}', 'idempotency-key: k-2\r\n'), 200, 'node'],
    ['expect 100-continue', post('/fast/e', '{}', 'expect: 100-continue\r\n'), 200, 'node'],
    ['no host', 'POST /fast/h HTTP/1.1\r\ncontent-length: 2\r\n\r\n{}', 400, null],
    ['a control character in a header value', post('/fast/c', '{}', 'x-note: a\u0001b\r\n'), 400, null],
    ['a content-length padded with a vertical tab', 'POST /fast/v HTTP/1.1\r\nhost: x\r\ncontent-length:\u000b2\r\n\r\n{}', 400, null],
    ['a content-length padded with a no-break space', 'POST /fast/v HTTP/1.1\r\nhost: x\r\ncontent-length: 2\u00a0\r\n\r\n{}', 400, null],
    ['a bare CR in a header value', post('/fast/c', '{}', 'x-note: a\rb\r\n'), 400, null],
    ['a DEL in the target', post('/fast/\u007f', '{}'), 400, null],
    ['a space before the colon', post('/fast/c', '{}', 'x-note : a\r\n'), 400, null],
    ['obs-fold', post('/fast/c', '{}', 'x-note: a\r\n  b\r\n'), 400, null],
    ['a content-length ending in a tab', 'POST /fast/t HTTP/1.1\r\nhost: x\r\ncontent-length: 2\t\r\n\r\n{}', 400, null],
    ['a connection value ending in a tab (not close to llhttp)', post('/fast/t', '{}', 'connection: close\t\r\n'), 200, 'node'],
    ['proxy-connection (read as connection by llhttp)', post('/fast/p', '{}', 'proxy-connection: close\r\n'), 200, 'node'],
  ])('hands over a request that is not in the plain form: %s', async (_name, bytes, status, by) => {
    const client = open();
    client.socket.write(Buffer.from(bytes, 'latin1'));
    const [answer] = await client.next(1);
    expect(answer?.status).toBe(status);
    expect(answer?.body?.by ?? null).toBe(by);
    client.socket.destroy();
  });

  it('hands a request that trickles in over many packets to node:http', async () => {
    const client = open();
    await writeInPieces(client.socket, post('/fast/trickle', '{"n":1}'), 2);
    const [answer] = await client.next(1);
    expect(answer?.body).toMatchObject({ by: 'node', body: '{"n":1}' });
    client.socket.destroy();
  });

  it('hands over a request whose rest arrives while an earlier answer is still owed', async () => {
    const client = open();
    const other = post('/other', '{"late":true}');
    client.socket.write(post('/fast/hold', '{}') + other.slice(0, 20));
    await new Promise((resolve) => setTimeout(resolve, 30));
    client.socket.write(other.slice(20));
    await new Promise((resolve) => setTimeout(resolve, 30));
    (held[0] as () => void)();
    const answers = await client.next(2);
    expect(answers.map((answer) => answer.body?.by)).toEqual(['front', 'node']);
    expect(answers[1]?.body?.body).toBe('{"late":true}');
    client.socket.destroy();
  });

  it('stops reading a client that pipelines without reading, and reads on as answers go out', async () => {
    const client = open();
    let bytes = '';
    for (let i = 0; i < 100; i++) bytes += post('/fast/hold', `{"i":${i}}`);
    client.socket.write(bytes);
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(held.length).toBe(64);
    held.splice(0, 64).forEach((release) => release());
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(held.length).toBe(36);
    held.splice(0).forEach((release) => release());
    const answers = await client.next(100);
    expect(answers.map((answer) => answer.body?.body)).toEqual(Array.from({ length: 100 }, (_, i) => `{"i":${i}}`));
    client.socket.destroy();
  });

  it('answers 500 when a route throws, and the connection goes on', async () => {
    const client = open();
    client.socket.write(post('/fast/throw', '{}') + post('/fast/after', '{}'));
    const [failed, after] = await client.next(2);
    expect(failed?.status).toBe(500);
    expect(after?.body?.by).toBe('front');
    expect(errors).toHaveLength(1);
    client.socket.destroy();
  });

  it('survives a client that leaves with an answer owed', async () => {
    const client = open();
    client.socket.write(post('/fast/hold', '{}'));
    await new Promise((resolve) => setTimeout(resolve, 30));
    client.socket.destroy();
    await client.closed;
    await new Promise((resolve) => setTimeout(resolve, 30));
    (held.shift() as () => void)();
    const next = open();
    next.socket.write(post('/fast/again', '{}'));
    expect((await next.next(1))[0]?.body?.by).toBe('front');
    next.socket.destroy();
  });

  it('answers a client that half-closes after its request, then closes', async () => {
    const client = open();
    client.socket.end(post('/fast/half', '{}'));
    const [answer] = await client.next(1);
    expect(answer?.body?.by).toBe('front');
    await client.closed;
  });

  it('leaves malformed requests to node:http, which answers 400 and closes', async () => {
    const client = open();
    let text = '';
    client.socket.on('data', (chunk: Buffer) => { text += chunk.toString(); });
    client.socket.write('POST /fast/x HTTP/1.1\r\nbad header line\r\ncontent-length: 2\r\n\r\n{}');
    await client.closed;
    expect(text).toMatch(/^HTTP\/1\.1 400 /);
  });

  it('hands node:http a target with bytes it refuses (0x80 and above), so the route never sees it', async () => {
    const client = open();
    let text = '';
    client.socket.on('data', (chunk: Buffer) => { text += chunk.toString('latin1'); });
    client.socket.write(Buffer.from(post('/fast/\u00e9', '{}'), 'latin1'));
    await client.closed;
    expect(text).toMatch(/^HTTP\/1\.1 400 /);
  });

  it('hands over an unfinished head that is already malformed, so that node:http refuses it at once', async () => {
    const client = open();
    let text = '';
    client.socket.on('data', (chunk: Buffer) => { text += chunk.toString('latin1'); });
    // A bare LF, and no end of the head: waiting for the end would wait for the request timeout (5 s here).
    client.socket.write('POST /fast/x HTTP/1.1\nhost: x\r\n');
    const within = await Promise.race([client.closed.then(() => true), new Promise((resolve) => setTimeout(() => resolve(false), 2_000))]);
    expect(within).toBe(true);
    expect(text).toMatch(/^HTTP\/1\.1 400 /);
  });

  it('refuses a request the client cut short with its FIN, as node:http does, after the answers owed', async () => {
    const client = open();
    let text = '';
    client.socket.on('data', (chunk: Buffer) => { text += chunk.toString('latin1'); });
    client.socket.end(post('/fast/first', '{}') + 'POST /fast/second HTTP/1.1\r\nhost: x\r\ncontent-length: 9\r\n\r\n{');
    await client.closed;
    expect(text).toMatch(/^HTTP\/1\.1 200 [^]*"by":"front"[^]*HTTP\/1\.1 400 Bad Request\r\n/);
    // With a clientError listener (the gateway's JSON refusals), the listener answers it.
    const seen: string[] = [];
    server.on('clientError', (error: NodeJS.ErrnoException, socket) => {
      seen.push(error.code ?? '');
      socket.end('HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nconnection: close\r\n\r\n');
    });
    const again = open();
    again.socket.end('POST /fast/cut HTTP/1.1\r\nhost: x\r\n');
    await again.closed;
    expect(seen).toEqual(['HPE_INVALID_EOF_STATE']);
  });

  it('hands over a request that waited behind an answer owed when the client has already sent its FIN', async () => {
    const client = open();
    client.socket.end(post('/fast/hold', '{}') + post('/slow/node', '{"n":1}'));
    await new Promise((resolve) => setTimeout(resolve, 30));
    (held.shift() as () => void)();
    const [first, second] = await client.next(2);
    expect(first).toMatchObject({ status: 201, body: { by: 'front', url: '/fast/hold' } });
    expect(second).toMatchObject({ status: 200, body: { by: 'node', url: '/slow/node', body: '{"n":1}' } });
    await client.closed;
  });

  it('reads the requests it held back (answers owed) after the client\'s FIN, and refuses none of them', async () => {
    const client = open();
    let requests = post('/fast/hold', '{}');
    for (let i = 1; i < 80; i++) requests += post(`/fast/${i}`, '{}');
    client.socket.end(requests);
    await new Promise((resolve) => setTimeout(resolve, 30));
    (held.shift() as () => void)();
    const answers = await client.next(80);
    expect(answers.map((answer) => answer.status)).toEqual([201, ...new Array<number>(79).fill(200)]);
    await client.closed;
  });

  it('takes line breaks after the last request and a FIN as the end, not as a request cut short', async () => {
    const client = open();
    let text = '';
    client.socket.on('data', (chunk: Buffer) => { text += chunk.toString('latin1'); });
    client.socket.end(post('/fast/last', '{}') + '\r');
    await client.closed;
    expect(text.match(/HTTP\/1\.1 /g)).toHaveLength(1);
    expect(text).toMatch(/^HTTP\/1\.1 200 /);
  });

  it('closes after answering a request with connection: close', async () => {
    const client = open();
    client.socket.write(post('/fast/bye', '{}', 'connection: close\r\n'));
    const [answer] = await client.next(1);
    expect(answer?.headers['connection']).toBe('close');
    await client.closed;
  });

  it('closes idle connections when it closes, and busy ones once they are answered', async () => {
    const idle = open();
    const busy = open();
    idle.socket.write(post('/fast/1', '{}'));
    busy.socket.write(post('/fast/hold', '{}'));
    await idle.next(1);
    await new Promise((resolve) => setTimeout(resolve, 20));
    front.close();
    await idle.closed;
    (held[0] as () => void)();
    expect((await busy.next(1))[0]?.status).toBe(201);
    await busy.closed;
  });
});
