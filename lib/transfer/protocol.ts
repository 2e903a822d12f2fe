/**
 * The transfer wire protocol, version 2: frame types, their payloads, reason codes and limits.
 *
 * Every message is a frame of the shared codec (`lib/net/frame.ts`):
 * `type: u8 | length: u32 BE | payload`. All integers are big-endian; `u64` values are
 * limited to 2^53 - 1. Strings are UTF-8.
 *
 * ## Session
 *
 * The sender connects; both sides write {@linkcode encodeHello}`("transfer", 2)` and read the
 * peer's; a peer speaking another protocol or version (v1 included) gets a clear error on both
 * sides. The receiver waits at most a few seconds for the sender's hello, and only a
 * connection whose hello arrived counts as a sender: when the receiver already serves its
 * maximum of senders, it answers the hello with its own hello and then an Error frame
 * {@linkcode ReceiverError.Busy} ("receiver busy"), and closes. A receiver that is shutting
 * down sends {@linkcode ReceiverError.Shutdown} in an Error frame to each sender it cuts off,
 * whatever the state of the session; the sender reads Error frames at any time, not only
 * while it waits for an answer. Then the sender offers entries. There are two kinds of entry:
 *
 * - A **pipelined entry** is a folder, a symlink, or a file of at most
 *   {@linkcode MAX_INLINE_FILE_BYTES} whose Offer carries the Pipelined flag. Its frames (for
 *   a file: Offer, Data, End) are sent without waiting for any answer, it gets exactly **one**
 *   answer, and the receiver may hold that answer until the sender's Flush.
 * - A **streamed file** (larger, or a file whose size changed since the walk) is offered without
 *   the flag and goes through Accept and Start as below, so it can resume. An Offer without the
 *   flag (streamed file, folder or symlink) is answered at once, as in v1.
 *
 * ```text
 * sender                                   receiver
 * Offer(file, Pipelined)           ->      (up to MAX_INLINE_FILE_BYTES)
 * Data(bytes) ... Data(bytes)      ->      (exactly `size` bytes in all; none for 0 bytes)
 * End(sha256 of the whole file)    ->      (checks size and hash, writes, fsyncs, renames)
 * Offer(directory | symlink, Pipelined) ->
 * ... more pipelined entries ...
 * Flush                            ->      (commits the batch: fsyncs, renames)
 *                                  <-      per entry in order: Confirm(stored name),
 *                                          Reject(reason) or (files) Failed(reason)
 *
 * Offer(file)                      ->      (a streamed file)
 *                                  <-      Accept(offset, sha256 of the partial prefix)
 *                                          or Reject(reason, message)
 * Start(offset)                    ->      (offset: the accepted one, or 0 to restart)
 * Data(bytes) ... Data(bytes)      ->      (written to `.NAME.sockit-partial`)
 * End(sha256 of the whole file)    ->      (checks size and hash, fsyncs, renames)
 *                                  <-      Confirm(stored name) or Failed(reason, message)
 * Bye                              ->
 *                                  <-      Bye
 * ```
 *
 * ## Pipelining
 *
 * The receiver answers entries strictly in the order they were offered. The sender keeps up to
 * {@linkcode PIPELINE_WINDOW_ENTRIES} pipelined entries (and at most
 * {@linkcode PIPELINE_WINDOW_BYTES} of their file bytes) unanswered, sending the next one as
 * soon as an answer frees room. Before offering a streamed file it waits until every earlier
 * entry is answered, and it sends nothing more until that file's Confirm or Failed, so a
 * streamed file never overlaps with anything. Bye is sent once every entry is answered.
 *
 * The receiver may hold back the answers of pipelined entries. Flush (from the sender) means
 * "answer everything offered so far": the sender sends it after every
 * {@linkcode PIPELINE_BATCH_ENTRIES} pipelined entries, and always before it waits for an
 * answer not yet covered by an earlier Flush, so it never waits for an answer the receiver may
 * still hold. The receiver sends its held answers on Flush, before handling a streamed file's
 * Offer or Bye, and when it holds {@linkcode MAX_RECEIVER_BATCH} of them; it never waits on
 * the sender while holding answers a Flush asked for.
 *
 * The answer to a pipelined file is Reject when the offer itself is refused (name, exists,
 * busy, too large, no space); the receiver then reads and discards that entry's Data and End
 * frames, writing nothing, and goes on with the next Offer. It is Failed when the data does
 * not match (size, SHA-256) or cannot be stored; the final name is then never created. A
 * refused entry therefore never shifts or corrupts the entries after it. A Pipelined offer of
 * a file larger than {@linkcode MAX_INLINE_FILE_BYTES}, more data than offered, or anything
 * but Data and End between a pipelined file's Offer and its End, is a protocol error that
 * ends the session. A pipelined file always starts at offset 0: a partial file left under its
 * name is replaced.
 *
 * Holding answers lets the receiver commit a batch at once: each file of the batch is written
 * to its partial file, the files are fsynced together, then moved to their final names, then
 * each folder of the batch is fsynced once, and only then are the batch's answers sent, so a
 * confirmed file is durable exactly as a streamed one is. The receiver may commit one batch
 * while it reads and writes the next, and sync the files of one batch while the one before it
 * syncs its folders (its idle deadline is suspended while it commits; answers still go out in
 * offer order).
 *
 * While a side hashes the prefix of a partial file before answering (the receiver before
 * Accept, the sender before Start), it sends a shared Ping frame every
 * {@linkcode KEEPALIVE_INTERVAL_MS} so the peer's idle deadline does not fire; a side waiting
 * for an answer skips Ping frames.
 *
 * A sender that cannot finish a file after Start (its source shrank or failed) sends Abort
 * instead of End; the receiver keeps the partial file for a later resume. Either side may
 * send the shared Error control frame with a message and close: that ends the session.
 *
 * ## A file that is already there
 *
 * A file offered with the Verify flag under a name that already holds a regular file of the
 * same size (and neither --overwrite nor --rename) is compared, not refused at once. A
 * pipelined file's End carries its SHA-256: the answer is Reject with
 * {@linkcode Reason.AlreadyThere} when it equals the SHA-256 of the file already there, and
 * Reject with {@linkcode Reason.Exists} otherwise. A streamed file is answered
 * `Accept(offset = size, SHA-256 of the file already there)`, so the sender compares its own
 * hash and sends `Start(size)` and End without data when they match; after End the answer is
 * Failed with `AlreadyThere` when the sender's SHA-256 matches, and Failed with `Exists`
 * otherwise (the data of a different file is read and thrown away). A sender counts
 * `AlreadyThere` as done, so sending the same files again succeeds; a v2 sender from before
 * this rule sees a refusal, as it did before.
 *
 * ## Names that are not valid UTF-8
 *
 * An Offer whose path or link text is not valid UTF-8 is well-formed (its lengths still say
 * where everything is) and refused like any bad name: Reject with
 * {@linkcode Reason.InvalidName} (a pipelined file's data is read and thrown away), and the
 * session goes on.
 *
 * ## Payloads
 *
 * | type | name    | payload                                                                                   |
 * | ---- | ------- | ----------------------------------------------------------------------------------------- |
 * | 0x10 | Offer   | kind u8, flags u8 (0x01 Verify, 0x02 Pipelined), mode u32, size u64, mtime ms u64, reserved u16, path len u16, path, target len u16, target |
 * | 0x11 | Accept  | offset u64, sha256 of the first `offset` bytes of the partial file (32 bytes; zeros if 0)  |
 * | 0x12 | Reject  | reason u8, message                                                                        |
 * | 0x13 | Start   | offset u64                                                                                |
 * | 0x14 | Data    | file bytes, at most {@linkcode MAX_DATA_PAYLOAD}                                           |
 * | 0x15 | End     | sha256 of the whole file (32 bytes), or empty when the offer had no Verify flag           |
 * | 0x16 | Confirm | the name the entry was stored under, relative to the receiver's folder                    |
 * | 0x17 | Failed  | reason u8, message                                                                        |
 * | 0x18 | Abort   | message                                                                                   |
 * | 0x19 | Flush   | empty: answer every entry offered so far                                                  |
 *
 * Paths are relative, `/`-separated, each component non-empty and not `.` or `..`, without
 * NUL or backslash (see `safe_path.ts`). A symlink's target is the raw link text, relative;
 * the receiver creates the link only when the target, resolved through the links already in
 * its folder (and the link itself), stays inside the folder, and answers Reject with
 * {@linkcode Reason.InvalidName} otherwise (see `link_policy.ts`; a sender skips such links
 * by the same rule).
 *
 * ## Deadlines
 *
 * The receiver closes a connection whose hello has not come within a few seconds, and a
 * sender that sends nothing, or takes none of the bytes of its answers, for its idle deadline
 * (60 s), in every state of the session. The sender gives up on a receiver that does not
 * answer (or takes none of its bytes) for its reply deadline (120 s).
 *
 * @module
 */

