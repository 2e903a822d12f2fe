/**
 * The connection session from the seed note: per long-lived connection, one reader, one
 * writer and one handler.
 *
 * - The **reader** is a {@linkcode BufferedReader} over the connection; the handler pulls
 *   lines or frames from it, so there is exactly one reader per connection.
 * - The **writer** is a loop that drains the session's outbox onto the socket, coalescing
 *   queued messages into one write of up to {@linkcode WRITE_BATCH_SIZE} bytes.
 * - The **handler** is the protocol's async function given to {@linkcode Session.run}; it owns
 *   the connection's state and puts replies on the outbox with {@linkcode Session.send}.
 *
 * The outbox is bounded in bytes ({@linkcode SessionOptions.maxQueuedBytes}): a peer that does
 * not read fills it, and then either the session closes ("slow consumer", the default) or
 * further messages are dropped and counted. Deadlines notice dead peers: a write that stays
 * blocked past {@linkcode SessionOptions.writeTimeoutMs}, or no bytes read for
 * {@linkcode SessionOptions.idleTimeoutMs}. {@linkcode Session.close} lets the peer know:
 * it flushes a last message (bounded wait), half-closes, then closes.
 *
 * @module
 */

import { BufferedReader } from "./buffered_reader.ts";
import { writeAll } from "./write_all.ts";

/** Defaults of {@linkcode SessionOptions}, in one place. */
export const SESSION_DEFAULTS = {
  /** Bytes queued for one peer before it counts as a slow consumer: 8 MiB. */
  maxQueuedBytes: 8 * 1024 * 1024,
  /** What happens when the outbox is full. */
  overflow: "close" as OverflowPolicy,
  /** A single write blocked this long marks the peer as not reading, in ms (0 disables). */
  writeTimeoutMs: 30_000,
  /** Close a peer that sent nothing for this long, in ms (0 disables). */
  idleTimeoutMs: 0,
  /** How long {@linkcode Session.close} waits for queued bytes to go out, in ms. */
  flushTimeoutMs: 2_000,
  /** Read buffer per session (also the longest line or handshake it can buffer). */
  readBufferSize: 64 * 1024,
} as const;

/** Largest single write the writer loop assembles from queued messages: 256 KiB. */
export const WRITE_BATCH_SIZE = 256 * 1024;

/**
 * A queued message at least this big is written as it is rather than copied into a batch:
 * 16 KiB. Copying only small messages keeps syscalls few without a second copy of bulk data.
 */
export const DIRECT_WRITE_BYTES = 16 * 1024;

/** What a full outbox does: close the session, or drop the message and count it. */
export type OverflowPolicy = "close" | "drop";

/** Options for {@linkcode Session}. Defaults are in {@linkcode SESSION_DEFAULTS}. */
export interface SessionOptions {
  /** Bytes that may wait in the outbox. @default {8 MiB} */
  maxQueuedBytes?: number;
  /** Policy when the outbox would exceed its cap. @default {"close"} */
  overflow?: OverflowPolicy;
  /** Close when one write is blocked this long, in ms; 0 disables. @default {30000} */
  writeTimeoutMs?: number;
  /** Close when nothing was read for this long, in ms; 0 disables. @default {0} */
  idleTimeoutMs?: number;
  /** Send `ping()` after this long without reading anything, in ms; 0 disables. @default {0} */
  pingIntervalMs?: number;
  /** Makes the heartbeat message sent every `pingIntervalMs`. */
  ping?: () => Uint8Array;
  /** Message queued just before a slow-consumer or idle close, e.g. a reason line. */
  farewell?: (reason: string) => Uint8Array | undefined;
  /** Called once, synchronously, when the session starts closing (for any reason). */
  onClosing?: (info: CloseInfo) => void;
  /** Called each time the writer has emptied the outbox. */
  onDrained?: () => void;
  /** How long {@linkcode Session.close} waits for queued bytes, in ms. @default {2000} */
  flushTimeoutMs?: number;
  /** Read buffer size in bytes. @default {65536} */
  readBufferSize?: number;
}

/** Why and how a session ended. */
export interface CloseInfo {
  /** Human-readable reason: "peer closed", "slow consumer: ...", "idle for 30000 ms", ... */
  reason: string;
  /** The error that ended the session, if one did. */
  error?: unknown;
}

/** The connection a session runs on: `Deno.Conn` or anything with the same calls. */
export interface SessionConn {
  /** Reads into `p`. */
  read(p: Uint8Array): Promise<number | null>;
  /** Writes part of `p`. */
  write(p: Uint8Array): Promise<number>;
  /** Shuts down the write side, so the peer reads end of file. */
  closeWrite(): Promise<void>;
  /** Closes the connection. */
  close(): void;
}

/**
 * One long-lived connection: a buffered reader, a bounded outbox with its writer loop, and
 * deadlines.
 *
 * @example Echo lines back to the peer
 * ```ts ignore
 * import { Session } from "./session.ts";
 * const listener = Deno.listen({ port: 0 });
 * const conn = await listener.accept();
 * const session = new Session(conn, { maxQueuedBytes: 1 << 20 });
 * const info = await session.run(async (s) => {
 *   let line;
 *   while ((line = await s.reader.readLine(1024)) !== null) s.send(line);
 * });
 * console.log(info.reason);
 * ```
 */
