/**
 * The SOCKS5 server (RFC 1928, RFC 1929) with SOCKS4/4a for open proxies.
 *
 * Each phase of a session is one function named after it: {@linkcode readGreeting},
 * {@linkcode negotiateMethod}, {@linkcode authenticate}, {@linkcode readRequest}, then
 * {@linkcode handleConnect}, {@linkcode handleBind} or `handleUdpAssociate`. Every failure path
 * sends the reply the RFC asks for and closes the connection; the server keeps serving the
 * others. The handshake is read through a {@linkcode BufferedReader}, so a greeting split into
 * single bytes and a greeting, request and payload in one write behave the same; bytes read
 * ahead are handed to the relay copy.
 *
 * One log line per session: client, user, command, destination (and the address dialled),
 * reply code, bytes each way and duration.
 *
 * @module
 */

import { lookup } from "node:dns/promises";
import { BufferedReader, type Reader } from "../net/buffered_reader.ts";
import { copyBidirectional, type CopyResult, type Duplex } from "../net/copy.ts";
import { formatAddress, type HostPort } from "../net/address.ts";
import { LimitError, ProtocolError, TimeoutError } from "../net/errors.ts";
import { serve, type Server } from "../net/server.ts";
import { writeAll } from "../net/write_all.ts";
import type { Logger } from "../log.ts";
import { formatIP, parseIP, unmapIPv4 } from "./ip.ts";
import { SOCKS5_DEFAULTS } from "./limits.ts";
import {
  AddressTypeError,
  AuthStatus,
  Command,
  COMMAND_NAMES,
  encodeReply,
  encodeSocks4Reply,
  hex,
  MAX_DOMAIN_LENGTH,
  Method,
  readAddress,
  Reply,
  REPLY_NAMES,
  Socks4Reply,
  type SocksAddress,
  Version,
} from "./protocol.ts";
import { DestinationRules } from "./rules.ts";
import type { UserTable } from "./auth.ts";
import { handleUdpAssociate } from "./udp.ts";
import { Sweeper } from "./sweeper.ts";

/** Options of {@linkcode startSocks5Server}; limits default to {@linkcode SOCKS5_DEFAULTS}. */
export interface Socks5ServerOptions {
  /** Users for username/password authentication; when non-empty, no-auth and SOCKS4 are off. */
  users?: UserTable;
  /** Destination rules; default allows everything. */
  rules?: DestinationRules;
  /** Serve BIND. @default {true} */
  allowBind?: boolean;
  /** Serve UDP ASSOCIATE. @default {true} */
  allowUdp?: boolean;
  /** Address put in BIND and UDP ASSOCIATE replies instead of the local one (behind NAT). */
  advertise?: string;
  /** Greeting, authentication and request deadline, in ms. @default {10000} */
  handshakeTimeoutMs?: number;
  /** Deadline for dialling the destination, in ms. @default {10000} */
  connectTimeoutMs?: number;
  /** Close a tunnel idle this long, in ms; 0 never. @default {3600000} */
  idleTimeoutMs?: number;
  /** Cap on a half-closed tunnel, in ms. @default {60000} */
  halfOpenTimeoutMs?: number;
  /** How long a BIND waits for its peer, in ms. @default {60000} */
  bindTimeoutMs?: number;
  /** Concurrent client connections. @default {1024} */
  maxConnections?: number;
  /** Handshake buffer per connection, in bytes. @default {512} */
  handshakeBufferSize?: number;
  /** First relay buffer per direction, in bytes. @default {512} */
  initialRelayBufferSize?: number;
  /** Largest relay buffer per direction, in bytes. @default {262144} */
  maxRelayBufferSize?: number;
  /** Largest UDP datagram relayed, in bytes. @default {65535} */
  maxDatagramSize?: number;
  /** Destinations per UDP association. @default {1024} */
  maxUdpPeers?: number;
  /** Where session lines go; none logs nothing. */
  logger?: Logger;
}

/** Options with every default filled in. */
export type ResolvedOptions =
  & Required<Omit<Socks5ServerOptions, "users" | "advertise" | "logger">>
  & Pick<Socks5ServerOptions, "users" | "advertise" | "logger">;

