/**
 * One client connection of the SOCKS5 server: its context (connection, reader, options, log
 * record), the reply and failure helpers every phase uses, and its single log line. The
 * tunnel that follows a successful request is in tunnel.ts.
 *
 * @module
 */

import type { BufferedReader } from "../net/buffered_reader.ts";
import type { Deadlines } from "../net/deadline.ts";
import { formatAddress, type HostPort } from "../net/address.ts";
import { writeAll } from "../net/write_all.ts";
import { type Logger, printable, quote } from "../log.ts";
import { describeError } from "./errors.ts";
import { parseIP } from "../net/ip.ts";
import type { LoginGuard } from "./login_guard.ts";
import type { ResolvedOptions } from "./options.ts";
import { encodeReply, hex, REPLY_NAMES, Version } from "./protocol.ts";

/** What one client connection did, for its log line. */
export interface ClientRecord {
  /** Client address. */
  client: string;
  /** Authenticated user, as sent (quoted when logged). */
  user?: string;
  /** Protocol version spoken (4 or 5; 0 for an HTTP proxy client). */
  version?: number;
  /** Command name. */
  command?: string;
  /** Requested destination, ready for the log ({@linkcode formatDestination}). */
  destination?: string;
  /** Address actually dialled / bound / accepted. */
  via?: string;
  /** Reply code sent (SOCKS5 numbering; SOCKS4 replies are noted as such; HTTP: the status). */
  reply?: number;
  /** Bytes client -> destination. */
  up: number;
  /** Bytes destination -> client. */
  down: number;
  /** Why the connection ended early, or how the relay ended. */
  note?: string;
  /** performance.now() at accept. */
  start: number;
  /**
   * Log the line at debug level only: a login refused during a lockout, which the
   * lockout's own warning already covers (one line per burst, not per attempt).
   */
  quiet?: boolean;
}

/** Everything a phase needs: the client connection, its reader, options, and the record. */
export interface ClientContext {
  /** The client connection. */
  conn: Deno.TcpConn;
  /** Reader over the client connection (holds read-ahead bytes). */
  reader: BufferedReader;
  /** Resolved options. */
  opts: ResolvedOptions;
  /** The connection's log record. */
  record: ClientRecord;
  /** The server's deadline scheduler (handshake, dial, BIND, linger, idle, half-open). */
  deadlines: Deadlines;
  /** The server's table of failed logins per source. */
  logins: LoginGuard;
  /** Set once the relay closed the client connection (so it is not closed twice). */
  closed: boolean;
}

/** Raised inside a phase when the connection must end after the given reply was sent. */
export class ClientEnd extends Error {
  /** Creates it; `message` is already in the connection's log record. */
  constructor(message: string) {
    super(message);
    this.name = "ClientEnd";
  }
}

function human(n: number): string {
  if (n < 1024) return `${n}B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)}KiB`;
  if (n < 1024 ** 3) return `${(n / 1024 / 1024).toFixed(1)}MiB`;
  return `${(n / 1024 ** 3).toFixed(2)}GiB`;
}

/**
 * A requested destination for the log: an IP literal as `HOST:PORT` (`[::1]:80`), a name
 * from the wire quoted ({@linkcode quote}), so that it cannot forge the rest of the line.
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert/strict";
 * import { formatDestination } from "./client_context.ts";
 * assert.equal(formatDestination({ hostname: "::1", port: 80 }), "[::1]:80");
 * assert.equal(formatDestination({ hostname: "a\nb", port: 80 }), String.raw`"a\nb":80`);
 * ```
 */
export function formatDestination(destination: HostPort): string {
  return parseIP(destination.hostname)
    ? formatAddress(destination)
    : `${quote(destination.hostname)}:${destination.port}`;
}

/**
 * Formats and writes the client connection's one log line. Peer-supplied strings (the user name, a
 * requested name) are quoted where they are put in the record; the whole line is also made
 * {@linkcode printable}, so that nothing in it (an error text) can break it.
 */
export function logClientLine(log: Logger | undefined, r: ClientRecord): void {
  if (!log || !(r.quiet ? log.debugEnabled : log.infoEnabled)) return;
  const parts = [r.client];
  if (r.version === Version.Socks4) parts.push("socks4");
  if (r.version === 0) parts.push("http");
  if (r.user !== undefined) parts.push(`user=${quote(r.user)}`);
  parts.push(r.command ?? "-");
  if (r.destination) parts.push(r.destination + (r.via ? ` via ${r.via}` : ""));
  if (r.reply !== undefined && r.version === 0) parts.push(`status=${r.reply}`);
  else if (r.reply !== undefined) {
    parts.push(`reply=0x${hex(r.reply)} (${REPLY_NAMES[r.reply] ?? "?"})`);
  }
  parts.push(`up=${human(r.up)} down=${human(r.down)}`);
  parts.push(`${((performance.now() - r.start) / 1000).toFixed(2)}s`);
  if (r.note) parts.push(`[${r.note}]`);
  const line = printable(parts.join(" "));
  if (r.quiet) log.debug(line);
  else log.info(line);
}

/** Writes a SOCKS5 reply and records its code; a write failure is logged and ends the connection. */
export async function sendReply(
  ctx: ClientContext,
  reply: number,
  bound?: HostPort,
): Promise<void> {
  ctx.record.reply = reply;
  try {
    await writeAll(ctx.conn, encodeReply(reply, bound));
  } catch (error) {
    ctx.record.note ??= `cannot send reply: ${describeError(error)}`;
    throw new ClientEnd(ctx.record.note);
  }
}

/** Sends the failure reply `failure.reply` and ends the connection with `failure.why` in the log. */
export async function fail(
  ctx: ClientContext,
  failure: { reply: number; why: string },
): Promise<never> {
  const { reply, why } = failure;
  ctx.record.note = why;
  await sendReply(ctx, reply);
  throw new ClientEnd(why);
}

/**
 * Closes the client connection after a failure without destroying the reply: shut down the
 * write side (the client reads the reply, then end of file), drain what the client still
 * sends for up to `lingerMs` / `lingerBytes` (closing a socket with unread bytes would send a
 * reset, and a reset can discard the reply before the client reads it), then close.
 */
export async function lingerClose(ctx: ClientContext): Promise<void> {
  const { conn, reader, opts } = ctx;
  try {
    await conn.closeWrite();
    const drain = async () => {
      const buf = new Uint8Array(4096);
      let total = 0;
      let n;
      while (total < opts.lingerBytes && (n = await reader.read(buf)) !== null) total += n;
    };
    await ctx.deadlines.deadline(drain(), opts.lingerMs, {
      what: "the client to close",
      onTimeout: () => conn.close(),
    });
  } catch {
    // Already closed, reset, or the linger time is up: close below either way.
  }
  try {
    conn.close();
  } catch {
    // Closed by the deadline.
  }
}
