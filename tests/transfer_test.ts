// `sockit send` and `sockit recv` end to end: real processes, real files in temp folders,
// loopback sockets.

import assert from "node:assert/strict";
import {
  freePort,
  peerTest,
  pseudoRandomBytes,
  runSockit,
  startSockit,
  tempTree,
  waitForTcpPort,
} from "./_helpers.ts";
import { withTimeout } from "../lib/net/deadline.ts";
import { writeAll } from "../lib/net/write_all.ts";

const MiB = 1024 * 1024;

async function listTree(dir: string, prefix = ""): Promise<string[]> {
  const out: string[] = [];
  const entries = [];
  for await (const e of Deno.readDir(dir)) entries.push(e);
  entries.sort((a, b) => a.name.localeCompare(b.name));
  for (const e of entries) {
    const rel = prefix + e.name;
    const info = await Deno.lstat(`${dir}/${e.name}`);
    if (info.isSymlink) out.push(`${rel} -> ${await Deno.readLink(`${dir}/${e.name}`)}`);
    else if (info.isDirectory) {
      out.push(`${rel}/`);
      out.push(...await listTree(`${dir}/${e.name}`, `${rel}/`));
    } else out.push(`${rel} (${info.size})`);
  }
  return out;
}

/** Writes `size` random bytes to `path`. */
async function randomFile(path: string, size: number): Promise<void> {
  using file = await Deno.open(path, { write: true, create: true, truncate: true });
  const chunk = new Uint8Array(65536);
  for (let left = size; left > 0; left -= chunk.length) {
    crypto.getRandomValues(chunk);
    await writeAll(file, chunk.subarray(0, Math.min(chunk.length, left)));
  }
}

/**
 * A one-connection forwarder to `targetPort` that counts the bytes going upstream and calls
 * `onThreshold` once `afterBytes` have passed (the test kills a process there).
 */
function tripwireForwarder(targetPort: number, afterBytes: number, onThreshold: () => void) {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  let passed = 0;
  const done = (async () => {
    const client = await listener.accept();
    listener.close();
    const upstream = await Deno.connect({ hostname: "127.0.0.1", port: targetPort });
    const pump = async (from: Deno.Conn, to: Deno.Conn, count: boolean) => {
      const buf = new Uint8Array(65536);
      try {
        let n;
        while ((n = await from.read(buf)) !== null) {
          await writeAll(to, buf.subarray(0, n));
          if (!count) continue;
          const before = passed;
          passed += n;
          if (before < afterBytes && passed >= afterBytes) onThreshold();
        }
      } catch {
        // One side died: that is the point of the test.
      }
      for (const c of [from, to]) {
        try {
          c.close();
        } catch {
          // Already closed.
        }
      }
    };
    await Promise.all([pump(client, upstream, true), pump(upstream, client, false)]);
  })();
  return { port: listener.addr.port, done, passed: () => passed };
}

function entryEvent(stdout: string) {
  return stdout.trim().split("\n").map((l) => JSON.parse(l)).find((e) => e.event === "entry");
}

function exitOf(proc: { status: Promise<Deno.CommandStatus> }): Promise<number> {
  return withTimeout(proc.status, 20_000, { what: "recv to exit" }).then((s) => s.code);
}

