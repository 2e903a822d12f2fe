/**
 * How `sockit send` reports what it does: a progress bar on a terminal (per file and total,
 * rate, ETA; redrawn at most {@linkcode REDRAW_INTERVAL_MS} apart), plain log lines
 * otherwise, or one JSON object per event on stdout with `--json`.
 *
 * @module
 */

import { type Logger, printable } from "../log.ts";
import { formatBytes, formatDuration, formatRate } from "./human.ts";

/** Shortest time between two redraws of the progress bar, in ms (at most 5 per second). */
export const REDRAW_INTERVAL_MS = 200;

/** How one entry ended on the sender's side. */
export type EntryStatus = "confirmed" | "rejected" | "failed" | "aborted";

/** The outcome of one offered entry. */
export interface EntryResult {
  /** "file", "dir" or "link". */
  kind: "file" | "dir" | "link";
  /** Path as sent. */
  path: string;
  /** How it ended. */
  status: EntryStatus;
  /** Name the receiver stored it under (when confirmed). */
  storedAs?: string;
  /** File size in bytes. */
  size: number;
  /** Bytes of file data sent in this run. */
  sent: number;
  /** Offset the transfer resumed from (0: from the start). */
  resumedFrom: number;
  /** Whether the receiver checked a SHA-256. */
  verified: boolean;
  /** Seconds from offer to answer. */
  seconds: number;
  /** Reason name when rejected or failed ("exists", "hash mismatch"...). */
  reason?: string;
  /** Detail when rejected or failed. */
  message?: string;
  /**
   * True when the receiver already had this file (same size and SHA-256) under its name: it
   * counts as confirmed, nothing was stored.
   */
  alreadyThere?: boolean;
}

/** Totals of one `send` run. */
export interface SendSummary {
  /** Entries offered (files, folders, links). */
  entries: number;
  /** Entries the receiver confirmed (those already there included). */
  confirmed: number;
  /** Files the receiver already had (same size and SHA-256), counted in `confirmed`. */
  alreadyThere: number;
  /** Entries rejected by the receiver. */
  rejected: number;
  /** Files that failed verification or storage, or that the sender aborted. */
  failed: number;
  /** Entries skipped by the sender (symlinks pointing outside, special files). */
  skipped: number;
  /** Sum of the sizes of the files offered. */
  bytesTotal: number;
  /** File bytes that travelled in this run. */
  bytesSent: number;
  /** Wall time of the run in seconds. */
  seconds: number;
  /** True when every offered entry was confirmed. */
  ok: boolean;
  /** Why the session broke off, when it did. */
  error?: string;
  /** True when a signal interrupted the run (the caller prints what was stored). */
  interrupted?: boolean;
}

/** Receives the sender's events. */
export interface SendReporter {
  /** The walk is done: this much will be offered. */
  start(totals: { entries: number; files: number; bytes: number }): void;
  /** A file's data starts at `offset` (bytes before it are already on the receiver). */
  fileStart(path: string, size: number, offset: number): void;
  /** `bytes` more of the current file were sent. */
  progress(bytes: number): void;
  /** An entry was answered. */
  entry(result: EntryResult): void;
  /** Something was skipped or is worth a warning. */
  warn(message: string, path?: string): void;
  /** The run ended. */
  summary(summary: SendSummary): void;
}

function plural(n: number, one: string, many = `${one}s`): string {
  return `${n} ${n === 1 ? one : many}`;
}

function describe(r: EntryResult): string {
  const path = printable(r.path);
  if (r.alreadyThere) return `already there: ${path} (same size and SHA-256)`;
  if (r.status === "confirmed") {
    // The stored name and the receiver's messages come from the network: shown escaped.
    const name = r.storedAs && r.storedAs !== r.path ? ` as ${printable(r.storedAs)}` : "";
    if (r.kind !== "file") return `sent ${r.kind} ${path}${name}`;
    const rate = r.seconds > 0 ? `, ${formatRate(r.sent / r.seconds)}` : "";
    const resumed = r.resumedFrom > 0 ? `, resumed at ${formatBytes(r.resumedFrom)}` : "";
    const check = r.verified ? "sha256 verified" : "not verified (--no-verify)";
    return `sent ${path}${name} (${formatBytes(r.size)} in ${
      formatDuration(r.seconds)
    }${rate}${resumed}, ${check})`;
  }
  return `${r.status} ${r.kind} ${path}: ${r.reason ?? ""}${
    r.message ? ` (${printable(r.message)})` : ""
  }`;
}

