import { parseArgs } from 'node:util';
import { request } from 'undici';
import { demoAdminToken } from '../gateway/gray-admin.js';

// `npm run gray -- <command>`: the operators' command line over the gateway's
// admin API (/admin/gray). Every change is recorded in the gateway's audit log
// with the operator's name and the reason given here.

const help = `Usage: npm run gray -- <command> [options]

Gray release of the DSU units, under live traffic, through the gateway's admin API.

Commands:
  status                 rules, each unit's instances and releases, configured vs
                         observed split, the running plan and its analyses
  set                    change the rules; options left out keep their value:
      --percent P          share of accounts on gray, 0..100 (two decimals at most)
      --cards N,N          whitelist of test card numbers (replaces the list; "" empties it)
      --accounts A,A       whitelist of account ids (replaces the list; "" empties it)
      --channels C,C       gray only on these channels (pos, atm, ecommerce, wallet; "" = all)
      --units U,U          gray only on these units ("" = all)
      --fallback F         stable (default) or reject: what a gray-tagged request does
                           when its unit has no gray instance up
  plan                   start a release plan; each step is gated by the analysis:
      --steps S,S,...      e.g. whitelist,1,5,25,50,100 ("whitelist" = whitelist only)
      --min-seconds N      each step lasts at least N seconds (default 30)
      --min-requests N     and until gray served N requests (default 500)
      --max-seconds N      a step still short of requests by then pauses the plan
                           as inconclusive (default 6 x min-seconds)
      --gates JSON         thresholds, e.g. '{"approvalRateDropMax":0.02}'
  pause | resume         pause the running plan (the split stays) or resume it
  abort                  instant rollback: gray percentage to 0, the plan aborted
  promote --release R    gray becomes stable on every unit with a gray instance; R is
                         the release the gray instances run (gray status shows it): run
                         again, the command finds R stable already and changes nothing.
                         Refused after an aborted plan unless --force (with --reason):
                         the audit log records the plan it overrode
  history [--limit N]    the audit log, newest first

Options for every command:
  --gateway URL          the gateway (default http://127.0.0.1:8080, or GATEWAY_URL)
  --token T              admin bearer token (default ADMIN_TOKEN, or the demo token
                         "${demoAdminToken}")
  --operator NAME        who makes the change, for the audit log (default $USER)
  --reason TEXT          why, for the audit log
  --json                 print the gateway's JSON answer as is
  --help                 this text

Order in which the gateway applies the rules to each request (first match decides):
  x-gray header (on|off), whitelist, channels, units, percentage of accounts.`;

const options = {
  gateway: { type: 'string' }, token: { type: 'string' }, operator: { type: 'string' }, reason: { type: 'string' },
  json: { type: 'boolean' }, help: { type: 'boolean' }, percent: { type: 'string' }, cards: { type: 'string' },
  accounts: { type: 'string' }, channels: { type: 'string' }, units: { type: 'string' }, fallback: { type: 'string' },
  steps: { type: 'string' }, 'min-seconds': { type: 'string' }, 'min-requests': { type: 'string' },
  'max-seconds': { type: 'string' }, gates: { type: 'string' }, limit: { type: 'string' }, release: { type: 'string' },
  force: { type: 'boolean' },
} as const;

type Values = ReturnType<typeof parseArgs<{ options: typeof options; allowPositionals: true }>>['values'];

function list(text: string): string[] {
  return text === '' ? [] : text.split(',').map((item) => item.trim());
}

function rulesBody(values: Values): Record<string, unknown> {
  const body: Record<string, unknown> = {};
  if (values.percent !== undefined) body['percent'] = Number(values.percent);
  if (values.cards !== undefined || values.accounts !== undefined) {
    body['whitelist'] = { cards: list(values.cards ?? ''), accounts: list(values.accounts ?? '') };
  }
  if (values.channels !== undefined) body['channels'] = list(values.channels);
  if (values.units !== undefined) body['units'] = list(values.units);
  if (values.fallback !== undefined) body['fallback'] = values.fallback;
  return body;
}

/** A flag's whole number; "5k" or "" is refused here rather than sent as null (which the server would read as absent). */
function wholeNumber(text: string, flag: string): number {
  if (!/^[0-9]+$/.test(text)) throw new Error(`${flag} must be a whole number, got "${text}"`);
  return Number(text);
}

function percentOf(text: string): number {
  if (!/^[0-9]+(\.[0-9]+)?$/.test(text)) throw new Error(`--steps holds "whitelist" and percentages, got "${text}"`);
  return Number(text);
}

