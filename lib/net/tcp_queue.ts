/**
 * What the kernel knows about a TCP connection that the socket API does not tell: how many
 * bytes it still holds for the peer (written by us, not yet acknowledged: `tx_queue`) and
 * whether the connection is still open, from Linux's `/proc/net/tcp` and `/proc/net/tcp6`. A peer that reads, however slowly, acknowledges bytes and the figure falls;
 * a peer that does not read leaves it where it is. A blocked write learns that only when the
 * kernel wakes it, after a large part of the send buffer drained (seconds for a slow reader),
 * so this is how flow control tells a slow reader from a stuck one. Where `/proc` is missing
 * (not Linux) or the connection is not listed, the answer is `undefined`.
 *
 * @module
 */

/** `/proc/net/tcp` spelling of an address: the IPv4 (or each IPv6 word) in host byte order. */
function procAddress(addr: Deno.NetAddr): string | undefined {
  const port = addr.port.toString(16).toUpperCase().padStart(4, "0");
  const v4 = /^(\d+)\.(\d+)\.(\d+)\.(\d+)$/.exec(addr.hostname);
  if (v4) {
    const bytes = v4.slice(1).map(Number);
    return `${hex(bytes.reverse())}:${port}`;
  }
  const words = expandIPv6(addr.hostname);
  if (!words) return undefined;
  let out = "";
  for (let i = 0; i < 8; i += 2) {
    // One 32-bit word, its four bytes as stored in memory (little-endian host).
    const b = [words[i] >> 8, words[i] & 0xff, words[i + 1] >> 8, words[i + 1] & 0xff];
    out += hex(b.reverse());
  }
  return `${out}:${port}`;
}

function hex(bytes: number[]): string {
  return bytes.map((b) => b.toString(16).toUpperCase().padStart(2, "0")).join("");
}

/** The eight 16-bit words of an IPv6 address (with an embedded IPv4 tail allowed). */
function expandIPv6(text: string): number[] | undefined {
  let s = text.replace(/^\[|\]$/g, "").replace(/%.*$/, "");
  const v4 = /(\d+)\.(\d+)\.(\d+)\.(\d+)$/.exec(s);
  if (v4) {
    const [a, b, c, d] = v4.slice(1).map(Number);
    s = s.slice(0, v4.index) + `${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`;
  }
  const halves = s.split("::");
  if (halves.length > 2) return undefined;
  const head = halves[0] ? halves[0].split(":") : [];
  const tail = halves.length === 2 && halves[1] ? halves[1].split(":") : [];
  const fill = halves.length === 2 ? 8 - head.length - tail.length : 0;
  const parts = [...head, ...Array(fill).fill("0"), ...tail];
  if (parts.length !== 8) return undefined;
  const words = parts.map((p) => parseInt(p, 16));
  return words.every((w) => w >= 0 && w <= 0xffff) ? words : undefined;
}

/** How long one reading of `/proc/net/tcp{,6}` answers every lookup, in ms. */
export const TCP_TABLE_TTL_MS = 100;

/** One connection's row: its state (the kernel's `TCP_*` number) and unacknowledged bytes. */
interface TcpRow {
  state: number;
  txQueue: number;
}

let table: Map<string, TcpRow> | undefined;
let tableAt = -Infinity;

/**
 * `LOCAL REMOTE` -> tx_queue for every connection, read at most once per
 * {@linkcode TCP_TABLE_TTL_MS}: a relay with a thousand slow readers reads the table a few
 * times a second, not a thousand times.
 */
function tcpTable(): Map<string, TcpRow> {
  const now = performance.now();
  if (table && now - tableAt < TCP_TABLE_TTL_MS) return table;
  const next = new Map<string, TcpRow>();
  for (const file of ["/proc/net/tcp", "/proc/net/tcp6"]) {
    let text: string;
    try {
      text = Deno.readTextFileSync(file);
    } catch {
      continue;
    }
    // "  sl: LOCAL REMOTE ST TX:RX ..."
    const line =
      /^\s*\d+: ([0-9A-F]+:[0-9A-F]{4}) ([0-9A-F]+:[0-9A-F]{4}) ([0-9A-F]{2}) ([0-9A-F]{8}):/gm;
    for (const m of text.matchAll(line)) {
      next.set(`${m[1]} ${m[2]}`, { state: parseInt(m[3], 16), txQueue: parseInt(m[4], 16) });
    }
  }
  table = next;
  tableAt = now;
  return next;
}

/**
 * The unacknowledged bytes the kernel holds for the connection from `local` to `remote`, or
 * `undefined` when unknown. Answers come from a table read at most every
 * {@linkcode TCP_TABLE_TTL_MS}.
 *
 * @example A connection with nothing in flight
 * ```ts
 * import assert from "node:assert/strict";
 * import { unackedBytes } from "./tcp_queue.ts";
 * using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
 * using client = await Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port });
 * using server = await listener.accept();
 * const queued = unackedBytes(server.localAddr, server.remoteAddr);
 * assert.ok(queued === undefined || queued === 0);
 * assert.ok(client.localAddr.port > 0);
 * ```
 */
export function unackedBytes(local: Deno.NetAddr, remote: Deno.NetAddr): number | undefined {
  return findRow(local, remote)?.txQueue;
}

/** Linux's `TCP_CLOSE_WAIT`: the peer sent its FIN (it half-closed) and this side has not. */
export const TCP_CLOSE_WAIT = 8;
/** Linux's `TCP_ESTABLISHED`. */
export const TCP_ESTABLISHED = 1;

/**
 * Whether the kernel still has the connection from `local` to `remote` open (established, or
 * half-closed by the peer): false once the peer reset it (a peer that closes with unread data
 * sends a reset), undefined where unknown (no `/proc`). This is how a relay notices that a
 * listen-only client went away without writing to it.
 *
 * @example An open connection is open
 * ```ts
 * import assert from "node:assert/strict";
 * import { tcpOpen } from "./tcp_queue.ts";
 * using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
 * using _client = await Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port });
 * using server = await listener.accept();
 * const open = tcpOpen(server.localAddr, server.remoteAddr);
 * assert.ok(open === undefined || open === true);
 * ```
 */
export function tcpOpen(local: Deno.NetAddr, remote: Deno.NetAddr): boolean | undefined {
  if (tcpTable().size === 0) return undefined;
  const row = findRow(local, remote);
  return row !== undefined && (row.state === TCP_ESTABLISHED || row.state === TCP_CLOSE_WAIT);
}

function findRow(local: Deno.NetAddr, remote: Deno.NetAddr): TcpRow | undefined {
  const l = procAddress(local);
  const r = procAddress(remote);
  if (!l || !r) return undefined;
  const rows = tcpTable();
  const found = rows.get(`${l} ${r}`);
  if (found !== undefined || local.hostname.includes(":")) return found;
  // An IPv4 connection on a dual-stack socket is listed in tcp6 as ::ffff:a.b.c.d.
  const ml = procAddress({ ...local, hostname: `::ffff:${local.hostname}` });
  const mr = procAddress({ ...remote, hostname: `::ffff:${remote.hostname}` });
  return ml && mr ? rows.get(`${ml} ${mr}`) : undefined;
}