Deno.test("send and recv round-trip empty, one-byte and multi-MiB files byte for byte", async () => {
  await using t = await tempTree("sockit-transfer-");
  const files: Record<string, Uint8Array> = {
    "empty.bin": new Uint8Array(0),
    "one.bin": new Uint8Array([0x2a]),
    "random.bin": pseudoRandomBytes(5 * MiB + 7, 21),
  };
  for (const [name, data] of Object.entries(files)) await Deno.writeFile(`${t.src}/${name}`, data);
  await using recv = await startSockit(["recv", "--port", "0", "--dir", t.out, "--once"]);
  const run = await runSockit([
    "send",
    `127.0.0.1:${recv.port}`,
    ...Object.keys(files).map((n) => `${t.src}/${n}`),
  ]);
  assert.equal(run.code, 0, run.stderr);
  assert.equal(await exitOf(recv), 0);
  for (const [name, data] of Object.entries(files)) {
    assert.deepEqual(await Deno.readFile(`${t.out}/${name}`), data, name);
  }
  // No partial files left behind.
  assert.deepEqual(await listTree(t.out), [
    "empty.bin (0)",
    "one.bin (1)",
    `random.bin (${5 * MiB + 7})`,
  ]);
  assert.match(run.stderr, /sent random\.bin \(5\.00 MiB in .*sha256 verified\)/);
  assert.match(run.stderr, /3\/3 entries confirmed/);
  assert.ok(
    recv.stderr.some((l) => /received "random\.bin" \(5\.00 MiB .*sha256 verified\)/.test(l)),
  );
});

Deno.test("a tree keeps nested and empty folders and inside links, and skips an outside link", async () => {
  await using t = await tempTree("sockit-transfer-");
  const tree = `${t.src}/tree`;
  await Deno.mkdir(`${tree}/a/b/c`, { recursive: true });
  await Deno.mkdir(`${tree}/empty/nested-empty`, { recursive: true });
  await Deno.writeTextFile(`${tree}/top.txt`, "top\n");
  await Deno.writeFile(`${tree}/a/b/c/deep.bin`, pseudoRandomBytes(300_000, 4));
  await Deno.chmod(`${tree}/top.txt`, 0o600);
  const mtime = new Date("2020-01-02T03:04:05Z");
  await Deno.utime(`${tree}/top.txt`, mtime, mtime);
  await Deno.symlink("../../top.txt", `${tree}/a/b/inside-link`);
  await Deno.symlink("/etc/hostname", `${tree}/outside-link`);
  await Deno.symlink("../..", `${tree}/a/up-and-out`);

  await using recv = await startSockit(["recv", "--port", "0", "--dir", t.out, "--once"]);
  const run = await runSockit(["send", `127.0.0.1:${recv.port}`, `${tree}/`, "--json"]);
  assert.equal(run.code, 0, run.stderr);
  assert.equal(await exitOf(recv), 0);
  assert.deepEqual(await listTree(t.out), [
    "tree/",
    "tree/a/",
    "tree/a/b/",
    "tree/a/b/c/",
    "tree/a/b/c/deep.bin (300000)",
    "tree/a/b/inside-link -> ../../top.txt",
    "tree/empty/",
    "tree/empty/nested-empty/",
    "tree/top.txt (4)",
  ]);
  assert.deepEqual(
    await Deno.readFile(`${t.out}/tree/a/b/c/deep.bin`),
    await Deno.readFile(`${tree}/a/b/c/deep.bin`),
  );
  const info = await Deno.stat(`${t.out}/tree/top.txt`);
  assert.equal(info.mode! & 0o777, 0o600);
  assert.equal(info.mtime?.getTime(), mtime.getTime());
  const events = run.stdout.trim().split("\n").map((l) => JSON.parse(l));
  const warnings = events.filter((e) => e.event === "warning").map((e) => e.message).join("\n");
  assert.match(warnings, /outside-link: symlink points outside the sent tree/);
  assert.match(warnings, /up-and-out: symlink points outside the sent tree/);
  const summary = events.at(-1);
  assert.equal(summary.event, "summary");
  assert.equal(summary.ok, true);
  assert.equal(summary.entries, 9);
  assert.equal(summary.confirmed, 9);
  assert.equal(summary.skipped, 2);
  assert.equal(events[0].event, "warning");
  assert.ok(events.some((e) => e.event === "start" && e.files === 2 && e.bytes === 300_004));
});

