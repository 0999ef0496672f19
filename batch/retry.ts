// Every request batch accounting makes to a unit is idempotent (feed pages and
// totals are reads; settlements carry idempotency keys), so a connection that
// drops (a unit closing an idle keep-alive socket just as it is reused, a unit
// restarting) is retried a bounded number of times before the step fails; a
// failed step is resumed by running end of day again.

export const unitRequestAttemptsMax = 4;
const backoffMs = 250;

export async function withRetry<T>(what: string, attempt: () => Promise<T>): Promise<T> {
  let lastError: unknown;
  for (let tries = 1; tries <= unitRequestAttemptsMax; tries++) {
    try {
      return await attempt();
    } catch (error) {
      lastError = error;
      if (tries < unitRequestAttemptsMax) await new Promise((resolve) => setTimeout(resolve, backoffMs * tries));
    }
  }
  throw new Error(`${what} failed ${unitRequestAttemptsMax} times: ${String(lastError)}`);
}