/** What one session did, for its log line. */
export interface SessionRecord {
  /** Client address. */
  client: string;
  /** Authenticated user. */
  user?: string;
  /** Protocol version spoken (4 or 5). */
  version?: number;
  /** Command name. */
  command?: string;
  /** Requested destination. */
  destination?: string;
  /** Address actually dialled / bound / accepted. */
  via?: string;
  /** Reply code sent (SOCKS5 numbering; SOCKS4 replies are noted as such). */
  reply?: number;
  /** Bytes client -> destination. */
  up: number;
  /** Bytes destination -> client. */
  down: number;
  /** Why the session ended early, or how the relay ended. */
  note?: string;
  /** performance.now() at accept. */
  start: number;
}

/** A SOCKS5 request after the handshake. */
export interface Socks5Request {
  /** CMD: 1 CONNECT, 2 BIND, 3 UDP ASSOCIATE. */
  command: number;
  /** DST.ADDR and DST.PORT. */
  destination: SocksAddress;
}

/** Everything a phase needs: the client connection, its reader, options, and the record. */
export interface SessionContext {
  /** The client connection. */
  conn: Deno.TcpConn;
  /** Reader over the client connection (holds read-ahead bytes). */
  reader: BufferedReader;
  /** Resolved options. */
  opts: ResolvedOptions;
  /** The session's log record. */
  record: SessionRecord;
  /** The server's shared deadline checker. */
  sweeper: Sweeper;
  /** Set once the relay closed the client connection (so it is not closed twice). */
  closed: boolean;
}

/** Raised inside a phase when the session must end after the given reply was sent. */
export class SessionEnd extends Error {
  /** Creates it; `message` is already in the session's log record. */
  constructor(message: string) {
    super(message);
    this.name = "SessionEnd";
  }
}

/** Fills defaults in. */
export function resolveOptions(options: Socks5ServerOptions): ResolvedOptions {
  const d = SOCKS5_DEFAULTS;
  return {
    users: options.users,
    advertise: options.advertise,
    logger: options.logger,
    rules: options.rules ?? new DestinationRules(),
    allowBind: options.allowBind ?? true,
    allowUdp: options.allowUdp ?? true,
    handshakeTimeoutMs: options.handshakeTimeoutMs ?? d.handshakeTimeoutMs,
    connectTimeoutMs: options.connectTimeoutMs ?? d.connectTimeoutMs,
    idleTimeoutMs: options.idleTimeoutMs ?? d.idleTimeoutMs,
    halfOpenTimeoutMs: options.halfOpenTimeoutMs ?? d.halfOpenTimeoutMs,
    bindTimeoutMs: options.bindTimeoutMs ?? d.bindTimeoutMs,
    maxConnections: options.maxConnections ?? d.maxConnections,
    handshakeBufferSize: options.handshakeBufferSize ?? d.handshakeBufferSize,
    initialRelayBufferSize: options.initialRelayBufferSize ?? d.initialRelayBufferSize,
    maxRelayBufferSize: options.maxRelayBufferSize ?? d.maxRelayBufferSize,
    maxDatagramSize: options.maxDatagramSize ?? d.maxDatagramSize,
    maxUdpPeers: options.maxUdpPeers ?? d.maxUdpPeers,
  };
}

/**
 * Serves SOCKS5 (and SOCKS4/4a when no users are configured) on `listener`.
 *
 * @example Usage
 * ```ts ignore
 * import { startSocks5Server } from "./server.ts";
 * const server = startSocks5Server(Deno.listen({ hostname: "127.0.0.1", port: 1080 }));
 * // ... later
 * await server.stop();
 * ```
 */
export function startSocks5Server(
  listener: Deno.TcpListener,
  options: Socks5ServerOptions = {},
): Server {
  const opts = resolveOptions(options);
  const log = opts.logger;
  let lastRefusalLog = 0;
  const sweeper = new Sweeper();
  const server = serve(listener, (conn) => handleClient(conn, opts, sweeper), {
    maxConnections: opts.maxConnections,
    onRefused(conn) {
      const now = performance.now();
      if (now - lastRefusalLog > 1000) {
        lastRefusalLog = now;
        log?.warn(
          `refused ${formatAddress(conn.remoteAddr)}: ${opts.maxConnections} connections open`,
        );
      }
    },
    onError(error, conn) {
      const who = conn ? `${formatAddress(conn.remoteAddr)}: ` : "";
      log?.error(`${who}${error instanceof Error ? error.message : String(error)}`);
    },
  });
  return {
    addr: server.addr,
    active: server.active,
    done: server.done,
    async stop(stopOptions) {
      await server.stop(stopOptions);
      sweeper.clear();
    },
  };
}

