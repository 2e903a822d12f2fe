/**
 * The `relay` and `chat` subcommands: option parsing and wiring to {@linkcode Relay} and
 * {@linkcode runChat}.
 *
 * @module
 */

import { webChat } from "./web/mod.ts";
import {
  type Command,
  intOption,
  LISTEN_OPTIONS,
  listenOptions,
  listOption,
  sizeOption,
  stringOption,
} from "../command.ts";
import { formatAddress, parseAddress } from "../net/address.ts";
import { SocketError, UsageError } from "../net/errors.ts";
import { descriptorWarning } from "../net/fd_limit.ts";
import {
  MetricsRegistry,
  type MetricsServer,
  parseMetricsAddress,
  serveMetrics,
} from "../net/metrics.ts";
import { listenTcp, waitForShutdownSignal } from "../net/server.ts";
import {
  CertificateChangedError,
  CertificatePinError,
  connectVerifiedTls,
  defaultCertNames,
  KnownHostsError,
  TlsHandshakeError,
} from "../net/tls.ts";
import { Logger, quote } from "../log.ts";
import type { Bus } from "./cluster/bus.ts";
import { Cluster } from "./cluster/cluster.ts";
import { NODE_ID_PATTERN } from "./cluster/envelope.ts";
import { readRuleFile } from "../net/address_rules.ts";
import { RELAY_DEFAULTS, type SlowClientPolicy } from "./limits.ts";
import { RelayCertificate } from "./certificate.ts";
import { Relay } from "./relay.ts";
import { formatRelayStats } from "./stats.ts";
import { runChat } from "./chat.ts";
import { socks5Connect } from "../socks5/client.ts";
import { clientProxy } from "../socks5/client_proxy.ts";

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
  --metrics ADDR       serve Prometheus metrics at http://ADDR/metrics (HOST:PORT; a bare
                       PORT or :PORT is on 127.0.0.1)

TLS and access (one port serves TLS, plain line clients and HTTP, told apart by their first
bytes; a client silent for ${D.sniffWaitMs} ms is a line client):
  --tls                serve TLS too; without --cert/--key, a self-signed certificate kept in
                       $XDG_CONFIG_HOME/sockit/ (created on first start; its fingerprint is
                       printed in the ready line). SIGHUP re-reads the certificate files.
  --cert FILE          certificate chain (PEM) to serve; with --key, implies --tls
  --key FILE           its private key (PEM)
  --tls-only           close clients that do not start TLS (implies --tls)
  --handshake-timeout MS  most time for a TLS handshake (default ${D.tlsHandshakeTimeoutMs})
  --allow CIDR         client addresses allowed (repeatable); with any, others are denied
  --deny CIDR          client addresses denied (repeatable); the longest prefix decides
  --max-per-ip N       connections at once from one address, 0 = no cap (default ${D.maxPerIp})
  --rules FILE         more client address rules, one per line: allow CIDR, deny CIDR
                       (# comments); SIGHUP re-reads it (and the TLS files)
  --web on|off         the chat page at / and WebSocket clients at /ws on this port (default:
                       on with --tls, else off: sniffing a plain port delays silent clients)
  --cluster URLS       share rooms with other relays through NATS: nats://HOST:PORT[,...]
  --node-id ID         this relay's name in the cluster, 1-16 of a-z 0-9 - (default:
                       HOSTNAME-PORT); default names become userN.ID

Flow control: a reader that is behind holds back the senders of its room (TCP pushes back on
them) until its outbox drains, so every live reader gets every line; a stuck one is cut.

Client commands: /nick NAME, /join ROOM, /who, /rooms, /quit, /help; "//text" sends "/text".