Deno.test("an existing name is refused by default, replaced with --overwrite, kept with --rename", async () => {
  await using t = await tempTree("sockit-transfer-");
  await Deno.writeTextFile(`${t.src}/a.txt`, "new\n");
  await Deno.writeTextFile(`${t.out}/a.txt`, "old\n");
  {
    await using recv = await startSockit(["recv", "--port", "0", "--dir", t.out, "--once"]);
    const run = await runSockit(["send", `127.0.0.1:${recv.port}`, `${t.src}/a.txt`]);
    assert.equal(run.code, 1);
    assert.match(run.stderr, /rejected file a\.txt: exists/);
    assert.equal(await exitOf(recv), 1);
    assert.equal(await Deno.readTextFile(`${t.out}/a.txt`), "old\n");
  }
  {
    await using recv = await startSockit([
      "recv",
      "--port",
      "0",
      "--dir",
      t.out,
      "--once",
      "--rename",
    ]);
    const run = await runSockit(["send", `127.0.0.1:${recv.port}`, `${t.src}/a.txt`]);
    assert.equal(run.code, 0, run.stderr);
    assert.match(run.stderr, /sent a\.txt as a \(1\)\.txt/);
    assert.equal(await exitOf(recv), 0);
    assert.equal(await Deno.readTextFile(`${t.out}/a.txt`), "old\n");
    assert.equal(await Deno.readTextFile(`${t.out}/a (1).txt`), "new\n");
  }
  {
    await using recv = await startSockit([
      "recv",
      "--port",
      "0",
      "--dir",
      t.out,
      "--once",
      "--overwrite",
    ]);
    const run = await runSockit(["send", `127.0.0.1:${recv.port}`, `${t.src}/a.txt`]);
    assert.equal(run.code, 0, run.stderr);
    assert.equal(await exitOf(recv), 0);
    assert.equal(await Deno.readTextFile(`${t.out}/a.txt`), "new\n");
  }
  assert.deepEqual(await listTree(t.out), ["a (1).txt (4)", "a.txt (4)"]);
  const both = await runSockit(["recv", "--overwrite", "--rename"]);
  assert.equal(both.code, 2);
  assert.match(both.stderr, /Choose one of --overwrite and --rename/);
});

Deno.test("recv serves several senders, and stops with exit 0 on SIGTERM", async () => {
  await using t = await tempTree("sockit-transfer-");
  await using recv = await startSockit(["recv", "--port", "0", "--dir", t.out, "--no-sync"]);
  // Small files (pipelined) from a fourth sender, also without hashes.
  await Deno.mkdir(`${t.src}/small`);
  for (let i = 0; i < 20; i++) {
    await Deno.writeFile(`${t.src}/small/s${i}.bin`, pseudoRandomBytes(i * 50, 100 + i));
  }
  const runs = await Promise.all([1, 2, 3, 4].map(async (i) => {
    if (i === 4) {
      return await runSockit(["send", `127.0.0.1:${recv.port}`, `${t.src}/small`, "--no-verify"]);
    }
    await Deno.writeFile(`${t.src}/f${i}.bin`, pseudoRandomBytes(MiB + i, i));
    return await runSockit(["send", `127.0.0.1:${recv.port}`, `${t.src}/f${i}.bin`, "--no-verify"]);
  }));
  for (const run of runs) assert.equal(run.code, 0, run.stderr);
  for (const i of [1, 2, 3]) {
    assert.deepEqual(await Deno.readFile(`${t.out}/f${i}.bin`), pseudoRandomBytes(MiB + i, i));
  }
  for (let i = 0; i < 20; i++) {
    assert.deepEqual(
      await Deno.readFile(`${t.out}/small/s${i}.bin`),
      pseudoRandomBytes(i * 50, 100 + i),
    );
  }
  assert.ok(recv.stderr.some((l) => /not verified: sender used --no-verify/.test(l)));
  assert.equal((await recv.stop("SIGTERM")).code, 0);
});

