/**
 * The UDP echo server's fast path: the same server as {@linkcode startUdpEcho} (the same
 * {@linkcode createEchoPolicy} rules, {@linkcode UdpEchoStats} counters and
 * {@linkcode UdpEchoServer} interface), but on a socket made through libc (`libc.ts`) that
 * receives and sends datagrams in batches: one `recvmmsg` takes up to
 * {@linkcode FAST_ECHO_DEFAULTS.batch} datagrams, one `sendmmsg` sends back every one the
 * policy lets through. Deno's `receive()`/`send()` cost a promise and a trip through the event
 * loop per datagram; here that cost is paid once per batch, so `udp-echo` keeps up with a
 * plain C `recvfrom`/`sendto` loop (`deno task bench udp`).
 *
 * It needs what `openLibc()` needs (Linux x86_64/aarch64, the `ffi` permission, libc) and an
 * IPv4 or IPv6 address literal to bind; {@linkcode fastEchoUnavailable} says when it cannot
 * run, and `udp-echo` then uses {@linkcode startUdpEcho} on `Deno.listenDatagram`.
 *
 * How it runs:
 * - the receive waits on Deno's blocking pool (`recvmmsg` with `MSG_WAITFORONE`: it returns
 *   as soon as one datagram is in, with every other one already queued, up to the batch);
 *   when a batch was full it tries again at once on this thread (`MSG_DONTWAIT`), a few times
 *   before it goes back through the event loop, so a busy socket is drained without a thread
 *   hop per batch yet timers and signals still run;
 * - the datagrams of a batch are decided with one `performance.now()` for the rate limit;
 * - replies leave in arrival order, in one `sendmmsg` (`MSG_DONTWAIT`: the event loop never
 *   blocks; a full send buffer waits for room with `poll` off the loop, once, then the rest
 *   of the batch counts as send errors);
 * - errno is read on the thread that made the call: a failed receive on the pool thread is
 *   repeated here with `MSG_DONTWAIT` to learn it. A timeout (`SO_RCVTIMEO`,
 *   {@linkcode FAST_ECHO_DEFAULTS.receiveTimeoutMs}) or `EINTR` just loops; other errors are
 *   counted, reported as {@linkcode LibcError} to `onError`, and back off like the fallback;
 * - `stop()` shuts the socket down, which wakes the pending receive at once, waits for the
 *   loop to end, then closes the descriptor: no call is ever left on a closed or reused one.
 *
 * @example Usage
 * ```ts ignore
 * import assert from "node:assert/strict";
 * import { fastEchoUnavailable, startFastUdpEcho } from "./fast_echo.ts";
 * if (fastEchoUnavailable("127.0.0.1") === undefined) { // needs --allow-ffi
 *   const server = startFastUdpEcho({ hostname: "127.0.0.1", port: 0 });
 *   const client = Deno.listenDatagram({ transport: "udp", hostname: "127.0.0.1", port: 0 });
 *   await client.send(new Uint8Array([1, 2, 3]), server.addr);
 *   const [data] = await client.receive();
 *   assert.deepEqual(data, new Uint8Array([1, 2, 3]));
 *   client.close();
 *   await server.stop();
 *   assert.equal(server.stats.echoed, 1);
 * }
 * ```
 *
 * @module
 */

import {
  countDrop,
  createEchoPolicy,
  type EchoDatagram,
  emptyEchoStats,
  guardedCallbacks,
  UDP_ECHO_DEFAULTS,
  type UdpEchoOptions,
  type UdpEchoServer,
} from "./echo_server.ts";
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
import { delay } from "../net/deadline.ts";
import { formatIP, parseIP } from "../net/ip.ts";

