/**
 * Outgoing TCP connections from a chosen local address (`socks5 --bind-out IP`). Deno 2.9's
 * `Deno.connect` has no local-address option; `node:net` has (`localAddress`), so such a
 * connection is a `node:net` socket, wrapped here in the `Deno.TcpConn` subset the relay loops
 * use: `read` (backpressure: the socket is paused while {@linkcode BOUND_CONNECT_LIMITS}
 * bytes wait for a reader), `write` (resolves once the socket took the bytes), `closeWrite`
 * (FIN), `close`, `localAddr`, `remoteAddr`, `setNoDelay`, `setKeepAlive`. Connections
 * without `--bind-out` keep using `Deno.connect` (its read loop is the measured fast path);
 * this one costs a copy per chunk through Node's stream machinery.
 *
 * @module
 */

import net from "node:net";
import { Buffer } from "node:buffer";
import { NodeStreamReader } from "./node_stream_reader.ts";

/** Bounds of a bound connection, with their reasons. */
export const BOUND_CONNECT_LIMITS = {
  /** Bytes received and not yet read past which the socket stops reading (TCP pushes back). */
  readHighWaterBytes: 256 * 1024,
} as const;

/** The `Deno.TcpConn` subset a bound connection offers. */
export type BoundConn = Pick<
  Deno.TcpConn,
  | "read"
  | "write"
  | "closeWrite"
  | "close"
  | "localAddr"
  | "remoteAddr"
  | "setNoDelay"
  | "setKeepAlive"
>;

/**
 * Connects to `target` from the local address `localAddress` (an IP literal of the same
 * family); rejects with the connect error (`ECONNREFUSED`, `EADDRNOTAVAIL`, ...). An
 * `options.signal` that aborts destroys the attempt.
 *
 * @example From 127.0.0.2 to a local listener
 * ```ts
 * import assert from "node:assert/strict";
 * import { connectFrom } from "./bound_connect.ts";
 * using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
 * const accepted = listener.accept();
 * const conn = await connectFrom("127.0.0.2", { hostname: "127.0.0.1", port: listener.addr.port });
 * const server = await accepted;
 * assert.equal(server.remoteAddr.hostname, "127.0.0.2");
 * await conn.write(new TextEncoder().encode("hi"));
 * const buf = new Uint8Array(2);
 * assert.equal(await server.read(buf), 2);
 * conn.close();
 * server.close();
 * ```
 */
export function connectFrom(
  localAddress: string,
  target: { hostname: string; port: number },
  options: { signal?: AbortSignal } = {},
): Promise<Deno.TcpConn> {
  return new Promise((resolve, reject) => {
    if (options.signal?.aborted) {
      return reject(options.signal.reason ?? new Error("connect aborted"));
    }
    // allowHalfOpen: a FIN from the peer must not end our direction too (as Deno.connect).
    const socket = net.connect({
      host: target.hostname,
      port: target.port,
      localAddress,
      allowHalfOpen: true,
    });
    const abort = () => {
      socket.destroy();
      reject(options.signal?.reason ?? new Error("connect aborted"));
    };
    options.signal?.addEventListener("abort", abort, { once: true });
    socket.once("error", (error) => {
      options.signal?.removeEventListener("abort", abort);
      reject(error);
    });
    socket.once("connect", () => {
      options.signal?.removeEventListener("abort", abort);
      // Only the subset in BoundConn is used by the callers (the relay loops, replies).
      resolve(new NodeSocketConn(socket) as unknown as Deno.TcpConn);
    });
  });
}

/** A connected `node:net` socket as a {@linkcode BoundConn}. */
class NodeSocketConn implements BoundConn {
  #socket: net.Socket;
  #reader: NodeStreamReader;
  readonly localAddr: Deno.NetAddr;
  readonly remoteAddr: Deno.NetAddr;

  constructor(socket: net.Socket) {
    this.#socket = socket;
    this.localAddr = { transport: "tcp", hostname: socket.localAddress!, port: socket.localPort! };
    this.remoteAddr = {
      transport: "tcp",
      hostname: socket.remoteAddress!,
      port: socket.remotePort!,
    };
    this.#reader = new NodeStreamReader(socket, {
      highWaterBytes: BOUND_CONNECT_LIMITS.readHighWaterBytes,
      gate: {
        get held() {
          return socket.isPaused();
        },
        hold: () => socket.pause(),
        release: () => socket.resume(),
      },
    });
  }

  /** Reads into `p`; null at end of input. */
  read(p: Uint8Array): Promise<number | null> {
    return this.#reader.read(p);
  }

  /** Writes all of `p`; resolves once the socket took it (so `p` may be reused). */
  write(p: Uint8Array): Promise<number> {
    if (this.#reader.error) return Promise.reject(this.#reader.error);
    // A copy: node may hold the buffer until it is flushed, and callers reuse theirs.
    const bytes = Buffer.from(p);
    return new Promise((resolve, reject) => {
      this.#socket.write(bytes, (error) => (error ? reject(error) : resolve(p.length)));
    });
  }

  /** Sends FIN after what was written. */
  closeWrite(): Promise<void> {
    return new Promise((resolve) => this.#socket.end(() => resolve()));
  }

  /** Closes at once. */
  close(): void {
    this.#socket.destroy();
  }

  /** Nagle off (or on). */
  setNoDelay(noDelay?: boolean): void {
    this.#socket.setNoDelay(noDelay ?? true);
  }

  /** TCP keep-alive on (or off). */
  setKeepAlive(keepAlive?: boolean): void {
    this.#socket.setKeepAlive(keepAlive ?? true);
  }
}
