/**
 * TLS on a connection sockit already holds, in both directions, as a `Deno.TcpConn`.
 *
 * **Server side after sniffing.** Deno 2.9 has no server-side TLS upgrade of an accepted
 * socket: `Deno.startTls` is client-only and `Deno.listenTls` owns its listener. `node:tls`
 * does it: a `TLSSocket` with `isServer: true` runs over any Duplex stream (Deno's rustls
 * TLSWrap, fed through its JSStreamSocket). {@linkcode acceptTls} wraps the accepted
 * connection, typically a `PrefixedConn` (`sniff.ts`) whose replayed head is the ClientHello
 * that sniffing read, in such a Duplex, so nothing read is lost.
 *
 * **Client side.** `Deno.connectTls` does not show the peer's certificate (its `handshake()`
 * gives `alpnProtocol` only) and adds any `caCerts` to the public roots, so it cannot pin a
 * self-signed relay. `node:tls` can: {@linkcode connectTlsSocket} returns the peer's DER
 * certificate. With `rejectUnauthorized: false` Deno's verifier still checks the handshake
 * signature with the presented certificate's key (it defers only chain errors), so a pinned
 * fingerprint that matches means the peer holds that certificate's private key. With `ca`,
 * the given certificates replace the public roots and the name is checked.
 *
 * **Flow control lives below TLS.** In Deno 2.9 a paused `TLSSocket` drops decrypted bytes
 * (its TLSWrap `readStop` only detaches the reader; measured: 25 of 100 MiB arrived when the
 * client did not read for a while), so the socket is never paused. Both sides run over a
 * Duplex on a `Deno.TcpConn` instead of node's own TCP handle, and that Duplex stops reading
 * the TCP socket while {@linkcode TLS_DEFAULTS}.readHighWaterBytes of decrypted bytes wait for
 * the reader: the peer meets TCP backpressure, memory stays bounded, nothing is lost.
 *
 * Either way the result is a {@linkcode TlsStreamConn}: `read`/`write` with the
 * `Deno.Conn` contract (a write resolves once the TCP socket took the bytes, so the writer's
 * stall detection sees a stuck peer), `closeWrite` (close_notify, then TCP FIN), `close`,
 * the TCP socket's addresses and options, `readable`/`writable`.
 *
 * @module
 */

import { Buffer } from "node:buffer";
import { Duplex } from "node:stream";
import tls from "node:tls";
import { isIP } from "node:net";
import { withTimeout } from "./deadline.ts";
import { fingerprintOfDer } from "./tls_cert.ts";
import { NodeStreamReader } from "./node_stream_reader.ts";

/** Limits of TLS connections, with their reasons. */
export const TLS_DEFAULTS = {
  /**
   * Most time for a TLS handshake, in ms: a few round trips and one signature each way,
   * far below this even on a slow link; a client that stalls mid-handshake is cut.
   */
  handshakeTimeoutMs: 10_000,
  /**
   * Decrypted bytes held for a reader before the TCP socket beneath is no longer read; reading
   * resumes below half of it. Bounds memory for a peer that sends faster than the handler
   * reads (the peer then meets TCP backpressure).
   */
  readHighWaterBytes: 64 * 1024,
  /**
   * Size of the first read from the TCP socket beneath a TLS connection; each read that fills
   * its buffer doubles the next one, up to {@linkcode TLS_DEFAULTS.maxSocketReadBytes}, and one
   * that fills less than a quarter halves it, so an idle connection holds a small buffer and a
   * busy one reads many records at once (a relay reading 16 KiB at a time from TLS senders
   * made four times as many messages and writes). What waits for a reader is then at most
   * `readHighWaterBytes` and one read.
   */
  socketReadBytes: 16 * 1024,
  /** The most one read from the TCP socket beneath a TLS connection asks for. */
  maxSocketReadBytes: 256 * 1024,
} as const;

/**
 * The TLS handshake failed or timed out; the message names the peer and the cause.
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert/strict";
 * import { TlsHandshakeError } from "./tls_stream.ts";
 * const err = new TlsHandshakeError("Cannot complete the TLS handshake with a:1: reset");
 * assert.equal(err.name, "TlsHandshakeError");
 * ```
 */
