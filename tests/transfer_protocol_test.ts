// The receiver against hand-crafted senders speaking the transfer protocol over raw sockets:
// hostile names, corrupted data, senders that stop halfway, protocol violations, version
// mismatch. Each test runs a real `sockit recv` process.

import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { BufferedReader } from "../lib/net/buffered_reader.ts";
import { withTimeout } from "../lib/net/deadline.ts";
import {
  ControlFrame,
  encodeFrame,
  encodeHello,
  type Frame,
  readFrame,
  readHello,
} from "../lib/net/frame.ts";
import { writeAll } from "../lib/net/write_all.ts";
import { VersionMismatchError } from "../lib/net/errors.ts";
import {
  decodeAccept,
  decodeRefusal,
  encodeOffer,
  encodeStart,
  EntryKind,
  type EntryKindValue,
  Reason,
  ReceiverError,
  TRANSFER_PROTOCOL,
  TRANSFER_VERSION,
  TransferFrame,
} from "../lib/transfer/protocol.ts";
import { EVENT_TIMEOUT_MS, pseudoRandomBytes, runSockit, startSockit } from "./_helpers.ts";

const MiB = 1024 * 1024;

/** A sender written against the protocol module, free to misbehave. */
class RawSender implements AsyncDisposable {
  readonly conn: Deno.TcpConn;
  readonly reader: BufferedReader;

  private constructor(conn: Deno.TcpConn) {
    this.conn = conn;
    this.reader = new BufferedReader(conn);
  }

  /** Connects, and (unless `hello: false`) exchanges hellos at `version`. */
  static async connect(
    port: number,
    options: { version?: number; hello?: boolean } = {},
  ): Promise<RawSender> {
    const s = new RawSender(await Deno.connect({ hostname: "127.0.0.1", port }));
    if (options.hello !== false) {
      await s.send(encodeHello(TRANSFER_PROTOCOL, options.version ?? TRANSFER_VERSION));
      await withTimeout(
        readHello(s.reader, { protocol: TRANSFER_PROTOCOL, version: TRANSFER_VERSION }),
        EVENT_TIMEOUT_MS,
        { what: "hello" },
      );
    }
    return s;
  }

  send(bytes: Uint8Array): Promise<void> {
    return writeAll(this.conn, bytes);
  }

  frame(type: number, payload?: Uint8Array): Promise<void> {
    return this.send(encodeFrame(type, payload));
  }

  async reply(): Promise<Frame | null> {
    return await withTimeout(readFrame(this.reader, { maxPayload: 1 << 16 }), EVENT_TIMEOUT_MS, {
      what: "a reply",
    });
  }

  /** Sends an offer and resolves the receiver's answer. */
  async offer(
    path: string,
    options: { kind?: EntryKindValue; size?: number; target?: string; verify?: boolean } = {},
  ): Promise<Frame> {
    await this.frame(
      TransferFrame.Offer,
      encodeOffer({
        kind: options.kind ?? EntryKind.File,
        path,
        size: options.size ?? 0,
        mode: 0o644,
        mtimeMs: 0,
        verify: options.verify ?? true,
        target: options.target ?? "",
      }),
    );
    const answer = await this.reply();
    assert.ok(answer, `receiver closed instead of answering the offer of ${JSON.stringify(path)}`);
    return answer;
  }

  /**
   * Sends one pipelined entry without waiting: a file's Offer, Data and End (`hash` defaults
   * to the SHA-256 of `data`), or a folder's or link's Offer, one write per frame.
   */
  async pipelined(path: string, options: PipelinedOptions = {}): Promise<void> {
    for (const frame of pipelinedFrames(path, options)) await this.send(frame);
  }

  /** Reads `n` answers. */
  async replies(n: number): Promise<Frame[]> {
    const out: Frame[] = [];
    for (let i = 0; i < n; i++) {
      const frame = await this.reply();
      assert.ok(frame, `receiver closed after ${i} of ${n} answers`);
      out.push(frame);
    }
    return out;
  }

  /** Streams `data` from `start` as Data frames of 256 KiB. */
  async data(data: Uint8Array): Promise<void> {
    for (let off = 0; off < data.length; off += 256 * 1024) {
      await this.frame(TransferFrame.Data, data.subarray(off, off + 256 * 1024));
    }
  }

  close(): void {
    try {
      this.conn.close();
    } catch {
      // Already closed.
    }
  }

  [Symbol.asyncDispose](): Promise<void> {
    this.close();
    return Promise.resolve();
  }
}

/** What {@linkcode pipelinedFrames} makes: a file (the default), folder or link. */
interface PipelinedOptions {
  kind?: EntryKindValue;
  data?: Uint8Array;
  /** The SHA-256 End carries. @default {the SHA-256 of `data`} */
  hash?: Uint8Array;
  target?: string;
  /** @default {0o644} */
  mode?: number;
  /** Data bytes beyond `data` (a sender sending more than it offered). */
  extra?: number;
}

/** The frames of one pipelined entry: a file's Offer, Data and End, or an Offer alone. */
function pipelinedFrames(path: string, options: PipelinedOptions = {}): Uint8Array[] {
  const kind = options.kind ?? EntryKind.File;
  const data = options.data ?? new Uint8Array(0);
  const offer = encodeFrame(
    TransferFrame.Offer,
    encodeOffer({
      kind,
      path,
      size: data.length,
      mode: options.mode ?? 0o644,
      mtimeMs: 0,
      verify: kind === EntryKind.File,
      pipelined: true,
      target: options.target ?? "",
    }),
  );
  if (kind !== EntryKind.File) return [offer];
  const frames = [offer];
  const sent = new Uint8Array(data.length + (options.extra ?? 0));
  sent.set(data);
  if (sent.length > 0) frames.push(encodeFrame(TransferFrame.Data, sent));
  frames.push(encodeFrame(TransferFrame.End, options.hash ?? sha256(data)));
  return frames;
}

