/**
 * First-bytes classification of a new connection, so one port can serve TLS, HTTP (browsers,
 * WebSocket upgrades), SOCKS and plain line clients (nc, telnet) alike.
 *
 * {@linkcode sniff} reads the fewest bytes that decide (never more than
 * {@linkcode SNIFF_DEFAULTS}.maxBytes) and hands them back with a {@linkcode PrefixedConn}
 * that replays them, so the protocol handler reads the stream from its first byte.
 *
 * | first bytes                                              | kind     | bytes read |
 * | -------------------------------------------------------- | -------- | ---------- |
 * | `16 03` (TLS handshake record, version major 3)          | `tls`    | 2          |
 * | a method and a space: `GET `, `POST `, `HEAD `, `PUT `,  | `http`   | 4 to 8     |
 * | `DELETE `, `OPTIONS `, `PATCH `, `CONNECT `              |          |            |
 * | `05` (SOCKS version 5, RFC 1928 section 3)               | `socks5` | 1          |
 * | `04` (SOCKS version 4)                                   | `socks4` | 1          |
 * | anything else, or a method prefix cut short by the wait  | `other`  | 1 to 7     |
 * | nothing within the wait, or end of input before any byte | `silent` | 0          |
 *
 * Bytes are asked for only as far as the shortest rule still open needs ("P" asks for 3 more:
 * `PUT ` decides at 4), so a line client's text is never read past its first few bytes here.
 * The wait ({@linkcode SNIFF_WAIT_MS}) bounds the whole classification; bytes that arrived in
 * time but met an event loop busy past the wait still count (the read gets a few more turns of
 * the loop). When it passes with a read still pending (a silent client), that read is not
 * lost: the {@linkcode PrefixedConn} adopts it and its first `read()` returns what it brings;
 * after the replay, reads go straight to the socket.
 *
 * @module
 */

import { DEADLINES } from "./deadline.ts";

/**
 * How long {@linkcode sniff} waits for a client's first bytes, in ms. Every client that speaks
 * first (TLS, HTTP, SOCKS) sends its opening bytes in the same round trip as the TCP
 * handshake's last ACK, so on any network it is in well before this; the wait is what a
 * client that never speaks first (`nc` used to listen only, a telnet user who has not typed
 * yet) costs before it is served as a line client. 300 ms is below what a person notices as
 * a delay before the relay's welcome, and far above a TLS client's think time on a busy
 * machine (a browser's ClientHello leaves within a few ms of the connect).
 */
export const SNIFF_WAIT_MS = 300;

/** Defaults of {@linkcode sniff}. */
export const SNIFF_DEFAULTS = {
  /** See {@linkcode SNIFF_WAIT_MS}. */
  waitMs: SNIFF_WAIT_MS,
  /** Most bytes ever read to decide: `OPTIONS ` and `CONNECT ` are 8. */
  maxBytes: 8,
} as const;

/** What a connection's first bytes say it is (see the module doc's table). */
export type SniffKind = "tls" | "http" | "socks5" | "socks4" | "other" | "silent";

/** First byte of a TLS handshake record (RFC 8446 section 5.1, ContentType handshake). */
export const TLS_HANDSHAKE_RECORD = 0x16;
/** Major version byte of every TLS record's legacy_record_version (0x0301..0x0303). */
export const TLS_VERSION_MAJOR = 0x03;
/** SOCKS protocol versions, the first byte a SOCKS client sends. */
export const SocksVersion = { V4: 0x04, V5: 0x05 } as const;
/** The HTTP methods that mark a request, each followed by one space (RFC 9110 section 9). */
export const HTTP_METHODS = [
  "GET",
  "POST",
  "HEAD",
  "PUT",
  "DELETE",
  "OPTIONS",
  "PATCH",
  "CONNECT",
] as const;

const METHOD_TOKENS = HTTP_METHODS.map((m) => new TextEncoder().encode(m + " "));

/** Options for {@linkcode sniff}. */
export interface SniffOptions {
  /** How long to wait for enough bytes to decide, in ms. @default {300} */
  waitMs?: number;
}

/** What {@linkcode sniff} found. */
export interface SniffResult {
  /** The kind of client. */
  kind: SniffKind;
  /** The bytes read to decide (0 to 8). */
  head: Uint8Array;
  /** The connection with `head` (and any read still pending) put back in front. */
  conn: PrefixedConn;
}

/**
 * Classifies `head`, the first bytes of a connection: a kind once they decide, or the number
 * of bytes to read next before they can (the shortest rule still open).
 *
 * @example Byte by byte
 * ```ts
 * import assert from "node:assert/strict";
 * import { classify } from "./sniff.ts";
 * const bytes = (s: string) => new TextEncoder().encode(s);
 * assert.equal(classify(bytes("")), 1);
 * assert.equal(classify(bytes("P")), 3); // "PUT " is the shortest still open
 * assert.equal(classify(bytes("PO")), 3); // "POST "
 * assert.equal(classify(bytes("POST ")), "http");
 * assert.equal(classify(bytes("POSTx")), "other");
 * assert.equal(classify(new Uint8Array([0x16])), 1);
 * assert.equal(classify(new Uint8Array([0x16, 0x03])), "tls");
 * assert.equal(classify(new Uint8Array([0x05])), "socks5");
 * assert.equal(classify(bytes("hello")), "other");
 * ```
 */