Deno.test("send fails clearly when nothing listens or a path is missing", async () => {
  await using t = await tempTree("sockit-transfer-");
  await Deno.writeTextFile(`${t.src}/x.txt`, "x");
  const refused = await runSockit(["send", `127.0.0.1:${freePort()}`, `${t.src}/x.txt`]);
  assert.equal(refused.code, 1);
  assert.match(refused.stderr, /sockit send: .*(refused|Connection)/i);
  const missing = await runSockit(["send", "127.0.0.1:9", `${t.src}/nope.txt`]);
  assert.equal(missing.code, 1);
  assert.match(missing.stderr, /Cannot send: .*nope\.txt/);
  const usage = await runSockit(["send", "127.0.0.1:9"]);
  assert.equal(usage.code, 2);
  assert.match(usage.stderr, /Missing PATH/);
});

peerTest("microsocks", {
  name: "send --proxy goes through a SOCKS5 proxy (microsocks)",
  fn: async () => {
    await using t = await tempTree("sockit-transfer-");
    const data = pseudoRandomBytes(2 * MiB, 8);
    await Deno.writeFile(`${t.src}/via-proxy.bin`, data);
    const proxyPort = freePort();
    const proxy = new Deno.Command("microsocks", {
      args: ["-i", "127.0.0.1", "-p", String(proxyPort)],
      stdout: "null",
      stderr: "null",
    }).spawn();
    try {
      await waitForTcpPort(proxyPort);
      await using recv = await startSockit(["recv", "--port", "0", "--dir", t.out, "--once"]);
      const run = await runSockit([
        "send",
        `127.0.0.1:${recv.port}`,
        `${t.src}/via-proxy.bin`,
        "--proxy",
        `socks5://127.0.0.1:${proxyPort}`,
      ]);
      assert.equal(run.code, 0, run.stderr);
      assert.equal(await exitOf(recv), 0);
      assert.deepEqual(await Deno.readFile(`${t.out}/via-proxy.bin`), data);
    } finally {
      proxy.kill("SIGKILL");
      await proxy.status;
    }
  },
});

Deno.test("a sender killed mid-transfer resumes: the second run sends about the remainder", async () => {
  await using t = await tempTree("sockit-transfer-");
  const size = 64 * MiB;
  await randomFile(`${t.src}/big.bin`, size);
  await using recv = await startSockit(["recv", "--port", "0", "--dir", t.out]);
  const victim: { proc?: Awaited<ReturnType<typeof startSockit>> } = {};
  const fwd = tripwireForwarder(recv.port, 16 * MiB, () => victim.proc?.child.kill("SIGKILL"));
  const sender = await startSockit(["send", `127.0.0.1:${fwd.port}`, `${t.src}/big.bin`], {
    ready: false,
  });
  victim.proc = sender;
  assert.notEqual((await sender.status).code, 0);
  await fwd.done;
  await recv.waitForStderr(/session with .* ended: Sender closed the connection after/);
  const partial = (await Deno.stat(`${t.out}/.big.bin.sockit-partial`)).size;
  assert.ok(partial >= 8 * MiB && partial < size, `partial file has ${partial} bytes`);

  const run = await runSockit(["send", `127.0.0.1:${recv.port}`, `${t.src}/big.bin`, "--json"]);
  assert.equal(run.code, 0, run.stderr);
  const entry = entryEvent(run.stdout);
  assert.equal(entry.resumedFrom, partial);
  assert.equal(entry.sent, size - partial);
  assert.deepEqual(
    await Deno.readFile(`${t.out}/big.bin`),
    await Deno.readFile(`${t.src}/big.bin`),
  );
  assert.deepEqual(await listTree(t.out), [`big.bin (${size})`]);
});

