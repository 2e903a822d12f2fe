/**
 * Tests of first-bytes classification (`lib/net/sniff.ts`) over real loopback sockets, and of
 * one port serving TLS and plain clients: sniff, then `acceptTls` on the same socket, with
 * openssl s_client, ncat --ssl and plain ncat as the clients.
 */

import assert from "node:assert/strict";
import { classify, PrefixedConn, sniff, type SniffKind } from "../lib/net/sniff.ts";
import { acceptTls } from "../lib/net/tls_stream.ts";
import { createSelfSignedCert } from "../lib/net/tls_cert.ts";
import { BufferedReader } from "../lib/net/buffered_reader.ts";
import { withTimeout } from "../lib/net/deadline.ts";
import { writeAll } from "../lib/net/write_all.ts";
import { EVENT_TIMEOUT_MS, peerTest, TestClient } from "./_helpers.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();
const bytes = (text: string) => encoder.encode(text);
/** A wait long enough that only a silent client reaches it, even on a busy machine. */
const PATIENT_MS = EVENT_TIMEOUT_MS;

/** A listener on 127.0.0.1 and a client connected to it, with the accepted socket. */
async function connectedPair(): Promise<
  { client: Deno.TcpConn; server: Deno.TcpConn } & AsyncDisposable
> {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const [client, server] = await Promise.all([
    Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port }),
    listener.accept(),
  ]);
  listener.close();
  return {
    client,
    server,
    [Symbol.asyncDispose]() {
      for (const c of [client, server]) {
        try {
          c.close();
        } catch {
          // Closed by the test.
        }
      }
      return Promise.resolve();
    },
  };
}

/** Reads what is left on `conn` until end of input. */
async function readAll(conn: Deno.Conn): Promise<string> {
  const chunks: string[] = [];
  const buf = new Uint8Array(1024);
  await withTimeout(
    (async () => {
      let n;
      while ((n = await conn.read(buf)) !== null) {
        chunks.push(decoder.decode(buf.subarray(0, n), { stream: true }));
      }
    })(),
    EVENT_TIMEOUT_MS,
    { what: "end of input" },
  );
  return chunks.join("");
}

Deno.test("classify() decides each kind from the fewest bytes", () => {
  const cases: [number[] | string, SniffKind | number][] = [
    [[0x16, 0x03, 0x01], "tls"],
    [[0x16, 0x02], "other"],
    [[0x05, 0x01, 0x00], "socks5"],
    [[0x04, 0x01], "socks4"],
    ["GET / HTTP/1.1", "http"],
    ["HEAD /", "http"],
    ["DELETE /x", "http"],
    ["OPTIONS *", "http"],
    ["CONNECT a:1", "http"],
    ["PATCH /", "http"],
    ["PUT /", "http"],
    ["POST /", "http"],
    ["GETX", "other"],
    ["get /", "other"],
    ["hello", "other"],
    [[0x00], "other"],
    ["OPTIONS", 1],
    ["C", 7],
    ["D", 6],
    ["", 1],
  ];
  for (const [input, want] of cases) {
    const head = typeof input === "string" ? bytes(input) : new Uint8Array(input);
    const got = classify(head.subarray(0, Math.min(head.length, 8)));
    assert.equal(got, want, `classify(${JSON.stringify(input)})`);
  }
});

