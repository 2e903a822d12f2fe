/**
 * The `send` and `recv` subcommands.
 *
 * @module
 */

import {
  type Command,
  intOption,
  LISTEN_OPTIONS,
  listenOptions,
  type OptionValues,
  sizeOption,
  stringOption,
} from "../command.ts";
import { Logger } from "../log.ts";
import { formatAddress, type HostPort, isLoopbackHost, parseAddress } from "../net/address.ts";
import { withTimeout } from "../net/deadline.ts";
import { SocketError, TimeoutError, UsageError } from "../net/errors.ts";
import { FdBudget, planDescriptors } from "../net/fd_budget.ts";
import { descriptorWarning } from "../net/fd_limit.ts";
import {
  MetricsRegistry,
  type MetricsServer,
  parseMetricsAddress,
  serveMetrics,
} from "../net/metrics.ts";
import { listenTcp, serve, type Server, waitForShutdownSignal } from "../net/server.ts";
import { ControlFrame, encodeFrame, encodeHello } from "../net/frame.ts";
import { writeAll } from "../net/write_all.ts";
import { socks5Connect, type Socks5Proxy } from "../socks5/client.ts";
import { clientProxy } from "../socks5/client_proxy.ts";
import {
  BarReporter,
  JsonReporter,
  LineReporter,
  type SendReporter,
  StatusLine,
} from "./progress.ts";
import {
  encodeText,
  Reason,
  type ReasonValue,
  ReceiverError,
  TRANSFER_PROTOCOL,
  TRANSFER_VERSION,
} from "./protocol.ts";
import { RECEIVE_DEFAULTS, receiveSession, type ReceiveSummary } from "./receiver.ts";
import { sendEntries, SendInterruptedError } from "./sender.ts";
import { collectEntries } from "./walk.ts";
import { loadExistsCheck } from "./safe_path.ts";
import {
  isCodeRecv,
  isCodeSend,
  WORMHOLE_RECV_OPTIONS,
  WORMHOLE_SEND_OPTIONS,
  WORMHOLE_USAGE,
} from "../wormhole/mode.ts";

/** Defaults of the `send` and `recv` command lines. */
export const TRANSFER_CLI_DEFAULTS = {
  /** Address `recv` listens on. */
  host: "127.0.0.1",
  /** Port `recv` listens on, and the port `send HOST` (without one) connects to. */
  port: 7071,
  /** Senders served at the same time by `recv` (`--max-senders`); more hear "receiver busy". */
  maxSenders: 8,
  /**
   * Connections `recv` keeps waiting for their hello beyond the senders it serves; more are
   * answered "receiver busy" at once.
   */
  pendingHellos: 16,
  /** Longest wait for the TCP (or proxy) connection of `send`, in ms. */
  connectTimeoutMs: 10_000,
} as const;

/** Descriptors one sender costs `recv`: its socket, the file being written, a folder's fsync. */
export const FDS_PER_SENDER = 3;

/** Descriptors `recv` keeps free besides its senders' (stdio, a hash worker, slack). */
const FD_SLACK = 8;

function flag(values: OptionValues, name: string): boolean {
  return values[name] === true;
}

/**
 * The receiver's address and the paths from `send`'s positionals: `HOST[:PORT] PATH...`, the
 * port defaulting to recv's. A first argument without a port that names a local file or
 * folder is a usage error (the address was forgotten).
 */
function sendArguments(positionals: string[]): { target: HostPort; paths: string[] } {
  const [first, ...paths] = positionals;
  if (first === undefined) throw new UsageError("send needs HOST:PORT before the paths");
  const hasPort = /:\d*$/.test(first) || first.startsWith("[");
  let local = false;
  // Only a first argument without a port can be a forgotten address (a failed lstat costs
  // ~10 ms at startup: the first error of the process).
  if (!hasPort) {
    try {
      Deno.lstatSync(first);
      local = true;
    } catch {
      // Not a local path: a host name.
    }
  }
  if (!hasPort && local) {
    throw new UsageError(
      `send needs HOST:PORT before the paths ('${first}' is a local file or folder)`,
    );
  }
  const target = parseAddress(first, { defaultPort: TRANSFER_CLI_DEFAULTS.port });
  if (paths.length === 0) throw new UsageError("Missing PATH: name at least one file or folder");
  return { target, paths };
}

