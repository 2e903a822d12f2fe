/**
 * The relay's front door (`lib/relay/listener.ts`) with in-process relays: HTTP on the relay's
 * port (the 404, the web handler as the integration point), sniffing that survives a busy
 * event loop, and flow control and the slow-client policy for clients behind TLS and behind
 * sniffing (the stall checks find the TCP socket beneath).
 */

import assert from "node:assert/strict";
import { Relay, type RelayOptions } from "../lib/relay/mod.ts";
import { openClient } from "../lib/relay/listener.ts";
import { RELAY_DEFAULTS } from "../lib/relay/limits.ts";
import { createSelfSignedCert } from "../lib/net/tls_cert.ts";
import { connectTlsSocket, type TlsStreamConn } from "../lib/net/tls_stream.ts";
import { unackedBytes } from "../lib/net/tcp_queue.ts";
import { delay, withTimeout } from "../lib/net/deadline.ts";
import { writeAll } from "../lib/net/write_all.ts";
import { captureLog, EVENT_TIMEOUT_MS, readRelayWelcome, TestClient } from "./_helpers.ts";

const enc = (s: string) => new TextEncoder().encode(s);
const dec = (b: Uint8Array) => new TextDecoder().decode(b);
const welcomeOf = readRelayWelcome;

/** Reads exactly `n` bytes from `conn`. */
async function readFull(conn: Deno.Conn, n: number): Promise<Uint8Array> {
  const out = new Uint8Array(n);
  for (let off = 0; off < n;) {
    const got = await conn.read(out.subarray(off));
    if (got === null) throw new Error(`connection closed after ${off} of ${n} bytes`);
    off += got;
  }
  return out;
}

/** An in-process relay with TLS on a free loopback port and a fresh self-signed certificate. */
async function startTlsRelay(options: RelayOptions = {}) {
  const key = await createSelfSignedCert({ names: ["localhost", "127.0.0.1"] });
  const relay = new Relay(Deno.listen({ hostname: "127.0.0.1", port: 0 }), {
    tls: () => key,
    ...options,
  });
  const clients: { close(): void }[] = [];
  return {
    relay,
    key,
    port: relay.addr.port,
    /** A TLS line client (the project's TLS client, certificate not checked). */
    async tls(): Promise<{ client: TestClient; conn: TlsStreamConn }> {
      const conn = await connectTlsSocket("127.0.0.1", relay.addr.port, {
        rejectUnauthorized: false,
      });
      const client = TestClient.over(conn);
      clients.push(client);
      return { client, conn };
    },
    /** A plain line client on the same port. */
    async plain(): Promise<TestClient> {
      const client = await TestClient.connect(relay.addr.port);
      clients.push(client);
      return client;
    },
    async [Symbol.asyncDispose]() {
      clients.forEach((c) => c.close());
      await relay.shutdown();
    },
  };
}

// --- HTTP on the relay's port --------------------------------------------------------------

Deno.test("relay --tls answers an HTTP request 404 without a web handler, plain and in TLS", async () => {
  await using t = await startTlsRelay();
  const plain = await fetch(`http://127.0.0.1:${t.port}/`);
  assert.equal(plain.status, 404);
  assert.equal(await plain.text(), "no web chat on this sockit relay\n");
  using client = Deno.createHttpClient({ caCerts: [t.key.cert] });
  const secure = await fetch(`https://127.0.0.1:${t.port}/ws`, { client });
  assert.equal(secure.status, 404);
  await secure.body?.cancel();
  assert.equal(t.relay.stats().accepted, 0, "no HTTP request became a chat client");
});

Deno.test("relay web handler gets HTTP requests (plain and in TLS) and can join them to the relay", async () => {
  const seen: { tls: boolean; head: string }[] = [];
  const request = "GET /ws HTTP/1.1\r\nHost: x\r\n\r\n";
  await using t = await startTlsRelay({
    web: async (conn, context) => {
      seen.push({ tls: context.tls, head: dec(context.head) });
      // Stands in for the WebSocket upgrade: read the request, answer, then chat in lines.
      await readFull(conn, request.length);
      await writeAll(conn, enc("HTTP/1.1 200 OK\r\n\r\n"));
      await context.joinRelay(conn);
    },
  });
  const member = await t.plain();
  await member.write("/who\n");
  await member.readLineMatching(/^\* in lobby: /);
  for (const tls of [false, true]) {
    const client = tls ? (await t.tls()).client : await t.plain();
    await client.write(request);
    assert.equal(await client.readLine(), "HTTP/1.1 200 OK");
    assert.equal(await client.readLine(), "");
    const name = await welcomeOf(client);
    await client.writeLine(`via the web handler, tls ${tls}`);
    assert.equal(
      await member.readLineMatching(/^\[/),
      `[${name}] via the web handler, tls ${tls}`,
    );
  }
  assert.deepEqual(seen, [{ tls: false, head: "GET " }, { tls: true, head: "GET " }]);
});

Deno.test("relay front door: a client that spoke in time is not taken for silent when the event loop was busy past the wait", async () => {
  using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const door = {
    tlsOnly: false,
    web: true,
    sniffWaitMs: 50,
    tlsHandshakeTimeoutMs: EVENT_TIMEOUT_MS,
  };
  for (let i = 0; i < 5; i++) {
    const client = await Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port });
    const opening = openClient(await listener.accept(), door);
    await writeAll(client, enc("GET / HTTP/1.1\r\n\r\n"));
    // Busy for twice the wait (a burst of handshakes, a long GC): the request is already in
    // the socket when the wait's timer runs.
    const until = performance.now() + 2 * door.sniffWaitMs;
    while (performance.now() < until) {
      // Nothing else runs meanwhile.
    }
    const arrival = await opening;
    assert.equal(arrival.kind, "http", `connection ${i}`);
    if (arrival.kind === "http") arrival.conn.close();
    client.close();
  }
});

