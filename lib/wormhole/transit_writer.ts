/**
 * The sending half of a transit connection: seals what is written into records and keeps a
 * short queue of sealed records in front of the socket.
 *
 * A write is cut into records of at most `recordPayloadBytes` and resolves once its records
 * are queued and the queue holds at most `maxQueuedBytes`, so sealing the next record overlaps
 * sending this one. Records smaller than `writeBytes` are sealed back to back into buffers of
 * about that size, one socket write each (64 KiB records for other clients would otherwise
 * cost a write each). A write smaller than `gatherBelowBytes` is copied into a record being
 * gathered instead; that record is sealed when the socket is free (at once if it already is),
 * so small writes made while the socket is busy go out as one record and a lone small write is
 * not delayed. Spent record buffers are reused. {@linkcode RecordWriter.close} still sends
 * what was queued, for at most `closeFlushMs`, before it closes the socket.
 *
 * @module
 */

import { DEADLINES } from "../net/deadline.ts";
import { writeAll } from "../net/write_all.ts";
import type { RecordSealer } from "./transit_cipher.ts";

/** Sizes for {@linkcode RecordWriter} (all required: `transit_records.ts` has the defaults). */
export interface RecordWriterOptions {
  /** Plaintext per record. */
  recordPayloadBytes: number;
  /** Bytes of a full record on the wire: the payload plus the cipher's overhead. */
  recordBytes: number;
  /** Sealed bytes waiting for the socket before a write waits. */
  maxQueuedBytes: number;
  /** Plaintext sealed into one buffer (as many whole records as fit, at least one). */
  writeBytes: number;
  /** Writes below this are gathered. */
  gatherBelowBytes: number;
  /** Longest wait in close() for the queue to drain, in ms. */
  closeFlushMs: number;
}

/** Spent record buffers kept for reuse (the queue holds about this many buffers). */
const SPARE_BUFFERS = 4;
/** Buffers one write() call seals at most before it returns (`Deno.Conn.write` semantics). */
const BUFFERS_PER_WRITE = 4;

/** The error for use after close(). */
export function closedError(): Error {
  return new Deno.errors.BadResource("transit connection is closed");
}

/**
 * Seals and sends records on `conn` with `sealer`. Used by `TransitConnection`.
 *
 * @example Two writes, then close: both reach the socket
 * ```ts
 * import assert from "node:assert/strict";
 * import { RecordSealer } from "./transit_cipher.ts";
 * import { RecordWriter } from "./transit_writer.ts";
 * const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
 * const dialed = Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port });
 * const accepted = await listener.accept();
 * const writer = new RecordWriter(await dialed, new RecordSealer(new Uint8Array(32)), {
 *   recordPayloadBytes: 1024, recordBytes: 1024 + 44, maxQueuedBytes: 4096,
 *   writeBytes: 2048, gatherBelowBytes: 512, closeFlushMs: 1000,
 * });
 * await writer.write(new Uint8Array(10));
 * await writer.write(new Uint8Array(2000));
 * writer.close();
 * let total = 0;
 * const buf = new Uint8Array(8192);
 * for (let n; (n = await accepted.read(buf)) !== null;) total += n;
 * assert.equal(total, 10 + 44 + 2000 + 2 * 44); // 10 bytes in one record, 2000 in two
 * accepted.close();
 * listener.close();
 * ```
 */
export class RecordWriter {
  #conn: Deno.Conn;
  #sealer: RecordSealer;
  #o: RecordWriterOptions;
  #queue: Uint8Array[] = [];
  #queuedBytes = 0;
  #gather: Uint8Array;
  #gathered = 0;
  #pumping = false;
  /** The running pump, for close() to wait on. */
  #flushing: Promise<void> = Promise.resolve();
  #error: unknown = null;
  #ended = false;
  #closed = false;
  #drained: (() => void)[] = [];
  #spare: Uint8Array[] = [];
  /** Plaintext per buffer: whole records, at least one. */
  #perBuffer: number;
  /** Bytes of a full buffer (its records sealed). */
  #bufferBytes: number;

