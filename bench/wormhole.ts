/**
 * Wormhole benchmark (`deno task bench wormhole`): a file of random bytes, 256 MiB and 1 GiB,
 * sent with a code through the local Debian transit relay, inside a private network namespace
 * with the Debian mailbox (tests/_wormhole_peers.ts runs every pair). Pairs, measured side by
 * side in one run, their order alternating from run to run (forward, backward, forward):
 *
 * | pair                       | relay only?                                                  |
 * | -------------------------- | ------------------------------------------------------------ |
 * | sockit -> sockit           | `send --force-relay`                                         |
 * | sockit -> sockit direct    | no: sockit's defaults (both advertise their 198.18.0.x)      |
 * | sockit -> Python           | `send --force-relay`; `wormhole receive --no-listen`         |
 * | Python -> sockit           | `wormhole send --no-listen`; `recv --force-relay`            |
 * | Python -> Python           | `--no-listen` on both sides                                  |
 * | wormhole-william -> itself | no: it has no such flag, so the bytes go direct (loopback)   |
 * | Python -> wormhole-william | no: William listens, and Python connects to it directly      |
 *
 * Figures: MB/s (10^6 bytes per second) over the wall time from starting the receiver to the
 * later exit of both (client start-up included, as users see it), and each side's CPU seconds
 * (user + system, from GNU time; without it no CPU rows) per GiB sent; medians of
 * {@linkcode RUNS}. The received file is checked for its size and deleted; `sync` runs before
 * each run so that no run pays for the last one's writeback. The files live in a temp folder
 * on disk (its file system type is in the first row's note; a tmpfs /tmp is avoided for
 * /var/tmp).
 *
 * A failed run is retried at once; a pair that fails {@linkcode MAX_FAILURES} times at one
 * size (sockit's code mode before it lands, a missing client) is given up: a FAILED row, or a
 * peer figure of "-", with the reason in the note. CPU seconds include each client's start-up
 * (about 1 s for the Python client, 0.3 s for sockit), which weighs more at 256 MiB than at
 * 1 GiB. The first row's note says whether sockit's record ciphers ran on libsodium (they do
 * where the process has the `ffi` permission, as here with `-A`, and a libsodium is
 * installed; see `lib/wormhole/transit_sodium.ts`) or in JavaScript.
 *
 * The ceiling on this machine (2 cores, busy): two plain Deno pipes through the Python relay
 * (no crypto, no disk, 256 KiB writes) passed 1 GiB at 370-470 MB/s, the relay taking
 * 1.3-1.5 CPU seconds per GiB; a sockit transfer also costs each end its file I/O (writing
 * 1 GiB into the page cache alone takes 2.1 s of system time here), a SHA-256 (0.8 s) and
 * the cipher (about 1 s), which bounds a relayed sockit pair near 200 MB/s on two free cores.
 *
 * @module
 */

import { type BenchRow, median, peerAvailable, randomFile, type Scenario } from "./_harness.ts";
import { missingNetns, missingWormholeServers } from "../tests/_wormhole.ts";
import {
  describePair,
  MEASURES_CPU,
  PYTHON_WORMHOLE,
  runPair,
  startWormholeNet,
  WORMHOLE_WILLIAM,
  type WormholeClient,
  type WormholeNet,
} from "../tests/_wormhole_peers.ts";
import { nativeSodium } from "../lib/wormhole/transit_sodium.ts";

/** The file sizes measured. */
const SIZES = [256 * 1024 * 1024, 1024 * 1024 * 1024];
/** Measured runs of each pair and size. */
const RUNS = 3;
/** Longest one transfer may take, in ms (Python through the relay does ~40 MB/s here). */
const RUN_TIMEOUT_MS = 300_000;
/** Failed runs after which a pair is given up (at one size). */
const MAX_FAILURES = 2;
const GIB = 1024 * 1024 * 1024;

/** One sender/receiver pair of the benchmark. */
interface Pair {
  /** Key and label, e.g. "python -> python". */
  label: string;
  sender: WormholeClient;
  receiver: WormholeClient;
  /** How the relay is or is not forced, for the table. */
  how: string;
  /** What sockit ran with beyond its defaults, for the table. */
  flags?: string;
  /** Extra arguments of a sockit receiver. */
  receiverArgs?: string[];
  /** False to let the pair connect directly (sockit's default). @default {true} */
  forceRelay?: boolean;
}

