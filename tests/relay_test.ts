import assert from "node:assert/strict";
import { Relay, type RelayOptions } from "../lib/relay/mod.ts";
import { RelayFrame } from "../lib/relay/protocol.ts";
import { decodeDeliverPayload, encodeDeliverPayload } from "../lib/relay/protocol.ts";
import { ControlFrame, encodeFrame, encodeHello, readFrame, readHello } from "../lib/net/frame.ts";
import { delay, withTimeout } from "../lib/net/deadline.ts";
import { RELAY_DEFAULTS } from "../lib/relay/limits.ts";
import { BufferedReader } from "../lib/net/buffered_reader.ts";
import { concatBytes } from "../lib/net/bytes.ts";
import {
  captureLog,
  EVENT_TIMEOUT_MS,
  peerTest,
  pseudoRandomBytes,
  TestClient,
} from "./_helpers.ts";

const enc = (s: string) => new TextEncoder().encode(s);
const dec = (b: Uint8Array) => new TextDecoder().decode(b);

/** An in-process relay on a free loopback port, with clients that know their names. */
function startTestRelay(options: RelayOptions = {}) {
  const relay = new Relay(Deno.listen({ hostname: "127.0.0.1", port: 0 }), options);
  const clients: TestClient[] = [];
  return {
    relay,
    /** Connects a line client and reads its welcome; resolves the client and its name. */
    async join(): Promise<{ client: TestClient; name: string }> {
      const client = await TestClient.connect(relay.addr.port);
      clients.push(client);
      const welcome = await client.readLine();
      const m = welcome?.match(/^\* welcome (\S+),/);
      assert.ok(m, `unexpected welcome: ${welcome}`);
      return { client, name: m[1] };
    },
    async [Symbol.asyncDispose]() {
      clients.forEach((c) => c.close());
      await relay.shutdown();
    },
  };
}

/** Reads lines up to the reply of /who; returns the lines before it. */
async function linesUntilWho(client: TestClient): Promise<string[]> {
  await client.writeLine("/who");
  const seen: string[] = [];
  while (true) {
    const line = await client.readLine();
    assert.notEqual(line, null, "connection closed before the /who reply");
    if (line!.startsWith("* in ")) return seen;
    seen.push(line!);
  }
}

