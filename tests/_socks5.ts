/**
 * Test helper for the SOCKS5 tests: an in-process proxy on a free loopback port with its log
 * lines captured.
 *
 * @module
 */

import { type Socks5ServerOptions, startSocks5Server } from "../lib/socks5/mod.ts";
import { captureLog } from "./_helpers.ts";

/** A running test proxy. */
export interface TestProxy extends AsyncDisposable {
  /** The proxy's port on 127.0.0.1. */
  port: number;
  /** Log lines so far. */
  lines: string[];
  /** Resolves the first log line matching `re` (already logged or coming). */
  waitForLog(re: RegExp): Promise<string>;
}

/** Starts sockit's SOCKS5 server in-process with `options`; stops it on dispose. */
export function startTestProxy(options: Socks5ServerOptions = {}): TestProxy {
  const log = captureLog("socks5");
  const server = startSocks5Server(Deno.listen({ hostname: "127.0.0.1", port: 0 }), {
    logger: log.logger,
    ...options,
  });
  return {
    port: server.addr.port,
    lines: log.lines,
    waitForLog: log.waitForLog,
    async [Symbol.asyncDispose]() {
      await server.stop({ timeoutMs: 2000 });
    },
  };
}