/** The reason a connect failed, in a few words ("connection refused"). */
function connectFailure(error: unknown, timeoutMs: number): string {
  if (error instanceof Deno.errors.ConnectionRefused) return "connection refused";
  if (error instanceof TimeoutError) return `no answer within ${timeoutMs} ms`;
  const text = (error instanceof Error ? error.message : String(error))
    .replace(/\s*\(os error \d+\)$/, "");
  return text.charAt(0).toLowerCase() + text.slice(1);
}

/** Connects to the receiver (through the proxy, if any); the error names both. */
async function connectToReceiver(
  target: HostPort,
  proxy: Socks5Proxy | undefined,
  timeoutMs: number,
): Promise<Deno.TcpConn> {
  const where = formatAddress(target);
  try {
    if (proxy) return await socks5Connect(proxy, target, { timeoutMs });
    return await withTimeout(
      Deno.connect({ hostname: target.hostname, port: target.port }),
      timeoutMs,
      { what: `a connection to ${where}` },
    );
  } catch (error) {
    const via = proxy ? ` through the proxy ${formatAddress(proxy)}` : "";
    throw new SocketError(`Cannot connect to ${where}${via}: ${connectFailure(error, timeoutMs)}`, {
      cause: error,
    });
  }
}

/** Rejects with `signal`'s reason as soon as it aborts, else settles like `promise`. */
function unlessAborted<T>(promise: Promise<T>, signal: AbortSignal): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const abort = () => reject(signal.reason);
    if (signal.aborted) return abort();
    signal.addEventListener("abort", abort, { once: true });
    promise.then(resolve, reject).finally(() => signal.removeEventListener("abort", abort));
  });
}

/** Longest text `send --text` takes (it travels through the mailbox server). */
export const MAX_TEXT_BYTES = 256 * 1024;

/** A usage error for code-mode options given in the direct mode. */
function refuseCodeOptions(values: OptionValues, specs: Record<string, unknown>): void {
  const given = Object.keys(specs).filter((name) => values[name] !== undefined && name !== "json");
  if (given.length > 0) {
    throw new UsageError(`--${given[0]} is for the code mode (no HOST:PORT, no --port)`);
  }
}

/** Reads the text of `--text -` from stdin, bounded by {@linkcode MAX_TEXT_BYTES}. */
async function readStdinText(): Promise<string> {
  const chunks: Uint8Array[] = [];
  let size = 0;
  for await (const chunk of Deno.stdin.readable) {
    size += chunk.length;
    if (size > MAX_TEXT_BYTES) {
      throw new UsageError(`--text - takes at most ${MAX_TEXT_BYTES} bytes from stdin`);
    }
    chunks.push(chunk);
  }
  const all = new Uint8Array(size);
  let at = 0;
  for (const c of chunks) {
    all.set(c, at);
    at += c.length;
  }
  return new TextDecoder().decode(all);
}

/** `send` in the code mode: a text (`--text`) or paths, through a wormhole. */
async function sendWithCode(
  values: OptionValues,
  paths: string[],
  options: { log: Logger; signal: AbortSignal; signalName: () => string },
): Promise<number> {
  const textOption = values.text as string | undefined;
  try {
    if (textOption !== undefined) {
      if (paths.length > 0) throw new UsageError("send --text takes no PATH");
      const text = textOption === "-" ? await readStdinText() : textOption;
      if (new TextEncoder().encode(text).length > MAX_TEXT_BYTES) {
        throw new UsageError(`--text takes at most ${MAX_TEXT_BYTES} bytes`);
      }
      return await (await import("../wormhole/command.ts")).runCodeSend(values, { text }, options);
    }
    if (paths.length === 0) throw new UsageError("Missing PATH: name at least one file or folder");
    const walk = await collectEntries(paths).catch((error) => {
      if (error instanceof Deno.errors.NotFound) throw new Error(`Cannot send: ${error.message}`);
      throw error;
    });
    return await (await import("../wormhole/command.ts")).runCodeSend(
      values,
      { walk, paths },
      options,
    );
  } catch (error) {
    if (error instanceof SendInterruptedError) {
      throw new Error(`interrupted by ${options.signalName()}: ${error.message}`);
    }
    throw error;
  }
}

