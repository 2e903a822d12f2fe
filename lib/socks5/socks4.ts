/**
 * SOCKS4 and SOCKS4a, CONNECT only, for open proxies: with users configured a SOCKS4
 * request is refused, since SOCKS4 has no authentication.
 *
 * ```
 * request  VN=4 | CD | DSTPORT | DSTIP | USERID NUL [| HOST NUL]   (4a: DSTIP 0.0.0.x, x != 0)
 * reply    VN=0 | CD (0x5A granted, 0x5B rejected) | DSTPORT | DSTIP
 * ```
 *
 * @module
 */

import type { BufferedReader } from "../net/buffered_reader.ts";
import { formatAddress, type HostPort } from "../net/address.ts";
import { ProtocolError } from "../net/errors.ts";
import { writeAll } from "../net/write_all.ts";
import { reachForClient } from "./dial.ts";
import { formatIP } from "../net/ip.ts";
import {
  Command,
  encodeSocks4Reply,
  hex,
  MAX_DOMAIN_LENGTH,
  Reply,
  Socks4Reply,
} from "./protocol.ts";
import { type ClientContext, formatDestination } from "./client_context.ts";
import { relay } from "./tunnel.ts";

/** A SOCKS4 or SOCKS4a request. */
export interface Socks4Request extends HostPort {
  /** CD: 1 CONNECT, 2 BIND. */
  command: number;
}

/**
 * The SOCKS4 and SOCKS4a request after the version byte:
 * `CD | DSTPORT | DSTIP | USERID NUL [| HOST NUL]`.
 */
export async function readSocks4Request(ctx: ClientContext): Promise<Socks4Request> {
  const { reader } = ctx;
  const command = await reader.readU8();
  const port = await reader.readU16();
  const ip = await reader.readExact(4);
  await readNulTerminated(reader, "SOCKS4 user id");
  let hostname = formatIP(ip);
  // SOCKS4a: DSTIP 0.0.0.x with x != 0 means a host name follows.
  if (ip[0] === 0 && ip[1] === 0 && ip[2] === 0 && ip[3] !== 0) {
    hostname = await readNulTerminated(reader, "SOCKS4a host name");
  }
  return { command, hostname, port };
}

/**
 * SOCKS4 and SOCKS4a, CONNECT only. Refused (0x5B) when users are configured, since SOCKS4
 * has no authentication.
 */
export async function handleSocks4(ctx: ClientContext, head: Socks4Request): Promise<void> {
  const { conn, opts, record } = ctx;
  const refuse = async (why: string) => {
    record.note = why;
    record.reply = Reply.NotAllowedByRuleset;
    await writeAll(conn, encodeSocks4Reply(Socks4Reply.RequestRejectedOrFailed)).catch(() => {});
  };
  record.command = head.command === Command.Connect ? "CONNECT" : `command 0x${hex(head.command)}`;
  record.destination = formatDestination(head);
  if (opts.users !== undefined && opts.users.size > 0) {
    return await refuse("SOCKS4 refused: authentication is required");
  }
  if (head.command !== Command.Connect) {
    return await refuse("SOCKS4 supports CONNECT only");
  }
  const dialled = await reachForClient(ctx, head);
  if ("reply" in dialled) {
    record.note = dialled.why;
    record.reply = dialled.reply;
    await writeAll(conn, encodeSocks4Reply(Socks4Reply.RequestRejectedOrFailed)).catch(() => {});
    return;
  }
  const target = dialled.conn;
  record.via = formatAddress({ hostname: dialled.address, port: head.port });
  record.reply = Reply.Succeeded;
  try {
    await writeAll(conn, encodeSocks4Reply(Socks4Reply.RequestGranted, target.localAddr));
  } catch (error) {
    target.close();
    throw error;
  }
  await relay(ctx, target);
}

async function readNulTerminated(reader: BufferedReader, what: string): Promise<string> {
  const bytes: number[] = [];
  while (true) {
    const b = await reader.readU8();
    if (b === 0) break;
    if (bytes.length >= MAX_DOMAIN_LENGTH) {
      throw new ProtocolError(`${what} longer than ${MAX_DOMAIN_LENGTH} bytes`);
    }
    bytes.push(b);
  }
  return new TextDecoder().decode(new Uint8Array(bytes));
}
