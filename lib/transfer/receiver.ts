/**
 * The receiving side of a transfer session. It trusts nothing it is sent: every name goes
 * through `safe_path.ts`, every length is bounded before allocation, and a broken or hostile
 * sender costs one connection (an Error frame and a log line), never a file outside the
 * folder or a crash.
 *
 * A file is written to `.NAME.sockit-partial` in its final folder, never under its final
 * name. After the sender's End the receiver checks the size and SHA-256, syncs the data
 * (unless `sync: false`), sets mode and mtime, moves the partial file to its final name
 * (a hard link that cannot clobber, or an atomic rename with `overwrite`), syncs the folder,
 * and only then confirms. A hash mismatch deletes the partial file and the final name is never
 * created. An interrupted transfer leaves the partial file for a resume: the next offer of
 * the same name is answered with its length and the SHA-256 of its bytes.
 *
 * This module is the session loop and its summary; each entry goes to its handler:
 * `offer_policy.ts` decides on every file offer (`vetOffer`), `streamed_file.ts` and
 * `data_ring.ts` receive streamed files, `pipelined_file.ts` and `batch.ts` pipelined ones
 * (protocol v2: read whole, written with synchronous calls, synced, placed and answered a
 * batch at a time), `already_there.ts` compares a file offered where one of its size is,
 * `folder_link.ts` makes folders and links, `partial_file.ts` holds the partial-file I/O.
 *
 * Deadlines hold in every state: a sender gets {@linkcode RECEIVE_DEFAULTS.handshakeTimeoutMs}
 * for its hello, then may stay silent, or leave the receiver's answers unread, for at most
 * {@linkcode RECEIVE_DEFAULTS.idleTimeoutMs}. A connection counts against the caller's limit
 * of senders (`admit`) only after its hello; when none is free it hears "receiver busy".
 *
 * @module
 */

import { BufferedReader } from "../net/buffered_reader.ts";
import { ProtocolError, UnexpectedEofError } from "../net/errors.ts";
import { ControlFrame, encodeFrame, encodeHello, readFrame, readHello } from "../net/frame.ts";
import { formatAddress } from "../net/address.ts";
import { closeAfterLastWrite } from "../net/linger.ts";
import { withTimeout } from "../net/deadline.ts";
import { writeAll } from "../net/write_all.ts";
import { withDefaults } from "../defaults.ts";
import { printable, quote } from "../log.ts";
import { formatBytes } from "./human.ts";
import { IdleReader } from "./idle_reader.ts";
import {
  decodeOffer,
  encodeText,
  EntryKind,
  frameName,
  MAX_CONTROL_PAYLOAD,
  MAX_RECEIVER_BATCH,
  type Offer,
  ReceiverError,
  TRANSFER_PROTOCOL,
  TRANSFER_VERSION,
  TransferFrame,
} from "./protocol.ts";
import { RECEIVE_DEFAULTS, type ReceiveOptions, type ReceiveSummary } from "./receive_options.ts";
import { ReceiveContext } from "./receive_context.ts";
import { Batch } from "./batch.ts";
import { PipelinedFiles } from "./pipelined_file.ts";
import { receiveStreamedFile } from "./streamed_file.ts";
import { receiveFolderOrLink } from "./folder_link.ts";
import type { PipelinedContent } from "./receive_frames.ts";
import { takeBufferedOffer } from "./buffered_frames.ts";
import { loadExistsCheck } from "./safe_path.ts";

export { RECEIVE_DEFAULTS } from "./receive_options.ts";
export type { ReceiveOptions, ReceiveSummary } from "./receive_options.ts";
export { FREE_SPACE_CHECK_MIN_BYTES } from "./offer_policy.ts";
export { freeSpace } from "./partial_file.ts";
export { SYNC_REOPEN_CONCURRENCY } from "./batch.ts";
export { SYNC_BEHIND_BYTES } from "./data_ring.ts";

/**
 * One sender's connection, seen from the receiver: reads its entries in order and hands each
 * to its handler (pipelined file, streamed file, folder or link), holding the pipelined
 * answers in the batch.
 */
class Receiver {
  readonly ctx: ReceiveContext;
  #batch: Batch;
  #pipelined: PipelinedFiles;

  constructor(ctx: ReceiveContext) {
    this.ctx = ctx;
    this.#batch = new Batch(ctx);
    this.#pipelined = new PipelinedFiles(ctx, this.#batch);
  }

  /** Drops an unanswered batch (never confirmed) and stops the hash worker. */
  async close(): Promise<void> {
    this.#batch.close();
    await this.ctx.close();
  }

  async run(): Promise<void> {
    try {
      await this.#run();
    } finally {
      // Its answers go out before anything else (an Error frame) is written.
      await this.#batch.settled();
    }
  }

