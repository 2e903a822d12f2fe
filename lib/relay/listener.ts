/**
 * The relay's front door: what an accepted connection turns out to be, told by its first
 * bytes, so that one port serves every kind of client.
 *
 * ```text
 *   accept ── address rules, --max-per-ip (before any byte is read: server.ts, access.ts)
 *     │
 *     ├─ no --tls and no web handler: a line client at once (nothing is sniffed)
 *     │
 *     └─ sniff (sniff.ts, up to sniffWaitMs)
 *          ├─ TLS ClientHello ─ handshake (up to tlsHandshakeTimeoutMs) ─ sniff again:
 *          │                       ├─ HTTP request ─ web handler (or 404)
 *          │                       └─ anything else, or silent ─ line client over TLS
 *          ├─ HTTP request ─ web handler (or 404); refused with --tls-only
 *          └─ anything else, or silent ─ line client; refused with --tls-only
 * ```
 *
 * A client that sends nothing within the wait (`nc` used to listen only, a telnet user who has
 * not typed yet, `sockit chat --tls` waiting for its welcome) is a line client: it gets its
 * welcome after the wait. Sniffing happens once per connection; afterwards the connection's
 * reads go straight to the socket (`PrefixedConn`), so a plaintext client on a `--tls` port
 * costs what it costs on a plain one.
 *
 * **Web handler.** {@linkcode RelayWebHandler} is where the web chat (page, WebSocket) plugs
 * in: the relay hands it each HTTP connection, replaying from the request's first byte, with
 * {@linkcode RelayWebContext.joinRelay} to serve a WebSocket as one more line client. Without
 * a handler an HTTP request is answered `404 Not Found` and closed.
 *
 * @module
 */

import type { Logger } from "../log.ts";
import { formatAddress } from "../net/address.ts";
import type { AddressRules } from "../net/address_rules.ts";
import type { ConnectionIo } from "../net/connection_options.ts";
import { withTimeout } from "../net/deadline.ts";
import { closeAfterLastWrite } from "../net/linger.ts";
import { serve, type Server, type ServeRefusal } from "../net/server.ts";
import { sniff } from "../net/sniff.ts";
import { acceptTls, type TlsServerKey } from "../net/tls_stream.ts";
import { writeAll } from "../net/write_all.ts";
import { type Refusal, type RefusalKind, RefusalLog } from "./access.ts";

/** A client's address for logs, and the TCP socket beneath it, whose kernel state the stall checks read. */
export interface ClientSocket {
  /** The client's address, for logs. */
  peer: string;
  /** The TCP socket beneath (also under TLS); without, no kernel checks. */
  socket?: Pick<Deno.TcpConn, "localAddr" | "remoteAddr">;
}

/** What a {@linkcode RelayWebHandler} is given with an HTTP connection. */
export interface RelayWebContext {
  /** The bytes sniffing read; the connection replays them, so read it from its first byte. */
  head: Uint8Array;
  /** True when the request came inside TLS. */
  tls: boolean;
  /** The client's address, for logs. */
  peer: string;
  /**
   * Serves `io` (a WebSocket carrying lines, say) as one more client of the relay, in the
   * relay's mode: same rooms, commands, flow control and slow-client policy (its stall checks
   * look at this connection's TCP socket). Resolves once it left.
   */
  joinRelay(io: ConnectionIo): Promise<void>;
}

/**
 * Handles an HTTP connection on the relay's port (the web chat page and its WebSocket). It
 * owns `conn` until it returns; the relay closes it then if the handler did not.
 */
export type RelayWebHandler = (conn: Deno.TcpConn, context: RelayWebContext) => Promise<void>;