export class TlsHandshakeError extends Error {
  /** Creates a handshake error; pass the TLS layer's error as `cause`. */
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "TlsHandshakeError";
  }
}

/** A certificate with its key, both PEM, for the server side. */
export interface TlsServerKey {
  /** Certificate chain, PEM (leaf first). */
  cert: string;
  /** Private key, PEM. */
  key: string;
}

/** Options for {@linkcode acceptTls}. */
export interface AcceptTlsOptions {
  /** Protocols offered for ALPN, most preferred first (e.g. `["http/1.1"]`). */
  alpnProtocols?: string[];
  /** Most time for the handshake, in ms. @default {10000} */
  timeoutMs?: number;
}

/**
 * Runs the server side of a TLS handshake on `conn` (an accepted TCP connection, or a
 * {@linkcode PrefixedConn} replaying the ClientHello that sniffing read) and resolves the
 * encrypted connection. On failure or timeout `conn` is closed and a
 * {@linkcode TlsHandshakeError} says why.
 *
 * @example Sniff, then serve TLS on the same socket
 * ```ts
 * import assert from "node:assert/strict";
 * import { acceptTls } from "./tls_stream.ts";
 * import { createSelfSignedCert } from "./tls_cert.ts";
 * import { sniff } from "./sniff.ts";
 * const key = await createSelfSignedCert({ names: ["localhost"] });
 * using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
 * const client = Deno.connectTls({
 *   hostname: "localhost", port: listener.addr.port, caCerts: [key.cert],
 * });
 * const sniffed = await sniff(await listener.accept());
 * assert.equal(sniffed.kind, "tls");
 * const server = await acceptTls(sniffed.conn, key);
 * const c = await client;
 * await c.write(new TextEncoder().encode("hi"));
 * const buf = new Uint8Array(2);
 * assert.equal(await server.read(buf), 2);
 * assert.equal(new TextDecoder().decode(buf), "hi");
 * c.close();
 * server.close();
 * ```
 */
export async function acceptTls(
  conn: Deno.TcpConn,
  key: TlsServerKey,
  options: AcceptTlsOptions = {},
): Promise<TlsStreamConn> {
  const peer = `${conn.remoteAddr.hostname}:${conn.remoteAddr.port}`;
  let context: tls.SecureContext;
  try {
    context = secureContextOf(key);
  } catch (error) {
    conn.close();
    throw new TlsHandshakeError(`Cannot serve TLS to ${peer}: ${messageOf(error)}`, {
      cause: error,
    });
  }
  const flow = new ReadFlow();
  const socket = new tls.TLSSocket(duplexOf(conn, flow), {
    isServer: true,
    secureContext: context,
    ALPNProtocols: options.alpnProtocols,
  });
  const stream = new TlsStreamConn(socket, conn, flow);
  await handshake(stream, socket, "secure", {
    what: `the TLS handshake with ${peer}`,
    timeoutMs: options.timeoutMs ?? TLS_DEFAULTS.handshakeTimeoutMs,
  });
  return stream;
}

/** Options for {@linkcode connectTlsSocket}. */
export interface ConnectTlsSocketOptions {
  /** Trust only these CA certificates (PEM), instead of the public roots. */
  ca?: string[];
  /**
   * Fail the handshake unless the chain verifies and the name matches. False leaves the
   * certificate for the caller to judge (see {@linkcode TlsStreamConn.peerCertificate}).
   * @default {true}
   */
  rejectUnauthorized?: boolean;
  /** SNI and the name checked. @default {the hostname, unless it is an IP address} */
  servername?: string;
  /** Protocols offered for ALPN. */
  alpnProtocols?: string[];
  /** Most time to connect and handshake, in ms. @default {10000} */
  timeoutMs?: number;
}

/**
 * Connects to `hostname:port` with TLS (client side) and resolves once the handshake is done,
 * before any application byte is sent. See the module doc for what is verified.
 *
 * @example The peer's certificate, to compare with a pin
 * ```ts
 * import assert from "node:assert/strict";
 * import { connectTlsSocket } from "./tls_stream.ts";
 * import { createSelfSignedCert } from "./tls_cert.ts";
 * const key = await createSelfSignedCert({ names: ["localhost"] });
 * using listener = Deno.listenTls({ hostname: "127.0.0.1", port: 0, ...key });
 * const accepted = listener.accept().then(async (c) => (await c.handshake(), c));
 * const conn = await connectTlsSocket("127.0.0.1", listener.addr.port, {
 *   rejectUnauthorized: false,
 * });
 * assert.equal(conn.fingerprint, key.fingerprint);
 * conn.close();
 * (await accepted).close();
 * ```
 */
