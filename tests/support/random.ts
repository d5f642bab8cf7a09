/**
 * A small seeded PRNG (mulberry32) for the property tests: the same seed
 * gives the same cases, so a failure is reproduced with `PROPERTY_SEED=...`.
 *
 * @module
 */

/** A seeded source of uniform numbers, integers, booleans, picks and bit strings. */
export class Random {
  #state: number;
  constructor(seed: number) {
    this.#state = seed >>> 0;
  }
  /** Uniform in [0, 1). */
  next(): number {
    let t = (this.#state = (this.#state + 0x6d2b79f5) >>> 0);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  /** Integer in [min, max]. */
  int(min: number, max: number): number {
    return min + Math.floor(this.next() * (max - min + 1));
  }
  /** True with probability `pTrue`. */
  bool(pTrue = 0.5): boolean {
    return this.next() < pTrue;
  }
  /** One of `items`, uniformly. */
  pick<T>(items: readonly T[]): T {
    return items[this.int(0, items.length - 1)];
  }
  /** `count` random bits. */
  bits(count: number): bigint {
    let value = 0n;
    for (let i = 0; i < count; i += 16) value = (value << 16n) | BigInt(this.int(0, 0xffff));
    return value & ((1n << BigInt(count)) - 1n);
  }
}

/** The seed of this run: `PROPERTY_SEED` from the environment, or the file's own default. */
export function propertySeed(fallback: number): number {
  return Number(Deno.env.get("PROPERTY_SEED") ?? fallback) >>> 0;
}
