/**
 * What every part of one receiving connection shares ({@linkcode ReceiveContext}): the reader
 * and writer, the settings, the summary counts, the hashers and chunk buffers, and the log
 * lines about single entries (each written in one place: refused, failed, already there,
 * received).
 *
 * @module
 */

import type { BufferedReader } from "../net/buffered_reader.ts";
import { encodeFrame } from "../net/frame.ts";
import type { FdBudget } from "../net/fd_budget.ts";
import { writeAll, type Writer } from "../net/write_all.ts";
import { type Logger, printable, quote } from "../log.ts";
import { allocateChunk, HasherChoice, RING_SLOTS } from "./hasher.ts";
import { formatBytes, formatDuration, formatRate } from "./human.ts";
import type { IdleReader } from "./idle_reader.ts";
import type { ReceiveProgress } from "./progress.ts";
import { MAX_DATA_PAYLOAD, type Offer, REASON_NAMES } from "./protocol.ts";
import type { Refusal } from "./refusal.ts";
import type { ReceiveSettings, ReceiveSummary } from "./receive_options.ts";

/** What {@linkcode ReceiveContext} is made from, besides the settings. */
export interface ReceiveContextParts {
  /** The sender's frames. */
  reader: BufferedReader;
  /** Where answers go (through the deadline, so a sender that reads nothing is cut). */
  out: Writer;
  /** The connection's deadline, paused while a batch syncs. */
  idle: IdleReader | null;
  /** The sender's address, for log lines. */
  peer: string;
}

/** The state one receiving connection shares between the loop and the entry handlers. */
export class ReceiveContext {
  /** The sender's frames. */
  readonly reader: BufferedReader;
  /** Where answers go. */
  readonly out: Writer;
  /** The connection's deadline. */
  readonly idle: IdleReader | null;
  /** The sender's address. */
  readonly peer: string;
  /** Options merged over their defaults. */
  readonly settings: ReceiveSettings;
  /** Partial files being written by any session of this receiver. */
  readonly inUse: Set<string>;
  /** Folders known to exist inside the receiving folder. */
  readonly knownDirs: Set<string> = new Set();
  /** Folders this session created. */
  readonly createdDirs: Set<string> = new Set();
  /** Descriptors pipelined files may hold until their batch's fsync. */
  readonly budget: FdBudget | undefined;
  /** Per-file progress. */
  readonly progress: ReceiveProgress | undefined;
  /** The hasher for each file. */
  readonly hashers: HasherChoice;
  /** The counts so far. */
  readonly summary: ReceiveSummary;
  #log: Logger | undefined;
  /** The logger, when it gets a line per stored entry. */
  #entryLog: Logger | undefined;
  #ring: Uint8Array[] | null = null;

  /** A context for one connection. */
  constructor(parts: ReceiveContextParts, settings: ReceiveSettings) {
    this.reader = parts.reader;
    this.out = parts.out;
    this.idle = parts.idle;
    this.peer = parts.peer;
    this.settings = settings;
    this.inUse = settings.inUse ?? new Set();
    this.budget = settings.fdBudget;
    this.progress = settings.progress;
    this.#log = settings.logger;
    this.#entryLog = settings.entryLines ? settings.logger : undefined;
    this.hashers = new HasherChoice({ mode: settings.hashWorker });
    this.summary = {
      peer: parts.peer,
      started: false,
      complete: false,
      entries: 0,
      confirmed: 0,
      rejected: 0,
      failed: 0,
      refusals: {},
      bytes: 0,
      ok: false,
    };
  }

  /** The logger, if any. */
  get log(): Logger | undefined {
    return this.#log;
  }

  /** Chunk buffers for streamed data, allocated on first use (shared with the hash worker). */
  get ring(): Uint8Array[] {
    this.#ring ??= Array.from({ length: RING_SLOTS }, () => allocateChunk(MAX_DATA_PAYLOAD));
    return this.#ring;
  }

  /** Writes one frame to the sender now. */
  async send(type: number, payload?: Uint8Array): Promise<void> {
    await writeAll(this.out, encodeFrame(type, payload));
  }

  /** Counts and logs a refused offer (`failed`: refused after its data). */
  refused(offer: Offer, refusal: Refusal, options: { failed: boolean }): void {
    if (options.failed) this.summary.failed++;
    else this.summary.rejected++;
    const { refusals } = this.summary;
    refusals[refusal.reason] = (refusals[refusal.reason] ?? 0) + 1;
    this.#log?.error(
      `${options.failed ? "failed" : "rejected"} ${quote(offer.path)} from ${this.peer}: ${
        REASON_NAMES[refusal.reason]
      } (${printable(refusal.message)})`,
    );
  }

  /**
   * A timestamp for an entry's log line (`performance.now()`), or 0 when no such line is
   * written: a clock read less per file.
   */
  entryClock(): number {
    return this.#entryLog === undefined ? 0 : performance.now();
  }

  /** Counts and logs an entry that was already there. */
  alreadyThere(offer: Offer): void {
    this.summary.confirmed++;
    this.#entryLog?.info(
      `already there: ${quote(offer.path)} (same size and SHA-256, from ${this.peer})`,
    );
  }

  /**
   * Counts and logs a file stored as `rel`, `options.seconds` after its offer, with
   * `options.bytes` of it received now (from `options.resumedAt`).
   */
  received(
    offer: Offer,
    rel: string,
    options: { seconds: number; bytes: number; resumedAt?: number },
  ): void {
    this.summary.confirmed++;
    if (this.#entryLog === undefined) return;
    const { seconds, bytes, resumedAt = 0 } = options;
    const resumed = resumedAt > 0 ? `, resumed at ${formatBytes(resumedAt)}` : "";
    const check = offer.verify ? "sha256 verified" : "not verified: sender used --no-verify";
    this.#entryLog.info(
      `received ${quote(rel)} (${formatBytes(offer.size)} in ${formatDuration(seconds)}, ${
        formatRate(bytes / Math.max(seconds, 1e-6))
      }${resumed}, ${check})`,
    );
  }

  /** Stops the hash worker, if one was started. */
  async close(): Promise<void> {
    await this.hashers.close();
  }
}