export async function connectTlsSocket(
  hostname: string,
  port: number,
  options: ConnectTlsSocketOptions = {},
): Promise<TlsStreamConn> {
  const host = hostname.replace(/^\[(.*)\]$/, "$1");
  const servername = options.servername ?? (isIP(host) ? undefined : host);
  const timeoutMs = options.timeoutMs ?? TLS_DEFAULTS.handshakeTimeoutMs;
  const started = performance.now();
  const tcp = await withTimeout(Deno.connect({ hostname: host, port }), timeoutMs, {
    what: `a TCP connection to ${host}:${port}`,
  });
  const flow = new ReadFlow();
  const socket = tls.connect({
    socket: duplexOf(tcp, flow),
    host, // the name checked when there is no servername (an IP address: its IP SANs)
    servername,
    ca: options.ca,
    rejectUnauthorized: options.rejectUnauthorized ?? true,
    ALPNProtocols: options.alpnProtocols,
  });
  const stream = new TlsStreamConn(socket, tcp, flow);
  await handshake(stream, socket, "secureConnect", {
    what: `the TLS handshake with ${host}:${port}`,
    timeoutMs: Math.max(1, timeoutMs - (performance.now() - started)),
  });
  return stream;
}

/**
 * Whether the TCP socket beneath a TLS connection may be read: held while the reader has
 * {@linkcode TLS_DEFAULTS}.readHighWaterBytes waiting (see the module doc).
 */
class ReadFlow {
  #released: PromiseWithResolvers<void> | undefined;

  /** True while reads of the TCP socket wait. */
  get held(): boolean {
    return this.#released !== undefined;
  }

  /** Stops reads of the TCP socket until {@linkcode release}. */
  hold(): void {
    this.#released ??= Promise.withResolvers<void>();
  }

  /** Lets reads of the TCP socket go on. */
  release(): void {
    this.#released?.resolve();
    this.#released = undefined;
  }

  /** Resolves once reads may go on. */
  whenReleased(): Promise<void> {
    return this.#released?.promise ?? Promise.resolve();
  }
}

/**
 * A TLS connection (either side) with the `Deno.TcpConn` calls, over a `node:tls` socket.
 * Made by {@linkcode acceptTls} and {@linkcode connectTlsSocket}.
 *
 * @example Half-close: the peer reads end of file and may still answer
 * ```ts
 * import assert from "node:assert/strict";
 * import { acceptTls, connectTlsSocket } from "./tls_stream.ts";
 * import { createSelfSignedCert } from "./tls_cert.ts";
 * const key = await createSelfSignedCert({ names: ["localhost"] });
 * using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
 * const connecting = connectTlsSocket("localhost", listener.addr.port, { ca: [key.cert] });
 * const server = await acceptTls(await listener.accept(), key);
 * const client = await connecting;
 * assert.equal(client.protocol, "TLSv1.3");
 * assert.equal(server.servername, "localhost");
 * await client.closeWrite();
 * assert.equal(await server.read(new Uint8Array(8)), null);
 * await server.write(new TextEncoder().encode("bye"));
 * await server.closeWrite();
 * assert.equal(await new Response(client.readable).text(), "bye");
 * client.close();
 * server.close();
 * ```
 */
export class TlsStreamConn implements Deno.TcpConn {
  #socket: tls.TLSSocket;
  #tcp: Deno.TcpConn;
  #flow: ReadFlow;
  #reader: NodeStreamReader;
  #closed = false;
  #readable: ReadableStream<Uint8Array<ArrayBuffer>> | undefined;
  #writable: WritableStream<Uint8Array<ArrayBufferLike>> | undefined;

