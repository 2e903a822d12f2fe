/**
 * sockit's send-with-a-code mode against the real Magic Wormhole clients: the Python
 * `wormhole` (Debian magic-wormhole 0.12) and `wormhole-william` (Go, 1.0.6), and against
 * itself, each scenario a real pair of processes inside a private network namespace with the
 * Debian mailbox and transit relay (tests/_wormhole_peers.ts).
 *
 * The matrix: sockit -> Python, Python -> sockit, sockit -> Go, Go -> sockit and sockit ->
 * sockit, each with a 0-byte file, a 20 MiB file, a file with a non-ASCII name, a folder with
 * nested and empty folders, and a text; results compared byte for byte (names, kinds, sizes,
 * SHA-256). Then: a wrong code on either side, a folder of 2,000 small files, a transfer
 * killed at 40% and resumed, and a mailbox or transit relay that is not there.
 *
 * What "identical" means for the folder, per direction (checked against the clients' code and
 * by running them):
 * - Python's and Go's senders put only files in the zip (`os.walk` files; Go likewise), so
 *   into sockit a folder arrives without its empty folders: the source minus empty folders.
 * - wormhole-william's receiver (1.0.6, cmd/recv.go) opens every zip entry with `O_CREATE`, so
 *   a folder entry would become an empty regular file, and nothing tells it from the Python
 *   client; so sockit's zip for another client has no folder entries either (as theirs): an
 *   empty folder is left out with a warning, and sockit -> Python or Go is the source minus
 *   empty folders too. Between two sockits empty folders travel (sockit's own protocol).
 * - wormhole-william's receiver never finishes a 0-byte file (it waits for data that no sender
 *   sends; Go -> Go hangs the same way), so sockit -> Go has no 0-byte case.
 *
 * The whole matrix shares one namespace (a fresh nameplate per scenario) and runs
 * {@linkcode PARALLEL_SCENARIOS} scenarios at a time.
 *
 * @module
 */

import assert from "node:assert/strict";
import { hasCommand, pseudoRandomBytes } from "./_helpers.ts";
import { missingNetns, missingWormholeServers, wormholeTest } from "./_wormhole.ts";
import {
  describePair,
  describeSide,
  describeTree,
  freshCode,
  jsonEvents,
  listDir,
  type PairOptions,
  type PairResult,
  PEER_GRACE_MS,
  runAlone,
  runPair,
  type SideResult,
  startWormholeNet,
  type TreeEntry,
  withoutEmptyFolders,
  type WormholeClient,
  wrongCode,
} from "./_wormhole_peers.ts";
import { partialName } from "../lib/transfer/safe_path.ts";
import { WORMHOLE_DEFAULTS } from "../lib/wormhole/options.ts";

/** Scenarios of the matrix that run at once (2 cores: the clients mostly wait on each other). */
const PARALLEL_SCENARIOS = 4;
/** The big file of the matrix and of the resume. */
const BIG_FILE_SIZE = 20 * 1024 * 1024;
/** Where the resume kills the receiver, as a share of the file. */
const KILL_AT = 0.4;
/** The loopback rate of the resume's namespace, so that 40% lasts long enough to see. */
const RESUME_RATE_MBIT = 80;
/** The small-files folder: this many files in {@linkcode SMALL_FOLDERS} folders. */
const SMALL_FILES = 2000;
const SMALL_FOLDERS = 20;
/** What sockit says on a wrong code, on both sides. */
const WRONG_CODE = /wrong code \(or someone tried to guess it\)/;
/** What the Python client says on a wrong code. */
const PYTHON_WRONG_CODE = /Key confirmation failed/;
/** A refused connection leaves nothing to wait for: sockit must give up well before this, in s. */
const REFUSED_BOUND_S = 20;
/** The text of the text scenarios: not ASCII, two lines. */
const TEXT = "héllo wörld ✓ — 文字\nsecond line";
/** A file name that is not ASCII (NFC). */
const UNICODE_NAME = "naïve – ünïcødé 文件.txt";

const missingClients = () =>
  missingNetns() ?? missingWormholeServers() ??
    (hasCommand("wormhole") ? undefined : "wormhole (magic-wormhole) is not installed") ??
    (hasCommand("wormhole-william") ? undefined : "wormhole-william is not installed");
const missingServers = () => missingNetns() ?? missingWormholeServers();