Examples:
  sockit relay --port 7070 &
  nc 127.0.0.1 7070
  sockit relay --host 0.0.0.0 --tls --max-per-ip 8 &
  sockit chat --tls relay.example:7070`;

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
    metrics: { type: "string" },
    tls: { type: "boolean" },
    cert: { type: "string" },
    key: { type: "string" },
    "tls-only": { type: "boolean" },
    "handshake-timeout": { type: "string" },
    allow: { type: "string", multiple: true },
    deny: { type: "string", multiple: true },
    "max-per-ip": { type: "string" },
    web: { type: "string" },
    cluster: { type: "string" },
    "node-id": { type: "string" },
    rules: { type: "string" },
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
      tlsHandshakeTimeoutMs: intOption(values, "handshake-timeout", {
        fallback: D.tlsHandshakeTimeoutMs,
        min: 1,
      }),
      tlsOnly: !!values["tls-only"],
      ...rulesOf(values),
      maxPerIp: intOption(values, "max-per-ip", { fallback: D.maxPerIp }),
      logger: log,
    };
    if (options.maxLineBytes < 1 || options.maxLineBytes > D.maxLineLimit) {
      throw new UsageError("Cannot use --max-line: expected 1 byte to 16MiB");
    }
    const statsEvery = intOption(values, "stats-interval", {
      fallback: D.statsIntervalSeconds,
      min: 1,
    });
    const metricsText = stringOption(values, "metrics");
    const metricsAt = metricsText === undefined ? undefined : parseMetricsAddress(metricsText);
    const fdWarning = descriptorWarning(options.maxClients, { flag: "--max-clients" });
    if (fdWarning) log.warn(fdWarning);
    const certificate = await relayCertificate(values, { host: hostname, log });
    // The web chat: on with --tls (whose port is sniffed anyway), else only with --web on,
    // because sniffing a plain port delays a silent nc client's welcome by the sniff wait.
    const webText = stringOption(values, "web", {
      fallback: certificate && !options.framed ? "on" : "off",
    });
    if (webText !== "on" && webText !== "off") {
      throw new UsageError(`Cannot parse --web '${webText}': expected on or off`);
    }
    if (webText === "on" && options.framed) {
      throw new UsageError("--web on serves line-mode clients: not with --framed");
    }
    const web = webText === "on"
      ? webChat({ maxLineBytes: options.maxLineBytes, logger: log })
      : undefined;
    const clusterUrls = clusterServers(stringOption(values, "cluster"));
    const nodeIdText = stringOption(values, "node-id");
    if (nodeIdText !== undefined && !clusterUrls) {
      throw new UsageError("Cannot use --node-id without --cluster");
    }
    const listener = listenTcp({ hostname, port });
    let relay: Relay;
    let joined: { cluster: Cluster; bus: Bus } | undefined;
    let metrics: MetricsServer | undefined;
    try {
      if (clusterUrls) {
        const nodeId = nodeIdText ?? defaultNodeId(listener.addr.port);
        joined = await joinCluster(clusterUrls, { nodeId, framed: options.framed, logger: log });
      }
      relay = new Relay(listener, {
        ...options,
        tls: certificate?.key,
        web,
        cluster: joined?.cluster,
      });
    } catch (error) {
      listener.close();
      await joined?.bus.close();
      throw error;
    }
    if (metricsAt) {
      try {
        metrics = serveMetrics(relayMetrics(relay), { ...metricsAt, logger: log });
      } catch (error) {
        await relay.shutdown();
        await joined?.bus.close();
        throw error;
      }
    }
    const mode = options.framed ? "framed mode" : "line mode";
    const details = [mode];
    if (certificate) {
      details.push(`TLS${options.tlsOnly ? " only" : ""}, certificate ${certificate.fingerprint}`);
    }
    if (joined) {
      const c = joined.cluster.stats();
      details.push(`cluster node ${c.nodeId}, bus ${c.bus} ${c.url}`);
    }
    log.listening(formatAddress(relay.addr), details.join(", "));
    const timer = values.stats
      ? setInterval(() => log.info(formatRelayStats(relay.stats())), statsEvery * 1000)
      : undefined;
    const rulesFile = stringOption(values, "rules");
    const stopReloads = reloadOnHangup({
      certificate,
      relay,
      rules: rulesFile === undefined ? undefined : {
        file: rulesFile,
        flags: { allow: listOption(values, "allow"), deny: listOption(values, "deny") },
        lines: accessRules(
          { allow: listOption(values, "allow"), deny: listOption(values, "deny") },
          rulesFile,
        ).lines,
      },
    }, log);
    const signal = await waitForShutdownSignal();
    stopReloads();
    clearInterval(timer);
    log.info(`${signal}: shutting down`);
    await relay.shutdown();
    await joined?.bus.close();
    await metrics?.shutdown();
    log.info(`stopped: ${formatRelayStats(relay.stats())}`);
    return 0;
  },
};

/**
 * The relay's metrics for `--metrics`, read from one {@linkcode Relay.stats} snapshot per
 * scrape; the cluster's with `--cluster`.
 */
function relayMetrics(relay: Relay): MetricsRegistry {
  const registry = new MetricsRegistry();
  const stats = registry.snapshot(() => relay.stats());
  registry
    .gauge("sockit_relay_connections", {
      help: "Clients connected now (not counting those being disconnected)",
      read: () => stats().clients,
    })
    .counter("sockit_relay_connections_accepted_total", {
      help: "Clients accepted since start",
      read: () => stats().accepted,
    })
    .gauge("sockit_relay_tls_connections", {
      help: "Clients connected over TLS now",
      read: () => stats().tlsClients,
    })
    .counter("sockit_relay_turned_away_total", {
      help: "Connections turned away before they were served, by reason (full: --max-clients)",
      label: "reason",
      read: () => ({ full: stats().refused, ...stats().turnedAway }),
    })
    .counter("sockit_relay_received_bytes_total", {
      help: "Bytes read from clients",
      read: () => stats().bytesIn,
    })
    .counter("sockit_relay_sent_bytes_total", {
      help: "Bytes written to clients",
      read: () => stats().bytesOut,
    })
    .counter("sockit_relay_messages_in_total", {
      help: "Messages (lines or frames) received from clients",
      read: () => stats().messagesIn,
    })
    .counter("sockit_relay_messages_delivered_total", {
      help: "Message copies queued to recipients",
      read: () => stats().delivered,
    })
    .counter("sockit_relay_messages_dropped_total", {
      help: "Message copies dropped for slow clients (--slow drop)",
      read: () => stats().dropped,
    })
    .counter("sockit_relay_slow_disconnects_total", {
      help: "Clients disconnected as slow consumers",
      read: () => stats().slowDisconnects,
    })
    .counter("sockit_relay_stalls_total", {
      help: "Times a client became stuck (its socket took no byte for the stall time)",
      read: () => stats().stalls,
    })
    .gauge("sockit_relay_stuck_clients", {
      help: "Clients stuck now",
      read: () => stats().stuckClients,
    })
    .gauge("sockit_relay_paused_senders", {
      help: "Senders held back now by a recipient above high water",
      read: () => stats().pausedSenders,
    })
    .counter("sockit_relay_paused_seconds_total", {
      help: "Time senders spent held back, summed over senders, in seconds",
      read: () => stats().pausedMs / 1000,
    })
    .counter("sockit_relay_closes_total", {
      help: "Clients that ended, by close reason",
      label: "reason",
      read: () => stats().closes,
    });
  if (relay.stats().cluster === undefined) return registry;
  const cluster = () => stats().cluster!;
  return registry
    .gauge("sockit_relay_cluster_bus_up", {
      help: "1 while the cluster bus (NATS) is connected, else 0",
      read: () => (cluster().bus === "up" ? 1 : 0),
    })
    .gauge("sockit_relay_cluster_nodes", {
      help: "Other relay nodes heard from recently",
      read: () => cluster().nodes,
    })
    .counter("sockit_relay_cluster_published_total", {
      help: "Envelopes published to the cluster bus",
      read: () => cluster().published,
    })
    .counter("sockit_relay_cluster_not_published_total", {
      help: "Envelopes and control messages not published (bus down or over budget)",
      read: () => cluster().notPublished,
    })
    .counter("sockit_relay_cluster_remote_in_total", {
      help: "Messages that arrived from other nodes",
      read: () => cluster().remoteIn,
    })
    .counter("sockit_relay_cluster_missed_total", {
      help: "Messages other nodes sent that never arrived (sequence gaps)",
      read: () => cluster().missed,
    })
    .counter("sockit_relay_cluster_malformed_total", {
      help: "Bus messages dropped as malformed",
      read: () => cluster().malformed,
    });
}

/** `--allow`, `--deny` and `--rules FILE` together. */
function rulesOf(values: Record<string, unknown>): { allow: string[]; deny: string[] } {
  const { allow, deny } = accessRules(
    { allow: listOption(values as never, "allow"), deny: listOption(values as never, "deny") },
    stringOption(values as never, "rules"),
  );
  return { allow, deny };
}

/** `--cluster nats://HOST:PORT[,nats://...]` as a list of server URLs, checked. */
function clusterServers(text: string | undefined): string[] | undefined {
  if (text === undefined) return undefined;
  const urls = text.split(",").map((u) => u.trim()).filter((u) => u !== "");
  if (urls.length === 0) throw new UsageError("Cannot use an empty --cluster");
  for (const url of urls) {
    let parsed: URL;
    try {
      parsed = new URL(url);
    } catch {
      throw new UsageError(`Cannot parse --cluster URL ${quote(url)}: expected nats://HOST:PORT`);
    }
    if (parsed.protocol !== "nats:" || !parsed.hostname) {
      throw new UsageError(`Cannot use --cluster URL ${quote(url)}: expected nats://HOST:PORT`);
    }
    if (parsed.username || parsed.password) {
      // Credentials in argv are readable by every local user.
      throw new UsageError(
        `Cannot use credentials in --cluster URL ${quote(parsed.host)}: argv is visible to ` +
          "every local user (authenticate NATS by address, or run it on a private network)",
      );
    }
  }
  return urls;
}

