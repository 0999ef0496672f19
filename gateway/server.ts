import { randomInt } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { ApiError } from '../domain/errors.js';
import { readBody, readBodyThen, sendError, sendJson, sendJsonText } from '../domain/http-util.js';
import { assert, limits } from '../domain/limits.js';
import type { Logger } from '../domain/log.js';
import { isAccountId, makeAccountId, parsePan } from '../domain/pan.js';
import type { ResultLine, UnitOp } from '../domain/protocol.js';
import { responseCodes } from '../domain/response-codes.js';
import type { Topology } from '../domain/topology.js';
import { channels, type Channel } from '../domain/products.js';
import {
  type AuthorizationRequest, parseAuthorization, parseCardStatus, parseFollowUp, parseIdempotencyKey, parseJsonObject, parseOpenAccount,
} from './channel-request.js';
import { GatewayMetrics } from './metrics.js';
import { Router } from './router.js';
import { UnitClient } from './unit-client.js';
import { openAccounts } from './issuance.js';

// The routing gateway: the single entry for channels. It validates, routes by
// account to the owning unit, and answers from the unit's result line. It keeps
// no state of its own beyond connections and counters, so it can restart freely.

export interface GatewayOptions {
  host: string;
  port: number;
  topology: Topology;
  log: Logger;
}

export class GatewayServer {
  readonly router: Router;
  readonly clients = new Map<string, UnitClient>();
  readonly metrics: GatewayMetrics;
  private readonly server: Server;
  private readonly inflight = new Map<Channel, number>(channels.map((channel) => [channel, 0]));

  constructor(private readonly options: GatewayOptions) {
    const { file } = options.topology;
    this.router = new Router(file.units, file.ring.vnodesPerWeight);
    this.metrics = new GatewayMetrics(() => [...this.clients.values()]);
    for (const unit of file.units) this.clients.set(unit.id, new UnitClient(unit.id, unit.url, this.metrics, options.log));
    this.server = createServer({ keepAliveTimeout: 60_000, requestTimeout: 30_000 }, (request, response) => {
      if (request.method === 'POST' && request.url === '/v1/authorizations') {
        this.authorize(request, response, performance.now());
        return;
      }
      this.route(request, response).catch((error: unknown) => {
        options.log.error('request failed', { error: String(error), url: request.url });
        if (!response.headersSent) sendError(response, new ApiError('INTERNAL', 'the gateway failed unexpectedly', null));
      });
    });
  }

  async listen(): Promise<number> {
    await new Promise<void>((resolve) => this.server.listen({ port: this.options.port, host: this.options.host, backlog: limits.acceptBacklogConnections }, resolve));
    return (this.server.address() as AddressInfo).port;
  }

  async close(): Promise<void> {
    this.server.closeIdleConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
    await Promise.all([...this.clients.values()].map((client) => client.close()));
  }

  /** Sends one operation to a unit and resolves with its result, or null when the unit is unavailable. */
  call(unitId: string, op: UnitOp): Promise<ResultLine | null> {
    const client = this.clients.get(unitId);
    if (client === undefined) return Promise.resolve(null);
    return new Promise((resolve) => client.submit(op, resolve));
  }

  private async route(request: IncomingMessage, response: ServerResponse): Promise<void> {
    const url = request.url ?? '/';
    const method = request.method ?? 'GET';
    const started = performance.now();
    const path = url.split('?')[0] ?? '/';
    const parts = path.split('/');
    let routeName = 'other';
    if (method === 'POST' && path === '/v1/authorizations') {
      // With a query string; the plain path is dispatched before route().
      return this.authorize(request, response, started);
    } else if (method === 'POST' && parts.length === 5 && parts[2] === 'authorizations' && (parts[4] === 'reversals' || parts[4] === 'increments')) {
      routeName = parts[4];
      await this.followUp(request, response, decodeURIComponent(parts[3] ?? ''), parts[4] === 'increments');
    } else if (path.startsWith('/v1/accounts') || path === '/v1/cards/status') {
      routeName = 'accounts';
      await this.accounts(request, response, method, parts);
    } else if (method === 'GET' && path === '/healthz') {
      this.health(response);
    } else if (method === 'GET' && path === '/metrics') {
      const text = await this.metrics.registry.metrics();
      response.writeHead(200, { 'content-type': this.metrics.registry.contentType });
      response.end(text);
    } else {
      sendError(response, new ApiError('NOT_FOUND', `no route ${method} ${path}`, null));
    }
    this.metrics.onRequest(routeName, (performance.now() - started) / 1000);
  }