import { ProtocolError } from "../net/errors.ts";

/** Protocol name sent in the hello. */
export const TRANSFER_PROTOCOL = "transfer";
/** Protocol version sent in the hello (2: pipelined small files and folders). */
export const TRANSFER_VERSION = 2;

/** Frame types of the transfer protocol (shared control frames are 0x00 to 0x0f). */
export const TransferFrame = {
  /** Sender offers an entry. */
  Offer: 0x10,
  /** Receiver accepts a file offer, with a resume offset. */
  Accept: 0x11,
  /** Receiver refuses an offer. */
  Reject: 0x12,
  /** Sender announces the offset its data starts at. */
  Start: 0x13,
  /** File bytes. */
  Data: 0x14,
  /** Sender finished the file; carries its SHA-256. */
  End: 0x15,
  /** Receiver stored the entry durably. */
  Confirm: 0x16,
  /** Receiver could not store the file (hash or size mismatch, I/O error). */
  Failed: 0x17,
  /** Sender gave up on the current file; the partial file stays for a resume. */
  Abort: 0x18,
  /** Sender asks for the answers to every entry offered so far (empty payload). */
  Flush: 0x19,
} as const;

/** What an offer describes. */
export const EntryKind = {
  /** A regular file: data follows. */
  File: 1,
  /** A folder (sent before its contents, so empty folders are kept). */
  Directory: 2,
  /** A symbolic link pointing inside the sent tree. */
  Symlink: 3,
} as const;

