import { createHash, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { ApiError } from '../domain/errors.js';
import { sendError } from '../domain/http-util.js';

// The admin API's guard: a bearer token (ADMIN_TOKEN), compared in constant time
// (over digests, so the length of the token leaks nothing either). A request
// without the token, or with another one, gets 401 and changes nothing.

export const demoAdminToken = 'demo-admin-token';

export class AdminAuth {
  private readonly tokenDigest: Buffer;

  constructor(token: string) {
    this.tokenDigest = digest(token);
  }

  /** True when the request may go on; otherwise the 401 is sent. */
  admit(request: IncomingMessage, response: ServerResponse): boolean {
    const header = request.headers.authorization;
    if (header !== undefined && header.startsWith('Bearer ') && timingSafeEqual(digest(header.slice('Bearer '.length)), this.tokenDigest)) return true;
    request.resume();
    response.setHeader('www-authenticate', 'Bearer realm="dsu-admin"');
    sendError(response, new ApiError('UNAUTHORIZED', 'send Authorization: Bearer <ADMIN_TOKEN>', 'authorization'));
    return false;
  }
}

function digest(text: string): Buffer {
  return createHash('sha256').update(text).digest();
}
