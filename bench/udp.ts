/**
 * UDP echo benchmark: round trips per second with 64-byte datagrams from a fixed-window
 * client (the same in-process client for every server), sockit's `udp-echo` against socat's
 * echo one-liners side by side:
 *
 * - `socat -b65536 UDP-LISTEN:P,reuseaddr PIPE`: no fork, answers only the first peer;
 * - `socat -b65535 UDP-RECVFROM:P,fork PIPE`: a process per datagram;
 * - `socat UDP-LISTEN:P,fork PIPE`: a process per peer, 8 KiB buffer.
 *
 * Each server is also checked for datagram boundaries (five datagrams sent back to back, then
 * one of 60,000 bytes, from the measuring socket) and the result is noted next to its row.
 * Round trips are counted from bytes echoed / 64, so a server that merges datagrams is not
 * penalised for it in the figure, only in the note. sockit runs with its default options
 * (loopback sources are not rate-limited by default). Each figure is the median of the runs,
 * and sockit's and the peer's runs are interleaved, sockit first in even runs and second in
 * odd ones.
 *
 * Then the target of issue 16: echoes/s with 64-byte datagrams, 64 in flight, measured by a C
 * load generator (`bench/c/udp_load.c`, one socket, compiled with `cc -O2` into a temporary
 * folder) against three servers: `sockit udp-echo` with default options and `-A` (the libc
 * fast path, `lib/udp/fast_echo.ts`), `sockit udp-echo` without `--allow-ffi` (the fallback on
 * Deno's sockets) and a plain C `recvfrom`/`sendto` loop (`bench/c/udp_echo_loop.c`). The
 * three are measured in turn, 5 runs each, the order rotating every run; each figure is the
 * median. Without `cc` these rows are skipped with a note.
 *
 * @module
 */

import { type BenchRow, freeUdpPort, median, peerAvailable, type Scenario } from "./_harness.ts";
import { delay, withTimeout } from "../lib/net/deadline.ts";
import { UDP_RECEIVE_BUFFER_SIZE } from "../lib/udp/datagram.ts";
import { MAIN, ROOT, startSockit } from "../tests/_helpers.ts";

const PAYLOAD = 64;
/** Datagrams the C load generator keeps in flight (issue 16). */
const C_WINDOW = 64;
/** The issue 16 target: sockit's fast path against the C loop. */
const TARGET_RATIO = 0.8;
/** Permissions of the fallback row: everything udp-echo needs except ffi. */
const WITHOUT_FFI = ["--allow-net", "--allow-read", "--allow-env", "--allow-sys"];
const WINDOW = 32;
const RUN_MS = 1500;
const WARMUP_MS = 300;
const RUNS = 5;
/** With no reply for this long, the window is taken as lost and refilled. */
const STALL_MS = 20;
/** Flags `sockit udp-echo` runs with beyond its defaults; they go in the rows' `flags`. */
const SOCKIT_FLAGS: string[] = [];
const FLAGS = SOCKIT_FLAGS.length > 0 ? SOCKIT_FLAGS.join(" ") : undefined;

/** One client socket talking to one echo server; kept for all runs (socat no-fork pins it). */
class EchoClient {
  #sock = Deno.listenDatagram({ transport: "udp", hostname: "127.0.0.1", port: 0 });
  #to: Deno.NetAddr;
  #bytes = 0;
  #replies = 0;
  #oddReplies = 0;
  #inflight = 0;
  #wake: (() => void) | undefined;
  #receiving: Promise<void>;
  #sizes: number[] | undefined;

  constructor(port: number) {
    this.#to = { transport: "udp", hostname: "127.0.0.1", port };
    this.#receiving = this.#receive();
  }

