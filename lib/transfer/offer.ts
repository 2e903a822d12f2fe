/**
 * The sender's view of one entry: the Offer frame for a local entry, its result record, and
 * the reading of the receiver's answer to it (Confirm, or a refusal with its reason).
 *
 * @module
 */

import { encodeFrame, encodeFrameHeader } from "../net/frame.ts";
import { sha256 } from "./hasher.ts";
import type { EntryResult } from "./progress.ts";
import {
  decodeRefusal,
  decodeTextPayload,
  encodeOffer,
  EntryKind,
  MAX_INLINE_FILE_BYTES,
  Reason,
  REASON_NAMES,
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
 * The frames of `entry` as a pipelined entry (Offer, and for a file Data and End), or null
 * when it must be streamed: a file larger than {@linkcode MAX_INLINE_FILE_BYTES}, one whose
 * size changed since the walk, or one that cannot be read now (the streamed path reports it).
 */
export function pipelinedFrames(
  entry: LocalEntry,
  options: { verify: boolean },
): Uint8Array[] | null {
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
  const { verify } = options;
  const frames = [offer(verify)];
  if (bytes.length > 0) frames.push(encodeFrameHeader(TransferFrame.Data, bytes.length), bytes);
  frames.push(encodeFrame(TransferFrame.End, verify ? sha256(bytes) : new Uint8Array(0)));
  return frames;
}
