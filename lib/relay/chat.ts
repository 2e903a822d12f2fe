/**
 * The relay's client, `sockit chat`: sends the lines it reads (stdin by default) and prints
 * what arrives (stdout by default), in line or framed mode.
 *
 * **Setup.** Before it reads any input, chat waits for the relay's welcome, then takes the
 * requested name (`/nick`) and room (`/join`), each step waiting (bounded) for the relay's
 * answer. It then prints one welcome line: the relay's last one in line mode,
 * `* you are NAME in ROOM` in framed mode. A relay that refuses the connection (server full),
 * the name or the room makes {@linkcode runChat} throw a {@linkcode ChatRefusedError} after the
 * relay's line is printed. A line-mode chat to a framed relay (or the other way round) fails
 * with a {@linkcode ProtocolError} that says which flag to use.
 *
 * **End.** At end of input it sends `/quit` and waits (bounded) for the relay to close, so
 * piped input is delivered in full. When the relay closes first, the reason comes only from
 * the relay's own farewell (`* disconnected: ...`, `* error: ...`; framed: Bye, Error), never
 * from another user's notice.
 *
 * **Terminals.** On a terminal, received lines are shown through {@linkcode printable}, so a
 * peer cannot forge a relay notice with `\r` or retitle the terminal with an escape sequence;
 * piped output is byte-exact.
 *
 * @module
 */

import { formatAddress } from "../net/address.ts";
import { BufferedReader, type Reader } from "../net/buffered_reader.ts";
import { withTimeout } from "../net/deadline.ts";
import { LimitError, ProtocolError } from "../net/errors.ts";
import { ControlFrame, encodeFrame, encodeHello, readFrame, readHello } from "../net/frame.ts";
import { concatBytes } from "../net/bytes.ts";
import { writeAll, type Writer } from "../net/write_all.ts";
import { printable } from "../log.ts";
import { RELAY_DEFAULTS } from "./limits.ts";
import {
  decodeDeliverPayload,
  decodeWelcomePayload,
  NOTICE_PREFIX,
  RELAY_PROTOCOL,
  RELAY_PROTOCOL_VERSION,
  RelayFrame,
} from "./protocol.ts";

/** Options for {@linkcode runChat}. */
export interface ChatOptions {
  /** Name to take with `/nick` once connected; a refusal throws {@linkcode ChatRefusedError}. */
  name?: string;
  /** Room to join once connected; a refusal throws {@linkcode ChatRefusedError}. */
  room?: string;
  /** Speak the framed protocol (the relay must run with `--framed`). @default {false} */
  framed?: boolean;
  /** Lines to send. @default {Deno.stdin} */
  input?: Reader;
  /** Where received messages go. @default {Deno.stdout} */
  output?: Writer;
  /**
   * Show control characters of received lines visibly ({@linkcode printable}) instead of
   * writing them as received. @default {true when output is Deno.stdout and a terminal}
   */
  escapeControls?: boolean;
  /** How the relay is named in error messages. @default {the connection's remote address} */
  relayAddress?: string;
  /** How long each setup step (welcome, /nick, /join) waits for the relay, in ms. @default {10000} */
  setupTimeoutMs?: number;
  /** How long to wait for the relay to close after `/quit`, in ms. @default {5000} */
  quitTimeoutMs?: number;
  /** Longest line read from the input, in bytes. @default {65536} */
  maxLineBytes?: number;
}

/** How a chat ended. */
export interface ChatResult {
  /** 0 when the input ended (or `/quit` was sent) and the relay closed; 1 when it closed first. */
  code: number;
  /**
   * Why the connection ended: "quit", the relay's farewell when it closed first, or "the relay
   * closed the connection" when it said nothing. Peer text is passed through
   * {@linkcode printable}.
   */
  reason: string;
}

/**
 * The relay refused the connection (server full), the name or the room chat asked for. The
 * message says what was refused and quotes the relay (through {@linkcode printable}).
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert/strict";
 * import { ChatRefusedError } from "./chat.ts";
 * const err = new ChatRefusedError("Cannot take the name bob: the name is taken");
 * assert.equal(err.name, "ChatRefusedError");
 * assert.ok(err instanceof Error);
 * ```
 */
export class ChatRefusedError extends Error {
  /** Creates a refusal error. */
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "ChatRefusedError";
  }
}

/** Longest line chat accepts from a relay: 16 MiB (the relay's largest --max-line) and a prefix. */
export const CHAT_MAX_INCOMING_LINE: number = RELAY_DEFAULTS.maxLineLimit + 1024;

/** Default of {@linkcode ChatOptions.setupTimeoutMs}. */
export const CHAT_SETUP_TIMEOUT_MS = 10_000;

