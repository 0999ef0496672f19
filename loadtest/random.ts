import { assertLoadtest } from './limits.js';

// A small seeded PRNG so a run can be replayed from its printed seed.
// xoshiro128** (Blackman and Vigna) has a 2^128 - 1 period and passes BigCrush,
// and it needs only 32-bit integer arithmetic, which JavaScript does exactly
// with Math.imul and >>> 0. The state is seeded through splitmix32 so that
// neighbouring seeds (42, 43) give unrelated streams.

export interface Random {
  /** Uniform float in [0, 1). */
  float(): number;
  /** Uniform integer in [0, bound). */
  intBelow(bound: number): number;
  /** Uniform integer in [min, max], both inclusive. */
  intBetween(min: number, max: number): number;
  /** True with probability p. */
  chance(p: number): boolean;
  /** Standard normal draw (Box-Muller). */
  normal(): number;
  /** Lognormal draw whose median is `median`; sigma is the log-space spread. */
  lognormal(median: number, sigma: number): number;
  /** The seed this stream was created from, for printing. */
  readonly seed: number;
}

function splitmix32(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x9e3779b9) >>> 0;
    let z = state;
    z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0;
    z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0;
    return (z ^ (z >>> 16)) >>> 0;
  };
}

export function createRandom(seed: number): Random {
  assertLoadtest(Number.isSafeInteger(seed), 'seed is a safe integer');
  // Fold the high bits in so seeds above 2^32 still differ.
  const mixer = splitmix32((seed ^ Math.floor(seed / 0x1_0000_0000)) >>> 0);
  const s = new Uint32Array([mixer(), mixer(), mixer(), mixer()]);
  if ((s[0]! | s[1]! | s[2]! | s[3]!) === 0) s[0] = 1; // The all-zero state is a fixed point.

  function nextUint32(): number {
    const result = Math.imul(rotl(Math.imul(s[1]!, 5), 7), 9) >>> 0;
    const t = s[1]! << 9;
    s[2]! ^= s[0]!;
    s[3]! ^= s[1]!;
    s[1]! ^= s[2]!;
    s[0]! ^= s[3]!;
    s[2]! ^= t;
    s[3] = rotl(s[3]!, 11);
    return result;
  }

  function float(): number {
    // 53 random bits: the float has no gaps a test could notice.
    const high = nextUint32() >>> 5;
    const low = nextUint32() >>> 6;
    return (high * 67108864 + low) / 9007199254740992;
  }

  function intBelow(bound: number): number {
    assertLoadtest(Number.isSafeInteger(bound) && bound > 0, 'intBelow bound is a positive integer');
    return Math.floor(float() * bound);
  }

  function normal(): number {
    // 1 - float() is in (0, 1], so the logarithm is finite.
    const u1 = 1 - float();
    const u2 = float();
    return Math.sqrt(-2 * Math.log(u1)) * Math.cos(2 * Math.PI * u2);
  }

  return {
    seed,
    float,
    intBelow,
    intBetween: (min, max) => {
      assertLoadtest(max >= min, 'intBetween max >= min');
      return min + intBelow(max - min + 1);
    },
    chance: (p) => float() < p,
    normal,
    lognormal: (median, sigma) => median * Math.exp(sigma * normal()),
  };
}

function rotl(x: number, k: number): number {
  return ((x << k) | (x >>> (32 - k))) >>> 0;
}

/**
 * A precomputed cumulative table so a weighted pick is one float and a binary
 * search; the hot path must not rebuild weights per request.
 */
export class WeightedTable<T> {
  readonly #items: readonly T[];
  readonly #cumulative: Float64Array;

  constructor(entries: ReadonlyArray<readonly [T, number]>) {
    assertLoadtest(entries.length > 0, 'weighted table has entries');
    this.#items = entries.map(([item]) => item);
    this.#cumulative = new Float64Array(entries.length);
    let total = 0;
    entries.forEach(([, weight], index) => {
      assertLoadtest(Number.isFinite(weight) && weight >= 0, 'weights are finite and non-negative');
      total += weight;
      this.#cumulative[index] = total;
    });
    assertLoadtest(total > 0, 'weights sum to more than zero');
  }

  pick(random: Random): T {
    const total = this.#cumulative[this.#cumulative.length - 1]!;
    const target = random.float() * total;
    let low = 0;
    let high = this.#cumulative.length - 1;
    while (low < high) {
      const mid = (low + high) >>> 1;
      if (this.#cumulative[mid]! > target) high = mid;
      else low = mid + 1;
    }
    return this.#items[low]!;
  }
}

/** Zipf-like ranks: rank k in [0, n) has weight 1 / (k + 1)^exponent. */
export function createZipf(n: number, exponent: number): (random: Random) => number {
  assertLoadtest(Number.isSafeInteger(n) && n > 0, 'zipf n is a positive integer');
  assertLoadtest(exponent >= 0, 'zipf exponent is non-negative');
  const ranks: Array<readonly [number, number]> = [];
  for (let k = 0; k < n; k += 1) ranks.push([k, 1 / Math.pow(k + 1, exponent)]);
  const table = new WeightedTable(ranks);
  return (random) => table.pick(random);
}