/** `chunks` joined into one array. */
function joined(chunks: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));
  let at = 0;
  for (const c of chunks) {
    out.set(c, at);
    at += c.length;
  }
  return out;
}

function sha256(data: Uint8Array): Uint8Array {
  return new Uint8Array(createHash("sha256").update(data).digest());
}

function reasonOf(frame: Frame): number {
  return decodeRefusal(frame.payload).reason;
}

async function listNames(dir: string): Promise<string[]> {
  const names: string[] = [];
  for await (const e of Deno.readDir(dir)) names.push(e.name);
  return names.sort();
}

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.lstat(path);
    return true;
  } catch {
    return false;
  }
}

/** A temp base with `out` (the receiver's folder) and `outside`, and a `sockit recv` on it. */
async function fixture(extra: string[] = []) {
  const base = await Deno.realPath(await Deno.makeTempDir({ prefix: "sockit-transfer-" }));
  const out = `${base}/out`;
  const outside = `${base}/outside`;
  await Deno.mkdir(out);
  await Deno.mkdir(outside);
  const recv = await startSockit(["recv", "--port", "0", "--dir", out, ...extra]);
  return {
    base,
    out,
    outside,
    recv,
    async [Symbol.asyncDispose]() {
      await recv[Symbol.asyncDispose]();
      await Deno.remove(base, { recursive: true });
    },
  };
}

const HOSTILE_FILE_NAMES = [
  "",
  "/etc/passwd",
  "/tmp/escape.txt",
  "../escape.txt",
  "../outside/escape.txt",
  "a/../../escape.txt",
  "a/..",
  "..",
  ".",
  "./escape.txt",
  "a//escape.txt",
  "a/",
  "escape\0.txt",
  "..\\outside\\escape.txt",
  "a\\..\\..\\escape.txt",
  "C:escape.txt",
  "line\nbreak.txt",
  ".a.txt.sockit-partial",
  "x".repeat(300),
  "link/escape.txt",
  "link/../escape.txt",
];

Deno.test("recv rejects every hostile name and writes nothing outside its folder", async () => {
  await using f = await fixture();
  // A symlink already inside DIR that points outside: writing through it must be refused.
  await Deno.symlink(f.outside, `${f.out}/link`);
  await using s = await RawSender.connect(f.recv.port);
  for (const name of HOSTILE_FILE_NAMES) {
    const answer = await s.offer(name, { size: 5 });
    assert.equal(answer.type, TransferFrame.Reject, `accepted ${JSON.stringify(name)}`);
    assert.equal(reasonOf(answer), Reason.InvalidName, JSON.stringify(name));
  }
  for (const name of ["../escape-dir", "/tmp/escape-dir", "link/escape-dir", "a\\..\\b"]) {
    const answer = await s.offer(name, { kind: EntryKind.Directory });
    assert.equal(answer.type, TransferFrame.Reject, `accepted folder ${JSON.stringify(name)}`);
  }
  for (const target of ["../outside", "/etc/passwd", "a/../../..", "..\\x", ""]) {
    const answer = await s.offer("evil-link", { kind: EntryKind.Symlink, target });
    assert.equal(answer.type, TransferFrame.Reject, `accepted link to ${JSON.stringify(target)}`);
    assert.equal(reasonOf(answer), Reason.InvalidName);
  }
  // The session survives the refusals: a well-formed file still goes through.
  const data = new TextEncoder().encode("fine\n");
  const accept = await s.offer("ok.txt", { size: data.length });
  assert.equal(accept.type, TransferFrame.Accept);
  await s.frame(TransferFrame.Start, encodeStart(0));
  await s.data(data);
  await s.frame(TransferFrame.End, sha256(data));
  const confirm = await s.reply();
  assert.equal(confirm?.type, TransferFrame.Confirm);
  await s.frame(ControlFrame.Bye);
  assert.equal((await s.reply())?.type, ControlFrame.Bye);

  assert.deepEqual(await listNames(f.outside), []);
  assert.deepEqual(await listNames(f.base), ["out", "outside"]);
  assert.deepEqual(await listNames(f.out), ["link", "ok.txt"]);
  await f.recv.waitForStderr(/rejected "\.\.\/escape\.txt" .*invalid name/);
});

Deno.test("recv detects a corrupted byte: both sides hear of it and the final name never appears", async () => {
  await using f = await fixture();
  await using s = await RawSender.connect(f.recv.port);
  const data = pseudoRandomBytes(2 * MiB + 5, 3);
  const accept = await s.offer("corrupt.bin", { size: data.length });
  assert.equal(accept.type, TransferFrame.Accept);
  assert.equal(decodeAccept(accept.payload).offset, 0);
  await s.frame(TransferFrame.Start, encodeStart(0));
  const corrupted = data.slice();
  corrupted[MiB + 17] ^= 0x01;
  await s.data(corrupted);
  await s.frame(TransferFrame.End, sha256(data));
  const answer = await s.reply();
  assert.equal(answer?.type, TransferFrame.Failed);
  assert.equal(reasonOf(answer!), Reason.HashMismatch);
  await f.recv.waitForStderr(/failed "corrupt\.bin" .*hash mismatch/);
  assert.equal(await exists(`${f.out}/corrupt.bin`), false);
  assert.deepEqual(await listNames(f.out), []);
});

