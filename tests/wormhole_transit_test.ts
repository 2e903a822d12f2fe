/**
 * The Transit layer: hints, the handshake, winner selection, direct and relayed connections,
 * the encrypted record stream, and interop with the Python `wormhole.transit` module. Every
 * endpoint here advertises 127.0.0.1 only.
 */

import assert from "node:assert/strict";
import { writeAll } from "../lib/net/write_all.ts";
import { withTimeout } from "../lib/net/deadline.ts";
import { LimitError, ProtocolError, UnexpectedEofError } from "../lib/net/errors.ts";
import { toHex } from "../lib/wormhole/keys.ts";
import { HINT_LIMITS, parseHints, parseRelayAddress } from "../lib/wormhole/hints.ts";
import {
  type RecordCipherName,
  Transit,
  TransitConnectError,
  type TransitConnection,
  type TransitOptions,
} from "../lib/wormhole/transit.ts";
import {
  RecordAuthError,
  recordKeys,
  RecordNonceError,
  RecordSealer,
} from "../lib/wormhole/transit_cipher.ts";
import { relayRequest, transitTokens } from "../lib/wormhole/transit_handshake.ts";
import { TransitConnection as RecordStream } from "../lib/wormhole/transit_records.ts";
import { receiveSession } from "../lib/transfer/receiver.ts";
import { sendEntries } from "../lib/transfer/sender.ts";
import { collectEntries } from "../lib/transfer/walk.ts";
import { captureLog, EVENT_TIMEOUT_MS, freePort, pseudoRandomBytes, tempTree } from "./_helpers.ts";
import {
  DEBIAN_PYTHON,
  missingPythonModule,
  missingWormholeServers,
  startTransitRelay,
  wormholeTest,
} from "./_wormhole.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();
const LOOPBACK = ["127.0.0.1"];
const CIPHERS: RecordCipherName[] = ["secretbox", "chacha20-poly1305"];

function randomKey(): Uint8Array {
  return crypto.getRandomValues(new Uint8Array(32));
}

function bounded<T>(promise: Promise<T>, what: string): Promise<T> {
  return withTimeout(promise, EVENT_TIMEOUT_MS, { what });
}

/** Connects a sender and a receiver that were given each other's hints. */
async function connectPair(
  options: {
    sender?: TransitOptions;
    receiver?: TransitOptions;
    keys?: [Uint8Array, Uint8Array];
    cipher?: RecordCipherName;
  } = {},
): Promise<[TransitConnection, TransitConnection]> {
  const [ks, kr] = options.keys ?? (() => {
    const k = randomKey();
    return [k, k];
  })();
  const s = new Transit("sender", { advertise: LOOPBACK, ...options.sender });
  const r = new Transit("receiver", { advertise: LOOPBACK, ...options.receiver });
  s.addPeerHints(r.hints);
  r.addPeerHints(s.hints);
  const cipher = options.cipher;
  const both = Promise.all([s.connect(ks, { cipher }), r.connect(kr, { cipher })]);
  return await bounded(both, "both transit ends");
}

/** Writes `data` in pieces of odd, varying sizes (1 byte to ~200 KB). */
async function writeOddly(conn: TransitConnection, data: Uint8Array): Promise<void> {
  const sizes = [1, 7, 1000, 65_537, 3, 200_003, 13, 4096, 99_999];
  let off = 0;
  for (let i = 0; off < data.length; i++) {
    const n = Math.min(sizes[i % sizes.length], data.length - off);
    await writeAll(conn, data.subarray(off, off + n));
    off += n;
  }
}

/** Reads until end of file. */
async function readAll(conn: TransitConnection): Promise<Uint8Array> {
  const parts: Uint8Array[] = [];
  let total = 0;
  const buf = new Uint8Array(50_001);
  while (true) {
    const n = await conn.read(buf);
    if (n === null) break;
    parts.push(buf.slice(0, n));
    total += n;
  }
  const out = new Uint8Array(total);
  let off = 0;
  for (const p of parts) {
    out.set(p, off);
    off += p.length;
  }
  return out;
}