/** This host's first name label and the relay's port: `myhost-7070`. */
function defaultNodeId(port: number): string {
  const host = Deno.hostname().toLowerCase().split(".")[0].replace(/[^a-z0-9-]/g, "");
  const suffix = `-${port}`;
  return `${(host || "relay").replace(/^-+/, "").slice(0, 16 - suffix.length) || "relay"}${suffix}`;
}

/** Connects the bus (NATS, loaded only here) and makes this relay's cluster node. */
async function joinCluster(
  servers: string[],
  options: { nodeId: string; framed: boolean; logger: Logger },
): Promise<{ cluster: Cluster; bus: Bus }> {
  if (!NODE_ID_PATTERN.test(options.nodeId)) {
    throw new UsageError(
      `Cannot use --node-id ${quote(options.nodeId)}: 1 to 16 of a-z, 0-9 and '-'`,
    );
  }
  const { connectNatsBus } = await import("./cluster/nats_bus.ts");
  const bus = await connectNatsBus(servers, { name: `sockit-relay-${options.nodeId}` });
  return { bus, cluster: new Cluster(bus, options) };
}

/**
 * The certificate for `--tls` (`--cert`/`--key`, or the config folder's self-signed pair), or
 * undefined without TLS flags.
 */
async function relayCertificate(
  values: Record<string, unknown>,
  at: { host: string; log: Logger },
): Promise<RelayCertificate | undefined> {
  const certFile = stringOption(values as never, "cert");
  const keyFile = stringOption(values as never, "key");
  if (!values.tls && !values["tls-only"] && certFile === undefined && keyFile === undefined) {
    return undefined;
  }
  if ((certFile === undefined) !== (keyFile === undefined)) {
    throw new UsageError(
      `Cannot use --${certFile === undefined ? "key" : "cert"} alone: give --cert and --key`,
    );
  }
  // A created certificate names this host too, when the relay is bound to one address.
  const names = defaultCertNames();
  if (!/^(0\.0\.0\.0|::|\[::\])$/.test(at.host) && !names.includes(at.host)) {
    names.push(at.host.replace(/^\[|\]$/g, ""));
  }
  const certificate = await RelayCertificate.load({ certFile, keyFile, names });
  const { current } = certificate;
  if (current.created) {
    at.log.info(
      `created a self-signed TLS certificate in ${current.certFile} (key ${current.keyFile}); ` +
        `sockit chat --tls records ${current.fingerprint} on first contact`,
    );
  } else at.log.debug(`TLS certificate ${current.certFile} (${current.fingerprint})`);
  return certificate;
}

