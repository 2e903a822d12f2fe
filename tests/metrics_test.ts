// `--metrics`: the Prometheus text format of lib/net/metrics.ts, and the endpoint of each real
// server (relay, recv, udp-echo) scraped before and after some traffic, checked by promtool.

import assert from "node:assert/strict";
import {
  escapeHelp,
  escapeLabelValue,
  InvalidMetricError,
  METRICS_DEFAULTS,
  MetricsRegistry,
  parseMetricsAddress,
  serveMetrics,
  validateMetricName,
} from "../lib/net/metrics.ts";
import { UsageError } from "../lib/net/errors.ts";
import { withTimeout } from "../lib/net/deadline.ts";
import {
  EVENT_TIMEOUT_MS,
  joinRelay,
  peerTest,
  runSockit,
  type SockitProcess,
  startSockit,
  tempTree,
} from "./_helpers.ts";
import { startNats } from "./_nats.ts";

const METRICS_LINE = /metrics on (http:\/\/\S+\/metrics)$/;

/** The scrape URL a server logged. */
async function metricsUrl(proc: SockitProcess): Promise<string> {
  return (await proc.waitForStderr(METRICS_LINE))[1];
}

/** GETs `url` and returns the exposition text, checking status and content type. */
async function scrape(url: string): Promise<string> {
  const res = await withTimeout(fetch(url), EVENT_TIMEOUT_MS, { what: `a scrape of ${url}` });
  const text = await res.text();
  assert.equal(res.status, 200, text);
  assert.equal(res.headers.get("content-type"), METRICS_DEFAULTS.contentType);
  return text;
}

/** The value of the series `name{labels}` in `text`; throws when it is missing. */
function sample(text: string, name: string, labels = ""): number {
  const series = labels ? `${name}{${labels}}` : name;
  const line = text.split("\n").find((l) => l.startsWith(`${series} `));
  if (line === undefined) throw new Error(`no series ${series} in:\n${text}`);
  return Number(line.slice(series.length + 1));
}

