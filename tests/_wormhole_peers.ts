/**
 * The Wormhole interop scenario runner, shared by `tests/wormhole_interop_test.ts` and
 * `bench/wormhole.ts`: one sender and one receiver, each sockit, the Python `wormhole` (Debian
 * magic-wormhole) or `wormhole-william`, started inside a private network namespace
 * ({@linkcode startWormholeNet}: the Debian mailbox on 127.0.0.1:4000 and transit relay on
 * 127.0.0.1:4001, the public servers' names mapped to 127.0.0.1), so that no test traffic
 * leaves the namespace and nothing touches this machine's real addresses.
 *
 * ```text
 *  netns sockit-PID-N (lo, veth 198.18.0.1, its own /etc/hosts)
 *    twist3 wormhole-mailbox 127.0.0.1:4000    relay.magic-wormhole.io   -> 127.0.0.1
 *    twist3 transitrelay     127.0.0.1:4001    transit.magic-wormhole.io -> 127.0.0.1
 *    time CLIENT send ...   <-- mailbox, transit -->   time CLIENT receive ...
 * ```
 *
 * The command lines, per client and role (`U` the mailbox, `T` the relay; the receiver's
 * working folder is its output folder DIR; `CODE` is fixed per scenario unless the receiver
 * reads the one the sender printed; sockit takes it from `SOCKIT_CODE` unless told otherwise):
 *
 * - sockit: `deno run -A --cached-only main.ts send [--force-relay] [--mailbox U --transit T]
 *   PATH` and `... recv --yes --dir DIR [--mailbox U --transit T] [CODE]`;
 * - Python: `wormhole --relay-url U --transit-helper tcp:T send --hide-progress [--no-listen]
 *   --code CODE PATH` and `... receive --hide-progress [--no-listen] --accept-file CODE`;
 * - Go: `wormhole-william send --relay-url U --hide-progress --code CODE PATH` and
 *   `wormhole-william receive --relay-url U --hide-progress CODE`, with `y` on its stdin for
 *   its "ok? (y/N)".
 *
 * `--text MSG` replaces PATH for a text. wormhole-william has no transit option nor a way to
 * refuse direct connections: it uses transit.magic-wormhole.io:4001, which the namespace's
 * hosts file points at the local relay.
 *
 * **CPU seconds.** `Deno.ChildProcess` reports no resource usage, so where GNU time is
 * installed ({@linkcode TIME_PROGRAM}) every client runs as `/usr/bin/time -f "%e %U %S" -o
 * FILE CLIENT...`: time waits for the client with `wait4`, so user and system seconds cover
 * all of the client's threads (and any children it waited for), also when it was killed.
 * Without GNU time {@linkcode SideResult.cpu} is undefined. Reading `/proc/PID/stat` at exit
 * was rejected: the numbers vanish when the process is reaped, which races with the runtime.
 *
 * **Stopping.** A scenario ends when both sides have exited. When one side fails, the other
 * gets {@linkcode PEER_GRACE_MS} to notice and is then killed (so a peer left waiting for a
 * sockit that failed at once does not hold the scenario until its timeout); at the timeout
 * both are killed and {@linkcode ScenarioTimeoutError} carries both logs. Killing signals the
 * processes below the one spawned (`ip netns exec` execs `time`, which forks the client):
 * signalling only the first would leave the client running in the namespace, and `time`
 * survives to report the killed client's CPU seconds.
 *
 * @module
 */

import { createNetns, type Netns } from "./_netns.ts";
import { startMailbox, startTransitRelay, type WormholeServer } from "./_wormhole.ts";
import { MAIN, ROOT } from "./_helpers.ts";
import { DEADLINES } from "../lib/net/deadline.ts";
import { EVEN_WORDS, ODD_WORDS } from "../lib/wormhole/code.ts";
import { WORMHOLE_ENV } from "../lib/wormhole/options.ts";

/** The clients a scenario can run on either side. */
export type WormholeClient = "sockit" | "python" | "william";

/** The side of a transfer a client plays. */
export type Role = "send" | "receive";

