/**
 * The answers of sockit's small HTTP servers (the relay's page and WebSocket upgrade, the HTTP
 * proxy): the status codes it uses, {@linkcode HttpError} (a request refused with a status),
 * {@linkcode writeResponse} for one response and {@linkcode refuseRequest} for a refusal followed
 * by a close that the peer reads to the end, however much it was still sending.
 *
 * @module
 */

import { withTimeout } from "./deadline.ts";
import { ProtocolError } from "./errors.ts";
import { closeAfterLastWrite } from "./linger.ts";
import { writeAll, type Writer } from "./write_all.ts";
import { quote } from "../log.ts";

/** HTTP status codes used by sockit (RFC 9110 section 15, RFC 6585 for 431). */
export const HttpStatus = {
  SwitchingProtocols: 101,
  Ok: 200,
  BadRequest: 400,
  Forbidden: 403,
  NotFound: 404,
  MethodNotAllowed: 405,
  RequestTimeout: 408,
  UriTooLong: 414,
  UpgradeRequired: 426,
  RequestHeaderFieldsTooLarge: 431,
  InternalServerError: 500,
  HttpVersionNotSupported: 505,
} as const;

/** One of {@linkcode HttpStatus}. */
export type HttpStatusCode = typeof HttpStatus[keyof typeof HttpStatus];

/** The status codes an {@linkcode HttpError} carries (4xx and 5xx). */
export type HttpErrorStatus = Exclude<HttpStatusCode, 101 | 200>;

/** Reason phrases for the status line. */
export const STATUS_TEXT: Readonly<Record<HttpStatusCode, string>> = {
  101: "Switching Protocols",
  200: "OK",
  400: "Bad Request",
  403: "Forbidden",
  404: "Not Found",
  405: "Method Not Allowed",
  408: "Request Timeout",
  414: "URI Too Long",
  426: "Upgrade Required",
  431: "Request Header Fields Too Large",
  500: "Internal Server Error",
  505: "HTTP Version Not Supported",
};

/**
 * A request the server will not serve, with the status to answer and any header that answer
 * needs (`Allow` for 405, `Sec-WebSocket-Version` for 426).
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert/strict";
 * import { HttpError } from "./http_response.ts";
 * const err = new HttpError(405, "Cannot serve PUT /: only GET", { headers: { Allow: "GET" } });
 * assert.equal(err.status, 405);
 * assert.equal(err.name, "HttpError");
 * assert.deepEqual(err.headers, { Allow: "GET" });
 * ```
 */
export class HttpError extends ProtocolError {
  /** The status to answer with. */
  readonly status: HttpErrorStatus;
  /** Headers the answer must carry. */
  readonly headers: Readonly<Record<string, string>>;

  /** Creates an HTTP error; the message says what failed. */
  constructor(
    status: HttpErrorStatus,
    message: string,
    options: ErrorOptions & { headers?: Record<string, string> } = {},
  ) {
    super(message, options);
    this.name = "HttpError";
    this.status = status;
    this.headers = options.headers ?? {};
  }
}

/** Options for {@linkcode writeResponse}. */
export interface ResponseOptions {
  /** Header fields, in order. `Content-Length` is added (except for 1xx, 204 and 304). */
  headers?: Record<string, string> | [string, string][];
  /** The body: a string is sent as UTF-8. @default {empty} */
  body?: string | Uint8Array;
  /** Send the headers (Content-Length included) but not the body: the answer to HEAD. */
  omitBody?: boolean;
}

const encoder = new TextEncoder();
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
// deno-lint-ignore no-control-regex -- refusing CR, LF and NUL in outgoing values is the point.
const UNSAFE_VALUE = /[\x00-\x08\x0a-\x1f\x7f]/;

