/**
 * Length-prefixed frames shared by the relay's framed mode and the transfer protocol.
 *
 * Wire format: `type: u8 | length: u32 (big-endian) | payload: length bytes`.
 * A length above the reader's `maxPayload` is rejected with a {@linkcode LimitError} before
 * any allocation.
 *
 * Types 0x00 to 0x0f are shared control frames ({@linkcode ControlFrame}); each protocol
 * numbers its own frames from 0x10 up.
 *
 * Every session starts with a hello frame from each side, whose payload is
 * `magic "sockit" | version: u8 | protocol name (ASCII)`. {@linkcode readHello} turns a peer
 * that is not sockit, speaks another protocol or another version into a clear error.
 *
 * @module
 */

import type { BufferedReader } from "./buffered_reader.ts";
import { quote } from "../log.ts";
import { LimitError, ProtocolError, VersionMismatchError } from "./errors.ts";

/** Bytes in a frame header: one type byte and a four-byte length. */
export const FRAME_HEADER_SIZE = 5;

/** Default largest payload accepted by {@linkcode readFrame}: 1 MiB. */
export const DEFAULT_MAX_PAYLOAD = 1024 * 1024;

/** Control frame types shared by every framed protocol. */
export const ControlFrame = {
  /** First frame of each side: magic, version, protocol name. */
  Hello: 0x00,
  /** Heartbeat request; the peer answers {@linkcode ControlFrame.Pong} with the same payload. */
  Ping: 0x01,
  /** Heartbeat answer. */
  Pong: 0x02,
  /** The sender is closing; payload is a UTF-8 reason. */
  Bye: 0x03,
  /** The sender refuses something; payload is a UTF-8 message. */
  Error: 0x04,
} as const;

/** Magic bytes at the start of every hello payload. */
export const HELLO_MAGIC: Uint8Array = new TextEncoder().encode("sockit");

/** One decoded frame. */
export interface Frame {
  /** Frame type byte. */
  type: number;
  /** Payload bytes (a fresh array owned by the caller). */
  payload: Uint8Array;
}

/** Options for {@linkcode readFrame}. */
export interface ReadFrameOptions {
  /** Largest payload accepted, in bytes. @default {1048576} */
  maxPayload?: number;
}

/**
 * Encodes a frame header for a payload of `length` bytes, for payloads written separately.
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert/strict";
 * import { encodeFrameHeader } from "./frame.ts";
 * assert.deepEqual(encodeFrameHeader(0x10, 258), new Uint8Array([0x10, 0, 0, 1, 2]));
 * ```
 */
export function encodeFrameHeader(type: number, length: number): Uint8Array {
  const header = new Uint8Array(FRAME_HEADER_SIZE);
  header[0] = type;
  new DataView(header.buffer).setUint32(1, length);
  return header;
}

/**
 * Encodes a whole frame into one buffer.
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert/strict";
 * import { encodeFrame } from "./frame.ts";
 * const f = encodeFrame(0x10, new Uint8Array([7]));
 * assert.deepEqual(f, new Uint8Array([0x10, 0, 0, 0, 1, 7]));
 * ```
 */
export function encodeFrame(type: number, payload: Uint8Array = new Uint8Array(0)): Uint8Array {
  const out = new Uint8Array(FRAME_HEADER_SIZE + payload.length);
  out[0] = type;
  new DataView(out.buffer).setUint32(1, payload.length);
  out.set(payload, FRAME_HEADER_SIZE);
  return out;
}

/**
 * Reads the header of the next frame: its type and payload length, the length checked against
 * `maxPayload`. Resolves null at a clean end of file between frames. The caller then reads
 * the payload itself (useful to stream large payloads into a reused buffer).
 */
export async function readFrameHeader(
  reader: BufferedReader,
  options: ReadFrameOptions = {},
): Promise<{ type: number; length: number } | null> {
  const max = options.maxPayload ?? DEFAULT_MAX_PAYLOAD;
  if (reader.buffered === 0 && !(await reader.fill())) return null;
  const type = await reader.readU8();
  const length = await reader.readU32();
  if (length > max) {
    throw new LimitError(
      `Cannot read frame of type 0x${type.toString(16)}: length ${length} exceeds limit ${max}`,
    );
  }
  return { type, length };
}

