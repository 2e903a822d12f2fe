/**
 * The `socks5` subcommand: option parsing, the safety checks before listening, and wiring to
 * {@linkcode startSocks5Server}.
 *
 * @module
 */

import {
  type Command,
  intOption,
  LISTEN_OPTIONS,
  listenOptions,
  listOption,
  stringOption,
} from "../command.ts";
import { formatAddress, isLoopbackHost } from "../net/address.ts";
import { UsageError } from "../net/errors.ts";
import { descriptorWarning } from "../net/fd_limit.ts";
import { listenTcp, waitForShutdownSignal } from "../net/server.ts";
import { Logger } from "../log.ts";
import { parseIP } from "../net/ip.ts";
import { SOCKS5_DEFAULTS } from "./options.ts";
import { type Socks5Server, startSocks5Server } from "./server.ts";
import {
  MetricsRegistry,
  type MetricsServer,
  parseMetricsAddress,
  serveMetrics,
} from "../net/metrics.ts";
import {
  describeConfigChange,
  loadSocks5Config,
  type Socks5Config,
  type Socks5ConfigSources,
} from "./config.ts";

const D = SOCKS5_DEFAULTS;

/** Descriptors one client connection holds: its own and the destination's. */
const DESCRIPTORS_PER_CONNECTION = 2;

/**
 * SIGHUP re-reads `--users` and `--rules` files (when given) and hands the new users and
 * rules to the server for new sessions; a file that does not read or parse keeps the old
 * configuration, and the log says why. Without such files there is nothing to reload, which
 * is logged. Returns a function that removes the listener.
 */
function reloadOnHangup(
  server: Socks5Server,
  sources: Socks5ConfigSources,
  initial: Socks5Config,
  log: Logger,
): () => void {
  if (Deno.build.os === "windows") return () => {};
  let current = initial;
  const onHangup = () => {
    if (sources.usersFile === undefined && sources.rulesFile === undefined) {
      log.info("SIGHUP: nothing to reload (no --users or --rules file)");
      return;
    }
    let next: Socks5Config;
    try {
      next = loadSocks5Config(sources);
    } catch (error) {
      log.warn(`SIGHUP: keeping the old users and rules: ${(error as Error).message}`);
      return;
    }
    if (current.users.size > 0 && next.users.size === 0) {
      // Never an open proxy by accident: users can change, not disappear.
      log.warn("SIGHUP: keeping the old users: the new configuration has none");
      return;
    }
    const change = describeConfigChange(current, next);
    server.reconfigure(next);
    current = next;
    log.info(`SIGHUP: reloaded (${change}); open tunnels keep going`);
  };
  Deno.addSignalListener("SIGHUP", onHangup);
  return () => Deno.removeSignalListener("SIGHUP", onHangup);
}

/** The proxy's counters as Prometheus metrics (`lib/net/metrics.ts`). */
function socks5Metrics(server: Socks5Server): MetricsRegistry {
  const registry = new MetricsRegistry();
  const stats = registry.snapshot(() => server.stats());
  return registry
    .gauge("sockit_socks5_connections", {
      help: "Client connections open now",
      read: () => stats().active,
    })
    .counter("sockit_socks5_connections_accepted_total", {
      help: "Client connections accepted since start",
      read: () => stats().accepted,
    })
    .counter("sockit_socks5_clients_denied_total", {
      help: "Client connections closed by the client rules before any byte was read",
      read: () => stats().clientsDenied,
    })
    .counter("sockit_socks5_sessions_total", {
      help: "Sessions that ended, by protocol and command",
      label: "command",
      read: () => stats().sessions,
    })
    .counter("sockit_socks5_replies_total", {
      help: "Sessions that ended, by reply (SOCKS code 0xNN, HTTP status, none)",
      label: "reply",
      read: () => stats().replies,
    })
    .counter("sockit_socks5_sent_bytes_total", {
      help: "Bytes from clients to destinations (counted when a session ends)",
      read: () => stats().bytesUp,
    })
    .counter("sockit_socks5_received_bytes_total", {
      help: "Bytes from destinations to clients (counted when a session ends)",
      read: () => stats().bytesDown,
    })
    .counter("sockit_socks5_user_bytes_total", {
      help: "Bytes both ways per authenticated user (counted when a session ends)",
      label: "user",
      read: () => stats().userBytes,
    });
}

