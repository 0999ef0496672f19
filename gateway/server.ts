import { randomInt } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { ApiError } from '../domain/errors.js';
import { answerClientErrorsAsJson, decodeSegment, parseJsonObject, readBody, readBodyThen, sendError, sendJson, sendJsonText } from '../domain/http-util.js';
import { ChannelFront, type FrontHandler, type FrontReply } from './channel-front.js';
import { assert, limits } from '../domain/limits.js';
import type { Logger } from '../domain/log.js';
import { isAccountId, makeAccountId, parsePan } from '../domain/pan.js';
import { versionOfAuthorizationId, type AdviceOp, type ResultLine, type UnitOp } from '../domain/protocol.js';
import { responseCodes } from '../domain/response-codes.js';
import type { Topology } from '../domain/topology.js';
import { channels, type Channel } from '../domain/products.js';
import {
  type AuthorizationRequest, parseAuthorization, parseCardStatus, parseFollowUp, onlyKnown, parseIdempotencyKey, parseOpenAccount,
} from './channel-request.js';
import { GatewayMetrics } from './metrics.js';
import { Router } from './router.js';
import { UnitClient, type OpCallback } from './unit-client.js';
import { StandIn } from './stand-in.js';
import { AdminAuth } from './admin-auth.js';
import { HaController, UnitPair } from './ha-controller.js';
import { readJsonBody } from './gray-admin.js';
import { parseReason } from '../domain/gray.js';
import { GrayAdmin, type InstanceView } from './gray-admin.js';
import { GrayController } from './gray-controller.js';
import { GrayStore } from './gray-store.js';
import { cvvHash, panHash, type CardKeys } from '../domain/card-protect.js';
import type { Version } from '../domain/gray.js';
import { openAccounts } from './issuance.js';

// The routing gateway: the single entry for channels. It validates, routes by
// account to the owning unit, and answers from the unit's result line. It keeps
// no state of its own beyond connections and counters, so it can restart freely.

export interface GatewayOptions {
  host: string;
  port: number;
  topology: Topology;
  log: Logger;
  /** Folder of the gray release state and its audit log. */
  stateDir: string;
  /** Bearer token of the admin API. */
  adminToken: string;
  /** Keys of the card-number hash: whitelisted cards are kept only as keyed hashes. */
  cardKeys: CardKeys;
  /** Seed of the account-number draw, for repeatable simulations and tests; null draws at random. */
  accountIdSeed: number | null;
}

/** A unit's instances: [its own, its gray instance or null]; which one serves as stable is the gray controller's call. */
type Instances = [UnitClient, UnitClient | null];

export class GatewayServer {
  readonly router: Router;
  readonly instances = new Map<string, Instances>();
  readonly metrics: GatewayMetrics;
  readonly gray: GrayController;
  private readonly grayAdmin: GrayAdmin;
  readonly ha: HaController;
  /** Stand-in processing for HA units whose copies are both down; null without HA units or limits. */
  readonly standIn: StandIn | null;
  private readonly adminAuth: AdminAuth;
  private readonly server: Server;
  private readonly front: ChannelFront;
  private readonly inflight = new Map<Channel, number>(channels.map((channel) => [channel, 0]));
  /** Account numbers: random, or from a seeded sequence when options.accountIdSeed is set (repeatable runs). */
  private readonly drawAccountNumber: () => number;

