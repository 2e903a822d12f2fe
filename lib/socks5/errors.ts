/**
 * Errors of the SOCKS5 server in words: one line for any error a client connection ends
 * with, for its log line. Shared by the dialling code (dial.ts) and the per-client code
 * above it, so that dialling does not depend on the client context.
 *
 * @module
 */

/**
 * One line for an error; a closed socket reads "connection closed".
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert/strict";
 * import { describeError } from "./errors.ts";
 * assert.equal(describeError(new Deno.errors.BadResource("Bad resource ID")), "connection closed");
 * assert.equal(describeError(new Error("refused")), "refused");
 * assert.equal(describeError("odd"), "odd");
 * ```
 */
export function describeError(error: unknown): string {
  if (error instanceof Deno.errors.BadResource || error instanceof Deno.errors.Interrupted) {
    return "connection closed";
  }
  return error instanceof Error ? error.message : String(error);
}
