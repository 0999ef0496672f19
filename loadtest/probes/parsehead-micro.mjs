// Micro: cost of the front door's request parse per request (the plain form the load generator sends).
import { createServer } from 'node:http';
import { ChannelFront } from '../../dist/gateway/channel-front.js';
const head = 'POST /v1/authorizations HTTP/1.1\r\nhost: 127.0.0.1:12345\r\nconnection: keep-alive\r\ncontent-type: application/json\r\nidempotency-key: bench-abc-auth-1-000123456\r\ncontent-length: 312\r\n\r\n';
const body = 'x'.repeat(312);
const bytes = Buffer.from(head + body);
let n = 0;
const server = createServer();
const front = new ChannelFront(server, () => (h, b, reply) => { n++; reply.send(200, '{"ok":true}'); }, { headerBytesMax: 16384, bodyBytesMax: 16384, idleTimeoutMs: 60000, requestTimeoutMs: 30000, onError: () => {} });
// Drive one FrontConnection with a fake socket.
import { EventEmitter } from 'node:events';
class FakeSocket extends EventEmitter { setNoDelay() {} setTimeout() {} write() { return true; } cork() {} uncork() {} end() {} destroy() {} pause() {} resume() {} get writableNeedDrain() { return false; } get destroyed() { return false; } }
const socket = new FakeSocket();
server.emit('connection', socket);
for (let round = 0; round < 5; round++) {
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < 200000; i++) socket.emit('data', bytes);
  const ns = Number(process.hrtime.bigint() - t0);
  console.log(`${(ns / 200000 / 1000).toFixed(2)} us per request (parse, route, answer string)`);
}
