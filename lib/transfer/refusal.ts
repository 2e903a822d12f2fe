/**
 * {@linkcode Refusal}: why the receiver refuses one entry (sent as Reject or Failed with its
 * reason code), and {@linkcode toRefusal}, which turns the error of one entry into one.
 *
 * @module
 */

import { ProtocolError } from "../net/errors.ts";
import { Reason, type ReasonValue } from "./protocol.ts";
import { UnsafePathError } from "./safe_path.ts";

/**
 * A per-entry refusal: sent as Reject (offers) or Failed (after data), then logged; the
 * session goes on.
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert/strict";
 * import { Refusal } from "./refusal.ts";
 * import { Reason } from "./protocol.ts";
 * const refusal = new Refusal(Reason.Busy, "another sender is writing this name");
 * assert.equal(refusal.reason, Reason.Busy);
 * ```
 */
export class Refusal extends Error {
  /** A refusal for `reason`, with the message the sender sees. */
  constructor(readonly reason: ReasonValue, message: string) {
    super(message);
    this.name = "Refusal";
  }
}

/**
 * The refusal for an entry that failed with `error`: a {@linkcode Refusal} as it is, a bad
 * name as InvalidName, an existing name as Exists, any other I/O error as IoError. A
 * {@linkcode ProtocolError} (or anything not an Error) is thrown again: it ends the session.
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert/strict";
 * import { toRefusal } from "./refusal.ts";
 * import { Reason } from "./protocol.ts";
 * assert.equal(toRefusal(new Error("disk on fire")).reason, Reason.IoError);
 * ```
 */
export function toRefusal(error: unknown): Refusal {
  if (error instanceof Refusal) return error;
  if (error instanceof UnsafePathError) return new Refusal(Reason.InvalidName, error.message);
  if (error instanceof Deno.errors.AlreadyExists) {
    return new Refusal(Reason.Exists, error.message);
  }
  if (error instanceof Error && !(error instanceof ProtocolError)) {
    return new Refusal(Reason.IoError, error.message);
  }
  throw error;
}
