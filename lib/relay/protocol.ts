/**
 * What the relay says on the wire, in both modes.
 *
 * **Line mode** (the default, for nc, telnet, ncat): clients send lines ending in LF or
 * CRLF. A line starting with `/` is a command (`//text` sends `/text`). The relay sends:
 * - a delivered message: `[NAME] TEXT` (bytes passed through as sent, invalid UTF-8 included);
 * - a notice (joins, leaves, replies to commands, errors): `* TEXT`.
 *
 * **Framed mode** (`--framed`), binary-safe, over the shared frames of `lib/net/frame.ts`:
 * each side sends `hello("relay", 1)` first; then
 * - client to relay: {@linkcode RelayFrame.Message} (payload: the bytes to deliver),
 *   {@linkcode RelayFrame.Command} (payload: UTF-8 command such as `/nick bob`);
 * - relay to client: {@linkcode RelayFrame.Deliver}
 *   (`fromLen: u8 | from | roomLen: u8 | room | data`), {@linkcode RelayFrame.Notice}
 *   (UTF-8 text), {@linkcode RelayFrame.Welcome} (`nameLen: u8 | name | roomLen: u8 | room`,
 *   sent after the hello and after each /nick or /join);
 * - both ways: `Ping` (answered by `Pong` with the same payload), `Bye` (UTF-8 reason),
 *   `Error` (UTF-8 message, then the sender closes).
 *
 * @module
 */

import { ProtocolError } from "../net/errors.ts";

/** Protocol name in the framed-mode hello. */
export const RELAY_PROTOCOL = "relay";
/** Framed-mode protocol version. */
export const RELAY_PROTOCOL_VERSION = 1;

/** Framed-mode frame types of the relay (shared control frames are 0x00-0x0f). */
export const RelayFrame = {
  /** Client to relay: deliver the payload to the room. */
  Message: 0x10,
  /** Client to relay: a command line such as `/nick bob` (UTF-8). */
  Command: 0x11,
  /** Relay to client: a message from another client. */
  Deliver: 0x20,
  /** Relay to client: a notice (UTF-8). */
  Notice: 0x21,
  /** Relay to client: the client's current name and room. */
  Welcome: 0x22,
} as const;

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** Line mode: the prefix of a notice line. */
export const NOTICE_PREFIX = "* ";

/**
 * Line mode: lines of one sender as consecutive `[from] line\n` in one buffer. The lines
 * are given as `lines.spans` into `lines.src`: `[start0, end0, start1, end1, ...]` (ends exclusive,
 * without terminators). One allocation; short copies are done byte by byte, which beats a
 * `set()` call per line.
 *
 * @example Usage
 * ```ts
 * import { encodeLineDeliverSpans } from "./protocol.ts";
 * const src = new TextEncoder().encode("a\r\nbc\n");
 * const bytes = encodeLineDeliverSpans("bo", { src, spans: [0, 1, 3, 5] });
 * console.assert(new TextDecoder().decode(bytes) === "[bo] a\n[bo] bc\n");
 * ```
 */
export function encodeLineDeliverSpans(
  from: string,
  lines: { src: Uint8Array; spans: readonly number[] },
): Uint8Array {
  const { src, spans } = lines;
  const prefix = encoder.encode(`[${from}] `);
  const p = prefix.length;
  let total = 0;
  for (let i = 0; i < spans.length; i += 2) total += p + spans[i + 1] - spans[i] + 1;
  const out = new Uint8Array(total);
  let off = 0;
  for (let i = 0; i < spans.length; i += 2) {
    for (let k = 0; k < p; k++) out[off + k] = prefix[k];
    off += p;
    const a = spans[i];
    const n = spans[i + 1] - a;
    if (n < 64) {
      for (let k = 0; k < n; k++) out[off + k] = src[a + k];
    } else {
      out.set(src.subarray(a, a + n), off);
    }
    off += n;
    out[off++] = 0x0a;
  }
  return out;
}

/**
 * Line mode: `* text\n`.
 *
 * @example Usage
 * ```ts
 * import { encodeLineNotice } from "./protocol.ts";
 * console.assert(new TextDecoder().decode(encodeLineNotice("hi")) === "* hi\n");
 * ```
 */
export function encodeLineNotice(text: string): Uint8Array {
  return encoder.encode(`${NOTICE_PREFIX}${text}\n`);
}

function shortString(text: string, what: string): Uint8Array {
  const bytes = encoder.encode(text);
  if (bytes.length > 255) throw new RangeError(`Cannot encode ${what}: longer than 255 bytes`);
  return bytes;
}

/** Encodes two short strings and trailing data: `len | a | len | b | data`. */
function encodeNamed(a: string, b: string, data: Uint8Array = new Uint8Array(0)): Uint8Array {
  const ab = shortString(a, "name");
  const bb = shortString(b, "room");
  const out = new Uint8Array(2 + ab.length + bb.length + data.length);
  out[0] = ab.length;
  out.set(ab, 1);
  out[1 + ab.length] = bb.length;
  out.set(bb, 2 + ab.length);
  out.set(data, 2 + ab.length + bb.length);
  return out;
}

/** Decodes `len | a | len | b | data`, checking each length against the payload. */
function decodeNamed(payload: Uint8Array, what: string): [string, string, Uint8Array] {
  const bad = () => new ProtocolError(`Cannot decode ${what} frame: lengths exceed its payload`);
  if (payload.length < 2) throw bad();
  const aLen = payload[0];
  if (1 + aLen + 1 > payload.length) throw bad();
  const bLen = payload[1 + aLen];
  const dataStart = 2 + aLen + bLen;
  if (dataStart > payload.length) throw bad();
  return [
    decoder.decode(payload.subarray(1, 1 + aLen)),
    decoder.decode(payload.subarray(2 + aLen, dataStart)),
    payload.subarray(dataStart),
  ];
}

/** A message as the relay delivers it: who sent it, in which room, and its bytes. */
export interface Delivery {
  /** Sender's name. */
  from: string;
  /** Sender's room. */
  room: string;
  /** The message bytes. */
  data: Uint8Array;
}

/** Framed mode: the payload of a {@linkcode RelayFrame.Deliver} frame. */
export function encodeDeliverPayload(delivery: Delivery): Uint8Array {
  return encodeNamed(delivery.from, delivery.room, delivery.data);
}

/**
 * Framed mode: decodes a {@linkcode RelayFrame.Deliver} payload.
 *
 * @example Usage
 * ```ts
 * import { decodeDeliverPayload, encodeDeliverPayload } from "./protocol.ts";
 * const p = encodeDeliverPayload({ from: "a", room: "lobby", data: new Uint8Array([0, 255]) });
 * const d = decodeDeliverPayload(p);
 * console.assert(d.from === "a" && d.room === "lobby" && d.data.length === 2);
 * ```
 */
export function decodeDeliverPayload(payload: Uint8Array): Delivery {
  const [from, room, data] = decodeNamed(payload, "deliver");
  return { from, room, data };
}

/** Framed mode: the payload of a {@linkcode RelayFrame.Welcome} frame. */
export function encodeWelcomePayload(name: string, room: string): Uint8Array {
  return encodeNamed(name, room);
}

/** Framed mode: decodes a {@linkcode RelayFrame.Welcome} payload. */
export function decodeWelcomePayload(payload: Uint8Array): { name: string; room: string } {
  const [name, room] = decodeNamed(payload, "welcome");
  return { name, room };
}
