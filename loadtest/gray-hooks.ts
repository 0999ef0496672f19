import { adminHeaders } from './admin-request.js';
import { registerHookAction, unknownArg, type HookContext } from './hooks.js';

// Hook actions for gray release, over the gateway's admin API (/admin/gray):
//   gray        PUT the rules: args {percent?, whitelist?, channels?, units?, fallback?, reason?}
//   gray-plan   start a release plan: args {steps, gates?, reason?}
//   gray-abort  instant rollback: args {reason?}
// The bearer token comes from ADMIN_TOKEN, or the demo token when it is unset,
// the same default as the gateway's. Each hook fails (and the report shows it)
// unless the gateway answers 200.

const ruleFields = ['percent', 'whitelist', 'channels', 'units', 'fallback', 'reason'];

async function callAdmin(method: 'PUT' | 'POST', path: string, body: Readonly<Record<string, unknown>>, context: HookContext): Promise<string> {
  const response = await fetch(new URL(path, context.gatewayUrl), {
    method, signal: context.signal, body: JSON.stringify(body),
    headers: { ...adminHeaders(), 'content-type': 'application/json' },
  });
  const text = await response.text();
  if (response.status !== 200) throw new Error(`${method} ${path} -> ${response.status} ${text.slice(0, 300)}`);
  const status = (JSON.parse(text) as { status?: { rules?: { percent?: number } } }).status;
  return `${method} ${path} -> 200, gray ${status?.rules?.percent ?? '?'}%`;
}

function withoutTimeout(args: Readonly<Record<string, unknown>>): Record<string, unknown> {
  const { timeoutMs: _timeout, ...rest } = args;
  return rest;
}

registerHookAction('gray', {
  description: 'set gray release rules (PUT /admin/gray): args {percent?, whitelist?: {cards, accounts}, channels?, units?, fallback?, reason?}',
  validateArgs: (args) => {
    const unknown = unknownArg(args, ruleFields);
    if (unknown !== null) return unknown;
    const percent = args['percent'];
    return percent === undefined || (typeof percent === 'number' && percent >= 0 && percent <= 100) ? null : 'args.percent is 0..100';
  },
  run: (args, context) => callAdmin('PUT', '/admin/gray', withoutTimeout(args), context),
});

registerHookAction('gray-plan', {
  description: 'start a gray release plan (POST /admin/gray/plans): args {steps: [{percent | whitelistOnly, minSeconds, minRequests, maxSeconds}], gates?, reason?}',
  validateArgs: (args) => unknownArg(args, ['steps', 'gates', 'reason']) ?? (Array.isArray(args['steps']) ? null : 'args.steps is an array'),
  run: (args, context) => callAdmin('POST', '/admin/gray/plans', withoutTimeout(args), context),
});

registerHookAction('gray-abort', {
  description: 'abort gray release: the percentage goes to 0 at once (POST /admin/gray/abort): args {reason?}',
  validateArgs: (args) => unknownArg(args, ['reason']),
  run: (args, context) => callAdmin('POST', '/admin/gray/abort', withoutTimeout(args), context),
});
