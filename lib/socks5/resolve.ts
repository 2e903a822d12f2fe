/**
 * Name resolution for the proxy, done by the proxy itself so that **the address that was
 * checked is the address that is dialled**: a destination becomes IP literals here, the
 * rules are checked against those literals, and only those literals are connected to.
 * Nothing is handed to the C library's resolver (which reads `127.0.0.010` as octal and
 * would dial another address than the one checked).
 *
 * - An IP literal (`10.0.0.1`, `::1`) is used as it is, with no DNS query.
 * - A name made of numbers in C notation (`0177.0.0.1`, `0x7f.1`, `127.1`, `2130706433`) is
 *   an IPv4 address exactly as `inet_aton` reads it ({@linkcode parseInetAton}); one that
 *   `inet_aton` rejects (`08.0.0.1`, `1.2.3.4.5`) is refused, never sent to DNS.
 * - Any other name is looked up with `Deno.resolveDns`, A and AAAA at once; it answers from
 *   `/etc/hosts` first and answers `localhost` names with loopback (RFC 6761), like the
 *   system resolver. The lookup has a deadline (the caller's share of the connect timeout):
 *   a resolver that never answers costs no more than that.
 *
 * @module
 */

import { DEADLINES, type Deadlines } from "../net/deadline.ts";
import { TimeoutError } from "../net/errors.ts";
import { printable, quote } from "../log.ts";
import { formatIP, isNumericHost, parseInetAton, parseIP, unmapIPv4 } from "../net/ip.ts";

/** A DNS server to ask instead of the system's (for tests, or a resolver of one's own). */
export interface NameServer {
  /** The server's IP address. */
  ipAddr: string;
  /** Its port. @default {53} */
  port?: number;
}

/** Options of {@linkcode resolveHost}. */
export interface ResolveOptions {
  /** Deadline for the lookup, in ms. */
  timeoutMs: number;
  /** Scheduler for the deadline (a server passes its own). @default {DEADLINES} */
  deadlines?: Deadlines;
  /** DNS server to ask; default the system's (`/etc/resolv.conf`). */
  nameServer?: NameServer;
}

/**
 * What {@linkcode resolveHost} found: the IP literals (canonical text, IPv4-mapped IPv6 as
 * IPv4, in the order to dial), or why there are none: `invalid` for a numeric name that is
 * no address, `failed` for a lookup that found nothing, failed, or ran out of time.
 */
export type HostResolution =
  | { addresses: string[] }
  | { invalid: string }
  | { failed: string };

/**
 * The literal an address-looking `hostname` stands for: an IP literal, or a numeric name as
 * `inet_aton` reads it (canonical text); `null` for a numeric name that is no address;
 * undefined for a name to look up.
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert/strict";
 * import { literalAddress } from "./resolve.ts";
 * assert.equal(literalAddress("127.0.0.010"), "127.0.0.8");
 * assert.equal(literalAddress("::ffff:10.0.0.1"), "10.0.0.1");
 * assert.equal(literalAddress("08.0.0.1"), null);
 * assert.equal(literalAddress("example.com"), undefined);
 * ```
 */
export function literalAddress(hostname: string): string | null | undefined {
  const ip = parseIP(hostname);
  if (ip) return formatIP(unmapIPv4(ip));
  if (!isNumericHost(hostname)) return undefined;
  const v4 = parseInetAton(hostname);
  return v4 ? formatIP(v4) : null;
}

let ipv6First: boolean | undefined;

/**
 * Whether IPv6 addresses are dialled first: when this host has a global IPv6 address (not
 * loopback, link-local or unique-local), as the system's address sorting (RFC 6724) would
 * do; otherwise IPv4 first. Asked once; without the permission to list interfaces, IPv4.
 */
function preferIPv6(): boolean {
  if (ipv6First !== undefined) return ipv6First;
  ipv6First = false;
  try {
    const state = Deno.permissions.querySync({ name: "sys", kind: "networkInterfaces" }).state;
    if (state === "granted") {
      ipv6First = Deno.networkInterfaces().some((i) =>
        i.family === "IPv6" && !/^(::1$|fe[89ab]|f[cd])/i.test(i.address)
      );
    }
  } catch {
    // No permission or no interfaces: IPv4 first.
  }
  return ipv6First;
}

/** Alternates the two families, the preferred one first. */
function interleave(first: string[], second: string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < Math.max(first.length, second.length); i++) {
    if (i < first.length) out.push(first[i]);
    if (i < second.length) out.push(second[i]);
  }
  return out;
}

/** Short text for a failed lookup of one record type. */
function describeLookupError(error: unknown): string {
  if (error instanceof Deno.errors.NotFound) return "no such host";
  if (error instanceof Deno.errors.TimedOut) return "the DNS server did not answer";
  return printable(error instanceof Error ? error.message : String(error));
}

type Answer = { ok: string[] } | { error: unknown };

/**
 * Resolves `hostname` to the IP literals to dial: a literal as it is, a numeric name as
 * `inet_aton` reads it, any other name through DNS (A and AAAA together, IPv4 and IPv6
 * interleaved) within `options.timeoutMs`. Never throws.
 */
export async function resolveHost(
  hostname: string,
  options: ResolveOptions,
): Promise<HostResolution> {
  const literal = literalAddress(hostname);
  if (literal) return { addresses: [literal] };
  if (literal === null) {
    return { invalid: `${quote(hostname)} is a number but not an IPv4 address` };
  }
  const deadlines = options.deadlines ?? DEADLINES;
  const controller = new AbortController();
  const ask = (type: "A" | "AAAA"): Promise<Answer> =>
    Deno.resolveDns(hostname, type, {
      nameServer: options.nameServer,
      signal: controller.signal,
    }).then((ok) => ({ ok }), (error) => ({ error }));
  let answers: Answer[];
  try {
    answers = await deadlines.deadline(Promise.all([ask("A"), ask("AAAA")]), options.timeoutMs, {
      what: `the DNS answer for ${quote(hostname)}`,
      onTimeout: () => controller.abort(),
    });
  } catch (error) {
    const why = error instanceof TimeoutError ? error.message : describeLookupError(error);
    return { failed: `cannot resolve ${quote(hostname)}: ${why}` };
  }
  const [v4, v6] = answers.map((a) =>
    "ok" in a
      ? a.ok.map((ip) => literalAddress(ip)).filter((ip): ip is string => typeof ip === "string")
      : []
  );
  const addresses = preferIPv6() ? interleave(v6, v4) : interleave(v4, v6);
  if (addresses.length > 0) return { addresses };
  // Both failed: a real error says more than "no such host".
  const errors = answers.flatMap((a) => ("error" in a ? [a.error] : []));
  const error = errors.find((e) => !(e instanceof Deno.errors.NotFound)) ?? errors[0];
  const why = error === undefined ? "no address" : describeLookupError(error);
  return { failed: `cannot resolve ${quote(hostname)}: ${why}` };
}