/** Serves one client connection from greeting to the end of its tunnel, then logs it. */
export async function handleClient(
  conn: Deno.TcpConn,
  opts: ResolvedOptions,
  sweeper: Sweeper = new Sweeper(),
): Promise<void> {
  const record: SessionRecord = {
    client: formatAddress(conn.remoteAddr),
    up: 0,
    down: 0,
    start: performance.now(),
  };
  const ctx: SessionContext = {
    conn,
    reader: new BufferedReader(conn, { bufferSize: opts.handshakeBufferSize }),
    opts,
    record,
    sweeper,
    closed: false,
  };
  try {
    conn.setNoDelay(true);
    // One deadline for greeting, authentication and request; on expiry the socket is closed.
    const request = await sweeper.deadline(
      readHandshake(ctx),
      opts.handshakeTimeoutMs,
      "the handshake",
      () => conn.close(),
    );
    if ("socks4" in request) await handleSocks4(ctx, request.socks4);
    else if (request.command === Command.Connect) await handleConnect(ctx, request.destination);
    else if (request.command === Command.Bind) await handleBind(ctx, request.destination);
    else await handleUdpAssociate(ctx, request.destination);
  } catch (error) {
    record.note ??= describe(error);
  } finally {
    if (!ctx.closed) {
      try {
        conn.close();
      } catch {
        // Closed by a deadline.
      }
    }
    logSession(opts.logger, record);
  }
}

/** Greeting, then the SOCKS5 method negotiation and request, or the SOCKS4 request. */
async function readHandshake(
  ctx: SessionContext,
): Promise<Socks5Request | { socks4: Socks4Request }> {
  const version = await readGreeting(ctx);
  ctx.record.version = version;
  if (version === Version.Socks4) return { socks4: await readSocks4Request(ctx) };
  await negotiateMethod(ctx);
  return await readRequest(ctx);
}

function describe(error: unknown): string {
  if (error instanceof Deno.errors.BadResource || error instanceof Deno.errors.Interrupted) {
    return "connection closed";
  }
  return error instanceof Error ? error.message : String(error);
}

function human(n: number): string {
  if (n < 1024) return `${n}B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)}KiB`;
  if (n < 1024 ** 3) return `${(n / 1024 / 1024).toFixed(1)}MiB`;
  return `${(n / 1024 ** 3).toFixed(2)}GiB`;
}

/** Formats and writes the session's one log line. */
function logSession(log: Logger | undefined, r: SessionRecord): void {
  if (!log) return;
  const parts = [r.client];
  if (r.version === Version.Socks4) parts.push("socks4");
  if (r.user !== undefined) parts.push(`user=${r.user}`);
  parts.push(r.command ?? "-");
  if (r.destination) parts.push(r.destination + (r.via ? ` via ${r.via}` : ""));
  if (r.reply !== undefined) {
    parts.push(`reply=0x${hex(r.reply)} (${REPLY_NAMES[r.reply] ?? "?"})`);
  }
  parts.push(`up=${human(r.up)} down=${human(r.down)}`);
  parts.push(`${((performance.now() - r.start) / 1000).toFixed(2)}s`);
  if (r.note) parts.push(`[${r.note}]`);
  log.info(parts.join(" "));
}

/** Writes a SOCKS5 reply and records its code; a write failure is recorded, not thrown. */
export async function sendReply(
  ctx: SessionContext,
  reply: number,
  bound?: HostPort,
): Promise<void> {
  ctx.record.reply = reply;
  try {
    await writeAll(ctx.conn, encodeReply(reply, bound));
  } catch (error) {
    ctx.record.note ??= `cannot send reply: ${describe(error)}`;
    throw new SessionEnd(ctx.record.note);
  }
}

/** Sends a failure reply and ends the session with `why` in the log. */
async function fail(ctx: SessionContext, reply: number, why: string): Promise<never> {
  ctx.record.note = why;
  await sendReply(ctx, reply);
  throw new SessionEnd(why);
}

/**
 * Phase 1: the version byte. 5 continues with the method negotiation; 4 is SOCKS4/4a, served
 * only when no users are configured; anything else closes the connection (there is no reply
 * format for an unknown version).
 */
export async function readGreeting(ctx: SessionContext): Promise<number> {
  const version = await ctx.reader.readU8();
  if (version === Version.Socks5 || version === Version.Socks4) return version;
  throw new ProtocolError(`bad version 0x${hex(version)}, closed`);
}

