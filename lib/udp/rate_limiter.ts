/**
 * Per-source rate limiting for datagram servers: one token bucket per source address, in a
 * table with a bounded number of entries so that a flood of forged sources cannot exhaust
 * memory.
 *
 * @module
 */

/** Defaults of {@linkcode SourceRateLimiterOptions}. */
export const RATE_LIMITER_DEFAULTS = {
  /** Source addresses tracked at once; beyond that idle (full) buckets, then the oldest, go. */
  maxSources: 65_536,
} as const;

/** Options for {@linkcode SourceRateLimiter}. */
export interface SourceRateLimiterOptions {
  /** Datagrams per second each source may send on average. Must be above 0. */
  ratePerSecond: number;
  /** Datagrams a source may send back to back after being idle. @default {ratePerSecond} */
  burst?: number;
  /** Most sources tracked at once. @default {65536} */
  maxSources?: number;
}

interface Bucket {
  tokens: number;
  last: number;
}

/**
 * A token bucket per source key: each source earns `ratePerSecond` tokens a second up to
 * `burst`, and each datagram costs one.
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert/strict";
 * import { SourceRateLimiter } from "./rate_limiter.ts";
 * const limiter = new SourceRateLimiter({ ratePerSecond: 10, burst: 2 });
 * assert.equal(limiter.allow("10.0.0.1", 0), true);
 * assert.equal(limiter.allow("10.0.0.1", 0), true);
 * assert.equal(limiter.allow("10.0.0.1", 0), false); // burst spent
 * assert.equal(limiter.allow("10.0.0.1", 100), true); // 100 ms later: one token earned
 * assert.equal(limiter.allow("10.0.0.1", 100), false); // and only one
 * assert.equal(limiter.allow("10.0.0.2", 0), true); // other sources are independent
 * ```
 */
export class SourceRateLimiter {
  #rate: number;
  #burst: number;
  #maxSources: number;
  #buckets = new Map<string, Bucket>();
  #lastSweep = -Infinity;

  /** Creates a limiter; throws RangeError for a rate or burst that is not positive. */
  constructor(options: SourceRateLimiterOptions) {
    this.#rate = options.ratePerSecond;
    this.#burst = options.burst ?? options.ratePerSecond;
    this.#maxSources = options.maxSources ?? RATE_LIMITER_DEFAULTS.maxSources;
    if (!(this.#rate > 0)) throw new RangeError(`Rate must be above 0, got ${this.#rate}`);
    if (!(this.#burst >= 1)) throw new RangeError(`Burst must be at least 1, got ${this.#burst}`);
    if (!(this.#maxSources >= 1)) {
      throw new RangeError(`maxSources must be at least 1, got ${this.#maxSources}`);
    }
  }

  /** Sources currently tracked. */
  get size(): number {
    return this.#buckets.size;
  }

  /**
   * Takes one token from `key`'s bucket at time `nowMs` (any monotonic clock in ms);
   * returns false when the bucket is empty and the datagram should be dropped.
   */
  allow(key: string, nowMs: number): boolean {
    let bucket = this.#buckets.get(key);
    if (bucket === undefined) {
      if (this.#buckets.size >= this.#maxSources) this.#evict(nowMs);
      bucket = { tokens: this.#burst, last: nowMs };
      this.#buckets.set(key, bucket);
    } else if (nowMs > bucket.last) {
      bucket.tokens = Math.min(
        this.#burst,
        bucket.tokens + (nowMs - bucket.last) * this.#rate / 1000,
      );
      bucket.last = nowMs;
    }
    if (bucket.tokens < 1) return false;
    bucket.tokens -= 1;
    return true;
  }

  /**
   * Frees room: every bucket that has refilled (forgetting it changes nothing), at most once
   * per refill period so that a flood of new sources costs O(1) each; else the oldest entry.
   */
  #evict(nowMs: number): void {
    const fullAfterMs = this.#burst * 1000 / this.#rate;
    if (nowMs - this.#lastSweep >= fullAfterMs) {
      this.#lastSweep = nowMs;
      for (const [key, b] of this.#buckets) {
        if (nowMs - b.last + b.tokens * 1000 / this.#rate >= fullAfterMs) this.#buckets.delete(key);
      }
    }
    if (this.#buckets.size >= this.#maxSources) {
      const oldest = this.#buckets.keys().next().value;
      if (oldest !== undefined) this.#buckets.delete(oldest);
    }
  }
}
