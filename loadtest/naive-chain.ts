import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { parseArgs } from 'node:util';
import { Pool } from 'undici';
import { exitWithParent } from '../domain/parent-watch.js';

// The benchmark's yardsticks, processes that do no work:
//   answer:    reads the request and answers at once (the front door alone, and
//              the upstreams of the chain);
//   forwarder: forwards each channel request through undici as one upstream
//              request to one of several answer processes (round robin), the
//              naive gateway that per-request forwarding would give.
// Pools use the same settings as the real gateway's unit pools.

const help = `Usage: node dist/loadtest/naive-chain.js --mode answer|forwarder [--port N] [--upstreams URL,URL,...]`;

// An answer shaped like an authorization answer, with a fresh id each time so that
// the load generator's follow-ups (reversals, increments) stay well formed.
const answerTail = '","approved":true,"responseCode":"00","approvedAmount":{"value":12800,"currency":"CNY"},"availableCredit":{"value":4987200,"currency":"CNY"},"unit":"dsu-0"}';
let answers = 0;

function answer(request: IncomingMessage, response: ServerResponse): void {
  request.resume();
  request.on('end', () => {
    answers++;
    const body = '{"authorizationId":"dsu-0~' + String(answers).padStart(19, '0') + answerTail;
    response.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
    response.end(body);
  });
}

function forwarder(upstreams: string[]): (request: IncomingMessage, response: ServerResponse) => void {
  const pools = upstreams.map((url) => new Pool(url, {
    connections: 64, pipelining: 1, keepAliveTimeout: 30_000, connect: { timeout: 1_000 }, headersTimeout: 3_000, bodyTimeout: 3_000,
  }));
  let next = 0;
  return (request, response) => {
    const chunks: Buffer[] = [];
    request.on('data', (chunk: Buffer) => chunks.push(chunk));
    request.on('end', () => {
      const pool = pools[next++ % pools.length] as Pool;
      pool.request({ path: request.url ?? '/', method: 'POST', body: Buffer.concat(chunks), headers: { 'content-type': 'application/json' } })
        .then(async (upstream) => {
          const text = await upstream.body.text();
          response.writeHead(upstream.statusCode, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
          response.end(text);
        })
        .catch(() => {
          response.writeHead(502);
          response.end();
        });
    });
  };
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { mode: { type: 'string' }, port: { type: 'string', default: '0' }, upstreams: { type: 'string' } } });
  if (values.mode !== 'answer' && values.mode !== 'forwarder') {
    process.stderr.write(help + '\n');
    process.exit(2);
  }
  const handler = values.mode === 'answer' ? answer : forwarder((values.upstreams ?? '').split(',').filter((url) => url.length > 0));
  const server = createServer({ keepAliveTimeout: 60_000 }, handler);
  await new Promise<void>((resolve) => server.listen(Number(values.port), '127.0.0.1', resolve));
  process.stdout.write(JSON.stringify({ msg: 'listening', port: (server.address() as AddressInfo).port, mode: values.mode }) + '\n');
  exitWithParent(() => process.exit(0));
  process.on('SIGTERM', () => process.exit(0));
}

void main();