  /** Wraps a `node:tls` socket running over `tcp` through a Duplex whose reads `flow` gates. */
  constructor(socket: tls.TLSSocket, tcp: Deno.TcpConn, flow: ReadFlow) {
    this.#socket = socket;
    this.#tcp = tcp;
    this.#flow = flow;
    // Flowing for good: never pause the TLS socket (see the module doc); hold the TCP reads.
    this.#reader = new NodeStreamReader(socket, {
      highWaterBytes: TLS_DEFAULTS.readHighWaterBytes,
      gate: flow,
    });
  }

  /** The peer's certificate (DER), when it sent one (always, on the client side). */
  get peerCertificate(): Uint8Array | undefined {
    const raw = this.#socket.getPeerCertificate(true)?.raw;
    return raw && raw.length > 0 ? new Uint8Array(raw) : undefined;
  }

  /** `sha256:HEX` of {@linkcode peerCertificate}. */
  get fingerprint(): string | undefined {
    const der = this.peerCertificate;
    return der ? fingerprintOfDer(der) : undefined;
  }

  /** True when the certificate verified against the trusted CAs (client side). */
  get authorized(): boolean {
    return this.#socket.authorized;
  }

  /** Why the certificate did not verify, if it did not (client side). */
  get authorizationError(): string | undefined {
    const e = this.#socket.authorizationError as unknown;
    return e ? String(e instanceof Error ? e.message : e) : undefined;
  }

  /** The negotiated protocol version, e.g. `TLSv1.3`. */
  get protocol(): string | null {
    return this.#socket.getProtocol();
  }

  /** The protocol chosen by ALPN, or null. */
  get alpnProtocol(): string | null {
    const p = this.#socket.alpnProtocol;
    return typeof p === "string" ? p : null;
  }

  /** The name the client asked for (SNI), on the server side; null when it sent none. */
  get servername(): string | null {
    const name = (this.#socket as unknown as { servername?: string | false | null }).servername;
    return typeof name === "string" && name !== "" ? name : null;
  }

  /**
   * Reads decrypted bytes into `p`: as much of what is buffered as fits (several TLS records
   * at once, so a reader with a big buffer makes few reads); null once the peer ended its side.
   */
  read(p: Uint8Array): Promise<number | null> {
    return this.#reader.read(
      p,
      () =>
        this.#closed
          ? new Deno.errors.BadResource("Cannot read: the connection is closed")
          : undefined,
    );
  }

  /** Encrypts and writes all of `p`; resolves `p.length` once the socket took it. */
  write(p: Uint8Array): Promise<number> {
    if (this.#closed) {
      return Promise.reject(new Deno.errors.BadResource("Cannot write: the connection is closed"));
    }
    if (this.#reader.error) return Promise.reject(this.#reader.error);
    if (p.length === 0) return Promise.resolve(0);
    return new Promise((resolve, reject) => {
      this.#socket.write(p, (error?: Error | null) => {
        if (error) reject(error);
        else resolve(p.length);
      });
    });
  }

  /** Sends close_notify and ends the write side; the peer reads end of file. */
  closeWrite(): Promise<void> {
    if (this.#closed) {
      return Promise.reject(new Deno.errors.BadResource("Cannot close: the connection is closed"));
    }
    return new Promise((resolve, reject) => {
      const failed = (error: Error) => reject(error);
      this.#socket.once("error", failed);
      this.#socket.end(() => {
        this.#socket.off("error", failed);
        resolve();
      });
    });
  }

  /** Closes the connection at once (the socket beneath too). Safe to call more than once. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#socket.destroy();
    try {
      this.#tcp.close();
    } catch {
      // The Duplex's destroy closed it.
    }
    this.#flow.release();
    this.#reader.wake();
  }

  /** Local address of the TCP socket beneath. */
  get localAddr(): Deno.NetAddr {
    return this.#tcp.localAddr;
  }

  /** Peer address of the TCP socket beneath. */
  get remoteAddr(): Deno.NetAddr {
    return this.#tcp.remoteAddr;
  }

  /** Sets TCP_NODELAY on the TCP socket beneath. */
  setNoDelay(noDelay?: boolean): void {
    this.#tcp.setNoDelay(noDelay);
  }

  /** Sets SO_KEEPALIVE on the TCP socket beneath. */
  setKeepAlive(keepAlive?: boolean): void {
    this.#tcp.setKeepAlive(keepAlive);
  }

  /** Lets the connection keep the process alive. */
  ref(): void {
    this.#tcp.ref();
  }

  /** Stops the connection from keeping the process alive. */
  unref(): void {
    this.#tcp.unref();
  }

  /** Decrypted bytes as a stream; cancelling it closes the connection. */
  get readable(): ReadableStream<Uint8Array<ArrayBuffer>> {
    return this.#readable ??= new ReadableStream<Uint8Array<ArrayBuffer>>({
      pull: async (controller) => {
        const buf = new Uint8Array(TLS_DEFAULTS.socketReadBytes);
        const n = await this.read(buf);
        if (n === null) controller.close();
        else controller.enqueue(buf.subarray(0, n));
      },
      cancel: () => this.close(),
    }, { highWaterMark: 0 });
  }

  /** A stream to write through; closing it half-closes (close_notify), aborting it closes. */
  get writable(): WritableStream<Uint8Array<ArrayBufferLike>> {
    return this.#writable ??= new WritableStream<Uint8Array<ArrayBufferLike>>({
      write: async (chunk) => void await this.write(chunk),
      close: () => this.closeWrite(),
      abort: () => this.close(),
    });
  }

  /** Closes the connection. */
  [Symbol.dispose](): void {
    this.close();
  }
}

