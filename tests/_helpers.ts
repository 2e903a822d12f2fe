/**
 * The helpers shared by tests and benchmarks (the one place for both): start a sockit command
 * as a real process and wait for its ready line, run a command to completion, line clients
 * over real loopback sockets, free ports, and skipping of tests whose Debian peer (ncat,
 * socat, curl...) is not installed. Tests never import from bench/.
 *
 * @module
 */

import { BufferedReader } from "../lib/net/buffered_reader.ts";
import { withTimeout } from "../lib/net/deadline.ts";
import { writeAll } from "../lib/net/write_all.ts";
import { Logger } from "../lib/log.ts";

/** Root folder of the project. */
export const ROOT: string = new URL("..", import.meta.url).pathname;
/** main.ts, for spawning sockit. */
export const MAIN: string = new URL("../main.ts", import.meta.url).pathname;
/** Default wait for any single event in a test, in ms. */
export const EVENT_TIMEOUT_MS = 10_000;

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** Deno permissions of a sockit run without `--allow-ffi` (the portable fallbacks). */
export const PERMISSIONS_WITHOUT_FFI: readonly string[] = [
  "--allow-net",
  "--allow-read",
  "--allow-env",
  "--allow-sys",
];

/** True when `name` is an executable on PATH. */
export function hasCommand(name: string): boolean {
  for (const dir of (Deno.env.get("PATH") ?? "").split(":")) {
    try {
      const info = Deno.statSync(`${dir}/${name}`);
      if (info.isFile && ((info.mode ?? 0o111) & 0o111) !== 0) return true;
    } catch {
      // Not in this folder.
    }
  }
  return false;
}

/**
 * Registers a test that needs the external program `peer` (or each of several); where one is
 * missing the test is skipped and its name says which.
 */
export function peerTest(
  peer: string | string[],
  test: { name: string; fn: () => Promise<void> },
): void {
  const missing = (typeof peer === "string" ? [peer] : peer).filter((p) => !hasCommand(p));
  Deno.test({
    name: missing.length === 0
      ? test.name
      : `${test.name} (skipped: ${missing.join(", ")} ${
        missing.length === 1 ? "is" : "are"
      } not installed)`,
    ignore: missing.length > 0,
    fn: test.fn,
  });
}

/** Lines a process wrote to stderr, with a way to wait for one. */
class LineLog {
  lines: string[] = [];
  #waiters: { re: RegExp; resolve: (m: RegExpMatchArray) => void }[] = [];
  #ended = false;
  #endWaiters: (() => void)[] = [];

  push(line: string): void {
    this.lines.push(line);
    this.#waiters = this.#waiters.filter((w) => {
      const m = line.match(w.re);
      if (m) w.resolve(m);
      return !m;
    });
  }

  end(): void {
    this.#ended = true;
    this.#endWaiters.forEach((r) => r());
  }

  wait(re: RegExp, timeoutMs: number, what: string): Promise<RegExpMatchArray> {
    for (const line of this.lines) {
      const m = line.match(re);
      if (m) return Promise.resolve(m);
    }
    const p = new Promise<RegExpMatchArray>((resolve, reject) => {
      this.#waiters.push({ re, resolve });
      const fail = () =>
        reject(new Error(`process ended before ${what}:\n${this.lines.join("\n")}`));
      if (this.#ended) fail();
      else this.#endWaiters.push(fail);
    });
    return withTimeout(p, timeoutMs, { what: `${what} (log so far:\n${this.lines.join("\n")})` });
  }
}

async function pumpLines(stream: ReadableStream<Uint8Array>, log: LineLog): Promise<void> {
  let pending = "";
  for await (const chunk of stream.pipeThrough(new TextDecoderStream())) {
    pending += chunk;
    let i;
    while ((i = pending.indexOf("\n")) >= 0) {
      log.push(pending.slice(0, i));
      pending = pending.slice(i + 1);
    }
  }
  if (pending) log.push(pending);
  log.end();
}