Deno.test("send resumes after a sender stopped halfway: only the remainder travels", async () => {
  await using f = await fixture();
  const src = `${f.base}/big.bin`;
  const data = pseudoRandomBytes(4 * MiB + 123, 11);
  await Deno.writeFile(src, data);
  const half = 2 * MiB;
  {
    // A sender that dies after half the file: no End, the connection just drops.
    await using s = await RawSender.connect(f.recv.port);
    assert.equal((await s.offer("big.bin", { size: data.length })).type, TransferFrame.Accept);
    await s.frame(TransferFrame.Start, encodeStart(0));
    await s.data(data.subarray(0, half));
  }
  await f.recv.waitForStderr(/session with .* ended: Sender closed the connection after 2\.00 MiB/);
  assert.equal(await exists(`${f.out}/big.bin`), false);
  assert.equal((await Deno.stat(`${f.out}/.big.bin.sockit-partial`)).size, half);

  const run = await runSockit(["send", `127.0.0.1:${f.recv.port}`, src, "--json"]);
  assert.equal(run.code, 0, run.stderr);
  const events = run.stdout.trim().split("\n").map((l) => JSON.parse(l));
  const entry = events.find((e) => e.event === "entry");
  assert.equal(entry.status, "confirmed");
  assert.equal(entry.resumedFrom, half);
  assert.equal(entry.sent, data.length - half);
  assert.equal(events.at(-1).event, "summary");
  assert.equal(events.at(-1).bytesSent, data.length - half);
  assert.deepEqual(await Deno.readFile(`${f.out}/big.bin`), data);
  assert.deepEqual(await listNames(f.out), ["big.bin"]);
  await f.recv.waitForStderr(
    /received "big\.bin" \(4\.00 MiB.*resumed at 2\.00 MiB, sha256 verified\)/,
  );
});

Deno.test("send restarts from zero when the partial file does not match its source", async () => {
  await using f = await fixture();
  const src = `${f.base}/doc.bin`;
  const data = pseudoRandomBytes(3 * MiB, 5);
  await Deno.writeFile(src, data);
  {
    await using s = await RawSender.connect(f.recv.port);
    assert.equal((await s.offer("doc.bin", { size: data.length })).type, TransferFrame.Accept);
    await s.frame(ControlFrame.Ping); // a keepalive before Start is skipped
    await s.frame(TransferFrame.Start, encodeStart(0));
    await s.data(pseudoRandomBytes(MiB, 99)); // an older version of the file
  }
  await f.recv.waitForStderr(/session with .* ended/);
  const run = await runSockit(["send", `127.0.0.1:${f.recv.port}`, src, "--json"]);
  assert.equal(run.code, 0, run.stderr);
  const entry = run.stdout.split("\n").filter(Boolean).map((l) => JSON.parse(l))
    .find((e) => e.event === "entry");
  assert.equal(entry.resumedFrom, 0);
  assert.equal(entry.sent, data.length);
  assert.deepEqual(await Deno.readFile(`${f.out}/doc.bin`), data);
});

Deno.test("recv closes only the connection that breaks the protocol and keeps serving", async () => {
  await using f = await fixture();
  const violations: [string, (s: RawSender) => Promise<void>, RegExp][] = [
    [
      "data before an offer",
      (s) => s.frame(TransferFrame.Data, new Uint8Array(10)),
      /Data \(0x14\) instead of an Offer/,
    ],
    [
      "a 4 GiB frame length",
      (s) => s.send(new Uint8Array([0x10, 0xff, 0xff, 0xff, 0xff])),
      /exceeds limit/,
    ],
    [
      "an unknown entry kind",
      (s) =>
        s.frame(
          TransferFrame.Offer,
          new Uint8Array(28).fill(0, 0).map((_, i) => (i === 0 ? 9 : 0)),
        ),
      /unknown entry kind/,
    ],
    ["a pipelined file over 1 MiB", async (s) => {
      await s.frame(
        TransferFrame.Offer,
        encodeOffer({
          kind: EntryKind.File,
          path: "big.bin",
          size: MiB + 1,
          mode: 0o644,
          mtimeMs: 0,
          verify: true,
          pipelined: true,
          target: "",
        }),
      );
    }, /more than the 1\.00 MiB a pipelined file may have/],
    ["more data than offered in a pipelined file", async (s) => {
      await s.frame(
        TransferFrame.Offer,
        encodeOffer({
          kind: EntryKind.File,
          path: "small.bin",
          size: 2,
          mode: 0o644,
          mtimeMs: 0,
          verify: true,
          pipelined: true,
          target: "",
        }),
      );
      await s.frame(TransferFrame.Data, new Uint8Array(20));
    }, /more data than the 2 bytes offered/],
    ["more data than offered in a pipelined batch that arrives in one write", async (s) => {
      await s.send(joined([
        ...pipelinedFrames("fine.bin", { data: pseudoRandomBytes(100, 81) }),
        ...pipelinedFrames("small.bin", { data: new Uint8Array(2), extra: 18 }),
      ]));
    }, /more data than the 2 bytes offered/],
    ["more data than offered", async (s) => {
      assert.equal((await s.offer("small.bin", { size: 10 })).type, TransferFrame.Accept);
      await s.frame(TransferFrame.Start, encodeStart(0));
      await s.frame(TransferFrame.Data, new Uint8Array(20));
    }, /more data than the 10 bytes offered/],
  ];
  for (const [what, misbehave, expected] of violations) {
    await using s = await RawSender.connect(f.recv.port);
    await misbehave(s);
    const answer = await s.reply();
    assert.equal(answer?.type, ControlFrame.Error, what);
    assert.match(new TextDecoder().decode(answer!.payload), expected, what);
    assert.equal(await s.reply(), null, `${what}: connection should close`);
  }
  {
    // Not a sockit peer at all.
    await using s = await RawSender.connect(f.recv.port, { hello: false });
    await s.send(new TextEncoder().encode("GET / HTTP/1.1\r\nHost: x\r\n\r\n"));
    await readHello(s.reader, { protocol: TRANSFER_PROTOCOL, version: TRANSFER_VERSION });
    const answer = await s.reply();
    assert.equal(answer?.type, ControlFrame.Error);
    assert.match(new TextDecoder().decode(answer!.payload), /not a sockit peer/);
    await f.recv.waitForStderr(/not a sockit peer/);
  }
  // Still serving.
  await using ok = await RawSender.connect(f.recv.port);
  const answer = await ok.offer("folder", { kind: EntryKind.Directory });
  assert.equal(answer.type, TransferFrame.Confirm);
  assert.ok((await Deno.stat(`${f.out}/folder`)).isDirectory);
  assert.equal(await exists(`${f.out}/small.bin`), false);
  // The file before the violation was never committed: no final name, only its partial file.
  assert.equal(await exists(`${f.out}/fine.bin`), false);
});

