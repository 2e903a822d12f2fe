/**
 * Relay benchmarks: fan-out delivered lines/s with 16 line clients that each burst 50,000
 * lines of 64 B, sockit relay (default options: no flag but the port) against
 * `ncat --broker` side by side, then the same with one extra client that never reads
 * (ncat's blocking send loop stalls; sockit's healthy clients pay one stall, about
 * `--stall-timeout`, and then keep their rate). Each row also reports the server's CPU per
 * million delivered lines and its RSS at the end of the scenario.
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
  conn: Deno.TcpConn,
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

async function fanOut(
  port: number,
  serverPid: number,
  options: { sockit: boolean; stuckClient: boolean },
): Promise<FanOutResult> {
  const conns: Deno.TcpConn[] = [];
  for (let i = 0; i < CLIENTS; i++) {
    const c = await Deno.connect({ hostname: "127.0.0.1", port });
    c.setNoDelay(true);
    conns.push(c);
  }
  const names: string[] = [];
  let stuck: Deno.TcpConn | undefined;
  if (options.stuckClient) stuck = await Deno.connect({ hostname: "127.0.0.1", port });
  if (options.sockit) {
    // Learn each client's name, and let every join notice arrive first: each client's /who
    // reply marks a quiet point.
    await Promise.all(conns.map(async (c, i) => {
      const r = new BufferedReader(c);
      names[i] = new TextDecoder().decode((await r.readLine(1 << 16))!).split(" ")[2].replace(
        ",",
        "",
      );
      await writeAll(c, new TextEncoder().encode("/who\n"));
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
    movingLinesPerSecond: lines / Math.max(0.001, seconds - stalledMs / 1000),
    stalledMs,
    cpuPerMillion: (cpu * 1000) / (lines / 1e6),
    rssMiB: rss,
    complete: got.every((g, k) => g >= want[k]),
  };
}

/** Runs per configuration; the table shows the median run (by lines/s). */
const RUNS = 3;

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
  return rows;
}

/** The relay scenarios. */
export const scenarios: Scenario[] = [{ name: "relay", run: relayScenario }];