// --- Flow control behind TLS and sniffing ---------------------------------------------------

Deno.test("stall checks find the TCP socket beneath TLS and beneath sniffing", async () => {
  const key = await createSelfSignedCert({ names: ["localhost"] });
  using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const door = {
    tls: () => key,
    tlsOnly: false,
    web: false,
    sniffWaitMs: EVENT_TIMEOUT_MS,
    tlsHandshakeTimeoutMs: EVENT_TIMEOUT_MS,
  };
  const tlsClient = connectTlsSocket("127.0.0.1", listener.addr.port, {
    rejectUnauthorized: false,
  });
  const raw = await listener.accept();
  const opening = openClient(raw, door);
  const client = await tlsClient;
  await client.write(enc("x\n")); // decides the kind inside TLS at once
  const tls = await opening;
  const plainClient = await Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port });
  await plainClient.write(enc("y\n"));
  const rawPlain = await listener.accept();
  const plain = await openClient(rawPlain, door);
  for (const [arrival, socket] of [[tls, raw], [plain, rawPlain]] as const) {
    assert.equal(arrival.kind, "client");
    if (arrival.kind !== "client") continue;
    assert.deepEqual(arrival.conn.localAddr, socket.localAddr);
    assert.deepEqual(arrival.conn.remoteAddr, socket.remoteAddr);
    if (Deno.build.os === "linux") {
      assert.equal(typeof unackedBytes(arrival.conn.localAddr, arrival.conn.remoteAddr), "number");
    }
    arrival.conn.close();
  }
  client.close();
  plainClient.close();
});

Deno.test("relay --tls with default options: TLS and sniffed plain clients that never read are cut, a TLS reader gets every line", async () => {
  const log = captureLog("relay");
  await using t = await startTlsRelay({ logger: log.logger, shutdownFlushMs: 200 });
  const sender = await t.plain();
  await sender.write("/who\n");
  const senderName = await welcomeOf(sender);
  const reader = await t.tls();
  const readerName = await welcomeOf(reader.client);
  const stuckTls = await t.tls();
  const stuckTlsName = await welcomeOf(stuckTls.client); // and never reads again
  const stuckPlain = await t.plain();
  await stuckPlain.write("/who\n"); // decides its kind at once
  const stuckPlainName = await welcomeOf(stuckPlain); // and never reads again
  assert.equal(t.relay.stats().tlsClients, 2);

  const body = "t".repeat(390);
  const N = 60_000; // 24 MB
  const sending = sender.write(
    enc(Array.from({ length: N }, (_, i) => `${i} ${body}\n`).join("")),
  );
  for (let i = 0; i < N;) {
    const line = await reader.client.readLine(60_000);
    assert.notEqual(line, null, `the TLS reader was cut after ${i} lines`);
    if (line!.startsWith("* ")) continue;
    assert.equal(line, `[${senderName}] ${i} ${body}`);
    i++;
  }
  await sending;
  for (const name of [stuckTlsName, stuckPlainName]) {
    await log.waitForLog(new RegExp(`${name} disconnected: slow consumer: took no byte`));
  }
  const stats = t.relay.stats();
  assert.equal(stats.closes["slow-stall"], 2);
  assert.ok(stats.stalls >= 2);
  assert.equal(readerName === stuckTlsName, false);
  // Read only now: the TLS stream still ends with the reason line, after whole lines.
  await delay(500);
  const rest = dec(await stuckTls.client.readToEnd());
  assert.match(
    rest,
    new RegExp(
      `\\n\\* disconnected: slow consumer: took no byte for ${RELAY_DEFAULTS.stallTimeoutMs} ms ` +
        `and more than ${RELAY_DEFAULTS.maxQueuedBytes} bytes queued\\n$`,
    ),
  );
  const lines = rest.split("\n").filter((l) => l.startsWith(`[${senderName}]`));
  assert.ok(lines.length > 0);
  const first = Number(lines[0].split(" ")[1]);
  lines.forEach((l, k) => assert.equal(l, `[${senderName}] ${first + k} ${body}`));
  assert.match(
    dec(
      await withTimeout(stuckPlain.readToEnd(), EVENT_TIMEOUT_MS, {
        what: "the plain client's end",
      }),
    ),
    /\* disconnected: slow consumer/,
  );
});
