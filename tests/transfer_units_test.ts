import assert from "node:assert/strict";
import { Deadlines, delay } from "../lib/net/deadline.ts";
import { IdleReader } from "../lib/transfer/idle_reader.ts";
import {
  decodeAccept,
  decodeOffer,
  decodeRefusal,
  encodeAccept,
  encodeOffer,
  encodeRefusal,
  EntryKind,
  Reason,
} from "../lib/transfer/protocol.ts";
import {
  checkLinkTarget,
  findFreeName,
  partialName,
  renamedName,
  resolveInside,
  splitSafePath,
  UnsafePathError,
  utf8Length,
} from "../lib/transfer/safe_path.ts";
import { formatBytes, formatDuration, formatRate } from "../lib/transfer/human.ts";
import { collectEntries } from "../lib/transfer/walk.ts";
import {
  allocateChunk,
  InlineHasher,
  useHashWorker,
  WorkerHasher,
} from "../lib/transfer/hasher.ts";
import { createHash } from "node:crypto";
import { pseudoRandomBytes } from "./_helpers.ts";
import { ProtocolError } from "../lib/net/errors.ts";

// Every kind of hostile name the receiver must refuse.
const HOSTILE_NAMES = [
  "",
  "/etc/passwd",
  "../escape.txt",
  "a/../../escape.txt",
  "a/..",
  "..",
  ".",
  "./a",
  "a//b",
  "a/",
  "a\0b",
  "..\\..\\escape.txt",
  "a\\b",
  "C:escape.txt",
  "c:/escape.txt",
  "line\nbreak",
  ".x.sockit-partial",
  "a/" + "x".repeat(256),
];

Deno.test("splitSafePath() accepts plain relative paths", () => {
  assert.deepEqual(splitSafePath("a.txt"), ["a.txt"]);
  assert.deepEqual(splitSafePath("tree/sub dir/b (1).txt"), ["tree", "sub dir", "b (1).txt"]);
  assert.deepEqual(splitSafePath(".hidden/..dots../x"), [".hidden", "..dots..", "x"]);
  assert.deepEqual(splitSafePath("ünïcødé/文件"), ["ünïcødé", "文件"]);
});

Deno.test("splitSafePath() refuses every hostile name with a message naming it", () => {
  for (const name of HOSTILE_NAMES) {
    assert.throws(() => splitSafePath(name), UnsafePathError, `accepted ${JSON.stringify(name)}`);
  }
  assert.throws(() => splitSafePath("../x"), /contains '\.\.'/);
  assert.throws(() => splitSafePath("/x"), /absolute/);
});

Deno.test("splitSafePath() counts a name's limits in UTF-8 bytes, as the filesystem does", () => {
  // 255 bytes per component: 127 two-byte letters and one more byte pass, 128 do not.
  assert.deepEqual(splitSafePath(`${"\u00e9".repeat(127)}x`), [`${"\u00e9".repeat(127)}x`]);
  assert.throws(() => splitSafePath("\u00e9".repeat(128)), /component is longer than 255 bytes/);
  // 63 four-byte emoji (252 bytes) and three more pass; one more byte does not.
  assert.equal(splitSafePath(`${"\u{1f600}".repeat(63)}abc`).length, 1);
  assert.throws(() => splitSafePath(`${"\u{1f600}".repeat(63)}abcd`), /longer than 255 bytes/);
  // 4096 bytes for the whole path.
  const deep = Array.from({ length: 16 }, () => "\u6587".repeat(85)).join("/"); // 16 * 255 + 15
  assert.equal(splitSafePath(deep).length, 16);
  assert.throws(() => splitSafePath(`${deep}/x`), /longer than 4096 bytes/);
  for (
    const text of [
      "plain",
      "\u00fcn\u00efc\u00f8d\u00e9",
      "\u6587\u4ef6",
      "\u{1f600}",
      "\ud800",
      "a\udc00b",
    ]
  ) {
    assert.equal(utf8Length(text), new TextEncoder().encode(text).length, JSON.stringify(text));
  }
});

Deno.test("checkLinkTarget() allows links inside the folder and refuses others", () => {
  assert.equal(checkLinkTarget("tree/a/link", "../b"), "tree/b");
  assert.equal(checkLinkTarget("tree/link", "."), "tree");
  assert.throws(() => checkLinkTarget("tree/link", "../../x"), /outside/);
  assert.throws(() => checkLinkTarget("link", ".."), /outside/);
  assert.throws(() => checkLinkTarget("link", "/etc/passwd"), /absolute/);
  assert.throws(() => checkLinkTarget("link", ""), /empty/);
  assert.throws(() => checkLinkTarget("link", "a\\..\\..\\x"), /backslash/);
});