/** What the sender sends: a file or folder, or a text message. */
export type Payload = { path: string } | { text: string };

/** The ports of the public servers, which the servers use inside a namespace. */
export const PUBLIC_PORTS = {
  /** The mailbox (relay.magic-wormhole.io:4000). */
  mailbox: 4000,
  /** The transit relay (transit.magic-wormhole.io:4001). */
  transitRelay: 4001,
} as const;

/** The mailbox URL inside a namespace (what sockit's default resolves to there). */
export const NETNS_MAILBOX_URL = `ws://127.0.0.1:${PUBLIC_PORTS.mailbox}/v1`;
/** The transit relay inside a namespace, as sockit's `--transit` takes it. */
export const NETNS_TRANSIT = `127.0.0.1:${PUBLIC_PORTS.transitRelay}`;

/** Longest a whole scenario may run before both sides are killed, in ms. */
export const SCENARIO_TIMEOUT_MS = 60_000;
/** How long the other side may still run once one side failed, in ms. */
export const PEER_GRACE_MS = 5_000;
/** GNU time, which measures each client's CPU seconds when installed. */
export const TIME_PROGRAM = "/usr/bin/time";
/** The Python client (Debian magic-wormhole). */
export const PYTHON_WORMHOLE = "wormhole";
/** The Go client. */
export const WORMHOLE_WILLIAM = "wormhole-william";

/** True when GNU time is installed, so that {@linkcode SideResult.cpu} is measured. */
export const MEASURES_CPU: boolean = (() => {
  try {
    return Deno.statSync(TIME_PROGRAM).isFile;
  } catch {
    return false;
  }
})();
const HAS_TIME = MEASURES_CPU;

const decoder = new TextDecoder();

/** A scenario ran past its timeout; the message holds what both sides had written. */
export class ScenarioTimeoutError extends Error {
  /** `what` names the scenario; `logs` is what both sides wrote. */
  constructor(what: string, timeoutMs: number, logs: string) {
    super(`Timed out after ${timeoutMs} ms waiting for ${what}; both sides killed\n${logs}`);
    this.name = "ScenarioTimeoutError";
  }
}

/** The sender ended before it printed a code for the receiver to read. */
export class NoCodeError extends Error {
  /** `logs` is what the sender wrote. */
  constructor(logs: string) {
    super(`Cannot start the receiver: the sender printed no code\n${logs}`);
    this.name = "NoCodeError";
  }
}

// ---------------------------------------------------------------------------------------------
// The namespace with both servers

/** Options of {@linkcode startWormholeNet}. */
export interface WormholeNetOptions {
  /** Start the mailbox server on port 4000. @default {true} */
  mailbox?: boolean;
  /** Start the transit relay on port 4001. @default {true} */
  transitRelay?: boolean;
  /**
   * Limit the namespace's loopback to this many Mbit/s (a `tc` token bucket), so that a test
   * can act in the middle of a transfer. @default {undefined: no limit}
   */
  rateMbit?: number;
}

/** A namespace with the Wormhole servers, made by {@linkcode startWormholeNet}. */
export interface WormholeNet extends AsyncDisposable {
  /** The namespace every client of a scenario runs in. */
  netns: Netns;
  /** The mailbox server, when started. */
  mailbox?: WormholeServer;
  /** The transit relay, when started. */
  transitRelay?: WormholeServer;
}

/**
 * Makes a namespace and starts the servers asked for in it, on the public ports. Everything is
 * stopped and deleted on dispose (and when a server fails to start).
 */
