/**
 * The pipelined batch: answers to pipelined entries are held back, and pipelined files wait
 * in their partial files, until the sender's Flush (or before a streamed file, Bye, or at
 * {@linkcode MAX_RECEIVER_BATCH} answers). Then the batch's files are fsynced together, moved
 * to their final names, each folder is fsynced once, and the answers go out in offer order in
 * one write. One batch is committed while the next is read and written, and the next one's
 * files may be synced while the one before syncs its folders ({@linkcode MAX_COMMITS_IN_FLIGHT}).
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
import { relName, takenVerdict, type Target } from "./offer_policy.ts";
import { comparePipelined } from "./already_there.ts";
import { placeFile, removeQuietly, syncFolder } from "./partial_file.ts";
import { Refusal, toRefusal } from "./refusal.ts";
import type { ReceiveContext } from "./receive_context.ts";

/** Pipelined files reopened at once for their batch's fsync when they could not stay open. */
export const SYNC_REOPEN_CONCURRENCY = 4;

/**
 * Batches being committed at once, at most (2): the files of one are synced while the one
 * before it syncs its folders and sends its answers, so the disk's latency is paid once per
 * batch, not twice in a row. More wait (this also bounds what a sender that sends Flush after
 * every entry and reads nothing can make the receiver hold).
 */
export const MAX_COMMITS_IN_FLIGHT = 2;

/** A pipelined file written to its partial file, waiting for the batch's fsync and rename. */
export interface PendingFile extends Target {
  /** Its offer. */
  offer: Offer;
  /** Open until the batch's fsync while `held` (a descriptor of the budget); else reopened. */
  file: Deno.FsFile | null;
  /** True while `file` holds a descriptor of the budget. */
  held: boolean;
  /** Its verified SHA-256 (null without Verify): compared if its name turns out taken. */
  digest: Uint8Array | null;
  /** When its offer arrived (`performance.now()`, 0 when no log line tells). */
  started: number;
}

/** One answer held back in a batch: ready, or due when its file is committed. */
type BatchItem = { frame: Uint8Array } | { pending: PendingFile };

/** The answers and files of one connection's pipelined entries, committed batch by batch. */
export class Batch {
  #ctx: ReceiveContext;
  #items: BatchItem[] = [];
  /** The newest commit: it settles after every earlier one, and sends its answers after theirs. */
  #committing: Promise<void> = Promise.resolve();
  /** Commits under way, oldest first (at most {@linkcode MAX_COMMITS_IN_FLIGHT}). */
  #inFlight: Promise<void>[] = [];

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
   * Starts committing the held batch, so that it is synced while the next one is read and
   * written, once fewer than {@linkcode MAX_COMMITS_IN_FLIGHT} commits are under way (the
   * error of a commit, if any, is thrown here).
   */
  async startCommit(): Promise<void> {
    if (this.#items.length === 0) return;
    while (this.#inFlight.length >= MAX_COMMITS_IN_FLIGHT) await this.#inFlight.shift();
    const items = this.#items;
    this.#items = [];
    const commit = this.#commit(items, this.#committing);
    commit.catch(() => {}); // Awaited at a later commit or the session's end.
    this.#committing = commit;
    this.#inFlight.push(commit);
  }

  /** Commits the held batch and waits until its answers are sent. */
  async flush(): Promise<void> {
    await this.startCommit();
    await this.#committing;
  }

  /** Waits for every commit under way, ignoring their errors. */
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
   * Commits `items` and sends their answers in offer order, after those of the `previous`
   * commit (none when it failed): the files' fsyncs run together, then each file moves to its
   * final name, then each folder is fsynced once. A file is confirmed only after all three.
   * Settles only once `previous` has.
   */
  async #commit(items: BatchItem[], previous: Promise<void>): Promise<void> {
    let frames: Uint8Array[];
    try {
      frames = await this.#place(items);
    } catch (error) {
      await previous.catch(() => {});
      throw error;
    }
    await previous;
    await writeAll(this.#ctx.out, concatBytes(...frames));
  }

  /** Syncs and places the files of `items` and resolves their answers, in offer order. */
  async #place(items: BatchItem[]): Promise<Uint8Array[]> {
    const ctx = this.#ctx;
    const { sync, overwrite, rename } = ctx.settings;
    const files = items.flatMap((item) => "pending" in item ? [item.pending] : []);
    // While the batch syncs, a sender with a full window rightly says nothing.
    const resumeIdle = ctx.idle?.pause();
    const failures = new Map<PendingFile, Refusal>();
    const stored = new Map<PendingFile, string>();
    /** Unchecked files whose name was taken: answered as the offer's look-up would have been. */
    const taken = new Map<PendingFile, Refusal>();
    try {
      if (sync) await syncFiles(files, failures);
      const dirs = new Set<string>();
      for (const f of files) {
        this.#closePending(f);
        if (!failures.has(f)) {
          try {
            stored.set(f, placeFile(f.partial, f.dir, { name: f.name, overwrite, rename }));
            dirs.add(f.dir);
            continue;
          } catch (error) {
            const refusal = toRefusal(error);
            if (f.unchecked && refusal.reason === Reason.Exists) {
              taken.set(f, await this.#takenAnswer(f));
            } else failures.set(f, refusal);
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
      const refusal = taken.get(f);
      if (refusal !== undefined) {
        frames.push(encodeFrame(TransferFrame.Reject, encodeRefusal(refusal)));
        if (refusal.reason === Reason.AlreadyThere) ctx.alreadyThere(f.offer);
        else ctx.refused(f.offer, refusal, { failed: false });
        continue;
      }
      const failure = failures.get(f);
      if (failure !== undefined) {
        frames.push(encodeFrame(TransferFrame.Failed, encodeRefusal(failure)));
        ctx.refused(f.offer, failure, { failed: true });
        continue;
      }
      const rel = relName(f.components, stored.get(f)!);
      frames.push(encodeFrame(TransferFrame.Confirm, encodeText(rel)));
      const seconds = (ctx.entryClock() - f.started) / 1000;
      ctx.received(f.offer, rel, { seconds, bytes: f.offer.size });
    }
    return frames;
  }

  /**
   * The answer to a file placed without a look-up of its name (a folder this session made)
   * whose name turned out taken: what the look-up would have answered, AlreadyThere for the
   * same file (size and SHA-256) and Exists otherwise.
   */
  async #takenAnswer(f: PendingFile): Promise<Refusal> {
    const ctx = this.#ctx;
    const verdict = takenVerdict(f.offer, f, ctx.settings);
    if ("refusal" in verdict) return verdict.refusal;
    return await comparePipelined(ctx, f.offer, { where: verdict.present, digest: f.digest });
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
