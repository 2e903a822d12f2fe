/**
 * The udp-ping client: sends numbered, timestamped, checksummed probes
 * (see {@linkcode writeProbe}) to a UDP echo server and measures what comes back.
 *
 * Three ways of pacing:
 * - every `intervalMs` (like ping; the default, one a second);
 * - `ratePps` probes a second, open loop, for throughput tests;
 * - `flood`: as fast as replies allow, with at most `window` probes in flight.
 *
 * A run ends after `count` probes and the wait for their replies (until every probe is
 * answered or `timeoutMs` after the last one), or when `signal` aborts.
 *
 * @module
 */

import { formatAddress, type HostPort, isLoopbackHost } from "../net/address.ts";
import { delay } from "../net/deadline.ts";
import { SocketError } from "../net/errors.ts";
import { PingStats, type PingSummary, type ReplyFlags } from "./ping_stats.ts";
import { maxUdpPayload, UDP_RECEIVE_BUFFER_SIZE } from "./datagram.ts";
import { PROBE_HEADER_SIZE, readProbe, writeProbe } from "./probe.ts";

/** Defaults of {@linkcode UdpPingOptions}. */
export const UDP_PING_DEFAULTS = {
  /** Probes to send; 0 means until aborted. */
  count: 0,
  /** Probe size in bytes (UDP payload). */
  size: 64,
  /** Pause between probes, in ms. */
  intervalMs: 1000,
  /** A reply slower than this is late, and the final wait for replies lasts this long. */
  timeoutMs: 2000,
  /** Probes in flight at most with `flood`. */
  floodWindow: 64,
  /** With `flood` and a full window, a probe is sent anyway after this many quiet ms. */
  floodTickMs: 10,
  /** Receive buffer: above the largest UDP datagram. */
  receiveBufferSize: UDP_RECEIVE_BUFFER_SIZE,
} as const;

/** Options for {@linkcode udpPing}. */
export interface UdpPingOptions {
  /** Probes to send; 0 means until `signal` aborts. @default {0} */
  count?: number;
  /** Probe size in bytes, from 28 to 65,507 (65,527 over IPv6). @default {64} */
  size?: number;
  /** Pause between probes in ms (ignored with `ratePps` or `flood`). @default {1000} */
  intervalMs?: number;
  /** Replies slower than this are late; final wait for replies. @default {2000} */
  timeoutMs?: number;
  /** Send this many probes a second, open loop. */
  ratePps?: number;
  /** Send as fast as replies come back, `window` probes in flight. @default {false} */
  flood?: boolean;
  /** Probes in flight with `flood`. @default {64} */
  window?: number;
  /** Stops the run early; the summary covers what happened so far. */
  signal?: AbortSignal;
  /** Called for each datagram received and each failed send. */
  onEvent?: (event: PingEvent) => void;
  /**
   * The monotonic clock, in ms, that stamps probes, times replies and paces the run. Tests
   * pass a clock of their own, so that what counts as late or on time does not depend on
   * how busy the machine is. @default {performance.now}
   */
  now?: () => number;
}

/** Something that happened during a run, for per-reply output. */
export type PingEvent =
  | {
    kind: "reply";
    seq: number;
    bytes: number;
    rttMs: number;
    from: Deno.NetAddr;
    flags: ReplyFlags;
  }
  | { kind: "truncated"; seq?: number; bytes: number; expected?: number; from: Deno.NetAddr }
  | { kind: "corrupted"; bytes: number; reason: string; from: Deno.NetAddr }
  | { kind: "unexpected-source"; bytes: number; from: Deno.NetAddr }
  | { kind: "stray"; seq: number; bytes: number; from: Deno.NetAddr }
  | { kind: "send-error"; seq: number; error: unknown };

const IPV4 = /^\d{1,3}(\.\d{1,3}){3}$/;

/** Resolves `hostname` once to an address literal (so each send skips the resolver). */
export async function resolveHost(hostname: string): Promise<string> {
  if (IPV4.test(hostname) || hostname.includes(":")) return hostname;
  if (hostname === "localhost") return "127.0.0.1";
  for (const type of ["A", "AAAA"] as const) {
    try {
      const found = await Deno.resolveDns(hostname, type);
      if (found.length > 0) return found[0];
    } catch {
      // Try the other family.
    }
  }
  throw new SocketError(`Cannot resolve host '${hostname}': no A or AAAA record`);
}

