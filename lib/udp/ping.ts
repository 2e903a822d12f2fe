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
import { fastFlood, fastPingUnavailable } from "./fast_ping.ts";

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
   * With `flood`, use the batched libc client (`fast_ping.ts`) where this process may; false
   * keeps Deno's sockets (to compare the two). @default {true}
   */
  fastPath?: boolean;
  /** Called once before the first probe: which client the run uses, and why. */
  onStart?: (client: PingClient) => void;
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

/** What a {@linkcode PingRun} needs to know of its run. */
export interface PingRunOptions {
  /** The target as given, `HOST:PORT`, for the summary. @default {ip:port} */
  target?: string;
  /** The target's address literal (as {@linkcode resolveHost} returns it). */
  ip: string;
  /** The target's port. */
  port: number;
  /** Probe size in bytes. */
  size: number;
  /** Replies slower than this are late; probes older than this stop counting as in flight. */
  timeoutMs: number;
  /** Probes to send; 0 means until `signal` aborts. */
  count: number;
  /** The run's monotonic clock, in ms. */
  now: () => number;
  /** Stops the run early. */
  signal?: AbortSignal;
  /** Called for each datagram received and each failed send. */
  onEvent?: (event: PingEvent) => void;
}

/**
 * The state of one udp-ping run, shared by both clients (Deno's sockets here, libc batches in
 * `fast_ping.ts`), so that they stamp probes, classify replies and count them the same way:
 * the one place that decides what a datagram is (a reply, duplicate, late, truncated,
 * corrupted, stray or from an unexpected source) and feeds {@linkcode PingStats}.
 *
 * A client calls {@linkcode PingRun.start} before its first probe, {@linkcode PingRun.nextProbe}
 * for each probe it sends, {@linkcode PingRun.receive} for each datagram it receives and
 * {@linkcode PingRun.expire} to retire probes that are past the timeout.
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert/strict";
 * import { PingRun } from "./ping.ts";
 * let clock = 0;
 * const run = new PingRun({
 *   ip: "127.0.0.1",
 *   port: 7,
 *   size: 64,
 *   timeoutMs: 100,
 *   count: 1,
 *   now: () => clock,
 * });
 * run.start();
 * const probe = run.nextProbe(new Uint8Array(64));
 * clock = 2;
 * const from: Deno.NetAddr = { transport: "udp", hostname: "127.0.0.1", port: 7 };
 * assert.equal(run.receive(probe, from, clock), true);
 * const s = run.summary();
 * assert.equal(s.received, 1);
 * assert.equal(s.rtt?.min, 2);
 * ```
 */
export class PingRun {
  /** The counts and RTTs. */
  readonly stats: PingStats;
  /** This run's random session id, carried by every probe. */
  readonly session: number = crypto.getRandomValues(new Uint32Array(1))[0];
  /** Probes neither answered nor past the timeout: seq -> sentAt, in send order. */
  readonly outstanding: Map<number, number> = new Map();
  /** The target's address literal. */
  readonly ip: string;
  /** The target's port. */
  readonly port: number;
  /** Probe size in bytes. */
  readonly size: number;
  /** Replies slower than this are late. */
  readonly timeoutMs: number;
  /** Probes to send at most (Infinity for a run until aborted). */
  readonly limit: number;
  /** The run's clock. */
  readonly now: () => number;
  /** When the first probe left (or is about to), on the run's clock. */
  firstSendAt = 0;
  /** When the last probe left, on the run's clock. */
  lastSendAt = 0;
  /** Whether anything came back from the target (its port is open). */
  heardFromTarget = false;
  readonly #options: PingRunOptions;

  /** Creates the state of a run to `options.ip`:`options.port`. */
  constructor(options: PingRunOptions) {
    this.#options = options;
    this.stats = new PingStats({ timeoutMs: options.timeoutMs });
    this.ip = options.ip;
    this.port = options.port;
    this.size = options.size;
    this.timeoutMs = options.timeoutMs;
    this.limit = options.count > 0 ? options.count : Infinity;
    this.now = options.now;
  }

  /** True once the run's signal has aborted. */
  get aborted(): boolean {
    return this.#options.signal?.aborted ?? false;
  }

