import { loadtestLimits } from './limits.js';

// The knobs of the workload model, their defaults, and the validation a
// scenario file's "workload" overrides go through. Shares are probabilities in
// [0, 1]; each one says which population it is a share of.

export const channels = ['pos', 'atm', 'ecommerce', 'wallet'] as const;
export type Channel = (typeof channels)[number];

export const declineProbeKinds = ['overLimit', 'wrongExpiry', 'wrongCvv'] as const;
export type DeclineProbeKind = (typeof declineProbeKinds)[number];

export interface WorkloadConfig {
  /** Relative weights of the channels for new authorizations. */
  channelWeights: Record<Channel, number>;
  /** Cards in the hot set (the first cards of a seeded sample of the portfolio). */
  hotAccountCount: number;
  /** Share of new authorizations made with a hot card. */
  hotAccountShare: number;
  /** Share of new non-ATM authorizations made at the hot (flash-sale) merchant. */
  hotMerchantShare: number;
  hotMerchantId: string;
  /** Share of new authorizations that are deliberate decline probes. */
  declineShare: number;
  /** Relative weights of the decline probe kinds. */
  declineWeights: Record<DeclineProbeKind, number>;
  /** Share of all requests that reverse an earlier approval (when one is known). */
  reversalShare: number;
  /** Share of reversals that are partial. */
  partialReversalShare: number;
  /** Share of all requests that increment an earlier approval (when one is known). */
  incrementShare: number;
  /** Share of all requests that resend an earlier request with its key and body. */
  retryShare: number;
  /** Share of new non-ATM authorizations that are refunds. */
  refundShare: number;
  /** Share of new authorizations in a foreign currency at a foreign merchant. */
  foreignShare: number;
  /** Distinct merchants per channel; popularity follows a Zipf law. */
  merchantsPerChannel: number;
  merchantZipfExponent: number;
  /** Log-space spread of the lognormal amounts (1.0 gives a long right tail). */
  amountSigma: number;
}

export type WorkloadOverrides = Partial<Omit<WorkloadConfig, 'channelWeights' | 'declineWeights'>> & {
  channelWeights?: Partial<Record<Channel, number>>;
  declineWeights?: Partial<Record<DeclineProbeKind, number>>;
};

export const defaultWorkloadConfig: Readonly<WorkloadConfig> = {
  channelWeights: { pos: 50, atm: 5, ecommerce: 30, wallet: 15 },
  hotAccountCount: 20,
  hotAccountShare: 0.1,
  hotMerchantShare: 0,
  hotMerchantId: 'FLASH-SALE-000001',
  declineShare: 0.03,
  declineWeights: { overLimit: 1, wrongExpiry: 1, wrongCvv: 1 },
  reversalShare: 0.04,
  partialReversalShare: 0.3,
  incrementShare: 0.02,
  retryShare: 0.01,
  refundShare: 0.01,
  foreignShare: 0.08,
  merchantsPerChannel: 5_000,
  merchantZipfExponent: 1.0,
  amountSigma: 1.0,
};

const shareKeys = [
  'hotAccountShare', 'hotMerchantShare', 'declineShare', 'reversalShare', 'partialReversalShare',
  'incrementShare', 'retryShare', 'refundShare', 'foreignShare',
] as const;

/** Follow-ups and retries together may take at most this share, so new authorizations keep flowing. */
export const followUpShareMax = 0.5;

/** Merges overrides over a base and checks the result; throws one message per first problem found. */
export function resolveWorkloadConfig(base: Readonly<WorkloadConfig>, overrides: WorkloadOverrides = {}): WorkloadConfig {
  const config: WorkloadConfig = {
    ...base,
    ...withoutUndefined(overrides),
    channelWeights: { ...base.channelWeights, ...withoutUndefined(overrides.channelWeights ?? {}) },
    declineWeights: { ...base.declineWeights, ...withoutUndefined(overrides.declineWeights ?? {}) },
  };
  const problem = checkWorkloadConfig(config);
  if (problem !== null) throw new Error(`workload: ${problem}`);
  return config;
}