const encoder = new TextEncoder();
const decoder = new TextDecoder();
const NEWLINE = new Uint8Array([0x0a]);
const NOTICE_BYTES = encoder.encode(NOTICE_PREFIX);

/** Line mode: the relay's welcome notice (after the `* ` prefix). */
const WELCOME_LINE = /^welcome (\S+), you are in room (\S+); \/help lists commands$/;
/** The relay's answer when it refuses a /nick or a /join. */
const REFUSAL = /^cannot (rename|join)\b/;
/** Line mode: notices the relay sends right before it closes the connection. */
const FAREWELL = /^(disconnected: |error: |server full\b)/;

/** One thing the relay sent, classified; `display` is the line to print (without LF). */
type Incoming =
  | { kind: "message" | "notice"; display: Uint8Array }
  | { kind: "welcome"; display: Uint8Array; name: string; room: string }
  | { kind: "refusal" | "farewell"; display: Uint8Array; text: string };

/** Reads the relay's traffic as {@linkcode Incoming} items; null at end of file. */
type Source = () => Promise<Incoming | null>;

/**
 * Chats over an open connection to a relay until the input ends or the relay closes.
 *
 * Throws {@linkcode ChatRefusedError} when the relay refuses the connection, the name or the
 * room, {@linkcode ProtocolError} when it speaks the other mode, and `TimeoutError` when a
 * setup step gets no answer within `setupTimeoutMs`; the connection is closed either way. A
 * name or room holding a line break is a `RangeError`.
 *
 * @example Send two lines from a string and leave
 * ```ts ignore
 * import { runChat } from "./chat.ts";
 * const conn = await Deno.connect({ hostname: "127.0.0.1", port: 7070 });
 * const lines = new TextEncoder().encode("hello\nworld\n");
 * let done = false;
 * const input = { read: (p: Uint8Array) => {
 *   if (done) return Promise.resolve(null);
 *   p.set(lines); done = true; return Promise.resolve(lines.length);
 * } };
 * const result = await runChat(conn, { input, name: "alice" });
 * console.log(result.code);
 * ```
 */
export async function runChat(conn: Deno.TcpConn, options: ChatOptions = {}): Promise<ChatResult> {
  for (const [what, value] of [["name", options.name], ["room", options.room]]) {
    if (value !== undefined && /[\r\n]/.test(value)) {
      throw new RangeError(`Cannot use ${what} ${JSON.stringify(value)}: it spans lines`);
    }
  }
  conn.setNoDelay(true);
  const output = options.output ?? Deno.stdout;
  const escape = options.escapeControls ?? (output === Deno.stdout && Deno.stdout.isTerminal());
  const maxLine = options.maxLineBytes ?? RELAY_DEFAULTS.maxLineBytes;
  const input = new BufferedReader(options.input ?? Deno.stdin, { bufferSize: maxLine + 2 });
  // Room for the longest line a relay accepts (--max-line up to 16 MiB) plus its name prefix.
  const reader = new BufferedReader(conn, { bufferSize: CHAT_MAX_INCOMING_LINE + 2 });
  const framed = options.framed ?? false;
  const relay = options.relayAddress ?? formatAddress(conn.remoteAddr);
  const send = (bytes: Uint8Array) => writeAll(conn, bytes);
  const sendLine = framed
    ? (line: Uint8Array) => {
      const isCommand = line[0] === 0x2f && line[1] !== 0x2f;
      if (isCommand) return send(encodeFrame(RelayFrame.Command, line));
      return send(encodeFrame(RelayFrame.Message, line[0] === 0x2f ? line.subarray(1) : line));
    }
    : (line: Uint8Array) => send(concatBytes(line, NEWLINE));
  const print = (line: Uint8Array) =>
    writeAll(output, concatBytes(escape ? encoder.encode(printable(line)) : line, NEWLINE));
  const next = framed ? frameSource(reader, send) : lineSource(reader, relay);

  let closedDuringSetup: string | undefined;
  try {
    closedDuringSetup = await setUp(conn, {
      framed,
      reader,
      relay,
      next,
      print,
      sendLine,
      name: options.name,
      room: options.room,
      timeoutMs: options.setupTimeoutMs ?? CHAT_SETUP_TIMEOUT_MS,
      sendHello: () => send(encodeHello(RELAY_PROTOCOL, RELAY_PROTOCOL_VERSION)),
    });
  } catch (error) {
    closeQuietly(conn);
    throw error;
  }
  if (closedDuringSetup !== undefined) {
    closeQuietly(conn);
    return { code: 1, reason: closedDuringSetup };
  }

  let quitting = false;
  let reason = "";
  const fromRelay = (async () => {
    try {
      let item;
      while ((item = await next()) !== null) {
        await print(item.display);
        if (item.kind === "farewell") reason = printable(item.text);
      }
    } catch (error) {
      if (!quitting && !reason) reason = readFailure(error);
    }
  })();
  const toRelay = (async () => {
    try {
      while (true) {
        let line;
        try {
          line = await input.readLine(maxLine, { partialAtEof: true });
        } catch (error) {
          if (!(error instanceof LimitError)) throw error;
          console.error(`sockit chat: input line longer than ${maxLine} bytes not sent`);
          if (await input.skipLine()) continue;
          break;
        }
        if (line === null) break;
        // A /quit typed by the user ends the chat as cleanly as the end of input.
        if (isQuitCommand(line)) quitting = true;
        await sendLine(line);
      }
      quitting = true;
      await sendLine(encoder.encode("/quit"));
    } catch (error) {
      if (error instanceof Deno.errors.BrokenPipe || error instanceof Deno.errors.ConnectionReset) {
        return;
      }
      throw error;
    }
  })();

  const first = await Promise.race([fromRelay.then(() => "relay"), toRelay.then(() => "input")]);
  if (first === "input" && quitting) {
    try {
      await withTimeout(fromRelay, options.quitTimeoutMs ?? 5000, {
        what: "the relay to close after /quit",
      });
    } catch {
      // The relay kept the connection open: leave anyway.
    }
  }
  closeQuietly(conn);
  if (quitting) return { code: 0, reason: "quit" };
  return { code: 1, reason: reason || "the relay closed the connection" };
}

