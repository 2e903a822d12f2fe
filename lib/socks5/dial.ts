/**
 * Reaching a destination: resolve a name to every address (IPv4 and IPv6), keep those the
 * rules allow, dial them in turn within one deadline, and map a failure to its reply code.
 *
 * @module
 */

import { lookup } from "node:dns/promises";
import { DEADLINES, type Deadlines } from "../net/deadline.ts";
import { TimeoutError } from "../net/errors.ts";
import { formatIP, parseIP, unmapIPv4 } from "./ip.ts";
import { Reply } from "./protocol.ts";
import type { DestinationRules } from "./rules.ts";
import { describeError } from "./session.ts";

/** Result of {@linkcode resolveDestination}: the addresses to try, or the reply to send. */
export type Resolution = { addresses: string[] } | { reply: number; why: string };

/**
 * Resolves a destination to the IP literals the rules allow: every address of a name, IPv4
 * and IPv6, in the resolver's order.
 */
export async function resolveDestination(
  hostname: string,
  rules: DestinationRules,
): Promise<Resolution> {
  let all: string[];
  if (parseIP(hostname)) {
    all = [hostname];
  } else {
    try {
      const found = await lookup(hostname, { all: true, verbatim: true });
      all = found.map((a) => a.address);
    } catch (error) {
      return {
        reply: Reply.HostUnreachable,
        why: `cannot resolve ${hostname}: ${describeError(error)}`,
      };
    }
    if (all.length === 0) {
      return { reply: Reply.HostUnreachable, why: `no address for ${hostname}` };
    }
  }
  const allowed = rules.empty ? all : all.filter((a) => rules.allows(a));
  if (allowed.length === 0) {
    return { reply: Reply.NotAllowedByRuleset, why: `denied by rules: ${all.join(", ")}` };
  }
  return { addresses: allowed };
}

/** Maps a connect failure to its reply code (RFC 1928 section 6). */
export function replyForConnectError(error: unknown): number {
  if (error instanceof Deno.errors.ConnectionRefused) return Reply.ConnectionRefused;
  if (error instanceof Deno.errors.NetworkUnreachable) return Reply.NetworkUnreachable;
  if (error instanceof TimeoutError || error instanceof Deno.errors.TimedOut) {
    return Reply.TtlExpired;
  }
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
}

/**
 * Dials `options.port` on each address in turn, within one deadline for all of them, and resolves the first
 * connection; or the reply code for the last failure.
 */
export async function dialAny(
  addresses: string[],
  options: DialOptions,
): Promise<{ conn: Deno.TcpConn; address: string } | { reply: number; why: string }> {
  const { port, timeoutMs } = options;
  const deadlines = options.deadlines ?? DEADLINES;
  const deadline = performance.now() + timeoutMs;
  let lastError: unknown;
  for (const address of addresses) {
    const left = deadline - performance.now();
    if (left <= 0) break;
    const attempt = Deno.connect({ hostname: address, port });
    try {
      const conn = await deadlines.deadline(attempt, Math.ceil(left), {
        what: `connect to ${address}`,
      });
      return { conn, address };
    } catch (error) {
      attempt.then((c) => c.close(), () => {});
      lastError = error;
    }
  }
  lastError ??= new TimeoutError(`Timed out after ${timeoutMs} ms`);
  return { reply: replyForConnectError(lastError), why: describeError(lastError) };
}

/** True for 0.0.0.0, ::, and the domain "0": "any address". */
export function isUnspecified(hostname: string): boolean {
  if (hostname === "0") return true;
  const ip = parseIP(hostname);
  return ip !== undefined && ip.every((b) => b === 0);
}

/** Canonical text of an IP literal (IPv4-mapped IPv6 as IPv4), for comparisons. */
export function canonicalIP(hostname: string): string {
  const ip = parseIP(hostname);
  return ip ? formatIP(unmapIPv4(ip)) : hostname;
}
