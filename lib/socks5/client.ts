/**
 * A small SOCKS5 client (RFC 1928, RFC 1929): parse a `socks5://[user:pass@]host:port` proxy
 * URL and open a TCP connection to a target through it. Used by `send --proxy`,
 * `chat --proxy` and the tests.
 *
 * The handshake reads exactly the bytes of each answer and never more, so whatever the target
 * sends right after the proxy's reply stays in the connection for the caller.
 *
 * @module
 */

import { formatAddress, type HostPort, parseAddress } from "../net/address.ts";
import { withTimeout } from "../net/deadline.ts";
import { TimeoutError, UnexpectedEofError, UsageError } from "../net/errors.ts";
import { writeAll } from "../net/write_all.ts";
import {
  AddressType,
  AuthStatus,
  Command,
  encodeAddress,
  hex,
  Method,
  Reply,
  Socks5Error,
  Version,
} from "./protocol.ts";
import { formatIP } from "../net/ip.ts";

/** Parsed socks5://[user:pass@]host:port */
export interface Socks5Proxy {
  /** Proxy host name or IP literal (IPv6 without brackets). */
  hostname: string;
  /** Proxy port. */
  port: number;
  /** Username for RFC 1929 authentication, when the URL has one. */
  username?: string;
  /** Password for RFC 1929 authentication. */
  password?: string;
}

/** Port used when a proxy URL names none: the SOCKS port 1080. */
export const DEFAULT_PROXY_PORT = 1080;

/** Defaults of {@linkcode socks5Connect}'s options. */
export const CLIENT_DEFAULTS = {
  /** Whole handshake (TCP connect to the proxy through its reply), in ms. */
  timeoutMs: 10_000,
} as const;

/**
 * A proxy URL with its password replaced by `***`, for messages and logs.
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert/strict";
 * import { redactProxyUrl } from "./client.ts";
 * assert.equal(redactProxyUrl("socks5://alice:s3cret@host:1080"), "socks5://alice:***@host:1080");
 * assert.equal(redactProxyUrl("socks5://host:1080"), "socks5://host:1080");
 * ```
 */
export function redactProxyUrl(url: string): string {
  return url.replace(/^([^:/]*:\/\/[^:@/]*:).*@/, "$1***@");
}

/**
 * Parses "socks5://[user:pass@]host:port" (throws UsageError naming the bad part).
 * `socks5h://` is accepted as a synonym (names are always sent to the proxy unresolved);
 * user and password may be percent-encoded; the port defaults to 1080.
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert/strict";
 * import { parseProxyUrl } from "./client.ts";
 * const p = parseProxyUrl("socks5://alice:s%3Acret@127.0.0.1:1080");
 * assert.deepEqual(p, { hostname: "127.0.0.1", port: 1080, username: "alice", password: "s:cret" });
 * ```
 */
export function parseProxyUrl(url: string): Socks5Proxy {
  // Error messages show the URL without its password.
  const shown = redactProxyUrl(url);
  const m = /^([a-zA-Z0-9+.-]+):\/\/(.*)$/.exec(url);
  if (!m) {
    throw new UsageError(
      `Cannot parse proxy URL '${shown}': expected socks5://[user:pass@]host:port`,
    );
  }
  const scheme = m[1].toLowerCase();
  if (scheme !== "socks5" && scheme !== "socks5h") {
    throw new UsageError(`Cannot parse proxy URL '${shown}': scheme '${m[1]}' is not socks5`);
  }
  let rest = m[2];
  if (rest.endsWith("/")) rest = rest.slice(0, -1);
  if (rest.includes("/") || rest.includes("?") || rest.includes("#")) {
    throw new UsageError(`Cannot parse proxy URL '${shown}': unexpected path after host:port`);
  }
  const at = rest.lastIndexOf("@");
  const proxy: Socks5Proxy = { hostname: "", port: 0 };
  if (at >= 0) {
    const userinfo = rest.slice(0, at);
    rest = rest.slice(at + 1);
    // `user@host` names the user only: the password then comes from elsewhere
    // (`client_proxy.ts`: the environment or a file, never argv).
    const colon = userinfo.indexOf(":");
    const decode = (s: string, what: string) => {
      try {
        return decodeURIComponent(s);
      } catch {
        throw new UsageError(`Cannot parse proxy URL '${shown}': bad percent-encoding in ${what}`);
      }
    };
    proxy.username = decode(colon < 0 ? userinfo : userinfo.slice(0, colon), "the user name");
    if (colon >= 0) proxy.password = decode(userinfo.slice(colon + 1), "the password");
    const ulen = new TextEncoder().encode(proxy.username).length;
    if (ulen < 1 || ulen > 255) {
      throw new UsageError(`Cannot parse proxy URL '${shown}': user name must be 1 to 255 bytes`);
    }
    if (proxy.password !== undefined) checkProxyPassword(proxy.password, `proxy URL '${shown}'`);
  }
  let hp: HostPort;
  try {
    hp = parseAddress(rest, { defaultPort: DEFAULT_PROXY_PORT });
  } catch (error) {
    const why = error instanceof Error ? error.message : String(error);
    throw new UsageError(`Cannot parse proxy URL '${shown}': ${why}`);
  }
  proxy.hostname = hp.hostname;
  proxy.port = hp.port;
  return proxy;
}

