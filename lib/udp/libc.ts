/**
 * The few libc socket calls the UDP fast paths (`fast_echo.ts`, `fast_ping.ts`) make through
 * `Deno.dlopen`, when this process may: Linux on x86_64 or aarch64 (the struct layouts and
 * constants below are theirs), the `ffi` permission granted (`--allow-ffi` or `-A`; it is
 * queried, never requested, so nothing prompts), and {@linkcode LIBC_LIBRARY_NAMES} found.
 * Elsewhere {@linkcode openLibc} says why not and callers use Deno's own sockets.
 *
 * Every call returns what libc returns; a failed call (-1) leaves its errno in
 * {@linkcode Libc.errno}, read on the calling thread. Calls marked `nonblocking: true` run on
 * a thread of Deno's blocking pool, whose errno is out of reach: callers that need it repeat
 * the call synchronously (with `MSG_DONTWAIT`, so it cannot block).
 *
 * @example Usage
 * ```ts ignore
 * import assert from "node:assert/strict";
 * import { LINUX, openLibc } from "./libc.ts";
 * const libc = openLibc();
 * if (libc.ok) {
 *   const fd = libc.libc.symbols.socket(LINUX.AF_INET, LINUX.SOCK_DGRAM | LINUX.SOCK_CLOEXEC, 0);
 *   assert.ok(fd >= 0);
 *   libc.libc.symbols.close(fd);
 * }
 * ```
 *
 * @module
 */

import { formatIP } from "../net/ip.ts";

/** Where {@linkcode openLibc} looks for libc, in order (glibc's soname first). */
export const LIBC_LIBRARY_NAMES: readonly string[] = [
  "libc.so.6",
  `/lib/${Deno.build.arch}-linux-gnu/libc.so.6`,
  `/usr/lib/${Deno.build.arch}-linux-gnu/libc.so.6`,
];

/** Linux constants and struct sizes, the same on x86_64 and aarch64. */
export const LINUX = {
  AF_INET: 2,
  AF_INET6: 10,
  SOCK_DGRAM: 2,
  SOCK_CLOEXEC: 0o2000000,
  SOL_SOCKET: 1,
  SO_SNDBUF: 7,
  SO_RCVBUF: 8,
  SO_RCVTIMEO: 20,
  MSG_TRUNC: 0x20,
  MSG_DONTWAIT: 0x40,
  MSG_WAITFORONE: 0x10000,
  SHUT_RDWR: 2,
  POLLIN: 1,
  POLLOUT: 4,
  EINTR: 4,
  EAGAIN: 11,
  /** `struct iovec`: base pointer, length. */
  IOVEC_SIZE: 16,
  /** `struct mmsghdr`: a 56-byte `struct msghdr`, then `msg_len` (u32) and padding. */
  MMSGHDR_SIZE: 64,
  /** `struct sockaddr_storage`. */
  SOCKADDR_STORAGE_SIZE: 128,
  /** `struct sockaddr_in`. */
  SOCKADDR_IN_SIZE: 16,
  /** `struct sockaddr_in6`. */
  SOCKADDR_IN6_SIZE: 28,
} as const;

/** The libc functions used, as `Deno.dlopen` declares them. */
const SYMBOLS = {
  socket: { parameters: ["i32", "i32", "i32"], result: "i32" },
  bind: { parameters: ["i32", "buffer", "u32"], result: "i32" },
  getsockname: { parameters: ["i32", "buffer", "buffer"], result: "i32" },
  setsockopt: { parameters: ["i32", "i32", "i32", "buffer", "u32"], result: "i32" },
  inet_pton: { parameters: ["i32", "buffer", "buffer"], result: "i32" },
  shutdown: { parameters: ["i32", "i32"], result: "i32" },
  close: { parameters: ["i32"], result: "i32" },
  // (fd, msgvec, vlen, flags, timeout)
  recvmmsg: { parameters: ["i32", "pointer", "u32", "i32", "pointer"], result: "i32" },
  /** recvmmsg on Deno's blocking pool: may wait (up to SO_RCVTIMEO) off the event loop. */
  recvmmsg_blocking: {
    name: "recvmmsg",
    parameters: ["i32", "pointer", "u32", "i32", "pointer"],
    result: "i32",
    nonblocking: true,
  },
  // (fd, msgvec, vlen, flags)
  sendmmsg: { parameters: ["i32", "pointer", "u32", "i32"], result: "i32" },
  /** poll on Deno's blocking pool: (fds, nfds, timeout ms). */
  poll_blocking: {
    name: "poll",
    parameters: ["buffer", "u64", "i32"],
    result: "i32",
    nonblocking: true,
  },
  __errno_location: { parameters: [], result: "pointer" },
  strerror: { parameters: ["i32"], result: "pointer" },
} as const;

