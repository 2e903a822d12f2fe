/**
 * Sizes of a UDP datagram, in one place for every UDP tool (udp-echo, udp-ping, the SOCKS5
 * UDP relay).
 *
 * The UDP length field is 16 bits and counts the 8-byte UDP header; an IPv4 packet is at
 * most 65,535 bytes and its 20-byte header comes out of that too. IPv6 jumbograms (RFC 2675)
 * are not supported.
 *
 * @module
 */

/** Largest UDP datagram or IPv4 packet, in bytes: the 16-bit length field's maximum. */
export const MAX_UDP_DATAGRAM = 65_535;
/** Largest UDP payload over IPv4, in bytes: 65,535 - 20 (IPv4 header) - 8 (UDP header). */
export const MAX_UDP_PAYLOAD_IPV4 = 65_507;
/** Largest UDP payload over IPv6 without jumbograms, in bytes: 65,535 - 8 (UDP header). */
export const MAX_UDP_PAYLOAD_IPV6 = 65_527;
/**
 * A receive buffer one byte larger than any datagram: every datagram fits whole, so a
 * receive that fills the buffer was cut by something else.
 */
export const UDP_RECEIVE_BUFFER_SIZE = MAX_UDP_DATAGRAM + 1;

/**
 * The largest UDP payload to or from `hostname`, an address literal: IPv6 (any literal with
 * a colon) allows {@linkcode MAX_UDP_PAYLOAD_IPV6}, IPv4 {@linkcode MAX_UDP_PAYLOAD_IPV4}.
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert/strict";
 * import { maxUdpPayload } from "./datagram.ts";
 * assert.equal(maxUdpPayload("127.0.0.1"), 65_507);
 * assert.equal(maxUdpPayload("::1"), 65_527);
 * ```
 */
export function maxUdpPayload(hostname: string): number {
  return hostname.includes(":") ? MAX_UDP_PAYLOAD_IPV6 : MAX_UDP_PAYLOAD_IPV4;
}
