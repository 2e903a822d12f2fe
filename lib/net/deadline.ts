/**
 * The one deadline mechanism of sockit. Every timed wait on the network (a handshake, a dial,
 * an idle or half-open connection, a stalled write, a heartbeat) registers with a
 * {@linkcode Deadlines} scheduler instead of keeping a timer of its own.
 *
 * A scheduler holds its tasks in a min-heap ordered by due time and keeps **one** timer, set
 * for the earliest task. A task is a function called when it is due; it returns the time it
 * wants to be called next, or `undefined` to end. That makes deadlines that move cheap: a
 * connection records `lastReadAt` on every read and nothing else; when its idle task comes due
 * it sees the read and returns `lastReadAt + idleMs`. Cancelled tasks are dropped lazily (and
 * the heap is compacted when most of it is dead), so starting and cancelling a deadline per
 * request costs a heap insertion, not a timer.
 *
 * {@linkcode DEADLINES} is the process-wide scheduler; a server may own one (socks5 does, so
 * stopping it cancels all of its deadlines at once). {@linkcode withTimeout} and
 * {@linkcode delay} run on the shared one. While nothing is scheduled no timer exists, so a
 * stopped server leaves none behind.
 *
 * @module
 */

import { TimeoutError } from "./errors.ts";

/**
 * A scheduled task: called with `performance.now()` when due; returns when to be called
 * next (a `performance.now()` time), or `undefined` when it is done.
 */
export type DeadlineTask = (now: number) => number | undefined;

/** Something watched by polling: `expired(now)` true means `expire()` is called, once. */
export interface Watched {
  /** Whether the deadline passed at `now` (a `performance.now()` reading). */
  expired(now: number): boolean;
  /** Called once, when `expired` first returns true; the entry is then dropped. */
  expire(): void;
}

/** Options for {@linkcode Deadlines.watch}. */
export interface WatchOptions {
  /** How often `expired` is asked, in ms. @default {100} */
  everyMs?: number;
}

/** Options for {@linkcode Deadlines.deadline} and {@linkcode withTimeout}. */
export interface TimeoutOptions {
  /** What is awaited, for the error message ("Timed out after 500 ms waiting for WHAT"). */
  what?: string;
  /** Runs when the time is up, before the promise rejects (to close what is pending). */
  onTimeout?: () => void;
}

/** The longest delay `setTimeout` takes: 2^31 - 1 ms (about 24.8 days). */
const MAX_TIMER_MS = 2 ** 31 - 1;

/** Default polling interval of {@linkcode Deadlines.watch}, in ms. */
export const WATCH_EVERY_MS = 100;

interface Entry {
  at: number;
  /** Tie-breaker, so tasks due at the same time run in the order they were scheduled. */
  seq: number;
  task: DeadlineTask | undefined;
}

/**
 * A deadline scheduler: a heap of tasks and one timer for the earliest.
 *
 * @example Run a task once after 5 ms, and cancel another before it runs
 * ```ts
 * import assert from "node:assert/strict";
 * import { Deadlines } from "./deadline.ts";
 * const deadlines = new Deadlines();
 * const fired: string[] = [];
 * const cancel = deadlines.after(1, () => fired.push("cancelled"));
 * cancel();
 * await new Promise<void>((resolve) => deadlines.after(5, () => resolve()));
 * assert.deepEqual(fired, []);
 * assert.equal(deadlines.size, 0);
 * ```
 */
export class Deadlines {
  #heap: Entry[] = [];
  #live = 0;
  #seq = 0;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #timerAt = Infinity;
  #running = false;
  /** The entry whose task is running (popped from the heap), so `clear()` can reach it. */
  #current: Entry | undefined;

  /** Tasks scheduled and not yet done or cancelled. */
  get size(): number {
    return this.#live;
  }