Deno.test("recv refuses a second sender writing the same name, too-large files and files beyond free space", async () => {
  await using f = await fixture(["--max-size", "1MiB"]);
  await using a = await RawSender.connect(f.recv.port);
  await using b = await RawSender.connect(f.recv.port);
  assert.equal((await a.offer("same.bin", { size: 100 })).type, TransferFrame.Accept);
  const busy = await b.offer("same.bin", { size: 100 });
  assert.equal(busy.type, TransferFrame.Reject);
  assert.equal(reasonOf(busy), Reason.Busy);
  const large = await b.offer("large.bin", { size: MiB + 1 });
  assert.equal(reasonOf(large), Reason.TooLarge);
  await using g = await fixture();
  await using c = await RawSender.connect(g.recv.port);
  const huge = await c.offer("huge.bin", { size: 2 ** 52 });
  assert.equal(huge.type, TransferFrame.Reject);
  assert.equal(reasonOf(huge), Reason.NoSpace);
  assert.match(decodeRefusal(huge.payload).message, /needs 4096 TiB|needs \d/);
  assert.deepEqual(await listNames(g.out), []);
});

Deno.test("a version mismatch is a clear error on both sides", async () => {
  await using f = await fixture();
  // A v1 sender (before pipelining) against this v2 receiver.
  await using s = await RawSender.connect(f.recv.port, { hello: false });
  await s.send(encodeHello(TRANSFER_PROTOCOL, 1));
  const theirHello = await s.reply();
  assert.equal(theirHello?.type, ControlFrame.Hello);
  assert.equal(theirHello!.payload[6], TRANSFER_VERSION);
  const error = await s.reply();
  assert.equal(error?.type, ControlFrame.Error);
  assert.match(
    new TextDecoder().decode(error!.payload),
    /peer speaks transfer v1, this side speaks transfer v2/,
  );
  await f.recv.waitForStderr(/peer speaks transfer v1, this side speaks transfer v2/);

  // `sockit send` against a v1 receiver.
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const fake = (async () => {
    const conn = await listener.accept();
    await writeAll(conn, encodeHello(TRANSFER_PROTOCOL, 1));
    const reader = new BufferedReader(conn);
    await assert.rejects(
      readHello(reader, { protocol: TRANSFER_PROTOCOL, version: 1 }),
      VersionMismatchError,
    );
    conn.close();
  })();
  const file = `${f.base}/v.txt`;
  await Deno.writeTextFile(file, "v");
  const run = await runSockit(["send", `127.0.0.1:${listener.addr.port}`, file]);
  await fake;
  listener.close();
  assert.equal(run.code, 1);
  assert.match(run.stderr, /peer speaks transfer v1, this side speaks transfer v2/);
});

Deno.test("an aborted file keeps its partial data and the session goes on", async () => {
  await using f = await fixture();
  await using s = await RawSender.connect(f.recv.port);
  const data = pseudoRandomBytes(MiB, 41);
  assert.equal((await s.offer("shrunk.bin", { size: 2 * MiB })).type, TransferFrame.Accept);
  await s.frame(TransferFrame.Start, encodeStart(0));
  await s.data(data);
  await s.frame(TransferFrame.Abort, new TextEncoder().encode("source shrank"));
  const next = await s.offer("after", { kind: EntryKind.Directory });
  assert.equal(next.type, TransferFrame.Confirm);
  await s.frame(ControlFrame.Bye);
  assert.equal((await s.reply())?.type, ControlFrame.Bye);
  await f.recv.waitForStderr(/sender aborted "shrunk\.bin" after 1\.00 MiB: "source shrank"/);
  assert.deepEqual(await Deno.readFile(`${f.out}/.shrunk.bin.sockit-partial`), data);
  assert.equal(await exists(`${f.out}/shrunk.bin`), false);
});

