import { assert } from './limits.js';

// The gateway-unit wire: the batches of domain/protocol.ts carried in frames on
// a long-lived TCP connection instead of one HTTP request each. The connection
// starts as HTTP on the unit's own URL and upgrades (RFC 9110, section 7.8, the
// way WebSockets do), so a unit stays addressed by one URL and every other route
// stays plain HTTP:
//
//   GET /v1/wire HTTP/1.1            ->  HTTP/1.1 101 Switching Protocols
//   upgrade: dsu-batch/1                 upgrade: dsu-batch/1
//   connection: upgrade                  connection: upgrade
//
// Then each side writes frames: a 4-byte big-endian payload length, a 1-byte
// kind, the payload. The gateway sends kind B (a batch: operations, one JSON per
// line); the unit answers each batch, in the order received, with kind R (the
// result lines) or kind E (a JSON {"error": {...}}: the whole batch was refused
// and nothing of it was written).
//
// Why: on this machine a unit spent ~160 us of CPU per batch in Node's HTTP
// server and the gateway ~50-70 us in undici before any work, measured with
// batches that write nothing (loadtest/probes/unit-micro.mjs, NOOP); below saturation,
// where batches hold a few operations, that was most of a unit's CPU.

export const wireUpgradeToken = 'dsu-batch/1';
export const wirePath = '/v1/wire';
export const frameHeaderBytes = 5;
/** Largest frame payload either side accepts (a batch of batchOpsMax operations fits with room). */
export const framePayloadBytesMax = 8 * 1024 * 1024;

export const frameKinds = {
  batch: 0x42, // 'B'
  results: 0x52, // 'R'
  error: 0x45, // 'E'
} as const;
export type FrameKind = (typeof frameKinds)[keyof typeof frameKinds];

const kindValues: ReadonlySet<number> = new Set(Object.values(frameKinds));

/** One frame as bytes: header and payload in one buffer, so it goes out in one write. */
export function encodeFrame(kind: FrameKind, payload: string): Buffer {
  const length = Buffer.byteLength(payload);
  assert(length <= framePayloadBytesMax, 'a frame payload fits framePayloadBytesMax');
  const frame = Buffer.allocUnsafe(frameHeaderBytes + length);
  frame.writeUInt32BE(length, 0);
  frame[4] = kind;
  frame.write(payload, frameHeaderBytes, 'utf8');
  return frame;
}

export interface Frame {
  kind: FrameKind;
  payload: Buffer;
}

/**
 * Splits a byte stream into frames. push() returns the frames completed by a
 * chunk, or an error text when the stream is not frames (the caller closes the
 * connection: a peer that broke framing cannot be resynchronized).
 */
export class FrameReader {
  private pending: Buffer | null = null;

  push(chunk: Buffer): Frame[] | string {
    let data = this.pending === null ? chunk : Buffer.concat([this.pending, chunk]);
    this.pending = null;
    const frames: Frame[] = [];
    while (data.length >= frameHeaderBytes) {
      const length = data.readUInt32BE(0);
      const kind = data[4] as number;
      if (length > framePayloadBytesMax) return `frame of ${length} bytes exceeds ${framePayloadBytesMax}`;
      if (!kindValues.has(kind)) return `unknown frame kind ${kind}`;
      if (data.length < frameHeaderBytes + length) break;
      frames.push({ kind: kind as FrameKind, payload: data.subarray(frameHeaderBytes, frameHeaderBytes + length) });
      data = data.subarray(frameHeaderBytes + length);
    }
    if (data.length > 0) this.pending = data;
    return frames;
  }
}