  /** Marks the start of sending: the run's duration and send span count from here. */
  start(): void {
    this.firstSendAt = this.lastSendAt = this.now();
  }

  /**
   * Stamps the next probe with the clock and writes it into `buf` (at least `size` bytes);
   * counts it as sent and in flight, and returns its bytes.
   */
  nextProbe(buf: Uint8Array): Uint8Array {
    const seq = this.stats.sent;
    const sentAt = this.now();
    const data = writeProbe(buf, {
      seq,
      session: this.session,
      sentAt,
      length: this.#options.size,
    });
    this.stats.sent++;
    this.outstanding.set(seq, sentAt);
    this.lastSendAt = sentAt;
    return data;
  }

  /** Reports that probe `seq` (counted as sent) could not be sent. */
  sendFailed(seq: number, error: unknown): void {
    this.#options.onEvent?.({ kind: "send-error", seq, error });
  }

  /**
   * Classifies and counts one datagram that came `from` somewhere at `receivedAt` (the run's
   * clock); returns true when it came from the target (whatever it held).
   */
  receive(data: Uint8Array, from: Deno.NetAddr, receivedAt: number): boolean {
    const { stats } = this;
    const onEvent = this.#options.onEvent;
    const bytes = data.length;
    if (unmapped(from.hostname) !== this.#options.ip || from.port !== this.#options.port) {
      stats.unexpectedSource++;
      onEvent?.({ kind: "unexpected-source", bytes, from });
      return false;
    }
    this.heardFromTarget = true;
    const check = readProbe(data);
    if (check.kind === "truncated") {
      stats.truncated++;
      if (check.seq !== undefined) this.outstanding.delete(check.seq);
      onEvent?.({ kind: "truncated", seq: check.seq, bytes, expected: check.expected, from });
    } else if (check.kind === "corrupted") {
      stats.corrupted++;
      onEvent?.({ kind: "corrupted", bytes, reason: check.reason, from });
    } else {
      const { seq, session, sentAt } = check.probe;
      if (session !== this.session || seq >= stats.sent) {
        stats.stray++;
        onEvent?.({ kind: "stray", seq, bytes, from });
      } else {
        const rttMs = receivedAt - sentAt;
        const flags = stats.reply(seq, rttMs);
        this.outstanding.delete(seq);
        onEvent?.({ kind: "reply", seq, bytes, rttMs, from, flags });
      }
    }
    return true;
  }

  /** Stops counting as in flight the probes sent `timeoutMs` or longer before `at`. */
  expire(at: number): void {
    const { timeoutMs } = this.#options;
    for (const [seq, sentAt] of this.outstanding) {
      if (sentAt + timeoutMs > at) break;
      this.outstanding.delete(seq);
    }
  }

  /** The summary of the run so far. */
  summary(): PingSummary {
    const { ip, port, size } = this.#options;
    return this.stats.summary({
      target: this.#options.target ?? formatAddress({ hostname: ip, port }),
      size,
      durationMs: this.now() - this.firstSendAt,
      sendSpanMs: this.lastSendAt - this.firstSendAt,
      // Anything back from the target proves it open; else, on loopback, look.
      portClosed: this.heardFromTarget
        ? false
        : this.stats.sent > 0
        ? loopbackPortClosed(ip, port)
        : null,
    });
  }
}

/** Which client a run uses, as {@linkcode UdpPingOptions.onStart} reports it. */
export interface PingClient {
  /** True for the batched libc client (`fast_ping.ts`), false for Deno's sockets. */
  fastPath: boolean;
  /** Why the fast path is off, when it is. */
  reason?: string;
}

/** Why a run with these options does not use the fast path by its pacing, if it does not. */
function pacedReason(options: UdpPingOptions): string | undefined {
  if (!options.flood) return "only --flood runs send in batches (paced runs send one at a time)";
  if (options.fastPath === false) return "turned off by the caller";
  return undefined;
}