/** Host and port `sockit socks5` listens on by default. */
export const SOCKS5_LISTEN_DEFAULTS = { host: "127.0.0.1", port: 1080 } as const;

const USAGE = `Usage: sockit socks5 [--host H] [--port P] [options]
       sockit proxy ...  (the same command)

A SOCKS5 proxy (RFC 1928) with username/password authentication (RFC 1929): CONNECT, BIND
and UDP ASSOCIATE, IPv4, IPv6 and domain names. SOCKS4/4a (CONNECT) is served too, but
only while no users are configured. On the same port, an HTTP proxy: CONNECT host:port
tunnels and absolute-form requests (GET http://...), with Proxy-Authorization: Basic when
users are configured. One port, told apart by the first byte: 0x05 SOCKS5, 0x04 SOCKS4,
anything else HTTP.

Options:
  --host H               address to bind (default ${SOCKS5_LISTEN_DEFAULTS.host})
  --port P, -p P         port (default ${SOCKS5_LISTEN_DEFAULTS.port}; 0 picks a free one)
  --user NAME:PASS       require this user (repeatable); turns no-auth and SOCKS4 off
  --users FILE           users from a file, one NAME:PASS per line, # comments
  --allow-open           allow listening on a non-loopback address without users
  --allow CIDR           destinations allowed (repeatable); with any, others are denied
  --deny CIDR            destinations denied (repeatable)
  --deny-private         deny loopback, private (RFC 1918, fc00::/7), CGNAT and link-local
  --allow-client CIDR    client addresses allowed (repeatable); with any, others are refused
  --deny-client CIDR     client addresses refused (repeatable), before any byte is read
  --metrics ADDR         serve Prometheus metrics at http://ADDR/metrics (HOST:PORT; a bare
                         PORT is 127.0.0.1)
  --rules FILE           more rules, one per line: allow CIDR, deny CIDR, deny-private,
                         allow-client CIDR, deny-client CIDR (# comments)
                         destinations (off by default)
  --no-bind              refuse BIND (reply 0x07)
  --no-udp               refuse UDP ASSOCIATE (reply 0x07)
  --no-http              no HTTP proxying on this port (by default a client whose first byte
                         is not 0x05 or 0x04 is an HTTP proxy client: CONNECT, GET http://...)
  --advertise IP         address put in BIND and UDP ASSOCIATE replies (behind NAT)
  --bind-out IP          local address of outgoing connections (CONNECT, SOCKS and HTTP)
  --max-conns N          client connections at once (default ${D.maxConnections})
  --handshake-timeout MS greeting + auth + request deadline (default ${D.handshakeTimeoutMs})
  --connect-timeout MS   name lookup and dialling, all addresses together (default ${D.connectTimeoutMs})
  --idle-timeout MS      close a tunnel idle this long, 0 = never (default ${D.idleTimeoutMs})

The proxy resolves names itself (A and AAAA, /etc/hosts first) and dials exactly the
addresses the rules were checked against; a numeric name (0177.0.0.1, 0x7f.1, 127.1) is the
IPv4 address inet_aton reads, a bad one (08.1) is refused. The longest matching prefix
decides, a tie goes to deny; with any --allow, an address no rule matches is denied.
After ${D.authMaxFailures} failed logins within ${
  D.authFailureWindowMs / 1000
} s, a client address (IPv6: its /64) is refused
for ${D.authLockoutMs / 1000} s. One log line per session; --quiet turns them off.
SIGHUP re-reads --users and --rules files: new sessions get the new users and rules, open
tunnels keep going, and a file that does not parse keeps the old configuration.

Examples:
  sockit socks5 --port 1080 &
  curl --socks5-hostname 127.0.0.1:1080 http://example.com/

  sockit socks5 --host 0.0.0.0 --user alice:s3cret --deny-private
  curl --socks5-hostname 192.0.2.10:1080 --proxy-user alice:s3cret http://example.com/`;