/** `sockit send`: sends files and folders to a receiver. */
export const sendCommand: Command = {
  name: "send",
  summary: "Send files and folders to `sockit recv` (verified, resumable)",
  usage: `Usage: sockit send PATH... [--code CODE] [--code-length N] [--text MSG|-]   (with a code)
       sockit send HOST[:PORT] PATH... [--no-verify] [--json] [--proxy socks5://[user:pass@]host:port]

With a code (the first argument a local file or folder, or --text): prints a code such as
7-crossover-clockwork for the other side's \`sockit recv\` (or any Magic Wormhole client), and
sends end-to-end encrypted through the mailbox and transit servers, directly when it can.

Sends files and folders (recursively) to a receiver started with \`sockit recv\` (PORT defaults
to ${TRANSFER_CLI_DEFAULTS.port}, recv's). Each file is offered, streamed in 1 MiB frames and
checked by the receiver against its SHA-256 before it is stored under its final name. Running
the same command again after an interruption (Ctrl-C included) resumes where the receiver's
partial file ends; a file the receiver already has (same size and SHA-256) counts as done
("already there"), so running it twice is harmless.

Options:
  --no-verify      do not compute or send SHA-256s (sizes are still checked)
  --json           one JSON object per event on stdout, then a summary object
  --proxy URL      connect through a SOCKS5 proxy, socks5://[user@]host:port (default:
                   SOCKS_PROXY or ALL_PROXY, unless NO_PROXY names the host); the password
                   from SOCKIT_PROXY_PASSWORD or --proxy-auth-file, not argv
  --proxy-auth-file FILE  the proxy's user:pass, one line (chmod 600)

Exit code 0 only when the receiver confirmed every entry; 1 otherwise.

${WORMHOLE_USAGE}

Examples:
  sockit send photos/                      # then, on the other machine: sockit recv
  sockit recv --port 7071 --dir /srv/in &
  sockit send 127.0.0.1:7071 photos/ notes.txt`,
  options: {
    ...WORMHOLE_SEND_OPTIONS,
    "no-verify": { type: "boolean" },
    json: { type: "boolean" },
    proxy: { type: "string" },
    "proxy-auth-file": { type: "string" },
  },
  allowPositionals: true,
  async run({ values, positionals }) {
    const withCode = isCodeSend(values, positionals);
    if (!withCode) refuseCodeOptions(values, WORMHOLE_SEND_OPTIONS);
    const { target, paths } = withCode
      ? { target: undefined, paths: positionals }
      : sendArguments(positionals);
    const proxyText = stringOption(values, "proxy");
    const log = new Logger("send", {
      quiet: flag(values, "quiet"),
      verbose: flag(values, "verbose"),
    });
    // --proxy, else SOCKS_PROXY/ALL_PROXY (direct mode only; the code mode has no proxy).
    const proxy = withCode ? undefined : clientProxy(target!, {
      url: proxyText,
      authFile: stringOption(values, "proxy-auth-file"),
      warn: (text) => log.warn(text),
    });
    const stop = new AbortController();
    let signalName = "";
    void waitForShutdownSignal().then((name) => {
      signalName = name;
      stop.abort(new Error(`interrupted by ${name}`));
    });

    if (withCode) {
      if (proxyText !== undefined) {
        throw new UsageError("--proxy is for the direct mode (HOST:PORT)");
      }
      return await sendWithCode(values, paths, {
        log,
        signal: stop.signal,
        signalName: () => signalName,
      });
    }
    const walk = await collectEntries(paths).catch((error) => {
      if (error instanceof Deno.errors.NotFound) {
        throw new Error(`Cannot send: ${error.message}`);
      }
      throw error;
    });
    let reporter: SendReporter;
    if (flag(values, "json")) reporter = new JsonReporter();
    else if (Deno.stderr.isTerminal() && !flag(values, "quiet")) reporter = new BarReporter(log);
    else reporter = new LineReporter(log, { quiet: flag(values, "quiet") });

    const timeoutMs = TRANSFER_CLI_DEFAULTS.connectTimeoutMs;
    let conn: Deno.TcpConn;
    try {
      conn = await unlessAborted(connectToReceiver(target!, proxy, timeoutMs), stop.signal);
    } catch (error) {
      if (!stop.signal.aborted) throw error;
      throw new Error(
        `interrupted by ${signalName}: 0/${walk.entries.length} entries stored, nothing sent; ` +
          "run the same command again to resume",
      );
    }
    try {
      const summary = await sendEntries(conn, walk, {
        verify: !flag(values, "no-verify"),
        reporter,
        signal: stop.signal,
      });
      return summary.ok ? 0 : 1;
    } catch (error) {
      if (error instanceof SendInterruptedError) {
        throw new Error(`interrupted by ${signalName}: ${error.message}`);
      }
      throw error;
    } finally {
      try {
        conn.close();
      } catch {
        // Already closed by a timeout or the interruption.
      }
    }
  },
};

