/**
 * Closing a connection after a last message without losing it. Closing a TCP socket while the
 * peer's bytes are still unread makes the kernel answer with a reset, and a reset can reach
 * the peer before, and destroy, the last message written. {@linkcode closeAfterLastWrite}
 * half-closes instead (the peer reads the message, then end of file), reads and discards what
 * the peer still sends until it closes too or a short time passed, then closes.
 *
 * @module
 */

import { DEADLINES } from "./deadline.ts";

/** Defaults of {@linkcode closeAfterLastWrite}. */
export const LINGER_DEFAULTS = {
  /** Longest wait for the peer to close its side, in ms. */
  timeoutMs: 2000,
  /** Most bytes read and discarded meanwhile. */
  maxBytes: 8 * 1024 * 1024,
} as const;

/** Options for {@linkcode closeAfterLastWrite}. */
export interface LingerOptions {
  /** Longest wait for the peer to close, in ms. @default {2000} */
  timeoutMs?: number;
  /** Most bytes discarded before closing anyway. @default {8388608} */
  maxBytes?: number;
}

/**
 * Half-closes `conn` (everything written so far is delivered, then end of file), discards what
 * the peer still sends until it closes, `options.timeoutMs` passed or `options.maxBytes` were
 * read, and closes `conn`. Never throws.
 *
 * @example The peer reads the last message, then end of file
 * ```ts
 * import assert from "node:assert/strict";
 * import { closeAfterLastWrite } from "./linger.ts";
 * const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
 * const client = await Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port });
 * const server = await listener.accept();
 * await client.write(new Uint8Array(100)); // never read by the server
 * await server.write(new TextEncoder().encode("bye"));
 * const closing = closeAfterLastWrite(server, { timeoutMs: 1000 });
 * const buf = new Uint8Array(16);
 * assert.equal(await client.read(buf), 3);
 * assert.equal(await client.read(buf), null);
 * client.close();
 * await closing;
 * listener.close();
 * ```
 */
export async function closeAfterLastWrite(
  conn: Deno.Conn,
  options: LingerOptions = {},
): Promise<void> {
  const timeoutMs = options.timeoutMs ?? LINGER_DEFAULTS.timeoutMs;
  let left = options.maxBytes ?? LINGER_DEFAULTS.maxBytes;
  const close = () => {
    try {
      conn.close();
    } catch {
      // Already closed.
    }
  };
  const cancel = DEADLINES.after(timeoutMs, close);
  try {
    await conn.closeWrite();
    const buf = new Uint8Array(64 * 1024);
    while (left > 0) {
      const n = await conn.read(buf);
      if (n === null) break;
      left -= n;
    }
  } catch {
    // Closed by the timeout, or the peer is gone.
  } finally {
    cancel();
    close();
  }
}