/**
 * Phase 2: `NMETHODS | METHODS`. With users configured only username/password is acceptable,
 * otherwise only no-auth; when the client offers neither, the answer is 0xFF and the
 * connection is closed (RFC 1928 section 3).
 */
export async function negotiateMethod(ctx: SessionContext): Promise<void> {
  const { reader, conn, opts } = ctx;
  const count = await reader.readU8();
  if (count === 0) {
    await writeAll(conn, new Uint8Array([Version.Socks5, Method.NoAcceptableMethods]));
    throw new ProtocolError("greeting offers no methods");
  }
  const methods = await reader.readExact(count, 255);
  const needAuth = opts.users !== undefined && opts.users.size > 0;
  const wanted = needAuth ? Method.UsernamePassword : Method.NoAuthenticationRequired;
  if (!methods.includes(wanted)) {
    await writeAll(conn, new Uint8Array([Version.Socks5, Method.NoAcceptableMethods]));
    throw new ProtocolError(
      `no acceptable method: client offers [${[...methods].map(hex).join(",")}], ` +
        `server needs 0x${hex(wanted)}`,
    );
  }
  await writeAll(conn, new Uint8Array([Version.Socks5, wanted]));
  if (needAuth) await authenticate(ctx);
}

/**
 * Phase 3 (RFC 1929): `VER=1 | ULEN | UNAME | PLEN | PASSWD`, answered `VER=1 | STATUS`. A
 * wrong user or password gets status 1 and the connection is closed.
 */
export async function authenticate(ctx: SessionContext): Promise<void> {
  const { reader, conn, opts } = ctx;
  const version = await reader.readU8();
  if (version !== Version.UserPassAuth) {
    await writeAll(conn, new Uint8Array([Version.UserPassAuth, AuthStatus.Failure]));
    throw new ProtocolError(`bad authentication version 0x${hex(version)}`);
  }
  const name = await reader.readExact(await reader.readU8(), 255);
  const password = await reader.readExact(await reader.readU8(), 255);
  const user = new TextDecoder().decode(name);
  if (!opts.users!.check(name, password)) {
    await writeAll(conn, new Uint8Array([Version.UserPassAuth, AuthStatus.Failure]));
    throw new ProtocolError(`authentication failed for user '${user}'`);
  }
  ctx.record.user = user;
  await writeAll(conn, new Uint8Array([Version.UserPassAuth, AuthStatus.Success]));
}

/**
 * Phase 4: `VER | CMD | RSV | ATYP | DST.ADDR | DST.PORT`. An unknown or disabled command gets
 * 0x07, an unknown address type 0x08, a version other than 5 a general failure.
 */
export async function readRequest(ctx: SessionContext): Promise<Socks5Request> {
  const { reader, opts, record } = ctx;
  const version = await reader.readU8();
  const command = await reader.readU8();
  await reader.readU8(); // RSV
  if (version !== Version.Socks5) {
    return await fail(ctx, Reply.GeneralFailure, `bad request version 0x${hex(version)}`);
  }
  record.command = COMMAND_NAMES[command] ?? `command 0x${hex(command)}`;
  const enabled = command === Command.Connect ||
    (command === Command.Bind && opts.allowBind) ||
    (command === Command.UdpAssociate && opts.allowUdp);
  if (!enabled) {
    const why = COMMAND_NAMES[command] ? "command disabled" : "unknown command";
    return await fail(ctx, Reply.CommandNotSupported, why);
  }
  let destination: SocksAddress;
  try {
    destination = await readAddress(reader);
  } catch (error) {
    if (error instanceof AddressTypeError) {
      return await fail(ctx, Reply.AddressTypeNotSupported, error.message);
    }
    if (error instanceof ProtocolError && !(error.name === "UnexpectedEofError")) {
      return await fail(ctx, Reply.GeneralFailure, error.message);
    }
    throw error;
  }
  record.destination = formatAddress(destination);
  return { command, destination };
}

/** Result of {@linkcode resolveDestination}: the addresses to try, or the reply to send. */
export type Resolution = { addresses: string[] } | { reply: number; why: string };

/**
 * Resolves a destination to the IP literals the rules allow: every address of a name, IPv4
 * and IPv6, in the resolver's order.
 */
