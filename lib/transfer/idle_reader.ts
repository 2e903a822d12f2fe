/**
 * A reader over a connection that closes it when a read waits longer than a deadline, so a
 * silent peer costs one connection for a bounded time, never a hung transfer. One timer per
 * connection checks the deadline; reads only record timestamps.
 *
 * @module
 */

import type { Reader } from "../net/buffered_reader.ts";

/**
 * Wraps `conn` for reading; while a read is pending for more than `timeoutMs`, `onIdle` runs
 * and the connection is closed (the pending read then fails). 0 disables the deadline.
 *
 * @example Usage
 * ```ts ignore
 * import { IdleReader } from "./idle_reader.ts";
 * using reader = new IdleReader(conn, 60_000, () => log.warn("peer went silent"));
 * const n = await reader.read(new Uint8Array(1024));
 * ```
 */
export class IdleReader implements Reader, Disposable {
  #conn: Deno.Conn;
  #timer: ReturnType<typeof setInterval> | undefined;
  #waitingSince = 0;
  #timedOut = false;
  #paused = 0;

  /** Starts watching `conn`. */
  constructor(conn: Deno.Conn, timeoutMs: number, onIdle: () => void = () => {}) {
    this.#conn = conn;
    if (timeoutMs > 0) {
      this.#timer = setInterval(() => {
        if (
          this.#paused === 0 && this.#waitingSince > 0 &&
          performance.now() - this.#waitingSince > timeoutMs
        ) {
          this.#timedOut = true;
          this.dispose();
          onIdle();
          try {
            conn.close();
          } catch {
            // Already closed.
          }
        }
      }, Math.max(10, Math.min(1000, timeoutMs / 4)));
      Deno.unrefTimer(this.#timer);
    }
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

  /** Stops the timer (the connection stays open). */
  dispose(): void {
    if (this.#timer !== undefined) clearInterval(this.#timer);
    this.#timer = undefined;
  }

  /** Stops the timer. */
  [Symbol.dispose](): void {
    this.dispose();
  }
}
