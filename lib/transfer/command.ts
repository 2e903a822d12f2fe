/**
 * The `send` and `recv` subcommands.
 *
 * @module
 */

import {
  type Command,
  LISTEN_OPTIONS,
  listenOptions,
  type OptionValues,
  sizeOption,
  stringOption,
} from "../command.ts";
import { Logger } from "../log.ts";
import { formatAddress, parseAddress } from "../net/address.ts";
import { withTimeout } from "../net/deadline.ts";
import { UsageError } from "../net/errors.ts";
import { serve, waitForShutdownSignal } from "../net/server.ts";
import { ControlFrame, encodeFrame } from "../net/frame.ts";
import { writeAll } from "../net/write_all.ts";
import { parseProxyUrl, socks5Connect } from "../socks5/client.ts";
import {
  BarReporter,
  JsonReporter,
  LineReporter,
  type SendReporter,
  StatusLine,
} from "./progress.ts";
import { encodeText } from "./protocol.ts";
import { RECEIVE_DEFAULTS, receiveSession, type ReceiveSummary } from "./receiver.ts";
import { sendEntries } from "./sender.ts";
import { collectEntries } from "./walk.ts";

/** Defaults of the `send` and `recv` command lines. */
export const TRANSFER_CLI_DEFAULTS = {
  /** Address `recv` listens on. */
  host: "127.0.0.1",
  /** Port `recv` listens on. */
  port: 7071,
  /** Senders served at the same time by `recv`; more are refused with an Error frame. */
  maxSenders: 8,
  /** Longest wait for the TCP (or proxy) connection of `send`, in ms. */
  connectTimeoutMs: 10_000,
} as const;

function flag(values: OptionValues, name: string): boolean {
  return values[name] === true;
}

/** `sockit send`: sends files and folders to a receiver. */
export const sendCommand: Command = {
  name: "send",
  summary: "Send files and folders to `sockit recv` (verified, resumable)",
  usage:
    `Usage: sockit send HOST:PORT PATH... [--no-verify] [--json] [--proxy socks5://[user:pass@]host:port]

Sends files and folders (recursively) to a receiver started with \`sockit recv\`. Each file
is offered, streamed in 1 MiB frames and checked by the receiver against its SHA-256 before it
is stored under its final name. Running the same command again after an interruption resumes
where the receiver's partial file ends.

Options:
  --no-verify      do not compute or send SHA-256s (sizes are still checked)
  --json           one JSON object per event on stdout, then a summary object
  --proxy URL      connect through a SOCKS5 proxy, socks5://[user:pass@]host:port

Exit code 0 only when the receiver confirmed every entry; 1 otherwise.

Example:
  sockit recv --port 7071 --dir /srv/in &
  sockit send 127.0.0.1:7071 photos/ notes.txt`,
  options: {
    "no-verify": { type: "boolean" },
    json: { type: "boolean" },
    proxy: { type: "string" },
  },
  allowPositionals: true,
  async run({ values, positionals }) {
    const [addressText, ...paths] = positionals;
    if (addressText === undefined) throw new UsageError("Missing HOST:PORT of the receiver");
    if (paths.length === 0) throw new UsageError("Missing PATH: name at least one file or folder");
    const target = parseAddress(addressText);
    const proxyText = stringOption(values, "proxy");
    const proxy = proxyText === undefined ? undefined : parseProxyUrl(proxyText);
    const log = new Logger("send", {
      quiet: flag(values, "quiet"),
      verbose: flag(values, "verbose"),
    });

    const walk = await collectEntries(paths).catch((error) => {
      if (error instanceof Deno.errors.NotFound) {
        throw new Error(`Cannot send: ${error.message}`);
      }
      throw error;
    });
    let reporter: SendReporter;
    if (flag(values, "json")) reporter = new JsonReporter();
    else if (Deno.stderr.isTerminal() && !flag(values, "quiet")) reporter = new BarReporter(log);
    else reporter = new LineReporter(log);

    const timeoutMs = TRANSFER_CLI_DEFAULTS.connectTimeoutMs;
    const conn = proxy ? await socks5Connect(proxy, target, { timeoutMs }) : await withTimeout(
      Deno.connect({ hostname: target.hostname, port: target.port }),
      timeoutMs,
      { what: `a connection to ${formatAddress(target)}` },
    );
    try {
      const summary = await sendEntries(conn, walk, {
        verify: !flag(values, "no-verify"),
        reporter,
      });
      return summary.ok ? 0 : 1;
    } finally {
      try {
        conn.close();
      } catch {
        // Already closed by a timeout.
      }
    }
  },
};

