/**
 * SOCKS5 benchmarks, sockit against microsocks and Dante (`danted`) side by side:
 *
 * - single-stream throughput: 1 GiB pushed through the proxy to a local sink (the direct
 *   connection is given for reference);
 * - sessions per second: connect, SOCKS5 handshake, CONNECT, 1 KiB echoed, close; 16 at a
 *   time, 1500 a run;
 * - resident memory per idle tunnel: RSS of the proxy (all its processes) with 500 open,
 *   established tunnels, minus the RSS before them, divided by 500.
 *
 * - sockit's HTTP CONNECT on the same port: the same throughput and sessions/s through
 *   `CONNECT host:port` instead of SOCKS5 (target: within 10% of SOCKS5);
 * - the cost of `--metrics`: the throughput of a sockit started with `--metrics` while this
 *   process scrapes `/metrics` every 100 ms (ten times the usual 1 s), against plain sockit
 *   (target: at most 2% slower).
 *
 * Each figure is the median of 3 runs, and the runs are interleaved: in each run every
 * proxy is started afresh and measured once, sockit first in even runs and last in odd
 * ones, so that a machine getting busier or quieter during the bench favours no one. The
 * load generator (this process) uses sockit's SOCKS5 client for every proxy.
 *
 * @module
 */

import {
  type BenchRow,
  freePort,
  median,
  peerAvailable,
  type Scenario,
  spawnPeer,
  startSink,
  waitForTcpPort,
} from "./_harness.ts";
import { writeAll } from "../lib/net/write_all.ts";
import { socks5Connect, type Socks5Proxy } from "../lib/socks5/client.ts";
import { startEchoServer } from "../tests/_helpers.ts";

const TOTAL_BYTES = 1024 * 1024 * 1024;
const RUNS = 3;
const SESSIONS = 1500;
const SESSION_CONCURRENCY = 16;
const SESSION_PAYLOAD = 1024;
const IDLE_TUNNELS = 500;
const MAIN = new URL("../main.ts", import.meta.url).pathname;

/** A proxy under test: how to start it. */
interface Contender {
  name: string;
  start(port: number): Promise<{ pid: number } & AsyncDisposable>;
}

/**
 * Flags sockit runs with beyond its defaults (none: 500 idle tunnels fit the default
 * --max-conns of 1024); they go in the rows' `flags`.
 */
const SOCKIT_FLAGS: string[] = [];

async function startSpawned(program: string, args: string[], port: number) {
  const peer = spawnPeer(program, args);
  await waitForTcpPort(port);
  return { pid: peer.child.pid, [Symbol.asyncDispose]: () => peer[Symbol.asyncDispose]() };
}

const SOCKIT: Contender = {
  name: "sockit",
  start: (port) =>
    startSpawned(
      Deno.execPath(),
      ["run", "-A", MAIN, "socks5", "--port", String(port), "--quiet", ...SOCKIT_FLAGS],
      port,
    ),
};

/** The port sockit's `--metrics` endpoint uses in the scrape-cost runs. */
let metricsPort = 0;

/** sockit with `--metrics` (on `metricsPort`), for the scrape-cost rows. */
const SOCKIT_METRICS: Contender = {
  name: "sockit --metrics",
  start: (port) => {
    metricsPort = freePort();
    return startSpawned(
      Deno.execPath(),
      [
        "run",
        "-A",
        MAIN,
        "socks5",
        "--port",
        String(port),
        "--quiet",
        "--metrics",
        `127.0.0.1:${metricsPort}`,
        ...SOCKIT_FLAGS,
      ],
      port,
    );
  },
};

/** Opens a tunnel to `target` with HTTP CONNECT through the proxy at `proxy`. */
async function httpConnect(
  proxy: { hostname: string; port: number },
  target: { hostname: string; port: number },
): Promise<Deno.TcpConn> {
  const conn = await Deno.connect(proxy);
  conn.setNoDelay(true);
  const authority = `${target.hostname}:${target.port}`;
  await writeAll(
    conn,
    new TextEncoder().encode(`CONNECT ${authority} HTTP/1.1\r\nHost: ${authority}\r\n\r\n`),
  );
  // Read the answer byte by byte up to its blank line, so no tunnel byte is read ahead.
  const one = new Uint8Array(1);
  let head = "";
  while (!head.endsWith("\r\n\r\n")) {
    if ((await conn.read(one)) === null) {
      throw new Error(`CONNECT: closed after ${JSON.stringify(head)}`);
    }
    head += String.fromCharCode(one[0]);
    if (head.length > 4096) throw new Error("CONNECT: answer head too long");
  }
  if (!head.startsWith("HTTP/1.1 200")) {
    conn.close();
    throw new Error(`CONNECT refused: ${head.split("\r\n")[0]}`);
  }
  return conn;
}

