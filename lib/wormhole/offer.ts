/**
 * The file-transfer application's messages, as the Magic Wormhole clients exchange them
 * through the mailbox once the key is confirmed (JSON dictionaries, one per phase):
 *
 * - `{"transit": {"abilities-v1": [...], "hints-v1": [...]}}`: how to reach each other;
 * - `{"offer": {"message": TEXT}}`, `{"offer": {"file": {"filename", "filesize"}}}`,
 *   `{"offer": {"directory": {"mode": "zipfile/deflated", "dirname", "zipsize", "numbytes",
 *   "numfiles"}}}`: what the sender has;
 * - `{"answer": {"message_ack": "ok"}}` / `{"answer": {"file_ack": "ok"}}`: the receiver
 *   takes it;
 * - `{"error": TEXT}`: either side gives up (a refusal, a full disk).
 *
 * A message may carry several of these keys; unknown keys are ignored, as the other clients
 * do. Between two sockit peers (both announce {@linkcode SOCKIT_APP_VERSION} in their
 * `app_versions`) the sender offers `{"offer": {"sockit": {"names", "numfiles", "numbytes",
 * "cipher"}}}` instead and then runs sockit's own transfer protocol (verified, resumable,
 * entry by entry) inside the transit connection; the receiver answers with `file_ack` as for
 * a file. This module parses and checks these shapes; nothing else in them is trusted: names
 * still go through the receiver's path rules.
 *
 * @module
 */

import { ProtocolError } from "../net/errors.ts";
import { quote } from "../log.ts";

/** The only directory mode the clients speak: one zip file. */
export const DIRECTORY_MODE = "zipfile/deflated";

/** Longest file or folder name accepted in an offer, in UTF-16 code units. */
export const MAX_OFFER_NAME_LENGTH = 4096;

/** Most top-level names a sockit offer may list. */
export const MAX_OFFER_NAMES = 10_000;

/** What sockit adds to its `app_versions`: the transfer protocol version and its ciphers. */
export interface SockitAppVersion {
  /** sockit's transfer protocol version spoken inside the transit connection. */
  transfer: number;
  /** Record ciphers it can use with another sockit, best first. */
  ciphers: string[];
}

/** What the other side offers. */
export type Offer =
  | { kind: "message"; message: string }
  | { kind: "file"; filename: string; filesize: number }
  | {
    kind: "directory";
    mode: string;
    dirname: string;
    zipsize: number;
    numbytes: number;
    numfiles: number;
  }
  | { kind: "sockit"; names: string[]; numfiles: number; numbytes: number; cipher: string };

