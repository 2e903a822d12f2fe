/**
 * {@linkcode WebSocketConn}: one server-side WebSocket connection after its 101 (RFC 6455
 * sections 5 to 7): whole messages in, pings answered, text/binary/close out, and the close
 * handshake. `websocket.ts` makes one with `acceptWebSocket`; the frame rules are in
 * `websocket_frame.ts`.
 *
 * Ends, each once: the peer's close frame is echoed with its code, then the connection is
 * half-closed and read to its end (server closes first, no reset); a broken rule sends its close
 * code and ends the same way; {@linkcode WebSocketConn.close} sends ours and waits up to
 * `closeTimeoutMs` for the peer's; the idle timeout sends 1001 and closes at once (a read is
 * waiting then, so nothing reads beside it); end of input or {@linkcode WebSocketConn.abort}
 * closes at once.
 *
 * @module
 */

import { BufferedReader } from "./buffered_reader.ts";
import { DEADLINES, withTimeout } from "./deadline.ts";
import { TimeoutError, UnexpectedEofError } from "./errors.ts";
import { closeAfterLastWrite } from "./linger.ts";
import { writeAll } from "./write_all.ts";
import {
  CloseCode,
  type CloseStatus,
  decodeUtf8,
  encodeClosePayload,
  encodeFrame,
  type FrameHeader,
  isValidCloseCode,
  Opcode,
  parseClosePayload,
  readFrameHeader,
  unmask,
  WebSocketError,
} from "./websocket_frame.ts";

/** Defaults of {@linkcode WebSocketOptions}, in one place. */
export const WEBSOCKET_DEFAULTS = {
  /** Largest message, all fragments together: 1 MiB (a chat line is far shorter). */
  maxMessageBytes: 1024 * 1024,
  /** Close with 1001 when no whole frame arrived this long while a read waits, in ms (0: never). */
  idleTimeoutMs: 0,
  /** How long a close waits for the peer's close frame, then for it to close TCP, in ms. */
  closeTimeoutMs: 2_000,
} as const;

/** Options of a {@linkcode WebSocketConn}; defaults in {@linkcode WEBSOCKET_DEFAULTS}. */
export interface WebSocketOptions {
  /** Largest message accepted; more is closed with 1009. @default {1048576} */
  maxMessageBytes?: number;
  /** Idle read timeout in ms (1001 when it passes); 0 disables. @default {0} */
  idleTimeoutMs?: number;
  /** Close handshake timeout in ms. @default {2000} */
  closeTimeoutMs?: number;
  /** The reader the request head was read with, so bytes it read ahead are not lost. */
  reader?: BufferedReader;
}

/** A whole message. */
export type WebSocketMessage =
  | { type: "text"; data: string }
  | { type: "binary"; data: Uint8Array };

/**
 * Sending on a WebSocket that is closing or closed.
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert/strict";
 * import { WebSocketClosedError } from "./websocket_conn.ts";
 * const err = new WebSocketClosedError("Cannot send a text message: the WebSocket is closing");
 * assert.equal(err.name, "WebSocketClosedError");
 * ```
 */
export class WebSocketClosedError extends Error {
  /** Creates the error. */
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "WebSocketClosedError";
  }
}

/** One message being gathered from fragments. */
interface Fragments {
  opcode: number;
  buf: Uint8Array;
  length: number;
}

/**
 * A server-side WebSocket over an upgraded connection. Reads are serialised (a second
 * `readMessage()` waits for the first), and so are writes, so a pong never lands inside a
 * message. Server frames are never masked and never fragmented.
 *
 * @example A client's close frame is echoed; `closed` has its status
 * ```ts
 * import assert from "node:assert/strict";
 * import { WebSocketConn } from "./websocket_conn.ts";
 * using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
 * const client = await Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port });
 * const ws = new WebSocketConn(await listener.accept()); // as if after its 101
 * // A masked close frame: code 1000, reason "ok", mask key 0 (XOR with 0 keeps the bytes).
 * await client.write(new Uint8Array([0x88, 0x84, 0, 0, 0, 0, 0x03, 0xe8, 0x6f, 0x6b]));
 * assert.equal(await ws.readMessage(), null);
 * const echo = new Uint8Array(4);
 * assert.equal(await client.read(echo), 4);
 * assert.deepEqual(echo, new Uint8Array([0x88, 0x02, 0x03, 0xe8])); // unmasked, same code
 * client.close();
 * assert.deepEqual(await ws.closed, { code: 1000, reason: "ok" });
 * ```
 */