  async #run(): Promise<void> {
    const { ctx } = this;
    while (true) {
      if (this.#batch.size >= MAX_RECEIVER_BATCH) await this.#batch.startCommit();
      // Entries already buffered are taken without an await per frame (a tree of small files
      // arrives tens of entries per read).
      const buffered = takeBufferedOffer(ctx.reader, this.#pipelined.buffer);
      if (buffered !== null) {
        await this.#offer(buffered.offer, buffered.content);
        continue;
      }
      const frame = await readFrame(ctx.reader, { maxPayload: MAX_CONTROL_PAYLOAD });
      if (frame === null) {
        throw new UnexpectedEofError("Sender closed the connection without Bye");
      }
      if (frame.type === ControlFrame.Bye) {
        await this.#batch.flush();
        ctx.summary.complete = true;
        await ctx.send(ControlFrame.Bye);
        return;
      }
      if (frame.type === ControlFrame.Error) {
        throw new ProtocolError(`Sender ended the session: ${quote(frame.payload)}`);
      }
      if (frame.type === TransferFrame.Flush) {
        await this.#batch.startCommit();
        continue;
      }
      if (frame.type !== TransferFrame.Offer) {
        throw new ProtocolError(
          `Cannot continue: got ${frameName(frame.type)} instead of an Offer`,
        );
      }
      await this.#offer(decodeOffer(frame.payload));
    }
  }

  /** Hands an offer to its handler; a pipelined file's `content` may have come with it. */
  async #offer(offer: Offer, content?: PipelinedContent): Promise<void> {
    const { ctx } = this;
    ctx.summary.entries++;
    if (offer.pipelined && offer.kind !== EntryKind.File) {
      await this.#folderOrLink(offer);
    } else if (offer.pipelined) {
      await this.#pipelined.receive(offer, content);
    } else {
      // Not pipelined: answered at once, after every held answer.
      await this.#batch.flush();
      if (offer.kind === EntryKind.File) await receiveStreamedFile(ctx, offer);
      else {
        await this.#folderOrLink(offer);
        await this.#batch.flush();
      }
    }
  }

  async #folderOrLink(offer: Offer): Promise<void> {
    const answer = await receiveFolderOrLink(this.ctx, offer);
    this.#batch.answer(answer.type, answer.payload);
  }
}

/**
 * Runs one receiving session on `conn` and resolves what happened; never throws for anything
 * the sender did (a protocol violation is answered with an Error frame, logged, and ends the
 * session). The hello must arrive within `options.handshakeTimeoutMs`; then `options.admit`
 * decides whether the sender takes a place ("receiver busy" otherwise). After an Error frame
 * the connection is half-closed and the sender's remaining bytes drained briefly, so the
 * message is not lost to a reset. The caller closes the connection.
 *
 * @example Usage
 * ```ts ignore
 * import { receiveSession } from "./receiver.ts";
 * const listener = Deno.listen({ hostname: "127.0.0.1", port: 7071 });
 * const conn = await listener.accept();
 * const summary = await receiveSession(conn, { dir: await Deno.realPath(".") });
 * conn.close();
 * ```
 */
export async function receiveSession(
  conn: Deno.Conn,
  options: ReceiveOptions,
): Promise<ReceiveSummary> {
  const settings = withDefaults(RECEIVE_DEFAULTS, options);
  const peer = formatAddress(conn.remoteAddr as Deno.NetAddr);
  const idleMs = settings.idleTimeoutMs;
  const helloMs = settings.handshakeTimeoutMs;
  const idle = new IdleReader(conn, idleMs, { signal: options.signal });
  const reader = new BufferedReader(idle);
  // Writes go through the deadline too: a sender that reads nothing is cut like a silent one.
  const receiver = new Receiver(
    new ReceiveContext({ reader, out: idle, idle, peer }, settings),
  );
  const log = options.logger;
  let release: (() => void) | null = null;
  let linger = false;
  try {
    if ("setNoDelay" in conn) (conn as Deno.TcpConn).setNoDelay(true);
    await writeAll(idle, encodeHello(TRANSFER_PROTOCOL, TRANSFER_VERSION));
    const hello = readHello(reader, { protocol: TRANSFER_PROTOCOL, version: TRANSFER_VERSION });
    await (helloMs > 0
      ? withTimeout(hello, helloMs, { what: "the sender's hello", onTimeout: () => conn.close() })
      : hello);
    release = options.admit ? options.admit() : () => {};
    if (release === null) throw new SenderRefused(ReceiverError.Busy);
    receiver.ctx.summary.started = true;
    await loadExistsCheck();
    log?.debug(`sender ${peer} connected`);
    await receiver.run();
  } catch (error) {
    const s = receiver.ctx.summary;
    let message = error instanceof Error ? error.message : String(error);
    s.cut = options.signal?.aborted === true && !(error instanceof SenderRefused);
    if (s.cut) message = ReceiverError.Shutdown;
    else if (idle.expired === "read") message = `Sender sent nothing for ${idleMs} ms`;
    else if (idle.expired === "write") message = `Sender read none of its answers for ${idleMs} ms`;
    s.error = message;
    if (error instanceof SenderRefused) log?.warn(`refused sender ${peer}: ${message}`);
    else if (!s.cut) log?.error(`session with ${peer} ended: ${printable(message)}`);
    if (!idle.timedOut) {
      try {
        await writeAll(idle, encodeFrame(ControlFrame.Error, encodeText(message)));
        linger = true;
      } catch {
        // The sender is gone.
      }
    }
  } finally {
    idle.dispose();
    await receiver.close();
    release?.();
  }
  const s = receiver.ctx.summary;
  s.ok = s.complete && s.confirmed === s.entries;
  if (s.started) {
    const counts = `${s.confirmed}/${s.entries} entries stored, ${formatBytes(s.bytes)} received${
      s.rejected ? `, ${s.rejected} rejected` : ""
    }${s.failed ? `, ${s.failed} failed` : ""}`;
    if (s.cut) {
      log?.info(`cut the session with ${peer} to shut down: ${counts}; partial files kept`);
    } else log?.info(`sender ${peer} ${s.complete ? "finished" : "left early"}: ${counts}`);
  }
  if (linger) await closeAfterLastWrite(conn);
  return s;
}

/** The sender was refused after its hello (no place free). */
class SenderRefused extends Error {
  constructor(message: string) {
    super(message);
    this.name = "SenderRefused";
  }
}
