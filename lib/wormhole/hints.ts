/**
 * Transit connection hints: the `hints-v1` list each side sends in its `transit` message, and
 * the `abilities-v1` list next to it.
 *
 * ```json
 * {"transit": {
 *   "abilities-v1": [{"type": "direct-tcp-v1"}, {"type": "relay-v1"}],
 *   "hints-v1": [
 *     {"type": "direct-tcp-v1", "priority": 0.0, "hostname": "192.168.1.5", "port": 40321},
 *     {"type": "relay-v1", "hints": [
 *       {"type": "direct-tcp-v1", "priority": 0.0, "hostname": "relay.example", "port": 4001}]}
 *   ]
 * }}
 * ```
 *
 * | hint type       | meaning                                                       |
 * | --------------- | ------------------------------------------------------------- |
 * | `direct-tcp-v1` | connect to `hostname:port`, then the transit handshake         |
 * | `relay-v1`      | a relay reachable by any of its nested `direct-tcp-v1` hints   |
 * | `tor-tcp-v1`    | an onion service: ignored (sockit has no Tor)                 |
 *
 * {@linkcode parseHints} validates what a peer sent: the list and each relay's nested list are
 * bounded ({@linkcode HINT_LIMITS}), and a hint that is malformed (a hostname that is too long
 * or has odd characters, a port outside 1-65535, an unknown type) is skipped with a reason, as
 * the Python client does. {@linkcode encodeHints} builds ours; {@linkcode localAddresses} finds
 * the addresses to advertise and {@linkcode parseRelayAddress} reads a `--transit` argument.
 *
 * @module
 */

import { formatAddress, parseAddress } from "../net/address.ts";
import { LimitError, ProtocolError, UsageError } from "../net/errors.ts";
import { quote } from "../log.ts";

/** The hint types of the protocol. */
export const HintType = {
  DirectTcpV1: "direct-tcp-v1",
  RelayV1: "relay-v1",
  TorTcpV1: "tor-tcp-v1",
} as const;

/** What sockit can use, for `abilities-v1`: direct TCP connections and relays. */
export const TRANSIT_ABILITIES: readonly { readonly type: string }[] = [
  { type: HintType.DirectTcpV1 },
  { type: HintType.RelayV1 },
];

/** Bounds on the hints a peer may send. */
export const HINT_LIMITS = {
  /** Entries in `hints-v1` (one per address of the peer, plus its relays). */
  maxHints: 64,
  /** Nested hints of one `relay-v1` entry (ways to reach that one relay). */
  maxRelayHints: 16,
  /** Longest hostname, in characters (the DNS limit). */
  maxHostnameLength: 253,
} as const;

/** A place to make a TCP connection to: a peer's address or a relay's. */
export interface DirectHint {
  /** IPv4 or IPv6 literal (no brackets) or a DNS name. */
  hostname: string;
  /** TCP port, 1 to 65535. */
  port: number;
  /** Higher is tried first; the Python client always sends 0. */
  priority: number;
}

/** One relay and the ways to reach it. */
export interface RelayHint {
  /** Equivalent addresses of the relay. */
  hints: DirectHint[];
}

/** What {@linkcode parseHints} found in a peer's `hints-v1`. */
export interface ParsedHints {
  /** The peer's own addresses. */
  direct: DirectHint[];
  /** The relays the peer suggests. */
  relays: RelayHint[];
  /** One line per hint that was skipped, saying why (peer strings quoted). */
  ignored: string[];
}

/** The JSON form of a `direct-tcp-v1` hint. */
export interface DirectHintJson {
  /** Always `direct-tcp-v1`. */
  type: "direct-tcp-v1";
  /** See {@linkcode DirectHint.priority}. */
  priority: number;
  /** See {@linkcode DirectHint.hostname}. */
  hostname: string;
  /** See {@linkcode DirectHint.port}. */
  port: number;
}

/** The JSON form of a `relay-v1` hint. */
export interface RelayHintJson {
  /** Always `relay-v1`. */
  type: "relay-v1";
  /** The relay's addresses. */
  hints: DirectHintJson[];
}

/** One entry of `hints-v1` as sockit sends it. */
export type HintJson = DirectHintJson | RelayHintJson;

/** Options for {@linkcode parseHints}. */
export interface ParseHintsOptions {
  /** Bounds to apply. @default {HINT_LIMITS} */
  limits?: Partial<typeof HINT_LIMITS>;
}

const HOSTNAME_CHARS = /^[A-Za-z0-9._:%-]+$/;

function describe(value: unknown): string {
  let text: string;
  try {
    text = JSON.stringify(value) ?? String(value);
  } catch {
    text = String(value);
  }
  return quote(text.length > 80 ? `${text.slice(0, 80)}...` : text);
}