Deno.test("a receiver killed mid-transfer leaves a partial file that a new receiver resumes", async () => {
  await using t = await tempTree("sockit-transfer-");
  const size = 48 * MiB;
  await randomFile(`${t.src}/big.bin`, size);
  {
    await using recv = await startSockit(["recv", "--port", "0", "--dir", t.out]);
    const fwd = tripwireForwarder(recv.port, 16 * MiB, () => recv.child.kill("SIGKILL"));
    const first = await runSockit(["send", `127.0.0.1:${fwd.port}`, `${t.src}/big.bin`]);
    assert.equal(first.code, 1);
    await fwd.done;
  }
  assert.equal(await Deno.lstat(`${t.out}/big.bin`).catch(() => null), null);
  const partial = (await Deno.stat(`${t.out}/.big.bin.sockit-partial`)).size;
  assert.ok(partial > 0 && partial < size, `partial file has ${partial} bytes`);

  await using recv = await startSockit(["recv", "--port", "0", "--dir", t.out, "--once"]);
  const run = await runSockit(["send", `127.0.0.1:${recv.port}`, `${t.src}/big.bin`, "--json"]);
  assert.equal(run.code, 0, run.stderr);
  assert.equal(await exitOf(recv), 0);
  const entry = entryEvent(run.stdout);
  assert.equal(entry.resumedFrom, partial);
  assert.equal(entry.sent, size - partial);
  assert.deepEqual(
    await Deno.readFile(`${t.out}/big.bin`),
    await Deno.readFile(`${t.src}/big.bin`),
  );
});

/** Every regular file under `dir`, as paths relative to it. */
async function filesUnder(dir: string, prefix = ""): Promise<string[]> {
  const out: string[] = [];
  for await (const e of Deno.readDir(dir)) {
    if (e.isDirectory) out.push(...await filesUnder(`${dir}/${e.name}`, `${prefix}${e.name}/`));
    else out.push(`${prefix}${e.name}`);
  }
  return out;
}

Deno.test("a receiver killed amid a tree of small files leaves only complete files under final names, and a rerun completes the tree", async () => {
  await using t = await tempTree("sockit-transfer-");
  const files = new Map<string, Uint8Array>();
  let total = 0;
  for (let d = 0; d < 4; d++) {
    await Deno.mkdir(`${t.src}/small/d${d}`, { recursive: true });
    for (let i = 0; i < 100; i++) {
      const data = pseudoRandomBytes(200 + (i * 131) % 3000, d * 1000 + i);
      files.set(`small/d${d}/f${i}.bin`, data);
      await Deno.writeFile(`${t.src}/small/d${d}/f${i}.bin`, data);
      total += data.length;
    }
  }
  {
    await using recv = await startSockit(["recv", "--port", "0", "--dir", t.out]);
    // Killed with about half the tree on its way: some batches committed, one being written.
    const fwd = tripwireForwarder(recv.port, total / 2, () => recv.child.kill("SIGKILL"));
    const first = await runSockit(["send", `127.0.0.1:${fwd.port}`, `${t.src}/small`]);
    assert.equal(first.code, 1);
    await fwd.done;
  }
  let complete = 0;
  for (const rel of await filesUnder(t.out)) {
    if (rel.endsWith(".sockit-partial")) continue;
    // A final name only ever holds the whole, verified file.
    assert.deepEqual(await Deno.readFile(`${t.out}/${rel}`), files.get(rel), rel);
    complete++;
  }
  assert.ok(complete < files.size, `${complete} of ${files.size} files before the kill`);

  await using recv = await startSockit(["recv", "--port", "0", "--dir", t.out, "--once"]);
  const run = await runSockit(["send", `127.0.0.1:${recv.port}`, `${t.src}/small`]);
  assert.equal(run.code, 0, run.stderr);
  assert.equal(await exitOf(recv), 0);
  for (const [rel, data] of files) assert.deepEqual(await Deno.readFile(`${t.out}/${rel}`), data);
});

