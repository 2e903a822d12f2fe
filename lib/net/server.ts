/**
 * The accept loop every TCP server in sockit shares: an admission check right after accept
 * (before any byte is read: address rules), a cap on concurrent connections in all and per
 * client address (extra ones get a refusal from the caller's `onRefused`, not a hang),
 * back-off instead of spinning when accept fails (out of file descriptors), and a shutdown
 * that stops accepting and waits (bounded) for the handlers to finish.
 *
 * @module
 */

import { formatAddress } from "./address.ts";
import { delay } from "./deadline.ts";
import { SocketError } from "./errors.ts";
import { formatIP, parseIP, unmapIPv4 } from "./ip.ts";

/** Defaults of {@linkcode ServeOptions}. */
export const SERVE_DEFAULTS = {
  /** Concurrent connections served; 0 means no cap. */
  maxConnections: 0,
  /** Concurrent connections from one client address; 0 means no cap. */
  maxPerAddress: 0,
  /** First pause after a failed accept, in ms; doubles up to 1 s. */
  acceptBackoffMs: 10,
} as const;

/** Why {@linkcode serve} refused a connection over one of its caps. */
export type ServeRefusal =
  | { kind: "full"; limit: number }
  | { kind: "per-address"; limit: number; address: string };

/** Options for {@linkcode serve}. */
export interface ServeOptions {
  /**
   * Decides right after accept, before the caps and before any byte is read, whether a
   * connection is served; false closes it at once (no `onRefused`).
   */
  admit?: (conn: Deno.TcpConn) => boolean;
  /** Concurrent connections; more are handed to `onRefused` and closed. 0: no cap. @default {0} */
  maxConnections?: number;
  /**
   * Concurrent connections from one client IP address (IPv4-mapped IPv6 counts as IPv4); more
   * are handed to `onRefused` and closed. 0: no cap. @default {0}
   */
  maxPerAddress?: number;
  /** Called for a connection over a cap, before it is closed (e.g. to write a refusal). */
  onRefused?: (conn: Deno.TcpConn, refusal: ServeRefusal) => Promise<void> | void;
  /** Called when a handler throws, or accept fails. */
  onError?: (error: unknown, conn?: Deno.TcpConn) => void;
}

/** A running accept loop. */
export interface Server {
  /** The address the listener is bound to. */
  readonly addr: Deno.NetAddr;
  /** Connections currently being handled. */
  readonly active: ReadonlySet<Deno.TcpConn>;
  /** Resolves when the accept loop has stopped (after {@linkcode Server.stop}). */
  readonly done: Promise<void>;
  /** Stops accepting; resolves once handlers finish or `timeoutMs` passed. */
  stop(options?: { timeoutMs?: number }): Promise<void>;
}

/**
 * Accepts connections on `listener` and runs `handler` for each, concurrently. The handler
 * owns the connection; it is closed for it if the handler forgets.
 *
 * @example Two connections at most from one address
 * ```ts
 * import assert from "node:assert/strict";
 * import { serve } from "./server.ts";
 * const refused: string[] = [];
 * const server = serve(Deno.listen({ hostname: "127.0.0.1", port: 0 }), async (conn) => {
 *   await conn.read(new Uint8Array(1)); // hold the place until the client closes
 * }, { maxPerAddress: 2, onRefused: (_conn, why) => void refused.push(why.kind) });
 * const connect = () => Deno.connect({ hostname: "127.0.0.1", port: server.addr.port });
 * const clients = [await connect(), await connect(), await connect()];
 * assert.equal(await clients[2].read(new Uint8Array(1)), null); // closed at once
 * assert.deepEqual(refused, ["per-address"]);
 * clients.forEach((c) => c.close());
 * await server.stop();
 * ```
 *
 * @example Usage
 * ```ts ignore
 * import { serve } from "./server.ts";
 * const server = serve(Deno.listen({ port: 0 }), async (conn) => {
 *   await conn.write(new TextEncoder().encode("hi\n"));
 * }, { maxConnections: 100 });
 * await server.stop();
 * ```
 */
