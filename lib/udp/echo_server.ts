/**
 * An RFC 862 UDP echo server: each datagram goes back to its sender unchanged, boundaries
 * kept, any size up to the UDP maximum, over IPv4 or IPv6.
 *
 * Safety rules (the echo/chargen loops of CERT CA-1996-01, reflection attacks):
 * - datagrams from a {@linkcode REFLECTOR_PORTS} source port, or from the server's own port
 *   (itself, or a twin echo server elsewhere), are dropped and counted, never answered;
 * - each source address has a token bucket ({@linkcode SourceRateLimiter}); datagrams over
 *   its rate are dropped and counted. Loopback sources (127.0.0.0/8, ::1) are exempt unless
 *   `limitLoopback` is set: the kernel drops packets from outside that claim a loopback source,
 *   so only programs on this machine can send from one, and a local flood (`udp-ping --flood`)
 *   measures the server, not the limiter.
 *
 * One receive loop, one reused 64 KiB buffer: a datagram is sent back before the next one is
 * read, so replies leave in arrival order. `fast_echo.ts` is the same server on a libc socket
 * that receives and sends in batches (where the process has `--allow-ffi`); both decide
 * through {@linkcode createEchoPolicy} and count in {@linkcode UdpEchoStats}.
 *
 * @module
 */

import { UDP_RECEIVE_BUFFER_SIZE } from "./datagram.ts";
import { SourceRateLimiter } from "./rate_limiter.ts";
import { REFLECTOR_PORTS } from "./reflector_ports.ts";
import { isLoopbackHost } from "../net/address.ts";
import { delay } from "../net/deadline.ts";

/** Defaults of {@linkcode UdpEchoOptions}, the limits and policies of the echo server. */
export const UDP_ECHO_DEFAULTS = {
  /** Address bound by default: loopback only, so nothing outside the machine is answered. */
  hostname: "127.0.0.1",
  /** Default port (7, the RFC 862 port, is itself a reflector port and needs root). */
  port: 7007,
  /** Datagrams per second answered per source address on average; 0 disables the limit. */
  ratePerSecond: 1000,
  /**
   * Whether loopback sources (127.0.0.0/8, ::1) are rate limited too. Off: no other machine
   * can send from a loopback address, so the limit would only throttle local measurements.
   */
  limitLoopback: false,
  /** Receive buffer: above the largest UDP datagram. */
  receiveBufferSize: UDP_RECEIVE_BUFFER_SIZE,
  /** First pause after a failed receive, in ms; doubles up to 1 s. */
  receiveBackoffMs: 10,
} as const;

/** Options for {@linkcode startUdpEcho}. */
export interface UdpEchoOptions {
  /** Datagrams per second per source address; 0 disables rate limiting. @default {1000} */
  ratePerSecond?: number;
  /** Datagrams a source may send back to back. @default {ratePerSecond} */
  burst?: number;
  /**
   * Rate limit loopback sources (127.0.0.0/8, ::1) too; they are exempt by default.
   * @default {false}
   */
  limitLoopback?: boolean;
  /** Source addresses tracked by the rate limiter. @default {65536} */
  maxSources?: number;
  /** Source ports never answered. @default {the keys of REFLECTOR_PORTS} */
  refusedSourcePorts?: Iterable<number>;
  /** Called for a dropped datagram (debug logging). */
  onDrop?: (reason: DropReason, from: Deno.NetAddr, bytes: number) => void;
  /** Called when receiving or sending fails; the server keeps going. */
  onError?: (error: unknown, from?: Deno.NetAddr) => void;
}

/** Why a datagram was not echoed. */
export type DropReason = "reflector-port" | "same-port" | "rate-limited" | "oversize";

