/**
 * Reaching a destination: resolve it to IP literals ({@linkcode resolveHost}: literals as
 * they are, numeric names as `inet_aton` reads them, other names through DNS, IPv4 and
 * IPv6), keep those the rules allow, and dial exactly those literals in turn, resolution and
 * dialling together within one deadline (the connect timeout); a failure becomes its reply
 * code.
 *
 * @module
 */

import type { HostPort } from "../net/address.ts";
import { DEADLINES, type Deadlines } from "../net/deadline.ts";
import { TimeoutError } from "../net/errors.ts";
import { describeError } from "./errors.ts";
import { formatIP, parseIP, unmapIPv4 } from "../net/ip.ts";
import { Reply } from "./protocol.ts";
import { connectFrom } from "../net/bound_connect.ts";
import { literalAddress, type NameServer, resolveHost } from "./resolve.ts";
import type { AddressRules } from "../net/address_rules.ts";

/** Result of {@linkcode resolveDestination}: the addresses to try, or the reply to send. */
export type Resolution = { addresses: string[] } | { reply: number; why: string };

/** Options of {@linkcode resolveDestination} and {@linkcode reachDestination}. */
export interface DestinationOptions {
  /** Destination rules every resolved address is checked against. */
  rules: AddressRules;
  /** Deadline, in ms: for the lookup alone, or for lookup and dialling together. */
  timeoutMs: number;
  /** Scheduler for the deadlines (a server passes its own). @default {DEADLINES} */
  deadlines?: Deadlines;
  /** DNS server to ask instead of the system's. */
  nameServer?: NameServer;
  /** Local address of the outgoing connections (`--bind-out`); default: the system's choice. */
  bindOut?: string;
}

/**
 * Resolves a destination to the IP literals the rules allow (canonical text, in the order
 * to dial), within `options.timeoutMs`: reply 0x02 when the rules deny every address or the
 * name is a number that is no IPv4 address, 0x04 when the lookup finds nothing, fails or
 * times out.
 */
export async function resolveDestination(
  hostname: string,
  options: DestinationOptions,
): Promise<Resolution> {
  const { rules } = options;
  const found = await resolveHost(hostname, options);
  if ("invalid" in found) return { reply: Reply.NotAllowedByRuleset, why: found.invalid };
  if ("failed" in found) return { reply: Reply.HostUnreachable, why: found.failed };
  const all = found.addresses;
  const allowed = rules.empty ? all : all.filter((a) => rules.allows(a));
  if (allowed.length === 0) {
    return { reply: Reply.NotAllowedByRuleset, why: `denied by rules: ${all.join(", ")}` };
  }
  return { addresses: allowed };
}

/**
 * {@linkcode reachDestination} with a client session's settings: its rules, connect timeout,
 * name server, `--bind-out` and the server's deadline scheduler (what every command that
 * dials, SOCKS5, SOCKS4 and HTTP, passes).
 */
export function reachForClient(
  session: {
    opts: Pick<DestinationOptions, "rules" | "nameServer" | "bindOut"> & {
      connectTimeoutMs: number;
    };
    deadlines: Deadlines;
  },
  destination: HostPort,
): Promise<{ conn: Deno.TcpConn; address: string } | { reply: number; why: string }> {
  const { opts, deadlines } = session;
  return reachDestination(destination, {
    rules: opts.rules,
    timeoutMs: opts.connectTimeoutMs,
    deadlines,
    nameServer: opts.nameServer,
    bindOut: opts.bindOut,
  });
}

/**
 * Resolves `destination`, checks the rules and dials the allowed addresses in turn; the
 * lookup and every connect attempt share one deadline of `options.timeoutMs`. Resolves the
 * connection and the literal it went to, or the reply code to send.
 */
export async function reachDestination(
  destination: HostPort,
  options: DestinationOptions,
): Promise<{ conn: Deno.TcpConn; address: string } | { reply: number; why: string }> {
  const deadline = performance.now() + options.timeoutMs;
  const resolved = await resolveDestination(destination.hostname, options);
  if ("reply" in resolved) return resolved;
  return await dialAny(resolved.addresses, {
    port: destination.port,
    timeoutMs: deadline - performance.now(),
    deadlines: options.deadlines,
    bindOut: options.bindOut,
  });
}

