import { createRequire } from 'node:module';

// autocannon ships no type declarations and is CommonJS. Rather than declare a
// global ambient module (which would clash if @types/autocannon arrives), the
// runner loads it through createRequire and sees only the part it uses, typed here.

export interface AutocannonRawRequest {
  method?: string;
  path?: string;
  headers?: Record<string, string>;
  body?: string | Buffer;
  [key: string]: unknown;
}

export type AutocannonContext = Record<string, unknown>;

export interface AutocannonRequestSpec {
  method?: string;
  path?: string;
  setupRequest?: (request: AutocannonRawRequest, context: AutocannonContext) => AutocannonRawRequest | null;
  onResponse?: (status: number, body: string, context: AutocannonContext, headers: Record<string, unknown>) => void;
}

export interface AutocannonOptions {
  url: string;
  connections: number;
  duration: number;
  pipelining: 1;
  timeout: number;
  requests: AutocannonRequestSpec[];
  overallRate?: number;
  /** Our own correction is applied instead; see runner.ts. */
  ignoreCoordinatedOmission?: boolean;
  excludeErrorStats: boolean;
}

export interface AutocannonResult {
  duration: number;
  errors: number;
  timeouts: number;
  non2xx: number;
  start: Date;
  finish: Date;
}

export interface AutocannonInstance extends PromiseLike<AutocannonResult> {
  on(event: 'reqError', listener: (error: Error) => void): this;
  on(event: 'response', listener: (client: unknown, statusCode: number, resBytes: number, responseTimeMs: number) => void): this;
  on(event: 'error', listener: (error: Error) => void): this;
  stop(): void;
}

type AutocannonFunction = (options: AutocannonOptions) => AutocannonInstance;

const require = createRequire(import.meta.url);

export const autocannon = require('autocannon') as AutocannonFunction;
