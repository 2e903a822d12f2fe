/**
 * `deno task bench relay-cluster`: rooms across relay processes. 16 line clients spread over
 * three `sockit relay --cluster` nodes (a real `nats-server` with `deploy/nats-server.conf`,
 * all on this machine), each bursting 20,000 lines of 64 B to the room, so every line goes to
 * 15 others; side by side with the same 16 clients on one sockit relay and on
 * `ncat --broker`. Reported: delivered lines/s, CPU per million delivered lines (relays and
 * nats-server together), and then, at half the single node's rate (paced sends), the latency
 * from send to delivery of lines that cross nodes, p50 and p99.
 *
 * Every relay runs with its default options (plus `--cluster` and `--node-id` for the
 * cluster). Latency is measured on stamped lines (the first line of each paced batch carries
 * its send time; all clients live in this one process, so they share a clock).
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
import { type SockitProcess, startSockit } from "../tests/_helpers.ts";
import { startNats } from "../tests/_nats.ts";
import { writeAll } from "../lib/net/write_all.ts";
import { BufferedReader } from "../lib/net/buffered_reader.ts";

const CLIENTS = 16;
const LINES = 20_000;
const LINE_BYTES = 64;
const RUN_LIMIT_MS = 30_000;
const RUNS = 3;
/** Paced sends: one batch per client every this many ms. */
const TICK_MS = 10;
const STAMP = 0x54; // "T": only stamped lines hold one (names are lower case)