/** A `direct-tcp-v1` object, or the reason it is not usable. */
function parseDirect(value: unknown, maxHostname: number): DirectHint | string {
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    return `hint ${describe(value)} is not an object`;
  }
  const h = value as Record<string, unknown>;
  if (h.type === HintType.TorTcpV1) return `tor hint ${describe(h.hostname)} (no Tor support)`;
  if (h.type !== HintType.DirectTcpV1) return `hint of unknown type ${describe(h.type)}`;
  const { hostname, port } = h;
  const priority = h.priority ?? 0;
  if (typeof hostname !== "string" || hostname.length === 0) {
    return `hint without a hostname: ${describe(value)}`;
  }
  if (hostname.length > maxHostname) {
    return `hint hostname of ${hostname.length} characters (limit ${maxHostname})`;
  }
  if (!HOSTNAME_CHARS.test(hostname)) return `hint hostname ${quote(hostname)} is malformed`;
  if (isLinkLocal(hostname)) return `hint hostname ${quote(hostname)} is link-local`;
  if (typeof port !== "number" || !Number.isInteger(port) || port < 1 || port > 65535) {
    return `hint port ${describe(port)} for ${quote(hostname)} is not 1 to 65535`;
  }
  if (typeof priority !== "number" || !Number.isFinite(priority)) {
    return `hint priority ${describe(priority)} for ${quote(hostname)} is not a number`;
  }
  return { hostname, port, priority };
}

/**
 * Validates a peer's `hints-v1` value. Throws {@linkcode ProtocolError} when it is not a list
 * and {@linkcode LimitError} when it (or one relay's nested list) is longer than the limit;
 * otherwise skips each unusable hint with a reason in `ignored`. Duplicates are dropped.
 *
 * @example A direct hint, a relay and a tor hint (ignored)
 * ```ts
 * import assert from "node:assert/strict";
 * import { parseHints } from "./hints.ts";
 * const parsed = parseHints([
 *   { type: "direct-tcp-v1", priority: 0.0, hostname: "10.0.0.5", port: 4100 },
 *   { type: "relay-v1", hints: [{ type: "direct-tcp-v1", hostname: "relay.example", port: 4001 }] },
 *   { type: "tor-tcp-v1", hostname: "abc.onion", port: 80 },
 *   { type: "direct-tcp-v1", hostname: "10.0.0.6", port: 70000 },
 * ]);
 * assert.deepEqual(parsed.direct, [{ hostname: "10.0.0.5", port: 4100, priority: 0 }]);
 * assert.equal(parsed.relays[0].hints[0].hostname, "relay.example");
 * assert.equal(parsed.ignored.length, 2);
 * ```
 */
export function parseHints(value: unknown, options: ParseHintsOptions = {}): ParsedHints {
  const limits = { ...HINT_LIMITS, ...options.limits };
  if (!Array.isArray(value)) throw new ProtocolError(`hints-v1 is not a list: ${describe(value)}`);
  if (value.length > limits.maxHints) {
    throw new LimitError(`hints-v1 has ${value.length} hints (limit ${limits.maxHints})`);
  }
  const out: ParsedHints = { direct: [], relays: [], ignored: [] };
  const seen = new Set<string>();
  for (const entry of value) {
    const type = typeof entry === "object" && entry !== null
      ? (entry as Record<string, unknown>).type
      : undefined;
    if (type !== HintType.RelayV1) {
      const hint = parseDirect(entry, limits.maxHostnameLength);
      if (typeof hint === "string") out.ignored.push(hint);
      else if (!seen.has(hintKey(hint))) {
        seen.add(hintKey(hint));
        out.direct.push(hint);
      }
      continue;
    }
    const nested = (entry as Record<string, unknown>).hints;
    if (!Array.isArray(nested)) {
      out.ignored.push(`relay hint without a hints list: ${describe(entry)}`);
      continue;
    }
    if (nested.length > limits.maxRelayHints) {
      throw new LimitError(
        `relay-v1 hint has ${nested.length} hints (limit ${limits.maxRelayHints})`,
      );
    }
    const hints: DirectHint[] = [];
    for (const n of nested) {
      const hint = parseDirect(n, limits.maxHostnameLength);
      if (typeof hint === "string") out.ignored.push(`relay ${hint}`);
      else if (!hints.some((h) => hintKey(h) === hintKey(hint))) hints.push(hint);
    }
    if (hints.length > 0) out.relays.push({ hints });
  }
  return out;
}

/** `HOST:PORT` of a hint, for matching duplicates and for messages. */
export function hintKey(hint: DirectHint): string {
  return formatAddress(hint);
}

