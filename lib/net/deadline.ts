/**
 * Deadlines for promises: every wait on the network in sockit is bounded.
 *
 * @module
 */

import { TimeoutError } from "./errors.ts";

/** Options for {@linkcode withTimeout}. */
export interface TimeoutOptions {
  /** What is awaited, for the error message ("Timed out after 500 ms waiting for WHAT"). */
  what?: string;
}

/**
 * Resolves like `promise`, or rejects with {@linkcode TimeoutError} ("Timed out after N ms
 * waiting for WHAT") when `ms` pass first. The timer is cleared either way.
 *
 * @example Usage
 * ```ts
 * import { withTimeout } from "./deadline.ts";
 * const value = await withTimeout(Promise.resolve(42), 100, { what: "the answer" });
 * console.assert(value === 42);
 * ```
 */
export function withTimeout<T>(
  promise: Promise<T>,
  ms: number,
  options: TimeoutOptions = {},
): Promise<T> {
  const what = options.what ?? "a result";
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new TimeoutError(`Timed out after ${ms} ms waiting for ${what}`)),
      ms,
    );
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/**
 * Resolves after `ms` milliseconds, or early (without error) when `signal` aborts.
 *
 * @example Usage
 * ```ts
 * import { delay } from "./deadline.ts";
 * await delay(1);
 * ```
 */
export function delay(ms: number, options: { signal?: AbortSignal } = {}): Promise<void> {
  const { signal } = options;
  if (signal?.aborted) return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      signal?.removeEventListener("abort", done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal?.addEventListener("abort", done, { once: true });
  });
}
