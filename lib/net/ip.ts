/**
 * IP address literals as bytes, and CIDR ranges: what the SOCKS5 wire format (4 or 16 address
 * bytes) and the address rules (`address_rules.ts`: socks5's and the relay's `--allow` /
 * `--deny`) need.
 *
 * IPv4-mapped IPv6 addresses (`::ffff:10.0.0.1`) are matched against IPv4 rules as the IPv4
 * address they carry, so a rule cannot be bypassed by spelling an address the other way.
 *
 * @module
 */

import { UsageError } from "./errors.ts";

/**
 * Parses a canonical dotted-quad IPv4 literal (four decimal parts 0-255, no leading zeros)
 * into 4 bytes, or returns undefined. `010.0.0.1` is not canonical: the C library reads it
 * as octal (8.0.0.1), so it is left to {@linkcode parseInetAton}, which reads it the same way.
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert/strict";
 * import { parseIPv4 } from "./ip.ts";
 * assert.equal(parseIPv4("10.0.0.1")?.join("."), "10.0.0.1");
 * assert.equal(parseIPv4("010.0.0.1"), undefined);
 * assert.equal(parseIPv4("example.com"), undefined);
 * ```
 */
export function parseIPv4(text: string): Uint8Array | undefined {
  const m = /^(0|[1-9]\d{0,2})\.(0|[1-9]\d{0,2})\.(0|[1-9]\d{0,2})\.(0|[1-9]\d{0,2})$/.exec(text);
  if (!m) return undefined;
  const parts = m.slice(1).map(Number);
  if (parts.some((p) => p > 255)) return undefined;
  return new Uint8Array(parts);
}

/** One part of an inet_aton address: C notation, `0x` hex, leading `0` octal, or decimal. */
const INET_PART = /^(?:0[xX][0-9a-fA-F]+|0[0-7]*|[1-9][0-9]*)$/;
/** Something a C programmer would take for a number part (valid or not: `08`, `0x`). */
const NUMBER_LIKE_PART = /^(?:0[xX][0-9a-fA-F]*|[0-9]+)$/;
/** Largest value of the last part, by the number of parts before it. */
const INET_LAST_MAX = [0xffffffff, 0xffffff, 0xffff, 0xff];

/**
 * Parses an IPv4 address exactly as glibc's `inet_aton` (in its exact form, the one
 * `getaddrinfo` uses) does: 1 to 4 parts separated by dots, each in C notation (`0x` hex,
 * leading `0` octal, otherwise decimal); the last part fills the remaining bytes (`127.1`
 * is 127.0.0.1, `2130706433` too). Returns the 4 bytes, or undefined when the text is not
 * such an address.
 *
 * @example The spellings the C library accepts for one address
 * ```ts
 * import assert from "node:assert/strict";
 * import { parseInetAton } from "./ip.ts";
 * for (const text of ["127.0.0.1", "0177.0.0.1", "0x7f.1", "127.1", "2130706433", "0x7f.0.00.1"]) {
 *   assert.equal(parseInetAton(text)?.join("."), "127.0.0.1", text);
 * }
 * assert.equal(parseInetAton("127.0.0.010")?.join("."), "127.0.0.8");
 * assert.equal(parseInetAton("08.0.0.1"), undefined); // 8 is no octal digit
 * assert.equal(parseInetAton("1.2.3.4.5"), undefined);
 * ```
 */
export function parseInetAton(text: string): Uint8Array | undefined {
  const parts = text.split(".");
  if (parts.length > 4 || !parts.every((p) => INET_PART.test(p))) return undefined;
  const values = parts.map((p) =>
    /^0[xX]/.test(p)
      ? parseInt(p.slice(2), 16)
      : p.length > 1 && p[0] === "0"
      ? parseInt(p, 8)
      : Number(p)
  );
  const last = values.pop()!;
  if (values.some((v) => v > 0xff) || last > INET_LAST_MAX[values.length]) return undefined;
  const out = new Uint8Array(4);
  out.set(values);
  for (let i = 3; i >= values.length; i--) out[i] = Math.floor(last / 256 ** (3 - i)) & 0xff;
  return out;
}

/**
 * True when every dot-separated part of `text` (one trailing dot ignored) reads as a number
 * in C notation, valid or not (`127.0.0.010`, `0x7f.1`, `08.1`, `1.2.3.4.5`): a name the C
 * library would take for an IPv4 address, or reject as a bad one, but never send to DNS as a
 * name. Names such as `1a.example` or `3com.com` are not numeric.
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert/strict";
 * import { isNumericHost } from "./ip.ts";
 * assert.ok(isNumericHost("0x7f.1") && isNumericHost("08.0.0.1") && isNumericHost("127.0.0.1."));
 * assert.ok(!isNumericHost("1a.de") && !isNumericHost("example.com"));
 * ```
 */
export function isNumericHost(text: string): boolean {
  const body = text.endsWith(".") ? text.slice(0, -1) : text;
  return body !== "" && body.split(".").every((p) => NUMBER_LIKE_PART.test(p));
}

/**
 * Parses an IPv6 literal (with `::` and an optional trailing dotted quad; no zone, no
 * brackets) into 16 bytes, or returns undefined.
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert/strict";
 * import { parseIPv6 } from "./ip.ts";
 * assert.equal(parseIPv6("::1")?.[15], 1);
 * assert.equal(parseIPv6("1.2.3.4"), undefined);
 * ```
 */
