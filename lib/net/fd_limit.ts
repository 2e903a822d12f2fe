/**
 * The start-up check of a server's connection cap against the process's open-file
 * (descriptor) limit: each connection costs descriptors, and a server that runs out fails
 * accepts and dials with "Too many open files" long before its own cap. The limit is
 * {@linkcode openFileLimit} (the soft limit from `/proc/self/limits`); where it is unknown
 * (not Linux) or unlimited, nothing is checked.
 *
 * @module
 */

import { openFileLimit } from "./fd_budget.ts";

/** Defaults of {@linkcode descriptorWarning}. */
export const DESCRIPTOR_DEFAULTS = {
  /** Descriptors a process needs besides its connections: stdio, listeners, the runtime's own. */
  reserve: 64,
  /** Descriptors per connection. */
  perConnection: 1,
} as const;

/** Options of {@linkcode descriptorWarning}. */
export interface DescriptorWarningOptions {
  /** The option that sets the connection cap, for the message (`--max-conns`). */
  flag: string;
  /** Descriptors each connection uses. @default {1} */
  perConnection?: number;
  /** Descriptors needed besides the connections. @default {64} */
  reserve?: number;
  /** The soft limit (null: unknown or unlimited). @default {openFileLimit()} */
  limit?: number | null;
}

/**
 * A warning when `connections` connections (each `perConnection` descriptors, plus
 * `reserve`) do not fit in the open-file limit, saying what to raise or lower; undefined when
 * they fit or the limit is unknown.
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert/strict";
 * import { descriptorWarning } from "./fd_limit.ts";
 * const flag = "--max-conns";
 * assert.equal(
 *   descriptorWarning(1024, { flag, perConnection: 2, limit: 1024 }),
 *   "open file limit is 1024, but --max-conns 1024 needs about 2112 (2 per connection + 64): " +
 *     "raise it (ulimit -n 2112) or lower --max-conns to 480",
 * );
 * assert.equal(
 *   descriptorWarning(100, { flag, perConnection: 2, limit: 64 }),
 *   "open file limit is 64, but --max-conns 100 needs about 264 (2 per connection + 64): " +
 *     "raise it (ulimit -n 264)",
 * );
 * assert.equal(descriptorWarning(100, { flag, limit: 1024 }), undefined);
 * ```
 */
export function descriptorWarning(
  connections: number,
  options: DescriptorWarningOptions,
): string | undefined {
  const perConnection = options.perConnection ?? DESCRIPTOR_DEFAULTS.perConnection;
  const reserve = options.reserve ?? DESCRIPTOR_DEFAULTS.reserve;
  const limit = options.limit === undefined ? openFileLimit() : options.limit;
  if (limit === null) return undefined;
  const need = connections * perConnection + reserve;
  if (limit >= need) return undefined;
  const fits = Math.floor((limit - reserve) / perConnection);
  return `open file limit is ${limit}, but ${options.flag} ${connections} needs about ${need} ` +
    `(${perConnection} per connection + ${reserve}): raise it (ulimit -n ${need})` +
    (fits >= 1 ? ` or lower ${options.flag} to ${fits}` : "");
}
