/**
 * The errors a sending session ends with: {@linkcode SessionLostError} (the connection broke
 * off), {@linkcode TransferRefusedError} (the receiver sent an Error frame) and
 * {@linkcode SendInterruptedError} (the caller's signal aborted it).
 *
 * @module
 */

import { quote } from "../log.ts";
import { ReceiverError } from "./protocol.ts";
import { formatBytes } from "./human.ts";
import type { SendSummary } from "./progress.ts";

/** The session broke off (connection lost, receiver silent or gone, protocol error). */
export class SessionLostError extends Error {
  /** Creates the error; the message names the entry, the bytes sent and the cause. */
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "SessionLostError";
  }
}

/** The receiver ended the session with an Error frame. */
export class TransferRefusedError extends Error {
  /** Creates the error; the message carries the receiver's text. */
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "TransferRefusedError";
  }
}

/**
 * `options.signal` aborted the send. The message says what was stored and to run the same
 * command again; `summary` has the counts.
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert/strict";
 * import { SendInterruptedError } from "./send_errors.ts";
 * const summary = { entries: 3, confirmed: 1, alreadyThere: 0, rejected: 0, failed: 0, skipped: 0,
 *   bytesTotal: 30, bytesSent: 10, seconds: 1, ok: false, interrupted: true };
 * const error = new SendInterruptedError(summary);
 * assert.match(error.message, /^1\/3 entries stored, 10 B sent; run the same command again/);
 * ```
 */
export class SendInterruptedError extends Error {
  /** Creates the error from the summary of the interrupted run. */
  constructor(readonly summary: SendSummary, options?: ErrorOptions) {
    super(
      `${summary.confirmed}/${summary.entries} entries stored, ${
        formatBytes(summary.bytesSent)
      } sent; run the same command again to resume`,
      options,
    );
    this.name = "SendInterruptedError";
  }
}

/** The sentence for an Error frame from the receiver. */
export function receiverEnded(payload: Uint8Array): string {
  return `Receiver ended the session: ${quote(payload)}`;
}

/** True for the errors of a write or read on a connection the peer broke. */
export function isConnectionLoss(error: unknown): boolean {
  return error instanceof Deno.errors.BrokenPipe || error instanceof Deno.errors.ConnectionReset ||
    error instanceof Deno.errors.ConnectionAborted || error instanceof Deno.errors.NotConnected;
}

/** Why a session broke off, for the summary and the error line. */
export function lostMessage(
  summary: SendSummary,
  cause: { current: string; bytesSent: number; refusal: Uint8Array | null; why: string },
): string {
  const current = cause.current ? `Cannot send ${cause.current}: ` : "";
  const stored = `${summary.confirmed}/${summary.entries} entries stored, ${
    formatBytes(cause.bytesSent)
  } sent`;
  const text = cause.refusal === null ? null : new TextDecoder().decode(cause.refusal);
  if (text === ReceiverError.Shutdown) return `${current}${text} (${stored})`;
  if (text === ReceiverError.Busy) {
    return `Cannot send: ${text} (it serves as many senders as it takes); try again later`;
  }
  const why = text === null ? cause.why : receiverEnded(cause.refusal!);
  return `${current}connection lost after ${
    formatBytes(cause.bytesSent)
  } sent (${why}); run the same command again to resume`;
}