export async function resolveDestination(
  hostname: string,
  rules: DestinationRules,
): Promise<Resolution> {
  let all: string[];
  if (parseIP(hostname)) {
    all = [hostname];
  } else {
    try {
      const found = await lookup(hostname, { all: true, verbatim: true });
      all = found.map((a) => a.address);
    } catch (error) {
      return {
        reply: Reply.HostUnreachable,
        why: `cannot resolve ${hostname}: ${describe(error)}`,
      };
    }
    if (all.length === 0) {
      return { reply: Reply.HostUnreachable, why: `no address for ${hostname}` };
    }
  }
  const allowed = rules.empty ? all : all.filter((a) => rules.allows(a));
  if (allowed.length === 0) {
    return { reply: Reply.NotAllowedByRuleset, why: `denied by rules: ${all.join(", ")}` };
  }
  return { addresses: allowed };
}

/** Maps a connect failure to its reply code (RFC 1928 section 6). */
export function replyForConnectError(error: unknown): number {
  if (error instanceof Deno.errors.ConnectionRefused) return Reply.ConnectionRefused;
  if (error instanceof Deno.errors.NetworkUnreachable) return Reply.NetworkUnreachable;
  if (error instanceof TimeoutError || error instanceof Deno.errors.TimedOut) {
    return Reply.TtlExpired;
  }
  const message = error instanceof Error ? error.message : "";
  if (/host is unreachable|no route to host/i.test(message)) return Reply.HostUnreachable;
  if (/network is unreachable/i.test(message)) return Reply.NetworkUnreachable;
  if (/too many open files/i.test(message)) return Reply.GeneralFailure;
  if (/refused/i.test(message)) return Reply.ConnectionRefused;
  if (/timed out/i.test(message)) return Reply.TtlExpired;
  return Reply.HostUnreachable;
}

/** Options of {@linkcode dialAny}. */
export interface DialOptions {
  /** Deadline for all addresses together, in ms. */
  timeoutMs: number;
  /** Deadline checker to use. @default {a new one} */
  sweeper?: Sweeper;
}

/**
 * Dials each address in turn, within one deadline for all of them, and resolves the first
 * connection; or the reply code for the last failure.
 */
export async function dialAny(
  addresses: string[],
  port: number,
  options: DialOptions,
): Promise<{ conn: Deno.TcpConn; address: string } | { reply: number; why: string }> {
  const { timeoutMs } = options;
  const sweeper = options.sweeper ?? new Sweeper();
  const deadline = performance.now() + timeoutMs;
  let lastError: unknown;
  for (const address of addresses) {
    const left = deadline - performance.now();
    if (left <= 0) break;
    const attempt = Deno.connect({ hostname: address, port });
    try {
      const conn = await sweeper.deadline(attempt, Math.ceil(left), `connect to ${address}`);
      return { conn, address };
    } catch (error) {
      attempt.then((c) => c.close(), () => {});
      lastError = error;
    }
  }
  lastError ??= new TimeoutError(`Timed out after ${timeoutMs} ms`);
  return { reply: replyForConnectError(lastError), why: describe(lastError) };
}

/**
 * Relays the client connection and `target`, recording the bytes moved and how it ended. The
 * idle and half-open caps are checked by the shared sweeper, not by a timer per tunnel: every
 * write notes the time, and the first `closeWrite` (end of file one way) starts the
 * half-open clock. Reads are not wrapped, so an idle tunnel holds nothing extra.
 */
async function relay(
  ctx: SessionContext,
  target: Deno.TcpConn,
  readA: Reader = ctx.reader,
): Promise<void> {
  const { opts, record, conn } = ctx;
  target.setNoDelay(true);
  let last = performance.now();
  let ended = 0;
  let endedAt = 0;
  const tracked = (c: Deno.TcpConn): Duplex => ({
    read: (p) => c.read(p),
    write: (p) => {
      last = performance.now();
      return c.write(p);
    },
    closeWrite: () => {
      if (++ended === 1) endedAt = performance.now();
      return c.closeWrite();
    },
    close: () => c.close(),
  });
  const { idleTimeoutMs, halfOpenTimeoutMs } = opts;
  const unwatch = ctx.sweeper.watch({
    expired: (now) =>
      (idleTimeoutMs > 0 && now - last > idleTimeoutMs) ||
      (halfOpenTimeoutMs > 0 && ended === 1 && now - endedAt > halfOpenTimeoutMs),
    expire() {
      record.note = ended === 1 ? "half-open timeout" : "idle timeout";
      for (const c of [conn, target]) {
        try {
          c.close();
        } catch {
          // Already closed.
        }
      }
    },
  });
  try {
    const result: CopyResult = await copyBidirectional(tracked(conn), tracked(target), {
      readA,
      readB: target,
      initialBufferSize: opts.initialRelayBufferSize,
      maxBufferSize: opts.maxRelayBufferSize,
      idleTimeoutMs: 0,
      halfOpenTimeoutMs: 0,
    });
    ctx.closed = true;
    record.up = result.aToB;
    record.down = result.bToA;
    if (result.end !== "done") {
      record.note ??= result.end === "error" ? `relay: ${describe(result.error)}` : result.end;
    }
  } finally {
    unwatch();
  }
}

