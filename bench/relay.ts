/**
 * Relay benchmarks: fan-out delivered lines/s with 16 line clients that each burst 50,000
 * lines of 64 B, sockit relay (default options: no flag but the port) against
 * `ncat --broker` side by side, then the same with one extra client that never reads
 * (ncat's blocking send loop stalls; sockit's healthy clients pay one stall, about
 * `--stall-timeout`, and then keep their rate). Each row also reports the server's CPU per
 * million delivered lines and its RSS at the end of the scenario.
 *
 * Then TLS: the same fan-out with every client over TLS, `sockit relay --tls` (its own
 * self-signed certificate, created in a temporary config folder) against
 * `ncat --broker --ssl` serving the same certificate and key. The clients are Deno's own
 * `Deno.connectTls` (rustls, native: the cheapest client, so the load generator costs the
 * server least), trusting that certificate through `caCerts`. And plaintext clients on a
 * `--tls` port (sniffed, then read straight from the socket) against the plain relay: the
 * cost of serving one port for every kind of client.
 *
 * @module
 */

import {
  type BenchRow,
  freePort,
  peerAvailable,
  type Scenario,
  spawnPeer,
  waitForTcpPort,
} from "./_harness.ts";
import { startSockit } from "../tests/_helpers.ts";
import { writeAll } from "../lib/net/write_all.ts";
import { BufferedReader } from "../lib/net/buffered_reader.ts";

const CLIENTS = 16;
const LINES_PER_CLIENT = 50_000;
const LINE_BYTES = 64; // 63 bytes and LF
/** A pause longer than this with no healthy client receiving anything counts as a stall. */
const STALL_GAP_MS = 100;
/** A run that has not finished by then reports what it delivered so far. */
const RUN_LIMIT_MS = 20_000;

interface FanOutResult {
  linesPerSecond: number;
  /** The rate over the time some healthy client was receiving (stalls taken out). */
  movingLinesPerSecond: number;
  /** Time no healthy client received anything for more than STALL_GAP_MS, in ms. */
  stalledMs: number;
  /** Server CPU milliseconds (user + system) per million delivered lines. */
  cpuPerMillion: number;
  /** Server resident memory at the end of the scenario, in MiB. */
  rssMiB: number;
  complete: boolean;
  /** Share of the lines that arrived (1 when complete). */
  delivered: number;
}

/** Resident memory of a process, in MiB, from /proc. */
function rssMiB(pid: number): number {
  const m = Deno.readTextFileSync(`/proc/${pid}/status`).match(/VmRSS:\s+(\d+) kB/);
  return m ? Number(m[1]) / 1024 : NaN;
}

