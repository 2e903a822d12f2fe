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
const LINES_PER_CLIENT = 4000;
const LINE = "m".repeat(60);
/** A run that has not finished by then reports what it delivered so far. */
const RUN_LIMIT_MS = 20_000;

interface FanOutResult {
  linesPerSecond: number;
  complete: boolean;
}

/** Counts LF bytes arriving on `conn` until `target`, or until `stop` aborts. */
async function countLines(
  conn: Deno.TcpConn,
  target: number,
  counted: { n: number },
  stop: AbortSignal,
): Promise<void> {
  const buf = new Uint8Array(256 * 1024);
  let mine = 0;
  while (mine < target && !stop.aborted) {
    const n = await conn.read(buf);
    if (n === null) return;
    let i = -1;
    const view = buf.subarray(0, n);
    while ((i = view.indexOf(0x0a, i + 1)) >= 0) {
      mine++;
      counted.n++;
    }
  }
}

async function fanOut(port: number, sockit: boolean, stuckClient: boolean): Promise<FanOutResult> {
  const conns: Deno.TcpConn[] = [];
  for (let i = 0; i < CLIENTS; i++) {
    const c = await Deno.connect({ hostname: "127.0.0.1", port });
    c.setNoDelay(true);
    conns.push(c);
  }
  let stuck: Deno.TcpConn | undefined;
  if (stuckClient) stuck = await Deno.connect({ hostname: "127.0.0.1", port });
  if (sockit) {
    // Let every join notice arrive first: each client's /who reply marks a quiet point.
    await Promise.all(conns.map(async (c) => {
      await writeAll(c, new TextEncoder().encode("/who\n"));
      const r = new BufferedReader(c);
      while (true) {
        const line = new TextDecoder().decode((await r.readLine(1 << 16))!);
        if (line.startsWith("* in ")) break;
      }
      if (r.buffered > 0) throw new Error("unexpected bytes after /who");
    }));
  }
  const payload = new TextEncoder().encode(`${LINE}\n`.repeat(LINES_PER_CLIENT));
  const perClient = LINES_PER_CLIENT * (CLIENTS - 1);
  const counted = { n: 0 };
  const stop = new AbortController();
  const start = performance.now();
  const limit = setTimeout(() => stop.abort(), RUN_LIMIT_MS);
  const readers = conns.map((c) => countLines(c, perClient, counted, stop.signal));
  const writers = conns.map((c) => writeAll(c, payload).catch(() => {}));
  await Promise.race([
    Promise.all(readers),
    new Promise((r) => stop.signal.addEventListener("abort", r)),
  ]);
  const seconds = (performance.now() - start) / 1000;
  clearTimeout(limit);
  const complete = counted.n >= perClient * CLIENTS;
  for (const c of [...conns, ...(stuck ? [stuck] : [])]) {
    try {
      c.close();
    } catch {
      // Closed.
    }
  }
  await Promise.allSettled([...readers, ...writers]);
  return { linesPerSecond: counted.n / seconds, complete };
}

async function relayScenario(): Promise<BenchRow[]> {
  const rows: BenchRow[] = [];
  for (const stuck of [false, true]) {
    let sockit: FanOutResult;
    {
      // A bigger outbox than the default keeps the burst (each client sends 4000 lines at
      // once) within the slow-consumer limit; the stuck client is still bounded by it.
      await using relay = await startSockit([
        "relay",
        "--port",
        "0",
        "--quiet",
        "--max-queue",
        "64MiB",
      ]);
      sockit = await fanOut(relay.port, true, stuck);
    }
    let peer: FanOutResult | undefined;
    if (peerAvailable("ncat")) {
      const port = freePort();
      await using _ncat = spawnPeer("ncat", ["--broker", "-l", "127.0.0.1", String(port)]);
      await waitForTcpPort(port);
      peer = await fanOut(port, false, stuck);
    }
    const note = [
      sockit.complete ? "" : "sockit incomplete",
      peer && !peer.complete
        ? `ncat stalled (counted what arrived in ${RUN_LIMIT_MS / 1000} s)`
        : "",
    ].filter(Boolean).join("; ");
    rows.push({
      scenario: `relay fan-out, ${CLIENTS} clients x ${LINES_PER_CLIENT} lines${
        stuck ? " + 1 never reads" : ""
      }`,
      unit: "lines/s",
      sockit: sockit.linesPerSecond,
      peerName: "ncat --broker",
      peer: peer?.linesPerSecond,
      higherIsBetter: true,
      note,
    });
  }
  return rows;
}

/** The relay scenarios. */
export const scenarios: Scenario[] = [{ name: "relay", run: relayScenario }];
