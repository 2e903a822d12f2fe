/**
 * Prometheus metrics for every sockit server (`--metrics HOST:PORT`): a small registry of
 * counters and gauges whose values are read from callbacks at scrape time (the hot paths pay
 * nothing, they keep their plain counters), rendered in the text exposition format 0.0.4, and
 * {@linkcode serveMetrics}, which serves them at `GET /metrics` with `Deno.serve`.
 *
 * The registry refuses names that `promtool check metrics` would flag: a name must match
 * `[a-zA-Z_:][a-zA-Z0-9_:]*`, be snake_case without `:` (reserved for recording rules), end in
 * `_total` exactly when it is a counter, carry its unit in base units (`_bytes`, `_seconds`;
 * never `_ms`, `_kb` or `_milliseconds`) and not end like a histogram or summary series.
 *
 * Every registry also reports the process (unless told not to):
 * `process_resident_memory_bytes` (VmRSS of `/proc/self/status`), `process_open_fds` (entries
 * of `/proc/self/fd`), `process_cpu_seconds_total` (utime + stime of `/proc/self/stat`, in
 * clock ticks of 1/100 s) and `process_start_time_seconds`. Deno lets a program read
 * `/proc/self` only with `--allow-all`; without it the memory and CPU figures come from
 * `Deno.memoryUsage()` and `process.cpuUsage()`, and `process_open_fds` is left out.
 *
 * @example A counter, a gauge and a labeled counter
 * ```ts
 * import assert from "node:assert/strict";
 * import { MetricsRegistry } from "./metrics.ts";
 * const stats = { messagesIn: 3, clients: 1, closes: { idle: 2, "peer-closed": 5 } };
 * const registry = new MetricsRegistry({ processMetrics: false })
 *   .counter("demo_messages_in_total", { help: "Messages received", read: () => stats.messagesIn })
 *   .gauge("demo_clients", { help: "Clients connected now", read: () => stats.clients })
 *   .counter("demo_closes_total", { help: "Closes by reason", label: "reason", read: () => stats.closes });
 * stats.messagesIn++;
 * const text = registry.render();
 * assert.match(text, /^# HELP demo_messages_in_total Messages received\n# TYPE demo_messages_in_total counter\ndemo_messages_in_total 4\n/);
 * assert.match(text, /\ndemo_closes_total\{reason="peer-closed"\} 5\n/);
 * ```
 *
 * @module
 */

import process from "node:process";
import { formatAddress, type HostPort, parseAddress, parsePort } from "./address.ts";
import { BufferedReader } from "./buffered_reader.ts";
import { readRequestHead } from "./http_request.ts";
import { HttpError, HttpStatus, refuseRequest, writeResponse } from "./http_response.ts";
import { serve } from "./server.ts";
import { openFileCount } from "./fd_budget.ts";
import { SocketError, UsageError } from "./errors.ts";

/** Defaults of `--metrics` and {@linkcode serveMetrics}. */
export const METRICS_DEFAULTS = {
  /** Host of a `--metrics` value without one (`9100`, `:9100`): loopback only. */
  hostname: "127.0.0.1",
  /** The one path served; every other path (and every method but GET) is 404. */
  path: "/metrics",
  /** The exposition format's content type (text format 0.0.4). */
  contentType: "text/plain; version=0.0.4; charset=utf-8",
  /** Longest wait for scrapes in flight at shutdown, in ms. */
  shutdownTimeoutMs: 1000,
  /**
   * A scraper connection must send its request head within this, in ms, or it is closed
   * (a Prometheus scrape sends it at once; a silent connection only holds a descriptor).
   */
  requestTimeoutMs: 5_000,
  /** Scrape connections at once; more are closed on accept (a scraper needs one). */
  maxConnections: 16,
  /** How long the open-descriptor count is reused between scrapes, in ms. */
  openFdsCacheMs: 1_000,
} as const;

/** The kinds of metric the registry holds. */
export type MetricType = "counter" | "gauge";

/** A metric with one series: `read` gives its value at scrape time. */
export interface SingleMetricOptions {
  /** The `# HELP` text: what is counted, in a few words. */
  help: string;
  /** Reads the value at scrape time. */
  read: () => number;
  /** No label: one series. */
  label?: undefined;
}

