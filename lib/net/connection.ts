/**
 * A long-lived connection: one reader, one writer and one handler.
 *
 * - The **reader** is a {@linkcode BufferedReader} over the connection; the handler pulls
 *   lines or frames from it, so there is exactly one reader per connection.
 * - The **writer** is a loop that drains the connection's outbox onto the socket, coalescing
 *   queued messages into writes of up to 256 KiB (`outbox.ts`).
 * - The **handler** is the protocol's async function given to {@linkcode Connection.run}; it owns
 *   the connection's state and puts replies on the outbox with {@linkcode Connection.send}.
 *
 * **The outbox** is bounded in bytes ({@linkcode ConnectionOptions.maxQueuedBytes}). Without flow
 * control a message that would pass the cap either closes the connection (`slow-bytes`) or is
 * dropped and counted (overflow `"drop"`). With {@linkcode ConnectionOptions.flow} the outbox
 * also has water marks (see `flow.ts`): above high water a live peer *holds its producers*
 * ({@linkcode Connection.holdsProducers}, {@linkcode Connection.released}), and the cap applies
 * only once the peer is *stuck*, its socket having taken no byte for the stall time
 * (`slow-stall`). A live peer's outbox is then bounded by high water plus what each producer
 * had in hand when it paused.
 *
 * **Deadlines** run on the shared {@linkcode DEADLINES} scheduler, two tasks per connection, re-armed
 * lazily: the write side (stall, and `write-timeout` when the socket took no byte for
 * {@linkcode ConnectionOptions.writeTimeoutMs}) and the read side (`idle`, heartbeat pings and
 * `heartbeat` after missed ones).
 *
 * **Closing** lets the peer know: {@linkcode Connection.close} flushes a last message (bounded
 * wait), half-closes, then closes. A slow consumer's queue is discarded and its farewell goes
 * after what is already in flight, with up to `writeTimeoutMs` to get there, so the peer's
 * stream ends with the reason line even when it was stuck for a long time. Every end has a
 * typed {@linkcode CloseReason}.
 *
 * @module
 */

import { type Widened, withDefaults } from "../defaults.ts";
import { BufferedReader } from "./buffered_reader.ts";
import {
  type CloseInfo,
  type CloseReason,
  describeCloseReason,
  errorReason,
} from "./close_reason.ts";
import { DEADLINES } from "./deadline.ts";
import { checkFlowOptions, type FlowOptions, type FlowOutbox } from "./flow.ts";
import { Outbox } from "./outbox.ts";

import {
  type CloseOptions,
  CONNECTION_DEFAULTS,
  type ConnectionIo,
  type ConnectionOptions,
} from "./connection_options.ts";

export type { CloseInfo } from "./close_reason.ts";
export {
  type CloseOptions,
  CONNECTION_DEFAULTS,
  type ConnectionIo,
  type ConnectionOptions,
  type OverflowPolicy,
} from "./connection_options.ts";

/**
 * One long-lived connection: a buffered reader, a bounded outbox with its writer loop,
 * optional flow control, and deadlines.
 *
 * @example Echo lines back to the peer
 * ```ts
 * import assert from "node:assert/strict";
 * import { Connection } from "./connection.ts";
 * using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
 * const client = await Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port });
 * const connection = new Connection(await listener.accept());
 * const ended = connection.run(async (s) => {
 *   let line;
 *   while ((line = await s.reader.readLine(1024)) !== null) s.send(line);
 * });
 * await client.write(new TextEncoder().encode("ping\n"));
 * const buf = new Uint8Array(16);
 * const n = await client.read(buf);
 * assert.equal(new TextDecoder().decode(buf.subarray(0, n ?? 0)), "ping");
 * client.close();
 * assert.equal((await ended).reason.kind, "peer-closed");
 * ```
 */
export class Connection implements FlowOutbox {
  /** The connection. */
  readonly conn: ConnectionIo;
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

  #opts: Widened<typeof CONNECTION_DEFAULTS> & ConnectionOptions;
  #flow: FlowOptions | undefined;
  #outbox = new Outbox();
  #inFlight = 0;
  #wake: (() => void) | undefined;
  #closing = false;
  #closeInfo: CloseInfo | undefined;
  #closed: Promise<CloseInfo>;
  #resolveClosed!: (info: CloseInfo) => void;
  #finished = false;
  #writer: Promise<void> | undefined;
  // Write side: whether a write is under way, when the socket last took bytes, stuck state.
  #writing = false;
  #lastProgressAt = 0;
  #stuck = false;
  /** Bytes the kernel held for the peer at the last stall look (-1: unknown). */
  #unacked: number | undefined;
  #cancelWriteTask: (() => void) | undefined;
  // Read side.
  #lastReadAt = performance.now();
  #lastPingAt = 0;
  #readsHeld = 0;
  #cancelReadTask: (() => void) | undefined;
  // Waiters: "the outbox is empty" and "no longer holding producers".
  #drained: PromiseWithResolvers<void> | undefined;
  #released: PromiseWithResolvers<void> | undefined;
  #cutFlush: (() => void) | undefined;

