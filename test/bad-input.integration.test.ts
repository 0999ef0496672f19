import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connect } from 'node:net';
import { Readable } from 'node:stream';
import { request } from 'undici';
import { deriveCardKeys, demoCardHashKeyHex } from '../domain/card-protect.js';
import { makePan } from '../domain/pan.js';
import type { Cluster } from '../deploy/cluster.js';
import { createRandom } from '../loadtest/random.js';
import { call, freshKey, openAccount, purchase, startCluster, type TestCard } from './helpers.js';

// Malformed input of every kind gets a 4xx with a code, a message and the field,
// and writes nothing: every unit's journal ends where it ended before.

let cluster: Cluster;
let base: string;
let close: () => Promise<void>;
let card: TestCard;
let authorizationId: string;

beforeAll(async () => {
  const started = await startCluster(2);
  cluster = started.cluster;
  close = started.close;
  base = cluster.gatewayUrl;
  const account = await openAccount(base, 100_000);
  card = account.card;
  const auth = await call(base, 'POST', '/v1/authorizations', purchase(card, 1_000), { 'idempotency-key': freshKey() });
  authorizationId = auth.body.authorizationId;
});

afterAll(async () => {
  await close();
});

async function journalEnds(): Promise<number[]> {
  return Promise.all(cluster.topology.units.map(async (unit) => (await call(unit.url, 'GET', '/healthz')).body.journalSeq as number));
}

const valid = (): Record<string, any> => purchase(card, 1_000);
const without = (field: string) => (body: Record<string, any>) => {
  delete body[field];
  return body;
};

type Case = [name: string, body: (valid: Record<string, any>) => unknown, status: number, code: string, field: string | null];

const authorizationCases: Case[] = [
  ['bad JSON', () => '{"card": ', 400, 'INVALID_JSON', null],
  ['a JSON array', () => '[1,2]', 400, 'INVALID_FIELD', null],
  ['missing card', without('card'), 400, 'MISSING_FIELD', 'card'],
  ['missing amount', without('amount'), 400, 'MISSING_FIELD', 'amount'],
  ['missing type', without('type'), 400, 'MISSING_FIELD', 'type'],
  ['missing channel', without('channel'), 400, 'MISSING_FIELD', 'channel'],
  ['missing merchant', without('merchant'), 400, 'MISSING_FIELD', 'merchant'],
  ['unknown field', (b) => ({ ...b, tip: 5 }), 400, 'UNKNOWN_FIELD', 'tip'],
  ['unknown nested field', (b) => ({ ...b, card: { ...b.card, pin: '1234' } }), 400, 'UNKNOWN_FIELD', 'card.pin'],
  ['zero amount', (b) => ({ ...b, amount: { value: 0, currency: 'CNY' } }), 400, 'INVALID_AMOUNT', 'amount.value'],
  ['negative amount', (b) => ({ ...b, amount: { value: -5, currency: 'CNY' } }), 400, 'INVALID_AMOUNT', 'amount.value'],
  ['fractional amount', (b) => ({ ...b, amount: { value: 10.5, currency: 'CNY' } }), 400, 'INVALID_AMOUNT', 'amount.value'],
  ['absurd amount', (b) => ({ ...b, amount: { value: 1e20, currency: 'CNY' } }), 400, 'INVALID_AMOUNT', 'amount.value'],
  ['amount as string', (b) => ({ ...b, amount: { value: '100', currency: 'CNY' } }), 400, 'INVALID_AMOUNT', 'amount.value'],
  ['unknown currency', (b) => ({ ...b, amount: { value: 100, currency: 'XYZ' } }), 400, 'INVALID_FIELD', 'amount.currency'],
  ['card number as number', (b) => ({ ...b, card: { ...b.card, number: 6225880000000000 } }), 400, 'INVALID_FIELD', 'card.number'],
  ['card number with letters', (b) => ({ ...b, card: { ...b.card, number: '6225-8800-0000' } }), 400, 'INVALID_FIELD', 'card.number'],
  ['bad expiry', (b) => ({ ...b, card: { ...b.card, expiry: '11/29' } }), 400, 'INVALID_FIELD', 'card.expiry'],
  ['bad cvv', (b) => ({ ...b, card: { ...b.card, cvv: '12' } }), 400, 'INVALID_FIELD', 'card.cvv'],
  ['bad type', (b) => ({ ...b, type: 'loan' }), 400, 'INVALID_FIELD', 'type'],
  ['bad channel', (b) => ({ ...b, channel: 'fax' }), 400, 'INVALID_FIELD', 'channel'],
  ['bad mcc', (b) => ({ ...b, merchant: { ...b.merchant, mcc: '54' } }), 400, 'INVALID_FIELD', 'merchant.mcc'],
  ['bad country', (b) => ({ ...b, merchant: { ...b.merchant, country: 'china' } }), 400, 'INVALID_FIELD', 'merchant.country'],
  ['partialAllowed as string', (b) => ({ ...b, partialAllowed: 'yes' }), 400, 'INVALID_FIELD', 'partialAllowed'],
  ['partialAllowed null', (b) => ({ ...b, partialAllowed: null }), 400, 'INVALID_FIELD', 'partialAllowed'],
  ['body over the size limit', (b) => ({ ...b, merchant: { ...b.merchant, id: 'x'.repeat(20_000) } }), 413, 'BODY_TOO_LARGE', null],
];