Deno.test("sniff() tells each kind of client on a real socket and replays its bytes", async () => {
  const cases: { kind: SniffKind; send: Uint8Array; head: number }[] = [
    { kind: "tls", send: new Uint8Array([0x16, 0x03, 0x01, 0x00, 0x05, 1, 2, 3, 4, 5]), head: 2 },
    { kind: "http", send: bytes("GET /chat HTTP/1.1\r\nHost: x\r\n\r\n"), head: 4 },
    { kind: "http", send: bytes("OPTIONS * HTTP/1.1\r\n\r\n"), head: 8 },
    { kind: "http", send: bytes("CONNECT example.org:443 HTTP/1.1\r\n\r\n"), head: 8 },
    { kind: "socks5", send: new Uint8Array([0x05, 0x01, 0x00]), head: 1 },
    { kind: "socks4", send: new Uint8Array([0x04, 0x01, 0x00, 0x50, 127, 0, 0, 1, 0]), head: 1 },
    { kind: "other", send: bytes("hello relay\n"), head: 1 },
    { kind: "other", send: bytes("PUSH it\n"), head: 4 },
  ];
  for (const c of cases) {
    await using pair = await connectedPair();
    await writeAll(pair.client, c.send);
    await pair.client.closeWrite();
    const result = await sniff(pair.server, { waitMs: PATIENT_MS });
    assert.equal(result.kind, c.kind, `kind of ${quoteBytes(c.send)}`);
    assert.deepEqual(result.head, c.send.subarray(0, c.head), `head of ${quoteBytes(c.send)}`);
    assert.equal(await readAll(result.conn), decoder.decode(c.send), "everything is replayed");
  }
});

Deno.test("sniff() reads no more than the deciding bytes: the rest stays in the socket", async () => {
  await using pair = await connectedPair();
  await writeAll(pair.client, bytes("CONNECT example.org:443 HTTP/1.1\r\n\r\n"));
  const result = await sniff(pair.server, { waitMs: PATIENT_MS });
  assert.equal(result.kind, "http");
  assert.equal(decoder.decode(result.head), "CONNECT ");
  // The socket itself still holds everything after the 8 bytes.
  const buf = new Uint8Array(64);
  const n = await pair.server.read(buf);
  assert.equal(decoder.decode(buf.subarray(0, n!)), "example.org:443 HTTP/1.1\r\n\r\n");
});

Deno.test("sniff() decides on a client that sends one byte at a time", async () => {
  await using pair = await connectedPair();
  // Each byte leaves only once the server's previous read is done and the next one waits, so
  // every read sees exactly one byte.
  const readsStarted: PromiseWithResolvers<void>[] = [];
  const nextRead = (i: number) => (readsStarted[i] ??= Promise.withResolvers<void>());
  let reads = 0;
  const server = pair.server;
  const gated = Object.create(server, {
    read: {
      value: (p: Uint8Array) => {
        nextRead(reads++).resolve();
        return server.read(p);
      },
    },
  }) as Deno.TcpConn;
  const sniffing = sniff(gated, { waitMs: PATIENT_MS });
  const request = bytes("GET / HTTP/1.0\r\n\r\n");
  for (let i = 0; i < 4; i++) {
    await withTimeout(nextRead(i).promise, EVENT_TIMEOUT_MS, { what: `server read ${i}` });
    await writeAll(pair.client, request.subarray(i, i + 1));
  }
  const result = await sniffing;
  assert.equal(result.kind, "http");
  assert.equal(decoder.decode(result.head), "GET ");
  assert.equal(reads, 4, "one read per byte, and none after the decision");
  await writeAll(pair.client, request.subarray(4));
  await pair.client.closeWrite();
  assert.equal(await readAll(result.conn), decoder.decode(request));
});

Deno.test("sniff() calls a client that sends nothing silent, and keeps what it sends later", async () => {
  await using pair = await connectedPair();
  const started = performance.now();
  const result = await sniff(pair.server, { waitMs: 100 });
  assert.equal(result.kind, "silent");
  assert.equal(result.head.length, 0);
  assert.ok(performance.now() - started >= 90, "it waited for the client");
  // The read that was under way when the wait passed is not lost.
  await writeAll(pair.client, bytes("late line\n"));
  await pair.client.closeWrite();
  assert.equal(await readAll(result.conn), "late line\n");
});

Deno.test("sniff() keeps a cut-short method prefix as other, then the rest of the line", async () => {
  await using pair = await connectedPair();
  await writeAll(pair.client, bytes("GE"));
  const result = await sniff(pair.server, { waitMs: 150 });
  assert.equal(result.kind, "other");
  assert.equal(decoder.decode(result.head), "GE");
  await writeAll(pair.client, bytes("T lost?\n"));
  await pair.client.closeWrite();
  assert.equal(await readAll(result.conn), "GET lost?\n");
});