Deno.test("pipelined files round-trip, and a refused or corrupt one in the middle of a batch leaves the rest intact", async () => {
  await using f = await fixture();
  await Deno.writeTextFile(`${f.out}/exists.txt`, "old\n");
  // A stale partial file under a pipelined file's name is replaced, never appended to.
  await Deno.writeTextFile(`${f.out}/.a.bin.sockit-partial`, "stale junk");
  await using s = await RawSender.connect(f.recv.port);
  const a = pseudoRandomBytes(3000, 51);
  const b = pseudoRandomBytes(MiB, 52); // exactly the largest pipelined size
  const c = pseudoRandomBytes(1, 53);
  const corrupt = pseudoRandomBytes(500, 54);
  await s.pipelined("a.bin", { data: a });
  await s.pipelined("exists.txt", { data: new TextEncoder().encode("new\n") });
  await s.pipelined("sub", { kind: EntryKind.Directory });
  await s.pipelined("sub/b.bin", { data: b });
  await s.pipelined("corrupt.bin", { data: corrupt, hash: sha256(c) });
  await s.pipelined("empty.bin");
  await s.pipelined("sub/c.bin", { data: c });
  await s.frame(TransferFrame.Flush);
  const answers = await s.replies(7);
  assert.deepEqual(answers.map((a) => a.type), [
    TransferFrame.Confirm,
    TransferFrame.Reject,
    TransferFrame.Confirm,
    TransferFrame.Confirm,
    TransferFrame.Failed,
    TransferFrame.Confirm,
    TransferFrame.Confirm,
  ]);
  assert.equal(reasonOf(answers[1]), Reason.Exists);
  assert.equal(reasonOf(answers[4]), Reason.HashMismatch);
  assert.equal(new TextDecoder().decode(answers[3].payload), "sub/b.bin");
  // A streamed file after the batch still works, and so does Bye.
  const d = pseudoRandomBytes(2 * MiB, 55);
  assert.equal((await s.offer("d.bin", { size: d.length })).type, TransferFrame.Accept);
  await s.frame(TransferFrame.Start, encodeStart(0));
  await s.data(d);
  await s.frame(TransferFrame.End, sha256(d));
  assert.equal((await s.reply())?.type, TransferFrame.Confirm);
  await s.frame(ControlFrame.Bye);
  assert.equal((await s.reply())?.type, ControlFrame.Bye);

  assert.deepEqual(await Deno.readFile(`${f.out}/a.bin`), a);
  assert.deepEqual(await Deno.readFile(`${f.out}/sub/b.bin`), b);
  assert.deepEqual(await Deno.readFile(`${f.out}/sub/c.bin`), c);
  assert.deepEqual(await Deno.readFile(`${f.out}/d.bin`), d);
  assert.deepEqual(await Deno.readFile(`${f.out}/empty.bin`), new Uint8Array(0));
  assert.equal(await Deno.readTextFile(`${f.out}/exists.txt`), "old\n");
  assert.deepEqual(await listNames(f.out), ["a.bin", "d.bin", "empty.bin", "exists.txt", "sub"]);
  assert.deepEqual(await listNames(`${f.out}/sub`), ["b.bin", "c.bin"]);
  await f.recv.waitForStderr(/failed "corrupt\.bin" .*hash mismatch/);
});

Deno.test("a pipelined batch gets the same answers whether it arrives in one write or in pieces", async () => {
  await using f = await fixture();
  const text = (t: string) => new TextEncoder().encode(t);
  const files = {
    "a.bin": pseudoRandomBytes(3000, 71),
    "b.bin": pseudoRandomBytes(9000, 72), // more than the receiver's first read buffer
    "empty.bin": new Uint8Array(0),
  };
  const batch = (dir: string) =>
    joined([
      ...pipelinedFrames(dir, { kind: EntryKind.Directory }),
      ...pipelinedFrames(`${dir}/a.bin`, { data: files["a.bin"] }),
      ...pipelinedFrames(`${dir}/exists.txt`, { data: text("new\n") }),
      ...pipelinedFrames(`${dir}/corrupt.bin`, {
        data: pseudoRandomBytes(500, 73),
        hash: sha256(text("something else")),
      }),
      ...pipelinedFrames(`${dir}/empty.bin`),
      ...pipelinedFrames(`${dir}/.x.sockit-partial`, { data: text("x") }),
      ...pipelinedFrames(`${dir}/b.bin`, { data: files["b.bin"] }),
      encodeFrame(TransferFrame.Flush),
    ]);
  const results: string[][] = [];
  // One write; one byte per write; pieces that split every frame somewhere else.
  for (const [dir, piece] of [["whole", Infinity], ["bytes", 1], ["pieces", 997]] as const) {
    await Deno.mkdir(`${f.out}/${dir}`);
    await Deno.writeTextFile(`${f.out}/${dir}/exists.txt`, "old\n");
    await using s = await RawSender.connect(f.recv.port);
    const bytes = batch(dir);
    for (let at = 0; at < bytes.length; at += piece) await s.send(bytes.subarray(at, at + piece));
    const answers = await s.replies(7);
    results.push(
      answers.map((a) =>
        a.type === TransferFrame.Confirm
          ? `confirm ${new TextDecoder().decode(a.payload).replace(dir, "DIR")}`
          : `${a.type === TransferFrame.Reject ? "reject" : "failed"} ${reasonOf(a)}`
      ),
    );
    await s.frame(ControlFrame.Bye);
    assert.equal((await s.reply())?.type, ControlFrame.Bye);
    for (const [name, data] of Object.entries(files)) {
      assert.deepEqual(await Deno.readFile(`${f.out}/${dir}/${name}`), data, `${dir}/${name}`);
    }
    assert.equal(await Deno.readTextFile(`${f.out}/${dir}/exists.txt`), "old\n");
    assert.deepEqual(await listNames(`${f.out}/${dir}`), [
      "a.bin",
      "b.bin",
      "empty.bin",
      "exists.txt",
    ]);
  }
  assert.deepEqual(results[0], [
    "confirm DIR",
    "confirm DIR/a.bin",
    `reject ${Reason.Exists}`,
    `failed ${Reason.HashMismatch}`,
    "confirm DIR/empty.bin",
    `reject ${Reason.InvalidName}`,
    "confirm DIR/b.bin",
  ]);
  assert.deepEqual(results[1], results[0]);
  assert.deepEqual(results[2], results[0]);
});