/** The sources the scenarios read (written once, never changed), in a temp folder. */
interface Sources extends AsyncDisposable {
  /** The temp folder: `src/` below it, and one output folder per scenario. */
  base: string;
  /** A 0-byte file. */
  empty: string;
  /** A {@linkcode BIG_FILE_SIZE} file of pseudo-random bytes (with `big`). */
  big: string;
  /** A small file named {@linkcode UNICODE_NAME}. */
  unicode: string;
  /** A folder with nested, empty and nested empty folders (with `tree`). */
  tree: string;
  /** {@linkcode SMALL_FILES} small files in {@linkcode SMALL_FOLDERS} folders (with `small`). */
  small: string;
  /** A new empty folder for one receiver. */
  outDir(): Promise<string>;
}

/** Writes the sources; the big file, the folder and the small files only when asked. */
async function makeSources(
  parts: { big?: boolean; tree?: boolean; small?: boolean } = {},
): Promise<Sources> {
  const base = await Deno.realPath(await Deno.makeTempDir({ prefix: "sockit-interop-" }));
  const src = `${base}/src`;
  await Deno.mkdir(src);
  const empty = `${src}/empty.bin`;
  await Deno.writeFile(empty, new Uint8Array());
  const big = `${src}/big.bin`;
  if (parts.big) await Deno.writeFile(big, pseudoRandomBytes(BIG_FILE_SIZE, 20));
  const unicode = `${src}/${UNICODE_NAME}`;
  await Deno.writeTextFile(unicode, "ünïcødé\n");
  // Nested folders, an empty folder, an empty folder inside an otherwise empty one, a name
  // with a space, an empty file.
  const tree = `${src}/tree`;
  if (parts.tree) {
    for (const d of ["a/b/c", "empty", "hollow/inner", "with space"]) {
      await Deno.mkdir(`${tree}/${d}`, { recursive: true });
    }
    await Deno.writeFile(`${tree}/top.bin`, pseudoRandomBytes(70_000, 2));
    await Deno.writeFile(`${tree}/a/b/c/deep.bin`, pseudoRandomBytes(3_000, 3));
    await Deno.writeTextFile(`${tree}/a/note.txt`, "note\n");
    await Deno.writeFile(`${tree}/with space/zero`, new Uint8Array());
  }
  const small = `${src}/small`;
  for (let i = 0; parts.small && i < SMALL_FILES; i++) {
    const dir = `${small}/d${String(i % SMALL_FOLDERS).padStart(2, "0")}`;
    if (i < SMALL_FOLDERS) await Deno.mkdir(dir, { recursive: true });
    await Deno.writeFile(
      `${dir}/f${String(i).padStart(4, "0")}.bin`,
      pseudoRandomBytes(64 + i % 512, i + 1),
    );
  }
  let outs = 0;
  return {
    base,
    empty,
    big,
    unicode,
    tree,
    small,
    async outDir() {
      const dir = `${base}/out${outs++}`;
      await Deno.mkdir(dir);
      return dir;
    },
    [Symbol.asyncDispose]: () => Deno.remove(base, { recursive: true }),
  };
}

/** Lets `limit` callers in at a time. */
function semaphore(limit: number): <T>(fn: () => Promise<T>) => Promise<T> {
  let active = 0;
  const queue: (() => void)[] = [];
  return async (fn) => {
    // A leaving caller hands its place to the next in the queue (active stays the same).
    if (active >= limit) await new Promise<void>((resolve) => queue.push(resolve));
    else active++;
    try {
      return await fn();
    } finally {
      const next = queue.shift();
      if (next) next();
      else active--;
    }
  };
}

const baseName = (path: string) => path.slice(path.lastIndexOf("/") + 1);

/** Both sides exited 0; the message carries both logs when not. */
function assertBothSucceeded(r: PairResult): void {
  assert.ok(r.sender.success && r.receiver.success, `a side failed:\n${describePair(r)}`);
}

/** `dir` holds exactly `name`, and its tree is `expected`. */
async function assertReceived(
  r: PairResult,
  dir: string,
  name: string,
  expected: TreeEntry[],
): Promise<void> {
  assertBothSucceeded(r);
  assert.deepEqual(await listDir(dir), [name], `what ${dir} holds\n${describePair(r)}`);
  assert.deepEqual(await describeTree(`${dir}/${name}`), expected, describePair(r));
}

/** The text reached the receiver's stdout (the clients end it with one newline). */
function assertText(r: PairResult, dir: string): Promise<void> {
  assertBothSucceeded(r);
  assert.equal(r.receiver.stdout.replace(/\n$/, ""), TEXT, describePair(r));
  return listDir(dir).then((names) => assert.deepEqual(names, [], "a text writes no file"));
}

/** The receiver wrote nothing at all (no file, no partial file). */
async function assertNothingWritten(dir: string, log: string): Promise<void> {
  assert.deepEqual(await listDir(dir), [], `the receiver wrote something\n${log}`);
}

