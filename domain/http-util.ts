import { STATUS_CODES, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
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

/** A %-encoded path segment decoded, or null when its escapes are malformed (decodeURIComponent throws). */
export function decodeSegment(raw: string): string | null {
  try {
    return decodeURIComponent(raw);
  } catch {
    return null;
  }
}

/** A request body as a JSON object (an empty body is {}), or the error that names what is wrong. */
export function parseJsonObject(body: Buffer): Record<string, unknown> | ApiError {
  let value: unknown;
  try {
    value = JSON.parse(body.length === 0 ? '{}' : body.toString('utf8'));
  } catch {
    return new ApiError('INVALID_JSON', 'the body is not valid JSON', null);
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    return new ApiError('INVALID_FIELD', 'the body must be a JSON object', null);
  }
  return value as Record<string, unknown>;
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

/**
 * Requests node:http cannot parse (a bad request line, a malformed header or
 * Content-Length, headers over the limit, a request that never finished) get the
 * error body every other refusal has, instead of node's bare status line.
 */
export function answerClientErrorsAsJson(server: Server): void {
  server.on('clientError', (error: NodeJS.ErrnoException, socket: Duplex) => {
    // An answer of an earlier request on this connection may still be on its way: a
    // refusal written now would land in the middle of it, so the connection just goes.
    const inFlight = (socket as Duplex & { _httpMessage?: unknown })._httpMessage;
    if (error.code === 'ECONNRESET' || !socket.writable || (inFlight !== undefined && inFlight !== null)) {
      socket.destroy();
      return;
    }
    const refusal = error.code === 'HPE_HEADER_OVERFLOW' ? new ApiError('HEADERS_TOO_LARGE', 'the request headers exceed the size limit', null)
      : error.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? new ApiError('REQUEST_TIMEOUT', 'the request did not arrive whole in time', null)
        : new ApiError('MALFORMED_REQUEST', `the request is not well-formed HTTP/1.1 (${error.code ?? 'parse error'})`, null);
    const body = JSON.stringify(refusal.body());
    socket.end(`HTTP/1.1 ${refusal.status} ${STATUS_CODES[refusal.status] ?? ''}\r\nconnection: close\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\n\r\n${body}`);
  });
}
