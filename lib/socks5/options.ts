/**
 * Options of the SOCKS5 server and their defaults, in one place: every limit and policy is
 * in {@linkcode SOCKS5_DEFAULTS}, overridable by an option of {@linkcode Socks5ServerOptions}
 * and, where it makes sense, a command-line flag; {@linkcode resolveOptions} lays the options
 * over the defaults with {@linkcode withDefaults}.
 *
 * @module
 */

import { withDefaults } from "../defaults.ts";
import type { Logger } from "../log.ts";
import { MAX_UDP_DATAGRAM } from "../udp/datagram.ts";
import type { UserTable } from "./auth.ts";
import type { NameServer } from "./resolve.ts";
import { AddressRules } from "../net/address_rules.ts";

/** Defaults of the SOCKS5 server's limits and timeouts. */
export const SOCKS5_DEFAULTS = {
  /** Serve BIND (`--no-bind` turns it off). */
  allowBind: true,
  /** Serve UDP ASSOCIATE (`--no-udp` turns it off). */
  allowUdp: true,
  /**
   * Serve HTTP proxy clients (CONNECT and absolute-form requests) on the same port, told apart
   * by their first byte (`http.ts`; `--no-http` turns it off).
   */
  allowHttp: true,
  /** A kept-alive HTTP proxy client may wait this long between requests, in ms. */
  httpKeepAliveMs: 60_000,
  /**
   * A forwarded HTTP request (not CONNECT) where no byte moved either way for this long is
   * cut, with 504 when no answer started, in ms.
   */
  httpIdleMs: 60_000,
  /** Greeting, authentication and request must all arrive within this, in ms (`--handshake-timeout`). */
  handshakeTimeoutMs: 10_000,
  /** Dialling the destination (every resolved address together) may take this long, in ms (`--connect-timeout`). */
  connectTimeoutMs: 10_000,
  /** A tunnel where no byte moved either way for this long is closed, in ms; 0 never (`--idle-timeout`). */
  idleTimeoutMs: 3_600_000,
  /** Once one direction of a tunnel ended, the other may go on this long, in ms. */
  halfOpenTimeoutMs: 60_000,
  /** A BIND waits this long for its incoming connection, in ms. */
  bindTimeoutMs: 60_000,
  /** Concurrent client connections; more are closed at once (`--max-conns`). */
  maxConnections: 1024,
  /**
   * Handshake buffer per connection. It bounds read-ahead, not message size (longer fields
   * are read straight through); it stays with the tunnel to hand over read-ahead bytes.
   */
  handshakeBufferSize: 512,
  /**
   * First relay buffer per direction. Small, so an idle tunnel costs little; it doubles each
   * time a read fills it, up to `maxRelayBufferSize`.
   */
  initialRelayBufferSize: 512,
  /** Largest relay buffer per direction. */
  maxRelayBufferSize: 256 * 1024,
  /** Largest UDP datagram relayed (the SOCKS header included). */
  maxDatagramSize: MAX_UDP_DATAGRAM,
  /** Distinct destinations one UDP association may send to (replies come only from them). */
  maxUdpPeers: 1024,
  /**
   * After a failure, the client's unread bytes are drained for up to this long (and up to
   * `lingerBytes`) before the close, so that the close does not reset the connection and
   * destroy the reply on its way. In ms.
   */
  lingerMs: 1000,
  /** Bytes drained after a failure at most. */
  lingerBytes: 64 * 1024,
  /**
   * Failed logins from one source (an IPv4 address, an IPv6 /64) within
   * `authFailureWindowMs` that lock it out for `authLockoutMs`: its logins are then refused
   * without a look at the password. Other sources are not affected.
   */
  authMaxFailures: 5,
  /** How long a failed login counts towards `authMaxFailures`, in ms. */
  authFailureWindowMs: 60_000,
  /** How long a source that used up its failures is refused, in ms. */
  authLockoutMs: 60_000,
  /** Sources whose failures are remembered at most (the least recently seen go first). */
  authMaxSources: 10_000,
} as const satisfies Partial<Socks5ServerOptions>;