/**
 * Writes one HTTP/1.1 response: status line, headers, `Content-Length`, then the body, in one
 * write through {@linkcode writeAll}. A header name that is not a token or a value with a
 * control character (CR, LF: response splitting) is refused with a `RangeError` before
 * anything is written.
 *
 * @example A 200 with a text body
 * ```ts
 * import assert from "node:assert/strict";
 * import { writeResponse } from "./http_response.ts";
 * const chunks: Uint8Array[] = [];
 * const writer = { write: (p: Uint8Array) => (chunks.push(p.slice()), Promise.resolve(p.length)) };
 * await writeResponse(writer, 200, { headers: { "Content-Type": "text/plain" }, body: "hi" });
 * const text = new TextDecoder().decode(chunks[0]);
 * assert.equal(text, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nhi");
 * await assert.rejects(writeResponse(writer, 200, { headers: { X: "a\r\nSet-Cookie: b" } }), RangeError);
 * ```
 */
export async function writeResponse(
  conn: Writer,
  status: HttpStatusCode,
  options: ResponseOptions = {},
): Promise<void> {
  const body = typeof options.body === "string"
    ? encoder.encode(options.body)
    : options.body ?? new Uint8Array(0);
  const fields = Array.isArray(options.headers)
    ? options.headers
    : Object.entries(options.headers ?? {});
  let head = `HTTP/1.1 ${status} ${STATUS_TEXT[status]}\r\n`;
  for (const [name, value] of fields) {
    if (!TOKEN.test(name)) throw new RangeError(`Cannot write header ${quote(name)}: bad name`);
    if (UNSAFE_VALUE.test(value)) {
      throw new RangeError(`Cannot write header ${name}: control character in ${quote(value)}`);
    }
    head += `${name}: ${value}\r\n`;
  }
  const code: number = status;
  const noBody = code < 200 || code === 204 || code === 304;
  if (!noBody) head += `Content-Length: ${body.length}\r\n`;
  const headBytes = encoder.encode(head + "\r\n");
  const send = noBody || options.omitBody ? new Uint8Array(0) : body;
  const out = new Uint8Array(headBytes.length + send.length);
  out.set(headBytes);
  out.set(send, headBytes.length);
  await writeAll(conn, out);
}

/** Default of {@linkcode RefuseOptions.timeoutMs}: 2 s, as long as `linger.ts` waits. */
export const REFUSE_TIMEOUT_MS = 2_000;

/** Options of {@linkcode refuseRequest}. */
export interface RefuseOptions {
  /** Longest wait for the answer to be written, then for the peer to close, in ms. @default {2000} */
  timeoutMs?: number;
}

/**
 * Answers a refused request (`error.status`, its headers, the message as a text body,
 * `Connection: close`) and closes `conn` without a reset: the peer reads the whole answer even
 * when it is still sending (a 1 MB header). Never throws.
 *
 * @example A 404 for a client, then end of input
 * ```ts
 * import assert from "node:assert/strict";
 * import { HttpError, refuseRequest } from "./http_response.ts";
 * using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
 * const client = await Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port });
 * const server = await listener.accept();
 * const refusing = refuseRequest(server, new HttpError(404, "Cannot serve /x: not found"));
 * const answer = await new Response(client.readable).text();
 * assert.match(answer, /^HTTP\/1\.1 404 Not Found\r\n/);
 * assert.match(answer, /\r\n\r\nCannot serve \/x: not found\n$/);
 * await refusing;
 * ```
 */
export async function refuseRequest(
  conn: Deno.Conn,
  error: HttpError,
  options: RefuseOptions = {},
): Promise<void> {
  try {
    await withTimeout(
      writeResponse(conn, error.status, {
        headers: {
          "Content-Type": "text/plain; charset=utf-8",
          "Cache-Control": "no-store",
          "X-Content-Type-Options": "nosniff",
          Connection: "close",
          ...error.headers,
        },
        body: `${error.message}\n`,
      }),
      options.timeoutMs ?? REFUSE_TIMEOUT_MS,
      { what: "the refusal to be sent", onTimeout: () => closeQuietly(conn) },
    );
  } catch {
    // The peer is gone or does not read: closing is all that is left.
  }
  await closeAfterLastWrite(conn, { timeoutMs: options.timeoutMs ?? REFUSE_TIMEOUT_MS });
}

function closeQuietly(conn: Deno.Conn): void {
  try {
    conn.close();
  } catch {
    // Already closed.
  }
}
