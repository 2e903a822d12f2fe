/**
 * The sockit command line: the command table, usage text and exit codes.
 *
 * Exit codes: 0 success, 1 runtime failure (one line on stderr; the stack only with
 * `--verbose`), 2 usage error (the message, then the command's usage).
 *
 * @module
 */

import denoJson from "../deno.json" with { type: "json" };
import { type Command, parseCommandLine } from "./command.ts";
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
    "Usage: sockit <command> [options]",
    "       sockit <command> --help",
    "       sockit --version",
    "",
    "Commands:",
    ...lines,
    "",
    "Global options: --help (-h), --verbose (-v), --quiet (-q)",
  ].join("\n");
}

function errorLine(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/**
 * Runs sockit with `args` (without the program name) and resolves the exit code. Never
 * throws.
 *
 * @example Usage
 * ```ts ignore
 * import { main } from "./cli.ts";
 * Deno.exit(await main(["--version"]));
 * ```
 */
export async function main(args: string[]): Promise<number> {
  const [name, ...rest] = args;
  if (name === undefined || name === "--help" || name === "-h" || name === "help") {
    const out = name === undefined ? console.error : console.log;
    out(topUsage());
    return name === undefined ? ExitCode.Usage : ExitCode.Ok;
  }
  if (name === "--version" || name === "-V") {
    console.log(`sockit ${VERSION}`);
    return ExitCode.Ok;
  }
  const command = COMMANDS.find((c) => c.name === name);
  if (!command) {
    console.error(`sockit: unknown command '${name}'\n\n${topUsage()}`);
    return ExitCode.Usage;
  }
  const verbose = rest.includes("--verbose") || rest.includes("-v");
  try {
    const parsed = parseCommandLine(command, rest);
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