function summaryLine(s: SendSummary): string {
  const parts = [
    `${s.confirmed}/${s.entries} entries confirmed${
      s.alreadyThere ? ` (${s.alreadyThere} already there)` : ""
    }`,
  ];
  if (s.rejected) parts.push(`${s.rejected} rejected`);
  if (s.failed) parts.push(`${s.failed} failed`);
  if (s.skipped) parts.push(`${s.skipped} skipped`);
  const rate = s.seconds > 0 ? `, ${formatRate(s.bytesSent / s.seconds)}` : "";
  return `${parts.join(", ")}; ${formatBytes(s.bytesSent)} sent in ${
    formatDuration(s.seconds)
  }${rate}`;
}

/** Options for {@linkcode LineReporter}. */
export interface LineReporterOptions {
  /**
   * The logger was made quiet (`-q`): the lines of confirmed files are not even formatted,
   * which a tree of thousands of small files notices. @default {false}
   */
  quiet?: boolean;
}

/** Plain log lines (stderr, through the logger): one per entry, warnings, a summary. */
export class LineReporter implements SendReporter {
  #log: Logger;
  #quiet: boolean;

  /** Logs through `log`. */
  constructor(log: Logger, options: LineReporterOptions = {}) {
    this.#log = log;
    this.#quiet = options.quiet ?? false;
  }

  /** Logs what will be sent. */
  start(totals: { entries: number; files: number; bytes: number }): void {
    this.#log.info(
      `sending ${plural(totals.files, "file")} (${formatBytes(totals.bytes)}), ${
        plural(totals.entries, "entry", "entries")
      } in all`,
    );
  }

  /** Logs a resume (not when nothing is left to send: the entry's line says what happened). */
  fileStart(path: string, size: number, offset: number): void {
    if (offset > 0 && offset < size) {
      this.#log.info(`resuming ${path} at ${formatBytes(offset)} of ${formatBytes(size)}`);
    }
  }

  /** Nothing per chunk. */
  progress(_bytes: number): void {}

  /** One line per file (folders and links only with --verbose); failures as errors. */
  entry(result: EntryResult): void {
    if (result.status === "confirmed" && result.kind !== "file") this.#log.debug(describe(result));
    else if (result.status === "confirmed") {
      if (!this.#quiet) this.#log.info(describe(result));
    } else this.#log.error(describe(result));
  }

  /** A warning line. */
  warn(message: string): void {
    this.#log.warn(message);
  }

  /** The summary line (none when interrupted: the command prints what was stored). */
  summary(summary: SendSummary): void {
    if (summary.interrupted) return;
    if (summary.ok) this.#log.info(summaryLine(summary));
    else this.#log.error(summaryLine(summary));
  }
}

/** One JSON object per line on `sink` (stdout): start, file, warning and summary events. */
export class JsonReporter implements SendReporter {
  #sink: { writeSync(p: Uint8Array): number };
  #encoder = new TextEncoder();

  /** Writes to `sink`. @default {Deno.stdout} */
  constructor(sink: { writeSync(p: Uint8Array): number } = Deno.stdout) {
    this.#sink = sink;
  }

  #emit(obj: Record<string, unknown>): void {
    const data = this.#encoder.encode(JSON.stringify(obj) + "\n");
    let off = 0;
    while (off < data.length) off += this.#sink.writeSync(data.subarray(off));
  }

  /** A `start` event. */
  start(totals: { entries: number; files: number; bytes: number }): void {
    this.#emit({ event: "start", ...totals });
  }

  /** Nothing: the entry event carries the resume offset. */
  fileStart(_path: string, _size: number, _offset: number): void {}

  /** Nothing per chunk. */
  progress(_bytes: number): void {}

  /** An `entry` event. */
  entry(result: EntryResult): void {
    this.#emit({ event: "entry", ...result });
  }

  /** A `warning` event. */
  warn(message: string, path?: string): void {
    this.#emit({ event: "warning", message, ...(path === undefined ? {} : { path }) });
  }

  /** The `summary` event. */
  summary(summary: SendSummary): void {
    this.#emit({ event: "summary", ...summary });
  }
}