/** How the load generator opens a tunnel through a proxy. */
type Dialer = (
  proxy: { hostname: string; port: number },
  target: { hostname: string; port: number },
) => Promise<Deno.TcpConn>;

const SOCKS5_DIALER: Dialer = (proxy, target) => socks5Connect(proxy, target);

const MICROSOCKS: Contender = {
  name: "microsocks",
  start: (port) => startSpawned("microsocks", ["-i", "127.0.0.1", "-p", String(port)], port),
};

const DANTE: Contender = {
  name: "danted",
  async start(port) {
    const dir = await Deno.makeTempDir({ prefix: "sockit-danted-" });
    const config = `${dir}/danted.conf`;
    await Deno.writeTextFile(
      config,
      [
        "logoutput: /dev/null",
        `internal: 127.0.0.1 port = ${port}`,
        "external: 127.0.0.1",
        "socksmethod: none",
        "clientmethod: none",
        ...(Deno.uid() === 0 ? ["user.privileged: root", "user.unprivileged: nobody"] : []),
        "client pass { from: 127.0.0.0/8 to: 0.0.0.0/0 }",
        "socks pass { from: 127.0.0.0/8 to: 0.0.0.0/0 }",
        "",
      ].join("\n"),
    );
    const peer = await startSpawned("danted", ["-f", config], port);
    return {
      pid: peer.pid,
      async [Symbol.asyncDispose]() {
        // SIGTERM lets the mother process take its children down; any left are killed.
        const children = descendants(peer.pid);
        try {
          Deno.kill(peer.pid, "SIGTERM");
        } catch {
          // Already gone.
        }
        await Promise.race([
          new Promise((r) => setTimeout(r, 3000)),
          (async () => {
            while (descendants(peer.pid).length > 0) await new Promise((r) => setTimeout(r, 50));
          })(),
        ]);
        await peer[Symbol.asyncDispose]();
        for (const pid of children) {
          try {
            Deno.kill(pid, "SIGKILL");
          } catch {
            // Gone.
          }
        }
        await Deno.remove(dir, { recursive: true });
      },
    };
  },
};

/** Connects to the sink directly or through `proxy`, pushes 1 GiB, resolves MiB/s. */
async function push(
  sink: ReturnType<typeof startSink>,
  proxy: Socks5Proxy | undefined,
  dial: Dialer = SOCKS5_DIALER,
): Promise<number> {
  const received = sink.next();
  const buf = new Uint8Array(256 * 1024).fill(0x5a);
  const start = performance.now();
  const target = { hostname: "127.0.0.1", port: sink.port };
  const conn = proxy ? await dial(proxy, target) : await Deno.connect(target);
  for (let sent = 0; sent < TOTAL_BYTES; sent += buf.length) await writeAll(conn, buf);
  await conn.closeWrite();
  const got = await received;
  const seconds = (performance.now() - start) / 1000;
  conn.close();
  if (got !== TOTAL_BYTES) throw new Error(`sink got ${got} of ${TOTAL_BYTES} bytes`);
  return TOTAL_BYTES / 1024 / 1024 / seconds;
}

/** Reads exactly `n` bytes into `buf`. */
async function readFull(conn: Deno.Conn, buf: Uint8Array): Promise<void> {
  let off = 0;
  while (off < buf.length) {
    const n = await conn.read(buf.subarray(off));
    if (n === null) throw new Error(`echo closed after ${off} bytes`);
    off += n;
  }
}