/** One of {@linkcode EntryKind}'s values. */
export type EntryKindValue = typeof EntryKind[keyof typeof EntryKind];

/** Bits of an offer's flags byte. */
export const OfferFlag = {
  /** The sender will end the file with its SHA-256. */
  Verify: 0x01,
  /**
   * A pipelined entry: its one answer may be held until Flush. For a file, Data and End follow
   * the offer at once, without Accept or Start, and the answer is Confirm, Reject or Failed;
   * only for files of at most {@linkcode MAX_INLINE_FILE_BYTES}.
   */
  Pipelined: 0x02,
} as const;

/** Why the receiver refused an offer or failed a file. */
export const Reason = {
  /** The name exists and neither --overwrite nor --rename was given. */
  Exists: 1,
  /** The path is absolute, contains `..`, NUL, a backslash, or leaves the folder. */
  InvalidName: 2,
  /** Larger than the receiver's size limit. */
  TooLarge: 3,
  /** Not enough free space on the receiver's disk. */
  NoSpace: 4,
  /** Another sender is writing the same name right now. */
  Busy: 5,
  /** The receiver could not write (permissions, disk error). */
  IoError: 6,
  /** The data did not match the sender's SHA-256. */
  HashMismatch: 7,
  /** The sender sent more or fewer bytes than offered. */
  SizeMismatch: 8,
  /** A symlink pointing outside the folder, or an entry kind the receiver does not take. */
  Unsupported: 9,
  /**
   * Not stored because the name already holds a regular file of the same size and SHA-256:
   * the sender counts the entry as done.
   */
  AlreadyThere: 10,
} as const;

/** One of {@linkcode Reason}'s values. */
export type ReasonValue = typeof Reason[keyof typeof Reason];

