// The sender and receiver modules in one process over a loopback socket, with the SHA-256 on
// the worker thread forced on (the CLI only uses it on machines with 4+ cores).

import assert from "node:assert/strict";
import { receiveSession } from "../lib/transfer/receiver.ts";
import { sendEntries } from "../lib/transfer/sender.ts";
import { collectEntries } from "../lib/transfer/walk.ts";
import type { EntryResult } from "../lib/transfer/progress.ts";
import { pseudoRandomBytes } from "./_helpers.ts";
import { BufferedReader } from "../lib/net/buffered_reader.ts";
import { encodeHello, readFrame, readHello } from "../lib/net/frame.ts";
import { TRANSFER_VERSION } from "../lib/transfer/protocol.ts";
import { writeAll } from "../lib/net/write_all.ts";
import { withTimeout } from "../lib/net/deadline.ts";

const MiB = 1024 * 1024;

async function transferOnce(dir: string, paths: string[]) {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const received = (async () => {
    const conn = await listener.accept();
    listener.close();
    try {
      return await receiveSession(conn, { dir, hashWorker: "always" });
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

Deno.test("the receiver closes a sender that goes silent after its hello", async () => {
  const dir = await Deno.realPath(await Deno.makeTempDir({ prefix: "sockit-transfer-" }));
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  try {
    const session = (async () => {
      const conn = await listener.accept();
      return await receiveSession(conn, { dir, idleTimeoutMs: 300 });
    })();
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
