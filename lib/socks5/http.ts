/**
 * HTTP proxying beside SOCKS on the same port: what a client whose first byte is neither
 * 0x05 nor 0x04 gets (`--no-http` turns it off). Two kinds of request:
 *
 * - `CONNECT host:port` (what `https_proxy=`, git, npm, apt and browsers use): the same rules,
 *   name lookup, dial timeout, relay loop, idle and half-open caps as SOCKS CONNECT; the answer
 *   is `200 Connection established` and then the tunnel (bytes the client sent after the head
 *   are relayed too).
 * - absolute-form requests (`GET http://host/path`, any method but CONNECT): forwarded to the
 *   origin over a new connection per request, in origin form, with the hop-by-hop header fields
 *   removed (`Connection` and the fields it names, `Keep-Alive`, `Proxy-Authorization`,
 *   `Proxy-Connection`, `TE`, `Trailer`, `Upgrade`) and `Connection: close` to the origin. The
 *   response is streamed back; the client connection is kept alive for its next request when
 *   the response has a length (`Content-Length`, chunked, or none by its status) and the client
 *   did not ask to close. Request bodies need a `Content-Length` (chunked ones get 411).
 *
 * **Auth.** With users configured every request needs `Proxy-Authorization: Basic ...` with a
 * valid user; missing or wrong is `407` with `Proxy-Authenticate: Basic realm="sockit"`, and
 * a wrong one counts in the same per-source failure budget as SOCKS logins (locked-out sources
 * get 407 without a check).
 *
 * **Errors are status codes, never a hang**: 400 malformed request (and every size bound of
 * `http_request.ts`: 414, 431), 403 denied by the rules, 502 refused or unreachable, 504 dial
 * timeout, 411 chunked request body, 501 a scheme other than http in absolute form.
 *
 * @module
 */

import { BufferedReader } from "../net/buffered_reader.ts";
import { formatAddress } from "../net/address.ts";
import { HttpHeaders, readRequestHead, type RequestHead } from "../net/http_request.ts";
import { HttpError, refuseRequest } from "../net/http_response.ts";
import { writeAll } from "../net/write_all.ts";
import { quote } from "../log.ts";
import { reachForClient } from "./dial.ts";
import { Reply } from "./protocol.ts";
import { type ClientContext, formatDestination } from "./client_context.ts";
import { LoginGuard } from "./login_guard.ts";
import { relay } from "./tunnel.ts";

/** Bounds of the HTTP proxy, with their reasons. */
export const HTTP_PROXY_LIMITS = {
  /** Longest response head from an origin, in bytes (as for requests). */
  maxResponseHeadBytes: 32 * 1024,
  /** Most header lines in a response head. */
  maxResponseHeaders: 100,
  /** Longest chunk-size line of a chunked response, in bytes. */
  maxChunkLineBytes: 4096,
  /** Requests served on one kept-alive client connection. */
  maxRequestsPerConnection: 1000,
} as const;

/** Status codes the proxy answers with (beside `http_response.ts`'s own refusals). */
export const PROXY_STATUS = {
  Forbidden: 403,
  ProxyAuthenticationRequired: 407,
  LengthRequired: 411,
  NotImplemented: 501,
  BadGateway: 502,
  GatewayTimeout: 504,
} as const;

const PROXY_STATUS_TEXT: Record<number, string> = {
  200: "Connection established",
  400: "Bad Request",
  403: "Forbidden",
  407: "Proxy Authentication Required",
  411: "Length Required",
  501: "Not Implemented",
  502: "Bad Gateway",
  504: "Gateway Timeout",
};

/**
 * The SOCKS reply a dial failed with, as an HTTP status (the one table for both).
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert/strict";
 * import { statusForReply } from "./http.ts";
 * import { Reply } from "./protocol.ts";
 * assert.equal(statusForReply(Reply.NotAllowedByRuleset), 403);
 * assert.equal(statusForReply(Reply.ConnectionRefused), 502);
 * assert.equal(statusForReply(Reply.TtlExpired), 504);
 * ```
 */
