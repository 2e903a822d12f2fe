/**
 * A bounded HTTP/1.1 request-head parser (RFC 9112), generic enough for every sockit server
 * that meets HTTP: the relay's chat page and WebSocket upgrade, and the HTTP proxy beside
 * SOCKS (`CONNECT host:port HTTP/1.1`, `GET http://host/path HTTP/1.1`).
 *
 * ```
 * request-line   method SP request-target SP HTTP-version CRLF     (at most 8 KiB: else 414)
 * field-line     field-name ":" OWS field-value OWS CRLF           (at most 100: else 431)
 * end of head    CRLF                                              (head at most 32 KiB: else 431)
 * ```
 *
 * {@linkcode readRequestHead} reads the head only, up to and including the empty line, through
 * a {@linkcode BufferedReader} (its `readLine(max)` refuses an over-long line before buffering
 * more of it: no new "read until CRLFCRLF" was needed), within {@linkcode HTTP_LIMITS}. Every
 * way a head can be wrong is an {@linkcode HttpError} (`http_response.ts`) carrying the status
 * to answer with:
 *
 * | status | when |
 * | --- | --- |
 * | 400 | a malformed request line or field line; obs-fold (a field line starting with SP or HTAB); a space before ":"; a control character (CR, NUL...) inside a line; no `Host` (HTTP/1.1), two, or a bad one; a target the method does not take (`http_target.ts`); end of input inside the head |
 * | 408 | the whole head did not arrive within `timeoutMs` |
 * | 414 | the request line is longer than `maxRequestLineBytes` |
 * | 431 | more than `maxHeaders` field lines, or a head longer than `maxHeadBytes` |
 * | 505 | an HTTP major version other than 1 |
 *
 * The request-target is parsed into a {@linkcode RequestTarget} (origin, absolute, authority or
 * asterisk form: `http_target.ts`). Lines may end in CRLF or a bare LF (RFC 9112 section 2.2);
 * one empty line before the request line is skipped. Field values are decoded byte for byte
 * (0x80-0xFF become U+0080-U+00FF). The body is not read: sockit's servers answer once and
 * close, so `Content-Length` and `Transfer-Encoding` are left to a caller that would reuse the
 * connection. After an error the reader is left inside the head: answer with `refuseRequest`
 * and close.
 *
 * @module
 */

import type { BufferedReader } from "./buffered_reader.ts";
import { withTimeout } from "./deadline.ts";
import { LimitError, ProtocolError, TimeoutError } from "./errors.ts";
import { HttpError, HttpStatus } from "./http_response.ts";
import { parseAuthority, parseTarget, type RequestTarget } from "./http_target.ts";

export type { RequestTarget } from "./http_target.ts";
import { quote } from "../log.ts";

/** The limits of a request head, in one place; each is an option of {@linkcode readRequestHead}. */
export const HTTP_LIMITS = {
  /** Longest request line, without its CRLF: 8 KiB, what RFC 9112 section 3 recommends at least. */
  maxRequestLineBytes: 8 * 1024,
  /** Most field lines: 100 (a browser sends about 15). */
  maxHeaders: 100,
  /** Longest head, request line, fields and CRLFs included: 32 KiB. */
  maxHeadBytes: 32 * 1024,
  /** Time for the whole head to arrive, in ms: 10 s (slow clients cannot hold a socket longer). */
  timeoutMs: 10_000,
} as const;

/**
 * A request's header fields, in the order received. Names compare ignoring case; a repeated
 * field keeps every value.
 *
 * @example Repeated fields and token lists
 * ```ts
 * import assert from "node:assert/strict";
 * import { HttpHeaders } from "./http_request.ts";
 * const headers = new HttpHeaders();
 * headers.append("Accept", "text/html");
 * headers.append("accept", "text/plain");
 * headers.append("Connection", "keep-alive, Upgrade");
 * assert.equal(headers.get("ACCEPT"), "text/html, text/plain");
 * assert.deepEqual(headers.getAll("accept"), ["text/html", "text/plain"]);
 * assert.equal(headers.hasToken("connection", "upgrade"), true);
 * assert.equal(headers.get("Host"), undefined);
 * ```
 */
export class HttpHeaders implements Iterable<[string, string]> {
  #fields: [string, string][] = [];
  #byName = new Map<string, string[]>();

  /** Adds a field (the name as received; lookups ignore case). */
  append(name: string, value: string): void {
    this.#fields.push([name, value]);
    const key = name.toLowerCase();
    const values = this.#byName.get(key);
    if (values) values.push(value);
    else this.#byName.set(key, [value]);
  }

  /** Number of field lines. */
  get size(): number {
    return this.#fields.length;
  }

  /** True when at least one field is called `name`. */
  has(name: string): boolean {
    return this.#byName.has(name.toLowerCase());
  }

  /** The field's values joined by `, ` (RFC 9110 section 5.3), or undefined without one. */
  get(name: string): string | undefined {
    return this.#byName.get(name.toLowerCase())?.join(", ");
  }