  /** Wraps `conn`; call {@linkcode run} to start the writer and the handler. */
  constructor(conn: ConnectionIo, options: ConnectionOptions = {}) {
    this.conn = conn;
    this.#opts = withDefaults(CONNECTION_DEFAULTS, options);
    this.#flow = options.flow && checkFlowOptions(options.flow);
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

  /** Bytes waiting in the outbox, including the part of a write not yet taken. */
  get queuedBytes(): number {
    return this.#outbox.bytes + this.#inFlight;
  }

  /** True once the connection started closing; {@linkcode send} then refuses. */
  get closing(): boolean {
    return this.#closing;
  }

  /** True while the peer is stuck: data waits and its socket took no byte for the stall time. */
  get stuck(): boolean {
    return this.#stuck;
  }

  /** True while this outbox is above its high-water mark, its peer live and the connection open. */
  get holdsProducers(): boolean {
    return this.#flow !== undefined && !this.#closing && !this.#stuck &&
      this.#outbox.bytes + this.#inFlight > this.#flow.highWaterBytes;
  }

  /** Resolves once {@linkcode holdsProducers} turns false. */
  released(): Promise<void> {
    if (!this.holdsProducers) return Promise.resolve();
    return (this.#released ??= Promise.withResolvers<void>()).promise;
  }

  /**
   * Suspends the read-side deadlines (idle, heartbeat) while this side does not read on
   * purpose (flow control holds it), until the returned function is called: a peer that is
   * not being read cannot be blamed for silence. Reading resumes with a fresh idle clock.
   */
  holdReads(): () => void {
    this.#readsHeld++;
    let done = false;
    return () => {
      if (done) return;
      done = true;
      this.#readsHeld--;
      this.#lastReadAt = performance.now();
    };
  }

  /** Resolves once the connection is closed, with the reason. */
  get closed(): Promise<CloseInfo> {
    return this.#closed;
  }

  /**
   * Queues `data` for the peer. Returns true when queued, false when the connection is closing
   * or the outbox is full (which, by policy, either closed the connection or dropped this
   * message). With flow control a live peer's outbox may pass the cap by what its producers
   * had in hand; they are expected to wait on {@linkcode released}. `data` must not be
   * modified afterwards.
   */
  send(data: Uint8Array): boolean {
    if (this.#closing) return false;
    const max = this.#opts.maxQueuedBytes;
    if (this.#outbox.bytes + this.#inFlight + data.length > max) {
      if (this.#opts.overflow === "drop") {
        this.dropped++;
        this.droppedBytes += data.length;
        return false;
      }
      if (this.#flow === undefined) {
        this.#abortSlow({ kind: "slow-bytes", limitBytes: max });
        return false;
      }
      if (this.#stuck) {
        this.#abortSlow({
          kind: "slow-stall",
          stallMs: this.#flow.stallTimeoutMs,
          limitBytes: max,
        });
        return false;
      }
    }
    this.#outbox.push(data);
    this.#wake?.();
    return true;
  }

  /**
   * Starts the writer loop and the deadlines, runs `handler` until it returns (the peer
   * finished) or throws, then closes. Either way what is queued is flushed (bounded by
   * `flushTimeoutMs`), so an error notice queued by the handler reaches the peer; a thrown
   * error becomes the close reason. Resolves how the connection ended. Never rejects.
   */
  async run(handler: (connection: Connection) => Promise<void>): Promise<CloseInfo> {
    this.#writer = this.#writeLoop();
    this.#armReadTask();
    try {
      await handler(this);
      if (!this.#closing) await this.close({ kind: "peer-closed" });
    } catch (error) {
      if (!this.#closing) await this.close(errorReason(error), { error, flush: true });
    }
    return await this.#closed;
  }

  /**
   * Closes the connection: refuses new messages, flushes queued ones (at most
   * `flushTimeoutMs`), half-closes so the peer reads end of file, then closes. Safe to call
   * more than once; the first reason wins.
   */
  async close(reason: CloseReason, options: CloseOptions = {}): Promise<CloseInfo> {
    if (this.#closing) return await this.#closed;
    if (options.farewell) {
      this.#outbox.push(options.farewell);
      this.#wake?.();
    }
    this.#closing = true;
    this.#closeInfo = { reason, text: describeCloseReason(reason) };
    if (options.error !== undefined) this.#closeInfo.error = options.error;
    this.#cancelReadTask?.();
    this.#released?.resolve();
    this.#opts.onClosing?.(this.#closeInfo);
    if (options.flush !== false && this.#writer) {
      await this.#waitDrained(options.flushTimeoutMs ?? this.#opts.flushTimeoutMs);
      if (this.queuedBytes === 0 && !this.#finished) {
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

  /** Ends a close that is still flushing at once (closing with `reason` if none started). */
  terminate(reason: CloseReason = { kind: "shutdown" }): void {
    if (!this.#closing) void this.close(reason, { flush: false });
    this.#cutFlush?.();
  }

  #abortSlow(reason: CloseReason): void {
    // Drop what has not started to go out; the farewell follows what is in flight, with the
    // write timeout (not the short flush) to get there, so a stuck peer that reads again
    // sees why it was cut.
    this.#outbox.clear();
    const farewell = this.#opts.farewell?.(reason);
    const { writeTimeoutMs, flushTimeoutMs } = this.#opts;
    void this.close(reason, {
      farewell,
      flush: farewell !== undefined,
      flushTimeoutMs: reason.kind === "write-timeout" ? flushTimeoutMs : writeTimeoutMs,
    });
  }

  #finish(): void {
    if (this.#finished) return;
    this.#finished = true;
    this.#cancelWriteTask?.();
    this.#cancelReadTask?.();
    try {
      this.conn.close();
    } catch {
      // Already closed.
    }
    this.#wake?.();
    this.#drained?.resolve();
    this.#released?.resolve();
    this.#resolveClosed(this.#closeInfo ?? { reason: { kind: "peer-closed" }, text: "closed" });
  }

  async #waitDrained(ms: number): Promise<void> {
    if (this.queuedBytes === 0 || !this.#writer) return;
    const drained = (this.#drained ??= Promise.withResolvers<void>());
    let cut!: () => void;
    const cutPromise = new Promise<void>((r) => (cut = r));
    this.#cutFlush = cut;
    const cancel = ms > 0 ? DEADLINES.after(ms, cut) : (cut(), () => {});
    try {
      await Promise.race([drained.promise, cutPromise]);
    } finally {
      cancel();
      this.#cutFlush = undefined;
    }
  }

  async #writeLoop(): Promise<void> {
    try {
      while (!this.#finished) {
        if (this.#outbox.empty) {
          this.#writing = false;
          if (this.#drained) {
            this.#drained.resolve();
            this.#drained = undefined;
          }
          if (this.#closeInfo) return;
          if (!this.#closing) this.#opts.onDrained?.();
          if (!this.#outbox.empty) continue;
          await new Promise<void>((resolve) => (this.#wake = resolve));
          this.#wake = undefined;
          continue;
        }
        const data = this.#outbox.take();
        this.#inFlight = data.length;
        if (!this.#writing) {
          this.#writing = true;
          this.#lastProgressAt = performance.now();
          this.#armWriteTask();
        }
        let off = 0;
        while (off < data.length) {
          const n = await this.conn.write(off === 0 ? data : data.subarray(off));
          off += n;
          this.#inFlight -= n;
          this.bytesOut += n;
          this.#progress();
        }
      }
    } catch (error) {
      this.#outbox.clear();
      this.#inFlight = 0;
      if (!this.#closing) {
        const message = error instanceof Error ? error.message : String(error);
        this.#closing = true;
        this.#closeInfo = {
          reason: { kind: "error", message: `write failed: ${message}` },
          text: `write failed: ${message}`,
          error,
        };
        this.#opts.onClosing?.(this.#closeInfo);
      }
      this.#finish();
    } finally {
      this.#writer = undefined;
      this.#drained?.resolve();
    }
  }

  /** The socket took bytes: the peer is live; release held producers at low water. */
  #progress(): void {
    this.#lastProgressAt = performance.now();
    this.#unacked = undefined;
    if (this.#stuck) {
      this.#stuck = false;
      this.#opts.onStuck?.(false);
      // Stall detection starts over from now.
      this.#cancelWriteTask?.();
      this.#cancelWriteTask = undefined;
      this.#armWriteTask();
    }
    const flow = this.#flow;
    if (this.#released && flow && this.#outbox.bytes + this.#inFlight <= flow.lowWaterBytes) {
      this.#released.resolve();
      this.#released = undefined;
    }
  }

  /** Write side deadlines: stall (with flow control) and the write timeout. */
  #armWriteTask(): void {
    if (this.#cancelWriteTask !== undefined || this.#finished) return;
    const stallMs = this.#flow?.stallTimeoutMs ?? 0;
    const writeMs = this.#opts.writeTimeoutMs;
    if (stallMs <= 0 && writeMs <= 0) return;
    const probe = this.#opts.unackedBytes;
    const dueAfter = (since: number) => {
      let due = Infinity;
      // With a probe, the first look is at half the stall time (a sample to compare with).
      const first = probe !== undefined && this.#unacked === undefined;
      if (stallMs > 0 && !this.#stuck) due = since + (first ? stallMs / 2 : stallMs);
      if (writeMs > 0) due = Math.min(due, since + writeMs);
      return due;
    };
    this.#cancelWriteTask = DEADLINES.schedule(dueAfter(this.#lastProgressAt), (now) => {
      if (!this.#writing || this.#finished) {
        this.#cancelWriteTask = undefined;
        return undefined;
      }
      const quiet = now - this.#lastProgressAt;
      if (writeMs > 0 && quiet >= writeMs) {
        this.#cancelWriteTask = undefined;
        if (this.#closing) this.#cutFlush?.();
        else this.#abortSlow({ kind: "write-timeout", ms: writeMs });
        return undefined;
      }
      if (stallMs > 0 && !this.#stuck) this.#checkStall(now, { quiet, stallMs });
      const due = dueAfter(this.#lastProgressAt);
      if (due === Infinity) this.#cancelWriteTask = undefined;
      return due === Infinity ? undefined : due;
    });
  }

  /**
   * No byte taken for the stall time: stuck, unless the kernel says the peer acknowledged
   * bytes since the last look (a slow reader: the kernel wakes a blocked write only after a
   * large part of the send buffer drained).
   */
  #checkStall(now: number, at: { quiet: number; stallMs: number }): void {
    const probe = this.#opts.unackedBytes;
    if (probe && this.#unacked === undefined && at.quiet >= at.stallMs / 2) {
      this.#unacked = probe() ?? -1;
    }
    if (at.quiet < at.stallMs) return;
    const unacked = probe?.();
    const before = this.#unacked ?? -1;
    if (unacked !== undefined && before >= 0 && unacked < before) {
      this.#lastProgressAt = now;
      this.#unacked = unacked;
    } else {
      this.#becomeStuck();
    }
  }

  #becomeStuck(): void {
    this.#stuck = true;
    this.#opts.onStuck?.(true);
    this.#released?.resolve();
    this.#released = undefined;
    const max = this.#opts.maxQueuedBytes;
    if (!this.#closing && this.#outbox.bytes + this.#inFlight > max) {
      this.#abortSlow({ kind: "slow-stall", stallMs: this.#flow!.stallTimeoutMs, limitBytes: max });
    }
  }

  /** Read side deadlines: idle, heartbeat pings, missed heartbeats. */
  #armReadTask(): void {
    const { idleTimeoutMs, pingIntervalMs, heartbeatMisses, ping } = this.#opts;
    const pingMs = ping ? pingIntervalMs : 0;
    const deadMs = pingMs > 0 && heartbeatMisses > 0 ? pingMs * heartbeatMisses : 0;
    if (idleTimeoutMs <= 0 && pingMs <= 0) return;
    const due = () => {
      let at = Infinity;
      if (idleTimeoutMs > 0) at = this.#lastReadAt + idleTimeoutMs;
      if (deadMs > 0) at = Math.min(at, this.#lastReadAt + deadMs);
      if (pingMs > 0) at = Math.min(at, Math.max(this.#lastReadAt, this.#lastPingAt) + pingMs);
      return at;
    };
    this.#cancelReadTask = DEADLINES.schedule(due(), (now) => {
      if (this.#closing) return undefined;
      if (this.#readsHeld > 0) {
        this.#lastReadAt = now;
        return due();
      }
      const quiet = now - this.#lastReadAt;
      let reason: CloseReason | undefined;
      if (idleTimeoutMs > 0 && quiet >= idleTimeoutMs) reason = { kind: "idle", ms: idleTimeoutMs };
      else if (deadMs > 0 && quiet >= deadMs) {
        reason = { kind: "heartbeat", ms: deadMs, misses: heartbeatMisses };
      }
      if (reason) {
        void this.close(reason, { farewell: this.#opts.farewell?.(reason) });
        return undefined;
      }
      if (pingMs > 0 && quiet >= pingMs && now - this.#lastPingAt >= pingMs) {
        this.#lastPingAt = now;
        this.send(ping!());
      }
      return due();
    });
  }
}
