import { spawn } from 'node:child_process';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { deriveCardKeys, demoCardHashKeyHex } from '../domain/card-protect.js';
import { makePan } from '../domain/pan.js';
import { copyUrlOf, isLoopbackUrl, validateKillUnitArgs } from '../loadtest/ha-hooks.js';
import { getHookAction, runHook } from '../loadtest/hooks.js';

// The kill-unit hook without a cluster: its argument checks (table-driven), the
// choice of the copy from the gateway's view, and its refusals, against small
// fake servers on port 0 that answer like a gateway and a unit copy.

describe('kill-unit args', () => {
  const cases: Array<[Record<string, unknown>, RegExp | null]> = [
    [{ unit: 'dsu-1' }, null],
    [{ unit: 'dsu-1', copy: 'standby' }, null],
    [{ unit: 'dsu-1', signal: 'SIGSTOP' }, null],
    [{ unit: 'dsu-1', signal: 'SIGSTOP', resumeAfterMs: 1500, waitSwitchMs: 3000 }, null],
    [{ unit: 'dsu-1', waitSwitchMs: 20_000, timeoutMs: 21_000 }, null],
    [{}, /args\.unit must be a unit id/],
    [{ unit: 'DSU 1' }, /args\.unit must be a unit id/],
    [{ unit: 'dsu-1', copy: 'both' }, /args\.copy must be one of primary, standby/],
    [{ unit: 'dsu-1', signal: 'SIGTERM' }, /args\.signal must be one of SIGKILL, SIGSTOP/],
    [{ unit: 'dsu-1', resumeAfterMs: 100 }, /resumeAfterMs goes with signal "SIGSTOP" only/],
    [{ unit: 'dsu-1', signal: 'SIGSTOP', resumeAfterMs: 0 }, /resumeAfterMs must be an integer in \[1, 30000\]/],
    [{ unit: 'dsu-1', signal: 'SIGSTOP', resumeAfterMs: 1.5 }, /resumeAfterMs must be an integer/],
    [{ unit: 'dsu-1', copy: 'standby', waitSwitchMs: 100 }, /waitSwitchMs goes with copy "primary" only/],
    [{ unit: 'dsu-1', waitSwitchMs: 60_000 }, /waitSwitchMs must be an integer in \[1, 30000\]/],
    [{ unit: 'dsu-1', waitSwitchMs: 20_000 }, /set args\.timeoutMs to at least 21000/],
    [{ unit: 'dsu-1', signal: 'SIGSTOP', resumeAfterMs: 12_000 }, /set args\.timeoutMs to at least 13000/],
    [{ unit: 'dsu-1', pid: 1 }, /args\.pid is not a field of this action/],
  ];
  it.each(cases)('%j -> %s', (args, expected) => {
    const problem = validateKillUnitArgs(args);
    if (expected === null) expect(problem).toBeNull();
    else expect(problem).toMatch(expected);
  });

  it('is registered by default with its checks', () => {
    expect(getHookAction('kill-unit')?.validateArgs).toBe(validateKillUnitArgs);
  });
});

describe('kill-unit target', () => {
  it.each([
    ['http://127.0.0.1:8101', true], ['http://127.3.2.1:1', true], ['http://localhost:8080', true], ['http://[::1]:8080', true],
    ['http://10.0.0.5:8101', false], ['http://192.168.1.2:8101', false], ['http://example.invalid:8080', false], ['http://127.0.0.1.example.invalid', false],
  ])('%s is loopback: %s', (url, loopback) => {
    expect(isLoopbackUrl(url)).toBe(loopback);
  });

  const view = {
    units: [
      { unit: 'dsu-1', state: 'up', primary: 'http://127.0.0.1:8301', copies: [{ url: 'http://127.0.0.1:8101' }, { url: 'http://127.0.0.1:8301' }] },
      { unit: 'dsu-2', state: 'down', primary: null, copies: [{ url: 'http://127.0.0.1:8102' }, { url: 'http://127.0.0.1:8302' }] },
    ],
    switches: [],
  };

  it('picks the primary or the other copy from GET /admin/ha, and names what is missing', () => {
    expect(copyUrlOf(view, 'dsu-1', 'primary')).toBe('http://127.0.0.1:8301');
    expect(copyUrlOf(view, 'dsu-1', 'standby')).toBe('http://127.0.0.1:8101');
    expect(() => copyUrlOf(view, 'dsu-2', 'primary')).toThrow(/dsu-2 is down with no primary/);
    expect(() => copyUrlOf(view, 'dsu-3', 'primary')).toThrow(/unit dsu-3 has no standby: the gateway runs no HA pair for it \(HA units: dsu-1, dsu-2\)/);
    expect(() => copyUrlOf({ units: [], switches: [] }, 'dsu-1', 'primary')).toThrow(/HA units: none\); start the cluster with npm start -- --ha/);
  });
});

