import type { IncomingMessage, ServerResponse } from 'node:http';
import { ApiError } from './errors.js';

// Small HTTP helpers shared by the gateway and the units (both use node:http
// directly: on the hot path a framework's routing and hooks cost more than they give).

export type BodyResult = { ok: true; body: Buffer } | { ok: false; error: ApiError };

/** Reads a request body up to bytesMax; a larger body is an error and is drained, not buffered. */
export function readBody(request: IncomingMessage, bytesMax: number): Promise<BodyResult> {
  return new Promise((resolve) => readBodyThen(request, bytesMax, resolve));
}

/**
 * The callback form of readBody, for the authorization path: no promise and no
 * async frame per request (measured: see BENCHMARKS.md, gateway CPU per request).
 */
export function readBodyThen(request: IncomingMessage, bytesMax: number, resolve: (result: BodyResult) => void): void {
  {
    const declared = Number(request.headers['content-length'] ?? 0);
    if (declared > bytesMax) {
      request.resume();
      resolve({ ok: false, error: new ApiError('BODY_TOO_LARGE', `the body exceeds ${bytesMax} bytes`, null) });
      return;
    }
    const chunks: Buffer[] = [];
    let size = 0;
    let failed = false;
    request.on('data', (chunk: Buffer) => {
      if (failed) return;
      size += chunk.length;
      if (size > bytesMax) {
        failed = true;
        resolve({ ok: false, error: new ApiError('BODY_TOO_LARGE', `the body exceeds ${bytesMax} bytes`, null) });
        return;
      }
      chunks.push(chunk);
    });
    request.on('end', () => {
      if (!failed) resolve({ ok: true, body: chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks) });
    });
    request.on('error', () => {
      if (!failed) resolve({ ok: false, error: new ApiError('INVALID_FIELD', 'the request body was cut off', null) });
      failed = true;
    });
  }
}

export function sendJsonText(response: ServerResponse, status: number, text: string): void {
  response.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  response.end(text);
}

export function sendJson(response: ServerResponse, status: number, value: unknown): void {
  sendJsonText(response, status, JSON.stringify(value));
}

export function sendError(response: ServerResponse, error: ApiError): void {
  sendJson(response, error.status, error.body());
}