Deno.test("names in a folder recv made itself are not looked up, and a name taken anyway gets the answers an existing folder gives", async () => {
  await using f = await fixture();
  await Deno.mkdir(`${f.out}/old`); // there before: every name is looked up
  await using s = await RawSender.connect(f.recv.port);
  const a = pseudoRandomBytes(300, 101);
  const b = pseudoRandomBytes(300, 102); // the same size, other bytes
  const describe = (frame: Frame) =>
    frame.type === TransferFrame.Confirm
      ? "confirm"
      : `${frame.type === TransferFrame.Reject ? "reject" : "failed"} ${reasonOf(frame)}`;
  const answers: Record<string, string[]> = {};
  for (const dir of ["old", "new"]) {
    await s.pipelined(dir, { kind: EntryKind.Directory });
    await s.pipelined(`${dir}/sub`, { kind: EntryKind.Directory });
    await s.pipelined(`${dir}/a.bin`, { data: a });
    await s.frame(TransferFrame.Flush);
    assert.deepEqual((await s.replies(3)).map(describe), ["confirm", "confirm", "confirm"]);
    // The same names again, in a later batch: the same file, other bytes, another size, and
    // a file where a folder is.
    await s.pipelined(`${dir}/a.bin`, { data: a });
    await s.pipelined(`${dir}/a.bin`, { data: b });
    await s.pipelined(`${dir}/a.bin`, { data: new Uint8Array(5) });
    await s.pipelined(`${dir}/sub`, { data: a });
    await s.frame(TransferFrame.Flush);
    answers[dir] = (await s.replies(4)).map(describe);
  }
  await s.frame(ControlFrame.Bye);
  assert.equal((await s.reply())?.type, ControlFrame.Bye);
  assert.deepEqual(answers.old, [
    `reject ${Reason.AlreadyThere}`,
    `reject ${Reason.Exists}`,
    `reject ${Reason.Exists}`,
    `reject ${Reason.Exists}`,
  ]);
  assert.deepEqual(answers.new, answers.old);
  for (const dir of ["old", "new"]) {
    assert.deepEqual(await Deno.readFile(`${f.out}/${dir}/a.bin`), a);
    assert.deepEqual(await listNames(`${f.out}/${dir}`), ["a.bin", "sub"]); // no partial left
  }
});

Deno.test("pipelined files get exactly the mode offered, also where the umask would cut it", async () => {
  await using f = await fixture();
  await using s = await RawSender.connect(f.recv.port);
  // With the usual umask 022, 0o777 and 0o666 take the chmod path, the others are created so.
  const modes = [0o644, 0o640, 0o600, 0o444, 0o755, 0o700, 0o777, 0o666];
  const data = pseudoRandomBytes(1000, 91);
  for (const mode of modes) await s.pipelined(`m${mode.toString(8)}.bin`, { data, mode });
  await s.frame(TransferFrame.Flush);
  for (const answer of await s.replies(modes.length)) {
    assert.equal(answer.type, TransferFrame.Confirm);
  }
  await s.frame(ControlFrame.Bye);
  assert.equal((await s.reply())?.type, ControlFrame.Bye);
  for (const mode of modes) {
    const path = `${f.out}/m${mode.toString(8)}.bin`;
    assert.equal((await Deno.stat(path)).mode! & 0o777, mode, path);
    assert.deepEqual(await Deno.readFile(path), data);
  }
  assert.equal((await listNames(f.out)).length, modes.length);
});

Deno.test("hostile names inside a pipelined batch are rejected and nothing lands outside the folder", async () => {
  await using f = await fixture();
  await Deno.symlink(f.outside, `${f.out}/link`);
  // A dangling link under the very name offered: never written through, never replaced.
  await Deno.symlink(`${f.outside}/through-link.txt`, `${f.out}/dangling`);
  await using s = await RawSender.connect(f.recv.port);
  const data = new TextEncoder().encode("evil\n");
  await s.pipelined("dangling", { data });
  await s.pipelined("good1.txt", { data });
  for (const name of HOSTILE_FILE_NAMES) await s.pipelined(name, { data });
  await s.pipelined("../escape-dir", { kind: EntryKind.Directory });
  await s.pipelined("link/escape-dir", { kind: EntryKind.Directory });
  await s.pipelined("evil-link", { kind: EntryKind.Symlink, target: "../outside" });
  await s.pipelined("good2.txt", { data });
  await s.frame(TransferFrame.Flush);
  const [dangling, ...answers] = await s.replies(HOSTILE_FILE_NAMES.length + 6);
  assert.notEqual(dangling.type, TransferFrame.Confirm);
  assert.equal(reasonOf(dangling), Reason.Exists);
  assert.equal(answers[0].type, TransferFrame.Confirm);
  for (const [i, name] of HOSTILE_FILE_NAMES.entries()) {
    const answer = answers[i + 1];
    assert.equal(answer.type, TransferFrame.Reject, `accepted ${JSON.stringify(name)}`);
    assert.equal(reasonOf(answer), Reason.InvalidName, JSON.stringify(name));
  }
  for (const answer of answers.slice(HOSTILE_FILE_NAMES.length + 1, -1)) {
    assert.equal(answer.type, TransferFrame.Reject);
  }
  assert.equal(answers.at(-1)!.type, TransferFrame.Confirm);
  await s.frame(ControlFrame.Bye);
  assert.equal((await s.reply())?.type, ControlFrame.Bye);

  assert.deepEqual(await listNames(f.outside), []);
  assert.deepEqual(await listNames(f.base), ["out", "outside"]);
  assert.deepEqual(await listNames(f.out), ["dangling", "good1.txt", "good2.txt", "link"]);
  assert.ok((await Deno.lstat(`${f.out}/dangling`)).isSymlink);
  assert.deepEqual(await Deno.readFile(`${f.out}/good2.txt`), data);
});

