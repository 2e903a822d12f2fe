/**
 * Streamed files (larger than a pipelined file may be, or offered without the Pipelined
 * flag): the offer is vetted and answered at once, Accept carrying the length and SHA-256 of
 * what a partial file from an interrupted transfer holds; the sender's Start says where its
 * data begins; the data goes through the ring ({@linkcode receiveData}); after End the size
 * and SHA-256 are checked, the data synced, mode and mtime set, the file placed under its
 * final name, its folder synced, and only then confirmed. An aborted or cut transfer keeps the
 * partial file for a resume; a hash mismatch deletes it.
 *
 * @module
 */

import { ControlFrame } from "../net/frame.ts";
import { printable, quote } from "../log.ts";
import { formatBytes } from "./human.ts";
import { type ChunkHasher, sameDigest } from "./hasher.ts";
import {
  encodeAccept,
  encodeRefusal,
  encodeText,
  type Offer,
  Reason,
  SHA256_BYTES,
  TransferFrame,
} from "./protocol.ts";
import { relName, type Target, vetOffer } from "./offer_policy.ts";
import { receivePresent } from "./already_there.ts";
import { type OpenedPartial, openPartial, placeFile, syncFolder } from "./partial_file.ts";
import { Refusal, toRefusal } from "./refusal.ts";
import { readStart } from "./receive_frames.ts";
import { receiveData } from "./data_ring.ts";
import type { ReceiveContext } from "./receive_context.ts";

/** Receives one streamed file offer, from the answer to the confirmation. */
export async function receiveStreamedFile(ctx: ReceiveContext, offer: Offer): Promise<void> {
  const verdict = await vetOffer(offer, ctx, { resumable: true });
  if (verdict.present !== undefined) return await receivePresent(ctx, offer, verdict.present);
  if (verdict.refusal !== undefined) {
    await ctx.send(TransferFrame.Reject, encodeRefusal(verdict.refusal));
    return ctx.refused(offer, verdict.refusal, { failed: false });
  }
  try {
    await receiveInto(ctx, offer, verdict.target);
  } finally {
    ctx.inUse.delete(verdict.target.partial);
  }
}

async function receiveInto(ctx: ReceiveContext, offer: Offer, target: Target): Promise<void> {
  const started = performance.now();
  const { partial } = target;
  const hasher = await ctx.hashers.forSize(offer.size);
  let opened: OpenedPartial;
  try {
    opened = await openPartial(partial, offer.size, {
      hasher,
      buffer: ctx.ring[0],
      keepalive: () => ctx.send(ControlFrame.Ping),
    });
  } catch (error) {
    const refusal = toRefusal(error);
    await ctx.send(TransferFrame.Reject, encodeRefusal(refusal));
    return ctx.refused(offer, refusal, { failed: false });
  }
  let file: Deno.FsFile | null = opened.file;
  const closeFile = () => {
    file?.close();
    file = null;
  };
  try {
    const { offset } = opened;
    const prefixHash = offset > 0 ? await hasher.peek() : new Uint8Array(SHA256_BYTES);
    await ctx.send(TransferFrame.Accept, encodeAccept({ offset, prefixHash }));

    const start = await readStart(ctx.reader, offer, offset);
    if (start === 0 && offset > 0) await hasher.reset();
    // Truncating only when needed: on ext4 a truncate makes close() start writeback of
    // the whole file (auto_da_alloc), which --no-sync is meant to avoid.
    const truncate = start !== offset || (!opened.created && (await file.stat()).size !== start);
    if (truncate) await file.truncate(start);
    await file.seek(start, Deno.SeekMode.Start);

    ctx.progress?.fileStart(partial, printable(offer.path), offer.size, start);
    let outcome;
    try {
      outcome = await receiveData(ctx, offer, {
        file,
        expected: offer.size - start,
        hasher: offer.verify ? hasher : null,
        key: partial,
      });
    } finally {
      ctx.progress?.fileEnd(partial);
    }
    if (outcome.aborted !== undefined) {
      ctx.summary.failed++;
      ctx.log?.warn(
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
      if (offer.verify) await checkDigest(hasher, outcome.digest!, { partial, closeFile });
      await Deno.chmod(partial, offer.mode & 0o777);
      if (offer.mtimeMs > 0) {
        const mtime = new Date(offer.mtimeMs);
        await file.utime(mtime, mtime);
      }
      const dataDone = performance.now();
      const { sync, overwrite, rename } = ctx.settings;
      if (sync) await file.syncData();
      closeFile();
      const stored = placeFile(partial, target.dir, { name: target.name, overwrite, rename });
      if (sync) await syncFolder(target.dir);
      ctx.log?.debug(
        `${quote(offer.path)}: data ${
          ((dataDone - started) / 1000).toFixed(2)
        } s, sync and rename ${((performance.now() - dataDone) / 1000).toFixed(2)} s`,
      );
      const rel = relName(target.components, stored);
      await ctx.send(TransferFrame.Confirm, encodeText(rel));
      const seconds = (performance.now() - started) / 1000;
      ctx.received(offer, rel, { seconds, bytes: outcome.received, resumedAt: start });
    } catch (error) {
      const refusal = toRefusal(error);
      await ctx.send(TransferFrame.Failed, encodeRefusal(refusal));
      ctx.refused(offer, refusal, { failed: true });
    }
  } finally {
    closeFile();
  }
}

/** Compares the file's SHA-256 with the sender's; on a mismatch deletes the partial file. */
async function checkDigest(
  hasher: ChunkHasher,
  theirs: Uint8Array,
  options: { partial: string; closeFile: () => void },
): Promise<void> {
  if (sameDigest(await hasher.digest(), theirs)) return;
  options.closeFile();
  await Deno.remove(options.partial);
  throw new Refusal(
    Reason.HashMismatch,
    "SHA-256 of the received data differs from the sender's; partial file deleted",
  );
}