/** SESSIONS sessions (connect, handshake, 1 KiB echo, close), 16 at a time; sessions/s. */
async function sessionsPerSecond(
  port: number,
  echoPort: number,
  dial: Dialer = SOCKS5_DIALER,
): Promise<number> {
  const proxy = { hostname: "127.0.0.1", port };
  const target = { hostname: "127.0.0.1", port: echoPort };
  const payload = new Uint8Array(SESSION_PAYLOAD).fill(0x61);
  let next = 0;
  const worker = async () => {
    const buf = new Uint8Array(SESSION_PAYLOAD);
    while (next < SESSIONS) {
      next++;
      const conn = await dial(proxy, target);
      await writeAll(conn, payload);
      await readFull(conn, buf);
      conn.close();
    }
  };
  const start = performance.now();
  await Promise.all(Array.from({ length: SESSION_CONCURRENCY }, worker));
  return SESSIONS / ((performance.now() - start) / 1000);
}

/** `pid` and every process below it. */
function descendants(pid: number): number[] {
  const parent = new Map<number, number>();
  for (const entry of Deno.readDirSync("/proc")) {
    if (!/^\d+$/.test(entry.name)) continue;
    try {
      const stat = Deno.readTextFileSync(`/proc/${entry.name}/stat`);
      const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
      parent.set(Number(entry.name), ppid);
    } catch {
      // Exited meanwhile.
    }
  }
  const out: number[] = [];
  for (const [p] of parent) {
    let q: number | undefined = p;
    while (q !== undefined && q > 1 && q !== pid) q = parent.get(q);
    if (q === pid && p !== pid) out.push(p);
  }
  return out;
}

/** Resident memory (VmRSS) of `pid` and its descendants, in KiB. */
function treeRssKiB(pid: number): number {
  let total = 0;
  for (const p of [pid, ...descendants(pid)]) {
    try {
      const m = /VmRSS:\s+(\d+) kB/.exec(Deno.readTextFileSync(`/proc/${p}/status`));
      if (m) total += Number(m[1]);
    } catch {
      // Exited meanwhile.
    }
  }
  return total;
}

/** KiB of RSS each of IDLE_TUNNELS established, idle tunnels adds to the proxy. */
async function rssPerIdleTunnel(port: number, pid: number, echoPort: number): Promise<number> {
  const proxy = { hostname: "127.0.0.1", port };
  const target = { hostname: "127.0.0.1", port: echoPort };
  const one = new Uint8Array([0x61]);
  const tunnel = async () => {
    const conn = await socks5Connect(proxy, target);
    await writeAll(conn, one);
    await readFull(conn, new Uint8Array(1));
    return conn;
  };
  // Warm up (lazy initialisation, first buffers), then measure the baseline.
  for (let i = 0; i < 20; i++) (await tunnel()).close();
  const before = treeRssKiB(pid);
  const conns: Deno.TcpConn[] = [];
  try {
    for (let i = 0; i < IDLE_TUNNELS; i += 25) {
      conns.push(...await Promise.all(Array.from({ length: 25 }, tunnel)));
    }
    // Every tunnel has carried a byte both ways, so its relay is running.
    const after = treeRssKiB(pid);
    return Math.max(0, after - before) * 1024 / IDLE_TUNNELS / 1000;
  } finally {
    for (const c of conns) c.close();
  }
}

interface Figures {
  mibPerSecond: number;
  sessionsPerSecond: number;
  kbPerTunnel: number;
  /** Proxy CPU seconds for the 1 GiB push. */
  cpuPerGiB: number;
  /** sockit only: the same through HTTP CONNECT. */
  httpMibPerSecond?: number;
  /** sockit only. */
  httpSessionsPerSecond?: number;
}

/** One run against `c`: a fresh proxy, each figure measured once. */
async function measureOnce(
  c: Contender,
  sink: ReturnType<typeof startSink>,
  echoPort: number,
): Promise<Figures> {
  const port = freePort();
  await using proxy = await c.start(port);
  console.error(`bench: socks5 ${c.name}: memory per idle tunnel...`);
  const kbPerTunnel = await rssPerIdleTunnel(port, proxy.pid, echoPort);
  console.error(`bench: socks5 ${c.name}: sessions per second...`);
  const sessions = await sessionsPerSecond(port, echoPort);
  console.error(`bench: socks5 ${c.name}: throughput...`);
  const cpuBefore = cpuSeconds(proxy.pid);
  const mibPerSecond = await push(sink, { hostname: "127.0.0.1", port });
  const cpuPerGiB = cpuSeconds(proxy.pid) - cpuBefore;
  if (c !== SOCKIT) return { mibPerSecond, sessionsPerSecond: sessions, kbPerTunnel, cpuPerGiB };
  console.error(`bench: socks5 ${c.name}: HTTP CONNECT sessions and throughput...`);
  const httpSessions = await sessionsPerSecond(port, echoPort, httpConnect);
  const httpMib = await push(sink, { hostname: "127.0.0.1", port }, httpConnect);
  return {
    mibPerSecond,
    sessionsPerSecond: sessions,
    kbPerTunnel,
    cpuPerGiB,
    httpMibPerSecond: httpMib,
    httpSessionsPerSecond: httpSessions,
  };
}