/** One line on stderr, no stack trace: what the CLI prints for a runtime failure. */
function assertClearError(side: SideResult, re: RegExp): void {
  assert.equal(side.code, 1, describeSide(side));
  assert.match(side.stderr, re, describeSide(side));
  assert.doesNotMatch(side.stderr, /^\s+at /m, `a stack trace\n${describeSide(side)}`);
}

// ---------------------------------------------------------------------------------------------

wormholeTest(missingClients, {
  name: "sockit exchanges files, folders and texts with the Python and Go clients and itself",
  async fn(t) {
    await using src = await makeSources({ big: true, tree: true, small: true });
    await using net = await startWormholeNet();
    const limit = semaphore(PARALLEL_SCENARIOS);
    const pair = (options: Omit<PairOptions, "net" | "dir">, dir: string) =>
      runPair({ ...options, net, dir });
    const steps: Promise<boolean>[] = [];
    /** Runs `fn` as a step, in parallel with the others; `skip` says why it cannot run. */
    const step = (name: string, fn: () => Promise<void>, skip?: string) =>
      steps.push(t.step({
        name: skip ? `${name} (skipped: ${skip})` : name,
        ignore: skip !== undefined,
        fn: () => limit(fn),
        sanitizeOps: false,
        sanitizeResources: false,
        sanitizeExit: false,
      }));

    const exact = async (path: string) => await describeTree(path);
    const minusEmpty = async (path: string) => withoutEmptyFolders(await describeTree(path));
    const peers: { client: WormholeClient; label: string }[] = [
      { client: "python", label: "wormhole (Python)" },
      { client: "william", label: "wormhole-william (Go)" },
    ];
    for (const { client: peer, label } of peers) {
      const toPeer = (what: PairOptions["what"], extra: Partial<PairOptions> = {}) =>
        src.outDir().then(async (dir) => ({
          dir,
          r: await pair({ sender: "sockit", receiver: peer, what, ...extra }, dir),
        }));
      const fromPeer = (what: PairOptions["what"], extra: Partial<PairOptions> = {}) =>
        src.outDir().then(async (dir) => ({
          dir,
          r: await pair({ sender: peer, receiver: "sockit", what, ...extra }, dir),
        }));

      step(
        `sockit -> ${label}: a 0-byte file`,
        async () => {
          const { dir, r } = await toPeer({ path: src.empty });
          await assertReceived(r, dir, baseName(src.empty), await exact(src.empty));
        },
        peer === "william" ? "wormhole-william 1.0.6 never finishes receiving 0 bytes" : undefined,
      );
      step(
        `sockit -> ${label}: a 20 MiB file${peer === "python" ? " through the relay" : ""}`,
        async () => {
          // Python: --force-relay, and --no-listen on its side, so the bytes go through the relay.
          const { dir, r } = await toPeer({ path: src.big }, { forceRelay: peer === "python" });
          await assertReceived(r, dir, baseName(src.big), await exact(src.big));
        },
      );
      step(`sockit -> ${label}: a non-ASCII file name`, async () => {
        const { dir, r } = await toPeer({ path: src.unicode });
        await assertReceived(r, dir, UNICODE_NAME, await exact(src.unicode));
      });
      step(`sockit -> ${label}: a folder (empty folders left out, with a warning)`, async () => {
        const { dir, r } = await toPeer({ path: src.tree });
        await assertReceived(r, dir, "tree", await minusEmpty(src.tree));
        assert.match(r.sender.stderr, /skipped .*empty folder/, describePair(r));
      });
      step(`sockit -> ${label}: a text`, async () => {
        const { dir, r } = await toPeer({ text: TEXT });
        await assertText(r, dir);
      });

      step(`${label} -> sockit: a 0-byte file`, async () => {
        const { dir, r } = await fromPeer({ path: src.empty });
        await assertReceived(r, dir, baseName(src.empty), await exact(src.empty));
      });
      step(`${label} -> sockit: a 20 MiB file`, async () => {
        const { dir, r } = await fromPeer({ path: src.big });
        await assertReceived(r, dir, baseName(src.big), await exact(src.big));
      });
      step(`${label} -> sockit: a non-ASCII file name`, async () => {
        const { dir, r } = await fromPeer({ path: src.unicode });
        await assertReceived(r, dir, UNICODE_NAME, await exact(src.unicode));
      });
      step(`${label} -> sockit: a folder (its sender leaves out empty folders)`, async () => {
        const { dir, r } = await fromPeer({ path: src.tree });
        await assertReceived(r, dir, "tree", await minusEmpty(src.tree));
      });
      step(`${label} -> sockit: a text`, async () => {
        const { dir, r } = await fromPeer({ text: TEXT });
        await assertText(r, dir);
      });
    }

    // sockit -> sockit, each case also varying how the code and the servers are given.
    const self = (what: PairOptions["what"], extra: Partial<PairOptions> = {}) =>
      src.outDir().then(async (dir) => ({
        dir,
        r: await pair({ sender: "sockit", receiver: "sockit", what, ...extra }, dir),
      }));
    step(
      "sockit -> sockit: a 0-byte file (built-in server defaults, code in SOCKIT_CODE)",
      async () => {
        const { dir, r } = await self({ path: src.empty });
        await assertReceived(r, dir, baseName(src.empty), await exact(src.empty));
      },
    );
    step(
      "sockit -> sockit: a 20 MiB file through the relay (explicit --mailbox, --transit)",
      async () => {
        const { dir, r } = await self({ path: src.big }, {
          forceRelay: true,
          explicitServers: true,
        });
        await assertReceived(r, dir, baseName(src.big), await exact(src.big));
      },
    );
    step(
      "sockit -> sockit: a non-ASCII file name (recv takes the code as its argument)",
      async () => {
        const { dir, r } = await self({ path: src.unicode }, { receiverCodeVia: "argv" });
        await assertReceived(r, dir, UNICODE_NAME, await exact(src.unicode));
      },
    );
    step("sockit -> sockit: a folder, with the code the sender printed in --json", async () => {
      const { dir, r } = await self({ path: src.tree }, {
        code: "printed",
        senderArgs: ["--json"],
      });
      await assertReceived(r, dir, "tree", await exact(src.tree));
      const first = jsonEvents(r.sender.stdout)[0];
      assert.deepEqual(first, { event: "code", code: r.code }, describePair(r));
    });
    step("sockit -> sockit: a text, with the code the sender printed on stderr", async () => {
      const { dir, r } = await self({ text: TEXT }, { code: "printed" });
      assert.match(r.sender.stderr, new RegExp(`Wormhole code is: ${r.code}`), describePair(r));
      await assertText(r, dir);
    });
    step("sockit -> sockit: a folder of 2,000 small files", async () => {
      const { dir, r } = await self({ path: src.small });
      await assertReceived(r, dir, "small", await exact(src.small));
    });

    // A wrong code: both sides fail with the message, and the receiver writes nothing.
    step("a wrong code: sockit -> wormhole (Python)", async () => {
      const dir = await src.outDir();
      const code = freshCode();
      const what = { path: src.unicode };
      const r = await pair({
        sender: "sockit",
        receiver: "python",
        what,
        code,
        receiverCode: wrongCode(code),
      }, dir);
      assertClearError(r.sender, WRONG_CODE);
      assert.equal(r.receiver.code, 1, describePair(r));
      assert.match(r.receiver.stderr, PYTHON_WRONG_CODE, describePair(r));
      await assertNothingWritten(dir, describePair(r));
    });
    step("a wrong code: wormhole (Python) -> sockit", async () => {
      const dir = await src.outDir();
      const code = freshCode();
      const what = { path: src.unicode };
      const r = await pair({
        sender: "python",
        receiver: "sockit",
        what,
        code,
        receiverCode: wrongCode(code),
      }, dir);
      assertClearError(r.receiver, WRONG_CODE);
      assert.equal(r.sender.code, 1, describePair(r));
      assert.match(r.sender.stderr, PYTHON_WRONG_CODE, describePair(r));
      await assertNothingWritten(dir, describePair(r));
    });
    step("a wrong code: sockit -> sockit", async () => {
      const dir = await src.outDir();
      const code = freshCode();
      const what = { path: src.unicode };
      const r = await pair({
        sender: "sockit",
        receiver: "sockit",
        what,
        code,
        receiverCode: wrongCode(code),
      }, dir);
      assertClearError(r.sender, WRONG_CODE);
      assertClearError(r.receiver, WRONG_CODE);
      await assertNothingWritten(dir, describePair(r));
    });

    await Promise.all(steps);
  },
});