Deno.test("sniff() calls a client that closes at once silent, and replays the end of input", async () => {
  await using pair = await connectedPair();
  await pair.client.closeWrite();
  const result = await sniff(pair.server, { waitMs: PATIENT_MS });
  assert.equal(result.kind, "silent");
  assert.equal(await result.conn.read(new Uint8Array(8)), null);
});

Deno.test("PrefixedConn forwards writes, half-close, addresses and socket options", async () => {
  await using pair = await connectedPair();
  const conn = new PrefixedConn(pair.server, bytes("ab"));
  assert.deepEqual(conn.remoteAddr, pair.server.remoteAddr);
  assert.deepEqual(conn.localAddr, pair.server.localAddr);
  conn.setNoDelay(true);
  conn.setKeepAlive(true);
  await writeAll(conn, bytes("to client\n"));
  await conn.closeWrite();
  assert.equal(await readAll(pair.client), "to client\n");
  // Small reads drain the head in pieces.
  const one = new Uint8Array(1);
  assert.equal(await conn.read(one), 1);
  assert.equal(decoder.decode(one), "a");
  assert.equal(conn.unread, 1);
  await writeAll(pair.client, bytes("cd"));
  await pair.client.closeWrite();
  assert.equal(await new Response(conn.readable).text(), "bcd");
});

// --- One port for TLS and plain clients -------------------------------------------------------

/**
 * A one-port server as the relay will run it: sniff each connection; TLS clients get TLS on
 * the same socket, everyone else plain text. Each side answers lines with `tls: LINE` or
 * `plain: LINE`; a silent client is greeted first.
 */
async function startOnePortServer(options: { waitMs: number }) {
  const key = await createSelfSignedCert({ names: ["localhost", "127.0.0.1"] });
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const open = new Set<Deno.Conn>();
  const kinds: SniffKind[] = [];
  const handle = async (tcp: Deno.TcpConn) => {
    const mine: Deno.Conn[] = [tcp];
    open.add(tcp);
    try {
      const { kind, conn } = await sniff(tcp, options);
      kinds.push(kind);
      const io: Deno.Conn = kind === "tls" ? await acceptTls(conn, key) : conn;
      mine.push(io);
      open.add(io);
      const tag = kind === "tls" ? "tls" : "plain";
      if (kind === "silent") await writeAll(io, bytes("welcome, listener\n"));
      const reader = new BufferedReader(io);
      let line;
      while ((line = await reader.readLine(1024)) !== null) {
        await writeAll(io, bytes(`${tag}: ${decoder.decode(line)}\n`));
      }
      await io.closeWrite();
    } catch {
      // A client that went away.
    } finally {
      for (const c of mine) {
        open.delete(c);
        try {
          c.close();
        } catch {
          // Already closed.
        }
      }
    }
  };
  const serving = (async () => {
    for await (const tcp of listener) handle(tcp);
  })().catch(() => {});
  return {
    port: listener.addr.port,
    key,
    kinds,
    async [Symbol.asyncDispose]() {
      listener.close();
      for (const c of open) {
        try {
          c.close();
        } catch {
          // Already closed.
        }
      }
      await serving;
    },
  };
}

