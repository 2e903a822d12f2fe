/**
 * The sockit command line: the command table, usage text and exit codes.
 *
 * Exit codes: 0 success, 1 runtime failure (one line on stderr; the stack only with
 * `--verbose`), 2 usage error (the message, then the command's usage).
 *
 * @module
 */

import denoJson from "../deno.json" with { type: "json" };
import { type Command, GLOBAL_OPTIONS, parseCommandLine } from "./command.ts";
import { UsageError } from "./net/errors.ts";
import { chatCommand, relayCommand } from "./relay/command.ts";
import { recvCommand, sendCommand } from "./transfer/command.ts";
import { udpEchoCommand, udpPingCommand } from "./udp/command.ts";
import { socks5Command } from "./socks5/command.ts";

/** sockit's version, from deno.json. */
export const VERSION: string = denoJson.version;

/** Exit codes of the sockit command. */
export const ExitCode = {
  Ok: 0,
  Failure: 1,
  Usage: 2,
} as const;

/** Every subcommand, in the order `sockit --help` lists them. */
export const COMMANDS: readonly Command[] = [
  relayCommand,
  chatCommand,
  sendCommand,
  recvCommand,
  udpEchoCommand,
  udpPingCommand,
  socks5Command,
];

/** The top-level usage text. */
export function topUsage(): string {
  const width = Math.max(...COMMANDS.map((c) => c.name.length));
  const lines = COMMANDS.map((c) => `  ${c.name.padEnd(width)}  ${c.summary}`);
  return [
    `sockit ${VERSION}: relay, file transfer, UDP echo/ping and SOCKS5 in one tool`,
    "",
    "Usage: sockit [global options] <command> [options]",
    "       sockit <command> --help",
    "       sockit --version",
    "",
    "Commands:",
    ...lines,
    "",
    "Global options, before or after the command: --help (-h), --verbose (-v), --quiet (-q)",
  ].join("\n");
}

function errorLine(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/** What {@linkcode splitGlobalOptions} found before the command name. */
export interface LeadingOptions {
  /** Global options given before the command, spelled as given (e.g. `["-v", "--quiet"]`). */
  globals: string[];
  /** `--version` or `-V` was among them. */
  version: boolean;
  /** The command name, if any. */
  name: string | undefined;
  /** Everything after the command name. */
  rest: string[];
}

const GLOBAL_SHORT = new Map(
  Object.entries(GLOBAL_OPTIONS).flatMap(([long, spec]) => spec.short ? [[spec.short, long]] : []),
);

/**
 * Splits the global options that come before the command name (`sockit -v relay`) from the
 * name and the command's own arguments. Short flags may be grouped (`-vq`). Throws
 * {@linkcode UsageError} for an option before the command that is not a global one.
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert/strict";
 * import { splitGlobalOptions } from "./cli.ts";
 * const split = splitGlobalOptions(["-v", "--quiet", "relay", "--port", "0"]);
 * assert.deepEqual(split, {
 *   globals: ["-v", "--quiet"],
 *   version: false,
 *   name: "relay",
 *   rest: ["--port", "0"],
 * });
 * assert.throws(() => splitGlobalOptions(["--port", "0", "relay"]), /before the command/);
 * ```
 */
export function splitGlobalOptions(args: string[]): LeadingOptions {
  const globals: string[] = [];
  let version = false;
  let i = 0;
  for (; i < args.length && args[i].startsWith("-") && args[i] !== "-"; i++) {
    const arg = args[i];
    if (arg === "--version" || arg === "-V") {
      version = true;
    } else if (
      arg.startsWith("--") ? Object.hasOwn(GLOBAL_OPTIONS, arg.slice(2)) : isShortGroup(arg)
    ) {
      globals.push(arg);
    } else {
      throw new UsageError(
        `Unknown option '${arg}' before the command: only --help, --verbose, --quiet ` +
          "and --version go there",
      );
    }
  }
  return { globals, version, name: args[i], rest: args.slice(i + 1) };
}

function isShortGroup(arg: string): boolean {
  return /^-[a-zA-Z]+$/.test(arg) && [...arg.slice(1)].every((c) => GLOBAL_SHORT.has(c));
}

function wantsHelp(globals: string[]): boolean {
  return globals.some((g) => g === "--help" || (!g.startsWith("--") && g.includes("h")));
}

/**
 * Runs sockit with `args` (without the program name) and resolves the exit code. Never
 * throws. Global options may come before the command (`sockit -v relay`) or after it.
 *
 * @example Usage
 * ```ts ignore
 * import { main } from "./cli.ts";
 * Deno.exit(await main(["--version"]));
 * ```
 */
export async function main(args: string[]): Promise<number> {
  let split: LeadingOptions;
  try {
    split = splitGlobalOptions(args);
  } catch (error) {
    console.error(`sockit: ${errorLine(error)}\n\n${topUsage()}`);
    return ExitCode.Usage;
  }
  const { globals, version } = split;
  let { name, rest } = split;
  if (version) {
    console.log(`sockit ${VERSION}`);
    return ExitCode.Ok;
  }
  // `sockit help relay` is `sockit relay --help`.
  if (name === "help" && rest.length > 0) {
    [name, rest] = [rest[0], ["--help", ...rest.slice(1)]];
  }
  if (name === undefined || name === "help") {
    const asked = name === "help" || wantsHelp(globals);
    (asked ? console.log : console.error)(topUsage());
    return asked ? ExitCode.Ok : ExitCode.Usage;
  }
  const command = COMMANDS.find((c) => c.name === name || c.aliases?.includes(name));
  if (!command) {
    console.error(`sockit: unknown command '${name}'\n\n${topUsage()}`);
    return ExitCode.Usage;
  }
  let verbose = false;
  try {
    // Options before the command go to it as if given after it.
    const parsed = parseCommandLine(command, [...globals, ...rest]);
    verbose = parsed.values.verbose === true;
    if (parsed.values.help) {
      console.log(command.usage);
      return ExitCode.Ok;
    }
    return await command.run(parsed);
  } catch (error) {
    if (error instanceof UsageError) {
      console.error(`sockit ${command.name}: ${error.message}\n\n${command.usage}`);
      return ExitCode.Usage;
    }
    console.error(`sockit ${command.name}: ${errorLine(error)}`);
    if (verbose && error instanceof Error && error.stack) console.error(error.stack);
    return ExitCode.Failure;
  }
}
