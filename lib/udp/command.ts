/**
 * The `udp-echo` and `udp-ping` subcommands.
 *
 * @module
 */

import {
  type Command,
  intOption,
  LISTEN_OPTIONS,
  listenOptions,
  listOption,
  type OptionValues,
  sizeOption,
  stringOption,
} from "../command.ts";
import { Logger } from "../log.ts";
import { formatAddress, isLoopbackHost, parseAddress, parsePort } from "../net/address.ts";
import { SocketError, UsageError } from "../net/errors.ts";
import {
  MetricsRegistry,
  type MetricsServer,
  parseMetricsAddress,
  serveMetrics,
} from "../net/metrics.ts";
import { waitForShutdownSignal } from "../net/server.ts";
import {
  type DropReason,
  formatEchoSummary,
  startUdpEcho,
  UDP_ECHO_DEFAULTS,
  type UdpEchoOptions,
  type UdpEchoServer,
} from "./echo_server.ts";
import { fastEchoUnavailable, startFastUdpEcho } from "./fast_echo.ts";
import { RATE_LIMITER_DEFAULTS } from "./rate_limiter.ts";
import { REFLECTOR_PORTS } from "./reflector_ports.ts";
import { type PingEvent, UDP_PING_DEFAULTS, udpPing } from "./ping.ts";
import { formatPingSummary } from "./ping_stats.ts";
import { MAX_UDP_PAYLOAD_IPV4, MAX_UDP_PAYLOAD_IPV6 } from "./datagram.ts";
import { PROBE_HEADER_SIZE } from "./probe.ts";

/** udp-ping logs the first this many failed sends, then stays quiet about them. */
export const MAX_SEND_ERROR_LINES = 5;

/** Seconds between `--stats` summary lines unless `--stats-interval` says otherwise. */
export const STATS_INTERVAL_SECONDS = 10;

function loggerFor(tool: string, values: OptionValues): Logger {
  return new Logger(tool, { quiet: values.quiet === true, verbose: values.verbose === true });
}

/** Joins `items` with commas into lines indented by `indent`, at most `width` wide. */
function wrapList(items: string[], indent: number, width: number): string {
  const lines: string[] = [];
  let line = "";
  for (const item of items) {
    const next = line ? `${line}, ${item}` : item;
    if (indent + next.length + 1 > width && line) {
      lines.push(`${line},`);
      line = item;
    } else {
      line = next;
    }
  }
  lines.push(line);
  return lines.map((l) => " ".repeat(indent) + l).join("\n");
}

const DROP_REASONS: Record<DropReason, string> = {
  "reflector-port": "its source port belongs to a service that answers anything",
  "same-port": "its source port is this server's port: itself or a twin echo server (a loop)",
  "rate-limited": "its source is over --rate",
  "oversize": "it filled the whole receive buffer",
};

/** The echo server's metrics for `--metrics`, read from its live counters. */
function echoMetrics(server: UdpEchoServer): MetricsRegistry {
  const { stats } = server;
  return new MetricsRegistry()
    .counter("sockit_udp_echo_datagrams_received_total", {
      help: "Datagrams received",
      read: () => stats.received,
    })
    .counter("sockit_udp_echo_received_bytes_total", {
      help: "Bytes received in datagrams",
      read: () => stats.bytesReceived,
    })
    .counter("sockit_udp_echo_datagrams_echoed_total", {
      help: "Datagrams echoed back to their sender",
      read: () => stats.echoed,
    })
    .counter("sockit_udp_echo_echoed_bytes_total", {
      help: "Bytes echoed back",
      read: () => stats.bytesEchoed,
    })
    .counter("sockit_udp_echo_datagrams_dropped_total", {
      help: "Datagrams dropped on purpose, by reason",
      label: "reason",
      read: (): Record<DropReason, number> => ({
        "reflector-port": stats.refusedReflector,
        "same-port": stats.refusedSamePort,
        "rate-limited": stats.rateLimited,
        "oversize": stats.oversize,
      }),
    })
    .counter("sockit_udp_echo_errors_total", {
      help: "Sends and receives that failed, by operation",
      label: "operation",
      read: () => ({ send: stats.sendErrors, receive: stats.receiveErrors }),
    })
    .gauge("sockit_udp_echo_rate_limited_sources", {
      help: "Source addresses tracked by the rate limiter now",
      read: () => server.trackedSources,
    });
}