export class WebSocketConn {
  #conn: Deno.Conn;
  #reader: BufferedReader;
  #max: number;
  #idleMs: number;
  #closeMs: number;
  /** "open", then "closing" once our close frame is on its way. */
  #state: "open" | "closing" = "open";
  #ending = false;
  #aborted = false;
  #idleError: TimeoutError | undefined;
  #peerStatus: CloseStatus | undefined;
  #frag: Fragments | undefined;
  #reads: Promise<unknown> = Promise.resolve();
  #pendingReads = 0;
  #writes: Promise<unknown> = Promise.resolve();
  #closed = Promise.withResolvers<CloseStatus>();

  /** Wraps an upgraded `conn` (the 101 already sent). */
  constructor(conn: Deno.Conn, options: WebSocketOptions = {}) {
    this.#conn = conn;
    this.#reader = options.reader ?? new BufferedReader(conn);
    this.#max = options.maxMessageBytes ?? WEBSOCKET_DEFAULTS.maxMessageBytes;
    this.#idleMs = options.idleTimeoutMs ?? WEBSOCKET_DEFAULTS.idleTimeoutMs;
    this.#closeMs = options.closeTimeoutMs ?? WEBSOCKET_DEFAULTS.closeTimeoutMs;
  }

  /** True once a close started (ours or the peer's): nothing more can be sent. */
  get closing(): boolean {
    return this.#state !== "open" || this.#ending;
  }

  /**
   * Resolves once the TCP connection is closed, with the status of the peer's close frame
   * (1005 when it had none, 1006 when the connection ended without one).
   */
  get closed(): Promise<CloseStatus> {
    return this.#closed.promise;
  }

