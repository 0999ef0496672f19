import { createServer } from 'node:http';
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { PortfolioCard } from '../loadtest/cards.js';
import { connectPaced, sendPaced } from '../loadtest/paced-sender.js';
import type { PacedAnswer } from '../loadtest/paced-sender.js';
import { outstandingMaxOf, runPhase } from '../loadtest/runner.js';
import type { SecondBucket } from '../loadtest/run-result.js';
import { createWorkload } from '../loadtest/workload.js';
import { withConnectsThatNeverComplete } from './helpers.js';
import type { LoadRequest, Workload } from '../loadtest/workload.js';

// The fixed-rate engine against a real HTTP server on port 0. The server
// records when each request arrived and answers like a gateway after a delay
// the test sets, so spacing, counts and both latency measures can be checked.

const answerBody = JSON.stringify({ authorizationId: 'dsu-1~x', approved: true, responseCode: '00', unit: 'dsu-1' });

/** Timers in Node may fire up to a millisecond before their delay (cached loop time). */
const timerSlackMs = 1;

interface FakeGateway {
  url: string;
  delayMs: number;
  arrivalsMs: number[];
}

const gateway: FakeGateway = { url: '', delayMs: 0, arrivalsMs: [] };
let server: Server;

function answer(request: IncomingMessage, response: ServerResponse): void {
  gateway.arrivalsMs.push(performance.now());
  request.resume();
  request.on('end', () => {
    setTimeout(() => {
      response.writeHead(200, { 'content-type': 'application/json' });
      response.end(answerBody);
    }, gateway.delayMs);
  });
}

