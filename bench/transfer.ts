/**
 * Transfer benchmark: a 1 GiB file of random bytes sent over loopback into a folder on the
 * same disk, wall time from starting the sender to the sender's exit (for nc, plus the
 * `sync FILE` that gives it the durability sockit has when it confirms). Variants:
 * sockit verified with fsync, `--no-verify`, `--no-sync`, both; against
 * `nc -l 127.0.0.1 P > file` / `nc -N 127.0.0.1 P < file` with and without `sync file`
 * (netcat-openbsd). Each variant: one discarded warm-up run, then the median of 3. The file is
 * generated into a temp folder and deleted afterwards. CPU seconds (user + system, both ends)
 * come from /usr/bin/time where it exists.
 *
 * `transfer-small`: 2,000 files of 1 KiB in 20 folders, sockit (`recv --once`, with and
 * without `--no-sync`) against `tar -cf - TREE | nc -N` into `nc -l | tar -xf -` (plus a
 * `sync` for the durable variant); wall time from starting the sender to the sender's exit
 * (tar: to the receiving tar's exit, plus the sync); and the CPU seconds of both ends (sockit's
 * include the receiver's start-up, which the wall time does not). One warm-up each, then the
 * median of 5, the variants interleaved. `SOCKIT_BENCH_BASELINE=/path/to/old/main.ts` adds an
 * older checkout as extra rows.
 *
 * On ext4 without a journal (the development VM's disk), allocating an inode skips the ones
 * deleted in the last minutes (`recently_deleted` in a kernel profile), reading their inode
 * table blocks one by one: after a run of this scenario deleted its ~30,000 copies, or tests
 * deleted their trees, every file creation (tar's and sockit's alike) cost 0.1-0.5 ms instead
 * of ~20 us for about five minutes. Leave five quiet minutes between runs.
 *
 * @module
 */

import {
  type BenchRow,
  freePort,
  median,
  peerAvailable,
  randomFile,
  type Scenario,
} from "./_harness.ts";
import { withTimeout } from "../lib/net/deadline.ts";

const FILE_SIZE = 1024 * 1024 * 1024;
const RUNS = 3;
const MAIN = new URL("../main.ts", import.meta.url).pathname;

async function run(program: string, args: string[], stdio: { stdin?: string } = {}) {
  const child = new Deno.Command(program, {
    args,
    stdin: stdio.stdin ? "piped" : "null",
    stdout: "null",
    stderr: "piped",
  }).spawn();
  const out = await withTimeout(child.output(), 300_000, { what: `${program} ${args.join(" ")}` });
  if (out.code !== 0) {
    throw new Error(`${program} exited ${out.code}: ${new TextDecoder().decode(out.stderr)}`);
  }
}

async function sh(script: string): Promise<void> {
  await run("sh", ["-c", script]);
}

/**
 * Before each run: flush what earlier runs left (the disk is mounted with `discard`, so the
 * deleted 1 GiB files of earlier runs are trimmed at the next journal commit), so that no run
 * pays for the one before it. No idle pause: on the development VM an idle gap of a second or
 * more made the next run's receiver spend ~1-1.5 s more system time allocating page cache (the
 * VM hands free memory back to its host), whatever the tool.
 */
async function settle(): Promise<void> {
  await sh("sync");
}

/** Waits until something listens on 127.0.0.1:`port`, reading /proc (nc -l takes one connection, so no probe). */
async function waitForListen(port: number): Promise<void> {
  const hex = `:${port.toString(16).toUpperCase().padStart(4, "0")}`;
  await withTimeout(
    (async () => {
      while (true) {
        const table = await Deno.readTextFile("/proc/net/tcp");
        if (table.split("\n").some((l) => l.includes(`0100007F${hex} `) && / 0A /.test(l))) return;
        await new Promise((r) => setTimeout(r, 10));
      }
    })(),
    10_000,
    { what: `nc listening on ${port}` },
  );
}

async function checkSize(path: string): Promise<void> {
  const size = (await Deno.stat(path)).size;
  if (size !== FILE_SIZE) throw new Error(`${path} has ${size} bytes, expected ${FILE_SIZE}`);
  await Deno.remove(path);
}

/** Wall seconds of one run, and CPU seconds (user + system) of both ends when measured. */
interface Timing {
  wall: number;
  cpu?: number;
}

