/**
 * The receiving side of a transfer session. It trusts nothing it is sent: every name goes
 * through `safe_path.ts`, every length is bounded before allocation, and a broken or hostile
 * sender costs one connection (an Error frame and a log line), never a file outside the
 * folder or a crash.
 *
 * A file is written to `.NAME.sockit-partial` in its final folder, never under its final
 * name. After the sender's End the receiver checks the size and SHA-256, syncs the data
 * (unless `sync: false`), sets mode and mtime, moves the partial file to its final name
 * (a hard link that cannot clobber, or an atomic rename with `overwrite`), syncs the folder,
 * and only then confirms. A hash mismatch deletes the partial file and the final name is never
 * created. An interrupted transfer leaves the partial file for a resume: the next offer of
 * the same name is answered with its length and the SHA-256 of its bytes.
 *
 * Reading the next Data frame from the socket overlaps with writing the previous one to disk.
 *
 * Pipelined entries (protocol v2: folders, symlinks and files offered with the Pipelined flag)
 * are answered in batches: a pipelined file's data is read into memory (at most
 * {@linkcode MAX_INLINE_FILE_BYTES}), checked, and written to its partial file with
 * synchronous calls; its answer waits in the batch. On the sender's Flush (or before a
 * streamed file, Bye, or at {@linkcode MAX_RECEIVER_BATCH} answers), the batch's files are
 * fsynced together, moved to their final names, each folder is fsynced once, and the answers
 * go out in offer order. A refused pipelined file's data is read and discarded. With an
 * {@linkcode FdBudget}, a pipelined file is kept open until its batch's fsync only while the
 * budget has room; otherwise it is closed at once and reopened for the fsync. Every open
 * retries for a while when the process is out of descriptors.
 *
 * Deadlines hold in every state: a sender gets {@linkcode RECEIVE_DEFAULTS.handshakeTimeoutMs}
 * for its hello, then may stay silent, or leave the receiver's answers unread, for at most
 * {@linkcode RECEIVE_DEFAULTS.idleTimeoutMs}. A connection counts against the caller's limit
 * of senders (`admit`) only after its hello; when none is free it hears "receiver busy".
 *
 * @module
 */

import { createHash } from "node:crypto";
import { statfs } from "node:fs/promises";
import { BufferedReader } from "../net/buffered_reader.ts";
import { ProtocolError, UnexpectedEofError } from "../net/errors.ts";
import {
  ControlFrame,
  encodeFrame,
  encodeHello,
  readFrame,
  readFrameHeader,
  readHello,
} from "../net/frame.ts";
import { FdBudget, retryOnEmfile } from "../net/fd_budget.ts";
import { closeAfterLastWrite } from "../net/linger.ts";
import { withTimeout } from "../net/deadline.ts";
import { writeAll, type Writer } from "../net/write_all.ts";
import { type Logger, printable, quote } from "../log.ts";
import { resolveLinkTarget } from "./link_policy.ts";
import type { ReceiveProgress } from "./progress.ts";
import { formatBytes, formatDuration, formatRate } from "./human.ts";
import {
  allocateChunk,
  type ChunkHasher,
  type HashWorkerMode,
  InlineHasher,
  RING_SLOTS,
  startHasher,
  useHashWorker,
} from "./hasher.ts";
import { IdleReader } from "./idle_reader.ts";
import {
  decodeEnd,
  decodeOffer,
  decodeStart,
  decodeTextPayload,
  encodeAccept,
  encodeRefusal,
  encodeText,
  EntryKind,
  frameName,
  KEEPALIVE_INTERVAL_MS,
  MAX_CONTROL_PAYLOAD,
  MAX_DATA_PAYLOAD,
  MAX_INLINE_FILE_BYTES,
  MAX_RECEIVER_BATCH,
  type Offer,
  Reason,
  REASON_NAMES,
  type ReasonValue,
  ReceiverError,
  SHA256_BYTES,
  TRANSFER_PROTOCOL,
  TRANSFER_VERSION,
  TransferFrame,
} from "./protocol.ts";
import {
  checkLinkTarget,
  findFreeName,
  partialName,
  type ResolvedPath,
  resolveInside,
  splitSafePath,
  UnsafePathError,
} from "./safe_path.ts";

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
} as const;

/** Pipelined files reopened at once for their batch's fsync when they could not stay open. */
export const SYNC_REOPEN_CONCURRENCY = 4;

/**
 * Files needing less than this (1 MiB) skip the free-space check: a full disk then shows up
 * as a write error (answered with Failed), and small files in a tree save a `statfs` each.
 */
export const FREE_SPACE_CHECK_MIN_BYTES = 1024 * 1024;

/**
 * While receiving a file with sync on, start a background fdatasync every this many bytes
 * (64 MiB), so that the final fsync before the confirmation has little left to write.
 */
export const SYNC_BEHIND_BYTES = 64 * 1024 * 1024;

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
   * Partial files being written by any session of this receiver; a second sender of the
   * same name is refused as busy. Share one set between concurrent sessions.
   */
  inUse?: Set<string>;
  /** Hash on a worker thread: by size and core count, always, or never. @default {"auto"} */
  hashWorker?: HashWorkerMode;
  /** Per-file progress (the status line on a terminal). @default {none} */
  progress?: ReceiveProgress;
}

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
  /** File bytes received in this session. */
  bytes: number;
  /** Why the session ended early, if it did. */
  error?: string;
  /** True when the session completed and every entry was confirmed. */
  ok: boolean;
}

/** A per-entry refusal: sent as Reject (offers) or Failed (after data), then logged. */
class Refusal extends Error {
  constructor(readonly reason: ReasonValue, message: string) {
    super(message);
    this.name = "Refusal";
  }
}

async function lstatOrNull(path: string): Promise<Deno.FileInfo | null> {
  try {
    return await Deno.lstat(path);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return null;
    throw error;
  }
}

/** Free bytes for unprivileged users on the filesystem holding `dir`, or null if unknown. */
export async function freeSpace(dir: string): Promise<number | null> {
  try {
    const s = await statfs(dir);
    return Number(s.bavail) * Number(s.bsize);
  } catch {
    return null;
  }
}

async function syncFolder(dir: string): Promise<void> {
  try {
    using d = await retryOnEmfile(() => Deno.open(dir, { read: true }));
    await d.sync();
  } catch {
    // Not every platform can open a folder for syncing; the file itself is synced.
  }
}