const PAIRS: Pair[] = [
  {
    label: "sockit -> sockit",
    sender: "sockit",
    receiver: "sockit",
    how: "relay",
    flags: "send --force-relay",
  },
  {
    label: "sockit -> sockit direct",
    sender: "sockit",
    receiver: "sockit",
    how: "direct: sockit's defaults, as wormhole-william's",
    forceRelay: false,
  },
  {
    label: "sockit -> python",
    sender: "sockit",
    receiver: "python",
    how: "relay",
    flags: "send --force-relay",
  },
  {
    label: "python -> sockit",
    sender: "python",
    receiver: "sockit",
    how: "relay, --no-listen",
    flags: "recv --force-relay",
    receiverArgs: ["--force-relay"],
  },
  { label: "python -> python", sender: "python", receiver: "python", how: "relay, --no-listen" },
  {
    label: "william -> william",
    sender: "william",
    receiver: "william",
    how: "direct: william has no relay-only flag",
  },
  {
    label: "python -> william",
    sender: "python",
    receiver: "william",
    how: "direct: python --no-listen, william listens",
  },
];

/** One run's figures. */
interface Measured {
  mbps: number;
  /** CPU seconds per GiB of each side, when GNU time measured them. */
  sendCpu?: number;
  recvCpu?: number;
}

/** The runs of one pair at one size, and why the last failed one failed. */
interface PairRuns {
  runs: Measured[];
  failures: number;
  error?: string;
}

/** The file system type of `dir` (`stat -f`), e.g. "ext2/ext3" or "tmpfs". */
async function fsType(dir: string): Promise<string> {
  const out = await new Deno.Command("stat", { args: ["-f", "-c", "%T", dir], stdout: "piped" })
    .output();
  return new TextDecoder().decode(out.stdout).trim() || "unknown";
}

/** A temp folder on disk: under /tmp unless that is a tmpfs, else under /var/tmp. */
async function diskTempDir(): Promise<{ dir: string; fs: string }> {
  const tmp = await Deno.makeTempDir({ prefix: "sockit-bench-wormhole-" });
  const fs = await fsType(tmp);
  if (fs !== "tmpfs") return { dir: tmp, fs: `${fs} (${tmp})` };
  await Deno.remove(tmp);
  const dir = await Deno.makeTempDir({ dir: "/var/tmp", prefix: "sockit-bench-wormhole-" });
  return { dir, fs: `${await fsType(dir)} (${dir}; /tmp is a tmpfs)` };
}

async function sync(): Promise<void> {
  await new Deno.Command("sync").output();
}