interface SetupContext {
  framed: boolean;
  reader: BufferedReader;
  relay: string;
  next: Source;
  print: (line: Uint8Array) => Promise<void>;
  sendLine: (line: Uint8Array) => Promise<void>;
  sendHello: () => Promise<void>;
  name: string | undefined;
  room: string | undefined;
  timeoutMs: number;
}

/**
 * Hello (framed), welcome, /nick, /join, then the one welcome line. Resolves undefined when
 * the chat may start, or the reason when the relay closed after its welcome.
 */
async function setUp(conn: Deno.TcpConn, ctx: SetupContext): Promise<string | undefined> {
  const { framed, reader, relay, next, print, timeoutMs } = ctx;
  const bounded = <T>(promise: Promise<T>, what: string) =>
    withTimeout(promise, timeoutMs, { what, onTimeout: () => closeQuietly(conn) });

  if (framed) {
    await ctx.sendHello();
    await bounded(readRelayHello(reader, relay), "the relay's hello");
  }

  /** Prints traffic until the answer: a welcome, a refusal, a farewell or end of file. */
  const answer = (what: string) =>
    bounded<Exclude<Incoming, { kind: "message" | "notice" }> | null>(
      (async () => {
        let item;
        while ((item = await next()) !== null) {
          // Only one welcome line is printed, once setup is done.
          if (item.kind === "welcome") return item;
          await print(item.display);
          if (item.kind === "refusal" || item.kind === "farewell") return item;
        }
        return null;
      })(),
      what,
    );

  const first = await answer("the relay's welcome");
  if (first === null) {
    throw new ChatRefusedError(
      `Cannot join the relay at ${relay}: it closed the connection before its welcome`,
    );
  }
  if (first.kind !== "welcome") {
    throw new ChatRefusedError(`Cannot join the relay at ${relay}: ${printable(first.text)}`);
  }
  let welcome = first;

  const steps: { wanted: string | undefined; command: string; refused: string }[] = [
    { wanted: ctx.name, command: "/nick", refused: "take the name" },
    // Already there: nothing to ask (older relays did not answer a /join of the same room).
    {
      wanted: ctx.room === welcome.room ? undefined : ctx.room,
      command: "/join",
      refused: "join room",
    },
  ];
  for (const step of steps) {
    if (!step.wanted) continue;
    await ctx.sendLine(encoder.encode(`${step.command} ${step.wanted}`));
    const got = await answer(`the relay's answer to ${step.command}`);
    if (got === null) return "the relay closed the connection";
    if (got.kind === "farewell") return printable(got.text);
    if (got.kind === "refusal") {
      // Leave cleanly rather than as a client that only stopped sending.
      await ctx.sendLine(encoder.encode("/quit")).catch(() => {});
      throw new ChatRefusedError(
        `Cannot ${step.refused} ${printable(step.wanted)}: ${printable(got.text)}`,
      );
    }
    if (got.kind === "welcome") welcome = got;
  }
  await print(
    framed ? encoder.encode(`${NOTICE_PREFIX}you are ${welcome.name} in ${welcome.room}`) : (
      welcome.display
    ),
  );
  return undefined;
}