/** CPU seconds (user + system) a process has used so far, from /proc. */
function cpuSeconds(pid: number): number {
  const fields = Deno.readTextFileSync(`/proc/${pid}/stat`).split(") ")[1].split(" ");
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

/**
 * Reads and counts bytes until `want` arrived (cheap, so the load generator is not what
 * limits the figure), or until `stop` aborts.
 */
async function drain(
  conn: Deno.Conn,
  want: number,
  options: { stop: AbortSignal; arrivals: number[] },
): Promise<number> {
  const buf = new Uint8Array(256 * 1024);
  let got = 0;
  try {
    while (got < want && !options.stop.aborted) {
      const n = await conn.read(buf);
      if (n === null) break;
      got += n;
      options.arrivals.push(performance.now());
    }
  } catch {
    // Closed by the run limit.
  }
  return got;
}

/** How the load generator's clients connect: plain TCP, or TLS trusting one certificate. */
type Connector = (port: number) => Promise<Deno.Conn>;

const tcpConnector: Connector = async (port) => {
  const c = await Deno.connect({ hostname: "127.0.0.1", port });
  c.setNoDelay(true);
  return c;
};

/** Deno's native TLS client, trusting `cert` (which names 127.0.0.1). */
function tlsConnector(cert: string): Connector {
  return async (port) => {
    const c = await Deno.connectTls({ hostname: "127.0.0.1", port, caCerts: [cert] });
    await c.handshake();
    return c;
  };
}

async function fanOut(
  port: number,
  serverPid: number,
  options: { sockit: boolean; stuckClient: boolean; connect?: Connector },
): Promise<FanOutResult> {
  const connect = options.connect ?? tcpConnector;
  const conns: Deno.Conn[] = [];
  for (let i = 0; i < CLIENTS; i++) conns.push(await connect(port));
  const names: string[] = [];
  let stuck: Deno.Conn | undefined;
  if (options.stuckClient) stuck = await connect(port);
  if (options.sockit) {
    // Learn each client's name, and let every join notice arrive first: once every client
    // has its welcome, all have joined, and each client's /who reply marks a quiet point.
    // (Clients that send nothing first are welcomed after the sniff wait on a --tls port, so
    // the welcomes come in any order.)
    const readers = conns.map((c) => new BufferedReader(c));
    await Promise.all(readers.map(async (r, i) => {
      names[i] = new TextDecoder().decode((await r.readLine(1 << 16))!).split(" ")[2].replace(
        ",",
        "",
      );
    }));
    await Promise.all(readers.map(async (r, i) => {
      await writeAll(conns[i], new TextEncoder().encode("/who\n"));
      while (!new TextDecoder().decode((await r.readLine(1 << 16))!).startsWith("* in ")) {
        // Join notices.
      }
      if (r.buffered > 0) throw new Error("unexpected bytes after /who");
    }));
  }
  // Bytes each client must receive: every other client's lines, with sockit's name prefix.
  const prefix = (i: number) => (options.sockit ? `[${names[i]}] `.length : 0);
  const want = conns.map((_, k) =>
    conns.reduce(
      (sum, _c, j) => (j === k ? sum : sum + LINES_PER_CLIENT * (LINE_BYTES + prefix(j))),
      0,
    )
  );
  const payload = new TextEncoder().encode(
    `${"m".repeat(LINE_BYTES - 1)}\n`.repeat(LINES_PER_CLIENT),
  );
  const stop = new AbortController();
  const cpu0 = cpuSeconds(serverPid);
  const start = performance.now();
  const closeAll = () => {
    for (const c of [...conns, ...(stuck ? [stuck] : [])]) {
      try {
        c.close();
      } catch {
        // Closed.
      }
    }
  };
  const limit = setTimeout(() => {
    stop.abort();
    closeAll();
  }, RUN_LIMIT_MS);
  const arrivals: number[] = [start];
  const readers = conns.map((c, k) => drain(c, want[k], { stop: stop.signal, arrivals }));
  const writers = conns.map((c) => writeAll(c, payload).catch(() => {}));
  const got = await Promise.all(readers);
  const end = performance.now();
  const seconds = Math.min(RUN_LIMIT_MS / 1000, (end - start) / 1000);
  const cpu = cpuSeconds(serverPid) - cpu0;
  const rss = rssMiB(serverPid);
  clearTimeout(limit);
  // Stalls: gaps in which no healthy client received a byte.
  arrivals.sort((x, y) => x - y);
  let stalledMs = 0;
  for (let i = 1; i < arrivals.length; i++) {
    const gap = arrivals[i] - arrivals[i - 1];
    if (gap > STALL_GAP_MS) stalledMs += gap;
  }
  // Lines delivered, estimated from bytes for runs cut short.
  const lines = got.reduce(
    (sum, g, k) => sum + LINES_PER_CLIENT * (CLIENTS - 1) * (g / want[k]),
    0,
  );
  closeAll();
  await Promise.allSettled(writers);
  return {
    linesPerSecond: lines / seconds,
    // Up to the last byte that arrived: a peer that stops short is not charged the wait
    // for bytes that never came.
    movingLinesPerSecond: lines /
      Math.max(0.001, (arrivals[arrivals.length - 1] - start - stalledMs) / 1000),
    stalledMs,
    cpuPerMillion: (cpu * 1000) / (lines / 1e6),
    rssMiB: rss,
    complete: got.every((g, k) => g >= want[k]),
    delivered: lines / (LINES_PER_CLIENT * (CLIENTS - 1) * CLIENTS),
  };
}

/** Runs per configuration; the table shows the median run (by lines/s). */
const RUNS = 3;

/** The median of one figure over runs. */
function medianOf(runs: FanOutResult[], key: "movingLinesPerSecond"): number {
  const sorted = runs.map((r) => r[key]).sort((x, y) => x - y);
  return sorted[Math.floor(sorted.length / 2)];
}

/** The run with the median rate. */
function medianRun(results: FanOutResult[]): FanOutResult {
  const sorted = [...results].sort((x, y) => x.linesPerSecond - y.linesPerSecond);
  return sorted[Math.floor(sorted.length / 2)];
}

async function sockitRun(stuckClient: boolean): Promise<FanOutResult> {
  // Default options: what a user gets from `sockit relay`.
  await using relay = await startSockit(["relay", "--port", "0", "--quiet"]);
  return await fanOut(relay.port, relay.child.pid, { sockit: true, stuckClient });
}

/** A config folder for `relay --tls` with the certificate it created (PEM and file names). */
interface TlsSetup extends AsyncDisposable {
  env: Record<string, string>;
  cert: string;
  certFile: string;
  keyFile: string;
}

/** Starts `sockit relay --tls` once in a new config folder, so it creates its certificate. */
async function tlsSetup(): Promise<TlsSetup> {
  const dir = await Deno.makeTempDir({ prefix: "sockit-bench-tls-" });
  const env = { XDG_CONFIG_HOME: dir };
  await using _relay = await startSockit(["relay", "--port", "0", "--quiet", "--tls"], { env });
  const certFile = `${dir}/sockit/relay-cert.pem`;
  return {
    env,
    cert: await Deno.readTextFile(certFile),
    certFile,
    keyFile: `${dir}/sockit/relay-key.pem`,
    [Symbol.asyncDispose]: () => Deno.remove(dir, { recursive: true }),
  };
}

async function sockitTlsRun(tls: TlsSetup, clients: "tls" | "plain"): Promise<FanOutResult> {
  await using relay = await startSockit(["relay", "--port", "0", "--quiet", "--tls"], {
    env: tls.env,
  });
  return await fanOut(relay.port, relay.child.pid, {
    sockit: true,
    stuckClient: false,
    connect: clients === "tls" ? tlsConnector(tls.cert) : tcpConnector,
  });
}

async function ncatTlsRun(tls: TlsSetup): Promise<FanOutResult> {
  const port = freePort();
  await using ncat = spawnPeer("ncat", [
    "--broker",
    "--ssl",
    "--ssl-cert",
    tls.certFile,
    "--ssl-key",
    tls.keyFile,
    "-l",
    "127.0.0.1",
    String(port),
  ]);
  await waitForTcpPort(port);
  return await fanOut(port, ncat.child.pid, {
    sockit: false,
    stuckClient: false,
    connect: tlsConnector(tls.cert),
  });
}

/** The TLS rows: sockit --tls against ncat --broker --ssl, and plain clients on a TLS port. */
async function tlsRows(plainRate: number | undefined): Promise<BenchRow[]> {
  await using tls = await tlsSetup();
  const haveNcat = peerAvailable("ncat");
  const sockitRuns: FanOutResult[] = [];
  const peerRuns: FanOutResult[] = [];
  const plainRuns: FanOutResult[] = [];
  for (let i = 0; i < RUNS; i++) {
    if (haveNcat && i % 2 === 1) peerRuns.push(await ncatTlsRun(tls));
    sockitRuns.push(await sockitTlsRun(tls, "tls"));
    if (haveNcat && i % 2 === 0) peerRuns.push(await ncatTlsRun(tls));
    plainRuns.push(await sockitTlsRun(tls, "plain"));
  }
  const sockit = medianRun(sockitRuns);
  const peer = peerRuns.length ? medianRun(peerRuns) : undefined;
  const plain = medianRun(plainRuns);
  const title =
    `relay fan-out over TLS, ${CLIENTS} clients x ${LINES_PER_CLIENT} x ${LINE_BYTES} B`;
  const rates = (runs: FanOutResult[]) =>
    runs.map((r) => (r.linesPerSecond / 1e6).toFixed(2)).join("/") + " M";
  return [
    {
      scenario: title,
      unit: "lines/s",
      sockit: sockit.linesPerSecond,
      peerName: "ncat --broker --ssl",
      peer: peer?.linesPerSecond,
      higherIsBetter: true,
      flags: "--tls",
      note: [
        sockitRuns.every((r) => r.complete)
          ? "every line reached every client"
          : "sockit incomplete",
        `median of ${sockitRuns.length}: sockit ${rates(sockitRuns)}`,
        peerRuns.length ? `ncat ${rates(peerRuns)}` : "",
        peer && !peer.complete
          ? `ncat never delivered ${
            ((1 - peer.delivered) * 100).toFixed(2)
          }% of the lines (held in its SSL buffers: nmap/nmap#2788), so its rate is what arrived in the ${
            RUN_LIMIT_MS / 1000
          } s limit`
          : "",
        "clients: Deno.connectTls, same self-signed P-256 certificate; target >= 2x",
      ].filter(Boolean).join("; "),
    },
    {
      scenario: `${title}: rate while moving (gaps over ${STALL_GAP_MS} ms taken out)`,
      unit: "lines/s",
      sockit: medianOf(sockitRuns, "movingLinesPerSecond"),
      peerName: "ncat --broker --ssl",
      peer: peerRuns.length ? medianOf(peerRuns, "movingLinesPerSecond") : undefined,
      higherIsBetter: true,
      flags: "--tls",
      note: "what each delivered while it delivered anything (ncat: before it stopped short)",
    },
    {
      scenario: `${title}: server CPU`,
      unit: "CPU ms per M lines",
      sockit: sockit.cpuPerMillion,
      peerName: "ncat --broker --ssl",
      peer: peer?.cpuPerMillion,
      higherIsBetter: false,
      flags: "--tls",
    },
    {
      scenario: `${title}: server RSS at the end`,
      unit: "MiB",
      sockit: sockit.rssMiB,
      peerName: "ncat --broker --ssl",
      peer: peer?.rssMiB,
      higherIsBetter: false,
      flags: "--tls",
    },
    {
      scenario: `relay fan-out, plaintext clients on a --tls port (sniffed), ${CLIENTS} clients`,
      unit: "lines/s",
      sockit: plain.linesPerSecond,
      peerName: "sockit relay without --tls",
      peer: plainRate,
      higherIsBetter: true,
      flags: "--tls",
      note: `median of ${plainRuns.length}: ${rates(plainRuns)}` +
        (plainRuns.every((r) => r.complete) ? "" : "; incomplete"),
    },
  ];
}

async function ncatRun(stuckClient: boolean): Promise<FanOutResult> {
  const port = freePort();
  await using ncat = spawnPeer("ncat", ["--broker", "-l", "127.0.0.1", String(port)]);
  await waitForTcpPort(port);
  return await fanOut(port, ncat.child.pid, { sockit: false, stuckClient });
}

async function relayScenario(): Promise<BenchRow[]> {
  const rows: BenchRow[] = [];
  let healthyRate: number | undefined;
  const haveNcat = peerAvailable("ncat");
  for (const stuckClient of [false, true]) {
    const sockitRuns: FanOutResult[] = [];
    const peerRuns: FanOutResult[] = [];
    for (let i = 0; i < RUNS; i++) {
      // ncat with a client that never reads stalls for the whole run limit: one run says so.
      const peerToo = haveNcat && (!stuckClient || i === 0);
      // Alternate who goes first, so neither always runs on a machine warmed by the other.
      if (peerToo && i % 2 === 1) peerRuns.push(await ncatRun(stuckClient));
      sockitRuns.push(await sockitRun(stuckClient));
      if (peerToo && i % 2 === 0) peerRuns.push(await ncatRun(stuckClient));
    }
    const sockit = medianRun(sockitRuns);
    const peer = peerRuns.length ? medianRun(peerRuns) : undefined;
    const title = `relay fan-out, ${CLIENTS} clients x ${LINES_PER_CLIENT} x ${LINE_BYTES} B` +
      (stuckClient ? " + 1 never reads" : "") + ", default options";
    const rates = (runs: FanOutResult[]) =>
      runs.map((r) => (r.linesPerSecond / 1e6).toFixed(1)).join("/") + " M";
    const note = [
      sockitRuns.every((r) => r.complete)
        ? "every line reached every healthy client"
        : "sockit incomplete",
      `median of ${sockitRuns.length}: sockit ${rates(sockitRuns)}`,
      peerRuns.length > 1 ? `ncat ${rates(peerRuns)}` : "",
      peer && !peer.complete
        ? `ncat stalled (rate of what arrived in ${RUN_LIMIT_MS / 1000} s)`
        : "",
    ].filter(Boolean).join("; ");
    rows.push({
      scenario: title,
      unit: "lines/s",
      sockit: sockit.linesPerSecond,
      peerName: "ncat --broker",
      peer: peer?.linesPerSecond,
      higherIsBetter: true,
      note,
    });
    if (!stuckClient) healthyRate = sockit.linesPerSecond;
    else {
      const moving = medianRun(
        sockitRuns.map((r) => ({ ...r, linesPerSecond: r.movingLinesPerSecond })),
      );
      const kept = healthyRate ? moving.linesPerSecond / healthyRate : undefined;
      rows.push({
        scenario: `${title}: rate while moving (one stall of ${
          Math.round(moving.stalledMs)
        } ms taken out)`,
        unit: "lines/s",
        sockit: moving.linesPerSecond,
        peerName: "sockit without the stuck client",
        peer: healthyRate,
        higherIsBetter: true,
        note: kept ? `${(kept * 100).toFixed(0)}% of the rate without it` : "",
      });
    }
    rows.push({
      scenario: `${title}: server RSS at the end`,
      unit: "MiB",
      sockit: sockit.rssMiB,
      peerName: "ncat --broker",
      peer: peer?.rssMiB,
      higherIsBetter: false,
    });
    if (stuckClient) continue; // A stalled peer's CPU figure means nothing.
    rows.push({
      scenario: `${title}: server CPU`,
      unit: "CPU ms per M lines",
      sockit: sockit.cpuPerMillion,
      peerName: "ncat --broker",
      peer: peer?.cpuPerMillion,
      higherIsBetter: false,
    });
  }
  rows.push(...await tlsRows(healthyRate));
  return rows;
}

/** The relay scenarios. */
export const scenarios: Scenario[] = [
  { name: "relay", run: relayScenario },
  // The TLS rows alone (part of "relay"), for a quicker look.
  { name: "relay-tls", run: () => tlsRows(undefined) },
];
