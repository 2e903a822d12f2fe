/**
 * Which mode `sockit send` / `sockit recv` run in, and the code mode's options and usage text:
 * the light part of the code mode, loaded with every `send`/`recv` (the rest, `command.ts`,
 * only when a code is used).
 *
 * @module
 */

import { existsSync } from "node:fs";
import type { OptionSpec, OptionValues } from "../command.ts";
import { UsageError } from "../net/errors.ts";
import { WORMHOLE_DEFAULTS, WORMHOLE_ENV } from "./options.ts";

/** Options both sides of the code mode take. */
export const WORMHOLE_OPTIONS: Record<string, OptionSpec> = {
  mailbox: { type: "string" },
  transit: { type: "string", multiple: true },
  "force-relay": { type: "boolean" },
  verify: { type: "boolean" },
};

/** Options only `send` takes in code mode. */
export const WORMHOLE_SEND_OPTIONS: Record<string, OptionSpec> = {
  ...WORMHOLE_OPTIONS,
  code: { type: "string" },
  "code-length": { type: "string" },
  text: { type: "string" },
};

/** Options only `recv` takes in code mode. */
export const WORMHOLE_RECV_OPTIONS: Record<string, OptionSpec> = {
  ...WORMHOLE_OPTIONS,
  yes: { type: "boolean", short: "y" },
  json: { type: "boolean" },
};

/** The usage lines of the code mode (shared by both commands' help). */
export const WORMHOLE_USAGE = `Options of the code mode (both sides):
  --mailbox URL    mailbox server (default ${WORMHOLE_DEFAULTS.mailboxUrl}; env ${WORMHOLE_ENV.mailbox})
  --transit H:P    transit relay, repeatable (default ${
  WORMHOLE_DEFAULTS.transitRelays.join(", ")
}; env ${WORMHOLE_ENV.transit}, comma-separated)
  --force-relay    connect through the transit relay only; advertise no local addresses
  --verify         show the verifier on both sides and ask before sending
The code is read from ${WORMHOLE_ENV.code} when set (argv is visible to every local user).`;

/**
 * True when `send`'s arguments ask for the code mode: `--text`, `--code`, or a first argument
 * that names a local file or folder (the direct mode starts with HOST[:PORT]).
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert/strict";
 * import { isCodeSend } from "./mode.ts";
 * assert.equal(isCodeSend({ text: "hi" }, []), true);
 * assert.equal(isCodeSend({}, ["example.com:7071", "a.txt"]), false);
 * assert.equal(isCodeSend({}, ["."]), true);
 * ```
 */
export function isCodeSend(values: OptionValues, positionals: string[]): boolean {
  if (values.text !== undefined || values.code !== undefined) return true;
  // existsSync: a failed lstat would build an error (~10 ms for a process's first one).
  return positionals.length > 0 && existsSync(positionals[0]);
}

/** The options that only the direct mode of `recv` has (it listens). */
const DIRECT_RECV_OPTIONS = ["host", "port", "once", "max-senders"];

/**
 * True when `recv`'s arguments ask for the code mode: a CODE argument, or none of the
 * listening options (`--host`, `--port`, `--once`, `--max-senders`).
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert/strict";
 * import { isCodeRecv } from "./mode.ts";
 * assert.equal(isCodeRecv({}, ["7-crossover-clockwork"]), true);
 * assert.equal(isCodeRecv({ port: "7071" }, []), false);
 * assert.equal(isCodeRecv({}, []), true);
 * ```
 */
export function isCodeRecv(values: OptionValues, positionals: string[]): boolean {
  if (positionals.length > 0) return true;
  return !DIRECT_RECV_OPTIONS.some((name) => values[name] !== undefined);
}

/** A usage error for a CODE given together with a listening option. */
export function refuseDirectOptions(values: OptionValues, positionals: string[]): void {
  const direct = DIRECT_RECV_OPTIONS.filter((name) => values[name] !== undefined);
  if (positionals.length > 0 && direct.length > 0) {
    throw new UsageError(
      `--${direct[0]} listens for direct senders; a code receives from one sender: choose one`,
    );
  }
}