/**
 * CONNECT: resolve, check the rules against each address, dial within the connect timeout,
 * reply with the real local address of the outgoing connection, then relay.
 */
export async function handleConnect(ctx: SessionContext, dst: SocksAddress): Promise<void> {
  const { opts, record } = ctx;
  const resolved = await resolveDestination(dst.hostname, opts.rules);
  if ("reply" in resolved) return await fail(ctx, resolved.reply, resolved.why);
  const dialled = await dialAny(resolved.addresses, dst.port, {
    timeoutMs: opts.connectTimeoutMs,
    sweeper: ctx.sweeper,
  });
  if ("reply" in dialled) return await fail(ctx, dialled.reply, dialled.why);
  const target = dialled.conn;
  record.via = formatAddress({ hostname: dialled.address, port: dst.port });
  try {
    await sendReply(ctx, Reply.Succeeded, target.localAddr);
  } catch (error) {
    target.close();
    throw error;
  }
  await relay(ctx, target);
}

/** True for 0.0.0.0, ::, and the domain "0": "any address". */
export function isUnspecified(hostname: string): boolean {
  if (hostname === "0") return true;
  const ip = parseIP(hostname);
  return ip !== undefined && ip.every((b) => b === 0);
}

/** Canonical text of an IP literal (IPv4-mapped IPv6 as IPv4), for comparisons. */
export function canonicalIP(hostname: string): string {
  const ip = parseIP(hostname);
  return ip ? formatIP(unmapIPv4(ip)) : hostname;
}

/**
 * BIND: listen on the control connection's local address, reply with that address (or
 * `--advertise`), wait for one peer (from DST's address when it is set, and allowed by the
 * rules), reply again with the peer's address, then relay. Peers from elsewhere are closed
 * and the wait goes on until the BIND timeout.
 */
export async function handleBind(ctx: SessionContext, dst: SocksAddress): Promise<void> {
  const { conn, reader, opts, record } = ctx;
  let expected: Set<string> | undefined;
  if (!isUnspecified(dst.hostname)) {
    const resolved = await resolveDestination(dst.hostname, opts.rules);
    if ("reply" in resolved) return await fail(ctx, resolved.reply, resolved.why);
    expected = new Set(resolved.addresses.map(canonicalIP));
  }
  const local = conn.localAddr;
  let listener: Deno.TcpListener;
  try {
    listener = Deno.listen({ hostname: local.hostname, port: 0, transport: "tcp" });
  } catch (error) {
    return await fail(ctx, Reply.GeneralFailure, `cannot listen: ${describe(error)}`);
  }
  let peer: Deno.TcpConn | undefined;
  // Watch the control connection: EOF means the client gave up. Bytes that arrive stay
  // buffered in the reader and go to the peer once the relay starts.
  let watch: Promise<boolean> | undefined;
  try {
    const bound = { hostname: opts.advertise ?? local.hostname, port: listener.addr.port };
    record.via = formatAddress(bound);
    await sendReply(ctx, Reply.Succeeded, bound);
    // A full buffer (LimitError) is not end of file.
    watch = reader.fill().catch((error) => error instanceof LimitError);
    const deadline = performance.now() + opts.bindTimeoutMs;
    while (!peer) {
      const left = deadline - performance.now();
      if (left <= 0) return await fail(ctx, Reply.TtlExpired, "no peer connected in time");
      const accepted = listener.accept();
      let stop = () => {};
      const outcome = await Promise.race([
        accepted.then((c) => ({ peer: c })),
        watch.then((more) => (more ? new Promise<never>(() => {}) : { eof: true })),
        new Promise<{ timeout: true }>((r) => {
          stop = ctx.sweeper.after(left, () => r({ timeout: true }));
        }),
      ]).finally(() => stop());
      if ("eof" in outcome) {
        record.note = "client closed before a peer connected";
        return;
      }
      if ("timeout" in outcome) {
        accepted.then((c) => c.close(), () => {});
        return await fail(ctx, Reply.TtlExpired, "no peer connected in time");
      }
      const from = canonicalIP(outcome.peer.remoteAddr.hostname);
      if ((expected && !expected.has(from)) || !opts.rules.allows(from)) {
        opts.logger?.debug(`${record.client}: BIND closed unexpected peer ${from}`);
        outcome.peer.close();
        continue;
      }
      peer = outcome.peer;
    }
  } finally {
    listener.close();
  }
  record.via = formatAddress(peer.remoteAddr);
  try {
    await sendReply(ctx, Reply.Succeeded, peer.remoteAddr);
  } catch (error) {
    peer.close();
    throw error;
  }
  const pending = watch;
  await relay(ctx, peer, {
    read: async (p: Uint8Array) => {
      await pending;
      return await reader.read(p);
    },
  });
}

