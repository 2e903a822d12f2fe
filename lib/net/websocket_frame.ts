/**
 * The WebSocket wire format (RFC 6455 section 5), server side: reading a client's frame header
 * with every rule checked before a payload byte is read or allocated, and encoding the
 * server's (never masked) frames. `websocket.ts` builds the connection on it.
 *
 * ```
 *  0               1               2               3
 *  FIN RSV1-3 opcode(4) | MASK len7 | len16 (len7 = 126) or len64 (len7 = 127) | mask key (4) |
 *  payload (len bytes, XORed with the mask key by the client)
 * ```
 *
 * | rule (client frames)                                        | close code |
 * | ----------------------------------------------------------- | ---------- |
 * | RSV1-3 set (no extension is ever negotiated)                | 1002       |
 * | opcode 0x3-0x7 or 0xB-0xF                                   | 1002       |
 * | MASK bit clear (section 5.1: clients MUST mask)             | 1002       |
 * | control frame (close, ping, pong) not FIN or longer than 125 | 1002       |
 * | 64-bit length with its top bit set, or above the size limit | 1009       |
 * | close payload of 1 byte, or a code not allowed on the wire  | 1002       |
 * | close reason or text message not valid UTF-8                | 1007       |
 *
 * @module
 */

import { createHash } from "node:crypto";
import type { BufferedReader } from "./buffered_reader.ts";
import { LimitError, ProtocolError } from "./errors.ts";

/** The GUID appended to the client's key for `Sec-WebSocket-Accept` (RFC 6455 section 1.3). */
export const WEBSOCKET_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/** Frame opcodes (RFC 6455 section 5.2). */
export const Opcode = {
  Continuation: 0x0,
  Text: 0x1,
  Binary: 0x2,
  Close: 0x8,
  Ping: 0x9,
  Pong: 0xa,
} as const;

/** Close status codes (RFC 6455 section 7.4.1). */
export const CloseCode = {
  Normal: 1000,
  GoingAway: 1001,
  ProtocolError: 1002,
  UnsupportedData: 1003,
  /** Never sent: what a close frame without a status means. */
  NoStatus: 1005,
  /** Never sent: the connection ended without a close frame. */
  Abnormal: 1006,
  InvalidPayload: 1007,
  PolicyViolation: 1008,
  MessageTooBig: 1009,
  MandatoryExtension: 1010,
  InternalError: 1011,
} as const;

/** Longest payload of a control frame (RFC 6455 section 5.5). */
export const MAX_CONTROL_PAYLOAD = 125;
/** Longest close reason: a control payload less the 2-byte code. */
export const MAX_CLOSE_REASON_BYTES = MAX_CONTROL_PAYLOAD - 2;

/**
 * A peer broke the WebSocket protocol; `code` is the close status it is sent (1002, 1003,
 * 1007, 1009).
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert/strict";
 * import { WebSocketError } from "./websocket_frame.ts";
 * const err = new WebSocketError(1002, "Cannot read frame: client frame not masked");
 * assert.equal(err.code, 1002);
 * assert.equal(err.name, "WebSocketError");
 * ```
 */
export class WebSocketError extends ProtocolError {
  /** The close status code sent to the peer. */
  readonly code: number;

  /** Creates a WebSocket protocol error. */
  constructor(code: number, message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "WebSocketError";
    this.code = code;
  }
}

/** A client frame's header, checked, its mask key read; the payload is still on the wire. */
export interface FrameHeader {
  /** Last frame of its message. */
  fin: boolean;
  /** One of {@linkcode Opcode}. */
  opcode: number;
  /** Payload length, at most the `maxPayload` it was read with. */
  length: number;
  /** The 4-byte masking key. */
  mask: Uint8Array;
}

/**
 * True for the control opcodes: close, ping and pong (RFC 6455 section 5.5).
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert/strict";
 * import { isControl, Opcode } from "./websocket_frame.ts";
 * assert.equal(isControl(Opcode.Ping), true);
 * assert.equal(isControl(Opcode.Text), false);
 * ```
 */
export function isControl(opcode: number): boolean {
  return (opcode & 0x8) !== 0;
}

const KNOWN_OPCODES = new Set<number>(Object.values(Opcode));

/**
 * Reads a client frame header and its mask key, enforcing the module doc's rules; a length
 * above `options.maxPayload` is refused with 1009 before any payload is read. Resolves null
 * at end of input before the first byte.
 *
 * @example A masked 5-byte text frame
 * ```ts
 * import assert from "node:assert/strict";
 * import { BufferedReader } from "./buffered_reader.ts";
 * import { readFrameHeader } from "./websocket_frame.ts";
 * const bytes = new Uint8Array([0x81, 0x85, 1, 2, 3, 4]);
 * const source = { read: (p: Uint8Array) => (p.set(bytes), Promise.resolve(bytes.length)) };
 * const header = await readFrameHeader(new BufferedReader(source), { maxPayload: 100 });
 * assert.deepEqual(header, { fin: true, opcode: 1, length: 5, mask: new Uint8Array([1, 2, 3, 4]) });
 * ```
 */
