/**
 * One periodic timer for all of a server's deadlines (handshakes, dials, idle and half-open
 * tunnels), instead of a timer per connection: a timer per connection costs memory on every
 * idle tunnel and work on every short session. The timer runs only while something is
 * watched, so a stopped server leaves none behind.
 *
 * Deadlines are checked every `tickMs`, so they fire up to one tick late.
 *
 * @module
 */

import { TimeoutError } from "../net/errors.ts";

/** Something the sweeper watches: `expired(now)` true means `expire()` is called (once). */
export interface Watched {
  /** Whether the deadline passed at `now` (a `performance.now()` reading). */
  expired(now: number): boolean;
  /** Called once, when `expired` first returns true; the entry is then dropped. */
  expire(): void;
}

/** Default interval between checks, in ms. */
export const SWEEP_TICK_MS = 100;

/**
 * A shared deadline checker.
 *
 * @example Close a connection that stays silent for a second
 * ```ts ignore
 * import { Sweeper } from "./sweeper.ts";
 * const sweeper = new Sweeper();
 * const conn = await Deno.connect({ hostname: "127.0.0.1", port: 8080 });
 * const stop = sweeper.after(1000, () => conn.close());
 * await conn.read(new Uint8Array(1));
 * stop();
 * ```
 */
export class Sweeper {
  #entries = new Set<Watched>();
  #timer: ReturnType<typeof setInterval> | undefined;
  #tickMs: number;

  /** Creates a sweeper that checks every `tickMs`. */
  constructor(tickMs: number = SWEEP_TICK_MS) {
    this.#tickMs = tickMs;
  }

  /** Entries being watched. */
  get size(): number {
    return this.#entries.size;
  }

  /** Watches `entry` until it expires or the returned function is called. */
  watch(entry: Watched): () => void {
    this.#entries.add(entry);
    if (this.#timer === undefined) {
      this.#timer = setInterval(() => this.#sweep(), this.#tickMs);
    }
    return () => this.#remove(entry);
  }

  /** Calls `onExpire` once `ms` have passed, unless the returned function is called first. */
  after(ms: number, onExpire: () => void): () => void {
    const deadline = performance.now() + ms;
    return this.watch({ expired: (now) => now >= deadline, expire: onExpire });
  }

  /**
   * Resolves like `promise`, or rejects with {@linkcode TimeoutError} ("Timed out after N ms
   * waiting for `options.what`") once `ms` passed; `options.onTimeout` runs then (to close what
   * is pending).
   */
  deadline<T>(
    promise: Promise<T>,
    ms: number,
    options: { what: string; onTimeout?: () => void },
  ): Promise<T> {
    const { what, onTimeout } = options;
    let stop = () => {};
    const timeout = new Promise<never>((_, reject) => {
      stop = this.after(ms, () => {
        onTimeout?.();
        reject(new TimeoutError(`Timed out after ${ms} ms waiting for ${what}`));
      });
    });
    return Promise.race([promise, timeout]).finally(stop);
  }

  /** Stops watching everything (without expiring anything). */
  clear(): void {
    this.#entries.clear();
    this.#stopTimer();
  }

  #remove(entry: Watched): void {
    this.#entries.delete(entry);
    if (this.#entries.size === 0) this.#stopTimer();
  }

  #stopTimer(): void {
    clearInterval(this.#timer);
    this.#timer = undefined;
  }

  #sweep(): void {
    const now = performance.now();
    for (const entry of this.#entries) {
      if (!entry.expired(now)) continue;
      this.#remove(entry);
      try {
        entry.expire();
      } catch {
        // An expiry action (closing a socket) failing must not stop the sweep.
      }
    }
  }
}