/** Counters of a running echo server. */
export interface UdpEchoStats {
  /** Datagrams received. */
  received: number;
  /** Bytes received. */
  bytesReceived: number;
  /** Datagrams echoed. */
  echoed: number;
  /** Bytes echoed. */
  bytesEchoed: number;
  /** Dropped: source port is a reflector port. */
  refusedReflector: number;
  /**
   * Dropped: the source port is the server's own port. That is the server itself, or a twin
   * echo server on another host (a forged datagram between two would loop forever).
   */
  refusedSamePort: number;
  /** Dropped: over the source's rate. */
  rateLimited: number;
  /** Dropped: filled the whole receive buffer, so it may have been cut. */
  oversize: number;
  /** Sends that failed. */
  sendErrors: number;
  /** Receives that failed. */
  receiveErrors: number;
}

/** A running echo server from {@linkcode startUdpEcho} (or `startFastUdpEcho`). */
export interface UdpEchoServer {
  /** The bound address. */
  readonly addr: Deno.NetAddr;
  /** Live counters. */
  readonly stats: Readonly<UdpEchoStats>;
  /** Sources tracked by the rate limiter (0 without one). */
  readonly trackedSources: number;
  /** Resolves when the receive loop has ended. */
  readonly done: Promise<void>;
  /** Closes the socket and resolves once the loop has ended. */
  stop(): Promise<void>;
}

/** Drops the IPv4-mapped prefix so one host counts once on a dual-stack socket. */
function sourceKey(hostname: string): string {
  return hostname.startsWith("::ffff:") && hostname.includes(".") ? hostname.slice(7) : hostname;
}

/**
 * Whether datagrams from `source` (an IP address as `receive()` reports it) go through the
 * per-source rate limit: every source does except loopback ones (127.0.0.0/8, ::1, also as
 * IPv4-mapped IPv6), unless `options.limitLoopback` is set.
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert/strict";
 * import { isRateLimitedSource } from "./echo_server.ts";
 * assert.equal(isRateLimitedSource("203.0.113.7"), true);
 * assert.equal(isRateLimitedSource("127.0.0.1"), false);
 * assert.equal(isRateLimitedSource("::ffff:127.0.0.1"), false);
 * assert.equal(isRateLimitedSource("::1", { limitLoopback: true }), true);
 * ```
 */
export function isRateLimitedSource(
  source: string,
  options: { limitLoopback?: boolean } = {},
): boolean {
  if (options.limitLoopback ?? UDP_ECHO_DEFAULTS.limitLoopback) return true;
  return !isLoopbackHost(sourceKey(source));
}

/** One received datagram as {@linkcode EchoPolicy.decide} sees it. */
export interface EchoDatagram {
  /** Source address, as `receive()` reports it (IPv4-mapped IPv6 allowed). */
  hostname: string;
  /** Source port. */
  port: number;
  /** Bytes received. */
  bytes: number;
  /** The kernel said the datagram was cut to fit the buffer (`MSG_TRUNC`). @default {false} */
  truncated?: boolean;
}

/**
 * The echo-or-drop rules of one echo server, shared by every receive loop
 * ({@linkcode startUdpEcho} and the libc fast path in `fast_echo.ts`), so both answer and
 * refuse exactly the same datagrams.
 */
export interface EchoPolicy {
  /**
   * Decides for one datagram at `nowMs` (a monotonic clock in ms, `performance.now()`):
   * `undefined` to echo it, else why it is dropped. Checked in this order: reflector source
   * port, the server's own port, oversize (truncated, or filling the whole
   * {@linkcode UDP_ECHO_DEFAULTS.receiveBufferSize} buffer), the source's rate; a datagram
   * dropped for an earlier reason costs no rate-limit token.
   */
  decide(datagram: EchoDatagram, nowMs: number): DropReason | undefined;
  /** Sources tracked by the rate limiter (0 without one). */
  readonly trackedSources: number;
}

/**
 * The rules of an echo server bound to port `ownPort`, from the {@linkcode UdpEchoOptions}
 * (only the rate, burst, loopback, source and port options are read).
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert/strict";
 * import { createEchoPolicy } from "./echo_server.ts";
 * const policy = createEchoPolicy(7007, { ratePerSecond: 1, burst: 1 });
 * const from = { hostname: "203.0.113.9", port: 40000, bytes: 64 };
 * assert.equal(policy.decide(from, 0), undefined); // echo
 * assert.equal(policy.decide(from, 0), "rate-limited"); // burst spent
 * assert.equal(policy.decide({ ...from, port: 19 }, 0), "reflector-port");
 * assert.equal(policy.decide({ ...from, port: 7007 }, 0), "same-port");
 * assert.equal(policy.decide({ ...from, truncated: true }, 5000), "oversize");
 * assert.equal(policy.decide({ hostname: "127.0.0.1", port: 40000, bytes: 1 }, 0), undefined);
 * ```
 */
