import assert from "node:assert/strict";
import { Connection } from "../lib/net/connection.ts";
import { describeCloseReason } from "../lib/net/close_reason.ts";
import { delay } from "../lib/net/deadline.ts";
import { TestClient } from "./_helpers.ts";

const enc = (s: string) => new TextEncoder().encode(s);

/** Accepts one connection on a fresh loopback listener and runs a Connection on it. */
async function connectionPair(
  options: ConstructorParameters<typeof Connection>[1],
): Promise<{ connection: Connection; client: TestClient; listener: Deno.TcpListener }> {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const [conn, client] = await Promise.all([
    listener.accept(),
    TestClient.connect(listener.addr.port),
  ]);
  return { connection: new Connection(conn, options), client, listener };
}

Deno.test("Connection delivers queued messages in order and closes so the peer sees EOF", async () => {
  const { connection, client, listener } = await connectionPair({});
  const done = connection.run(async (s) => {
    for (let i = 0; i < 1000; i++) s.send(enc(`line ${i}\n`));
    await s.close({ kind: "shutdown", text: "done" });
  });
  for (let i = 0; i < 1000; i++) assert.equal(await client.readLine(), `line ${i}`);
  assert.equal(await client.readLine(), null);
  assert.equal((await done).text, "done");
  client.close();
  listener.close();
});

Deno.test("Connection closes a peer that never reads once its outbox cap is passed", async () => {
  const { connection, client, listener } = await connectionPair({
    maxQueuedBytes: 256 * 1024,
    // The farewell of a slow consumer waits for its socket up to the write timeout.
    writeTimeoutMs: 200,
    flushTimeoutMs: 100,
    farewell: (reason) => enc(`bye: ${describeCloseReason(reason)}\n`),
  });
  const chunk = new Uint8Array(64 * 1024);
  let sent = 0;
  let maxQueued = 0;
  const info = await connection.run(async (s) => {
    // The client never reads: sooner or later the outbox is over its cap.
    while (s.send(chunk)) {
      sent++;
      maxQueued = Math.max(maxQueued, s.queuedBytes);
      await new Promise((r) => setTimeout(r, 0));
    }
    await s.closed;
  });
  assert.match(info.text, /slow consumer/);
  assert.ok(maxQueued <= 256 * 1024, `queued up to ${maxQueued} bytes`);
  assert.ok(sent > 4, `sent ${sent} chunks`);
  client.close();
  listener.close();
});

Deno.test("Connection with overflow 'drop' counts what it drops and stays open", async () => {
  const { connection, client, listener } = await connectionPair({
    maxQueuedBytes: 1024,
    overflow: "drop",
  });
  const done = connection.run(async (s) => {
    // Nothing has been written yet when these are queued, so the cap counts them all.
    for (let i = 0; i < 20; i++) s.send(new Uint8Array(100).fill(0x61 + (i % 26)));
    s.send(enc("\n"));
    await s.reader.readLine(10); // wait for the client's go-ahead
    await s.close({ kind: "shutdown", text: "done" });
  });
  const line = await client.readLine();
  assert.equal(line?.length, 1000);
  assert.equal(connection.dropped, 10);
  assert.equal(connection.droppedBytes, 1000);
  await client.writeLine("go");
  assert.equal((await done).text, "done");
  client.close();
  listener.close();
});

Deno.test("Connection closes an idle peer after idleTimeoutMs with a farewell", async () => {
  const { connection, client, listener } = await connectionPair({
    idleTimeoutMs: 200,
    farewell: (reason) => enc(`closing: ${describeCloseReason(reason)}\n`),
  });
  const done = connection.run(async (s) => {
    while ((await s.reader.readLine(100)) !== null) { /* ignore */ }
  });
  assert.match((await client.readLine()) ?? "", /closing: idle for more than 200 ms/);
  assert.equal(await client.readLine(), null);
  assert.match((await done).text, /idle/);
  client.close();
  listener.close();
});

Deno.test("Connection sends heartbeats while the peer is quiet and keeps a live peer", async () => {
  const { connection, client, listener } = await connectionPair({
    pingIntervalMs: 50,
    idleTimeoutMs: 2000,
    ping: () => enc("PING\n"),
  });
  const done = connection.run(async (s) => {
    let line;
    while ((line = await s.reader.readLine(100)) !== null) {
      if (new TextDecoder().decode(line) === "quit") break;
    }
  });
  assert.equal(await client.readLine(), "PING");
  await client.writeLine("PONG");
  assert.equal(await client.readLine(), "PING");
  await client.writeLine("quit");
  assert.equal((await done).text, "peer closed");
  client.close();
  listener.close();
});