export async function readFrameHeader(
  reader: BufferedReader,
  options: { maxPayload: number },
): Promise<FrameHeader | null> {
  if (reader.buffered === 0 && !(await reader.fill()) && reader.buffered === 0) return null;
  const b0 = await reader.readU8();
  const b1 = await reader.readU8();
  const fin = (b0 & 0x80) !== 0;
  const opcode = b0 & 0x0f;
  const fail = (why: string) =>
    new WebSocketError(CloseCode.ProtocolError, `Cannot read frame: ${why}`);
  if ((b0 & 0x70) !== 0) {
    throw fail(`reserved bits 0x${(b0 & 0x70).toString(16)} set without an extension`);
  }
  if (!KNOWN_OPCODES.has(opcode)) throw fail(`unknown opcode 0x${opcode.toString(16)}`);
  if ((b1 & 0x80) === 0) throw fail("client frame not masked");
  let length = b1 & 0x7f;
  if (isControl(opcode)) {
    if (!fin) throw fail(`fragmented control frame (opcode 0x${opcode.toString(16)})`);
    if (length > MAX_CONTROL_PAYLOAD) {
      throw fail(`control frame longer than ${MAX_CONTROL_PAYLOAD} bytes`);
    }
  }
  const tooBig = (what: string) =>
    new WebSocketError(
      CloseCode.MessageTooBig,
      `Cannot read frame: length ${what} exceeds limit ${options.maxPayload}`,
      { cause: new LimitError(`frame length ${what}`) },
    );
  if (length === 126) {
    length = await reader.readU16();
  } else if (length === 127) {
    const hi = await reader.readU32();
    const lo = await reader.readU32();
    if (hi >= 0x80000000) throw tooBig("with its top bit set");
    length = hi * 2 ** 32 + lo; // Exact up to 2^53; anything that large is refused below.
  }
  if (length > options.maxPayload) throw tooBig(String(length));
  const mask = await reader.readExact(4, 4);
  return { fin, opcode, length, mask };
}

/**
 * XORs `payload` in place with the 4-byte `mask`, starting at mask position `offset`: masks
 * and unmasks alike (RFC 6455 section 5.3).
 *
 * @example The RFC's masked "Hello"
 * ```ts
 * import assert from "node:assert/strict";
 * import { unmask } from "./websocket_frame.ts";
 * const payload = new Uint8Array([0x7f, 0x9f, 0x4d, 0x51, 0x58]);
 * unmask(payload, new Uint8Array([0x37, 0xfa, 0x21, 0x3d]));
 * assert.equal(new TextDecoder().decode(payload), "Hello");
 * ```
 */
export function unmask(payload: Uint8Array, mask: Uint8Array, offset = 0): void {
  for (let i = 0; i < payload.length; i++) payload[i] ^= mask[(i + offset) & 3];
}

/**
 * Encodes a server frame (FIN set, never masked; RFC 6455 section 5.1).
 *
 * @example Header forms: 7-bit, 16-bit and 64-bit lengths
 * ```ts
 * import assert from "node:assert/strict";
 * import { encodeFrame, Opcode } from "./websocket_frame.ts";
 * assert.deepEqual(encodeFrame(Opcode.Text, new TextEncoder().encode("hi")), new Uint8Array([0x81, 2, 0x68, 0x69]));
 * assert.deepEqual(encodeFrame(Opcode.Binary, new Uint8Array(200)).subarray(0, 4), new Uint8Array([0x82, 126, 0, 200]));
 * assert.deepEqual(encodeFrame(Opcode.Binary, new Uint8Array(70000)).subarray(0, 10), new Uint8Array([0x82, 127, 0, 0, 0, 0, 0, 1, 0x11, 0x70]));
 * ```
 */
export function encodeFrame(opcode: number, payload: Uint8Array): Uint8Array {
  const n = payload.length;
  const out = new Uint8Array((n < 126 ? 2 : n < 65536 ? 4 : 10) + n);
  out.set(payload, writeFrameHeader(out, opcode, n));
  return out;
}

/** Writes a server frame header for `n` payload bytes at the start of `out`; returns its length. */
function writeFrameHeader(out: Uint8Array, opcode: number, n: number): number {
  out[0] = 0x80 | opcode;
  if (n < 126) {
    out[1] = n;
    return 2;
  }
  if (n < 65536) {
    out[1] = 126;
    out[2] = n >>> 8;
    out[3] = n & 0xff;
    return 4;
  }
  out[1] = 127;
  const hi = Math.floor(n / 2 ** 32);
  new DataView(out.buffer, out.byteOffset, 10).setUint32(2, hi);
  new DataView(out.buffer, out.byteOffset, 10).setUint32(6, n >>> 0);
  return 10;
}