/** A peer program whose stdout is read line by line, killed on dispose. */
function spawnPeer(program: string, args: string[]) {
  const child = new Deno.Command(program, {
    args,
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const writer = child.stdin.getWriter();
  const lines = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  const stderr = new Response(child.stderr).text();
  let pending = "";
  return {
    async writeLine(text: string) {
      await writer.write(bytes(text + "\n"));
    },
    async readLine(): Promise<string> {
      return await withTimeout(
        (async () => {
          while (!pending.includes("\n")) {
            const { value, done } = await lines.read();
            if (done) throw new Error(`${program} ended its output; stderr:\n${await stderr}`);
            pending += value;
          }
          const i = pending.indexOf("\n");
          const line = pending.slice(0, i);
          pending = pending.slice(i + 1);
          return line;
        })(),
        EVENT_TIMEOUT_MS,
        { what: `a line from ${program}` },
      );
    },
    async [Symbol.asyncDispose]() {
      try {
        child.kill("SIGKILL");
      } catch {
        // Exited.
      }
      await writer.close().catch(() => {});
      await lines.cancel().catch(() => {});
      await child.status;
      await stderr;
    },
  };
}

peerTest("openssl", {
  name: "one port: openssl s_client gets TLS after sniffing, line in and line out",
  fn: async () => {
    await using server = await startOnePortServer({ waitMs: PATIENT_MS });
    await using client = spawnPeer("openssl", [
      "s_client",
      "-quiet",
      "-connect",
      `127.0.0.1:${server.port}`,
      "-servername",
      "localhost",
    ]);
    await client.writeLine("hello over tls");
    assert.equal(await client.readLine(), "tls: hello over tls");
    await client.writeLine("second line");
    assert.equal(await client.readLine(), "tls: second line");
    assert.deepEqual(server.kinds, ["tls"]);
  },
});

peerTest("openssl", {
  name: "one port: openssl s_client verifies the certificate served after sniffing",
  fn: async () => {
    await using server = await startOnePortServer({ waitMs: PATIENT_MS });
    const caFile = await Deno.makeTempFile({ suffix: ".pem" });
    try {
      await Deno.writeTextFile(caFile, server.key.cert);
      const out = await withTimeout(
        new Deno.Command("openssl", {
          args: [
            "s_client",
            "-connect",
            `127.0.0.1:${server.port}`,
            "-CAfile",
            caFile,
            "-verify_return_error",
            "-verify_hostname",
            "localhost",
          ],
          stdin: "null", // end of input: s_client closes after the handshake
          stdout: "piped",
          stderr: "piped",
        }).output(),
        EVENT_TIMEOUT_MS,
        { what: "openssl s_client" },
      );
      const text = decoder.decode(out.stdout);
      assert.match(text, /Verify return code: 0 \(ok\)/);
      assert.match(text, /TLSv1\.3/);
    } finally {
      await Deno.remove(caFile);
    }
  },
});

peerTest("ncat", {
  name: "one port: ncat --ssl gets TLS and plain ncat gets text",
  fn: async () => {
    await using server = await startOnePortServer({ waitMs: PATIENT_MS });
    {
      await using tls = spawnPeer("ncat", ["--ssl", "127.0.0.1", String(server.port)]);
      await tls.writeLine("secret");
      assert.equal(await tls.readLine(), "tls: secret");
    }
    {
      await using plain = spawnPeer("ncat", ["127.0.0.1", String(server.port)]);
      await plain.writeLine("hello");
      assert.equal(await plain.readLine(), "plain: hello");
    }
    assert.deepEqual(server.kinds, ["tls", "other"]);
  },
});

peerTest("ncat", {
  name: "one port: a listen-only ncat is greeted after the sniff wait",
  fn: async () => {
    await using server = await startOnePortServer({ waitMs: 300 });
    await using listener = spawnPeer("ncat", ["--recv-only", "127.0.0.1", String(server.port)]);
    assert.equal(await listener.readLine(), "welcome, listener");
    assert.deepEqual(server.kinds, ["silent"]);
  },
});

Deno.test("one port: a plain TCP client and a Deno TLS client share the port", async () => {
  await using server = await startOnePortServer({ waitMs: PATIENT_MS });
  const tls = await Deno.connectTls({
    hostname: "localhost",
    port: server.port,
    caCerts: [server.key.cert],
  });
  try {
    await writeAll(tls, bytes("via rustls\n"));
    const reader = new BufferedReader(tls);
    assert.equal(decoder.decode((await reader.readLine(1024))!), "tls: via rustls");
  } finally {
    tls.close();
  }
  await using plain = await TestClient.connect(server.port);
  await plain.writeLine("via tcp");
  assert.equal(await plain.readLine(), "plain: via tcp");
});

function quoteBytes(b: Uint8Array): string {
  return JSON.stringify(decoder.decode(b.subarray(0, 12)));
}