function cpuSeconds(pid: number): number {
  const fields = Deno.readTextFileSync(`/proc/${pid}/stat`).split(") ")[1].split(" ");
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

/** A line of LINE_BYTES: plain, or stamped with its send time and sender. */
function line(stamp?: { at: number; from: number }): string {
  const head = stamp ? `T${stamp.at.toFixed(3).padStart(14, "0")}:${stamp.from}:` : "";
  return head + "m".repeat(LINE_BYTES - 1 - head.length) + "\n";
}

interface Setup {
  /** Port of the server each client connects to. */
  ports: number[];
  /** Processes whose CPU counts. */
  pids: number[];
  /** Node of each client (for "crosses nodes"). */
  nodeOf: (client: number) => number;
  sockit: boolean;
}

interface Result {
  linesPerSecond: number;
  cpuPerMillion: number;
  complete: boolean;
  /** Cross-node latencies of stamped lines, in ms. */
  latencies: number[];
}

async function run(setup: Setup, pace?: number): Promise<Result> {
  const conns: Deno.TcpConn[] = [];
  for (let i = 0; i < CLIENTS; i++) {
    const c = await Deno.connect({ hostname: "127.0.0.1", port: setup.ports[i] });
    c.setNoDelay(true);
    conns.push(c);
  }
  const prefixBytes: number[] = conns.map(() => 0);
  if (setup.sockit) {
    // Names from the welcomes; then wait until a cluster-wide /who lists all 16 (everyone
    // joined everywhere) and each client's reader is at a quiet point.
    const readers = conns.map((c) => new BufferedReader(c));
    const names = await Promise.all(readers.map(async (r) => {
      const welcome = new TextDecoder().decode((await r.readLine(1 << 16))!);
      return welcome.split(" ")[2].replace(",", "");
    }));
    names.forEach((n, i) => (prefixBytes[i] = `[${n}] `.length));
    await Promise.all(readers.map(async (r, i) => {
      while (true) {
        await writeAll(conns[i], new TextEncoder().encode("/who\n"));
        let reply = "";
        while (!reply.startsWith("* in ")) {
          reply = new TextDecoder().decode((await r.readLine(1 << 16))!);
        }
        if (reply.split(", ").length === CLIENTS) break;
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
    }));
    // Join notices may still be on their way: a last /who each, read to its answer.
    await Promise.all(readers.map(async (r, i) => {
      await writeAll(conns[i], new TextEncoder().encode("/who\n"));
      while (!new TextDecoder().decode((await r.readLine(1 << 16))!).startsWith("* in ")) {
        // Notices.
      }
      if (r.buffered > 0) throw new Error("unexpected bytes after /who");
    }));
  }
  const want = conns.map((_, k) =>
    conns.reduce((s, _c, j) => (j === k ? s : s + LINES * (LINE_BYTES + prefixBytes[j])), 0)
  );
  const latencies: number[] = [];
  const stop = new AbortController();
  const limit = setTimeout(() => {
    stop.abort();
    for (const c of conns) c.close();
  }, RUN_LIMIT_MS);
  const cpu0 = setup.pids.reduce((s, p) => s + cpuSeconds(p), 0);
  const start = performance.now();
  const readers = conns.map((c, k) =>
    drain(c, want[k], { stop: stop.signal, k, setup, latencies })
  );
  const writers = conns.map((c, j) => send(c, j, pace).catch(() => {}));
  const got = await Promise.all(readers);
  const seconds = (performance.now() - start) / 1000;
  const cpu = setup.pids.reduce((s, p) => s + cpuSeconds(p), 0) - cpu0;
  if (Deno.env.get("BENCH_DEBUG")) {
    console.error("cpu per pid", setup.pids.map((p) => cpuSeconds(p)), "seconds", seconds);
  }
  clearTimeout(limit);
  for (const c of conns) {
    try {
      c.close();
    } catch {
      // Closed by the limit.
    }
  }
  await Promise.allSettled(writers);
  const lines = got.reduce((s, g, k) => s + LINES * (CLIENTS - 1) * (g / want[k]), 0);
  return {
    linesPerSecond: lines / seconds,
    cpuPerMillion: (cpu * 1000) / (lines / 1e6),
    complete: got.every((g, k) => g >= want[k]),
    latencies,
  };
}

/** Sends LINES lines: in one burst, or `pace` lines/s in batches every TICK_MS (stamped). */
async function send(conn: Deno.Conn, from: number, pace?: number): Promise<void> {
  if (pace === undefined) {
    await writeAll(conn, new TextEncoder().encode(line().repeat(LINES)));
    return;
  }
  const perTick = Math.max(1, Math.round((pace * TICK_MS) / 1000));
  const start = performance.now();
  for (let sent = 0, tick = 0; sent < LINES; tick++) {
    const due = start + tick * TICK_MS;
    const wait = due - performance.now();
    if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
    const n = Math.min(perTick, LINES - sent);
    const text = line({ at: performance.timeOrigin + performance.now(), from }) +
      line().repeat(n - 1);
    await writeAll(conn, new TextEncoder().encode(text));
    sent += n;
  }
}

async function drain(
  conn: Deno.Conn,
  want: number,
  o: { stop: AbortSignal; k: number; setup: Setup; latencies: number[] },
): Promise<number> {
  const buf = new Uint8Array(256 * 1024);
  let got = 0;
  try {
    while (got < want && !o.stop.aborted) {
      const n = await conn.read(buf);
      if (n === null) break;
      got += n;
      const now = performance.timeOrigin + performance.now();
      // Stamps wholly inside this read (one split across reads is skipped).
      for (let i = buf.indexOf(STAMP); i >= 0 && i < n; i = buf.indexOf(STAMP, i + 1)) {
        if (i + 20 > n) break;
        const text = new TextDecoder().decode(buf.subarray(i + 1, i + 20));
        const [at, from] = text.split(":");
        if (o.setup.nodeOf(Number(from)) !== o.setup.nodeOf(o.k)) {
          o.latencies.push(now - Number(at));
        }
      }
    }
  } catch {
    // Closed by the run limit.
  }
  return got;
}

function percentile(values: number[], p: number): number {
  if (values.length === 0) return NaN;
  const sorted = [...values].sort((x, y) => x - y);
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

function median(values: number[]): number {
  const s = [...values].sort((x, y) => x - y);
  return s[Math.floor(s.length / 2)];
}

async function withCluster<T>(fn: (setup: Setup) => Promise<T>): Promise<T> {
  await using nats = await startNats();
  const nodes: SockitProcess[] = [];
  try {
    for (const id of ["a", "b", "c"]) {
      nodes.push(
        await startSockit([
          "relay",
          "--port",
          "0",
          "--quiet",
          "--cluster",
          nats.url,
          "--node-id",
          id,
        ]),
      );
    }
    const natsPid = nats.pid;
    const nodeOf = (i: number) => i % 3;
    return await fn({
      ports: Array.from({ length: CLIENTS }, (_, i) => nodes[nodeOf(i)].port),
      pids: [...nodes.map((n) => n.child.pid), ...(natsPid ? [natsPid] : [])],
      nodeOf,
      sockit: true,
    });
  } finally {
    for (const n of nodes) await n[Symbol.asyncDispose]();
  }
}

async function withSingle<T>(fn: (setup: Setup) => Promise<T>): Promise<T> {
  await using relay = await startSockit(["relay", "--port", "0", "--quiet"]);
  return await fn({
    ports: Array(CLIENTS).fill(relay.port),
    pids: [relay.child.pid],
    nodeOf: () => 0,
    sockit: true,
  });
}

async function withNcat<T>(fn: (setup: Setup) => Promise<T>): Promise<T> {
  const port = freePort();
  await using ncat = spawnPeer("ncat", ["--broker", "-l", "127.0.0.1", String(port)]);
  await waitForTcpPort(port);
  return await fn({
    ports: Array(CLIENTS).fill(port),
    pids: [ncat.child.pid],
    nodeOf: () => 0,
    sockit: false,
  });
}

async function clusterScenario(): Promise<BenchRow[]> {
  if (!peerAvailable("nats-server")) throw new Error("nats-server is not installed");
  const cluster: Result[] = [];
  const single: Result[] = [];
  const ncat: Result[] = [];
  const haveNcat = peerAvailable("ncat");
  for (let i = 0; i < RUNS; i++) {
    cluster.push(await withCluster((s) => run(s)));
    single.push(await withSingle((s) => run(s)));
    if (haveNcat) ncat.push(await withNcat((s) => run(s)));
  }
  const rate = (rs: Result[]) => median(rs.map((r) => r.linesPerSecond));
  const cpu = (rs: Result[]) => median(rs.map((r) => r.cpuPerMillion));
  const runs = (rs: Result[]) =>
    rs.map((r) => (r.linesPerSecond / 1e6).toFixed(2)).join("/") + " M";
  // Latency at half the single node's delivered rate: each of 16 clients sends
  // rate / 2 / 15 / 16 lines/s.
  const pace = rate(single) / 2 / (CLIENTS - 1) / CLIENTS;
  const paced = await withCluster((s) => run(s, pace));
  // The same paced load on one relay, for what the machine itself adds. There every line
  // is "local", so all stamped lines count.
  const pacedSingle = await withSingle((s) => run({ ...s, nodeOf: (i) => i }, pace));
  // And at a tenth of it: what the cluster path costs when the machine is not saturated.
  const quarter = await withCluster((s) => run(s, pace / 5));
  const title = `relay cluster fan-out, ${CLIENTS} clients on 3 nodes x ${LINES} x ${LINE_BYTES} B`;
  const complete = [...cluster, ...single].every((r) => r.complete);
  return [
    {
      scenario: title,
      unit: "lines/s",
      sockit: rate(cluster),
      peerName: "one sockit relay",
      peer: rate(single),
      higherIsBetter: true,
      flags: "--cluster",
      note: `target >= 0.7x; median of ${RUNS}: cluster ${runs(cluster)}, one node ${runs(single)}${
        complete ? "; every line reached every client" : "; INCOMPLETE"
      }`,
    },
    {
      scenario: `${title}, against ncat`,
      unit: "lines/s",
      sockit: rate(cluster),
      peerName: "ncat --broker",
      peer: haveNcat ? rate(ncat) : undefined,
      higherIsBetter: true,
      flags: "--cluster",
      note: haveNcat ? `ncat ${runs(ncat)}` : "ncat is not installed",
    },
    {
      scenario: `${title}: CPU (3 relays + nats-server)`,
      unit: "CPU ms per M lines",
      sockit: cpu(cluster),
      peerName: "one sockit relay",
      peer: cpu(single),
      higherIsBetter: false,
      flags: "--cluster",
      note: haveNcat ? `ncat ${cpu(ncat).toFixed(1)}` : "",
    },
    {
      scenario: `cross-node latency p50 at half the single node's rate (${
        Math.round(pace)
      } lines/s per client)`,
      unit: "ms",
      sockit: percentile(paced.latencies, 50),
      peerName: "one sockit relay",
      peer: percentile(pacedSingle.latencies, 50),
      higherIsBetter: false,
      flags: "--cluster",
      note: `${paced.latencies.length} stamped lines; ${
        paced.complete ? "complete" : "INCOMPLETE"
      }; delivered ${(paced.linesPerSecond / 1e6).toFixed(2)} M lines/s`,
    },
    {
      scenario: "cross-node latency p99, same run",
      unit: "ms",
      sockit: percentile(paced.latencies, 99),
      peerName: "one sockit relay",
      peer: percentile(pacedSingle.latencies, 99),
      higherIsBetter: false,
      flags: "--cluster",
      note: `target < 50 ms; max ${Math.max(...paced.latencies).toFixed(1)} ms`,
    },
    {
      scenario: `cross-node latency p99 at a tenth of the single node's rate`,
      unit: "ms",
      sockit: percentile(quarter.latencies, 99),
      higherIsBetter: false,
      flags: "--cluster",
      note: `p99 shown; p50 ${percentile(quarter.latencies, 50).toFixed(2)} ms, max ${
        Math.max(...quarter.latencies).toFixed(1)
      } ms; delivered ${(quarter.linesPerSecond / 1e6).toFixed(2)} M lines/s`,
    },
  ];
}

/** The relay-cluster scenario. */
export const scenarios: Scenario[] = [{ name: "relay-cluster", run: clusterScenario }];