wormholeTest(missingServers, {
  name: "sockit -> sockit killed at 40% resumes with a new code and sends only the rest",
  async fn() {
    await using src = await makeSources({ big: true });
    // A slow loopback, so that the receiver is still busy when the partial file passes 40%.
    await using net = await startWormholeNet({ rateMbit: RESUME_RATE_MBIT });
    const dir = await src.outDir();
    const partial = `${dir}/${partialName(baseName(src.big))}`;
    let seenAtKill = 0;
    const first = await runPair({
      net,
      sender: "sockit",
      receiver: "sockit",
      what: { path: src.big },
      dir,
      senderArgs: ["--json"],
      interrupt: {
        side: "receiver",
        when: async ({ receiver }) => {
          seenAtKill = await partialReaches(dir, partial, KILL_AT * BIG_FILE_SIZE, receiver.done);
        },
      },
    });
    assert.ok(first.receiver.killed && seenAtKill >= KILL_AT * BIG_FILE_SIZE, describePair(first));
    assert.ok(!first.sender.success, `the sender did not notice\n${describePair(first)}`);
    const kept = (await Deno.stat(partial)).size;
    assert.ok(kept >= seenAtKill && kept < BIG_FILE_SIZE, `partial file of ${kept} bytes`);

    const second = await runPair({
      net,
      sender: "sockit",
      receiver: "sockit",
      what: { path: src.big },
      dir,
      senderArgs: ["--json"],
    });
    await assertReceived(second, dir, baseName(src.big), await describeTree(src.big));
    const summary = jsonEvents(second.sender.stdout).find((e) => e.event === "summary");
    assert.ok(summary, `no summary event\n${describePair(second)}`);
    const sent = summary.bytesSent as number;
    assert.ok(sent > 0 && sent <= BIG_FILE_SIZE - kept, `bytesSent ${sent} with ${kept} kept`);
    assert.equal(summary.ok, true, describePair(second));
  },
});

