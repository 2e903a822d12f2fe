/**
 * What a receiving session is given and what it reports: {@linkcode ReceiveOptions}, their
 * defaults ({@linkcode RECEIVE_DEFAULTS}, the one source of each default) and
 * {@linkcode ReceiveSummary}.
 *
 * @module
 */

import type { Widened } from "../defaults.ts";
import type { FdBudget } from "../net/fd_budget.ts";
import type { Logger } from "../log.ts";
import type { HashWorkerMode } from "./hasher.ts";
import type { ReceiveProgress } from "./progress.ts";
import type { ReasonValue } from "./protocol.ts";

/** Defaults of {@linkcode ReceiveOptions}. */
export const RECEIVE_DEFAULTS = {
  /** Replace existing files. */
  overwrite: false,
  /** Store under `name (1).ext` when the name exists. */
  rename: false,
  /** fsync each file and its folder before confirming. */
  sync: true,
  /** Largest file accepted, in bytes; 0 means no limit. */
  maxFileSize: 0,
  /**
   * Close a sender that sends nothing, or takes none of the receiver's bytes, for this long,
   * in ms.
   */
  idleTimeoutMs: 60_000,
  /** Close a connection whose hello has not arrived after this long, in ms. */
  handshakeTimeoutMs: 5_000,
  /** Hash on a worker thread by size and core count. */
  hashWorker: "auto",
  /** One info line per entry stored or already there. */
  entryLines: true,
} as const satisfies Partial<ReceiveOptions>;

/** Options for {@linkcode receiveSession}. */
export interface ReceiveOptions {
  /** Absolute real path of the folder everything lands in. */
  dir: string;
  /** Replace existing files (`--overwrite`). @default {false} */
  overwrite?: boolean;
  /** Store under `name (1).ext` when the name exists (`--rename`). @default {false} */
  rename?: boolean;
  /** fsync each file and its folder before confirming (`--no-sync` turns off). @default {true} */
  sync?: boolean;
  /** Largest file accepted in bytes; 0: no limit. @default {0} */
  maxFileSize?: number;
  /**
   * Close a sender that sends nothing, or reads none of the answers, for this many ms; 0
   * disables. @default {60000}
   */
  idleTimeoutMs?: number;
  /** Close a connection whose hello has not arrived after this many ms. @default {5000} */
  handshakeTimeoutMs?: number;
  /**
   * Called once the sender's hello arrived: returns the function that frees its place, or
   * null when no place is free (the sender then gets an Error frame "receiver busy" and the
   * session ends). @default {every sender admitted}
   */
  admit?: () => (() => void) | null;
  /**
   * Aborting it cuts the session in whatever state it is: the sender gets an Error frame
   * "receiver shut down, run again to resume", partial files stay. @default {none}
   */
  signal?: AbortSignal;
  /**
   * Descriptors the session may hold for pipelined files waiting for their batch's fsync;
   * share one between sessions. @default {no bound: each stays open until its batch commits}
   */
  fdBudget?: FdBudget;
  /** Logger for per-file lines. */
  logger?: Logger;
  /**
   * Log an info line for each entry stored or already there; false (what `recv -q` passes)
   * skips even formatting them, which a tree of thousands of small files notices. Refusals
   * and failures are always logged. @default {true}
   */
  entryLines?: boolean;
  /**
   * Partial files being written by any session of this receiver; a second sender of the
   * same name is refused as busy. Share one set between concurrent sessions.
   */
  inUse?: Set<string>;
  /** Hash on a worker thread: by size and core count, always, or never. @default {"auto"} */
  hashWorker?: HashWorkerMode;
  /** Per-file progress (the status line on a terminal). @default {none} */
  progress?: ReceiveProgress;
}

/** {@linkcode ReceiveOptions} merged over {@linkcode RECEIVE_DEFAULTS}. */
export type ReceiveSettings = Widened<typeof RECEIVE_DEFAULTS> & ReceiveOptions;

/** What one session did. */
export interface ReceiveSummary {
  /** The sender's address. */
  peer: string;
  /** True once both hellos matched (and the sender was admitted). */
  started: boolean;
  /** True when the session was cut by `signal` (shutdown). */
  cut?: boolean;
  /** True when the sender said Bye after its last entry. */
  complete: boolean;
  /** Entries offered. */
  entries: number;
  /** Entries stored and confirmed. */
  confirmed: number;
  /** Offers refused. */
  rejected: number;
  /** Files that failed (hash or size mismatch, I/O error) or that the sender aborted. */
  failed: number;
  /** Offers refused and files failed, by reason (the `rejected` and `failed` entries). */
  refusals: Partial<Record<ReasonValue, number>>;
  /** File bytes received in this session. */
  bytes: number;
  /** Why the session ended early, if it did. */
  error?: string;
  /** True when the session completed and every entry was confirmed. */
  ok: boolean;
}