export function createEchoPolicy(ownPort: number, options: UdpEchoOptions = {}): EchoPolicy {
  const rate = options.ratePerSecond ?? UDP_ECHO_DEFAULTS.ratePerSecond;
  const limiter = rate > 0
    ? new SourceRateLimiter({
      ratePerSecond: rate,
      burst: options.burst,
      maxSources: options.maxSources,
    })
    : undefined;
  const limitLoopback = options.limitLoopback ?? UDP_ECHO_DEFAULTS.limitLoopback;
  const refused = new Set(options.refusedSourcePorts ?? REFLECTOR_PORTS.keys());
  return {
    decide(datagram, nowMs) {
      if (refused.has(datagram.port)) return "reflector-port";
      if (datagram.port === ownPort) return "same-port";
      if (datagram.truncated || datagram.bytes >= UDP_ECHO_DEFAULTS.receiveBufferSize) {
        return "oversize";
      }
      if (
        limiter && isRateLimitedSource(datagram.hostname, { limitLoopback }) &&
        !limiter.allow(sourceKey(datagram.hostname), nowMs)
      ) {
        return "rate-limited";
      }
      return undefined;
    },
    get trackedSources() {
      return limiter?.size ?? 0;
    },
  };
}

/**
 * Fresh {@linkcode UdpEchoStats}, every counter 0.
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert/strict";
 * import { emptyEchoStats } from "./echo_server.ts";
 * assert.equal(emptyEchoStats().echoed, 0);
 * ```
 */
export function emptyEchoStats(): UdpEchoStats {
  return {
    received: 0,
    bytesReceived: 0,
    echoed: 0,
    bytesEchoed: 0,
    refusedReflector: 0,
    refusedSamePort: 0,
    rateLimited: 0,
    oversize: 0,
    sendErrors: 0,
    receiveErrors: 0,
  };
}

/**
 * Counts one datagram dropped for `reason` in `stats`.
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert/strict";
 * import { countDrop, emptyEchoStats } from "./echo_server.ts";
 * const stats = emptyEchoStats();
 * countDrop(stats, "rate-limited");
 * assert.equal(stats.rateLimited, 1);
 * ```
 */
export function countDrop(stats: UdpEchoStats, reason: DropReason): void {
  switch (reason) {
    case "reflector-port":
      stats.refusedReflector++;
      break;
    case "same-port":
      stats.refusedSamePort++;
      break;
    case "oversize":
      stats.oversize++;
      break;
    case "rate-limited":
      stats.rateLimited++;
      break;
  }
}

/**
 * Echoes every datagram received on `conn` back to its sender until stopped.
 *
 * @example Usage
 * ```ts ignore
 * import { startUdpEcho } from "./echo_server.ts";
 * const conn = Deno.listenDatagram({ transport: "udp", hostname: "127.0.0.1", port: 0 });
 * const server = startUdpEcho(conn, { ratePerSecond: 100 });
 * // ... later
 * await server.stop();
 * console.log(server.stats.echoed);
 * ```
 */
