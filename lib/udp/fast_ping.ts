/**
 * udp-ping's fast path for `--flood`: the same run as Deno's sockets give (the same
 * {@linkcode PingRun} stamps the probes and classifies every datagram, so the counts, flags
 * and RTT statistics mean the same), on a socket made through libc (`libc.ts`) that sends and
 * receives in batches. Deno's `send()`/`receive()` cost a promise and a trip through the event
 * loop per datagram, which held a flood to a few tens of thousands of round trips a second;
 * here one `sendmmsg` sends up to {@linkcode FAST_PING_DEFAULTS.batch} probes and one
 * `recvmmsg` takes every reply already queued, so the client keeps up with a fast server
 * (`deno task bench udp`).
 *
 * It needs what `openLibc()` needs (Linux x86_64/aarch64, the `ffi` permission, libc);
 * {@linkcode fastPingUnavailable} says when it cannot run, and `udpPing` then floods on
 * `Deno.listenDatagram`.
 *
 * How it runs (one JavaScript thread, no call left pending when it returns):
 * - the window is refilled in one `sendmmsg` (`MSG_DONTWAIT`) whenever replies or the timeout
 *   free room in it; each probe is stamped with the run's clock as it is written, just before
 *   the batch leaves, and counted as sent at that moment, as on Deno's sockets;
 * - replies are taken with `recvmmsg(MSG_DONTWAIT)` on this thread while any are queued, and
 *   a batch is timed with one clock reading right after the call returns (the replies of a
 *   batch were all in the socket by then: RTTs are at most one call's time longer than the
 *   kernel's arrival time, and never shorter);
 * - only when nothing is queued does it wait, with `poll` on Deno's blocking pool (off the
 *   event loop), for at most the flood tick: a window stuck on lost probes still sends one
 *   probe per tick, as with Deno's sockets;
 * - an abort shuts the socket down, which wakes a pending `poll` at once; the descriptor is
 *   closed only after the last call on it returned;
 * - the source of each reply is compared with the target as bytes, and a reply from anywhere
 *   else gets the address text Deno would give it, so "unexpected source" means the same;
 * - receive slots are whole datagrams (65,536 bytes), so a reply longer than the probe is
 *   seen as such (corrupted), never cut to fit.
 *
 * `SO_TIMESTAMPNS` (a kernel timestamp per datagram) is not used: it is on the realtime clock,
 * while probes carry the run's monotonic one (`performance.now()` or a test's own clock).
 *
 * @example Usage
 * ```ts ignore
 * import assert from "node:assert/strict";
 * import { udpPing } from "./ping.ts";
 * let fast = false;
 * const summary = await udpPing({ hostname: "127.0.0.1", port: 7007 }, {
 *   flood: true,
 *   count: 100_000,
 *   window: 64,
 *   onStart: (client) => fast = client.fastPath,
 * });
 * assert.ok(fast); // with --allow-ffi on Linux
 * assert.equal(summary.sent, 100_000);
 * ```
 *
 * @module
 */

import {
  addressOf,
  formatSockaddrIpv4 as formatIpv4,
  formatSockaddrIpv6 as formatIpv6,
  type Libc,
  LibcError,
  LINUX,
  openLibc,
  prepareReceiveSlots,
  setPointer,
  writeSocketAddress,
} from "./libc.ts";
import type { PingRun } from "./ping.ts";
import { UDP_RECEIVE_BUFFER_SIZE } from "./datagram.ts";

/** Defaults and limits of the fast path, the one place for each. */
export const FAST_PING_DEFAULTS = {
  /** Probes per `sendmmsg`, and replies per `recvmmsg`. */
  batch: 64,
  /** SO_RCVBUF and SO_SNDBUF asked for (the kernel caps them at net.core.*mem_max). */
  socketBufferBytes: 4 * 1024 * 1024,
  /** A batch of replies is a whole datagram per slot. */
  receiveSlotBytes: UDP_RECEIVE_BUFFER_SIZE,
  /** Full batches of replies taken on this thread before the loop sends again. */
  drainBatches: 8,
  /** Longest single wait for room in a full send buffer, in ms. */
  sendWaitMs: 100,
} as const;

/** What {@linkcode fastFlood} needs besides the run. */
export interface FastFloodOptions {
  /** Address to bind the client socket to (port 0): the target's if loopback, else any. */
  bindHost: string;
  /** Probes in flight at most. */
  window: number;
  /** With a full window and no reply for this long, a probe is sent anyway (ping -f's tick). */
  tickMs: number;
  /** The run's abort signal (it wakes a pending wait). */
  signal?: AbortSignal;
}

