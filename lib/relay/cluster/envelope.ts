/**
 * What relay nodes send each other over the bus: the wire format of a cluster, in one place.
 *
 * **Message envelopes** (`sockit.room.<room>.msg`, the hot path) are binary: one envelope per
 * broadcast, carrying exactly the bytes the sending node queued to its own members (a run of
 * `[name] line\n` in line mode, Deliver frames in framed mode), so a receiving node queues
 * them to its members unchanged.
 *
 * ```text
 * offset  size  field
 * 0       1     kind: 0x01 (messages)
 * 1       1     mode: 0 line, 1 framed (a node drops envelopes of the other mode)
 * 2       1     L: length of the node id (1..16)
 * 3       L     node id (ASCII: a-z 0-9 -)
 * 3+L     4     epoch: random per process start, big-endian
 * 7+L     8     seq: the number of the first message, float64 big-endian (counts messages
 *               per node, epoch and room from 1, so a receiver sees how many it missed)
 * 15+L    4     count: messages in the payload, big-endian (at least 1)
 * 19+L    ...   payload
 * ```
 *
 * **Control messages** (presence, heartbeats, requests and replies: a few per second) are
 * kind 0x02 followed by one JSON object, at most {@linkcode ENVELOPE_LIMITS.controlBytes},
 * whose fields are checked before use ({@linkcode decodeControl}): names and rooms must match
 * the relay's own patterns, counts are bounded, texts are one line. Anything else is an
 * {@linkcode EnvelopeError}, and the receiving node logs it and goes on.
 *
 * @module
 */

import { GENERATED_NAME_PATTERN, NAME_PATTERN, ROOM_PATTERN } from "../limits.ts";

/** Bounds on what a node accepts from the bus. */
export const ENVELOPE_LIMITS = {
  /** Longest node id. */
  nodeIdChars: 16,
  /** Largest control message (JSON), in bytes: a member list of a few thousand names. */
  controlBytes: 256 * 1024,
  /** Most names in one member list. */
  names: 10_000,
  /** Most rooms in one room list. */
  rooms: 10_000,
  /** Longest name or room (the relay's `maxNameLength` plus a node-qualified suffix). */
  nameChars: 64,
} as const;

/** A node id: 1 to 16 of `a-z 0-9 -`, starting with a letter or digit. */
export const NODE_ID_PATTERN: RegExp = /^[a-z0-9][a-z0-9-]{0,15}$/;

const KIND_MESSAGES = 0x01;
const KIND_CONTROL = 0x02;
const encoder = new TextEncoder();
const decoder = new TextDecoder("utf-8", { fatal: true });

/**
 * A bus message that does not parse or breaks a bound; the message says which.
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert/strict";
 * import { decodeEnvelope, EnvelopeError } from "./envelope.ts";
 * assert.throws(() => decodeEnvelope(new Uint8Array([9])), EnvelopeError);
 * ```
 */
export class EnvelopeError extends Error {
  /** Creates the error. */
  constructor(message: string) {
    super(message);
    this.name = "EnvelopeError";
  }
}

/** A run of messages from one node to one room. */
export interface MessageEnvelope {
  /** Always `messages`. */
  kind: "messages";
  /** The relay mode the payload is encoded in. */
  framed: boolean;
  /** The sending node. */
  node: string;
  /** The sending process's epoch. */
  epoch: number;
  /** Number of the first message in the payload. */
  seq: number;
  /** Messages in the payload. */
  count: number;
  /** The encoded deliveries, as the sending node queued them. */
  payload: Uint8Array;
}

/** Who sent a control message. */
interface From {
  /** The sending node. */
  node: string;
  /** The sending process's epoch. */
  epoch: number;
}

/** A control message: presence, heartbeats, requests and their replies. */
export type ControlMessage =
  & From
  & (
    | { t: "beat" }
    | { t: "bye" }
    | { t: "join"; room: string; name: string }
    | { t: "leave"; room: string; name: string; why: string }
    | { t: "rename"; room: string; old: string; name: string }
    | { t: "hello"; room: string; names: string[] }
    | { t: "hold"; room: string }
    | { t: "release"; room: string }
    | { t: "who"; room: string }
    | { t: "members"; room: string; names: string[] }
    | { t: "rooms" }
    | { t: "roomlist"; rooms: [string, number][] }
    | { t: "claim"; name: string; at: number; id: number }
    | { t: "claimed"; ok: boolean }
  );

/** Any bus message. */
export type Envelope = MessageEnvelope | ({ kind: "control" } & { control: ControlMessage });

