/**
 * The SOCKS wire format: SOCKS5 (RFC 1928), its username/password sub-negotiation
 * (RFC 1929), and the SOCKS4/4a request the server also answers. Constants carry the specs'
 * names; the address codec is shared by the server, the client and UDP ASSOCIATE.
 *
 * ```
 * greeting   VER=5 | NMETHODS | METHODS...
 * choice     VER=5 | METHOD
 * auth       VER=1 | ULEN | UNAME | PLEN | PASSWD      ->  VER=1 | STATUS
 * request    VER=5 | CMD | RSV=0 | ATYP | DST.ADDR | DST.PORT
 * reply      VER=5 | REP | RSV=0 | ATYP | BND.ADDR | BND.PORT
 * udp        RSV=0 0 | FRAG | ATYP | DST.ADDR | DST.PORT | DATA
 * ```
 *
 * @module
 */

import type { BufferedReader } from "../net/buffered_reader.ts";
import type { HostPort } from "../net/address.ts";
import { ProtocolError } from "../net/errors.ts";
import { formatIP, parseIPv4, parseIPv6 } from "../net/ip.ts";

/** Protocol version bytes. */
export const Version = {
  /** SOCKS4 and SOCKS4a requests start with 4. */
  Socks4: 0x04,
  /** SOCKS5 (RFC 1928). */
  Socks5: 0x05,
  /** Version of the username/password sub-negotiation (RFC 1929). */
  UserPassAuth: 0x01,
} as const;

/** Authentication methods (RFC 1928 section 3). */
export const Method = {
  NoAuthenticationRequired: 0x00,
  Gssapi: 0x01,
  UsernamePassword: 0x02,
  NoAcceptableMethods: 0xff,
} as const;

/** Request commands (RFC 1928 section 4). */
export const Command = {
  Connect: 0x01,
  Bind: 0x02,
  UdpAssociate: 0x03,
} as const;

/** Address types (RFC 1928 section 5). */
export const AddressType = {
  IPv4: 0x01,
  DomainName: 0x03,
  IPv6: 0x04,
} as const;

/** SOCKS5 reply codes (RFC 1928 section 6). */
export const Reply = {
  Succeeded: 0x00,
  GeneralFailure: 0x01,
  NotAllowedByRuleset: 0x02,
  NetworkUnreachable: 0x03,
  HostUnreachable: 0x04,
  ConnectionRefused: 0x05,
  TtlExpired: 0x06,
  CommandNotSupported: 0x07,
  AddressTypeNotSupported: 0x08,
} as const;

/** Username/password status (RFC 1929 section 2): 0 is success, anything else failure. */
export const AuthStatus = {
  Success: 0x00,
  Failure: 0x01,
} as const;

/** SOCKS4 reply codes (the "SOCKS 4 protocol" and "SOCKS 4A" notes). */
export const Socks4Reply = {
  /** VN of a reply is 0, not 4. */
  Version: 0x00,
  RequestGranted: 0x5a,
  RequestRejectedOrFailed: 0x5b,
} as const;

/** Human names of the reply codes, for logs and error messages. */
export const REPLY_NAMES: Record<number, string> = {
  0x00: "succeeded",
  0x01: "general SOCKS server failure",
  0x02: "connection not allowed by ruleset",
  0x03: "network unreachable",
  0x04: "host unreachable",
  0x05: "connection refused",
  0x06: "TTL expired",
  0x07: "command not supported",
  0x08: "address type not supported",
};

/** Names of the commands, for logs. */
export const COMMAND_NAMES: Record<number, string> = {
  0x01: "CONNECT",
  0x02: "BIND",
  0x03: "UDP ASSOCIATE",
};

/** Longest domain name the address format can carry (a one-byte length). */
export const MAX_DOMAIN_LENGTH = 255;

/**
 * The SOCKS server answered with a failure: a reply code other than "succeeded", no
 * acceptable authentication method, rejected credentials, or a malformed answer.
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert/strict";
 * import { Reply, Socks5Error } from "./protocol.ts";
 * const err = new Socks5Error("CONNECT to example.com:80 failed", Reply.ConnectionRefused);
 * assert.equal(err.reply, 0x05);
 * assert.equal(err.message, "CONNECT to example.com:80 failed: connection refused (0x05)");
 * ```
 */
export class Socks5Error extends Error {
  /** The reply code (RFC 1928 section 6) when the server sent one, otherwise undefined. */
  readonly reply: number | undefined;

  /** Creates the error; the reply code's name is appended to `message`. */
  constructor(message: string, reply?: number, options?: ErrorOptions) {
    super(
      reply === undefined
        ? message
        : `${message}: ${REPLY_NAMES[reply] ?? "unknown reply"} (0x${hex(reply)})`,
      options,
    );
    this.name = "Socks5Error";
    this.reply = reply;
  }
}

/** Two hex digits. */
export function hex(byte: number): string {
  return byte.toString(16).padStart(2, "0");
}

