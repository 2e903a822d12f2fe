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

import { BufferedReader } from "../net/buffered_reader.ts";
import { concatBytes } from "../net/bytes.ts";
import { ProtocolError } from "../net/errors.ts";
import {
  ControlFrame,
  encodeFrame,
  encodeHello,
  type Frame,
  FRAME_HEADER_SIZE,
  readHello,
} from "../net/frame.ts";
import { writeAll, type Writer } from "../net/write_all.ts";
import { withTimeout } from "../net/deadline.ts";
import { withDefaults } from "../defaults.ts";
import { allocateChunk, HasherChoice, RING_SLOTS, sameDigest } from "./hasher.ts";
import { IdleReader } from "./idle_reader.ts";
import type { EntryResult, SendReporter, SendSummary } from "./progress.ts";
import { SEND_DEFAULTS, type SendOptions, type SendSettings } from "./send_options.ts";
import {
  decodeAccept,
  encodeStart,
  encodeText,
  EntryKind,
  frameName,
  MAX_DATA_PAYLOAD,
  PIPELINE_BATCH_ENTRIES,
  PIPELINE_WINDOW_BYTES,
  PIPELINE_WINDOW_ENTRIES,
  TRANSFER_PROTOCOL,
  TRANSFER_VERSION,
  TransferFrame,
} from "./protocol.ts";
import type { LocalEntry, WalkResult } from "./walk.ts";
import { AnswerQueue } from "./answer_queue.ts";
import { hashPrefix, type RingIo, streamFile } from "./file_stream.ts";
import { applyAnswer, newResult, offerFrame, pipelinedFrames } from "./offer.ts";
import {
  isConnectionLoss,
  lostMessage,
  receiverEnded,
  SendInterruptedError,
  SessionLostError,
  TransferRefusedError,
} from "./send_errors.ts";

export { SendInterruptedError, SessionLostError, TransferRefusedError } from "./send_errors.ts";

export { SEND_DEFAULTS, type SendOptions } from "./send_options.ts";

const SILENT: SendReporter = {
  start() {},
  fileStart() {},
  progress() {},
  entry() {},
  warn() {},
  summary() {},
};

/** Longest wait for the receiver's last frames after the connection broke, in ms. */
const LAST_WORDS_MS = 1000;

/** Pipelined frames are gathered and written once this many bytes (256 KiB) are queued. */
const OUTPUT_FLUSH_BYTES = 256 * 1024;

/** The answers a pipelined file may get, and those of a folder or link. */
const FILE_ANSWERS = [TransferFrame.Confirm, TransferFrame.Reject, TransferFrame.Failed];
const ENTRY_ANSWERS = [TransferFrame.Confirm, TransferFrame.Reject];

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
class Sender {
  /** Where frames go: through the deadline, so a receiver that reads nothing is noticed. */
  #writer: Writer;
  #opts: { verify: boolean; chunkSize: number };
  #reporter: SendReporter;
  /** Chunk buffers for streamed files, made by the first one (a tree of small files needs none). */
  #ring: Uint8Array[] | null = null;
  #hashers: HasherChoice;
  #answers: AnswerQueue;
  /** Pipelined frames not yet written, gathered into one write. */
  #queuedFrames: Uint8Array[] = [];
  #queuedBytes = 0;
  /** Pipelined entries queued so far, and how many of them a Flush has asked answers for. */
  #queued = 0;
  #flushedThrough = 0;
  bytesSent = 0;
  /** The entry the session is busy with, for error messages. */
  current = "";

