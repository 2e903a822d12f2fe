/**
 * Merging options over defaults, the one way sockit does it: each module keeps its defaults
 * in one `*_DEFAULTS` constant and merges what the caller gave over it with
 * {@linkcode withDefaults}. Options that are `undefined` keep the default.
 *
 * @module
 */

/** The type of a defaults constant with its literal types widened (`30000` to `number`). */
export type Widened<T> = {
  -readonly [K in keyof T]: T[K] extends number ? number
    : T[K] extends string ? string
    : T[K] extends boolean ? boolean
    : T[K];
};

/**
 * `defaults` with every option from `options` that is not `undefined` laid over it.
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert/strict";
 * import { withDefaults } from "./defaults.ts";
 * const DEFAULTS = { port: 7070, host: "127.0.0.1" } as const;
 * const merged = withDefaults(DEFAULTS, { port: 0, host: undefined });
 * assert.deepEqual(merged, { port: 0, host: "127.0.0.1" });
 * ```
 */
export function withDefaults<D extends object, O extends object>(
  defaults: D,
  options: O,
): Widened<D> & O {
  const out: Record<string, unknown> = { ...defaults as Record<string, unknown> };
  for (const [key, value] of Object.entries(options)) {
    if (value !== undefined) out[key] = value;
  }
  return out as Widened<D> & O;
}