/** CPU seconds of process `pid` so far (user + system). */
function cpuSeconds(pid: number): number {
  const fields = Deno.readTextFileSync(`/proc/${pid}/stat`).split(") ")[1].split(" ");
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

/** Scrapes of the CPU-per-scrape figure. */
const SCRAPES = 300;

/**
 * Throughput of sockit with `--metrics` while `/metrics` is scraped every 100 ms, then the
 * proxy's CPU per scrape (SCRAPES scrapes back to back, after the traffic).
 */
async function scrapedThroughput(
  sink: ReturnType<typeof startSink>,
): Promise<{ mib: number; cpuPerGiB: number; cpuMsPerScrape: number }> {
  const port = freePort();
  await using proxy = await SOCKIT_METRICS.start(port);
  await waitForTcpPort(metricsPort);
  let scraping = true;
  let scrapes = 0;
  const scraper = (async () => {
    while (scraping) {
      const res = await fetch(`http://127.0.0.1:${metricsPort}/metrics`);
      await res.text();
      if (!res.ok) throw new Error(`scrape: ${res.status}`);
      scrapes++;
      await new Promise((r) => setTimeout(r, 100));
    }
  })();
  const cpu0 = cpuSeconds(proxy.pid);
  const mib = await push(sink, { hostname: "127.0.0.1", port });
  const cpuPerGiB = cpuSeconds(proxy.pid) - cpu0;
  scraping = false;
  await scraper;
  if (scrapes === 0) throw new Error("no scrape happened during the push");
  const before = cpuSeconds(proxy.pid);
  for (let i = 0; i < SCRAPES; i++) {
    await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
  }
  const cpuMsPerScrape = ((cpuSeconds(proxy.pid) - before) * 1000) / SCRAPES;
  return { mib, cpuPerGiB, cpuMsPerScrape };
}

/** The median of each figure over the runs. */
function medians(runs: Figures[]): Figures {
  return {
    mibPerSecond: median(runs.map((f) => f.mibPerSecond)),
    sessionsPerSecond: median(runs.map((f) => f.sessionsPerSecond)),
    kbPerTunnel: median(runs.map((f) => f.kbPerTunnel)),
    cpuPerGiB: median(runs.map((f) => f.cpuPerGiB)),
    httpMibPerSecond: median(runs.map((f) => f.httpMibPerSecond ?? NaN)),
    httpSessionsPerSecond: median(runs.map((f) => f.httpSessionsPerSecond ?? NaN)),
  };
}

async function run(): Promise<BenchRow[]> {
  const sink = startSink();
  await using echo = startEchoServer();
  try {
    const contenders: Contender[] = [SOCKIT];
    const peerNames: string[] = [];
    for (const [program, contender] of [["microsocks", MICROSOCKS], ["danted", DANTE]] as const) {
      peerNames.push(program);
      if (peerAvailable(program)) contenders.push(contender);
    }
    const runs = new Map<string, Figures[]>(contenders.map((c) => [c.name, []]));
    const direct: number[] = [];
    const scraped: number[] = [];
    const scrapeCpu: number[] = [];
    const scrapedCpuPerGiB: number[] = [];
    for (let i = 0; i < RUNS; i++) {
      direct.push(await push(sink, undefined));
      console.error("bench: socks5 sockit --metrics: throughput while scraped...");
      const scrape = await scrapedThroughput(sink);
      scraped.push(scrape.mib);
      scrapeCpu.push(scrape.cpuMsPerScrape);
      scrapedCpuPerGiB.push(scrape.cpuPerGiB);
      // sockit first in even runs, last in odd ones.
      const order = i % 2 === 0 ? contenders : [...contenders].reverse();
      for (const c of order) runs.get(c.name)!.push(await measureOnce(c, sink, echo.port));
    }
    const ours = medians(runs.get(SOCKIT.name)!);
    const flags = SOCKIT_FLAGS.length > 0 ? SOCKIT_FLAGS.join(" ") : undefined;
    const rows: BenchRow[] = [];
    const directNote = `direct, no proxy: ${median(direct).toFixed(0)} MiB/s`;
    for (const peerName of peerNames) {
      const peerRuns = runs.get(peerName);
      const f = peerRuns ? medians(peerRuns) : undefined;
      rows.push(
        {
          scenario: "socks5 single-stream throughput (1 GiB)",
          unit: "MiB/s",
          sockit: ours.mibPerSecond,
          flags,
          peerName,
          peer: f?.mibPerSecond,
          higherIsBetter: true,
          note: directNote,
        },
        {
          scenario: `socks5 sessions/s (CONNECT + 1 KiB echo, ${SESSION_CONCURRENCY} at a time)`,
          unit: "sessions/s",
          sockit: ours.sessionsPerSecond,
          flags,
          peerName,
          peer: f?.sessionsPerSecond,
          higherIsBetter: true,
        },
        {
          scenario: `socks5 RSS per idle tunnel (${IDLE_TUNNELS} tunnels)`,
          unit: "KB",
          sockit: ours.kbPerTunnel,
          flags,
          peerName,
          peer: f?.kbPerTunnel,
          higherIsBetter: false,
          note: "target: <= 40 KB",
        },
      );
    }
    const runsOf = (key: keyof Figures) =>
      runs.get(SOCKIT.name)!.map((f) => (f[key] ?? NaN).toFixed(0)).join("/");
    rows.push(
      {
        scenario: "HTTP CONNECT single-stream throughput (1 GiB), same port",
        unit: "MiB/s",
        sockit: ours.httpMibPerSecond!,
        flags,
        peerName: "sockit SOCKS5",
        peer: ours.mibPerSecond,
        higherIsBetter: true,
        note: `target: within 10%; runs HTTP ${runsOf("httpMibPerSecond")} vs SOCKS5 ${
          runsOf("mibPerSecond")
        }`,
      },
      {
        scenario: `HTTP CONNECT sessions/s (+ 1 KiB echo, ${SESSION_CONCURRENCY} at a time)`,
        unit: "sessions/s",
        sockit: ours.httpSessionsPerSecond!,
        flags,
        peerName: "sockit SOCKS5",
        peer: ours.sessionsPerSecond,
        higherIsBetter: true,
        note: `target: within 10%; runs HTTP ${runsOf("httpSessionsPerSecond")} vs SOCKS5 ${
          runsOf("sessionsPerSecond")
        }`,
      },
      {
        scenario: "socks5 throughput with --metrics scraped every 100 ms",
        unit: "MiB/s",
        sockit: median(scraped),
        flags: "--metrics",
        peerName: "sockit without --metrics",
        peer: ours.mibPerSecond,
        higherIsBetter: true,
        note: `target: at most 2% slower; runs ${scraped.map((m) => m.toFixed(0)).join("/")}`,
      },
      {
        scenario: "socks5 proxy CPU for 1 GiB with --metrics scraped every 100 ms",
        unit: "CPU s",
        sockit: median(scrapedCpuPerGiB),
        flags: "--metrics",
        peerName: "sockit without --metrics",
        peer: ours.cpuPerGiB,
        higherIsBetter: false,
        note: `the cost of scraping, less noisy than MiB/s; runs ${
          scrapedCpuPerGiB.map((c) => c.toFixed(2)).join("/")
        } vs ${runs.get(SOCKIT.name)!.map((f) => f.cpuPerGiB.toFixed(2)).join("/")}`,
      },
      {
        scenario: `--metrics: proxy CPU per scrape (${SCRAPES} scrapes)`,
        unit: "CPU ms",
        sockit: median(scrapeCpu),
        flags: "--metrics",
        higherIsBetter: false,
        note: `at one scrape a second: ${(median(scrapeCpu) / 10).toFixed(3)}% of one core; runs ${
          scrapeCpu.map((c) => c.toFixed(2)).join("/")
        }`,
      },
    );
    return rows;
  } finally {
    sink.close();
  }
}

/** The socks5 scenarios. */
export const scenarios: Scenario[] = [{ name: "socks5", run }];
