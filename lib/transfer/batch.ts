/**
 * The pipelined batch: answers to pipelined entries are held back, and pipelined files wait
 * in their partial files, until the sender's Flush (or before a streamed file, Bye, or at
 * {@linkcode MAX_RECEIVER_BATCH} answers). Then the batch's files are fsynced together, moved
 * to their final names, each folder is fsynced once, and the answers go out in offer order in
 * one write. One batch is committed while the next is read and written.
 *
 * With an {@linkcode FdBudget}, a pipelined file stays open until its batch's fsync only while
 * the budget has room; otherwise it was closed at once and is reopened for the fsync, at most
 * {@linkcode SYNC_REOPEN_CONCURRENCY} at a time.
 *
 * @module
 */

import { concatBytes } from "../net/bytes.ts";
import { retryOnEmfile } from "../net/fd_budget.ts";
import { encodeFrame } from "../net/frame.ts";
import { writeAll } from "../net/write_all.ts";
import { encodeRefusal, encodeText, type Offer, Reason, TransferFrame } from "./protocol.ts";
import { relName, type Target } from "./offer_policy.ts";
import { placeFile, removeQuietly, syncFolder } from "./partial_file.ts";
import { Refusal, toRefusal } from "./refusal.ts";
import type { ReceiveContext } from "./receive_context.ts";

/** Pipelined files reopened at once for their batch's fsync when they could not stay open. */
export const SYNC_REOPEN_CONCURRENCY = 4;

/** A pipelined file written to its partial file, waiting for the batch's fsync and rename. */
export interface PendingFile extends Target {
  /** Its offer. */
  offer: Offer;
  /** Open until the batch's fsync while `held` (a descriptor of the budget); else reopened. */
  file: Deno.FsFile | null;
  /** True while `file` holds a descriptor of the budget. */
  held: boolean;
  /** When its offer arrived (`performance.now()`). */
  started: number;
}

/** One answer held back in a batch: ready, or due when its file is committed. */
type BatchItem = { frame: Uint8Array } | { pending: PendingFile };

/** The answers and files of one connection's pipelined entries, committed batch by batch. */
export class Batch {
  #ctx: ReceiveContext;
  #items: BatchItem[] = [];
  /** The batch being committed (at most one), while the next one is read and written. */
  #committing: Promise<void> = Promise.resolve();

  /** An empty batch for the connection of `ctx`. */
  constructor(ctx: ReceiveContext) {
    this.#ctx = ctx;
  }

  /** Answers held so far. */
  get size(): number {
    return this.#items.length;
  }

  /** Holds an answer that needs nothing more. */
  answer(type: number, payload?: Uint8Array): void {
    this.#items.push({ frame: encodeFrame(type, payload) });
  }

  /** Holds a written file; its answer is due when the batch commits it. */
  hold(pending: PendingFile): void {
    this.#items.push({ pending });
  }

  /**
   * Starts committing the held batch once the previous commit is done (its error, if any, is
   * thrown here), so that one batch is synced while the next one is read and written.
   */
  async startCommit(): Promise<void> {
    if (this.#items.length === 0) return;
    await this.#committing;
    const items = this.#items;
    this.#items = [];
    this.#committing = this.#commit(items);
    this.#committing.catch(() => {}); // Awaited at the next commit or the session's end.
  }

  /** Commits the held batch and waits until its answers are sent. */
  async flush(): Promise<void> {
    await this.startCommit();
    await this.#committing;
  }

  /** Waits for the commit under way, if any, ignoring its error. */
  async settled(): Promise<void> {
    await this.#committing.catch(() => {});
  }

  /** Drops an uncommitted batch (never confirmed): its files are closed and released. */
  close(): void {
    for (const item of this.#items) {
      if ("pending" in item) {
        this.#closePending(item.pending);
        this.#ctx.inUse.delete(item.pending.partial);
      }
    }
    this.#items = [];
  }

  /** Closes a pending file's descriptor (if still open) and gives it back to the budget. */
  #closePending(f: PendingFile): void {
    f.file?.close();
    f.file = null;
    if (f.held) this.#ctx.budget?.release();
    f.held = false;
  }

  /**
   * Commits `items` and sends their answers in offer order: the files' fsyncs run together,
   * then each file moves to its final name, then each folder is fsynced once. A file is
   * confirmed only after all three.
   */
  async #commit(items: BatchItem[]): Promise<void> {
    const ctx = this.#ctx;
    const { sync, overwrite, rename } = ctx.settings;
    const files = items.flatMap((item) => "pending" in item ? [item.pending] : []);
    // While the batch syncs, a sender with a full window rightly says nothing.
    const resumeIdle = ctx.idle?.pause();
    const failures = new Map<PendingFile, Refusal>();
    const stored = new Map<PendingFile, string>();
    try {
      if (sync) await syncFiles(files, failures);
      const dirs = new Set<string>();
      for (const f of files) {
        this.#closePending(f);
        if (!failures.has(f)) {
          try {
            stored.set(f, await placeFile(f.partial, f.dir, { name: f.name, overwrite, rename }));
            dirs.add(f.dir);
            continue;
          } catch (error) {
            failures.set(f, toRefusal(error));
          }
        }
        // A pipelined file never resumes: its partial file is of no further use.
        removeQuietly(f.partial);
      }
      if (sync) await Promise.all([...dirs].map((d) => syncFolder(d)));
    } finally {
      resumeIdle?.();
      for (const f of files) {
        this.#closePending(f);
        ctx.inUse.delete(f.partial);
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
        ctx.refused(f.offer, failure, { failed: true });
        continue;
      }
      const rel = relName(f.components, stored.get(f)!);
      frames.push(encodeFrame(TransferFrame.Confirm, encodeText(rel)));
      const seconds = (performance.now() - f.started) / 1000;
      ctx.received(f.offer, rel, { seconds, bytes: f.offer.size });
    }
    await writeAll(ctx.out, concatBytes(...frames));
  }
}

/** fsyncs the data of `files`: the open ones together, the closed ones reopened a few at a time. */
async function syncFiles(files: PendingFile[], failures: Map<PendingFile, Refusal>): Promise<void> {
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