/** A SOCKS4 or SOCKS4a request. */
export interface Socks4Request extends HostPort {
  /** CD: 1 CONNECT, 2 BIND. */
  command: number;
}

/**
 * The SOCKS4 and SOCKS4a request after the version byte:
 * `CD | DSTPORT | DSTIP | USERID NUL [| HOST NUL]`.
 */
async function readSocks4Request(ctx: SessionContext): Promise<Socks4Request> {
  const { reader } = ctx;
  const command = await reader.readU8();
  const port = await reader.readU16();
  const ip = await reader.readExact(4);
  await readNulTerminated(reader, "SOCKS4 user id");
  let hostname = formatIP(ip);
  // SOCKS4a: DSTIP 0.0.0.x with x != 0 means a host name follows.
  if (ip[0] === 0 && ip[1] === 0 && ip[2] === 0 && ip[3] !== 0) {
    hostname = await readNulTerminated(reader, "SOCKS4a host name");
  }
  return { command, hostname, port };
}

/**
 * SOCKS4 and SOCKS4a, CONNECT only. Refused (0x5B) when users are configured, since SOCKS4
 * has no authentication.
 */
export async function handleSocks4(ctx: SessionContext, head: Socks4Request): Promise<void> {
  const { conn, opts, record } = ctx;
  const refuse = async (why: string) => {
    record.note = why;
    record.reply = Reply.NotAllowedByRuleset;
    await writeAll(conn, encodeSocks4Reply(Socks4Reply.RequestRejectedOrFailed)).catch(() => {});
  };
  record.command = head.command === Command.Connect ? "CONNECT" : `command 0x${hex(head.command)}`;
  record.destination = formatAddress(head);
  if (opts.users !== undefined && opts.users.size > 0) {
    return await refuse("SOCKS4 refused: authentication is required");
  }
  if (head.command !== Command.Connect) {
    return await refuse("SOCKS4 supports CONNECT only");
  }
  const resolved = await resolveDestination(head.hostname, opts.rules);
  const dialled = "reply" in resolved ? resolved : await dialAny(resolved.addresses, head.port, {
    timeoutMs: opts.connectTimeoutMs,
    sweeper: ctx.sweeper,
  });
  if ("reply" in dialled) {
    record.note = dialled.why;
    record.reply = dialled.reply;
    await writeAll(conn, encodeSocks4Reply(Socks4Reply.RequestRejectedOrFailed)).catch(() => {});
    return;
  }
  const target = dialled.conn;
  record.via = formatAddress({ hostname: dialled.address, port: head.port });
  record.reply = Reply.Succeeded;
  try {
    await writeAll(conn, encodeSocks4Reply(Socks4Reply.RequestGranted, target.localAddr));
  } catch (error) {
    target.close();
    throw error;
  }
  await relay(ctx, target);
}

async function readNulTerminated(reader: BufferedReader, what: string): Promise<string> {
  const bytes: number[] = [];
  while (true) {
    const b = await reader.readU8();
    if (b === 0) break;
    if (bytes.length >= MAX_DOMAIN_LENGTH) {
      throw new ProtocolError(`${what} longer than ${MAX_DOMAIN_LENGTH} bytes`);
    }
    bytes.push(b);
  }
  return new TextDecoder().decode(new Uint8Array(bytes));
}