/** Short names of the reasons, as printed in logs and JSON events. */
export const REASON_NAMES: Readonly<Record<number, string>> = {
  [Reason.Exists]: "exists",
  [Reason.InvalidName]: "invalid name",
  [Reason.TooLarge]: "too large",
  [Reason.NoSpace]: "no space",
  [Reason.Busy]: "busy",
  [Reason.IoError]: "i/o error",
  [Reason.HashMismatch]: "hash mismatch",
  [Reason.SizeMismatch]: "size mismatch",
  [Reason.Unsupported]: "unsupported",
  [Reason.AlreadyThere]: "already there",
};

/** Texts of the Error frames a receiver ends a session with, for the sender to recognise. */
export const ReceiverError = {
  /** The receiver already serves its maximum of senders (sent after the hellos). */
  Busy: "receiver busy",
  /** The receiver is stopping (SIGINT or SIGTERM); its partial files stay for a resume. */
  Shutdown: "receiver shut down, run again to resume",
} as const;

/** Largest Data payload, in bytes (1 MiB); also the sender's chunk size. */
export const MAX_DATA_PAYLOAD = 1024 * 1024;
/** Largest file the sender may pipeline (Pipelined flag), in bytes (1 MiB). */
export const MAX_INLINE_FILE_BYTES = 1024 * 1024;
/** Most pipelined entries the sender leaves unanswered (256; was 128, receivers rely on neither). */
export const PIPELINE_WINDOW_ENTRIES = 256;
/**
 * The sender sends Flush after this many pipelined entries (128; 64 before), half its window:
 * each batch costs the receiver a round of fsyncs and one per folder.
 */
export const PIPELINE_BATCH_ENTRIES = 128;
/** Most file bytes of unanswered pipelined entries the sender has sent (8 MiB). */
export const PIPELINE_WINDOW_BYTES = 8 * 1024 * 1024;
/**
 * Most answers the receiver holds back before sending them (128): its bound on open partial
 * files waiting for the batch's fsync, whatever the sender's window.
 */
export const MAX_RECEIVER_BATCH = 128;
/** Largest path in an offer, in UTF-8 bytes. */
export const MAX_PATH_BYTES = 4096;
/** Largest payload of any frame other than Data, in bytes. */
export const MAX_CONTROL_PAYLOAD: number = 2 * MAX_PATH_BYTES + 64;
/** Ping interval while hashing a partial file's prefix, in ms (well under the idle deadlines). */
export const KEEPALIVE_INTERVAL_MS = 10_000;
/** Length of a SHA-256 digest. */
export const SHA256_BYTES = 32;

/** A file, folder or symlink offered by the sender. */
export interface Offer {
  /** What it is. */
  kind: EntryKindValue;
  /** Relative `/`-separated path. */
  path: string;
  /** Size in bytes (0 for folders and symlinks). */
  size: number;
  /** Permission bits (the receiver keeps only 0o777). */
  mode: number;
  /** Modification time in ms since the epoch; 0 if unknown. */
  mtimeMs: number;
  /** Whether the file ends with a SHA-256 to check. */
  verify: boolean;
  /**
   * A pipelined entry: the answer may wait for Flush; a file's data follows the offer without
   * Accept and Start. @default {false}
   */
  pipelined?: boolean;
  /** Link text of a symlink; empty otherwise. */
  target: string;
  /**
   * Set by {@linkcode decodeOffer} when the path or the link text is not valid UTF-8 (they are
   * then decoded with U+FFFD in place of the bad bytes): why the offer cannot be accepted.
   */
  invalid?: string;
}

/** A receiver's answer to a file offer. */
export interface Accept {
  /** Bytes of the partial file the receiver already has. */
  offset: number;
  /** SHA-256 of those bytes (zeros when `offset` is 0). */
  prefixHash: Uint8Array;
}

/** A reason code with a message (Reject and Failed frames). */
export interface Refusal {
  /** Why. */
  reason: number;
  /** Human-readable detail. */
  message: string;
}

const encoder = new TextEncoder();
const decoder = new TextDecoder("utf-8", { fatal: true });
/** Replaces invalid bytes with U+FFFD; one for every text payload (a tree makes thousands). */
const lenient = new TextDecoder();
const NO_BYTES = new Uint8Array(0);

const TWO_32 = 2 ** 32;

