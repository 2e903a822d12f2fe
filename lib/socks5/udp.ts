/**
 * UDP ASSOCIATE (RFC 1928 section 7): one UDP relay socket per association, bound on the
 * control connection's local address.
 *
 * - Datagrams are taken from the client only: its control connection's IP (whatever DST.ADDR
 *   says: all zeros, the domain "0" as PySocks sends, or an address behind NAT), and its port
 *   once known: DST.PORT when not 0, otherwise the source port of its first datagram.
 * - From the client: `RSV RSV FRAG | ATYP DST.ADDR DST.PORT | DATA`; FRAG != 0 (fragments) is
 *   dropped, the destination is resolved (as CONNECT does: numeric names as `inet_aton`
 *   reads them, other names through DNS within the connect timeout) and checked against the
 *   rules, and DATA is sent to the very address checked.
 * - Replies are accepted only from destinations this association sent to (at most
 *   `maxUdpPeers` of them), wrapped with their source address and sent to the client.
 * - The association ends when the TCP control connection closes (or after the idle timeout,
 *   a task on the server's deadline scheduler).
 *
 * @module
 */

import { formatAddress } from "../net/address.ts";
import { maxUdpPayload } from "../udp/datagram.ts";
import { decodeAddress, encodeAddress, Reply, type SocksAddress } from "./protocol.ts";
import { literalAddress, resolveHost } from "./resolve.ts";
import { canonicalIP } from "./dial.ts";
import { type ClientContext, ClientEnd, sendReply } from "./client_context.ts";

/** Names remembered per association. */
const MAX_CACHED_NAMES = 256;

/** Serves one UDP ASSOCIATE request until its control connection closes. */
export async function handleUdpAssociate(ctx: ClientContext, dst: SocksAddress): Promise<void> {
  const { conn, reader, opts, record } = ctx;
  const local = conn.localAddr;
  const clientHost = conn.remoteAddr.hostname;
  const clientIP = canonicalIP(clientHost);
  // DST.PORT is the client's source port when it knows it (PySocks sends "0" and its port).
  let clientPort = dst.port;
  const v6 = local.hostname.includes(":");
  // What one datagram to the client can carry, the SOCKS header included.
  const maxToClient = maxUdpPayload(clientIP);
  let socket: Deno.DatagramConn;
  try {
    socket = Deno.listenDatagram({ transport: "udp", hostname: local.hostname, port: 0 });
  } catch (error) {
    record.note = `cannot bind UDP: ${error instanceof Error ? error.message : error}`;
    await sendReply(ctx, Reply.GeneralFailure);
    throw new ClientEnd(record.note);
  }
  const bound = {
    hostname: opts.advertise ?? local.hostname,
    port: (socket.addr as Deno.NetAddr).port,
  };
  record.via = formatAddress(bound);
  try {
    await sendReply(ctx, Reply.Succeeded, bound);
  } catch (error) {
    socket.close();
    throw error;
  }

  const peers = new Set<string>();
  const names = new Map<string, string | undefined>();
  let dropped = 0;
  let lastActivity = performance.now();
  let closed = false;
  const close = (why?: string) => {
    if (closed) return;
    closed = true;
    if (why) record.note = why;
    try {
      socket.close();
    } catch {
      // Already closed.
    }
  };

  /**
   * The first allowed address of the socket's family for `hostname`, or undefined: a
   * literal as it is, a name resolved ({@linkcode resolveHost}, within the connect
   * timeout) and remembered.
   */
  const resolve = async (hostname: string): Promise<string | undefined> => {
    const literal = literalAddress(hostname);
    if (literal !== undefined) {
      return literal !== null && literal.includes(":") === v6 && opts.rules.allows(literal)
        ? literal
        : undefined;
    }
    if (names.has(hostname)) return names.get(hostname);
    const found = await resolveHost(hostname, {
      timeoutMs: opts.connectTimeoutMs,
      deadlines: ctx.deadlines,
      nameServer: opts.nameServer,
    });
    const pick = "addresses" in found
      ? found.addresses.find((a) => a.includes(":") === v6 && opts.rules.allows(a))
      : undefined;
    if (names.size >= MAX_CACHED_NAMES) names.clear();
    names.set(hostname, pick);
    return pick;
  };

  const fromClient = async (data: Uint8Array) => {
    // RSV RSV FRAG, then the address; fragments are not supported and dropped.
    if (data.length < 4 || data[0] !== 0 || data[1] !== 0 || data[2] !== 0) return false;
    const parsed = decodeAddress(data.subarray(3));
    if (!parsed) return false;
    const payload = data.subarray(3 + parsed.length);
    const ip = await resolve(parsed.address.hostname);
    if (ip === undefined) return false;
    const key = `${canonicalIP(ip)}|${parsed.address.port}`;
    if (!peers.has(key)) {
      if (peers.size >= opts.maxUdpPeers) return false;
      peers.add(key);
    }
    await socket.send(payload, { transport: "udp", hostname: ip, port: parsed.address.port });
    record.up += payload.length;
    return true;
  };

  const toClient = async (data: Uint8Array, from: Deno.NetAddr) => {
    const header = encodeAddress({ hostname: canonicalIP(from.hostname), port: from.port });
    if (3 + header.length + data.length > maxToClient) return false;
    const out = new Uint8Array(3 + header.length + data.length);
    out.set(header, 3);
    out.set(data, 3 + header.length);
    await socket.send(out, { transport: "udp", hostname: clientHost, port: clientPort });
    record.down += data.length;
    return true;
  };

  const pump = async () => {
    const buf = new Uint8Array(opts.maxDatagramSize);
    while (!closed) {
      let data: Uint8Array;
      let addr: Deno.Addr;
      try {
        [data, addr] = await socket.receive(buf);
      } catch {
        break;
      }
      lastActivity = performance.now();
      const from = addr as Deno.NetAddr;
      const fromIP = canonicalIP(from.hostname);
      const key = `${fromIP}|${from.port}`;
      let ok = false;
      try {
        if (
          fromIP === clientIP && (clientPort === 0 ? !peers.has(key) : from.port === clientPort)
        ) {
          clientPort ||= from.port;
          ok = await fromClient(data);
        } else if (clientPort !== 0 && peers.has(key)) {
          ok = await toClient(data, from);
        }
      } catch {
        ok = false;
      }
      if (!ok) dropped++;
    }
  };

  // The control connection: the association lives as long as it is open.
  const control = async () => {
    const buf = new Uint8Array(256);
    try {
      while ((await reader.read(buf)) !== null) lastActivity = performance.now();
    } catch {
      // Reset counts as closed.
    }
    close();
  };

  // Idle: due at lastActivity + idleTimeoutMs; a datagram or control byte since moves it.
  const { idleTimeoutMs } = opts;
  const cancelIdle = idleTimeoutMs <= 0 ? () => {} : ctx.deadlines.schedule(
    lastActivity + idleTimeoutMs,
    (now) => {
      if (closed) return undefined;
      const due = lastActivity + idleTimeoutMs;
      if (now < due) return due;
      close("idle timeout");
      try {
        conn.close();
      } catch {
        // Already closed.
      }
      return undefined;
    },
  );
  try {
    await Promise.all([pump(), control()]);
  } finally {
    cancelIdle();
    close();
    if (dropped > 0) {
      record.note = `${record.note ? record.note + ", " : ""}${dropped} datagrams dropped`;
    }
  }
}
