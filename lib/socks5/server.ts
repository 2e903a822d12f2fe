/**
 * The SOCKS5 server (RFC 1928, RFC 1929) with SOCKS4/4a for open proxies: the accept loop
 * and the path of one client connection.
 *
 * A client connection goes through one function per phase, each in the module named after it:
 * `readGreeting`, `negotiateMethod`, `authenticate` and `readRequest` (handshake.ts), then
 * `handleConnect` (connect.ts), `handleBind` (bind.ts) or `handleUdpAssociate` (udp.ts);
 * SOCKS4 requests go to socks4.ts. Every failure path sends the reply the RFC asks for and
 * closes that one connection; the server keeps serving the others. The handshake is read
 * through a `BufferedReader`, so a greeting split into single bytes and a greeting, request
 * and payload in one write behave the same; bytes read ahead are handed to the relay.
 * Deadlines (handshake, name lookup and dial, BIND, linger, idle, half-open) are all tasks on
 * one {@linkcode Deadlines} scheduler that the server owns, so stopping it cancels them at
 * once. Destinations are resolved by the proxy itself (resolve.ts) and the rules are checked
 * against exactly the addresses dialled. Failed logins are counted per source in one
 * {@linkcode LoginGuard}, which locks a guessing address out (one warning per lockout).
 *
 * One log line per client connection: client, user, command, destination (and the address dialled),
 * reply code, bytes each way and duration; peer-supplied strings in it are quoted.
 *
 * @module
 */

import { BufferedReader } from "../net/buffered_reader.ts";
import { Deadlines } from "../net/deadline.ts";
import { formatAddress } from "../net/address.ts";
import { serve, type Server } from "../net/server.ts";
import { handleBind } from "./bind.ts";
import { handleConnect } from "./connect.ts";
import { negotiateMethod, readGreeting, readRequest, type Socks5Request } from "./handshake.ts";
import { type ResolvedOptions, resolveOptions, type Socks5ServerOptions } from "./options.ts";
import { Command, Version } from "./protocol.ts";
import {
  type ClientContext,
  type ClientRecord,
  lingerClose,
  logClientLine,
} from "./client_context.ts";
import { describeError } from "./errors.ts";
import { handleSocks4, readSocks4Request, type Socks4Request } from "./socks4.ts";
import { handleUdpAssociate } from "./udp.ts";
import { handleHttp } from "./http.ts";
import { LoginGuard } from "./login_guard.ts";
import type { UserTable } from "./auth.ts";
import { Socks5Stats, type Socks5StatsSnapshot } from "./stats.ts";
import type { AddressRules } from "../net/address_rules.ts";

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
): Socks5Server {
  const opts = resolveOptions(options);
  const log = opts.logger;
  let lastRefusalLog = -Infinity;
  let lastDeniedLog = -Infinity;
  let deniedSince = 0;
  const deadlines = new Deadlines();
  const logins = newLoginGuard(opts);
  const stats = new Socks5Stats();
  let accepted = 0;
  const accept = (conn: Deno.TcpConn) => {
    accepted++;
    // Client rules, before a byte is read: a denied source is closed at once, logged at most
    // once a second (the next line says how many more).
    const source = conn.remoteAddr.hostname;
    if (!opts.clientRules.empty && !opts.clientRules.allows(source)) {
      conn.close();
      stats.clientsDenied++;
      deniedSince++;
      const now = performance.now();
      if (now - lastDeniedLog > 1000) {
        log?.info(
          `refused ${formatAddress(conn.remoteAddr)}: client address denied by the rules` +
            (deniedSince > 1 ? ` (${deniedSince - 1} more since the last such line)` : ""),
        );
        lastDeniedLog = now;
        deniedSince = 0;
      }
      return Promise.resolve("closed" as const);
    }
    return handleClient(conn, opts, { deadlines, logins, stats });
  };
  const server = serve(listener, accept, {
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
      deadlines.clear();
    },
    stats: () => ({ ...stats.snapshot(), accepted, active: server.active.size }),
    reconfigure(next) {
      // Sessions read these when they reach the step that uses them: established tunnels
      // are not affected, new handshakes and dials are.
      opts.users = next.users.size > 0 ? next.users : undefined;
      opts.rules = next.rules;
      opts.clientRules = next.clientRules;
    },
  };
}