const TIME = "/usr/bin/time";
const HAS_TIME = await Deno.stat(TIME).then(() => true, () => false);

/** `argv` prefixed with /usr/bin/time writing "user sys" to `cpuFile`, when available. */
function timed(cpuFile: string, argv: string[]): string[] {
  return HAS_TIME ? [TIME, "-f", "%U %S", "-o", cpuFile, ...argv] : argv;
}

async function cpuOf(files: string[]): Promise<number | undefined> {
  if (!HAS_TIME) return undefined;
  let total = 0;
  for (const f of files) {
    const [user, sys] = (await Deno.readTextFile(f)).trim().split(/\s+/).slice(-2).map(Number);
    total += user + sys;
    await Deno.remove(f);
  }
  return total;
}

/** `argv` as {@linkcode run}'s program and arguments. */
function split(argv: string[]): [string, string[]] {
  return [argv[0], argv.slice(1)];
}

function shellQuote(argv: string[]): string {
  return argv.map((a) => `'${a.replaceAll("'", "'\\''")}'`).join(" ");
}

/** How {@linkcode sockitOnce} runs: flags for each side, which sockit, how to check. */
interface SockitRun {
  /** Extra `send` flags. */
  sendFlags?: string[];
  /** Extra `recv` flags. */
  recvFlags?: string[];
  /** main.ts of the sockit to run (another checkout for a baseline). @default {MAIN} */
  main?: string;
  /** Checks what arrived under `dir` (throws when wrong). */
  check: (dir: string) => Promise<void>;
}

/**
 * One sockit send of `src` into a fresh `recv --once` in `dir`: wall time from starting the
 * sender to its exit, and CPU seconds of both ends when /usr/bin/time is there.
 */