export class Session {
  /** The connection. */
  readonly conn: SessionConn;
  /** The one reader of this connection. */
  readonly reader: BufferedReader;
  /** Bytes read from the peer. */
  bytesIn = 0;
  /** Bytes written to the peer. */
  bytesOut = 0;
  /** Messages dropped because the outbox was full (with overflow "drop"). */
  dropped = 0;
  /** Bytes dropped because the outbox was full (with overflow "drop"). */
  droppedBytes = 0;

  #opts:
    & Required<Omit<SessionOptions, "ping" | "farewell" | "onClosing" | "onDrained">>
    & SessionOptions;
  #queue: Uint8Array[] = [];
  #queueHead = 0;
  #queued = 0;
  #inFlight = 0;
  #wake: (() => void) | undefined;
  #closing = false;
  #closeInfo: CloseInfo | undefined;
  #closed: Promise<CloseInfo>;
  #resolveClosed!: (info: CloseInfo) => void;
  #lastReadAt = performance.now();
  #lastPingAt = 0;
  #writingSince = 0;
  #timer: ReturnType<typeof setInterval> | undefined;
  #writer: Promise<void> | undefined;
  #batch: Uint8Array | undefined;

  /** Wraps `conn`; call {@linkcode run} to start the writer and the handler. */
  constructor(conn: SessionConn, options: SessionOptions = {}) {
    this.conn = conn;
    this.#opts = { ...SESSION_DEFAULTS, pingIntervalMs: 0, ...options };
    this.reader = new BufferedReader(
      { read: (p: Uint8Array) => this.#readConn(p) },
      { bufferSize: this.#opts.readBufferSize },
    );
    this.#closed = new Promise((resolve) => (this.#resolveClosed = resolve));
  }

  async #readConn(p: Uint8Array): Promise<number | null> {
    const n = await this.conn.read(p);
    if (n !== null) {
      this.bytesIn += n;
      this.#lastReadAt = performance.now();
    }
    return n;
  }

  /** Bytes waiting in the outbox. */
  get queuedBytes(): number {
    return this.#queued + this.#inFlight;
  }

  /** True once the session started closing; {@linkcode send} then refuses. */
  get closing(): boolean {
    return this.#closing;
  }

  /** Resolves once the connection is closed, with the reason. */
  get closed(): Promise<CloseInfo> {
    return this.#closed;
  }

  /**
   * Queues `data` for the peer. Resolves nothing: returns true when queued, false when the
   * session is closing or the outbox is full (which, by policy, either closed the session or
   * dropped this message). `data` must not be modified afterwards.
   */
  send(data: Uint8Array): boolean {
    if (this.#closing) return false;
    if (this.#queued + this.#inFlight + data.length > this.#opts.maxQueuedBytes) {
      if (this.#opts.overflow === "drop") {
        this.dropped++;
        this.droppedBytes += data.length;
        return false;
      }
      this.#abortSlow(
        `slow consumer: more than ${this.#opts.maxQueuedBytes} bytes queued`,
      );
      return false;
    }
    this.#queue.push(data);
    this.#queued += data.length;
    this.#wake?.();
    return true;
  }

  /**
   * Starts the writer loop and the deadline timer, runs `handler` until it returns (the peer
   * finished) or throws, then closes. Either way what is queued is flushed (bounded by
   * `flushTimeoutMs`), so an error notice queued by the handler reaches the peer; a thrown
   * error becomes the close reason. Resolves how the session ended. Never rejects.
   */
  async run(handler: (session: Session) => Promise<void>): Promise<CloseInfo> {
    this.#writer = this.#writeLoop();
    this.#startTimer();
    try {
      await handler(this);
      if (!this.#closing) await this.close("peer closed");
    } catch (error) {
      if (!this.#closing) {
        const message = error instanceof Error ? error.message : String(error);
        await this.close(message, { error, flush: true });
      }
    }
    return await this.#closed;
  }

  /**
   * Closes the session: refuses new messages, flushes queued ones (at most
   * `flushTimeoutMs`), half-closes so the peer reads end of file, then closes. Safe to call
   * more than once; the first reason wins.
   */
  async close(
    reason: string,
    options: { flush?: boolean; error?: unknown; farewell?: Uint8Array } = {},
  ): Promise<CloseInfo> {
    if (this.#closing) return await this.#closed;
    if (options.farewell) {
      this.#queue.push(options.farewell);
      this.#queued += options.farewell.length;
      this.#wake?.();
    }
    this.#closing = true;
    this.#closeInfo = options.error === undefined ? { reason } : { reason, error: options.error };
    this.#stopTimer();
    this.#opts.onClosing?.(this.#closeInfo);
    if (options.flush !== false && this.#writer) {
      await this.#waitDrained(this.#opts.flushTimeoutMs);
      if (this.queuedBytes === 0) {
        try {
          await this.conn.closeWrite();
        } catch {
          // The peer may already be gone.
        }
      }
    }
    this.#finish();
    return await this.#closed;
  }

  #abortSlow(reason: string): void {
    // Drop what has not started to go out, keep the farewell so the peer learns why.
    this.#queue = [];
    this.#queueHead = 0;
    this.#queued = 0;
    const farewell = this.#opts.farewell?.(reason);
    void this.close(reason, { farewell, flush: farewell !== undefined });
  }

  #finish(): void {
    try {
      this.conn.close();
    } catch {
      // Already closed.
    }
    this.#wake?.();
    this.#resolveClosed(this.#closeInfo ?? { reason: "closed" });
  }

  async #waitDrained(ms: number): Promise<void> {
    const deadline = performance.now() + ms;
    while (this.queuedBytes > 0 && this.#writer && performance.now() < deadline) {
      await new Promise((r) => setTimeout(r, 5));
    }
  }