/** Defaults and limits of the fast path, the one place for each. */
export const FAST_ECHO_DEFAULTS = {
  /** Datagrams received (and sent back) per call; each slot has a whole receive buffer. */
  batch: 64,
  /** Largest batch accepted: 1024 slots of 64 KiB are 64 MiB. */
  maxBatch: 1024,
  /** SO_RCVBUF and SO_SNDBUF asked for (the kernel caps them at net.core.*mem_max). */
  socketBufferBytes: 4 * 1024 * 1024,
  /** SO_RCVTIMEO: the longest a receive waits before the loop looks at stop() again. */
  receiveTimeoutMs: 100,
  /** Longest wait for room in a full send buffer before the rest of a batch is dropped. */
  sendWaitMs: 100,
  /** Full batches drained on the JavaScript thread before the next wait off it. */
  drainBatches: 8,
} as const;

/** Options for {@linkcode startFastUdpEcho}: those of the fallback, and the batch size. */
export interface FastUdpEchoOptions extends UdpEchoOptions {
  /** Datagrams per `recvmmsg`/`sendmmsg`, 1 to 1024. @default {64} */
  batch?: number;
}

/**
 * The fast path cannot run here; `reason` says why (no ffi permission, another OS...).
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert/strict";
 * import { FastPathUnavailableError } from "./fast_echo.ts";
 * const err = new FastPathUnavailableError("no ffi permission");
 * assert.equal(err.message, "Cannot use the udp-echo fast path: no ffi permission");
 * ```
 */
export class FastPathUnavailableError extends Error {
  /** Why, in words. */
  readonly reason: string;

  /** Creates the error for `reason`. */
  constructor(reason: string, options?: ErrorOptions) {
    super(`Cannot use the udp-echo fast path: ${reason}`, options);
    this.name = "FastPathUnavailableError";
    this.reason = reason;
  }
}

/**
 * Why {@linkcode startFastUdpEcho} cannot serve `hostname` in this process, or `undefined`
 * when it can: `hostname` must be an IPv4 or IPv6 literal (a name goes to the fallback, which
 * resolves it) and libc must be open to this process.
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert/strict";
 * import { fastEchoUnavailable } from "./fast_echo.ts";
 * assert.match(fastEchoUnavailable("localhost") ?? "", /not an IP address/);
 * ```
 */
export function fastEchoUnavailable(hostname: string): string | undefined {
  // What inet_pton takes: a plain IPv4 or IPv6 literal (no zone like %eth0, no octal parts).
  const literal = hostname.replace(/^\[|\]$/g, "");
  const canonical = parseIP(literal);
  if (
    !canonical || literal.includes("%") ||
    (!literal.includes(":") && formatIP(canonical) !== literal)
  ) {
    return `${hostname} is not an IP address literal`;
  }
  const libc = openLibc();
  return libc.ok ? undefined : libc.reason;
}

/** A `struct sockaddr_in` or `sockaddr_in6` for `hostname`:`port`, through inet_pton. */
function socketAddress(libc: Libc, hostname: string, port: number): Uint8Array {
  const ip = hostname.replace(/^\[|\]$/g, "");
  const sa = new Uint8Array(ip.includes(":") ? LINUX.SOCKADDR_IN6_SIZE : LINUX.SOCKADDR_IN_SIZE);
  writeSocketAddress(libc, new DataView(sa.buffer), 0, ip, port);
  return sa;
}

/**
 * Binds a UDP socket on `address` through libc and echoes every datagram back to its sender
 * until stopped, under the same rules as {@linkcode startUdpEcho}.
 *
 * Throws {@linkcode FastPathUnavailableError} where {@linkcode fastEchoUnavailable} says it
 * cannot run, and {@linkcode LibcError} when the socket cannot be made or bound (its `code`
 * is the errno's name, `EADDRINUSE` for a port in use).
 *
 * @example Usage
 * ```ts ignore
 * import assert from "node:assert/strict";
 * import { startFastUdpEcho } from "./fast_echo.ts";
 * const server = startFastUdpEcho({ hostname: "127.0.0.1", port: 0 }, { ratePerSecond: 100 });
 * assert.ok(server.addr.port > 0);
 * await server.stop();
 * ```
 */