/** Runs `promtool check metrics` on `text` and fails with what it printed unless it is clean. */
async function assertPromtoolClean(text: string): Promise<void> {
  const child = new Deno.Command("promtool", {
    args: ["check", "metrics"],
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const writer = child.stdin.getWriter();
  await writer.write(new TextEncoder().encode(text));
  await writer.close();
  const out = await withTimeout(child.output(), EVENT_TIMEOUT_MS, { what: "promtool" });
  const printed = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
  assert.equal(out.code, 0, `promtool check metrics failed:\n${printed}\non:\n${text}`);
  assert.equal(printed.trim(), "", `promtool check metrics printed:\n${printed}`);
}

// --- The text format ------------------------------------------------------------------------

Deno.test("metrics: HELP and TYPE lines, then the samples, for each family in order", () => {
  const registry = new MetricsRegistry({ processMetrics: false })
    .counter("demo_requests_total", { help: "Requests served", read: () => 7 })
    .gauge("demo_temperature_celsius", { help: "Temperature", read: () => -1.5 });
  assert.equal(
    registry.render(),
    "# HELP demo_requests_total Requests served\n" +
      "# TYPE demo_requests_total counter\n" +
      "demo_requests_total 7\n" +
      "# HELP demo_temperature_celsius Temperature\n" +
      "# TYPE demo_temperature_celsius gauge\n" +
      "demo_temperature_celsius -1.5\n",
  );
  assert.deepEqual(registry.names, ["demo_requests_total", "demo_temperature_celsius"]);
});

Deno.test("metrics: values are read at scrape time", () => {
  let n = 1;
  const registry = new MetricsRegistry({ processMetrics: false })
    .counter("demo_events_total", { help: "Events", read: () => n });
  assert.equal(sample(registry.render(), "demo_events_total"), 1);
  n = 41;
  assert.equal(sample(registry.render(), "demo_events_total"), 41);
});

Deno.test("metrics: a labeled family has one series per label value", () => {
  const closes = { "peer-closed": 3, idle: 0 };
  const text = new MetricsRegistry({ processMetrics: false })
    .counter("demo_closes_total", { help: "Closes by reason", label: "reason", read: () => closes })
    .render();
  assert.equal(
    text,
    "# HELP demo_closes_total Closes by reason\n# TYPE demo_closes_total counter\n" +
      'demo_closes_total{reason="peer-closed"} 3\ndemo_closes_total{reason="idle"} 0\n',
  );
});

Deno.test("metrics: label values and help texts are escaped", () => {
  assert.equal(escapeLabelValue('say "hi"'), 'say \\"hi\\"');
  assert.equal(escapeLabelValue("a\\b"), "a\\\\b");
  assert.equal(escapeLabelValue("two\nlines"), "two\\nlines");
  assert.equal(escapeHelp('back\\slash\nand "quotes"'), 'back\\\\slash\\nand "quotes"');
  const text = new MetricsRegistry({ processMetrics: false })
    .gauge("demo_things", {
      help: "Things\nby name \\ kind",
      label: "name",
      read: () => ({ 'x"y\\z\nw': 1 }),
    })
    .render();
  assert.match(text, /^# HELP demo_things Things\\nby name \\\\ kind\n/);
  assert.ok(text.includes('demo_things{name="x\\"y\\\\z\\nw"} 1\n'), text);
});

Deno.test("metrics: NaN and infinities use the format's spelling", () => {
  const text = new MetricsRegistry({ processMetrics: false })
    .gauge("demo_values", {
      help: "Odd values",
      label: "kind",
      read: () => ({ nan: NaN, up: Infinity, down: -Infinity }),
    })
    .render();
  assert.ok(text.includes('demo_values{kind="nan"} NaN\n'));
  assert.ok(text.includes('demo_values{kind="up"} +Inf\n'));
  assert.ok(text.includes('demo_values{kind="down"} -Inf\n'));
});

Deno.test("metrics: invalid names, labels and help texts are refused, saying why", () => {
  const registry = new MetricsRegistry({ processMetrics: false });
  const refused = (fn: () => unknown, re: RegExp) =>
    assert.throws(fn, (e: unknown) => e instanceof InvalidMetricError && re.test(e.message));
  const read = () => 0;
  refused(() => registry.gauge("9lives", { help: "x", read }), /must match \[a-zA-Z_:\]/);
  refused(() => registry.gauge("has-dash", { help: "x", read }), /must match/);
  refused(() => registry.gauge("", { help: "x", read }), /must match/);
  refused(() => registry.gauge("job:rate", { help: "x", read }), /recording rules/);
  refused(() => registry.gauge("camelCase", { help: "x", read }), /snake_case/);
  refused(() => registry.counter("demo_events", { help: "x", read }), /must end in _total/);
  refused(() => registry.gauge("demo_open_total", { help: "x", read }), /only counters/);
  refused(() => registry.gauge("demo_wait_ms", { help: "x", read }), /abbreviated unit 'ms'/);
  refused(() => registry.gauge("demo_wait_milliseconds", { help: "x", read }), /seconds/);
  refused(() => registry.gauge("demo_size_kilobytes", { help: "x", read }), /base unit bytes/);
  refused(() => registry.counter("demo_sent_kb_total", { help: "x", read }), /abbreviated/);
  refused(() => registry.gauge("demo_uptime_hours", { help: "x", read }), /base unit seconds/);
  refused(() => registry.gauge("demo_latency_count", { help: "x", read }), /histograms/);
  refused(() => registry.gauge("demo_gauge", { help: "x", read }), /type/);
  refused(() => registry.gauge("demo_up", { help: " ", read }), /help text/);
  const labeled = (label: string) => () =>
    registry.counter("demo_labeled_total", { help: "x", label, read: () => ({}) });
  refused(labeled("1st"), /label name must match/);
  refused(labeled("__reserved"), /reserved/);
  refused(labeled("le"), /histograms/);
  refused(labeled("byKind"), /snake_case/);
  registry.gauge("demo_up", { help: "Up", read: () => 1 });
  refused(() => registry.gauge("demo_up", { help: "Up", read }), /already registered/);
  // Nothing refused was registered.
  assert.deepEqual(registry.names, ["demo_up"]);
  validateMetricName("sockit_relay_sent_bytes_total", { type: "counter" });
  validateMetricName("process_start_time_seconds", { type: "gauge" });
});

Deno.test("metrics: a snapshot is taken once per scrape, however many metrics read it", () => {
  let calls = 0;
  const registry = new MetricsRegistry({ processMetrics: false });
  const stats = registry.snapshot(() => ({ a: 1, b: 2, call: ++calls }));
  registry
    .gauge("demo_first", { help: "A", read: () => stats().a })
    .gauge("demo_second", { help: "B", read: () => stats().b })
    .gauge("demo_call", { help: "Call", read: () => stats().call });
  assert.equal(sample(registry.render(), "demo_call"), 1);
  assert.equal(sample(registry.render(), "demo_call"), 2);
  assert.equal(calls, 2);
});

Deno.test("metrics: every registry reports the process", () => {
  const text = new MetricsRegistry().render();
  assert.ok(sample(text, "process_resident_memory_bytes") > 1024 * 1024);
  assert.ok(sample(text, "process_cpu_seconds_total") > 0);
  const start = sample(text, "process_start_time_seconds");
  assert.ok(start <= Date.now() / 1000 && start > Date.now() / 1000 - 3600, String(start));
  if (Deno.build.os === "linux") assert.ok(sample(text, "process_open_fds") > 2);
});

Deno.test("metrics: --metrics takes HOST:PORT, or PORT and :PORT on 127.0.0.1", () => {
  assert.deepEqual(parseMetricsAddress("9100"), { hostname: "127.0.0.1", port: 9100 });
  assert.deepEqual(parseMetricsAddress(":0"), { hostname: "127.0.0.1", port: 0 });
  assert.deepEqual(parseMetricsAddress("0.0.0.0:9100"), { hostname: "0.0.0.0", port: 9100 });
  assert.deepEqual(parseMetricsAddress("[::1]:9100"), { hostname: "::1", port: 9100 });
  for (const bad of ["", "host", "99999", ":x", "::1:9100", "[::1]"]) {
    assert.throws(
      () => parseMetricsAddress(bad),
      (e: unknown) => e instanceof UsageError && e.message.startsWith(`Cannot parse --metrics '`),
      bad,
    );
  }
  assert.throws(() => parseMetricsAddress("x", { flag: "--stats-at" }), /--stats-at 'x'/);
});

Deno.test("metrics: the endpoint serves GET /metrics only; the rest is 404", async () => {
  const lines: string[] = [];
  const registry = new MetricsRegistry({ processMetrics: false })
    .gauge("demo_up", { help: "Up", read: () => 1 });
  const server = serveMetrics(registry, {
    port: 0,
    logger: { info: (m) => void lines.push(m), warn: (m) => void lines.push(m) },
  });
  try {
    assert.equal(server.addr.hostname, "127.0.0.1");
    assert.deepEqual(lines, [`metrics on http://127.0.0.1:${server.addr.port}/metrics`]);
    assert.equal(sample(await scrape(server.url), "demo_up"), 1);
    assert.equal(sample(await scrape(`${server.url}?x=1`), "demo_up"), 1);
    for (const [path, method] of [["/", "GET"], ["/metrics/", "GET"], ["/metrics", "POST"]]) {
      const res = await fetch(new URL(path, server.url), { method });
      await res.body?.cancel();
      assert.equal(res.status, 404, `${method} ${path}`);
    }
  } finally {
    await server.shutdown();
  }
});

Deno.test("metrics: a port in use is a SocketError naming the address", async () => {
  const registry = new MetricsRegistry({ processMetrics: false });
  const first = serveMetrics(registry, { port: 0 });
  try {
    assert.throws(
      () => serveMetrics(registry, { port: first.addr.port }),
      new RegExp(`^SocketError: Cannot serve metrics on 127\\.0\\.0\\.1:${first.addr.port}: `),
    );
  } finally {
    await first.shutdown();
  }
});

peerTest("promtool", {
  name: "metrics: promtool accepts the format, escaped labels and process metrics included",
  async fn() {
    const text = new MetricsRegistry()
      .counter("demo_closes_total", {
        help: 'Closes "by" reason \\ kind\nsecond line',
        label: "reason",
        read: () => ({ "peer-closed": 1, 'odd "one"\\\n': 2 }),
      })
      .gauge("demo_empty", { help: "No series", label: "kind", read: () => ({}) })
      .render();
    await assertPromtoolClean(text);
  },
});

// --- relay -------------------------------------------------------------------------------

/** A relay with `--metrics`, two clients and one line between them: the scrapes around it. */
async function relayScenario(extra: string[] = []) {
  await using relay = await startSockit([
    "relay",
    "--port",
    "0",
    "--metrics",
    "127.0.0.1:0",
    ...extra,
  ]);
  const url = await metricsUrl(relay);
  const before = await scrape(url);
  await using a = (await joinRelay(relay.port)).client;
  await using b = (await joinRelay(relay.port)).client;
  await a.writeLine("hello metrics");
  assert.match(await b.readLineMatching(/^\[/), /hello metrics$/);
  const after = await scrape(url);
  const status = await relay.stop("SIGTERM");
  assert.equal(status.code, 0);
  return { before, after, stderr: relay.stderr };
}

Deno.test("relay --metrics logs its address and counts connections and messages", async () => {
  const { before, after, stderr } = await relayScenario();
  assert.ok(
    stderr.some((l) => /^sockit relay: metrics on http:\/\/127\.0\.0\.1:\d+\/metrics$/.test(l)),
  );
  assert.equal(sample(before, "sockit_relay_connections_accepted_total"), 0);
  assert.equal(sample(after, "sockit_relay_connections_accepted_total"), 2);
  assert.equal(sample(after, "sockit_relay_connections"), 2);
  assert.equal(sample(after, "sockit_relay_messages_in_total"), 1);
  assert.equal(sample(after, "sockit_relay_messages_delivered_total"), 1);
  assert.equal(sample(after, "sockit_relay_messages_dropped_total"), 0);
  assert.equal(sample(after, "sockit_relay_received_bytes_total"), "hello metrics\n".length);
  assert.ok(
    sample(after, "sockit_relay_sent_bytes_total") >
      sample(before, "sockit_relay_sent_bytes_total"),
  );
  assert.equal(sample(after, "sockit_relay_paused_senders"), 0);
  assert.equal(sample(after, "sockit_relay_slow_disconnects_total"), 0);
  assert.equal(sample(after, "sockit_relay_stalls_total"), 0);
  assert.equal(sample(after, "sockit_relay_closes_total", 'reason="peer-closed"'), 0);
  assert.equal(sample(after, "sockit_relay_turned_away_total", 'reason="denied"'), 0);
  assert.equal(sample(after, "sockit_relay_turned_away_total", 'reason="full"'), 0);
  assert.ok(sample(after, "process_resident_memory_bytes") > 0);
  assert.ok(!after.includes("sockit_relay_cluster_"), "no cluster metrics without --cluster");
});

Deno.test("relay --metrics: a denied address is counted by reason", async () => {
  await using relay = await startSockit([
    "relay",
    "--port",
    "0",
    "--metrics",
    "0",
    "--deny",
    "127.0.0.0/8",
  ]);
  const url = await metricsUrl(relay);
  assert.match(url, /^http:\/\/127\.0\.0\.1:\d+\/metrics$/);
  const conn = await Deno.connect({ hostname: "127.0.0.1", port: relay.port });
  // A denied client is closed before anything is written; its end of file is the event.
  const n = await withTimeout(conn.read(new Uint8Array(1)), EVENT_TIMEOUT_MS, {
    what: "the denied connection to close",
  }).catch(() => null);
  conn.close();
  assert.equal(n, null);
  assert.equal(sample(await scrape(url), "sockit_relay_turned_away_total", 'reason="denied"'), 1);
});

peerTest("promtool", {
  name: "relay --metrics output passes promtool check metrics",
  async fn() {
    const { before, after } = await relayScenario();
    await assertPromtoolClean(before);
    await assertPromtoolClean(after);
  },
});

peerTest(["nats-server", "promtool"], {
  name: "relay --cluster --metrics exports the cluster counters, promtool-clean",
  async fn() {
    await using nats = await startNats();
    const { after } = await relayScenario(["--cluster", nats.url, "--node-id", "metrics-a"]);
    assert.equal(sample(after, "sockit_relay_cluster_bus_up"), 1);
    assert.ok(sample(after, "sockit_relay_cluster_published_total") >= 1);
    for (
      const name of [
        "sockit_relay_cluster_not_published_total",
        "sockit_relay_cluster_remote_in_total",
        "sockit_relay_cluster_missed_total",
      ]
    ) {
      assert.equal(sample(after, name), 0, name);
    }
    await assertPromtoolClean(after);
  },
});

Deno.test("relay --metrics refuses a bad address before listening", async () => {
  const r = await runSockit(["relay", "--port", "0", "--metrics", "nowhere"]);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /Cannot parse --metrics 'nowhere': expected HOST:PORT, :PORT or PORT/);
});

// --- recv --------------------------------------------------------------------------------

/**
 * A receiver with `--metrics :0`: one file stored, then a different file of the same name
 * refused as existing; the scrapes before and after.
 */
async function recvScenario() {
  await using t = await tempTree();
  await Deno.writeTextFile(`${t.src}/a.txt`, "first version\n");
  await Deno.mkdir(`${t.base}/other`);
  await Deno.writeTextFile(`${t.base}/other/a.txt`, "another file, same name\n");
  await using recv = await startSockit(["recv", "--port", "0", "--dir", t.out, "--metrics", ":0"]);
  const url = await metricsUrl(recv);
  const before = await scrape(url);
  const sent = await runSockit(["send", `127.0.0.1:${recv.port}`, `${t.src}/a.txt`]);
  assert.equal(sent.code, 0, sent.stderr);
  // The session is counted as it ends, right after this line.
  await recv.waitForStderr(/finished: 1\/1 entries stored/);
  const stored = await scrape(url);
  const refused = await runSockit(["send", `127.0.0.1:${recv.port}`, `${t.base}/other/a.txt`]);
  assert.equal(refused.code, 1, refused.stderr);
  await recv.waitForStderr(/finished: 0\/1 entries stored, .*1 rejected/);
  const after = await scrape(url);
  assert.equal((await recv.stop("SIGTERM")).code, 0);
  return { before, stored, after, stderr: recv.stderr };
}

Deno.test("recv --metrics counts connections, entries stored, bytes and rejects", async () => {
  const { before, stored, after, stderr } = await recvScenario();
  assert.ok(
    stderr.some((l) => /^sockit recv: metrics on http:\/\/127\.0\.0\.1:\d+\/metrics$/.test(l)),
  );
  assert.equal(sample(before, "sockit_recv_connections_total"), 0);
  assert.equal(sample(before, "sockit_recv_entries_stored_total"), 0);
  assert.equal(sample(stored, "sockit_recv_connections_total"), 1);
  assert.equal(sample(stored, "sockit_recv_entries_stored_total"), 1);
  assert.equal(sample(stored, "sockit_recv_received_bytes_total"), "first version\n".length);
  assert.equal(sample(stored, "sockit_recv_rejects_total", 'reason="exists"'), 0);
  assert.equal(sample(after, "sockit_recv_connections_total"), 2);
  assert.equal(sample(after, "sockit_recv_connections"), 0);
  assert.equal(sample(after, "sockit_recv_senders"), 0);
  assert.equal(sample(after, "sockit_recv_entries_stored_total"), 1);
  assert.equal(sample(after, "sockit_recv_rejects_total", 'reason="exists"'), 1);
  assert.equal(sample(after, "sockit_recv_rejects_total", 'reason="invalid_name"'), 0);
  assert.equal(sample(after, "sockit_recv_senders_refused_total"), 0);
  assert.ok(!/already_there/.test(after), "already there is stored, not a reject");
});

peerTest("promtool", {
  name: "recv --metrics output passes promtool check metrics",
  async fn() {
    const { before, after } = await recvScenario();
    await assertPromtoolClean(before);
    await assertPromtoolClean(after);
  },
});

Deno.test("recv --metrics is a listening option: with a CODE it is a usage error", async () => {
  const r = await runSockit(["recv", "7-crossover-clockwork", "--metrics", ":0"]);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /--metrics serves a listening receiver/);
});

// --- udp-echo ------------------------------------------------------------------------------

/** A UDP socket on 127.0.0.1, closed on dispose. */
function udpSocket(): Deno.DatagramConn & Disposable {
  const conn = Deno.listenDatagram({ transport: "udp", hostname: "127.0.0.1", port: 0 });
  return Object.assign(conn, {
    [Symbol.dispose]() {
      try {
        conn.close();
      } catch {
        // Already closed.
      }
    },
  });
}

/**
 * An echo server with `--metrics`: one datagram echoed, one dropped (its source port given to
 * `--refuse-port`); the scrapes before and after.
 */
async function udpEchoScenario() {
  using refused = udpSocket();
  using client = udpSocket();
  const refusedPort = (refused.addr as Deno.NetAddr).port;
  await using echo = await startSockit([
    "udp-echo",
    "--port",
    "0",
    "--metrics",
    "127.0.0.1:0",
    "--refuse-port",
    String(refusedPort),
  ]);
  const url = await metricsUrl(echo);
  const before = await scrape(url);
  const server: Deno.NetAddr = { transport: "udp", hostname: "127.0.0.1", port: echo.port };
  await refused.send(new Uint8Array(5), server);
  await echo.waitForStderr(/dropped 5 bytes from 127\.0\.0\.1:\d+: reflector-port/);
  const payload = new TextEncoder().encode("echo me");
  await client.send(payload, server);
  const [got] = await withTimeout(client.receive(), EVENT_TIMEOUT_MS, { what: "the echo" });
  assert.deepEqual(got, payload);
  const after = await scrape(url);
  assert.equal((await echo.stop("SIGTERM")).code, 0);
  return { before, after, stderr: echo.stderr, echoed: payload.length };
}

Deno.test("udp-echo --metrics counts datagrams echoed, dropped by reason, and bytes", async () => {
  const { before, after, stderr, echoed } = await udpEchoScenario();
  assert.ok(
    stderr.some((l) => /^sockit udp-echo: metrics on http:\/\/127\.0\.0\.1:\d+\/metrics$/.test(l)),
  );
  assert.equal(sample(before, "sockit_udp_echo_datagrams_echoed_total"), 0);
  assert.equal(sample(after, "sockit_udp_echo_datagrams_received_total"), 2);
  assert.equal(sample(after, "sockit_udp_echo_received_bytes_total"), 5 + echoed);
  assert.equal(sample(after, "sockit_udp_echo_datagrams_echoed_total"), 1);
  assert.equal(sample(after, "sockit_udp_echo_echoed_bytes_total"), echoed);
  const dropped = (reason: string) =>
    sample(after, "sockit_udp_echo_datagrams_dropped_total", `reason="${reason}"`);
  assert.equal(dropped("reflector-port"), 1);
  assert.equal(dropped("same-port"), 0);
  assert.equal(dropped("rate-limited"), 0);
  assert.equal(dropped("oversize"), 0);
  assert.equal(sample(after, "sockit_udp_echo_errors_total", 'operation="send"'), 0);
});

peerTest("promtool", {
  name: "udp-echo --metrics output passes promtool check metrics",
  async fn() {
    const { before, after } = await udpEchoScenario();
    await assertPromtoolClean(before);
    await assertPromtoolClean(after);
  },
});

// --- socks5 -----------------------------------------------------------------------------------

/** curl through the proxy; its exit code. */
async function curlVia(args: string[]): Promise<number> {
  const out = await new Deno.Command("curl", {
    args: ["-sS", "-o", "/dev/null", "--max-time", "10", ...args],
    stdout: "null",
    stderr: "null",
  }).output();
  return out.code;
}

/** A socks5 proxy with users and metrics, one SOCKS and one HTTP session through it. */
async function socks5Scenario(): Promise<{ before: string; after: string }> {
  const origin = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen: () => {} },
    () => new Response("x".repeat(1000)),
  );
  await using tree = await tempTree("sockit-socks5-metrics-");
  await Deno.writeTextFile(`${tree.base}/users`, "alice:pw\n");
  try {
    await using proxy = await startSockit([
      "socks5",
      "--port",
      "0",
      "--users",
      `${tree.base}/users`,
      "--metrics",
      "127.0.0.1:0",
    ]);
    const url = await metricsUrl(proxy);
    const before = await scrape(url);
    const target = `http://127.0.0.1:${origin.addr.port}/`;
    const x = `127.0.0.1:${proxy.port}`;
    assert.equal(await curlVia(["--socks5-hostname", x, "--proxy-user", "alice:pw", target]), 0);
    assert.equal(await curlVia(["-x", `http://${x}`, "--proxy-user", "alice:pw", target]), 0);
    assert.equal(await curlVia(["-x", `http://${x}`, target]), 0); // a 407, answered
    // Sessions count when they end: wait for the three log lines.
    await proxy.waitForStderr(/status=407/);
    await proxy.waitForStderr(/http .*GET .*status=200/);
    await proxy.waitForStderr(/CONNECT .*reply=0x00/);
    return { before, after: await scrape(url) };
  } finally {
    await origin.shutdown();
  }
}

