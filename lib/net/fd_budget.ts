/**
 * File descriptors as a budget: how many this process may open (the soft `RLIMIT_NOFILE`, read
 * from `/proc/self/limits`), how many are open now, a counter of the ones a server may hold
 * for its own purposes ({@linkcode FdBudget}), and a retry with back-off for the calls that
 * fail with "Too many open files" anyway ({@linkcode retryOnEmfile}). Where `/proc` is missing
 * (not Linux) the limit and the count are unknown and nothing is bounded.
 *
 * @module
 */

import { delay } from "./deadline.ts";

/** Defaults of {@linkcode retryOnEmfile}. */
export const EMFILE_RETRY_DEFAULTS = {
  /** Give up (rethrow) once descriptors were missing for this long, in ms. */
  timeoutMs: 10_000,
  /** First pause before a retry, in ms; doubles up to {@linkcode EMFILE_RETRY_DEFAULTS.maxBackoffMs}. */
  backoffMs: 5,
  /** Longest pause between two retries, in ms. */
  maxBackoffMs: 200,
} as const;

/**
 * The soft limit on open files of this process, from the "Max open files" line of
 * `/proc/self/limits`; null where it cannot be read or is unlimited.
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert/strict";
 * import { openFileLimit } from "./fd_budget.ts";
 * const limit = openFileLimit();
 * assert.ok(limit === null || limit > 0);
 * ```
 */
export function openFileLimit(): number | null {
  let text: string;
  try {
    text = Deno.readTextFileSync("/proc/self/limits");
  } catch {
    return null;
  }
  const m = /^Max open files\s+(\d+|unlimited)/m.exec(text);
  if (!m || m[1] === "unlimited") return null;
  return Number(m[1]);
}

/**
 * How many descriptors this process has open now (the entries of `/proc/self/fd`, without the
 * one used to list them); null where that cannot be read.
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert/strict";
 * import { openFileCount } from "./fd_budget.ts";
 * // Process-wide: other work running in this process (parallel tests) moves it too.
 * using _file = Deno.openSync(Deno.execPath());
 * const count = openFileCount();
 * assert.ok(count === null || count >= 4); // stdin, stdout, stderr and the file at least
 * ```
 */
export function openFileCount(): number | null {
  try {
    let n = 0;
    for (const _ of Deno.readDirSync("/proc/self/fd")) n++;
    return n - 1;
  } catch {
    return null;
  }
}

/**
 * True for the error of a call that failed because the process (EMFILE) or the system
 * (ENFILE) has no descriptor left.
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert/strict";
 * import { isOutOfDescriptors } from "./fd_budget.ts";
 * const error = Object.assign(new Error("Too many open files (os error 24)"), { code: "EMFILE" });
 * assert.ok(isOutOfDescriptors(error));
 * assert.ok(!isOutOfDescriptors(new Deno.errors.NotFound("gone")));
 * ```
 */
export function isOutOfDescriptors(error: unknown): boolean {
  if (!(error instanceof Error)) return false;
  const code = (error as { code?: unknown }).code;
  return code === "EMFILE" || code === "ENFILE" || /\(os error 2[34]\)/.test(error.message);
}

/** Options for {@linkcode retryOnEmfile}. */
export interface RetryOnEmfileOptions {
  /** Rethrow once descriptors were missing for this long, in ms. @default {10000} */
  timeoutMs?: number;
}

/**
 * Runs `fn`; while it fails for lack of descriptors ({@linkcode isOutOfDescriptors}), waits
 * (5 ms, doubling up to 200 ms) and runs it again, until `options.timeoutMs` passed. Any other
 * error, and the last EMFILE, is thrown.
 *
 * @example An open that succeeds once a descriptor is free
 * ```ts
 * import assert from "node:assert/strict";
 * import { retryOnEmfile } from "./fd_budget.ts";
 * let calls = 0;
 * const value = await retryOnEmfile(() => {
 *   if (++calls < 3) throw Object.assign(new Error("Too many open files"), { code: "EMFILE" });
 *   return "opened";
 * });
 * assert.equal(value, "opened");
 * assert.equal(calls, 3);
 * ```
 */
export async function retryOnEmfile<T>(
  fn: () => T | Promise<T>,
  options: RetryOnEmfileOptions = {},
): Promise<T> {
  const timeoutMs = options.timeoutMs ?? EMFILE_RETRY_DEFAULTS.timeoutMs;
  const started = performance.now();
  let backoff: number = EMFILE_RETRY_DEFAULTS.backoffMs;
  while (true) {
    try {
      return await fn();
    } catch (error) {
      if (!isOutOfDescriptors(error) || performance.now() - started >= timeoutMs) throw error;
    }
    await delay(backoff);
    backoff = Math.min(backoff * 2, EMFILE_RETRY_DEFAULTS.maxBackoffMs);
  }
}

/** How a server's descriptors add up: see {@linkcode planDescriptors}. */
export interface DescriptorPlan {
  /** The soft limit, or null when unknown or unlimited. */
  limit: number | null;
  /** Descriptors open now. */
  open: number;
  /** What the server needs at most: `open` plus what it was told it needs. */
  need: number;
  /** Descriptors beyond `need` (Infinity when the limit is unknown); negative when short. */
  spare: number;
}

/**
 * Adds `extra` descriptors (connections, files per connection) to the ones open now and
 * compares with the limit.
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert/strict";
 * import { planDescriptors } from "./fd_budget.ts";
 * const plan = planDescriptors(10);
 * assert.equal(plan.need, plan.open + 10);
 * assert.ok(plan.limit === null ? plan.spare === Infinity : plan.spare === plan.limit - plan.need);
 * ```
 */
export function planDescriptors(extra: number): DescriptorPlan {
  const limit = openFileLimit();
  const open = openFileCount() ?? 0;
  const need = open + extra;
  return { limit, open, need, spare: limit === null ? Infinity : limit - need };
}

/**
 * A count of descriptors that may be held for optional uses (keeping a file open to save
 * reopening it later). Nothing waits on it: {@linkcode FdBudget.tryTake} says no when none is
 * left, and the caller does without.
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert/strict";
 * import { FdBudget } from "./fd_budget.ts";
 * const budget = new FdBudget(1);
 * assert.ok(budget.tryTake());
 * assert.ok(!budget.tryTake());
 * budget.release();
 * assert.equal(budget.available, 1);
 * ```
 */
export class FdBudget {
  #size: number;
  #taken = 0;

  /** A budget of `size` descriptors (Infinity: no bound; negative counts as 0). */
  constructor(size: number) {
    this.#size = Math.max(0, size);
  }

  /** Descriptors in the budget. */
  get size(): number {
    return this.#size;
  }

  /** Descriptors not taken. */
  get available(): number {
    return this.#size - this.#taken;
  }

  /** Takes one descriptor; false when none is left. */
  tryTake(): boolean {
    if (this.#taken >= this.#size) return false;
    this.#taken++;
    return true;
  }

  /** Gives one back. */
  release(): void {
    if (this.#taken > 0) this.#taken--;
  }
}
