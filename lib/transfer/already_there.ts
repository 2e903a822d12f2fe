/**
 * Offers that meet a file of their size at their name (and no `--overwrite` or `--rename`):
 * the file there is hashed and compared with the sender's SHA-256, so a re-sent tree is
 * answered "already there" instead of refused. Nothing is written.
 *
 * @module
 */

import { ProtocolError, UnexpectedEofError } from "../net/errors.ts";
import { ControlFrame, readFrameHeader } from "../net/frame.ts";
import { retryOnEmfile } from "../net/fd_budget.ts";
import { quote } from "../log.ts";
import { hashFileBytes, sameDigest, sha256 } from "./hasher.ts";
import { readFileFull } from "./file_stream.ts";
import {
  encodeAccept,
  encodeRefusal,
  frameName,
  MAX_DATA_PAYLOAD,
  MAX_INLINE_FILE_BYTES,
  type Offer,
  Reason,
  TransferFrame,
} from "./protocol.ts";
import type { ResolvedPath } from "./safe_path.ts";
import { presentAnswer } from "./offer_policy.ts";
import { Refusal, toRefusal } from "./refusal.ts";
import { endDigest, readControlPayload, readStart, tooMuchData } from "./receive_frames.ts";
import type { ReceiveContext } from "./receive_context.ts";

/**
 * SHA-256 of the file already at `where` (checked to be the one `lstat` saw), with Pings
 * while it takes long when `options.keepalive` (only where no other write can be under way).
 * With `options.small` (a pipelined file, at most {@linkcode MAX_INLINE_FILE_BYTES}) it is read
 * into its own buffer and hashed at once: a batch being committed may compare a file while
 * the session compares another, so the session's hasher and chunk buffers are not used.
 */
async function hashExisting(
  ctx: ReceiveContext,
  where: ResolvedPath,
  options: { size: number; keepalive: boolean; small?: boolean },
): Promise<Uint8Array> {
  using file = await retryOnEmfile(() => Deno.open(where.path, { read: true }));
  const now = await file.stat();
  if (!now.isFile || now.ino !== where.existing!.ino || now.dev !== where.existing!.dev) {
    throw new Refusal(Reason.Exists, `${quote(where.name)} changed while it was checked`);
  }
  if (options.small) {
    const bytes = new Uint8Array(options.size);
    if (await readFileFull(file, bytes) !== options.size) {
      throw new Error("file shrank while hashing it");
    }
    return sha256(bytes);
  }
  const hasher = await ctx.hashers.forSize(options.size);
  await hasher.reset();
  await hashFileBytes(file, hasher, {
    length: options.size,
    buffer: ctx.ring[0],
    keepalive: options.keepalive ? () => ctx.send(ControlFrame.Ping) : undefined,
  });
  return await hasher.digest();
}

/**
 * The answer to a pipelined file offered where a file of its size is, given the SHA-256 of
 * the data received (null when it was not the offered size): AlreadyThere or Exists (or the
 * refusal for an error while hashing). Also for a file whose name turned out taken only when
 * it was placed (see `takenVerdict`).
 */
export async function comparePipelined(
  ctx: ReceiveContext,
  offer: Offer,
  options: { where: ResolvedPath; digest: Uint8Array | null },
): Promise<Refusal> {
  const { where, digest } = options;
  try {
    // No Ping: a batch may be committing (and writing its answers) meanwhile.
    const mine = await hashExisting(ctx, where, {
      size: offer.size,
      keepalive: false,
      small: offer.size <= MAX_INLINE_FILE_BYTES,
    });
    return presentAnswer(offer.path, { same: digest !== null && sameDigest(mine, digest) });
  } catch (error) {
    return toRefusal(error);
  }
}

/**
 * A streamed file offered where a file of its size is: `Accept(size, its SHA-256)`, then the
 * sender's End decides (its data, if it restarts, is read and thrown away).
 */
export async function receivePresent(
  ctx: ReceiveContext,
  offer: Offer,
  where: ResolvedPath,
): Promise<void> {
  let mine: Uint8Array;
  try {
    mine = await hashExisting(ctx, where, { size: offer.size, keepalive: true });
  } catch (error) {
    const refusal = toRefusal(error);
    await ctx.send(TransferFrame.Reject, encodeRefusal(refusal));
    return ctx.refused(offer, refusal, { failed: false });
  }
  await ctx.send(TransferFrame.Accept, encodeAccept({ offset: offer.size, prefixHash: mine }));
  const start = await readStart(ctx.reader, offer, offer.size);
  let left = offer.size - start;
  while (true) {
    const header = await readFrameHeader(ctx.reader, { maxPayload: MAX_DATA_PAYLOAD });
    if (header === null) {
      throw new UnexpectedEofError(`Sender closed the connection during ${quote(offer.path)}`);
    }
    if (header.type === TransferFrame.Data) {
      if (header.length > left) throw tooMuchData(offer);
      left -= header.length;
      await ctx.reader.readFull(ctx.ring[0].subarray(0, header.length));
      continue;
    }
    const payload = await readControlPayload(ctx.reader, header);
    if (header.type === TransferFrame.Abort) {
      ctx.summary.failed++;
      return ctx.log?.warn(`sender aborted ${quote(offer.path)}: ${quote(payload)}`);
    }
    if (header.type !== TransferFrame.End) {
      throw new ProtocolError(
        `Cannot receive ${quote(offer.path)}: got ${frameName(header.type)} among its data`,
      );
    }
    const same = left === 0 && sameDigest(mine, endDigest(offer, payload)!);
    const answer = presentAnswer(offer.path, { same });
    await ctx.send(TransferFrame.Failed, encodeRefusal(answer));
    return same ? ctx.alreadyThere(offer) : ctx.refused(offer, answer, { failed: true });
  }
}