export async function startWormholeNet(options: WormholeNetOptions = {}): Promise<WormholeNet> {
  const netns = createNetns();
  const started: WormholeServer[] = [];
  const stop = async () => {
    for (const s of started) {
      try {
        await s[Symbol.asyncDispose]();
      } catch {
        // Stopping the rest matters more.
      }
    }
    await netns[Symbol.asyncDispose]();
  };
  try {
    if (options.rateMbit !== undefined) {
      const mbit = options.rateMbit;
      const out = await netns.command("tc", {
        // A burst above lo's 64 KiB MTU, so that every packet fits.
        args: ["qdisc", "add", "dev", "lo", "root", "tbf", "rate", `${mbit}mbit`, "burst", "256kb"]
          .concat(["latency", "200ms"]),
        stdout: "null",
        stderr: "piped",
      }).output();
      if (!out.success) throw new Error(`tc failed: ${decoder.decode(out.stderr).trim()}`);
    }
    const [mailbox, transitRelay] = await Promise.all([
      options.mailbox === false ? undefined : startMailbox({ netns, port: PUBLIC_PORTS.mailbox })
        .then((s) => (started.push(s), s)),
      options.transitRelay === false
        ? undefined
        : startTransitRelay({ netns, port: PUBLIC_PORTS.transitRelay })
          .then((s) => (started.push(s), s)),
    ]);
    return { netns, mailbox, transitRelay, [Symbol.asyncDispose]: stop };
  } catch (error) {
    await stop();
    throw error;
  }
}

// ---------------------------------------------------------------------------------------------
// Codes and sockit's module cache

let nameplate = 6;

/**
 * A code no other scenario of this process uses (its own nameplate, so scenarios can share a
 * mailbox): `7-guitarist-revenge`, `8-...`, in the clients' NAMEPLATE-ODDWORD-EVENWORD form.
 */
export function freshCode(): string {
  const n = ++nameplate;
  return `${n}-${ODD_WORDS[(n * 37 + 105) % 256]}-${EVEN_WORDS[(n * 53 + 169) % 256]}`;
}

/** The same nameplate as `code` with other words: the mailbox pairs them, the PAKE fails. */
export function wrongCode(code: string): string {
  const [np, odd, even] = code.split("-");
  const other = (list: readonly string[], w: string) => list[(list.indexOf(w) + 1) % list.length];
  return `${np}-${other(ODD_WORDS, odd)}-${other(EVEN_WORDS, even)}`;
}

let cached: Promise<void> | undefined;

/**
 * Runs `deno cache main.ts` once per process (outside any namespace), so that sockit started
 * inside one, which has no route to the npm registry, finds every dependency cached.
 */
export function cacheSockit(): Promise<void> {
  cached ??= (async () => {
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["cache", MAIN],
      cwd: ROOT,
      stdout: "null",
      stderr: "piped",
    }).output();
    if (!out.success) {
      throw new Error(`deno cache main.ts failed: ${decoder.decode(out.stderr).trim()}`);
    }
  })();
  return cached;
}

// ---------------------------------------------------------------------------------------------
// One side

/** How one client is started by {@linkcode spawnSide}. */
export interface SideSpec {
  /** Which client. */
  client: WormholeClient;
  /** Sender or receiver. */
  role: Role;
  /** What to send (senders only). */
  what?: Payload;
  /** The code. A sender without one has one made and prints it; a receiver needs one. */
  code?: string;
  /**
   * Where the folder the receiver writes into (and every client's working folder: the Python
   * and Go receivers write into it).
   */
  dir: string;
  /** How a sockit receiver gets the code: `SOCKIT_CODE` or its argument. @default {"env"} */
  codeVia?: "env" | "argv";
  /** Relay only: sockit `send --force-relay`, Python `--no-listen`; Go cannot. */
  forceRelay?: boolean;
  /** Give sockit `--mailbox` and `--transit` for the namespace's servers (else its defaults). */
  explicitServers?: boolean;
  /** More arguments for a sockit side (`--json`). */
  sockitArgs?: string[];
  /** Run GNU time around the client into this file (when installed). */
  timeFile?: string;
}

