/**
 * The data of a streamed file, from the socket to its partial file: Data frames are read into
 * a ring of reused chunk buffers, so reading frame N+1 overlaps with writing frame N to disk
 * (on Deno's I/O thread) and hashing it (on the worker). With sync on, a background
 * fdatasync starts every {@linkcode SYNC_BEHIND_BYTES}.
 *
 * @module
 */

import { ProtocolError, UnexpectedEofError } from "../net/errors.ts";
import { readFrameHeader } from "../net/frame.ts";
import { writeAll } from "../net/write_all.ts";
import { quote } from "../log.ts";
import type { ChunkHasher } from "./hasher.ts";
import { formatBytes } from "./human.ts";
import {
  decodeTextPayload,
  frameName,
  MAX_DATA_PAYLOAD,
  type Offer,
  TransferFrame,
} from "./protocol.ts";
import { closedDuring, endDigest, readControlPayload, tooMuchData } from "./receive_frames.ts";
import type { ReceiveContext } from "./receive_context.ts";

/**
 * While receiving a file with sync on, start a background fdatasync every this many bytes
 * (64 MiB), so that the final fsync before the confirmation has little left to write.
 */
export const SYNC_BEHIND_BYTES = 64 * 1024 * 1024;

/** How a file's data ended. */
export interface DataOutcome {
  /** Data bytes read. */
  received: number;
  /** The SHA-256 of the sender's End, when it sent one. */
  digest?: Uint8Array;
  /** The sender's reason, when it sent Abort instead of End. */
  aborted?: string;
  /** The first write error, when writing failed (the rest of the data was drained). */
  writeError?: string;
}

/** Where {@linkcode receiveData} puts a file's data. */
export interface DataSink {
  /** The partial file, positioned where the data starts. */
  file: Deno.FsFile;
  /** Bytes the sender is to send. */
  expected: number;
  /** Hashes the data, or null without Verify. */
  hasher: ChunkHasher | null;
  /** The file's key for progress events. */
  key: string;
}

/**
 * Reads Data frames into `sink.file` until End or Abort. A write error is remembered and the
 * rest of the data drained, so the session can answer Failed and go on.
 */
export async function receiveData(
  ctx: ReceiveContext,
  offer: Offer,
  sink: DataSink,
): Promise<DataOutcome> {
  const { file, expected, hasher, key } = sink;
  const { reader, ring } = ctx;
  const busy: Promise<unknown>[] = ring.map(() => Promise.resolve());
  let slotIndex = 0;
  let received = 0;
  let writeError: string | undefined;
  // Disk writes run one after another; a failure is remembered and later chunks skipped.
  let writing: Promise<void> = Promise.resolve();
  let unsynced = 0;
  let flushing: Promise<void> | null = null;
  const drain = async () => {
    await Promise.all(busy);
    await writing;
  };
  try {
    while (true) {
      const header = await readFrameHeader(reader, { maxPayload: MAX_DATA_PAYLOAD });
      if (header === null) throw closedDuring(offer, formatBytes(received));
      if (header.type === TransferFrame.Data) {
        if (received + header.length > expected) throw tooMuchData(offer);
        const slot = slotIndex++ % ring.length;
        await busy[slot];
        const buf = ring[slot].subarray(0, header.length);
        try {
          await reader.readFull(buf);
        } catch (error) {
          if (!(error instanceof UnexpectedEofError)) throw error;
          throw new UnexpectedEofError(
            `Sender closed the connection after ${formatBytes(received)} of ${
              quote(offer.path)
            } (in the middle of a frame)`,
            { cause: error },
          );
        }
        received += header.length;
        ctx.summary.bytes += header.length;
        ctx.progress?.progress(key, header.length);
        writing = writing.then(async () => {
          if (writeError !== undefined) return;
          try {
            await writeAll(file, buf);
          } catch (error) {
            writeError = error instanceof Error ? error.message : String(error);
          }
        });
        unsynced += header.length;
        if (ctx.settings.sync && unsynced >= SYNC_BEHIND_BYTES && flushing === null) {
          // Flush-behind: start writing back what is on disk so far, so the final
          // fsync finds little left to do. Errors surface in the final fsync.
          unsynced = 0;
          flushing = writing.then(() => file.syncData()).catch(() => {}).finally(() => {
            flushing = null;
          });
        }
        // The disk write (on Deno's I/O thread) and the hash (on the worker) read `buf`
        // while this thread reads the next frame into another slot.
        const hashed = hasher?.update(buf);
        busy[slot] = hashed ? Promise.all([writing, hashed]) : writing;
        busy[slot].catch(() => {});
        continue;
      }
      const payload = await readControlPayload(reader, header);
      if (header.type === TransferFrame.End) {
        const digest = endDigest(offer, payload);
        await drain();
        return { received, digest: digest ?? undefined, writeError };
      }
      if (header.type === TransferFrame.Abort) {
        await drain();
        return { received, aborted: decodeTextPayload(payload) };
      }
      throw new ProtocolError(
        `Cannot receive ${quote(offer.path)}: got ${frameName(header.type)} among its data`,
      );
    }
  } finally {
    await Promise.allSettled(busy);
    await writing;
    await flushing;
  }
}