/**
 * Checks an RFC 1929 password's length (1 to 255 bytes); `where` names its source in the error.
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert/strict";
 * import { checkProxyPassword } from "./client.ts";
 * checkProxyPassword("s3cret", "SOCKIT_PROXY_PASSWORD");
 * assert.throws(() => checkProxyPassword("", "SOCKIT_PROXY_PASSWORD"), /1 to 255 bytes/);
 * ```
 */
export function checkProxyPassword(password: string, where: string): void {
  const n = new TextEncoder().encode(password).length;
  if (n < 1 || n > 255) {
    throw new UsageError(`Cannot use the password from ${where}: it must be 1 to 255 bytes`);
  }
}

/** Reads exactly `n` bytes straight from `conn`, never more (no read-ahead). */
async function readExactly(conn: Deno.Conn, n: number, what: string): Promise<Uint8Array> {
  const buf = new Uint8Array(n);
  let off = 0;
  while (off < n) {
    const got = await conn.read(buf.subarray(off));
    if (got === null) {
      throw new UnexpectedEofError(
        `Cannot read the proxy's ${what}: connection closed after ${off} of ${n} bytes`,
      );
    }
    off += got;
  }
  return buf;
}

/** Greeting and method choice; then RFC 1929 authentication when the proxy asks for it. */
async function negotiateMethod(conn: Deno.Conn, proxy: Socks5Proxy): Promise<void> {
  const methods: number[] = [Method.NoAuthenticationRequired];
  if (proxy.username !== undefined) methods.push(Method.UsernamePassword);
  await writeAll(conn, new Uint8Array([Version.Socks5, methods.length, ...methods]));
  const [ver, method] = await readExactly(conn, 2, "method choice");
  if (ver !== Version.Socks5) {
    throw new Socks5Error(`Proxy answered the greeting with version ${ver}, not 5`);
  }
  if (method === Method.NoAuthenticationRequired) return;
  if (method === Method.UsernamePassword && proxy.username !== undefined) {
    await authenticate(conn, proxy.username, proxy.password ?? "");
    return;
  }
  if (method === Method.NoAcceptableMethods) {
    throw new Socks5Error(
      proxy.username === undefined
        ? "Proxy accepts none of our methods (it probably needs a user name and password)"
        : "Proxy accepts none of our methods (no-auth, username/password)",
    );
  }
  throw new Socks5Error(`Proxy chose method 0x${hex(method)}, which we did not offer`);
}

/** RFC 1929 sub-negotiation. */
async function authenticate(conn: Deno.Conn, username: string, password: string): Promise<void> {
  const u = new TextEncoder().encode(username);
  const p = new TextEncoder().encode(password);
  const msg = new Uint8Array(3 + u.length + p.length);
  msg[0] = Version.UserPassAuth;
  msg[1] = u.length;
  msg.set(u, 2);
  msg[2 + u.length] = p.length;
  msg.set(p, 3 + u.length);
  await writeAll(conn, msg);
  const [, status] = await readExactly(conn, 2, "authentication status");
  if (status !== AuthStatus.Success) {
    throw new Socks5Error(`Proxy rejected user '${username}' (status 0x${hex(status)})`);
  }
}

/**
 * Sends a request and reads its reply; resolves the bound address. Throws
 * {@linkcode Socks5Error} with the reply code when it is not "succeeded".
 */
async function request(
  conn: Deno.Conn,
  command: number,
  target: HostPort,
): Promise<HostPort> {
  const addr = encodeAddress(target);
  const msg = new Uint8Array(3 + addr.length);
  msg[0] = Version.Socks5;
  msg[1] = command;
  msg.set(addr, 3);
  await writeAll(conn, msg);
  return await readReply(conn, `request for ${formatAddress(target)}`);
}