/** Writes `value` (0 to 2^53 - 1) as a big-endian u64, without a BigInt. */
function setU64(view: DataView, at: number, value: number): void {
  if (!Number.isSafeInteger(value) || value < 0) {
    throw new RangeError(`Cannot encode ${value} as a u64 of the protocol`);
  }
  view.setUint32(at, Math.floor(value / TWO_32));
  view.setUint32(at + 4, value >>> 0);
}

/** Reads a big-endian u64, which must be at most 2^53 - 1. */
function getU64(view: DataView, at: number, what: string): number {
  const high = view.getUint32(at);
  if (high > 0x1fffff) {
    throw new ProtocolError(`Cannot read ${what}: ${view.getBigUint64(at)} exceeds 2^53 - 1`);
  }
  return high * TWO_32 + view.getUint32(at + 4);
}

/**
 * Encodes an Offer payload.
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert/strict";
 * import { decodeOffer, encodeOffer, EntryKind } from "./protocol.ts";
 * const offer = { kind: EntryKind.File, path: "a/b.txt", size: 3, mode: 0o644, mtimeMs: 0,
 *   verify: true, target: "" } as const;
 * assert.equal(decodeOffer(encodeOffer(offer)).path, "a/b.txt");
 * ```
 */
export function encodeOffer(offer: Offer): Uint8Array {
  const path = encoder.encode(offer.path);
  const target = offer.target === "" ? NO_BYTES : encoder.encode(offer.target);
  if (path.length > MAX_PATH_BYTES || target.length > MAX_PATH_BYTES) {
    throw new RangeError(
      `Cannot offer '${offer.path}': path or link longer than ${MAX_PATH_BYTES}`,
    );
  }
  const out = new Uint8Array(26 + path.length + 2 + target.length);
  const view = new DataView(out.buffer);
  out[0] = offer.kind;
  out[1] = (offer.verify ? OfferFlag.Verify : 0) | (offer.pipelined ? OfferFlag.Pipelined : 0);
  view.setUint32(2, offer.mode >>> 0);
  setU64(view, 6, offer.size);
  setU64(view, 14, Math.max(0, Math.floor(offer.mtimeMs)));
  // Bytes 22-23 are reserved (zero) so the path length sits at 24.
  view.setUint16(24, path.length);
  out.set(path, 26);
  view.setUint16(26 + path.length, target.length);
  out.set(target, 28 + path.length);
  return out;
}

/**
 * Decodes an Offer payload; throws {@linkcode ProtocolError} when it is malformed. A path or
 * link text that is not valid UTF-8 is not malformed: the offer comes back with `invalid` set.
 *
 * @example A path that is not valid UTF-8
 * ```ts
 * import assert from "node:assert/strict";
 * import { decodeOffer, encodeOffer, EntryKind } from "./protocol.ts";
 * const payload = encodeOffer({ kind: EntryKind.File, path: "axb", size: 0, mode: 0o644,
 *   mtimeMs: 0, verify: true, target: "" });
 * payload[27] = 0xff; // the "x"
 * const offer = decodeOffer(payload);
 * assert.equal(offer.path, "a\ufffdb");
 * assert.match(offer.invalid ?? "", /not valid UTF-8/);
 * ```
 */
export function decodeOffer(payload: Uint8Array): Offer {
  if (payload.length < 28) throw new ProtocolError(`Cannot read offer: ${payload.length} bytes`);
  const view = new DataView(payload.buffer, payload.byteOffset, payload.byteLength);
  const kind = payload[0];
  if (kind !== EntryKind.File && kind !== EntryKind.Directory && kind !== EntryKind.Symlink) {
    throw new ProtocolError(`Cannot read offer: unknown entry kind ${kind}`);
  }
  const pathLen = view.getUint16(24);
  if (26 + pathLen + 2 > payload.length) {
    throw new ProtocolError(`Cannot read offer: path length ${pathLen} overruns the frame`);
  }
  const targetLen = view.getUint16(26 + pathLen);
  if (28 + pathLen + targetLen !== payload.length) {
    throw new ProtocolError(`Cannot read offer: link length ${targetLen} does not fit the frame`);
  }
  const path = decodeName(payload.subarray(26, 26 + pathLen));
  const target = decodeName(payload.subarray(28 + pathLen));
  const offer: Offer = {
    kind: kind as EntryKindValue,
    verify: (payload[1] & OfferFlag.Verify) !== 0,
    pipelined: (payload[1] & OfferFlag.Pipelined) !== 0,
    mode: view.getUint32(2),
    size: getU64(view, 6, "offer size"),
    mtimeMs: getU64(view, 14, "offer mtime"),
    path: path.text,
    target: target.text,
  };
  if (!path.valid) offer.invalid = "the path is not valid UTF-8";
  else if (!target.valid) offer.invalid = "the link text is not valid UTF-8";
  return offer;
}