/**
 * Whether UDP `port` is closed on `hostname`, a loopback address literal (127.0.0.0/8, ::1):
 * binds it for an instant. True when that works (no socket is bound there, so the kernel
 * answers datagrams to it with ICMP port unreachable), false when the address is in use
 * (also by a socket bound with `reuseAddress`, since this bind does not ask for reuse), null
 * when it cannot be told: not a loopback address (another machine's port cannot be seen from
 * here, and with `ip_nonlocal_bind` even a foreign address binds), a port this process may not
 * bind, or port 0.
 *
 * This stands in for the ICMP message itself: `Deno.listenDatagram` sockets are not connected
 * and Deno offers no `IP_RECVERR`, and Linux reports ICMP errors to a UDP socket only in one of
 * those two cases (as ECONNREFUSED), so without it a closed port looks exactly like loss.
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert/strict";
 * import { loopbackPortClosed } from "./ping.ts";
 * const conn = Deno.listenDatagram({ transport: "udp", hostname: "127.0.0.1", port: 0 });
 * const { port } = conn.addr as Deno.NetAddr;
 * assert.equal(loopbackPortClosed("127.0.0.1", port), false);
 * conn.close();
 * assert.equal(loopbackPortClosed("127.0.0.1", port), true);
 * assert.equal(loopbackPortClosed("192.0.2.1", port), null); // not a loopback address
 * ```
 */
export function loopbackPortClosed(hostname: string, port: number): boolean | null {
  if (!isLoopbackHost(hostname) || hostname === "localhost") return null;
  if (!Number.isInteger(port) || port <= 0 || port > 65_535) return null;
  try {
    Deno.listenDatagram({ transport: "udp", hostname, port }).close();
    return true;
  } catch (error) {
    return error instanceof Deno.errors.AddrInUse ? false : null;
  }
}

/** The largest probe that fits one datagram to `hostname` (an address literal). */
export function maxProbeSize(hostname: string): number {
  return maxUdpPayload(hostname);
}

function unmapped(hostname: string): string {
  return hostname.startsWith("::ffff:") && hostname.includes(".") ? hostname.slice(7) : hostname;
}

/**
 * Pings the UDP echo server at `target` and resolves the run's summary.
 *
 * @example Usage
 * ```ts ignore
 * import { udpPing } from "./ping.ts";
 * const summary = await udpPing({ hostname: "127.0.0.1", port: 7007 }, {
 *   count: 5,
 *   intervalMs: 100,
 * });
 * console.log(`${summary.lossPercent}% loss, median ${summary.rtt?.p50} ms`);
 * ```
 */
