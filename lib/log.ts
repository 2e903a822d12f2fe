/**
 * One-line log messages on stderr, shared by every command. Servers print
 * `sockit TOOL: listening on HOST:PORT` once they accept traffic; scripts and tests wait for
 * that line.
 *
 * @module
 */

const encoder = new TextEncoder();

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
 * import { Logger } from "./log.ts";
 * const lines: string[] = [];
 * const log = new Logger("relay", {
 *   sink: { writeSync: (p) => (lines.push(new TextDecoder().decode(p)), p.length) },
 * });
 * log.info("hello");
 * console.assert(lines[0] === "sockit relay: hello\n");
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