const ECHO_USAGE = `Usage: sockit udp-echo [--host H] [--port P] [options]

RFC 862 UDP echo server: sends every datagram back to its sender unchanged (boundaries kept,
any size up to ${MAX_UDP_PAYLOAD_IPV4} bytes over IPv4 and ${MAX_UDP_PAYLOAD_IPV6} over IPv6).

Options:
  --host H             address to bind (default ${UDP_ECHO_DEFAULTS.hostname}; :: or 0.0.0.0 for all)
  --port, -p P         port (default ${UDP_ECHO_DEFAULTS.port}; 0 picks a free one)
  --rate N             datagrams per second answered per source address, on average
                       (default ${UDP_ECHO_DEFAULTS.ratePerSecond}; 0 turns the limit off). Every source is limited
                       except loopback ones (127.0.0.0/8, ::1): no other machine can send
                       from those, so a local udp-ping --flood measures the server
  --burst N            datagrams a source may send back to back (default: the rate)
  --limit-loopback     apply --rate and --burst to loopback sources too
  --max-sources N      source addresses the rate limiter tracks (default ${RATE_LIMITER_DEFAULTS.maxSources})
  --refuse-port P      also never answer source port P (repeatable); these are always refused:
${wrapList([...REFLECTOR_PORTS.keys()].map(String), 23, 96)}
  --stats              log a summary line every ${STATS_INTERVAL_SECONDS} s (always logged on exit)
  --stats-interval S   seconds between --stats lines
  --metrics ADDR       serve Prometheus metrics at http://ADDR/metrics (HOST:PORT; a bare
                       PORT or :PORT is on 127.0.0.1)

Stops on SIGINT or SIGTERM (exit 0) after logging the summary.

With the ffi permission (--allow-ffi or -A) on Linux x86_64/aarch64 and an IP address to bind,
datagrams are received and sent in batches through libc (recvmmsg/sendmmsg), several times
faster; otherwise one at a time on Deno's sockets. --verbose says which.

Example:
  sockit udp-echo --port 7007 --rate 5000 --stats`;

/** `sockit udp-echo`: an RFC 862 echo server. */
export const udpEchoCommand: Command = {
  name: "udp-echo",
  summary: "RFC 862 UDP echo server, safe by default",
  usage: ECHO_USAGE,
  options: {
    ...LISTEN_OPTIONS,
    rate: { type: "string" },
    burst: { type: "string" },
    "limit-loopback": { type: "boolean" },
    "max-sources": { type: "string" },
    "refuse-port": { type: "string", multiple: true },
    stats: { type: "boolean" },
    "stats-interval": { type: "string" },
    metrics: { type: "string" },
  },
  async run({ values }) {
    const log = loggerFor("udp-echo", values);
    const metricsText = stringOption(values, "metrics");
    const metricsAt = metricsText === undefined ? undefined : parseMetricsAddress(metricsText);
    const { hostname, port } = listenOptions(values, {
      host: UDP_ECHO_DEFAULTS.hostname,
      port: UDP_ECHO_DEFAULTS.port,
    });
    const ratePerSecond = intOption(values, "rate", {
      fallback: UDP_ECHO_DEFAULTS.ratePerSecond,
      max: 100_000_000,
    });
    const burst = intOption(values, "burst", {
      fallback: Math.max(1, ratePerSecond),
      min: 1,
      max: 100_000_000,
    });
    const limitLoopback = values["limit-loopback"] === true || UDP_ECHO_DEFAULTS.limitLoopback;
    const maxSources = intOption(values, "max-sources", {
      fallback: RATE_LIMITER_DEFAULTS.maxSources,
      min: 1,
      max: 10_000_000,
    });
    const extraRefused = listOption(values, "refuse-port").map((p) =>
      parsePort(p, "--refuse-port")
    );
    const statsSeconds = intOption(values, "stats-interval", {
      fallback: STATS_INTERVAL_SECONDS,
      min: 1,
      max: 86_400,
    });
    const periodicStats = values.stats === true || values["stats-interval"] !== undefined;

    const announced = new Set<DropReason>();
    const echoOptions: UdpEchoOptions = {
      ratePerSecond,
      burst,
      limitLoopback,
      maxSources,
      refusedSourcePorts: [...REFLECTOR_PORTS.keys(), ...extraRefused],
      onDrop: (reason, from, bytes) => {
        const line = `dropped ${bytes} bytes from ${formatAddress(from)}: ${reason}`;
        // The first drop of each kind is worth a line; the rest are counted in the summary.
        if (announced.has(reason)) return log.debug(line);
        announced.add(reason);
        log.info(`${line} (${DROP_REASONS[reason]}; further drops are counted, not logged)`);
      },
      onError: (error, from) =>
        log.warn(
          `${from ? `cannot echo to ${formatAddress(from)}` : "cannot receive"}: ${
            error instanceof Error ? error.message : error
          }`,
        ),
    };
    // The libc fast path where this process may use it (--allow-ffi), else Deno's sockets:
    // the same rules and counters either way, only the speed differs.
    const unavailable = fastEchoUnavailable(hostname);
    let server: UdpEchoServer;
    try {
      if (unavailable === undefined) {
        server = startFastUdpEcho({ hostname, port }, echoOptions);
      } else {
        server = startUdpEcho(
          Deno.listenDatagram({ transport: "udp", hostname, port }),
          echoOptions,
        );
      }
    } catch (error) {
      const why = error instanceof Error ? error.message : String(error);
      throw new SocketError(`Cannot listen on ${formatAddress({ hostname, port })}: ${why}`, {
        cause: error,
      });
    }
    log.debug(
      unavailable === undefined
        ? "fast path: recvmmsg/sendmmsg batches through libc"
        : `Deno sockets, one datagram per call (fast path off: ${unavailable})`,
    );
    let metrics: MetricsServer | undefined;
    if (metricsAt) {
      try {
        metrics = serveMetrics(echoMetrics(server), { ...metricsAt, logger: log });
      } catch (error) {
        await server.stop();
        throw error;
      }
    }
    const limit = ratePerSecond > 0
      ? `rate ${ratePerSecond}/s per source, burst ${burst}${
        limitLoopback ? "" : ", loopback sources not limited"
      }`
      : "no rate limit";
    // Listen for SIGINT/SIGTERM before the ready line: a signal right after it still ends the
    // server cleanly, with its summary and exit 0.
    const shutdown = waitForShutdownSignal();
    log.listening(formatAddress(server.addr), limit);
    if (!isLoopbackHost(server.addr.hostname)) {
      log.warn(
        `${server.addr.hostname} is reachable from other machines: every source is ` +
          `answered up to the rate limit (${limit})`,
      );
    }
    const timer = periodicStats
      ? setInterval(() => log.info(formatEchoSummary(server.stats)), statsSeconds * 1000)
      : undefined;
    const signal = await Promise.race([shutdown, server.done.then(() => null)]);
    clearInterval(timer);
    await server.stop();
    await metrics?.shutdown();
    log.info(`${signal ? `${signal}: ` : ""}stopped; ${formatEchoSummary(server.stats)}`);
    return 0;
  },
};