const IPV4_LITERAL = /^\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}$/;

/**
 * Why {@linkcode fastFlood} cannot ping `ip` in this process, or `undefined` when it can:
 * `ip` must be an IPv4 or IPv6 literal in the form Deno reports addresses in (so that a
 * reply's source compares the same way on both paths), and libc must be open to this
 * process.
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert/strict";
 * import { fastPingUnavailable } from "./fast_ping.ts";
 * assert.match(fastPingUnavailable("localhost") ?? "", /not an IP address literal/);
 * assert.match(fastPingUnavailable("127.000.0.1") ?? "", /not in canonical form/);
 * ```
 */
export function fastPingUnavailable(ip: string): string | undefined {
  const v4 = IPV4_LITERAL.test(ip);
  if (!v4 && !ip.includes(":")) return `${ip} is not an IP address literal`;
  if (v4 && ip.split(".").some((part) => String(Number(part)) !== part || Number(part) > 255)) {
    return `${ip} is not in canonical form`;
  }
  const libc = openLibc();
  if (!libc.ok) return libc.reason;
  if (!v4) {
    const sa = new Uint8Array(LINUX.SOCKADDR_IN6_SIZE);
    const text = new TextEncoder().encode(`${ip}\0`);
    if (libc.libc.symbols.inet_pton(LINUX.AF_INET6, text, sa.subarray(8)) !== 1) {
      return `${ip} is not an IPv6 address libc parses`;
    }
    if (formatIpv6(new DataView(sa.buffer), 8) !== ip) return `${ip} is not in canonical form`;
  }
  return undefined;
}

/**
 * Runs `run` as a flood on a libc socket bound to `options.bindHost`: at most
 * `options.window` probes in flight, until `run.limit` probes are sent and answered (or
 * `run.timeoutMs` after the last), or the signal aborts. Everything is counted in `run`.
 *
 * Throws where {@linkcode fastPingUnavailable} says it cannot run (a `RangeError` for an
 * address, an `Error` for libc), and {@linkcode LibcError} when the socket cannot be made or
 * bound, or a receive fails for another reason than an empty queue.
 *
 * @example Usage
 * ```ts ignore
 * import assert from "node:assert/strict";
 * import { PingRun } from "./ping.ts";
 * import { fastFlood } from "./fast_ping.ts";
 * const run = new PingRun({
 *   ip: "127.0.0.1",
 *   port: 7007, // a udp-echo
 *   size: 64,
 *   timeoutMs: 1000,
 *   count: 1000,
 *   now: () => performance.now(),
 * });
 * await fastFlood(run, { bindHost: "127.0.0.1", window: 64, tickMs: 10 });
 * assert.equal(run.summary().sent, 1000);
 * ```
 */