/** What a listening `recv` counted so far, for `--metrics` (sessions are added as they end). */
interface ReceiverTotals {
  /** Connections accepted (served, or refused over the cap). */
  connections: number;
  /** Senders refused because --max-senders were already served ("receiver busy"). */
  busy: number;
  /** Entries stored and confirmed, by ended sessions. */
  stored: number;
  /** File bytes received, by ended sessions. */
  bytes: number;
  /** Entries refused (rejected or failed), by reason, by ended sessions. */
  refusals: Partial<Record<ReasonValue, number>>;
}

/** The `reason` label of each refusal {@linkcode Reason}: its key in snake_case (`invalid_name`). */
const REFUSAL_LABELS: ReadonlyArray<readonly [ReasonValue, string]> = Object.entries(Reason)
  .filter(([key]) => key !== "AlreadyThere") // stored, not refused
  .map(([key, code]) => [code, key.replace(/(?<=.)[A-Z]/g, (c) => `_${c}`).toLowerCase()]);

/** The receiver's metrics for `--metrics`. */
function receiverMetrics(
  server: Server,
  state: { totals: ReceiverTotals; senders: () => number },
): MetricsRegistry {
  const { totals } = state;
  return new MetricsRegistry()
    .gauge("sockit_recv_connections", {
      help: "Connections open now (senders, and connections waiting for their hello)",
      read: () => server.active.size,
    })
    .counter("sockit_recv_connections_total", {
      help: "Connections accepted since start (served, or refused over the cap)",
      read: () => totals.connections,
    })
    .gauge("sockit_recv_senders", {
      help: "Senders being served now (counted once their hello arrived)",
      read: state.senders,
    })
    .counter("sockit_recv_senders_refused_total", {
      help: `Senders refused because --max-senders were already served (${ReceiverError.Busy})`,
      read: () => totals.busy,
    })
    .counter("sockit_recv_entries_stored_total", {
      help: "Entries (files, folders, links) stored and confirmed, counted as each session ends",
      read: () => totals.stored,
    })
    .counter("sockit_recv_received_bytes_total", {
      help: "File bytes received from senders, counted as each session ends",
      read: () => totals.bytes,
    })
    .counter("sockit_recv_rejects_total", {
      help: "Entries refused (offers rejected, files failed after their data), by reason",
      label: "reason",
      read: () =>
        Object.fromEntries(
          REFUSAL_LABELS.map(([code, name]) => [name, totals.refusals[code] ?? 0]),
        ),
    });
}

/**
 * The warning `recv` prints when it listens where other machines can reach it: what protects
 * the folder and what does not.
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert/strict";
 * import { exposedWarning } from "./command.ts";
 * assert.match(exposedWarning("0.0.0.0", { dir: "/srv/in", maxSenders: 8 }), /no authentication/);
 * ```
 */
export function exposedWarning(
  hostname: string,
  options: { dir: string; maxSenders: number },
): string {
  return `${hostname} is reachable from other machines: anyone who can connect can store files ` +
    `in ${options.dir}. What protects it: names stay inside the folder (no '..', no absolute ` +
    "paths, no writing through links), existing files are kept unless --overwrite, --max-size, " +
    `at most ${options.maxSenders} senders, silent senders are cut. What does not: there is no ` +
    "authentication and no encryption (anyone can send; anyone on the path can read or alter " +
    "the data, the SHA-256 only catches accidents), and nothing bounds the disk space used. " +
    "Listen on 127.0.0.1 behind an SSH tunnel, or firewall the port, when that matters.";
}