  /** Every value of the field, in order (empty without one). */
  getAll(name: string): string[] {
    return [...(this.#byName.get(name.toLowerCase()) ?? [])];
  }

  /** True when the comma-separated list in the field holds `token`, ignoring case. */
  hasToken(name: string, token: string): boolean {
    const wanted = token.toLowerCase();
    return this.getAll(name).some((value) =>
      value.split(",").some((t) => t.trim().toLowerCase() === wanted)
    );
  }

  /** The fields in order, names as received. */
  [Symbol.iterator](): Iterator<[string, string]> {
    return this.#fields.map(([n, v]): [string, string] => [n, v])[Symbol.iterator]();
  }
}

/** A parsed request head. */
export interface RequestHead {
  /** The method, case kept (methods are case-sensitive). */
  method: string;
  /** The request-target as sent. */
  rawTarget: string;
  /** The request-target parsed (hosts without IPv6 brackets; `query` without its `?`). */
  target: RequestTarget;
  /** HTTP version: 1.0 or 1.1 (a later 1.x minor is read as 1.1). */
  version: "1.0" | "1.1";
  /** The header fields. */
  headers: HttpHeaders;
  /** Bytes the head took, the final empty line included. */
  headBytes: number;
}

/** Options for {@linkcode readRequestHead}; defaults in {@linkcode HTTP_LIMITS}. */
export interface RequestHeadOptions {
  /** Longest request line: more is 414. @default {8192} */
  maxRequestLineBytes?: number;
  /** Most field lines: more is 431. @default {100} */
  maxHeaders?: number;
  /** Longest head: more is 431. @default {32768} */
  maxHeadBytes?: number;
  /** Time for the whole head, in ms: longer is 408; 0 waits forever. @default {10000} */
  timeoutMs?: number;
}

const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
const TARGET_CHARS = /^[\x21-\x7e]+$/;
const FIELD_VALUE = /^[\t\x20-\x7e\x80-\xff]*$/;

/**
 * Reads one request head from `reader` (see the module doc for the limits and the status of
 * each refusal). Resolves null when the peer closed before sending a byte.
 *
 * @example Parse a proxy's absolute-form request, fields ignoring case
 * ```ts
 * import assert from "node:assert/strict";
 * import { BufferedReader } from "./buffered_reader.ts";
 * import { readRequestHead } from "./http_request.ts";
 * const text = "GET http://example.com:8080/a?b=1 HTTP/1.1\r\nHost: example.com\r\n\r\n";
 * const bytes = new TextEncoder().encode(text);
 * let done = false;
 * const source = { read: (p: Uint8Array) => {
 *   if (done) return Promise.resolve(null);
 *   done = true;
 *   p.set(bytes);
 *   return Promise.resolve(bytes.length);
 * } };
 * const head = await readRequestHead(new BufferedReader(source));
 * assert.equal(head?.method, "GET");
 * assert.deepEqual(head?.target, {
 *   form: "absolute", scheme: "http", host: "example.com", port: 8080, path: "/a", query: "b=1",
 * });
 * assert.equal(head?.headers.get("HOST"), "example.com");
 * ```
 */
export async function readRequestHead(
  reader: BufferedReader,
  options: RequestHeadOptions = {},
): Promise<RequestHead | null> {
  const timeoutMs = options.timeoutMs ?? HTTP_LIMITS.timeoutMs;
  const parsing = parseHead(reader, options);
  if (timeoutMs <= 0) return await parsing;
  try {
    return await withTimeout(parsing, timeoutMs, { what: "the request head" });
  } catch (error) {
    if (!(error instanceof TimeoutError)) throw error;
    throw new HttpError(
      HttpStatus.RequestTimeout,
      `Cannot read request head: not complete within ${timeoutMs} ms`,
      { cause: error },
    );
  }
}

async function parseHead(
  reader: BufferedReader,
  options: RequestHeadOptions,
): Promise<RequestHead | null> {
  const maxLine = options.maxRequestLineBytes ?? HTTP_LIMITS.maxRequestLineBytes;
  const maxHeaders = options.maxHeaders ?? HTTP_LIMITS.maxHeaders;
  const maxHead = options.maxHeadBytes ?? HTTP_LIMITS.maxHeadBytes;
  let used = 0;
  const tooLarge = () =>
    new HttpError(
      HttpStatus.RequestHeaderFieldsTooLarge,
      `Cannot read request head: longer than ${maxHead} bytes`,
    );
  /** The next line as text, counted against the head budget; null at end of input. */
  const nextLine = async (max: number, onLong: () => HttpError): Promise<string | null> => {
    let line: Uint8Array | null;
    try {
      // One more than max: readLineView counts a CR whose LF has not arrived yet.
      line = await reader.readLineView(max + 1);
    } catch (error) {
      if (error instanceof LimitError) throw onLong();
      if (error instanceof ProtocolError) return null; // End of input after a partial line.
      throw error;
    }
    if (line === null) return null;
    if (line.length > max) throw onLong();
    used += line.length + 2;
    if (used > maxHead) throw tooLarge();
    return bytesToLatin1(line);
  };
  const headBudget = () => Math.max(0, maxHead - used - 2);
  const longRequestLine = () =>
    new HttpError(
      HttpStatus.UriTooLong,
      `Cannot read request line: longer than ${Math.min(maxLine, maxHead - 2)} bytes`,
    );

  let requestLine = await nextLine(Math.min(maxLine, headBudget()), longRequestLine);
  if (requestLine === "") {
    // RFC 9112 section 2.2: an empty line before the request line is ignored.
    requestLine = await nextLine(Math.min(maxLine, headBudget()), longRequestLine);
  }
  if (requestLine === null) {
    if (used === 0 && reader.buffered === 0) return null;
    throw badRequest("Cannot read request line: connection closed before its end");
  }
  const { method, rawTarget, version } = parseRequestLine(requestLine);
  const headers = new HttpHeaders();
  while (true) {
    const line = await nextLine(headBudget(), tooLarge);
    if (line === null) {
      throw badRequest("Cannot read request head: connection closed before its end");
    }
    if (line === "") break;
    if (headers.size >= maxHeaders) {
      throw new HttpError(
        HttpStatus.RequestHeaderFieldsTooLarge,
        `Cannot read request head: more than ${maxHeaders} header fields`,
      );
    }
    const [name, value] = parseFieldLine(line);
    headers.append(name, value);
  }
  const target = parseTarget(method, rawTarget);
  checkHost(headers, version);
  return { method, rawTarget, target, version, headers, headBytes: used };
}

function badRequest(message: string): HttpError {
  return new HttpError(HttpStatus.BadRequest, message);
}

/** Shows at most 64 characters of network text, quoted. */
function excerpt(text: string): string {
  return quote(text.length > 64 ? `${text.slice(0, 64)}...` : text);
}

/** Bytes as a string, one character per byte (what HTTP calls ISO-8859-1). */
function bytesToLatin1(bytes: Uint8Array): string {
  let out = "";
  for (let i = 0; i < bytes.length; i += 4096) {
    out += String.fromCharCode(...bytes.subarray(i, i + 4096));
  }
  return out;
}

function parseRequestLine(
  line: string,
): { method: string; rawTarget: string; version: "1.0" | "1.1" } {
  const parts = line.split(" ");
  if (parts.length !== 3 || !TOKEN.test(parts[0])) {
    throw badRequest(`Cannot parse request line ${excerpt(line)}: expected METHOD TARGET VERSION`);
  }
  const [method, rawTarget, versionText] = parts;
  const m = /^HTTP\/(\d)\.(\d)$/.exec(versionText);
  if (!m) throw badRequest(`Cannot parse request line: bad version ${excerpt(versionText)}`);
  if (m[1] !== "1") {
    throw new HttpError(
      HttpStatus.HttpVersionNotSupported,
      `Cannot serve ${excerpt(versionText)}: only HTTP/1.x`,
    );
  }
  if (!TARGET_CHARS.test(rawTarget)) {
    throw badRequest(`Cannot parse request target ${excerpt(rawTarget)}: not visible ASCII`);
  }
  return { method, rawTarget, version: m[2] === "0" ? "1.0" : "1.1" };
}

function parseFieldLine(line: string): [string, string] {
  if (line[0] === " " || line[0] === "\t") {
    // RFC 9112 section 5.2: obs-fold is rejected with 400.
    throw badRequest(`Cannot parse header line ${excerpt(line)}: obsolete line folding`);
  }
  const colon = line.indexOf(":");
  const name = colon < 0 ? line : line.slice(0, colon);
  if (colon <= 0 || !TOKEN.test(name)) {
    // Also a space before the colon (RFC 9112 section 5.1).
    throw badRequest(`Cannot parse header line ${excerpt(line)}: expected NAME: VALUE`);
  }
  const value = line.slice(colon + 1).replace(/^[ \t]+|[ \t]+$/g, "");
  if (!FIELD_VALUE.test(value)) {
    throw badRequest(`Cannot parse header ${excerpt(name)}: control character in its value`);
  }
  return [name, value];
}

/** RFC 9112 section 3.2: an HTTP/1.1 request has exactly one valid Host field. */
function checkHost(headers: HttpHeaders, version: "1.0" | "1.1"): void {
  const hosts = headers.getAll("host");
  if (hosts.length === 0) {
    if (version === "1.1") throw badRequest("Cannot serve HTTP/1.1 request: no Host header");
    return;
  }
  if (hosts.length > 1) throw badRequest("Cannot serve request: more than one Host header");
  if (hosts[0] !== "") parseAuthority(hosts[0], { what: "Host header", defaultPort: 0 });
}
