/**
 * The `send` and `recv` subcommands.
 *
 * @module
 */

import type { Command } from "../command.ts";
import { notImplemented } from "../not_implemented.ts";

/** `sockit send`: sends files and folders to a receiver. */
export const sendCommand: Command = notImplemented("send", "Send files and folders");

/** `sockit recv`: receives files and folders into a folder. */
export const recvCommand: Command = notImplemented("recv", "Receive files and folders");
