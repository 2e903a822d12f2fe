// The sender and receiver modules in one process over a loopback socket, with the SHA-256 on
// the worker thread forced on (the CLI only uses it on machines with 4+ cores).

import assert from "node:assert/strict";
import { receiveSession } from "../lib/transfer/receiver.ts";
import { sendEntries } from "../lib/transfer/sender.ts";
import { collectEntries } from "../lib/transfer/walk.ts";
import type { EntryResult } from "../lib/transfer/progress.ts";
import { captureLog, pseudoRandomBytes } from "./_helpers.ts";
import { BufferedReader } from "../lib/net/buffered_reader.ts";
import { encodeFrame, encodeHello, readFrame, readHello } from "../lib/net/frame.ts";
import {
  encodeOffer,
  EntryKind,
  TRANSFER_VERSION,
  TransferFrame,
} from "../lib/transfer/protocol.ts";
import { writeAll } from "../lib/net/write_all.ts";
import { withTimeout } from "../lib/net/deadline.ts";

const MiB = 1024 * 1024;

/**
 * Accepts one connection on `listener` and runs the receiver on it with `options`; the
 * connection is closed afterwards (it may already be, by a deadline).
 */
async function receiveOne(
  listener: Deno.TcpListener,
  options: Parameters<typeof receiveSession>[1],
): ReturnType<typeof receiveSession> {
  const conn = await listener.accept();
  try {
    return await receiveSession(conn, options);
  } finally {
    try {
      conn.close();
    } catch {
      // Closed by the deadline.
    }
  }
}

async function transferOnce(
  dir: string,
  paths: string[],
  options: Partial<Parameters<typeof receiveSession>[1]> = {},
) {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const received = (async () => {
    const conn = await listener.accept();
    listener.close();
    try {
      return await receiveSession(conn, { dir, hashWorker: "always", ...options });
    } finally {
      conn.close();
    }
  })();
  const entries: EntryResult[] = [];
  const conn = await Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port });
  try {
    const sent = await sendEntries(conn, await collectEntries(paths), {
      hashWorker: "always",
      reporter: {
        start() {},
        fileStart() {},
        progress() {},
        entry: (r) => entries.push(r),
        warn() {},
        summary() {},
      },
    });
    return { sent, received: await received, entries };
  } finally {
    conn.close();
  }
}

Deno.test("hashing on the worker thread verifies whole files and resumed prefixes", async () => {
  const base = await Deno.realPath(await Deno.makeTempDir({ prefix: "sockit-transfer-" }));
  try {
    await Deno.mkdir(`${base}/out`);
    const a = pseudoRandomBytes(6 * MiB + 3, 31);
    const b = pseudoRandomBytes(5 * MiB, 32);
    await Deno.writeFile(`${base}/a.bin`, a);
    await Deno.writeFile(`${base}/b.bin`, b);
    // b.bin was half received before.
    await Deno.writeFile(`${base}/out/.b.bin.sockit-partial`, b.subarray(0, 2 * MiB));

    const run = await transferOnce(`${base}/out`, [`${base}/a.bin`, `${base}/b.bin`]);
    assert.equal(run.sent.ok, true);
    assert.equal(run.received.ok, true);
    assert.deepEqual(
      run.entries.map((e) => [e.path, e.status, e.resumedFrom, e.sent, e.verified]),
      [
        ["a.bin", "confirmed", 0, a.length, true],
        ["b.bin", "confirmed", 2 * MiB, 3 * MiB, true],
      ],
    );
    assert.deepEqual(await Deno.readFile(`${base}/out/a.bin`), a);
    assert.deepEqual(await Deno.readFile(`${base}/out/b.bin`), b);
  } finally {
    await Deno.remove(base, { recursive: true });
  }
});