  constructor(private readonly options: GatewayOptions) {
    const { file } = options.topology;
    this.drawAccountNumber = options.accountIdSeed === null ? () => randomInt(0, 100_000_000) : seededAccountNumbers(options.accountIdSeed);
    this.router = new Router(file.units, file.ring.vnodesPerWeight, options.cardKeys.cardNumber);
    this.metrics = new GatewayMetrics(() => this.allClients());
    const pairs = new Map<string, UnitPair>();
    for (const unit of file.units) {
      const second = unit.gray?.url ?? unit.standby?.url;
      const own = new UnitClient(unit.id, 'a', unit.url, this.metrics, options.log);
      const other = second === undefined ? null : new UnitClient(unit.id, 'b', second, this.metrics, options.log);
      this.instances.set(unit.id, [own, other]);
      if (unit.standby !== undefined) pairs.set(unit.id, new UnitPair(unit.id, [own, other as UnitClient]));
    }
    const standIn = file.standIn;
    this.standIn = standIn === undefined || pairs.size === 0 ? null : new StandIn(standIn, options.stateDir, options.log);
    this.ha = new HaController(pairs, {
      log: options.log, onSwitch: (record) => this.metrics.onSwitch(record.unit, record.planned, record.switchMs),
      beforeUp: (pair, primary) => this.replayAdvices(pair.unitId, primary),
    });
    this.adminAuth = new AdminAuth(options.adminToken);
    const unitIds = file.units.map((unit) => unit.id);
    this.gray = new GrayController({
      store: new GrayStore(options.stateDir), unitIds, log: options.log, nowMs: () => Date.now(),
      unitsWithGray: new Set(file.units.filter((unit) => unit.gray !== undefined).map((unit) => unit.id)),
      onRulesChange: (rules) => this.metrics.grayPercent.set(rules.percentBps / 100),
      accountKeyOf: (accountId) => options.cardKeys.cardNumber.cardPrefix(accountId),
      grayInstanceUp: (unitId) => {
        const client = this.client(unitId, 'gray');
        return client !== null && !client.isDown;
      },
    });
    const hashCard = (pan: string): string => panHash(options.cardKeys, pan).toString('hex');
    this.grayAdmin = new GrayAdmin(this.gray, this.adminAuth, unitIds, hashCard, () => this.describeInstances());
    this.server = createServer({ keepAliveTimeout: keepAliveMs, requestTimeout: requestTimeoutMs }, (request, response) => {
      if (request.method === 'POST' && request.url === '/v1/authorizations') {
        this.authorize(request, response, performance.now());
        return;
      }
      this.route(request, response).catch((error: unknown) => {
        options.log.error('request failed', { error: String(error), url: request.url });
        if (!response.headersSent) sendError(response, new ApiError('INTERNAL', 'the gateway failed unexpectedly', null));
      });
    });
    answerClientErrorsAsJson(this.server);
    // Channel requests in their plain form are read by the lean front door; the
    // rest (admin, accounts, anything unusual) by node:http (see channel-front.ts).
    const authorizeFront: FrontHandler = (headers, body, reply) => this.authorizeRequest(headers, body, reply, performance.now());
    const followUpFront: FrontHandler = (headers, body, reply, target) => {
      const parts = target.split('/');
      const started = performance.now();
      const increment = parts[4] === 'increments';
      // The route admits only ids without % escapes, so the segment is the id as it stands.
      this.followUpRequest(headers, body, parts[3] ?? '', increment, reply, () => {
        this.metrics.onRequest(increment ? 'increments' : 'reversals', (performance.now() - started) / 1000);
      });
    };
    this.front = new ChannelFront(this.server, (method, target) => {
      if (method !== 'POST') return null;
      if (target === '/v1/authorizations') return authorizeFront;
      const parts = target.split('/');
      // The plain form only: /v1/authorizations/<id>/(reversals|increments), an id without
      // % escapes or a query; node:http's route answers every other form as it always has.
      return isFollowUpPath(parts) && (parts[3] ?? '') !== '' && !target.includes('%') && !target.includes('?') ? followUpFront : null;
    }, {
      headerBytesMax: 16 * 1024, bodyBytesMax: limits.requestBodyBytesMax, idleTimeoutMs: keepAliveMs, requestTimeoutMs,
      onError: (error) => options.log.error('request failed', { error: String(error) }),
    });
  }

  /** Listens once every HA unit has a primary (or after haReadyTimeoutMs, with those units down). */
  async listen(): Promise<number> {
    if (!(await this.ha.ready(haReadyTimeoutMs))) this.options.log.warn('some HA units have no primary yet', { units: this.ha.describe() });
    await new Promise<void>((resolve) => this.server.listen({ port: this.options.port, host: this.options.host, backlog: limits.acceptBacklogConnections }, resolve));
    return (this.server.address() as AddressInfo).port;
  }

  async close(): Promise<void> {
    this.front.close();
    this.server.closeIdleConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
    this.gray.close();
    this.ha.close();
    await Promise.all(this.allClients().map((client) => client.close()));
  }