  /** Takes the next write off the outbox: one big message, or several small ones copied together. */
  #nextBatch(): Uint8Array {
    // Forget written messages even when the outbox never empties (a reader that keeps just
    // behind), so they can be collected.
    if (this.#queueHead >= 1024 && this.#queueHead * 2 >= this.#queue.length) {
      this.#queue = this.#queue.slice(this.#queueHead);
      this.#queueHead = 0;
    }
    const q = this.#queue;
    const first = q[this.#queueHead];
    if (first.length >= DIRECT_WRITE_BYTES || this.#queueHead + 1 === q.length) {
      this.#queueHead++;
      return first;
    }
    // Size the batch first: a small one gets a fresh exact-size array (an idle peer keeps no
    // big buffer), a big one reuses this session's WRITE_BATCH_SIZE buffer.
    let size = 0;
    let count = 0;
    for (let i = this.#queueHead; i < q.length && size + q[i].length <= WRITE_BATCH_SIZE; i++) {
      size += q[i].length;
      count++;
    }
    const batch = size <= DIRECT_WRITE_BYTES
      ? new Uint8Array(size)
      : (this.#batch ??= new Uint8Array(WRITE_BATCH_SIZE));
    let used = 0;
    for (let i = 0; i < count; i++) {
      const next = q[this.#queueHead++];
      batch.set(next, used);
      used += next.length;
    }
    return batch.subarray(0, used);
  }

  async #writeLoop(): Promise<void> {
    try {
      while (true) {
        if (this.#queueHead === this.#queue.length) {
          this.#queue = [];
          this.#queueHead = 0;
          if (this.#closeInfo && this.#queued === 0) return;
          if (!this.#closing) this.#opts.onDrained?.();
          if (this.#queue.length > 0) continue;
          await new Promise<void>((resolve) => (this.#wake = resolve));
          this.#wake = undefined;
          continue;
        }
        const data = this.#nextBatch();
        this.#queued -= data.length;
        this.#inFlight = data.length;
        this.#writingSince = performance.now();
        await writeAll(this.conn, data);
        this.#writingSince = 0;
        this.#inFlight = 0;
        this.bytesOut += data.length;
      }
    } catch (error) {
      this.#queue = [];
      this.#queueHead = 0;
      this.#queued = 0;
      this.#inFlight = 0;
      if (!this.#closing) {
        const message = error instanceof Error ? error.message : String(error);
        this.#closing = true;
        this.#closeInfo = { reason: `write failed: ${message}`, error };
        this.#stopTimer();
        this.#opts.onClosing?.(this.#closeInfo);
        this.#finish();
      }
    } finally {
      this.#writer = undefined;
    }
  }

  #startTimer(): void {
    const { idleTimeoutMs, writeTimeoutMs, pingIntervalMs } = this.#opts;
    const periods = [idleTimeoutMs, writeTimeoutMs, pingIntervalMs].filter((ms) => ms > 0);
    if (periods.length === 0) return;
    const tick = Math.max(10, Math.min(1000, Math.min(...periods) / 4));
    this.#timer = setInterval(() => this.#checkDeadlines(), tick);
  }

  #stopTimer(): void {
    if (this.#timer !== undefined) clearInterval(this.#timer);
    this.#timer = undefined;
  }

  #checkDeadlines(): void {
    const now = performance.now();
    const { idleTimeoutMs, writeTimeoutMs, pingIntervalMs, ping } = this.#opts;
    if (writeTimeoutMs > 0 && this.#writingSince > 0 && now - this.#writingSince > writeTimeoutMs) {
      this.#abortSlow(`slow consumer: a write was blocked for more than ${writeTimeoutMs} ms`);
      return;
    }
    const idle = now - this.#lastReadAt;
    if (idleTimeoutMs > 0 && idle > idleTimeoutMs) {
      const reason = `idle for more than ${idleTimeoutMs} ms`;
      void this.close(reason, { farewell: this.#opts.farewell?.(reason) });
      return;
    }
    if (
      pingIntervalMs > 0 && ping && idle > pingIntervalMs && now - this.#lastPingAt > pingIntervalMs
    ) {
      this.#lastPingAt = now;
      this.send(ping());
    }
  }
}
