/**
 * The relay's client, `sockit chat`: sends the lines it reads (stdin by default) and prints
 * what arrives (stdout by default), in line or framed mode. At end of input it sends `/quit`
 * and waits (bounded) for the relay to close, so piped input is delivered in full.
 *
 * @module
 */

import { BufferedReader, type Reader } from "../net/buffered_reader.ts";
import { withTimeout } from "../net/deadline.ts";
import { LimitError, ProtocolError } from "../net/errors.ts";
import { ControlFrame, encodeFrame, encodeHello, readFrame, readHello } from "../net/frame.ts";
import { concatBytes } from "../net/bytes.ts";
import { writeAll, type Writer } from "../net/write_all.ts";
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
  /** Name to take with `/nick` once connected. */
  name?: string;
  /** Room to join once connected. */
  room?: string;
  /** Speak the framed protocol (the relay must run with `--framed`). @default {false} */
  framed?: boolean;
  /** Lines to send. @default {Deno.stdin} */
  input?: Reader;
  /** Where received messages go. @default {Deno.stdout} */
  output?: Writer;
  /** How long to wait for the relay to close after `/quit`, in ms. @default {5000} */
  quitTimeoutMs?: number;
  /** Longest line read from the input, in bytes. @default {65536} */
  maxLineBytes?: number;
}

/** How a chat ended. */
export interface ChatResult {
  /** 0 when the input ended and the relay closed after /quit; 1 when the relay closed first. */
  code: number;
  /** Why the connection ended, from the relay's last notice when it closed first. */
  reason: string;
}

/** Longest line chat accepts from a relay: 16 MiB (the relay's largest --max-line) and a prefix. */
export const CHAT_MAX_INCOMING_LINE = 16 * 1024 * 1024 + 1024;

const encoder = new TextEncoder();
const decoder = new TextDecoder();
const NEWLINE = new Uint8Array([0x0a]);

/**
 * Chats over an open connection to a relay until the input ends or the relay closes.
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
  conn.setNoDelay(true);
  const output = options.output ?? Deno.stdout;
  const maxLine = options.maxLineBytes ?? RELAY_DEFAULTS.maxLineBytes;
  const input = new BufferedReader(options.input ?? Deno.stdin, { bufferSize: maxLine + 2 });
  // Room for the longest line a relay accepts (--max-line up to 16 MiB) plus its name prefix.
  const reader = new BufferedReader(conn, { bufferSize: CHAT_MAX_INCOMING_LINE + 2 });
  const framed = options.framed ?? false;
  const send = (bytes: Uint8Array) => writeAll(conn, bytes);
  const sendLine = framed
    ? (line: Uint8Array) => {
      const isCommand = line[0] === 0x2f && line[1] !== 0x2f;
      if (isCommand) return send(encodeFrame(RelayFrame.Command, line));
      return send(encodeFrame(RelayFrame.Message, line[0] === 0x2f ? line.subarray(1) : line));
    }
    : (line: Uint8Array) => send(concatBytes(line, NEWLINE));

  if (framed) {
    await send(encodeHello(RELAY_PROTOCOL, RELAY_PROTOCOL_VERSION));
    await withTimeout(
      readHello(reader, { protocol: RELAY_PROTOCOL, version: RELAY_PROTOCOL_VERSION }),
      10_000,
      { what: "the relay's hello" },
    );
  }
  if (options.name) await sendLine(encoder.encode(`/nick ${options.name}`));
  if (options.room) await sendLine(encoder.encode(`/join ${options.room}`));

  let quitting = false;
  let lastNotice = "";
  const fromRelay = (async () => {
    try {
      if (framed) {
        lastNotice = await printFrames(reader, output, send);
      } else {
        let line;
        while (
          (line = await reader.readLine(CHAT_MAX_INCOMING_LINE, { partialAtEof: true })) !== null
        ) {
          await writeAll(output, concatBytes(line, NEWLINE));
          if (line[0] === 0x2a && line[1] === 0x20) lastNotice = decoder.decode(line.subarray(2));
        }
      }
    } catch (error) {
      if (!quitting) lastNotice = error instanceof Error ? error.message : String(error);
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
  try {
    conn.close();
  } catch {
    // Already closed.
  }
  if (quitting) return { code: 0, reason: "quit" };
  return { code: 1, reason: lastNotice || "the relay closed the connection" };
}

/** Prints framed-mode traffic as lines; answers pings. Resolves the last notice or reason. */
async function printFrames(
  reader: BufferedReader,
  output: Writer,
  send: (bytes: Uint8Array) => Promise<void>,
): Promise<string> {
  let last = "";
  while (true) {
    const frame = await readFrame(reader, { maxPayload: 16 * 1024 * 1024 });
    if (frame === null) return last;
    switch (frame.type) {
      case RelayFrame.Deliver: {
        const d = decodeDeliverPayload(frame.payload);
        await writeAll(output, concatBytes(encoder.encode(`[${d.from}] `), d.data, NEWLINE));
        break;
      }
      case RelayFrame.Notice:
        last = decoder.decode(frame.payload);
        await writeAll(output, encoder.encode(`${NOTICE_PREFIX}${last}\n`));
        break;
      case RelayFrame.Welcome: {
        const w = decodeWelcomePayload(frame.payload);
        await writeAll(output, encoder.encode(`${NOTICE_PREFIX}you are ${w.name} in ${w.room}\n`));
        break;
      }
      case ControlFrame.Ping:
        await send(encodeFrame(ControlFrame.Pong, frame.payload));
        break;
      case ControlFrame.Bye:
      case ControlFrame.Error:
        last = decoder.decode(frame.payload);
        await writeAll(output, encoder.encode(`${NOTICE_PREFIX}${last}\n`));
        break;
      case ControlFrame.Pong:
        break;
      default:
        throw new ProtocolError(
          `Cannot handle frame from relay: unknown type 0x${frame.type.toString(16)}`,
        );
    }
  }
}
