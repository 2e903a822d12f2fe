/**
 * Limits and policies of the SOCKS5 server, in one place. Each is overridable by an option of
 * {@linkcode Socks5ServerOptions} and, where it makes sense, a command-line flag.
 *
 * @module
 */

import type { Socks5ServerOptions } from "./options.ts";

/** Defaults of the SOCKS5 server's limits and timeouts. */
export const SOCKS5_DEFAULTS = {
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
  maxDatagramSize: 65_535,
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