/** A sockit process started by {@linkcode startSockit}. */
export interface SockitProcess extends AsyncDisposable {
  /** The child process. */
  child: Deno.ChildProcess;
  /** Host from the ready line. */
  hostname: string;
  /** Port from the ready line. */
  port: number;
  /** stderr lines so far. */
  stderr: string[];
  /** stdout lines so far. */
  stdout: string[];
  /** Waits for a stderr line matching `re`. */
  waitForStderr(re: RegExp, timeoutMs?: number): Promise<RegExpMatchArray>;
  /** Waits for a stdout line matching `re`. */
  waitForStdout(re: RegExp, timeoutMs?: number): Promise<RegExpMatchArray>;
  /** Writes to the process's stdin (when started with `stdin: true`). */
  write(text: string | Uint8Array): Promise<void>;
  /** Closes the process's stdin. */
  closeStdin(): Promise<void>;
  /** Sends a signal and resolves the exit status. */
  stop(signal?: Deno.Signal): Promise<Deno.CommandStatus>;
  /** Resolves the exit status. */
  status: Promise<Deno.CommandStatus>;
}

/**
 * Spawns `sockit ARGS...` and waits for a `listening on HOST:PORT` line on stderr (unless
 * `ready: false`). The process is killed on dispose.
 */
export async function startSockit(
  args: string[],
  options: {
    ready?: boolean;
    stdin?: boolean;
    timeoutMs?: number;
    /** Run under this open-file limit (`ulimit -n`, through bash). */
    fdLimit?: number;
    /** Extra environment variables (a code in `SOCKIT_CODE`, servers). */
    env?: Record<string, string>;
    /** Deno permission flags instead of `--allow-all` (a run without `--allow-ffi`, say). */
    permissions?: string[];
  } = {},
): Promise<SockitProcess> {
  const argv = [Deno.execPath(), "run", ...(options.permissions ?? ["--allow-all"]), MAIN, ...args];
  const [program, ...programArgs] = options.fdLimit === undefined
    ? argv
    : ["bash", "-c", `ulimit -n ${options.fdLimit} && exec "$@"`, "bash", ...argv];
  const child = new Deno.Command(program, {
    args: programArgs,
    cwd: ROOT,
    env: options.env,
    stdin: options.stdin ? "piped" : "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const err = new LineLog();
  const out = new LineLog();
  const pumps = Promise.all([pumpLines(child.stderr, err), pumpLines(child.stdout, out)]);
  const status = child.status.then(async (s) => {
    await pumps;
    return s;
  });
  const stdinWriter = options.stdin ? child.stdin.getWriter() : undefined;
  let hostname = "";
  let port = 0;
  const proc: SockitProcess = {
    child,
    get hostname() {
      return hostname;
    },
    get port() {
      return port;
    },
    stderr: err.lines,
    stdout: out.lines,
    waitForStderr: (re, ms = EVENT_TIMEOUT_MS) => err.wait(re, ms, `stderr ${re}`),
    waitForStdout: (re, ms = EVENT_TIMEOUT_MS) => out.wait(re, ms, `stdout ${re}`),
    async write(text) {
      await stdinWriter!.write(typeof text === "string" ? encoder.encode(text) : text);
    },
    async closeStdin() {
      await stdinWriter!.close();
    },
    async stop(signal: Deno.Signal = "SIGTERM") {
      try {
        child.kill(signal);
      } catch {
        // Already exited.
      }
      return await withTimeout(status, EVENT_TIMEOUT_MS, { what: "the process to exit" });
    },
    status,
    async [Symbol.asyncDispose]() {
      try {
        await stdinWriter?.close();
      } catch {
        // Already closed.
      }
      try {
        child.kill("SIGKILL");
      } catch {
        // Already exited.
      }
      await status;
    },
  };
  if (options.ready !== false) {
    try {
      const m = await err.wait(
        /listening on (\[[^\]]+\]|[^\s:]+):(\d+)/,
        options.timeoutMs ?? 20_000,
        "the ready line",
      );
      hostname = m[1].replace(/^\[|\]$/g, "");
      port = Number(m[2]);
    } catch (error) {
      await proc[Symbol.asyncDispose]();
      throw error;
    }
  }
  return proc;
}

/** Output of {@linkcode runSockit}. */
export interface RunResult {
  /** Exit code. */
  code: number;
  /** Everything written to stdout. */
  stdout: string;
  /** Everything written to stderr. */
  stderr: string;
}

/** Runs `sockit ARGS...` to completion (with optional stdin) within `timeoutMs`. */
export async function runSockit(
  args: string[],
  options: {
    stdin?: string | Uint8Array;
    timeoutMs?: number;
    env?: Record<string, string>;
    /** Deno permission flags instead of `--allow-all`. */
    permissions?: string[];
  } = {},
): Promise<RunResult> {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", ...(options.permissions ?? ["--allow-all"]), MAIN, ...args],
    cwd: ROOT,
    env: options.env,
    stdin: options.stdin === undefined ? "null" : "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  // Feed stdin while the output is collected, so a big input cannot deadlock on full pipes.
  const input = options.stdin;
  const feeding = input === undefined ? Promise.resolve() : (async () => {
    const w = child.stdin.getWriter();
    try {
      await w.write(typeof input === "string" ? encoder.encode(input) : input);
      await w.close();
    } catch {
      // The command exited without reading all of it; its status says why.
    }
  })();
  try {
    const out = await withTimeout(child.output(), options.timeoutMs ?? 60_000, {
      what: `sockit ${args[0]}`,
    });
    await feeding;
    return {
      code: out.code,
      stdout: decoder.decode(out.stdout),
      stderr: decoder.decode(out.stderr),
    };
  } catch (error) {
    try {
      child.kill("SIGKILL");
    } catch {
      // Exited meanwhile.
    }
    throw error;
  }
}

/** A TCP client for tests: write text, read lines or bytes, each read with a deadline. */
export class TestClient implements AsyncDisposable {
  /** The connection. */
  readonly conn: Deno.TcpConn;
  /** Buffered reader over the connection. */
  readonly reader: BufferedReader;

  private constructor(conn: Deno.TcpConn) {
    this.conn = conn;
    this.reader = new BufferedReader(conn, { bufferSize: 1 << 20 });
  }

  /** Connects to `port` on 127.0.0.1 (or `hostname`). */
  static async connect(port: number, hostname = "127.0.0.1"): Promise<TestClient> {
    return new TestClient(await Deno.connect({ hostname, port }));
  }

  /** A test client over a connection made elsewhere (a TLS connection, say). */
  static over(conn: Deno.TcpConn): TestClient {
    return new TestClient(conn);
  }

  /** Writes raw bytes or text. */
  async write(data: string | Uint8Array): Promise<void> {
    await writeAll(this.conn, typeof data === "string" ? encoder.encode(data) : data);
  }

  /** Writes `text` and a newline. */
  async writeLine(text: string): Promise<void> {
    await this.write(text + "\n");
  }

  /** Reads one line (without its terminator), or null at end of file, within `timeoutMs`. */
  async readLine(timeoutMs = EVENT_TIMEOUT_MS): Promise<string | null> {
    const line = await withTimeout(this.reader.readLine(1 << 19), timeoutMs, { what: "a line" });
    return line === null ? null : decoder.decode(line);
  }

  /** Reads lines until one matches `re` and returns it; throws on EOF or timeout. */
  async readLineMatching(re: RegExp, timeoutMs = EVENT_TIMEOUT_MS): Promise<string> {
    const deadline = Date.now() + timeoutMs;
    while (true) {
      const line = await this.readLine(Math.max(1, deadline - Date.now()));
      if (line === null) throw new Error(`connection closed before a line matching ${re}`);
      if (re.test(line)) return line;
    }
  }

  /** Reads exactly `n` bytes within `timeoutMs`. */
  async readBytes(n: number, timeoutMs = EVENT_TIMEOUT_MS): Promise<Uint8Array> {
    return await withTimeout(this.reader.readExact(n, n), timeoutMs, { what: `${n} bytes` });
  }

  /** Reads until end of file and returns everything read, within `timeoutMs`. */
  async readToEnd(timeoutMs = EVENT_TIMEOUT_MS): Promise<Uint8Array> {
    const chunks: Uint8Array[] = [];
    const buf = new Uint8Array(65536);
    await withTimeout(
      (async () => {
        let n;
        while ((n = await this.reader.read(buf)) !== null) chunks.push(buf.slice(0, n));
      })(),
      timeoutMs,
      { what: "end of file" },
    );
    const out = new Uint8Array(chunks.reduce((s, c) => s + c.length, 0));
    let off = 0;
    for (const c of chunks) {
      out.set(c, off);
      off += c.length;
    }
    return out;
  }

  /** Closes the connection (idempotent). */
  close(): void {
    try {
      this.conn.close();
    } catch {
      // Already closed.
    }
  }

  /** Closes on dispose. */
  [Symbol.asyncDispose](): Promise<void> {
    this.close();
    return Promise.resolve();
  }
}

/** A peer program (nc, ncat, openssl s_client...) run as a client: stdin in, stdout lines out. */
export interface PeerClient extends AsyncDisposable {
  /** The child process. */
  child: Deno.ChildProcess;
  /** Its stderr lines so far. */
  stderr: string[];
  /** Writes raw bytes or text to its stdin. */
  write(data: string | Uint8Array): Promise<void>;
  /** Writes `text` and a newline. */
  writeLine(text: string): Promise<void>;
  /** Reads one line of its stdout as bytes (without LF or CRLF), null at end, within `timeoutMs`. */
  readLine(timeoutMs?: number): Promise<Uint8Array | null>;
  /** Reads lines until one (decoded as UTF-8) matches `re` and returns it. */
  readLineMatching(re: RegExp, timeoutMs?: number): Promise<string>;
  /** Closes its stdin. */
  closeStdin(): Promise<void>;
  /** Resolves its exit status. */
  status: Promise<Deno.CommandStatus>;
}

/** Spawns `program args...` as a {@linkcode PeerClient}; it is killed on dispose. */
export function spawnPeerClient(
  program: string,
  args: string[],
  options: { env?: Record<string, string> } = {},
): PeerClient {
  const child = new Deno.Command(program, {
    args,
    env: options.env,
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const stdin = child.stdin.getWriter();
  const stdout = child.stdout.getReader();
  let rest: Uint8Array = new Uint8Array(0);
  const reader = new BufferedReader({
    async read(p: Uint8Array) {
      if (rest.length === 0) {
        const { value, done } = await stdout.read();
        if (done) return null;
        rest = value;
      }
      const n = Math.min(p.length, rest.length);
      p.set(rest.subarray(0, n));
      rest = rest.subarray(n);
      return n;
    },
  }, { bufferSize: 1 << 20 });
  const err = new LineLog();
  const pumping = pumpLines(child.stderr, err);
  const readLine = (timeoutMs = EVENT_TIMEOUT_MS) =>
    withTimeout(reader.readLine(1 << 19, { partialAtEof: true }), timeoutMs, {
      what: `a line from ${program} (stderr so far: ${err.lines.join(" | ")})`,
    });
  return {
    child,
    stderr: err.lines,
    async write(data) {
      await stdin.write(typeof data === "string" ? encoder.encode(data) : data);
    },
    async writeLine(text) {
      await stdin.write(encoder.encode(text + "\n"));
    },
    readLine,
    async readLineMatching(re, timeoutMs = EVENT_TIMEOUT_MS) {
      const deadline = Date.now() + timeoutMs;
      while (true) {
        const line = await readLine(Math.max(1, deadline - Date.now()));
        if (line === null) throw new Error(`${program} ended before a line matching ${re}`);
        const text = decoder.decode(line);
        if (re.test(text)) return text;
      }
    },
    async closeStdin() {
      await stdin.close().catch(() => {});
    },
    status: child.status,
    async [Symbol.asyncDispose]() {
      try {
        child.kill("SIGKILL");
      } catch {
        // Exited.
      }
      await stdin.close().catch(() => {});
      await stdout.cancel().catch(() => {});
      await child.status;
      await pumping;
    },
  };
}

/** Fills a buffer with deterministic pseudo-random bytes (xorshift), fast and seedable. */
export function pseudoRandomBytes(n: number, seed = 1): Uint8Array {
  const out = new Uint8Array(n);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = x & 0xff;
  }
  return out;
}

/** A reader that hands out `data` in pieces of at most `step` bytes, then EOF. */
export function trickleReader(
  data: Uint8Array,
  step = 1,
): { read(p: Uint8Array): Promise<number | null> } {
  let off = 0;
  return {
    read(p: Uint8Array) {
      if (off >= data.length) return Promise.resolve(null);
      const n = Math.min(step, p.length, data.length - off);
      p.set(data.subarray(off, off + n));
      off += n;
      return Promise.resolve(n);
    },
  };
}

/** A {@linkcode Logger} whose lines are kept in memory, with a way to wait for one. */
export interface CapturedLog {
  /** The logger to hand to a server. */
  logger: Logger;
  /** Lines logged so far (without the trailing newline). */
  lines: string[];
  /** Resolves the first line matching `re`, already logged or coming, within the test timeout. */
  waitForLog(re: RegExp): Promise<string>;
}

/**
 * Makes a logger for `tool` that records its lines, for in-process servers under test
 * (`verbose`: debug lines too).
 */
export function captureLog(tool: string, options: { verbose?: boolean } = {}): CapturedLog {
  const lines: string[] = [];
  const waiters: { re: RegExp; resolve: (line: string) => void }[] = [];
  const logger = new Logger(tool, {
    verbose: options.verbose ?? false,
    sink: {
      writeSync(p) {
        const line = decoder.decode(p).trimEnd();
        lines.push(line);
        for (const w of waiters.splice(0)) {
          if (w.re.test(line)) w.resolve(line);
          else waiters.push(w);
        }
        return p.length;
      },
    },
  });
  return {
    logger,
    lines,
    waitForLog(re: RegExp): Promise<string> {
      const found = lines.find((l) => re.test(l));
      if (found) return Promise.resolve(found);
      return withTimeout(
        new Promise<string>((resolve) => waiters.push({ re, resolve })),
        EVENT_TIMEOUT_MS,
        { what: `log line ${re}` },
      );
    },
  };
}

/** A TCP server for tests, on a free loopback port; closes its connections on dispose. */
export interface TcpTestServer extends AsyncDisposable {
  /** The port it listens on. */
  port: number;
}

/**
 * Serves every connection with `handler` on 127.0.0.1 (errors are ignored, the connection is
 * closed after the handler). Used for echo, greeter and sink servers in tests.
 */
export function startTcpTestServer(handler: (conn: Deno.TcpConn) => Promise<void>): TcpTestServer {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const conns = new Set<Deno.TcpConn>();
  const done = (async () => {
    for await (const conn of listener) {
      conns.add(conn);
      handler(conn).catch(() => {}).finally(() => {
        conns.delete(conn);
        try {
          conn.close();
        } catch {
          // The handler closed it.
        }
      });
    }
  })().catch(() => {});
  return {
    port: listener.addr.port,
    async [Symbol.asyncDispose]() {
      listener.close();
      for (const c of conns) {
        try {
          c.close();
        } catch {
          // Already closed.
        }
      }
      await done;
    },
  };
}

/** An echo server: writes back what it reads, half-closes at end of input. */
export function startEchoServer(): TcpTestServer {
  return startTcpTestServer(async (conn) => {
    const buf = new Uint8Array(65536);
    let n;
    while ((n = await conn.read(buf)) !== null) await writeAll(conn, buf.subarray(0, n));
    await conn.closeWrite();
  });
}

/** Picks a free TCP port on 127.0.0.1 (for peers that cannot report the one they chose). */
export function freePort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = l.addr.port;
  l.close();
  return port;
}

/** Picks a free UDP port on 127.0.0.1. */
export function freeUdpPort(): number {
  const l = Deno.listenDatagram({ transport: "udp", hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return port;
}

/** Waits until something accepts TCP connections on `port` (polling, bounded). */
export async function waitForTcpPort(port: number, timeoutMs = 10_000): Promise<void> {
  await withTimeout(
    (async () => {
      while (true) {
        try {
          const c = await Deno.connect({ hostname: "127.0.0.1", port });
          c.close();
          return;
        } catch {
          await new Promise((r) => setTimeout(r, 20));
        }
      }
    })(),
    timeoutMs,
    { what: `a listener on port ${port}` },
  );
}

/** A temporary folder with `src/` and `out/` below it, removed on dispose. */
export interface TempTree extends AsyncDisposable {
  /** The folder itself (real path). */
  base: string;
  /** `base/src`, for what is sent. */
  src: string;
  /** `base/out`, where it is received. */
  out: string;
}

/** Makes a {@linkcode TempTree} (real path, so links and checks compare equal). */
export async function tempTree(prefix = "sockit-test-"): Promise<TempTree> {
  const base = await Deno.realPath(await Deno.makeTempDir({ prefix }));
  await Deno.mkdir(`${base}/src`);
  await Deno.mkdir(`${base}/out`);
  return {
    base,
    src: `${base}/src`,
    out: `${base}/out`,
    [Symbol.asyncDispose]: () => Deno.remove(base, { recursive: true }),
  };
}

/** Reads lines until the relay's welcome (notices before it skipped) and returns the name in it. */
export async function readRelayWelcome(
  client: { readLineMatching(re: RegExp, timeoutMs?: number): Promise<string> },
): Promise<string> {
  const line = await client.readLineMatching(/^\* welcome \S+,/);
  return line.match(/^\* welcome (\S+),/)![1];
}

/** Connects a line client to a relay on `port` and reads its welcome: the client and its name. */
export async function joinRelay(port: number): Promise<{ client: TestClient; name: string }> {
  const client = await TestClient.connect(port);
  const m = (await client.readLine())?.match(/^\* welcome (\S+),/);
  if (!m) throw new Error("expected the relay's welcome line");
  return { client, name: m[1] };
}
