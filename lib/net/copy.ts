/**
 * Bidirectional copy between two connections, for proxies: read/write loops over reused
 * buffers (about twice as fast as `readable.pipeTo(writable)` at half the CPU), half-close
 * propagated with `closeWrite()`, and caps on how long a half-open or idle pair may linger.
 *
 * The caps are tasks on a {@linkcode Deadlines} scheduler ({@linkcode DEADLINES} unless
 * `options.deadlines` names another), not a timer per pair: a read only records the time;
 * when the idle task comes due and a byte moved since, it re-arms itself for the new due time.
 *
 * Buffers start small ({@linkcode COPY_DEFAULTS}.initialBufferSize) and double, up to
 * `maxBufferSize`, each time a read fills one, so an idle tunnel costs little memory and a
 * busy one gets 256 KiB reads.
 *
 * @module
 */

import type { Reader } from "./buffered_reader.ts";
import { DEADLINES, type Deadlines } from "./deadline.ts";
import { writeAll, type Writer } from "./write_all.ts";

/** Defaults of {@linkcode CopyOptions}, in one place. */
export const COPY_DEFAULTS = {
  /** First read buffer per direction: 8 KiB. */
  initialBufferSize: 8 * 1024,
  /** Largest read buffer per direction: 256 KiB. */
  maxBufferSize: 256 * 1024,
  /** Once one direction ended, the other may go on this long, in ms (0: no cap). */
  halfOpenTimeoutMs: 60_000,
  /** Close the pair when neither direction moved a byte for this long, in ms (0: never). */
  idleTimeoutMs: 0,
} as const;

/** One side of a copy: a connection that can be read, written, half-closed and closed. */
export interface Duplex extends Reader, Writer {
  /** Shuts down the write side so the peer reads end of file. */
  closeWrite(): Promise<void>;
  /** Closes the connection. */
  close(): void;
}

/** Options for {@linkcode copyBidirectional}. */
export interface CopyOptions {
  /** First buffer size per direction. @default {8192} */
  initialBufferSize?: number;
  /** Largest buffer size per direction. @default {262144} */
  maxBufferSize?: number;
  /** Cap on a half-open pair, in ms; 0 disables. @default {60000} */
  halfOpenTimeoutMs?: number;
  /** Close when no byte moved either way for this long, in ms; 0 disables. @default {0} */
  idleTimeoutMs?: number;
  /** Read `a` through this reader instead (e.g. a BufferedReader holding early bytes). */
  readA?: Reader;
  /** Read `b` through this reader instead. */
  readB?: Reader;
  /** Scheduler for the half-open and idle caps. @default {DEADLINES} */
  deadlines?: Deadlines;
}

/** What {@linkcode copyBidirectional} moved and why it stopped. */
export interface CopyResult {
  /** Bytes copied from a to b. */
  aToB: number;
  /** Bytes copied from b to a. */
  bToA: number;
  /** "done" when both sides finished, otherwise what cut the pair short. */
  end: "done" | "half-open timeout" | "idle timeout" | "error";
  /** The first read or write error, if any. */
  error?: unknown;
}

/**
 * Copies `a` to `b` and `b` to `a` until both directions reach end of file, then closes both.
 * End of file on one side is passed on with `closeWrite()`; a read or write error closes both.
 *
 * @example Forward one accepted connection to a target
 * ```ts ignore
 * import { copyBidirectional } from "./copy.ts";
 * const listener = Deno.listen({ port: 0 });
 * const client = await listener.accept();
 * const target = await Deno.connect({ hostname: "127.0.0.1", port: 8080 });
 * const { aToB, bToA } = await copyBidirectional(client, target);
 * console.log(`${aToB} bytes up, ${bToA} bytes down`);
 * ```
 */
export async function copyBidirectional(
  a: Duplex,
  b: Duplex,
  options: CopyOptions = {},
): Promise<CopyResult> {
  const opts = { ...COPY_DEFAULTS, ...options };
  const result: CopyResult = { aToB: 0, bToA: 0, end: "done" };
  let lastActivity = performance.now();
  let finished = 0;
  let closed = false;
  const deadlines = opts.deadlines ?? DEADLINES;
  const { halfOpenTimeoutMs, idleTimeoutMs } = opts;
  let cancelIdle = () => {};
  let cancelHalfOpen = () => {};

  const closeBoth = (end: CopyResult["end"], error?: unknown) => {
    if (closed) return;
    closed = true;
    if (result.end === "done" && end !== "done") result.end = end;
    if (error !== undefined && result.error === undefined) result.error = error;
    for (const c of [a, b]) {
      try {
        c.close();
      } catch {
        // Already closed.
      }
    }
  };

  const pump = async (src: Reader, dst: Duplex, count: (n: number) => void) => {
    let buf = new Uint8Array(opts.initialBufferSize);
    try {
      while (true) {
        const n = await src.read(buf);
        if (n === null) break;
        lastActivity = performance.now();
        await writeAll(dst, n === buf.length ? buf : buf.subarray(0, n));
        count(n);
        if (n === buf.length && buf.length < opts.maxBufferSize) {
          buf = new Uint8Array(Math.min(buf.length * 2, opts.maxBufferSize));
        }
      }
      try {
        await dst.closeWrite();
      } catch {
        // The other side may be closed already; the pair ends below.
      }
    } catch (error) {
      closeBoth("error", error);
      return;
    }
    finished++;
    if (finished === 2) closeBoth("done");
    else if (halfOpenTimeoutMs > 0 && !closed) {
      // The other direction may go on for halfOpenTimeoutMs from now, no longer.
      cancelHalfOpen = deadlines.after(halfOpenTimeoutMs, () => closeBoth("half-open timeout"));
    }
  };

  if (idleTimeoutMs > 0) {
    // Lazy: due at lastActivity + idleTimeoutMs; a read since then moves the due time.
    cancelIdle = deadlines.schedule(lastActivity + idleTimeoutMs, (now) => {
      if (closed) return undefined;
      const due = lastActivity + idleTimeoutMs;
      if (now < due) return due;
      closeBoth("idle timeout");
      return undefined;
    });
  }
  try {
    await Promise.all([
      pump(opts.readA ?? a, b, (n) => (result.aToB += n)),
      pump(opts.readB ?? b, a, (n) => (result.bToA += n)),
    ]);
  } finally {
    cancelIdle();
    cancelHalfOpen();
    closeBoth("done");
  }
  return result;
}