function decodeName(bytes: Uint8Array): { text: string; valid: boolean } {
  try {
    return { text: decoder.decode(bytes), valid: true };
  } catch {
    return { text: lenient.decode(bytes), valid: false };
  }
}

/** Encodes an Accept payload. */
export function encodeAccept(accept: Accept): Uint8Array {
  const out = new Uint8Array(8 + SHA256_BYTES);
  setU64(new DataView(out.buffer), 0, accept.offset);
  out.set(accept.prefixHash.subarray(0, SHA256_BYTES), 8);
  return out;
}

/** Decodes an Accept payload. */
export function decodeAccept(payload: Uint8Array): Accept {
  if (payload.length !== 8 + SHA256_BYTES) {
    throw new ProtocolError(`Cannot read accept: ${payload.length} bytes, expected 40`);
  }
  const view = new DataView(payload.buffer, payload.byteOffset, payload.byteLength);
  return { offset: getU64(view, 0, "accept offset"), prefixHash: payload.slice(8) };
}

/** Encodes a Reject or Failed payload: reason byte, then the message. */
export function encodeRefusal(refusal: Refusal): Uint8Array {
  const text = encoder.encode(refusal.message).subarray(0, MAX_CONTROL_PAYLOAD - 1);
  const out = new Uint8Array(1 + text.length);
  out[0] = refusal.reason;
  out.set(text, 1);
  return out;
}

/** Decodes a Reject or Failed payload. */
export function decodeRefusal(payload: Uint8Array): Refusal {
  if (payload.length < 1) throw new ProtocolError("Cannot read refusal: empty payload");
  return {
    reason: payload[0],
    message: lenient.decode(payload.subarray(1)),
  };
}

/** Encodes a Start payload (the offset data starts at). */
export function encodeStart(offset: number): Uint8Array {
  const out = new Uint8Array(8);
  setU64(new DataView(out.buffer), 0, offset);
  return out;
}

/** Decodes a Start payload. */
export function decodeStart(payload: Uint8Array): number {
  if (payload.length !== 8) throw new ProtocolError(`Cannot read start: ${payload.length} bytes`);
  return getU64(new DataView(payload.buffer, payload.byteOffset, 8), 0, "start offset");
}

/** Decodes an End payload: the SHA-256, or null when the sender did not hash. */
export function decodeEnd(payload: Uint8Array): Uint8Array | null {
  if (payload.length === 0) return null;
  if (payload.length !== SHA256_BYTES) {
    throw new ProtocolError(`Cannot read end: ${payload.length} bytes, expected 0 or 32`);
  }
  return payload;
}

/** Encodes a UTF-8 text payload (Confirm, Abort). */
export function encodeText(text: string): Uint8Array {
  return encoder.encode(text).subarray(0, MAX_CONTROL_PAYLOAD);
}

/** Decodes a UTF-8 text payload (Confirm, Abort, Error, Bye), replacing invalid bytes. */
export function decodeTextPayload(payload: Uint8Array): string {
  return lenient.decode(payload);
}

/** Name of a frame type for error messages, e.g. "Offer (0x10)". */
export function frameName(type: number): string {
  const names: Record<number, string> = {
    0x00: "Hello",
    0x01: "Ping",
    0x02: "Pong",
    0x03: "Bye",
    0x04: "Error",
  };
  for (const [name, value] of Object.entries(TransferFrame)) names[value] = name;
  return `${names[type] ?? "unknown"} (0x${type.toString(16).padStart(2, "0")})`;
}