/** One application message, split into the keys sockit understands. */
export interface TransferMessage {
  /** The other side's error text: it gave up. */
  error?: string;
  /** Its transit abilities and hints (checked by the transit layer). */
  transit?: { abilities: unknown[]; hints: unknown[] };
  /** Its offer. */
  offer?: Offer;
  /** Its answer: which acknowledgement it sent. */
  answer?: "message_ack" | "file_ack";
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function count(value: unknown, what: string): number {
  if (typeof value !== "number" || !Number.isSafeInteger(value) || value < 0) {
    throw new ProtocolError(`${what} is not a non-negative integer: ${quote(String(value))}`);
  }
  return value;
}

function name(value: unknown, what: string): string {
  if (typeof value !== "string" || value.length === 0 || value.length > MAX_OFFER_NAME_LENGTH) {
    throw new ProtocolError(`${what} is not a name of 1 to ${MAX_OFFER_NAME_LENGTH} characters`);
  }
  return value;
}

/**
 * Checks an `offer` value; a {@linkcode ProtocolError} says what is wrong with it.
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert/strict";
 * import { parseOffer } from "./offer.ts";
 * assert.deepEqual(parseOffer({ file: { filename: "a.txt", filesize: 3 } }), {
 *   kind: "file",
 *   filename: "a.txt",
 *   filesize: 3,
 * });
 * assert.throws(() => parseOffer({ file: { filename: "a", filesize: -1 } }));
 * ```
 */
export function parseOffer(value: unknown): Offer {
  if (!isObject(value)) throw new ProtocolError("the offer is not a dictionary");
  if ("message" in value) {
    if (typeof value.message !== "string") throw new ProtocolError("the text is not a string");
    return { kind: "message", message: value.message };
  }
  if (isObject(value.file)) {
    return {
      kind: "file",
      filename: name(value.file.filename, "the file name"),
      filesize: count(value.file.filesize, "the file size"),
    };
  }
  if (isObject(value.directory)) {
    const d = value.directory;
    if (d.mode !== DIRECTORY_MODE) {
      throw new ProtocolError(`unknown directory mode ${quote(String(d.mode))}`);
    }
    return {
      kind: "directory",
      mode: DIRECTORY_MODE,
      dirname: name(d.dirname, "the folder name"),
      zipsize: count(d.zipsize, "the zip size"),
      numbytes: count(d.numbytes, "the folder size"),
      numfiles: count(d.numfiles, "the file count"),
    };
  }
  if (isObject(value.sockit)) {
    const s = value.sockit;
    if (!Array.isArray(s.names) || s.names.length === 0 || s.names.length > MAX_OFFER_NAMES) {
      throw new ProtocolError(`the sockit offer needs 1 to ${MAX_OFFER_NAMES} names`);
    }
    if (typeof s.cipher !== "string" || s.cipher.length > 64) {
      throw new ProtocolError("the sockit offer names no cipher");
    }
    return {
      kind: "sockit",
      names: s.names.map((n, i) => name(n, `name ${i + 1} of the offer`)),
      numfiles: count(s.numfiles, "the file count"),
      numbytes: count(s.numbytes, "the total size"),
      cipher: s.cipher,
    };
  }
  throw new ProtocolError(`an offer of an unknown kind (${quote(Object.keys(value).join(","))})`);
}

/**
 * The `offer` value for `offer` (the inverse of {@linkcode parseOffer}).
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert/strict";
 * import { encodeOffer, parseOffer } from "./offer.ts";
 * const offer = { kind: "message" as const, message: "hi" };
 * assert.deepEqual(encodeOffer(offer), { message: "hi" });
 * assert.deepEqual(parseOffer(encodeOffer(offer)), offer);
 * ```
 */
export function encodeOffer(offer: Offer): Record<string, unknown> {
  switch (offer.kind) {
    case "message":
      return { message: offer.message };
    case "file":
      return { file: { filename: offer.filename, filesize: offer.filesize } };
    case "directory": {
      const { dirname, zipsize, numbytes, numfiles } = offer;
      return { directory: { mode: DIRECTORY_MODE, dirname, zipsize, numbytes, numfiles } };
    }
    case "sockit": {
      const { names, numfiles, numbytes, cipher } = offer;
      return { sockit: { names, numfiles, numbytes, cipher } };
    }
  }
}

/**
 * Splits one application message into the keys sockit acts on; a key with a bad value is a
 * {@linkcode ProtocolError}, unknown keys are ignored.
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert/strict";
 * import { parseTransferMessage } from "./offer.ts";
 * assert.deepEqual(parseTransferMessage({ answer: { file_ack: "ok" }, extra: 1 }), {
 *   answer: "file_ack",
 * });
 * assert.deepEqual(parseTransferMessage({ error: "no room" }), { error: "no room" });
 * ```
 */
export function parseTransferMessage(value: unknown): TransferMessage {
  if (!isObject(value)) throw new ProtocolError("a message that is not a dictionary");
  const out: TransferMessage = {};
  if ("error" in value) out.error = String(value.error);
  if ("transit" in value) {
    const t = value.transit;
    if (!isObject(t)) throw new ProtocolError("the transit message is not a dictionary");
    const abilities = t["abilities-v1"] ?? [];
    const hints = t["hints-v1"] ?? [];
    if (!Array.isArray(abilities) || !Array.isArray(hints)) {
      throw new ProtocolError("the transit abilities or hints are not lists");
    }
    out.transit = { abilities, hints };
  }
  if ("offer" in value) out.offer = parseOffer(value.offer);
  if ("answer" in value) {
    const a = value.answer;
    if (!isObject(a)) throw new ProtocolError("the answer is not a dictionary");
    if (a.message_ack === "ok") out.answer = "message_ack";
    else if (a.file_ack === "ok") out.answer = "file_ack";
    else throw new ProtocolError(`an answer sockit does not know: ${quote(JSON.stringify(a))}`);
  }
  return out;
}

/**
 * sockit's entry in the peer's `app_versions`, when the peer is sockit and its transfer
 * protocol version is one we speak; `undefined` for every other client.
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert/strict";
 * import { peerSockitVersion } from "./offer.ts";
 * assert.deepEqual(peerSockitVersion({ sockit: { transfer: 2, ciphers: ["secretbox"] } }, 2), {
 *   transfer: 2,
 *   ciphers: ["secretbox"],
 * });
 * assert.equal(peerSockitVersion({}, 2), undefined);
 * assert.equal(peerSockitVersion({ sockit: { transfer: 9, ciphers: [] } }, 2), undefined);
 * ```
 */
export function peerSockitVersion(
  appVersions: unknown,
  transferVersion: number,
): SockitAppVersion | undefined {
  if (!isObject(appVersions) || !isObject(appVersions.sockit)) return undefined;
  const { transfer, ciphers } = appVersions.sockit;
  if (transfer !== transferVersion || !Array.isArray(ciphers)) return undefined;
  return { transfer, ciphers: ciphers.filter((c): c is string => typeof c === "string") };
}