/**
 * Encodes a message envelope.
 *
 * @example Round trip
 * ```ts
 * import assert from "node:assert/strict";
 * import { decodeEnvelope, encodeMessages } from "./envelope.ts";
 * const payload = new TextEncoder().encode("[bob] hi\n");
 * const bytes = encodeMessages({ framed: false, node: "a", epoch: 7, seq: 1, count: 1, payload });
 * const back = decodeEnvelope(bytes);
 * assert.equal(back.kind, "messages");
 * if (back.kind === "messages") assert.deepEqual(back.payload, payload);
 * ```
 */
export function encodeMessages(envelope: Omit<MessageEnvelope, "kind">): Uint8Array {
  const head = encodeMessagesHead(envelope);
  const out = new Uint8Array(head.length + envelope.payload.length);
  out.set(head);
  out.set(envelope.payload, head.length);
  return out;
}

/**
 * The header of a message envelope alone (everything before the payload): a publisher sends
 * it and the payload as two pieces, so the payload is not copied into the envelope.
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert/strict";
 * import { encodeMessages, encodeMessagesHead } from "./envelope.ts";
 * const payload = new TextEncoder().encode("[bob] hi\n");
 * const e = { framed: false, node: "a", epoch: 7, seq: 1, count: 1 };
 * const head = encodeMessagesHead(e);
 * assert.deepEqual(encodeMessages({ ...e, payload }).subarray(0, head.length), head);
 * ```
 */
export function encodeMessagesHead(
  envelope: Omit<MessageEnvelope, "kind" | "payload">,
): Uint8Array {
  const node = encoder.encode(envelope.node);
  const out = new Uint8Array(19 + node.length);
  const view = new DataView(out.buffer);
  out[0] = KIND_MESSAGES;
  out[1] = envelope.framed ? 1 : 0;
  out[2] = node.length;
  out.set(node, 3);
  const at = 3 + node.length;
  view.setUint32(at, envelope.epoch >>> 0);
  view.setFloat64(at + 4, envelope.seq);
  view.setUint32(at + 12, envelope.count);
  return out;
}

/**
 * Encodes a control message.
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert/strict";
 * import { decodeEnvelope, encodeControl } from "./envelope.ts";
 * const back = decodeEnvelope(encodeControl({ t: "beat", node: "a", epoch: 1 }));
 * assert.equal(back.kind === "control" && back.control.t, "beat");
 * ```
 */
export function encodeControl(message: ControlMessage): Uint8Array {
  const json = encoder.encode(JSON.stringify(message));
  const out = new Uint8Array(1 + json.length);
  out[0] = KIND_CONTROL;
  out.set(json, 1);
  return out;
}

/** Decodes any bus message; throws {@linkcode EnvelopeError} for anything malformed. */
export function decodeEnvelope(bytes: Uint8Array): Envelope {
  if (bytes.length === 0) throw new EnvelopeError("Cannot decode an empty bus message");
  if (bytes[0] === KIND_MESSAGES) return decodeMessages(bytes);
  if (bytes[0] === KIND_CONTROL) return { kind: "control", control: decodeControl(bytes) };
  throw new EnvelopeError(`Cannot decode a bus message of kind 0x${bytes[0].toString(16)}`);
}

function decodeMessages(bytes: Uint8Array): MessageEnvelope {
  if (bytes.length < 3) throw new EnvelopeError("Cannot decode a message envelope: too short");
  const nodeLength = bytes[2];
  if (nodeLength < 1 || nodeLength > ENVELOPE_LIMITS.nodeIdChars) {
    throw new EnvelopeError(`Cannot decode a message envelope: node id of ${nodeLength} bytes`);
  }
  if (bytes.length < 19 + nodeLength + 1) {
    throw new EnvelopeError(`Cannot decode a message envelope: ${bytes.length} bytes is too short`);
  }
  if (bytes[1] > 1) throw new EnvelopeError(`Cannot decode a message envelope: mode ${bytes[1]}`);
  const node = String.fromCharCode(...bytes.subarray(3, 3 + nodeLength));
  checkNode(node);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const at = 3 + nodeLength;
  const seq = view.getFloat64(at + 4);
  const count = view.getUint32(at + 12);
  if (!Number.isSafeInteger(seq) || seq < 1 || count < 1) {
    throw new EnvelopeError(`Cannot decode a message envelope: seq ${seq}, count ${count}`);
  }
  return {
    kind: "messages",
    framed: bytes[1] === 1,
    node,
    epoch: view.getUint32(at),
    seq,
    count,
    payload: bytes.subarray(at + 16),
  };
}

function checkNode(node: unknown): asserts node is string {
  if (typeof node !== "string" || !NODE_ID_PATTERN.test(node)) {
    throw new EnvelopeError(`Cannot accept a bus message: bad node id ${JSON.stringify(node)}`);
  }
}

