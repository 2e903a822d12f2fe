/**
 * The sender's side of the receiver's answers ({@linkcode AnswerQueue}): one pump reads them
 * in order, at all times.
 *
 * @module
 */

import type { BufferedReader } from "../net/buffered_reader.ts";
import { ProtocolError } from "../net/errors.ts";
import { ControlFrame, type Frame, readFrame } from "../net/frame.ts";
import type { IdleReader } from "./idle_reader.ts";
import { frameName, MAX_CONTROL_PAYLOAD } from "./protocol.ts";
import { receiverEnded, TransferRefusedError } from "./send_errors.ts";
import { takeBufferedFrame } from "./buffered_frames.ts";

/**
 * The receiver's answers, read by one pump in the order they arrive. The pump reads at all
 * times, so that an Error frame sent while nothing is due (the receiver is busy or shutting
 * down) is seen at once; the reply deadline only runs while answers are expected (a long file
 * stream with nothing expected does not count as an idle receiver). It never stops reading
 * while any answer is expected, so the receiver can always write its answers while this side
 * writes data. Pings are skipped.
 */
export class AnswerQueue {
  #reader: BufferedReader;
  #idle: IdleReader | undefined;
  #frames: (Frame | null)[] = [];
  #outstanding = 0;
  #error: unknown = null;
  #failed = false;
  #refusal: Uint8Array | null = null;
  #resumeIdle: (() => void) | null = null;
  #wakeTaker: (() => void) | null = null;
  /** Settles when the pump stopped: the receiver closed, sent an Error frame, or reading failed. */
  readonly done: Promise<void>;

  /** Starts the pump on `reader`; `idle` is paused while no answer is due. */
  constructor(reader: BufferedReader, idle?: IdleReader) {
    this.#reader = reader;
    this.#idle = idle;
    this.done = this.#pump();
  }

  /** One more answer is due (the request that asks for it was written). */
  expect(): void {
    this.#outstanding++;
    this.#resumeIdle?.();
    this.#resumeIdle = null;
  }

  #wake(): void {
    this.#wakeTaker?.();
    this.#wakeTaker = null;
  }

  async #pump(): Promise<void> {
    try {
      while (true) {
        if (this.#outstanding === 0) this.#resumeIdle = this.#idle?.pause() ?? null;
        let frame: Frame | null;
        try {
          frame = await readFrame(this.#reader, { maxPayload: MAX_CONTROL_PAYLOAD });
        } finally {
          this.#resumeIdle?.();
          this.#resumeIdle = null;
        }
        if (!this.#queue(frame)) break;
        // The answers that came in the same read (a batch's, for small files): no await each.
        let next: Frame | null;
        let more = true;
        while (more && (next = takeBufferedFrame(this.#reader, MAX_CONTROL_PAYLOAD)) !== null) {
          more = this.#queue(next);
        }
        this.#wake();
        if (!more) break;
      }
    } catch (error) {
      this.#error = error;
      this.#failed = true;
    }
    this.#wake();
  }

  /** Queues a frame read (or the end, null); false once nothing more is to be read. */
  #queue(frame: Frame | null): boolean {
    // Keepalives while the receiver hashes a partial file.
    if (frame?.type === ControlFrame.Ping) return true;
    if (frame?.type === ControlFrame.Error) this.#refusal = frame.payload;
    else if (frame !== null && this.#outstanding === 0) {
      throw new ProtocolError(
        `Cannot continue: got ${frameName(frame.type)} while no answer was due`,
      );
    }
    this.#frames.push(frame);
    if (frame === null || frame.type === ControlFrame.Error) return false;
    this.#outstanding--;
    return true;
  }

  /** The text of the Error frame the receiver ended the session with, if one arrived. */
  get refusal(): Uint8Array | null {
    return this.#refusal;
  }

  /** Throws when the receiver already ended the session (an Error frame, a bad frame). */
  throwIfEnded(): void {
    if (this.#refusal !== null) throw new TransferRefusedError(receiverEnded(this.#refusal));
    if (this.#failed) throw this.#error;
  }

  /** The next answer in order; null once the receiver closed the connection. */
  async take(): Promise<Frame | null> {
    while (this.#frames.length === 0) {
      if (this.#failed) throw this.#error;
      await new Promise<void>((resolve) => this.#wakeTaker = resolve);
    }
    return this.poll()!;
  }

  /**
   * The next answer when one is already queued, without waiting (undefined when none is): a
   * sender settling a batch of answers takes them without an await each. Null once the
   * receiver closed the connection.
   */
  poll(): Frame | null | undefined {
    if (this.#frames.length === 0) return undefined;
    const next = this.#frames[0];
    // The end (close or Error) stays, for every later taker.
    return next === null || next.type === ControlFrame.Error ? next : this.#frames.shift()!;
  }
}