function withoutUndefined<T extends object>(value: T): Partial<T> {
  return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined)) as Partial<T>;
}

export function checkWorkloadConfig(config: WorkloadConfig): string | null {
  for (const key of shareKeys) {
    const share = config[key];
    if (!(typeof share === 'number' && share >= 0 && share <= 1)) return `${key} must be a number in [0, 1], got ${String(share)}`;
  }
  const weightProblem = checkWeights('channelWeights', config.channelWeights) ?? checkWeights('declineWeights', config.declineWeights);
  if (weightProblem !== null) return weightProblem;
  if (config.reversalShare + config.incrementShare + config.retryShare > followUpShareMax) {
    return `reversalShare + incrementShare + retryShare must be at most ${followUpShareMax}`;
  }
  if (!isIntIn(config.hotAccountCount, 0, loadtestLimits.hotAccountsMax)) return `hotAccountCount must be an integer in [0, ${loadtestLimits.hotAccountsMax}]`;
  if (!isIntIn(config.merchantsPerChannel, 1, loadtestLimits.merchantsPerChannelMax)) return `merchantsPerChannel must be an integer in [1, ${loadtestLimits.merchantsPerChannelMax}]`;
  if (!(config.merchantZipfExponent >= 0 && config.merchantZipfExponent <= 4)) return 'merchantZipfExponent must be in [0, 4]';
  if (!(config.amountSigma >= 0 && config.amountSigma <= 3)) return 'amountSigma must be in [0, 3]';
  if (typeof config.hotMerchantId !== 'string' || !/^[A-Za-z0-9-]{1,32}$/.test(config.hotMerchantId)) return 'hotMerchantId must be 1-32 letters, digits or dashes';
  return null;
}

function checkWeights(name: string, weights: Readonly<Record<string, number>>): string | null {
  let total = 0;
  for (const [key, weight] of Object.entries(weights)) {
    if (!(typeof weight === 'number' && Number.isFinite(weight) && weight >= 0)) return `${name}.${key} must be a non-negative number`;
    total += weight;
  }
  return total > 0 ? null : `${name} must have a positive weight`;
}

function isIntIn(value: unknown, min: number, max: number): boolean {
  return Number.isInteger(value) && (value as number) >= min && (value as number) <= max;
}

const overrideKeys = new Set<string>(Object.keys(defaultWorkloadConfig));

/** Validates the shape of untrusted overrides (from a scenario file); ranges are checked on resolve. */
export function parseWorkloadOverrides(value: unknown, where: string): WorkloadOverrides {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new Error(`${where} must be an object`);
  for (const [key, field] of Object.entries(value)) {
    if (!overrideKeys.has(key)) throw new Error(`${where}.${key} is not a workload setting (known: ${[...overrideKeys].join(', ')})`);
    if (key === 'channelWeights' || key === 'declineWeights') {
      const allowed: readonly string[] = key === 'channelWeights' ? channels : declineProbeKinds;
      if (typeof field !== 'object' || field === null) throw new Error(`${where}.${key} must be an object`);
      for (const [name, weight] of Object.entries(field)) {
        if (!allowed.includes(name)) throw new Error(`${where}.${key}.${name} is not one of ${allowed.join(', ')}`);
        if (typeof weight !== 'number') throw new Error(`${where}.${key}.${name} must be a number`);
      }
    } else if (key === 'hotMerchantId') {
      if (typeof field !== 'string') throw new Error(`${where}.${key} must be a string`);
    } else if (typeof field !== 'number') {
      throw new Error(`${where}.${key} must be a number`);
    }
  }
  const overrides = value as WorkloadOverrides;
  resolveWorkloadConfig(defaultWorkloadConfig, overrides); // Range errors surface at load time, not mid-run.
  return overrides;
}
