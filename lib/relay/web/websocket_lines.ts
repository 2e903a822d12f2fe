/**
 * A WebSocket as one more kind of relay client: lines in, lines out. {@linkcode WebSocketLines}
 * turns a {@linkcode WebSocketConn} into the byte stream a relay client already is (the
 * `ConnectionIo` a `Connection` runs on), so the relay's line reader, commands, outbox, flow
 * control and deadlines serve it unchanged:
 *
 * | direction | on the WebSocket | as relay bytes |
 * | --- | --- | --- |
 * | in | text message `hello` | `hello\n` |
 * | in | text message `a\nb` (or `a\r\nb`) | `a\nb\n`: **split**, two lines, as nc sends a paste |
 * | in | text message `a\n` | `a\n` (a final newline ends the line, it adds no empty one) |
 * | in | binary message | refused: close 1003, the read rejects with a `WebSocketError` |
 * | out | `[bob] hi\n* alice joined lobby\n` | two text messages, `[bob] hi` and `* alice joined lobby` |
 * | out | bytes that are not UTF-8 (an nc client sent them) | U+FFFD in their place: text frames must be UTF-8 |
 *
 * Multi-line messages are split rather than refused: a browser user who pastes three lines
 * means three lines, exactly what an nc user's paste is. `closeWrite()` (what a `Connection`
 * calls after its last flush) is the close handshake; bytes written once it started are
 * dropped (RFC 6455 section 5.5.1: no data after a close frame).
 *
 * @module
 */

import type { ConnectionIo } from "../../net/connection_options.ts";
import {
  CloseCode,
  WebSocketClosedError,
  type WebSocketConn,
  WebSocketError,
  type WebSocketMessage,
} from "../../net/websocket.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();
const LF = 0x0a;

/** Defaults of {@linkcode WebSocketLinesOptions}. */
export const WEBSOCKET_LINES_DEFAULTS = {
  /**
   * Most bytes written without a newline that are held back waiting for one: 1 MiB. The relay
   * only ever writes whole lines, so this bounds a misuse, not a normal case; past it the
   * partial line goes out as a message of its own.
   */
  maxPartialBytes: 1024 * 1024,
} as const;

/** Options of {@linkcode WebSocketLines}. */
export interface WebSocketLinesOptions {
  /** See {@linkcode WEBSOCKET_LINES_DEFAULTS}. @default {1048576} */
  maxPartialBytes?: number;
}

/**
 * Lines over a WebSocket, two ways: as a relay client's byte stream (`read`, `write`,
 * `closeWrite`, `close`: the `ConnectionIo` contract), or line by line (`for await`,
 * {@linkcode readLine}, {@linkcode sendLine}). Use one way of reading per connection.
 *
 * @example As the socket of a relay client's `Connection`: lines in, lines out
 * ```ts
 * import assert from "node:assert/strict";
 * import { BufferedReader } from "../../net/buffered_reader.ts";
 * import { Connection } from "../../net/connection.ts";
 * import { readRequestHead } from "../../net/http_request.ts";
 * import { acceptWebSocket } from "../../net/websocket.ts";
 * import { WebSocketLines } from "./websocket_lines.ts";
 * using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
 * const client = new WebSocket(`ws://127.0.0.1:${listener.addr.port}/ws`);
 * const reply = new Promise((resolve) => (client.onmessage = (e) => resolve(e.data)));
 * client.onopen = () => client.send("hello");
 * const conn = await listener.accept();
 * const reader = new BufferedReader(conn);
 * const ws = await acceptWebSocket(conn, (await readRequestHead(reader))!, { reader });
 * const connection = new Connection(new WebSocketLines(ws));
 * const ended = connection.run(async (s) => {
 *   const line = await s.reader.readLine(1024);
 *   s.send(new TextEncoder().encode(`[user1] ${new TextDecoder().decode(line!)}\n`));
 * });
 * assert.equal(await reply, "[user1] hello");
 * const closed = new Promise((resolve) => (client.onclose = (e) => resolve(e.code)));
 * assert.equal((await ended).reason.kind, "peer-closed");
 * assert.equal(await closed, 1000);
 * ```
 */
export class WebSocketLines implements ConnectionIo, AsyncIterable<string> {
  /** The WebSocket underneath. */
  readonly ws: WebSocketConn;
  #pending: Uint8Array = new Uint8Array(0);
  #partial: Uint8Array = new Uint8Array(0);
  #lines: string[] = [];
  #maxPartial: number;
  #closeCode: number = CloseCode.Normal;
  #closeReason = "";

  /** Wraps `ws`. */
  constructor(ws: WebSocketConn, options: WebSocketLinesOptions = {}) {
    this.ws = ws;
    this.#maxPartial = options.maxPartialBytes ?? WEBSOCKET_LINES_DEFAULTS.maxPartialBytes;
  }

  /** The close code and reason `closeWrite()` sends (1000 and none unless set). */
  setCloseStatus(code: number, reason = ""): void {
    this.#closeCode = code;
    this.#closeReason = reason;
  }