Deno.test("renamedName() puts the counter before the extension", () => {
  assert.equal(renamedName("report.pdf", 1), "report (1).pdf");
  assert.equal(renamedName("archive.tar.gz", 2), "archive.tar (2).gz");
  assert.equal(renamedName(".bashrc", 1), ".bashrc (1)");
  assert.equal(renamedName("README", 3), "README (3)");
  assert.equal(partialName("a.txt"), ".a.txt.sockit-partial");
});

Deno.test("resolveInside() refuses a path through an existing symlink and creates real folders", async () => {
  const root = await Deno.realPath(await Deno.makeTempDir());
  const outside = await Deno.makeTempDir();
  try {
    await Deno.symlink(outside, `${root}/link`);
    await assert.rejects(
      resolveInside(root, ["link", "evil.txt"], { createParents: true }),
      /is a symlink/,
    );
    await Deno.writeTextFile(`${root}/file`, "x");
    await assert.rejects(resolveInside(root, ["file", "x.txt"]), /not a folder/);
    const where = await resolveInside(root, ["a", "b", "c.txt"], { createParents: true });
    assert.equal(where.path, `${root}/a/b/c.txt`);
    assert.equal(where.existing, null);
    assert.ok((await Deno.lstat(`${root}/a/b`)).isDirectory);
    assert.deepEqual([...Deno.readDirSync(outside)], []);
    await Deno.writeTextFile(`${root}/a/b/c.txt`, "1");
    await Deno.writeTextFile(`${root}/a/b/c (1).txt`, "2");
    assert.equal(await findFreeName(`${root}/a/b`, "c.txt"), "c (2).txt");
  } finally {
    await Deno.remove(root, { recursive: true });
    await Deno.remove(outside, { recursive: true });
  }
});

Deno.test("offer, accept and refusal payloads round-trip and bad offers are refused", () => {
  const offer = {
    kind: EntryKind.Symlink,
    path: "tree/ü/link",
    size: 0,
    mode: 0o777,
    mtimeMs: 1_700_000_000_123,
    verify: false,
    pipelined: false,
    target: "../x",
  } as const;
  assert.deepEqual(decodeOffer(encodeOffer(offer)), offer);
  const big = {
    ...offer,
    kind: EntryKind.File,
    size: 2 ** 40 + 3,
    verify: true,
    pipelined: true,
    target: "",
  };
  assert.deepEqual(decodeOffer(encodeOffer(big)), big);
  const hash = new Uint8Array(32).fill(9);
  assert.deepEqual(decodeAccept(encodeAccept({ offset: 12345, prefixHash: hash })), {
    offset: 12345,
    prefixHash: hash,
  });
  assert.deepEqual(decodeRefusal(encodeRefusal({ reason: Reason.Exists, message: "x" })), {
    reason: Reason.Exists,
    message: "x",
  });
  const bad = encodeOffer(big);
  assert.throws(() => decodeOffer(bad.subarray(0, bad.length - 1)), ProtocolError);
  const badKind = bad.slice();
  badKind[0] = 7;
  assert.throws(() => decodeOffer(badKind), /unknown entry kind/);
  const huge = bad.slice();
  huge.set([0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff], 6);
  assert.throws(() => decodeOffer(huge), /exceeds 2\^53/);
});

Deno.test("human sizes, rates and durations use binary units", () => {
  assert.equal(formatBytes(0), "0 B");
  assert.equal(formatBytes(1023), "1023 B");
  assert.equal(formatBytes(1536), "1.5 KiB");
  assert.equal(formatBytes(5 * 1024 * 1024), "5.00 MiB");
  assert.equal(formatBytes(1024 ** 3), "1.00 GiB");
  assert.equal(formatRate(300 * 1024 * 1024), "300 MiB/s");
  assert.equal(formatDuration(0.5), "0.50 s");
  assert.equal(formatDuration(3725), "1h02m");
});

Deno.test("collectEntries() lists folders before contents and skips outward symlinks", async () => {
  const base = await Deno.makeTempDir();
  try {
    await Deno.mkdir(`${base}/t/sub/empty`, { recursive: true });
    await Deno.writeTextFile(`${base}/t/sub/f.txt`, "hello");
    await Deno.symlink("f.txt", `${base}/t/sub/in`);
    await Deno.symlink("/etc/hostname", `${base}/t/out`);
    await Deno.symlink("../../", `${base}/t/sub/up`);
    const walk = await collectEntries([`${base}/t/`]);
    assert.deepEqual(
      walk.entries.map((e) => `${e.kind}:${e.path}:${e.target}`),
      ["2:t:", "2:t/sub:", "2:t/sub/empty:", "1:t/sub/f.txt:", "3:t/sub/in:f.txt"],
    );
    assert.deepEqual(walk.skipped.map((s) => s.path.slice(base.length)).sort(), [
      "/t/out",
      "/t/sub/up",
    ]);
  } finally {
    await Deno.remove(base, { recursive: true });
  }
});

