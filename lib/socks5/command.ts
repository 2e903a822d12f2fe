/**
 * The `socks5` subcommand.
 *
 * @module
 */

import type { Command } from "../command.ts";
import { notImplemented } from "../not_implemented.ts";

/** `sockit socks5`: a SOCKS5 proxy (RFC 1928, RFC 1929). */
export const socks5Command: Command = notImplemented("socks5", "SOCKS5 proxy");
