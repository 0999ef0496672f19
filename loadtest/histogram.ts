import { assertLoadtest, loadtestLimits } from './limits.js';

// An HDR-like log-linear histogram of latencies in microseconds. Values below
// 2^subBucketBits are exact; above, each power of two is split into
// 2^(subBucketBits - 1) linear buckets, so a reported percentile is within
// 1 / 2^(subBucketBits - 1) = 1.6 % of the true value, at a fixed size of a
// few thousand counters whatever the run length. Written here rather than
// taken from hdr-histogram-js so it is typed, plain data, and mergeable.

const subBucketBits = 7;
const subBucketCount = 1 << subBucketBits; // 128 exact values
const subBucketHalf = subBucketCount >> 1; // 64 linear buckets per octave
const octaves = 33 - subBucketBits; // enough for latencyMicrosMax < 2^32
const bucketCount = subBucketCount + octaves * subBucketHalf;

export interface LatencySummaryMs {
  count: number;
  p50: number;
  p90: number;
  p99: number;
  p999: number;
  max: number;
  mean: number;
}

export const emptyLatencySummary: LatencySummaryMs = { count: 0, p50: 0, p90: 0, p99: 0, p999: 0, max: 0, mean: 0 };

function indexOf(micros: number): number {
  if (micros < subBucketCount) return micros;
  const exponent = 31 - Math.clz32(micros) - (subBucketBits - 1); // >= 1
  const mantissa = micros >>> exponent; // in [64, 128)
  return subBucketCount + (exponent - 1) * subBucketHalf + (mantissa - subBucketHalf);
}

/** The highest value that lands in a bucket, so percentiles never under-report. */
function upperValueOf(index: number): number {
  if (index < subBucketCount) return index;
  const octave = Math.floor((index - subBucketCount) / subBucketHalf) + 1;
  const mantissa = ((index - subBucketCount) % subBucketHalf) + subBucketHalf;
  // Multiplication, not <<, because the top octaves pass 2^31.
  return (mantissa + 1) * 2 ** octave - 1;
}

export class LatencyHistogram {
  readonly #counts = new Float64Array(bucketCount);
  #total = 0;
  #sumMicros = 0;
  #maxMicros = 0;

  get count(): number {
    return this.#total;
  }

  recordMicros(value: number, times = 1): void {
    const micros = Math.min(Math.max(0, Math.round(value)), loadtestLimits.latencyMicrosMax);
    this.#counts[indexOf(micros)]! += times;
    this.#total += times;
    this.#sumMicros += micros * times;
    if (micros > this.#maxMicros) this.#maxMicros = micros;
  }

  recordMs(valueMs: number): void {
    this.recordMicros(valueMs * 1000);
  }

  /**
   * HdrHistogram's recordValueWithExpectedInterval: a sender that should have
   * sent every `intervalMs` but waited `valueMs` for this response missed the
   * sends in between, and each of those would have waited (valueMs - k * intervalMs).
   */
  recordMsWithExpectedInterval(valueMs: number, intervalMs: number): number {
    this.recordMs(valueMs);
    if (!(intervalMs > 0) || valueMs <= intervalMs) return 0;
    let added = 0;
    for (let missing = valueMs - intervalMs; missing >= intervalMs; missing -= intervalMs) {
      if (added >= loadtestLimits.correctionSamplesPerResponseMax) break;
      this.recordMs(missing);
      added += 1;
    }
    return added;
  }

  merge(other: LatencyHistogram): void {
    const counts = other.#counts;
    for (let index = 0; index < bucketCount; index += 1) {
      const count = counts[index]!;
      if (count !== 0) this.#counts[index]! += count;
    }
    this.#total += other.#total;
    this.#sumMicros += other.#sumMicros;
    if (other.#maxMicros > this.#maxMicros) this.#maxMicros = other.#maxMicros;
  }

  /** Value in microseconds at a quantile q in [0, 1]. */
  quantileMicros(q: number): number {
    assertLoadtest(q >= 0 && q <= 1, 'quantile in [0, 1]');
    if (this.#total === 0) return 0;
    const rank = Math.max(1, Math.ceil(q * this.#total));
    let seen = 0;
    for (let index = 0; index < bucketCount; index += 1) {
      seen += this.#counts[index]!;
      if (seen >= rank) return Math.min(upperValueOf(index), this.#maxMicros);
    }
    return this.#maxMicros;
  }

  summaryMs(): LatencySummaryMs {
    if (this.#total === 0) return { ...emptyLatencySummary };
    const ms = (micros: number): number => Math.round(micros) / 1000;
    return {
      count: this.#total,
      p50: ms(this.quantileMicros(0.5)),
      p90: ms(this.quantileMicros(0.9)),
      p99: ms(this.quantileMicros(0.99)),
      p999: ms(this.quantileMicros(0.999)),
      max: ms(this.#maxMicros),
      mean: Math.round(this.#sumMicros / this.#total) / 1000,
    };
  }
}