  allClients(): UnitClient[] {
    const all: UnitClient[] = [];
    for (const [own, gray] of this.instances.values()) {
      all.push(own);
      if (gray !== null) all.push(gray);
    }
    return all;
  }

  /** The instance that serves the unit as `version`, or null when the unit has no gray instance. */
  client(unitId: string, version: Version): UnitClient | null {
    const instances = this.instances.get(unitId);
    assert(instances !== undefined, 'the ring names a configured unit');
    const pair = this.ha.pairs.get(unitId);
    if (pair !== undefined) return version === 'stable' ? pair.primaryClient ?? instances[0] : null;
    const stableSlot = this.gray.stableSlot(unitId);
    return instances[version === 'stable' ? stableSlot : 1 - stableSlot] ?? null;
  }

  /**
   * The instance for a version decision, with the fallback rule applied: a
   * gray-tagged request whose unit has no gray instance up goes to stable when
   * the rules allow it (counted), or gets null (answered 91, counted).
   */
  private pick(unitId: string, version: Version): { client: UnitClient; version: Version } | null {
    const client = this.client(unitId, version);
    if (version === 'stable' || (client !== null && !client.isDown)) return { client: client as UnitClient, version };
    const reject = this.gray.rules.fallback === 'reject';
    this.gray.onFallback(reject);
    this.metrics.grayFallbacks.labels(unitId, reject ? 'rejected' : 'stable').inc();
    return reject ? null : { client: this.client(unitId, 'stable') as UnitClient, version: 'stable' };
  }

  /** When both copies of an HA unit are down: the gateway's own answer within stand-in limits (see stand-in.ts), else null. */
  private standInAnswer(unitId: string, key: string, auth: AuthorizationRequest): ResultLine | null {
    if (this.standIn === null || this.ha.pairs.get(unitId)?.state !== 'down') return null;
    const { card } = auth;
    const keys = this.options.cardKeys;
    return this.standIn.authorize({
      unitId, idempotencyKey: key, panHashHex: panHash(keys, card.number).toString('hex'), last4: card.number.slice(-4),
      cvvHashHex: card.cvv === null ? null : cvvHash(keys, card.number, card.expiry, card.cvv).toString('hex'), expiry: card.expiry,
      amount: auth.amount, type: auth.type, channel: auth.channel, merchant: auth.merchant, partialAllowed: auth.partialAllowed,
    });
  }

  /** Replays the stand-in advices of a unit that is back, in order, before it takes new operations. */
  private async replayAdvices(unitId: string, primary: UnitClient): Promise<void> {
    const standIn = this.standIn;
    if (standIn === null) return;
    const advices = [...standIn.pendingFor(unitId)];
    if (advices.length === 0) return;
    const results = await Promise.all(advices.map((advice) => new Promise<ResultLine | null>((resolve) => primary.submit(advice, resolve))));
    for (let i = 0; i < advices.length; i++) {
      const result = results[i] ?? null;
      if (result === null) throw new Error(`unit ${unitId} did not take stand-in advice ${i + 1} of ${advices.length}`);
      // 200: applied (or applied before, or a 94 for a key the unit knew): either way the unit holds it.
      if (result.status !== 200) this.options.log.error('stand-in advice refused by the unit', { unit: unitId, answer: result.body.slice(0, 200) });
      standIn.replayed(unitId, advices[i] as AdviceOp);
    }
    this.options.log.info('stand-in advices replayed', { unit: unitId, advices: advices.length });
  }

  /** Sends one operation to a unit's stable instance and resolves with its result, or null when the unit is unavailable. */
  call(unitId: string, op: UnitOp): Promise<ResultLine | null> {
    if (!this.instances.has(unitId)) return Promise.resolve(null);
    const client = this.client(unitId, 'stable') as UnitClient;
    return new Promise((resolve) => this.submit(unitId, client, op, resolve));
  }

