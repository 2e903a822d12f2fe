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

import { type CloseReason, describeCloseReason } from "../net/close_reason.ts";
import { ProtocolError } from "../net/errors.ts";
import { concatBytes } from "../net/bytes.ts";
import { ControlFrame, encodeFrame, encodeHello } from "../net/frame.ts";

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

/** What {@linkcode encodeLineDelivers} did and why it stopped. */
export interface LineScan {
  /** Index in the block where the scan stopped (the start of the line it stopped at). */
  next: number;
  /** Bytes written to `out`. */
  written: number;
  /** Message lines written. */
  count: number;
  /**
   * `"end"`: the whole block was done; `"command"`: the line at `next` is a command;
   * `"long"`: the line at `next` is longer than the limit; `"full"`: `out` has no room for
   * another line of the longest length.
   */
  stop: "end" | "command" | "long" | "full";
  /** For `"command"` and `"long"`: the index of that line's LF. */
  lineEnd: number;
}

/** Options for {@linkcode encodeLineDelivers}. */
export interface LineScanOptions {
  /** Where to start in the block. */
  start: number;
  /** The sender's prefix, `[NAME] ` as bytes. */
  prefix: Uint8Array;
  /** Where the delivered lines go, from index 0. */
  out: Uint8Array;
  /** Longest line accepted, without its terminator. */
  maxLineBytes: number;
}

/**
 * Line mode, the hot path: scans `block` (whole lines, each ending in LF) from
 * `options.start` and writes each message line into `options.out` as `[NAME] line\n` (CR
 * before LF dropped, `//text` sent as `/text`), in one pass with no allocation, until the
 * block ends, a line that is not a message (a command, an over-long line) starts, or `out`
 * lacks room for a line of `maxLineBytes`. `out` must hold at least
 * `prefix.length + maxLineBytes + 4` bytes.
 *
 * @example Two messages, then a command
 * ```ts
 * import assert from "node:assert/strict";
 * import { encodeLineDelivers } from "./protocol.ts";
 * const block = new TextEncoder().encode("a\r\n//b\n/who\n");
 * const out = new Uint8Array(64);
 * const prefix = new TextEncoder().encode("[bo] ");
 * const scan = encodeLineDelivers(block, { start: 0, prefix, out, maxLineBytes: 16 });
 * assert.equal(new TextDecoder().decode(out.subarray(0, scan.written)), "[bo] a\n[bo] /b\n");
 * assert.deepEqual([scan.count, scan.stop, scan.next, scan.lineEnd], [2, "command", 7, 11]);
 * ```
 */
export function encodeLineDelivers(block: Uint8Array, options: LineScanOptions): LineScan {
  const { prefix, out, maxLineBytes } = options;
  const p = prefix.length;
  const len = block.length;
  const room = out.length - (p + maxLineBytes + 4);
  if (room < 0) throw new RangeError("Cannot encode lines: the output buffer is too small");
  let i = options.start;
  let off = 0;
  let count = 0;
  while (i < len) {
    if (off > room) return { next: i, written: off, count, stop: "full", lineEnd: -1 };
    let s = i;
    if (block[s] === 0x2f /* "/" */) {
      if (block[s + 1] !== 0x2f) {
        return { next: i, written: off, count, stop: "command", lineEnd: block.indexOf(0x0a, s) };
      }
      s++; // "//text" sends "/text"
    }
    const lineStart = off;
    for (let k = 0; k < p; k++) out[off + k] = prefix[k];
    off += p;
    // Short lines byte by byte (cheaper than a subarray and a set per line), the rest of a
    // long one with indexOf and set.
    let j = s;
    let c = 0;
    const fastEnd = Math.min(len, s + 128);
    while (j < fastEnd) {
      c = block[j++];
      out[off++] = c;
      if (c === 0x0a) break;
    }
    if (c !== 0x0a) {
      const lf = block.indexOf(0x0a, j);
      out.set(block.subarray(j, lf + 1), off);
      off += lf + 1 - j;
      j = lf + 1;
    }
    const lf = j - 1;
    const cr = lf > i && block[lf - 1] === 0x0d;
    if (lf - (cr ? 1 : 0) - i > maxLineBytes) {
      return { next: i, written: lineStart, count, stop: "long", lineEnd: lf };
    }
    if (cr && off - 2 >= lineStart + p) {
      out[off - 2] = 0x0a;
      off--;
    }
    count++;
    i = j;
  }
  return { next: i, written: off, count, stop: "end", lineEnd: -1 };
}

/**
 * Line mode: `* text\n`.
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert/strict";
 * import { encodeLineNotice } from "./protocol.ts";
 * assert.equal(new TextDecoder().decode(encodeLineNotice("hi")), "* hi\n");
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
 * import assert from "node:assert/strict";
 * import { decodeDeliverPayload, encodeDeliverPayload } from "./protocol.ts";
 * const p = encodeDeliverPayload({ from: "a", room: "lobby", data: new Uint8Array([0, 255]) });
 * const d = decodeDeliverPayload(p);
 * assert.equal(d.from, "a");
 * assert.equal(d.room, "lobby");
 * assert.deepEqual(d.data, new Uint8Array([0, 255]));
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

/**
 * How one mode encodes what the relay itself says: notices, the welcome, the farewell, and
 * the refusal a client gets before it is even served.
 */
export interface RelayCodec {
  /** A notice (joins, leaves, replies to commands). */
  notice(text: string): Uint8Array;
  /** The client's name and room, after it connects and after each /nick or /join. */
  welcome(name: string, room: string): Uint8Array;
  /** The last thing a client is sent, saying why it is disconnected. */
  farewell(reason: CloseReason): Uint8Array;
  /** Everything a refused client (server full) is sent: framed, the hello and an Error. */
  refusal(text: string): Uint8Array;
}

/**
 * Line mode: `* TEXT` notices, `* welcome NAME, you are in room ROOM; /help lists commands`,
 * `* disconnected: REASON`.
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert/strict";
 * import { LINE_CODEC } from "./protocol.ts";
 * const farewell = LINE_CODEC.farewell({ kind: "idle", ms: 300 });
 * assert.equal(new TextDecoder().decode(farewell), "* disconnected: idle for more than 300 ms\n");
 * ```
 */
export const LINE_CODEC: RelayCodec = {
  notice: encodeLineNotice,
  welcome: (name, room) =>
    encodeLineNotice(`welcome ${name}, you are in room ${room}; /help lists commands`),
  farewell: (reason) => encodeLineNotice(`disconnected: ${describeCloseReason(reason)}`),
  refusal: encodeLineNotice,
};

/** Framed mode: Notice, Welcome and Bye frames. */
export const FRAME_CODEC: RelayCodec = {
  notice: (text) => encodeFrame(RelayFrame.Notice, encoder.encode(text)),
  welcome: (name, room) => encodeFrame(RelayFrame.Welcome, encodeWelcomePayload(name, room)),
  farewell: (reason) => encodeFrame(ControlFrame.Bye, encoder.encode(describeCloseReason(reason))),
  refusal: (text) =>
    concatBytes(
      encodeHello(RELAY_PROTOCOL, RELAY_PROTOCOL_VERSION),
      encodeFrame(ControlFrame.Error, encoder.encode(text)),
    ),
};