/** A metric with one series per value of `label`: `read` gives each value's number. */
export interface LabeledMetricOptions {
  /** The `# HELP` text: what is counted, in a few words. */
  help: string;
  /** The label's name, e.g. `reason`. */
  label: string;
  /** Reads the series at scrape time: label value to number (e.g. closes by reason). */
  read: () => Readonly<Record<string, number>>;
}

/** Options of {@linkcode MetricsRegistry.counter} and {@linkcode MetricsRegistry.gauge}. */
export type MetricOptions = SingleMetricOptions | LabeledMetricOptions;

/**
 * A metric's name, label or help text breaks the Prometheus naming rules, or a name is
 * registered twice; the message names the metric and the rule.
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert/strict";
 * import { InvalidMetricError, MetricsRegistry } from "./metrics.ts";
 * const registry = new MetricsRegistry({ processMetrics: false });
 * assert.throws(
 *   () => registry.counter("demo_messages", { help: "Messages", read: () => 0 }),
 *   (e: unknown) => e instanceof InvalidMetricError && /must end in _total/.test(e.message),
 * );
 * ```
 */
export class InvalidMetricError extends Error {
  /** Creates an invalid-metric error with a message naming the metric and the rule. */
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "InvalidMetricError";
  }
}

const NAME_PATTERN = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL_PATTERN = /^[a-zA-Z_][a-zA-Z0-9_]*$/;
/** Base units of the Prometheus naming rules. */
const BASE_UNITS = ["seconds", "bytes", "meters", "metres", "grams", "volts", "amperes", "joules"];
/** SI prefixes that make a unit a non-base unit (`milliseconds`, `kilobytes`). */
const UNIT_PREFIXES = [
  "pico",
  "nano",
  "micro",
  "milli",
  "centi",
  "deci",
  "deca",
  "hecto",
  "kilo",
  "mega",
  "giga",
  "tera",
  "peta",
];
/** Units that are not base units, with the base unit to use instead. */
const NON_BASE_UNITS: Readonly<Record<string, string>> = {
  minutes: "seconds",
  hours: "seconds",
  days: "seconds",
  bits: "bytes",
};
/** Abbreviated units (`_ms`, `_kb`, a lone `_s`): spelled out, they are base units. */
const UNIT_ABBREVIATIONS = new Set([
  "s",
  "ms",
  "us",
  "ns",
  "sec",
  "secs",
  "min",
  "mins",
  "m",
  "h",
  "d",
  "b",
  "kb",
  "mb",
  "gb",
  "kib",
  "mib",
  "gib",
]);
/** Name endings and labels reserved for histograms and summaries. */
const RESERVED_SUFFIXES = ["_bucket", "_count", "_sum"];
const RESERVED_LABELS = ["le", "quantile"];

/**
 * Checks `name` as the name of a metric of `type` and throws {@linkcode InvalidMetricError}
 * saying which rule it breaks: the name syntax `[a-zA-Z_:][a-zA-Z0-9_:]*`, snake_case without
 * `:`, `_total` exactly on counters, base units (`_seconds`, `_bytes`), no type word
 * (`_counter`, `_gauge`) and no histogram or summary ending (`_count`, `_sum`, `_bucket`).
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert/strict";
 * import { validateMetricName } from "./metrics.ts";
 * validateMetricName("sockit_relay_sent_bytes_total", { type: "counter" });
 * assert.throws(() => validateMetricName("2fast", { type: "gauge" }), /must match/);
 * assert.throws(() => validateMetricName("wait_ms", { type: "gauge" }), /abbreviated unit 'ms'/);
 * assert.throws(() => validateMetricName("wait_minutes", { type: "gauge" }), /base unit seconds/);
 * assert.throws(() => validateMetricName("open_total", { type: "gauge" }), /only counters/);
 * ```
 */
