import type { IncomingMessage, ServerResponse } from 'node:http';
import { ApiError } from '../domain/errors.js';
import { parsePlan } from '../domain/gray-plan.js';
import { parseReason, parseRulesUpdate } from '../domain/gray.js';
import { parseJsonObject, readBody, sendError, sendJson } from '../domain/http-util.js';
import type { AdminAuth } from './admin-auth.js';
import type { Actor, GrayController } from './gray-controller.js';

// The operators' HTTP API for gray release, under /admin/gray, guarded by a
// bearer token. A request without the token, or with another one, gets 401 and
// changes nothing; the token is compared in constant time.
//
//   GET  /admin/gray             rules, per-unit instances, configured vs observed split, plan
//   PUT  /admin/gray             {"percent", "whitelist": {"cards", "accounts"}, "channels", "units", "fallback", "reason"}
//   POST /admin/gray/plans       {"steps": [...], "gates": {...}, "reason"} starts a release plan
//   POST /admin/gray/pause       pauses the running plan (the split stays as it is)
//   POST /admin/gray/resume      resumes a paused plan at its current step
//   POST /admin/gray/promote     gray becomes stable on every unit with a gray instance
//   POST /admin/gray/abort       the percentage goes to zero at once; a plan is aborted
//   GET  /admin/gray/history     the audit log, newest first (?limit=&after=)
//
// Who made a change comes from the x-operator header (default "admin"), why
// from the body's "reason".

export { demoAdminToken } from './admin-auth.js';
const adminBodyBytesMax = 256 * 1024;
const historyEntriesMax = 1_000;

export interface InstanceView {
  unit: string;
  stable: object | null;
  gray: object | null;
}

export class GrayAdmin {
  constructor(
    private readonly controller: GrayController,
    private readonly auth: AdminAuth,
    private readonly unitIds: readonly string[],
    private readonly hashCard: (pan: string) => string,
    private readonly instances: () => Promise<InstanceView[]>,
  ) {}

  async handle(request: IncomingMessage, response: ServerResponse, method: string, path: string, query: URLSearchParams): Promise<void> {
    if (!this.auth.admit(request, response)) return;
    const who = operatorOf(request.headers['x-operator']);
    if (who instanceof ApiError) {
      request.resume();
      return sendError(response, who);
    }
    if (method === 'GET' && path === '/admin/gray') {
      return sendJson(response, 200, { ...this.controller.status(), instances: await this.instances() });
    }
    if (method === 'GET' && path === '/admin/gray/history') return this.history(response, query);
    if (method !== 'PUT' && method !== 'POST') {
      request.resume();
      return sendError(response, new ApiError('METHOD_NOT_ALLOWED', `no route ${method} ${path}`, null));
    }
    const body = await readJsonBody(request);
    if (body instanceof ApiError) return sendError(response, body);
    if (method === 'POST' && path === '/admin/gray/promote' && body['release'] !== undefined) {
      const checked = await this.checkPromotedRelease(body['release']);
      if (checked instanceof ApiError) return sendError(response, checked);
      delete body['release'];
    }
    const outcome = this.command(method, path, body, who);
    if (outcome instanceof ApiError) return sendError(response, outcome);
    sendJson(response, 200, { change: outcome, status: this.controller.status() });
  }

