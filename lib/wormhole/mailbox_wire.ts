/**
 * The wire format of the Magic Wormhole mailbox (rendezvous) server: what the server sends,
 * checked and typed ({@linkcode parseServerMessage}), and the errors it can mean. The client
 * that speaks it is `mailbox.ts`.
 *
 * One WebSocket per wormhole; each frame is one JSON object with a `type`.
 *
 * ```text
 * client                                     mailbox server
 * (connects)                         <-      welcome {welcome: {motd?, error?}}
 * bind {appid, side, client_version} ->      ack {id}
 * allocate                           ->      ack, allocated {nameplate}
 * claim {nameplate}                  ->      ack, claimed {mailbox}   (or error "crowded")
 * open {mailbox}                     ->      ack, then message {side, phase, body} for every
 *                                            message already in the mailbox
 * add {phase, body: hex}             ->      ack, message {...} to every side, ours included
 * release {nameplate}                ->      ack, released
 * close {mailbox, mood}              ->      ack, closed
 * list                               ->      ack, nameplates {nameplates: [{id}]}
 *  (a request the server refuses)    <-      ack, error {error: text, orig: the request}
 * ```
 *
 * Every request carries a random `id`, which the server copies into its `ack` (and into the
 * `orig` of an `error`). The server's direct answers do not carry it, but each of those
 * requests may be made once per connection, so the answer's type says which it answers.
 * Unknown message types (`pong`, anything newer) and unknown keys are ignored, as the
 * protocol asks.
 *
 * @module
 */

import { LimitError, ProtocolError, SocketError } from "../net/errors.ts";
import { printable, quote } from "../log.ts";
import { fromHex } from "./keys.ts";

/**
 * The mailbox server refused a request (its `error` message).
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert/strict";
 * import { MailboxError } from "./mailbox_wire.ts";
 * const error = new MailboxError("add", "must open mailbox before adding");
 * assert.equal(error.message, 'mailbox server refused add: "must open mailbox before adding"');
 * assert.equal(error.request, "add");
 * ```
 */
export class MailboxError extends Error {
  /** The `type` of the refused request (`claim`, `add`...), or `a request` when not known. */
  readonly request: string;
  /** The server's text, as sent. */
  readonly serverMessage: string;
  /** Creates the error for `request` refused with `serverMessage`; `hint` is appended. */
  constructor(request: string, serverMessage: string, hint = "") {
    super(`mailbox server refused ${printable(request)}: ${quote(serverMessage)}${hint}`);
    this.name = "MailboxError";
    this.request = request;
    this.serverMessage = serverMessage;
  }
}

/**
 * Two other sides already use this nameplate or mailbox (the server's "crowded").
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert/strict";
 * import { CrowdedError, MailboxError } from "./mailbox_wire.ts";
 * const error = new CrowdedError("claim");
 * assert.ok(error instanceof MailboxError);
 * assert.match(error.message, /refused claim: "crowded"/);
 * ```
 */
export class CrowdedError extends MailboxError {
  /** Creates the error for `request` (`claim` or `open`). */
  constructor(request: string) {
    super(request, "crowded", " (two other clients already use this wormhole: wrong code?)");
    this.name = "CrowdedError";
  }
}

/**
 * The server's welcome carried an `error`: it refuses to serve us.
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert/strict";
 * import { WelcomeError } from "./mailbox_wire.ts";
 * const error = new WelcomeError("ws://example/v1", "please upgrade");
 * assert.equal(error.message, 'mailbox server at ws://example/v1 refused us: "please upgrade"');
 * ```
 */
export class WelcomeError extends Error {
  /** The server's text, as sent. */
  readonly serverMessage: string;
  /** Creates the error for the server at `url`. */
  constructor(url: string, serverMessage: string) {
    super(`mailbox server at ${printable(url)} refused us: ${quote(serverMessage)}`);
    this.name = "WelcomeError";
    this.serverMessage = serverMessage;
  }
}

/**
 * The mailbox server could not be reached, or the connection to it was lost or closed.
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert/strict";
 * import { SocketError } from "../net/errors.ts";
 * import { MailboxConnectionError } from "./mailbox_wire.ts";
 * const error = new MailboxConnectionError("cannot reach the mailbox server at ws://x/v1: refused");
 * assert.ok(error instanceof SocketError);
 * ```
 */
export class MailboxConnectionError extends SocketError {
  /** Creates the error; the message names the server and what happened. */
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "MailboxConnectionError";
  }
}

/** A message from the server, checked: {@linkcode parseServerMessage}'s result. */
export type ServerMessage =
  | { type: "welcome"; motd?: string; error?: string }
  | { type: "ack"; id?: string }
  | { type: "allocated"; nameplate: string }
  | { type: "claimed"; mailbox: string }
  | { type: "released" }
  | { type: "closed" }
  | { type: "nameplates"; nameplates: string[] }
  | { type: "message"; side: string; phase: string; body: Uint8Array }
  | { type: "error"; error: string; request: string }
  /** `pong`, and types a newer server may send: to be ignored. */
  | { type: "other"; name: string };

/** Options for {@linkcode parseServerMessage}. */
export interface ParseOptions {
  /** Largest frame accepted, in bytes (characters for a text frame). */
  maxFrameBytes: number;
  /** Who sent it, for error messages. @default {"mailbox server"} */
  from?: string;
}