Deno.test("send and recv work over IPv6 loopback, and a PATH that is a symlink is followed", async () => {
  await using t = await tempTree("sockit-transfer-");
  const data = pseudoRandomBytes(70_000, 12);
  await Deno.writeFile(`${t.src}/real.bin`, data);
  await Deno.symlink(`${t.src}/real.bin`, `${t.src}/alias.bin`);
  await using recv = await startSockit([
    "recv",
    "--host",
    "::1",
    "--port",
    "0",
    "--dir",
    t.out,
    "--once",
  ]);
  assert.equal(recv.hostname, "::1");
  const run = await runSockit(["send", `[::1]:${recv.port}`, `${t.src}/alias.bin`]);
  assert.equal(run.code, 0, run.stderr);
  assert.equal(await exitOf(recv), 0);
  assert.deepEqual(await listTree(t.out), ["alias.bin (70000)"]);
  assert.deepEqual(await Deno.readFile(`${t.out}/alias.bin`), data);
});

Deno.test("hundreds of small files pipeline byte for byte, around a streamed file and a refused one", async () => {
  await using t = await tempTree("sockit-transfer-");
  const tree = `${t.src}/many`;
  const files: Record<string, Uint8Array> = {};
  for (let d = 0; d < 6; d++) {
    for (let i = 0; i < 50; i++) {
      files[`d${d}/f${String(i).padStart(3, "0")}.bin`] = pseudoRandomBytes(
        (i * 97) % 4000,
        d * 100 + i,
      );
    }
  }
  files["d2/f025-big.bin"] = pseudoRandomBytes(MiB + 1, 999); // streamed, in the middle
  files["d3/exactly-1mib.bin"] = pseudoRandomBytes(MiB, 998); // the largest pipelined file
  for (const [rel, data] of Object.entries(files)) {
    await Deno.mkdir(`${tree}/${rel.split("/")[0]}`, { recursive: true });
    await Deno.writeFile(`${tree}/${rel}`, data);
  }
  await Deno.mkdir(`${tree}/zz-empty`);
  // Already on the receiver: refused (no --overwrite) in the middle of a batch.
  await Deno.mkdir(`${t.out}/many/d4`, { recursive: true });
  await Deno.writeTextFile(`${t.out}/many/d4/f010.bin`, "keep me");

  await using recv = await startSockit(["recv", "--port", "0", "--dir", t.out, "--once"]);
  const run = await runSockit(["send", `127.0.0.1:${recv.port}`, tree, "--json"]);
  assert.equal(run.code, 1, run.stderr);
  assert.equal(await exitOf(recv), 1);
  const events = run.stdout.trim().split("\n").map((l) => JSON.parse(l));
  const summary = events.find((e) => e.event === "summary");
  const entries = Object.keys(files).length + 8; // + many/, d0..d5/, zz-empty/
  assert.equal(summary.entries, entries);
  assert.equal(summary.confirmed, entries - 1);
  assert.equal(summary.rejected, 1);
  const refused = events.filter((e) => e.event === "entry" && e.status !== "confirmed");
  assert.deepEqual(refused.map((e) => [e.path, e.reason]), [["many/d4/f010.bin", "exists"]]);
  assert.equal(events.filter((e) => e.event === "entry").length, entries);

  assert.equal(await Deno.readTextFile(`${t.out}/many/d4/f010.bin`), "keep me");
  for (const [rel, data] of Object.entries(files)) {
    if (rel === "d4/f010.bin") continue;
    assert.deepEqual(await Deno.readFile(`${t.out}/many/${rel}`), data, rel);
  }
  const listing = await listTree(`${t.out}/many`);
  assert.equal(listing.length, Object.keys(files).length + 7);
  assert.ok(listing.includes("zz-empty/"));
  assert.ok(!listing.some((l) => l.includes("sockit-partial")), "no partial file left");
});