/** The relay's access rules: the flags' and a `--rules FILE`'s `allow`/`deny` lines. */
function accessRules(
  flags: { allow: string[]; deny: string[] },
  rulesFile: string | undefined,
): { allow: string[]; deny: string[]; lines: string[] } {
  const lines = [
    ...flags.allow.map((c) => `allow ${c}`),
    ...flags.deny.map((c) => `deny ${c}`),
    ...(rulesFile === undefined ? [] : readRuleFile(rulesFile, { kinds: ["allow", "deny"] })),
  ];
  const of = (kind: string) =>
    lines.filter((l) => l.startsWith(`${kind} `)).map((l) => l.slice(kind.length + 1));
  return { allow: of("allow"), deny: of("deny"), lines };
}

/**
 * SIGHUP re-reads what came from files: the certificate pair (new handshakes use the new
 * pair, open connections keep theirs) and the `--rules` file (new connections are checked
 * against the new rules, connected clients stay). Anything broken is refused with the reason
 * and the old one stays. Without either there is nothing to reload, which is logged. Returns
 * the function that stops listening for SIGHUP.
 */
function reloadOnHangup(
  what: {
    certificate?: RelayCertificate;
    rules?: { file: string; flags: { allow: string[]; deny: string[] }; lines: string[] };
    relay: Relay;
  },
  log: Logger,
): () => void {
  if (Deno.build.os === "windows") return () => {};
  const { certificate, rules, relay } = what;
  let reloading = Promise.resolve();
  let ruleLines = rules?.lines ?? [];
  const onHangup = () => {
    if (!certificate && !rules) {
      log.info("SIGHUP: nothing to reload (no --tls files or --rules file)");
      return;
    }
    reloading = reloading.then(async () => {
      if (rules) {
        try {
          const next = accessRules(rules.flags, rules.file);
          relay.setAccessRules(next);
          const added = next.lines.filter((l) => !ruleLines.includes(l)).map((l) => `+${l}`);
          const removed = ruleLines.filter((l) => !next.lines.includes(l)).map((l) => `-${l}`);
          ruleLines = next.lines;
          const change = [...added, ...removed].join(" ") || "unchanged";
          log.info(`SIGHUP: access rules reloaded (${change}); connected clients stay`);
        } catch (error) {
          log.warn(`SIGHUP: keeping the access rules: ${(error as Error).message}`);
        }
      }
      if (!certificate) return;
      try {
        const { before, after } = await certificate.reload();
        log.info(
          before === after
            ? `SIGHUP: TLS certificate unchanged (${after})`
            : `SIGHUP: TLS certificate reloaded: new connections get ${after} (was ${before})`,
        );
      } catch (error) {
        log.warn(
          `SIGHUP: keeping TLS certificate ${certificate.fingerprint}: ${
            error instanceof Error ? error.message : String(error)
          }`,
        );
      }
    });
  };
  Deno.addSignalListener("SIGHUP", onHangup);
  return () => Deno.removeSignalListener("SIGHUP", onHangup);
}