/** An Offer payload whose path (or link text) has a byte that is not valid UTF-8. */
function invalidUtf8Offer(
  options: { kind?: EntryKindValue; size?: number; pipelined?: boolean; badTarget?: boolean },
): Uint8Array {
  const path = "bad-X.bin";
  const target = options.badTarget ? "t-X" : "";
  const payload = encodeOffer({
    kind: options.kind ?? EntryKind.File,
    path,
    size: options.size ?? 0,
    mode: 0o644,
    mtimeMs: 0,
    verify: (options.kind ?? EntryKind.File) === EntryKind.File,
    pipelined: options.pipelined ?? false,
    target,
  });
  const at = options.badTarget ? 28 + path.length + target.indexOf("X") : 26 + path.indexOf("X");
  payload[at] = 0xff;
  return payload;
}

Deno.test("recv refuses a name that is not valid UTF-8 as an invalid name, and the session goes on", async () => {
  await using f = await fixture();
  await using s = await RawSender.connect(f.recv.port);
  await s.frame(TransferFrame.Offer, invalidUtf8Offer({ size: 3 }));
  const streamed = await s.reply();
  assert.equal(streamed?.type, TransferFrame.Reject);
  assert.equal(reasonOf(streamed!), Reason.InvalidName);
  assert.match(decodeRefusal(streamed!.payload).message, /not valid UTF-8/);
  // Pipelined: the data that follows is read and thrown away.
  await s.frame(TransferFrame.Offer, invalidUtf8Offer({ size: 3, pipelined: true }));
  await s.frame(TransferFrame.Data, new Uint8Array([1, 2, 3]));
  await s.frame(TransferFrame.End, sha256(new Uint8Array([1, 2, 3])));
  await s.frame(
    TransferFrame.Offer,
    invalidUtf8Offer({ kind: EntryKind.Symlink, pipelined: true, badTarget: true }),
  );
  await s.pipelined("after.txt", { data: new Uint8Array([7]) });
  await s.frame(TransferFrame.Flush);
  const [file, link, after] = await s.replies(3);
  assert.equal(reasonOf(file), Reason.InvalidName);
  assert.equal(reasonOf(link), Reason.InvalidName);
  assert.equal(after.type, TransferFrame.Confirm);
  await s.frame(ControlFrame.Bye);
  assert.equal((await s.reply())?.type, ControlFrame.Bye);
  assert.deepEqual(await listNames(f.out), ["after.txt"]);
  await f.recv.waitForStderr(/rejected "bad-\ufffd\.bin" .*invalid name .*not valid UTF-8/);
});

Deno.test("recv creates a link only when it resolves inside DIR through the links already there", async () => {
  await using f = await fixture();
  await Deno.symlink(f.outside, `${f.out}/planted`); // put there by someone else, points out
  await using s = await RawSender.connect(f.recv.port);
  const link = (path: string, target: string) => s.offer(path, { kind: EntryKind.Symlink, target });
  assert.equal((await link("s", ".")).type, TransferFrame.Confirm);
  // Normalised, this is s/etc (inside); through s -> . it is ../../../../../../../../../etc.
  const escape = "s/".repeat(10) + "../".repeat(9) + "etc";
  const refused: [string, string][] = [
    ["u", escape],
    ["up", "s/.."],
    ["via-planted", "planted/x"],
    ["later", "not-yet/../.."], // not-yet could become a link afterwards
  ];
  for (const [path, target] of refused) {
    const answer = await link(path, target);
    assert.equal(answer.type, TransferFrame.Reject, `accepted ${path} -> ${target}`);
    assert.equal(reasonOf(answer), Reason.InvalidName);
  }
  // The same inside a pipelined batch.
  await s.pipelined("u2", { kind: EntryKind.Symlink, target: escape });
  await s.pipelined("d", { kind: EntryKind.Directory });
  await s.pipelined("d/in", { kind: EntryKind.Symlink, target: "../s/d" }); // stays inside
  await s.frame(TransferFrame.Flush);
  const [u2, d, inside] = await s.replies(3);
  assert.equal(reasonOf(u2), Reason.InvalidName);
  assert.equal(d.type, TransferFrame.Confirm);
  assert.equal(inside.type, TransferFrame.Confirm);
  await s.frame(ControlFrame.Bye);
  assert.equal((await s.reply())?.type, ControlFrame.Bye);

  assert.deepEqual(await listNames(f.out), ["d", "planted", "s"]);
  assert.deepEqual(await listNames(`${f.out}/d`), ["in"]);
  // Every link recv made resolves inside DIR.
  for (const made of [`${f.out}/s`, `${f.out}/d/in`]) {
    const real = await Deno.realPath(made);
    assert.ok(real === f.out || real.startsWith(`${f.out}/`), `${made} resolves to ${real}`);
  }
  await f.recv.waitForStderr(/rejected "u" .*invalid name .*out of the link 's'/);
});

