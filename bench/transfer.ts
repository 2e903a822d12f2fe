/**
 * Transfer benchmark: a 1 GiB file of random bytes sent over loopback into a folder on the
 * same disk, wall time from starting the sender to the sender's exit (for nc, plus the
 * `sync FILE` that gives it the durability sockit has when it confirms). Variants:
 * sockit verified with fsync, `--no-verify`, `--no-sync`, both; against
 * `nc -l 127.0.0.1 P > file` / `nc -N 127.0.0.1 P < file` with and without `sync file`
 * (netcat-openbsd). Variants run interleaved, median of 3 each. The file is generated into a
 * temp folder and deleted afterwards.
 *
 * @module
 */

import { type BenchRow, freePort, median, peerAvailable, type Scenario } from "./_harness.ts";
import { startSockit } from "../tests/_helpers.ts";
import { withTimeout } from "../lib/net/deadline.ts";
import { writeAll } from "../lib/net/write_all.ts";

const FILE_SIZE = 1024 * 1024 * 1024;
const RUNS = 3;
const MAIN = new URL("../main.ts", import.meta.url).pathname;

async function randomFile(path: string, size: number): Promise<void> {
  using file = await Deno.open(path, { write: true, create: true, truncate: true });
  const chunk = new Uint8Array(1024 * 1024);
  for (let left = size; left > 0; left -= chunk.length) {
    for (let off = 0; off < chunk.length; off += 65536) {
      crypto.getRandomValues(chunk.subarray(off, off + 65536));
    }
    await writeAll(file, chunk.subarray(0, Math.min(chunk.length, left)));
  }
}

async function run(program: string, args: string[], stdio: { stdin?: string } = {}) {
  const child = new Deno.Command(program, {
    args,
    stdin: stdio.stdin ? "piped" : "null",
    stdout: "null",
    stderr: "piped",
  }).spawn();
  const out = await withTimeout(child.output(), 300_000, `${program} ${args.join(" ")}`);
  if (out.code !== 0) {
    throw new Error(`${program} exited ${out.code}: ${new TextDecoder().decode(out.stderr)}`);
  }
}

async function sh(script: string): Promise<void> {
  await run("sh", ["-c", script]);
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
    `nc listening on ${port}`,
  );
}

async function checkSize(path: string): Promise<void> {
  const size = (await Deno.stat(path)).size;
  if (size !== FILE_SIZE) throw new Error(`${path} has ${size} bytes, expected ${FILE_SIZE}`);
  await Deno.remove(path);
}

/** Seconds for one sockit send into a fresh `recv --once`. */
async function sockitOnce(src: string, dir: string, sendFlags: string[], recvFlags: string[]) {
  await sh("sync");
  await using recv = await startSockit([
    "recv",
    "--port",
    "0",
    "--dir",
    dir,
    "--once",
    ...recvFlags,
  ]);
  const start = performance.now();
  await run(Deno.execPath(), [
    "run",
    "-A",
    MAIN,
    "send",
    `127.0.0.1:${recv.port}`,
    src,
    "-q",
    ...sendFlags,
  ]);
  const seconds = (performance.now() - start) / 1000;
  const status = await recv.status;
  if (status.code !== 0) throw new Error(`recv exited ${status.code}: ${recv.stderr.join("\n")}`);
  await checkSize(`${dir}/${src.split("/").pop()}`);
  return seconds;
}

/** Seconds for `nc -N < file` into `nc -l > file`, optionally followed by `sync file`. */
async function ncOnce(src: string, dir: string, sync: boolean) {
  await sh("sync");
  const port = freePort();
  const dst = `${dir}/nc.bin`;
  const listener = new Deno.Command("sh", {
    args: ["-c", `exec nc -l 127.0.0.1 ${port} > '${dst}'`],
    stdin: "null",
    stdout: "null",
    stderr: "null",
  }).spawn();
  try {
    await waitForListen(port);
    const start = performance.now();
    await sh(`nc -N 127.0.0.1 ${port} < '${src}'${sync ? ` && sync '${dst}'` : ""}`);
    const seconds = (performance.now() - start) / 1000;
    await withTimeout(listener.status, 60_000, "nc -l to exit");
    await checkSize(dst);
    return seconds;
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
    const variants: Record<string, () => Promise<number>> = {
      verified: () => sockitOnce(src, dir, [], []),
      noVerify: () => sockitOnce(src, dir, ["--no-verify"], []),
      noSync: () => sockitOnce(src, dir, [], ["--no-sync"]),
      neither: () => sockitOnce(src, dir, ["--no-verify"], ["--no-sync"]),
      ...(hasNc
        ? { ncSync: () => ncOnce(src, dir, true), ncRaw: () => ncOnce(src, dir, false) }
        : {}),
    };
    const times: Record<string, number[]> = {};
    for (let i = 0; i < RUNS; i++) {
      for (const [name, fn] of Object.entries(variants)) {
        (times[name] ??= []).push(await fn());
      }
    }
    const m = (name: string) => times[name] ? median(times[name]) : undefined;
    const all = (name: string) => times[name]?.map((t) => t.toFixed(2)).join("/") ?? "-";
    const row = (
      scenario: string,
      name: string,
      peerName: string,
      peer: string,
    ): BenchRow => ({
      scenario,
      unit: "s",
      sockit: m(name)!,
      peerName,
      peer: m(peer),
      higherIsBetter: false,
      note: `runs ${all(name)} vs ${all(peer)}`,
    });
    return [
      row("send 1 GiB: verified + fsync", "verified", "nc -N + sync", "ncSync"),
      row("send 1 GiB: --no-verify (fsync)", "noVerify", "nc -N + sync", "ncSync"),
      row("send 1 GiB: recv --no-sync (verified)", "noSync", "nc -N (raw)", "ncRaw"),
      row("send 1 GiB: --no-verify, recv --no-sync", "neither", "nc -N (raw)", "ncRaw"),
    ];
  } finally {
    await Deno.remove(base, { recursive: true });
  }
}

/** The transfer scenarios. */
export const scenarios: Scenario[] = [{ name: "transfer", run: transferBench }];