const CHAT_USAGE = `Usage: sockit chat HOST:PORT [--name N] [--room R] [--framed] [--proxy URL]
                  [--tls [--fingerprint sha256:HEX | --ca FILE]]

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
  --proxy URL  connect through a SOCKS5 proxy: socks5://[user@]host:port (default:
               SOCKS_PROXY or ALL_PROXY, unless NO_PROXY names the host); the password
               from SOCKIT_PROXY_PASSWORD or --proxy-auth-file, not argv
  --proxy-auth-file FILE  the proxy's user:pass, one line (chmod 600)
  --tls        connect with TLS (relay started with --tls) and verify the relay:
               by default trust on first use: the certificate's fingerprint is recorded
               in $XDG_CONFIG_HOME/sockit/known_hosts on first contact (and printed);
               a different certificate later is refused (exit 1)
  --fingerprint sha256:HEX  with --tls: accept only the certificate with this fingerprint
               (the one the relay printed); the known hosts file is not used
  --ca FILE    with --tls: verify the relay's chain against this CA (PEM) and its name

Example:
  printf 'hello\\nworld\\n' | sockit chat 127.0.0.1:7070 --name alice
  sockit chat --tls relay.example:7070 --fingerprint sha256:9f86d0...`;

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
    "proxy-auth-file": { type: "string" },
    tls: { type: "boolean" },
    fingerprint: { type: "string" },
    ca: { type: "string" },
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
    // --proxy, else SOCKS_PROXY/ALL_PROXY; not with --tls (TLS over a proxy is not supported).
    const proxy = values.tls && proxyUrl === undefined ? undefined : clientProxy(target, {
      url: proxyUrl,
      authFile: stringOption(values, "proxy-auth-file"),
      warn: (text) => console.error(`sockit chat: warning: ${text}`),
    });
    const fingerprint = stringOption(values, "fingerprint");
    const caFile = stringOption(values, "ca");
    if (!values.tls && (fingerprint !== undefined || caFile !== undefined)) {
      throw new UsageError(`Cannot use --${caFile ? "ca" : "fingerprint"} without --tls`);
    }
    if (values.tls && proxy) throw new UsageError("Cannot use --tls with --proxy (not supported)");
    let conn: Deno.TcpConn;
    if (values.tls) {
      const ca = caFile === undefined ? undefined : await readCa(caFile);
      conn = await connectTls(target, { fingerprint, ca });
    } else {
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

/**
 * Connects with TLS and verifies the relay (`connectVerifiedTls`: a pin, a CA, or trust on
 * first use, announced on stderr). A refused certificate keeps its own loud message; a
 * connection that fails is a `SocketError` naming the relay.
 */
async function connectTls(
  target: { hostname: string; port: number },
  trust: { fingerprint?: string; ca?: string },
): Promise<Deno.TcpConn> {
  try {
    return (await connectVerifiedTls(target.hostname, target.port, trust)).conn;
  } catch (error) {
    const refusedTrust = error instanceof CertificateChangedError ||
      error instanceof CertificatePinError || error instanceof KnownHostsError ||
      error instanceof TlsHandshakeError || error instanceof UsageError;
    if (refusedTrust) throw error;
    throw new SocketError(
      `Cannot connect to ${formatAddress(target)}: ${(error as Error).message}`,
      { cause: error },
    );
  }
}

/** Reads a `--ca` file; a `UsageError` names it when it cannot be read. */
async function readCa(file: string): Promise<string> {
  try {
    return await Deno.readTextFile(file);
  } catch (error) {
    throw new UsageError(
      `Cannot read --ca file "${file}": ${error instanceof Error ? error.message : error}`,
    );
  }
}
