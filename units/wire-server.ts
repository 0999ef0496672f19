import type { IncomingMessage, Server } from 'node:http';
import type { Duplex } from 'node:stream';
import type { Socket } from 'node:net';
import { ApiError } from '../domain/errors.js';
import type { Logger } from '../domain/log.js';
import { encodeFrame, FrameReader, frameKinds, wirePath, wireUpgradeToken, type FrameKind } from '../domain/wire.js';

// The unit's end of the gateway-unit wire (domain/wire.ts): an HTTP upgrade on
// the unit's own port, then batch frames in and answer frames out. Answers leave
// in the order the batches came, whatever order they are ready in (a refused
// batch is answered at once; an accepted one after its commit), because the
// gateway matches answers to batches by position.

/** Applies one batch; calls `answer` exactly once, now or after the commit. */
export type BatchHandler = (text: string, answer: (kind: FrameKind, payload: string) => void) => void;

/** Batches read from one connection and not yet answered, at most (a well-behaved gateway has one). */
const unansweredBatchesMax = 64;

/** The unit's wire connections, for shutdown: upgraded sockets are no longer the HTTP server's to close. */
export interface WireEndpoint {
  /** From now on every batch is refused (the gateway answers 91 or fails over); returns at once. */
  refuseBatches(): void;
  /** Destroys every wire connection. */
  destroyAll(): void;
}

export function attachWire(server: Server, handler: BatchHandler, log: Logger, unitId: string): WireEndpoint {
  const sessions = new Set<WireSession>();
  let refusing = false;
  const refusingHandler: BatchHandler = (text, answer) => {
    if (!refusing) return handler(text, answer);
    answer(frameKinds.error, JSON.stringify(new ApiError('UNIT_UNAVAILABLE', `${unitId} is shutting down`, null).body()));
  };
  server.on('upgrade', (request: IncomingMessage, socket: Duplex, head: Buffer) => {
    const upgrade = (request.headers.upgrade ?? '').toLowerCase();
    if (request.url !== wirePath || upgrade !== wireUpgradeToken) {
      socket.end('HTTP/1.1 400 Bad Request\r\nconnection: close\r\ncontent-length: 0\r\n\r\n');
      return;
    }
    socket.write(`HTTP/1.1 101 Switching Protocols\r\nupgrade: ${wireUpgradeToken}\r\nconnection: upgrade\r\n\r\n`);
    (socket as Socket).setNoDelay(true);
    const session = new WireSession(socket, refusingHandler, log, unitId);
    sessions.add(session);
    socket.once('close', () => sessions.delete(session));
    if (head.length > 0) session.onData(head);
    socket.on('data', (chunk: Buffer) => session.onData(chunk));
    socket.on('error', () => socket.destroy());
  });
  return {
    refuseBatches: () => (refusing = true),
    destroyAll: () => {
      for (const session of sessions) session.destroy();
      sessions.clear();
    },
  };
}

class WireSession {
  private readonly reader = new FrameReader();
  /** Answer frames by arrival position; null while the batch is being applied. */
  private readonly slots: Array<Buffer | null> = [];
  private closed = false;

  constructor(
    private readonly socket: Duplex,
    private readonly handler: BatchHandler,
    private readonly log: Logger,
    private readonly unitId: string,
  ) {
    socket.once('close', () => (this.closed = true));
  }

  onData(chunk: Buffer): void {
    const frames = this.reader.push(chunk);
    if (typeof frames === 'string') return this.drop(frames);
    for (const frame of frames) {
      if (frame.kind !== frameKinds.batch) return this.drop(`a unit accepts only batch frames, got kind ${frame.kind}`);
      if (this.slots.length >= unansweredBatchesMax) return this.drop(`more than ${unansweredBatchesMax} batches unanswered`);
      const slot = this.slots.length;
      this.slots.push(null);
      // The handler may answer synchronously; the slot index stays valid because
      // slots are only removed from the front, and only ahead of the first null.
      const base = this.released;
      this.handler(frame.payload.toString('utf8'), (kind, payload) => this.fill(base + slot, kind, payload));
    }
  }

  /** Slots released so far; a slot's absolute number minus this is its index. */
  private released = 0;

  private fill(absolute: number, kind: FrameKind, payload: string): void {
    if (this.closed) return;
    this.slots[absolute - this.released] = encodeFrame(kind, payload);
    let ready = 0;
    while (ready < this.slots.length && this.slots[ready] !== null) ready++;
    if (ready === 0) return;
    const frames = this.slots.splice(0, ready) as Buffer[];
    this.released += ready;
    this.socket.write(frames.length === 1 ? (frames[0] as Buffer) : Buffer.concat(frames));
  }

  destroy(): void {
    this.closed = true;
    this.socket.destroy();
  }

  private drop(reason: string): void {
    this.log.warn('wire connection dropped', { unit: this.unitId, reason });
    this.closed = true;
    this.socket.destroy();
  }
}