export function startUdpEcho(
  conn: Deno.DatagramConn,
  callerOptions: UdpEchoOptions = {},
): UdpEchoServer {
  const options = guardedCallbacks(callerOptions);
  const addr = conn.addr as Deno.NetAddr;
  const policy = createEchoPolicy(addr.port, options);
  const stats = emptyEchoStats();
  let stopping = false;
  const stopSignal = new AbortController();

  const loop = async () => {
    const buf = new Uint8Array(UDP_ECHO_DEFAULTS.receiveBufferSize);
    let backoff: number = UDP_ECHO_DEFAULTS.receiveBackoffMs;
    while (!stopping) {
      let data: Uint8Array;
      let from: Deno.NetAddr;
      try {
        const [d, a] = await conn.receive(buf);
        data = d;
        from = a as Deno.NetAddr;
        backoff = UDP_ECHO_DEFAULTS.receiveBackoffMs;
      } catch (error) {
        if (stopping || error instanceof Deno.errors.BadResource) break;
        stats.receiveErrors++;
        options.onError?.(error);
        await delay(backoff, { signal: stopSignal.signal });
        backoff = Math.min(backoff * 2, 1000);
        continue;
      }
      stats.received++;
      stats.bytesReceived += data.length;
      const reason = policy.decide(
        { hostname: from.hostname, port: from.port, bytes: data.length },
        performance.now(),
      );
      if (reason !== undefined) {
        countDrop(stats, reason);
        options.onDrop?.(reason, from, data.length);
        continue;
      }
      try {
        await conn.send(data, from);
        stats.echoed++;
        stats.bytesEchoed += data.length;
      } catch (error) {
        if (stopping || error instanceof Deno.errors.BadResource) break;
        stats.sendErrors++;
        options.onError?.(error, from);
      }
    }
  };
  const done = loop();

  return {
    addr,
    stats,
    get trackedSources() {
      return policy.trackedSources;
    },
    done,
    async stop() {
      if (!stopping) {
        stopping = true;
        stopSignal.abort();
        try {
          conn.close();
        } catch {
          // Already closed.
        }
      }
      await done;
    },
  };
}

/**
 * `options` with its `onDrop` and `onError` callbacks made harmless: what they throw (a log
 * write to a closed pipe, say) is swallowed, so reporting can never end the server. Both
 * echo paths use it.
 *
 * @example A callback that throws is contained
 * ```ts
 * import assert from "node:assert/strict";
 * import { guardedCallbacks, type UdpEchoOptions } from "./echo_server.ts";
 * const options = guardedCallbacks<UdpEchoOptions>({
 *   onError: () => {
 *     throw new Error("EPIPE");
 *   },
 * });
 * assert.doesNotThrow(() => options.onError?.(new Error("boom")));
 * ```
 */
export function guardedCallbacks<T extends UdpEchoOptions>(options: T): T {
  const { onDrop, onError } = options;
  return {
    ...options,
    onDrop: onDrop && ((...args: Parameters<typeof onDrop>) => {
      try {
        onDrop(...args);
      } catch {
        // Reporting failed; the server goes on.
      }
    }),
    onError: onError && ((...args: Parameters<typeof onError>) => {
      try {
        onError(...args);
      } catch {
        // Reporting failed; the server goes on.
      }
    }),
  };
}

/** Total datagrams dropped on purpose (every reason but errors). */
export function droppedCount(stats: UdpEchoStats): number {
  return stats.refusedReflector + stats.refusedSamePort + stats.rateLimited + stats.oversize;
}

/**
 * One summary line for the log: datagrams and bytes received and echoed, and what was
 * dropped and why.
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert/strict";
 * import { formatEchoSummary } from "./echo_server.ts";
 * const line = formatEchoSummary({
 *   received: 3, bytesReceived: 30, echoed: 2, bytesEchoed: 20, refusedReflector: 1,
 *   refusedSamePort: 0, rateLimited: 0, oversize: 0, sendErrors: 0, receiveErrors: 0,
 * });
 * assert.match(line, /^received 3 datagrams \(30 B\), echoed 2 \(20 B\), dropped 1 /);
 * ```
 */
export function formatEchoSummary(stats: UdpEchoStats): string {
  return `received ${stats.received} datagrams (${stats.bytesReceived} B), ` +
    `echoed ${stats.echoed} (${stats.bytesEchoed} B), dropped ${droppedCount(stats)} ` +
    `(rate-limited ${stats.rateLimited}, reflector port ${stats.refusedReflector}, ` +
    `same port ${stats.refusedSamePort}, oversize ${stats.oversize}), ` +
    `errors: send ${stats.sendErrors}, receive ${stats.receiveErrors}`;
}