async function hashFilePrefix(
  file: Deno.FsFile,
  hasher: ChunkHasher,
  length: number,
  buf: Uint8Array,
  keepalive: () => Promise<void>,
): Promise<void> {
  let left = length;
  let lastPing = performance.now();
  while (left > 0) {
    const n = await file.read(buf.subarray(0, Math.min(buf.length, left)));
    if (n === null) throw new Error("partial file shrank while hashing it");
    await hasher.update(buf.subarray(0, n));
    left -= n;
    if (performance.now() - lastPing > KEEPALIVE_INTERVAL_MS) {
      lastPing = performance.now();
      await keepalive();
    }
  }
}

function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((v, i) => v === b[i]);
}

/** The checked components of an offer's path; {@linkcode UnsafePathError} for a bad name. */
function offerComponents(offer: Offer): string[] {
  if (offer.invalid !== undefined) {
    throw new UnsafePathError(`Cannot accept path ${quote(offer.path)}: ${offer.invalid}`);
  }
  return splitSafePath(offer.path);
}

function relName(components: string[], name: string): string {
  return [...components.slice(0, -1), name].join("/");
}

/** A pipelined file written to its partial file, waiting for the batch's fsync and rename. */
interface PendingFile {
  offer: Offer;
  components: string[];
  dir: string;
  name: string;
  partial: string;
  /** Open until the batch's fsync while `held` (a descriptor of the budget); else reopened. */
  file: Deno.FsFile | null;
  held: boolean;
  started: number;
}

/** One answer held back in a batch: ready, or due when its file is committed. */
type BatchItem = { frame: Uint8Array } | { pending: PendingFile };

/** Creates `partial` for writing (mode 0600), replacing whatever is under that name. */
function createPartialSync(partial: string): Deno.FsFile {
  const options = { write: true, createNew: true, mode: 0o600 } as const;
  try {
    return Deno.openSync(partial, options);
  } catch (error) {
    if (!(error instanceof Deno.errors.AlreadyExists)) throw error;
    // A partial file from an interrupted transfer (a pipelined file restarts from zero), or
    // something else under the partial name: removed, never written through.
    Deno.removeSync(partial);
    return Deno.openSync(partial, options);
  }
}

type SessionSettings = Required<
  Pick<ReceiveOptions, "dir" | "overwrite" | "rename" | "sync" | "maxFileSize">
>;

/** One receiving session. */
class ReceiveSession {
  #out: Writer;
  #reader: BufferedReader;
  #opts: SessionSettings;
  #log: Logger | undefined;
  #inUse: Set<string>;
  #buffers: Uint8Array[] | null = null;
  #knownDirs = new Set<string>();
  #hashWorker: HashWorkerMode;
  #progress: ReceiveProgress | undefined;
  #inline = new InlineHasher();
  #worker: Promise<ChunkHasher> | null = null;
  #peer: string;
  #idle: IdleReader | null;
  #batch: BatchItem[] = [];
  /** The batch being committed (at most one), while the next one is read and written. */
  #committing: Promise<void> = Promise.resolve();
  #inlineBuffer: Uint8Array | null = null;
  #budget: FdBudget | undefined;
  summary: ReceiveSummary;

