import { ApiError } from '../domain/errors.js';
import { limits } from '../domain/limits.js';
import type { Money } from '../domain/money.js';
import type { ResultLine } from '../domain/protocol.js';

// Account opening at the gateway: draw an account id under the product's IIN,
// send it to the unit the ring names, and draw again if that id exists already.
// Requests of one call go out together, so a bulk issuance batches per unit.

export interface AccountOpener {
  drawAccountId(product: string): string;
  router: { unitOfAccount(accountId: string): string };
  call(unitId: string, op: { op: 'openAccount'; accountId: string; product: string; creditLimit: Money }): Promise<ResultLine | null>;
}

export interface OpenOutcome {
  status: number;
  body: string;
}

export async function openAccounts(gateway: AccountOpener, requests: ReadonlyArray<{ creditLimit: Money; product: string }>): Promise<OpenOutcome[]> {
  return Promise.all(requests.map((request) => openOne(gateway, request)));
}

async function openOne(gateway: AccountOpener, request: { creditLimit: Money; product: string }): Promise<OpenOutcome> {
  for (let attempt = 0; attempt < limits.accountIdAttemptsMax; attempt++) {
    const accountId = gateway.drawAccountId(request.product);
    const unitId = gateway.router.unitOfAccount(accountId);
    const result = await gateway.call(unitId, { op: 'openAccount', accountId, product: request.product, creditLimit: request.creditLimit });
    if (result === null) {
      const error = new ApiError('UNIT_UNAVAILABLE', `unit ${unitId} is unavailable`, null);
      return { status: error.status, body: JSON.stringify(error.body()) };
    }
    if (result.status !== 409) return { status: result.status, body: result.body };
  }
  const error = new ApiError('ACCOUNT_EXISTS', `no free account id after ${limits.accountIdAttemptsMax} draws; the IIN is nearly full`, null);
  return { status: error.status, body: JSON.stringify(error.body()) };
}