/** What an accepted connection turned out to be. */
export type Arrival =
  | {
    /** A line (or framed) client: nc, telnet, ncat, `sockit chat`, plain or in TLS. */
    kind: "client";
    /** Read it from here: replays what sniffing read; TLS decrypted. */
    conn: Deno.TcpConn;
    /** True inside TLS. */
    tls: boolean;
  }
  | {
    /** An HTTP request, plain or in TLS. */
    kind: "http";
    /** Read it from here: replays from the request's first byte. */
    conn: Deno.TcpConn;
    /** The bytes sniffing read. */
    head: Uint8Array;
    /** True inside TLS. */
    tls: boolean;
  }
  | {
    /** Turned away (the socket is closed). */
    kind: "refused";
    /** Why. */
    refusal: Refusal;
  };

/** How {@linkcode openClient} tells clients apart. */
export interface DoorOptions {
  /** The certificate for a new handshake; without, TLS is off. */
  tls?: () => TlsServerKey;
  /** Refuse clients that do not start TLS. */
  tlsOnly: boolean;
  /** Sniff plaintext connections even without TLS (a web handler is there to serve HTTP). */
  web: boolean;
  /** How long to wait for a client's first bytes, in ms. */
  sniffWaitMs: number;
  /** Most time for a TLS handshake, in ms. */
  tlsHandshakeTimeoutMs: number;
}

/**
 * Finds out what `conn`, just accepted, is (see the module doc) and runs the TLS handshake
 * when it starts one. Never rejects: a failed handshake is a refusal, its socket closed.
 *
 * @example A plain client on a port with TLS: its bytes replayed
 * ```ts
 * import assert from "node:assert/strict";
 * import { openClient } from "./listener.ts";
 * import { createSelfSignedCert } from "../net/tls_cert.ts";
 * const key = await createSelfSignedCert({ names: ["localhost"] });
 * using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
 * const client = await Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port });
 * await client.write(new TextEncoder().encode("hello\n"));
 * const arrival = await openClient(await listener.accept(), {
 *   tls: () => key, tlsOnly: false, web: false, sniffWaitMs: 300, tlsHandshakeTimeoutMs: 1000,
 * });
 * assert.equal(arrival.kind, "client");
 * if (arrival.kind !== "client") throw new Error("unreachable");
 * assert.equal(arrival.tls, false);
 * const buf = new Uint8Array(16);
 * assert.equal(new TextDecoder().decode(buf.subarray(0, (await arrival.conn.read(buf))!)), "h");
 * arrival.conn.close();
 * client.close();
 * ```
 */
export async function openClient(conn: Deno.TcpConn, options: DoorOptions): Promise<Arrival> {
  if (!options.tls && !options.web) return { kind: "client", conn, tls: false };
  const outer = await sniff(conn, { waitMs: options.sniffWaitMs });
  if (outer.kind === "tls") {
    if (!options.tls) return refuse(outer.conn, { kind: "tls-off" });
    let tls: Deno.TcpConn;
    try {
      tls = await acceptTls(outer.conn, options.tls(), {
        timeoutMs: options.tlsHandshakeTimeoutMs,
      });
    } catch (error) {
      // acceptTls closed the socket.
      return { kind: "refused", refusal: { kind: "handshake", message: messageOf(error) } };
    }
    const inner = await sniff(tls, { waitMs: options.sniffWaitMs });
    if (inner.kind === "http") {
      return { kind: "http", conn: inner.conn, head: inner.head, tls: true };
    }
    return { kind: "client", conn: inner.conn, tls: true };
  }
  if (options.tlsOnly) return refuse(outer.conn, { kind: "plaintext" });
  if (outer.kind === "http") {
    return { kind: "http", conn: outer.conn, head: outer.head, tls: false };
  }
  return { kind: "client", conn: outer.conn, tls: false };
}

const NOT_FOUND_BODY = "no web chat on this sockit relay\n";

/** What the relay answers an HTTP request with when it has no web handler. */
export const NOT_FOUND_RESPONSE: Uint8Array = new TextEncoder().encode(
  "HTTP/1.1 404 Not Found\r\n" +
    "Content-Type: text/plain; charset=utf-8\r\n" +
    `Content-Length: ${NOT_FOUND_BODY.length}\r\n` +
    "Connection: close\r\n" +
    "\r\n" +
    NOT_FOUND_BODY,
);