  constructor(
    conn: Deno.Conn,
    reader: BufferedReader,
    options: ReceiveOptions,
    peer: string,
    idle: IdleReader | null = null,
  ) {
    // Writes go through the deadline too: a sender that reads nothing is cut like a silent one.
    this.#out = idle ?? conn;
    this.#idle = idle;
    this.#budget = options.fdBudget;
    this.#reader = reader;
    this.#opts = {
      dir: options.dir,
      overwrite: options.overwrite ?? RECEIVE_DEFAULTS.overwrite,
      rename: options.rename ?? RECEIVE_DEFAULTS.rename,
      sync: options.sync ?? RECEIVE_DEFAULTS.sync,
      maxFileSize: options.maxFileSize ?? RECEIVE_DEFAULTS.maxFileSize,
    };
    this.#hashWorker = options.hashWorker ?? "auto";
    this.#progress = options.progress;
    this.#log = options.logger;
    this.#inUse = options.inUse ?? new Set();
    this.#peer = peer;
    this.summary = {
      peer,
      started: false,
      complete: false,
      entries: 0,
      confirmed: 0,
      rejected: 0,
      failed: 0,
      bytes: 0,
      ok: false,
    };
  }

  get #ring(): Uint8Array[] {
    this.#buffers ??= Array.from({ length: RING_SLOTS }, () => allocateChunk(MAX_DATA_PAYLOAD));
    return this.#buffers;
  }

  /** The hasher for a file of `size` bytes: on the worker thread for big files. */
  async #hasherFor(size: number): Promise<ChunkHasher> {
    if (!useHashWorker(size, undefined, this.#hashWorker)) return this.#inline;
    this.#worker ??= startHasher();
    return await this.#worker;
  }

  /** Closes a pending file's descriptor (if still open) and gives it back to the budget. */
  #closePending(f: PendingFile): void {
    f.file?.close();
    f.file = null;
    if (f.held) this.#budget?.release();
    f.held = false;
  }

  /** Stops the hash worker, if one was started; drops an unanswered batch (never confirmed). */
  async close(): Promise<void> {
    for (const item of this.#batch) {
      if ("pending" in item) {
        this.#closePending(item.pending);
        this.#inUse.delete(item.pending.partial);
      }
    }
    this.#batch = [];
    if (this.#worker) (await this.#worker)[Symbol.dispose]();
  }

  /** Holds an answer in the batch. */
  #answer(type: number, payload?: Uint8Array): void {
    this.#batch.push({ frame: encodeFrame(type, payload) });
  }

  async #send(type: number, payload?: Uint8Array): Promise<void> {
    await writeAll(this.#out, encodeFrame(type, payload));
  }

  async run(): Promise<void> {
    try {
      await this.#run();
    } finally {
      // Its answers go out before anything else (an Error frame) is written.
      await this.#committing.catch(() => {});
    }
  }

  async #run(): Promise<void> {
    while (true) {
      if (this.#batch.length >= MAX_RECEIVER_BATCH) await this.#startCommit();
      const frame = await readFrame(this.#reader, { maxPayload: MAX_CONTROL_PAYLOAD });
      if (frame === null) {
        throw new UnexpectedEofError("Sender closed the connection without Bye");
      }
      if (frame.type === ControlFrame.Bye) {
        await this.#flushBatch();
        this.summary.complete = true;
        await this.#send(ControlFrame.Bye);
        return;
      }
      if (frame.type === ControlFrame.Error) {
        throw new ProtocolError(`Sender ended the session: ${quote(frame.payload)}`);
      }
      if (frame.type === TransferFrame.Flush) {
        await this.#startCommit();
        continue;
      }
      if (frame.type !== TransferFrame.Offer) {
        throw new ProtocolError(
          `Cannot continue: got ${frameName(frame.type)} instead of an Offer`,
        );
      }
      const offer = decodeOffer(frame.payload);
      this.summary.entries++;
      if (offer.pipelined && offer.kind !== EntryKind.File) {
        await this.#other(offer);
      } else if (offer.pipelined) {
        if (offer.size > MAX_INLINE_FILE_BYTES) {
          throw new ProtocolError(
            `Cannot pipeline ${quote(offer.path)}: ${formatBytes(offer.size)} is more than the ${
              formatBytes(MAX_INLINE_FILE_BYTES)
            } a pipelined file may have`,
          );
        }
        await this.#inlineFile(offer);
      } else {
        // Not pipelined: answered at once, after every held answer.
        await this.#flushBatch();
        if (offer.kind === EntryKind.File) await this.#file(offer);
        else {
          await this.#other(offer);
          await this.#flushBatch();
        }
      }
    }
  }

  #refused(offer: Offer, refusal: Refusal, failed: boolean): void {
    if (failed) this.summary.failed++;
    else this.summary.rejected++;
    this.#log?.error(
      `${failed ? "failed" : "rejected"} ${quote(offer.path)} from ${this.#peer}: ${
        REASON_NAMES[refusal.reason]
      } (${printable(refusal.message)})`,
    );
  }

  #toRefusal(error: unknown): Refusal {
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

  /** Folders and symlinks: one answer, no data. */
  async #other(offer: Offer): Promise<void> {
    try {
      const components = offerComponents(offer);
      const stored = offer.kind === EntryKind.Directory
        ? await this.#makeDir(offer, components)
        : await this.#makeLink(offer, components);
      this.#answer(TransferFrame.Confirm, encodeText(stored));
      this.summary.confirmed++;
      this.#log?.debug(
        `created ${offer.kind === EntryKind.Directory ? "folder" : "link"} ${quote(stored)}`,
      );
    } catch (error) {
      const refusal = this.#toRefusal(error);
      this.#answer(TransferFrame.Reject, encodeRefusal(refusal));
      this.#refused(offer, refusal, false);
    }
  }

  /**
   * Reads the payload of a control frame inside a file's data (End, Abort, Error), bounded by
   * MAX_CONTROL_PAYLOAD. An Error frame from the sender ends the session here.
   */
  async #readControlPayload(header: { type: number; length: number }): Promise<Uint8Array> {
    if (header.length > MAX_CONTROL_PAYLOAD) {
      throw new ProtocolError(`Cannot read ${frameName(header.type)}: ${header.length} bytes`);
    }
    const payload = await this.#reader.readExact(header.length, MAX_CONTROL_PAYLOAD);
    if (header.type === ControlFrame.Error) {
      throw new ProtocolError(`Sender ended the session: ${quote(payload)}`);
    }
    return payload;
  }

  /**
   * Reads a pipelined file's Data frames (exactly its offered size in all, into one reused
   * buffer) and its End. Resolves the bytes and the sender's SHA-256 (null without Verify).
   */
  async #readInline(offer: Offer): Promise<{ data: Uint8Array; digest: Uint8Array | null }> {
    this.#inlineBuffer ??= new Uint8Array(MAX_INLINE_FILE_BYTES);
    const buf = this.#inlineBuffer;
    let received = 0;
    while (true) {
      const header = await readFrameHeader(this.#reader, { maxPayload: MAX_DATA_PAYLOAD });
      if (header === null) {
        throw new UnexpectedEofError(
          `Sender closed the connection after ${formatBytes(received)} of ${quote(offer.path)}`,
        );
      }
      if (header.type === TransferFrame.Data) {
        if (received + header.length > offer.size) {
          throw new ProtocolError(
            `Cannot receive ${quote(offer.path)}: more data than the ${offer.size} bytes offered`,
          );
        }
        await this.#reader.readFull(buf.subarray(received, received + header.length));
        received += header.length;
        continue;
      }
      const payload = await this.#readControlPayload(header);
      if (header.type === TransferFrame.End) {
        const digest = endDigest(offer, payload);
        return { data: buf.subarray(0, received), digest: digest?.slice() ?? null };
      }
      throw new ProtocolError(
        `Cannot receive ${quote(offer.path)}: got ${frameName(header.type)} in a pipelined file`,
      );
    }
  }

  /**
   * A pipelined file: decide on the offer, read its data (discarded when refused), check size
   * and SHA-256, write the partial file, and hold its answer in the batch.
   */
  async #inlineFile(offer: Offer): Promise<void> {
    const started = performance.now();
    let target: { components: string[]; dir: string; name: string; partial: string } | null = null;
    let refusal: Refusal | null = null;
    let present: ResolvedPath | null = null;
    try {
      const components = offerComponents(offer);
      const max = this.#opts.maxFileSize;
      if (max > 0 && offer.size > max) {
        throw new Refusal(
          Reason.TooLarge,
          `${formatBytes(offer.size)} exceeds ${formatBytes(max)}`,
        );
      }
      const where = await resolveInside(this.#opts.dir, components, {
        createParents: true,
        knownDirs: this.#knownDirs,
      });
      if (this.#maybePresent(offer, where)) {
        present = where; // Compared with the data's SHA-256 once it is read.
      } else {
        const name = await this.#finalName(offer, where);
        const partial = `${where.dir}/${partialName(name)}`;
        if (this.#inUse.has(partial)) {
          throw new Refusal(Reason.Busy, "another sender is writing this name");
        }
        if (offer.size >= FREE_SPACE_CHECK_MIN_BYTES) {
          const free = await freeSpace(where.dir);
          if (free !== null && free < offer.size) {
            throw new Refusal(
              Reason.NoSpace,
              `needs ${formatBytes(offer.size)}, ${formatBytes(free)} free`,
            );
          }
        }
        target = { components, dir: where.dir, name, partial };
        this.#inUse.add(partial);
      }
    } catch (error) {
      refusal = this.#toRefusal(error);
    }
    try {
      const { data, digest } = await this.#readInline(offer);
      if (present !== null) refusal = await this.#compareInline(offer, present, data);
      if (refusal !== null) {
        this.#answer(TransferFrame.Reject, encodeRefusal(refusal));
        if (refusal.reason === Reason.AlreadyThere) this.#alreadyThere(offer);
        else this.#refused(offer, refusal, false);
        return;
      }
      const t = target!;
      let file: Deno.FsFile | null = null;
      try {
        if (data.length !== offer.size) {
          throw new Refusal(
            Reason.SizeMismatch,
            `got ${data.length} bytes, offered ${offer.size}`,
          );
        }
        if (digest !== null) {
          const mine = createHash("sha256").update(data).digest();
          if (!mine.every((b, i) => b === digest[i])) {
            throw new Refusal(
              Reason.HashMismatch,
              "SHA-256 of the received data differs from the sender's; nothing was stored",
            );
          }
        }
        this.summary.bytes += data.length;
        file = await retryOnEmfile(() => createPartialSync(t.partial));
        for (let at = 0; at < data.length;) at += file.writeSync(data.subarray(at));
        Deno.chmodSync(t.partial, offer.mode & 0o777);
        if (offer.mtimeMs > 0) {
          const mtime = new Date(offer.mtimeMs);
          file.utimeSync(mtime, mtime);
        }
        // Kept open for the batch's fsync while the descriptor budget allows; else reopened.
        const held = this.#opts.sync && this.#budget !== undefined && this.#budget.tryTake();
        const keep = this.#opts.sync && (held || this.#budget === undefined);
        if (!keep) file.close();
        this.#batch.push({ pending: { offer, ...t, file: keep ? file : null, held, started } });
        file = null;
        target = null;
      } catch (error) {
        if (file !== null) {
          // Half written (disk full, I/O error): a pipelined file never resumes.
          file.close();
          file = null;
          try {
            Deno.removeSync(t.partial);
          } catch {
            // Already gone.
          }
        }
        const failure = this.#toRefusal(error);
        this.#answer(TransferFrame.Failed, encodeRefusal(failure));
        this.#refused(offer, failure, true);
      }
    } finally {
      if (target !== null) this.#inUse.delete(target.partial);
    }
  }

  /**
   * Starts committing the held batch once the previous commit is done (its error, if any, is
   * thrown here), so that one batch is synced while the next one is read and written.
   */
  async #startCommit(): Promise<void> {
    if (this.#batch.length === 0) return;
    await this.#committing;
    const items = this.#batch;
    this.#batch = [];
    this.#committing = this.#commit(items);
    this.#committing.catch(() => {}); // Awaited at the next commit or the session's end.
  }

  /** Commits the held batch and waits until its answers are sent. */
  async #flushBatch(): Promise<void> {
    await this.#startCommit();
    await this.#committing;
  }

  /**
   * Commits `items` and sends their answers in offer order: the files' fsyncs run together,
   * then each file moves to its final name, then each folder is fsynced once. A file is
   * confirmed only after all three.
   */
  async #commit(items: BatchItem[]): Promise<void> {
    const files = items.flatMap((item) => "pending" in item ? [item.pending] : []);
    // While the batch syncs, a sender with a full window rightly says nothing.
    const resumeIdle = this.#idle?.pause();
    const failures = new Map<PendingFile, Refusal>();
    const stored = new Map<PendingFile, string>();
    try {
      if (this.#opts.sync) {
        const sync = async (f: PendingFile) => {
          try {
            if (f.file !== null) await f.file.syncData();
            else {
              using file = await retryOnEmfile(() => Deno.open(f.partial, { read: true }));
              await file.syncData();
            }
          } catch (error) {
            failures.set(f, new Refusal(Reason.IoError, `cannot sync: ${error}`));
          }
        };
        await Promise.all(files.filter((f) => f.file !== null).map(sync));
        const closed = files.filter((f) => f.file === null);
        for (let i = 0; i < closed.length; i += SYNC_REOPEN_CONCURRENCY) {
          await Promise.all(closed.slice(i, i + SYNC_REOPEN_CONCURRENCY).map(sync));
        }
      }
      const dirs = new Set<string>();
      for (const f of files) {
        this.#closePending(f);
        if (!failures.has(f)) {
          try {
            stored.set(f, await this.#place(f.partial, f.dir, f.name));
            dirs.add(f.dir);
            continue;
          } catch (error) {
            failures.set(f, this.#toRefusal(error));
          }
        }
        // A pipelined file never resumes: its partial file is of no further use.
        try {
          Deno.removeSync(f.partial);
        } catch {
          // Already gone.
        }
      }
      if (this.#opts.sync) await Promise.all([...dirs].map((d) => syncFolder(d)));
    } finally {
      resumeIdle?.();
      for (const f of files) {
        this.#closePending(f);
        this.#inUse.delete(f.partial);
      }
    }
    const frames: Uint8Array[] = [];
    for (const item of items) {
      if ("frame" in item) {
        frames.push(item.frame);
        continue;
      }
      const f = item.pending;
      const failure = failures.get(f);
      if (failure !== undefined) {
        frames.push(encodeFrame(TransferFrame.Failed, encodeRefusal(failure)));
        this.#refused(f.offer, failure, true);
        continue;
      }
      const rel = relName(f.components, stored.get(f)!);
      frames.push(encodeFrame(TransferFrame.Confirm, encodeText(rel)));
      this.summary.confirmed++;
      if (this.#log) {
        const seconds = (performance.now() - f.started) / 1000;
        const check = f.offer.verify ? "sha256 verified" : "not verified: sender used --no-verify";
        this.#log.info(
          `received ${quote(rel)} (${formatBytes(f.offer.size)} in ${formatDuration(seconds)}, ${
            formatRate(f.offer.size / Math.max(seconds, 1e-6))
          }, ${check})`,
        );
      }
    }
    const out = new Uint8Array(frames.reduce((n, f) => n + f.length, 0));
    let at = 0;
    for (const f of frames) {
      out.set(f, at);
      at += f.length;
    }
    await writeAll(this.#out, out);
  }

  async #makeDir(offer: Offer, components: string[]): Promise<string> {
    const where = await resolveInside(this.#opts.dir, components, {
      createParents: true,
      knownDirs: this.#knownDirs,
    });
    if (where.existing === null) {
      await Deno.mkdir(where.path, { mode: (offer.mode & 0o777) | 0o700 });
    } else if (!where.existing.isDirectory || where.existing.isSymlink) {
      throw new Refusal(Reason.Exists, `${quote(offer.path)} exists and is not a folder`);
    }
    return components.join("/");
  }

  async #makeLink(offer: Offer, components: string[]): Promise<string> {
    checkLinkTarget(offer.path, offer.target);
    const where = await resolveInside(this.#opts.dir, components, {
      createParents: true,
      knownDirs: this.#knownDirs,
    });
    let name = where.name;
    let replace = false;
    if (where.existing !== null) {
      if (this.#opts.overwrite && !where.existing.isDirectory) {
        replace = true;
      } else if (this.#opts.rename) {
        name = await findFreeName(where.dir, where.name);
      } else {
        throw new Refusal(Reason.Exists, `${quote(offer.path)} exists`);
      }
    }
    // Where it points, through the links already in the folder and itself: inside, or refused.
    const path = relName(components, name).split("/");
    resolveLinkTarget(this.#opts.dir, { path, target: offer.target });
    if (replace) await Deno.remove(where.path);
    await Deno.symlink(offer.target, `${where.dir}/${name}`);
    return relName(components, name);
  }

  /** Picks the final name for a file offer, or refuses it. */
  async #finalName(offer: Offer, where: ResolvedPath): Promise<string> {
    if (where.existing === null) return where.name;
    if (where.existing.isDirectory) {
      throw new Refusal(Reason.Exists, `${quote(offer.path)} exists and is a folder`);
    }
    if (this.#opts.overwrite) return where.name;
    if (this.#opts.rename) return await findFreeName(where.dir, where.name);
    throw new Refusal(Reason.Exists, `${quote(offer.path)} exists (use --overwrite or --rename)`);
  }

  /**
   * True when an offer meets a file that may be the same (same size, a regular file, no
   * --overwrite or --rename, and a SHA-256 to compare): it is then compared, not refused.
   */
  #maybePresent(offer: Offer, where: ResolvedPath): boolean {
    const e = where.existing;
    return e !== null && e.isFile && !e.isSymlink && e.size === offer.size && offer.verify &&
      !this.#opts.overwrite && !this.#opts.rename;
  }

  /**
   * SHA-256 of the file already at `where` (checked to be the one `lstat` saw), with Pings
   * while it takes long when `keepalive` (only where no other write can be under way).
   */
  async #hashExisting(where: ResolvedPath, size: number, keepalive: boolean): Promise<Uint8Array> {
    const file = await retryOnEmfile(() => Deno.open(where.path, { read: true }));
    try {
      const now = await file.stat();
      if (!now.isFile || now.ino !== where.existing!.ino || now.dev !== where.existing!.dev) {
        throw new Refusal(Reason.Exists, `${quote(where.name)} changed while it was checked`);
      }
      const hasher = await this.#hasherFor(size);
      await hasher.reset();
      const ping = keepalive ? () => this.#send(ControlFrame.Ping) : () => Promise.resolve();
      await hashFilePrefix(file, hasher, size, this.#ring[0], ping);
      return await hasher.digest();
    } finally {
      file.close();
    }
  }

  /** The answer to a pipelined file offered where a file of its size is: compared by hash. */
  async #compareInline(offer: Offer, where: ResolvedPath, data: Uint8Array): Promise<Refusal> {
    try {
      const theirs = createHash("sha256").update(data).digest();
      // No Ping: a batch may be committing (and writing its answers) meanwhile.
      const mine = await this.#hashExisting(where, offer.size, false);
      if (data.length === offer.size && equalBytes(mine, theirs)) {
        return new Refusal(
          Reason.AlreadyThere,
          "the same file (size and SHA-256) is already there",
        );
      }
      return new Refusal(
        Reason.Exists,
        `${quote(offer.path)} exists with other content (use --overwrite or --rename)`,
      );
    } catch (error) {
      return this.#toRefusal(error);
    }
  }

  /**
   * A streamed file offered where a file of its size is: `Accept(size, its SHA-256)`, then
   * the sender's End decides (its data, if it restarts, is read and thrown away). Nothing is
   * written.
   */
  async #present(offer: Offer, where: ResolvedPath): Promise<void> {
    let mine: Uint8Array;
    try {
      mine = await this.#hashExisting(where, offer.size, true);
    } catch (error) {
      const refusal = this.#toRefusal(error);
      await this.#send(TransferFrame.Reject, encodeRefusal(refusal));
      return this.#refused(offer, refusal, false);
    }
    await this.#send(TransferFrame.Accept, encodeAccept({ offset: offer.size, prefixHash: mine }));
    const start = await this.#readStart(offer, offer.size);
    let left = offer.size - start;
    while (true) {
      const header = await readFrameHeader(this.#reader, { maxPayload: MAX_DATA_PAYLOAD });
      if (header === null) {
        throw new UnexpectedEofError(`Sender closed the connection during ${quote(offer.path)}`);
      }
      if (header.type === TransferFrame.Data) {
        if (header.length > left) {
          throw new ProtocolError(
            `Cannot receive ${quote(offer.path)}: more data than the ${offer.size} bytes offered`,
          );
        }
        left -= header.length;
        await this.#reader.readFull(this.#ring[0].subarray(0, header.length));
        continue;
      }
      const payload = await this.#readControlPayload(header);
      if (header.type === TransferFrame.Abort) {
        this.summary.failed++;
        return this.#log?.warn(`sender aborted ${quote(offer.path)}: ${quote(payload)}`);
      }
      if (header.type !== TransferFrame.End) {
        throw new ProtocolError(
          `Cannot receive ${quote(offer.path)}: got ${frameName(header.type)} among its data`,
        );
      }
      const same = left === 0 && equalBytes(mine, endDigest(offer, payload)!);
      const answer = same
        ? new Refusal(Reason.AlreadyThere, "the same file (size and SHA-256) is already there")
        : new Refusal(
          Reason.Exists,
          `${quote(offer.path)} exists with other content (use --overwrite or --rename)`,
        );
      await this.#send(TransferFrame.Failed, encodeRefusal(answer));
      return same ? this.#alreadyThere(offer) : this.#refused(offer, answer, true);
    }
  }

  /** Counts and logs an entry that was already there. */
  #alreadyThere(offer: Offer): void {
    this.summary.confirmed++;
    this.#log?.info(
      `already there: ${quote(offer.path)} (same size and SHA-256, from ${this.#peer})`,
    );
  }

  /** Reads the sender's Start (skipping keepalives); it must be 0 or `offset`. */
  async #readStart(offer: Offer, offset: number): Promise<number> {
    let frame = await readFrame(this.#reader, { maxPayload: MAX_CONTROL_PAYLOAD });
    // Keepalives while the sender hashes its copy of the prefix.
    while (frame?.type === ControlFrame.Ping) {
      frame = await readFrame(this.#reader, { maxPayload: MAX_CONTROL_PAYLOAD });
    }
    if (frame === null) {
      throw new UnexpectedEofError(`Sender closed before sending ${quote(offer.path)}`);
    }
    if (frame.type === ControlFrame.Error) {
      throw new ProtocolError(`Sender ended the session: ${quote(frame.payload)}`);
    }
    if (frame.type !== TransferFrame.Start) {
      throw new ProtocolError(
        `Cannot receive ${quote(offer.path)}: got ${frameName(frame.type)} instead of Start`,
      );
    }
    const start = decodeStart(frame.payload);
    if (start !== 0 && start !== offset) {
      throw new ProtocolError(
        `Cannot receive ${quote(offer.path)}: Start at ${start}, offered ${offset}`,
      );
    }
    return start;
  }

  async #file(offer: Offer): Promise<void> {
    let components: string[];
    let where: ResolvedPath;
    let name: string;
    try {
      components = offerComponents(offer);
      const max = this.#opts.maxFileSize;
      if (max > 0 && offer.size > max) {
        throw new Refusal(
          Reason.TooLarge,
          `${formatBytes(offer.size)} exceeds ${formatBytes(max)}`,
        );
      }
      where = await resolveInside(this.#opts.dir, components, {
        createParents: true,
        knownDirs: this.#knownDirs,
      });
      name = this.#maybePresent(offer, where) ? "" : await this.#finalName(offer, where);
    } catch (error) {
      const refusal = this.#toRefusal(error);
      await this.#send(TransferFrame.Reject, encodeRefusal(refusal));
      this.#refused(offer, refusal, false);
      return;
    }
    if (name === "") return await this.#present(offer, where);
    const partial = `${where.dir}/${partialName(name)}`;
    if (this.#inUse.has(partial)) {
      const refusal = new Refusal(Reason.Busy, "another sender is writing this name");
      await this.#send(TransferFrame.Reject, encodeRefusal(refusal));
      this.#refused(offer, refusal, false);
      return;
    }
    this.#inUse.add(partial);
    try {
      await this.#receiveFile(offer, components, where.dir, name, partial);
    } finally {
      this.#inUse.delete(partial);
    }
  }

  async #openPartial(
    offer: Offer,
    partial: string,
    hasher: ChunkHasher,
  ): Promise<{ file: Deno.FsFile; offset: number; created: boolean }> {
    let info = await lstatOrNull(partial);
    if (info !== null && !info.isFile) {
      // Something else took the partial name (a link, a folder): never write through it.
      await Deno.remove(partial);
      info = null;
    }
    await hasher.reset();
    if (info === null) {
      const file = await retryOnEmfile(() =>
        Deno.open(partial, { read: true, write: true, createNew: true, mode: 0o600 })
      );
      return { file, offset: 0, created: true };
    }
    const file = await retryOnEmfile(() => Deno.open(partial, { read: true, write: true }));
    try {
      const offset = info.size <= offer.size ? info.size : 0;
      if (offset > 0) {
        await hashFilePrefix(
          file,
          hasher,
          offset,
          this.#ring[0],
          () => this.#send(ControlFrame.Ping),
        );
      }
      return { file, offset, created: false };
    } catch (error) {
      file.close();
      throw error;
    }
  }

  async #receiveFile(
    offer: Offer,
    components: string[],
    dir: string,
    name: string,
    partial: string,
  ): Promise<void> {
    const started = performance.now();
    let opened: { file: Deno.FsFile; offset: number; created: boolean };
    const hasher = await this.#hasherFor(offer.size);
    try {
      opened = await this.#openPartial(offer, partial, hasher);
    } catch (error) {
      const refusal = this.#toRefusal(error);
      await this.#send(TransferFrame.Reject, encodeRefusal(refusal));
      this.#refused(offer, refusal, false);
      return;
    }
    let file: Deno.FsFile | null = opened.file;
    const closeFile = () => {
      file?.close();
      file = null;
    };
    try {
      const { offset } = opened;
      const need = offer.size - offset;
      const free = need >= FREE_SPACE_CHECK_MIN_BYTES ? await freeSpace(dir) : null;
      if (free !== null && free < need) {
        const refusal = new Refusal(
          Reason.NoSpace,
          `needs ${formatBytes(need)}, ${formatBytes(free)} free`,
        );
        if (opened.created) {
          closeFile();
          await Deno.remove(partial).catch(() => {});
        }
        await this.#send(TransferFrame.Reject, encodeRefusal(refusal));
        this.#refused(offer, refusal, false);
        return;
      }
      const prefixHash = offset > 0 ? await hasher.peek() : new Uint8Array(SHA256_BYTES);
      await this.#send(TransferFrame.Accept, encodeAccept({ offset, prefixHash }));

      const start = await this.#readStart(offer, offset);
      if (start === 0 && offset > 0) await hasher.reset();
      // Truncating only when needed: on ext4 a truncate makes close() start writeback of
      // the whole file (auto_da_alloc), which --no-sync is meant to avoid.
      const truncate = start !== offset || (!opened.created && (await file.stat()).size !== start);
      if (truncate) await file.truncate(start);
      await file.seek(start, Deno.SeekMode.Start);

      this.#progress?.fileStart(partial, printable(offer.path), offer.size, start);
      let outcome;
      try {
        outcome = await this.#receiveData(
          offer,
          file,
          offer.size - start,
          offer.verify ? hasher : null,
          partial,
        );
      } finally {
        this.#progress?.fileEnd(partial);
      }
      if (outcome.aborted !== undefined) {
        this.summary.failed++;
        this.#log?.warn(
          `sender aborted ${quote(offer.path)} after ${formatBytes(start + outcome.received)}: ${
            quote(outcome.aborted)
          } (partial file kept for a resume)`,
        );
        return;
      }
      try {
        if (outcome.writeError !== undefined) {
          throw new Refusal(Reason.IoError, `cannot write: ${outcome.writeError}`);
        }
        if (outcome.received !== offer.size - start) {
          throw new Refusal(
            Reason.SizeMismatch,
            `got ${start + outcome.received} bytes, offered ${offer.size}`,
          );
        }
        if (offer.verify) {
          const mine = await hasher.digest();
          const theirs = outcome.digest!;
          if (!mine.every((b, i) => b === theirs[i])) {
            closeFile();
            await Deno.remove(partial);
            throw new Refusal(
              Reason.HashMismatch,
              "SHA-256 of the received data differs from the sender's; partial file deleted",
            );
          }
        }
        await Deno.chmod(partial, offer.mode & 0o777);
        if (offer.mtimeMs > 0) {
          const mtime = new Date(offer.mtimeMs);
          await file.utime(mtime, mtime);
        }
        const dataDone = performance.now();
        if (this.#opts.sync) await file.syncData();
        closeFile();
        const stored = await this.#place(partial, dir, name);
        if (this.#opts.sync) await syncFolder(dir);
        this.#log?.debug(
          `${quote(offer.path)}: data ${
            ((dataDone - started) / 1000).toFixed(2)
          } s, sync and rename ${((performance.now() - dataDone) / 1000).toFixed(2)} s`,
        );
        const rel = relName(components, stored);
        await this.#send(TransferFrame.Confirm, encodeText(rel));
        this.summary.confirmed++;
        const seconds = (performance.now() - started) / 1000;
        const resumed = start > 0 ? `, resumed at ${formatBytes(start)}` : "";
        const check = offer.verify ? "sha256 verified" : "not verified: sender used --no-verify";
        this.#log?.info(
          `received ${quote(rel)} (${formatBytes(offer.size)} in ${formatDuration(seconds)}, ${
            formatRate(outcome.received / Math.max(seconds, 1e-6))
          }${resumed}, ${check})`,
        );
      } catch (error) {
        const refusal = this.#toRefusal(error);
        await this.#send(TransferFrame.Failed, encodeRefusal(refusal));
        this.#refused(offer, refusal, true);
      }
    } finally {
      closeFile();
    }
  }

  /**
   * Moves the finished partial file to its final name. Without overwrite a hard link
   * creates the name only if it is still free (then the partial name is removed); with
   * overwrite an atomic rename replaces the old file.
   */
  async #place(partial: string, dir: string, name: string): Promise<string> {
    // Synchronous calls: each is one quick metadata syscall, and a tree of small files makes
    // thousands of them.
    if (this.#opts.overwrite) {
      Deno.renameSync(partial, `${dir}/${name}`);
      return name;
    }
    let candidate = name;
    for (let attempt = 0; attempt < 100; attempt++) {
      try {
        Deno.linkSync(partial, `${dir}/${candidate}`);
        Deno.removeSync(partial);
        return candidate;
      } catch (error) {
        if (error instanceof Deno.errors.AlreadyExists) {
          if (!this.#opts.rename) {
            throw new Refusal(Reason.Exists, `'${candidate}' appeared while receiving it`);
          }
          candidate = await findFreeName(dir, name);
          continue;
        }
        if (error instanceof Deno.errors.NotFound) throw error;
        // No hard links on this filesystem: check, then rename.
        if ((await lstatOrNull(`${dir}/${candidate}`)) !== null) {
          if (!this.#opts.rename) throw new Refusal(Reason.Exists, `'${candidate}' exists`);
          candidate = await findFreeName(dir, name);
        }
        await Deno.rename(partial, `${dir}/${candidate}`);
        return candidate;
      }
    }
    throw new Refusal(Reason.Exists, `cannot find a free name for '${name}'`);
  }

  /**
   * Reads Data frames into `file` until End or Abort. Reading frame N+1 overlaps with
   * writing frame N. A write error is remembered and the rest of the data drained, so the
   * session can answer Failed and go on.
   */
  async #receiveData(
    offer: Offer,
    file: Deno.FsFile,
    expected: number,
    hasher: ChunkHasher | null,
    key: string,
  ): Promise<{ received: number; digest?: Uint8Array; aborted?: string; writeError?: string }> {
    const ring = this.#ring;
    const busy: Promise<unknown>[] = ring.map(() => Promise.resolve());
    let slotIndex = 0;
    let received = 0;
    let writeError: string | undefined;
    // Disk writes run one after another; a failure is remembered and later chunks skipped.
    let writing: Promise<void> = Promise.resolve();
    let unsynced = 0;
    let flushing: Promise<void> | null = null;
    const drain = async () => {
      await Promise.all(busy);
      await writing;
    };
    try {
      while (true) {
        const header = await readFrameHeader(this.#reader, { maxPayload: MAX_DATA_PAYLOAD });
        if (header === null) {
          throw new UnexpectedEofError(
            `Sender closed the connection after ${formatBytes(received)} of ${quote(offer.path)}`,
          );
        }
        if (header.type === TransferFrame.Data) {
          if (received + header.length > expected) {
            throw new ProtocolError(
              `Cannot receive ${quote(offer.path)}: more data than the ${offer.size} bytes offered`,
            );
          }
          const slot = slotIndex++ % ring.length;
          await busy[slot];
          const buf = ring[slot].subarray(0, header.length);
          try {
            await this.#reader.readFull(buf);
          } catch (error) {
            if (!(error instanceof UnexpectedEofError)) throw error;
            throw new UnexpectedEofError(
              `Sender closed the connection after ${formatBytes(received)} of ${
                quote(offer.path)
              } ` +
                "(in the middle of a frame)",
              { cause: error },
            );
          }
          received += header.length;
          this.summary.bytes += header.length;
          this.#progress?.progress(key, header.length);
          writing = writing.then(async () => {
            if (writeError !== undefined) return;
            try {
              await writeAll(file, buf);
            } catch (error) {
              writeError = error instanceof Error ? error.message : String(error);
            }
          });
          unsynced += header.length;
          if (this.#opts.sync && unsynced >= SYNC_BEHIND_BYTES && flushing === null) {
            // Flush-behind: start writing back what is on disk so far, so the final
            // fsync finds little left to do. Errors surface in the final fsync.
            unsynced = 0;
            flushing = writing.then(() => file.syncData()).catch(() => {}).finally(() => {
              flushing = null;
            });
          }
          // The disk write (on Deno's I/O thread) and the hash (on the worker) read `buf`
          // while this thread reads the next frame into another slot.
          const hashed = hasher?.update(buf);
          busy[slot] = hashed ? Promise.all([writing, hashed]) : writing;
          busy[slot].catch(() => {});
          continue;
        }
        const payload = await this.#readControlPayload(header);
        if (header.type === TransferFrame.End) {
          const digest = endDigest(offer, payload);
          await drain();
          return { received, digest: digest ?? undefined, writeError };
        }
        if (header.type === TransferFrame.Abort) {
          await drain();
          return { received, aborted: decodeTextPayload(payload) };
        }
        throw new ProtocolError(
          `Cannot receive ${quote(offer.path)}: got ${frameName(header.type)} among its data`,
        );
      }
    } finally {
      await Promise.allSettled(busy);
      await writing;
      await flushing;
    }
  }
}

