/**
 * Helpers of the HTTP, WebSocket and chat page tests: a loopback server that reads each
 * request head with `readRequestHead` and hands it to the test's handler (answering refusals
 * itself), a queue to await what handlers report, and a curl runner.
 *
 * @module
 */

import { BufferedReader } from "../lib/net/buffered_reader.ts";
import { withTimeout } from "../lib/net/deadline.ts";
import {
  readRequestHead,
  type RequestHead,
  type RequestHeadOptions,
} from "../lib/net/http_request.ts";
import { HttpError, refuseRequest } from "../lib/net/http_response.ts";
import { EVENT_TIMEOUT_MS } from "./_helpers.ts";

/** Values pushed by one side of a test and awaited, in order, by the other. */
export class EventQueue<T> {
  #items: T[] = [];
  #waiters: ((item: T) => void)[] = [];

  /** Hands `item` to the oldest waiter, or keeps it for the next `next()`. */
  push(item: T): void {
    const waiter = this.#waiters.shift();
    if (waiter) waiter(item);
    else this.#items.push(item);
  }

  /** The next item, within `timeoutMs`. */
  next(what: string, timeoutMs = EVENT_TIMEOUT_MS): Promise<T> {
    if (this.#items.length > 0) return Promise.resolve(this.#items.shift()!);
    return withTimeout(new Promise<T>((resolve) => this.#waiters.push(resolve)), timeoutMs, {
      what,
    });
  }

  /** Items pushed and not yet taken. */
  get pending(): number {
    return this.#items.length;
  }
}

/** What a handler of {@linkcode startHttpTestServer} is given. */
export interface HttpExchange {
  /** The accepted socket. */
  conn: Deno.TcpConn;
  /** The reader the head was read with. */
  reader: BufferedReader;
  /** The parsed head. */
  head: RequestHead;
}

/** A server started by {@linkcode startHttpTestServer}. */
export interface HttpTestServer extends AsyncDisposable {
  /** Its port on 127.0.0.1. */
  port: number;
  /** Every error a connection ended with: head refusals and what handlers threw. */
  errors: EventQueue<unknown>;
}

/**
 * Serves each connection on 127.0.0.1: reads the head (`options` are the parser's), answers an
 * {@linkcode HttpError} with `refuseRequest`, else calls `handler`. Dispose closes the listener
 * and every connection and waits for every handler to end.
 */
export function startHttpTestServer(
  handler: (exchange: HttpExchange) => Promise<void>,
  options: RequestHeadOptions = {},
): HttpTestServer {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const conns = new Set<Deno.TcpConn>();
  const handlers = new Set<Promise<void>>();
  const errors = new EventQueue<unknown>();
  const serveOne = async (conn: Deno.TcpConn) => {
    const reader = new BufferedReader(conn);
    try {
      const head = await readRequestHead(reader, options);
      if (head === null) return;
      await handler({ conn, reader, head });
    } catch (error) {
      errors.push(error);
      if (error instanceof HttpError) await refuseRequest(conn, error, { timeoutMs: 2_000 });
    } finally {
      conns.delete(conn);
      try {
        conn.close();
      } catch {
        // Closed by the handler.
      }
    }
  };
  const accepting = (async () => {
    for await (const conn of listener) {
      conns.add(conn);
      const p = serveOne(conn);
      handlers.add(p);
      p.finally(() => handlers.delete(p));
    }
  })().catch(() => {});
  return {
    port: listener.addr.port,
    errors,
    async [Symbol.asyncDispose]() {
      listener.close();
      await accepting;
      for (const c of conns) {
        try {
          c.close();
        } catch {
          // Already closed.
        }
      }
      await Promise.all(handlers);
    },
  };
}

/** What {@linkcode runCurl} saw. */
export interface CurlResult {
  /** Exit code. */
  code: number;
  /** Standard output. */
  stdout: string;
  /** Standard error (with `-v`, the request and response headers). */
  stderr: string;
}

/** Runs curl with `args` (plus `--silent --max-time 10`) to completion. */
export async function runCurl(args: string[]): Promise<CurlResult> {
  const out = await new Deno.Command("curl", {
    args: ["--silent", "--show-error", "--max-time", "10", ...args],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const decoder = new TextDecoder();
  return { code: out.code, stdout: decoder.decode(out.stdout), stderr: decoder.decode(out.stderr) };
}

/** Reads `conn` to its end within the event timeout and returns it as text (latin1-safe). */
export async function readToEnd(conn: Deno.Conn): Promise<string> {
  const decoder = new TextDecoder();
  let text = "";
  const buf = new Uint8Array(64 * 1024);
  await withTimeout(
    (async () => {
      let n;
      while ((n = await conn.read(buf)) !== null) {
        text += decoder.decode(buf.subarray(0, n), { stream: true });
      }
    })(),
    EVENT_TIMEOUT_MS,
    { what: "end of input" },
  );
  return text;
}
