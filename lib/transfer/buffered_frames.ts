/**
 * Frames taken straight from the bytes a {@linkcode BufferedReader} already holds, without an
 * `await` per frame: a tree of small files brings tens of entries (and their answers) per
 * socket read, and on the frame-by-frame path every frame costs several awaits.
 * {@linkcode takeBufferedFrame} takes any one frame (the sender's answers),
 * {@linkcode takeBufferedOffer} an Offer with a pipelined file's Data and End (the receiver).
 * Both take only what is wholly there and within the limits, and leave anything else (bytes
 * still to come, a limit exceeded, a frame out of place) to the frame-by-frame path, which then
 * reads it and reports it as before.
 *
 * @module
 */

import type { BufferedReader } from "../net/buffered_reader.ts";
import { type Frame, FRAME_HEADER_SIZE } from "../net/frame.ts";
import {
  decodeOffer,
  EntryKind,
  MAX_CONTROL_PAYLOAD,
  MAX_DATA_PAYLOAD,
  MAX_INLINE_FILE_BYTES,
  type Offer,
  SHA256_BYTES,
  TransferFrame,
} from "./protocol.ts";
import type { PipelinedContent } from "./receive_frames.ts";

/** The big-endian u32 at `at`. */
function u32(view: Uint8Array, at: number): number {
  return ((view[at] << 24) >>> 0) + (view[at + 1] << 16) + (view[at + 2] << 8) + view[at + 3];
}

/**
 * Takes the next frame when it is wholly buffered and its payload at most `maxPayload` bytes
 * (the payload is copied); null, having consumed nothing, otherwise.
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert/strict";
 * import { BufferedReader } from "../net/buffered_reader.ts";
 * import { encodeFrame } from "../net/frame.ts";
 * import { takeBufferedFrame } from "./buffered_frames.ts";
 * const bytes = encodeFrame(0x16, new Uint8Array([1, 2, 3]));
 * const chunks = [bytes.subarray(0, 4), bytes.subarray(4)];
 * const reader = new BufferedReader({
 *   read(p) {
 *     const chunk = chunks.shift();
 *     if (chunk === undefined) return Promise.resolve(null);
 *     p.set(chunk);
 *     return Promise.resolve(chunk.length);
 *   },
 * });
 * await reader.fill();
 * assert.equal(takeBufferedFrame(reader, 1024), null); // 4 of its 8 bytes so far
 * await reader.fill();
 * assert.deepEqual(takeBufferedFrame(reader, 1024)?.payload, new Uint8Array([1, 2, 3]));
 * ```
 */
export function takeBufferedFrame(reader: BufferedReader, maxPayload: number): Frame | null {
  const view = reader.bufferedView();
  if (view.length < FRAME_HEADER_SIZE) return null;
  const length = u32(view, 1);
  const end = FRAME_HEADER_SIZE + length;
  if (length > maxPayload || end > view.length) return null;
  const frame = { type: view[0], payload: view.slice(FRAME_HEADER_SIZE, end) };
  reader.skipBuffered(end);
  return frame;
}

/** An Offer taken from the buffer, with a pipelined file's content when it came along. */
export interface BufferedOffer {
  /** The decoded offer. */
  offer: Offer;
  /** A pipelined file's data (copied into the caller's buffer) and SHA-256. */
  content?: PipelinedContent;
}

/**
 * Takes the next frame when it is an Offer that is wholly buffered, and for a well-formed
 * pipelined file also its Data frames and End when they are all buffered too (the data is
 * copied into `into`, at least {@linkcode MAX_INLINE_FILE_BYTES} long). Returns null, having
 * consumed nothing, for anything else: another frame, bytes still to come, or anything a
 * frame-by-frame read would refuse (a limit, a stray frame, a missing or extra SHA-256), so
 * that the frame-by-frame path reads it and reports it exactly as before. A malformed Offer
 * payload throws {@linkcode ProtocolError}, as {@linkcode decodeOffer} does there.
 *
 * @example A pipelined file in the buffer comes out whole
 * ```ts
 * import assert from "node:assert/strict";
 * import { BufferedReader } from "../net/buffered_reader.ts";
 * import { encodeFrame } from "../net/frame.ts";
 * import { encodeOffer, EntryKind, TransferFrame } from "./protocol.ts";
 * import { takeBufferedOffer } from "./buffered_frames.ts";
 * const offer = encodeOffer({ kind: EntryKind.File, path: "a.txt", size: 2, mode: 0o644,
 *   mtimeMs: 0, verify: false, pipelined: true, target: "" });
 * const bytes = [encodeFrame(TransferFrame.Offer, offer),
 *   encodeFrame(TransferFrame.Data, new Uint8Array([7, 8])), encodeFrame(TransferFrame.End)];
 * const chunks = [new Uint8Array(bytes.flatMap((b) => [...b]))];
 * const reader = new BufferedReader({
 *   read(p) {
 *     const chunk = chunks.shift();
 *     if (chunk === undefined) return Promise.resolve(null);
 *     p.set(chunk);
 *     return Promise.resolve(chunk.length);
 *   },
 * });
 * await reader.fill();
 * const taken = takeBufferedOffer(reader, new Uint8Array(1 << 20));
 * assert.equal(taken?.offer.path, "a.txt");
 * assert.deepEqual([...taken!.content!.data], [7, 8]);
 * assert.equal(reader.buffered, 0);
 * ```
 */
export function takeBufferedOffer(reader: BufferedReader, into: Uint8Array): BufferedOffer | null {
  const view = reader.bufferedView();
  if (view.length < FRAME_HEADER_SIZE || view[0] !== TransferFrame.Offer) return null;
  const offerLength = u32(view, 1);
  let at = FRAME_HEADER_SIZE + offerLength;
  if (offerLength > MAX_CONTROL_PAYLOAD || at > view.length) return null;
  const offer = decodeOffer(view.subarray(FRAME_HEADER_SIZE, at));
  if (!offer.pipelined || offer.kind !== EntryKind.File) {
    reader.skipBuffered(at);
    return { offer };
  }
  if (offer.size > MAX_INLINE_FILE_BYTES || into.length < offer.size) return null;
  let received = 0;
  while (at + FRAME_HEADER_SIZE <= view.length) {
    const type = view[at];
    const length = u32(view, at + 1);
    const payloadAt = at + FRAME_HEADER_SIZE;
    if (type === TransferFrame.Data) {
      if (length > MAX_DATA_PAYLOAD || received + length > offer.size) return null;
      if (payloadAt + length > view.length) return null;
      into.set(view.subarray(payloadAt, payloadAt + length), received);
      received += length;
      at = payloadAt + length;
      continue;
    }
    if (type !== TransferFrame.End || payloadAt + length > view.length) return null;
    if (length !== (offer.verify ? SHA256_BYTES : 0)) return null;
    const digest = offer.verify ? view.slice(payloadAt, payloadAt + length) : null;
    reader.skipBuffered(payloadAt + length);
    return { offer, content: { data: into.subarray(0, received), digest } };
  }
  return null;
}
