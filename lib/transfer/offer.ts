/**
 * The sender's view of one entry: the Offer frame for a local entry, its result record, and
 * the reading of the receiver's answer to it (Confirm, or a refusal with its reason).
 *
 * @module
 */

import { encodeFrame, FRAME_HEADER_SIZE } from "../net/frame.ts";
import { sha256 } from "./hasher.ts";
import type { EntryResult } from "./progress.ts";
import {
  decodeRefusal,
  decodeTextPayload,
  encodeOffer,
  EntryKind,
  MAX_INLINE_FILE_BYTES,
  type Offer,
  Reason,
  REASON_NAMES,
  SHA256_BYTES,
  TransferFrame,
} from "./protocol.ts";
import type { LocalEntry } from "./walk.ts";

/** The result kind of each entry kind. */
export const KIND_NAMES = {
  [EntryKind.File]: "file",
  [EntryKind.Directory]: "dir",
  [EntryKind.Symlink]: "link",
} as const;

/** Marks `result` as done: the receiver already has the same file (size and SHA-256). */
export function markAlreadyThere(result: EntryResult): void {
  result.status = "confirmed";
  result.alreadyThere = true;
  result.storedAs = result.path;
  result.verified = true;
}

/** The Offer frame for a local entry. */
export function offerFrame(
  entry: LocalEntry,
  flags: { verify: boolean; pipelined: boolean },
): Uint8Array {
  return encodeFrame(TransferFrame.Offer, encodeOffer(offerOf(entry, flags)));
}

/** The offer describing a local entry. */
function offerOf(entry: LocalEntry, flags: { verify: boolean; pipelined: boolean }): Offer {
  return {
    kind: entry.kind,
    path: entry.path,
    size: entry.size,
    mode: entry.mode,
    mtimeMs: entry.mtimeMs,
    verify: flags.verify,
    pipelined: flags.pipelined,
    target: entry.target,
  };
}

/** A fresh result for `entry`: confirmed until an answer says otherwise. */
export function newResult(entry: LocalEntry, options: { sent: number }): EntryResult {
  return {
    kind: KIND_NAMES[entry.kind],
    path: entry.path,
    status: "confirmed",
    size: entry.size,
    sent: options.sent,
    resumedFrom: 0,
    verified: false,
    seconds: 0,
  };
}

/**
 * Completes `result` from the receiver's answer `frame`: Confirm (stored as its payload,
 * `verified` as asked), or Reject / Failed with their reason (AlreadyThere counts as stored).
 */
export function applyAnswer(
  result: EntryResult,
  frame: { type: number; payload: Uint8Array },
  options: { verified: boolean },
): EntryResult {
  if (frame.type === TransferFrame.Confirm) {
    result.storedAs = decodeTextPayload(frame.payload);
    result.verified = options.verified;
    return result;
  }
  const r = decodeRefusal(frame.payload);
  if (r.reason === Reason.AlreadyThere) {
    markAlreadyThere(result);
    return result;
  }
  result.status = frame.type === TransferFrame.Reject ? "rejected" : "failed";
  result.reason = REASON_NAMES[r.reason] ?? `reason ${r.reason}`;
  result.message = r.message;
  return result;
}

/**
 * The frames of `entry` as a pipelined entry, in one buffer (Offer, and for a file Data and
 * End), or null when it must be streamed: a file larger than {@linkcode MAX_INLINE_FILE_BYTES},
 * one whose size changed since the walk, or one that cannot be read now (the streamed path
 * reports it). The file is read straight into the buffer where its Data frame goes: one open,
 * one read and one close for a small file.
 */
export function pipelinedFrames(
  entry: LocalEntry,
  options: { verify: boolean },
): Uint8Array | null {
  if (entry.kind !== EntryKind.File) return offerFrame(entry, { verify: false, pipelined: true });
  if (entry.size > MAX_INLINE_FILE_BYTES) return null;
  const { verify } = options;
  const offer = encodeOffer(offerOf(entry, { verify, pipelined: true }));
  const size = entry.size;
  const dataAt = FRAME_HEADER_SIZE + offer.length + (size > 0 ? FRAME_HEADER_SIZE : 0);
  const endAt = dataAt + size;
  const digestLength = verify ? SHA256_BYTES : 0;
  // One spare byte past the data (where End's header goes) shows a file that grew.
  const out = new Uint8Array(endAt + FRAME_HEADER_SIZE + Math.max(digestLength, 1));
  const want = out.subarray(dataAt, endAt + 1);
  let filled = 0;
  try {
    using file = Deno.openSync(entry.source, { read: true });
    while (filled < want.length) {
      const n = file.readSync(want.subarray(filled));
      if (n === null) break;
      filled += n;
      // A short read of a regular file is its end: no second read just to see EOF.
      if (filled === size) break;
    }
  } catch {
    return null;
  }
  if (filled !== size) return null;
  putHeader(out, 0, TransferFrame.Offer, offer.length);
  out.set(offer, FRAME_HEADER_SIZE);
  if (size > 0) putHeader(out, dataAt - FRAME_HEADER_SIZE, TransferFrame.Data, size);
  putHeader(out, endAt, TransferFrame.End, digestLength);
  if (verify) out.set(sha256(out.subarray(dataAt, endAt)), endAt + FRAME_HEADER_SIZE);
  return out.subarray(0, endAt + FRAME_HEADER_SIZE + digestLength);
}

/** Writes a frame header (type, then the payload length as u32 BE) at `at`. */
function putHeader(out: Uint8Array, at: number, type: number, length: number): void {
  out[at] = type;
  out[at + 1] = length >>> 24;
  out[at + 2] = (length >>> 16) & 0xff;
  out[at + 3] = (length >>> 8) & 0xff;
  out[at + 4] = length & 0xff;
}
