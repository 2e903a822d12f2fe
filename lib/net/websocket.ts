/**
 * RFC 6455 WebSocket, server side, over a request head already read with `http_request.ts`:
 * {@linkcode acceptWebSocket} checks the upgrade and answers 101, then a
 * {@linkcode WebSocketConn} reads messages and sends text, binary and close frames.
 *
 * ```
 * client                                   server
 *   GET /ws HTTP/1.1, Upgrade: websocket ->
 *                                        <- 101 Switching Protocols, Sec-WebSocket-Accept
 *   masked frames (text, binary, ping) ->   readMessage(): whole messages; pings answered
 *                                        <- unmasked frames: sendText / sendBinary / pong
 *   close(code) ->                       <- close(code) echoed, then TCP closed (server first)
 * ```
 *
 * The connection itself is in `websocket_conn.ts`, the wire format in `websocket_frame.ts`
 * (with the close code each broken rule gets); this module is the face of both. On top of the
 * frame rules, a message is refused with 1009 once its fragments would pass
 * {@linkcode WebSocketOptions.maxMessageBytes} (before reading the frame that would), and
 * 1002 answers a continuation frame with no message to continue or a new message inside a
 * fragmented one. A broken rule sends the close frame, makes {@linkcode WebSocketConn.readMessage}
 * reject with a {@linkcode WebSocketError} carrying the code, and closes the connection without a
 * reset (half-close, then discard until the peer closes: `linger.ts`). Fragments are gathered in
 * one buffer that grows by doubling up to the limit: a message costs at most twice its size.
 *
 * @module
 */

import { HttpError, HttpStatus, refuseRequest, writeResponse } from "./http_response.ts";
import type { RequestHead } from "./http_request.ts";
import { parseAuthority } from "./http_target.ts";
import { acceptKey } from "./websocket_frame.ts";
import { WebSocketConn, type WebSocketOptions } from "./websocket_conn.ts";

export {
  WEBSOCKET_DEFAULTS,
  WebSocketClosedError,
  WebSocketConn,
  type WebSocketMessage,
  type WebSocketOptions,
} from "./websocket_conn.ts";
export { CloseCode, type CloseStatus, Opcode, WebSocketError } from "./websocket_frame.ts";

/** Which `Origin` an upgrade may come from: the page's own (the default), any, or a test. */
export type OriginPolicy = "same" | "any" | ((origin: string, head: RequestHead) => boolean);

/** Options of {@linkcode acceptWebSocket}. */
export interface AcceptOptions extends WebSocketOptions {
  /**
   * `"same"` refuses (403) a browser's upgrade whose `Origin` is not the `Host` it connects to,
   * so another site's page cannot open a chat in a visitor's name; clients that send no
   * `Origin` (nc-like tools, Deno) are accepted. @default {"same"}
   */
  origin?: OriginPolicy;
}

/**
 * Checks that `head` is a WebSocket upgrade this server takes and returns its
 * `Sec-WebSocket-Key`; throws an {@linkcode HttpError}: 405 not GET, 400 not HTTP/1.1, no
 * `Connection: upgrade` token or a bad key, 426 no `Upgrade: websocket` or a version other than
 * 13 (the answer names 13), 403 an `Origin` the policy refuses.
 *
 * @example The RFC's example handshake
 * ```ts
 * import assert from "node:assert/strict";
 * import { HttpHeaders } from "./http_request.ts";
 * import { checkUpgrade } from "./websocket.ts";
 * const headers = new HttpHeaders();
 * for (const [n, v] of [["Host", "server.example.com"], ["Upgrade", "websocket"],
 *   ["Connection", "keep-alive, Upgrade"], ["Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="],
 *   ["Origin", "http://server.example.com"], ["Sec-WebSocket-Version", "13"]]) headers.append(n, v);
 * const head = { method: "GET", rawTarget: "/chat", version: "1.1" as const, headers, headBytes: 0,
 *   target: { form: "origin" as const, path: "/chat", query: "" } };
 * assert.equal(checkUpgrade(head), "dGhlIHNhbXBsZSBub25jZQ==");
 * headers.append("Sec-WebSocket-Version", "8");
 * assert.throws(() => checkUpgrade(head), { status: 426 });
 * ```
 */
