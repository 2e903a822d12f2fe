/**
 * The sending side of a transfer session: hello, then for each entry an offer, the
 * receiver's answer, and for files the data in {@linkcode MAX_DATA_PAYLOAD} frames followed by
 * the SHA-256, then the receiver's confirmation. A ring of reused chunk buffers lets the disk
 * read of one chunk overlap with the socket write (and the hash) of the previous ones.
 *
 * On resume the receiver offers its partial length and the SHA-256 of that prefix; the
 * sender hashes its own prefix and sends only the rest when they match (from zero when the
 * source changed).
 *
 * Folders, symlinks and files of at most {@linkcode MAX_INLINE_FILE_BYTES} are pipelined
 * (protocol v2): each is read whole, hashed, and sent as Offer, Data and End at once, without
 * waiting for answers, keeping at most {@linkcode PIPELINE_WINDOW_ENTRIES} entries and
 * {@linkcode PIPELINE_WINDOW_BYTES} of their data unanswered, with a Flush after every
 * {@linkcode PIPELINE_BATCH_ENTRIES} entries and before any wait for an answer no Flush asked
 * for yet. Answers are read by one pump in offer order. Larger files wait for every earlier
 * answer and then go through Accept and Start as above, so they can resume.
 *
 * The pump reads at all times, so an Error frame the receiver sends while this side streams
 * (it is shutting down) stops the stream at once; a file the receiver already has (same size
 * and SHA-256) counts as done ("already there"). Aborting `options.signal` (SIGINT) closes the
 * connection and rejects with {@linkcode SendInterruptedError}, which says what was stored.
 *
 * @module
 */

import { createHash } from "node:crypto";
import { BufferedReader } from "../net/buffered_reader.ts";
import { ProtocolError } from "../net/errors.ts";
import {
  ControlFrame,
  encodeFrame,
  encodeFrameHeader,
  encodeHello,
  type Frame,
  FRAME_HEADER_SIZE,
  readFrame,
  readHello,
} from "../net/frame.ts";
import { writeAll, type Writer } from "../net/write_all.ts";
import { withTimeout } from "../net/deadline.ts";
import { quote } from "../log.ts";
import {
  allocateChunk,
  type ChunkHasher,
  type HashWorkerMode,
  InlineHasher,
  RING_SLOTS,
  startHasher,
  useHashWorker,
} from "./hasher.ts";
import { formatBytes } from "./human.ts";
import { IdleReader } from "./idle_reader.ts";
import type { EntryResult, SendReporter, SendSummary } from "./progress.ts";
import {
  decodeAccept,
  decodeRefusal,
  decodeTextPayload,
  encodeOffer,
  encodeStart,
  encodeText,
  EntryKind,
  frameName,
  KEEPALIVE_INTERVAL_MS,
  MAX_CONTROL_PAYLOAD,
  MAX_DATA_PAYLOAD,
  MAX_INLINE_FILE_BYTES,
  PIPELINE_BATCH_ENTRIES,
  PIPELINE_WINDOW_BYTES,
  PIPELINE_WINDOW_ENTRIES,
  Reason,
  REASON_NAMES,
  ReceiverError,
  TRANSFER_PROTOCOL,
  TRANSFER_VERSION,
  TransferFrame,
} from "./protocol.ts";
import type { LocalEntry, WalkResult } from "./walk.ts";

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
} as const;

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
 * import { SendInterruptedError } from "./sender.ts";
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
function receiverEnded(payload: Uint8Array): string {
  return `Receiver ended the session: ${quote(payload)}`;
}

const SILENT: SendReporter = {
  start() {},
  fileStart() {},
  progress() {},
  entry() {},
  warn() {},
  summary() {},
};

const KIND_NAMES = {
  [EntryKind.File]: "file",
  [EntryKind.Directory]: "dir",
  [EntryKind.Symlink]: "link",
} as const;

async function readFileFull(file: Deno.FsFile, dst: Uint8Array): Promise<number> {
  let filled = 0;
  while (filled < dst.length) {
    const n = await file.read(dst.subarray(filled));
    if (n === null) break;
    filled += n;
  }
  return filled;
}

function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((v, i) => v === b[i]);
}

/** Longest wait for the receiver's last frames after the connection broke, in ms. */
const LAST_WORDS_MS = 1000;