  /** Hands an operation to a unit instance; an HA unit's operations go through its failover buffer. */
  private submit(unitId: string, client: UnitClient, op: UnitOp, callback: OpCallback): void {
    const pair = this.ha.pairs.get(unitId);
    if (pair === undefined) client.submit(op, callback);
    else this.ha.submit(pair, op, callback);
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
    } else if (method === 'POST' && isFollowUpPath(parts)) {
      routeName = parts[4] as string;
      await this.followUp(request, response, parts[3] ?? '', parts[4] === 'increments');
    } else if (path === '/v1/accounts' || path.startsWith('/v1/accounts/') || path === '/v1/cards/status') {
      routeName = 'accounts';
      await this.accounts(request, response, method, parts);
    } else if (path === '/admin/ha' || path === '/admin/ha/switch') {
      routeName = 'admin';
      await this.haAdmin(request, response, method, path);
    } else if (path === '/admin/gray' || path.startsWith('/admin/gray/')) {
      routeName = 'admin';
      await this.grayAdmin.handle(request, response, method, path, new URLSearchParams(url.slice(path.length)));
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

  /** node:http's form of the authorization route: the body read, then the channel route. */
  private authorize(request: IncomingMessage, response: ServerResponse, startedMs: number): void {
    // The headers are checked before the body is read, as the channel route does them first.
    const headerError = channelHeadersError(request.headers, true);
    if (headerError !== null) {
      request.resume();
      return sendError(response, headerError);
    }
    readBodyThen(request, limits.requestBodyBytesMax, (read) => {
      if (!read.ok) return sendError(response, read.error);
      this.authorizeRequest(request.headers, read.body, nodeReply(response), startedMs);
    });
  }

  /**
   * The authorization path, written with callbacks rather than async/await: it is
   * the one route at tens of thousands of requests per second, and every promise
   * and async frame per request showed in the gateway's CPU per request.
   */
  private authorizeRequest(headers: RequestHeaders, raw: Buffer, reply: FrontReply, startedMs: number): void {
    const key = parseIdempotencyKey(headers['idempotency-key'], true);
    if (key instanceof ApiError) return this.refuseAuthorization(reply, key, startedMs);
    const checked = checkChannelHeaders(headers);
    if (checked instanceof ApiError) return this.refuseAuthorization(reply, checked, startedMs);
    const body = parseJsonObject(raw);
    if (body instanceof ApiError) return this.refuseAuthorization(reply, body, startedMs);
    const auth = parseAuthorization(body);
    if (auth instanceof ApiError) return this.refuseAuthorization(reply, auth, startedMs);
    this.authorizeParsed(auth, key as string, checked, reply, startedMs);
  }

  /** An authorization answered before it reaches a unit: every answer of the route is in its latency histogram. */
  private refuseAuthorization(reply: FrontReply, error: ApiError, startedMs: number): void {
    replyError(reply, error);
    this.metrics.onRequest('authorize', (performance.now() - startedMs) / 1000);
  }

  private authorizeParsed(auth: AuthorizationRequest, key: string, force: GrayHeader, reply: FrontReply, startedMs: number): void {
    const pan = parsePan(auth.card.number);
    const channel = auth.channel;
    if (!pan.ok) {
      this.metrics.onAuthorization(channel, '-', 'stable', false, responseCodes.unknownCard);
      reply.send(200, JSON.stringify(declineBody(responseCodes.unknownCard, null, 'stable')));
      this.metrics.onRequest('authorize', (performance.now() - startedMs) / 1000);
      return;
    }
    const inflight = this.inflight.get(channel) ?? 0;
    if (inflight >= limits.inflightPerChannelMax) {
      this.metrics.shed.labels(channel).inc();
      return this.refuseAuthorization(reply, new ApiError('CHANNEL_OVERLOADED', `channel ${channel} has ${inflight} requests in flight; retry later`, 'channel'), startedMs);
    }
    this.inflight.set(channel, inflight + 1);
    this.metrics.inflightChange(channel, 1);
    const unitId = this.router.unitOfCardPrefix(pan.cardPrefix);
    const decision = this.gray.decide(force, pan.cardPrefix, channel, unitId, () => panHash(this.options.cardKeys, auth.card.number).toString('hex'));
    const decided = decision.version;
    // Only requests the release rules put on either side (percentage, whitelist) are
    // compared by a plan's gates; probes and traffic kept stable by the channel or
    // unit scope would make stable a different population from gray.
    const compared = decision.reason === 'percent' || decision.reason === 'whitelist';
    const picked = this.pick(unitId, decided);
    const version = picked === null ? decided : picked.version;
    const done = (answer: ResultLine | null): void => {
      this.inflight.set(channel, (this.inflight.get(channel) ?? 1) - 1);
      this.metrics.inflightChange(channel, -1);
      const latencyMs = performance.now() - startedMs;
      const result = answer === null ? this.standInAnswer(unitId, key, auth) : answer;
      if (result === null) {
        this.metrics.onAuthorization(channel, unitId, version, false, responseCodes.unitUnavailable);
        if (compared) this.gray.onAnswer(version, 200, responseCodes.unitUnavailable, false, latencyMs);
        reply.send(200, JSON.stringify(declineBody(responseCodes.unitUnavailable, unitId, version)));
      } else {
        this.metrics.onAuthorization(channel, unitId, version, result.approved, result.code);
        if (compared) this.gray.onAnswer(version, result.status, result.code, result.approved, latencyMs);
        reply.send(result.status, result.body);
      }
      this.metrics.onRequest('authorize', latencyMs / 1000);
    };
    if (picked === null) return done(null);
    this.submit(unitId, picked.client, {
      op: 'authorize', idempotencyKey: key, pan: auth.card.number, expiry: auth.card.expiry, cvv: auth.card.cvv,
      amount: auth.amount, type: auth.type, channel, merchant: auth.merchant, partialAllowed: auth.partialAllowed, version,
    }, done);
  }

  /** node:http's form of a follow-up route; `rawId` is the path segment, still %-encoded. */
  private async followUp(request: IncomingMessage, response: ServerResponse, rawId: string, increment: boolean): Promise<void> {
    const authorizationId = decodeSegment(rawId);
    if (authorizationId === null) {
      request.resume();
      return sendError(response, new ApiError('AUTHORIZATION_NOT_FOUND', 'the authorization id is not a valid path segment', 'authorizationId'));
    }
    const headerError = channelHeadersError(request.headers, false);
    if (headerError !== null) {
      request.resume();
      return sendError(response, headerError);
    }
    const read = await readBody(request, limits.requestBodyBytesMax);
    if (!read.ok) return sendError(response, read.error);
    await new Promise<void>((resolve) => this.followUpRequest(request.headers, read.body, authorizationId, increment, nodeReply(response), resolve));
  }

  /** A reversal or an increment of an authorization; `done` is called once it is answered. */
  private followUpRequest(headers: RequestHeaders, raw: Buffer, authorizationId: string, increment: boolean, reply: FrontReply, done: () => void): void {
    const answer = (status: number, json: string): void => {
      reply.send(status, json);
      done();
    };
    const fail = (error: ApiError): void => answer(error.status, JSON.stringify(error.body()));
    const key = parseIdempotencyKey(headers['idempotency-key'], false);
    if (key instanceof ApiError) return fail(key);
    const force = checkChannelHeaders(headers);
    if (force instanceof ApiError) return fail(force);
    const body = parseJsonObject(raw);
    if (body instanceof ApiError) return fail(body);
    const parsed = parseFollowUp(body, increment);
    if (parsed instanceof ApiError) return fail(parsed);
    const unitId = this.router.unitOfAuthorization(authorizationId);
    if (unitId === null || !this.instances.has(unitId)) return fail(new ApiError('AUTHORIZATION_NOT_FOUND', `no authorization ${authorizationId}`, 'authorizationId'));
    // Same unit whichever version is live: both instances share the unit's store.
    // The version follows the authorization's own while gray takes traffic.
    const sameAsAuthorization = this.gray.grayLive ? versionOfAuthorizationId(authorizationId) : 'stable';
    const picked = this.pick(unitId, force === 'on' ? 'gray' : force === 'off' ? 'stable' : sameAsAuthorization);
    const unavailable = (version: Version): void => answer(200, JSON.stringify({ ...declineBody(responseCodes.unitUnavailable, unitId, version), authorizationId }));
    if (picked === null) return unavailable('gray');
    const { client, version } = picked;
    const op: UnitOp = increment && parsed.amount !== null
      ? { op: 'increment', idempotencyKey: key, authorizationId, amount: parsed.amount, version }
      : { op: 'reverse', idempotencyKey: key, authorizationId, amount: parsed.amount, version };
    this.submit(unitId, client, op, (result) => {
      if (result === null) return unavailable(version);
      answer(result.status, result.body);
    });
  }

  private async accounts(request: IncomingMessage, response: ServerResponse, method: string, parts: string[]): Promise<void> {
    // parts: ['', 'v1', 'accounts', id?, 'cards'?] or ['', 'v1', 'cards', 'status']
    if (parts[2] === 'cards') {
      if (method !== 'POST') return sendError(response, new ApiError('METHOD_NOT_ALLOWED', 'use POST', null));
      return this.cardStatus(request, response);
    }
    const accountId = decodeSegment(parts[3] ?? '');
    if (accountId === null) {
      request.resume();
      return sendError(response, new ApiError('ACCOUNT_NOT_FOUND', 'the account id is not a valid path segment', 'accountId'));
    }
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
    const unknown = onlyKnown(body, '', ['accounts']);
    if (unknown !== null) return sendError(response, unknown);
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
    const unitId = this.router.unitOfCardPrefix(pan.cardPrefix);
    const result = await this.call(unitId, { op: 'setCardStatus', pan: parsed.number, status: parsed.status });
    if (result === null) return sendError(response, new ApiError('UNIT_UNAVAILABLE', `unit ${unitId} is unavailable`, null));
    sendJsonText(response, result.status, result.body);
  }

  private async balance(response: ServerResponse, accountId: string): Promise<void> {
    if (!isAccountId(accountId)) return sendError(response, new ApiError('ACCOUNT_NOT_FOUND', `no account ${accountId}`, 'accountId'));
    const client = this.client(this.router.unitOfAccount(accountId), 'stable');
    if (client === null || client.isDown) return sendError(response, new ApiError('UNIT_UNAVAILABLE', 'the unit of this account is unavailable', null));
    try {
      const upstream = await client.readPool.request({ path: `/v1/accounts/${accountId}`, method: 'GET' });
      sendJsonText(response, upstream.statusCode, await upstream.body.text());
    } catch {
      sendError(response, new ApiError('UNIT_UNAVAILABLE', `unit ${client.unitId} is unavailable`, null));
    }
  }

  /**
   * GET /admin/ha: every HA unit's copies, roles and switches. POST /admin/ha/switch
   * {"unit", "reason"}: planned switch of one unit to its standby, no request failed.
   */
  private async haAdmin(request: IncomingMessage, response: ServerResponse, method: string, path: string): Promise<void> {
    if (!this.adminAuth.admit(request, response)) return;
    if (method === 'GET' && path === '/admin/ha') return sendJson(response, 200, { units: this.ha.describe(), switches: this.ha.switches });
    if (method !== 'POST' || path !== '/admin/ha/switch') {
      request.resume();
      return sendError(response, new ApiError('METHOD_NOT_ALLOWED', `no route ${method} ${path}`, null));
    }
    const body = await readJsonBody(request);
    if (body instanceof ApiError) return sendError(response, body);
    const unit = body['unit'];
    if (typeof unit !== 'string' || !this.ha.pairs.has(unit)) return sendError(response, new ApiError('INVALID_FIELD', 'unit names a unit with a standby', 'unit'));
    const reason = parseReason(body['reason']);
    if (reason instanceof ApiError) return sendError(response, reason);
    const record = await this.ha.switchover(unit, reason === '' ? 'planned switch' : reason);
    if (record instanceof ApiError) return sendError(response, record);
    sendJson(response, 200, record);
  }

  private health(response: ServerResponse): void {
    const units: Record<string, string> = {};
    const grayUnits: Record<string, string> = {};
    for (const unitId of this.instances.keys()) {
      const pair = this.ha.pairs.get(unitId);
      units[unitId] = pair !== undefined ? pair.state : (this.client(unitId, 'stable') as UnitClient).isDown ? 'down' : 'up';
      const gray = this.client(unitId, 'gray');
      if (gray !== null) grayUnits[unitId] = gray.isDown ? 'down' : 'up';
    }
    sendJson(response, 200, { status: 'ok', units, grayUnits, grayPercent: this.gray.rules.percentBps / 100 });
  }

  /** Each unit's instances as their own health checks describe them (release, role, journal position). */
  private async describeInstances(): Promise<InstanceView[]> {
    const describe = async (client: UnitClient | null): Promise<object | null> => {
      if (client === null) return null;
      try {
        const answer = await client.readPool.request({ path: '/healthz', method: 'GET', headersTimeout: 1_000, bodyTimeout: 1_000 });
        const health = (await answer.body.json()) as { release?: string; journalSeq?: number };
        return { instance: client.instance, url: client.url, up: true, release: health.release ?? null, journalSeq: health.journalSeq ?? null };
      } catch {
        return { instance: client.instance, url: client.url, up: false, release: null, journalSeq: null };
      }
    };
    return Promise.all([...this.instances.keys()].map(async (unit) => ({
      unit, stable: await describe(this.client(unit, 'stable')), gray: await describe(this.client(unit, 'gray')),
    })));
  }

  /** A fresh account id under a product's IIN; collisions are retried by the caller. */
  drawAccountId(product: string): string {
    const spec = this.options.topology.products.get(product);
    if (spec === undefined) throw new Error(`unknown product ${product}`);
    return makeAccountId(spec.iin, this.drawAccountNumber());
  }
}

function declineBody(code: string, unit: string | null, version: Version): object {
  return { authorizationId: null, approved: false, responseCode: code, approvedAmount: null, availableCredit: null, unit, version };
}

/** splitmix32: a seeded sequence of account numbers in 0..99,999,999. */
function seededAccountNumbers(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x9e3779b9) >>> 0;
    let z = state;
    z = Math.imul(z ^ (z >>> 16), 0x21f0aaad);
    z = Math.imul(z ^ (z >>> 15), 0x735a2d97);
    return ((z ^ (z >>> 15)) >>> 0) % 100_000_000;
  };
}