export async function udpPing(
  target: HostPort,
  options: UdpPingOptions = {},
): Promise<PingSummary> {
  const count = options.count ?? UDP_PING_DEFAULTS.count;
  const size = options.size ?? UDP_PING_DEFAULTS.size;
  const intervalMs = options.intervalMs ?? UDP_PING_DEFAULTS.intervalMs;
  const timeoutMs = options.timeoutMs ?? UDP_PING_DEFAULTS.timeoutMs;
  const window = options.window ?? UDP_PING_DEFAULTS.floodWindow;
  const { signal, onEvent } = options;
  const now = options.now ?? (() => performance.now());
  const ip = await resolveHost(target.hostname);
  if (size < PROBE_HEADER_SIZE || size > maxProbeSize(ip)) {
    throw new RangeError(
      `Cannot send ${size}-byte probes to ${ip}: size must be ${PROBE_HEADER_SIZE} to ${
        maxProbeSize(ip)
      }`,
    );
  }
  const to: Deno.NetAddr = { transport: "udp", hostname: ip, port: target.port };
  const targetText = formatAddress(target);
  const v6 = ip.includes(":");
  const bindHost = isLoopbackHost(ip) ? ip : v6 ? "::" : "0.0.0.0";
  const sock = Deno.listenDatagram({ transport: "udp", hostname: bindHost, port: 0 });

  const stats = new PingStats({ timeoutMs });
  const session = crypto.getRandomValues(new Uint32Array(1))[0];
  const outstanding = new Map<number, number>(); // seq -> sentAt, in send order
  let heardFromTarget = false;
  let waiter: (() => void) | undefined;
  let events = 0;
  const notify = () => {
    events++;
    const w = waiter;
    waiter = undefined;
    w?.();
  };
  const waitEvent = (ms: number) =>
    new Promise<void>((resolve) => {
      const done = () => {
        clearTimeout(timer);
        if (waiter === done) waiter = undefined;
        resolve();
      };
      const timer = setTimeout(done, Math.max(0, ms));
      waiter = done;
    });
  signal?.addEventListener("abort", notify);
  const aborted = () => signal?.aborted ?? false;

  const receiveLoop = async () => {
    const buf = new Uint8Array(UDP_PING_DEFAULTS.receiveBufferSize);
    while (true) {
      let data: Uint8Array;
      let from: Deno.NetAddr;
      try {
        const [d, a] = await sock.receive(buf);
        data = d;
        from = a as Deno.NetAddr;
      } catch {
        return; // Closed at the end of the run.
      }
      const receivedAt = now();
      const bytes = data.length;
      if (unmapped(from.hostname) !== ip || from.port !== target.port) {
        stats.unexpectedSource++;
        onEvent?.({ kind: "unexpected-source", bytes, from });
        continue;
      }
      heardFromTarget = true;
      const check = readProbe(data);
      if (check.kind === "truncated") {
        stats.truncated++;
        if (check.seq !== undefined) outstanding.delete(check.seq);
        onEvent?.({ kind: "truncated", seq: check.seq, bytes, expected: check.expected, from });
      } else if (check.kind === "corrupted") {
        stats.corrupted++;
        onEvent?.({ kind: "corrupted", bytes, reason: check.reason, from });
      } else {
        const { seq, session: s, sentAt } = check.probe;
        if (s !== session || seq >= stats.sent) {
          stats.stray++;
          onEvent?.({ kind: "stray", seq, bytes, from });
        } else {
          const rttMs = receivedAt - sentAt;
          const flags = stats.reply(seq, rttMs);
          outstanding.delete(seq);
          onEvent?.({ kind: "reply", seq, bytes, rttMs, from, flags });
        }
      }
      notify();
    }
  };
  const receiving = receiveLoop();

  const sendBuf = new Uint8Array(size);
  const firstSendAt = now();
  let lastSendAt = firstSendAt;
  const sendOne = async () => {
    const seq = stats.sent;
    const sentAt = now();
    const data = writeProbe(sendBuf, { seq, session, sentAt, length: size });
    stats.sent++;
    outstanding.set(seq, sentAt);
    lastSendAt = sentAt;
    try {
      await sock.send(data, to);
    } catch (error) {
      onEvent?.({ kind: "send-error", seq, error });
    }
  };
  const expire = (at: number) => {
    for (const [seq, sentAt] of outstanding) {
      if (sentAt + timeoutMs > at) break;
      outstanding.delete(seq);
    }
  };
  const limit = count > 0 ? count : Infinity;

  try {
    if (options.flood) {
      while (stats.sent < limit && !aborted()) {
        expire(now());
        if (outstanding.size < window) {
          await sendOne();
        } else {
          // Like ping -f: a window stuck on lost probes still sends one probe per tick.
          const before = events;
          await waitEvent(UDP_PING_DEFAULTS.floodTickMs);
          if (events === before && !aborted()) await sendOne();
        }
      }
    } else if (options.ratePps) {
      // Open loop: after a stall, catch up so that the average rate holds.
      const periodMs = 1000 / options.ratePps;
      while (stats.sent < limit && !aborted()) {
        const due = Math.min(limit, Math.floor((now() - firstSendAt) / periodMs) + 1);
        do await sendOne(); while (stats.sent < due && !aborted());
        expire(now());
        if (stats.sent >= limit) break;
        const nextAt = firstSendAt + stats.sent * periodMs;
        await delay(Math.max(0, nextAt - now()), { signal });
      }
    } else {
      // Like ping: at least `intervalMs` between two probes, never a catch-up burst.
      while (stats.sent < limit && !aborted()) {
        await sendOne();
        expire(now());
        if (stats.sent >= limit) break;
        await delay(Math.max(0, lastSendAt + intervalMs - now()), { signal });
      }
    }
    const deadline = lastSendAt + timeoutMs;
    while (!aborted()) {
      const at = now();
      expire(at);
      if (outstanding.size === 0 || at >= deadline) break;
      await waitEvent(deadline - at);
    }
  } finally {
    signal?.removeEventListener("abort", notify);
    sock.close();
    await receiving;
  }
  return stats.summary({
    target: targetText,
    size,
    durationMs: now() - firstSendAt,
    sendSpanMs: lastSendAt - firstSendAt,
    // Anything back from the target proves it open; else, on loopback, look.
    portClosed: heardFromTarget
      ? false
      : stats.sent > 0
      ? loopbackPortClosed(ip, target.port)
      : null,
  });
}