/** A progress bar on a terminal (stderr), with entry lines printed above it. */
export class BarReporter implements SendReporter {
  #log: Logger;
  #lines: LineReporter;
  #out: { writeSync(p: Uint8Array): number };
  #encoder = new TextEncoder();
  #totalBytes = 0;
  #doneBytes = 0;
  #fileName = "";
  #fileSize = 0;
  #fileDone = 0;
  #startedAt = performance.now();
  #sentThisRun = 0;
  #lastDraw = 0;
  #shown = false;

  /** Draws on `out` (stderr); entry lines go through `log`. */
  constructor(log: Logger, out: { writeSync(p: Uint8Array): number } = Deno.stderr) {
    this.#log = log;
    this.#lines = new LineReporter(log);
    this.#out = out;
  }

  #write(text: string): void {
    const data = this.#encoder.encode(text);
    let off = 0;
    while (off < data.length) off += this.#out.writeSync(data.subarray(off));
  }

  #clear(): void {
    if (this.#shown) this.#write("\r\x1b[K");
    this.#shown = false;
  }

  #draw(force = false): void {
    const now = performance.now();
    if (!force && now - this.#lastDraw < REDRAW_INTERVAL_MS) return;
    this.#lastDraw = now;
    const total = Math.max(1, this.#totalBytes);
    const frac = Math.min(1, this.#doneBytes / total);
    const width = 20;
    const filled = Math.round(frac * width);
    const seconds = (now - this.#startedAt) / 1000;
    const rate = seconds > 0 ? this.#sentThisRun / seconds : 0;
    const eta = rate > 0 ? (this.#totalBytes - this.#doneBytes) / rate : Infinity;
    const filePct = this.#fileSize > 0 ? Math.floor((this.#fileDone / this.#fileSize) * 100) : 100;
    let line = `[${"#".repeat(filled)}${".".repeat(width - filled)}] ${Math.floor(frac * 100)}% ` +
      `${formatBytes(this.#doneBytes)}/${formatBytes(this.#totalBytes)} ${formatRate(rate)} ` +
      `ETA ${formatDuration(eta)}${this.#fileName ? ` | ${this.#fileName} ${filePct}%` : ""}`;
    let columns = 100;
    try {
      const size = Deno.consoleSize().columns;
      if (size >= 40) columns = size;
    } catch {
      // Not a console after all: keep the default width.
    }
    if (line.length > columns - 1) line = line.slice(0, Math.max(10, columns - 1));
    this.#write(`\r${line}\x1b[K`);
    this.#shown = true;
  }

  /** Remembers the totals and draws the empty bar. */
  start(totals: { entries: number; files: number; bytes: number }): void {
    this.#totalBytes = totals.bytes;
    this.#startedAt = performance.now();
    this.#lines.start(totals);
    this.#draw(true);
  }

  /** Switches the per-file part of the bar. */
  fileStart(path: string, size: number, offset: number): void {
    this.#fileName = path;
    this.#fileSize = size;
    this.#fileDone = offset;
    this.#doneBytes += offset;
    if (offset > 0) {
      this.#clear();
      this.#lines.fileStart(path, size, offset);
    }
    this.#draw(true);
  }

  /** Counts bytes and redraws when due. */
  progress(bytes: number): void {
    this.#fileDone += bytes;
    this.#doneBytes += bytes;
    this.#sentThisRun += bytes;
    this.#draw();
  }

  /** Prints the entry's line above the bar. */
  entry(result: EntryResult): void {
    this.#clear();
    this.#lines.entry(result);
    if (result.kind === "file" && result.status !== "confirmed") {
      // The bar counts bytes offered; a refused or failed file's remaining bytes will not come.
      const done = result.path === this.#fileName ? this.#fileDone : 0;
      this.#doneBytes += Math.max(0, result.size - done);
    }
    this.#fileName = "";
    this.#fileSize = 0;
    this.#fileDone = 0;
    this.#draw(true);
  }

  /** Prints a warning above the bar. */
  warn(message: string): void {
    this.#clear();
    this.#log.warn(message);
    this.#draw(true);
  }

  /** Removes the bar and prints the summary. */
  summary(summary: SendSummary): void {
    this.#clear();
    this.#lines.summary(summary);
  }
}

/** Receives the receiver's per-file progress (several files at once with concurrent senders). */
export interface ReceiveProgress {
  /** A file's data starts at `offset`; `key` identifies it until {@linkcode fileEnd}. */
  fileStart(key: string, path: string, size: number, offset: number): void;
  /** `bytes` more of the file arrived. */
  progress(key: string, bytes: number): void;
  /** The file is done (stored, failed or cut off). */
  fileEnd(key: string): void;
}

interface ActiveFile {
  path: string;
  size: number;
  done: number;
  from: number;
  started: number;
}

/**
 * The receiver's status line on a terminal: each file being received with its percentage,
 * rate and ETA, redrawn at most every {@linkcode REDRAW_INTERVAL_MS}. Log lines go through
 * {@linkcode StatusLine.sink}, which clears the status line first and redraws it after.
 *
 * @example Usage
 * ```ts ignore
 * import { Logger } from "../log.ts";
 * import { StatusLine } from "./progress.ts";
 * const status = new StatusLine();
 * const log = new Logger("recv", { sink: status.sink });
 * ```
 */
export class StatusLine implements ReceiveProgress {
  #out: { writeSync(p: Uint8Array): number };
  #encoder = new TextEncoder();
  #active = new Map<string, ActiveFile>();
  #shown = false;
  #lastDraw = 0;

  /** Draws on `out` (stderr). */
  constructor(out: { writeSync(p: Uint8Array): number } = Deno.stderr) {
    this.#out = out;
  }

  /** A sink for a {@linkcode Logger}: log lines appear above the status line. */
  readonly sink: { writeSync(p: Uint8Array): number } = {
    writeSync: (p: Uint8Array) => {
      this.#clear();
      this.#writeBytes(p);
      this.#draw(true);
      return p.length;
    },
  };

  #writeBytes(data: Uint8Array): void {
    let off = 0;
    while (off < data.length) off += this.#out.writeSync(data.subarray(off));
  }

  #clear(): void {
    if (this.#shown) this.#writeBytes(this.#encoder.encode("\r\x1b[K"));
    this.#shown = false;
  }

  #draw(force = false): void {
    const now = performance.now();
    if (!force && now - this.#lastDraw < REDRAW_INTERVAL_MS) return;
    this.#lastDraw = now;
    if (this.#active.size === 0) {
      this.#clear();
      return;
    }
    const parts = [...this.#active.values()].slice(0, 2).map((f) => {
      const seconds = (now - f.started) / 1000;
      const rate = seconds > 0 ? (f.done - f.from) / seconds : 0;
      const eta = rate > 0 ? (f.size - f.done) / rate : Infinity;
      const pct = f.size > 0 ? Math.floor((f.done / f.size) * 100) : 100;
      return `${f.path} ${pct}% of ${formatBytes(f.size)} ${formatRate(rate)} ETA ${
        formatDuration(eta)
      }`;
    });
    const more = this.#active.size > 2 ? ` (+${this.#active.size - 2} more)` : "";
    let line = `receiving ${parts.join(" | ")}${more}`;
    let columns = 100;
    try {
      const size = Deno.consoleSize().columns;
      if (size >= 40) columns = size;
    } catch {
      // Not a console: keep the default width.
    }
    if (line.length > columns - 1) line = line.slice(0, columns - 1);
    this.#writeBytes(this.#encoder.encode(`\r${line}\x1b[K`));
    this.#shown = true;
  }

  /** Adds a file to the line. */
  fileStart(key: string, path: string, size: number, offset: number): void {
    this.#active.set(key, { path, size, done: offset, from: offset, started: performance.now() });
    this.#draw(true);
  }

  /** Counts bytes and redraws when due. */
  progress(key: string, bytes: number): void {
    const f = this.#active.get(key);
    if (f) f.done += bytes;
    this.#draw();
  }

  /** Removes a file from the line. */
  fileEnd(key: string): void {
    if (this.#active.delete(key)) this.#draw(true);
  }
}
