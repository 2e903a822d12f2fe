/**
 * Why a connection ended, as one typed value. The log line, the counters and the farewell a
 * peer is sent are all made from it; nobody matches reason strings.
 *
 * | kind | meaning |
 * | --- | --- |
 * | `peer-closed` | the peer finished (end of file, or it asked to leave) |
 * | `slow-bytes` | its outbox passed its byte cap (no flow control held the producers) |
 * | `slow-stall` | it took no byte for the stall time and its outbox then reached the cap |
 * | `write-timeout` | its socket took no byte for the write timeout (the last resort) |
 * | `idle` | it sent nothing for the idle timeout |
 * | `heartbeat` | it answered no heartbeat for that many intervals |
 * | `shutdown` | the server is stopping |
 * | `error` | a protocol or socket error (the message says which) |
 *
 * @module
 */

/** A close reason. */
export type CloseReason =
  | { kind: "peer-closed" }
  | { kind: "slow-bytes"; limitBytes: number }
  | { kind: "slow-stall"; stallMs: number; limitBytes: number }
  | { kind: "write-timeout"; ms: number }
  | { kind: "idle"; ms: number }
  | { kind: "heartbeat"; ms: number; misses: number }
  | { kind: "shutdown"; text?: string }
  | { kind: "error"; message: string };

/** Why and how a connection ended. */
export interface CloseInfo {
  /** The typed reason. */
  reason: CloseReason;
  /** The reason as text ({@linkcode describeCloseReason}). */
  text: string;
  /** The error that ended the connection, if one did. */
  error?: unknown;
}

/** The kinds of {@linkcode CloseReason}, for counters. */
export type CloseKind = CloseReason["kind"];

/** Every {@linkcode CloseKind}, in a stable order (for counters and stats lines). */
export const CLOSE_KINDS: readonly CloseKind[] = [
  "peer-closed",
  "slow-bytes",
  "slow-stall",
  "write-timeout",
  "idle",
  "heartbeat",
  "shutdown",
  "error",
];

/** True for the reasons that mean "this peer did not read fast enough". */
export function isSlowConsumer(reason: CloseReason): boolean {
  return reason.kind === "slow-bytes" || reason.kind === "slow-stall" ||
    reason.kind === "write-timeout";
}

/**
 * The reason as one line of text, for logs and farewell messages.
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert/strict";
 * import { describeCloseReason } from "./close_reason.ts";
 * assert.equal(describeCloseReason({ kind: "idle", ms: 200 }), "idle for more than 200 ms");
 * assert.match(
 *   describeCloseReason({ kind: "slow-stall", stallMs: 1000, limitBytes: 4096 }),
 *   /^slow consumer: took no byte for 1000 ms/,
 * );
 * ```
 */
export function describeCloseReason(reason: CloseReason): string {
  switch (reason.kind) {
    case "peer-closed":
      return "peer closed";
    case "slow-bytes":
      return `slow consumer: more than ${reason.limitBytes} bytes queued`;
    case "slow-stall":
      return `slow consumer: took no byte for ${reason.stallMs} ms ` +
        `and more than ${reason.limitBytes} bytes queued`;
    case "write-timeout":
      return `slow consumer: a write was blocked for more than ${reason.ms} ms`;
    case "idle":
      return `idle for more than ${reason.ms} ms`;
    case "heartbeat":
      return `idle for more than ${reason.ms} ms (${reason.misses} heartbeats missed)`;
    case "shutdown":
      return reason.text ?? "server shutting down";
    case "error":
      return reason.message;
  }
}

/**
 * Makes the `error` reason for a thrown value.
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert/strict";
 * import { errorReason } from "./close_reason.ts";
 * assert.deepEqual(errorReason(new Error("bad frame")), { kind: "error", message: "bad frame" });
 * ```
 */
export function errorReason(error: unknown): CloseReason {
  return { kind: "error", message: error instanceof Error ? error.message : String(error) };
}