/**
 * Runs one receiving session on `conn` and resolves what happened; never throws for anything
 * the sender did (a protocol violation is answered with an Error frame, logged, and ends the
 * session). The hello must arrive within `options.handshakeTimeoutMs`; then `options.admit`
 * decides whether the sender takes a place ("receiver busy" otherwise). After an Error frame
 * the connection is half-closed and the sender's remaining bytes drained briefly, so the
 * message is not lost to a reset. The caller closes the connection.
 *
 * @example Usage
 * ```ts ignore
 * import { receiveSession } from "./receiver.ts";
 * const listener = Deno.listen({ hostname: "127.0.0.1", port: 7071 });
 * const conn = await listener.accept();
 * const summary = await receiveSession(conn, { dir: await Deno.realPath(".") });
 * conn.close();
 * ```
 */
export async function receiveSession(
  conn: Deno.Conn,
  options: ReceiveOptions,
): Promise<ReceiveSummary> {
  const addr = conn.remoteAddr as Deno.NetAddr;
  const peer = addr.hostname.includes(":")
    ? `[${addr.hostname}]:${addr.port}`
    : `${addr.hostname}:${addr.port}`;
  const idleMs = options.idleTimeoutMs ?? RECEIVE_DEFAULTS.idleTimeoutMs;
  const helloMs = options.handshakeTimeoutMs ?? RECEIVE_DEFAULTS.handshakeTimeoutMs;
  const idle = new IdleReader(conn, idleMs, { signal: options.signal });
  const reader = new BufferedReader(idle);
  const session = new ReceiveSession(conn, reader, options, peer, idle);
  const log = options.logger;
  let release: (() => void) | null = null;
  let linger = false;
  try {
    if ("setNoDelay" in conn) (conn as Deno.TcpConn).setNoDelay(true);
    await writeAll(idle, encodeHello(TRANSFER_PROTOCOL, TRANSFER_VERSION));
    const hello = readHello(reader, { protocol: TRANSFER_PROTOCOL, version: TRANSFER_VERSION });
    await (helloMs > 0
      ? withTimeout(hello, helloMs, { what: "the sender's hello", onTimeout: () => conn.close() })
      : hello);
    release = options.admit ? options.admit() : () => {};
    if (release === null) throw new SenderRefused(ReceiverError.Busy);
    session.summary.started = true;
    log?.debug(`sender ${peer} connected`);
    await session.run();
  } catch (error) {
    const s = session.summary;
    let message = error instanceof Error ? error.message : String(error);
    s.cut = options.signal?.aborted === true && !(error instanceof SenderRefused);
    if (s.cut) message = ReceiverError.Shutdown;
    else if (idle.expired === "read") message = `Sender sent nothing for ${idleMs} ms`;
    else if (idle.expired === "write") message = `Sender read none of its answers for ${idleMs} ms`;
    s.error = message;
    if (error instanceof SenderRefused) log?.warn(`refused sender ${peer}: ${message}`);
    else if (!s.cut) log?.error(`session with ${peer} ended: ${printable(message)}`);
    if (!idle.timedOut) {
      try {
        await writeAll(idle, encodeFrame(ControlFrame.Error, encodeText(message)));
        linger = true;
      } catch {
        // The sender is gone.
      }
    }
  } finally {
    idle.dispose();
    await session.close();
    release?.();
  }
  const s = session.summary;
  s.ok = s.complete && s.confirmed === s.entries;
  if (s.started) {
    const counts = `${s.confirmed}/${s.entries} entries stored, ${formatBytes(s.bytes)} received${
      s.rejected ? `, ${s.rejected} rejected` : ""
    }${s.failed ? `, ${s.failed} failed` : ""}`;
    if (s.cut) {
      log?.info(`cut the session with ${peer} to shut down: ${counts}; partial files kept`);
    } else log?.info(`sender ${peer} ${s.complete ? "finished" : "left early"}: ${counts}`);
  }
  if (linger) await closeAfterLastWrite(conn);
  return s;
}

/** The sender was refused after its hello (no place free). */
class SenderRefused extends Error {
  constructor(message: string) {
    super(message);
    this.name = "SenderRefused";
  }
}

/**
 * Decodes a file's End payload: its SHA-256, or null without one. Throws when it carries a
 * hash the offer did not promise, or lacks one the offer promised.
 */
function endDigest(offer: Offer, payload: Uint8Array): Uint8Array | null {
  const digest = decodeEnd(payload);
  if ((digest !== null) !== offer.verify) {
    throw new ProtocolError(
      `Cannot finish ${quote(offer.path)}: End ${
        digest ? "carries" : "lacks"
      } a SHA-256 the offer ${offer.verify ? "promised" : "did not promise"}`,
    );
  }
  return digest;
}