Deno.test("recv quotes the names, Abort and Error texts a sender sends in its log lines", async () => {
  await using f = await fixture();
  const evil = 'x" reply=0x00\nsockit recv: received "forged.txt"\x1b[2K\x1b]0;title\x07';
  {
    await using s = await RawSender.connect(f.recv.port);
    assert.equal((await s.offer(evil, { size: 1 })).type, TransferFrame.Reject);
    assert.equal((await s.offer('quo"te.txt', { size: 5 })).type, TransferFrame.Accept);
    await s.frame(TransferFrame.Start, encodeStart(0));
    await s.frame(TransferFrame.Data, new Uint8Array([1, 2]));
    await s.frame(TransferFrame.Abort, new TextEncoder().encode(evil));
    assert.equal(
      (await s.offer("next", { kind: EntryKind.Directory })).type,
      TransferFrame.Confirm,
    );
    await s.frame(ControlFrame.Error, new TextEncoder().encode(evil));
    assert.equal((await s.reply())?.type, ControlFrame.Error);
  }
  await f.recv.waitForStderr(/session with .* ended: Sender ended the session/);
  const quoted = String
    .raw`"x\" reply=0x00\nsockit recv: received \"forged.txt\"\x1b[2K\x1b]0;title\x07"`;
  const lines = f.recv.stderr;
  for (const line of lines) {
    assert.ok(
      line.startsWith("sockit recv: "),
      `a line not written by recv: ${JSON.stringify(line)}`,
    );
    // deno-lint-ignore no-control-regex
    assert.doesNotMatch(line, /[\x00-\x08\x0b-\x1f\x7f]/, `raw control character in ${line}`);
  }
  assert.ok(lines.some((l) => l.includes(`rejected ${quoted}`)), lines.join("\n"));
  assert.ok(
    lines.some((l) => l.includes(String.raw`sender aborted "quo\"te.txt" after 2 B: ${quoted}`)),
    lines.join("\n"),
  );
  assert.ok(lines.some((l) => l.includes(`Sender ended the session: ${quoted}`)), lines.join("\n"));
});

Deno.test("recv on SIGTERM tells the sender, logs the session it cut, keeps the partial file and exits 0", async () => {
  await using f = await fixture();
  await using s = await RawSender.connect(f.recv.port);
  const data = pseudoRandomBytes(MiB, 61);
  assert.equal((await s.offer("half.bin", { size: 4 * MiB })).type, TransferFrame.Accept);
  await s.frame(TransferFrame.Start, encodeStart(0));
  await s.data(data);
  f.recv.child.kill("SIGTERM");
  const answer = await s.reply();
  assert.equal(answer?.type, ControlFrame.Error);
  assert.equal(new TextDecoder().decode(answer!.payload), ReceiverError.Shutdown);
  s.close(); // as a real sender does on an Error frame
  assert.equal((await f.recv.status).code, 0);
  assert.ok(await exists(`${f.out}/.half.bin.sockit-partial`), "partial file kept");
  assert.equal(await exists(`${f.out}/half.bin`), false);
  assert.ok(f.recv.stderr.some((l) => /cut the session with .* partial files kept/.test(l)));
  assert.ok(f.recv.stderr.some((l) => /got SIGTERM, stopped \(cut 1 sender in progress/.test(l)));
});

Deno.test("idle connections take no sender place: 8 of them do not lock out a real sender", async () => {
  await using f = await fixture();
  const idle = await Promise.all(
    Array.from({ length: 8 }, () => Deno.connect({ hostname: "127.0.0.1", port: f.recv.port })),
  );
  try {
    const file = `${f.base}/real.txt`;
    await Deno.writeTextFile(file, "through\n");
    const run = await runSockit(["send", `127.0.0.1:${f.recv.port}`, file]);
    assert.equal(run.code, 0, run.stderr);
    assert.equal(await Deno.readTextFile(`${f.out}/real.txt`), "through\n");
  } finally {
    for (const c of idle) c.close();
  }
});

Deno.test('a sender over --max-senders hears the documented "receiver busy"', async () => {
  await using f = await fixture();
  const file = `${f.base}/b.txt`;
  await Deno.writeTextFile(file, "b");
  // Eight senders past their hello take every place (the default --max-senders).
  const holders = await Promise.all(
    Array.from({ length: 8 }, () => RawSender.connect(f.recv.port)),
  );
  try {
    const run = await runSockit(["send", `127.0.0.1:${f.recv.port}`, file]);
    assert.equal(run.code, 1);
    assert.match(run.stderr, /sockit send: Cannot send: receiver busy/);
    assert.doesNotMatch(run.stderr, /not a sockit peer/);
    await f.recv.waitForStderr(/refused sender .*: receiver busy/);
    const still = await holders[0].offer("still-served", { kind: EntryKind.Directory });
    assert.equal(still.type, TransferFrame.Confirm);
    holders[7].close();
    await f.recv.waitForStderr(/session with .* ended: Sender closed the connection without Bye/);
    const again = await runSockit(["send", `127.0.0.1:${f.recv.port}`, file]);
    assert.equal(again.code, 0, again.stderr);
  } finally {
    for (const h of holders) h.close();
  }
  // With --max-senders 1, one sender fills it.
  await using g = await fixture(["--max-senders", "1"]);
  await using _holder = await RawSender.connect(g.recv.port);
  const busy = await runSockit(["send", `127.0.0.1:${g.recv.port}`, file]);
  assert.equal(busy.code, 1);
  assert.match(busy.stderr, /receiver busy/);
});