export function serve(
  listener: Deno.TcpListener,
  handler: (conn: Deno.TcpConn) => Promise<void | "closed">,
  options: ServeOptions = {},
): Server {
  const opts = { ...SERVE_DEFAULTS, ...options };
  const reportError = (error: unknown, conn?: Deno.TcpConn) => {
    try {
      opts.onError?.(error, conn);
    } catch {
      // An error reporter that fails must not take the server down.
    }
  };
  const active = new Set<Deno.TcpConn>();
  const perAddress = new Map<string, number>();
  const running = new Set<Promise<void>>();
  let stopping = false;
  const stopSignal = new AbortController();

  const handle = async (conn: Deno.TcpConn, address: string | undefined) => {
    active.add(conn);
    if (address !== undefined) perAddress.set(address, (perAddress.get(address) ?? 0) + 1);
    let closed = false;
    try {
      closed = (await handler(conn)) === "closed";
    } catch (error) {
      reportError(error, conn);
    } finally {
      active.delete(conn);
      if (address !== undefined) {
        const left = perAddress.get(address)! - 1;
        if (left > 0) perAddress.set(address, left);
        else perAddress.delete(address);
      }
      // A handler that says it closed the connection is believed: a second close would
      // only throw (and building that error costs more than the rest of a short session).
      if (!closed) {
        try {
          conn.close();
        } catch {
          // The handler closed it.
        }
      }
    }
  };

  const refuse = async (conn: Deno.TcpConn, refusal: ServeRefusal) => {
    try {
      await opts.onRefused?.(conn, refusal);
    } catch {
      // Refusal is best effort.
    }
    try {
      conn.close();
    } catch {
      // Already closed.
    }
  };

  /** Runs `admit`; a connection it refuses (or throws for) is closed at once. */
  const admitted = (conn: Deno.TcpConn): boolean => {
    let ok = false;
    try {
      ok = opts.admit!(conn);
    } catch (error) {
      reportError(error, conn);
    }
    if (!ok) {
      try {
        conn.close();
      } catch {
        // Already closed.
      }
    }
    return ok;
  };

  const loop = async () => {
    let backoff: number = opts.acceptBackoffMs;
    while (!stopping) {
      let conn: Deno.TcpConn;
      try {
        conn = await listener.accept();
        backoff = opts.acceptBackoffMs;
      } catch (error) {
        if (stopping || error instanceof Deno.errors.BadResource) break;
        reportError(error);
        await delay(backoff, { signal: stopSignal.signal });
        backoff = Math.min(backoff * 2, 1000);
        continue;
      }
      if (opts.admit && !admitted(conn)) continue;
      if (opts.maxConnections > 0 && active.size >= opts.maxConnections) {
        void refuse(conn, { kind: "full", limit: opts.maxConnections });
        continue;
      }
      const address = opts.maxPerAddress > 0 ? addressKey(conn) : undefined;
      if (address !== undefined && (perAddress.get(address) ?? 0) >= opts.maxPerAddress) {
        void refuse(conn, { kind: "per-address", limit: opts.maxPerAddress, address });
        continue;
      }
      const p = handle(conn, address);
      running.add(p);
      const forget = () => running.delete(p);
      p.then(forget, forget);
    }
  };
  const done = loop();

  return {
    addr: listener.addr,
    active,
    done,
    async stop(stopOptions: { timeoutMs?: number } = {}) {
      if (!stopping) {
        stopping = true;
        stopSignal.abort();
        try {
          listener.close();
        } catch {
          // Already closed.
        }
      }
      await done;
      const timeoutMs = stopOptions.timeoutMs ?? 5000;
      await Promise.race([Promise.allSettled([...running]), delay(timeoutMs)]);
    },
  };
}

/** The client's IP address as one key per host (IPv4-mapped IPv6 as IPv4). */
function addressKey(conn: Deno.TcpConn): string {
  const host = conn.remoteAddr.hostname;
  const bytes = parseIP(host);
  return bytes ? formatIP(unmapIPv4(bytes)) : host;
}

/**
 * Resolves with the signal's name on the first SIGINT or SIGTERM, and removes its listeners.
 *
 * @example Usage
 * ```ts ignore
 * import { waitForShutdownSignal } from "./server.ts";
 * const signal = await waitForShutdownSignal();
 * console.log(`got ${signal}, shutting down`);
 * ```
 */
export function waitForShutdownSignal(): Promise<Deno.Signal> {
  return new Promise((resolve) => {
    const signals: Deno.Signal[] = Deno.build.os === "windows" ? ["SIGINT"] : ["SIGINT", "SIGTERM"];
    const handlers = signals.map((sig) => {
      const h = () => {
        handlers.forEach(([s, fn]) => Deno.removeSignalListener(s, fn));
        resolve(sig);
      };
      Deno.addSignalListener(sig, h);
      return [sig, h] as const;
    });
  });
}

/**
 * Binds a TCP listener, turning a failure into a {@linkcode SocketError} that names the
 * address ("Cannot listen on 127.0.0.1:7070: Address already in use (os error 98)").
 *
 * @example Usage
 * ```ts ignore
 * import { listenTcp } from "./server.ts";
 * const listener = listenTcp({ hostname: "127.0.0.1", port: 0 });
 * listener.close();
 * ```
 */
export function listenTcp(address: { hostname: string; port: number }): Deno.TcpListener {
  try {
    return Deno.listen({ hostname: address.hostname, port: address.port, transport: "tcp" });
  } catch (error) {
    throw new SocketError(`Cannot listen on ${formatAddress(address)}: ${listenFailure(error)}`, {
      cause: error,
    });
  }
}

/** What went wrong with a listen, in a few words ("address in use"). */
function listenFailure(error: unknown): string {
  if (error instanceof Deno.errors.AddrInUse) return "address in use";
  if (error instanceof Deno.errors.AddrNotAvailable) return "address not available on this host";
  if (error instanceof Deno.errors.PermissionDenied) return "permission denied";
  return error instanceof Error ? error.message : String(error);
}