/** `sockit recv`: receives files and folders into a folder. */
export const recvCommand: Command = {
  name: "recv",
  summary: "Receive files and folders from `sockit send` into a folder",
  usage:
    `Usage: sockit recv [CODE] [--yes] [--dir DIR] [--overwrite | --rename] [--no-sync]  (a code)
       sockit recv [--host H] [--port P] [--dir DIR] [--once] [--overwrite | --rename]
                   [--no-sync] [--max-size SIZE] [--max-senders N] [--metrics ADDR]

With a code (the default; no --host, --port, --once, --max-senders or --metrics): takes the
code from the argument, SOCKIT_CODE or a prompt, shows what is offered and asks (--yes: accept).

Listens for senders (several at once, up to --max-senders) and stores what they send under
DIR. Names are checked: nothing is ever written outside DIR or through a symlink, and a link is
created only when it resolves inside DIR. A file is written to .NAME.sockit-partial, verified,
synced, then renamed; an interrupted transfer resumes from the partial file. A file sent again
that is already there (same size and SHA-256) counts as stored. On SIGINT or SIGTERM, senders
in progress are told to run again later; their partial files stay.

There is no authentication: on an address other machines can reach (--host 0.0.0.0), anyone
who can connect can store files (recv warns at start).

Options:
  --host H         address to listen on (default ${TRANSFER_CLI_DEFAULTS.host})
  --port P, -p P   port (default ${TRANSFER_CLI_DEFAULTS.port}; 0 picks a free one)
  --dir DIR        folder to store into (default: the current folder)
  --once           exit after the first sender; exit 0 only if all its entries were stored
  --overwrite      replace existing files (atomically)
  --rename         store under "name (1).ext" when the name exists
  --no-sync        do not fsync files and folders before confirming (faster, less durable)
  --max-size SIZE  refuse files larger than SIZE (e.g. 4GiB; default: no limit)
  --max-senders N  senders served at once (default ${TRANSFER_CLI_DEFAULTS.maxSenders}); a sender counts once its
                   hello arrived (within ${
      RECEIVE_DEFAULTS.handshakeTimeoutMs / 1000
    } s); more hear "${ReceiverError.Busy}"
  --metrics ADDR   serve Prometheus metrics at http://ADDR/metrics (HOST:PORT; a bare PORT
                   or :PORT is on 127.0.0.1)

${WORMHOLE_USAGE}

Examples:
  sockit recv --dir ./incoming
  sockit recv --port 7071 --dir /srv/in --once`,
  options: {
    ...LISTEN_OPTIONS,
    dir: { type: "string" },
    once: { type: "boolean" },
    overwrite: { type: "boolean" },
    rename: { type: "boolean" },
    "no-sync": { type: "boolean" },
    "max-size": { type: "string" },
    "max-senders": { type: "string" },
    metrics: { type: "string" },
    ...WORMHOLE_RECV_OPTIONS,
  },
  allowPositionals: true,
  async run({ values, positionals }) {
    const metricsText = stringOption(values, "metrics");
    if (metricsText !== undefined && positionals.length > 0) {
      throw new UsageError(
        "--metrics serves a listening receiver; a code receives from one sender: choose one",
      );
    }
    // --metrics is a listening option too: it asks for the direct mode.
    const withCode = metricsText === undefined && isCodeRecv(values, positionals);
    if (!withCode) refuseCodeOptions(values, WORMHOLE_RECV_OPTIONS);
    const metricsAt = metricsText === undefined ? undefined : parseMetricsAddress(metricsText);
    if (flag(values, "overwrite") && flag(values, "rename")) {
      throw new UsageError("Choose one of --overwrite and --rename");
    }
    const maxFileSize = sizeOption(values, "max-size", { fallback: RECEIVE_DEFAULTS.maxFileSize });
    const maxSenders = intOption(values, "max-senders", {
      fallback: TRANSFER_CLI_DEFAULTS.maxSenders,
      min: 1,
      max: 100_000,
    });
    const dirText = stringOption(values, "dir", { fallback: "." });
    let dir: string;
    try {
      dir = await Deno.realPath(dirText);
      if (!(await Deno.stat(dir)).isDirectory) throw new Error("not a folder");
    } catch (error) {
      throw new UsageError(
        `Cannot use --dir '${dirText}': ${error instanceof Error ? error.message : error}`,
      );
    }
    const status = Deno.stderr.isTerminal() && !flag(values, "quiet")
      ? new StatusLine()
      : undefined;
    const log = new Logger("recv", {
      quiet: flag(values, "quiet"),
      verbose: flag(values, "verbose"),
      sink: status?.sink,
    });
    if (withCode) {
      const stop = new AbortController();
      void waitForShutdownSignal().then((name) => stop.abort(new Error(`interrupted by ${name}`)));
      return await (await import("../wormhole/command.ts")).runCodeRecv(values, positionals, {
        log,
        signal: stop.signal,
        dir,
        overwrite: flag(values, "overwrite"),
        rename: flag(values, "rename"),
        sync: !flag(values, "no-sync"),
        maxFileSize,
        progress: status,
      });
    }
    const addr = listenOptions(values, TRANSFER_CLI_DEFAULTS);
    const once = flag(values, "once");
    const inUse = new Set<string>();
    let firstDone: (summary: ReceiveSummary) => void = () => {};
    const firstSession = new Promise<ReceiveSummary>((resolve) => (firstDone = resolve));

    // Loaded before the first sender comes, not while it waits.
    await loadExistsCheck();
    const listener = listenTcp(addr);
    const pending = TRANSFER_CLI_DEFAULTS.pendingHellos;
    // Pipelined files wait for their batch's fsync with their file open only while descriptors
    // are spare beyond the sockets and each sender's working files; otherwise they are reopened.
    const plan = planDescriptors(
      maxSenders + pending + (FDS_PER_SENDER - 1) * maxSenders + FD_SLACK,
    );
    const fdBudget = new FdBudget(plan.spare);
    let senders = 0;
    const admit = () => {
      if (senders >= maxSenders) return null;
      senders++;
      let released = false;
      return () => {
        if (!released) senders--;
        released = true;
      };
    };
    const shutdown = new AbortController();
    const totals: ReceiverTotals = { connections: 0, busy: 0, stored: 0, bytes: 0, refusals: {} };
    let cut = 0;
    let lastRefusalLog = -Infinity;
    const server = serve(listener, async (conn) => {
      totals.connections++;
      const summary = await receiveSession(conn, {
        dir,
        overwrite: flag(values, "overwrite"),
        rename: flag(values, "rename"),
        sync: !flag(values, "no-sync"),
        maxFileSize,
        logger: log,
        entryLines: !flag(values, "quiet"),
        inUse,
        progress: status,
        admit,
        signal: shutdown.signal,
        fdBudget,
      });
      totals.stored += summary.confirmed;
      totals.bytes += summary.bytes;
      for (const [code, n] of Object.entries(summary.refusals)) {
        const reason = Number(code) as ReasonValue;
        totals.refusals[reason] = (totals.refusals[reason] ?? 0) + n;
      }
      if (!summary.started && summary.error === ReceiverError.Busy) totals.busy++;
      if (summary.started && summary.cut) cut++;
      if (summary.started) firstDone(summary);
    }, {
      maxConnections: maxSenders + pending,
      async onRefused(conn) {
        // More connections than senders and hellos awaited: refused without waiting for a hello.
        totals.connections++;
        totals.busy++;
        if (performance.now() - lastRefusalLog > 1000) {
          lastRefusalLog = performance.now();
          log.warn(
            `refused a connection: ${maxSenders + pending} already open (${ReceiverError.Busy})`,
          );
        }
        const hello = encodeHello(TRANSFER_PROTOCOL, TRANSFER_VERSION);
        const error = encodeFrame(ControlFrame.Error, encodeText(ReceiverError.Busy));
        await withTimeout(writeAll(conn, new Uint8Array([...hello, ...error])), 1000);
      },
      onError(error) {
        log.error(error instanceof Error ? error.message : String(error));
      },
    });
    let metrics: MetricsServer | undefined;
    if (metricsAt) {
      try {
        const registry = receiverMetrics(server, { totals, senders: () => senders });
        metrics = serveMetrics(registry, { ...metricsAt, logger: log });
      } catch (error) {
        await server.stop();
        throw error;
      }
    }
    log.listening(formatAddress(server.addr), `storing into ${dir}`);
    if (!isLoopbackHost(server.addr.hostname)) {
      log.warn(exposedWarning(server.addr.hostname, { dir, maxSenders }));
    }
    const fdWarning = descriptorWarning(maxSenders, {
      flag: "--max-senders",
      perConnection: FDS_PER_SENDER,
    });
    if (fdWarning) log.warn(`${fdWarning}; until then files wait for descriptors (slower)`);

    const signal = waitForShutdownSignal();
    const ended = await Promise.race([
      signal.then((name) => ({ kind: "signal" as const, name })),
      ...(once ? [firstSession.then((summary) => ({ kind: "once" as const, summary }))] : []),
    ]);
    // Senders still in progress hear that the receiver is going away; partial files stay.
    shutdown.abort(new Error(ReceiverError.Shutdown));
    await server.stop({ timeoutMs: 5000 });
    await metrics?.shutdown();
    if (ended.kind === "signal") {
      const cutText = cut > 0
        ? ` (cut ${cut} sender${cut === 1 ? "" : "s"} in progress; partial files kept for a resume)`
        : "";
      log.info(`got ${ended.name}, stopped${cutText}`);
      return 0;
    }
    return ended.summary.ok ? 0 : 1;
  },
};