  private async readJson(request: IncomingMessage, response: ServerResponse): Promise<Record<string, unknown> | null> {
    const type = request.headers['content-type'];
    if (type !== undefined && !type.startsWith('application/json')) {
      request.resume();
      sendError(response, new ApiError('UNSUPPORTED_MEDIA_TYPE', 'send the body as application/json', null));
      return null;
    }
    const read = await readBody(request, limits.requestBodyBytesMax);
    if (!read.ok) {
      sendError(response, read.error);
      return null;
    }
    const body = parseJsonObject(read.body);
    if (body instanceof ApiError) {
      sendError(response, body);
      return null;
    }
    return body;
  }

  /**
   * The authorization path, written with callbacks rather than async/await: it is
   * the one route at tens of thousands of requests per second, and every promise
   * and async frame per request showed in the gateway's CPU per request.
   */
  private authorize(request: IncomingMessage, response: ServerResponse, startedMs: number): void {
    const key = parseIdempotencyKey(request.headers['idempotency-key'], true);
    const type = request.headers['content-type'];
    if (key instanceof ApiError || (type !== undefined && !type.startsWith('application/json'))) {
      request.resume();
      return sendError(response, key instanceof ApiError ? key : new ApiError('UNSUPPORTED_MEDIA_TYPE', 'send the body as application/json', null));
    }
    readBodyThen(request, limits.requestBodyBytesMax, (read) => {
      if (!read.ok) return sendError(response, read.error);
      const body = parseJsonObject(read.body);
      if (body instanceof ApiError) return sendError(response, body);
      const auth = parseAuthorization(body);
      if (auth instanceof ApiError) return sendError(response, auth);
      this.authorizeParsed(auth, key as string, response, startedMs);
    });
  }

  private authorizeParsed(auth: AuthorizationRequest, key: string, response: ServerResponse, startedMs: number): void {
    const pan = parsePan(auth.card.number);
    const channel = auth.channel;
    if (!pan.ok) {
      this.metrics.onAuthorization(channel, '-', false, responseCodes.unknownCard);
      return sendJson(response, 200, declineBody(responseCodes.unknownCard, null));
    }
    const inflight = this.inflight.get(channel) ?? 0;
    if (inflight >= limits.inflightPerChannelMax) {
      this.metrics.shed.labels(channel).inc();
      return sendError(response, new ApiError('CHANNEL_OVERLOADED', `channel ${channel} has ${inflight} requests in flight; retry later`, 'channel'));
    }
    this.inflight.set(channel, inflight + 1);
    this.metrics.inflightChange(channel, 1);
    const unitId = this.router.unitOfAccount(pan.accountId);
    const client = this.clients.get(unitId);
    assert(client !== undefined, 'the ring names a configured unit');
    client.submit({
      op: 'authorize', idempotencyKey: key, pan: auth.card.number, expiry: auth.card.expiry, cvv: auth.card.cvv,
      amount: auth.amount, type: auth.type, channel, merchant: auth.merchant, partialAllowed: auth.partialAllowed,
    }, (result) => {
      this.inflight.set(channel, (this.inflight.get(channel) ?? 1) - 1);
      this.metrics.inflightChange(channel, -1);
      if (result === null) {
        this.metrics.onAuthorization(channel, unitId, false, responseCodes.unitUnavailable);
        sendJson(response, 200, declineBody(responseCodes.unitUnavailable, unitId));
      } else {
        this.metrics.onAuthorization(channel, unitId, result.approved, result.code);
        sendJsonText(response, result.status, result.body);
      }
      this.metrics.onRequest('authorize', (performance.now() - startedMs) / 1000);
    });
  }