/** libc as opened by {@linkcode openLibc}. */
export interface Libc {
  /** Where it was loaded from (one of {@linkcode LIBC_LIBRARY_NAMES}). */
  readonly library: string;
  /** The functions. */
  readonly symbols: Deno.DynamicLibrary<typeof SYMBOLS>["symbols"];
  /** This thread's errno: right after a synchronous call that returned -1, its error. */
  errno(): number;
  /** libc's text for `errno`, e.g. "Address already in use". */
  describe(errno: number): string;
}

/** The outcome of {@linkcode openLibc}: libc, or why the fast path cannot use it. */
export type LibcResult = { ok: true; libc: Libc } | { ok: false; reason: string };

/** Names of the errno values the fast path reports, for messages and `LibcError.code`. */
const ERRNO_NAMES: Record<number, string> = {
  1: "EPERM",
  4: "EINTR",
  9: "EBADF",
  11: "EAGAIN",
  12: "ENOMEM",
  13: "EACCES",
  14: "EFAULT",
  22: "EINVAL",
  24: "EMFILE",
  90: "EMSGSIZE",
  97: "EAFNOSUPPORT",
  98: "EADDRINUSE",
  99: "EADDRNOTAVAIL",
  101: "ENETUNREACH",
  105: "ENOBUFS",
  111: "ECONNREFUSED",
  113: "EHOSTUNREACH",
};

/**
 * A libc call failed: `syscall` returned -1 with `errno`.
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert/strict";
 * import { LibcError } from "./libc.ts";
 * const err = new LibcError("bind", 98, "Address already in use");
 * assert.equal(err.code, "EADDRINUSE");
 * assert.equal(err.message, "bind failed: Address already in use (EADDRINUSE)");
 * ```
 */
export class LibcError extends Error {
  /** The function that failed, e.g. "bind". */
  readonly syscall: string;
  /** Its errno. */
  readonly errno: number;
  /** The errno's name ("EADDRINUSE"), or "errno N" for one not in the table. */
  readonly code: string;

  /** Creates the error for `syscall` failing with `errno`; `text` is libc's description. */
  constructor(syscall: string, errno: number, text = "", options?: ErrorOptions) {
    const code = ERRNO_NAMES[errno] ?? `errno ${errno}`;
    super(`${syscall} failed: ${text ? `${text} (${code})` : code}`, options);
    this.name = "LibcError";
    this.syscall = syscall;
    this.errno = errno;
    this.code = code;
  }
}

/** True when this process may load `library` (never asks: a prompt would stop a server). */
function mayLoad(library: string): boolean {
  try {
    return Deno.permissions.querySync({ name: "ffi", path: library }).state === "granted";
  } catch {
    return false;
  }
}

let opened: LibcResult | undefined;

/**
 * Opens libc once per process (later calls return the same result): the functions, or the
 * reason they are out of reach (another OS or CPU, no `ffi` permission, no libc found).
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert/strict";
 * import { openLibc } from "./libc.ts";
 * const result = openLibc();
 * assert.equal(openLibc(), result); // opened once
 * if (!result.ok) assert.match(result.reason, /\w/);
 * ```
 */
export function openLibc(): LibcResult {
  return opened ??= open();
}