/**
 * Answers an HTTP request with {@linkcode NOT_FOUND_RESPONSE} and closes, without losing the
 * answer to a reset (the request is read and discarded meanwhile, bounded: `linger.ts`).
 *
 * @example What a browser sees on a relay without a web handler
 * ```ts
 * import assert from "node:assert/strict";
 * import { answerNotFound } from "./listener.ts";
 * using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
 * const response = fetch(`http://127.0.0.1:${listener.addr.port}/`);
 * await answerNotFound(await listener.accept());
 * const res = await response;
 * assert.equal(res.status, 404);
 * assert.equal(await res.text(), "no web chat on this sockit relay\n");
 * ```
 */
export async function answerNotFound(conn: Deno.TcpConn): Promise<void> {
  try {
    await writeAll(conn, NOT_FOUND_RESPONSE);
  } catch {
    // The client went away.
  }
  await closeAfterLastWrite(conn, { timeoutMs: 1000, maxBytes: 64 * 1024 });
}

function refuse(conn: Deno.TcpConn, refusal: Refusal): Arrival {
  try {
    conn.close();
  } catch {
    // Already closed.
  }
  return { kind: "refused", refusal };
}

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/** Options of {@linkcode RelayListener}. */
export interface RelayListenerOptions {
  /** The certificate for a new handshake; without, TLS is off. */
  tls?: () => TlsServerKey;
  /** With `tls`: refuse clients that do not start TLS. */
  tlsOnly?: boolean;
  /** The HTTP handler; without, HTTP requests get a 404. */
  web?: RelayWebHandler;
  /** How long to wait for a client's first bytes, in ms. */
  sniffWaitMs: number;
  /** Most time for a TLS handshake, in ms. */
  tlsHandshakeTimeoutMs: number;
  /** Client address rules; without, every address may connect. */
  rules?: AddressRules;
  /** Connections served at once. */
  maxClients: number;
  /** Connections at once from one address; 0: no cap. */
  maxPerIp: number;
  /** Refusal log lines at most once per this many ms. */
  refusalLogIntervalMs: number;
  /** What a client over `maxClients` is sent (`bytes`) and the log says (`text`). */
  full: { text: string; bytes: Uint8Array };
  /** Serves a line (or framed) client. */
  serve: (io: ConnectionIo, at: ClientSocket) => Promise<void>;
  /** Where refusals and failures go. */
  logger?: Logger;
}

/**
 * The relay's accept loop: admits (address rules, caps), tells each connection's kind
 * ({@linkcode openClient}) and hands it to the relay, the web handler or the 404, counting
 * what it turned away.
 *
 * @example A plain line client on a port that also speaks TLS
 * ```ts
 * import assert from "node:assert/strict";
 * import { RelayListener } from "./listener.ts";
 * import { createSelfSignedCert } from "../net/tls_cert.ts";
 * const key = await createSelfSignedCert({ names: ["localhost"] });
 * const served: string[] = [];
 * const listener = new RelayListener(Deno.listen({ hostname: "127.0.0.1", port: 0 }), {
 *   tls: () => key, sniffWaitMs: 300, tlsHandshakeTimeoutMs: 1000, maxClients: 10,
 *   maxPerIp: 0, refusalLogIntervalMs: 1000, full: { text: "full", bytes: new Uint8Array() },
 *   serve: async (io) => {
 *     const buf = new Uint8Array(5);
 *     served.push(new TextDecoder().decode(buf.subarray(0, (await io.read(buf))!)));
 *   },
 * });
 * const client = await Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port });
 * await client.write(new TextEncoder().encode("hello"));
 * assert.equal(await client.read(new Uint8Array(1)), null); // served, then closed
 * assert.deepEqual(served, ["h"]); // the byte sniffing read comes first
 * client.close();
 * await listener.stop();
 * ```
 */
