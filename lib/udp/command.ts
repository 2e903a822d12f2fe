/**
 * The `udp-echo` and `udp-ping` subcommands.
 *
 * @module
 */

import type { Command } from "../command.ts";
import { notImplemented } from "../not_implemented.ts";

/** `sockit udp-echo`: an RFC 862 echo server. */
export const udpEchoCommand: Command = notImplemented("udp-echo", "RFC 862 UDP echo server");

/** `sockit udp-ping`: a measuring UDP echo client. */
export const udpPingCommand: Command = notImplemented("udp-ping", "Measure a UDP echo server");