  private async followUp(request: IncomingMessage, response: ServerResponse, authorizationId: string, increment: boolean): Promise<void> {
    const key = parseIdempotencyKey(request.headers['idempotency-key'], false);
    if (key instanceof ApiError) {
      request.resume();
      return sendError(response, key);
    }
    const body = await this.readJson(request, response);
    if (body === null) return;
    const parsed = parseFollowUp(body, increment);
    if (parsed instanceof ApiError) return sendError(response, parsed);
    const unitId = this.router.unitOfAuthorization(authorizationId);
    if (unitId === null) return sendError(response, new ApiError('AUTHORIZATION_NOT_FOUND', `no authorization ${authorizationId}`, 'authorizationId'));
    const op: UnitOp = increment && parsed.amount !== null
      ? { op: 'increment', idempotencyKey: key, authorizationId, amount: parsed.amount }
      : { op: 'reverse', idempotencyKey: key, authorizationId, amount: parsed.amount };
    const result = await this.call(unitId, op);
    if (result === null) return sendJson(response, 200, { ...declineBody(responseCodes.unitUnavailable, unitId), authorizationId });
    sendJsonText(response, result.status, result.body);
  }

  private async accounts(request: IncomingMessage, response: ServerResponse, method: string, parts: string[]): Promise<void> {
    // parts: ['', 'v1', 'accounts', id?, 'cards'?] or ['', 'v1', 'cards', 'status']
    if (parts[2] === 'cards') {
      if (method !== 'POST') return sendError(response, new ApiError('METHOD_NOT_ALLOWED', 'use POST', null));
      return this.cardStatus(request, response);
    }
    const accountId = decodeURIComponent(parts[3] ?? '');
    if (parts.length === 3 && method === 'POST') return this.openAccount(request, response);
    if (parts.length === 4 && accountId === 'batch' && method === 'POST') return this.openAccountsBatch(request, response);
    if (parts.length === 4 && method === 'GET') return this.balance(response, accountId);
    if (parts.length === 5 && parts[4] === 'cards' && method === 'POST') return this.addCard(request, response, accountId);
    request.resume();
    sendError(response, new ApiError('NOT_FOUND', `no route ${method} ${parts.join('/')}`, null));
  }

  private async openAccount(request: IncomingMessage, response: ServerResponse): Promise<void> {
    const body = await this.readJson(request, response);
    if (body === null) return;
    const { products, file } = this.options.topology;
    const parsed = parseOpenAccount(body, [...products.keys()], file.issuance.defaultProduct);
    if (parsed instanceof ApiError) return sendError(response, parsed);
    const [outcome] = await openAccounts(this, [parsed]);
    if (outcome === undefined) throw new Error('openAccounts answers every request');
    sendJsonText(response, outcome.status, outcome.body);
  }

  private async openAccountsBatch(request: IncomingMessage, response: ServerResponse): Promise<void> {
    const type = request.headers['content-type'];
    if (type !== undefined && !type.startsWith('application/json')) {
      request.resume();
      return sendError(response, new ApiError('UNSUPPORTED_MEDIA_TYPE', 'send the body as application/json', null));
    }
    const read = await readBody(request, limits.issuanceBatchAccountsMax * 256);
    if (!read.ok) return sendError(response, read.error);
    const body = parseJsonObject(read.body);
    if (body instanceof ApiError) return sendError(response, body);
    const accounts = body['accounts'];
    if (!Array.isArray(accounts) || accounts.length === 0 || accounts.length > limits.issuanceBatchAccountsMax) {
      return sendError(response, new ApiError('INVALID_FIELD', `accounts must be an array of 1..${limits.issuanceBatchAccountsMax} account requests`, 'accounts'));
    }
    const { products, file } = this.options.topology;
    const requests = [];
    for (let i = 0; i < accounts.length; i++) {
      const item = accounts[i] as Record<string, unknown>;
      const parsed = typeof item === 'object' && item !== null ? parseOpenAccount(item, [...products.keys()], file.issuance.defaultProduct) : new ApiError('INVALID_FIELD', 'an account request is an object', null);
      if (parsed instanceof ApiError) return sendError(response, new ApiError(parsed.code, `accounts[${i}]: ${parsed.message}`, `accounts[${i}]${parsed.field === null ? '' : '.' + parsed.field}`));
      requests.push(parsed);
    }
    const outcomes = await openAccounts(this, requests);
    const results = outcomes.map((outcome) => `{"status":${outcome.status},"result":${outcome.body}}`);
    sendJsonText(response, 200, `{"results":[${results.join(',')}]}`);
  }