function open(): LibcResult {
  if (
    Deno.build.os !== "linux" || (Deno.build.arch !== "x86_64" && Deno.build.arch !== "aarch64")
  ) {
    return { ok: false, reason: `not on Linux x86_64/aarch64 (${Deno.build.target})` };
  }
  let permitted = false;
  for (const library of LIBC_LIBRARY_NAMES) {
    if (!mayLoad(library)) continue;
    permitted = true;
    let lib: Deno.DynamicLibrary<typeof SYMBOLS>;
    try {
      lib = Deno.dlopen(library, SYMBOLS);
    } catch {
      continue;
    }
    const s = lib.symbols;
    const errnoPointer = s.__errno_location();
    if (errnoPointer === null) {
      lib.close();
      continue;
    }
    // errno is thread-local; its address for this (the JavaScript) thread never changes.
    const errnoView = new Deno.UnsafePointerView(errnoPointer);
    return {
      ok: true,
      libc: {
        library,
        symbols: s,
        errno: () => errnoView.getInt32(),
        describe(errno) {
          const text = s.strerror(errno);
          return text === null ? "" : Deno.UnsafePointerView.getCString(text);
        },
      },
    };
  }
  return {
    ok: false,
    reason: permitted
      ? `cannot open libc (tried ${LIBC_LIBRARY_NAMES.join(", ")})`
      : "no ffi permission (run with --allow-ffi or -A)",
  };
}

/**
 * Puts a 64-bit pointer `p` (below 2^53, as every user-space address is) at `offset`, little
 * endian (x86_64, aarch64).
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert/strict";
 * import { setPointer } from "./libc.ts";
 * const view = new DataView(new ArrayBuffer(8));
 * setPointer(view, 0, 0x1_0000_0002);
 * assert.equal(view.getBigUint64(0, true), 0x1_0000_0002n);
 * ```
 */
export function setPointer(view: DataView, offset: number, p: number): void {
  view.setUint32(offset, p % 0x1_0000_0000, true);
  view.setUint32(offset + 4, Math.floor(p / 0x1_0000_0000), true);
}

/**
 * The address of `buffer`'s memory, for pointers inside the structs passed to libc (keep a
 * reference to `buffer` for as long as libc may use it).
 *
 * @example Usage
 * ```ts ignore
 * import assert from "node:assert/strict";
 * import { addressOf } from "./libc.ts";
 * assert.ok(addressOf(new ArrayBuffer(16)) > 0); // needs the ffi permission
 * ```
 */
export function addressOf(buffer: ArrayBuffer): number {
  return Number(Deno.UnsafePointer.value(Deno.UnsafePointer.of(buffer)));
}

/**
 * Text of an IPv4 address held as a 32-bit number (network order read big-endian), as Deno
 * reports it.
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert/strict";
 * import { formatSockaddrIpv4 } from "./libc.ts";
 * assert.equal(formatSockaddrIpv4(0x7f000001), "127.0.0.1");
 * ```
 */
export function formatSockaddrIpv4(a: number): string {
  return `${a >>> 24}.${(a >>> 16) & 255}.${(a >>> 8) & 255}.${a & 255}`;
}

/**
 * Text of the IPv6 address at `offset` as Deno (Rust) reports it: IPv4-mapped ones as
 * `::ffff:a.b.c.d`, others as `formatIP` writes them.
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert/strict";
 * import { formatSockaddrIpv6 } from "./libc.ts";
 * const bytes = new Uint8Array(16);
 * bytes[10] = 0xff, bytes[11] = 0xff, bytes[12] = 127, bytes[15] = 1;
 * assert.equal(formatSockaddrIpv6(new DataView(bytes.buffer), 0), "::ffff:127.0.0.1");
 * bytes.fill(0), bytes[15] = 1;
 * assert.equal(formatSockaddrIpv6(new DataView(bytes.buffer), 0), "::1");
 * ```
 */
export function formatSockaddrIpv6(view: DataView, offset: number): string {
  let mapped = view.getUint16(offset + 10, false) === 0xffff;
  for (let i = 0; mapped && i < 5; i++) mapped = view.getUint16(offset + 2 * i, false) === 0;
  if (mapped) return `::ffff:${formatSockaddrIpv4(view.getUint32(offset + 12, false))}`;
  return formatIP(new Uint8Array(view.buffer, view.byteOffset + offset, 16));
}