export async function fastFlood(run: PingRun, options: FastFloodOptions): Promise<void> {
  const unavailable = fastPingUnavailable(run.ip);
  if (unavailable !== undefined) {
    throw new Error(`Cannot use the udp-ping fast path: ${unavailable}`);
  }
  const libc = (openLibc() as { libc: Libc }).libc;
  const s = libc.symbols;
  const fail = (syscall: string): LibcError => {
    const errno = libc.errno();
    return new LibcError(syscall, errno, libc.describe(errno));
  };
  const batch = FAST_PING_DEFAULTS.batch;
  const { IOVEC_SIZE, MMSGHDR_SIZE, SOCKADDR_STORAGE_SIZE } = LINUX;

  // One block for every struct, one for replies, one for probes: outside the V8 heap's
  // moving space, so the addresses written into the structs stay valid.
  const RECV_HDR = 0;
  const RECV_IOV = RECV_HDR + batch * MMSGHDR_SIZE;
  const ADDRS = RECV_IOV + batch * IOVEC_SIZE;
  const SEND_HDR = ADDRS + batch * SOCKADDR_STORAGE_SIZE;
  const SEND_IOV = SEND_HDR + batch * MMSGHDR_SIZE;
  const TARGET = SEND_IOV + batch * IOVEC_SIZE;
  const BIND = TARGET + SOCKADDR_STORAGE_SIZE;
  const POLL_IN = BIND + SOCKADDR_STORAGE_SIZE;
  const POLL_OUT = POLL_IN + 8;
  const INT = POLL_OUT + 8;
  const TIMEVAL = INT + 8;
  const ctl = new ArrayBuffer(TIMEVAL + 16);
  const view = new DataView(ctl);
  const slotBytes = FAST_PING_DEFAULTS.receiveSlotBytes;
  const replies = new ArrayBuffer(batch * slotBytes);
  const probes = new ArrayBuffer(batch * run.size);

  const targetLength = writeSocketAddress(libc, view, TARGET, run.ip, run.port);
  const bindLength = writeSocketAddress(libc, view, BIND, options.bindHost, 0);
  const family = view.getUint16(TARGET, true);
  const fd = s.socket(family, LINUX.SOCK_DGRAM | LINUX.SOCK_CLOEXEC, 0);
  if (fd < 0) throw fail("socket");
  try {
    view.setInt32(INT, FAST_PING_DEFAULTS.socketBufferBytes, true);
    const int = new Uint8Array(ctl, INT, 4);
    for (const option of [LINUX.SO_RCVBUF, LINUX.SO_SNDBUF]) {
      if (s.setsockopt(fd, LINUX.SOL_SOCKET, option, int, 4) !== 0) throw fail("setsockopt");
    }
    if (s.bind(fd, new Uint8Array(ctl, BIND, bindLength), bindLength) !== 0) throw fail("bind");
  } catch (error) {
    s.close(fd);
    throw error;
  }

  const ctlAt = addressOf(ctl);
  const repliesAt = addressOf(replies);
  const probesAt = addressOf(probes);
  prepareReceiveSlots(view, {
    count: batch,
    base: ctlAt,
    headers: RECV_HDR,
    iovecs: RECV_IOV,
    addresses: ADDRS,
    data: repliesAt,
    slotBytes,
  });
  for (let i = 0; i < batch; i++) {
    const sh = SEND_HDR + i * MMSGHDR_SIZE;
    setPointer(view, sh, ctlAt + TARGET);
    view.setUint32(sh + 8, targetLength, true);
    setPointer(view, sh + 16, ctlAt + SEND_IOV + i * IOVEC_SIZE);
    view.setUint32(sh + 24, 1, true);
    setPointer(view, SEND_IOV + i * IOVEC_SIZE, probesAt + i * run.size);
    view.setUint32(SEND_IOV + i * IOVEC_SIZE + 8, run.size, true);
  }
  view.setInt32(POLL_IN, fd, true);
  view.setInt16(POLL_IN + 4, LINUX.POLLIN, true);
  view.setInt32(POLL_OUT, fd, true);
  view.setInt16(POLL_OUT + 4, LINUX.POLLOUT, true);
  const pollIn = new Uint8Array(ctl, POLL_IN, 8);
  const pollOut = new Uint8Array(ctl, POLL_OUT, 8);
  const recvPointer = Deno.UnsafePointer.of(ctl);
  const sendPointers = Array.from(
    { length: batch },
    (_, i) => Deno.UnsafePointer.create(BigInt(ctlAt + SEND_HDR + i * MMSGHDR_SIZE)),
  );
  const probeSlots = Array.from(
    { length: batch },
    (_, i) => new Uint8Array(probes, i * run.size, run.size),
  );
  const replySlots = Array.from(
    { length: batch },
    (_, i) => new Uint8Array(replies, i * slotBytes, slotBytes),
  );

  // The target as a reply's source: its bytes, to compare, and the address Deno would report.
  const v6 = family === LINUX.AF_INET6;
  const targetPort = run.port;
  const targetV4 = v6 ? 0 : view.getUint32(TARGET + 4, false);
  const targetV6 = v6 ? [0, 4, 8, 12].map((k) => view.getUint32(TARGET + 8 + k, false)) : [];
  const targetFrom: Deno.NetAddr = { transport: "udp", hostname: run.ip, port: run.port };
  const sourceOf = (sa: number): Deno.NetAddr => {
    const port = view.getUint16(sa + 2, false);
    if (view.getUint16(sa, true) === LINUX.AF_INET) {
      const a = view.getUint32(sa + 4, false);
      if (a === targetV4 && port === targetPort && !v6) return targetFrom;
      return { transport: "udp", hostname: formatIpv4(a), port };
    }
    if (
      v6 && port === targetPort && view.getUint32(sa + 8, false) === targetV6[0] &&
      view.getUint32(sa + 12, false) === targetV6[1] &&
      view.getUint32(sa + 16, false) === targetV6[2] &&
      view.getUint32(sa + 20, false) === targetV6[3]
    ) {
      return targetFrom;
    }
    return { transport: "udp", hostname: formatIpv6(view, sa + 8), port };
  };

  const { stats, now } = run;
  let events = 0;

  /** Takes every reply queued (up to a few batches) on this thread; the target's count. */
  const drain = (): number => {
    let got = 0;
    for (let b = 0; b < FAST_PING_DEFAULTS.drainBatches; b++) {
      const n = s.recvmmsg(fd, recvPointer, batch, LINUX.MSG_DONTWAIT, null);
      if (n < 0) {
        const errno = libc.errno();
        if (errno === LINUX.EINTR) continue;
        if (errno === LINUX.EAGAIN) break;
        throw new LibcError("recvmmsg", errno, libc.describe(errno));
      }
      if (n === 0) break; // shut down (aborted): nothing more will come
      const receivedAt = now();
      for (let i = 0; i < n; i++) {
        const h = RECV_HDR + i * MMSGHDR_SIZE;
        const bytes = view.getUint32(h + 56, true);
        view.setUint32(h + 8, SOCKADDR_STORAGE_SIZE, true); // for the next receive
        const from = sourceOf(ADDRS + i * SOCKADDR_STORAGE_SIZE);
        if (run.receive(replySlots[i].subarray(0, bytes), from, receivedAt)) got++;
      }
      if (n < batch) break;
    }
    events += got;
    return got;
  };

  /**
   * Waits up to `ms` (at least 1) for a datagram from the target, off the event loop; takes
   * what came. Returns as soon as one target datagram is in, or on abort.
   */
  const waitEvent = async (ms: number): Promise<void> => {
    const until = performance.now() + ms;
    const before = events;
    while (!run.aborted && events === before) {
      const left = until - performance.now();
      if (left <= 0) return;
      const ready = await s.poll_blocking(pollIn, 1n, Math.max(1, Math.ceil(left)));
      if (ready > 0) drain();
    }
  };

  /** Writes and sends the next `k` probes (1 to the batch), in order. */
  const sendBatch = async (k: number): Promise<void> => {
    const first = stats.sent;
    for (let j = 0; j < k; j++) run.nextProbe(probeSlots[j]);
    let done = 0;
    let waitedMs = 0;
    let interrupted = 0;
    while (done < k) {
      const r = s.sendmmsg(fd, sendPointers[done], k - done, LINUX.MSG_DONTWAIT);
      if (r > 0) {
        done += r;
        continue;
      }
      const errno = r < 0 ? libc.errno() : LINUX.EAGAIN;
      if (errno === LINUX.EINTR && ++interrupted < 3) continue;
      if (errno === LINUX.EAGAIN && !run.aborted && waitedMs < run.timeoutMs) {
        // The send buffer is full: wait for room off the event loop, as Deno's send() would.
        await s.poll_blocking(pollOut, 1n, FAST_PING_DEFAULTS.sendWaitMs);
        waitedMs += FAST_PING_DEFAULTS.sendWaitMs;
        continue;
      }
      const error = new LibcError("sendmmsg", errno, libc.describe(errno));
      // Still full after the timeout (or aborted): the rest of the batch is not sent.
      const last = errno === LINUX.EAGAIN ? k : done + 1;
      for (let j = done; j < last; j++) run.sendFailed(first + j, error);
      done = last;
    }
  };

  // Wakes a pending poll at once: the loop then sees the abort.
  const onAbort = () => s.shutdown(fd, LINUX.SHUT_RDWR);
  options.signal?.addEventListener("abort", onAbort);
  try {
    const { limit } = run;
    const window = options.window;
    run.start();
    while (stats.sent < limit && !run.aborted) {
      run.expire(now());
      const room = Math.min(window - run.outstanding.size, limit - stats.sent, batch);
      if (room > 0) {
        await sendBatch(room);
        drain();
        continue;
      }
      if (drain() > 0) continue;
      // Like ping -f: a window stuck on lost probes still sends one probe per tick.
      const before = events;
      await waitEvent(options.tickMs);
      if (events === before && !run.aborted) await sendBatch(1);
    }
    const deadline = run.lastSendAt + run.timeoutMs;
    while (!run.aborted) {
      drain();
      const at = now();
      run.expire(at);
      if (run.outstanding.size === 0 || at >= deadline) break;
      await waitEvent(deadline - at);
    }
  } finally {
    options.signal?.removeEventListener("abort", onAbort);
    s.close(fd);
    // Only the blocks' addresses are in the structs: keep the blocks referenced until here,
    // after the last call that may use them.
    void [ctl, replies, probes].length;
  }
}