/** `sockit socks5`: a SOCKS5 proxy (RFC 1928, RFC 1929). */
export const socks5Command: Command = {
  name: "socks5",
  aliases: ["proxy"],
  summary: "SOCKS5/4 and HTTP proxy on one port (alias: proxy), user/password auth",
  usage: USAGE,
  options: {
    ...LISTEN_OPTIONS,
    user: { type: "string", multiple: true },
    users: { type: "string" },
    "allow-open": { type: "boolean" },
    allow: { type: "string", multiple: true },
    deny: { type: "string", multiple: true },
    "deny-private": { type: "boolean" },
    rules: { type: "string" },
    "allow-client": { type: "string", multiple: true },
    "deny-client": { type: "string", multiple: true },
    "no-bind": { type: "boolean" },
    "no-udp": { type: "boolean" },
    "no-http": { type: "boolean" },
    advertise: { type: "string" },
    "bind-out": { type: "string" },
    "max-conns": { type: "string" },
    "handshake-timeout": { type: "string" },
    "connect-timeout": { type: "string" },
    "idle-timeout": { type: "string" },
    metrics: { type: "string" },
  },
  async run({ values }) {
    const { hostname, port } = listenOptions(values, SOCKS5_LISTEN_DEFAULTS);
    const sources: Socks5ConfigSources = {
      userSpecs: listOption(values, "user"),
      usersFile: stringOption(values, "users"),
      rulesFile: stringOption(values, "rules"),
      allow: listOption(values, "allow"),
      deny: listOption(values, "deny"),
      denyPrivate: !!values["deny-private"],
      allowClient: listOption(values, "allow-client"),
      denyClient: listOption(values, "deny-client"),
    };
    const config = loadSocks5Config(sources);
    const { users, rules, clientRules } = config;
    if (!isLoopbackHost(hostname) && users.size === 0 && !values["allow-open"]) {
      throw new UsageError(
        `Refusing to start an open proxy on ${hostname}: anyone who can reach it could use it. ` +
          "Add --user NAME:PASS (or --users FILE), bind a loopback address, or pass --allow-open",
      );
    }
    const advertise = stringOption(values, "advertise");
    if (advertise !== undefined && !parseIP(advertise)) {
      throw new UsageError(`Cannot parse --advertise '${advertise}': expected an IP address`);
    }
    const bindOut = stringOption(values, "bind-out")?.replace(/^\[|\]$/g, "");
    if (bindOut !== undefined && !parseIP(bindOut)) {
      throw new UsageError(`Cannot parse --bind-out '${bindOut}': expected an IP address`);
    }
    const log = new Logger("socks5", { quiet: !!values.quiet, verbose: !!values.verbose });
    const maxConnections = intOption(values, "max-conns", { fallback: D.maxConnections, min: 1 });
    const fdWarning = descriptorWarning(maxConnections, {
      flag: "--max-conns",
      perConnection: DESCRIPTORS_PER_CONNECTION,
    });
    if (fdWarning) log.warn(fdWarning);
    const listener = listenTcp({ hostname, port });
    const server = startSocks5Server(listener, {
      users: users.size > 0 ? users : undefined,
      rules,
      clientRules,
      allowBind: !values["no-bind"],
      allowUdp: !values["no-udp"],
      allowHttp: !values["no-http"],
      advertise,
      bindOut,
      maxConnections,
      handshakeTimeoutMs: intOption(values, "handshake-timeout", {
        fallback: D.handshakeTimeoutMs,
        min: 1,
      }),
      connectTimeoutMs: intOption(values, "connect-timeout", {
        fallback: D.connectTimeoutMs,
        min: 1,
      }),
      idleTimeoutMs: intOption(values, "idle-timeout", { fallback: D.idleTimeoutMs }),
      logger: log,
    });
    const detail = [
      values["no-http"] ? "SOCKS only" : "SOCKS and HTTP",
      users.size > 0 ? `${users.size} user(s), username/password required` : "no auth",
      rules.empty ? "" : "destination rules on",
      clientRules.empty ? "" : "client rules on",
    ].filter(Boolean).join(", ");
    const metricsText = stringOption(values, "metrics");
    let metrics: MetricsServer | undefined;
    if (metricsText !== undefined) {
      try {
        metrics = serveMetrics(socks5Metrics(server), {
          ...parseMetricsAddress(metricsText),
          logger: log,
        });
      } catch (error) {
        await server.stop({ timeoutMs: 0 });
        throw error;
      }
    }
    const stopReloads = reloadOnHangup(server, sources, config, log);
    log.listening(formatAddress(server.addr), detail);
    const signal = await waitForShutdownSignal();
    stopReloads();
    log.info(`${signal}: shutting down`);
    const stopping = server.stop({ timeoutMs: 2000 });
    for (const conn of server.active) {
      try {
        conn.close();
      } catch {
        // Closed meanwhile.
      }
    }
    await stopping;
    await metrics?.shutdown();
    return 0;
  },
};