/** Framed mode: reads the relay's hello; a line relay gets an error naming the right flag. */
async function readRelayHello(reader: BufferedReader, relay: string): Promise<void> {
  const first = await firstByte(reader);
  try {
    await readHello(reader, { protocol: RELAY_PROTOCOL, version: RELAY_PROTOCOL_VERSION });
  } catch (error) {
    if (error instanceof ProtocolError && first === 0x2a /* "*" */) {
      throw new ProtocolError(
        `${error.message} (the relay at ${relay} speaks the line protocol: drop --framed)`,
        { cause: error },
      );
    }
    throw error;
  }
}

/** The first byte the relay sent, without consuming it; null when it closed at once. */
async function firstByte(reader: BufferedReader): Promise<number | null> {
  while (reader.buffered === 0) {
    if (!(await reader.fill())) return null;
  }
  return (await reader.peek(1))[0];
}

/** Line mode: each line, classified; a framed relay's hello is refused first. */
function lineSource(reader: BufferedReader, relay: string): Source {
  let checked = false;
  return async () => {
    if (!checked) {
      checked = true;
      // A framed relay opens with its hello frame, whose type byte is 0x00: no text starts so.
      if ((await firstByte(reader)) === 0x00) {
        throw new ProtocolError(
          `Cannot chat in line mode: the relay at ${relay} speaks the framed protocol: use --framed`,
        );
      }
    }
    const line = await reader.readLine(CHAT_MAX_INCOMING_LINE, { partialAtEof: true });
    return line === null ? null : classifyLine(line);
  };
}

function classifyLine(line: Uint8Array): Incoming {
  // Deliveries start with "[", so only the relay's own lines start with "* ".
  if (line[0] !== 0x2a || line[1] !== 0x20) return { kind: "message", display: line };
  const text = decoder.decode(line.subarray(2));
  const welcome = WELCOME_LINE.exec(text);
  if (welcome) return { kind: "welcome", display: line, name: welcome[1], room: welcome[2] };
  if (REFUSAL.test(text)) return { kind: "refusal", display: line, text };
  if (FAREWELL.test(text)) return { kind: "farewell", display: line, text };
  return { kind: "notice", display: line };
}

/** Framed mode: each frame as a line to print; answers pings. */
function frameSource(reader: BufferedReader, send: (bytes: Uint8Array) => Promise<void>): Source {
  const notice = (payload: Uint8Array) => concatBytes(NOTICE_BYTES, payload);
  return async () => {
    while (true) {
      const frame = await readFrame(reader, { maxPayload: CHAT_MAX_INCOMING_LINE });
      if (frame === null) return null;
      switch (frame.type) {
        case RelayFrame.Deliver: {
          const d = decodeDeliverPayload(frame.payload);
          return { kind: "message", display: concatBytes(encoder.encode(`[${d.from}] `), d.data) };
        }
        case RelayFrame.Notice: {
          const text = decoder.decode(frame.payload);
          const display = notice(frame.payload);
          return REFUSAL.test(text)
            ? { kind: "refusal", display, text }
            : { kind: "notice", display };
        }
        case RelayFrame.Welcome: {
          const w = decodeWelcomePayload(frame.payload);
          const display = encoder.encode(`${NOTICE_PREFIX}you are ${w.name} in ${w.room}`);
          return { kind: "welcome", display, name: w.name, room: w.room };
        }
        case ControlFrame.Ping:
          await send(encodeFrame(ControlFrame.Pong, frame.payload));
          break;
        case ControlFrame.Bye:
        case ControlFrame.Error:
          return {
            kind: "farewell",
            display: notice(frame.payload),
            text: decoder.decode(frame.payload),
          };
        case ControlFrame.Pong:
          break;
        default:
          throw new ProtocolError(
            `Cannot handle frame from relay: unknown type 0x${frame.type.toString(16)}`,
          );
      }
    }
  };
}

/** Why reading from the relay failed, for {@linkcode ChatResult.reason}. */
function readFailure(error: unknown): string {
  if (error instanceof Deno.errors.ConnectionReset) return "the relay reset the connection";
  return printable(error instanceof Error ? error.message : String(error));
}

/** True for a `/quit` command line (not `//quit`, which sends the text "/quit"). */
function isQuitCommand(line: Uint8Array): boolean {
  if (line[0] !== 0x2f || line[1] === 0x2f) return false;
  return decoder.decode(line).trim().split(/\s+/)[0].toLowerCase() === "/quit";
}

function closeQuietly(conn: Deno.TcpConn): void {
  try {
    conn.close();
  } catch {
    // Already closed.
  }
}