  /**
   * The next whole message; null once the connection closed (the peer's close frame was
   * echoed, or it went away). Pings are answered and pongs skipped on the way. Rejects with a
   * {@linkcode WebSocketError} when the peer broke the protocol (its close code was sent), with a
   * `TimeoutError` after the idle timeout (1001 was sent), or with the socket's error.
   */
  readMessage(): Promise<WebSocketMessage | null> {
    this.#pendingReads++;
    const next = this.#reads.then(() => this.#readOne());
    this.#reads = next.catch(() => {});
    return next.finally(() => this.#pendingReads--);
  }

  /** Sends a text message. Rejects with {@linkcode WebSocketClosedError} once closing. */
  sendText(text: string): Promise<void> {
    return this.#send(encodeFrame(Opcode.Text, encoder.encode(text)), "a text message");
  }

  /** Sends a binary message. Rejects with {@linkcode WebSocketClosedError} once closing. */
  sendBinary(data: Uint8Array): Promise<void> {
    return this.#send(encodeFrame(Opcode.Binary, data), "a binary message");
  }

  /** Sends each string as one text message, all in one write. */
  sendTexts(texts: Iterable<string>): Promise<void> {
    const frames = [...texts].map((t) => encodeFrame(Opcode.Text, encoder.encode(t)));
    const out = new Uint8Array(frames.reduce((n, f) => n + f.length, 0));
    let off = 0;
    for (const f of frames) {
      out.set(f, off);
      off += f.length;
    }
    return this.#send(out, "text messages");
  }

  /** Sends a ping (at most 125 bytes); the peer's pong is skipped by `readMessage`. */
  ping(data: Uint8Array = new Uint8Array(0)): Promise<void> {
    if (data.length > 125) {
      return Promise.reject(new RangeError(`Cannot ping with ${data.length} bytes: max 125`));
    }
    return this.#send(encodeFrame(Opcode.Ping, data), "a ping");
  }

  /**
   * Starts or finishes the close handshake: sends a close frame with `code` (1000-1003,
   * 1007-1011 or 3000-4999) and `reason` (cut to 123 bytes), waits up to `closeTimeoutMs` for the
   * peer's (reading and dropping messages if no read is waiting), then closes TCP. Resolves
   * when closed; safe to call more than once.
   */
  async close(code: number = CloseCode.Normal, reason = ""): Promise<void> {
    if (!isValidCloseCode(code)) throw new RangeError(`Cannot close with code ${code}`);
    if (this.#state === "open" && !this.#ending) {
      this.#state = "closing";
      const cancel = DEADLINES.after(this.#closeMs, () => this.#end({ linger: false }));
      try {
        await this.#write(encodeFrame(Opcode.Close, encodeClosePayload(code, reason)));
        if (this.#pendingReads === 0) void this.#drain();
      } catch {
        this.#end({ linger: false });
      }
      await this.#closed.promise;
      cancel();
    }
    await this.#closed.promise;
  }

  /** Closes the TCP connection at once, without a close frame. */
  abort(): void {
    this.#end({ linger: false });
  }

  async #drain(): Promise<void> {
    try {
      while ((await this.readMessage()) !== null);
    } catch {
      // Ended by the peer's error or the timeout either way.
    }
  }

  #send(frame: Uint8Array, what: string): Promise<void> {
    if (this.closing) {
      return Promise.reject(
        new WebSocketClosedError(`Cannot send ${what}: the WebSocket is closing`),
      );
    }
    return this.#write(frame);
  }

  #write(bytes: Uint8Array): Promise<void> {
    const next = this.#writes.then(() => writeAll(this.#conn, bytes));
    this.#writes = next.catch(() => {});
    return next;
  }