export class RelayListener {
  /** Bound address. */
  readonly addr: Deno.NetAddr;
  #options: RelayListenerOptions;
  #door: DoorOptions;
  #refusals: RefusalLog;
  #server: Server;
  #refused = 0;
  #tlsClients = 0;
  #rules: AddressRules | undefined;

  /** Starts accepting on `listener`. */
  constructor(listener: Deno.TcpListener, options: RelayListenerOptions) {
    this.#options = options;
    this.addr = listener.addr;
    const { tls, logger } = options;
    this.#rules = options.rules;
    this.#door = {
      tls,
      tlsOnly: !!tls && !!options.tlsOnly,
      web: options.web !== undefined,
      sniffWaitMs: options.sniffWaitMs,
      tlsHandshakeTimeoutMs: options.tlsHandshakeTimeoutMs,
    };
    this.#refusals = new RefusalLog({ logger, intervalMs: options.refusalLogIntervalMs });
    this.#server = serve(listener, (conn) => this.#accept(conn), {
      // Before any byte is read: a denied client is closed at once.
      admit: (conn) => {
        const rules = this.#rules;
        if (!rules || rules.allows(conn.remoteAddr.hostname)) return true;
        this.#refusals.record(peerOf(conn), { kind: "denied" });
        return false;
      },
      maxConnections: options.maxClients,
      maxPerAddress: options.maxPerIp,
      onRefused: (conn, why) => this.#refuse(conn, why),
      onError: (error, conn) =>
        logger?.warn(
          conn ? `${peerOf(conn)}: ${messageOf(error)}` : `accept failed: ${messageOf(error)}`,
        ),
    });
  }

  /** New client address rules for connections accepted from now on (SIGHUP). */
  setRules(rules: AddressRules | undefined): void {
    this.#rules = rules;
  }

  /** Counters: clients refused as over `maxClients`, TLS clients now, the others turned away. */
  stats(): { refused: number; tlsClients: number; turnedAway: Record<RefusalKind, number> } {
    return {
      refused: this.#refused,
      tlsClients: this.#tlsClients,
      turnedAway: { ...this.#refusals.counts },
    };
  }

  /** Stops accepting; resolves once the handlers finished or `timeoutMs` passed. */
  stop(options: { timeoutMs?: number } = {}): Promise<void> {
    return this.#server.stop(options);
  }

  async #refuse(conn: Deno.TcpConn, why: ServeRefusal): Promise<void> {
    if (why.kind === "per-address") {
      // Closed at once, like a denied address: nothing is written to a client that may be
      // about to start TLS.
      this.#refusals.record(peerOf(conn), { kind: "per-ip", limit: why.limit });
      return;
    }
    this.#refused++;
    this.#options.logger?.info(`refused ${peerOf(conn)}: ${this.#options.full.text}`);
    await withTimeout(writeAll(conn, this.#options.full.bytes), 1000, {
      what: "the refusal to be sent",
    });
  }

  /** A connection just accepted (and admitted): find out what it is and serve it. */
  async #accept(conn: Deno.TcpConn): Promise<void> {
    conn.setNoDelay(true);
    const at: ClientSocket = { peer: peerOf(conn), socket: conn };
    const arrival = await openClient(conn, this.#door);
    switch (arrival.kind) {
      case "refused":
        this.#refusals.record(at.peer, arrival.refusal);
        return;
      case "http": {
        const web = this.#options.web;
        if (!web) return await answerNotFound(arrival.conn);
        const joinRelay = (io: ConnectionIo) => this.#options.serve(io, at);
        return await web(arrival.conn, {
          head: arrival.head,
          tls: arrival.tls,
          peer: at.peer,
          joinRelay,
        });
      }
      case "client":
        if (!arrival.tls) return await this.#options.serve(arrival.conn, at);
        this.#tlsClients++;
        try {
          return await this.#options.serve(arrival.conn, at);
        } finally {
          this.#tlsClients--;
        }
    }
  }
}

function peerOf(conn: Deno.TcpConn): string {
  return formatAddress(conn.remoteAddr);
}