/** Waits for `event` (handshake done); on error or timeout closes and throws. */
async function handshake(
  stream: TlsStreamConn,
  socket: tls.TLSSocket,
  event: "secure" | "secureConnect",
  at: { what: string; timeoutMs: number },
): Promise<void> {
  const done = new Promise<void>((resolve, reject) => {
    const fail = (error?: Error) => {
      socket.off(event, ok);
      reject(error ?? new Error("the connection closed"));
    };
    const ok = () => {
      socket.off("error", fail);
      socket.off("close", closed);
      resolve();
    };
    const closed = () => fail();
    socket.once(event, ok);
    socket.once("error", fail);
    socket.once("close", closed);
  });
  try {
    await withTimeout(done, at.timeoutMs, { what: at.what });
  } catch (error) {
    stream.close();
    throw new TlsHandshakeError(`Cannot complete ${at.what}: ${messageOf(error)}`, {
      cause: error,
    });
  }
}

/** One secure context per certificate and key (parsing them is not free), the last one used. */
let lastContext: { key: TlsServerKey; context: tls.SecureContext } | undefined;

function secureContextOf(key: TlsServerKey): tls.SecureContext {
  if (lastContext?.key.cert === key.cert && lastContext.key.key === key.key) {
    return lastContext.context;
  }
  const context = tls.createSecureContext({ cert: key.cert, key: key.key });
  lastContext = { key: { cert: key.cert, key: key.key }, context };
  return context;
}

/**
 * A Duplex over a `Deno.Conn`, for a `TLSSocket` to run on: each `_read` reads the socket once,
 * after `flow` lets it; each write resolves once the socket took all of it; `final`
 * half-closes; destroy closes.
 */
function duplexOf(conn: Deno.Conn, flow: ReadFlow): Duplex {
  let reading = false;
  let size: number = TLS_DEFAULTS.socketReadBytes;
  return new Duplex({
    read() {
      if (reading) return;
      reading = true;
      const buf = new Uint8Array(size);
      flow.whenReleased().then(() => conn.read(buf)).then(
        (n) => {
          reading = false;
          if (n === size) size = Math.min(size * 2, TLS_DEFAULTS.maxSocketReadBytes);
          else if (n !== null && n < size / 4) {
            size = Math.max(size / 2, TLS_DEFAULTS.socketReadBytes);
          }
          this.push(n === null ? null : Buffer.from(buf.buffer, 0, n));
        },
        (error) => this.destroy(error),
      );
    },
    write(chunk: Uint8Array, _encoding, callback) {
      writeFully(conn, chunk).then(() => callback(), callback);
    },
    final(callback) {
      conn.closeWrite().then(() => callback(), callback);
    },
    destroy(error, callback) {
      try {
        conn.close();
      } catch {
        // Already closed.
      }
      callback(error);
    },
  });
}

async function writeFully(conn: Deno.Conn, data: Uint8Array): Promise<void> {
  let off = 0;
  while (off < data.length) off += await conn.write(off === 0 ? data : data.subarray(off));
}

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