/**
 * Resolves the size of `partial` once it reaches `bytes` (watching `dir` for changes, so no
 * polling); rejects when `exited` resolves first.
 */
async function partialReaches(
  dir: string,
  partial: string,
  bytes: number,
  exited: Promise<unknown>,
): Promise<number> {
  const watcher = Deno.watchFs(dir);
  const gone = exited.then(() => {
    throw new Error(`the receiver exited before ${partial} reached ${bytes} bytes`);
  });
  const size = async () => {
    try {
      return (await Deno.stat(partial)).size;
    } catch {
      return 0;
    }
  };
  const grown = (async () => {
    let s = await size();
    if (s >= bytes) return s;
    for await (const _ of watcher) {
      if ((s = await size()) >= bytes) return s;
    }
    throw new Error("the watcher ended");
  })();
  // The loser rejects later (the watcher closes, the receiver exits): nobody must mind.
  grown.catch(() => {});
  gone.catch(() => {});
  try {
    return await Promise.race([grown, gone]);
  } finally {
    watcher.close();
  }
}

wormholeTest(missingNetns, {
  name: "sockit send and recv without a mailbox server fail at once with a clear error",
  async fn() {
    // A namespace without servers: relay.magic-wormhole.io:4000 is 127.0.0.1:4000, refused.
    await using net = await startWormholeNet({ mailbox: false, transitRelay: false });
    await using src = await makeSources();
    const dir = await src.outDir();
    const timeoutMs = WORMHOLE_DEFAULTS.serverTimeoutMs + 15_000;
    const [send, recv] = await Promise.all([
      runAlone(net, {
        client: "sockit",
        role: "send",
        what: { path: src.unicode },
        code: freshCode(),
        dir: src.base,
      }, timeoutMs),
      runAlone(net, { client: "sockit", role: "receive", code: freshCode(), dir }, timeoutMs),
    ]);
    for (const side of [send, recv]) {
      assertClearError(side, /mailbox|relay\.magic-wormhole\.io|4000/i);
      assert.ok(side.seconds < REFUSED_BOUND_S, `took ${side.seconds} s\n${describeSide(side)}`);
    }
    await assertNothingWritten(dir, describeSide(recv));
  },
});

wormholeTest(missingServers, {
  name: "sockit send --force-relay without a transit relay fails at once with a clear error",
  async fn() {
    await using net = await startWormholeNet({ transitRelay: false });
    await using src = await makeSources();
    const dir = await src.outDir();
    const r = await runPair({
      net,
      sender: "sockit",
      receiver: "sockit",
      what: { path: src.unicode },
      dir,
      forceRelay: true,
    });
    assertClearError(r.sender, /transit|relay/i);
    assert.ok(r.sender.seconds < REFUSED_BOUND_S, describePair(r));
    // The receiver must learn that the sender gave up and end on its own with exit 1, not wait
    // for its transit timeout: the runner kills it PEER_GRACE_MS after the sender's exit.
    assert.ok(
      r.receiver.code === 1 && !r.receiver.killed,
      `the receiver did not end within ${PEER_GRACE_MS} ms of the sender's failure\n` +
        describePair(r),
    );
    await assertNothingWritten(dir, describePair(r));
  },
});
