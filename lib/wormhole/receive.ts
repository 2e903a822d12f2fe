/**
 * Receiving with a code: the receiver's side of the Wormhole file-transfer application, once
 * the key is confirmed ({@linkcode Wormhole.confirm}).
 *
 * The receiver reads the sender's messages (transit hints, then the offer), checks the offer
 * against the same rules as direct mode (one safe name, `--max-size`, free space, an existing
 * name is kept unless `--overwrite` or `--rename`), asks the person (or takes `--yes`), then
 * answers with its own hints and `file_ack`, connects the transit stream, and closes the
 * mailbox. Then:
 *
 * - a sockit sender runs sockit's own protocol: {@linkcode receiveSession} as in direct mode
 *   (verified, resumable, entry by entry);
 * - a plain Wormhole file is written to `.NAME.sockit-partial`, synced, and given its name
 *   once all of its `filesize` bytes arrived; a folder's zip goes to a partial file too and is
 *   extracted with every path rule and a bound on its expanded size (`zip_reader.ts`). Either
 *   way the receiver sends `{"ack": "ok", "sha256": HEX}` of the bytes it received.
 *
 * A refusal (declined, name exists, too large) is sent as `{"error": TEXT}` and nothing is
 * written. A text goes to `onText`.
 *
 * @module
 */

import { createHash } from "node:crypto";
import { existsSync } from "node:fs";
import { ProtocolError } from "../net/errors.ts";
import { type Logger, quote } from "../log.ts";
import { formatBytes } from "../transfer/human.ts";
import { freeSpace, placeFile, removeQuietly, syncFolder } from "../transfer/partial_file.ts";
import type { ReceiveProgress } from "../transfer/progress.ts";
import { receiveSession, type ReceiveSummary } from "../transfer/receiver.ts";
import { findFreeName, partialName, splitSafePath } from "../transfer/safe_path.ts";
import { type Offer, parseTransferMessage } from "./offer.ts";
import { connectTransit } from "./peer_transit.ts";
import { RecordCipher, type RecordCipherName, type Transit } from "./transit.ts";
import type { Wormhole } from "./wormhole.ts";
import { extractZip } from "./zip_reader.ts";

/** Options of {@linkcode receiveThroughWormhole}. */
export interface CodeReceiveOptions {
  /** Absolute real path of the folder to store into. */
  dir: string;
  /** Makes our transit end (listening, with the relays chosen by the caller). */
  openTransit: () => Transit;
  /** Longest wait for the transit connection, in ms. */
  transitTimeoutMs: number;
  /**
   * Asks whether to take `offer` (a person on a terminal, or `--yes`); a throw refuses it with
   * the error's message.
   */
  accept: (offer: Offer) => Promise<boolean>;
  /** Takes a received text. */
  onText: (text: string) => void;
  /** Replace an existing file or folder of the same name. @default {false} */
  overwrite?: boolean;
  /** Store under `name (1).ext` when the name exists. @default {false} */
  rename?: boolean;
  /** fsync before acknowledging. @default {true} */
  sync?: boolean;
  /** Largest file (or folder, expanded) accepted; 0: no limit. @default {0} */
  maxFileSize?: number;
  /** Log lines. */
  logger?: Logger;
  /** Per-file progress. */
  progress?: ReceiveProgress;
  /** Ends the waits and the transfer. */
  signal?: AbortSignal;
}

/** How the receiving went. */
export interface CodeReceiveResult {
  /** What was offered. */
  offer: Offer;
  /** False when the offer was declined (nothing written). */
  accepted: boolean;
  /** Where a plain file or folder was stored (its final path). */
  storedAs?: string;
  /** The sockit session's summary. */
  summary?: ReceiveSummary;
  /** How the transit connection was made. */
  route?: string;
}

/** The sender gave up: its `error` message. */
export class SenderGaveUpError extends Error {
  /** `text` is the sender's error message (quoted in ours). */
  constructor(text: string) {
    super(`the sender gave up: ${quote(text)}`);
    this.name = "SenderGaveUpError";
  }
}

/** An offer refused before anything was written; its text was sent to the sender. */
export class OfferRefusedError extends Error {
  /** `message` says why (it is also what the sender hears). */
  constructor(message: string) {
    super(message);
    this.name = "OfferRefusedError";
  }
}

/** The one safe path component `name` must be (a file or folder name from the sender). */
function singleName(name: string): string {
  const parts = splitSafePath(name);
  if (parts.length !== 1) {
    throw new OfferRefusedError(`refusing ${quote(name)}: a name with folders in it`);
  }
  return parts[0];
}

/** The name a plain file or folder will get, or the refusal. */
async function plainTarget(
  offer: Offer & { kind: "file" | "directory" },
  options: CodeReceiveOptions,
): Promise<string> {
  const name = singleName(offer.kind === "file" ? offer.filename : offer.dirname);
  const size = offer.kind === "file" ? offer.filesize : offer.numbytes;
  const limit = options.maxFileSize ?? 0;
  if (limit > 0 && size > limit) {
    throw new OfferRefusedError(
      `refusing ${quote(name)}: ${formatBytes(size)} is over the limit of ${formatBytes(limit)}`,
    );
  }
  const free = await freeSpace(options.dir);
  const needed = offer.kind === "file" ? size : size + offer.zipsize;
  if (free !== null && needed > free) {
    throw new OfferRefusedError(
      `refusing ${quote(name)}: it needs ${formatBytes(needed)}, ${formatBytes(free)} free`,
    );
  }
  if (!existsSync(`${options.dir}/${name}`)) return name;
  if (options.rename) return await findFreeName(options.dir, name);
  if (options.overwrite && offer.kind === "file") return name;
  throw new OfferRefusedError(`refusing to overwrite existing ${quote(name)}`);
}

