/**
 * Helpers of the UDP tests: loopback sockets closed on dispose, waiting for a datagram, and
 * asking whether one is queued.
 *
 * @module
 */

import { withTimeout } from "../lib/net/deadline.ts";
import { EVENT_TIMEOUT_MS } from "./_helpers.ts";

/** A UDP socket on loopback for tests, closed on dispose. */
export function udpSocket(hostname = "127.0.0.1", port = 0): Deno.DatagramConn & Disposable {
  const conn = Deno.listenDatagram({ transport: "udp", hostname, port });
  return Object.assign(conn, {
    [Symbol.dispose]() {
      try {
        conn.close();
      } catch {
        // Already closed.
      }
    },
  });
}

/** The next datagram on `conn` (a copy) and its sender, within the event timeout. */
export async function receive(conn: Deno.DatagramConn): Promise<[Uint8Array, Deno.NetAddr]> {
  const [data, from] = await withTimeout(conn.receive(new Uint8Array(65_536)), EVENT_TIMEOUT_MS, {
    what: "an echoed datagram",
  });
  return [data.slice(), from as Deno.NetAddr];
}

/**
 * True when a datagram is already queued on `conn`. Loopback delivery is synchronous and an
 * echo server answers in arrival order, so an answer sent before one we already got is queued
 * by now; 100 ms is only a margin.
 */
export async function hasQueued(conn: Deno.DatagramConn): Promise<boolean> {
  const got = conn.receive(new Uint8Array(65_536)).then(() => true, () => false);
  let timer: ReturnType<typeof setTimeout> | undefined;
  const none = new Promise<boolean>((r) => timer = setTimeout(() => r(false), 100));
  const result = await Promise.race([got, none]);
  clearTimeout(timer);
  return result;
}
