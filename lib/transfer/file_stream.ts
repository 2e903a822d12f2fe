/**
 * Reading a file for the sender through a ring of reused chunk buffers: hashing the prefix a
 * receiver offers to resume from ({@linkcode hashPrefix}), and streaming the rest as Data
 * frames ({@linkcode streamFile}), where the disk read of one chunk, the socket write of
 * another and (on the worker thread) the hash of a third run at the same time.
 *
 * @module
 */

import { ControlFrame, encodeFrame, encodeFrameHeader, FRAME_HEADER_SIZE } from "../net/frame.ts";
import { writeAll, type Writer } from "../net/write_all.ts";
import type { ChunkHasher } from "./hasher.ts";
import { KEEPALIVE_INTERVAL_MS, TransferFrame } from "./protocol.ts";

/** Reads into `dst` until it is full or the file ends; resolves the bytes read. */
export async function readFileFull(file: Deno.FsFile, dst: Uint8Array): Promise<number> {
  let filled = 0;
  while (filled < dst.length) {
    const n = await file.read(dst.subarray(filled));
    if (n === null) break;
    filled += n;
  }
  return filled;
}

/** The ring and the connection a file is read through. */
export interface RingIo {
  /** Reused chunk buffers, each {@linkcode FRAME_HEADER_SIZE} plus a chunk long. */
  ring: Uint8Array[];
  /** Where frames go. */
  writer: Writer;
}

/**
 * Hashes the first `length` bytes of `file` into `hasher`, with a Ping to the receiver now and
 * then; false when the file is shorter.
 */
export async function hashPrefix(
  file: Deno.FsFile,
  hasher: ChunkHasher,
  options: RingIo & { length: number },
): Promise<boolean> {
  const { ring, writer } = options;
  const busy: Promise<void>[] = ring.map(() => Promise.resolve());
  let left = options.length;
  let i = 0;
  let lastPing = performance.now();
  try {
    while (left > 0) {
      const slot = i++ % ring.length;
      await busy[slot];
      const buf = ring[slot];
      const n = await readFileFull(file, buf.subarray(0, Math.min(buf.length, left)));
      if (n === 0) return false;
      if (performance.now() - lastPing > KEEPALIVE_INTERVAL_MS) {
        lastPing = performance.now();
        await writeAll(writer, encodeFrame(ControlFrame.Ping));
      }
      busy[slot] = hasher.update(buf.subarray(0, n));
      busy[slot].catch(() => {});
      left -= n;
    }
    await Promise.all(busy);
    return true;
  } finally {
    await Promise.allSettled(busy);
  }
}

/** What {@linkcode streamFile} sends and whom it tells. */
export interface StreamOptions extends RingIo {
  /** Bytes to send. */
  length: number;
  /** Bytes per Data frame. */
  chunkSize: number;
  /** Hashes the data, or null without Verify. */
  hasher: ChunkHasher | null;
  /** Called before each chunk; throws to stop (the receiver ended the session). */
  check: () => void;
  /** Called with each chunk's size once it is queued for the socket. */
  sent: (bytes: number) => void;
}

/**
 * Streams `options.length` bytes of `file` as Data frames through the ring. Writes stay in
 * order. Resolves how many bytes were missing (0 when the file had them all).
 */
export async function streamFile(file: Deno.FsFile, options: StreamOptions): Promise<number> {
  const { ring, writer, hasher } = options;
  const busy: Promise<unknown>[] = ring.map(() => Promise.resolve());
  let writing: Promise<void> = Promise.resolve();
  let left = options.length;
  let i = 0;
  try {
    while (left > 0) {
      // The receiver may end the session meanwhile (shutting down): stop at once.
      options.check();
      const slot = i++ % ring.length;
      await busy[slot];
      const buf = ring[slot];
      const want = Math.min(options.chunkSize, left);
      const n = await readFileFull(file, buf.subarray(FRAME_HEADER_SIZE, FRAME_HEADER_SIZE + want));
      if (n === 0) break;
      buf.set(encodeFrameHeader(TransferFrame.Data, n));
      const frame = buf.subarray(0, FRAME_HEADER_SIZE + n);
      writing = writing.then(() => writeAll(writer, frame));
      const hashed = hasher?.update(buf.subarray(FRAME_HEADER_SIZE, FRAME_HEADER_SIZE + n));
      busy[slot] = hashed ? Promise.all([writing, hashed]) : writing;
      // Awaited when the slot comes round again; until then a failure is not unhandled.
      busy[slot].catch(() => {});
      left -= n;
      options.sent(n);
      if (n < want) break;
    }
    await Promise.all(busy);
  } finally {
    await Promise.allSettled(busy);
  }
  return left;
}
