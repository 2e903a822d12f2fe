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
import { ProtocolError } from "../net/errors.ts";
import { writeAll } from "../net/write_all.ts";
import { type Logger, quote } from "../log.ts";
import { formatBytes } from "../transfer/human.ts";
import {
  freeSpace,
  lstatSyncOrNull,
  placeFile,
  removeQuietly,
  syncFolder,
} from "../transfer/partial_file.ts";
import type { ReceiveProgress } from "../transfer/progress.ts";
import { receiveSession, type ReceiveSummary, SYNC_BEHIND_BYTES } from "../transfer/receiver.ts";
import { findFreeName, partialName, splitSafePath } from "../transfer/safe_path.ts";
import { type Offer, parseTransferMessage } from "./offer.ts";
import { connectTransit, PeerGaveUpError } from "./peer_transit.ts";
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

/** An offer refused before anything was written; its text was sent to the sender. */
export class OfferRefusedError extends Error {
  /** `message` says why (it is also what the sender hears). */
  constructor(message: string) {
    super(message);
    this.name = "OfferRefusedError";
  }
}

/**
 * Bytes a zip may spend per entry beyond the entry's data (local and central headers with a
 * long name, zip64 and time fields, a data descriptor), when checking an offer's `zipsize`.
 */
export const ZIP_ENTRY_OVERHEAD_BYTES = 1024;

/** Most entries a received zip may hold beyond the offer's `numfiles` (folder entries). */
export const ZIP_EXTRA_ENTRIES = 100_000;

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
  if (offer.kind === "directory") {
    // A stored zip is at most its contents plus headers: anything bigger is not what it says.
    const most = offer.numbytes + (offer.numfiles + 1) * ZIP_ENTRY_OVERHEAD_BYTES + 65_536;
    if (offer.zipsize > most) {
      throw new OfferRefusedError(
        `refusing ${quote(name)}: a ${formatBytes(offer.zipsize)} zip for ` +
          `${formatBytes(offer.numbytes)} of files`,
      );
    }
  }
  // lstat: a dangling link under the name counts as taken, as it will when placing.
  const existing = lstatSyncOrNull(`${options.dir}/${name}`);
  if (existing === null) return name;
  if (options.rename) return await findFreeName(options.dir, name);
  if (options.overwrite && offer.kind === "file" && existing.isFile) return name;
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
    if (message.error !== undefined) throw new PeerGaveUpError(message.error, "sender");
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
    // An abort (Ctrl-C) ends a read that waits on a stalled sender, too.
    const abort = () => stream.close();
    signal?.addEventListener("abort", abort, { once: true });
    try {
      const storedAs = await receivePlain(stream, offer, name!, options);
      return { offer, accepted: true, storedAs, route };
    } finally {
      signal?.removeEventListener("abort", abort);
    }
  } finally {
    stream.close();
  }
}

/** Bytes read from the stream per hash update and file write (two such buffers alternate). */
const COPY_CHUNK_BYTES = 1024 * 1024;

/**
 * Reads exactly `size` bytes of `stream` into `file`, hashing them; the SHA-256 in hex. The
 * file write of one chunk overlaps reading the next; with `syncBehind` a background fdatasync
 * starts every {@linkcode SYNC_BEHIND_BYTES}, so that the final fsync has little left to write.
 */
async function copyExactly(
  stream: Deno.Conn,
  file: Deno.FsFile,
  size: number,
  options: { signal?: AbortSignal; progress?: (n: number) => void; syncBehind?: boolean },
): Promise<string> {
  const hash = createHash("sha256");
  const bufs = [new Uint8Array(COPY_CHUNK_BYTES), new Uint8Array(COPY_CHUNK_BYTES)];
  // One write at a time, in order; the buffer being written is not the one being read into.
  let writing: Promise<void> = Promise.resolve();
  let flushing: Promise<void> | null = null;
  let unsynced = 0;
  let got = 0;
  try {
    for (let i = 0; got < size; i++) {
      options.signal?.throwIfAborted();
      const buf = bufs[i % 2];
      // A whole buffer per hash and write: a read gives one record (16 KiB from Python).
      const want = Math.min(buf.length, size - got);
      let n = 0;
      while (n < want) {
        const r = await stream.read(buf.subarray(n, want));
        if (r === null) {
          throw new ProtocolError(`the sender stopped after ${got + n} of ${size} bytes`);
        }
        n += r;
      }
      const chunk = buf.subarray(0, n);
      hash.update(chunk);
      await writing;
      if (options.syncBehind && unsynced >= SYNC_BEHIND_BYTES && flushing === null) {
        unsynced = 0;
        // Errors surface in the final fsync.
        flushing = file.syncData().catch(() => {}).finally(() => flushing = null);
      }
      writing = writeAll(file, chunk);
      writing.catch(() => {}); // awaited above, next round or after the loop
      unsynced += n;
      got += n;
      options.progress?.(n);
    }
    await writing;
  } finally {
    await writing.catch(() => {});
    await flushing;
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
      digest = await copyExactly(stream, file, size, {
        signal: options.signal,
        syncBehind: sync && offer.kind === "file",
      });
      if (sync && offer.kind === "file") await file.sync();
    } catch (error) {
      removeQuietly(partial);
      throw error;
    }
  }
  let storedAs: string;
  let placed = false;
  try {
    if (offer.kind === "file") {
      const placedName = await placeFile(partial, dir, {
        name,
        overwrite: options.overwrite ?? false,
        rename: options.rename ?? false,
      });
      storedAs = `${dir}/${placedName}`;
    } else {
      const result = await extractZip(partial, dir, {
        name,
        maxBytes: offer.numbytes,
        // numfiles counts files; other clients' zips may add an entry per folder.
        maxEntries: offer.numfiles + ZIP_EXTRA_ENTRIES,
        sync,
      });
      storedAs = result.path;
    }
    placed = true;
    if (sync) await syncFolder(dir);
  } finally {
    // A placed file's partial name is gone; anything else left under it goes now.
    if (offer.kind === "directory" || !placed) removeQuietly(partial);
  }
  const ack = JSON.stringify({ ack: "ok", sha256: digest });
  await stream.sendRecord(new TextEncoder().encode(ack));
  return storedAs;
}