/** Pipelined frames are gathered and written once this many bytes (256 KiB) are queued. */
const OUTPUT_FLUSH_BYTES = 256 * 1024;

/**
 * The receiver's answers, read by one pump in the order they arrive. The pump reads at all
 * times, so that an Error frame sent while nothing is due (the receiver is busy or shutting
 * down) is seen at once; the reply deadline only runs while answers are expected (a long file
 * stream with nothing expected does not count as an idle receiver). It never stops reading
 * while any answer is expected, so the receiver can always write its answers while this side
 * writes data. Pings are skipped.
 */
class AnswerQueue {
  #reader: BufferedReader;
  #idle: IdleReader | undefined;
  #frames: (Frame | null)[] = [];
  #outstanding = 0;
  #error: unknown = null;
  #failed = false;
  #refusal: Uint8Array | null = null;
  #resumeIdle: (() => void) | null = null;
  #wakeTaker: (() => void) | null = null;
  /** Settles when the pump stopped: the receiver closed, sent an Error frame, or reading failed. */
  readonly done: Promise<void>;

  constructor(reader: BufferedReader, idle?: IdleReader) {
    this.#reader = reader;
    this.#idle = idle;
    this.done = this.#pump();
  }

  /** One more answer is due (the request that asks for it was written). */
  expect(): void {
    this.#outstanding++;
    this.#resumeIdle?.();
    this.#resumeIdle = null;
  }

