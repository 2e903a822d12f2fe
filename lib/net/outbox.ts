/**
 * The queue of messages waiting to be written to one peer, and how they are taken off it:
 * one big message as it is, or several small ones copied together into one write of up to
 * {@linkcode WRITE_BATCH_SIZE} bytes. Messages are shared, never copied on the way in (a
 * relay queues one buffer to every recipient); written ones are forgotten even when the queue
 * never empties, so they can be collected.
 *
 * @module
 */

/** Largest single write assembled from queued messages: 256 KiB. */
export const WRITE_BATCH_SIZE = 256 * 1024;

/**
 * A queued message at least this big is written as it is rather than copied into a batch:
 * 16 KiB. Copying only small messages keeps syscalls few without a second copy of bulk data.
 */
export const DIRECT_WRITE_BYTES = 16 * 1024;

/**
 * A byte-counted FIFO of messages with batched takes.
 *
 * @example Small messages come off as one write
 * ```ts
 * import assert from "node:assert/strict";
 * import { Outbox } from "./outbox.ts";
 * const outbox = new Outbox();
 * outbox.push(new TextEncoder().encode("a\n"));
 * outbox.push(new TextEncoder().encode("b\n"));
 * assert.equal(outbox.bytes, 4);
 * assert.equal(new TextDecoder().decode(outbox.take()), "a\nb\n");
 * assert.equal(outbox.empty, true);
 * ```
 */
export class Outbox {
  #queue: Uint8Array[] = [];
  #head = 0;
  #bytes = 0;
  #batch: Uint8Array | undefined;

  /** Bytes queued and not yet taken. */
  get bytes(): number {
    return this.#bytes;
  }

  /** True when nothing is queued. */
  get empty(): boolean {
    return this.#head === this.#queue.length;
  }

  /** Queues `data` (not copied: it must not change afterwards). */
  push(data: Uint8Array): void {
    this.#queue.push(data);
    this.#bytes += data.length;
  }

  /** Drops everything queued. */
  clear(): void {
    this.#queue = [];
    this.#head = 0;
    this.#bytes = 0;
  }

  /**
   * Takes the next write: one big message, or several small ones copied together. The
   * returned bytes stay valid until the next call. Call only when not {@linkcode empty}.
   */
  take(): Uint8Array {
    const q = this.#queue;
    // Forget written messages even when the queue never empties (a reader that keeps just
    // behind), so they can be collected.
    if (this.#head >= 1024 && this.#head * 2 >= q.length) {
      this.#queue = q.slice(this.#head);
      this.#head = 0;
      return this.take();
    }
    const first = q[this.#head];
    if (first.length >= DIRECT_WRITE_BYTES || this.#head + 1 === q.length) {
      this.#head++;
      this.#taken(first.length);
      return first;
    }
    // Size the batch first: a small one gets a fresh exact-size array (an idle peer keeps no
    // big buffer), a big one reuses this outbox's WRITE_BATCH_SIZE buffer.
    let size = 0;
    let count = 0;
    for (let i = this.#head; i < q.length && size + q[i].length <= WRITE_BATCH_SIZE; i++) {
      size += q[i].length;
      count++;
    }
    const batch = size <= DIRECT_WRITE_BYTES
      ? new Uint8Array(size)
      : (this.#batch ??= new Uint8Array(WRITE_BATCH_SIZE));
    let used = 0;
    for (let i = 0; i < count; i++) {
      const next = q[this.#head++];
      batch.set(next, used);
      used += next.length;
    }
    this.#taken(used);
    return batch.subarray(0, used);
  }

  #taken(n: number): void {
    this.#bytes -= n;
    if (this.#head === this.#queue.length) {
      this.#queue = [];
      this.#head = 0;
    }
  }
}