/**
 * Pings the UDP echo server at `target` and resolves the run's summary.
 *
 * A `flood` run uses the batched libc client of `fast_ping.ts` where this process may
 * (Linux, the ffi permission) and Deno's sockets otherwise; both count the same way
 * ({@linkcode PingRun}), only the speed differs.
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
  const timeoutMs = options.timeoutMs ?? UDP_PING_DEFAULTS.timeoutMs;
  const window = options.window ?? UDP_PING_DEFAULTS.floodWindow;
  const now = options.now ?? (() => performance.now());
  const ip = await resolveHost(target.hostname);
  if (size < PROBE_HEADER_SIZE || size > maxProbeSize(ip)) {
    throw new RangeError(
      `Cannot send ${size}-byte probes to ${ip}: size must be ${PROBE_HEADER_SIZE} to ${
        maxProbeSize(ip)
      }`,
    );
  }
  const bindHost = isLoopbackHost(ip) ? ip : ip.includes(":") ? "::" : "0.0.0.0";
  const run = new PingRun({
    target: formatAddress(target),
    ip,
    port: target.port,
    size,
    timeoutMs,
    count,
    now,
    signal: options.signal,
    onEvent: options.onEvent,
  });
  const reason = pacedReason(options) ?? fastPingUnavailable(ip);
  options.onStart?.(reason === undefined ? { fastPath: true } : { fastPath: false, reason });
  if (reason === undefined) {
    await fastFlood(run, {
      bindHost,
      window,
      tickMs: UDP_PING_DEFAULTS.floodTickMs,
      signal: options.signal,
    });
  } else {
    await portablePing(run, { ...options, bindHost, window, timeoutMs });
  }
  return run.summary();
}

/** The client on Deno's sockets: one promise per datagram sent and per datagram received. */
async function portablePing(
  run: PingRun,
  options: UdpPingOptions & { bindHost: string; window: number; timeoutMs: number },
): Promise<void> {
  const { signal, window, timeoutMs } = options;
  const intervalMs = options.intervalMs ?? UDP_PING_DEFAULTS.intervalMs;
  const { now, stats } = run;
  const to: Deno.NetAddr = {
    transport: "udp",
    hostname: run.ip,
    port: run.port,
  };
  const sock = Deno.listenDatagram({ transport: "udp", hostname: options.bindHost, port: 0 });

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
      if (run.receive(data, from, now())) notify();
    }
  };
  const receiving = receiveLoop();

  const sendBuf = new Uint8Array(run.size);
  const sendOne = async () => {
    const data = run.nextProbe(sendBuf);
    try {
      await sock.send(data, to);
    } catch (error) {
      run.sendFailed(stats.sent - 1, error);
    }
  };
  const { limit } = run;

  try {
    run.start();
    if (options.flood) {
      while (stats.sent < limit && !run.aborted) {
        run.expire(now());
        if (run.outstanding.size < window) {
          await sendOne();
        } else {
          // Like ping -f: a window stuck on lost probes still sends one probe per tick.
          const before = events;
          await waitEvent(UDP_PING_DEFAULTS.floodTickMs);
          if (events === before && !run.aborted) await sendOne();
        }
      }
    } else if (options.ratePps) {
      // Open loop: after a stall, catch up so that the average rate holds.
      const periodMs = 1000 / options.ratePps;
      const firstSendAt = run.firstSendAt;
      while (stats.sent < limit && !run.aborted) {
        const due = Math.min(limit, Math.floor((now() - firstSendAt) / periodMs) + 1);
        do await sendOne(); while (stats.sent < due && !run.aborted);
        run.expire(now());
        if (stats.sent >= limit) break;
        const nextAt = firstSendAt + stats.sent * periodMs;
        await delay(Math.max(0, nextAt - now()), { signal });
      }
    } else {
      // Like ping: at least `intervalMs` between two probes, never a catch-up burst.
      while (stats.sent < limit && !run.aborted) {
        await sendOne();
        run.expire(now());
        if (stats.sent >= limit) break;
        await delay(Math.max(0, run.lastSendAt + intervalMs - now()), { signal });
      }
    }
    const deadline = run.lastSendAt + timeoutMs;
    while (!run.aborted) {
      const at = now();
      run.expire(at);
      if (run.outstanding.size === 0 || at >= deadline) break;
      await waitEvent(deadline - at);
    }
  } finally {
    signal?.removeEventListener("abort", notify);
    sock.close();
    await receiving;
  }
}