/** The gateway waits this long at start for every HA unit to have a primary. */
const haReadyTimeoutMs = 15_000;

type GrayHeader = 'on' | 'off' | null;

/** Request headers as node:http gives them (the front door's are plain strings). */
type RequestHeaders = Readonly<Record<string, string | string[] | undefined>>;

/** Keep-alive connections with nothing in flight close after this long idle. */
const keepAliveMs = 60_000;
/** A request must arrive whole within this long. */
const requestTimeoutMs = 30_000;

/** ['', version, 'authorizations', id, 'reversals' | 'increments'] */
function isFollowUpPath(parts: readonly string[]): boolean {
  return parts.length === 5 && parts[0] === '' && parts[1] === 'v1' && parts[2] === 'authorizations' && (parts[4] === 'reversals' || parts[4] === 'increments');
}

/** The checks shared by the channel routes: a JSON body, and the gray header; returns the header's value. */
function checkChannelHeaders(headers: RequestHeaders): GrayHeader | ApiError {
  const force = parseGrayHeader(headers['x-gray']);
  if (force instanceof ApiError) return force;
  const type = headers['content-type'];
  if (type !== undefined && !(typeof type === 'string' && type.startsWith('application/json'))) {
    return new ApiError('UNSUPPORTED_MEDIA_TYPE', 'send the body as application/json', null);
  }
  return force;
}

/** The first header error of a channel route, in the order the route checks them, or null. */
function channelHeadersError(headers: RequestHeaders, keyRequired: boolean): ApiError | null {
  const key = parseIdempotencyKey(headers['idempotency-key'], keyRequired);
  if (key instanceof ApiError) return key;
  const checked = checkChannelHeaders(headers);
  return checked instanceof ApiError ? checked : null;
}

function replyError(reply: FrontReply, error: ApiError): void {
  reply.send(error.status, JSON.stringify(error.body()));
}

/** A node:http response as a FrontReply. */
function nodeReply(response: ServerResponse): FrontReply {
  return { send: (status, json) => sendJsonText(response, status, json) };
}

function parseGrayHeader(value: string | string[] | undefined): GrayHeader | ApiError {
  if (value === undefined) return null;
  if (value === 'on' || value === 'off') return value;
  return new ApiError('INVALID_FIELD', 'x-gray is "on" or "off"', 'x-gray');
}