describe('malformed input gets a 4xx and changes nothing', () => {
  it.each(authorizationCases)('authorization with %s', async (_name, make, status, code, field) => {
    const before = await journalEnds();
    const answer = await call(base, 'POST', '/v1/authorizations', make(valid()) as object, { 'idempotency-key': freshKey() });
    expect(answer.status).toBe(status);
    expect(answer.body.error).toMatchObject({ code, field });
    expect(typeof answer.body.error.message).toBe('string');
    expect(await journalEnds()).toEqual(before);
  });

  it('counts refused authorizations in the route\'s latency histogram', async () => {
    const count = async (): Promise<number> => {
      const text = String((await call(base, 'GET', '/metrics')).body);
      return Number(/dsu_gateway_request_duration_seconds_count\{route="authorize"\} (\d+)/.exec(text)?.[1] ?? 0);
    };
    const before = await count();
    await call(base, 'POST', '/v1/authorizations', '{"card": ', { 'idempotency-key': freshKey() });
    await call(base, 'POST', '/v1/authorizations', purchase({ ...card, number: '6225880000000001' }, 100), { 'idempotency-key': freshKey() });
    expect(await count()).toBe(before + 2);
  });

  it('a missing or malformed Idempotency-Key', async () => {
    const before = await journalEnds();
    const missing = await call(base, 'POST', '/v1/authorizations', valid());
    expect(missing.status).toBe(400);
    expect(missing.body.error).toMatchObject({ code: 'MISSING_FIELD', field: 'Idempotency-Key' });
    const long = await call(base, 'POST', '/v1/authorizations', valid(), { 'idempotency-key': 'k'.repeat(200) });
    expect(long.body.error).toMatchObject({ code: 'INVALID_FIELD', field: 'Idempotency-Key' });
    expect(await journalEnds()).toEqual(before);
  });

  it('seeded mutations of authorization, reversal and increment bodies: a decision or a 4xx with its error, never a 5xx, and a refusal writes nothing', async () => {
    // The load generator's seeded generator: a failing case names its index.
    const seeded = createRandom(20261202);
    const random = (): number => seeded.float();
    const pick = <T>(items: readonly T[]): T => items[Math.floor(random() * items.length)] as T;
    const odd: unknown[] = [null, true, false, 0, -1, 1, 1.5, 1e21, 2 ** 53, -0, '', ' ', 'x'.repeat(300), '0', '100', '\u0661\u0662',
      '6225\u0000', '\ud800', [], {}, [1], { a: 1 }, 'CNY', 'USD', 'pos', 'atm', 'purchase', 'cash', 'refund', 500, 99_999_999];
    /** Every path to an object or a value in a body, as key lists. */
    const paths = (value: unknown, at: string[] = []): string[][] => (value === null || typeof value !== 'object' || Array.isArray(value) ? [at]
      : [at, ...Object.entries(value as Record<string, unknown>).flatMap(([key, inner]) => paths(inner, [...at, key]))]);
    const mutate = (body: Record<string, unknown>): unknown => {
      let result: unknown = structuredClone(body);
      for (let edits = 1 + Math.floor(random() * 2); edits > 0; edits--) {
        const all = paths(result);
        const path = pick(all);
        const kind = random();
        if (path.length === 0) {
          if (kind < 0.1) result = pick(odd);
          continue;
        }
        const parent = path.slice(0, -1).reduce<any>((node, key) => node[key], result);
        const key = path[path.length - 1] as string;
        if (kind < 0.6) parent[key] = pick(odd);
        else if (kind < 0.8) delete parent[key];
        else if (parent !== null && typeof parent === 'object') {
          // defineProperty: an assignment to __proto__ would set the prototype, and the key would not be sent.
          Object.defineProperty(parent, pick(['tip', 'pin', '__proto__', 'constructor', 'value']), { value: pick(odd), enumerable: true, writable: true, configurable: true });
        }
      }
      return result;
    };
    // An account of its own, so that the other cases' card and authorization stay as they were.
    const own = (await openAccount(base, 10_000_000)).card;
    const open = async (): Promise<string> => (await call(base, 'POST', '/v1/authorizations', purchase(own, 1_000), { 'idempotency-key': freshKey() })).body.authorizationId;
    // Follow-ups go to an open authorization: a new one once a reversal has closed it (outside the journals' comparison).
    let target = await open();
    const kinds: Array<[() => string, () => Record<string, unknown>]> = [
      [() => '/v1/authorizations', () => purchase(own, 1_000)],
      [() => `/v1/authorizations/${target}/reversals`, () => ({ amount: { value: 10, currency: 'CNY' } })],
      [() => `/v1/authorizations/${target}/increments`, () => ({ amount: { value: 10, currency: 'CNY' } })],
    ];
    const unexpected: string[] = [];
    for (let index = 0; index < 240; index++) {
      const [route, make] = kinds[index % kinds.length] as [() => string, () => Record<string, unknown>];
      const path = route();
      const body = mutate(make());
      const before = await journalEnds();
      const answer = await call(base, 'POST', path, JSON.stringify(body) ?? 'null', { 'idempotency-key': freshKey() });
      const after = await journalEnds();
      const error = (answer.body as { error?: { code?: unknown; message?: unknown; field?: unknown } }).error;
      const refused = answer.status >= 400 && answer.status < 500 && typeof error?.code === 'string' && /^[A-Z_]+$/.test(error.code)
        && typeof error.message === 'string' && (error.field === null || typeof error.field === 'string');
      const decided = answer.status === 200 && typeof (answer.body as { approved?: unknown }).approved === 'boolean';
      if (!refused && !decided) unexpected.push(`#${index} ${path} ${JSON.stringify(body)}: ${answer.status} ${JSON.stringify(answer.body)}`);
      else if (refused && JSON.stringify(after) !== JSON.stringify(before)) unexpected.push(`#${index} ${path} ${JSON.stringify(body)}: refused ${error?.code} but the journals moved`);
      if (error?.code === 'AUTHORIZATION_CLOSED') target = await open();
    }
    expect(unexpected).toEqual([]);
  }, 60_000);

  it('a body that is not JSON by content type', async () => {
    const response = await request(`${base}/v1/authorizations`, { method: 'POST', headers: { 'content-type': 'text/plain', 'idempotency-key': freshKey() }, body: 'hello' });
    expect(response.statusCode).toBe(415);
    expect(((await response.body.json()) as any).error.code).toBe('UNSUPPORTED_MEDIA_TYPE');
  });

  const followUpCases: Array<[string, string, unknown, number, string, string | null]> = [
    ['increment without amount', 'increments', {}, 400, 'MISSING_FIELD', 'amount'],
    ['increment of zero', 'increments', { amount: { value: 0, currency: 'CNY' } }, 400, 'INVALID_AMOUNT', 'amount.value'],
    ['reversal in another currency', 'reversals', { amount: { value: 10, currency: 'USD' } }, 400, 'CURRENCY_MISMATCH', 'amount.currency'],
    ['reversal over the hold', 'reversals', { amount: { value: 1_001, currency: 'CNY' } }, 409, 'AMOUNT_EXCEEDS_HOLD', 'amount.value'],
    ['reversal with an unknown field', 'reversals', { reason: 'x' }, 400, 'UNKNOWN_FIELD', 'reason'],
  ];

  it.each(followUpCases)('%s', async (_name, kind, body, status, code, field) => {
    const before = await journalEnds();
    const answer = await call(base, 'POST', `/v1/authorizations/${authorizationId}/${kind}`, body);
    expect(answer.status).toBe(status);
    expect(answer.body.error).toMatchObject({ code, field });
    expect(await journalEnds()).toEqual(before);
  });

  it('follow-ups and inquiries on things that do not exist', async () => {
    const before = await journalEnds();
    expect((await call(base, 'POST', '/v1/authorizations/nope~123/reversals', {})).body.error.code).toBe('AUTHORIZATION_NOT_FOUND');
    expect((await call(base, 'POST', `/v1/authorizations/${cluster.topology.units[0]!.id}~missing/reversals`, {})).body.error.code).toBe('AUTHORIZATION_NOT_FOUND');
    expect((await call(base, 'GET', '/v1/accounts/12345')).status).toBe(404);
    expect((await call(base, 'GET', '/v1/accounts/62258899999999')).status).toBe(404);
    expect((await call(base, 'POST', '/v1/accounts/62258899999999/cards', {})).body.error.code).toBe('ACCOUNT_NOT_FOUND');
    expect((await call(base, 'GET', '/v1/nothing')).status).toBe(404);
    // Malformed %-escapes in a path: a 404 with the field, not a 500 from decodeURIComponent.
    const badEscape = await call(base, 'POST', '/v1/authorizations/dsu-1~%E0%A4%A/reversals', {});
    expect(badEscape.status).toBe(404);
    expect(badEscape.body.error).toMatchObject({ code: 'AUTHORIZATION_NOT_FOUND', field: 'authorizationId' });
    const badAccount = await call(base, 'GET', '/v1/accounts/%ZZ');
    expect(badAccount.status).toBe(404);
    expect(badAccount.body.error).toMatchObject({ code: 'ACCOUNT_NOT_FOUND', field: 'accountId' });
    expect(await journalEnds()).toEqual(before);
  });

  it('a malformed authorization sent in the forms the front door hands to node:http gets the same answer', async () => {
    const before = await journalEnds();
    const body = JSON.stringify({ channel: 'pos' });
    const plain = await call(base, 'POST', '/v1/authorizations', body, { 'idempotency-key': freshKey() });
    // Chunked (no content-length), and with a query string: node:http reads these.
    const chunked = await request(base + '/v1/authorizations', {
      method: 'POST', headers: { 'content-type': 'application/json', 'idempotency-key': freshKey() },
      body: Readable.from([body.slice(0, 5), body.slice(5)], { objectMode: false }),
    });
    const chunkedBody = await chunked.body.json() as { error: unknown };
    const withQuery = await call(base, 'POST', '/v1/authorizations?x=1', body, { 'idempotency-key': freshKey() });
    expect(plain.status).toBe(400);
    expect(chunked.statusCode).toBe(plain.status);
    expect(chunkedBody.error).toEqual(plain.body.error);
    expect(withQuery.status).toBe(plain.status);
    expect(withQuery.body.error).toEqual(plain.body.error);
    expect(await journalEnds()).toEqual(before);
  });

  it('unit admin requests with bad values (clock, fault injection, batch lane)', async () => {
    const unitUrl = cluster.topology.units[0]!.url;
    const before = await journalEnds();
    const cases: Array<[string, unknown, string, string | null]> = [
      ['/admin/clock', { advanceMs: -1 }, 'INVALID_FIELD', 'advanceMs'],
      ['/admin/clock', { advanceMs: 1.5 }, 'INVALID_FIELD', 'advanceMs'],
      ['/admin/fault', { commitDelayMs: 2_001 }, 'INVALID_FIELD', 'commitDelayMs'],
      ['/admin/fault', { commitDelayMs: '40' }, 'INVALID_FIELD', 'commitDelayMs'],
      ['/admin/fault', '{"commitDelayMs": ', 'INVALID_JSON', null],
      ['/v1/batch?lane=idle', { op: 'settle' }, 'INVALID_FIELD', 'lane'],
    ];
    for (const [path, body, code, field] of cases) {
      const answer = await call(unitUrl, 'POST', path, body as object);
      expect(answer.status).toBe(400);
      expect(answer.body.error).toMatchObject({ code, field });
    }
    expect((await call(unitUrl, 'GET', '/healthz')).body.nowMs).toBeGreaterThan(0);
    expect(await journalEnds()).toEqual(before);
  });

  it('journal feed requests with bad parameters', async () => {
    const unitUrl = cluster.topology.units[0]!.url;
    const cases: Array<[string, string]> = [
      ['after=-1', 'after'], ['after=x', 'after'], ['limit=0', 'limit'], ['limit=10001', 'limit'],
      ['kinds=auth.approved;drop', 'kinds'], ['format=xml', 'format'], ['sums=balance.posted;drop', 'sums'],
      [`kinds=${Array.from({ length: 33 }, (_, i) => `kind.${'x'.repeat(i + 1)}`).join(',')}`, 'kinds'],
    ];
    for (const [query, field] of cases) {
      const answer = await call(unitUrl, 'GET', `/v1/journal?${query}`);
      expect(answer.status).toBe(400);
      expect(answer.body.error).toMatchObject({ code: 'INVALID_FIELD', field });
    }
  });

  it('totals requests with bad parameters, and the sums of a good one', async () => {
    const unitUrl = cluster.topology.units[0]!.url;
    const cases: Array<[string, string, string]> = [
      ['after=-1&kinds=auth.approved', 'INVALID_FIELD', 'after'], ['after=x&kinds=auth.approved', 'INVALID_FIELD', 'after'],
      ['kinds=auth.approved', 'INVALID_FIELD', 'after'], ['after=0', 'MISSING_FIELD', 'kinds'], ['after=0&kinds=auth.approved;drop', 'INVALID_FIELD', 'kinds'],
    ];
    for (const [query, code, field] of cases) {
      const answer = await call(unitUrl, 'GET', `/v1/totals?${query}`);
      expect(answer.status, query).toBe(400);
      expect(answer.body.error, query).toMatchObject({ code, field });
    }
    // The unit that holds this file's card (its holds moved by the cases above): the hold changes
    // its feed shows through a sequence in the middle, plus what the unit sums after it, are its open holds.
    const holding = cluster.topology.units.find((each) => each.id === authorizationId.split('~')[0])!;
    // Holds placed, and one partly reversed, so that both sides of the middle move holds.
    const placed: string[] = [];
    for (let i = 0; i < 6; i++) placed.push((await call(base, 'POST', '/v1/authorizations', purchase(card, 100 + i), { 'idempotency-key': freshKey() })).body.authorizationId);
    expect((await call(base, 'POST', `/v1/authorizations/${placed[5]}/reversals`, { amount: { value: 50, currency: 'CNY' } })).status).toBe(200);
    const kinds = 'auth.approved,auth.refund,hold.incremented,hold.reversed,hold.expired,balance.posted';
    const feed = await call(holding.url, 'GET', `/v1/journal?after=0&format=accounting&kinds=${kinds}`);
    const entries = feed.body.entries as Array<[number, number, string, string, string | null, number]>;
    expect(entries.length).toBeGreaterThan(4);
    const middle = entries[Math.floor(entries.length / 2)]![0];
    const through = entries.filter((entry) => entry[0] <= middle).reduce((sum, entry) => sum + entry[5], 0);
    const good = await call(holding.url, 'GET', `/v1/totals?after=${middle}&kinds=${kinds}`);
    expect(good.status).toBe(200);
    expect(good.body).toMatchObject({ journalSeq: expect.any(Number), amountsAfter: { after: middle, kinds: kinds.split(',') } });
    expect(good.body.openHoldsMinor).toBeGreaterThan(0);
    expect(good.body.amountsAfter.minor).not.toBe(0);
    expect(through + good.body.amountsAfter.minor).toBe(good.body.openHoldsMinor);
  });

  it('account opening with bad limits or products', async () => {
    const before = await journalEnds();
    const cases: Array<[unknown, string, string]> = [
      [{}, 'MISSING_FIELD', 'creditLimit'],
      [{ creditLimit: { value: -1, currency: 'CNY' } }, 'INVALID_AMOUNT', 'creditLimit.value'],
      [{ creditLimit: { value: 1_000, currency: 'USD' } }, 'INVALID_FIELD', 'creditLimit.currency'],
      [{ creditLimit: { value: 1_000, currency: 'CNY' }, product: 'gold' }, 'INVALID_FIELD', 'product'],
    ];
    for (const [body, code, field] of cases) {
      const answer = await call(base, 'POST', '/v1/accounts', body);
      expect(answer.status).toBe(400);
      expect(answer.body.error).toMatchObject({ code, field });
    }
    const batch = await call(base, 'POST', '/v1/accounts/batch', { accounts: [{ creditLimit: { value: 1_000, currency: 'CNY' } }, { creditLimit: { value: 0, currency: 'CNY' } }] });
    expect(batch.status).toBe(400);
    expect(batch.body.error).toMatchObject({ code: 'INVALID_AMOUNT', field: 'accounts[1].creditLimit.value' });
    const extra = await call(base, 'POST', '/v1/accounts/batch', { accounts: [{ creditLimit: { value: 1_000, currency: 'CNY' } }], dryRun: true });
    expect(extra.status).toBe(400);
    expect(extra.body.error).toMatchObject({ code: 'UNKNOWN_FIELD', field: 'dryRun' });
    expect(await journalEnds()).toEqual(before);
  });

  it('paths that only resemble a route write nothing', async () => {
    const before = await journalEnds();
    const lookalike = await call(base, 'POST', '/v1/accountsXYZ', { creditLimit: { value: 1_000, currency: 'CNY' } });
    expect(lookalike.status).toBe(404);
    expect(lookalike.body.error.code).toBe('NOT_FOUND');
    for (const prefix of ['/v2', '/x']) {
      const followUp = await call(base, 'POST', `${prefix}/authorizations/${authorizationId}/reversals`, {});
      expect(followUp.status).toBe(404);
      expect(followUp.body.error.code).toBe('NOT_FOUND');
    }
    expect(await journalEnds()).toEqual(before);
  });

  it('a card number in a path is masked in the answer', async () => {
    const pan = makePan(deriveCardKeys(demoCardHashKeyHex).cardNumber, '62258812345678', 0);
    for (const url of [base, cluster.topology.units[0]!.url]) {
      const answer = await call(url, 'GET', `/v1/accounts/${pan}`);
      expect(answer.status).toBe(404);
      expect(JSON.stringify(answer.body)).not.toContain(pan);
      expect(answer.body.error.message).toContain(pan.slice(-4));
    }
  });

  it('a request that is not well-formed HTTP gets the JSON error body', async () => {
    for (const url of [base, cluster.topology.units[0]!.url]) {
      const { port } = new URL(url);
      const raw = await new Promise<string>((resolve, reject) => {
        const socket = connect(Number(port), '127.0.0.1', () => socket.write('POST /v1/accounts HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n'));
        let text = '';
        socket.on('data', (chunk) => (text += chunk.toString('latin1')));
        socket.on('end', () => resolve(text));
        socket.on('error', reject);
      });
      expect(raw.startsWith('HTTP/1.1 400 Bad Request\r\n')).toBe(true);
      const body = JSON.parse(raw.slice(raw.indexOf('\r\n\r\n') + 4));
      expect(body.error).toMatchObject({ code: 'MALFORMED_REQUEST', field: null });
    }
  });
});