Deno.test("entryLines: false leaves the receiver's log to refusals and the session's end", async () => {
  const base = await Deno.realPath(await Deno.makeTempDir({ prefix: "sockit-transfer-" }));
  try {
    await Deno.mkdir(`${base}/tree`);
    for (let i = 0; i < 5; i++) {
      await Deno.writeFile(`${base}/tree/f${i}.bin`, pseudoRandomBytes(100 + i, 40 + i));
    }
    for (const entryLines of [true, false]) {
      const out = `${base}/out-${entryLines}`;
      await Deno.mkdir(`${out}/tree`, { recursive: true });
      await Deno.writeTextFile(`${out}/tree/f3.bin`, "other content");
      const log = captureLog("recv");
      const run = await transferOnce(out, [`${base}/tree`], { logger: log.logger, entryLines });
      assert.equal(run.received.confirmed, 5);
      assert.equal(run.received.rejected, 1);
      const received = log.lines.filter((l) => /: received "tree\/f\d\.bin"/.test(l));
      assert.equal(received.length, entryLines ? 4 : 0, log.lines.join("\n"));
      assert.ok(log.lines.some((l) => /error: rejected "tree\/f3\.bin" .*exists/.test(l)));
      assert.ok(
        log.lines.some((l) => /finished: 5\/6 entries stored/.test(l)),
        log.lines.join("\n"),
      );
    }
  } finally {
    await Deno.remove(base, { recursive: true });
  }
});

Deno.test("the receiver closes a sender that goes silent after its hello", async () => {
  const dir = await Deno.realPath(await Deno.makeTempDir({ prefix: "sockit-transfer-" }));
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  try {
    const session = receiveOne(listener, { dir, idleTimeoutMs: 300 });
    const client = await Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port });
    const reader = new BufferedReader(client);
    await writeAll(client, encodeHello("transfer", TRANSFER_VERSION));
    await readHello(reader, { protocol: "transfer", version: TRANSFER_VERSION });
    // Now say nothing: the receiver gives up, tells why, and closes.
    const summary = await withTimeout(session, 5000, { what: "the idle deadline" });
    assert.equal(summary.ok, false);
    assert.match(summary.error ?? "", /Sender sent nothing for 300 ms/);
    // The deadline closes the connection (a pending read cannot be cancelled otherwise).
    assert.equal(
      await withTimeout(readFrame(reader), 5000, { what: "the receiver to close" }),
      null,
    );
    client.close();
  } finally {
    listener.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("the receiver closes a connection whose hello does not come within the handshake deadline", async () => {
  const dir = await Deno.realPath(await Deno.makeTempDir({ prefix: "sockit-transfer-" }));
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  try {
    const session = receiveOne(listener, { dir, handshakeTimeoutMs: 200 });
    const client = await Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port });
    const summary = await withTimeout(session, 5000, { what: "the handshake deadline" });
    assert.equal(summary.started, false);
    assert.match(summary.error ?? "", /Timed out after 200 ms waiting for the sender's hello/);
    const reader = new BufferedReader(client);
    await readHello(reader, { protocol: "transfer", version: TRANSFER_VERSION });
    assert.equal(await withTimeout(readFrame(reader), 5000, { what: "the close" }), null);
    client.close();
  } finally {
    listener.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("the receiver cuts a sender that never reads its answers within the idle deadline", async () => {
  const dir = await Deno.realPath(await Deno.makeTempDir({ prefix: "sockit-transfer-" }));
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  try {
    const session = receiveOne(listener, { dir, idleTimeoutMs: 300, sync: false });
    const client = await Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port });
    // The same deep folder, offered again and again: each answer carries its ~4 KB name, and
    // this side never reads one, so the receiver's writes stall once the socket buffers fill.
    const path = Array.from({ length: 15 }, (_, i) => `${i}`.padEnd(250, "d")).join("/");
    const offer = encodeFrame(
      TransferFrame.Offer,
      encodeOffer({
        kind: EntryKind.Directory,
        path,
        size: 0,
        mode: 0o755,
        mtimeMs: 0,
        verify: false,
        pipelined: true,
        target: "",
      }),
    );
    const burst = new Uint8Array(64 * offer.length + 5);
    for (let i = 0; i < 64; i++) burst.set(offer, i * offer.length);
    burst.set(encodeFrame(TransferFrame.Flush), 64 * offer.length);
    await writeAll(client, encodeHello("transfer", TRANSFER_VERSION));
    const flood = (async () => {
      try {
        while (true) await writeAll(client, burst);
      } catch {
        // The receiver gave up and closed: the point of the test.
      }
    })();
    const started = performance.now();
    const summary = await withTimeout(session, 20_000, { what: "the write deadline" });
    assert.match(summary.error ?? "", /Sender read none of its answers for 300 ms/);
    assert.ok(summary.entries > 0);
    client.close();
    await flood;
    assert.ok(performance.now() - started < 15_000);
  } finally {
    listener.close();
    await Deno.remove(dir, { recursive: true });
  }
});