  async #readOne(): Promise<WebSocketMessage | null> {
    while (true) {
      if (this.#ending) return null;
      let message: WebSocketMessage | null | undefined;
      try {
        message = await this.#readFrame();
      } catch (error) {
        if (this.#idleError) throw this.#idleError;
        if (this.#aborted) return null;
        if (error instanceof WebSocketError) {
          this.#fail(error);
          throw error;
        }
        if (error instanceof UnexpectedEofError) {
          this.#peerStatus ??= { code: CloseCode.Abnormal, reason: "closed inside a frame" };
          this.#end({ linger: false });
          return null;
        }
        this.#end({ linger: false });
        throw error;
      }
      if (message === null) return null;
      if (message !== undefined && this.#state === "open") return message;
      // undefined: a control frame or a fragment; while closing, messages are dropped too.
    }
  }

  /** Reads one frame: a whole message, undefined (nothing for the caller yet), or null (closed). */
  async #readFrame(): Promise<WebSocketMessage | null | undefined> {
    const cancelIdle = this.#idleMs > 0
      ? DEADLINES.after(this.#idleMs, () => this.#expireIdle())
      : () => {};
    try {
      const header = await readFrameHeader(this.#reader, { maxPayload: this.#max });
      if (header === null) {
        this.#peerStatus ??= { code: CloseCode.Abnormal, reason: "closed without a close frame" };
        this.#end({ linger: false });
        return null;
      }
      if (header.opcode >= Opcode.Close) return await this.#control(header);
      return await this.#data(header);
    } finally {
      cancelIdle();
    }
  }

  async #control(header: FrameHeader): Promise<null | undefined> {
    const payload = await this.#reader.readExact(header.length, header.length);
    unmask(payload, header.mask);
    if (header.opcode === Opcode.Ping) {
      if (this.#state === "open") await this.#write(encodeFrame(Opcode.Pong, payload));
      return undefined;
    }
    if (header.opcode === Opcode.Pong) return undefined;
    const status = parseClosePayload(payload);
    this.#peerStatus = status;
    if (this.#state === "open") {
      // Echo the peer's code (RFC 6455 section 5.5.1); a close without one gets none back.
      this.#state = "closing";
      const echo = status.code === CloseCode.NoStatus
        ? new Uint8Array(0)
        : encodeClosePayload(status.code, "");
      this.#end({ send: encodeFrame(Opcode.Close, echo), linger: true });
    } else {
      this.#end({ linger: true });
    }
    return null;
  }

  async #data(header: FrameHeader): Promise<WebSocketMessage | undefined> {
    const { opcode, length, fin } = header;
    const fail = (why: string) =>
      new WebSocketError(CloseCode.ProtocolError, `Cannot read frame: ${why}`);
    let frag = this.#frag;
    if (opcode === Opcode.Continuation) {
      if (!frag) throw fail("continuation frame without a message to continue");
    } else if (frag) {
      throw fail("new message inside a fragmented one");
    } else if (fin) {
      const payload = await this.#reader.readExact(length, this.#max);
      unmask(payload, header.mask);
      return message(opcode, payload);
    } else {
      frag = this.#frag = { opcode, buf: new Uint8Array(Math.min(this.#max, 4096)), length: 0 };
    }
    if (frag.length + length > this.#max) {
      throw new WebSocketError(
        CloseCode.MessageTooBig,
        `Cannot read message: fragments exceed limit ${this.#max} bytes`,
      );
    }
    if (frag.length + length > frag.buf.length) {
      const size = Math.min(this.#max, Math.max(frag.length + length, frag.buf.length * 2));
      const grown = new Uint8Array(size);
      grown.set(frag.buf.subarray(0, frag.length));
      frag.buf = grown;
    }
    const part = frag.buf.subarray(frag.length, frag.length + length);
    await this.#reader.readFull(part);
    unmask(part, header.mask);
    frag.length += length;
    if (!fin) return undefined;
    this.#frag = undefined;
    return message(frag.opcode, frag.buf.subarray(0, frag.length));
  }

  #expireIdle(): void {
    if (this.#ending) return;
    this.#idleError = new TimeoutError(
      `Timed out after ${this.#idleMs} ms waiting for a WebSocket frame`,
    );
    const send = this.#state === "open"
      ? encodeFrame(Opcode.Close, encodeClosePayload(CloseCode.GoingAway, "idle timeout"))
      : undefined;
    this.#state = "closing";
    // A read is under way: no lingering read beside it; closing ends it.
    this.#end({ send, linger: false });
  }

  #fail(error: WebSocketError): void {
    const send = this.#state === "open"
      ? encodeFrame(Opcode.Close, encodeClosePayload(error.code, error.message))
      : undefined;
    this.#state = "closing";
    this.#end({ send, linger: true });
  }

  /**
   * Ends the connection once: sends `send` (bounded by the close timeout), then either
   * half-closes and discards input until the peer closes (`linger`, only when no read is under
   * way) or closes at once.
   */
  #end(options: { send?: Uint8Array; linger: boolean }): void {
    if (this.#ending) {
      if (!options.linger) this.#closeTransport();
      return;
    }
    this.#ending = true;
    void (async () => {
      if (options.send) {
        try {
          await withTimeout(this.#write(options.send), this.#closeMs, {
            what: "the close frame to be sent",
          });
        } catch {
          // The peer does not read or is gone.
        }
      }
      if (options.linger && !this.#aborted) {
        await closeAfterLastWrite(this.#conn, { timeoutMs: this.#closeMs });
      }
      this.#closeTransport();
      this.#closed.resolve(
        this.#peerStatus ?? { code: CloseCode.Abnormal, reason: "closed without a close frame" },
      );
    })();
  }

  #closeTransport(): void {
    if (this.#aborted) return;
    this.#aborted = true;
    try {
      this.#conn.close();
    } catch {
      // Already closed.
    }
  }
}

const encoder = new TextEncoder();

function message(opcode: number, payload: Uint8Array): WebSocketMessage {
  if (opcode === Opcode.Text) return { type: "text", data: decodeUtf8(payload, "text message") };
  return { type: "binary", data: payload };
}