export function classify(head: Uint8Array): Exclude<SniffKind, "silent"> | number {
  if (head.length === 0) return 1;
  const first = head[0];
  if (first === TLS_HANDSHAKE_RECORD) {
    if (head.length < 2) return 1;
    return head[1] === TLS_VERSION_MAJOR ? "tls" : "other";
  }
  if (first === SocksVersion.V5) return "socks5";
  if (first === SocksVersion.V4) return "socks4";
  let need = Infinity;
  for (const token of METHOD_TOKENS) {
    const n = Math.min(token.length, head.length);
    let same = true;
    for (let i = 0; i < n && same; i++) same = head[i] === token[i];
    if (!same) continue;
    if (head.length >= token.length) return "http";
    need = Math.min(need, token.length - head.length);
  }
  return need === Infinity ? "other" : need;
}

/**
 * Reads the first bytes of `conn` and says what kind of client it is (see the module doc),
 * within `waitMs`. Never rejects for a quiet client: a read error or end of input is left for
 * the returned connection's reader to meet. Read `result.conn` from then on, not `conn`.
 *
 * @example A SOCKS5 greeting, replayed to the handler
 * ```ts
 * import assert from "node:assert/strict";
 * import { sniff } from "./sniff.ts";
 * using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
 * const client = await Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port });
 * await client.write(new Uint8Array([0x05, 0x01, 0x00]));
 * const { kind, head, conn } = await sniff(await listener.accept());
 * assert.equal(kind, "socks5");
 * assert.deepEqual(head, new Uint8Array([0x05]));
 * const buf = new Uint8Array(8);
 * assert.equal(await conn.read(buf), 1); // the replayed byte first
 * assert.deepEqual(buf.subarray(0, 1), new Uint8Array([0x05]));
 * client.close();
 * conn.close();
 * ```
 */
export async function sniff(conn: Deno.TcpConn, options: SniffOptions = {}): Promise<SniffResult> {
  const waitMs = options.waitMs ?? SNIFF_DEFAULTS.waitMs;
  const head = new Uint8Array(SNIFF_DEFAULTS.maxBytes);
  let have = 0;
  let wake: (() => void) | undefined;
  const cancel = DEADLINES.after(waitMs, () => wake?.());
  const expired = new Promise<"timeout">((resolve) => (wake = () => resolve("timeout")));
  try {
    while (true) {
      const verdict = classify(head.subarray(0, have));
      if (typeof verdict === "string") return done(verdict);
      const want = Math.min(verdict, head.length - have);
      const buf = new Uint8Array(want);
      const reading = readChunk(conn, buf);
      const got = await inTime(reading, expired);
      if (got === "late") return done(have === 0 ? "silent" : "other", reading);
      if (got === null || got instanceof Error) {
        // End of input or an error: replay it to the reader after the bytes read so far.
        return done(have === 0 ? "silent" : "other", reading);
      }
      head.set(got, have);
      have += got.length;
    }
  } finally {
    cancel();
  }

  function done(kind: SniffKind, pending?: Promise<Uint8Array | null | Error>): SniffResult {
    const bytes = head.slice(0, have);
    return { kind, head: bytes, conn: new PrefixedConn(conn, bytes, { pending }) };
  }
}

/**
 * The read's result, or "late" when the wait passed first and the read is still pending after
 * {@linkcode SNIFF_GRACE_TURNS} more turns of the event loop. Bytes that came in time but meet
 * a busy loop (a burst of TLS handshakes, a long GC: the timer and the read are then ready
 * together, and the timer may run first) are already in the socket, and their read completes
 * within those turns; only a client that really did not speak in time is late.
 */
async function inTime(
  reading: Promise<Uint8Array | null | Error>,
  expired: Promise<"timeout">,
): Promise<Uint8Array | null | Error | "late"> {
  const first = await Promise.race([reading, expired]);
  if (first !== "timeout") return first;
  for (let turn = 0; turn < SNIFF_GRACE_TURNS; turn++) {
    const got = await Promise.race([reading, nextTurn()]);
    if (got !== "late") return got;
  }
  return "late";
}

/** Turns of the event loop a read gets after the sniff wait passed (see {@linkcode inTime}). */
const SNIFF_GRACE_TURNS = 3;

/** Resolves "late" once the event loop has run its timers again (after polling for I/O). */
function nextTurn(): Promise<"late"> {
  return new Promise((resolve) => setTimeout(() => resolve("late"), 0));
}

/** One read into `buf`: the bytes read, null at end of input, or the error (never rejects). */
async function readChunk(conn: Deno.Conn, buf: Uint8Array): Promise<Uint8Array | null | Error> {
  try {
    const n = await conn.read(buf);
    return n === null ? null : buf.subarray(0, n);
  } catch (error) {
    return error instanceof Error ? error : new Error(String(error));
  }
}

