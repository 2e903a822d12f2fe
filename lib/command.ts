/**
 * What a sockit subcommand is ({@linkcode Command}) and the option parsers they share:
 * integers with bounds, byte sizes ("64KiB", "8MiB"), and host/port for servers.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { UsageError } from "./net/errors.ts";
import { parsePort } from "./net/address.ts";

/** A `node:util` parseArgs option description. */
export interface OptionSpec {
  /** Whether the option takes a value. */
  type: "string" | "boolean";
  /** One-letter alias. */
  short?: string;
  /** Whether the option may be given more than once. */
  multiple?: boolean;
}

/** Values parsed from the command line. */
export type OptionValues = Record<string, string | boolean | string[] | undefined>;

/** Parsed command line handed to {@linkcode Command.run}. */
export interface ParsedCommandLine {
  /** Option values by long name. */
  values: OptionValues;
  /** Arguments that are not options. */
  positionals: string[];
}

/** One subcommand: its name, help text, options and what it does. */
export interface Command {
  /** Subcommand name, e.g. "relay". */
  name: string;
  /** One line for the command list. */
  summary: string;
  /** Full usage text printed by `--help` and after a usage error. */
  usage: string;
  /** Other names the command answers to (`proxy` for `socks5`). */
  aliases?: readonly string[];
  /** Options besides the global ones (`--help`, `--verbose`, `--quiet`). */
  options: Record<string, OptionSpec>;
  /** Whether positional arguments are allowed. @default {false} */
  allowPositionals?: boolean;
  /** Runs the command; resolves the exit code. Throws UsageError for bad arguments. */
  run(args: ParsedCommandLine): Promise<number>;
}

/** Options every command accepts. */
export const GLOBAL_OPTIONS: Record<string, OptionSpec> = {
  help: { type: "boolean", short: "h" },
  verbose: { type: "boolean", short: "v" },
  quiet: { type: "boolean", short: "q" },
};

/**
 * Parses `args` for `command` (strict: unknown options are usage errors).
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert/strict";
 * import { parseCommandLine } from "./command.ts";
 * const cmd = { name: "x", summary: "", usage: "", options: { port: { type: "string" as const } },
 *   run: () => Promise.resolve(0) };
 * const parsed = parseCommandLine(cmd, ["--port", "7"]);
 * assert.equal(parsed.values.port, "7");
 * ```
 */
export function parseCommandLine(command: Command, args: string[]): ParsedCommandLine {
  try {
    const { values, positionals } = parseArgs({
      args,
      options: { ...GLOBAL_OPTIONS, ...command.options },
      allowPositionals: command.allowPositionals ?? false,
      strict: true,
    });
    return { values: values as OptionValues, positionals };
  } catch (error) {
    if (error instanceof TypeError) throw new UsageError(error.message);
    throw error;
  }
}

/** Returns a string option's value, or `options.fallback`. */
export function stringOption(
  values: OptionValues,
  name: string,
  options: { fallback: string },
): string;
/** Returns a string option's value, or undefined. */
export function stringOption(values: OptionValues, name: string): string | undefined;
export function stringOption(
  values: OptionValues,
  name: string,
  options: { fallback?: string } = {},
): string | undefined {
  const v = values[name];
  if (v === undefined) return options.fallback;
  if (typeof v !== "string") throw new UsageError(`Option --${name} takes a value`);
  return v;
}

/** Returns every value of a repeatable string option. */
export function listOption(values: OptionValues, name: string): string[] {
  const v = values[name];
  if (v === undefined) return [];
  return Array.isArray(v) ? v : [String(v)];
}

/**
 * Parses an integer option within `[options.min, options.max]` (default 0 to the largest
 * safe integer), or returns `options.fallback`.
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert/strict";
 * import { intOption } from "./command.ts";
 * assert.equal(intOption({ count: "5" }, "count", { fallback: 1, min: 1 }), 5);
 * assert.equal(intOption({}, "count", { fallback: 1, min: 1 }), 1);
 * assert.throws(() => intOption({ count: "0" }, "count", { fallback: 1, min: 1 }), /--count/);
 * ```
 */
export function intOption(
  values: OptionValues,
  name: string,
  options: { fallback: number; min?: number; max?: number },
): number {
  const text = stringOption(values, name);
  if (text === undefined) return options.fallback;
  const min = options.min ?? 0;
  const max = options.max ?? Number.MAX_SAFE_INTEGER;
  if (!/^-?\d+$/.test(text) || Number(text) < min || Number(text) > max) {
    throw new UsageError(
      `Cannot parse --${name} '${text}': expected a whole number from ${min} to ${max}`,
    );
  }
  return Number(text);
}

const SIZE_UNITS: Record<string, number> = {
  "": 1,
  b: 1,
  k: 1024,
  kb: 1000,
  kib: 1024,
  m: 1024 ** 2,
  mb: 1000 ** 2,
  mib: 1024 ** 2,
  g: 1024 ** 3,
  gb: 1000 ** 3,
  gib: 1024 ** 3,
};

/**
 * Parses a byte size such as `65536`, `64KiB`, `8M` or `1GiB`.
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert/strict";
 * import { parseSize } from "./command.ts";
 * assert.equal(parseSize("64KiB"), 65536);
 * assert.equal(parseSize("1.5k"), 1536);
 * ```
 */
export function parseSize(text: string, what = "size"): number {
  const m = /^(\d+(?:\.\d+)?)\s*([a-zA-Z]*)$/.exec(text.trim());
  const unit = m ? SIZE_UNITS[m[2].toLowerCase()] : undefined;
  if (!m || unit === undefined) {
    throw new UsageError(`Cannot parse ${what} '${text}': expected a number with KiB, MiB or GiB`);
  }
  return Math.round(Number(m[1]) * unit);
}

/** Parses a byte-size option (see {@linkcode parseSize}), or returns `options.fallback`. */
export function sizeOption(
  values: OptionValues,
  name: string,
  options: { fallback: number },
): number {
  const text = stringOption(values, name);
  return text === undefined ? options.fallback : parseSize(text, `--${name}`);
}

/** Reads `--host` and `--port` for a server, with its defaults. */
export function listenOptions(
  values: OptionValues,
  defaults: { host: string; port: number },
): { hostname: string; port: number } {
  const hostname = stringOption(values, "host", { fallback: defaults.host });
  const portText = stringOption(values, "port");
  const port = portText === undefined ? defaults.port : parsePort(portText, "--port");
  return { hostname, port };
}

/** The `--host` and `--port` option specs every server command declares. */
export const LISTEN_OPTIONS: Record<string, OptionSpec> = {
  host: { type: "string" },
  port: { type: "string", short: "p" },
};