Deno.test("collectEntries() resolves links through the tree's links: beside s -> ., up -> s/.. is skipped", async () => {
  const base = await Deno.realPath(await Deno.makeTempDir());
  try {
    await Deno.mkdir(`${base}/t/d`, { recursive: true });
    await Deno.writeTextFile(`${base}/t/f.txt`, "f");
    await Deno.symlink(".", `${base}/t/s`);
    await Deno.symlink("s/..", `${base}/t/up`); // normalises to ".", resolves to the parent
    await Deno.symlink("../s/s/../..", `${base}/t/d/far`); // normalises to "..", is the parent
    await Deno.symlink("s/f.txt", `${base}/t/via`); // through s, but stays inside
    await Deno.symlink(`${base}/t/d`, `${base}/t/abs`); // absolute, into the tree
    const walk = await collectEntries([`${base}/t`]);
    assert.deepEqual(
      walk.entries.filter((e) => e.kind === EntryKind.Symlink).map((e) => `${e.path}->${e.target}`),
      ["t/abs->d", "t/s->.", "t/via->s/f.txt"],
    );
    const skipped = walk.skipped.map((s) => `${s.path.slice(base.length)}: ${s.reason}`).sort();
    assert.equal(skipped.length, 2);
    assert.match(skipped[0], /^\/t\/d\/far: symlink goes up .* \(\.\.\/s\/s\/\.\.\/\.\.\)$/);
    assert.match(
      skipped[1],
      /^\/t\/up: symlink goes up \('\.\.'\) out of the link 's' \(s\/\.\.\)$/,
    );
  } finally {
    await Deno.remove(base, { recursive: true });
  }
});

Deno.test("the worker hasher and the inline hasher agree with node:crypto, prefix and whole", async () => {
  const data = pseudoRandomBytes(3 * 1024 * 1024 + 11, 17);
  const expected = new Uint8Array(createHash("sha256").update(data).digest());
  const prefix = new Uint8Array(createHash("sha256").update(data.subarray(0, 1 << 20)).digest());
  using worker = await WorkerHasher.start();
  using inline = new InlineHasher();
  for (const hasher of [worker, inline]) {
    await hasher.update(allocateChunk(5)); // dropped by the reset below
    await hasher.reset();
    const chunk = allocateChunk(1 << 20);
    for (let off = 0; off < data.length; off += chunk.length) {
      const part = data.subarray(off, off + chunk.length);
      chunk.set(part);
      await hasher.update(chunk.subarray(0, part.length));
      if (off === 0) assert.deepEqual(await hasher.peek(), prefix);
    }
    assert.deepEqual(await hasher.digest(), expected);
  }
  await assert.rejects(worker.update(new Uint8Array(4)), TypeError);
  assert.equal(useHashWorker(1 << 30, { cores: 8 }), true);
  assert.equal(useHashWorker(1 << 30, { cores: 2 }), false);
  assert.equal(useHashWorker(1024, { cores: 8 }), false);
});

Deno.test("IdleReader: no deadline while paused or between reads; a silent read is closed", async () => {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const peer = await Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port });
  const conn = await listener.accept();
  listener.close();
  const deadlines = new Deadlines();
  let idle = 0;
  const reader = new IdleReader(conn, 60, { onIdle: () => idle++, deadlines });
  assert.equal(deadlines.size, 1);
  // No read pending: time passes without consequence.
  await delay(100);
  // A read answered in time; a read while paused waits as long as it must.
  const buf = new Uint8Array(8);
  const first = reader.read(buf);
  await peer.write(new Uint8Array([1]));
  assert.equal(await first, 1);
  const resume = reader.pause();
  const second = reader.read(buf);
  await delay(120);
  await peer.write(new Uint8Array([2]));
  assert.equal(await second, 1);
  resume();
  assert.equal(idle, 0);
  assert.equal(reader.timedOut, false);
  // Then a read the peer never answers: onIdle runs, the connection is closed.
  const start = performance.now();
  await assert.rejects(reader.read(buf));
  assert.ok(performance.now() - start >= 55, `closed after ${performance.now() - start} ms`);
  assert.equal(idle, 1);
  assert.equal(reader.timedOut, true);
  assert.equal(deadlines.size, 0);
  reader.dispose();
  peer.close();
});

Deno.test("IdleReader: dispose cancels the deadline and leaves the connection open", async () => {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const peer = await Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port });
  const conn = await listener.accept();
  listener.close();
  const deadlines = new Deadlines();
  {
    using reader = new IdleReader(conn, 20, { deadlines });
    assert.equal(deadlines.size, 1);
    assert.ok(reader);
  }
  assert.equal(deadlines.size, 0);
  const read = conn.read(new Uint8Array(8));
  await delay(50);
  await peer.write(new Uint8Array([7]));
  assert.equal(await read, 1);
  conn.close();
  peer.close();
  // 0 disables the deadline: nothing is scheduled.
  assert.equal(new IdleReader(conn, 0, { deadlines }).timedOut, false);
  assert.equal(deadlines.size, 0);
});