/** Reads one reply `VER | REP | RSV | ATYP | BND.ADDR | BND.PORT`. */
async function readReply(conn: Deno.Conn, what: string): Promise<HostPort> {
  const [ver, rep, , atyp] = await readExactly(conn, 4, "reply");
  if (ver !== Version.Socks5) throw new Socks5Error(`Proxy replied with version ${ver}, not 5`);
  if (rep !== Reply.Succeeded) throw new Socks5Error(`Proxy refused the ${what}`, rep);
  let hostname: string;
  if (atyp === AddressType.IPv4) hostname = formatIP(await readExactly(conn, 4, "reply"));
  else if (atyp === AddressType.IPv6) hostname = formatIP(await readExactly(conn, 16, "reply"));
  else if (atyp === AddressType.DomainName) {
    const [len] = await readExactly(conn, 1, "reply");
    hostname = new TextDecoder().decode(await readExactly(conn, len, "reply"));
  } else {
    throw new Socks5Error(`Proxy replied with unknown address type 0x${hex(atyp)}`);
  }
  const pb = await readExactly(conn, 2, "reply");
  return { hostname, port: (pb[0] << 8) | pb[1] };
}

async function handshake<T>(
  proxy: Socks5Proxy,
  timeoutMs: number,
  what: string,
  steps: (conn: Deno.TcpConn) => Promise<T>,
): Promise<{ conn: Deno.TcpConn; value: T }> {
  let conn: Deno.TcpConn | undefined;
  let timedOut = false;
  const run = async () => {
    const c = await Deno.connect({ hostname: proxy.hostname, port: proxy.port });
    if (timedOut) {
      c.close();
      throw new TimeoutError(`Timed out connecting to the proxy ${formatAddress(proxy)}`);
    }
    conn = c;
    c.setNoDelay(true);
    return { conn: c, value: await steps(c) };
  };
  try {
    return await withTimeout(run(), timeoutMs, { what: what });
  } catch (error) {
    timedOut = true;
    try {
      conn?.close();
    } catch {
      // Already closed.
    }
    throw error;
  }
}

/**
 * Connects to `target` through the proxy (CONNECT, domain names sent as ATYP 3), returns the connected TcpConn ready for data. Throws a typed Socks5Error with the reply code on failure.
 *
 * A timeout (default {@linkcode CLIENT_DEFAULTS}.timeoutMs) covers the whole handshake and
 * raises `TimeoutError`; failing to reach the proxy raises the `Deno.errors` error of the
 * connect.
 *
 * @example Fetch a page through a local proxy
 * ```ts ignore
 * import { parseProxyUrl, socks5Connect } from "./client.ts";
 * const proxy = parseProxyUrl("socks5://127.0.0.1:1080");
 * const conn = await socks5Connect(proxy, { hostname: "example.com", port: 80 });
 * await conn.write(new TextEncoder().encode("GET / HTTP/1.0\r\n\r\n"));
 * ```
 */
export async function socks5Connect(
  proxy: Socks5Proxy,
  target: HostPort,
  options: { timeoutMs?: number } = {},
): Promise<Deno.TcpConn> {
  const timeoutMs = options.timeoutMs ?? CLIENT_DEFAULTS.timeoutMs;
  const what = `SOCKS5 CONNECT to ${formatAddress(target)} via ${formatAddress(proxy)}`;
  const { conn } = await handshake(proxy, timeoutMs, what, async (c) => {
    await negotiateMethod(c, proxy);
    return await request(c, Command.Connect, target);
  });
  return conn;
}

/** An open BIND request: the proxy listens; {@linkcode Socks5Bind.accepted} waits for the peer. */
export interface Socks5Bind {
  /** The control connection; after `accepted` resolves it carries the peer's data. */
  conn: Deno.TcpConn;
  /** The address the proxy listens on (first reply). */
  bound: HostPort;
  /** Resolves with the peer's address once it connected (second reply). */
  accepted(options?: { timeoutMs?: number }): Promise<HostPort>;
}

/**
 * Asks the proxy to listen for one incoming connection (BIND). `expected` is the address
 * the peer will connect from (0.0.0.0:0 accepts any peer, where the proxy allows it).
 *
 * @example Usage
 * ```ts ignore
 * import { parseProxyUrl, socks5Bind } from "./client.ts";
 * const bind = await socks5Bind(parseProxyUrl("socks5://127.0.0.1:1080"),
 *   { hostname: "0.0.0.0", port: 0 });
 * console.log(`peer should connect to ${bind.bound.hostname}:${bind.bound.port}`);
 * const peer = await bind.accepted();
 * ```
 */
export async function socks5Bind(
  proxy: Socks5Proxy,
  expected: HostPort,
  options: { timeoutMs?: number } = {},
): Promise<Socks5Bind> {
  const timeoutMs = options.timeoutMs ?? CLIENT_DEFAULTS.timeoutMs;
  const what = `SOCKS5 BIND via ${formatAddress(proxy)}`;
  const { conn, value: bound } = await handshake(proxy, timeoutMs, what, async (c) => {
    await negotiateMethod(c, proxy);
    return await request(c, Command.Bind, expected);
  });
  return {
    conn,
    bound,
    accepted: (opts = {}) =>
      withTimeout(readReply(conn, "incoming BIND connection"), opts.timeoutMs ?? 60_000, {
        what: "the BIND peer",
      }),
  };
}
