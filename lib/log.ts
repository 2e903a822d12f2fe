/**
 * One-line log messages on stderr, shared by every command. Servers print
 * `sockit TOOL: listening on HOST:PORT` once they accept traffic; scripts and tests wait for
 * that line.
 *
 * @module
 */

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/**
 * What {@linkcode printable} escapes in text: C0 controls but TAB (U+0000-U+0008,
 * U+000A-U+001F), DEL and the C1 controls (U+007F-U+009F), the bidi embeddings, overrides and
 * isolates (U+202A-U+202E, U+2066-U+2069), and lone surrogates.
 */
const UNSAFE =
  // deno-lint-ignore no-control-regex -- matching control characters is the point.
  /[\x00-\x08\x0a-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]|[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/g;

function escapeChar(c: string): string {
  const code = c.charCodeAt(0);
  if (code === 0x0a) return "\\n";
  if (code === 0x0d) return "\\r";
  if (code < 0x80) return `\\x${code.toString(16).padStart(2, "0")}`;
  return `\\u{${code.toString(16)}}`;
}

function escapeText(text: string): string {
  return text.replace(UNSAFE, escapeChar);
}

/** Length of the valid UTF-8 sequence starting at `i`, or 0 when `bytes[i]` starts none. */
function utf8SequenceLength(bytes: Uint8Array, i: number): number {
  const b = bytes[i];
  if (b < 0x80) return 1;
  let n: number;
  let lo = 0x80;
  let hi = 0xbf;
  if (b >= 0xc2 && b <= 0xdf) n = 2;
  else if (b >= 0xe0 && b <= 0xef) {
    n = 3;
    if (b === 0xe0) lo = 0xa0; // overlong
    if (b === 0xed) hi = 0x9f; // surrogates
  } else if (b >= 0xf0 && b <= 0xf4) {
    n = 4;
    if (b === 0xf0) lo = 0x90; // overlong
    if (b === 0xf4) hi = 0x8f; // above U+10FFFF
  } else return 0;
  if (i + n > bytes.length) return 0;
  const second = bytes[i + 1];
  if (second < lo || second > hi) return 0;
  for (let k = 2; k < n; k++) {
    if ((bytes[i + k] & 0xc0) !== 0x80) return 0;
  }
  return n;
}

/**
 * Makes a string or bytes a peer sent safe to show on a terminal or in a log line: control
 * characters cannot move the cursor, rewrite the line, set the terminal's title or reorder
 * the text, so nobody can forge a line of ours. Escaped visibly: LF and CR as `\n` and `\r`,
 * the other C0 controls (TAB excepted) and DEL as `\xNN` (ESC is `\x1b`), C1 controls, bidi
 * overrides and isolates (U+202A-U+202E, U+2066-U+2069) and lone surrogates as `\u{HEX}`
 * (`\u{85}`, `\u{202e}`), and in bytes each byte that is not part of valid UTF-8 as `\xNN`
 * (always 0x80 or above, so it cannot be mistaken for a control). Everything else, backslashes
 * included, is kept as is.
 *
 * @example Escape a forged notice, a terminal title sequence and invalid UTF-8
 * ```ts
 * import assert from "node:assert/strict";
 * import { printable } from "./log.ts";
 * assert.equal(printable("\r* fake notice"), "\\r* fake notice");
 * assert.equal(printable("\x1b]0;title\x07"), "\\x1b]0;title\\x07");
 * assert.equal(printable("abc\u202edef\tgh"), "abc\\u{202e}def\tgh");
 * assert.equal(printable(new Uint8Array([0x68, 0xc3, 0xa9, 0xff, 0x0a])), "h\u00e9\\xff\\n");
 * ```
 */
export function printable(data: string | Uint8Array): string {
  if (typeof data === "string") return escapeText(data);
  let out = "";
  let start = 0;
  let i = 0;
  while (i < data.length) {
    if (data[i] < 0x80) {
      i++;
      continue;
    }
    const n = utf8SequenceLength(data, i);
    if (n > 0) {
      i += n;
      continue;
    }
    out += escapeText(decoder.decode(data.subarray(start, i)));
    out += `\\x${data[i].toString(16).padStart(2, "0")}`;
    start = ++i;
  }
  return out + escapeText(decoder.decode(data.subarray(start)));
}

/**
 * Quotes a string or bytes from the network for a log line: `"`, the text with `\` and `"`
 * escaped and then made {@linkcode printable}, `"`. A peer can neither end the quote nor forge
 * the rest of the line (`... user=admin CONNECT bank:443 reply=0x00`), a second line or a
 * terminal escape. Every log site that shows a peer-supplied string (a user name, a requested
 * domain, a file name, a peer's error text) goes through this.
 *
 * @example A forged log line stays inside its quotes
 * ```ts
 * import assert from "node:assert/strict";
 * import { quote } from "./log.ts";
 * const forged = 'bob" reply=0x00\nsockit socks5: ok';
 * assert.equal(quote(forged), String.raw`"bob\" reply=0x00\nsockit socks5: ok"`);
 * assert.equal(quote(new Uint8Array([0x61, 0xff, 0x1b, 0x5c])), String.raw`"a\xff\x1b\\"`);
 * ```
 */
export function quote(data: string | Uint8Array): string {
  if (typeof data === "string") return `"${printable(data.replace(/[\\"]/g, "\\$&"))}"`;
  let extra = 0;
  for (const b of data) if (b === 0x5c || b === 0x22) extra++;
  if (extra === 0) return `"${printable(data)}"`;
  const escaped = new Uint8Array(data.length + extra);
  let j = 0;
  for (const b of data) {
    if (b === 0x5c || b === 0x22) escaped[j++] = 0x5c;
    escaped[j++] = b;
  }
  return `"${printable(escaped)}"`;
}

/** Options for {@linkcode Logger}. */
export interface LoggerOptions {
  /** Suppress info lines (warnings and errors still print). @default {false} */
  quiet?: boolean;
  /** Print debug lines. @default {false} */
  verbose?: boolean;
  /** Where lines go. @default {Deno.stderr} */
  sink?: { writeSync(p: Uint8Array): number };
}

/**
 * A logger that prefixes each line with `sockit TOOL:`.
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert/strict";
 * import { Logger } from "./log.ts";
 * const lines: string[] = [];
 * const log = new Logger("relay", {
 *   sink: { writeSync: (p) => (lines.push(new TextDecoder().decode(p)), p.length) },
 * });
 * log.info("hello");
 * assert.equal(lines[0], "sockit relay: hello\n");
 * ```
 */
export class Logger {
  #prefix: string;
  #quiet: boolean;
  #verbose: boolean;
  #sink: { writeSync(p: Uint8Array): number };
  #broken = false;

  /** Creates a logger for `tool`. */
  constructor(tool: string, options: LoggerOptions = {}) {
    this.#prefix = `sockit ${tool}: `;
    this.#quiet = options.quiet ?? false;
    this.#verbose = options.verbose ?? false;
    this.#sink = options.sink ?? Deno.stderr;
  }

  #write(line: string): void {
    if (this.#broken) return;
    const data = encoder.encode(this.#prefix + line + "\n");
    try {
      let off = 0;
      while (off < data.length) off += this.#sink.writeSync(data.subarray(off));
    } catch {
      // stderr is gone (closed pipe): logging must never take a server down with it.
      this.#broken = true;
    }
  }

  /** Whether {@linkcode Logger.info} writes (not quiet): skip building lines nobody sees. */
  get infoEnabled(): boolean {
    return !this.#quiet;
  }

  /** Whether {@linkcode Logger.debug} writes (verbose). */
  get debugEnabled(): boolean {
    return this.#verbose;
  }

  /** Logs an informational line unless quiet. */
  info(message: string): void {
    if (!this.#quiet) this.#write(message);
  }

  /** Logs a warning (always). */
  warn(message: string): void {
    this.#write(`warning: ${message}`);
  }

  /** Logs an error (always). */
  error(message: string): void {
    this.#write(`error: ${message}`);
  }

  /** Logs a debug line only with verbose on. */
  debug(message: string): void {
    if (this.#verbose) this.#write(message);
  }

  /** Logs the ready line `listening on HOST:PORT` (always, even when quiet). */
  listening(address: string, detail = ""): void {
    this.#write(`listening on ${address}${detail ? ` (${detail})` : ""}`);
  }
}
