/**
 * One relay client: its state (name, room, connection, flow-control hold) and the two things
 * done to a client that are not about rooms: its line prefix and waiting for a listen-only
 * client to go away.
 *
 * @module
 */

import type { Connection } from "../net/connection.ts";
import type { FlowOutbox } from "../net/flow.ts";
import { DEADLINES } from "../net/deadline.ts";
import { tcpOpen } from "../net/tcp_queue.ts";

const encoder = new TextEncoder();

/** A connected client of the relay. */
export interface Client {
  /** Its name (unique ignoring case). */
  name: string;
  /** The room it is in. */
  room: string;
  /** Its connection: reader, outbox, deadlines. */
  connection: Connection;
  /** Its address, for logs. */
  peer: string;
  /** Messages dropped for this client (policy "drop"), and how many it was told of. */
  missed: number;
  /** Drops it was told of. */
  reportedDrops: number;
  /** True once it sent /quit. */
  quit: boolean;
  /**
   * Recipients whose outbox went above high water with this client's messages (local
   * connections, or a room's readers on other nodes: `cluster/remote_hold.ts`).
   */
  holders: FlowOutbox[];
  /** True while this client's reading is held back. */
  paused: boolean;
  /** Line mode: `[name] ` as bytes. */
  prefix: Uint8Array;
  /**
   * A command the cluster must answer first (`/nick`, `/who`, `/rooms`): the client is not
   * read until it settles (bounded by the cluster's request timeout).
   */
  pending?: Promise<void>;
  /** Ends the current flow-control hold early (the client is closing). */
  stopHold?: () => void;
}

/**
 * Line mode: what the relay puts before a client's lines, `[NAME] `.
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert/strict";
 * import { linePrefix } from "./client.ts";
 * assert.equal(new TextDecoder().decode(linePrefix("bo")), "[bo] ");
 * ```
 */
export function linePrefix(name: string): Uint8Array {
  return encoder.encode(`[${name}] `);
}

/**
 * Waits until a half-closed (listen-only) client's connection closes. Only a failed write
 * would reveal that the client went away, and a quiet room writes nothing, so the kernel's
 * table is asked every `everyMs` (`tcpOpen()`) about `socket`, the TCP socket beneath (also
 * under TLS): a peer that closed with unread data reset the connection, which is then closed
 * as peer-closed. Without a socket only the connection's own close ends the wait.
 */
export async function listenUntilGone(
  connection: Connection,
  options: { socket?: Pick<Deno.TcpConn, "localAddr" | "remoteAddr">; everyMs: number },
): Promise<void> {
  const { socket, everyMs } = options;
  if (!socket) {
    await connection.closed;
    return;
  }
  const cancel = DEADLINES.schedule(performance.now() + everyMs, (now) => {
    if (connection.closing) return undefined;
    if (tcpOpen(socket.localAddr, socket.remoteAddr) === false) {
      void connection.close({ kind: "peer-closed" }, { flush: false });
      return undefined;
    }
    return now + everyMs;
  });
  try {
    await connection.closed;
  } finally {
    cancel();
  }
}