Deno.test("relay delivers a line to every client but its sender", async () => {
  await using t = startTestRelay();
  const a = await t.join();
  const b = await t.join();
  const c = await t.join();
  await a.client.writeLine("hello");
  assert.equal(await b.client.readLineMatching(/^\[/), `[${a.name}] hello`);
  assert.equal(await c.client.readLineMatching(/^\[/), `[${a.name}] hello`);
  // Everything the sender got before its /who reply is a notice, never its own line.
  const before = await linesUntilWho(a.client);
  assert.deepEqual(before.filter((l) => !l.startsWith("* ")), []);
  // And b got the line exactly once: the next message line is c's.
  await c.client.writeLine("from c");
  assert.equal(await b.client.readLineMatching(/^\[/), `[${c.name}] from c`);
});

Deno.test("relay never interleaves lines from two clients blasting at once", async () => {
  await using t = startTestRelay();
  const a = await t.join();
  const b = await t.join();
  const r = await t.join();
  const N = 2000;
  const body = (tag: string, i: number) => `${tag}-${i}-${"x".repeat(i % 97)}`;
  const blast = (tag: string) => {
    const lines = Array.from({ length: N }, (_, i) => body(tag, i) + "\n").join("");
    return enc(lines);
  };
  // Small writes, so the two streams reach the relay in many interleaved pieces.
  const write = async (c: TestClient, data: Uint8Array) => {
    for (let off = 0; off < data.length; off += 777) await c.write(data.subarray(off, off + 777));
  };
  await Promise.all([write(a.client, blast("A")), write(b.client, blast("B"))]);
  const next = { A: 0, B: 0 };
  for (let got = 0; got < 2 * N;) {
    const line = (await r.client.readLine())!;
    if (line.startsWith("* ")) continue;
    const m = line.match(/^\[(\S+)\] ([AB])-(\d+)-(x*)$/);
    assert.ok(m, `mangled line: ${line.slice(0, 80)}`);
    const tag = m[2] as "A" | "B";
    assert.equal(m[1], tag === "A" ? a.name : b.name);
    assert.equal(Number(m[3]), next[tag], "lines of one sender arrive in order");
    assert.equal(m[4].length, next[tag] % 97);
    next[tag]++;
    got++;
  }
});

Deno.test("relay: a /nick and a message in one read go out under the new name", async () => {
  await using t = startTestRelay();
  const a = await t.join();
  const b = await t.join();
  await a.client.write("before\n/nick zed\nafter\n");
  assert.equal(await b.client.readLineMatching(/^\[/), `[${a.name}] before`);
  assert.equal(await b.client.readLineMatching(/^\[/), "[zed] after");
});

Deno.test("relay answers /join of the room a client is in with its welcome", async () => {
  await using t = startTestRelay();
  const a = await t.join();
  await a.client.writeLine("/join lobby");
  assert.equal(
    await a.client.readLine(),
    `* welcome ${a.name}, you are in room lobby; /help lists commands`,
  );
});

Deno.test("relay rooms isolate traffic", async () => {
  await using t = startTestRelay();
  const a = await t.join();
  const b = await t.join();
  const c = await t.join();
  await c.client.writeLine("/join side");
  await c.client.readLineMatching(/^\* welcome|^\* .*side/);
  await a.client.writeLine("lobby only");
  assert.equal(await b.client.readLineMatching(/^\[/), `[${a.name}] lobby only`);
  const seenByC = await linesUntilWho(c.client);
  assert.deepEqual(seenByC.filter((l) => l.startsWith("[")), []);
  await c.client.writeLine("side only");
  const seenByA = await linesUntilWho(a.client);
  assert.deepEqual(seenByA.filter((l) => l.startsWith("[")), []);
});

Deno.test("relay names are unique and never reused while it runs", async () => {
  await using t = startTestRelay();
  const a = await t.join();
  a.client.close();
  const b = await t.join();
  assert.notEqual(b.name, a.name);
  const c = await t.join();
  await c.client.writeLine(`/nick alice`);
  await c.client.readLineMatching(/^\* welcome alice/);
  await b.client.writeLine("/nick ALICE");
  assert.match(await b.client.readLineMatching(/cannot rename/), /taken/);
  await b.client.writeLine("/nick user99");
  assert.match(await b.client.readLineMatching(/cannot rename/), /handed out by the relay/);
  c.client.close();
  const d = await t.join();
  assert.ok(![a.name, b.name, c.name, "alice"].includes(d.name));
});

Deno.test("relay cuts off a client that never reads; healthy clients get every line in order", async () => {
  await using t = startTestRelay({ maxQueuedBytes: 256 * 1024 });
  const sender = await t.join();
  const h1 = await t.join();
  const h2 = await t.join();
  const stuck = await t.join(); // never reads again
  const line = "y".repeat(1000);
  const N = 20_000; // 20 MB: far more than the stuck client's socket buffers and outbox
  let expected = 0;
  const readUpTo = async (c: TestClient, state: { i: number }, until: number) => {
    while (state.i < until) {
      const l = (await c.readLine())!;
      assert.notEqual(l, null, "a healthy client was disconnected");
      if (l.startsWith("* ")) continue;
      assert.equal(l, `[${sender.name}] ${state.i} ${line}`);
      state.i++;
    }
  };
  const s1 = { i: 0 }, s2 = { i: 0 };
  // The healthy clients keep up: the sender sends a batch, they read it, and so on.
  for (let i = 0; i < N; i += 100) {
    await sender.client.write(Array.from({ length: 100 }, (_, k) => `${i + k} ${line}\n`).join(""));
    expected += 100;
    await Promise.all([readUpTo(h1.client, s1, expected), readUpTo(h2.client, s2, expected)]);
  }
  assert.deepEqual([s1.i, s2.i], [N, N]);
  assert.equal(t.relay.stats().slowDisconnects, 1);
  // The stuck client's socket ends with the reason (after whatever was in flight).
  const rest = dec(await stuck.client.readToEnd());
  assert.match(rest, /\* disconnected: slow consumer/);
});

/** Reads `n` message lines `[from] i BODY` in order (notices skipped); returns the longest gap. */
async function readSequence(
  c: TestClient,
  options: { from: string; n: number; body: string },
): Promise<number> {
  let longestGap = 0;
  let last = performance.now();
  for (let i = 0; i < options.n;) {
    const l = await c.readLine(60_000);
    assert.notEqual(l, null, `a healthy client was disconnected after ${i} lines`);
    const now = performance.now();
    longestGap = Math.max(longestGap, now - last);
    last = now;
    if (l!.startsWith("* ")) continue;
    assert.equal(l, `[${options.from}] ${i} ${options.body}`);
    i++;
  }
  return longestGap;
}

/** `n` lines `i BODY\n` as one buffer. */
function burst(n: number, body: string): Uint8Array {
  return enc(Array.from({ length: n }, (_, i) => `${i} ${body}\n`).join(""));
}

Deno.test("relay with default options: a healthy reader beside a stuck one gets every line of a 24 MB burst", async () => {
  const log = captureLog("relay");
  await using t = startTestRelay({ logger: log.logger, shutdownFlushMs: 200 });
  const sender = await t.join();
  const healthy = await t.join();
  const stuck = await t.join(); // never reads until the end
  const body = "b".repeat(390);
  const N = 60_000; // 60,000 lines of 400 B: 24 MB
  const sending = sender.client.write(burst(N, body));
  const longestGap = await readSequence(healthy.client, { from: sender.name, n: N, body });
  await sending;
  // The stuck client held the room back once, for about the stall time, then was cut at the cap.
  await log.waitForLog(new RegExp(`${stuck.name} disconnected: slow consumer: took no byte`));
  const stats = t.relay.stats();
  assert.equal(stats.slowDisconnects, 1);
  assert.equal(stats.closes["slow-stall"], 1);
  assert.ok(stats.stalls >= 1);
  assert.ok(stats.pausedMs > 0, "the sender was held while the stuck client was still live");
  assert.ok(longestGap < RELAY_DEFAULTS.stallTimeoutMs + 5_000, `longest gap ${longestGap} ms`);
  // Read only now, long after the 200 ms flush: the stream still ends with the reason line.
  await delay(500);
  const rest = dec(await stuck.client.readToEnd());
  assert.match(
    rest,
    /\n\* disconnected: slow consumer: took no byte for 1000 ms and more than 4194304 bytes queued\n$/,
  );
  // What it got before the reason are whole lines of the burst, in order.
  const lines = rest.split("\n").filter((l) => l.startsWith("["));
  assert.ok(lines.length > 0);
  const first = Number(lines[0].split(" ")[1]);
  lines.forEach((l, k) => assert.equal(l, `[${sender.name}] ${first + k} ${body}`));
});

/**
 * Reads `n` message lines `[from] i BODY` in order at about 1 MB/s (16 KiB every 16 ms,
 * straight from the socket); fails if the relay cuts the reader or tells it it is disconnected.
 */
async function readThrottled(
  c: TestClient,
  options: { from: string; n: number; body: string },
): Promise<void> {
  const buf = new Uint8Array(16 * 1024);
  let text = "";
  let next = 0;
  while (next < options.n) {
    const n = await c.conn.read(buf);
    assert.notEqual(n, null, `the throttled reader was cut after ${next} lines`);
    text += dec(buf.subarray(0, n!));
    const parts = text.split("\n");
    text = parts.pop()!;
    for (const l of parts) {
      if (l.startsWith("* ")) {
        assert.doesNotMatch(l, /disconnected/);
        continue;
      }
      assert.equal(l, `[${options.from}] ${next} ${options.body}`);
      next++;
    }
    await delay(16);
  }
}

Deno.test("relay with default options paces a sender to a reader throttled to about 1 MB/s", async () => {
  await using t = startTestRelay();
  const sender = await t.join();
  const slow = await t.join();
  const body = "s".repeat(390);
  const N = 20_000; // 8 MB
  const sending = sender.client.write(burst(N, body));
  // About 1 MB/s: 16 KiB every 16 ms, straight from the socket.
  await readThrottled(slow.client, { from: sender.name, n: N, body });
  await sending;
  // The sender was paced, not cut: it is still here and gets its answer.
  await sender.client.writeLine("/who");
  assert.match(await sender.client.readLineMatching(/^\* in /), new RegExp(slow.name));
  const stats = t.relay.stats();
  assert.ok(stats.pausedMs > 0, "the sender was held back");
  assert.equal(stats.slowDisconnects, 0);
  assert.equal(stats.dropped, 0);
});

Deno.test("relay: a steady slow reader is not taken for stuck while the kernel holds its bytes", async () => {
  // A small cap, so that a reader wrongly judged stuck would be cut within the test. Linux
  // wakes a blocked write only after about a third of the send buffer drained: at 1 MB/s that
  // is longer than the stall time, and only the kernel's count of unacknowledged bytes shows
  // that the reader is reading.
  await using t = startTestRelay({ maxQueuedBytes: 512 * 1024 });
  const sender = await t.join();
  const slow = await t.join();
  const body = "k".repeat(390);
  const N = 15_000; // 6 MB
  const sending = sender.client.write(burst(N, body));
  await readThrottled(slow.client, { from: sender.name, n: N, body });
  await sending;
  assert.equal(t.relay.stats().slowDisconnects, 0);
});

Deno.test("relay: a stuck client that reads again before its cap gets every queued line in order", async () => {
  await using t = startTestRelay({ maxQueuedBytes: 64 * 1024 * 1024, stallTimeoutMs: 200 });
  const sender = await t.join();
  const healthy = await t.join();
  const late = await t.join(); // stuck for a while, then reads
  const body = "l".repeat(390);
  const N = 20_000; // 8 MB: more than its socket buffers, less than its 64 MiB cap
  const sending = sender.client.write(burst(N, body));
  await readSequence(healthy.client, { from: sender.name, n: N, body });
  await sending;
  assert.ok(t.relay.stats().stalls >= 1, "the late reader was stuck");
  await readSequence(late.client, { from: sender.name, n: N, body });
  const stats = t.relay.stats();
  assert.equal(stats.stuckClients, 0);
  assert.equal(stats.slowDisconnects, 0);
});

Deno.test("relay holds back a client whose commands' answers fill its own outbox", async () => {
  await using t = startTestRelay();
  const a = await t.join();
  const N = 50_000; // 300 KB of /help, about 9.5 MB of answers: more than the high-water mark
  const writing = a.client.write("/help\n".repeat(N));
  // Every command is answered, in order, once the client reads; meanwhile the relay stopped
  // reading it instead of queueing all 9.5 MB.
  for (let i = 0; i < N; i++) {
    assert.match((await a.client.readLine())!, /^\* commands: \/nick NAME/);
  }
  await writing;
  const stats = t.relay.stats();
  assert.ok(stats.pausedMs > 0, "the asker was held back by its own outbox");
  assert.equal(stats.slowDisconnects, 0);
});

Deno.test("relay holds back a client whose joins and leaves flood another member", async () => {
  // A big cap, so that the bystander, which reads only at the end, is never cut.
  await using t = startTestRelay({ maxQueuedBytes: 64 * 1024 * 1024 });
  const bystander = await t.join();
  const flooder = await t.join();
  const N = 100_000; // each pair sends two notices to the bystander: about 7 MB in all
  let text = "";
  for (let i = 0; i < N; i++) text += "/join x\n/join lobby\n";
  const drainFlooder = flooder.client.readToEnd(60_000).catch(() => new Uint8Array());
  await flooder.client.write(text);
  // The bystander reads only now: its outbox went past high water and held the flooder.
  let notices = 0;
  while (notices < 2 * N) {
    const line = (await bystander.client.readLine(60_000))!;
    if (new RegExp(`^\\* ${flooder.name} (left for another room|joined lobby)$`).test(line)) {
      notices++;
    }
  }
  assert.ok(t.relay.stats().pausedMs > 0, "the flooder was held back");
  flooder.client.close();
  await drainFlooder;
});

Deno.test("relay with --slow drop keeps a slow client and tells it what it missed", async () => {
  await using t = startTestRelay({ maxQueuedBytes: 64 * 1024, slowPolicy: "drop" });
  const sender = await t.join();
  const slow = await t.join();
  const line = "z".repeat(1000);
  for (let i = 0; i < 10_000; i += 100) {
    await sender.client.write(Array.from({ length: 100 }, (_, k) => `${i + k} ${line}\n`).join(""));
  }
  // Wait until the relay has read every line, then let the slow client catch up.
  await sender.client.writeLine("/who");
  await sender.client.readLineMatching(/^\* in /);
  const dropped = t.relay.stats().dropped;
  assert.ok(dropped > 0, "some messages were dropped");
  // Each time its outbox drains, the slow client is told how many it missed since the last
  // notice: the notices add up to every dropped message.
  let missed = 0;
  while (missed < dropped) {
    const line = await slow.client.readLineMatching(
      /^\* you missed \d+ messages? \(your outbox was full\)$/,
    );
    missed += Number(line.match(/\d+/)![0]);
  }
  assert.equal(missed, dropped);
  await sender.client.writeLine("last");
  assert.equal(await slow.client.readLineMatching(/^\[.*\] last$/), `[${sender.name}] last`);
  assert.equal(t.relay.stats().slowDisconnects, 0);
});

Deno.test("relay refuses an over-long line with a notice and keeps serving", async () => {
  await using t = startTestRelay({ maxLineBytes: 1024 });
  const a = await t.join();
  const b = await t.join();
  await a.client.write("q".repeat(70 * 1024) + "\nshort\n");
  assert.match(await a.client.readLineMatching(/refused/), /line refused: longer than 1024 bytes/);
  assert.equal(await b.client.readLineMatching(/^\[/), `[${a.name}] short`);
});

Deno.test("relay passes invalid UTF-8 and binary garbage through without harm", async () => {
  await using t = startTestRelay();
  const a = await t.join();
  const b = await t.join();
  const garbage = pseudoRandomBytes(4096, 3).filter((x) => x !== 0x0a && x !== 0x0d && x !== 0x2f);
  await a.client.write(garbage);
  await a.client.write("\n");
  const prefix = enc(`[${a.name}] `);
  const got = await b.client.readBytes(prefix.length + garbage.length + 1);
  assert.deepEqual(got.subarray(prefix.length, got.length - 1), garbage);
  const c = await t.join();
  await c.client.writeLine("still fine");
  assert.equal(await b.client.readLineMatching(/^\[/), `[${c.name}] still fine`);
});

Deno.test("relay delivers a final unterminated line as one whole line on half-close", async () => {
  await using t = startTestRelay();
  const a = await t.join();
  const b = await t.join();
  await a.client.write("half a line");
  await a.client.conn.closeWrite();
  assert.equal(await b.client.readLineMatching(/^\[/), `[${a.name}] half a line`);
});

Deno.test("relay keeps a client that half-closes at once (listen-only) and delivers to it", async () => {
  await using t = startTestRelay();
  const listener = await t.join();
  await listener.client.conn.closeWrite(); // like nc -N host port </dev/null
  const talker = await t.join();
  for (let i = 0; i < 100; i++) await talker.client.writeLine(`line ${i}`);
  for (let i = 0; i < 100; i++) {
    assert.equal(await listener.client.readLineMatching(/^\[/), `[${talker.name}] line ${i}`);
  }
  assert.equal(t.relay.stats().clients, 2);
  // Its name is still taken: it is a member like any other.
  await talker.client.writeLine(`/nick ${listener.name}`);
  assert.match(await talker.client.readLineMatching(/cannot rename|welcome/), /cannot rename/);
});

Deno.test("relay accepts a line of exactly --max-line bytes whose CRLF arrives split", async () => {
  await using t = startTestRelay({ maxLineBytes: 10 });
  const a = await t.join();
  const b = await t.join();
  a.client.conn.setNoDelay(true);
  // Two writes, so the relay usually holds "0123456789\r" (11 bytes) before the LF comes.
  await a.client.write("0123456789\r");
  await a.client.write("\n");
  assert.equal(await b.client.readLineMatching(/^\[/), `[${a.name}] 0123456789`);
  await a.client.write("0123456789X\n");
  assert.match(await a.client.readLineMatching(/refused/), /longer than 10 bytes/);
});

Deno.test("relay refuses clients past --max-clients with one line", async () => {
  await using t = startTestRelay({ maxClients: 2 });
  await t.join();
  await t.join();
  await using extra = await TestClient.connect(t.relay.addr.port);
  assert.match((await extra.readLine())!, /^\* server full \(2 clients\)/);
  assert.equal(await extra.readLine(), null);
});

/** A framed client: sends the hello, checks the relay's, reads the welcome. */
async function framedJoin(port: number) {
  const client = await TestClient.connect(port);
  await client.write(encodeHello("relay", 1));
  await withTimeout(readHello(client.reader, { protocol: "relay", version: 1 }), EVENT_TIMEOUT_MS, {
    what: "hello",
  });
  const nextOfType = async (type: number) => {
    while (true) {
      const f = await withTimeout(readFrame(client.reader), EVENT_TIMEOUT_MS, { what: "a frame" });
      assert.ok(f, "connection closed");
      if (f.type === type) return f;
    }
  };
  await nextOfType(RelayFrame.Welcome);
  return { client, nextOfType };
}

Deno.test("relay framed mode round-trips binary payloads with every byte value", async () => {
  await using t = startTestRelay({ framed: true });
  const a = await framedJoin(t.relay.addr.port);
  const b = await framedJoin(t.relay.addr.port);
  const every = new Uint8Array(512).map((_, i) => i & 0xff);
  await a.client.write(encodeFrame(RelayFrame.Message, every));
  const d = decodeDeliverPayload((await b.nextOfType(RelayFrame.Deliver)).payload);
  assert.deepEqual(d.data, every);
  assert.equal(d.room, "lobby");
  assert.match(d.from, /^user\d+$/);
  assert.deepEqual(
    decodeDeliverPayload(encodeDeliverPayload({ from: "x", room: "y", data: every })).data,
    every,
  );
  a.client.close();
  b.client.close();
});

Deno.test("relay framed mode drops a peer that stops answering heartbeats", async () => {
  // Generous intervals: the live client has 800 ms to answer each ping, even on a busy machine.
  await using t = startTestRelay({ framed: true, heartbeatMs: 400, heartbeatMisses: 3 });
  const live = await framedJoin(t.relay.addr.port);
  const dead = await framedJoin(t.relay.addr.port);
  // The live client answers pings until the dead one is announced gone.
  const answering = (async () => {
    while (true) {
      const f = await withTimeout(readFrame(live.client.reader), EVENT_TIMEOUT_MS, {
        what: "a frame",
      });
      if (!f) return "closed";
      if (f.type === ControlFrame.Ping) await live.client.write(encodeFrame(ControlFrame.Pong));
      if (f.type === RelayFrame.Notice && /left \(idle/.test(dec(f.payload))) return "dropped";
    }
  })();
  const bye = await dead.nextOfType(ControlFrame.Bye);
  assert.match(dec(bye.payload), /idle for more than 1200 ms/);
  assert.equal(await answering, "dropped");
  assert.equal(t.relay.stats().clients, 1);
  live.client.close();
  dead.client.close();
});

Deno.test("relay framed mode: flow control paces a burst; a stuck framed client is cut at its cap", async () => {
  await using t = startTestRelay({ framed: true, stallTimeoutMs: 300 });
  const sender = await framedJoin(t.relay.addr.port);
  const healthy = await framedJoin(t.relay.addr.port);
  const stuck = await framedJoin(t.relay.addr.port); // never reads again
  const N = 20_000;
  const payload = (i: number) => enc(`${i} ${"f".repeat(1000)}`); // 20 MB in all
  const sending = (async () => {
    for (let i = 0; i < N; i += 500) {
      const frames = [];
      for (let k = i; k < i + 500; k++) frames.push(encodeFrame(RelayFrame.Message, payload(k)));
      await sender.client.write(concatBytes(...frames));
    }
  })();
  for (let i = 0; i < N; i++) {
    const d = decodeDeliverPayload((await healthy.nextOfType(RelayFrame.Deliver)).payload);
    assert.equal(dec(d.data), dec(payload(i)));
  }
  await sending;
  const stats = t.relay.stats();
  assert.ok(stats.pausedMs > 0, "the sender was held back");
  assert.equal(stats.closes["slow-stall"], 1);
  assert.equal(stats.slowDisconnects, 1);
  stuck.client.close();
  sender.client.close();
  healthy.client.close();
});

Deno.test("relay framed mode rejects a client of another version with a clear error", async () => {
  await using t = startTestRelay({ framed: true });
  await using c = await TestClient.connect(t.relay.addr.port);
  await c.write(encodeHello("relay", 9));
  await readHello(c.reader, { protocol: "relay", version: 1 });
  const f = await withTimeout(readFrame(c.reader), EVENT_TIMEOUT_MS, { what: "error frame" });
  assert.equal(f?.type, ControlFrame.Error);
  assert.match(dec(f!.payload), /peer speaks relay v9, this side speaks relay v1/);
});

Deno.test("relay frees the place of a listen-only client that went away in a quiet room", async () => {
  const log = captureLog("relay", { verbose: true });
  await using t = startTestRelay({ maxClients: 1, listenerCheckMs: 100, logger: log.logger });
  // A ghost: joins an empty room, half-closes, then closes without reading what it was sent
  // (so its close resets the connection). Nothing is ever written to it again.
  const ghost = await TestClient.connect(t.relay.addr.port);
  await ghost.write("/join #alone\n");
  await ghost.conn.closeWrite();
  await log.waitForLog(/half-closed: listening only/);
  ghost.close();
  await log.waitForLog(/disconnected:/);
  // Its place is free again.
  const next = await t.join();
  assert.match(next.name, /^user\d+$/);
});

peerTest("nc", {
  name: "relay keeps a listen-only `nc -N host port </dev/null` and delivers to it",
  fn: async () => {
    await using t = startTestRelay();
    const talker = await t.join();
    const child = new Deno.Command("nc", {
      args: ["-N", "127.0.0.1", String(t.relay.addr.port)],
      stdin: "null",
      stdout: "piped",
      stderr: "null",
    }).spawn();
    const out = new BufferedReader(readerOf(child.stdout));
    const line = async () =>
      dec((await withTimeout(out.readLine(1 << 16), EVENT_TIMEOUT_MS, { what: "nc output" }))!);
    assert.match(await line(), /^\* welcome user\d+,/);
    // nc has sent its end of file by now; the relay must keep it as a listener.
    await talker.client.writeLine("/who");
    assert.match(await talker.client.readLineMatching(/^\* in /), /, user\d+|user\d+, /);
    for (let i = 0; i < 50; i++) await talker.client.writeLine(`to nc ${i}`);
    for (let i = 0; i < 50; i++) assert.equal(await line(), `[${talker.name}] to nc ${i}`);
    child.kill("SIGTERM");
    await child.status;
  },
});

/** A Reader over a byte stream, for BufferedReader. */
function readerOf(stream: ReadableStream<Uint8Array>) {
  const r = stream.getReader();
  let pending: Uint8Array | undefined;
  return {
    async read(p: Uint8Array): Promise<number | null> {
      if (!pending || pending.length === 0) {
        const { value, done } = await r.read();
        if (done) return null;
        pending = value;
      }
      const n = Math.min(p.length, pending.length);
      p.set(pending.subarray(0, n));
      pending = pending.subarray(n);
      return n;
    },
  };
}