function field(o: Record<string, unknown>, key: string, type: "string" | "number" | "boolean") {
  const value = o[key];
  const actual = typeof value;
  if (actual !== type) {
    throw new EnvelopeError(`Cannot accept a "${o.t}" bus message: ${key} is not a ${type}`);
  }
  return value;
}

function nameField(o: Record<string, unknown>, key: string): string {
  const name = field(o, key, "string") as string;
  const ok = name.length <= ENVELOPE_LIMITS.nameChars &&
    (NAME_PATTERN.test(name) || GENERATED_NAME_PATTERN.test(name));
  if (!ok) {
    throw new EnvelopeError(
      `Cannot accept a "${o.t}" bus message: bad ${key} ${JSON.stringify(name)}`,
    );
  }
  return name;
}

function roomField(o: Record<string, unknown>): string {
  const room = field(o, "room", "string") as string;
  if (room.length > ENVELOPE_LIMITS.nameChars || !ROOM_PATTERN.test(room)) {
    throw new EnvelopeError(
      `Cannot accept a "${o.t}" bus message: bad room ${JSON.stringify(room)}`,
    );
  }
  return room;
}

function namesField(o: Record<string, unknown>): string[] {
  const names = o.names;
  if (!Array.isArray(names) || names.length > ENVELOPE_LIMITS.names) {
    throw new EnvelopeError(`Cannot accept a "${o.t}" bus message: bad names`);
  }
  return names.map((_, i) => nameField(names as never, String(i)));
}

function countField(o: Record<string, unknown>, key: string): number {
  const n = field(o, key, "number") as number;
  if (!Number.isSafeInteger(n) || n < 0) {
    throw new EnvelopeError(`Cannot accept a "${o.t}" bus message: bad ${key} ${n}`);
  }
  return n;
}

/** One line of at most 200 characters with no control characters. */
function textField(o: Record<string, unknown>, key: string): string {
  const text = field(o, key, "string") as string;
  // deno-lint-ignore no-control-regex
  if (text.length > 200 || /[\x00-\x1f\x7f-\x9f]/.test(text)) {
    throw new EnvelopeError(`Cannot accept a "${o.t}" bus message: bad ${key}`);
  }
  return text;
}

/** Decodes and checks a control message (kind 0x02 and JSON). */
export function decodeControl(bytes: Uint8Array): ControlMessage {
  if (bytes.length > 1 + ENVELOPE_LIMITS.controlBytes) {
    throw new EnvelopeError(`Cannot accept a control message of ${bytes.length} bytes`);
  }
  let o: Record<string, unknown>;
  try {
    o = JSON.parse(decoder.decode(bytes.subarray(1)));
  } catch (error) {
    throw new EnvelopeError(`Cannot parse a control message: ${(error as Error).message}`);
  }
  if (o === null || typeof o !== "object" || Array.isArray(o)) {
    throw new EnvelopeError("Cannot accept a control message that is not an object");
  }
  checkNode(o.node);
  const from = { node: o.node, epoch: countField(o, "epoch") };
  switch (o.t) {
    case "beat":
    case "bye":
    case "rooms":
      return { ...from, t: o.t };
    case "join":
      return { ...from, t: "join", room: roomField(o), name: nameField(o, "name") };
    case "leave":
      return {
        ...from,
        t: "leave",
        room: roomField(o),
        name: nameField(o, "name"),
        why: textField(o, "why"),
      };
    case "rename":
      return {
        ...from,
        t: "rename",
        room: roomField(o),
        old: nameField(o, "old"),
        name: nameField(o, "name"),
      };
    case "hello":
    case "members":
      return { ...from, t: o.t, room: roomField(o), names: namesField(o) };
    case "who":
    case "hold":
    case "release":
      return { ...from, t: o.t, room: roomField(o) };
    case "roomlist": {
      const rooms = o.rooms;
      if (!Array.isArray(rooms) || rooms.length > ENVELOPE_LIMITS.rooms) {
        throw new EnvelopeError(`Cannot accept a "roomlist" bus message: bad rooms`);
      }
      return {
        ...from,
        t: "roomlist",
        rooms: rooms.map((pair) => {
          if (!Array.isArray(pair) || pair.length !== 2) {
            throw new EnvelopeError(`Cannot accept a "roomlist" bus message: bad entry`);
          }
          const entry = { t: "roomlist", room: pair[0], n: pair[1] };
          return [roomField(entry), countField(entry, "n")] as [string, number];
        }),
      };
    }
    case "claim":
      return {
        ...from,
        t: "claim",
        name: nameField(o, "name"),
        at: countField(o, "at"),
        id: countField(o, "id"),
      };
    case "claimed":
      return { ...from, t: "claimed", ok: field(o, "ok", "boolean") as boolean };
    default:
      throw new EnvelopeError(`Cannot accept a control message of type ${JSON.stringify(o.t)}`);
  }
}