  /** Reads the bytes of the lines received: each text message and an LF (see the module doc). */
  async read(p: Uint8Array): Promise<number | null> {
    while (this.#pending.length === 0) {
      const text = await this.#nextText();
      if (text === null) return null;
      this.#pending = encoder.encode(text.endsWith("\n") ? text : `${text}\n`);
    }
    const n = Math.min(p.length, this.#pending.length);
    p.set(this.#pending.subarray(0, n));
    this.#pending = this.#pending.subarray(n);
    return n;
  }

  /**
   * Sends every whole line in `p` as one text message (CR before LF dropped); bytes after the
   * last LF wait for the rest of their line. Resolves `p.length` once the socket took them.
   */
  async write(p: Uint8Array): Promise<number> {
    if (this.ws.closing) return p.length;
    let data = p;
    if (this.#partial.length > 0) {
      data = new Uint8Array(this.#partial.length + p.length);
      data.set(this.#partial);
      data.set(p, this.#partial.length);
    }
    const last = data.lastIndexOf(LF);
    this.#partial = data.slice(last + 1);
    const lines = last < 0 ? [] : splitLines(decoder.decode(data.subarray(0, last)));
    if (this.#partial.length > this.#maxPartial) {
      lines.push(decoder.decode(this.#partial));
      this.#partial = new Uint8Array(0);
    }
    try {
      if (lines.length > 0) await this.ws.sendTexts(lines);
    } catch (error) {
      // A close started meanwhile: what was left to say is dropped, as above.
      if (!(error instanceof WebSocketClosedError)) throw error;
    }
    return p.length;
  }

  /** The close handshake with the status set by {@linkcode setCloseStatus} (bounded wait). */
  async closeWrite(): Promise<void> {
    await this.ws.close(this.#closeCode, this.#closeReason);
  }

  /** Closes the connection at once. */
  close(): void {
    this.ws.abort();
  }

  /** The next line received, or null once the WebSocket closed. */
  async readLine(): Promise<string | null> {
    while (this.#lines.length === 0) {
      const text = await this.#nextText();
      if (text === null) return null;
      this.#lines = splitLines(text.endsWith("\n") ? text.slice(0, -1) : text);
    }
    return this.#lines.shift()!;
  }

  /** Sends `line` as one text message, as it is. */
  sendLine(line: string): Promise<void> {
    return this.ws.sendText(line);
  }

  /** The lines received, until the WebSocket closes. */
  async *[Symbol.asyncIterator](): AsyncGenerator<string, void, undefined> {
    let line;
    while ((line = await this.readLine()) !== null) yield line;
  }

  async #nextText(): Promise<string | null> {
    const message: WebSocketMessage | null = await this.ws.readMessage();
    if (message === null) return null;
    if (message.type === "binary") {
      const reason = "binary messages are not accepted: send text lines";
      void this.ws.close(CloseCode.UnsupportedData, reason);
      throw new WebSocketError(CloseCode.UnsupportedData, `Cannot read line: ${reason}`);
    }
    return message.data;
  }
}

/** Splits at LF, dropping a CR before each. */
function splitLines(text: string): string[] {
  return text.split("\n").map((l) => (l.endsWith("\r") ? l.slice(0, -1) : l));
}

/**
 * Wraps a WebSocket as lines ({@linkcode WebSocketLines}).
 *
 * @example Lines in, lines out, with Deno's WebSocket client
 * ```ts
 * import assert from "node:assert/strict";
 * import { BufferedReader } from "../../net/buffered_reader.ts";
 * import { readRequestHead } from "../../net/http_request.ts";
 * import { acceptWebSocket } from "../../net/websocket.ts";
 * import { webSocketLines } from "./websocket_lines.ts";
 * using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
 * const client = new WebSocket(`ws://127.0.0.1:${listener.addr.port}/ws`);
 * const got: string[] = [];
 * const two = new Promise<void>((resolve) =>
 *   client.onmessage = (e) => got.push(e.data) === 2 && resolve()
 * );
 * client.onopen = () => client.send("a\r\nb");
 * const conn = await listener.accept();
 * const reader = new BufferedReader(conn);
 * const lines = webSocketLines(await acceptWebSocket(conn, (await readRequestHead(reader))!, { reader }));
 * assert.equal(await lines.readLine(), "a");
 * assert.equal(await lines.readLine(), "b");
 * await lines.write(new TextEncoder().encode("[bob] hi\n* alice joined lobby\n"));
 * await two;
 * assert.deepEqual(got, ["[bob] hi", "* alice joined lobby"]);
 * const closed = new Promise((resolve) => (client.onclose = (e) => resolve(e.code)));
 * await lines.closeWrite();
 * assert.equal(await closed, 1000);
 * ```
 */
export function webSocketLines(
  ws: WebSocketConn,
  options: WebSocketLinesOptions = {},
): WebSocketLines {
  return new WebSocketLines(ws, options);
}