  constructor(
    conn: Deno.Conn,
    reader: BufferedReader,
    settings: SendSettings,
    idle?: IdleReader,
  ) {
    this.#writer = idle ?? conn;
    this.#answers = new AnswerQueue(reader, idle);
    this.#opts = {
      verify: settings.verify,
      chunkSize: Math.min(MAX_DATA_PAYLOAD, settings.chunkSize),
    };
    this.#reporter = settings.reporter ?? SILENT;
    this.#hashers = new HasherChoice({ mode: settings.hashWorker });
  }

  /** The ring and the writer, for reading files through (the ring made on first use). */
  get #io(): RingIo {
    const size = FRAME_HEADER_SIZE + this.#opts.chunkSize;
    this.#ring ??= Array.from({ length: RING_SLOTS }, () => allocateChunk(size));
    return { ring: this.#ring, writer: this.#writer };
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
    return this.#check(await this.#answers.take(), allowed, what);
  }

  /** `frame` as the answer that must be one of `allowed` (else the error it means). */
  #check(frame: Frame | null, allowed: number[], what: string): Frame {
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
    const result = newResult(entry, { sent: 0 });
    const finish = (answer?: Frame) => {
      if (answer) applyAnswer(result, answer, { verified: verify });
      result.seconds = (performance.now() - started) / 1000;
      return result;
    };
    const verify = entry.kind === EntryKind.File && this.#opts.verify;
    await this.#request(offerFrame(entry, { verify, pipelined: false }));
    const what = `the answer to the offer of ${entry.path}`;
    if (entry.kind !== EntryKind.File) {
      return finish(await this.#reply([TransferFrame.Confirm, TransferFrame.Reject], what));
    }
    const answer = await this.#reply([TransferFrame.Accept, TransferFrame.Reject], what);
    if (answer.type === TransferFrame.Reject) return finish(answer);
    const accept = decodeAccept(answer.payload);

    using file = await Deno.open(entry.source, { read: true });
    const resumable = accept.offset > 0 && accept.offset <= entry.size;
    const hasher = verify || resumable ? await this.#hashers.forSize(entry.size) : null;
    await hasher?.reset();
    let start = 0;
    if (resumable) {
      if (await hashPrefix(file, hasher!, { ...this.#io, length: accept.offset })) {
        if (sameDigest(await hasher!.peek(), accept.prefixHash)) start = accept.offset;
      }
      if (start === 0) {
        await file.seek(0, Deno.SeekMode.Start);
        await hasher!.reset();
      }
    }
    result.resumedFrom = start;
    await writeAll(this.#writer, encodeFrame(TransferFrame.Start, encodeStart(start)));
    this.#reporter.fileStart(entry.path, entry.size, start);

    const shortBy = await streamFile(file, {
      ...this.#io,
      length: entry.size - start,
      chunkSize: this.#opts.chunkSize,
      hasher: verify ? hasher : null,
      check: () => this.#answers.throwIfEnded(),
      sent: (n) => {
        result.sent += n;
        this.bytesSent += n;
        this.#reporter.progress(n);
      },
    });
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
    return finish(
      await this.#reply(
        [TransferFrame.Confirm, TransferFrame.Failed],
        `the confirmation of ${entry.path}`,
      ),
    );
  }

  /** Queues a Flush: the receiver answers every entry queued so far. */
  #queueFlush(): void {
    this.#queueFrame(encodeFrame(TransferFrame.Flush));
    this.#flushedThrough = this.#queued;
  }

  /** Gathers a pipelined frame for the next write. */
  #queueFrame(frame: Uint8Array): void {
    this.#queuedFrames.push(frame);
    this.#queuedBytes += frame.length;
  }

  /** Writes the gathered pipelined frames in one go. */
  async #flushOutput(): Promise<void> {
    if (this.#queuedBytes === 0) return;
    const out = concatBytes(...this.#queuedFrames);
    this.#queuedFrames = [];
    this.#queuedBytes = 0;
    await writeAll(this.#writer, out);
  }

  /** Completes the result of the oldest pipelined entry with its answer `frame`. */
  #settle(p: PendingEntry, frame: Frame | null): EntryResult {
    const { entry, result } = p;
    this.current = entry.path;
    const isFile = entry.kind === EntryKind.File;
    const answer = this.#check(
      frame,
      isFile ? FILE_ANSWERS : ENTRY_ANSWERS,
      `the answer to the offer of ${entry.path}`,
    );
    if (isFile) {
      // Progress is reported with the answer, so a refused file's bytes are not counted twice.
      this.#reporter.fileStart(entry.path, entry.size, 0);
      if (entry.size > 0) this.#reporter.progress(entry.size);
    }
    applyAnswer(result, answer, { verified: p.verify });
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
      pendingBytes -= p.entry.size;
      // An answer already here is taken at once (a batch's answers arrive together).
      let frame = this.#answers.poll();
      if (frame === undefined) {
        // Never wait for an answer the receiver may be holding back.
        if (p.seq >= this.#flushedThrough) this.#queueFlush();
        await this.#flushOutput();
        frame = await this.#answers.take();
      }
      done(this.#settle(p, frame));
    };
    for (const entry of entries) {
      const bytes = pipelinedFrames(entry, { verify: this.#opts.verify });
      if (bytes === null) {
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
        result: newResult(entry, { sent: entry.size }),
      });
      pendingBytes += entry.size;
      this.bytesSent += entry.size;
      this.#queueFrame(bytes);
      this.#answers.expect();
      // A whole batch goes out with its Flush in one write, so the receiver can commit it.
      if (this.#queued - this.#flushedThrough >= PIPELINE_BATCH_ENTRIES) {
        this.#queueFlush();
        await this.#flushOutput();
      } else if (this.#queuedBytes >= OUTPUT_FLUSH_BYTES) await this.#flushOutput();
    }
    while (pending.length > 0) await settleOldest();
    this.current = "";
  }

  /** Stops the hash worker, if one was started. */
  async close(): Promise<void> {
    await this.#hashers.close();
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
  const settings = withDefaults(SEND_DEFAULTS, options);
  const reporter = settings.reporter ?? SILENT;
  const started = performance.now();
  const replyMs = settings.replyTimeoutMs;
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
  let session: Sender | null = null;
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
    session = new Sender(conn, reader, settings, idle);
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
    summary.error = lostMessage(summary, {
      current: session.current,
      bytesSent: session.bytesSent,
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
