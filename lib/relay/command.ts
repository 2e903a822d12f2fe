/**
 * The `relay` and `chat` subcommands: option parsing and wiring to {@linkcode Relay} and
 * {@linkcode runChat}.
 *
 * @module
 */

import {
  type Command,
  intOption,
  LISTEN_OPTIONS,
  listenOptions,
  sizeOption,
  stringOption,
} from "../command.ts";
import { formatAddress, parseAddress } from "../net/address.ts";
import { SocketError, UsageError } from "../net/errors.ts";
import { descriptorWarning } from "../net/fd_limit.ts";
import { listenTcp, waitForShutdownSignal } from "../net/server.ts";
import { Logger } from "../log.ts";
import { RELAY_DEFAULTS, type SlowClientPolicy } from "./limits.ts";
import { Relay } from "./relay.ts";
import { formatRelayStats } from "./stats.ts";
import { runChat } from "./chat.ts";
import { parseProxyUrl, socks5Connect } from "../socks5/client.ts";

const D = RELAY_DEFAULTS;

const RELAY_USAGE = `Usage: sockit relay [--host H] [--port P] [options]

A TCP hub: each line (or frame) a client sends goes to every other client in its room,
prefixed with the sender's name ("[alice] hello"). Clients: nc, telnet, ncat, sockit chat.

Options:
  --host H             address to bind (default ${D.host}; 0.0.0.0 or :: for all)
  --port P, -p P       port (default ${D.port}; 0 picks a free one)
  --framed             binary framed mode (clients: sockit chat --framed)
  --max-line SIZE      longest line/message accepted (default 64KiB)
  --stall-timeout MS   a client whose socket takes no byte this long is stuck and stops
                       holding its room's senders back (default ${D.stallTimeoutMs})
  --max-queue SIZE     bytes queued for a stuck client before --slow applies (default 4MiB)
  --slow POLICY        disconnect (default: one-line reason, then close) or drop (no flow
                       control: drop what a full outbox cannot take, count, tell the client)
  --write-timeout MS   disconnect a client whose socket takes no byte this long (default ${D.writeTimeoutMs})
  --max-clients N      clients at once; more get a one-line refusal (default ${D.maxClients})
  --idle-timeout MS    disconnect a client silent this long, 0 = never (default ${D.idleTimeoutMs})
  --heartbeat MS       framed mode: ping interval; ${D.heartbeatMisses} missed = dropped (default ${D.heartbeatMs})
  --stats              log counters every --stats-interval seconds (default ${D.statsIntervalSeconds})
  --stats-interval S   seconds between --stats lines

Flow control: a reader that is behind holds back the senders of its room (TCP pushes back on
them) until its outbox drains, so every live reader gets every line; a stuck one is cut.

Client commands: /nick NAME, /join ROOM, /who, /rooms, /quit, /help; "//text" sends "/text".

Example:
  sockit relay --port 7070 &
  nc 127.0.0.1 7070`;

