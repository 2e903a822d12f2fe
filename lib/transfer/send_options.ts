/**
 * What a sending session is given: {@linkcode SendOptions} and their defaults
 * ({@linkcode SEND_DEFAULTS}, the one source of each default).
 *
 * @module
 */

import type { Widened } from "../defaults.ts";
import type { HashWorkerMode } from "./hasher.ts";
import type { SendReporter } from "./progress.ts";
import { MAX_DATA_PAYLOAD } from "./protocol.ts";

/** Defaults of {@linkcode SendOptions}. */
export const SEND_DEFAULTS = {
  /** Send a SHA-256 of every file for the receiver to check. */
  verify: true,
  /**
   * Longest wait for any answer from the receiver, in ms (it includes the receiver's fsync
   * of a large file before it confirms).
   */
  replyTimeoutMs: 120_000,
  /** Bytes per Data frame (at most {@linkcode MAX_DATA_PAYLOAD}). */
  chunkSize: MAX_DATA_PAYLOAD,
  /** Hash on a worker thread by size and core count. */
  hashWorker: "auto",
} as const satisfies SendOptions;

/** Options for {@linkcode sendEntries}. */
export interface SendOptions {
  /** Send SHA-256s (`--no-verify` turns this off). @default {true} */
  verify?: boolean;
  /** Where events go. @default {a reporter that ignores everything} */
  reporter?: SendReporter;
  /** Longest wait for an answer from the receiver, in ms. @default {120000} */
  replyTimeoutMs?: number;
  /** Bytes per Data frame, at most 1 MiB. @default {1048576} */
  chunkSize?: number;
  /** Hash on a worker thread: by size and core count, always, or never. @default {"auto"} */
  hashWorker?: HashWorkerMode;
  /**
   * Aborting it (SIGINT, SIGTERM) closes the connection and makes {@linkcode sendEntries}
   * reject with {@linkcode SendInterruptedError}. @default {none}
   */
  signal?: AbortSignal;
}

/** {@linkcode SendOptions} merged over {@linkcode SEND_DEFAULTS}. */
export type SendSettings = Widened<typeof SEND_DEFAULTS> & SendOptions;