/** A sends `a` and half-closes; B reads it all, then sends `b` (plus a tail) and closes. */
async function exchange(a: TransitConnection, b: TransitConnection, sizes: [number, number]) {
  const dataA = pseudoRandomBytes(sizes[0], 11);
  const dataB = pseudoRandomBytes(sizes[1], 22);
  const tail = encoder.encode("written after the peer's end of stream");
  const aSends = writeOddly(a, dataA).then(() => a.closeWrite());
  const bReads = readAll(b);
  const bSends = (async () => {
    await writeOddly(b, dataB);
    await bReads; // A's half-close reached B, and B can still write.
    await writeAll(b, tail);
    await b.closeWrite();
  })();
  const aReads = readAll(a);
  const [gotB, gotA] = await bounded(
    Promise.all([bReads, aReads, aSends, bSends]),
    "the exchange",
  );
  assert.equal(gotB.length, dataA.length);
  assert.ok(gotB.every((v, i) => v === dataA[i]), "A's bytes arrive intact");
  const expectA = new Uint8Array([...dataB, ...tail]);
  assert.equal(gotA.length, expectA.length);
  assert.ok(gotA.every((v, i) => v === expectA[i]), "B's bytes arrive intact");
}

for (const cipher of CIPHERS) {
  Deno.test(`transit connects directly on loopback and carries bytes both ways (${cipher})`, async () => {
    const [s, r] = await connectPair({ cipher });
    try {
      assert.equal(s.cipher, cipher);
      assert.match(s.description, /^(direct|inbound from) 127\.0\.0\.1:\d+$/);
      await exchange(s, r, [3 * 1024 * 1024 + 17, 2 * 1024 * 1024 + 5]);
      assert.ok(s.recordsSent > 12, "3 MiB went out as several records");
    } finally {
      s.close();
      r.close();
    }
  });
}

Deno.test("transit records keep their boundaries, and the final ack arrives before close", async () => {
  const [s, r] = await connectPair();
  try {
    await s.sendRecord(new Uint8Array(0));
    await s.sendRecord(pseudoRandomBytes(70_000, 3));
    assert.deepEqual(await r.receiveRecord(), new Uint8Array(0));
    assert.deepEqual(await r.receiveRecord(), pseudoRandomBytes(70_000, 3));
    const ack = encoder.encode('{"ack":"ok","sha256":"00"}');
    await r.write(ack); // queued, not yet necessarily on the socket
    r.close(); // still delivered
    assert.equal(decoder.decode((await s.receiveRecord())!), '{"ack":"ok","sha256":"00"}');
    assert.equal(await s.receiveRecord(), null);
  } finally {
    s.close();
  }
});

Deno.test("transit handshake lines, relay request and record keys match the Python client", () => {
  const key = Uint8Array.from({ length: 32 }, (_, i) => i);
  const tokens = transitTokens(key);
  assert.equal(
    decoder.decode(tokens.sender),
    "transit sender df67f98b57b6009f674ac8ea789aa2a494e4c52582da55d38857d56518b81bba ready\n\n",
  );
  assert.equal(
    decoder.decode(tokens.receiver),
    "transit receiver c83f7ef38f8b2e0a2495966db3c137772e81c475f54f45483fb1e5dc500db6dc ready\n\n",
  );
  assert.equal(
    decoder.decode(relayRequest(key, "0011223344556677")),
    "please relay 2bb809ffd25339e827f73497f80f9d4419708192bc8282ab3d28e530fc7599e7 for side 0011223344556677\n",
  );
  const keys = recordKeys(key, "sender");
  assert.equal(
    toHex(keys.send),
    "a879f7c8206df95eba1f8a887203e3ceaa5238b43455859c34e02f34eb797d37",
  );
  assert.equal(
    toHex(keys.receive),
    "438fe439c794bdc524ba4f5935b03fdfef305e8dbc6369a839f0ea09d09ef2ef",
  );
  // PyNaCl's SecretBox(sender key).encrypt(b"hello", nonce=1), as Python's send_record makes it.
  const sealer = new RecordSealer(keys.send);
  sealer.seal(new Uint8Array(1));
  const frame = sealer.seal(encoder.encode("hello"));
  assert.deepEqual([...frame.subarray(0, 4)], [0, 0, 0, 45]);
  assert.equal(
    toHex(frame.subarray(4)),
    "00000000000000000000000000000000000000000000000101699ba0625d2104a3ffe270bd4c3896f87d32cd0f",
  );
});

wormholeTest(missingWormholeServers, {
  name: "transit connects through the real relay with forceRelay",
  async fn() {
    await using relay = await startTransitRelay();
    const options: TransitOptions = { forceRelay: true, relays: [relay.url] };
    const [s, r] = await connectPair({ sender: options, receiver: options });
    try {
      assert.equal(s.description, `relay 127.0.0.1:${relay.port}`);
      assert.equal(r.description, `relay 127.0.0.1:${relay.port}`);
      await exchange(s, r, [1024 * 1024 + 3, 512 * 1024 + 1]);
    } finally {
      s.close();
      r.close();
    }
  },
});