/** `sockit relay`: a TCP hub that pushes each client's messages to all the others. */
export const relayCommand: Command = {
  name: "relay",
  summary: "TCP hub: pushes each client's lines to all the others",
  usage: RELAY_USAGE,
  options: {
    ...LISTEN_OPTIONS,
    framed: { type: "boolean" },
    "max-line": { type: "string" },
    "max-queue": { type: "string" },
    "stall-timeout": { type: "string" },
    slow: { type: "string" },
    "write-timeout": { type: "string" },
    "max-clients": { type: "string" },
    "idle-timeout": { type: "string" },
    heartbeat: { type: "string" },
    stats: { type: "boolean" },
    "stats-interval": { type: "string" },
  },
  async run({ values }) {
    const { hostname, port } = listenOptions(values, { host: D.host, port: D.port });
    const slow = stringOption(values, "slow", { fallback: D.slowPolicy });
    if (slow !== "disconnect" && slow !== "drop") {
      throw new UsageError(`Cannot parse --slow '${slow}': expected disconnect or drop`);
    }
    const log = new Logger("relay", { quiet: !!values.quiet, verbose: !!values.verbose });
    const options = {
      framed: !!values.framed,
      maxLineBytes: sizeOption(values, "max-line", { fallback: D.maxLineBytes }),
      maxQueuedBytes: sizeOption(values, "max-queue", { fallback: D.maxQueuedBytes }),
      stallTimeoutMs: intOption(values, "stall-timeout", { fallback: D.stallTimeoutMs }),
      slowPolicy: slow as SlowClientPolicy,
      writeTimeoutMs: intOption(values, "write-timeout", { fallback: D.writeTimeoutMs }),
      maxClients: intOption(values, "max-clients", { fallback: D.maxClients, min: 1 }),
      idleTimeoutMs: intOption(values, "idle-timeout", { fallback: D.idleTimeoutMs }),
      heartbeatMs: intOption(values, "heartbeat", { fallback: D.heartbeatMs, min: 10 }),
      logger: log,
    };
    if (options.maxLineBytes < 1 || options.maxLineBytes > D.maxLineLimit) {
      throw new UsageError("Cannot use --max-line: expected 1 byte to 16MiB");
    }
    const statsEvery = intOption(values, "stats-interval", {
      fallback: D.statsIntervalSeconds,
      min: 1,
    });
    const fdWarning = descriptorWarning(options.maxClients, { flag: "--max-clients" });
    if (fdWarning) log.warn(fdWarning);
    const listener = listenTcp({ hostname, port });
    const relay = new Relay(listener, options);
    log.listening(formatAddress(relay.addr), options.framed ? "framed mode" : "line mode");
    const timer = values.stats
      ? setInterval(() => log.info(formatRelayStats(relay.stats())), statsEvery * 1000)
      : undefined;
    const signal = await waitForShutdownSignal();
    clearInterval(timer);
    log.info(`${signal}: shutting down`);
    await relay.shutdown();
    log.info(`stopped: ${formatRelayStats(relay.stats())}`);
    return 0;
  },
};

const CHAT_USAGE = `Usage: sockit chat HOST:PORT [--name N] [--room R] [--framed] [--proxy URL]

Connects to a sockit relay, waits for its welcome, takes the name and room asked for, then
sends each line read from stdin and prints what arrives on stdout. At the end of stdin it
sends /quit and exits once the relay closes. On a terminal, control characters in received
lines are shown escaped (\\r, \\x1b, ...); piped output is byte-exact.
Exit status: 0 after /quit; 1 when the relay refused the connection (server full), the name
or the room, when it speaks the other mode (--framed or not), or when it closed the
connection first (the reason is printed on stderr).

Options:
  --name N     take this name (/nick N) once connected; exit 1 if the relay refuses it
  --room R     join this room (/join R) once connected; exit 1 if the relay refuses it
  --framed     speak the relay's framed protocol (relay started with --framed)
  --proxy URL  connect through a SOCKS5 proxy: socks5://[user:pass@]host:port

Example:
  printf 'hello\\nworld\\n' | sockit chat 127.0.0.1:7070 --name alice`;

/** `sockit chat`: the relay's client. */
export const chatCommand: Command = {
  name: "chat",
  summary: "Client for the relay: stdin lines out, messages to stdout",
  usage: CHAT_USAGE,
  allowPositionals: true,
  options: {
    name: { type: "string" },
    room: { type: "string" },
    framed: { type: "boolean" },
    proxy: { type: "string" },
  },
  async run({ values, positionals }) {
    if (positionals.length !== 1) {
      throw new UsageError(
        positionals.length
          ? `Expected one address, got ${positionals.length}`
          : "Missing HOST:PORT",
      );
    }
    const target = parseAddress(positionals[0]);
    for (const option of ["name", "room"]) {
      if (/[\r\n]/.test(stringOption(values, option) ?? "")) {
        throw new UsageError(`Cannot use --${option}: it must fit on one line`);
      }
    }
    const proxyUrl = stringOption(values, "proxy");
    const proxy = proxyUrl === undefined ? undefined : parseProxyUrl(proxyUrl);
    let conn: Deno.TcpConn;
    try {
      conn = proxy
        ? await socks5Connect(proxy, target)
        : await Deno.connect({ hostname: target.hostname, port: target.port });
    } catch (error) {
      throw new SocketError(
        `Cannot connect to ${formatAddress(target)}${
          proxy ? ` via ${formatAddress(proxy)}` : ""
        }: ${(error as Error).message}`,
        { cause: error },
      );
    }
    const result = await runChat(conn, {
      name: stringOption(values, "name"),
      room: stringOption(values, "room"),
      framed: !!values.framed,
      relayAddress: formatAddress(target),
    });
    if (result.code !== 0) console.error(`sockit chat: connection closed: ${result.reason}`);
    return result.code;
  },
};
