/**
 * A reader over a connection that closes it when a read waits longer than a deadline, so a
 * silent peer costs one connection for a bounded time, never a hung transfer. The deadline is
 * one task on a {@linkcode Deadlines} scheduler ({@linkcode DEADLINES} by default), not a
 * timer per connection; reads only record timestamps, and the task, when it comes due before
 * the wait is over, re-arms itself for the pending read's start plus the timeout.
 *
 * @module
 */

import type { Reader } from "../net/buffered_reader.ts";
import { DEADLINES, type Deadlines } from "../net/deadline.ts";

/** Options for {@linkcode IdleReader}. */
export interface IdleReaderOptions {
  /** Runs when the deadline passed, before the connection is closed. */
  onIdle?: () => void;
  /** Scheduler for the deadline. @default {DEADLINES} */
  deadlines?: Deadlines;
}

/**
 * Wraps `conn` for reading; while a read is pending for more than `timeoutMs`,
 * `options.onIdle` runs and the connection is closed (the pending read then fails). 0
 * disables the deadline.
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
 * silent.close();
 * listener.close();
 * ```
 */
export class IdleReader implements Reader, Disposable {
  #conn: Deno.Conn;
  #cancel: () => void = () => {};
  #waitingSince = 0;
  #timedOut = false;
  #paused = 0;

  /** Starts watching `conn`: reads that wait longer than `timeoutMs` close it (0: never). */
  constructor(conn: Deno.Conn, timeoutMs: number, options: IdleReaderOptions = {}) {
    this.#conn = conn;
    if (timeoutMs <= 0) return;
    const { onIdle, deadlines = DEADLINES } = options;
    this.#cancel = deadlines.schedule(performance.now() + timeoutMs, (now) => {
      // No read pending, or paused: nothing can be late before `timeoutMs` from now.
      if (this.#paused > 0 || this.#waitingSince === 0) return now + timeoutMs;
      const due = this.#waitingSince + timeoutMs;
      if (now < due) return due;
      this.#timedOut = true;
      this.#cancel = () => {};
      onIdle?.();
      try {
        conn.close();
      } catch {
        // Already closed.
      }
      return undefined;
    });
  }

  /** True once the deadline closed the connection. */
  get timedOut(): boolean {
    return this.#timedOut;
  }

  /**
   * Suspends the deadline while this side is busy (the peer is then rightly waiting for it)
   * until the returned function is called; a read pending then starts its wait afresh.
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

  /** Reads from the connection, timing the wait. */
  async read(p: Uint8Array): Promise<number | null> {
    this.#waitingSince = performance.now();
    try {
      return await this.#conn.read(p);
    } finally {
      this.#waitingSince = 0;
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