/**
 * Writes a `struct sockaddr_in` or `sockaddr_in6` for `ip`:`port` at `offset` (the address
 * through `inet_pton`); returns its length. Throws a `RangeError` for what inet_pton refuses.
 *
 * @example Usage
 * ```ts ignore
 * import assert from "node:assert/strict";
 * import { LINUX, openLibc, writeSocketAddress } from "./libc.ts";
 * const libc = openLibc(); // needs the ffi permission
 * if (libc.ok) {
 *   const view = new DataView(new ArrayBuffer(LINUX.SOCKADDR_IN_SIZE));
 *   assert.equal(writeSocketAddress(libc.libc, view, 0, "127.0.0.1", 7), LINUX.SOCKADDR_IN_SIZE);
 * }
 * ```
 */
export function writeSocketAddress(
  libc: Libc,
  view: DataView,
  offset: number,
  ip: string,
  port: number,
): number {
  const v6 = ip.includes(":");
  const family = v6 ? LINUX.AF_INET6 : LINUX.AF_INET;
  view.setUint16(offset, family, true);
  view.setUint16(offset + 2, port, false);
  const bytes = new Uint8Array(view.buffer, view.byteOffset + offset + (v6 ? 8 : 4), v6 ? 16 : 4);
  const text = new TextEncoder().encode(`${ip}\0`);
  if (libc.symbols.inet_pton(family, text, bytes) !== 1) {
    throw new RangeError(`Cannot parse ${ip} as an IP address`);
  }
  return v6 ? LINUX.SOCKADDR_IN6_SIZE : LINUX.SOCKADDR_IN_SIZE;
}

/**
 * Lays out `count` receive slots for `recvmmsg` in `view` (a block at address `base`): the
 * `mmsghdr` at `headers + i * MMSGHDR_SIZE` names the `sockaddr_storage` at
 * `addresses + i * SOCKADDR_STORAGE_SIZE` and one `iovec` at `iovecs + i * IOVEC_SIZE`,
 * which points at `slotBytes` bytes at address `data + i * slotBytes`. Offsets are into
 * `view`; `base` and `data` are memory addresses ({@linkcode addressOf}).
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert/strict";
 * import { LINUX, prepareReceiveSlots } from "./libc.ts";
 * const view = new DataView(new ArrayBuffer(2 * (LINUX.MMSGHDR_SIZE + LINUX.IOVEC_SIZE)));
 * prepareReceiveSlots(view, {
 *   count: 2, base: 0x1000, headers: 0, iovecs: 2 * LINUX.MMSGHDR_SIZE, addresses: 0x800,
 *   data: 0x10000, slotBytes: 1500,
 * });
 * assert.equal(view.getUint32(8, true), LINUX.SOCKADDR_STORAGE_SIZE); // msg_namelen
 * assert.equal(view.getUint32(2 * LINUX.MMSGHDR_SIZE + LINUX.IOVEC_SIZE + 8, true), 1500);
 * ```
 */
export function prepareReceiveSlots(
  view: DataView,
  layout: {
    count: number;
    base: number;
    headers: number;
    iovecs: number;
    addresses: number;
    data: number;
    slotBytes: number;
  },
): void {
  const { IOVEC_SIZE, MMSGHDR_SIZE, SOCKADDR_STORAGE_SIZE } = LINUX;
  const { base, headers, iovecs, addresses, data, slotBytes } = layout;
  for (let i = 0; i < layout.count; i++) {
    const h = headers + i * MMSGHDR_SIZE;
    setPointer(view, h, base + addresses + i * SOCKADDR_STORAGE_SIZE); // msg_name
    view.setUint32(h + 8, SOCKADDR_STORAGE_SIZE, true); // msg_namelen
    setPointer(view, h + 16, base + iovecs + i * IOVEC_SIZE); // msg_iov
    view.setUint32(h + 24, 1, true); // msg_iovlen
    setPointer(view, iovecs + i * IOVEC_SIZE, data + i * slotBytes); // iov_base
    view.setUint32(iovecs + i * IOVEC_SIZE + 8, slotBytes, true); // iov_len
  }
}
