/**
 * The benchmark harness: scenarios return rows (sockit's figure and a peer's, measured side by
 * side in the same run), and {@linkcode printTable} prints them with the ratio. Peers that
 * are not installed are skipped with a note.
 *
 * @module
 */

import { hasCommand } from "../tests/_helpers.ts";
import { writeAll } from "../lib/net/write_all.ts";

// The port helpers live with the other process and socket helpers shared by tests and
// benchmarks, in tests/_helpers.ts.
export { freePort, freeUdpPort, waitForTcpPort } from "../tests/_helpers.ts";

/** One line of the results table. */
export interface BenchRow {
  /** What was measured, e.g. "raw TCP throughput via forwarder". */
  scenario: string;
  /** Unit of both figures, e.g. "MiB/s". */
  unit: string;
  /** sockit's figure. */
  sockit: number;
  /** The peer's name, e.g. "socat -b262144". */
  peerName?: string;
  /** The peer's figure, when it ran. */
  peer?: number;
  /** True when a bigger figure is better (throughput), false for times and memory. */
  higherIsBetter: boolean;
  /** Anything worth saying next to the row (a skipped peer, a target). */
  note?: string;
  /**
   * Flags sockit ran with beyond its defaults (a port, `--quiet` and the paths of the run do
   * not count). Shown in the table: a target met only with a flag means the default is wrong.
   */
  flags?: string;
  /** True for a scenario that failed: the row carries the error in its note. */
  failed?: boolean;
}

/** A named benchmark scenario. */
export interface Scenario {
  /** Short name used to select it: `deno task bench NAME`. */
  name: string;
  /** Runs and resolves the rows. */
  run(): Promise<BenchRow[]>;
}

/** Ratio of sockit to the peer, oriented so that above 1 means sockit is better. */
export function ratio(row: BenchRow): number | undefined {
  if (row.peer === undefined || row.peer === 0 || row.sockit === 0) return undefined;
  return row.higherIsBetter ? row.sockit / row.peer : row.peer / row.sockit;
}

function fmt(n: number | undefined): string {
  if (n === undefined) return "-";
  if (n >= 100) return n.toFixed(0);
  if (n >= 10) return n.toFixed(1);
  return n.toFixed(2);
}

/** Prints the rows as one aligned table on stdout. */
export function printTable(rows: BenchRow[]): void {
  const header = [
    "scenario",
    "unit",
    "sockit",
    "sockit flags",
    "peer",
    "peer figure",
    "ratio",
    "note",
  ];
  const body = rows.map((r) => {
    const q = ratio(r);
    return [
      r.scenario,
      r.unit,
      r.failed ? "FAILED" : fmt(r.sockit),
      r.flags ?? "defaults",
      r.peerName ?? "-",
      fmt(r.peer),
      q === undefined || r.failed ? "-" : `${q.toFixed(2)}x`,
      r.note ?? "",
    ];
  });
  const widths = header.map((h, i) => Math.max(h.length, ...body.map((b) => b[i].length)));
  const line = (cells: string[]) => cells.map((c, i) => c.padEnd(widths[i])).join("  ").trimEnd();
  console.log(line(header));
  console.log(widths.map((w) => "-".repeat(w)).join("  "));
  for (const b of body) console.log(line(b));
  console.log(
    "\nratio > 1 means sockit is better (faster, or less memory/time); " +
      '"sockit flags" lists what sockit ran with beyond its defaults.',
  );
}

/** True when the peer program is installed; otherwise logs that its rows are skipped. */
export function peerAvailable(program: string): boolean {
  if (hasCommand(program)) return true;
  console.error(`bench: ${program} is not installed; its figures are skipped`);
  return false;
}

/** A background peer process, killed on dispose. */
export interface PeerProcess extends AsyncDisposable {
  /** The child. */
  child: Deno.ChildProcess;
}

/** Spawns `program args...` with output discarded; kill it by disposing. */
export function spawnPeer(program: string, args: string[]): PeerProcess {
  const child = new Deno.Command(program, {
    args,
    stdin: "null",
    stdout: "null",
    stderr: "null",
  }).spawn();
  return {
    child,
    async [Symbol.asyncDispose]() {
      try {
        child.kill("SIGKILL");
      } catch {
        // Already exited.
      }
      await child.status;
    },
  };
}

/** Median of a list of numbers. */
export function median(values: number[]): number {
  const s = [...values].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

/**
 * A TCP sink on 127.0.0.1 that reads and discards; `next()` resolves the byte count of the
 * next connection that sent anything (readiness probes that send nothing are ignored).
 */
export function startSink(): { port: number; close(): void; next(): Promise<number> } {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const resolvers: ((n: number) => void)[] = [];
  (async () => {
    for await (const conn of listener) {
      (async () => {
        const buf = new Uint8Array(256 * 1024);
        let total = 0;
        let n;
        while ((n = await conn.read(buf)) !== null) total += n;
        conn.close();
        if (total > 0) resolvers.shift()?.(total);
      })().catch(() => {});
    }
  })().catch(() => {});
  return {
    port: listener.addr.port,
    close: () => listener.close(),
    next: () => new Promise<number>((r) => resolvers.push(r)),
  };
}

/** Writes `size` random bytes to `path` (incompressible, so no layer can cheat), 1 MiB at a time. */
export async function randomFile(path: string, size: number): Promise<void> {
  using file = await Deno.open(path, { write: true, create: true, truncate: true });
  const chunk = new Uint8Array(1024 * 1024);
  for (let left = size; left > 0; left -= chunk.length) {
    for (let off = 0; off < chunk.length; off += 65536) {
      crypto.getRandomValues(chunk.subarray(off, off + 65536));
    }
    await writeAll(file, chunk.subarray(0, Math.min(chunk.length, left)));
  }
}