describe("a unit's own routes refuse malformed input, change nothing and keep serving", () => {
  const unitUrl = () => cluster.topology.units[0]!.url;

  async function stillServing(): Promise<void> {
    expect((await call(unitUrl(), 'GET', '/healthz')).status).toBe(200);
  }

  it('a malformed %-escape in an account path', async () => {
    for (const path of ['/v1/accounts/%E0%A4%A', '/v1/accounts/%']) {
      const answer = await call(unitUrl(), 'GET', path);
      expect(answer.status).toBe(404);
      expect(answer.body.error).toMatchObject({ code: 'ACCOUNT_NOT_FOUND', field: 'accountId' });
    }
    await stillServing();
  });

  it('HA role changes that are not JSON or not well formed', async () => {
    const before = await journalEnds();
    const cases: Array<[unknown, number, string, string | null]> = [
      ['{', 400, 'INVALID_JSON', null],
      ['null', 400, 'INVALID_FIELD', null],
      [{ role: 'king', epoch: 1 }, 400, 'INVALID_FIELD', 'role'],
      [{ role: 'primary', epoch: 'x' }, 400, 'INVALID_FIELD', 'epoch'],
      [{ role: 'primary', epoch: 1, peerUrl: 5 }, 400, 'INVALID_FIELD', 'peerUrl'],
      [{ role: 'standby', epoch: 1, force: 'yes' }, 400, 'INVALID_FIELD', 'force'],
      [{ role: 'standby', epoch: 1, extra: 1 }, 400, 'UNKNOWN_FIELD', 'extra'],
      // Well formed, to a unit without an HA pair.
      [{ role: 'primary', epoch: 1 }, 409, 'NOT_STANDBY', null],
    ];
    for (const [body, status, code, field] of cases) {
      const answer = await call(unitUrl(), 'POST', '/ha/role', body as object);
      expect(answer.status).toBe(status);
      expect(answer.body.error).toMatchObject({ code, field });
    }
    expect(await journalEnds()).toEqual(before);
    await stillServing();
  });

  it('a clock advance past the range the simulated clock allows', async () => {
    const before = await journalEnds();
    const health = (await call(unitUrl(), 'GET', '/healthz')).body;
    const answer = await call(unitUrl(), 'POST', '/admin/clock', { advanceMs: Number.MAX_SAFE_INTEGER });
    expect(answer.status).toBe(400);
    expect(answer.body.error).toMatchObject({ code: 'INVALID_FIELD', field: 'advanceMs' });
    expect((await call(unitUrl(), 'GET', '/healthz')).body.nowMs - health.nowMs).toBeLessThan(60_000);
    expect(await journalEnds()).toEqual(before);
    // Authorizations go on as before.
    const auth = await call(base, 'POST', '/v1/authorizations', purchase(card, 100), { 'idempotency-key': freshKey() });
    expect(auth.body).toMatchObject({ approved: true, responseCode: '00' });
  });

  it('batch operations the engine could not apply are refused whole, before anything is written', async () => {
    const unit = cluster.topology.units.find((each) => each.id === authorizationId.split('~')[0])!;
    const before = await journalEnds();
    const openAccount = { op: 'openAccount', accountId: '62258800000042', product: 'classic', creditLimit: { value: 1_000, currency: 'CNY' } };
    const authorize = {
      op: 'authorize', idempotencyKey: freshKey(), pan: card.number, expiry: card.expiry, cvv: card.cvv, amount: { value: 100, currency: 'CNY' },
      type: 'purchase', channel: 'pos', merchant: { id: 'm-1', mcc: '5411', country: 'CN' }, partialAllowed: false,
    };
    const advice = {
      op: 'advice', idempotencyKey: freshKey(), authorizationId: `${unit.id}~vtest`, panHashHex: '0'.repeat(32), cvvHashHex: null, expiry: card.expiry,
      amount: { value: 100, currency: 'CNY' }, type: 'purchase', channel: 'pos', merchant: { id: 'm-1', mcc: '5411', country: 'CN' },
      partialAllowed: false, atMs: Date.now(), answer: '{"approved":true}',
    };
    const cases: Array<[string, object]> = [
      ['accountId', { ...openAccount, accountId: 'x' }],
      ['creditLimit', { ...openAccount, creditLimit: { value: 1_000, currency: 'USD' } }],
      ['creditLimit', { ...openAccount, creditLimit: { value: 10_000_000_000_000, currency: 'CNY' } }],
      ['accountId', { op: 'addCard', accountId: '12' }],
      ['card', { ...authorize, pan: 'not-a-card' }],
      ['card', { ...authorize, expiry: '11/29' }],
      ['merchant', { ...authorize, merchant: { id: 'm-1', mcc: '54', country: 'CN' } }],
      ['answer', { ...advice, answer: '{"approved":true}\n{"second":1}' }],
      ['answer', { ...advice, answer: 'approved' }],
      ['pan', { op: 'setCardStatus', pan: 'abc', status: 'blocked' }],
    ];
    for (const [field, op] of cases) {
      // A well-formed authorization rides in the same batch: a refused batch applies neither.
      const answer = await call(unit.url, 'POST', '/v1/batch', [JSON.stringify(authorize), JSON.stringify(op)].join('\n'));
      expect(answer.status).toBe(400);
      expect(answer.body.error).toMatchObject({ code: 'INVALID_FIELD', field });
    }
    expect(await journalEnds()).toEqual(before);
    await stillServing();
  });
});