  /** Writes to `conn`, sealing with `sealer`. */
  constructor(conn: Deno.Conn, sealer: RecordSealer, options: RecordWriterOptions) {
    this.#conn = conn;
    this.#sealer = sealer;
    this.#o = options;
    this.#gather = new Uint8Array(
      Math.min(options.recordPayloadBytes, options.gatherBelowBytes * 4),
    );
    const records = Math.max(1, Math.floor(options.writeBytes / options.recordPayloadBytes));
    this.#perBuffer = records * options.recordPayloadBytes;
    this.#bufferBytes = records * options.recordBytes;
  }

  /** Records sealed so far (queued or sent). */
  get sealed(): number {
    return this.#sealer.sealed;
  }

  #check(): void {
    if (this.#error !== null) throw this.#error;
    if (this.#closed) throw closedError();
    if (this.#ended) {
      throw new Deno.errors.BrokenPipe("transit connection: write after closeWrite()");
    }
  }

  /**
   * Seals `plaintext` (1 to `#perBuffer` bytes) as records of at most
   * `recordPayloadBytes`, back to back in one buffer: a spent one when it is big enough to be
   * worth one.
   */
  #seal(plaintext: Uint8Array): Uint8Array {
    const { recordBytes, recordPayloadBytes: payload, gatherBelowBytes } = this.#o;
    const records = Math.ceil(plaintext.length / payload);
    const size = plaintext.length + records * (recordBytes - payload);
    const buf = size < gatherBelowBytes || size > this.#bufferBytes
      ? new Uint8Array(size)
      : this.#spare.pop() ?? new Uint8Array(this.#bufferBytes);
    let at = 0;
    for (let off = 0; off < plaintext.length; off += payload) {
      const record = plaintext.subarray(off, Math.min(plaintext.length, off + payload));
      at += this.#sealer.seal(record, buf.subarray(at)).length;
    }
    return buf.subarray(0, at);
  }

  #enqueue(frame: Uint8Array): void {
    this.#queue.push(frame);
    this.#queuedBytes += frame.length;
  }

  #sealGathered(): void {
    if (this.#gathered === 0) return;
    this.#enqueue(this.#seal(this.#gather.subarray(0, this.#gathered)));
    this.#gathered = 0;
  }

  /** Starts the pump unless it runs. */
  #kick(): void {
    if (!this.#pumping) this.#flushing = this.#pump();
  }

  /** Writes queued records to the socket until nothing is left; one pump at a time. */
  async #pump(): Promise<void> {
    this.#pumping = true;
    try {
      while (true) {
        if (this.#queue.length === 0) this.#sealGathered();
        const frame = this.#queue.shift();
        if (frame === undefined) break;
        await writeAll(this.#conn, frame);
        this.#queuedBytes -= frame.length;
        if (frame.buffer.byteLength === this.#bufferBytes && this.#spare.length < SPARE_BUFFERS) {
          this.#spare.push(new Uint8Array(frame.buffer));
        }
        this.#wake();
      }
    } catch (error) {
      this.#error = error;
      this.#queue = [];
      this.#queuedBytes = 0;
      this.#gathered = 0;
    } finally {
      this.#pumping = false;
      this.#wake();
      if (this.#closed) this.#closeSocket();
    }
  }

  #wake(): void {
    const waiters = this.#drained;
    this.#drained = [];
    for (const w of waiters) w();
  }

  /** Resolves when the queue holds at most `limit` bytes (0: everything reached the socket). */
  async #drain(limit: number): Promise<void> {
    while (this.#queuedBytes > limit || (limit === 0 && (this.#pumping || this.#gathered > 0))) {
      if (this.#error !== null) throw this.#error;
      if (this.#closed) throw closedError();
      this.#kick();
      await new Promise<void>((resolve) => this.#drained.push(resolve));
    }
    if (this.#error !== null) throw this.#error;
  }

  /** Takes up to a few records' worth of `p`; resolves to the count (`Deno.Conn.write`). */
  async write(p: Uint8Array): Promise<number> {
    this.#check();
    if (p.length === 0) return 0;
    const { maxQueuedBytes } = this.#o;
    const perBuffer = this.#perBuffer;
    const n = Math.min(p.length, maxQueuedBytes, perBuffer * BUFFERS_PER_WRITE);
    if (n < this.#o.gatherBelowBytes && n <= this.#gather.length) {
      if (this.#gathered + n > this.#gather.length) this.#sealGathered();
      this.#gather.set(p.subarray(0, n), this.#gathered);
      this.#gathered += n;
    } else {
      this.#sealGathered();
      for (let off = 0; off < n; off += perBuffer) {
        this.#enqueue(this.#seal(p.subarray(off, Math.min(n, off + perBuffer))));
      }
    }
    this.#kick();
    await this.#drain(maxQueuedBytes);
    return n;
  }

  /** Sends `record` as one record after what was written before; resolves once it is sent. */
  async sendRecord(record: Uint8Array): Promise<void> {
    this.#check();
    this.#sealGathered();
    this.#enqueue(this.#sealer.seal(record));
    this.#kick();
    await this.#drain(0);
  }

  /** Resolves once everything written so far reached the socket. */
  flush(): Promise<void> {
    return this.#drain(0);
  }

  /** Sends the end-of-stream record (an empty one) after the rest; no write may follow. */
  async end(): Promise<void> {
    this.#check();
    this.#sealGathered();
    this.#enqueue(this.#sealer.seal(new Uint8Array(0)));
    this.#ended = true;
    this.#kick();
    await this.#drain(0);
  }

  #closeSocket(): void {
    try {
      this.#conn.close();
    } catch {
      // Already closed.
    }
  }

  /** Closes the socket once the queue is sent (at most `closeFlushMs` from now). */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    const unsent = this.#queue.length > 0 || this.#gathered > 0;
    if (this.#error === null && (unsent || this.#pumping)) {
      // The pump closes the socket when it is done; this bounds how long that may take.
      const cancel = DEADLINES.after(this.#o.closeFlushMs, () => this.#closeSocket());
      if (!this.#pumping) this.#flushing = this.#pump();
      void this.#flushing.finally(cancel);
    } else {
      this.#closeSocket();
    }
    this.#wake();
  }
}