wormholeTest(missingWormholeServers, {
  name: "transit falls back to the relay when the peer's direct hint is a dead port",
  async fn() {
    await using relay = await startTransitRelay();
    const dead = [{ type: "direct-tcp-v1", priority: 0, hostname: "127.0.0.1", port: freePort() }];
    const s = new Transit("sender", { advertise: LOOPBACK, relays: [relay.url] });
    const r = new Transit("receiver", { advertise: LOOPBACK, relays: [relay.url] });
    s.addPeerHints(dead);
    r.addPeerHints(dead);
    const key = randomKey();
    const [cs, cr] = await bounded(Promise.all([s.connect(key), r.connect(key)]), "the relay");
    try {
      assert.match(cs.description, /^relay /);
      assert.match(cr.description, /^relay /);
      await cs.sendRecord(encoder.encode("through the relay"));
      assert.equal(decoder.decode((await cr.receiveRecord())!), "through the relay");
    } finally {
      cs.close();
      cr.close();
    }
  },
});

Deno.test("transit with mismatched keys fails on both ends with a clear error within the timeout", async () => {
  const log = captureLog("wormhole");
  const s = new Transit("sender", { advertise: LOOPBACK, timeoutMs: 1500, logger: log.logger });
  const r = new Transit("receiver", { advertise: LOOPBACK, timeoutMs: 1500 });
  s.addPeerHints(r.hints);
  r.addPeerHints(s.hints);
  const results = await bounded(
    Promise.allSettled([s.connect(randomKey()), r.connect(randomKey())]),
    "both ends to give up",
  );
  for (const result of results) {
    assert.equal(result.status, "rejected");
    const error = result.reason;
    assert.ok(error instanceof TransitConnectError);
    assert.match(error.message, /^no transit connection within 1\.5 s: tried /);
    assert.match(error.message, /handshake, got "transit (sender|receiver) [0-9a-f]{64} ready/);
    assert.match(error.message, /wrong transit key\?/);
    assert.ok(error.attempts.length >= 1);
  }
  await log.waitForLog(/warning: transit: .*wrong transit key\?.*; closed it/);
});

Deno.test("transit closes a connection that sends junk and still connects the real peer", async () => {
  const log = captureLog("wormhole");
  const r = new Transit("receiver", { advertise: LOOPBACK, logger: log.logger });
  const s = new Transit("sender", { noListen: true });
  const key = randomKey();
  const receiving = r.connect(key);
  const junk = await Deno.connect({ hostname: "127.0.0.1", port: r.port! });
  await writeAll(junk, encoder.encode("GET / HTTP/1.1\r\nHost: x\r\n\r\n"));
  const line = await log.waitForLog(/inbound from 127\.0\.0\.1:\d+: expected the sender's/);
  assert.match(line, /got "GET \/ HTTP/);
  const buf = new Uint8Array(256);
  let n: number | null;
  do n = await bounded(junk.read(buf), "the junk connection to be closed"); while (n !== null);
  junk.close();
  s.addPeerHints(r.hints);
  const [cs, cr] = await bounded(Promise.all([s.connect(key), receiving]), "the real peer");
  assert.match(cs.description, /^direct 127\.0\.0\.1:/);
  cs.close();
  cr.close();
});

Deno.test("transit fails at once with every attempt listed when nothing is reachable and it does not listen", async () => {
  const deadDirect = freePort();
  const deadRelay = freePort();
  const s = new Transit("sender", { noListen: true, relays: [`127.0.0.1:${deadRelay}`] });
  assert.equal(s.port, null);
  s.addPeerHints([{ type: "direct-tcp-v1", hostname: "127.0.0.1", port: deadDirect }]);
  const error = await bounded(s.connect(randomKey()).catch((e) => e), "the failure");
  assert.ok(error instanceof TransitConnectError);
  assert.match(error.message, /^no transit connection \(every attempt failed\): tried /);
  assert.equal(error.attempts.length, 2);
  assert.match(error.attempts[0], new RegExp(`^direct 127\\.0\\.0\\.1:${deadDirect}: `));
  assert.match(error.attempts[1], new RegExp(`^relay 127\\.0\\.0\\.1:${deadRelay}: `));
});

Deno.test("transit that listens gives up after its timeout when nobody comes", async () => {
  const r = new Transit("receiver", { advertise: LOOPBACK, timeoutMs: 200 });
  const error = await bounded(r.connect(randomKey()).catch((e) => e), "the timeout");
  assert.ok(error instanceof TransitConnectError);
  assert.match(
    error.message,
    /^no transit connection within 0\.2 s: tried nothing; listened on port \d+$/,
  );
});

Deno.test("transit connect stops when its signal aborts", async () => {
  const r = new Transit("receiver", { advertise: LOOPBACK });
  const stop = new AbortController();
  const connecting = r.connect(randomKey(), { signal: stop.signal });
  stop.abort(new Error("user pressed ^C"));
  await assert.rejects(connecting, /user pressed \^C/);
});

/** Runs lib/transfer's sender and receiver over a transit pair; returns both summaries. */
async function transferOver(s: TransitConnection, r: TransitConnection) {
  await using tree = await tempTree("sockit-transit-");
  const a = pseudoRandomBytes(3 * 1024 * 1024 + 11, 51);
  await Deno.writeFile(`${tree.src}/a.bin`, a);
  await Deno.writeFile(`${tree.src}/b.txt`, encoder.encode("small"));
  const receiving = receiveSession(r, { dir: tree.out });
  const sent = await sendEntries(s, await collectEntries([tree.src]));
  s.close();
  const received = await bounded(receiving, "the receiver's summary");
  r.close();
  assert.ok(sent.ok, sent.error);
  assert.ok(received.ok, received.error);
  assert.deepEqual(await Deno.readFile(`${tree.out}/src/a.bin`), a);
  assert.equal(await Deno.readTextFile(`${tree.out}/src/b.txt`), "small");
}

Deno.test("sockit's transfer sender and receiver run unchanged over a direct transit connection", async () => {
  const [s, r] = await connectPair({ cipher: "chacha20-poly1305" });
  await transferOver(s, r);
});

wormholeTest(missingWormholeServers, {
  name: "sockit's transfer sender and receiver run unchanged through the relay",
  async fn() {
    await using relay = await startTransitRelay();
    const options: TransitOptions = { forceRelay: true, relays: [relay.url] };
    await transferOver(...await connectPair({ sender: options, receiver: options }));
  },
});

// ---- records on a raw socket: a misbehaving peer ----

/** A raw client socket and the accepted side wrapped as the receiver's record stream. */
async function rawPeer(cipher: RecordCipherName = "secretbox", maxRecordBytes?: number) {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const raw = await Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port });
  const key = randomKey();
  const stream = new RecordStream(
    await listener.accept(),
    recordKeys(key, "receiver", { cipher }),
    {
      cipher,
      maxRecordBytes,
    },
  );
  listener.close();
  const sealer = new RecordSealer(recordKeys(key, "sender", { cipher }).send, { cipher });
  return {
    raw,
    stream,
    sealer,
    [Symbol.dispose]() {
      stream.close();
      raw.close();
    },
  };
}

Deno.test("a replayed transit record is a RecordNonceError", async () => {
  using peer = await rawPeer();
  const frame = peer.sealer.seal(encoder.encode("once"));
  await writeAll(peer.raw, frame);
  await writeAll(peer.raw, frame);
  assert.equal(decoder.decode((await peer.stream.receiveRecord())!), "once");
  const error = await peer.stream.receiveRecord().catch((e) => e);
  assert.ok(error instanceof RecordNonceError);
  assert.equal(error.expected, 1);
  assert.equal(error.got, 0n);
});

Deno.test("a skipped transit record is a RecordNonceError (chacha20-poly1305)", async () => {
  using peer = await rawPeer("chacha20-poly1305");
  peer.sealer.seal(encoder.encode("dropped on the way"));
  await writeAll(peer.raw, peer.sealer.seal(encoder.encode("second")));
  const error = await peer.stream.read(new Uint8Array(64)).catch((e) => e);
  assert.ok(error instanceof RecordNonceError);
  assert.match(error.message, /got record 1, expected 0/);
});

Deno.test("an oversized transit record length is a LimitError before anything is read", async () => {
  using peer = await rawPeer();
  await writeAll(peer.raw, new Uint8Array([0xff, 0xff, 0xff, 0xf0]));
  await assert.rejects(peer.stream.receiveRecord(), LimitError);
  using small = await rawPeer("secretbox", 64 * 1024);
  await writeAll(small.raw, small.sealer.seal(new Uint8Array(64 * 1024)));
  await assert.rejects(small.stream.receiveRecord(), /length 65576 exceeds limit 65536/);
});

Deno.test("a transit record shorter than its nonce and tag is a ProtocolError", async () => {
  using peer = await rawPeer();
  await writeAll(peer.raw, new Uint8Array([0, 0, 0, 10, ...new Uint8Array(10)]));
  await assert.rejects(peer.stream.receiveRecord(), ProtocolError);
});

for (const cipher of CIPHERS) {
  Deno.test(`an altered transit record is a RecordAuthError (${cipher})`, async () => {
    using peer = await rawPeer(cipher);
    const frame = peer.sealer.seal(pseudoRandomBytes(1000, 5));
    frame[frame.length - 20] ^= 1;
    await writeAll(peer.raw, frame);
    const error = await peer.stream.receiveRecord().catch((e) => e);
    assert.ok(error instanceof RecordAuthError);
    assert.equal(error.seq, 0);
  });
}

Deno.test("a transit connection cut in the middle of a record is an UnexpectedEofError", async () => {
  using peer = await rawPeer();
  const frame = peer.sealer.seal(pseudoRandomBytes(5000, 6));
  await writeAll(peer.raw, frame.subarray(0, 3000));
  await peer.raw.closeWrite();
  await assert.rejects(peer.stream.receiveRecord(), UnexpectedEofError);
});

// ---- hints ----

Deno.test("our hints advertise only the given addresses at the listener's port", async () => {
  await using t = new Transit("sender", {
    advertise: LOOPBACK,
    relays: ["tcp:relay.example:4001"],
  });
  assert.deepEqual(t.hints, [
    { type: "direct-tcp-v1", priority: 0, hostname: "127.0.0.1", port: t.port },
    {
      type: "relay-v1",
      hints: [{ type: "direct-tcp-v1", priority: 0, hostname: "relay.example", port: 4001 }],
    },
  ]);
  assert.deepEqual(t.message()["abilities-v1"], [
    { type: "direct-tcp-v1" },
    { type: "relay-v1" },
  ]);
  await using relayOnly = new Transit("sender", { forceRelay: true, relays: ["127.0.0.1:4001"] });
  assert.equal(relayOnly.port, null);
  assert.deepEqual(relayOnly.hints.map((h) => h.type), ["relay-v1"]);
});

Deno.test("parseHints() bounds and validates what a peer sends", () => {
  const direct = (hostname: unknown, port: unknown) => ({ type: "direct-tcp-v1", hostname, port });
  assert.throws(() => parseHints({ type: "direct-tcp-v1" }), ProtocolError);
  const many = Array.from(
    { length: HINT_LIMITS.maxHints + 1 },
    (_, i) => direct("10.0.0.1", i + 1),
  );
  assert.throws(() => parseHints(many), LimitError);
  const nested = Array.from({ length: HINT_LIMITS.maxRelayHints + 1 }, () => direct("r", 1));
  assert.throws(() => parseHints([{ type: "relay-v1", hints: nested }]), LimitError);
  const parsed = parseHints([
    direct("a".repeat(254), 80),
    direct("bad host\n", 80),
    direct("10.0.0.1", 0),
    direct("10.0.0.1", 65536),
    direct("10.0.0.1", "80"),
    direct("fe80::1", 80),
    { type: "tor-tcp-v1", hostname: "x.onion", port: 80 },
    { type: "future-v9" },
    direct("10.0.0.1", 65535),
    direct("10.0.0.1", 65535),
    { type: "relay-v1", hints: [direct("relay.example", 4001), direct("", 1)] },
  ]);
  assert.deepEqual(parsed.direct, [{ hostname: "10.0.0.1", port: 65535, priority: 0 }]);
  assert.deepEqual(parsed.relays, [{
    hints: [{ hostname: "relay.example", port: 4001, priority: 0 }],
  }]);
  assert.equal(parsed.ignored.length, 9);
  assert.ok(parsed.ignored.some((line) => line.includes(String.raw`"bad host\n"`)));
});

Deno.test("parseRelayAddress() reads tcp:HOST:PORT and HOST:PORT", () => {
  assert.deepEqual(parseRelayAddress("tcp:127.0.0.1:4001"), {
    hostname: "127.0.0.1",
    port: 4001,
    priority: 0,
  });
  assert.equal(parseRelayAddress("tcp:relay.example:4001:priority=2.5").priority, 2.5);
  assert.equal(parseRelayAddress("relay.example:4001").port, 4001);
  assert.equal(parseRelayAddress("tcp:[::1]:4001").hostname, "::1");
  assert.throws(() => parseRelayAddress("relay.example"), /missing port/);
  assert.throws(() => parseRelayAddress("tor:abc.onion:80"), /only tcp:/);
  assert.throws(() => parseRelayAddress("tcp:relay.example:0"), /port 0/);
});

// ---- interop with the Python client ----

/**
 * Python's TransitSender or TransitReceiver, not listening (so it advertises no address of
 * this machine): prints its hints, reads ours, sends COUNT records of SIZE bytes (record i is
 * byte i repeated), receives COUNT records and prints the sha256 of what it received.
 */
const PYTHON_TRANSIT = `
import sys, json, hashlib
from twisted.internet import defer, task
from wormhole.transit import TransitSender, TransitReceiver

@defer.inlineCallbacks
def main(reactor, role, key_hex, relay, count, size):
    cls = TransitSender if role == "sender" else TransitReceiver
    t = cls(relay or None, no_listen=True, reactor=reactor)
    print(json.dumps((yield t.get_connection_hints())), flush=True)
    t.add_connection_hints(json.loads(sys.stdin.readline()))
    t.set_transit_key(bytes.fromhex(key_hex))
    rp = yield t.connect()
    for i in range(int(count)):
        rp.send_record(bytes([i % 256]) * int(size))
    h = hashlib.sha256()
    for i in range(int(count)):
        h.update((yield rp.receive_record()))
    print(h.hexdigest(), flush=True)
    rp.close()

task.react(lambda reactor: main(reactor, *sys.argv[1:]))
`;

async function sha256Hex(data: Uint8Array<ArrayBuffer>): Promise<string> {
  return toHex(new Uint8Array(await crypto.subtle.digest("SHA-256", data)));
}

/** Runs the Python side as `role` against our `transit` (the other role). */
async function pythonInterop(role: "sender" | "receiver", transit: Transit, relay = "") {
  const key = randomKey();
  const count = 3;
  const size = 20_000;
  const child = new Deno.Command(DEBIAN_PYTHON, {
    args: ["-c", PYTHON_TRANSIT, role, toHex(key), relay, String(count), String(size)],
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const lines = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let pending = "";
  const readLine = async (): Promise<string> => {
    while (!pending.includes("\n")) {
      const { value, done } = await bounded(lines.read(), "a line from python");
      if (done) throw new Error(`python exited: ${pending}`);
      pending += value;
    }
    const i = pending.indexOf("\n");
    const line = pending.slice(0, i);
    pending = pending.slice(i + 1);
    return line;
  };
  const stderr = new Response(child.stderr).text();
  try {
    transit.addPeerHints(JSON.parse(await readLine()));
    const writer = child.stdin.getWriter();
    await writer.write(encoder.encode(JSON.stringify(transit.hints) + "\n"));
    await writer.close();
    const conn = await bounded(transit.connect(key), "the connection with python");
    try {
      for (let i = 0; i < count; i++) {
        const record = await bounded(conn.receiveRecord(), "a record from python");
        assert.deepEqual(record, new Uint8Array(size).fill(i));
      }
      const sent: number[] = [];
      for (let i = 0; i < count; i++) {
        const record = pseudoRandomBytes(size + i, 40 + i);
        await conn.sendRecord(record);
        sent.push(...record);
      }
      assert.equal(await readLine(), await sha256Hex(new Uint8Array(sent)));
    } finally {
      conn.close();
    }
    assert.equal((await bounded(child.status, "python to exit")).code, 0, await stderr);
    return conn.description;
  } finally {
    try {
      child.kill("SIGKILL");
    } catch { /* exited */ }
    await child.status;
    await lines.cancel().catch(() => {});
    await stderr;
  }
}

wormholeTest(() => missingPythonModule("wormhole.transit"), {
  name: "transit interop: the Python TransitSender dials our receiver directly",
  async fn() {
    const receiver = new Transit("receiver", { advertise: LOOPBACK });
    const how = await pythonInterop("sender", receiver);
    assert.match(how, /^inbound from 127\.0\.0\.1:/);
  },
});

wormholeTest(missingWormholeServers, {
  name: "transit interop: our sender and the Python TransitReceiver meet at the relay",
  async fn() {
    await using relay = await startTransitRelay();
    const sender = new Transit("sender", { forceRelay: true, relays: [relay.url] });
    const how = await pythonInterop("receiver", sender, relay.url);
    assert.equal(how, `relay 127.0.0.1:${relay.port}`);
  },
});