async function sockitOnce(src: string, dir: string, opts: SockitRun): Promise<Timing> {
  await settle();
  const port = freePort();
  const main = opts.main ?? MAIN;
  const cpu = [`${dir}/../recv.cpu`, `${dir}/../send.cpu`];
  const recvArgv = timed(cpu[0], [
    Deno.execPath(),
    "run",
    "-A",
    main,
    "recv",
    "--port",
    String(port),
    "--dir",
    dir,
    "--once",
    "-q",
    ...(opts.recvFlags ?? []),
  ]);
  const recv = new Deno.Command(recvArgv[0], {
    args: recvArgv.slice(1),
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).spawn();
  try {
    await waitForListen(port);
    const start = performance.now();
    const sendArgv = timed(cpu[1], [
      Deno.execPath(),
      "run",
      "-A",
      main,
      "send",
      `127.0.0.1:${port}`,
      src,
      "-q",
      ...(opts.sendFlags ?? []),
    ]);
    await run(sendArgv[0], sendArgv.slice(1));
    const wall = (performance.now() - start) / 1000;
    const out = await withTimeout(recv.output(), 60_000, { what: "recv to exit" });
    if (out.code !== 0) {
      throw new Error(`recv exited ${out.code}: ${new TextDecoder().decode(out.stderr)}`);
    }
    await opts.check(`${dir}/${src.split("/").pop()}`);
    return { wall, cpu: await cpuOf(cpu) };
  } finally {
    try {
      recv.kill("SIGKILL");
    } catch {
      // Exited.
    }
  }
}

/** `nc -N < file` into `nc -l > file`, optionally followed by `sync file`. */
async function ncOnce(src: string, dir: string, sync: boolean): Promise<Timing> {
  await settle();
  const port = freePort();
  const dst = `${dir}/nc.bin`;
  const cpu = [`${dir}/../ncl.cpu`, `${dir}/../ncs.cpu`];
  const listener = new Deno.Command("sh", {
    args: [
      "-c",
      `exec ${shellQuote(timed(cpu[0], ["nc", "-l", "127.0.0.1", String(port)]))} > '${dst}'`,
    ],
    stdin: "null",
    stdout: "null",
    stderr: "null",
  }).spawn();
  try {
    await waitForListen(port);
    const start = performance.now();
    const sender = shellQuote(timed(cpu[1], ["nc", "-N", "127.0.0.1", String(port)]));
    await sh(`${sender} < '${src}'${sync ? ` && sync '${dst}'` : ""}`);
    const wall = (performance.now() - start) / 1000;
    await withTimeout(listener.status, 60_000, { what: "nc -l to exit" });
    await checkSize(dst);
    return { wall, cpu: await cpuOf(cpu) };
  } finally {
    try {
      listener.kill("SIGKILL");
    } catch {
      // Exited.
    }
    await listener.status;
  }
}

async function transferBench(): Promise<BenchRow[]> {
  const base = await Deno.makeTempDir({ prefix: "sockit-bench-transfer-" });
  try {
    const src = `${base}/big.bin`;
    const dir = `${base}/out`;
    await Deno.mkdir(dir);
    console.error("bench: generating 1 GiB of random bytes...");
    await randomFile(src, FILE_SIZE);
    const hasNc = peerAvailable("nc");
    const variants: Record<string, () => Promise<Timing>> = {
      verified: () => sockitOnce(src, dir, { check: checkSize }),
      noVerify: () => sockitOnce(src, dir, { sendFlags: ["--no-verify"], check: checkSize }),
      noSync: () => sockitOnce(src, dir, { recvFlags: ["--no-sync"], check: checkSize }),
      neither: () =>
        sockitOnce(src, dir, {
          sendFlags: ["--no-verify"],
          recvFlags: ["--no-sync"],
          check: checkSize,
        }),
      ...(hasNc
        ? { ncSync: () => ncOnce(src, dir, true), ncRaw: () => ncOnce(src, dir, false) }
        : {}),
    };
    // Each variant runs as a block: one discarded warm-up, then RUNS measured runs. Interleaving
    // was tried first, but on the development VM a run right after an nc run paid 1-1.5 s of
    // extra system time in its receiver (page cache handed back by nc's deleted, never-synced
    // output), which says more about the VM than about the tools.
    const times: Record<string, Timing[]> = {};
    for (const [name, fn] of Object.entries(variants)) {
      await fn();
      for (let i = 0; i < RUNS; i++) (times[name] ??= []).push(await fn());
    }
    const wall = (name: string) => times[name] ? median(times[name].map((t) => t.wall)) : undefined;
    const cpu = (name: string) => {
      const values = times[name]?.map((t) => t.cpu).filter((c) => c !== undefined) ?? [];
      return values.length ? median(values as number[]) : undefined;
    };
    const all = (name: string) => times[name]?.map((t) => t.wall.toFixed(2)).join("/") ?? "-";
    const row = (scenario: string, name: string, peerName: string, peer: string): BenchRow => ({
      scenario,
      unit: "s",
      sockit: wall(name)!,
      flags: VARIANT_FLAGS[name],
      peerName,
      peer: wall(peer),
      higherIsBetter: false,
      note: `runs ${all(name)} vs ${all(peer)}`,
    });
    const cpuRow = (scenario: string, name: string, peerName: string, peer: string): BenchRow => ({
      scenario,
      unit: "CPU s",
      sockit: cpu(name) ?? 0,
      flags: VARIANT_FLAGS[name],
      peerName,
      peer: cpu(peer),
      higherIsBetter: false,
      note: "user + system, both ends, median",
    });
    const rows = [
      row("send 1 GiB: verified + fsync", "verified", "nc -N + sync", "ncSync"),
      row("send 1 GiB: --no-verify (fsync)", "noVerify", "nc -N + sync", "ncSync"),
      row("send 1 GiB: recv --no-sync (verified)", "noSync", "nc -N (raw)", "ncRaw"),
      row("send 1 GiB: --no-verify, recv --no-sync", "neither", "nc -N (raw)", "ncRaw"),
    ];
    if (HAS_TIME) {
      rows.push(
        cpuRow("CPU for 1 GiB: verified + fsync", "verified", "nc + sync", "ncSync"),
        cpuRow("CPU for 1 GiB: --no-verify, --no-sync", "neither", "nc (raw)", "ncRaw"),
      );
    }
    return rows;
  } finally {
    await Deno.remove(base, { recursive: true });
  }
}

/**
 * Environment variable naming another checkout's `main.ts` (an older commit, e.g. from
 * `git archive`) to run as extra "baseline" rows of the small-files scenario, interleaved
 * with the others so that both meet the same disk state.
 */
const BASELINE_ENV = "SOCKIT_BENCH_BASELINE";

/** The flags each sockit variant runs with beyond the defaults, for the table. */
const VARIANT_FLAGS: Record<string, string | undefined> = {
  noVerify: "send --no-verify",
  noSync: "recv --no-sync",
  neither: "send --no-verify, recv --no-sync",
  baseNoSync: "recv --no-sync",
};

/** Small-files scenario: how many files, in how many folders, of how many bytes each. */
const SMALL_FILES = 2000;
const SMALL_FOLDERS = 20;
const SMALL_FILE_SIZE = 1024;
const SMALL_RUNS = 5;

/** Writes SMALL_FILES files of SMALL_FILE_SIZE random bytes spread over SMALL_FOLDERS folders. */
async function smallTree(root: string): Promise<void> {
  const bytes = new Uint8Array(SMALL_FILE_SIZE);
  for (let d = 0; d < SMALL_FOLDERS; d++) {
    const dir = `${root}/d${String(d).padStart(2, "0")}`;
    await Deno.mkdir(dir, { recursive: true });
    for (let f = 0; f < SMALL_FILES / SMALL_FOLDERS; f++) {
      crypto.getRandomValues(bytes);
      await Deno.writeFile(`${dir}/f${String(f).padStart(3, "0")}.bin`, bytes);
    }
  }
}

/**
 * Counts the files under `root` and checks each has SMALL_FILE_SIZE bytes. The copies are
 * deleted only at the end of the scenario: ext4 avoids reusing recently deleted inodes by
 * scanning past them (`recently_deleted` in the kernel profile), so deleting 2,000 files
 * before each run made every file creation of the next run (either tool's) several times
 * slower, measuring the previous run's cleanup instead of the transfer.
 */
async function checkSmallTree(root: string): Promise<void> {
  let files = 0;
  for await (const d of Deno.readDir(root)) {
    for await (const f of Deno.readDir(`${root}/${d.name}`)) {
      const size = (await Deno.stat(`${root}/${d.name}/${f.name}`)).size;
      if (size !== SMALL_FILE_SIZE || !f.isFile) throw new Error(`${f.name}: ${size} bytes`);
      files++;
    }
  }
  if (files !== SMALL_FILES) throw new Error(`${root}: ${files} files, expected ${SMALL_FILES}`);
}

/**
 * `tar -cf - TREE | nc -N` into `nc -l | tar -xf -`; wall time from starting the sender to the
 * receiving tar's exit, plus a `sync` when asked (sockit's durability when it confirms).
 */
async function tarOnce(src: string, dir: string, sync: boolean): Promise<Timing> {
  await settle();
  const port = freePort();
  const cpu = [`${dir}/../tarx.cpu`, `${dir}/../tarc.cpu`];
  // /usr/bin/time of `sh -c PIPELINE` counts the shell's children: both nc and tar.
  const receiving = timed(cpu[0], ["sh", "-c", `nc -l 127.0.0.1 ${port} | tar -xf - -C '${dir}'`]);
  const listener = new Deno.Command(receiving[0], {
    args: receiving.slice(1),
    stdin: "null",
    stdout: "null",
    stderr: "null",
  }).spawn();
  try {
    await waitForListen(port);
    const start = performance.now();
    const parent = src.slice(0, src.lastIndexOf("/"));
    const name = src.split("/").pop()!;
    const sending = `tar -cf - -C '${parent}' '${name}' | nc -N 127.0.0.1 ${port}`;
    await run(...split(timed(cpu[1], ["sh", "-c", sending])));
    const status = await withTimeout(listener.status, 60_000, { what: "nc -l | tar -x to exit" });
    if (!status.success) throw new Error(`nc -l | tar -x exited ${status.code}`);
    if (sync) await sh("sync");
    const wall = (performance.now() - start) / 1000;
    await checkSmallTree(`${dir}/${name}`);
    return { wall, cpu: await cpuOf(cpu) };
  } finally {
    try {
      listener.kill("SIGKILL");
    } catch {
      // Exited.
    }
    await listener.status;
  }
}

async function smallFilesBench(): Promise<BenchRow[]> {
  const base = await Deno.makeTempDir({ prefix: "sockit-bench-small-" });
  try {
    const src = `${base}/tree`;
    await smallTree(src);
    let runs = 0;
    /** A fresh output folder per run (see checkSmallTree). */
    const fresh = async () => {
      const dir = `${base}/out${runs++}`;
      await Deno.mkdir(dir);
      return dir;
    };
    const hasNc = peerAvailable("nc") && peerAvailable("tar");
    const baseline = Deno.env.get(BASELINE_ENV);
    /** One sockit send of the tree into a fresh folder; wall time to the sender's exit. */
    const sockitTree = async (recvFlags: string[], main = MAIN) =>
      await sockitOnce(src, await fresh(), { recvFlags, main, check: checkSmallTree });
    const variants: Record<string, () => Promise<Timing>> = {
      synced: () => sockitTree([]),
      noSync: () => sockitTree(["--no-sync"]),
      ...(baseline
        ? {
          baseSynced: () => sockitTree([], baseline),
          baseNoSync: () => sockitTree(["--no-sync"], baseline),
        }
        : {}),
      ...(hasNc
        ? {
          tarSync: async () => tarOnce(src, await fresh(), true),
          tarRaw: async () => tarOnce(src, await fresh(), false),
        }
        : {}),
    };
    // Interleaved (one run of each variant in turn, after one warm-up each), so that every
    // variant meets the same state of the disk and of the other agents' load.
    const times: Record<string, Timing[]> = {};
    for (const fn of Object.values(variants)) await fn();
    for (let i = 0; i < SMALL_RUNS; i++) {
      for (const [name, fn] of Object.entries(variants)) (times[name] ??= []).push(await fn());
    }
    const walls = (name: string) => times[name]?.map((t) => t.wall);
    const cpus = (name: string) =>
      times[name]?.map((t) => t.cpu).filter((c) => c !== undefined) as number[] | undefined;
    const all = (name: string) => walls(name)?.map((t) => t.toFixed(2)).join("/") ?? "-";
    const row = (scenario: string, name: string, peerName: string, peer: string): BenchRow => ({
      scenario,
      unit: "s",
      sockit: median(walls(name)),
      flags: VARIANT_FLAGS[name],
      peerName,
      peer: times[peer] ? median(walls(peer)) : undefined,
      higherIsBetter: false,
      note: `runs ${all(name)} vs ${all(peer)}`,
    });
    const cpuRow = (scenario: string, name: string, peerName: string, peer: string): BenchRow => ({
      scenario,
      unit: "CPU s",
      sockit: median(cpus(name) ?? [0]),
      flags: VARIANT_FLAGS[name],
      peerName,
      peer: cpus(peer)?.length ? median(cpus(peer)!) : undefined,
      higherIsBetter: false,
      note: "user + system, both ends (sockit: start-up included), median",
    });
    return [
      row("2,000 x 1 KiB in 20 folders: fsync", "synced", "tar|nc + sync", "tarSync"),
      row("2,000 x 1 KiB in 20 folders: --no-sync", "noSync", "tar|nc (raw)", "tarRaw"),
      ...(baseline
        ? [
          row("same, fsync: baseline sockit", "baseSynced", "tar|nc + sync", "tarSync"),
          row("same, --no-sync: baseline sockit", "baseNoSync", "tar|nc (raw)", "tarRaw"),
        ]
        : []),
      ...(HAS_TIME
        ? [
          cpuRow("CPU for 2,000 x 1 KiB: fsync", "synced", "tar|nc", "tarSync"),
          cpuRow("CPU for 2,000 x 1 KiB: --no-sync", "noSync", "tar|nc", "tarRaw"),
          ...(baseline
            ? [
              cpuRow("CPU, fsync: baseline sockit", "baseSynced", "tar|nc", "tarSync"),
              cpuRow("CPU, --no-sync: baseline sockit", "baseNoSync", "tar|nc", "tarRaw"),
            ]
            : []),
        ]
        : []),
    ];
  } finally {
    await Deno.remove(base, { recursive: true });
  }
}

/**
 * The transfer scenarios: `transfer` (1 GiB file) and `transfer-small` (2,000 files of 1 KiB in
 * 20 folders, against `tar | nc`; median of 5 after a warm-up).
 */
export const scenarios: Scenario[] = [
  { name: "transfer", run: transferBench },
  { name: "transfer-small", run: smallFilesBench },
];