type Json = Record<string, unknown>;

const HEX = /^(?:[0-9a-fA-F]{2})*$/;
const DIGITS = /^[0-9]+$/;
const decoder = new TextDecoder("utf-8", { fatal: true });

function isObject(value: unknown): value is Json {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** The frame as a JSON object with a string `type`; its size checked before decoding. */
function parseFrame(data: unknown, options: ParseOptions): Json {
  const { maxFrameBytes: max, from = "mailbox server" } = options;
  const size = typeof data === "string"
    ? data.length
    : data instanceof ArrayBuffer
    ? data.byteLength
    : -1;
  if (size < 0) throw new ProtocolError(`Cannot read ${from}: a frame of an unexpected kind`);
  if (size > max) {
    throw new LimitError(
      `Cannot read ${from}: a frame of ${size} bytes exceeds the limit of ${max}`,
    );
  }
  let text: string;
  try {
    text = typeof data === "string" ? data : decoder.decode(data as ArrayBuffer);
  } catch {
    throw new ProtocolError(`Cannot read ${from}: a frame is not UTF-8`);
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw new ProtocolError(
      `Cannot read ${from}: a frame is not JSON: ${quote(text.slice(0, 80))}`,
    );
  }
  if (!isObject(value) || typeof value.type !== "string") {
    throw new ProtocolError(
      `Cannot read ${from}: a frame is not an object with a "type": ${quote(text.slice(0, 80))}`,
    );
  }
  return value;
}

/**
 * Checks one frame from the server and returns it typed, or throws: a `LimitError` for a
 * frame over `options.maxFrameBytes` (checked before it is decoded or parsed), a
 * `ProtocolError` for one that is not UTF-8 JSON, not an object with a string `type`, or a
 * known message with a missing or ill-typed key (a body that is not hex, a phase that is not
 * a string, a nameplate that is not digits...).
 *
 * @example A message, a refusal, and a body that is not hex
 * ```ts
 * import assert from "node:assert/strict";
 * import { ProtocolError } from "../net/errors.ts";
 * import { parseServerMessage } from "./mailbox_wire.ts";
 * const options = { maxFrameBytes: 1024 };
 * const frame = '{"type": "message", "side": "ab", "phase": "pake", "body": "0aff", "id": "1"}';
 * assert.deepEqual(parseServerMessage(frame, options), {
 *   type: "message",
 *   side: "ab",
 *   phase: "pake",
 *   body: new Uint8Array([0x0a, 0xff]),
 * });
 * assert.deepEqual(
 *   parseServerMessage('{"type": "error", "error": "crowded", "orig": {"type": "claim"}}', options),
 *   { type: "error", error: "crowded", request: "claim" },
 * );
 * assert.throws(
 *   () => parseServerMessage('{"type": "message", "side": "ab", "phase": "1", "body": "xyz"}', options),
 *   ProtocolError,
 * );
 * ```
 */
export function parseServerMessage(data: unknown, options: ParseOptions): ServerMessage {
  const m = parseFrame(data, options);
  const type = m.type as string;
  const bad = (what: string) =>
    new ProtocolError(
      `Cannot read ${options.from ?? "mailbox server"}: a ${quote(type)} message with ${what}`,
    );
  const optionalString = (value: unknown, key: string) => {
    if (value !== undefined && typeof value !== "string") throw bad(`a ${key} that is not text`);
    return value as string | undefined;
  };
  switch (type) {
    case "welcome": {
      const welcome = m.welcome;
      if (!isObject(welcome)) throw bad("no welcome object");
      const motd = optionalString(welcome.motd, "motd");
      const error = optionalString(welcome.error, "error");
      return {
        type,
        ...(motd === undefined ? {} : { motd }),
        ...(error === undefined ? {} : { error }),
      };
    }
    case "ack": {
      return { type, id: typeof m.id === "string" ? m.id : undefined };
    }
    case "allocated":
      if (typeof m.nameplate !== "string" || !DIGITS.test(m.nameplate)) {
        throw bad("a nameplate that is not digits");
      }
      return { type, nameplate: m.nameplate };
    case "claimed":
      if (typeof m.mailbox !== "string" || m.mailbox === "") throw bad("no mailbox id");
      return { type, mailbox: m.mailbox };
    case "released":
    case "closed":
      return { type };
    case "nameplates": {
      const list = m.nameplates;
      if (!Array.isArray(list) || !list.every((n) => isObject(n) && typeof n.id === "string")) {
        throw bad("a nameplate list that is not [{id: text}, ...]");
      }
      return { type, nameplates: list.map((n) => n.id as string) };
    }
    case "message":
      if (typeof m.side !== "string") throw bad("a side that is not text");
      if (typeof m.phase !== "string") throw bad("a phase that is not text");
      if (typeof m.body !== "string" || !HEX.test(m.body)) throw bad("a body that is not hex");
      return { type, side: m.side, phase: m.phase, body: fromHex(m.body, "body") };
    case "error": {
      if (typeof m.error !== "string") throw bad("an error that is not text");
      const orig = m.orig;
      const request = isObject(orig) && typeof orig.type === "string" ? orig.type : "a request";
      return { type, error: m.error, request };
    }
    default:
      return { type: "other", name: type };
  }
}