/** How one side ended. */
export interface SideResult {
  /** The client. */
  client: WormholeClient;
  /** Its role. */
  role: Role;
  /** The command line inside the namespace (without `ip netns exec` and `time`). */
  argv: string[];
  /** Exit code (128 + N when killed by signal N). */
  code: number;
  /** The signal that ended it, if one did. */
  signal: Deno.Signal | null;
  /** Exit code 0. */
  success: boolean;
  /** Everything it wrote to stdout. */
  stdout: string;
  /** Everything it wrote to stderr. */
  stderr: string;
  /** Wall seconds from spawning to its exit. */
  seconds: number;
  /** User and system CPU seconds of the client (GNU time), when measured. */
  cpu?: { user: number; system: number };
  /** True when the runner killed it (interrupt, a failed peer, the timeout). */
  killed: boolean;
}

/** Text written by a process so far, with a way to wait for a pattern in it. */
export class OutputCapture {
  /** Everything so far. */
  text = "";
  #waiters: { re: RegExp; resolve: (m: RegExpMatchArray | null) => void }[] = [];
  #ended = false;

  /** Appends a chunk and wakes the waiters it satisfies. */
  push(chunk: string): void {
    this.text += chunk;
    this.#waiters = this.#waiters.filter((w) => {
      const m = this.text.match(w.re);
      if (m) w.resolve(m);
      return !m;
    });
  }

  /** The stream ended: pending waiters resolve null. */
  end(): void {
    this.#ended = true;
    for (const w of this.#waiters.splice(0)) w.resolve(null);
  }

  /** Resolves the first match of `re` in the output, or null if the stream ends without one. */
  match(re: RegExp): Promise<RegExpMatchArray | null> {
    const m = this.text.match(re);
    if (m || this.#ended) return Promise.resolve(m);
    return new Promise((resolve) => this.#waiters.push({ re, resolve }));
  }
}

/** A client started by {@linkcode spawnSide}. */
export interface RunningSide {
  /** The client. */
  client: WormholeClient;
  /** Its role. */
  role: Role;
  /** Its command line inside the namespace. */
  argv: string[];
  /** Its stdout so far. */
  stdout: OutputCapture;
  /** Its stderr so far. */
  stderr: OutputCapture;
  /** Kills the client's whole process tree (idempotent). */
  kill(signal?: Deno.Signal): void;
  /** Resolves when it exited and its output is read. */
  done: Promise<SideResult>;
}

/** Reads `/proc` once: the descendants of `pid` (children first seen, breadth first). */
function descendants(pid: number): number[] {
  const children = new Map<number, number[]>();
  for (const entry of Deno.readDirSync("/proc")) {
    if (!/^\d+$/.test(entry.name)) continue;
    try {
      const stat = Deno.readTextFileSync(`/proc/${entry.name}/stat`);
      // pid (comm) state ppid ...: comm may hold spaces and parentheses.
      const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
      const list = children.get(ppid) ?? [];
      list.push(Number(entry.name));
      children.set(ppid, list);
    } catch {
      // It exited meanwhile.
    }
  }
  const out: number[] = [];
  const queue = [pid];
  while (queue.length) {
    for (const c of children.get(queue.shift()!) ?? []) {
      out.push(c);
      queue.push(c);
    }
  }
  return out;
}

/**
 * Signals every process below `pid` (the client under `ip netns exec` and `time`), or `pid`
 * itself when it has none: `time` stays alive to reap the client and write its CPU seconds.
 */
function killTree(pid: number, signal: Deno.Signal): void {
  const below = descendants(pid);
  for (const p of below.length ? below.reverse() : [pid]) {
    try {
      Deno.kill(p, signal);
    } catch {
      // Already gone.
    }
  }
}

/** A client's command line, its environment and what it reads on stdin. */
interface ClientCommand {
  argv: string[];
  env: Record<string, string>;
  stdin?: string;
}

/** The command line of `spec` (the table in the module doc). */
function clientCommand(spec: SideSpec): ClientCommand {
  const { what, code } = spec;
  const sending = spec.role === "send";
  if (sending && what === undefined) throw new Error("a sender needs `what`");
  if (!sending && code === undefined) throw new Error("a receiver needs a code");
  /** PATH, or the text after the client's `--text`. */
  const payload = what === undefined ? [] : "text" in what ? ["--text", what.text] : [what.path];
  switch (spec.client) {
    case "sockit": {
      const env: Record<string, string> = {};
      const argv = [Deno.execPath(), "run", "-A", "--cached-only", MAIN, sending ? "send" : "recv"];
      if (sending && spec.forceRelay) argv.push("--force-relay");
      if (!sending) argv.push("--yes", "--dir", spec.dir);
      if (spec.explicitServers) {
        argv.push("--mailbox", NETNS_MAILBOX_URL, "--transit", NETNS_TRANSIT);
      }
      argv.push(...(spec.sockitArgs ?? []));
      if (sending) argv.push(...payload);
      if (!sending && spec.codeVia === "argv") argv.push(code!);
      else if (code !== undefined) env[WORMHOLE_ENV.code] = code;
      return { argv, env };
    }
    case "python": {
      const argv = [PYTHON_WORMHOLE, "--relay-url", NETNS_MAILBOX_URL];
      argv.push("--transit-helper", `tcp:${NETNS_TRANSIT}`);
      argv.push(sending ? "send" : "receive", "--hide-progress");
      if (spec.forceRelay) argv.push("--no-listen");
      if (sending) argv.push(...(code === undefined ? [] : ["--code", code]), ...payload);
      else argv.push("--accept-file", code!);
      return { argv, env: {} };
    }
    case "william": {
      const argv = [
        WORMHOLE_WILLIAM,
        sending ? "send" : "receive",
        "--relay-url",
        NETNS_MAILBOX_URL,
      ];
      argv.push("--hide-progress");
      if (sending) argv.push(...(code === undefined ? [] : ["--code", code]), ...payload);
      else argv.push(code!);
      // The receiver asks "ok? (y/N)" before it writes a file or folder.
      return { argv, env: {}, stdin: sending ? undefined : "y\n" };
    }
  }
}

async function readCpu(file: string): Promise<{ user: number; system: number } | undefined> {
  try {
    // GNU time may put "Command exited with non-zero status N" before the format line.
    const lines = (await Deno.readTextFile(file)).trim().split("\n");
    const [, user, system] = lines[lines.length - 1].trim().split(/\s+/).map(Number);
    return Number.isFinite(user) && Number.isFinite(system) ? { user, system } : undefined;
  } catch {
    return undefined;
  }
}

async function pump(stream: ReadableStream<Uint8Array>, into: OutputCapture): Promise<void> {
  try {
    for await (const chunk of stream.pipeThrough(new TextDecoderStream())) into.push(chunk);
  } finally {
    into.end();
  }
}

/** Starts one client inside `net`'s namespace; see the module doc for its command line. */
export async function spawnSide(net: WormholeNet, spec: SideSpec): Promise<RunningSide> {
  if (spec.client === "sockit") await cacheSockit();
  const { argv, env, stdin } = clientCommand(spec);
  const timed = HAS_TIME && spec.timeFile
    ? [TIME_PROGRAM, "-f", "%e %U %S", "-o", spec.timeFile, ...argv]
    : argv;
  const started = performance.now();
  const child = net.netns.command(timed[0], {
    args: timed.slice(1),
    cwd: spec.dir,
    env,
    stdin: stdin === undefined ? "null" : "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  if (stdin !== undefined) {
    const w = child.stdin.getWriter();
    w.write(new TextEncoder().encode(stdin)).then(() => w.close()).catch(() => {});
  }
  const stdout = new OutputCapture();
  const stderr = new OutputCapture();
  const pumps = Promise.all([pump(child.stdout, stdout), pump(child.stderr, stderr)]);
  let killed = false;
  let exited = false;
  const done = (async (): Promise<SideResult> => {
    const status = await child.status;
    exited = true;
    const seconds = (performance.now() - started) / 1000;
    await pumps.catch(() => {});
    // time reports "killed by signal N" as its own exit status 128 + N; our kill is known.
    return {
      client: spec.client,
      role: spec.role,
      argv,
      code: status.code,
      signal: status.signal,
      success: status.success,
      stdout: stdout.text,
      stderr: stderr.text,
      seconds,
      cpu: HAS_TIME && spec.timeFile ? await readCpu(spec.timeFile) : undefined,
      killed,
    };
  })();
  return {
    client: spec.client,
    role: spec.role,
    argv,
    stdout,
    stderr,
    kill(signal: Deno.Signal = "SIGKILL") {
      // After the exit the pid may belong to someone else.
      if (exited) return;
      killed = true;
      killTree(child.pid, signal);
    },
    done,
  };
}

// ---------------------------------------------------------------------------------------------
// A pair

/** Both sides while they run, for {@linkcode PairOptions.interrupt}. */
export interface RunningPair {
  /** The sender. */
  sender: RunningSide;
  /** The receiver. */
  receiver: RunningSide;
}

/** Options of {@linkcode runPair}. */
export interface PairOptions {
  /** The namespace with the servers. @default {a fresh one with both servers, for this pair} */
  net?: WormholeNet;
  /** The sending client. */
  sender: WormholeClient;
  /** The receiving client. */
  receiver: WormholeClient;
  /** What is sent. */
  what: Payload;
  /** The (empty) folder the receiver writes into; the other clients' working folder too. */
  dir: string;
  /**
   * The code both sides are given, or `"printed"`: the sender gets none, has one allocated,
   * and the receiver is started with the one it printed (sockit's `{"event":"code"}` with
   * `--json`, else any client's `Wormhole code is: CODE`). @default {freshCode()}
   */
  code?: string | "printed";
  /** A different code for the receiver (wrong-code scenarios). @default {code} */
  receiverCode?: string;
  /** How a sockit receiver gets the code. @default {"env"} */
  receiverCodeVia?: "env" | "argv";
  /** Relay only, where the client can: sockit `--force-relay`, Python `--no-listen` (both). */
  forceRelay?: boolean;
  /** Give sockit explicit `--mailbox`/`--transit` (else its built-in defaults). */
  explicitServers?: boolean;
  /** More arguments for a sockit sender (`--json`). */
  senderArgs?: string[];
  /** More arguments for a sockit receiver. */
  receiverArgs?: string[];
  /** Kill the whole scenario after this long, in ms. @default {SCENARIO_TIMEOUT_MS} */
  timeoutMs?: number;
  /** How long a side may run on after the other failed, in ms. @default {PEER_GRACE_MS} */
  peerGraceMs?: number;
  /** Kill `side` (SIGKILL, whole tree) when `when` resolves; the other side gets the grace. */
  interrupt?: { side: "sender" | "receiver"; when: (pair: RunningPair) => Promise<unknown> };
}

/** How a pair went: both sides and the code they used. */
export interface PairResult {
  /** The code the sender used (the printed one with `code: "printed"`). */
  code: string;
  /** The sender's result. */
  sender: SideResult;
  /** The receiver's result. */
  receiver: SideResult;
  /** Wall seconds from starting the first side to the last exit. */
  seconds: number;
}

/** Both sides' command lines, exit status and output, for an assertion message. */
export function describePair(result: { sender: SideResult; receiver: SideResult }): string {
  return [result.sender, result.receiver].map(describeSide).join("\n");
}

/** One side's command line, exit status and output, for an assertion message. */
export function describeSide(side: SideResult): string {
  const how = side.signal ? `killed by ${side.signal}` : `exit ${side.code}`;
  return `--- ${side.role} ${side.client} (${how}${side.killed ? ", killed by the runner" : ""}, ` +
    `${side.seconds.toFixed(2)} s): ${side.argv.join(" ")}\n` +
    `stdout:\n${side.stdout.trimEnd()}\nstderr:\n${side.stderr.trimEnd()}`;
}

/** The first match of `re` in any of `outputs`, or null once all of them ended without one. */
function firstMatch(outputs: OutputCapture[], re: RegExp): Promise<RegExpMatchArray | null> {
  return new Promise((resolve) => {
    let pending = outputs.length;
    for (const o of outputs) {
      o.match(re).then((m) => {
        if (m) resolve(m);
        else if (--pending === 0) resolve(null);
      });
    }
  });
}

/** The code a sender printed: sockit's JSON code event or any client's "Wormhole code is:". */
const PRINTED_CODE = /"event":"code","code":"([^"]+)"|Wormhole code is:?\s*(\S+)/;

/**
 * Runs one transfer: starts the receiver (or, with `code: "printed"`, the sender first), waits
 * for both to exit, and returns both results. Throws {@linkcode ScenarioTimeoutError} (both
 * logs in the message) when the scenario outlives `timeoutMs`; a failed side is a result, not
 * an error.
 *
 * @example Python sends a text to wormhole-william (needs root and the clients)
 * ```ts ignore
 * import { runPair } from "./_wormhole_peers.ts";
 * const dir = await Deno.makeTempDir();
 * const r = await runPair({ sender: "python", receiver: "william", what: { text: "hi" }, dir });
 * console.log(r.receiver.stdout); // "hi\n"
 * ```
 */
export async function runPair(options: PairOptions): Promise<PairResult> {
  if (options.net === undefined) {
    await using net = await startWormholeNet();
    return await runPair({ ...options, net });
  }
  const net = options.net;
  const printed = options.code === "printed";
  let code = printed ? undefined : options.code ?? freshCode();
  const scratch = await Deno.makeTempDir({ prefix: "sockit-wormhole-pair-" });
  const timeoutMs = options.timeoutMs ?? SCENARIO_TIMEOUT_MS;
  const graceMs = options.peerGraceMs ?? PEER_GRACE_MS;
  const sides: RunningSide[] = [];
  let timedOut = false;
  const cancelTimeout = DEADLINES.after(timeoutMs, () => {
    timedOut = true;
    for (const s of sides) s.kill();
  });
  const started = performance.now();
  try {
    const common = {
      dir: options.dir,
      forceRelay: options.forceRelay,
      explicitServers: options.explicitServers,
    };
    const spawnReceiver = (c: string) =>
      spawnSide(net, {
        ...common,
        client: options.receiver,
        role: "receive",
        code: options.receiverCode ?? c,
        codeVia: options.receiverCodeVia,
        sockitArgs: options.receiverArgs,
        timeFile: `${scratch}/receive.time`,
      });
    const spawnSender = (c: string | undefined) =>
      spawnSide(net, {
        ...common,
        client: options.sender,
        role: "send",
        what: options.what,
        code: c,
        sockitArgs: options.senderArgs,
        timeFile: `${scratch}/send.time`,
      });
    let sender: RunningSide;
    let receiver: RunningSide;
    if (printed) {
      sender = await spawnSender(undefined);
      sides.push(sender);
      const m = await firstMatch([sender.stdout, sender.stderr], PRINTED_CODE);
      if (!m) {
        sender.kill();
        const result = await sender.done;
        if (timedOut) {
          throw new ScenarioTimeoutError("the sender's code", timeoutMs, describeSide(result));
        }
        throw new NoCodeError(describeSide(result));
      }
      code = m[1] ?? m[2];
      receiver = await spawnReceiver(code);
      sides.push(receiver);
    } else {
      receiver = await spawnReceiver(code!);
      sides.push(receiver);
      sender = await spawnSender(code);
      sides.push(sender);
    }
    const pair = { sender, receiver };
    // A side that fails leaves the other PEER_GRACE_MS to end on its own.
    const watch = async (a: RunningSide, b: RunningSide) => {
      const r = await a.done;
      if (r.success) return;
      const cancel = DEADLINES.after(graceMs, () => b.kill());
      await b.done;
      cancel();
    };
    const interrupt = options.interrupt;
    if (interrupt) {
      const victim = pair[interrupt.side];
      Promise.race([interrupt.when(pair), victim.done]).then(() => victim.kill()).catch(() =>
        victim.kill()
      );
    }
    await Promise.all([watch(sender, receiver), watch(receiver, sender)]);
    const [s, r] = await Promise.all([sender.done, receiver.done]);
    if (timedOut) {
      throw new ScenarioTimeoutError(
        `${options.sender} -> ${options.receiver}`,
        timeoutMs,
        describePair({ sender: s, receiver: r }),
      );
    }
    return { code: code!, sender: s, receiver: r, seconds: (performance.now() - started) / 1000 };
  } catch (error) {
    for (const s of sides) s.kill();
    await Promise.all(sides.map((s) => s.done));
    throw error;
  } finally {
    cancelTimeout();
    await Deno.remove(scratch, { recursive: true });
  }
}

/**
 * Runs one side alone (the other never comes: an unreachable server, say), within
 * `timeoutMs`; throws {@linkcode ScenarioTimeoutError} with its log when it outlives it.
 */
export async function runAlone(
  net: WormholeNet,
  spec: Omit<SideSpec, "timeFile">,
  timeoutMs = SCENARIO_TIMEOUT_MS,
): Promise<SideResult> {
  const side = await spawnSide(net, spec);
  let timedOut = false;
  const cancel = DEADLINES.after(timeoutMs, () => {
    timedOut = true;
    side.kill();
  });
  const result = await side.done;
  cancel();
  if (timedOut) {
    throw new ScenarioTimeoutError(
      `${spec.client} ${spec.role} alone`,
      timeoutMs,
      describeSide(result),
    );
  }
  return result;
}

// ---------------------------------------------------------------------------------------------
// Comparing what arrived

/** One entry of a tree as {@linkcode describeTree} lists it. */
export interface TreeEntry {
  /** Path below the root, `/`-separated; `""` for the root itself. */
  path: string;
  /** What it is. */
  kind: "file" | "dir" | "symlink";
  /** Size in bytes (files), else 0. */
  size: number;
  /** SHA-256 of the contents in hex (files), else "". */
  sha256: string;
}

async function sha256File(path: string): Promise<string> {
  const { createHash } = await import("node:crypto");
  const hash = createHash("sha256");
  using file = await Deno.open(path);
  for await (const chunk of file.readable) hash.update(chunk);
  return hash.digest("hex");
}

/**
 * Every entry at and below `root` (not following links), sorted by path: names, kinds, sizes
 * and SHA-256 of the contents, so that two trees compare equal with `deepEqual` exactly when
 * they hold the same names, folders and bytes.
 */
export async function describeTree(root: string): Promise<TreeEntry[]> {
  const out: TreeEntry[] = [];
  const visit = async (rel: string) => {
    const path = rel === "" ? root : `${root}/${rel}`;
    const info = await Deno.lstat(path);
    if (info.isSymlink) {
      out.push({ path: rel, kind: "symlink", size: 0, sha256: "" });
    } else if (info.isFile) {
      out.push({ path: rel, kind: "file", size: info.size, sha256: await sha256File(path) });
    } else {
      out.push({ path: rel, kind: "dir", size: 0, sha256: "" });
      for await (const e of Deno.readDir(path)) {
        await visit(rel === "" ? e.name : `${rel}/${e.name}`);
      }
    }
  };
  await visit("");
  return out.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
}

/** `entries` without the folders that hold nothing but (recursively) empty folders. */
export function withoutEmptyFolders(entries: TreeEntry[]): TreeEntry[] {
  const keep = new Set(
    entries.filter((e) => e.kind !== "dir").flatMap((e) => {
      const parts = e.path.split("/");
      return parts.map((_, i) => parts.slice(0, i + 1).join("/"));
    }),
  );
  return entries.filter((e) => e.path === "" || keep.has(e.path));
}

/** The names in `dir` (one level), sorted. */
export async function listDir(dir: string): Promise<string[]> {
  const names: string[] = [];
  for await (const e of Deno.readDir(dir)) names.push(e.name);
  return names.sort();
}

/** The JSON lines of `stdout` (sockit `--json`), other lines skipped. */
export function jsonEvents(stdout: string): Record<string, unknown>[] {
  return stdout.split("\n").flatMap((line) => {
    if (!line.startsWith("{")) return [];
    try {
      return [JSON.parse(line)];
    } catch {
      return [];
    }
  });
}