/** The cipher the sockit sender chose, if it is one we have. */
function sockitCipher(offer: Offer & { kind: "sockit" }): RecordCipherName {
  const known = Object.values(RecordCipher) as string[];
  if (!known.includes(offer.cipher)) {
    throw new OfferRefusedError(`the sender chose an unknown cipher ${quote(offer.cipher)}`);
  }
  return offer.cipher as RecordCipherName;
}

/**
 * Runs the receiver's side on the confirmed `wormhole`. A refusal is sent to the sender and
 * thrown as {@linkcode OfferRefusedError}; a declined offer resolves with `accepted: false`.
 */
export async function receiveThroughWormhole(
  wormhole: Wormhole,
  options: CodeReceiveOptions,
): Promise<CodeReceiveResult> {
  const { signal } = options;
  const peerHints: unknown[][] = [];
  let offer: Offer | undefined;
  while (offer === undefined) {
    const message = parseTransferMessage(await wormhole.receive({ signal }));
    if (message.error !== undefined) throw new SenderGaveUpError(message.error);
    if (message.transit) peerHints.push(message.transit.hints);
    if (message.offer) offer = message.offer;
  }
  if (offer.kind === "message") {
    options.onText(offer.message);
    await wormhole.send({ answer: { message_ack: "ok" } });
    await wormhole.close("happy");
    return { offer, accepted: true };
  }
  let name: string | undefined;
  let cipher: RecordCipherName = "secretbox";
  try {
    if (offer.kind === "sockit") cipher = sockitCipher(offer);
    else name = await plainTarget(offer, options);
    if (!(await options.accept(offer))) {
      await wormhole.send({ error: "transfer rejected" });
      await wormhole.close("happy");
      return { offer, accepted: false };
    }
  } catch (error) {
    // The sender hears why (a refusal, or no one to ask) instead of waiting for an answer.
    const text = error instanceof Error ? error.message : String(error);
    await wormhole.send({ error: text }).catch(() => {});
    await wormhole.close("happy");
    throw error;
  }
  await using transit = options.openTransit();
  for (const hints of peerHints) transit.addPeerHints(hints);
  await wormhole.send({ transit: transit.message() });
  await wormhole.send({ answer: { file_ack: "ok" } });
  const stream = await connectTransit(wormhole, transit, {
    timeoutMs: options.transitTimeoutMs,
    cipher,
    signal,
    peer: "sender",
  });
  await wormhole.close("happy");
  try {
    const route = stream.description;
    if (offer.kind === "sockit") {
      const summary = await receiveSession(stream, {
        dir: options.dir,
        overwrite: options.overwrite,
        rename: options.rename,
        sync: options.sync,
        maxFileSize: options.maxFileSize,
        logger: options.logger,
        progress: options.progress,
        signal,
      });
      return { offer, accepted: true, summary, route };
    }
    const storedAs = await receivePlain(stream, offer, name!, options);
    return { offer, accepted: true, storedAs, route };
  } finally {
    stream.close();
  }
}

/** Reads exactly `size` bytes of `stream` into `file`, hashing them; the SHA-256 in hex. */
async function copyExactly(
  stream: Deno.Conn,
  file: Deno.FsFile,
  size: number,
  options: { signal?: AbortSignal; progress?: (n: number) => void },
): Promise<string> {
  const hash = createHash("sha256");
  const buf = new Uint8Array(1 << 20);
  let got = 0;
  while (got < size) {
    options.signal?.throwIfAborted();
    const n = await stream.read(buf.subarray(0, Math.min(buf.length, size - got)));
    if (n === null) {
      throw new ProtocolError(`the sender stopped after ${got} of ${size} bytes`);
    }
    const chunk = buf.subarray(0, n);
    hash.update(chunk);
    for (let at = 0; at < n;) at += await file.write(chunk.subarray(at));
    got += n;
    options.progress?.(n);
  }
  return hash.digest("hex");
}

/** Stores a plain Wormhole file or folder as `name`; resolves its final path. */
async function receivePlain(
  stream: Deno.Conn & { sendRecord(data: Uint8Array): Promise<void> },
  offer: Offer & { kind: "file" | "directory" },
  name: string,
  options: CodeReceiveOptions,
): Promise<string> {
  const dir = options.dir;
  const size = offer.kind === "file" ? offer.filesize : offer.zipsize;
  const partial = `${dir}/${partialName(offer.kind === "file" ? name : `${name}.zip`)}`;
  removeQuietly(partial);
  const sync = options.sync ?? true;
  let digest: string;
  {
    using file = await Deno.open(partial, { write: true, createNew: true, mode: 0o600 });
    try {
      digest = await copyExactly(stream, file, size, { signal: options.signal });
      if (sync && offer.kind === "file") await file.sync();
    } catch (error) {
      removeQuietly(partial);
      throw error;
    }
  }
  let storedAs: string;
  try {
    if (offer.kind === "file") {
      const placed = await placeFile(partial, dir, {
        name,
        overwrite: options.overwrite ?? false,
        rename: options.rename ?? false,
      });
      storedAs = `${dir}/${placed}`;
    } else {
      const result = await extractZip(partial, dir, {
        name,
        maxBytes: offer.numbytes,
        maxEntries: Math.max(offer.numfiles, 1),
        sync,
      });
      storedAs = result.path;
    }
    if (sync) await syncFolder(dir);
  } finally {
    if (offer.kind === "directory") removeQuietly(partial);
  }
  const ack = JSON.stringify({ ack: "ok", sha256: digest });
  await stream.sendRecord(new TextEncoder().encode(ack));
  return storedAs;
}