export function parseIPv6(text: string): Uint8Array | undefined {
  if (!text.includes(":") || text.length > 45) return undefined;
  let head = text;
  let v4: Uint8Array | undefined;
  const lastColon = text.lastIndexOf(":");
  if (text.slice(lastColon + 1).includes(".")) {
    v4 = parseIPv4(text.slice(lastColon + 1));
    if (!v4) return undefined;
    head = text.slice(0, lastColon + 1) + "0:0";
  }
  const halves = head.split("::");
  if (halves.length > 2) return undefined;
  const groups = (s: string) => (s === "" ? [] : s.split(":"));
  const left = groups(halves[0]);
  const right = halves.length === 2 ? groups(halves[1]) : [];
  const missing = 8 - left.length - right.length;
  if (halves.length === 2 ? missing < 1 : missing !== 0) return undefined;
  const all = [...left, ...Array(halves.length === 2 ? missing : 0).fill("0"), ...right];
  const out = new Uint8Array(16);
  for (let i = 0; i < 8; i++) {
    if (!/^[0-9a-fA-F]{1,4}$/.test(all[i])) return undefined;
    const v = parseInt(all[i], 16);
    out[2 * i] = v >> 8;
    out[2 * i + 1] = v & 0xff;
  }
  if (v4) out.set(v4, 12);
  return out;
}

/**
 * Formats 4 or 16 address bytes as a literal (IPv6 in its shortest `::` form).
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert/strict";
 * import { formatIP } from "./ip.ts";
 * assert.equal(formatIP(new Uint8Array([127, 0, 0, 1])), "127.0.0.1");
 * assert.equal(formatIP(new Uint8Array([...Array(15).fill(0), 1])), "::1");
 * ```
 */
export function formatIP(bytes: Uint8Array): string {
  if (bytes.length === 4) return bytes.join(".");
  if (bytes.length !== 16) throw new RangeError(`Cannot format ${bytes.length} address bytes`);
  const g: number[] = [];
  for (let i = 0; i < 8; i++) g.push((bytes[2 * i] << 8) | bytes[2 * i + 1]);
  // Longest run of zero groups (length >= 2) becomes "::".
  let best = -1;
  let bestLen = 1;
  for (let i = 0; i < 8;) {
    if (g[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && g[j] === 0) j++;
    if (j - i > bestLen) {
      best = i;
      bestLen = j - i;
    }
    i = j;
  }
  const hex = (a: number[]) => a.map((x) => x.toString(16)).join(":");
  if (best < 0) return hex(g);
  return `${hex(g.slice(0, best))}::${hex(g.slice(best + bestLen))}`;
}

/** Parses an IPv4 or IPv6 literal into 4 or 16 bytes, or returns undefined for a name. */
export function parseIP(text: string): Uint8Array | undefined {
  return parseIPv4(text) ?? parseIPv6(text);
}

/** Returns the IPv4 address inside an IPv4-mapped IPv6 address, otherwise the bytes unchanged. */
export function unmapIPv4(bytes: Uint8Array): Uint8Array {
  if (bytes.length !== 16) return bytes;
  for (let i = 0; i < 10; i++) if (bytes[i] !== 0) return bytes;
  if (bytes[10] !== 0xff || bytes[11] !== 0xff) return bytes;
  return bytes.slice(12);
}

/** A CIDR range such as `10.0.0.0/8` or `fe80::/10`. */
export interface Cidr {
  /** Network address bytes (4 or 16). */
  network: Uint8Array;
  /** Prefix length in bits. */
  prefix: number;
  /** The text it was parsed from. */
  text: string;
}

/**
 * Parses `ADDR/PREFIX` or a bare address (a /32 or /128), throwing {@linkcode UsageError}.
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert/strict";
 * import { cidrContains, parseCidr } from "./ip.ts";
 * const net = parseCidr("10.0.0.0/8");
 * assert.ok(cidrContains(net, new Uint8Array([10, 1, 2, 3])));
 * assert.ok(!cidrContains(net, new Uint8Array([11, 0, 0, 1])));
 * ```
 */
export function parseCidr(text: string): Cidr {
  const slash = text.indexOf("/");
  const addrText = slash < 0 ? text : text.slice(0, slash);
  const raw = parseIP(addrText);
  if (!raw) {
    throw new UsageError(`Cannot parse CIDR '${text}': '${addrText}' is not an IP address`);
  }
  const network = unmapIPv4(raw);
  const bits = network.length * 8;
  let prefix = bits;
  if (slash >= 0) {
    const p = text.slice(slash + 1);
    if (!/^\d{1,3}$/.test(p) || Number(p) > raw.length * 8) {
      throw new UsageError(`Cannot parse CIDR '${text}': bad prefix length '${p}'`);
    }
    prefix = Number(p) - (raw.length - network.length) * 8;
    if (prefix < 0) prefix = 0;
  }
  return { network, prefix, text };
}

/** True when `address` (4 or 16 bytes; IPv4-mapped IPv6 counts as IPv4) lies in `cidr`. */
export function cidrContains(cidr: Cidr, address: Uint8Array): boolean {
  const a = unmapIPv4(address);
  if (a.length !== cidr.network.length) return false;
  let bits = cidr.prefix;
  for (let i = 0; bits > 0; i++, bits -= 8) {
    const mask = bits >= 8 ? 0xff : (0xff << (8 - bits)) & 0xff;
    if ((a[i] & mask) !== (cidr.network[i] & mask)) return false;
  }
  return true;
}