function directJson(hint: DirectHint): DirectHintJson {
  return {
    type: HintType.DirectTcpV1,
    priority: hint.priority,
    hostname: hint.hostname,
    port: hint.port,
  };
}

/**
 * The `hints-v1` list for our direct addresses and relays.
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert/strict";
 * import { encodeHints } from "./hints.ts";
 * const hints = encodeHints(
 *   [{ hostname: "127.0.0.1", port: 4100, priority: 0 }],
 *   [{ hints: [{ hostname: "relay.example", port: 4001, priority: 0 }] }],
 * );
 * assert.equal(hints.length, 2);
 * assert.equal(hints[0].type, "direct-tcp-v1");
 * assert.equal(hints[1].type, "relay-v1");
 * ```
 */
export function encodeHints(direct: DirectHint[], relays: RelayHint[]): HintJson[] {
  return [
    ...direct.map(directJson),
    ...relays.map((r): RelayHintJson => ({
      type: HintType.RelayV1,
      hints: r.hints.map(directJson),
    })),
  ];
}

/**
 * Parses a relay address as given to `--transit`: `tcp:HOST:PORT` (the Python client's
 * `--transit-helper` form, optionally with `:priority=N`) or `HOST:PORT` (`[IPv6]:PORT`).
 * Throws {@linkcode UsageError}.
 *
 * @example Both forms
 * ```ts
 * import assert from "node:assert/strict";
 * import { parseRelayAddress } from "./hints.ts";
 * assert.deepEqual(parseRelayAddress("tcp:relay.example:4001"), {
 *   hostname: "relay.example", port: 4001, priority: 0,
 * });
 * assert.equal(parseRelayAddress("[::1]:4001").hostname, "::1");
 * assert.throws(() => parseRelayAddress("tcp:relay.example"), /expected tcp:HOST:PORT/);
 * ```
 */
export function parseRelayAddress(text: string): DirectHint {
  let rest = text;
  let priority = 0;
  if (text.startsWith("tcp:[")) {
    rest = text.slice(4);
  } else if (text.startsWith("tcp:")) {
    const pieces = text.slice(4).split(":");
    const extra = pieces.filter((p) => p.startsWith("priority="));
    if (extra.length > 0) {
      priority = Number(extra[0].slice("priority=".length));
      if (!Number.isFinite(priority)) {
        throw new UsageError(`Cannot parse relay ${quote(text)}: bad priority`);
      }
    }
    const hostPort = pieces.filter((p) => !p.startsWith("priority="));
    if (hostPort.length !== 2) {
      throw new UsageError(`Cannot parse relay ${quote(text)}: expected tcp:HOST:PORT`);
    }
    rest = hostPort.join(":");
  } else if (/^[a-z0-9]+:[^0-9[]/i.test(text) && !text.includes("]")) {
    throw new UsageError(`Cannot parse relay ${quote(text)}: only tcp: relays are supported`);
  }
  const { hostname, port } = parseAddress(rest);
  if (port === 0) throw new UsageError(`Cannot parse relay ${quote(text)}: port 0`);
  if (hostname.length > HINT_LIMITS.maxHostnameLength || !HOSTNAME_CHARS.test(hostname)) {
    throw new UsageError(`Cannot parse relay ${quote(text)}: bad hostname`);
  }
  return { hostname, port, priority };
}

/** True for IPv6 link-local addresses (fe80::/10), which need an interface to be reached. */
function isLinkLocal(address: string): boolean {
  return /^fe[89ab][0-9a-f]:/i.test(address);
}

/**
 * This machine's addresses to advertise as direct hints: every interface address except
 * loopback and IPv6 link-local ones, IPv4 first; `["127.0.0.1"]` when there is no other (as the
 * Python client does). Needs `--allow-sys=networkInterfaces`. `options.ipv6: false` leaves
 * IPv6 out (a listener that is IPv4 only).
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert/strict";
 * import { localAddresses } from "./hints.ts";
 * const addresses = localAddresses();
 * assert.ok(addresses.length > 0);
 * assert.ok(!addresses.includes("::1"));
 * ```
 */
export function localAddresses(options: { ipv6?: boolean } = {}): string[] {
  const v4: string[] = [];
  const v6: string[] = [];
  for (const i of Deno.networkInterfaces()) {
    if (i.family === "IPv4") {
      if (!i.address.startsWith("127.") && !v4.includes(i.address)) v4.push(i.address);
    } else if (options.ipv6 !== false) {
      const a = i.address;
      if (a !== "::1" && !isLinkLocal(a) && !v6.includes(a)) v6.push(a);
    }
  }
  const all = [...v4, ...v6];
  return all.length > 0 ? all : ["127.0.0.1"];
}