/** `sockit recv`: receives files and folders into a folder. */
export const recvCommand: Command = {
  name: "recv",
  summary: "Receive files and folders from `sockit send` into a folder",
  usage: `Usage: sockit recv [--host H] [--port P] [--dir DIR] [--once] [--overwrite | --rename]
                   [--no-sync] [--max-size SIZE]

Listens for senders (several at once, up to ${TRANSFER_CLI_DEFAULTS.maxSenders}) and stores what they
send under DIR. Names are checked: nothing is ever written outside DIR or through a symlink.
A file is written to .NAME.sockit-partial, verified, synced, then renamed; an interrupted
transfer resumes from the partial file.

Options:
  --host H         address to listen on (default ${TRANSFER_CLI_DEFAULTS.host})
  --port P, -p P   port (default ${TRANSFER_CLI_DEFAULTS.port}; 0 picks a free one)
  --dir DIR        folder to store into (default: the current folder)
  --once           exit after the first sender; exit 0 only if all its entries were stored
  --overwrite      replace existing files (atomically)
  --rename         store under "name (1).ext" when the name exists
  --no-sync        do not fsync files and folders before confirming (faster, less durable)
  --max-size SIZE  refuse files larger than SIZE (e.g. 4GiB; default: no limit)

Example:
  sockit recv --port 7071 --dir /srv/in --once`,
  options: {
    ...LISTEN_OPTIONS,
    dir: { type: "string" },
    once: { type: "boolean" },
    overwrite: { type: "boolean" },
    rename: { type: "boolean" },
    "no-sync": { type: "boolean" },
    "max-size": { type: "string" },
  },
  async run({ values }) {
    const addr = listenOptions(values, TRANSFER_CLI_DEFAULTS);
    if (flag(values, "overwrite") && flag(values, "rename")) {
      throw new UsageError("Choose one of --overwrite and --rename");
    }
    const maxFileSize = sizeOption(values, "max-size", { fallback: RECEIVE_DEFAULTS.maxFileSize });
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
    const once = flag(values, "once");
    const inUse = new Set<string>();
    let firstDone: (summary: ReceiveSummary) => void = () => {};
    const firstSession = new Promise<ReceiveSummary>((resolve) => (firstDone = resolve));

    const listener = Deno.listen({ hostname: addr.hostname, port: addr.port, transport: "tcp" });
    const server = serve(listener, async (conn) => {
      const summary = await receiveSession(conn, {
        dir,
        overwrite: flag(values, "overwrite"),
        rename: flag(values, "rename"),
        sync: !flag(values, "no-sync"),
        maxFileSize,
        logger: log,
        inUse,
        progress: status,
      });
      if (summary.started) firstDone(summary);
    }, {
      maxConnections: TRANSFER_CLI_DEFAULTS.maxSenders,
      async onRefused(conn) {
        log.warn(`refused a sender: already serving ${TRANSFER_CLI_DEFAULTS.maxSenders}`);
        await writeAll(conn, encodeFrame(ControlFrame.Error, encodeText("receiver busy")));
      },
      onError(error) {
        log.error(error instanceof Error ? error.message : String(error));
      },
    });
    log.listening(formatAddress(server.addr), `storing into ${dir}`);

    const signal = waitForShutdownSignal();
    const ended = await Promise.race([
      signal.then((name) => ({ kind: "signal" as const, name })),
      ...(once ? [firstSession.then((summary) => ({ kind: "once" as const, summary }))] : []),
    ]);
    await server.stop({ timeoutMs: 5000 });
    if (ended.kind === "signal") {
      log.info(`got ${ended.name}, stopped`);
      return 0;
    }
    return ended.summary.ok ? 0 : 1;
  },
};
