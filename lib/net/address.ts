/**
 * Parsing and printing `HOST:PORT` addresses: `127.0.0.1:8080`, `[::1]:8080`,
 * `example.com:80`. Names are left for the system resolver.
 *
 * @module
 */

import { UsageError } from "./errors.ts";

/** A host and port as given by the user or reported by a socket. */
export interface HostPort {
  /** IPv4 or IPv6 literal (without brackets) or a name. */
  hostname: string;
  /** TCP/UDP port, 0 to 65535. */
  port: number;
}

/**
 * Parses a port number, throwing {@linkcode UsageError} that names the bad part.
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert/strict";
 * import { parsePort } from "./address.ts";
 * assert.equal(parsePort("8080"), 8080);
 * ```
 */
export function parsePort(text: string, what = "port"): number {
  if (!/^\d{1,5}$/.test(text) || Number(text) > 65535) {
    throw new UsageError(`Cannot parse ${what} '${text}': expected a number from 0 to 65535`);
  }
  return Number(text);
}

/**
 * Parses `HOST:PORT` or `[IPv6]:PORT`. With `options.defaultPort`, a bare host is accepted.
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert/strict";
 * import { parseAddress } from "./address.ts";
 * const a = parseAddress("[::1]:9000");
 * assert.equal(a.hostname, "::1");
 * assert.equal(a.port, 9000);
 * ```
 */
export function parseAddress(
  text: string,
  options: { defaultPort?: number } = {},
): HostPort {
  const bad = (why: string) => new UsageError(`Cannot parse address '${text}': ${why}`);
  if (text.length === 0) throw bad("empty");
  let host: string;
  let portText: string | undefined;
  if (text.startsWith("[")) {
    const close = text.indexOf("]");
    if (close < 0) throw bad("missing ']' after IPv6 address");
    host = text.slice(1, close);
    const rest = text.slice(close + 1);
    if (rest.length > 0) {
      if (!rest.startsWith(":")) throw bad("expected ':' after ']'");
      portText = rest.slice(1);
    }
    if (!host.includes(":")) throw bad(`'${host}' is not an IPv6 address`);
  } else {
    const colons = text.split(":").length - 1;
    if (colons > 1) throw bad("IPv6 addresses need brackets, as in [::1]:8080");
    const i = text.lastIndexOf(":");
    if (i >= 0) {
      host = text.slice(0, i);
      portText = text.slice(i + 1);
    } else {
      host = text;
    }
  }
  if (host.length === 0) throw bad("missing host");
  if (portText === undefined) {
    if (options.defaultPort === undefined) throw bad("missing port");
    return { hostname: host, port: options.defaultPort };
  }
  if (portText.length === 0) throw bad("missing port");
  if (!/^\d{1,5}$/.test(portText) || Number(portText) > 65535) {
    throw bad(`bad port '${portText}'`);
  }
  return { hostname: host, port: Number(portText) };
}

/**
 * Formats an address as `HOST:PORT`, bracketing IPv6 literals.
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert/strict";
 * import { formatAddress } from "./address.ts";
 * assert.equal(formatAddress({ hostname: "::1", port: 80 }), "[::1]:80");
 * ```
 */
export function formatAddress(addr: HostPort): string {
  return addr.hostname.includes(":")
    ? `[${addr.hostname}]:${addr.port}`
    : `${addr.hostname}:${addr.port}`;
}

/**
 * True for addresses that only this machine can reach (127.0.0.0/8, ::1, localhost).
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert/strict";
 * import { isLoopbackHost } from "./address.ts";
 * assert.equal(isLoopbackHost("127.0.0.1"), true);
 * assert.equal(isLoopbackHost("0.0.0.0"), false);
 * ```
 */
export function isLoopbackHost(hostname: string): boolean {
  return hostname === "localhost" || hostname === "::1" || /^127\.\d+\.\d+\.\d+$/.test(hostname);
}