/** A running SOCKS5 server whose users and rules can be replaced (SIGHUP). */
export interface Socks5Server extends Server {
  /** The counters, with connections accepted since start and open now. */
  stats(): Socks5StatsSnapshot & { accepted: number; active: number };
  /** New users and rules for new sessions; open tunnels keep going. */
  reconfigure(next: { users: UserTable; rules: AddressRules; clientRules: AddressRules }): void;
}

/** What the client connections of one server share; see {@linkcode handleClient}. */
export interface SharedState {
  /** The server's deadline scheduler. @default {a new one} */
  deadlines?: Deadlines;
  /** The server's failed-login table. @default {a new one, from `opts`} */
  logins?: LoginGuard;
  /** Where ended sessions are counted. @default {not counted} */
  stats?: Socks5Stats;
}

function newLoginGuard(opts: ResolvedOptions): LoginGuard {
  return new LoginGuard({
    maxFailures: opts.authMaxFailures,
    windowMs: opts.authFailureWindowMs,
    lockoutMs: opts.authLockoutMs,
    maxSources: opts.authMaxSources,
  });
}

/**
 * Serves one client connection from greeting to the end of its tunnel, then logs it. Its
 * deadlines are tasks on `shared.deadlines` (the server's scheduler), its failed logins
 * count in `shared.logins`.
 */
export async function handleClient(
  conn: Deno.TcpConn,
  opts: ResolvedOptions,
  shared: SharedState = {},
): Promise<"closed"> {
  const deadlines = shared.deadlines ?? new Deadlines();
  const record: ClientRecord = {
    client: formatAddress(conn.remoteAddr),
    up: 0,
    down: 0,
    start: performance.now(),
  };
  const ctx: ClientContext = {
    conn,
    reader: new BufferedReader(conn, { bufferSize: opts.handshakeBufferSize }),
    opts,
    record,
    deadlines,
    logins: shared.logins ?? newLoginGuard(opts),
    closed: false,
  };
  try {
    conn.setNoDelay(true);
    // One deadline for greeting, authentication and request; on expiry the socket is closed.
    const request = await deadlines.deadline(readHandshake(ctx), opts.handshakeTimeoutMs, {
      what: "the handshake",
      onTimeout: () => conn.close(),
    });
    if ("http" in request) await handleHttp(ctx);
    else if ("socks4" in request) await handleSocks4(ctx, request.socks4);
    else if (request.command === Command.Connect) await handleConnect(ctx, request.destination);
    else if (request.command === Command.Bind) await handleBind(ctx, request.destination);
    else await handleUdpAssociate(ctx, request.destination);
  } catch (error) {
    record.note ??= describeError(error);
  } finally {
    if (!ctx.closed) await lingerClose(ctx);
    logClientLine(opts.logger, record);
    shared.stats?.record(record);
  }
  // Either the relay or lingerClose closed it.
  return "closed";
}

/**
 * Greeting, then the SOCKS5 method negotiation and request, or the SOCKS4 request; or, when
 * the first byte is neither version and HTTP is on, an HTTP proxy client (its request head is
 * read by `http.ts`, under its own deadline).
 */
async function readHandshake(
  ctx: ClientContext,
): Promise<Socks5Request | { socks4: Socks4Request } | { http: true }> {
  if (ctx.opts.allowHttp) {
    const [first] = await ctx.reader.peek(1);
    if (first !== Version.Socks5 && first !== Version.Socks4) return { http: true };
  }
  const version = await readGreeting(ctx);
  ctx.record.version = version;
  if (version === Version.Socks4) return { socks4: await readSocks4Request(ctx) };
  await negotiateMethod(ctx);
  return await readRequest(ctx);
}
