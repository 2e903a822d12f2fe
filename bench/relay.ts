/**
 * Relay benchmarks: fan-out delivered lines/s with 16 line clients, sockit relay against
 * `ncat --broker` side by side, then the same with one extra client that never reads (ncat's
 * blocking send loop stalls; sockit's healthy clients should keep their rate).
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
const LINE_BYTES = 61; // 60 bytes and LF
/** A run that has not finished by then reports what it delivered so far. */
const RUN_LIMIT_MS = 20_000;

interface FanOutResult {
  linesPerSecond: number;
  /** Server CPU milliseconds (user + system) per million delivered lines. */
  cpuPerMillion: number;
  complete: boolean;
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
async function drain(conn: Deno.TcpConn, want: number, stop: AbortSignal): Promise<number> {
  const buf = new Uint8Array(256 * 1024);
  let got = 0;
  try {
    while (got < want && !stop.aborted) {
      const n = await conn.read(buf);
      if (n === null) break;
      got += n;
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
  const readers = conns.map((c, k) => drain(c, want[k], stop.signal));
  const writers = conns.map((c) => writeAll(c, payload).catch(() => {}));
  const got = await Promise.all(readers);
  const seconds = Math.min(RUN_LIMIT_MS / 1000, (performance.now() - start) / 1000);
  const cpu = cpuSeconds(serverPid) - cpu0;
  clearTimeout(limit);
  // Lines delivered, estimated from bytes for runs cut short.
  const lines = got.reduce(
    (sum, g, k) => sum + LINES_PER_CLIENT * (CLIENTS - 1) * (g / want[k]),
    0,
  );
  closeAll();
  await Promise.allSettled(writers);
  return {
    linesPerSecond: lines / seconds,
    cpuPerMillion: (cpu * 1000) / (lines / 1e6),
    complete: got.every((g, k) => g >= want[k]),
  };
}

async function relayScenario(): Promise<BenchRow[]> {
  const rows: BenchRow[] = [];
  for (const stuckClient of [false, true]) {
    let sockit: FanOutResult;
    {
      // Each client sends its 50,000 lines in one burst: a bigger outbox than the default
      // (4 MiB) lets healthy clients absorb it (about 50 MB each); the client that never reads
      // is still bounded by it.
      await using relay = await startSockit([
        "relay",
        "--port",
        "0",
        "--quiet",
        "--max-queue",
        "256MiB",
      ]);
      sockit = await fanOut(relay.port, relay.child.pid, { sockit: true, stuckClient });
    }
    let peer: FanOutResult | undefined;
    if (peerAvailable("ncat")) {
      const port = freePort();
      await using ncat = spawnPeer("ncat", ["--broker", "-l", "127.0.0.1", String(port)]);
      await waitForTcpPort(port);
      peer = await fanOut(port, ncat.child.pid, { sockit: false, stuckClient });
    }
    const title = `relay fan-out, ${CLIENTS} clients x ${LINES_PER_CLIENT} lines` +
      (stuckClient ? " + 1 never reads" : "");
    const note = [
      sockit.complete ? "" : "sockit incomplete",
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