beforeAll(async () => {
  server = createServer(answer);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  gateway.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterAll(async () => {
  server.closeAllConnections();
  await new Promise<void>((resolve, reject) => server.close((error) => (error === undefined ? resolve() : reject(error))));
});

beforeEach(() => {
  gateway.delayMs = 0;
  gateway.arrivalsMs = [];
});

function makeCards(count: number): PortfolioCard[] {
  return Array.from({ length: count }, (_, i) => ({
    accountId: String(62258800000000 + i),
    unit: `dsu-${1 + (i % 4)}`,
    pan: String(6225880000000000 + i * 10),
    expiry: '2029-11',
    cvv: String(100 + (i % 900)),
    creditLimit: { value: 5_000_000, currency: 'CNY' },
    product: 'classic',
  }));
}

const cards = makeCards(50);

/** The real workload model, counting what it is told. */
function countingWorkload(seed: number): { workload: Workload; observed: Map<number, number> } {
  const model = createWorkload({ cards, seed, keyPrefix: `paced-${seed}` });
  const observed = new Map<number, number>();
  const workload: Workload = {
    next: () => model.next(),
    observe: (request, status, body) => {
      observed.set(status, (observed.get(status) ?? 0) + 1);
      model.observe(request, status, body);
    },
    reconfigure: (overrides) => model.reconfigure(overrides),
  };
  return { workload, observed };
}

/** The median gap between consecutive arrivals. */
function medianGapMs(arrivalsMs: readonly number[]): number {
  const sorted = [...arrivalsMs].sort((a, b) => a - b);
  const gaps = sorted.slice(1).map((at, i) => at - (sorted[i] as number)).sort((a, b) => a - b);
  return gaps[Math.floor(gaps.length / 2)] as number;
}

describe('fixed-rate phase (paced sender)', () => {
  it('sends rate * duration requests, evenly spaced, and measures from the intended time', async () => {
    gateway.delayMs = 5;
    const { workload, observed } = countingWorkload(1);
    const seconds: SecondBucket[] = [];
    const rate = 400;
    const phase = await runPhase({
      url: gateway.url, workload, mode: 'rate', rate, connections: 8, durationSeconds: 2, name: 'paced',
      onSecond: (bucket) => seconds.push(bucket),
    });
    const planned = rate * 2;
    const { totals } = phase;
    expect(Math.abs(totals.sent - planned)).toBeLessThanOrEqual(planned * 0.03);
    expect(gateway.arrivalsMs.length).toBe(totals.sent);
    expect(totals.completed).toBe(totals.sent);
    expect(totals.errors).toEqual({ connection: 0, timeout: 0, non2xx: 0 });
    expect(observed.get(200)).toBe(totals.completed);
    // Evenly spaced: the typical gap between arrivals is the schedule's 2.5 ms. (A
    // window count would fail on a loaded machine, where a stalled timer makes the
    // sender catch up at once, as a fixed-rate sender must.)
    expect(medianGapMs(gateway.arrivalsMs)).toBeGreaterThanOrEqual(1000 / rate / 2);
    expect(medianGapMs(gateway.arrivalsMs)).toBeLessThanOrEqual(1000 / rate * 1.5);
    expect(seconds.map((bucket) => bucket.sent)).toEqual([rate, rate]);
    expect(totals.throughputMedian).toBeGreaterThanOrEqual(rate * 0.97);
    // Both measures include the server's delay; the corrected one never less than the raw one.
    expect(totals.latencyRawMs.p50).toBeGreaterThanOrEqual(gateway.delayMs - timerSlackMs);
    expect(totals.latencyMs.p50).toBeGreaterThanOrEqual(totals.latencyRawMs.p50);
    expect(totals.latencyMs.count).toBe(totals.completed);
    expect(totals.correctionSamples).toBe(0);
    expect(totals.byUnit['dsu-1']?.requests).toBe(totals.completed);
    expect(totals.responseCodes).toEqual({ '00': totals.completed });
  });

  it('shows coordinated omission: a slow server makes the corrected p99 outgrow the raw p99', async () => {
    // Two connections at 20 ms serve 100 requests a second; 200 are due.
    gateway.delayMs = 20;
    const { workload } = countingWorkload(2);
    const phase = await runPhase({ url: gateway.url, workload, mode: 'rate', rate: 200, connections: 2, durationSeconds: 1 });
    const { totals } = phase;
    expect(totals.sent).toBe(200);
    expect(totals.completed).toBe(200);
    expect(totals.latencyRawMs.p99).toBeGreaterThanOrEqual(gateway.delayMs - timerSlackMs);
    expect(totals.latencyRawMs.p99).toBeLessThan(100);
    // The last requests waited behind a backlog of about 100 requests, i.e. about a second.
    expect(totals.latencyMs.p99).toBeGreaterThan(4 * totals.latencyRawMs.p99);
    expect(totals.latencyMs.p99).toBeGreaterThan(500);
  });

  it('bounds the requests outstanding and reports the ones it could not send as timeouts', async () => {
    // One connection at 50 ms serves 20 a second; 200 are due; the bound is 0.25 s * 200 = 50.
    gateway.delayMs = 50;
    const { workload } = countingWorkload(3);
    const rate = 200;
    const timeoutSeconds = 0.25;
    const outstandingMax = outstandingMaxOf(rate, timeoutSeconds);
    expect(outstandingMax).toBe(50);
    const phase = await runPhase({ url: gateway.url, workload, mode: 'rate', rate, connections: 1, durationSeconds: 1, timeoutSeconds });
    const { totals } = phase;
    // Every due request is accounted for: answered, or a timeout (refused at the bound, or abandoned at the end).
    expect(totals.completed + totals.errors.timeout + totals.errors.connection).toBe(rate);
    expect(totals.sent).toBeLessThanOrEqual(outstandingMax + totals.completed);
    expect(totals.errors.timeout).toBeGreaterThan(rate / 2);
    // The requests without an answer count in the corrected latency at the timeout, at least:
    // more than half of them had none, so the median is there, not at a healthy answer's latency.
    expect(totals.latencyMs.count).toBe(rate);
    expect(totals.latencyMs.p50).toBeGreaterThanOrEqual(timeoutSeconds * 1000 - 1);
  });

  it('counts answers that arrive after the planned end in the totals, not in the last second', async () => {
    // Every answer takes 600 ms: a third of them arrive after the 2 s the phase lasts.
    gateway.delayMs = 600;
    const { workload } = countingWorkload(5);
    const phase = await runPhase({ url: gateway.url, workload, mode: 'rate', rate: 100, connections: 100, durationSeconds: 2, timeoutSeconds: 3 });
    const { totals } = phase;
    expect(totals.completed).toBe(200);
    const perSecond = phase.seconds.map((second) => second.completed);
    expect(perSecond.reduce((sum, count) => sum + count, 0)).toBeLessThan(200);
    // No second shows more answers than were sent in a second.
    expect(totals.throughputMax).toBeLessThanOrEqual(100 + 5);
    expect(totals.latencyMs.count).toBe(200);
  });

  it('hands each answer to the sink with its intended and written times', async () => {
    gateway.delayMs = 3;
    const { workload } = countingWorkload(4);
    const answers: { intendedMs: number; writtenMs: number; nowMs: number; status: number; body: string; request: LoadRequest }[] = [];
    let sent = 0;
    const clock = (): number => performance.now();
    const client = await connectPaced({ url: gateway.url, connections: 4, timeoutSeconds: 2, clock });
    const run = sendPaced({
      client, rate: 100, durationSeconds: 1, outstandingMax: 200,
      startMs: clock(), clock, source: workload,
      sink: {
        sent: () => { sent += 1; },
        failed: (_nowMs, kind) => { throw new Error(`unexpected ${kind}`); },
        answered: (answer: PacedAnswer, nowMs: number) => {
          answers.push({ intendedMs: answer.intendedMs, writtenMs: answer.writtenMs, nowMs, status: answer.status, body: answer.bodyText(), request: answer.request });
        },
      },
    });
    const stats = await run.done;
    expect(stats).toEqual({ due: 100, sent: 100, refused: 0, answered: 100, failed: 0, abandoned: 0 });
    expect(sent).toBe(100);
    for (const answer of answers) {
      expect(answer.status).toBe(200);
      expect(answer.body).toBe(answerBody);
      expect(answer.writtenMs).toBeGreaterThanOrEqual(answer.intendedMs);
      expect(answer.nowMs - answer.writtenMs).toBeGreaterThanOrEqual(gateway.delayMs - timerSlackMs);
    }
    // Intended times are exactly 10 ms apart, in sending order.
    const intended = answers.map((answer) => answer.intendedMs).sort((a, b) => a - b);
    for (let index = 1; index < intended.length; index += 1) expect(intended[index]! - intended[index - 1]!).toBeCloseTo(10, 6);
    expect(new Set(answers.map((answer) => answer.request.seq)).size).toBe(100);
  });

  it('stops a phase aborted while its connections open, sending nothing', async () => {
    // Only the abort or the 10 s timeout ends the wait, and a request sent on a
    // connection still opening would wait out its own timeout after the abort.
    await withConnectsThatNeverComplete(async () => {
      const controller = new AbortController();
      setTimeout(() => controller.abort(), 100);
      const arrivalsBefore = gateway.arrivalsMs.length;
      const startedMs = performance.now();
      const phase = await runPhase({ url: gateway.url, workload: countingWorkload(7).workload, mode: 'rate', rate: 100, connections: 2, durationSeconds: 5, signal: controller.signal });
      expect(performance.now() - startedMs).toBeLessThan(3_000);
      expect(phase.totals.sent).toBe(0);
      expect(gateway.arrivalsMs.length).toBe(arrivalsBefore);
    });
  });
});
