/**
 * Pipelined files (protocol v2, at most {@linkcode MAX_INLINE_FILE_BYTES}): the offer is
 * vetted, the data read into memory (and discarded when the offer is refused), its size and
 * SHA-256 checked, and it is written to its partial file with synchronous calls; its answer
 * then waits in the {@linkcode Batch}, which syncs and places it.
 *
 * @module
 */

import { ProtocolError } from "../net/errors.ts";
import { readFrameHeader } from "../net/frame.ts";
import { isOutOfDescriptors, retryOnEmfile } from "../net/fd_budget.ts";
import { quote } from "../log.ts";
import { formatBytes } from "./human.ts";
import { sameDigest, sha256 } from "./hasher.ts";
import {
  encodeRefusal,
  frameName,
  MAX_DATA_PAYLOAD,
  MAX_INLINE_FILE_BYTES,
  type Offer,
  Reason,
  TransferFrame,
} from "./protocol.ts";
import { type Target, vetOffer } from "./offer_policy.ts";
import { comparePipelined } from "./already_there.ts";
import { createdExactly, createPartialSync, removeQuietly } from "./partial_file.ts";
import { Refusal, toRefusal } from "./refusal.ts";
import {
  closedDuring,
  endDigest,
  type PipelinedContent,
  readControlPayload,
  tooMuchData,
} from "./receive_frames.ts";
import type { Batch } from "./batch.ts";
import type { ReceiveContext } from "./receive_context.ts";

/** Receives the pipelined files of one connection into its batch. */
export class PipelinedFiles {
  #ctx: ReceiveContext;
  #batch: Batch;
  #buffer: Uint8Array | null = null;

  /** Pipelined files of the connection of `ctx`, answered through `batch`. */
  constructor(ctx: ReceiveContext, batch: Batch) {
    this.#ctx = ctx;
    this.#batch = batch;
  }

  /** The reused buffer a pipelined file's data is read into (allocated on first use). */
  get buffer(): Uint8Array {
    this.#buffer ??= new Uint8Array(MAX_INLINE_FILE_BYTES);
    return this.#buffer;
  }

  /**
   * A pipelined file: decide on the offer, read its data (discarded when refused; `content`
   * when it was already taken from the buffer), check size and SHA-256, write the partial
   * file, and hold its answer in the batch.
   */
  async receive(offer: Offer, content?: PipelinedContent): Promise<void> {
    const ctx = this.#ctx;
    if (offer.size > MAX_INLINE_FILE_BYTES) {
      throw new ProtocolError(
        `Cannot pipeline ${quote(offer.path)}: ${formatBytes(offer.size)} is more than the ${
          formatBytes(MAX_INLINE_FILE_BYTES)
        } a pipelined file may have`,
      );
    }
    const started = ctx.entryClock();
    const verdict = await vetOffer(offer, ctx, { assumeFree: true });
    let held = false;
    try {
      const { data, digest } = content ?? await this.#read(offer);
      const refusal = verdict.present !== undefined
        ? await comparePipelined(ctx, offer, {
          where: verdict.present,
          digest: data.length === offer.size ? sha256(data) : null,
        })
        : verdict.refusal;
      if (refusal !== undefined) {
        this.#batch.answer(TransferFrame.Reject, encodeRefusal(refusal));
        if (refusal.reason === Reason.AlreadyThere) ctx.alreadyThere(offer);
        else ctx.refused(offer, refusal, { failed: false });
        return;
      }
      held = await this.#write(offer, verdict.target!, { data, digest, started });
    } finally {
      if (verdict.target !== undefined && !held) ctx.inUse.delete(verdict.target.partial);
    }
  }

  /**
   * Checks and writes an accepted file's data to its partial file and holds it in the batch;
   * true when it is held (its name then stays taken until the batch commits). A failure is
   * held as Failed. Synchronous calls, one quick syscall each; only a process out of
   * descriptors waits (and retries).
   */
  async #write(
    offer: Offer,
    target: Target,
    options: PipelinedContent & { started: number },
  ): Promise<boolean> {
    const ctx = this.#ctx;
    const { data, digest } = options;
    let file: Deno.FsFile | null = null;
    try {
      if (data.length !== offer.size) {
        throw new Refusal(Reason.SizeMismatch, `got ${data.length} bytes, offered ${offer.size}`);
      }
      if (digest !== null && !sameDigest(sha256(data), digest)) {
        throw new Refusal(
          Reason.HashMismatch,
          "SHA-256 of the received data differs from the sender's; nothing was stored",
        );
      }
      ctx.summary.bytes += data.length;
      // Verified already: created with its final mode where the umask leaves it whole (one
      // chmod less per file), else private until the chmod below.
      const mode = offer.mode & 0o777;
      const exact = createdExactly(mode);
      const create = () => createPartialSync(target.partial, exact ? { mode } : undefined);
      try {
        file = create();
      } catch (error) {
        if (!isOutOfDescriptors(error)) throw error;
        file = await retryOnEmfile(create);
      }
      for (let at = 0; at < data.length;) at += file.writeSync(data.subarray(at));
      if (!exact) Deno.chmodSync(target.partial, mode);
      if (offer.mtimeMs > 0) {
        const mtime = new Date(offer.mtimeMs);
        file.utimeSync(mtime, mtime);
      }
      // Kept open for the batch's fsync while the descriptor budget allows; else reopened.
      const { sync } = ctx.settings;
      const held = sync && ctx.budget !== undefined && ctx.budget.tryTake();
      const keep = sync && (held || ctx.budget === undefined);
      if (!keep) file.close();
      const { started } = options;
      this.#batch.hold({ offer, ...target, digest, file: keep ? file : null, held, started });
      return true;
    } catch (error) {
      if (file !== null) {
        // Half written (disk full, I/O error): a pipelined file never resumes.
        file.close();
        removeQuietly(target.partial);
      }
      const failure = toRefusal(error);
      this.#batch.answer(TransferFrame.Failed, encodeRefusal(failure));
      ctx.refused(offer, failure, { failed: true });
      return false;
    }
  }

  /**
   * Reads a pipelined file's Data frames (exactly its offered size in all, into one reused
   * buffer) and its End. Resolves the bytes and the sender's SHA-256 (null without Verify).
   */
  async #read(offer: Offer): Promise<PipelinedContent> {
    const reader = this.#ctx.reader;
    const buf = this.buffer;
    let received = 0;
    while (true) {
      const header = await readFrameHeader(reader, { maxPayload: MAX_DATA_PAYLOAD });
      if (header === null) throw closedDuring(offer, formatBytes(received));
      if (header.type === TransferFrame.Data) {
        if (received + header.length > offer.size) throw tooMuchData(offer);
        await reader.readFull(buf.subarray(received, received + header.length));
        received += header.length;
        continue;
      }
      const payload = await readControlPayload(reader, header);
      if (header.type === TransferFrame.End) {
        const digest = endDigest(offer, payload);
        return { data: buf.subarray(0, received), digest: digest?.slice() ?? null };
      }
      throw new ProtocolError(
        `Cannot receive ${quote(offer.path)}: got ${frameName(header.type)} in a pipelined file`,
      );
    }
  }
}