/** Options for {@linkcode PrefixedConn}. */
export interface PrefixedConnOptions {
  /**
   * A read of the socket still under way (from {@linkcode sniff} when its wait passed): its
   * bytes, end of input or error come after the head, before the socket is read again.
   */
  pending?: Promise<Uint8Array | null | Error>;
}

/**
 * A TCP connection with bytes already read from it put back in front: `read()` returns `head`
 * first (then a pending read's result, if any), then reads the socket. Everything else (write,
 * close, closeWrite, addresses, setNoDelay, ...) goes to the socket. `readable` replays too.
 *
 * @example Replay a head, then read the socket
 * ```ts
 * import assert from "node:assert/strict";
 * import { PrefixedConn } from "./sniff.ts";
 * using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
 * const client = await Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port });
 * const conn = new PrefixedConn(await listener.accept(), new TextEncoder().encode("he"));
 * await client.write(new TextEncoder().encode("llo"));
 * client.closeWrite();
 * const text = await new Response(conn.readable).text();
 * assert.equal(text, "hello");
 * client.close();
 * ```
 */
export class PrefixedConn implements Deno.TcpConn {
  /** The socket underneath. */
  readonly conn: Deno.TcpConn;
  #head: Uint8Array;
  #pending: Promise<Uint8Array | null | Error> | undefined;
  #readable: ReadableStream<Uint8Array<ArrayBuffer>> | undefined;

  /** Wraps `conn` so that `head` is read first. */
  constructor(conn: Deno.TcpConn, head: Uint8Array, options: PrefixedConnOptions = {}) {
    this.conn = conn;
    this.#head = head;
    this.#pending = options.pending;
  }

  /** Bytes of the head not yet read. */
  get unread(): number {
    return this.#head.length;
  }

  /**
   * Reads the head first, then a pending read's result, then the socket. Once both are
   * replayed, a read is the socket's own read, with no extra promise or copy.
   */
  read(p: Uint8Array): Promise<number | null> {
    if (this.#head.length === 0 && this.#pending === undefined) return this.conn.read(p);
    return this.#replay(p);
  }

  async #replay(p: Uint8Array): Promise<number | null> {
    if (p.length === 0) return 0;
    if (this.#head.length === 0 && this.#pending) {
      const pending = this.#pending;
      this.#pending = undefined;
      const got = await pending;
      if (got === null) return null;
      if (got instanceof Error) throw got;
      this.#head = got;
    }
    if (this.#head.length > 0) {
      const n = Math.min(p.length, this.#head.length);
      p.set(this.#head.subarray(0, n));
      this.#head = this.#head.subarray(n);
      return n;
    }
    return await this.conn.read(p);
  }

  /** Writes to the socket. */
  write(p: Uint8Array): Promise<number> {
    return this.conn.write(p);
  }

  /** Closes the socket. */
  close(): void {
    this.conn.close();
  }

  /** Shuts down the socket's write side. */
  closeWrite(): Promise<void> {
    return this.conn.closeWrite();
  }

  /** The socket's local address. */
  get localAddr(): Deno.NetAddr {
    return this.conn.localAddr;
  }

  /** The peer's address. */
  get remoteAddr(): Deno.NetAddr {
    return this.conn.remoteAddr;
  }

  /** Sets TCP_NODELAY on the socket. */
  setNoDelay(noDelay?: boolean): void {
    this.conn.setNoDelay(noDelay);
  }

  /** Sets SO_KEEPALIVE on the socket. */
  setKeepAlive(keepAlive?: boolean): void {
    this.conn.setKeepAlive(keepAlive);
  }

  /** Lets the socket keep the process alive. */
  ref(): void {
    this.conn.ref();
  }

  /** Stops the socket from keeping the process alive. */
  unref(): void {
    this.conn.unref();
  }

  /** The stream of bytes read, head first; cancelling it closes the connection. */
  get readable(): ReadableStream<Uint8Array<ArrayBuffer>> {
    return this.#readable ??= readableOf(this);
  }

  /** The socket's writable stream. */
  get writable(): WritableStream<Uint8Array<ArrayBufferLike>> {
    return this.conn.writable;
  }

  /** Closes the socket. */
  [Symbol.dispose](): void {
    try {
      this.close();
    } catch {
      // Already closed.
    }
  }
}

/** A readable stream pulling from `conn.read()`; cancelling it closes the connection. */
function readableOf(conn: Deno.Conn): ReadableStream<Uint8Array<ArrayBuffer>> {
  return new ReadableStream<Uint8Array<ArrayBuffer>>({
    async pull(controller) {
      const buf = new Uint8Array(16 * 1024);
      const n = await conn.read(buf);
      if (n === null) controller.close();
      else controller.enqueue(buf.subarray(0, n));
    },
    cancel() {
      try {
        conn.close();
      } catch {
        // Already closed.
      }
    },
  }, { highWaterMark: 0 });
}
