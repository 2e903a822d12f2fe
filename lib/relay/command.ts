/**
 * The `relay` and `chat` subcommands.
 *
 * @module
 */

import type { Command } from "../command.ts";
import { notImplemented } from "../not_implemented.ts";

/** `sockit relay`: a TCP hub that pushes each client's messages to all the others. */
export const relayCommand: Command = notImplemented(
  "relay",
  "TCP hub: pushes each client's lines to all the others",
);

/** `sockit chat`: the relay's client. */
export const chatCommand: Command = notImplemented("chat", "Client for the relay");