export function startFastUdpEcho(
  address: { hostname: string; port: number },
  callerOptions: FastUdpEchoOptions = {},
): UdpEchoServer {
  const options = guardedCallbacks(callerOptions);
  const unavailable = fastEchoUnavailable(address.hostname);
  if (unavailable !== undefined) throw new FastPathUnavailableError(unavailable);
  const batch = options.batch ?? FAST_ECHO_DEFAULTS.batch;
  if (!Number.isInteger(batch) || batch < 1 || batch > FAST_ECHO_DEFAULTS.maxBatch) {
    throw new RangeError(`Batch must be 1 to ${FAST_ECHO_DEFAULTS.maxBatch}, got ${batch}`);
  }
  const libc = (openLibc() as { libc: Libc }).libc;
  const s = libc.symbols;
  const fail = (syscall: string): LibcError => {
    const errno = libc.errno();
    return new LibcError(syscall, errno, libc.describe(errno));
  };

  const bindTo = socketAddress(libc, address.hostname, address.port);
  const family = new DataView(bindTo.buffer).getUint16(0, true);
  const fd = s.socket(family, LINUX.SOCK_DGRAM | LINUX.SOCK_CLOEXEC, 0);
  if (fd < 0) throw fail("socket");
  let addr: Deno.NetAddr;
  try {
    const int = new Uint8Array(4);
    new DataView(int.buffer).setInt32(0, FAST_ECHO_DEFAULTS.socketBufferBytes, true);
    for (const option of [LINUX.SO_RCVBUF, LINUX.SO_SNDBUF]) {
      if (s.setsockopt(fd, LINUX.SOL_SOCKET, option, int, 4) !== 0) throw fail("setsockopt");
    }
    const timeval = new Uint8Array(16);
    new DataView(timeval.buffer).setBigInt64(
      8,
      BigInt(FAST_ECHO_DEFAULTS.receiveTimeoutMs * 1000),
      true,
    );
    if (s.setsockopt(fd, LINUX.SOL_SOCKET, LINUX.SO_RCVTIMEO, timeval, 16) !== 0) {
      throw fail("setsockopt SO_RCVTIMEO");
    }
    if (s.bind(fd, bindTo, bindTo.length) !== 0) throw fail("bind");
    const bound = new Uint8Array(LINUX.SOCKADDR_STORAGE_SIZE);
    const boundLen = new Uint8Array(4);
    new DataView(boundLen.buffer).setUint32(0, bound.length, true);
    if (s.getsockname(fd, bound, boundLen) !== 0) throw fail("getsockname");
    const view = new DataView(bound.buffer);
    addr = {
      transport: "udp",
      hostname: family === LINUX.AF_INET
        ? formatIpv4(view.getUint32(4, false))
        : formatIpv6(view, 8),
      port: view.getUint16(2, false),
    };
  } catch (error) {
    s.close(fd);
    throw error;
  }
  return serve(libc, fd, addr, batch, options);
}