  private command(method: string, path: string, body: Record<string, unknown>, who: string): object | ApiError {
    const controller = this.controller;
    if (method === 'PUT' && path === '/admin/gray') {
      const update = parseRulesUpdate(body, controller.rules, this.unitIds, this.hashCard);
      if (update instanceof ApiError) return update;
      return controller.updateRules(update.rules, { who, reason: update.reason });
    }
    if (method === 'POST' && path === '/admin/gray/plans') {
      const spec = parsePlan(body);
      if (spec instanceof ApiError) return spec;
      return controller.startPlan(spec, { who, reason: spec.reason });
    }
    const commands: Record<string, (actor: Actor) => object | ApiError> = {
      '/admin/gray/pause': (actor) => controller.pause(actor),
      '/admin/gray/resume': (actor) => controller.resume(actor),
      '/admin/gray/promote': (actor) => controller.promote(actor),
      '/admin/gray/abort': (actor) => controller.abort(actor),
    };
    const run = method === 'POST' ? commands[path] : undefined;
    if (run === undefined) return new ApiError('NOT_FOUND', `no route ${method} ${path}`, null);
    const promote = path === '/admin/gray/promote';
    for (const key of Object.keys(body)) {
      if (key !== 'reason' && !(promote && (key === 'expectPromotedUnits' || key === 'force'))) return new ApiError('UNKNOWN_FIELD', `unknown field "${key}"`, key);
    }
    const reason = parseReason(body['reason']);
    if (reason instanceof ApiError) return reason;
    if (promote) {
      const expected = body['expectPromotedUnits'];
      if (expected !== undefined && (!Array.isArray(expected) || !expected.every((unitId) => typeof unitId === 'string' && this.unitIds.includes(unitId)))) {
        return new ApiError('INVALID_FIELD', 'expectPromotedUnits is the list of unit ids promoted before this promote (GET /admin/gray: promotedUnits)', 'expectPromotedUnits');
      }
      const force = body['force'];
      if (force !== undefined && typeof force !== 'boolean') return new ApiError('INVALID_FIELD', 'force is true or false', 'force');
      return controller.promote({ who, reason }, expected === undefined ? null : (expected as string[]), force === true);
    }
    return run({ who, reason });
  }

  /**
   * A promote that names the release it makes stable: every gray instance must run it
   * (and answer), and a release already stable everywhere is a promote done before (a
   * command run again after its answer was lost), refused rather than swapped back.
   */
  private async checkPromotedRelease(release: unknown): Promise<true | ApiError> {
    if (typeof release !== 'string' || release.length === 0 || release.length > 100) return new ApiError('INVALID_FIELD', 'release is the name of the release to make stable', 'release');
    const views = (await this.instances()) as Array<{ unit: string; stable: { release?: string | null } | null; gray: { up?: boolean; release?: string | null } | null }>;
    const withGray = views.filter((view) => view.gray !== null);
    if (withGray.length > 0 && withGray.every((view) => view.stable?.release === release)) {
      return new ApiError('GRAY_STATE_CHANGED', `release ${release} is stable already: nothing was changed`, 'release');
    }
    const other = withGray.filter((view) => view.gray?.up !== true || view.gray.release !== release).map((view) => `${view.unit} (${view.gray?.up === true ? view.gray.release : 'down'})`);
    if (other.length > 0) return new ApiError('GRAY_NO_INSTANCE', `the gray instances do not all run ${release}: ${other.join(', ')}`, 'release');
    return true;
  }

  private history(response: ServerResponse, query: URLSearchParams): void {
    const limit = Number(query.get('limit') ?? '100');
    const after = Number(query.get('after') ?? '0');
    if (!Number.isInteger(limit) || limit < 1 || limit > historyEntriesMax) return sendError(response, new ApiError('INVALID_FIELD', `limit is 1..${historyEntriesMax}`, 'limit'));
    if (!Number.isSafeInteger(after) || after < 0) return sendError(response, new ApiError('INVALID_FIELD', 'after is a non-negative integer', 'after'));
    sendJson(response, 200, { entries: this.controller.history(limit, after) });
  }

}

export function operatorOf(header: string | string[] | undefined): string | ApiError {
  if (header === undefined) return 'admin';
  if (typeof header !== 'string' || !/^[\w.@-]{1,64}$/.test(header)) {
    return new ApiError('INVALID_FIELD', 'x-operator is 1..64 letters, digits and . _ @ -', 'x-operator');
  }
  return header;
}

export async function readJsonBody(request: IncomingMessage): Promise<Record<string, unknown> | ApiError> {
  const type = request.headers['content-type'];
  if (type !== undefined && !type.startsWith('application/json')) {
    request.resume();
    return new ApiError('UNSUPPORTED_MEDIA_TYPE', 'send the body as application/json', null);
  }
  const read = await readBody(request, adminBodyBytesMax);
  if (!read.ok) return read.error;
  if (read.body.length === 0) return {};
  return parseJsonObject(read.body);
}