/** One transfer of `file` with `pair` into a fresh folder; throws with both logs on failure. */
async function runOnce(
  net: WormholeNet,
  base: string,
  file: string,
  size: number,
  pair: Pair,
): Promise<Measured> {
  await sync();
  const dir = await Deno.makeTempDir({ dir: base, prefix: "out-" });
  try {
    const r = await runPair({
      net,
      sender: pair.sender,
      receiver: pair.receiver,
      what: { path: file },
      dir,
      forceRelay: pair.forceRelay ?? true,
      receiverArgs: pair.receiverArgs,
      timeoutMs: RUN_TIMEOUT_MS,
    });
    if (!r.sender.success || !r.receiver.success) throw new Error(describePair(r));
    const got = (await Deno.stat(`${dir}/${file.slice(file.lastIndexOf("/") + 1)}`)).size;
    if (got !== size) throw new Error(`received ${got} bytes, expected ${size}`);
    const perGib = (cpu?: { user: number; system: number }) =>
      cpu === undefined ? undefined : (cpu.user + cpu.system) / (size / GIB);
    return {
      mbps: size / 1e6 / r.seconds,
      sendCpu: perGib(r.sender.cpu),
      recvCpu: perGib(r.receiver.cpu),
    };
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

function medianOf(values: (number | undefined)[]): number | undefined {
  const known = values.filter((v): v is number => v !== undefined);
  return known.length ? median(known) : undefined;
}

/** The rows of one size from the runs of every pair. */
function rowsFor(size: number, results: Map<string, PairRuns>, fsNote?: string): BenchRow[] {
  const what = `${size >= GIB ? `${size / GIB} GiB` : `${size / 1024 / 1024} MiB`}`;
  const get = (label: string) => results.get(label) ?? { runs: [], failures: 0, error: "not run" };
  const mbps = (label: string) => medianOf(get(label).runs.map((m) => m.mbps));
  const cpu = (label: string, side: "sendCpu" | "recvCpu") =>
    medianOf(get(label).runs.map((m) => m[side]));
  const pairOf = (label: string) => PAIRS.find((p) => p.label === label)!;
  const describe = (label: string) => {
    const r = get(label);
    if (r.error !== undefined && r.runs.length === 0) {
      return `${label} FAILED: ${r.error.split("\n").find((l) => l.trim()) ?? r.error}`;
    }
    const send = cpu(label, "sendCpu");
    const recv = cpu(label, "recvCpu");
    const runs = r.runs.map((m) => m.mbps.toFixed(0)).join("/");
    const cpus = MEASURES_CPU
      ? `, CPU s/GiB send ${send?.toFixed(2) ?? "-"} recv ${recv?.toFixed(2) ?? "-"}`
      : "";
    const failed = r.failures ? ` (${r.failures} failed run${r.failures > 1 ? "s" : ""})` : "";
    return `${label} [${pairOf(label).how}] runs ${runs} MB/s${cpus}${failed}`;
  };
  const sockitFailed = (label: string) => get(label).runs.length === 0;
  const throughput = (ours: string, peer: string, note?: string): BenchRow => ({
    scenario: `wormhole ${what}: ${ours}`,
    unit: "MB/s",
    sockit: mbps(ours) ?? 0,
    flags: pairOf(ours).flags,
    peerName: peer,
    peer: mbps(peer),
    higherIsBetter: true,
    failed: sockitFailed(ours),
    note: [note, describe(ours), describe(peer)].filter(Boolean).join("; "),
  });
  const cpuRow = (
    side: "sendCpu" | "recvCpu",
    ours: string,
    peer: string,
  ): BenchRow => ({
    scenario: `wormhole ${what}: CPU per GiB, ${side === "sendCpu" ? "sender" : "receiver"} ` +
      `(${ours})`,
    unit: "CPU s/GiB",
    sockit: cpu(ours, side) ?? 0,
    flags: pairOf(ours).flags,
    peerName: `${side === "sendCpu" ? "sender" : "receiver"} of ${peer}`,
    peer: cpu(peer, side),
    higherIsBetter: false,
    failed: sockitFailed(ours) || cpu(ours, side) === undefined,
    note: "user + system of that side, median",
  });
  return [
    throughput("sockit -> sockit", "python -> python", fsNote),
    throughput("sockit -> python", "python -> python"),
    throughput("python -> sockit", "python -> python"),
    throughput("sockit -> sockit direct", "william -> william"),
    throughput("sockit -> sockit", "python -> william"),
    ...(MEASURES_CPU
      ? [
        cpuRow("sendCpu", "sockit -> sockit", "python -> python"),
        cpuRow("recvCpu", "sockit -> sockit", "python -> python"),
        cpuRow("sendCpu", "sockit -> python", "python -> python"),
        cpuRow("recvCpu", "python -> sockit", "python -> python"),
        cpuRow("sendCpu", "sockit -> sockit direct", "william -> william"),
        cpuRow("recvCpu", "sockit -> sockit direct", "william -> william"),
      ]
      : []),
  ];
}

async function wormholeBench(): Promise<BenchRow[]> {
  const missing = missingNetns() ?? missingWormholeServers();
  if (missing) throw new Error(`cannot run the Wormhole pairs: ${missing}`);
  const hasPython = peerAvailable(PYTHON_WORMHOLE);
  const hasWilliam = peerAvailable(WORMHOLE_WILLIAM);
  const usable = PAIRS.filter((p) =>
    [p.sender, p.receiver].every((c) => c === "sockit" || (c === "python" ? hasPython : hasWilliam))
  );
  const { dir: base, fs } = await diskTempDir();
  try {
    await using net = await startWormholeNet();
    const rows: BenchRow[] = [];
    for (const size of SIZES) {
      const file = `${base}/random.bin`;
      console.error(`bench: wormhole: writing ${size / 1024 / 1024} MiB of random bytes...`);
      await randomFile(file, size);
      const results = new Map<string, PairRuns>();
      for (let run = 0; run < RUNS; run++) {
        const order = run % 2 === 0 ? usable : [...usable].reverse();
        for (const pair of order) {
          const entry = results.get(pair.label) ?? { runs: [], failures: 0 };
          results.set(pair.label, entry);
          // A failed run is tried again at once, until the pair has failed MAX_FAILURES times
          // (sockit before its code mode lands fails every time, and quickly).
          while (entry.failures < MAX_FAILURES) {
            try {
              entry.runs.push(await runOnce(net, base, file, size, pair));
              break;
            } catch (error) {
              entry.failures++;
              entry.error = error instanceof Error ? error.message : String(error);
              console.error(`bench: wormhole ${pair.label} failed: ${entry.error.slice(0, 2000)}`);
            }
          }
        }
      }
      const sodium = nativeSodium();
      const ciphers = sodium === null
        ? "sockit's record ciphers in JavaScript (no ffi permission or no libsodium)"
        : `sockit's record ciphers on ${sodium.library}`;
      const note = size === SIZES[0] ? `files on ${fs}; ${ciphers}` : undefined;
      rows.push(...rowsFor(size, results, note));
      await Deno.remove(file);
    }
    return rows;
  } finally {
    await Deno.remove(base, { recursive: true });
  }
}

/** The Wormhole scenario: `wormhole` (256 MiB and 1 GiB through the local transit relay). */
export const scenarios: Scenario[] = [{ name: "wormhole", run: wormholeBench }];