export function checkUpgrade(head: RequestHead, options: { origin?: OriginPolicy } = {}): string {
  const h = head.headers;
  const refuse = (status: 400 | 403 | 405 | 426, why: string, headers = {}) =>
    new HttpError(status, `Cannot upgrade to WebSocket: ${why}`, { headers });
  if (head.method !== "GET") {
    throw refuse(HttpStatus.MethodNotAllowed, "the method must be GET", { Allow: "GET" });
  }
  if (head.version !== "1.1") throw refuse(HttpStatus.BadRequest, "HTTP/1.1 is required");
  if (!h.hasToken("upgrade", "websocket")) {
    throw refuse(HttpStatus.UpgradeRequired, "no 'Upgrade: websocket' header", {
      Upgrade: "websocket",
    });
  }
  if (!h.hasToken("connection", "upgrade")) {
    throw refuse(HttpStatus.BadRequest, "no 'upgrade' token in the Connection header");
  }
  const versions = h.getAll("sec-websocket-version");
  if (versions.length !== 1 || versions[0] !== "13") {
    throw refuse(HttpStatus.UpgradeRequired, "Sec-WebSocket-Version must be 13", {
      "Sec-WebSocket-Version": "13",
    });
  }
  const keys = h.getAll("sec-websocket-key");
  if (keys.length !== 1 || !/^[A-Za-z0-9+/]{21}[AQgw]==$/.test(keys[0])) {
    throw refuse(HttpStatus.BadRequest, "Sec-WebSocket-Key must be 16 bytes in base64");
  }
  const origin = h.get("origin");
  const policy = options.origin ?? "same";
  if (origin !== undefined && policy !== "any") {
    const ok = policy === "same" ? sameOrigin(origin, h.get("host") ?? "") : policy(origin, head);
    if (!ok) throw refuse(HttpStatus.Forbidden, "the page's origin is not this server");
  }
  return keys[0];
}

/** True when `origin` (`scheme://host[:port]`) names the same host and port as `host`. */
function sameOrigin(origin: string, host: string): boolean {
  const m = /^(https?):\/\/([^/]+)$/i.exec(origin);
  if (!m || host === "") return false;
  const defaultPort = m[1].toLowerCase() === "https" ? 443 : 80;
  try {
    const a = parseAuthority(m[2], { what: "Origin", defaultPort });
    const b = parseAuthority(host, { what: "Host", defaultPort });
    return a.host.toLowerCase() === b.host.toLowerCase() && a.port === b.port;
  } catch {
    return false;
  }
}

/**
 * Upgrades `conn`, whose request head is `head`, to a WebSocket: checks it
 * ({@linkcode checkUpgrade}), answers 101 and returns the connection. A refused upgrade is
 * answered (status, reason) and `conn` closed before the {@linkcode HttpError} is thrown. Pass
 * the reader the head was read with as `options.reader`.
 *
 * @example Echo one message from Deno's own WebSocket client
 * ```ts
 * import assert from "node:assert/strict";
 * import { BufferedReader } from "./buffered_reader.ts";
 * import { readRequestHead } from "./http_request.ts";
 * import { acceptWebSocket } from "./websocket.ts";
 * using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
 * const client = new WebSocket(`ws://127.0.0.1:${listener.addr.port}/ws`);
 * const conn = await listener.accept();
 * const reader = new BufferedReader(conn);
 * const ws = await acceptWebSocket(conn, (await readRequestHead(reader))!, { reader });
 * client.onopen = () => client.send("hello");
 * const got = await ws.readMessage();
 * assert.deepEqual(got, { type: "text", data: "hello" });
 * const closed = new Promise((resolve) => (client.onclose = (e) => resolve(e.code)));
 * await ws.close(1000, "bye");
 * assert.equal(await closed, 1000);
 * ```
 */
export async function acceptWebSocket(
  conn: Deno.Conn,
  head: RequestHead,
  options: AcceptOptions = {},
): Promise<WebSocketConn> {
  let key: string;
  try {
    key = checkUpgrade(head, options);
  } catch (error) {
    if (error instanceof HttpError) await refuseRequest(conn, error);
    throw error;
  }
  await writeResponse(conn, HttpStatus.SwitchingProtocols, {
    headers: {
      Upgrade: "websocket",
      Connection: "Upgrade",
      "Sec-WebSocket-Accept": acceptKey(key),
    },
  });
  return new WebSocketConn(conn, options);
}