/** A destination or bound address as it travels in a request, reply or UDP header. */
export interface SocksAddress extends HostPort {
  /** How it was (or will be) encoded. */
  type: (typeof AddressType)[keyof typeof AddressType];
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/**
 * Encodes `ATYP | ADDR | PORT` for `addr`: IP literals as ATYP 1 or 4, anything else as a
 * domain name (ATYP 3).
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert/strict";
 * import { encodeAddress } from "./protocol.ts";
 * assert.deepEqual([...encodeAddress({ hostname: "127.0.0.1", port: 80 })], [1, 127, 0, 0, 1, 0, 80]);
 * assert.deepEqual([...encodeAddress({ hostname: "a.b", port: 1 })], [3, 3, 97, 46, 98, 0, 1]);
 * ```
 */
export function encodeAddress(addr: HostPort): Uint8Array {
  const v4 = parseIPv4(addr.hostname);
  const v6 = v4 ? undefined : parseIPv6(addr.hostname);
  let out: Uint8Array;
  if (v4 || v6) {
    const ip = (v4 ?? v6)!;
    out = new Uint8Array(1 + ip.length + 2);
    out[0] = v4 ? AddressType.IPv4 : AddressType.IPv6;
    out.set(ip, 1);
  } else {
    const name = encoder.encode(addr.hostname);
    if (name.length === 0 || name.length > MAX_DOMAIN_LENGTH) {
      throw new RangeError(
        `Cannot encode domain name of ${name.length} bytes: 1 to ${MAX_DOMAIN_LENGTH} allowed`,
      );
    }
    out = new Uint8Array(2 + name.length + 2);
    out[0] = AddressType.DomainName;
    out[1] = name.length;
    out.set(name, 2);
  }
  out[out.length - 2] = addr.port >> 8;
  out[out.length - 1] = addr.port & 0xff;
  return out;
}

/** Raised by {@linkcode readAddress} for an ATYP it does not know (reply 0x08). */
export class AddressTypeError extends ProtocolError {
  /** The unknown ATYP byte. */
  readonly addressType: number;
  /** Creates the error. */
  constructor(addressType: number) {
    super(`Cannot read address: unknown address type 0x${hex(addressType)}`);
    this.name = "AddressTypeError";
    this.addressType = addressType;
  }
}

/**
 * Reads `ATYP | ADDR | PORT` from `reader`. Throws {@linkcode AddressTypeError} for an
 * unknown ATYP (after consuming only that byte) and {@linkcode ProtocolError} for an empty
 * domain name.
 */
export async function readAddress(reader: BufferedReader): Promise<SocksAddress> {
  const type = await reader.readU8();
  let hostname: string;
  if (type === AddressType.IPv4) {
    hostname = formatIP(await reader.readExact(4));
  } else if (type === AddressType.IPv6) {
    hostname = formatIP(await reader.readExact(16));
  } else if (type === AddressType.DomainName) {
    const len = await reader.readU8();
    if (len === 0) throw new ProtocolError("Cannot read address: empty domain name");
    hostname = decoder.decode(await reader.readExact(len, MAX_DOMAIN_LENGTH));
  } else {
    throw new AddressTypeError(type);
  }
  const port = await reader.readU16();
  return { type, hostname, port };
}

/**
 * Parses `ATYP | ADDR | PORT` at the start of `bytes` (a UDP datagram); returns the address
 * and its encoded length, or undefined when it is truncated or of an unknown type.
 */
export function decodeAddress(
  bytes: Uint8Array,
): { address: SocksAddress; length: number } | undefined {
  if (bytes.length < 1) return undefined;
  const type = bytes[0];
  let hostname: string;
  let end: number;
  if (type === AddressType.IPv4) {
    end = 5;
    if (bytes.length < end + 2) return undefined;
    hostname = formatIP(bytes.subarray(1, end));
  } else if (type === AddressType.IPv6) {
    end = 17;
    if (bytes.length < end + 2) return undefined;
    hostname = formatIP(bytes.subarray(1, end));
  } else if (type === AddressType.DomainName) {
    if (bytes.length < 2 || bytes[1] === 0) return undefined;
    end = 2 + bytes[1];
    if (bytes.length < end + 2) return undefined;
    hostname = decoder.decode(bytes.subarray(2, end));
  } else {
    return undefined;
  }
  const port = (bytes[end] << 8) | bytes[end + 1];
  return { address: { type, hostname, port }, length: end + 2 };
}

/**
 * Encodes a SOCKS5 reply `VER | REP | RSV | ATYP | BND.ADDR | BND.PORT`. Without `bound`
 * (failures) the address is 0.0.0.0:0, as RFC 1928 leaves it unspecified.
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert/strict";
 * import { encodeReply, Reply } from "./protocol.ts";
 * const r = encodeReply(Reply.CommandNotSupported);
 * assert.deepEqual([...r], [5, 7, 0, 1, 0, 0, 0, 0, 0, 0]);
 * ```
 */
export function encodeReply(reply: number, bound?: HostPort): Uint8Array {
  const addr = encodeAddress(bound ?? { hostname: "0.0.0.0", port: 0 });
  const out = new Uint8Array(3 + addr.length);
  out[0] = Version.Socks5;
  out[1] = reply;
  out.set(addr, 3);
  return out;
}

/** Encodes a SOCKS4 reply `VN=0 | CD | DSTPORT | DSTIP` (8 bytes). */
export function encodeSocks4Reply(code: number, bound?: HostPort): Uint8Array {
  const out = new Uint8Array(8);
  out[0] = Socks4Reply.Version;
  out[1] = code;
  const ip = bound ? parseIPv4(bound.hostname) : undefined;
  if (bound && ip) {
    out[2] = bound.port >> 8;
    out[3] = bound.port & 0xff;
    out.set(ip, 4);
  }
  return out;
}