peerTest("curl", {
  name: "socks5 --metrics counts sessions by command and reply, bytes and bytes per user",
  fn: async () => {
    const { before, after } = await socks5Scenario();
    assert.equal(sample(before, "sockit_socks5_connections_accepted_total"), 0);
    assert.equal(sample(after, "sockit_socks5_connections_accepted_total"), 3);
    assert.equal(sample(after, "sockit_socks5_sessions_total", 'command="socks5 CONNECT"'), 1);
    assert.equal(sample(after, "sockit_socks5_sessions_total", 'command="http GET"'), 2);
    assert.equal(sample(after, "sockit_socks5_replies_total", 'reply="0x00"'), 1);
    assert.equal(sample(after, "sockit_socks5_replies_total", 'reply="200"'), 1);
    assert.equal(sample(after, "sockit_socks5_replies_total", 'reply="407"'), 1);
    assert.ok(sample(after, "sockit_socks5_user_bytes_total", 'user="alice"') > 2000);
    assert.ok(sample(after, "sockit_socks5_received_bytes_total") > 2000);
  },
});

peerTest(["curl", "promtool"], {
  name: "socks5 --metrics output passes promtool check metrics",
  fn: async () => {
    const { before, after } = await socks5Scenario();
    await assertPromtoolClean(before);
    await assertPromtoolClean(after);
  },
});

Deno.test("metrics: a request with a body is refused and the connection closed; one answer per connection", async () => {
  const registry = new MetricsRegistry({ processMetrics: false })
    .gauge("demo_up", { help: "Always 1", read: () => 1 });
  const server = serveMetrics(registry, { port: 0 });
  try {
    const conn = await Deno.connect({ hostname: "127.0.0.1", port: server.addr.port });
    await conn.write(
      new TextEncoder().encode(
        "GET /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n",
      ),
    );
    const chunks: number[] = [];
    const buf = new Uint8Array(4096);
    let n;
    while (
      (n = await withTimeout(conn.read(buf), EVENT_TIMEOUT_MS, { what: "the answer" })) !== null
    ) {
      chunks.push(...buf.subarray(0, n));
    }
    conn.close();
    assert.match(new TextDecoder().decode(new Uint8Array(chunks)), /^HTTP\/1\.1 404 /);
    const res = await fetch(server.url);
    assert.equal(res.headers.get("connection"), "close");
    assert.match(await res.text(), /demo_up 1/);
  } finally {
    await server.shutdown();
  }
});