  #wake(): void {
    this.#wakeTaker?.();
    this.#wakeTaker = null;
  }

  async #pump(): Promise<void> {
    try {
      while (true) {
        if (this.#outstanding === 0) this.#resumeIdle = this.#idle?.pause() ?? null;
        let frame: Frame | null;
        try {
          frame = await readFrame(this.#reader, { maxPayload: MAX_CONTROL_PAYLOAD });
        } finally {
          this.#resumeIdle?.();
          this.#resumeIdle = null;
        }
        // Keepalives while the receiver hashes a partial file.
        if (frame?.type === ControlFrame.Ping) continue;
        if (frame?.type === ControlFrame.Error) this.#refusal = frame.payload;
        else if (frame !== null && this.#outstanding === 0) {
          throw new ProtocolError(
            `Cannot continue: got ${frameName(frame.type)} while no answer was due`,
          );
        }
        this.#frames.push(frame);
        this.#wake();
        if (frame === null || frame.type === ControlFrame.Error) return;
        this.#outstanding--;
      }
    } catch (error) {
      this.#error = error;
      this.#failed = true;
      this.#wake();
    }
  }

  /** True when an answer (or the end of the connection) is waiting to be taken. */
  get ready(): boolean {
    return this.#frames.length > 0 || this.#failed;
  }

  /** The text of the Error frame the receiver ended the session with, if one arrived. */
  get refusal(): Uint8Array | null {
    return this.#refusal;
  }

  /** Throws when the receiver already ended the session (an Error frame, a bad frame). */
  throwIfEnded(): void {
    if (this.#refusal !== null) throw new TransferRefusedError(receiverEnded(this.#refusal));
    if (this.#failed) throw this.#error;
  }

  /** The next answer in order; null once the receiver closed the connection. */
  async take(): Promise<Frame | null> {
    while (this.#frames.length === 0) {
      if (this.#failed) throw this.#error;
      await new Promise<void>((resolve) => this.#wakeTaker = resolve);
    }
    const next = this.#frames[0];
    // The end (close or Error) stays, for every later taker.
    return next === null || next.type === ControlFrame.Error ? next : this.#frames.shift()!;
  }
}

/** A pipelined entry waiting for its answer. */
interface PendingEntry {
  /** Position among the pipelined entries sent. */
  seq: number;
  entry: LocalEntry;
  result: EntryResult;
  verify: boolean;
  started: number;
}

/** One sending session over an open connection. */
class SendSession {
  /** Where frames go: through the deadline, so a receiver that reads nothing is noticed. */
  #writer: Writer;
  #opts: Required<Omit<SendOptions, "reporter" | "hashWorker" | "signal">>;
  #reporter: SendReporter;
  #ring: Uint8Array[];
  #hashWorker: HashWorkerMode;
  #inline = new InlineHasher();
  #worker: Promise<ChunkHasher> | null = null;
  #answers: AnswerQueue;
  #out: Uint8Array[] = [];
  #outBytes = 0;
  /** Pipelined entries queued so far, and how many of them a Flush has asked answers for. */
  #queued = 0;
  #flushedThrough = 0;
  bytesSent = 0;
  /** The entry the session is busy with, for error messages. */
  current = "";

  constructor(
    conn: Deno.Conn,
    reader: BufferedReader,
    options: SendOptions,
    idle?: IdleReader,
  ) {
    this.#writer = idle ?? conn;
    this.#answers = new AnswerQueue(reader, idle);
    this.#opts = {
      verify: options.verify ?? SEND_DEFAULTS.verify,
      replyTimeoutMs: options.replyTimeoutMs ?? SEND_DEFAULTS.replyTimeoutMs,
      chunkSize: Math.min(MAX_DATA_PAYLOAD, options.chunkSize ?? SEND_DEFAULTS.chunkSize),
    };
    this.#reporter = options.reporter ?? SILENT;
    this.#hashWorker = options.hashWorker ?? "auto";
    const size = FRAME_HEADER_SIZE + this.#opts.chunkSize;
    this.#ring = Array.from({ length: RING_SLOTS }, () => allocateChunk(size));
  }

  /** Counts one more answer due and writes `frame`. */
  async #request(frame: Uint8Array): Promise<void> {
    // Counted first: the pump reads at all times, and the answer may come before the write
    // resolves.
    this.#answers.expect();
    await writeAll(this.#writer, frame);
  }

  /** The next answer, which must be one of `allowed`. */
  async #reply(allowed: number[], what: string): Promise<Frame> {
    const frame = await this.#answers.take();
    if (frame === null) {
      throw new ProtocolError(`Receiver closed the connection while this side waited for ${what}`);
    }
    if (frame.type === ControlFrame.Error) {
      throw new TransferRefusedError(receiverEnded(frame.payload));
    }
    if (!allowed.includes(frame.type)) {
      throw new ProtocolError(
        `Cannot continue: got ${frameName(frame.type)} while waiting for ${what}`,
      );
    }
    return frame;
  }

  async send(entry: LocalEntry): Promise<EntryResult> {
    const started = performance.now();
    const result: EntryResult = {
      kind: KIND_NAMES[entry.kind],
      path: entry.path,
      status: "confirmed",
      size: entry.size,
      sent: 0,
      resumedFrom: 0,
      verified: false,
      seconds: 0,
    };
    const finish = () => {
      result.seconds = (performance.now() - started) / 1000;
      return result;
    };
    const refusal = (frame: Frame, status: "rejected" | "failed") => {
      const r = decodeRefusal(frame.payload);
      if (r.reason === Reason.AlreadyThere) {
        markAlreadyThere(result);
        return finish();
      }
      result.status = status;
      result.reason = REASON_NAMES[r.reason] ?? `reason ${r.reason}`;
      result.message = r.message;
      return finish();
    };
    const verify = entry.kind === EntryKind.File && this.#opts.verify;
    await this.#request(offerFrame(entry, { verify, pipelined: false }));
    const what = `the answer to the offer of ${entry.path}`;
    if (entry.kind !== EntryKind.File) {
      const answer = await this.#reply([TransferFrame.Confirm, TransferFrame.Reject], what);
      if (answer.type === TransferFrame.Reject) return refusal(answer, "rejected");
      result.storedAs = decodeTextPayload(answer.payload);
      return finish();
    }
    const answer = await this.#reply([TransferFrame.Accept, TransferFrame.Reject], what);
    if (answer.type === TransferFrame.Reject) return refusal(answer, "rejected");
    const accept = decodeAccept(answer.payload);

    using file = await Deno.open(entry.source, { read: true });
    const resumable = accept.offset > 0 && accept.offset <= entry.size;
    const hasher = verify || resumable ? await this.#hasherFor(entry.size) : null;
    await hasher?.reset();
    let start = 0;
    if (resumable) {
      if (await this.#hashPrefix(file, hasher!, accept.offset)) {
        if (equalBytes(await hasher!.peek(), accept.prefixHash)) start = accept.offset;
      }
      if (start === 0) {
        await file.seek(0, Deno.SeekMode.Start);
        await hasher!.reset();
      }
    }
    result.resumedFrom = start;
    await writeAll(this.#writer, encodeFrame(TransferFrame.Start, encodeStart(start)));
    this.#reporter.fileStart(entry.path, entry.size, start);

    const shortBy = await this.#stream(file, entry.size - start, verify ? hasher : null, result);
    if (shortBy > 0) {
      const message = `source shrank while sending: ${shortBy} bytes missing`;
      await writeAll(this.#writer, encodeFrame(TransferFrame.Abort, encodeText(message)));
      result.status = "aborted";
      result.reason = "source changed";
      result.message = message;
      return finish();
    }
    const digest = verify ? await hasher!.digest() : new Uint8Array(0);
    await this.#request(encodeFrame(TransferFrame.End, digest));
    const outcome = await this.#reply(
      [TransferFrame.Confirm, TransferFrame.Failed],
      `the confirmation of ${entry.path}`,
    );
    if (outcome.type === TransferFrame.Failed) return refusal(outcome, "failed");
    result.storedAs = decodeTextPayload(outcome.payload);
    result.verified = verify;
    return finish();
  }

  /** The hasher for a file of `size` bytes: on the worker thread for big files. */
  async #hasherFor(size: number): Promise<ChunkHasher> {
    if (!useHashWorker(size, undefined, this.#hashWorker)) return this.#inline;
    this.#worker ??= startHasher();
    return await this.#worker;
  }

  /** Hashes the first `length` bytes of `file`; false when the file is shorter. */
  async #hashPrefix(file: Deno.FsFile, hasher: ChunkHasher, length: number): Promise<boolean> {
    const ring = this.#ring;
    const busy: Promise<void>[] = ring.map(() => Promise.resolve());
    let left = length;
    let i = 0;
    let lastPing = performance.now();
    try {
      while (left > 0) {
        const slot = i++ % ring.length;
        await busy[slot];
        const buf = ring[slot];
        const n = await readFileFull(file, buf.subarray(0, Math.min(buf.length, left)));
        if (n === 0) return false;
        if (performance.now() - lastPing > KEEPALIVE_INTERVAL_MS) {
          lastPing = performance.now();
          await writeAll(this.#writer, encodeFrame(ControlFrame.Ping));
        }
        busy[slot] = hasher.update(buf.subarray(0, n));
        busy[slot].catch(() => {});
        left -= n;
      }
      await Promise.all(busy);
      return true;
    } finally {
      await Promise.allSettled(busy);
    }
  }

  /**
   * Streams `length` bytes of `file` as Data frames through a ring of reused buffers: the
   * disk read of one chunk, the socket write of another and (on the worker thread) the hash
   * of a third run at the same time. Writes stay in order. Resolves how many bytes were
   * missing (0 when the file had them all).
   */
  async #stream(
    file: Deno.FsFile,
    length: number,
    hasher: ChunkHasher | null,
    result: EntryResult,
  ): Promise<number> {
    const ring = this.#ring;
    const busy: Promise<unknown>[] = ring.map(() => Promise.resolve());
    let writing: Promise<void> = Promise.resolve();
    let left = length;
    let i = 0;
    try {
      while (left > 0) {
        // The receiver may end the session meanwhile (shutting down): stop at once.
        this.#answers.throwIfEnded();
        const slot = i++ % ring.length;
        await busy[slot];
        const buf = ring[slot];
        const want = Math.min(this.#opts.chunkSize, left);
        const n = await readFileFull(
          file,
          buf.subarray(FRAME_HEADER_SIZE, FRAME_HEADER_SIZE + want),
        );
        if (n === 0) break;
        buf[0] = TransferFrame.Data;
        new DataView(buf.buffer).setUint32(1, n);
        const frame = buf.subarray(0, FRAME_HEADER_SIZE + n);
        writing = writing.then(() => writeAll(this.#writer, frame));
        const hashed = hasher?.update(buf.subarray(FRAME_HEADER_SIZE, FRAME_HEADER_SIZE + n));
        busy[slot] = hashed ? Promise.all([writing, hashed]) : writing;
        // Awaited when the slot comes round again; until then a failure is not unhandled.
        busy[slot].catch(() => {});
        left -= n;
        result.sent += n;
        this.bytesSent += n;
        this.#reporter.progress(n);
        if (n < want) break;
      }
      await Promise.all(busy);
    } finally {
      await Promise.allSettled(busy);
    }
    return left;
  }

  /**
   * The frames of `entry` as a pipelined entry (Offer, and for a file Data and End), or null
   * when it must be streamed: a file larger than {@linkcode MAX_INLINE_FILE_BYTES}, one whose
   * size changed since the walk, or one that cannot be read now (the streamed path reports it).
   */
  #pipelined(entry: LocalEntry): Uint8Array[] | null {
    const offer = (verify: boolean) => offerFrame(entry, { verify, pipelined: true });
    if (entry.kind !== EntryKind.File) return [offer(false)];
    if (entry.size > MAX_INLINE_FILE_BYTES) return null;
    const data = new Uint8Array(entry.size + 1);
    let filled = 0;
    try {
      using file = Deno.openSync(entry.source, { read: true });
      while (filled < data.length) {
        const n = file.readSync(data.subarray(filled));
        if (n === null) break;
        filled += n;
      }
    } catch {
      return null;
    }
    if (filled !== entry.size) return null;
    const bytes = data.subarray(0, filled);
    const verify = this.#opts.verify;
    const frames = [offer(verify)];
    if (bytes.length > 0) frames.push(encodeFrameHeader(TransferFrame.Data, bytes.length), bytes);
    const digest = verify ? createHash("sha256").update(bytes).digest() : new Uint8Array(0);
    frames.push(encodeFrame(TransferFrame.End, new Uint8Array(digest)));
    return frames;
  }

  /** Queues a Flush: the receiver answers every entry queued so far. */
  #queueFlush(): void {
    const flush = encodeFrame(TransferFrame.Flush);
    this.#out.push(flush);
    this.#outBytes += flush.length;
    this.#flushedThrough = this.#queued;
  }

  /** Writes the gathered pipelined frames in one go. */
  async #flushOutput(): Promise<void> {
    if (this.#outBytes === 0) return;
    const out = new Uint8Array(this.#outBytes);
    let at = 0;
    for (const part of this.#out) {
      out.set(part, at);
      at += part.length;
    }
    this.#out = [];
    this.#outBytes = 0;
    await writeAll(this.#writer, out);
  }

  /** Reads the answer to the oldest pipelined entry and completes its result. */
  async #settle(p: PendingEntry): Promise<EntryResult> {
    const { entry, result } = p;
    this.current = entry.path;
    const isFile = entry.kind === EntryKind.File;
    const answer = await this.#reply(
      isFile
        ? [TransferFrame.Confirm, TransferFrame.Reject, TransferFrame.Failed]
        : [TransferFrame.Confirm, TransferFrame.Reject],
      `the answer to the offer of ${entry.path}`,
    );
    if (isFile) {
      // Progress is reported with the answer, so a refused file's bytes are not counted twice.
      this.#reporter.fileStart(entry.path, entry.size, 0);
      if (entry.size > 0) this.#reporter.progress(entry.size);
    }
    const r = answer.type === TransferFrame.Confirm ? null : decodeRefusal(answer.payload);
    if (r === null) {
      result.storedAs = decodeTextPayload(answer.payload);
      result.verified = p.verify;
    } else if (r.reason === Reason.AlreadyThere) {
      markAlreadyThere(result);
    } else {
      result.status = answer.type === TransferFrame.Reject ? "rejected" : "failed";
      result.reason = REASON_NAMES[r.reason] ?? `reason ${r.reason}`;
      result.message = r.message;
    }
    result.seconds = (performance.now() - p.started) / 1000;
    return result;
  }

  /**
   * Sends every entry, pipelining what can be, and calls `done` with each entry's result in
   * offer order.
   */
  async sendAll(entries: LocalEntry[], done: (result: EntryResult) => void): Promise<void> {
    const pending: PendingEntry[] = [];
    let pendingBytes = 0;
    const settleOldest = async () => {
      const p = pending.shift()!;
      // Never wait for an answer the receiver may be holding back.
      if (!this.#answers.ready && p.seq >= this.#flushedThrough) this.#queueFlush();
      await this.#flushOutput();
      pendingBytes -= p.entry.size;
      done(await this.#settle(p));
    };
    for (const entry of entries) {
      const frames = this.#pipelined(entry);
      if (frames === null) {
        while (pending.length > 0) await settleOldest();
        this.current = entry.path;
        done(await this.send(entry));
        continue;
      }
      while (
        pending.length >= PIPELINE_WINDOW_ENTRIES ||
        (pending.length > 0 && pendingBytes + entry.size > PIPELINE_WINDOW_BYTES)
      ) {
        await settleOldest();
      }
      if (pending.length === 0) this.current = entry.path;
      const isFile = entry.kind === EntryKind.File;
      pending.push({
        seq: this.#queued++,
        entry,
        verify: isFile && this.#opts.verify,
        started: performance.now(),
        result: {
          kind: KIND_NAMES[entry.kind],
          path: entry.path,
          status: "confirmed",
          size: entry.size,
          sent: entry.size,
          resumedFrom: 0,
          verified: false,
          seconds: 0,
        },
      });
      pendingBytes += entry.size;
      this.bytesSent += entry.size;
      for (const f of frames) {
        this.#out.push(f);
        this.#outBytes += f.length;
      }
      this.#answers.expect();
      if (this.#queued - this.#flushedThrough >= PIPELINE_BATCH_ENTRIES) this.#queueFlush();
      if (this.#outBytes >= OUTPUT_FLUSH_BYTES) await this.#flushOutput();
    }
    while (pending.length > 0) await settleOldest();
    this.current = "";
  }

  /** Stops the hash worker, if one was started. */
  async close(): Promise<void> {
    if (this.#worker) (await this.#worker)[Symbol.dispose]();
  }

  /** The text of the Error frame the receiver ended the session with, if one arrived. */
  get refusal(): Uint8Array | null {
    return this.#answers.refusal;
  }

  /**
   * After a write failed because the connection broke: waits (briefly) until the pump has read
   * what the receiver sent before it closed, so its Error frame, if any, is not missed.
   */
  async lastWords(): Promise<void> {
    await withTimeout(this.#answers.done, LAST_WORDS_MS).catch(() => {});
  }

  async bye(): Promise<void> {
    await this.#request(encodeFrame(ControlFrame.Bye));
    // The receiver answers Bye and closes; either ends the session.
    const frame = await this.#answers.take();
    if (frame !== null && frame.type !== ControlFrame.Bye) {
      throw new ProtocolError(`Cannot finish: got ${frameName(frame.type)} instead of Bye`);
    }
  }
}

/**
 * Runs a sending session on `conn` for the entries of `walk` and resolves the summary; the
 * connection is left open for the caller to close (it is closed here only when
 * `options.signal` aborts). Throws on a broken session (the receiver closed, refused or shut
 * down, a protocol violation, a version mismatch), {@linkcode SendInterruptedError} when the
 * signal aborted; per-entry refusals end up in the summary and the reporter's events.
 *
 * @example Usage
 * ```ts ignore
 * import { collectEntries } from "./walk.ts";
 * import { sendEntries } from "./sender.ts";
 * const conn = await Deno.connect({ hostname: "127.0.0.1", port: 7071 });
 * const summary = await sendEntries(conn, await collectEntries(["photos"]));
 * conn.close();
 * console.log(summary.ok ? "all confirmed" : "some entries failed");
 * ```
 */
export async function sendEntries(
  conn: Deno.Conn,
  walk: WalkResult,
  options: SendOptions = {},
): Promise<SendSummary> {
  const reporter = options.reporter ?? SILENT;
  const started = performance.now();
  const replyMs = options.replyTimeoutMs ?? SEND_DEFAULTS.replyTimeoutMs;
  const idle = new IdleReader(conn, replyMs);
  const { signal } = options;
  const interrupt = () => {
    try {
      conn.close();
    } catch {
      // Already closed.
    }
  };
  signal?.addEventListener("abort", interrupt, { once: true });
  const summary: SendSummary = {
    entries: walk.entries.length,
    confirmed: 0,
    alreadyThere: 0,
    rejected: 0,
    failed: 0,
    skipped: walk.skipped.length,
    bytesTotal: walk.entries.reduce((s, e) => s + e.size, 0),
    bytesSent: 0,
    seconds: 0,
    ok: false,
  };
  let session: SendSession | null = null;
  const finish = () => {
    summary.bytesSent = session?.bytesSent ?? 0;
    summary.seconds = (performance.now() - started) / 1000;
    summary.ok = summary.error === undefined && summary.confirmed === summary.entries;
    reporter.summary(summary);
  };
  try {
    signal?.throwIfAborted();
    const reader = new BufferedReader(idle);
    if ("setNoDelay" in conn) (conn as Deno.TcpConn).setNoDelay(true);
    await writeAll(conn, encodeHello(TRANSFER_PROTOCOL, TRANSFER_VERSION));
    await readHello(reader, { protocol: TRANSFER_PROTOCOL, version: TRANSFER_VERSION });
    session = new SendSession(conn, reader, options, idle);
    for (const s of walk.skipped) reporter.warn(`skipped ${s.path}: ${s.reason}`, s.path);
    reporter.start({
      entries: walk.entries.length,
      files: walk.entries.filter((e) => e.kind === EntryKind.File).length,
      bytes: summary.bytesTotal,
    });
    await session.sendAll(walk.entries, (result) => {
      if (result.status === "confirmed") summary.confirmed++;
      else if (result.status === "rejected") summary.rejected++;
      else summary.failed++;
      if (result.alreadyThere) summary.alreadyThere++;
      reporter.entry(result);
    });
    await session.bye();
    finish();
    return summary;
  } catch (error) {
    if (signal?.aborted) {
      summary.interrupted = true;
      summary.error = "interrupted";
      finish();
      throw new SendInterruptedError(summary, { cause: error });
    }
    if (session === null) {
      // The hello failed: nothing was offered.
      if (idle.timedOut) {
        throw new ProtocolError(`Receiver sent nothing for ${replyMs} ms`, { cause: error });
      }
      throw error;
    }
    if (session.refusal === null && isConnectionLoss(error)) await session.lastWords();
    summary.error = lostMessage(session, summary, {
      refusal: session.refusal,
      why: idle.expired === "write"
        ? `receiver took none of the data for ${replyMs} ms`
        : idle.timedOut
        ? `receiver sent nothing for ${replyMs} ms`
        : error instanceof Error
        ? error.message
        : String(error),
    });
    finish();
    throw new SessionLostError(summary.error, { cause: error });
  } finally {
    signal?.removeEventListener("abort", interrupt);
    idle.dispose();
    await session?.close();
  }
}

/** True for the errors of a write or read on a connection the peer broke. */
function isConnectionLoss(error: unknown): boolean {
  return error instanceof Deno.errors.BrokenPipe || error instanceof Deno.errors.ConnectionReset ||
    error instanceof Deno.errors.ConnectionAborted || error instanceof Deno.errors.NotConnected;
}

/** Why a session broke off, for the summary and the error line. */
function lostMessage(
  session: SendSession,
  summary: SendSummary,
  cause: { refusal: Uint8Array | null; why: string },
): string {
  const current = session.current ? `Cannot send ${session.current}: ` : "";
  const stored = `${summary.confirmed}/${summary.entries} entries stored, ${
    formatBytes(session.bytesSent)
  } sent`;
  const text = cause.refusal === null ? null : new TextDecoder().decode(cause.refusal);
  if (text === ReceiverError.Shutdown) return `${current}${text} (${stored})`;
  if (text === ReceiverError.Busy) {
    return `Cannot send: ${text} (it serves as many senders as it takes); try again later`;
  }
  const why = text === null ? cause.why : receiverEnded(cause.refusal!);
  return `${current}connection lost after ${
    formatBytes(session.bytesSent)
  } sent (${why}); run the same command again to resume`;
}

/** Marks `result` as done: the receiver already has the same file (size and SHA-256). */
function markAlreadyThere(result: EntryResult): void {
  result.status = "confirmed";
  result.alreadyThere = true;
  result.storedAs = result.path;
  result.verified = true;
}

/** The Offer frame for a local entry. */
function offerFrame(
  entry: LocalEntry,
  flags: { verify: boolean; pipelined: boolean },
): Uint8Array {
  return encodeFrame(
    TransferFrame.Offer,
    encodeOffer({
      kind: entry.kind,
      path: entry.path,
      size: entry.size,
      mode: entry.mode,
      mtimeMs: entry.mtimeMs,
      verify: flags.verify,
      pipelined: flags.pipelined,
      target: entry.target,
    }),
  );
}