const PING_USAGE = `Usage: sockit udp-ping HOST:PORT [options]

Measures a UDP echo server: numbered, timestamped, checksummed probes; a line per reply, then
loss, duplicates, reordering, late/corrupted/truncated replies, replies from an unexpected
address, RTT min/avg/max/mdev and p50/p90/p99, jitter.

Options:
  --count, -c N        probes to send, 1 or more (default: until SIGINT or SIGTERM)
  --size, -s B         probe size in bytes, ${PROBE_HEADER_SIZE} to ${MAX_UDP_PAYLOAD_IPV4} (${MAX_UDP_PAYLOAD_IPV6} over IPv6) (default ${UDP_PING_DEFAULTS.size})
  --interval, -i MS    pause between probes (default ${UDP_PING_DEFAULTS.intervalMs}; 0: back to back)
  --timeout, -W MS     replies slower than this are late; wait this long for the last
                       replies (default ${UDP_PING_DEFAULTS.timeoutMs})
  --rate PPS           send PPS probes a second, open loop (throughput test)
  --flood              send as fast as replies come back, --window probes in flight
  --window N           probes in flight with --flood (default ${UDP_PING_DEFAULTS.floodWindow})
  --json               print only the summary, as one JSON object
  --quiet, -q          print only the summary

With no reply at all, the summary says why when it can: "port unreachable" when the target
is a loopback address and nothing is bound to its port. Deno's UDP sockets never see the ICMP
port unreachable itself, so on another machine a closed port looks like loss.

With --flood, the ffi permission (--allow-ffi or -A) and Linux x86_64/aarch64, probes are
sent and replies received in batches through libc (sendmmsg/recvmmsg), several times faster;
otherwise one at a time on Deno's sockets. The counts mean the same either way; --verbose
says which client ran.

Exit status: 0 if any reply came back, 1 if none, 2 for a usage error.

Example:
  sockit udp-ping 127.0.0.1:7007 --count 5 --interval 200`;

function describe(event: PingEvent, target: string): string | undefined {
  const from = event.kind === "send-error" ? "" : formatAddress(event.from);
  switch (event.kind) {
    case "reply": {
      const f = event.flags;
      const tags = [
        f.duplicate ? " (DUP!)" : "",
        f.reordered ? " (reordered)" : "",
        f.late ? " (late)" : "",
      ]
        .join("");
      return `${event.bytes} bytes from ${from}: seq=${event.seq} time=${
        event.rttMs.toFixed(3)
      } ms${tags}`;
    }
    case "truncated":
      return `${event.bytes} bytes from ${from}: seq=${event.seq ?? "?"} truncated (probe was ${
        event.expected ?? "?"
      } bytes)`;
    case "corrupted":
      return `${event.bytes} bytes from ${from}: corrupted (${event.reason})`;
    case "unexpected-source":
      return `${event.bytes} bytes from ${from}: unexpected source (expected ${target})`;
    case "stray":
      return `${event.bytes} bytes from ${from}: seq=${event.seq} stray (not a probe of this run)`;
    case "send-error":
      return undefined;
  }
}