  private async addCard(request: IncomingMessage, response: ServerResponse, accountId: string): Promise<void> {
    const body = await this.readJson(request, response);
    if (body === null) return;
    if (Object.keys(body).length > 0) return sendError(response, new ApiError('UNKNOWN_FIELD', 'this request has no body fields', Object.keys(body)[0] ?? null));
    if (!isAccountId(accountId)) return sendError(response, new ApiError('ACCOUNT_NOT_FOUND', `no account ${accountId}`, 'accountId'));
    const unitId = this.router.unitOfAccount(accountId);
    const result = await this.call(unitId, { op: 'addCard', accountId });
    if (result === null) return sendError(response, new ApiError('UNIT_UNAVAILABLE', `unit ${unitId} is unavailable`, null));
    sendJsonText(response, result.status, result.body);
  }

  private async cardStatus(request: IncomingMessage, response: ServerResponse): Promise<void> {
    const body = await this.readJson(request, response);
    if (body === null) return;
    const parsed = parseCardStatus(body);
    if (parsed instanceof ApiError) return sendError(response, parsed);
    const pan = parsePan(parsed.number);
    if (!pan.ok) return sendError(response, new ApiError('CARD_NOT_FOUND', 'no card with this number', 'card.number'));
    const unitId = this.router.unitOfAccount(pan.accountId);
    const result = await this.call(unitId, { op: 'setCardStatus', pan: parsed.number, status: parsed.status });
    if (result === null) return sendError(response, new ApiError('UNIT_UNAVAILABLE', `unit ${unitId} is unavailable`, null));
    sendJsonText(response, result.status, result.body);
  }

  private async balance(response: ServerResponse, accountId: string): Promise<void> {
    if (!isAccountId(accountId)) return sendError(response, new ApiError('ACCOUNT_NOT_FOUND', `no account ${accountId}`, 'accountId'));
    const client = this.clients.get(this.router.unitOfAccount(accountId));
    if (client === undefined || client.isDown) return sendError(response, new ApiError('UNIT_UNAVAILABLE', 'the unit of this account is unavailable', null));
    try {
      const upstream = await client.readPool.request({ path: `/v1/accounts/${accountId}`, method: 'GET' });
      sendJsonText(response, upstream.statusCode, await upstream.body.text());
    } catch {
      sendError(response, new ApiError('UNIT_UNAVAILABLE', `unit ${client.unitId} is unavailable`, null));
    }
  }

  private health(response: ServerResponse): void {
    const units: Record<string, string> = {};
    for (const client of this.clients.values()) units[client.unitId] = client.isDown ? 'down' : 'up';
    sendJson(response, 200, { status: 'ok', units });
  }

  /** A fresh account id under a product's IIN; collisions are retried by the caller. */
  drawAccountId(product: string): string {
    const spec = this.options.topology.products.get(product);
    if (spec === undefined) throw new Error(`unknown product ${product}`);
    return makeAccountId(spec.iin, randomInt(0, 100_000_000));
  }
}

function declineBody(code: string, unit: string | null): object {
  return { authorizationId: null, approved: false, responseCode: code, approvedAmount: null, availableCredit: null, unit };
}