/** The echo loop on the bound socket `fd`; it owns `fd` and closes it when it ends. */
function serve(
  libc: Libc,
  fd: number,
  addr: Deno.NetAddr,
  batch: number,
  options: FastUdpEchoOptions,
): UdpEchoServer {
  const s = libc.symbols;
  const policy = createEchoPolicy(addr.port, options);
  const stats = emptyEchoStats();
  let stopping = false;
  const stopSignal = new AbortController();

  // One block for every struct, one for the datagrams: both outside the V8 heap, so their
  // addresses never move while a call on another thread holds them.
  const { IOVEC_SIZE, MMSGHDR_SIZE, SOCKADDR_STORAGE_SIZE } = LINUX;
  const slotBytes = UDP_ECHO_DEFAULTS.receiveBufferSize;
  const RECV_HDR = 0;
  const RECV_IOV = RECV_HDR + batch * MMSGHDR_SIZE;
  const ADDRS = RECV_IOV + batch * IOVEC_SIZE;
  const SEND_HDR = ADDRS + batch * SOCKADDR_STORAGE_SIZE;
  const SEND_IOV = SEND_HDR + batch * MMSGHDR_SIZE;
  const POLLFD = SEND_IOV + batch * IOVEC_SIZE;
  const ctl = new ArrayBuffer(POLLFD + 8);
  const data = new ArrayBuffer(batch * slotBytes);
  const view = new DataView(ctl);
  const retired: ArrayBuffer[] = [];
  const ctlAt = addressOf(ctl);
  const dataAt = addressOf(data);
  const recvPointer = Deno.UnsafePointer.of(ctl);
  const sendPointer = Deno.UnsafePointer.create(BigInt(ctlAt + SEND_HDR));
  const pollFd = new Uint8Array(ctl, POLLFD, 8);
  view.setInt32(POLLFD, fd, true);
  view.setInt16(POLLFD + 4, LINUX.POLLOUT, true);
  prepareReceiveSlots(view, {
    count: batch,
    base: ctlAt,
    headers: RECV_HDR,
    iovecs: RECV_IOV,
    addresses: ADDRS,
    data: dataAt,
    slotBytes,
  });
  for (let i = 0; i < batch; i++) {
    const sh = SEND_HDR + i * MMSGHDR_SIZE;
    setPointer(view, sh + 16, ctlAt + SEND_IOV + i * IOVEC_SIZE);
    view.setUint32(sh + 24, 1, true);
  }
  // The send side of the batch: which sources, and how many bytes, by send slot.
  const sendHost: string[] = new Array(batch).fill("");
  const sendPort = new Uint16Array(batch);
  const sendBytes = new Uint32Array(batch);

  let lastV4 = -1, lastV4Text = "";
  const datagram: EchoDatagram = { hostname: "", port: 0, bytes: 0, truncated: false };
  const netAddr = (hostname: string, port: number): Deno.NetAddr => ({
    transport: "udp",
    hostname,
    port,
  });

  /** Decides for the `n` datagrams received, and fills the send side; returns its count. */
  const decideBatch = (n: number): number => {
    const now = performance.now();
    let k = 0;
    for (let i = 0; i < n; i++) {
      const h = RECV_HDR + i * MMSGHDR_SIZE;
      const sa = ADDRS + i * SOCKADDR_STORAGE_SIZE;
      const bytes = view.getUint32(h + 56, true);
      const namelen = view.getUint32(h + 8, true);
      view.setUint32(h + 8, SOCKADDR_STORAGE_SIZE, true); // for the next receive
      let hostname: string;
      if (view.getUint16(sa, true) === LINUX.AF_INET) {
        const a = view.getUint32(sa + 4, false);
        if (a !== lastV4) [lastV4, lastV4Text] = [a, formatIpv4(a)];
        hostname = lastV4Text;
      } else {
        hostname = formatIpv6(view, sa + 8);
      }
      const port = view.getUint16(sa + 2, false);
      datagram.hostname = hostname;
      datagram.port = port;
      datagram.bytes = bytes;
      datagram.truncated = (view.getInt32(h + 48, true) & LINUX.MSG_TRUNC) !== 0;
      stats.received++;
      stats.bytesReceived += bytes;
      const reason = policy.decide(datagram, now);
      if (reason !== undefined) {
        countDrop(stats, reason);
        options.onDrop?.(reason, netAddr(hostname, port), bytes);
        continue;
      }
      const sh = SEND_HDR + k * MMSGHDR_SIZE;
      setPointer(view, sh, ctlAt + sa);
      view.setUint32(sh + 8, namelen, true);
      const iov = SEND_IOV + k * IOVEC_SIZE;
      setPointer(view, iov, dataAt + i * slotBytes);
      view.setUint32(iov + 8, bytes, true);
      sendHost[k] = hostname;
      sendPort[k] = port;
      sendBytes[k] = bytes;
      k++;
    }
    return k;
  };

  /** Sends the `k` replies of the batch, in order; a reply that fails is counted and skipped. */
  const sendBatch = async (k: number): Promise<void> => {
    let done = 0;
    let waited = false;
    let interrupted = 0;
    while (done < k && !stopping) {
      const at = done === 0
        ? sendPointer
        : Deno.UnsafePointer.create(BigInt(ctlAt + SEND_HDR + done * MMSGHDR_SIZE));
      const r = s.sendmmsg(fd, at, k - done, LINUX.MSG_DONTWAIT);
      if (r > 0) {
        for (let j = done; j < done + r; j++) stats.bytesEchoed += sendBytes[j];
        stats.echoed += r;
        done += r;
        continue;
      }
      const errno = r < 0 ? libc.errno() : 0;
      if (errno === LINUX.EINTR && ++interrupted < 3) continue;
      if (errno === LINUX.EAGAIN) {
        if (!waited) {
          // The send buffer is full: wait for room off the event loop, once per batch.
          waited = true;
          await s.poll_blocking(pollFd, 1n, FAST_ECHO_DEFAULTS.sendWaitMs);
          continue;
        }
        // Still full: the rest of the batch is lost, as a datagram is in an overload.
        stats.sendErrors += k - done;
        options.onError?.(
          new LibcError("sendmmsg", errno, libc.describe(errno)),
          netAddr(sendHost[done], sendPort[done]),
        );
        break;
      }
      stats.sendErrors++;
      options.onError?.(
        new LibcError("sendmmsg", errno, libc.describe(errno)),
        netAddr(sendHost[done], sendPort[done]),
      );
      done++;
    }
  };

  const echo = async (n: number): Promise<void> => {
    const k = decideBatch(n);
    if (k > 0) await sendBatch(k);
  };

  let closed = false;
  const loop = async () => {
    let backoff: number = UDP_ECHO_DEFAULTS.receiveBackoffMs;
    try {
      while (!stopping) {
        let n = await s.recvmmsg_blocking(fd, recvPointer, batch, LINUX.MSG_WAITFORONE, null);
        if (stopping) break;
        if (n < 0) {
          // Its errno stayed on the pool thread: ask again here, without waiting, to learn it.
          n = s.recvmmsg(fd, recvPointer, batch, LINUX.MSG_DONTWAIT, null);
          if (n < 0) {
            const errno = libc.errno();
            // SO_RCVTIMEO passed (or a signal came): look at `stopping` and wait again.
            if (errno === LINUX.EAGAIN || errno === LINUX.EINTR) continue;
            stats.receiveErrors++;
            options.onError?.(new LibcError("recvmmsg", errno, libc.describe(errno)));
            await delay(backoff, { signal: stopSignal.signal });
            backoff = Math.min(backoff * 2, 1000);
            continue;
          }
        }
        // No datagram but no error: the socket was shut down, nothing more will come.
        if (n === 0) break;
        backoff = UDP_ECHO_DEFAULTS.receiveBackoffMs;
        await echo(n);
        // A full batch means more may be queued: drain it here before the next thread hop.
        for (let i = 0; n === batch && i < FAST_ECHO_DEFAULTS.drainBatches && !stopping; i++) {
          n = s.recvmmsg(fd, recvPointer, batch, LINUX.MSG_DONTWAIT, null);
          if (n <= 0) break;
          await echo(n);
        }
      }
    } finally {
      closed = true;
      s.close(fd);
      // Only the addresses of the blocks are in the structs: this reference (after the last
      // call that may write to them) keeps the garbage collector from freeing them earlier.
      retired.push(ctl, data);
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
        // Wakes the receive waiting on the pool thread (it returns 0); the loop closes fd.
        // Once the loop has closed it, the number may belong to another socket: leave it.
        if (!closed) s.shutdown(fd, LINUX.SHUT_RDWR);
      }
      await done;
    },
  };
}
