import { maskCardNumbers } from './pan.js';

// One error family with stable codes. Every error a caller can see carries one of
// these codes; the HTTP status is fixed per code.

export const errorCodes = {
  INVALID_JSON: { status: 400, meaning: 'the body is not valid JSON' },
  INVALID_FIELD: { status: 400, meaning: 'a field has the wrong type or an invalid value' },
  MISSING_FIELD: { status: 400, meaning: 'a required field is absent' },
  UNKNOWN_FIELD: { status: 400, meaning: 'the body has a field the API does not define' },
  INVALID_AMOUNT: { status: 400, meaning: 'an amount is zero, negative, fractional or absurdly large' },
  BODY_TOO_LARGE: { status: 413, meaning: 'the body exceeds the size limit' },
  MALFORMED_REQUEST: { status: 400, meaning: 'the request is not well-formed HTTP/1.1' },
  REQUEST_TIMEOUT: { status: 408, meaning: 'the request did not arrive whole in time' },
  HEADERS_TOO_LARGE: { status: 431, meaning: 'the request headers exceed the size limit' },
  UNSUPPORTED_MEDIA_TYPE: { status: 415, meaning: 'the body is not application/json' },
  NOT_FOUND: { status: 404, meaning: 'no such route' },
  METHOD_NOT_ALLOWED: { status: 405, meaning: 'the route does not accept this method' },
  ACCOUNT_NOT_FOUND: { status: 404, meaning: 'no account with this id' },
  AUTHORIZATION_NOT_FOUND: { status: 404, meaning: 'no authorization with this id' },
  CARD_NOT_FOUND: { status: 404, meaning: 'no card with this number' },
  AUTHORIZATION_CLOSED: { status: 409, meaning: 'the authorization is no longer open (reversed, expired or cleared)' },
  AMOUNT_EXCEEDS_HOLD: { status: 409, meaning: 'a partial reversal asks for more than the open hold' },
  CURRENCY_MISMATCH: { status: 400, meaning: 'the amount currency differs from the one the operation requires' },
  ACCOUNT_EXISTS: { status: 409, meaning: 'an account with this id exists already' },
  CARD_LIMIT_REACHED: { status: 409, meaning: 'the account has the maximum number of supplementary cards' },
  IDEMPOTENCY_KEY_REUSED: { status: 409, meaning: 'the idempotency key was used for a different request' },
  UNAUTHORIZED: { status: 401, meaning: 'the admin API needs the bearer token of ADMIN_TOKEN' },
  GRAY_PLAN_ACTIVE: { status: 409, meaning: 'a release plan is running or paused and the change would contradict it' },
  GRAY_NO_PLAN: { status: 409, meaning: 'no release plan is in the state the command needs' },
  GRAY_NO_INSTANCE: { status: 409, meaning: 'no unit runs a gray instance to promote, or one of them is down' },
  GRAY_STATE_CHANGED: { status: 409, meaning: 'the gray release changed since the caller read it (a promote sent twice?)' },
  GRAY_PLAN_ABORTED: { status: 409, meaning: 'the last release plan was aborted: promoting its release needs force and a reason' },
  NOT_PRIMARY: { status: 503, meaning: 'this copy of the unit is not its primary: it takes no writes' },
  NOT_STANDBY: { status: 409, meaning: 'the HA command needs a copy in another role' },
  STALE_EPOCH: { status: 409, meaning: 'the HA request comes from an older epoch than this copy has seen' },
  REPLICATION_GAP: { status: 409, meaning: 'replicated commits skip some this copy has not applied' },
  NOT_IN_SYNC: { status: 409, meaning: 'the standby is not in sync, so a planned switch would lose commits' },
  CHANNEL_OVERLOADED: { status: 429, meaning: 'the channel has its maximum number of requests in flight' },
  UNIT_UNAVAILABLE: { status: 503, meaning: 'the unit that owns the account cannot be reached' },
  INTERNAL: { status: 500, meaning: 'a bug: the server failed unexpectedly' },
} as const;

export type ErrorCode = keyof typeof errorCodes;

export interface ApiErrorBody {
  error: { code: ErrorCode; message: string; field: string | null };
}

/** An expected failure, returned as a value and turned into an HTTP answer at the edge. */
export class ApiError {
  readonly status: number;
  /** What the caller is told; a card number the message would echo (a path, an id) is masked. */
  readonly message: string;
  constructor(
    readonly code: ErrorCode,
    message: string,
    readonly field: string | null = null,
  ) {
    this.status = errorCodes[code].status;
    this.message = maskCardNumbers(message);
  }
  body(): ApiErrorBody {
    return { error: { code: this.code, message: this.message, field: this.field } };
  }
}
