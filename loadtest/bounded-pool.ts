import { assertLoadtest } from './limits.js';
import type { Random } from './random.js';

/**
 * A fixed-capacity bag with O(1) add, random pick and random removal. When it
 * is full, an add overwrites slots round-robin, which evicts roughly the
 * oldest entries without the O(n) shift a strict FIFO array would cost at
 * thousands of requests per second.
 */
export class BoundedPool<T> {
  readonly #slots: T[] = [];
  readonly #capacity: number;
  #overwriteCursor = 0;

  constructor(capacity: number) {
    assertLoadtest(Number.isSafeInteger(capacity) && capacity > 0, 'pool capacity is a positive integer');
    this.#capacity = capacity;
  }

  get size(): number {
    return this.#slots.length;
  }

  get capacity(): number {
    return this.#capacity;
  }

  add(item: T): void {
    if (this.#slots.length < this.#capacity) {
      this.#slots.push(item);
      return;
    }
    this.#slots[this.#overwriteCursor] = item;
    this.#overwriteCursor = (this.#overwriteCursor + 1) % this.#capacity;
  }

  /** A random entry, left in place; null when empty. */
  pick(random: Random): T | null {
    if (this.#slots.length === 0) return null;
    return this.#slots[random.intBelow(this.#slots.length)]!;
  }

  /** A random entry, removed (swap with the last slot); null when empty. */
  take(random: Random): T | null {
    if (this.#slots.length === 0) return null;
    const index = random.intBelow(this.#slots.length);
    const item = this.#slots[index]!;
    const last = this.#slots.pop()!;
    if (index < this.#slots.length) this.#slots[index] = last;
    if (this.#overwriteCursor >= this.#slots.length) this.#overwriteCursor = 0;
    return item;
  }

  values(): readonly T[] {
    return this.#slots;
  }
}
