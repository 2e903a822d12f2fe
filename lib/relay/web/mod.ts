/**
 * The relay's web face: {@linkcode webChat} is the {@linkcode RelayWebHandler} that serves the
 * embedded chat page at `/` and turns a WebSocket at `/ws` into one more line client of the
 * relay (each text message a line, each line a text message; same rooms, commands, flow
 * control and slow-client policy as an nc client). Anything else gets its HTTP error.
 *
 * @module
 */

import { BufferedReader } from "../../net/buffered_reader.ts";
import { readRequestHead } from "../../net/http_request.ts";
import { HttpError, refuseRequest } from "../../net/http_response.ts";
import { acceptWebSocket } from "../../net/websocket.ts";
import type { Logger } from "../../log.ts";
import type { RelayWebHandler } from "../listener.ts";
import { servePage } from "./page.ts";
import { webSocketLines } from "./websocket_lines.ts";

export { PAGE_HTML, PAGE_PATHS } from "./page.ts";

/** Options of {@linkcode webChat}. */
export interface WebChatOptions {
  /** Longest line a browser may send, in bytes (the relay's `--max-line`). */
  maxLineBytes: number;
  /** Where refused requests are logged (debug). */
  logger?: Logger;
}

/**
 * The web handler for a line-mode relay: the page, and WebSocket clients joined to the relay.
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert/strict";
 * import { webChat } from "./mod.ts";
 * assert.equal(typeof webChat({ maxLineBytes: 65536 }), "function");
 * ```
 */
export function webChat(options: WebChatOptions): RelayWebHandler {
  return async (conn, context) => {
    const reader = new BufferedReader(conn);
    let head;
    try {
      head = await readRequestHead(reader);
    } catch (error) {
      if (!(error instanceof HttpError)) throw error;
      options.logger?.debug(`web client ${context.peer}: ${error.message}`);
      return await refuseRequest(conn, error).catch(() => {});
    }
    if (head === null || await servePage(conn, head) === "served") return;
    let ws;
    try {
      // Room for the line and its CRLF: the relay applies its own limit to what arrives.
      ws = await acceptWebSocket(conn, head, { reader, maxMessageBytes: options.maxLineBytes + 2 });
    } catch (error) {
      // A refused upgrade was answered already.
      if (!(error instanceof HttpError)) throw error;
      return options.logger?.debug(`web client ${context.peer}: ${error.message}`);
    }
    await context.joinRelay(webSocketLines(ws));
  };
}