/** Maps a connect failure to its reply code (RFC 1928 section 6). */
export function replyForConnectError(error: unknown): number {
  if (error instanceof Deno.errors.ConnectionRefused) return Reply.ConnectionRefused;
  if (error instanceof Deno.errors.NetworkUnreachable) return Reply.NetworkUnreachable;
  if (error instanceof TimeoutError || error instanceof Deno.errors.TimedOut) {
    return Reply.TtlExpired;
  }
  // node:net errors (--bind-out) carry an errno name.
  const code = (error as { code?: unknown })?.code;
  if (code === "ECONNREFUSED") return Reply.ConnectionRefused;
  if (code === "ENETUNREACH") return Reply.NetworkUnreachable;
  if (code === "ETIMEDOUT") return Reply.TtlExpired;
  if (code === "EMFILE" || code === "ENFILE" || code === "EADDRNOTAVAIL") {
    return Reply.GeneralFailure;
  }
  if (code === "EHOSTUNREACH") return Reply.HostUnreachable;
  const message = error instanceof Error ? error.message : "";
  if (/host is unreachable|no route to host/i.test(message)) return Reply.HostUnreachable;
  if (/network is unreachable/i.test(message)) return Reply.NetworkUnreachable;
  if (/too many open files/i.test(message)) return Reply.GeneralFailure;
  if (/refused/i.test(message)) return Reply.ConnectionRefused;
  if (/timed out/i.test(message)) return Reply.TtlExpired;
  return Reply.HostUnreachable;
}

/** Options of {@linkcode dialAny}. */
export interface DialOptions {
  /** Port to dial on every address. */
  port: number;
  /** Deadline for all addresses together, in ms. */
  timeoutMs: number;
  /** Scheduler for the deadline (a server passes its own). @default {DEADLINES} */
  deadlines?: Deadlines;
  /**
   * Local address to connect from (an IP literal); only destinations of its family are
   * dialled. @default {the system's choice}
   */
  bindOut?: string;
}

/**
 * Dials `options.port` on each address (IP literals) in turn, within one deadline for all of
 * them, and resolves the first connection; or the reply code for the last failure.
 */
export async function dialAny(
  addresses: string[],
  options: DialOptions,
): Promise<{ conn: Deno.TcpConn; address: string } | { reply: number; why: string }> {
  const { port, timeoutMs, bindOut } = options;
  const deadlines = options.deadlines ?? DEADLINES;
  const deadline = performance.now() + timeoutMs;
  let lastError: unknown;
  const family = (a: string) => (parseIP(a)?.length === 4 ? 4 : 6);
  const candidates = bindOut === undefined
    ? addresses
    : addresses.filter((a) => family(canonicalIP(a)) === family(bindOut));
  if (candidates.length === 0) {
    return {
      reply: Reply.NetworkUnreachable,
      why: `no address of --bind-out ${bindOut}'s family among ${addresses.join(", ")}`,
    };
  }
  for (const address of candidates) {
    const left = deadline - performance.now();
    if (left <= 0) break;
    // A timed-out attempt is aborted (Deno.connect takes a signal too), not left to the kernel.
    const abort = new AbortController();
    const attempt = bindOut === undefined
      ? Deno.connect({ hostname: address, port, signal: abort.signal })
      : connectFrom(bindOut, { hostname: address, port }, { signal: abort.signal });
    try {
      const conn = await deadlines.deadline(attempt, Math.ceil(left), {
        what: `connect to ${address}`,
        onTimeout: () => abort.abort(),
      });
      return { conn, address };
    } catch (error) {
      attempt.then((c) => c.close(), () => {});
      lastError = error;
    }
  }
  lastError ??= new TimeoutError(
    `Timed out after ${Math.max(0, Math.round(timeoutMs))} ms connecting to ${
      addresses.join(", ")
    }`,
  );
  return { reply: replyForConnectError(lastError), why: describeError(lastError) };
}

/** True for an address of all zeros, written any way (`0.0.0.0`, `::`, the domain `0`). */
export function isUnspecified(hostname: string): boolean {
  const literal = literalAddress(hostname);
  return literal === "0.0.0.0" || literal === "::";
}

/** Canonical text of an IP literal (IPv4-mapped IPv6 as IPv4), for comparisons. */
export function canonicalIP(hostname: string): string {
  const ip = parseIP(hostname);
  return ip ? formatIP(unmapIPv4(ip)) : hostname;
}