/** `sockit udp-ping`: a measuring UDP echo client. */
export const udpPingCommand: Command = {
  name: "udp-ping",
  summary: "Measure a UDP echo server: loss, reordering, RTT percentiles, jitter",
  usage: PING_USAGE,
  allowPositionals: true,
  options: {
    count: { type: "string", short: "c" },
    size: { type: "string", short: "s" },
    interval: { type: "string", short: "i" },
    timeout: { type: "string", short: "W" },
    rate: { type: "string" },
    flood: { type: "boolean" },
    window: { type: "string" },
    json: { type: "boolean" },
  },
  async run({ values, positionals }) {
    const log = loggerFor("udp-ping", values);
    if (positionals.length !== 1) {
      throw new UsageError(
        positionals.length === 0
          ? "Missing HOST:PORT"
          : `Expected one HOST:PORT, got ${positionals.length}`,
      );
    }
    const target = parseAddress(positionals[0]);
    const count = intOption(values, "count", {
      fallback: UDP_PING_DEFAULTS.count,
      max: 1_000_000_000,
    });
    if (count === 0 && values.count !== undefined) {
      // ping(8) refuses -c 0 too; 0 meaning "forever" would surprise a script that computed it.
      throw new UsageError(
        "Cannot use --count 0: give 1 or more probes, or leave --count out to ping until interrupted",
      );
    }
    const size = sizeOption(values, "size", { fallback: UDP_PING_DEFAULTS.size });
    if (size < PROBE_HEADER_SIZE || size > MAX_UDP_PAYLOAD_IPV6) {
      throw new UsageError(
        `Cannot use --size ${size}: must be ${PROBE_HEADER_SIZE} to ${MAX_UDP_PAYLOAD_IPV4} ` +
          `(${MAX_UDP_PAYLOAD_IPV6} over IPv6)`,
      );
    }
    const intervalMs = intOption(values, "interval", {
      fallback: UDP_PING_DEFAULTS.intervalMs,
      max: 3_600_000,
    });
    const timeoutMs = intOption(values, "timeout", {
      fallback: UDP_PING_DEFAULTS.timeoutMs,
      min: 1,
      max: 3_600_000,
    });
    const ratePps = values.rate === undefined
      ? undefined
      : intOption(values, "rate", { fallback: 0, min: 1, max: 10_000_000 });
    const flood = values.flood === true;
    if (flood && ratePps !== undefined) throw new UsageError("Use --rate or --flood, not both");
    const window = intOption(values, "window", {
      fallback: UDP_PING_DEFAULTS.floodWindow,
      min: 1,
      max: 65_536,
    });
    const json = values.json === true;
    const perReply = !json && !flood && values.quiet !== true;
    const targetText = formatAddress(target);

    // SIGINT/SIGTERM end the run early; the summary still prints (main exits afterwards).
    const abort = new AbortController();
    void waitForShutdownSignal().then(() => abort.abort());
    if (!json && values.quiet !== true) {
      console.log(`UDP-PING ${targetText}: ${size}-byte probes`);
    }
    let sendErrors = 0;
    let summary;
    try {
      summary = await udpPing(target, {
        count,
        size,
        intervalMs,
        timeoutMs,
        ratePps,
        flood,
        window,
        signal: abort.signal,
        onStart: (client) =>
          log.debug(
            client.fastPath
              ? "fast path: sendmmsg/recvmmsg batches through libc"
              : `Deno sockets, one datagram per call (fast path off: ${client.reason})`,
          ),
        onEvent: (event) => {
          if (event.kind === "send-error") {
            // A few lines say what is wrong; thousands would only bury the summary.
            if (++sendErrors > MAX_SEND_ERROR_LINES) return;
            if (sendErrors === MAX_SEND_ERROR_LINES) log.warn("further send errors not logged");
            log.warn(
              `cannot send probe ${event.seq}: ${
                event.error instanceof Error ? event.error.message : event.error
              }`,
            );
            return;
          }
          if (perReply) console.log(describe(event, targetText));
        },
      });
    } catch (error) {
      if (error instanceof RangeError) throw new UsageError(error.message);
      throw error;
    }
    console.log(
      json ? JSON.stringify(summary) : (perReply ? "\n" : "") + formatPingSummary(summary),
    );
    return summary.received > 0 ? 0 : 1;
  },
};
