/**
 * The relay's client commands (`/nick`, `/join`, `/who`, `/rooms`, `/help`, `/quit`): what a
 * command line means, and which arguments are refused before the relay acts on it. Whether a
 * name is taken is the relay's to decide; everything else is decided here.
 *
 * @module
 */

import { GENERATED_NAME_PATTERN, NAME_PATTERN, ROOM_PATTERN } from "./limits.ts";

/** What `/help` answers. */
export const HELP_TEXT = [
  "commands: /nick NAME (rename), /join ROOM (change room), /who (who is here),",
  "/rooms (rooms and sizes), /quit (leave), /help; start a message with // to send a leading /",
].join(" ");

/** A parsed command line. `refused` carries the notice that tells the client why. */
export type RelayCommand =
  | { kind: "nick"; name: string }
  | { kind: "join"; room: string }
  | { kind: "who" }
  | { kind: "rooms" }
  | { kind: "help" }
  | { kind: "quit" }
  | { kind: "refused"; notice: string };

/**
 * Parses a command line such as `/nick bob` (names are 1 to `maxNameLength` of
 * `A-Z a-z 0-9 _ . -`, rooms may also start with `#`, `userN` names are the relay's own).
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert/strict";
 * import { parseCommand } from "./client_commands.ts";
 * assert.deepEqual(parseCommand("/nick bob", { maxNameLength: 32 }), { kind: "nick", name: "bob" });
 * assert.equal(parseCommand("/nick user7", { maxNameLength: 32 }).kind, "refused");
 * assert.deepEqual(parseCommand("/JOIN #ops", { maxNameLength: 32 }), { kind: "join", room: "#ops" });
 * ```
 */
export function parseCommand(text: string, options: { maxNameLength: number }): RelayCommand {
  const [cmd, ...args] = text.trim().split(/\s+/);
  const arg = args.join(" ");
  const max = options.maxNameLength;
  switch (cmd.toLowerCase()) {
    case "/nick":
      if (!arg || arg.length > max || !NAME_PATTERN.test(arg)) {
        return refused(`cannot rename: use 1 to ${max} letters, digits, '_', '.' or '-'`);
      }
      if (GENERATED_NAME_PATTERN.test(arg)) {
        return refused(`cannot rename to ${arg}: names like user1 are handed out by the relay`);
      }
      return { kind: "nick", name: arg };
    case "/join":
      if (!arg || arg.length > max || !ROOM_PATTERN.test(arg)) {
        return refused(`cannot join: a room name is 1 to ${max} letters, digits, '_', '.' or '-'`);
      }
      return { kind: "join", room: arg };
    case "/who":
      return { kind: "who" };
    case "/rooms":
      return { kind: "rooms" };
    case "/help":
      return { kind: "help" };
    case "/quit":
      return { kind: "quit" };
    default:
      return refused(`unknown command ${cmd}; /help lists commands`);
  }
}

function refused(notice: string): RelayCommand {
  return { kind: "refused", notice };
}
