/**
 * What a SOCKS5 (and HTTP) proxy has done, counted as each session ends from its log record:
 * sessions by protocol and command, replies by code, bytes each way, bytes per user, and
 * clients refused by the client rules. Read by `--metrics` (`command.ts`); one object per
 * server, updated with no allocation per session beyond the map entries.
 *
 * Bytes of a tunnel count when it ends (a session's record is complete then).
 *
 * @module
 */

import type { ClientRecord } from "./client_context.ts";
import { hex, Version } from "./protocol.ts";

/** A snapshot of {@linkcode Socks5Stats}. */
export interface Socks5StatsSnapshot {
  /** Sessions that ended, by `protocol command` (`socks5 CONNECT`, `http GET`). */
  sessions: Record<string, number>;
  /** Sessions that ended, by reply: SOCKS codes as `0x00`, HTTP statuses as `200`, `none`. */
  replies: Record<string, number>;
  /** Bytes from clients to destinations. */
  bytesUp: number;
  /** Bytes from destinations to clients. */
  bytesDown: number;
  /** Bytes both ways per authenticated user. */
  userBytes: Record<string, number>;
  /** Client connections closed by the client rules before any byte was read. */
  clientsDenied: number;
}

/**
 * The counters of one proxy server.
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert/strict";
 * import { Socks5Stats } from "./stats.ts";
 * const stats = new Socks5Stats();
 * stats.record({ client: "c", version: 5, command: "CONNECT", reply: 0, up: 10, down: 20, start: 0, user: "alice" });
 * // Any HTTP method but the standard ones counts as "other": label values stay bounded.
 * stats.record({ client: "c", version: 0, command: "MADEUP", reply: 407, up: 0, down: 0, start: 0 });
 * const s = stats.snapshot();
 * assert.deepEqual(s.sessions, { "socks5 CONNECT": 1, "http other": 1 });
 * assert.deepEqual(s.replies, { "0x00": 1, "407": 1 });
 * assert.deepEqual(s.userBytes, { alice: 30 });
 * ```
 */
export class Socks5Stats {
  #sessions = new Map<string, number>();
  #replies = new Map<string, number>();
  #userBytes = new Map<string, number>();
  #bytesUp = 0;
  #bytesDown = 0;
  /** Client connections closed by the client rules. */
  clientsDenied = 0;

  /** Counts one ended session. */
  record(r: ClientRecord): void {
    const protocol = r.version === 0 ? "http" : r.version === Version.Socks4 ? "socks4" : "socks5";
    const command = r.command === undefined
      ? "none"
      : KNOWN_COMMANDS.has(r.command)
      ? r.command
      : "other";
    bump(this.#sessions, `${protocol} ${command}`, 1);
    const reply = r.reply === undefined
      ? "none"
      : r.version === 0
      ? String(r.reply)
      : `0x${hex(r.reply)}`;
    bump(this.#replies, reply, 1);
    this.#bytesUp += r.up;
    this.#bytesDown += r.down;
    if (r.user !== undefined) bump(this.#userBytes, r.user, r.up + r.down);
  }

  /** The counters now. */
  snapshot(): Socks5StatsSnapshot {
    return {
      sessions: Object.fromEntries(this.#sessions),
      replies: Object.fromEntries(this.#replies),
      bytesUp: this.#bytesUp,
      bytesDown: this.#bytesDown,
      userBytes: Object.fromEntries(this.#userBytes),
      clientsDenied: this.clientsDenied,
    };
  }
}

/** Commands counted by name; any other HTTP method counts as `other` (bounded label values). */
const KNOWN_COMMANDS = new Set([
  "CONNECT",
  "BIND",
  "UDP ASSOCIATE",
  "GET",
  "HEAD",
  "POST",
  "PUT",
  "DELETE",
  "OPTIONS",
  "PATCH",
  "TRACE",
]);

function bump(map: Map<string, number>, key: string, n: number): void {
  map.set(key, (map.get(key) ?? 0) + n);
}