function planBody(values: Values): Record<string, unknown> {
  if (values.steps === undefined) throw new Error('plan needs --steps, e.g. --steps whitelist,1,5,25,50,100');
  const minSeconds = wholeNumber(values['min-seconds'] ?? '30', '--min-seconds');
  const minRequests = wholeNumber(values['min-requests'] ?? '500', '--min-requests');
  const maxSeconds = values['max-seconds'] === undefined ? undefined : wholeNumber(values['max-seconds'], '--max-seconds');
  const steps = list(values.steps).map((step) => ({
    ...(step === 'whitelist' ? { whitelistOnly: true } : { percent: percentOf(step) }),
    minSeconds, minRequests, ...(maxSeconds === undefined ? {} : { maxSeconds }),
  }));
  return { steps, ...(values.gates === undefined ? {} : { gates: JSON.parse(values.gates) as unknown }) };
}

const routes: Record<string, { method: 'GET' | 'PUT' | 'POST'; path: string }> = {
  status: { method: 'GET', path: '/admin/gray' },
  set: { method: 'PUT', path: '/admin/gray' },
  plan: { method: 'POST', path: '/admin/gray/plans' },
  pause: { method: 'POST', path: '/admin/gray/pause' },
  resume: { method: 'POST', path: '/admin/gray/resume' },
  abort: { method: 'POST', path: '/admin/gray/abort' },
  promote: { method: 'POST', path: '/admin/gray/promote' },
  history: { method: 'GET', path: '/admin/gray/history' },
};

async function main(): Promise<void> {
  const { values, positionals } = parseArgs({ options, allowPositionals: true });
  const command = positionals[0];
  if (values.help === true || command === undefined) {
    process.stdout.write(help + '\n');
    process.exit(values.help === true ? 0 : 2);
  }
  const route = routes[command];
  if (route === undefined) throw new Error(`unknown command "${command}"; see --help`);
  let body: Record<string, unknown> | undefined;
  if (command === 'set') body = rulesBody(values);
  else if (command === 'plan') body = planBody(values);
  else if (route.method === 'POST') body = {};
  if (body !== undefined && values.reason !== undefined) body['reason'] = values.reason;
  const base = values.gateway ?? process.env['GATEWAY_URL'] ?? 'http://127.0.0.1:8080';
  const headers = {
    authorization: `Bearer ${values.token ?? process.env['ADMIN_TOKEN'] ?? demoAdminToken}`,
    'x-operator': values.operator ?? process.env['USER'] ?? 'admin',
  };
  if (command === 'promote') {
    // The release to make stable is named: the command run again (its answer lost) finds
    // that release stable already and is refused, instead of swapping the instances back.
    if (values.release === undefined) throw new Error('promote needs --release NAME, the release the gray instances run (see gray status)');
    (body as Record<string, unknown>)['release'] = values.release;
    if (values.force === true) (body as Record<string, unknown>)['force'] = true;
  }
  const path = command === 'history' ? `${route.path}?limit=${values.limit ?? '20'}` : route.path;
  const response = await request(base + path, {
    method: route.method,
    headers: { ...headers, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  const text = await response.body.text();
  if (values.json === true || response.statusCode !== 200) {
    process.stdout.write(text + '\n');
  } else {
    process.stdout.write(summarize(command, JSON.parse(text) as Record<string, unknown>) + '\n');
  }
  if (response.statusCode !== 200) process.exit(1);
}

/** A short human reading of the answer; --json gives all of it. */
function summarize(command: string, answer: Record<string, unknown>): string {
  if (command === 'history') {
    const entries = answer['entries'] as Array<{ seq: number; at: string; who: string; action: string; reason: string; after: unknown }>;
    return entries.map((entry) => `#${entry.seq} ${entry.at} ${entry.who} ${entry.action}${entry.reason === '' ? '' : ` (${entry.reason})`} -> ${JSON.stringify(entry.after)}`).join('\n') || '(no changes yet)';
  }
  const status = (command === 'status' ? answer : answer['status']) as Record<string, unknown>;
  const lines = [`rules: ${JSON.stringify(status['rules'])}`, `split: ${JSON.stringify(status['split'])}`];
  const plan = status['plan'] as { id: number; state: string; step: number; steps: unknown[]; note: string } | null;
  lines.push(plan === null ? 'plan: none' : `plan ${plan.id}: ${plan.state}, step ${plan.step} of ${plan.steps.length}${plan.note === '' ? '' : ` (${plan.note})`}`);
  const instances = answer['instances'] as Array<{ unit: string; stable: { release: string | null; up: boolean } | null; gray: { release: string | null; up: boolean } | null }> | undefined;
  for (const unit of instances ?? []) {
    const show = (instance: { release: string | null; up: boolean } | null): string => (instance === null ? 'none' : `${instance.release ?? '?'}${instance.up ? '' : ' (down)'}`);
    lines.push(`${unit.unit}: stable ${show(unit.stable)}, gray ${show(unit.gray)}`);
  }
  return lines.join('\n');
}

main().catch((error: unknown) => {
  process.stderr.write(`gray: ${error instanceof Error ? error.message : String(error)}\n`);
  process.exit(1);
});