const encoder = new TextEncoder();
const strictDecoder = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

/**
 * Decodes UTF-8 or throws a {@linkcode WebSocketError} with 1007 (RFC 6455 section 8.1).
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert/strict";
 * import { decodeUtf8 } from "./websocket_frame.ts";
 * assert.equal(decodeUtf8(new Uint8Array([0xc3, 0xa9]), "text"), "\u00e9");
 * assert.throws(() => decodeUtf8(new Uint8Array([0xc3]), "text"), { code: 1007 });
 * ```
 */
export function decodeUtf8(bytes: Uint8Array, what: string): string {
  try {
    return strictDecoder.decode(bytes);
  } catch (error) {
    throw new WebSocketError(CloseCode.InvalidPayload, `Cannot read ${what}: not valid UTF-8`, {
      cause: error,
    });
  }
}

/**
 * True for a close code a peer may send (RFC 6455 section 7.4): 1000-1003, 1007-1011,
 * 3000-4999. 1005, 1006 and 1015 only ever describe a close; they are never on the wire.
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert/strict";
 * import { isValidCloseCode } from "./websocket_frame.ts";
 * assert.equal(isValidCloseCode(1000), true);
 * assert.equal(isValidCloseCode(4000), true);
 * assert.equal(isValidCloseCode(1005), false);
 * assert.equal(isValidCloseCode(2999), false);
 * ```
 */
export function isValidCloseCode(code: number): boolean {
  return (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1011) ||
    (code >= 3000 && code <= 4999);
}

/** A close frame's status: 1005 ({@linkcode CloseCode.NoStatus}) when it carried none. */
export interface CloseStatus {
  /** The status code. */
  code: number;
  /** The reason text, possibly empty. */
  reason: string;
}

/**
 * Parses a close frame's payload (RFC 6455 section 5.5.1), throwing 1002 for a 1-byte payload
 * or a code not allowed on the wire, and 1007 for a reason that is not UTF-8.
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert/strict";
 * import { parseClosePayload } from "./websocket_frame.ts";
 * assert.deepEqual(parseClosePayload(new Uint8Array([0x03, 0xe8, 0x6f, 0x6b])), { code: 1000, reason: "ok" });
 * assert.deepEqual(parseClosePayload(new Uint8Array(0)), { code: 1005, reason: "" });
 * assert.throws(() => parseClosePayload(new Uint8Array([0x03, 0xed])), { code: 1002 }); // 1005
 * ```
 */
export function parseClosePayload(payload: Uint8Array): CloseStatus {
  if (payload.length === 0) return { code: CloseCode.NoStatus, reason: "" };
  if (payload.length === 1) {
    throw new WebSocketError(CloseCode.ProtocolError, "Cannot read close frame: 1-byte payload");
  }
  const code = (payload[0] << 8) | payload[1];
  if (!isValidCloseCode(code)) {
    throw new WebSocketError(CloseCode.ProtocolError, `Cannot read close frame: code ${code}`);
  }
  return { code, reason: decodeUtf8(payload.subarray(2), "close reason") };
}

/**
 * Encodes a close payload; a reason longer than {@linkcode MAX_CLOSE_REASON_BYTES} is cut at a
 * character boundary.
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert/strict";
 * import { encodeClosePayload } from "./websocket_frame.ts";
 * assert.deepEqual(encodeClosePayload(1000, "ok"), new Uint8Array([0x03, 0xe8, 0x6f, 0x6b]));
 * assert.equal(encodeClosePayload(1000, "\u00e9".repeat(100)).length, 2 + 122);
 * ```
 */
export function encodeClosePayload(code: number, reason: string): Uint8Array {
  let text = encoder.encode(reason);
  if (text.length > MAX_CLOSE_REASON_BYTES) {
    let end = MAX_CLOSE_REASON_BYTES;
    while (end > 0 && (text[end] & 0xc0) === 0x80) end--; // Not inside a character.
    text = text.subarray(0, end);
  }
  const out = new Uint8Array(2 + text.length);
  out[0] = code >>> 8;
  out[1] = code & 0xff;
  out.set(text, 2);
  return out;
}

/**
 * `Sec-WebSocket-Accept` for a `Sec-WebSocket-Key`: base64(SHA-1(key + GUID)), as RFC 6455
 * section 4.2.2 asks (SHA-1 is the RFC's choice; it proves the server read the key, nothing more).
 *
 * @example The RFC's own example
 * ```ts
 * import assert from "node:assert/strict";
 * import { acceptKey } from "./websocket_frame.ts";
 * assert.equal(acceptKey("dGhlIHNhbXBsZSBub25jZQ=="), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
 * ```
 */
export function acceptKey(key: string): string {
  return createHash("sha1").update(key + WEBSOCKET_GUID).digest("base64");
}