export function statusForReply(reply: number): number {
  switch (reply) {
    case Reply.NotAllowedByRuleset:
      return PROXY_STATUS.Forbidden;
    case Reply.TtlExpired:
      return PROXY_STATUS.GatewayTimeout;
    default:
      return PROXY_STATUS.BadGateway;
  }
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();
const CRLF = encoder.encode("\r\n");

/** Hop-by-hop fields (RFC 9110 section 7.6.1), never forwarded. */
const HOP_BY_HOP = new Set([
  "connection",
  "keep-alive",
  "proxy-authorization",
  "proxy-authenticate",
  "proxy-connection",
  "te",
  "trailer",
  "transfer-encoding",
  "upgrade",
]);

/** Writes a short proxy answer (`status`, a one-line text body) with extra header fields. */
async function answer(
  ctx: ClientContext,
  status: number,
  text: string,
  headers: Record<string, string> = {},
  close = true,
): Promise<void> {
  const body = `${text}\n`;
  let head = `HTTP/1.1 ${status} ${PROXY_STATUS_TEXT[status] ?? "Error"}\r\n`;
  for (const [name, value] of Object.entries(headers)) head += `${name}: ${value}\r\n`;
  head += `Content-Type: text/plain; charset=utf-8\r\nContent-Length: ${
    encoder.encode(body).length
  }\r\n`;
  if (close) head += "Connection: close\r\n";
  await writeAll(ctx.conn, encoder.encode(`${head}\r\n${body}`));
}

/** Checks `Proxy-Authorization` when users are configured; answers 407 and returns false. */
async function authorized(ctx: ClientContext, head: RequestHead): Promise<boolean> {
  const { opts, logins } = ctx;
  if (opts.users === undefined || opts.users.size === 0) return true;
  const challenge = { "Proxy-Authenticate": 'Basic realm="sockit", charset="UTF-8"' };
  const source = LoginGuard.source(ctx.conn.remoteAddr.hostname);
  const value = head.headers.get("proxy-authorization");
  if (logins.locked(source)) {
    ctx.record.quiet = true;
    ctx.record.note = `login refused: too many failed logins from ${source}`;
    await answer(
      ctx,
      PROXY_STATUS.ProxyAuthenticationRequired,
      "too many failed logins",
      challenge,
    );
    return false;
  }
  const m = value?.match(/^Basic\s+([A-Za-z0-9+/=]+)\s*$/i);
  let name: Uint8Array | undefined;
  let password: Uint8Array | undefined;
  if (m) {
    let raw: Uint8Array | undefined;
    try {
      raw = Uint8Array.from(atob(m[1]), (c) => c.charCodeAt(0));
    } catch {
      raw = undefined;
    }
    const colon = raw?.indexOf(0x3a) ?? -1;
    if (raw && colon >= 0) {
      name = raw.subarray(0, colon);
      password = raw.subarray(colon + 1);
    }
  }
  if (name && password && opts.users.check(name, password)) {
    ctx.record.user = decoder.decode(name);
    return true;
  }
  if (value !== undefined) {
    if (logins.fail(source)) {
      opts.logger?.warn(`${source}: too many failed logins; refusing its logins for a while`);
    }
    ctx.record.note = `authentication failed${name ? ` for user ${quote(name)}` : ""}`;
  } else ctx.record.note = "no Proxy-Authorization";
  await answer(
    ctx,
    PROXY_STATUS.ProxyAuthenticationRequired,
    "proxy authentication required",
    challenge,
  );
  return false;
}

/**
 * Serves an HTTP proxy client (its first byte was neither SOCKS version): CONNECT tunnels and
 * absolute-form requests, with keep-alive between the latter. The first request head must
 * arrive within the handshake timeout, later ones within `httpKeepAliveMs`.
 */
export async function handleHttp(ctx: ClientContext): Promise<void> {
  const { opts, record } = ctx;
  record.version = 0;
  for (let served = 0; served < HTTP_PROXY_LIMITS.maxRequestsPerConnection; served++) {
    let head: RequestHead | null;
    try {
      head = await readRequestHead(ctx.reader, {
        timeoutMs: served === 0 ? opts.handshakeTimeoutMs : opts.httpKeepAliveMs,
      });
    } catch (error) {
      if (!(error instanceof HttpError)) throw error;
      record.note = error.message;
      await refuseRequest(ctx.conn, error).catch(() => {});
      ctx.closed = true;
      return;
    }
    if (head === null) return;
    record.command = head.method;
    if (!(await authorized(ctx, head))) {
      record.reply = PROXY_STATUS.ProxyAuthenticationRequired;
      return;
    }
    if (head.method === "CONNECT") return await connectTunnel(ctx, head);
    if (!(await forward(ctx, head))) return;
  }
}

/**
 * Resolves and dials `destination` under the rules and the connect timeout (the SOCKS path's
 * `reachDestination`), noting it in the record; a failure is answered with its status and
 * resolves undefined.
 */
async function dial(
  ctx: ClientContext,
  destination: { hostname: string; port: number },
): Promise<{ conn: Deno.TcpConn } | undefined> {
  const { record } = ctx;
  record.destination = formatDestination(destination);
  const dialled = await reachForClient(ctx, destination);
  if ("reply" in dialled) {
    const status = statusForReply(dialled.reply);
    record.reply = status;
    record.note = dialled.why;
    await answer(ctx, status, dialled.why);
    return undefined;
  }
  record.via = formatAddress({ hostname: dialled.address, port: destination.port });
  return dialled;
}

/** `CONNECT host:port`: dial (rules, timeout), `200`, then the tunnel. */
async function connectTunnel(ctx: ClientContext, head: RequestHead): Promise<void> {
  const { record } = ctx;
  record.command = "CONNECT";
  if (head.target.form !== "authority") {
    record.note = `CONNECT to ${quote(head.rawTarget)}`;
    return await answer(ctx, 400, "CONNECT needs host:port");
  }
  const dialled = await dial(ctx, { hostname: head.target.host, port: head.target.port });
  if (!dialled) return;
  record.reply = 200;
  try {
    await writeAll(ctx.conn, encoder.encode("HTTP/1.1 200 Connection established\r\n\r\n"));
  } catch (error) {
    dialled.conn.close();
    throw error;
  }
  await relay(ctx, dialled.conn);
}

/**
 * An absolute-form request: forwarded to its origin, the response streamed back. Resolves
 * true when the client connection may serve another request.
 */
async function forward(ctx: ClientContext, head: RequestHead): Promise<boolean> {
  const { opts, record } = ctx;
  record.command = head.method;
  const target = head.target;
  if (target.form !== "absolute") {
    record.note = `not a proxy request: ${quote(head.rawTarget)}`;
    await answer(ctx, 400, "this is a proxy: send absolute-form requests (http://host/path)");
    return false;
  }
  if (target.scheme !== "http") {
    record.note = `scheme ${quote(target.scheme)}`;
    await answer(
      ctx,
      PROXY_STATUS.NotImplemented,
      `${target.scheme}: only http is forwarded (use CONNECT)`,
    );
    return false;
  }
  const headers = head.headers;
  if (headers.get("transfer-encoding") !== undefined) {
    record.note = "chunked request body";
    await answer(ctx, PROXY_STATUS.LengthRequired, "request bodies need a Content-Length");
    return false;
  }
  const lengthText = headers.get("content-length");
  const bodyLength = lengthText === undefined ? 0 : Number(lengthText);
  if (!Number.isSafeInteger(bodyLength) || bodyLength < 0 || !/^\d+$/.test(lengthText ?? "0")) {
    record.note = `bad Content-Length ${quote(lengthText ?? "")}`;
    await answer(ctx, 400, "bad Content-Length");
    return false;
  }
  // A refused dial is answered; the body was not read, so the connection ends there.
  const dialled = await dial(ctx, { hostname: target.host, port: target.port });
  if (!dialled) return false;
  const origin = dialled.conn;
  const clientWantsClose = wantsClose(head.version, headers);
  // No byte either way for `httpIdleMs`: the exchange is cut (504 when no answer started).
  const idleMs = opts.httpIdleMs;
  let last = performance.now();
  let idle = false;
  const touch = () => (last = performance.now());
  const stopWatch = ctx.deadlines.schedule(last + idleMs, (now) => {
    if (now - last < idleMs) return last + idleMs;
    idle = true;
    origin.close();
    // An answer under way that the client does not take: the client goes too.
    if (record.reply !== undefined) {
      ctx.closed = true;
      ctx.conn.close();
    }
    return undefined;
  });
  const fromOrigin = {
    read: async (p: Uint8Array) => {
      const n = await origin.read(p);
      touch();
      return n;
    },
  };
  const toClient = { write: (p: Uint8Array) => ctx.conn.write(p).finally(touch) };
  const toOrigin = { write: (p: Uint8Array) => origin.write(p).finally(touch) };
  try {
    origin.setNoDelay(true);
    await writeAll(toOrigin, encoder.encode(originRequest(head)));
    record.up += await copyExactly(ctx.reader, toOrigin, bodyLength, touch);
    const reader = new BufferedReader(fromOrigin);
    let response = await readResponseHead(reader);
    // Interim answers (100 Continue, 103 Early Hints) go to the client; the final one follows.
    while (response.status >= 100 && response.status < 200 && response.status !== 101) {
      await writeAll(toClient, encoder.encode(interimHead(response)));
      response = await readResponseHead(reader);
    }
    record.reply = response.status;
    const length = bodyFraming(head.method, response);
    const keep = !clientWantsClose && length.kind !== "until-close";
    await writeAll(toClient, encoder.encode(clientResponseHead(response, keep)));
    if (length.kind === "length") {
      record.down += await copyExactly(reader, toClient, length.bytes, touch);
    } else if (length.kind === "chunked") record.down += await copyChunked(reader, toClient);
    else if (length.kind === "until-close") record.down += await copyToEnd(reader, toClient);
    return keep;
  } catch (error) {
    const status = idle ? PROXY_STATUS.GatewayTimeout : PROXY_STATUS.BadGateway;
    const why = idle
      ? `no byte moved for ${idleMs} ms`
      : `the origin failed: ${(error as Error).message}`;
    if (record.reply === undefined) {
      record.reply = status;
      await answer(ctx, status, why).catch(() => {});
    }
    record.note ??= why;
    return false;
  } finally {
    stopWatch();
    origin.close();
  }
}

/** An interim (1xx) response head as the client gets it. */
function interimHead(response: ResponseHead): string {
  let text = `${response.statusLine}\r\n`;
  for (const [name, value] of response.headers) {
    if (!HOP_BY_HOP.has(name.toLowerCase())) text += `${name}: ${value}\r\n`;
  }
  return `${text}\r\n`;
}

function wantsClose(version: string, headers: HttpHeaders): boolean {
  const connection = (headers.get("connection") ?? "").toLowerCase();
  const proxyConnection = (headers.get("proxy-connection") ?? "").toLowerCase();
  if (/\bclose\b/.test(connection) || /\bclose\b/.test(proxyConnection)) return true;
  return version === "1.0" && !/\bkeep-alive\b/.test(connection + proxyConnection);
}

/** Names the `Connection` field lists, which are hop-by-hop too. */
function connectionTokens(value: string | undefined): Set<string> {
  return new Set((value ?? "").split(",").map((t) => t.trim().toLowerCase()).filter(Boolean));
}

/** The request for the origin: origin form, end-to-end fields only, `Connection: close`. */
function originRequest(head: RequestHead): string {
  const target = head.target as { host: string; port: number; path: string; query: string };
  const named = connectionTokens(head.headers.get("connection"));
  let text = `${head.method} ${target.path || "/"}${
    target.query ? `?${target.query}` : ""
  } HTTP/1.1\r\n`;
  // Host is the target's (RFC 9112 section 3.2.2), whatever the client put there.
  const h = target.host.includes(":") ? `[${target.host}]` : target.host;
  text += `Host: ${target.port === 80 ? h : `${h}:${target.port}`}\r\n`;
  for (const [name, value] of head.headers) {
    const lower = name.toLowerCase();
    if (HOP_BY_HOP.has(lower) || named.has(lower) || lower === "host") continue;
    text += `${name}: ${value}\r\n`;
  }
  return `${text}Connection: close\r\n\r\n`;
}

interface ResponseHead {
  status: number;
  statusLine: string;
  headers: [string, string][];
}

/** Reads an origin's response head (bounded); throws on anything malformed. */
async function readResponseHead(reader: BufferedReader): Promise<ResponseHead> {
  const L = HTTP_PROXY_LIMITS;
  let total = 0;
  const line = async () => {
    const bytes = await reader.readLine(L.maxResponseHeadBytes);
    if (bytes === null) throw new Error("the origin closed before its response head");
    total += bytes.length + 2;
    if (total > L.maxResponseHeadBytes) throw new Error("the origin's response head is too long");
    return decoder.decode(bytes);
  };
  const statusLine = await line();
  const m = statusLine.match(/^HTTP\/1\.[01] (\d{3})(?: .*)?$/);
  if (!m) throw new Error(`bad status line from the origin: ${quote(statusLine.slice(0, 80))}`);
  const headers: [string, string][] = [];
  while (true) {
    const text = await line();
    if (text === "") break;
    if (headers.length >= L.maxResponseHeaders) throw new Error("too many response header fields");
    const colon = text.indexOf(":");
    if (colon <= 0) throw new Error(`bad response header ${quote(text.slice(0, 80))}`);
    headers.push([text.slice(0, colon).trim(), text.slice(colon + 1).trim()]);
  }
  return { status: Number(m[1]), statusLine, headers };
}

type Framing =
  | { kind: "none" }
  | { kind: "length"; bytes: number }
  | { kind: "chunked" }
  | { kind: "until-close" };

/** How the response body ends (RFC 9112 section 6.3). */
function bodyFraming(method: string, response: ResponseHead): Framing {
  const s = response.status;
  if (method === "HEAD" || (s >= 100 && s < 200) || s === 204 || s === 304) return { kind: "none" };
  const get = (name: string) =>
    response.headers.filter(([n]) => n.toLowerCase() === name).map(([, v]) => v);
  const te = get("transfer-encoding");
  if (te.length > 0) {
    return /(^|,)\s*chunked\s*$/i.test(te.join(","))
      ? { kind: "chunked" }
      : { kind: "until-close" };
  }
  const lengths = new Set(get("content-length"));
  if (lengths.size === 1) {
    const value = [...lengths][0];
    if (/^\d+$/.test(value) && Number.isSafeInteger(Number(value))) {
      return { kind: "length", bytes: Number(value) };
    }
  }
  return { kind: "until-close" };
}

/** The response head for the client: hop-by-hop fields out, our `Connection`. */
function clientResponseHead(response: ResponseHead, keepAlive: boolean): string {
  const named = connectionTokens(
    response.headers.find(([n]) => n.toLowerCase() === "connection")?.[1],
  );
  const chunked = response.headers.some(([n]) => n.toLowerCase() === "transfer-encoding");
  let text = `${response.statusLine}\r\n`;
  for (const [name, value] of response.headers) {
    const lower = name.toLowerCase();
    // Transfer-Encoding stays: the chunked body is passed through as it is; with it, a
    // Content-Length is dropped (RFC 9112 section 6.3).
    if (lower !== "transfer-encoding" && (HOP_BY_HOP.has(lower) || named.has(lower))) continue;
    if (chunked && lower === "content-length") continue;
    text += `${name}: ${value}\r\n`;
  }
  return `${text}Connection: ${keepAlive ? "keep-alive" : "close"}\r\n\r\n`;
}

/** Where the copies write: a socket, or a wrapper that notes activity. */
interface Writer {
  write(p: Uint8Array): Promise<number>;
}

/** Copies exactly `n` bytes from `reader` to `to`; throws if the source ends first. */
async function copyExactly(
  reader: BufferedReader,
  to: Writer,
  n: number,
  touch: () => void = () => {},
): Promise<number> {
  const buf = new Uint8Array(Math.min(Math.max(n, 1), 256 * 1024));
  let left = n;
  while (left > 0) {
    const got = await reader.read(buf.subarray(0, Math.min(buf.length, left)));
    if (got === null) throw new Error(`the body ended ${left} bytes short`);
    touch();
    await writeAll(to, buf.subarray(0, got));
    left -= got;
  }
  return n;
}

/** Copies a chunked body as it is, through its last chunk and trailer. */
async function copyChunked(reader: BufferedReader, to: Writer): Promise<number> {
  let total = 0;
  const line = async () => {
    const bytes = await reader.readLine(HTTP_PROXY_LIMITS.maxChunkLineBytes);
    if (bytes === null) throw new Error("the chunked body ended early");
    await writeAll(to, bytes);
    await writeAll(to, CRLF);
    total += bytes.length + 2;
    return decoder.decode(bytes);
  };
  while (true) {
    const sizeLine = await line();
    const m = sizeLine.match(/^([0-9A-Fa-f]{1,12})(;.*)?$/);
    if (!m) throw new Error(`bad chunk size ${quote(sizeLine.slice(0, 40))}`);
    const size = parseInt(m[1], 16);
    if (size === 0) {
      while ((await line()) !== "") {
        // Trailer fields, passed through.
      }
      return total;
    }
    total += await copyExactly(reader, to, size + 2);
  }
}

/** Copies everything up to the origin's end of file. */
async function copyToEnd(reader: BufferedReader, to: Writer): Promise<number> {
  const buf = new Uint8Array(256 * 1024);
  let total = 0;
  while (true) {
    const got = await reader.read(buf);
    if (got === null) return total;
    await writeAll(to, buf.subarray(0, got));
    total += got;
  }
}