/**
 * Reads one frame. Resolves null at a clean end of file between frames; a frame cut short
 * raises {@linkcode UnexpectedEofError}, an oversized one {@linkcode LimitError}.
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert/strict";
 * import { BufferedReader } from "./buffered_reader.ts";
 * import { encodeFrame, readFrame } from "./frame.ts";
 * const bytes = encodeFrame(0x10, new Uint8Array([1, 2]));
 * let done = false;
 * const reader = new BufferedReader({ read: (p) => {
 *   if (done) return Promise.resolve(null);
 *   p.set(bytes); done = true; return Promise.resolve(bytes.length);
 * } });
 * const frame = await readFrame(reader);
 * assert.equal(frame?.type, 0x10);
 * assert.deepEqual(frame?.payload, new Uint8Array([1, 2]));
 * ```
 */
export async function readFrame(
  reader: BufferedReader,
  options: ReadFrameOptions = {},
): Promise<Frame | null> {
  const header = await readFrameHeader(reader, options);
  if (header === null) return null;
  const payload = await reader.readExact(header.length, header.length);
  return { type: header.type, payload };
}

/**
 * Encodes this side's hello frame for `protocol` at `version`.
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert/strict";
 * import { encodeHello } from "./frame.ts";
 * assert.equal(encodeHello("relay", 1)[0], 0x00);
 * ```
 */
export function encodeHello(protocol: string, version: number): Uint8Array {
  const name = new TextEncoder().encode(protocol);
  const payload = new Uint8Array(HELLO_MAGIC.length + 1 + name.length);
  payload.set(HELLO_MAGIC);
  payload[HELLO_MAGIC.length] = version;
  payload.set(name, HELLO_MAGIC.length + 1);
  return encodeFrame(ControlFrame.Hello, payload);
}

/** Which protocol and version {@linkcode readHello} expects. */
export interface HelloExpectation {
  /** Protocol name, e.g. "relay". */
  protocol: string;
  /** Protocol version this side speaks. */
  version: number;
}

/**
 * Reads the peer's hello and checks its magic, protocol and version. Throws
 * {@linkcode ProtocolError} for a peer that is not sockit, and
 * {@linkcode VersionMismatchError} for another protocol or version. Resolves the peer's
 * version (equal to `expected.version`).
 */
export async function readHello(
  reader: BufferedReader,
  expected: HelloExpectation,
): Promise<number> {
  const { protocol, version } = expected;
  let frame: Frame | null;
  try {
    frame = await readFrame(reader, { maxPayload: 64 });
  } catch (err) {
    if (err instanceof LimitError) {
      throw new ProtocolError(`Cannot start ${protocol} session: peer is not a sockit peer`, {
        cause: err,
      });
    }
    throw err;
  }
  if (frame === null) {
    throw new ProtocolError(`Cannot start ${protocol} session: peer closed before its hello`);
  }
  const p = frame.payload;
  const magicOk = frame.type === ControlFrame.Hello && p.length > HELLO_MAGIC.length &&
    HELLO_MAGIC.every((b, i) => p[i] === b);
  if (!magicOk) {
    throw new ProtocolError(`Cannot start ${protocol} session: peer is not a sockit peer`);
  }
  const peerVersion = p[HELLO_MAGIC.length];
  const peerProtocol = new TextDecoder().decode(p.subarray(HELLO_MAGIC.length + 1));
  if (peerProtocol !== protocol || peerVersion !== version) {
    // The name comes from the peer: anything but a plain name is quoted, so it cannot forge
    // a log line.
    const shown = /^[\w.-]{1,32}$/.test(peerProtocol) ? peerProtocol : quote(peerProtocol);
    throw new VersionMismatchError(
      `Cannot start ${protocol} session: peer speaks ${shown} v${peerVersion}, ` +
        `this side speaks ${protocol} v${version}`,
    );
  }
  return peerVersion;
}