  /**
   * Calls `task` at `at` (a `performance.now()` time) and again whenever it returns a time.
   * Returns a function that cancels it (safe to call more than once, or after it ended).
   */
  schedule(at: number, task: DeadlineTask): () => void {
    const entry: Entry = { at, seq: this.#seq++, task };
    this.#live++;
    this.#push(entry);
    this.#arm();
    return () => {
      if (entry.task === undefined) return;
      entry.task = undefined;
      this.#live--;
      this.#afterCancel();
    };
  }

  /** Calls `onExpire` once `ms` have passed, unless the returned function is called first. */
  after(ms: number, onExpire: () => void): () => void {
    return this.schedule(performance.now() + ms, () => {
      onExpire();
      return undefined;
    });
  }

  /**
   * Asks `entry.expired(now)` every `everyMs` until it says yes, then calls `entry.expire()`
   * once; the returned function stops watching.
   */
  watch(entry: Watched, options: WatchOptions = {}): () => void {
    const every = options.everyMs ?? WATCH_EVERY_MS;
    return this.schedule(performance.now() + every, (now) => {
      if (!entry.expired(now)) return now + every;
      entry.expire();
      return undefined;
    });
  }

  /**
   * Resolves like `promise`, or rejects with {@linkcode TimeoutError} ("Timed out after N ms
   * waiting for `options.what`") once `ms` passed; `options.onTimeout` runs first.
   */
  deadline<T>(promise: Promise<T>, ms: number, options: TimeoutOptions = {}): Promise<T> {
    const { what = "a result", onTimeout } = options;
    let cancel = () => {};
    const timeout = new Promise<never>((_, reject) => {
      cancel = this.after(ms, () => {
        onTimeout?.();
        reject(new TimeoutError(`Timed out after ${ms} ms waiting for ${what}`));
      });
    });
    return Promise.race([promise, timeout]).finally(cancel);
  }

  /** Cancels everything (nothing expires). */
  clear(): void {
    for (const e of this.#heap) e.task = undefined;
    if (this.#current) this.#current.task = undefined;
    this.#heap = [];
    this.#live = 0;
    this.#disarm();
  }

  #afterCancel(): void {
    if (this.#live === 0) {
      this.#heap = [];
      this.#disarm();
    } else if (this.#heap.length > 1024 && this.#live * 2 < this.#heap.length) {
      // Mostly dead: rebuild with the live entries only.
      this.#heap = this.#heap.filter((e) => e.task !== undefined);
      for (let i = (this.#heap.length >> 1) - 1; i >= 0; i--) this.#down(i);
    }
  }

  #arm(): void {
    if (this.#running) return; // #run re-arms when it is done.
    while (this.#heap.length > 0 && this.#heap[0].task === undefined) this.#pop();
    if (this.#heap.length === 0) return this.#disarm();
    const at = this.#heap[0].at;
    if (this.#timer !== undefined && this.#timerAt <= at) return;
    this.#disarm();
    this.#timerAt = at;
    // setTimeout takes at most 2^31 - 1 ms; a task due later is looked at again then.
    const wait = Math.min(MAX_TIMER_MS, Math.max(0, at - performance.now()));
    this.#timer = setTimeout(() => this.#run(), wait);
  }

  #disarm(): void {
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#timerAt = Infinity;
  }

  #run(): void {
    this.#timer = undefined;
    this.#timerAt = Infinity;
    this.#running = true;
    try {
      const now = performance.now();
      while (this.#heap.length > 0 && this.#heap[0].at <= now) {
        const entry = this.#pop();
        const task = entry.task;
        if (task === undefined) continue;
        let next: number | undefined;
        this.#current = entry;
        try {
          next = task(now);
        } catch {
          // A failing action (closing a socket that is gone) must not stop the others.
          next = undefined;
        } finally {
          this.#current = undefined;
        }
        if (entry.task === undefined) continue; // Cancelled (itself, or by clear()).
        if (next === undefined) {
          entry.task = undefined;
          this.#live--;
        } else {
          // Never earlier than now + 1 ms, so a task cannot spin the loop.
          entry.at = Math.max(next, now + 1);
          entry.seq = this.#seq++;
          this.#push(entry);
        }
      }
    } finally {
      this.#running = false;
      if (this.#live === 0) this.#heap = [];
      this.#arm();
    }
  }

  #less(a: Entry, b: Entry): boolean {
    return a.at < b.at || (a.at === b.at && a.seq < b.seq);
  }

  #push(entry: Entry): void {
    const h = this.#heap;
    h.push(entry);
    let i = h.length - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (!this.#less(h[i], h[parent])) break;
      [h[i], h[parent]] = [h[parent], h[i]];
      i = parent;
    }
  }

  #pop(): Entry {
    const h = this.#heap;
    const top = h[0];
    const last = h.pop()!;
    if (h.length > 0) {
      h[0] = last;
      this.#down(0);
    }
    return top;
  }

  #down(i: number): void {
    const h = this.#heap;
    while (true) {
      const l = 2 * i + 1;
      const r = l + 1;
      let m = i;
      if (l < h.length && this.#less(h[l], h[m])) m = l;
      if (r < h.length && this.#less(h[r], h[m])) m = r;
      if (m === i) return;
      [h[i], h[m]] = [h[m], h[i]];
      i = m;
    }
  }
}

/** The process-wide scheduler that sessions, copy loops and readers register with. */
export const DEADLINES: Deadlines = new Deadlines();

/**
 * Resolves like `promise`, or rejects with {@linkcode TimeoutError} ("Timed out after N ms
 * waiting for WHAT") when `ms` pass first. Runs on {@linkcode DEADLINES}.
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert/strict";
 * import { withTimeout } from "./deadline.ts";
 * const value = await withTimeout(Promise.resolve(42), 100, { what: "the answer" });
 * assert.equal(value, 42);
 * await assert.rejects(
 *   withTimeout(new Promise(() => {}), 5, { what: "nothing" }),
 *   /Timed out after 5 ms waiting for nothing/,
 * );
 * ```
 */
export function withTimeout<T>(
  promise: Promise<T>,
  ms: number,
  options: TimeoutOptions = {},
): Promise<T> {
  return DEADLINES.deadline(promise, ms, options);
}

/**
 * Resolves after `ms` milliseconds, or early (without error) when `signal` aborts.
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert/strict";
 * import { delay } from "./deadline.ts";
 * const start = performance.now();
 * await delay(5);
 * assert.ok(performance.now() - start >= 4);
 * ```
 */
export function delay(ms: number, options: { signal?: AbortSignal } = {}): Promise<void> {
  const { signal } = options;
  if (signal?.aborted) return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      cancel();
      signal?.removeEventListener("abort", done);
      resolve();
    };
    const cancel = DEADLINES.after(ms, done);
    signal?.addEventListener("abort", done, { once: true });
  });
}
