/**
 * A placeholder for a subcommand whose issue has not landed: it answers "not implemented yet"
 * with exit code 1, as the foundation issue allows.
 *
 * @module
 */

import type { Command } from "./command.ts";

/**
 * Makes a command that prints "not implemented yet" and exits 1.
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert/strict";
 * import { notImplemented } from "./not_implemented.ts";
 * const cmd = notImplemented("udp-echo", "Echo UDP datagrams");
 * assert.equal(cmd.name, "udp-echo");
 * assert.equal(await cmd.run({ values: {}, positionals: [] }), 1);
 * ```
 */
export function notImplemented(name: string, summary: string): Command {
  return {
    name,
    summary: `${summary} (not implemented yet)`,
    usage: `Usage: sockit ${name} ...\n\n${summary}. Not implemented yet.`,
    options: {},
    allowPositionals: true,
    run() {
      console.error(`sockit ${name}: not implemented yet`);
      return Promise.resolve(1);
    },
  };
}