/** Options of {@linkcode startSocks5Server}; limits default to {@linkcode SOCKS5_DEFAULTS}. */
export interface Socks5ServerOptions {
  /** Users for username/password authentication; when non-empty, no-auth and SOCKS4 are off. */
  users?: UserTable;
  /** Destination rules; default allows everything. */
  rules?: AddressRules;
  /**
   * Client (source address) rules, checked right after accept, before any byte is read;
   * default allows everything.
   */
  clientRules?: AddressRules;
  /** Serve BIND. @default {true} */
  allowBind?: boolean;
  /** Serve UDP ASSOCIATE. @default {true} */
  allowUdp?: boolean;
  /** Serve HTTP proxy clients on the same port. @default {true} */
  allowHttp?: boolean;
  /** Wait between a kept-alive HTTP client's requests, in ms. @default {60000} */
  httpKeepAliveMs?: number;
  /** Idle limit of a forwarded HTTP exchange, in ms. @default {60000} */
  httpIdleMs?: number;
  /** Address put in BIND and UDP ASSOCIATE replies instead of the local one (behind NAT). */
  advertise?: string;
  /** Local address of outgoing CONNECT connections (`--bind-out`); without, the system's choice. */
  bindOut?: string;
  /** Greeting, authentication and request deadline, in ms. @default {10000} */
  handshakeTimeoutMs?: number;
  /** Deadline for dialling the destination, in ms. @default {10000} */
  connectTimeoutMs?: number;
  /** Close a tunnel idle this long, in ms; 0 never. @default {3600000} */
  idleTimeoutMs?: number;
  /** Cap on a half-closed tunnel, in ms. @default {60000} */
  halfOpenTimeoutMs?: number;
  /** How long a BIND waits for its peer, in ms. @default {60000} */
  bindTimeoutMs?: number;
  /** Concurrent client connections. @default {1024} */
  maxConnections?: number;
  /** Handshake buffer per connection, in bytes. @default {512} */
  handshakeBufferSize?: number;
  /** First relay buffer per direction, in bytes. @default {512} */
  initialRelayBufferSize?: number;
  /** Largest relay buffer per direction, in bytes. @default {262144} */
  maxRelayBufferSize?: number;
  /** Largest UDP datagram relayed, in bytes. @default {65535} */
  maxDatagramSize?: number;
  /** Destinations per UDP association. @default {1024} */
  maxUdpPeers?: number;
  /** After a failure, drain unread client bytes this long before closing, in ms. @default {1000} */
  lingerMs?: number;
  /** After a failure, drain at most this many bytes. @default {65536} */
  lingerBytes?: number;
  /** Failed logins from one source within `authFailureWindowMs` that lock it out. @default {5} */
  authMaxFailures?: number;
  /** How long a failed login counts, in ms. @default {60000} */
  authFailureWindowMs?: number;
  /** How long a locked-out source is refused, in ms. @default {60000} */
  authLockoutMs?: number;
  /** Sources whose failed logins are remembered at most. @default {10000} */
  authMaxSources?: number;
  /** DNS server to ask instead of the system's (`/etc/hosts` is read first either way). */
  nameServer?: NameServer;
  /** Where the per-connection log lines go; none logs nothing. */
  logger?: Logger;
}

/** Options with every default filled in. */
export type ResolvedOptions =
  & Required<Omit<Socks5ServerOptions, "users" | "advertise" | "bindOut" | "nameServer" | "logger">>
  & Pick<Socks5ServerOptions, "users" | "advertise" | "bindOut" | "nameServer" | "logger">;

/**
 * `options` laid over {@linkcode SOCKS5_DEFAULTS}; no rules allow every destination.
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert/strict";
 * import { resolveOptions, SOCKS5_DEFAULTS } from "./options.ts";
 * const opts = resolveOptions({ idleTimeoutMs: 0, maxConnections: undefined });
 * assert.equal(opts.idleTimeoutMs, 0);
 * assert.equal(opts.maxConnections, SOCKS5_DEFAULTS.maxConnections);
 * assert.ok(opts.rules.empty);
 * ```
 */
export function resolveOptions(options: Socks5ServerOptions): ResolvedOptions {
  return withDefaults(SOCKS5_DEFAULTS, {
    ...options,
    rules: options.rules ?? new AddressRules(),
    clientRules: options.clientRules ?? new AddressRules(),
  });
}