Deno.test("Connection reports the peer closing as 'peer closed'", async () => {
  const { connection, client, listener } = await connectionPair({});
  const done = connection.run(async (s) => {
    while ((await s.reader.readLine(100)) !== null) { /* read to EOF */ }
  });
  await client.writeLine("hi");
  client.close();
  assert.equal((await done).text, "peer closed");
  assert.equal(connection.bytesIn, 3);
  listener.close();
});

Deno.test("Connection forgets written messages even when its outbox never empties", async () => {
  // A connection whose every write takes a timer tick: the writer always has a backlog.
  let written = 0;
  const conn = {
    read: () => new Promise<number | null>(() => {}),
    write: (p: Uint8Array) =>
      new Promise<number>((r) => setTimeout(() => r((written += p.length, p.length)), 0)),
    closeWrite: () => Promise.resolve(),
    close: () => {},
  };
  const connection = new Connection(conn, { maxQueuedBytes: 1 << 20, overflow: "drop" });
  void connection.run(() => connection.closed.then(() => {}));
  const before = Deno.memoryUsage().external;
  const total = 48 * 1024 * 1024;
  let queued = 0;
  while (queued < total) {
    // A little more than the writer takes per tick, so the outbox never drains.
    for (let i = 0; i < 16; i++) {
      if (connection.send(new Uint8Array(1024))) queued += 1024;
    }
    await new Promise((r) => setTimeout(r, 0));
  }
  const grown = Deno.memoryUsage().external - before;
  await connection.close({ kind: "shutdown", text: "done" }, { flush: false });
  assert.ok(written > 0);
  // Holding every written message would keep all 48 MiB alive.
  assert.ok(grown < 16 * 1024 * 1024, `external memory grew by ${grown} bytes`);
});

Deno.test("Connection with flow control holds producers while behind, frees them when stuck or drained", async () => {
  const events: boolean[] = [];
  let stuckSeen!: () => void;
  const stuckNow = new Promise<void>((r) => (stuckSeen = r));
  const { connection, client, listener } = await connectionPair({
    maxQueuedBytes: 64 * 1024 * 1024,
    flow: { highWaterBytes: 256 * 1024, lowWaterBytes: 64 * 1024, stallTimeoutMs: 200 },
    onStuck: (stuck) => {
      events.push(stuck);
      if (stuck) stuckSeen();
    },
  });
  const done = connection.run(() => connection.closed.then(() => {}));
  // The client does not read: the kernel buffers fill, then the outbox passes high water.
  const chunk = new Uint8Array(64 * 1024).fill(0x61);
  let sent = 0;
  // (On a very busy machine the stall may come first; the outcome below is the same.)
  while (!connection.holdsProducers && !connection.stuck) {
    assert.ok(connection.send(chunk));
    sent += chunk.length;
    await new Promise((r) => setTimeout(r, 0));
  }
  const released = connection.released();
  // Nobody reads for the stall time: the peer is stuck and holds nobody back any more.
  await stuckNow;
  await released;
  assert.equal(connection.stuck, true);
  assert.equal(connection.holdsProducers, false);
  // It reads everything: live again, nothing lost.
  const got = await client.readBytes(sent, 30_000);
  assert.ok(got.every((b) => b === 0x61));
  assert.deepEqual(events, [true, false]);
  assert.equal(connection.queuedBytes, 0);
  await connection.close({ kind: "shutdown" });
  await done;
  client.close();
  listener.close();
});

Deno.test("Connection.holdReads() stops the idle clock while this side does not read on purpose", async () => {
  const { connection, client, listener } = await connectionPair({ idleTimeoutMs: 100 });
  const release = connection.holdReads();
  const done = connection.run(async (s) => {
    await s.closed;
  });
  // Three idle timeouts pass while reads are held: the peer is not blamed.
  await delay(300);
  assert.equal(connection.closing, false);
  release();
  // Released: silence counts again, from now.
  const info = await done;
  assert.equal(info.reason.kind, "idle");
  client.close();
  listener.close();
});