export function validateMetricName(name: string, options: { type: MetricType }): void {
  const bad = (rule: string) => new InvalidMetricError(`Cannot register metric '${name}': ${rule}`);
  if (!NAME_PATTERN.test(name)) throw bad("the name must match [a-zA-Z_:][a-zA-Z0-9_:]*");
  if (name.includes(":")) throw bad("':' is reserved for recording rules");
  if (/[A-Z]/.test(name)) throw bad("metric names are snake_case, without capitals");
  if (name.startsWith("__")) throw bad("names starting with '__' are reserved");
  const counter = options.type === "counter";
  if (counter && !name.endsWith("_total")) throw bad("a counter's name must end in _total");
  if (!counter && name.endsWith("_total")) throw bad("only counters' names end in _total");
  const suffix = RESERVED_SUFFIXES.find((s) => name.endsWith(s));
  if (suffix) throw bad(`names ending in ${suffix} are reserved for histograms and summaries`);
  for (const word of name.toLowerCase().split("_")) {
    if (word === "counter" || word === "gauge") {
      throw bad(`the name must not say its type ('${word}')`);
    }
    if (UNIT_ABBREVIATIONS.has(word)) {
      throw bad(`abbreviated unit '${word}': spell out the base unit (_seconds, _bytes)`);
    }
    const base = NON_BASE_UNITS[word] ??
      BASE_UNITS.find((u) => UNIT_PREFIXES.some((p) => word === p + u));
    if (base !== undefined) throw bad(`use the base unit ${base} instead of '${word}'`);
  }
}

/** Checks a label name: `[a-zA-Z_][a-zA-Z0-9_]*`, not `__...`, not `le` or `quantile`. */
function validateLabelName(metric: string, label: string): void {
  const bad = (rule: string) =>
    new InvalidMetricError(`Cannot register metric '${metric}' with label '${label}': ${rule}`);
  if (!LABEL_PATTERN.test(label)) throw bad("the label name must match [a-zA-Z_][a-zA-Z0-9_]*");
  if (label.startsWith("__")) throw bad("label names starting with '__' are reserved");
  if (/[a-z][A-Z]/.test(label)) throw bad("label names are snake_case, not camelCase");
  if (RESERVED_LABELS.includes(label)) {
    throw bad(`'${label}' is reserved for histograms and summaries`);
  }
}

/**
 * Escapes a label value for the text format: `\` as `\\`, `"` as `\"`, a line feed as `\n`.
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert/strict";
 * import { escapeLabelValue } from "./metrics.ts";
 * assert.equal(escapeLabelValue('a "b"\\c\nd'), 'a \\"b\\"\\\\c\\nd');
 * ```
 */