Deno.test("recv shut down mid-transfer: the sender hears 'receiver shut down, run again to resume'", async () => {
  await using t = await tempTree("sockit-transfer-");
  const size = 32 * MiB;
  await randomFile(`${t.src}/big.bin`, size);
  const recv = await startSockit(["recv", "--port", "0", "--dir", t.out]);
  try {
    const fwd = tripwireForwarder(recv.port, 8 * MiB, () => recv.child.kill("SIGTERM"));
    const run = await runSockit(["send", `127.0.0.1:${fwd.port}`, `${t.src}/big.bin`]);
    assert.equal(run.code, 1);
    assert.match(
      run.stderr,
      /sockit send: Cannot send big\.bin: receiver shut down, run again to resume \(0\/1 entries stored/,
    );
    assert.equal(await exitOf(recv), 0);
    await fwd.done;
    assert.ok(recv.stderr.some((l) => /cut the session with .* partial files kept/.test(l)));
  } finally {
    await recv[Symbol.asyncDispose]();
  }
  const partial = (await Deno.stat(`${t.out}/.big.bin.sockit-partial`)).size;
  assert.ok(partial > 0 && partial < size, `partial file has ${partial} bytes`);
  assert.equal(await Deno.lstat(`${t.out}/big.bin`).catch(() => null), null);
});

Deno.test("send interrupted by SIGINT prints one line saying what was stored; the rerun resumes", async () => {
  await using t = await tempTree("sockit-transfer-");
  const size = 32 * MiB;
  await randomFile(`${t.src}/big.bin`, size);
  await using recv = await startSockit(["recv", "--port", "0", "--dir", t.out]);
  const victim: { proc?: Awaited<ReturnType<typeof startSockit>> } = {};
  const fwd = tripwireForwarder(recv.port, 8 * MiB, () => victim.proc?.child.kill("SIGINT"));
  const sender = await startSockit(["send", `127.0.0.1:${fwd.port}`, `${t.src}/big.bin`], {
    ready: false,
  });
  victim.proc = sender;
  assert.equal((await sender.status).code, 1);
  await fwd.done;
  const lines = sender.stderr.filter((l) => !/^sockit send: sending 1 file/.test(l));
  assert.equal(lines.length, 1, sender.stderr.join("\n"));
  assert.match(
    lines[0],
    /^sockit send: interrupted by SIGINT: 0\/1 entries stored, [\d.]+ MiB sent; run the same command again to resume$/,
  );
  await recv.waitForStderr(/session with .* ended: Sender closed the connection after/);
  const run = await runSockit(["send", `127.0.0.1:${recv.port}`, `${t.src}/big.bin`, "--json"]);
  assert.equal(run.code, 0, run.stderr);
  assert.ok(entryEvent(run.stdout).resumedFrom > 0);
  assert.deepEqual(
    await Deno.readFile(`${t.out}/big.bin`),
    await Deno.readFile(`${t.src}/big.bin`),
  );
});

Deno.test("a tree with s -> . and up -> s/.. arrives without the link that would point out", async () => {
  await using t = await tempTree("sockit-transfer-");
  await Deno.mkdir(`${t.src}/tree`);
  await Deno.writeTextFile(`${t.src}/tree/f.txt`, "f");
  await Deno.symlink(".", `${t.src}/tree/s`);
  await Deno.symlink("s/..", `${t.src}/tree/up`);
  await Deno.symlink("s/f.txt", `${t.src}/tree/via`);
  await using recv = await startSockit(["recv", "--port", "0", "--dir", t.out, "--once"]);
  const run = await runSockit(["send", `127.0.0.1:${recv.port}`, `${t.src}/tree`]);
  assert.equal(run.code, 0, run.stderr);
  assert.match(run.stderr, /skipped .*\/tree\/up: symlink goes up \('\.\.'\) out of the link 's'/);
  assert.equal(await exitOf(recv), 0);
  assert.deepEqual(await listTree(`${t.out}/tree`), ["f.txt (1)", "s -> .", "via -> s/f.txt"]);
});
