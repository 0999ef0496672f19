import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { UnitClient } from '../gateway/unit-client.js';
import { UnitWire, type WireAnswer } from '../gateway/unit-wire.js';
import { limits } from '../domain/limits.js';
import { encodeFrame, FrameReader, frameKinds, framePayloadBytesMax } from '../domain/wire.js';
import { attachWire, type BatchHandler, type WireEndpoint } from '../units/wire-server.js';
import { createLogger } from '../domain/log.js';

// The gateway-unit wire: frames split and joined anywhere, answers in batch
// order whatever order they are ready in, refusals and failures as typed results.
// Both ends are the real ones, over a real HTTP upgrade on port 0.

const silent = createLogger('test', () => {});

describe('frame reader', () => {
  it('reassembles frames split and joined at any byte', () => {
    const bytes = Buffer.concat([encodeFrame(frameKinds.batch, 'one'), encodeFrame(frameKinds.results, 'two\nlines'), encodeFrame(frameKinds.error, '{}')]);
    for (let cut = 1; cut < bytes.length; cut++) {
      const reader = new FrameReader();
      const first = reader.push(bytes.subarray(0, cut));
      const second = reader.push(bytes.subarray(cut));
      expect(typeof first).not.toBe('string');
      const frames = [...(first as []), ...(second as [])] as Array<{ kind: number; payload: Buffer }>;
      expect(frames.map((frame) => [frame.kind, frame.payload.toString()])).toEqual([[0x42, 'one'], [0x52, 'two\nlines'], [0x45, '{}']]);
    }
  });

  it('refuses an unknown kind and an oversized frame', () => {
    const unknown = Buffer.from([0, 0, 0, 1, 0x58, 0x41]);
    expect(new FrameReader().push(unknown)).toMatch(/unknown frame kind/);
    const huge = Buffer.alloc(5);
    huge.writeUInt32BE(framePayloadBytesMax + 1, 0);
    huge[4] = frameKinds.batch;
    expect(new FrameReader().push(huge)).toMatch(/exceeds/);
  });
});

let server: Server | null = null;
let endpoint: WireEndpoint | null = null;
let wire: UnitWire | null = null;

afterEach(async () => {
  wire?.close();
  wire = null;
  endpoint?.destroyAll();
  endpoint = null;
  if (server !== null) {
    server.closeAllConnections();
    await new Promise<void>((resolve) => (server as Server).close(() => resolve()));
    server = null;
  }
});

async function unitWith(handler: BatchHandler, attach = true): Promise<string> {
  server = createServer((_request, response) => response.end('plain http'));
  if (attach) endpoint = attachWire(server, handler, silent, 'dsu-test');
  await new Promise<void>((resolve) => (server as Server).listen(0, '127.0.0.1', resolve));
  return `http://127.0.0.1:${((server as Server).address() as AddressInfo).port}`;
}

function send(target: UnitWire, text: string): Promise<WireAnswer> {
  return new Promise((resolve) => target.send(text, resolve));
}

describe('unit wire', () => {
  it('answers batches in the order they were sent, even when a later one is ready first', async () => {
    const url = await unitWith((text, answer) => {
      // "slow" answers after the ones behind it; "refuse" answers at once with an error frame.
      if (text === 'slow') setTimeout(() => answer(frameKinds.results, 'slow done'), 50);
      else if (text === 'refuse') answer(frameKinds.error, '{"error":{"code":"NOT_PRIMARY"}}');
      else answer(frameKinds.results, `${text} done`);
    });
    wire = new UnitWire({ url, connectTimeoutMs: 500, answerTimeoutMs: 2_000 });
    const answers = await Promise.all([send(wire, 'slow'), send(wire, 'fast'), send(wire, 'refuse')]);
    expect(answers[0]).toEqual({ ok: true, text: 'slow done' });
    expect(answers[1]).toEqual({ ok: true, text: 'fast done' });
    expect(answers[2]).toMatchObject({ ok: false });
    expect((answers[2] as { reason: string }).reason).toContain('NOT_PRIMARY');
    expect(wire.connected).toBe(true);
    expect(wire.inflight).toBe(0);
    // A unit shutting down refuses new batches with an error frame.
    (endpoint as WireEndpoint).refuseBatches();
    expect(await send(wire, 'late')).toMatchObject({ ok: false, reason: expect.stringContaining('UNIT_UNAVAILABLE') });
  });

  it('fails the batches of a connection whose oldest batch is unanswered past the timeout, then reconnects', async () => {
    let calls = 0;
    const url = await unitWith((text, answer) => {
      calls++;
      if (text !== 'never') answer(frameKinds.results, 'ok');
    });
    wire = new UnitWire({ url, connectTimeoutMs: 50, answerTimeoutMs: 200 });
    const [never, behind] = await Promise.all([send(wire, 'never'), send(wire, 'behind')]);
    expect(never).toMatchObject({ ok: false, reason: expect.stringContaining('no answer within 200 ms') });
    // The second batch was answered by the unit, but after a batch that never was: position is lost, so it fails too.
    expect(behind).toMatchObject({ ok: false });
    expect(await send(wire, 'again')).toEqual({ ok: true, text: 'ok' });
    expect(calls).toBe(3);
  });

  it('fails a batch when the server does not speak the wire, or nothing listens', async () => {
    const url = await unitWith(() => {}, false);
    wire = new UnitWire({ url, connectTimeoutMs: 200, answerTimeoutMs: 1_000 });
    expect(await send(wire, 'x')).toMatchObject({ ok: false });
    wire.close();
    wire = new UnitWire({ url: 'http://127.0.0.1:1', connectTimeoutMs: 200, answerTimeoutMs: 1_000 });
    expect(await send(wire, 'x')).toMatchObject({ ok: false });
  });
});

describe('the gateway side of a unit answer that does not decode', () => {
  it('fails that batch and keeps the gateway process up', async () => {
    // A unit that answers one operation with two lines, then (on the next connection) with a line without its tab.
    let answers = ['200 00 1\t{}\n200 00 1\t{}', 'no tab here'];
    const url = await unitWith((_text, answer) => answer(frameKinds.results, answers.shift() ?? '200 00 1\t{"ok":true}'));
    const client = new UnitClient('dsu-test', 'a', url, { onBatch: () => {} }, silent);
    try {
      const op = { op: 'openAccount', accountId: '62258800000001', product: 'classic', creditLimit: { value: 1_000, currency: 'CNY' } } as const;
      const submit = () => new Promise<unknown>((resolve) => client.submit(op, resolve));
      expect(await submit()).toBeNull();
      expect(client.isDown).toBe(true);
      answers = ['no tab here'];
      await new Promise((resolve) => setTimeout(resolve, limits.unitDownBackoffMs + 50));
      expect(await submit()).toBeNull();
      await new Promise((resolve) => setTimeout(resolve, limits.unitDownBackoffMs + 50));
      // A unit that answers properly again is used again, on a new connection.
      expect(await submit()).toMatchObject({ status: 200, code: '00', approved: true });
    } finally {
      await client.close();
    }
  });
});