export function escapeLabelValue(value: string): string {
  return value.replace(/[\\"\n]/g, (c) => (c === "\n" ? "\\n" : `\\${c}`));
}

/**
 * Escapes `# HELP` text for the text format: `\` as `\\`, a line feed as `\n`.
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert/strict";
 * import { escapeHelp } from "./metrics.ts";
 * assert.equal(escapeHelp('one\ntwo \\ "three"'), 'one\\ntwo \\\\ "three"');
 * ```
 */
export function escapeHelp(text: string): string {
  return text.replace(/[\\\n]/g, (c) => (c === "\n" ? "\\n" : "\\\\"));
}

/**
 * A sample value in the text format: integers as they are, `NaN`, `+Inf` and `-Inf`.
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert/strict";
 * import { formatSampleValue } from "./metrics.ts";
 * assert.equal(formatSampleValue(42), "42");
 * assert.equal(formatSampleValue(0.25), "0.25");
 * assert.equal(formatSampleValue(Infinity), "+Inf");
 * ```
 */
export function formatSampleValue(value: number): string {
  if (Number.isNaN(value)) return "NaN";
  if (value === Infinity) return "+Inf";
  if (value === -Infinity) return "-Inf";
  return String(value);
}

interface Family {
  name: string;
  type: MetricType;
  options: MetricOptions;
}

/** Options for {@linkcode MetricsRegistry}. */
export interface MetricsRegistryOptions {
  /**
   * Register the process metrics (`process_resident_memory_bytes`, `process_open_fds`,
   * `process_cpu_seconds_total`, `process_start_time_seconds`). @default {true}
   */
  processMetrics?: boolean;
}

/**
 * Counters and gauges read at scrape time, rendered in the Prometheus text format 0.0.4 in
 * the order they were registered.
 *
 * @example One snapshot per scrape, shared by several metrics
 * ```ts
 * import assert from "node:assert/strict";
 * import { MetricsRegistry } from "./metrics.ts";
 * let calls = 0;
 * const registry = new MetricsRegistry({ processMetrics: false });
 * const stats = registry.snapshot(() => ({ calls: ++calls, bytes: 512 }));
 * registry
 *   .gauge("demo_snapshots", { help: "Snapshots taken", read: () => stats().calls })
 *   .counter("demo_sent_bytes_total", { help: "Bytes sent", read: () => stats().bytes });
 * assert.match(registry.render(), /\ndemo_snapshots 1\n[^]*\ndemo_sent_bytes_total 512\n$/);
 * assert.equal(calls, 1);
 * ```
 */
export class MetricsRegistry {
  #families: Family[] = [];
  #names = new Set<string>();
  #scrape = 0;
  #rendering = false;

  /** Creates a registry, with the process metrics unless `options.processMetrics` is false. */
  constructor(options: MetricsRegistryOptions = {}) {
    if (options.processMetrics ?? true) registerProcessMetrics(this);
  }

  /** The names registered, in order. */
  get names(): string[] {
    return this.#families.map((f) => f.name);
  }

  /** Registers a counter (its name ends in `_total`); returns the registry. */
  counter(name: string, options: MetricOptions): this {
    return this.#add({ name, type: "counter", options });
  }

  /** Registers a gauge; returns the registry. */
  gauge(name: string, options: MetricOptions): this {
    return this.#add({ name, type: "gauge", options });
  }

  /**
   * Wraps `read` (a server's `stats()`, say) so that it runs at most once per scrape, however
   * many metrics read it; outside a scrape every call reads afresh.
   */
  snapshot<T>(read: () => T): () => T {
    let at = -1;
    let value: T;
    return () => {
      if (!this.#rendering) return read();
      if (at !== this.#scrape) {
        value = read();
        at = this.#scrape;
      }
      return value;
    };
  }

  /** Reads every metric now and returns the exposition text (ends with a line feed). */
  render(): string {
    this.#scrape++;
    this.#rendering = true;
    try {
      let out = "";
      for (const f of this.#families) {
        out += `# HELP ${f.name} ${escapeHelp(f.options.help)}\n# TYPE ${f.name} ${f.type}\n`;
        if (f.options.label === undefined) {
          out += `${f.name} ${formatSampleValue(f.options.read())}\n`;
          continue;
        }
        const label = f.options.label;
        for (const [value, n] of Object.entries(f.options.read())) {
          out += `${f.name}{${label}="${escapeLabelValue(value)}"} ${formatSampleValue(n)}\n`;
        }
      }
      return out;
    } finally {
      this.#rendering = false;
    }
  }

  #add(family: Family): this {
    const { name, type, options } = family;
    validateMetricName(name, { type });
    if (this.#names.has(name)) {
      throw new InvalidMetricError(`Cannot register metric '${name}': already registered`);
    }
    if (options.help.trim() === "") {
      throw new InvalidMetricError(`Cannot register metric '${name}': it needs a help text`);
    }
    if (options.label !== undefined) validateLabelName(name, options.label);
    this.#names.add(name);
    this.#families.push(family);
    return this;
  }
}

/** Clock ticks per second of `/proc/self/stat` times (USER_HZ, 100 on Linux). */
const CLOCK_TICKS_PER_SECOND = 100;

/** Reads `path` when Deno lets this process read it without asking, else undefined. */
function readProcFile(path: string): string | undefined {
  if (Deno.permissions.querySync({ name: "read", path }).state !== "granted") return undefined;
  try {
    return Deno.readTextFileSync(path);
  } catch {
    // Not Linux, or /proc/self needs --allow-all (Deno refuses it otherwise).
    return undefined;
  }
}

/** The fields of `/proc/self/stat` after the command name (field 3 is index 0). */
function procStatFields(): string[] | undefined {
  const text = readProcFile("/proc/self/stat");
  return text?.slice(text.lastIndexOf(")") + 2).split(" ");
}

let fdCache: { at: number; value: number | undefined } | undefined;

/**
 * Entries of `/proc/self/fd`, or undefined when it cannot be listed; reused for
 * `openFdsCacheMs` (listing tens of thousands of descriptors per scrape would stall the
 * event loop of the server being measured).
 */
function openFds(): number | undefined {
  const now = performance.now();
  if (fdCache && now - fdCache.at < METRICS_DEFAULTS.openFdsCacheMs) return fdCache.value;
  fdCache = { at: now, value: listOpenFds() };
  return fdCache.value;
}

function listOpenFds(): number | undefined {
  const path = "/proc/self/fd";
  if (Deno.permissions.querySync({ name: "read", path }).state !== "granted") return undefined;
  return openFileCount() ?? undefined;
}

/** VmRSS of `/proc/self/status` in bytes, else `Deno.memoryUsage().rss`. */
function residentBytes(): number {
  const m = /^VmRSS:\s+(\d+) kB$/m.exec(readProcFile("/proc/self/status") ?? "");
  return m ? Number(m[1]) * 1024 : Deno.memoryUsage().rss;
}

/** utime + stime of `/proc/self/stat` in seconds, else `process.cpuUsage()`. */
function cpuSeconds(): number {
  const fields = procStatFields();
  if (fields && fields.length > 12) {
    return (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS_PER_SECOND;
  }
  const { user, system } = process.cpuUsage();
  return (user + system) / 1e6;
}

/** Start of the process: boot time plus starttime of `/proc/self/stat`, else the time origin. */
function startTimeSeconds(): number {
  const fields = procStatFields();
  const boot = /^btime (\d+)$/m.exec(readProcFile("/proc/stat") ?? "");
  if (fields && fields.length > 19 && boot) {
    return Number(boot[1]) + Number(fields[19]) / CLOCK_TICKS_PER_SECOND;
  }
  return Math.round(performance.timeOrigin) / 1000;
}

/** Registers the process metrics on `registry` (see the module documentation). */
function registerProcessMetrics(registry: MetricsRegistry): void {
  registry.gauge("process_resident_memory_bytes", {
    help: "Resident memory size in bytes",
    read: residentBytes,
  });
  if (openFds() !== undefined) {
    registry.gauge("process_open_fds", {
      help: "Open file descriptors",
      read: () => openFds() ?? NaN,
    });
  }
  registry.counter("process_cpu_seconds_total", {
    help: "User and system CPU time spent, in seconds",
    read: cpuSeconds,
  });
  const started = startTimeSeconds();
  registry.gauge("process_start_time_seconds", {
    help: "Start time of the process since the Unix epoch, in seconds",
    read: () => started,
  });
}

/**
 * Parses a `--metrics` value: `HOST:PORT`, `[IPv6]:PORT`, or a bare `PORT` or `:PORT`, which
 * mean {@linkcode METRICS_DEFAULTS.hostname} (loopback: metrics stay on this machine unless
 * an address says otherwise). Throws {@linkcode UsageError} naming `options.flag`.
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert/strict";
 * import { parseMetricsAddress } from "./metrics.ts";
 * assert.deepEqual(parseMetricsAddress("9100"), { hostname: "127.0.0.1", port: 9100 });
 * assert.deepEqual(parseMetricsAddress(":9100"), { hostname: "127.0.0.1", port: 9100 });
 * assert.deepEqual(parseMetricsAddress("0.0.0.0:9100"), { hostname: "0.0.0.0", port: 9100 });
 * assert.deepEqual(parseMetricsAddress("[::1]:0"), { hostname: "::1", port: 0 });
 * assert.throws(() => parseMetricsAddress("localhost"), /--metrics/);
 * ```
 */
export function parseMetricsAddress(text: string, options: { flag?: string } = {}): HostPort {
  const flag = options.flag ?? "--metrics";
  const expected = "expected HOST:PORT, :PORT or PORT";
  try {
    if (/^:?\d+$/.test(text)) {
      return { hostname: METRICS_DEFAULTS.hostname, port: parsePort(text.replace(/^:/, "")) };
    }
    return parseAddress(text);
  } catch (error) {
    if (!(error instanceof UsageError)) throw error;
    throw new UsageError(`Cannot parse ${flag} '${text}': ${expected} (${error.message})`, {
      cause: error,
    });
  }
}

/** Options for {@linkcode serveMetrics}. */
export interface ServeMetricsOptions {
  /** Address to bind. @default {"127.0.0.1"} */
  hostname?: string;
  /** Port to bind; 0 picks a free one (the log line says which). */
  port: number;
  /** Gets the line `metrics on http://HOST:PORT/metrics` (info), and failed scrapes (warn). */
  logger?: { info(message: string): void; warn(message: string): void };
}

/** A running metrics endpoint from {@linkcode serveMetrics}. */
export interface MetricsServer {
  /** The bound address. */
  readonly addr: Deno.NetAddr;
  /** The scrape URL, `http://HOST:PORT/metrics`. */
  readonly url: string;
  /** Stops serving; waits (bounded) for scrapes in flight. */
  shutdown(): Promise<void>;
}

/**
 * Serves `registry` at `GET /metrics` on `options.hostname`:`options.port`, plain HTTP/1.1 on the
 * project's bounded pieces (`server.ts`, `http_request.ts`): at most
 * {@linkcode METRICS_DEFAULTS}.maxConnections scrape connections, the request head within
 * `requestTimeoutMs`, one answer per connection (`Connection: close`), a request with a body
 * refused; anything but `GET /metrics` is answered 404. Logs `metrics on
 * http://HOST:PORT/metrics` once bound. A failed bind is a {@linkcode SocketError} naming the
 * address.
 *
 * @example Scrape it
 * ```ts
 * import assert from "node:assert/strict";
 * import { MetricsRegistry, serveMetrics } from "./metrics.ts";
 * const registry = new MetricsRegistry({ processMetrics: false })
 *   .gauge("demo_up", { help: "Always 1", read: () => 1 });
 * const server = serveMetrics(registry, { port: 0 });
 * const res = await fetch(server.url);
 * assert.equal(res.headers.get("content-type"), "text/plain; version=0.0.4; charset=utf-8");
 * assert.equal(await res.text(), "# HELP demo_up Always 1\n# TYPE demo_up gauge\ndemo_up 1\n");
 * const other = await fetch(new URL("/", server.url));
 * assert.equal(other.status, 404);
 * await other.body?.cancel();
 * await server.shutdown();
 * ```
 */
export function serveMetrics(
  registry: MetricsRegistry,
  options: ServeMetricsOptions,
): MetricsServer {
  const hostname = options.hostname ?? METRICS_DEFAULTS.hostname;
  const where = formatAddress({ hostname, port: options.port });
  let listener: Deno.TcpListener;
  try {
    listener = Deno.listen({ hostname, port: options.port });
  } catch (error) {
    const why = error instanceof Deno.errors.AddrInUse
      ? "address in use"
      : error instanceof Error
      ? error.message
      : String(error);
    throw new SocketError(`Cannot serve metrics on ${where}: ${why}`, { cause: error });
  }
  const answer = async (conn: Deno.TcpConn) => {
    const reader = new BufferedReader(conn);
    let head;
    try {
      head = await readRequestHead(reader, { timeoutMs: METRICS_DEFAULTS.requestTimeoutMs });
    } catch (error) {
      if (error instanceof HttpError) await refuseRequest(conn, error);
      return "closed" as const;
    }
    if (head === null) return;
    const hasBody = head.headers.get("content-length") !== undefined &&
        head.headers.get("content-length") !== "0" ||
      head.headers.get("transfer-encoding") !== undefined;
    const path = head.target.form === "origin" ? head.target.path : "";
    if (head.method !== "GET" || path !== METRICS_DEFAULTS.path || hasBody) {
      await refuseRequest(
        conn,
        new HttpError(HttpStatus.NotFound, `Not found: metrics are at ${METRICS_DEFAULTS.path}`),
      );
      return "closed" as const;
    }
    let body: string;
    try {
      body = registry.render();
    } catch (error) {
      options.logger?.warn(
        `cannot render metrics: ${error instanceof Error ? error.message : String(error)}`,
      );
      await writeResponse(conn, HttpStatus.InternalServerError, {
        headers: { Connection: "close" },
        body: "Cannot render metrics\n",
      }).catch(() => {});
      return;
    }
    await writeResponse(conn, HttpStatus.Ok, {
      headers: { "Content-Type": METRICS_DEFAULTS.contentType, Connection: "close" },
      body,
    }).catch(() => {});
  };
  const server = serve(listener, answer, { maxConnections: METRICS_DEFAULTS.maxConnections });
  const addr = server.addr;
  const url = `http://${formatAddress(addr)}${METRICS_DEFAULTS.path}`;
  options.logger?.info(`metrics on ${url}`);
  let stopped: Promise<void> | undefined;
  return {
    addr,
    url,
    shutdown() {
      stopped ??= (async () => {
        const stopping = server.stop({ timeoutMs: METRICS_DEFAULTS.shutdownTimeoutMs });
        // Scrapes still open past the wait are cut, so nothing keeps the process alive.
        for (const conn of server.active) {
          try {
            conn.close();
          } catch {
            // Closed meanwhile.
          }
        }
        await stopping;
      })();
      return stopped;
    },
  };
}
