/**
 * Options of the SOCKS5 server, and how their defaults ({@linkcode SOCKS5_DEFAULTS}) are
 * filled in.
 *
 * @module
 */

import type { Logger } from "../log.ts";
import type { UserTable } from "./auth.ts";
import { SOCKS5_DEFAULTS } from "./limits.ts";
import type { NameServer } from "./resolve.ts";
import { DestinationRules } from "./rules.ts";

/** Options of {@linkcode startSocks5Server}; limits default to {@linkcode SOCKS5_DEFAULTS}. */
export interface Socks5ServerOptions {
  /** Users for username/password authentication; when non-empty, no-auth and SOCKS4 are off. */
  users?: UserTable;
  /** Destination rules; default allows everything. */
  rules?: DestinationRules;
  /** Serve BIND. @default {true} */
  allowBind?: boolean;
  /** Serve UDP ASSOCIATE. @default {true} */
  allowUdp?: boolean;
  /** Address put in BIND and UDP ASSOCIATE replies instead of the local one (behind NAT). */
  advertise?: string;
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
  /** Where session lines go; none logs nothing. */
  logger?: Logger;
}

/** Options with every default filled in. */
export type ResolvedOptions =
  & Required<Omit<Socks5ServerOptions, "users" | "advertise" | "nameServer" | "logger">>
  & Pick<Socks5ServerOptions, "users" | "advertise" | "nameServer" | "logger">;

/** Fills defaults in. */
export function resolveOptions(options: Socks5ServerOptions): ResolvedOptions {
  const d = SOCKS5_DEFAULTS;
  return {
    users: options.users,
    advertise: options.advertise,
    nameServer: options.nameServer,
    logger: options.logger,
    rules: options.rules ?? new DestinationRules(),
    allowBind: options.allowBind ?? true,
    allowUdp: options.allowUdp ?? true,
    handshakeTimeoutMs: options.handshakeTimeoutMs ?? d.handshakeTimeoutMs,
    connectTimeoutMs: options.connectTimeoutMs ?? d.connectTimeoutMs,
    idleTimeoutMs: options.idleTimeoutMs ?? d.idleTimeoutMs,
    halfOpenTimeoutMs: options.halfOpenTimeoutMs ?? d.halfOpenTimeoutMs,
    bindTimeoutMs: options.bindTimeoutMs ?? d.bindTimeoutMs,
    maxConnections: options.maxConnections ?? d.maxConnections,
    handshakeBufferSize: options.handshakeBufferSize ?? d.handshakeBufferSize,
    initialRelayBufferSize: options.initialRelayBufferSize ?? d.initialRelayBufferSize,
    maxRelayBufferSize: options.maxRelayBufferSize ?? d.maxRelayBufferSize,
    maxDatagramSize: options.maxDatagramSize ?? d.maxDatagramSize,
    maxUdpPeers: options.maxUdpPeers ?? d.maxUdpPeers,
    lingerMs: options.lingerMs ?? d.lingerMs,
    lingerBytes: options.lingerBytes ?? d.lingerBytes,
    authMaxFailures: options.authMaxFailures ?? d.authMaxFailures,
    authFailureWindowMs: options.authFailureWindowMs ?? d.authFailureWindowMs,
    authLockoutMs: options.authLockoutMs ?? d.authLockoutMs,
    authMaxSources: options.authMaxSources ?? d.authMaxSources,
  };
}