describe('kill-unit refusals', () => {
  let copyPid = process.pid;
  let haUnits: object[] = [];
  let gateway: Server;
  let copy: Server;
  let gatewayUrl = '';
  let copyUrl = '';
  const sleeper = spawn('sleep', ['30'], { stdio: 'ignore' });

  const listen = async (server: Server): Promise<string> => {
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  };

  beforeAll(async () => {
    gateway = createServer((request, response) => {
      response.setHeader('content-type', 'application/json');
      response.end(JSON.stringify({ units: haUnits, switches: [] }));
    });
    copy = createServer((request, response) => {
      response.setHeader('content-type', 'application/json');
      response.end(JSON.stringify({ unit: 'dsu-1', pid: copyPid, role: 'primary' }));
    });
    gatewayUrl = await listen(gateway);
    copyUrl = await listen(copy);
  });

  afterAll(async () => {
    sleeper.kill('SIGKILL');
    await Promise.all([gateway, copy].map((server) => new Promise((resolve) => server.close(resolve))));
  });

  const kill = (url: string) => runHook({ atSecond: 3, action: 'kill-unit', args: { unit: 'dsu-1' } }, url, () => {});

  it('fails with a clear message on a cluster without HA pairs', async () => {
    haUnits = [];
    const record = await kill(gatewayUrl);
    expect(record).toMatchObject({ ok: false, action: 'kill-unit', atSecond: 3 });
    expect(record.detail).toMatch(/unit dsu-1 has no standby/);
  });

  it('refuses a gateway that is not on this machine, before sending anything', async () => {
    const record = await kill('http://example.invalid:8080');
    expect(record.ok).toBe(false);
    expect(record.detail).toMatch(/signals processes on this machine only, and the gateway is at http:\/\/example\.invalid:8080/);
  });

  it('refuses a pid that is not a unit process', async () => {
    haUnits = [{ unit: 'dsu-1', state: 'up', primary: copyUrl, copies: [{ url: copyUrl }, { url: 'http://127.0.0.1:1' }] }];
    copyPid = process.pid;
    expect((await kill(gatewayUrl)).detail).toMatch(/reports pid \d+, not a unit process/);
    copyPid = sleeper.pid as number;
    expect((await kill(gatewayUrl)).detail).toMatch(/is not a DSU unit process \(sleep 30/);
    expect(sleeper.exitCode).toBeNull();
    expect(sleeper.signalCode).toBeNull();
  });
});

describe('the http hook', () => {
  it('keeps no card number or CVV of the answer in its report line', async () => {
    const pan = makePan(deriveCardKeys(demoCardHashKeyHex).cardNumber, '62258800000077', 0);
    const server = createServer((request, response) => {
      response.writeHead(201, { 'content-type': 'application/json' });
      if (request.url?.includes('short') === true) {
        response.end(JSON.stringify({ card: { number: pan, expiry: '2029-11', cvv: '123' } }));
        return;
      }
      // Padded so that the report's 200 characters end in the middle of the card number.
      response.end(`{"pad":"${'x'.repeat(164)}","card":{"number":"${pan}","expiry":"2029-11","cvv":"123"},"second":{"number":"${pan}","cvv":"456"}}`);
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    try {
      const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
      const record = await runHook({ atSecond: 0, action: 'http', args: { url: '/v1/accounts', body: { creditLimit: { value: 1, currency: 'CNY' } }, expectStatus: 201 } }, url, () => {});
      expect(record.ok).toBe(true);
      expect(record.detail).toContain('622588**');
      expect(record.detail).not.toContain(pan.slice(0, 8));
      // A second card, short of the cut, would have been written whole.
      const short = await runHook({ atSecond: 0, action: 'http', args: { url: '/v1/accounts?short=1' } }, url, () => {});
      expect(short.detail).not.toContain('"cvv":"123"');
    } finally {
      await new Promise((resolve) => server.close(resolve));
    }
  });
});