  async #receive(): Promise<void> {
    const buf = new Uint8Array(UDP_RECEIVE_BUFFER_SIZE);
    while (true) {
      let n: number;
      try {
        n = (await this.#sock.receive(buf))[0].length;
      } catch {
        return;
      }
      this.#bytes += n;
      this.#replies++;
      // During the boundary check, sizes differ on purpose.
      if (this.#sizes) this.#sizes.push(n);
      else if (n !== PAYLOAD) this.#oddReplies++;
      this.#inflight = Math.max(0, this.#inflight - Math.max(1, Math.round(n / PAYLOAD)));
      const w = this.#wake;
      this.#wake = undefined;
      w?.();
    }
  }

  #waitReply(ms: number): Promise<boolean> {
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.#wake = undefined;
        resolve(false);
      }, ms);
      this.#wake = () => {
        clearTimeout(timer);
        resolve(true);
      };
    });
  }

  /** Sends single datagrams until one comes back (the server is up), within 10 s. */
  async ready(): Promise<void> {
    const payload = new Uint8Array(PAYLOAD);
    await withTimeout(
      (async () => {
        const before = this.#replies;
        while (this.#replies === before) {
          await this.#sock.send(payload, this.#to);
          await this.#waitReply(100);
        }
      })(),
      10_000,
      { what: `an echo from port ${this.#to.port}` },
    );
  }

  /** Keeps `window` datagrams in flight for warm-up plus RUN_MS; resolves round trips/s. */
  async roundTrips(window: number): Promise<number> {
    const payload = new Uint8Array(PAYLOAD).fill(0x61);
    this.#inflight = 0;
    const start = performance.now();
    let startBytes = -1;
    let measuredFrom = 0;
    while (true) {
      const now = performance.now();
      if (startBytes < 0 && now - start >= WARMUP_MS) {
        startBytes = this.#bytes;
        measuredFrom = now;
      }
      if (startBytes >= 0 && now - measuredFrom >= RUN_MS) {
        return (this.#bytes - startBytes) / PAYLOAD / ((now - measuredFrom) / 1000);
      }
      while (this.#inflight < window) {
        this.#inflight++;
        await this.#sock.send(payload, this.#to);
      }
      if (!await this.#waitReply(STALL_MS)) this.#inflight = 0;
    }
  }

  /** Replies so far that were not one 64-byte datagram (merged or cut), in words. */
  oddReplies(): string {
    return this.#oddReplies === 0
      ? "every reply 64 B"
      : `${this.#oddReplies} of ${this.#replies} replies were not 64 B (merged)`;
  }

  /** Five datagrams back to back, then one of 60,000 bytes: what came back, in words. */
  async boundaries(): Promise<string> {
    const sizes = [100, 200, 300, 400, 500];
    const settle = async (expectBytes: number) => {
      const deadline = performance.now() + 1000;
      const got = () => (this.#sizes ?? []).reduce((a, b) => a + b, 0);
      while (got() < expectBytes && performance.now() < deadline) await this.#waitReply(50);
      // Stragglers of the measurement could still be in flight: allow a moment for them.
      await delay(50);
    };
    await delay(100); // let the last measurement replies drain first
    this.#sizes = [];
    for (const n of sizes) await this.#sock.send(new Uint8Array(n), this.#to);
    await settle(1500);
    const five = this.#sizes;
    this.#sizes = [];
    await this.#sock.send(new Uint8Array(60_000), this.#to);
    await settle(60_000);
    const big = this.#sizes;
    this.#sizes = undefined;
    const fiveOk = five.join() === sizes.join();
    const bigOk = big.length === 1 && big[0] === 60_000;
    if (fiveOk && bigOk) return "kept boundaries";
    const parts = [];
    if (!fiveOk) parts.push(`5 datagrams came back as [${five.join(",")}]`);
    if (!bigOk) parts.push(`60000 B came back as [${big.join(",")}]`);
    return `BROKE boundaries: ${parts.join("; ")}`;
  }

  async close(): Promise<void> {
    this.#sock.close();
    await this.#receiving;
  }
}

/** Kills `pid` and every process below it (socat's forked children outlive their parent). */
function killTree(pid: number): void {
  const children: number[] = [];
  for (const entry of Deno.readDirSync("/proc")) {
    if (!/^\d+$/.test(entry.name)) continue;
    try {
      const stat = Deno.readTextFileSync(`/proc/${entry.name}/stat`);
      const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
      if (ppid === pid) children.push(Number(entry.name));
    } catch {
      // Gone meanwhile.
    }
  }
  for (const child of children) killTree(child);
  try {
    Deno.kill(pid, "SIGKILL");
  } catch {
    // Already gone.
  }
}

interface Server extends AsyncDisposable {
  port: number;
}

function startSocat(args: (port: number) => string[]): Server {
  const port = freeUdpPort();
  const child = new Deno.Command("socat", {
    args: args(port),
    stdin: "null",
    stdout: "null",
    stderr: "null",
  }).spawn();
  return {
    port,
    async [Symbol.asyncDispose]() {
      killTree(child.pid);
      await child.status;
    },
  };
}

async function startEcho(): Promise<Server> {
  const proc = await startSockit(["udp-echo", "--port", "0", "--quiet", ...SOCKIT_FLAGS]);
  return { port: proc.port, [Symbol.asyncDispose]: () => proc[Symbol.asyncDispose]() };
}

/**
 * Median round trips/s of RUNS runs of each client, the runs interleaved when given two: `a`
 * first in even runs, `b` first in odd ones.
 */
async function compare(
  a: EchoClient,
  b: EchoClient | undefined,
  window: number,
): Promise<[number, number | undefined]> {
  const ra: number[] = [];
  const rb: number[] = [];
  for (let i = 0; i < RUNS; i++) {
    if (b && i % 2 === 1) rb.push(await b.roundTrips(window));
    ra.push(await a.roundTrips(window));
    if (b && i % 2 === 0) rb.push(await b.roundTrips(window));
  }
  return [median(ra), b ? median(rb) : undefined];
}

const PEERS = [
  {
    name: "socat -b65536 UDP-LISTEN,reuseaddr PIPE (no fork, one peer)",
    args: (p: number) => ["-b65536", `UDP-LISTEN:${p},bind=127.0.0.1,reuseaddr`, "PIPE"],
  },
  {
    name: "socat -b65535 UDP-RECVFROM,fork PIPE",
    args: (p: number) => ["-b65535", `UDP-RECVFROM:${p},bind=127.0.0.1,fork`, "PIPE"],
  },
  {
    name: "socat UDP-LISTEN,fork PIPE",
    args: (p: number) => [`UDP-LISTEN:${p},bind=127.0.0.1,fork`, "PIPE"],
  },
];

async function udpEchoRoundTrips(): Promise<BenchRow[]> {
  const rows: BenchRow[] = [];
  await using echo = await startEcho();
  const sockit = new EchoClient(echo.port);
  try {
    await sockit.ready();
    const sockitBoundaries = await sockit.boundaries();
    console.error(`bench: udp-echo ${sockitBoundaries}`);
    const haveSocat = peerAvailable("socat");
    for (const [i, peer] of PEERS.entries()) {
      const windows = i === 0 ? [WINDOW, 1] : [WINDOW];
      for (const window of windows) {
        const row: BenchRow = {
          scenario: `UDP echo round trips, ${PAYLOAD} B, window ${window}`,
          unit: "rt/s",
          sockit: 0,
          flags: FLAGS,
          peerName: peer.name,
          higherIsBetter: true,
        };
        if (!haveSocat) {
          row.sockit = (await compare(sockit, undefined, window))[0];
          row.note = `sockit ${sockitBoundaries}`;
          rows.push(row);
          continue;
        }
        await using server = startSocat(peer.args);
        const client = new EchoClient(server.port);
        try {
          await client.ready();
          [row.sockit, row.peer] = await compare(sockit, client, window);
          row.note = `peer: ${await client.boundaries()}, ${client.oddReplies()}`;
        } finally {
          await client.close();
        }
        rows.push(row);
      }
    }
    console.error(`bench: udp-echo over all runs: ${sockit.oddReplies()}`);
  } finally {
    await sockit.close();
  }
  // Many peers at once: the thing the no-fork socat cannot do.
  {
    const clients = [0, 1, 2, 3].map(() => new EchoClient(echo.port));
    try {
      await Promise.all(clients.map((c) => c.ready()));
      const runs: number[] = [];
      for (let i = 0; i < RUNS; i++) {
        const each = await Promise.all(clients.map((c) => c.roundTrips(WINDOW / 4)));
        runs.push(each.reduce((a, b) => a + b, 0));
      }
      rows.push({
        scenario: `UDP echo round trips, ${PAYLOAD} B, 4 peers x window ${WINDOW / 4}`,
        unit: "rt/s",
        sockit: median(runs),
        flags: FLAGS,
        higherIsBetter: true,
        note: "socat without fork answers only its first peer",
      });
    } finally {
      await Promise.all(clients.map((c) => c.close()));
    }
  }
  return rows;
}

/** An echo server process for the C load generator; its stderr is kept for the notes. */
interface EchoProcess extends AsyncDisposable {
  port: number;
  /** Everything it wrote to stderr, once disposed. */
  stderr: Promise<string>;
}

function spawnEcho(program: string, args: (port: number) => string[]): EchoProcess {
  const port = freeUdpPort();
  const child = new Deno.Command(program, {
    args: args(port),
    cwd: ROOT,
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).spawn();
  const stderr = new Response(child.stderr).text();
  return {
    port,
    stderr,
    async [Symbol.asyncDispose]() {
      try {
        child.kill("SIGTERM");
      } catch {
        // Already exited.
      }
      await child.status;
      await stderr;
    },
  };
}

/** Compiles bench/c/NAME.c with `cc -O2` into `dir`; resolves the program's path. */
async function compile(name: string, dir: string): Promise<string> {
  const source = new URL(`./c/${name}.c`, import.meta.url).pathname;
  const out = `${dir}/${name}`;
  const result = await new Deno.Command("cc", {
    args: ["-O2", "-Wall", "-o", out, source],
    stdout: "piped",
    stderr: "piped",
  }).output();
  if (!result.success) {
    throw new Error(`cc -O2 ${name}.c failed: ${new TextDecoder().decode(result.stderr).trim()}`);
  }
  return out;
}

/** One run of the C load generator against `port`: echoes/s. */
async function loadRun(load: string, port: number): Promise<number> {
  const result = await new Deno.Command(load, {
    args: [port, C_WINDOW, PAYLOAD, WARMUP_MS, RUN_MS, STALL_MS].map(String),
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder().decode(result.stdout);
  const m = text.match(/^echoes\/s (\d+)/);
  if (!result.success || !m) {
    throw new Error(
      `udp_load on port ${port} failed: ${new TextDecoder().decode(result.stderr).trim()}`,
    );
  }
  return Number(m[1]);
}

/** sockit udp-echo (fast path and fallback) and the C loop, by the C load generator. */
async function udpEchoAgainstC(): Promise<BenchRow[]> {
  const scenario = `UDP echoes/s, ${PAYLOAD} B, ${C_WINDOW} in flight, C load generator`;
  const peerName = "C recvfrom/sendto loop (cc -O2)";
  if (!peerAvailable("cc")) {
    const note = "skipped: cc is not installed (it builds the C loop and load generator)";
    return [
      { scenario, unit: "echoes/s", sockit: 0, peerName, higherIsBetter: true, note },
    ];
  }
  const dir = await Deno.makeTempDir({ prefix: "sockit-bench-udp-" });
  try {
    const [loop, load] = [await compile("udp_echo_loop", dir), await compile("udp_load", dir)];
    const sockitArgs = (permissions: string[]) => (port: number) => [
      "run",
      ...permissions,
      MAIN,
      "udp-echo",
      "--port",
      String(port),
      "--verbose",
      ...SOCKIT_FLAGS,
    ];
    await using fast = spawnEcho(Deno.execPath(), sockitArgs(["-A"]));
    await using fallback = spawnEcho(Deno.execPath(), sockitArgs(WITHOUT_FFI));
    await using c = spawnEcho(loop, (port) => [String(port), "127.0.0.1"]);
    const servers = [fast, fallback, c];
    const runs: number[][] = servers.map(() => []);
    for (let i = 0; i < RUNS; i++) {
      // Rotate the order, so that no server always runs first (or right after another).
      for (let j = 0; j < servers.length; j++) {
        const k = (i + j) % servers.length;
        runs[k].push(await loadRun(load, servers[k].port));
      }
    }
    const [fastRate, fallbackRate, cRate] = runs.map(median);
    // Stop the servers now for their logs: say which path each sockit really ran.
    await fast[Symbol.asyncDispose]();
    await fallback[Symbol.asyncDispose]();
    const path = async (p: EchoProcess) =>
      /fast path: recvmmsg/.test(await p.stderr)
        ? "libc fast path"
        : /fast path off/.test(await p.stderr)
        ? "Deno sockets"
        : "path unknown";
    const met = fastRate >= TARGET_RATIO * cRate;
    return [
      {
        scenario: `${scenario}, deno run -A`,
        unit: "echoes/s",
        sockit: fastRate,
        flags: FLAGS,
        peerName,
        peer: cRate,
        higherIsBetter: true,
        note: `target >= ${TARGET_RATIO}x the C loop (${met ? "met" : "NOT met"}); ${await path(
          fast,
        )}; runs ${runs[0].join(", ")}`,
      },
      {
        scenario: `${scenario}, without --allow-ffi`,
        unit: "echoes/s",
        sockit: fallbackRate,
        flags: FLAGS,
        peerName,
        peer: cRate,
        higherIsBetter: true,
        note: `fallback: ${await path(fallback)}; runs ${runs[1].join(", ")}; C loop runs ${
          runs[2].join(", ")
        }`,
      },
    ];
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/** Probes of one `sockit udp-ping --flood` run of the udp-ping rows: fast path, fallback. */
const PING_COUNTS = { fast: 200_000, fallback: 50_000 };

/** One `sockit udp-ping --flood` run against `port` with `permissions`: its received pps. */
async function pingRun(permissions: string[], port: number, count: number): Promise<number> {
  const args = ["run", ...permissions, MAIN, "udp-ping", `127.0.0.1:${port}`, "--flood"];
  args.push("--window", String(C_WINDOW), "--size", String(PAYLOAD), "--count", String(count));
  const result = await new Deno.Command(Deno.execPath(), {
    args: [...args, "--json"],
    cwd: ROOT,
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder().decode(result.stdout).trim();
  let pps: unknown;
  try {
    pps = JSON.parse(text).receivedPps;
  } catch {
    // Reported below.
  }
  if (typeof pps !== "number") {
    throw new Error(
      `udp-ping on port ${port} failed: ${new TextDecoder().decode(result.stderr).trim()}`,
    );
  }
  return pps;
}

/**
 * udp-ping's own client: the round trips/s `sockit udp-ping --flood` reports (its
 * `receivedPps`; C_WINDOW in flight, PAYLOAD-byte probes; with -A: the libc fast path;
 * without --allow-ffi: Deno's sockets) against the C load generator's figure on the same
 * server, sockit's `udp-echo -A` and the C loop; the runs interleaved, medians.
 */
async function udpPingAgainstC(): Promise<BenchRow[]> {
  const scenario = `udp-ping --flood rt/s, ${PAYLOAD} B, window ${C_WINDOW}`;
  const peerName = "C load generator (cc -O2), same server";
  if (!peerAvailable("cc")) {
    const note = "skipped: cc is not installed (it builds the C loop and load generator)";
    return [{ scenario, unit: "rt/s", sockit: 0, peerName, higherIsBetter: true, note }];
  }
  const dir = await Deno.makeTempDir({ prefix: "sockit-bench-udp-ping-" });
  try {
    const [loop, load] = [await compile("udp_echo_loop", dir), await compile("udp_load", dir)];
    await using echo = spawnEcho(
      Deno.execPath(),
      (port) => ["run", "-A", MAIN, "udp-echo", "--port", String(port), ...SOCKIT_FLAGS],
    );
    await using c = spawnEcho(loop, (port) => [String(port), "127.0.0.1"]);
    const rows: BenchRow[] = [];
    const servers = [
      { name: "sockit udp-echo -A", port: echo.port, fallback: true },
      { name: "the C recvfrom/sendto loop", port: c.port, fallback: false },
    ];
    for (const server of servers) {
      const clients = [
        () => loadRun(load, server.port),
        () => pingRun(["-A"], server.port, PING_COUNTS.fast),
        ...(server.fallback ? [() => pingRun(WITHOUT_FFI, server.port, PING_COUNTS.fallback)] : []),
      ];
      const runs: number[][] = clients.map(() => []);
      for (let i = 0; i < RUNS; i++) {
        // Rotate the order, so that no client always runs first.
        for (let j = 0; j < clients.length; j++) {
          const k = (i + j) % clients.length;
          runs[k].push(await clients[k]());
        }
      }
      const [cRate, fastRate, fallbackRate] = runs.map(median);
      const fmt = (r: number[]) => r.map((x) => Math.round(x)).join(", ");
      rows.push({
        scenario: `${scenario}, deno run -A (libc fast path), server ${server.name}`,
        unit: "rt/s",
        sockit: fastRate,
        peerName,
        peer: cRate,
        higherIsBetter: true,
        note: `${PING_COUNTS.fast} probes a run, rate over the whole send span; runs ${
          fmt(runs[1])
        }; C runs ${fmt(runs[0])}`,
      });
      if (fallbackRate !== undefined) {
        rows.push({
          scenario: `${scenario}, without --allow-ffi (Deno sockets), server ${server.name}`,
          unit: "rt/s",
          sockit: fallbackRate,
          peerName,
          peer: cRate,
          higherIsBetter: true,
          note: `${PING_COUNTS.fallback} probes a run; runs ${fmt(runs[2])}`,
        });
      }
    }
    return rows;
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/** The udp scenarios. */
export const scenarios: Scenario[] = [{
  name: "udp",
  run: async () => [
    ...await udpEchoAgainstC(),
    ...await udpPingAgainstC(),
    ...await udpEchoRoundTrips(),
  ],
}];
