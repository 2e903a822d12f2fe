/**
 * A reader and writer over a connection that closes it when a read waits longer than a
 * deadline, or a write finds the peer taking no byte for longer than a deadline, so a silent
 * peer, or one that never reads what it is sent, costs one connection for a bounded time,
 * never a hung transfer. The deadline is one task on a {@linkcode Deadlines} scheduler
 * ({@linkcode DEADLINES} by default), not a timer per connection; reads and writes only record
 * timestamps, and the task, when it comes due before the wait is over, re-arms itself for the
 * pending read's (or write's) start plus its timeout.
 *
 * @module
 */

import type { Reader } from "../net/buffered_reader.ts";
import { DEADLINES, type Deadlines } from "../net/deadline.ts";
import type { Writer } from "../net/write_all.ts";

/** Options for {@linkcode IdleReader}. */
export interface IdleReaderOptions {
  /** Runs when a deadline passed, before the connection is closed. */
  onIdle?: () => void;
  /** Scheduler for the deadline. @default {DEADLINES} */
  deadlines?: Deadlines;
  /**
   * Longest one write through {@linkcode IdleReader.write} may wait for the peer to take a
   * byte, in ms; 0: writes are not timed. Pausing does not suspend it. @default {timeoutMs}
   */
  writeTimeoutMs?: number;
  /**
   * Aborting it fails the pending read, and every later one, with the signal's reason; the
   * connection stays open (a last frame can still be written). @default {none}
   */
  signal?: AbortSignal;
}

/** Which wait a deadline cut: a read (the peer sent nothing) or a write (it read nothing). */
export type IdleKind = "read" | "write";

/**
 * Wraps `conn` for reading and writing; while a read is pending for more than `timeoutMs`, or
 * a write for more than `options.writeTimeoutMs`, `options.onIdle` runs and the connection is
 * closed (the pending read or write then fails). 0 disables the read deadline.
 *
 * @example A peer that sends nothing is closed after the timeout
 * ```ts
 * import assert from "node:assert/strict";
 * import { IdleReader } from "./idle_reader.ts";
 * const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
 * const silent = await Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port });
 * const conn = await listener.accept();
 * let idle = false;
 * using reader = new IdleReader(conn, 20, { onIdle: () => (idle = true) });
 * await assert.rejects(reader.read(new Uint8Array(16)));
 * assert.ok(idle && reader.timedOut);
 * assert.equal(reader.expired, "read");
 * silent.close();
 * listener.close();
 * ```
 *
 * @example Aborting fails the pending read, and the connection stays usable for writing
 * ```ts
 * import assert from "node:assert/strict";
 * import { IdleReader } from "./idle_reader.ts";
 * const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
 * const peer = await Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port });
 * const conn = await listener.accept();
 * const stop = new AbortController();
 * using reader = new IdleReader(conn, 10_000, { signal: stop.signal });
 * const pending = reader.read(new Uint8Array(16));
 * stop.abort(new Error("shutting down"));
 * await assert.rejects(pending, /shutting down/);
 * assert.equal(await reader.write(new Uint8Array([1])), 1);
 * conn.close();
 * peer.close();
 * listener.close();
 * ```
 */
export class IdleReader implements Reader, Writer, Disposable {
  #conn: Deno.Conn;
  #cancel: () => void = () => {};
  #waitingSince = 0;
  #writingSince = 0;
  #writes = 0;
  #expired: IdleKind | null = null;
  #paused = 0;
  #signal: AbortSignal | undefined;
  #aborted: Promise<never> | undefined;

  /**
   * Starts watching `conn`: reads that wait longer than `timeoutMs` (0: never), and writes
   * that wait longer than `options.writeTimeoutMs`, close it.
   */
  constructor(conn: Deno.Conn, timeoutMs: number, options: IdleReaderOptions = {}) {
    this.#conn = conn;
    const { onIdle, deadlines = DEADLINES, signal } = options;
    this.#signal = signal;
    if (signal) {
      this.#aborted = new Promise<never>((_, reject) => {
        if (signal.aborted) reject(signal.reason);
        else signal.addEventListener("abort", () => reject(signal.reason), { once: true });
      });
      this.#aborted.catch(() => {});
    }
    const readMs = Math.max(0, timeoutMs);
    const writeMs = Math.max(0, options.writeTimeoutMs ?? readMs);
    if (readMs === 0 && writeMs === 0) return;
    const expire = (kind: IdleKind) => {
      this.#expired = kind;
      this.#cancel = () => {};
      onIdle?.();
      try {
        conn.close();
      } catch {
        // Already closed.
      }
      return undefined;
    };
    const first = Math.min(...[readMs, writeMs].filter((ms) => ms > 0));
    this.#cancel = deadlines.schedule(performance.now() + first, (now) => {
      let next = Infinity;
      if (readMs > 0) {
        // No read pending, or paused: no read can be late before `readMs` from now.
        if (this.#paused > 0 || this.#waitingSince === 0) next = now + readMs;
        else if (now >= this.#waitingSince + readMs) return expire("read");
        else next = this.#waitingSince + readMs;
      }
      if (writeMs > 0) {
        if (this.#writingSince === 0) next = Math.min(next, now + writeMs);
        else if (now >= this.#writingSince + writeMs) return expire("write");
        else next = Math.min(next, this.#writingSince + writeMs);
      }
      return next;
    });
  }

  /** True once a deadline closed the connection. */
  get timedOut(): boolean {
    return this.#expired !== null;
  }

  /** Which deadline closed the connection, or null while none did. */
  get expired(): IdleKind | null {
    return this.#expired;
  }

  /**
   * Suspends the read deadline while this side is busy (the peer is then rightly waiting for
   * it) until the returned function is called; a read pending then starts its wait afresh.
   */
  pause(): () => void {
    this.#paused++;
    let resumed = false;
    return () => {
      if (resumed) return;
      resumed = true;
      this.#paused--;
      if (this.#waitingSince > 0) this.#waitingSince = performance.now();
    };
  }

  /** Reads from the connection, timing the wait; fails at once after the signal aborted. */
  async read(p: Uint8Array): Promise<number | null> {
    this.#signal?.throwIfAborted();
    this.#waitingSince = performance.now();
    try {
      const read = this.#conn.read(p);
      return await (this.#aborted ? Promise.race([read, this.#aborted]) : read);
    } finally {
      this.#waitingSince = 0;
    }
  }

  /** Writes to the connection (part of `p`, as `Deno.Conn.write`), timing the wait. */
  async write(p: Uint8Array): Promise<number> {
    if (this.#writes++ === 0) this.#writingSince = performance.now();
    try {
      return await this.#conn.write(p);
    } finally {
      this.#writingSince = --this.#writes === 0 ? 0 : performance.now();
    }
  }

  /** Cancels the deadline (the connection stays open). */
  dispose(): void {
    this.#cancel();
    this.#cancel = () => {};
  }

  /** Cancels the deadline. */
  [Symbol.dispose](): void {
    this.dispose();
  }
}
