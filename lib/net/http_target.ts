/**
 * HTTP request targets (RFC 9112 section 3.2), parsed for the relay's page and WebSocket and
 * for the HTTP proxy beside SOCKS:
 *
 * | form | example | methods |
 * | --- | --- | --- |
 * | origin | `/path?query` | every method but CONNECT |
 * | absolute | `http://host:8080/path?query` (`http`, `https`, `ws`, `wss`) | every method but CONNECT: what a client sends a proxy |
 * | authority | `host:port`, `[::1]:443` (port required) | CONNECT only |
 * | asterisk | `*` | OPTIONS only |
 *
 * Hosts come without IPv6 brackets, `query` without its `?`; nothing is percent-decoded, and
 * user information (`user@host`) and fragments (`#x`) are refused. Every refusal is a 400
 * {@linkcode HttpError} whose message quotes the target.
 *
 * @module
 */

import { HttpError, HttpStatus } from "./http_response.ts";
import { quote } from "../log.ts";

/** Where a request goes: the four request-target forms of RFC 9112 section 3.2. */
export type RequestTarget =
  | { form: "origin"; path: string; query: string }
  | { form: "absolute"; scheme: string; host: string; port: number; path: string; query: string }
  | { form: "authority"; host: string; port: number }
  | { form: "asterisk" };

/** Default ports of the schemes an absolute-form target may use. */
const DEFAULT_PORTS: Readonly<Record<string, number>> = { http: 80, https: 443, ws: 80, wss: 443 };
const REG_NAME = /^[A-Za-z0-9\-._~!$&'()*+,;=%]+$/;
const IPV6_LITERAL = /^[0-9A-Fa-f:.]+$/;

function badRequest(message: string): HttpError {
  return new HttpError(HttpStatus.BadRequest, message);
}

/** Shows at most 64 characters of network text, quoted. */
function excerpt(text: string): string {
  return quote(text.length > 64 ? `${text.slice(0, 64)}...` : text);
}

/**
 * Parses `host[:port]` (IPv6 in brackets) of a URI authority or a Host field; returns the host
 * without brackets and the port, `defaultPort` when none is given (a required port when it is
 * undefined). Throws a 400 {@linkcode HttpError} naming `what`.
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert/strict";
 * import { parseAuthority } from "./http_target.ts";
 * assert.deepEqual(parseAuthority("[::1]:8080", { what: "target" }), { host: "::1", port: 8080 });
 * assert.deepEqual(parseAuthority("example.com", { what: "Host", defaultPort: 80 }), {
 *   host: "example.com",
 *   port: 80,
 * });
 * assert.throws(() => parseAuthority("example.com", { what: "target" }), /missing port/);
 * ```
 */
export function parseAuthority(
  text: string,
  options: { what: string; defaultPort?: number },
): { host: string; port: number } {
  const bad = (why: string) => badRequest(`Cannot parse ${options.what} ${excerpt(text)}: ${why}`);
  if (text.includes("@")) throw bad("user information is not allowed");
  let host: string;
  let portText: string | undefined;
  if (text.startsWith("[")) {
    const close = text.indexOf("]");
    if (close < 0) throw bad("missing ']'");
    host = text.slice(1, close);
    if (!IPV6_LITERAL.test(host) || !host.includes(":")) throw bad("bad IPv6 literal");
    const rest = text.slice(close + 1);
    if (rest !== "") {
      if (!rest.startsWith(":")) throw bad("expected ':' after ']'");
      portText = rest.slice(1);
    }
  } else {
    const i = text.lastIndexOf(":");
    host = i < 0 ? text : text.slice(0, i);
    if (i >= 0) portText = text.slice(i + 1);
    if (!REG_NAME.test(host)) throw bad("bad host");
  }
  if (portText === undefined || portText === "") {
    if (options.defaultPort === undefined) throw bad("missing port");
    return { host, port: options.defaultPort };
  }
  if (!/^\d{1,5}$/.test(portText) || Number(portText) < 1 || Number(portText) > 65535) {
    throw bad("port is not 1 to 65535");
  }
  return { host, port: Number(portText) };
}

function splitQuery(pathAndQuery: string): { path: string; query: string } {
  const q = pathAndQuery.indexOf("?");
  return q < 0
    ? { path: pathAndQuery, query: "" }
    : { path: pathAndQuery.slice(0, q), query: pathAndQuery.slice(q + 1) };
}

/**
 * Parses the request-target `raw` of a `method` request into its form (see the module doc).
 *
 * @example The forms a proxy meets
 * ```ts
 * import assert from "node:assert/strict";
 * import { parseTarget } from "./http_target.ts";
 * assert.deepEqual(parseTarget("CONNECT", "example.com:443"), { form: "authority", host: "example.com", port: 443 });
 * assert.deepEqual(parseTarget("GET", "http://[::1]/x?y"), {
 *   form: "absolute", scheme: "http", host: "::1", port: 80, path: "/x", query: "y",
 * });
 * assert.deepEqual(parseTarget("GET", "/ws"), { form: "origin", path: "/ws", query: "" });
 * assert.throws(() => parseTarget("GET", "example.com:443"), { status: 400 });
 * ```
 */
export function parseTarget(method: string, raw: string): RequestTarget {
  const bad = (why: string) => badRequest(`Cannot parse request target ${excerpt(raw)}: ${why}`);
  if (raw.includes("#")) throw bad("a fragment is not allowed");
  if (method === "CONNECT") {
    return { form: "authority", ...parseAuthority(raw, { what: "CONNECT target" }) };
  }
  if (raw === "*") {
    if (method !== "OPTIONS") throw bad(`only OPTIONS takes '*', not ${excerpt(method)}`);
    return { form: "asterisk" };
  }
  if (raw.startsWith("/")) return { form: "origin", ...splitQuery(raw) };
  const m = /^([A-Za-z][A-Za-z0-9+.-]*):\/\/([^/?]*)(.*)$/.exec(raw);
  if (!m) throw bad("expected /path, scheme://host/path, or host:port for CONNECT");
  const scheme = m[1].toLowerCase();
  const defaultPort = DEFAULT_PORTS[scheme];
  if (defaultPort === undefined) throw bad(`unsupported scheme ${excerpt(scheme)}`);
  const { host, port } = parseAuthority(m[2], { what: "target authority", defaultPort });
  const { path, query } = splitQuery(m[3]);
  return { form: "absolute", scheme, host, port, path: path === "" ? "/" : path, query };
}
