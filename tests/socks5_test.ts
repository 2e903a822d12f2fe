import assert from "node:assert/strict";
import { BufferedReader } from "../lib/net/buffered_reader.ts";
import { withTimeout } from "../lib/net/deadline.ts";
import { dialAny } from "../lib/socks5/dial.ts";
import {
  DestinationRules,
  parseProxyUrl,
  Reply,
  socks5Connect,
  Socks5Error,
  UserTable,
} from "../lib/socks5/mod.ts";
import {
  EVENT_TIMEOUT_MS,
  peerTest,
  pseudoRandomBytes,
  runSockit,
  startEchoServer,
  startSockit,
  TestClient,
} from "./_helpers.ts";
import { startTestProxy } from "./_socks5.ts";

const enc = (s: string) => new TextEncoder().encode(s);
const dec = (b: Uint8Array) => new TextDecoder().decode(b);

/** A local HTTP server answering "hello from PATH". */
function startHttp() {
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen() {} },
    (req) => new Response(`hello from ${new URL(req.url).pathname}\n`),
  );
  return {
    port: server.addr.port,
    async [Symbol.asyncDispose]() {
      await server.shutdown();
    },
  };
}

/** A port nobody listens on. */
function closedPort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = l.addr.port;
  l.close();
  return port;
}

/** A SOCKS5 CONNECT request for 127.0.0.1:`port`. */
function connectRequest(port: number, host = [127, 0, 0, 1]): Uint8Array {
  return new Uint8Array([0x05, 0x01, 0x00, 0x01, ...host, port >> 8, port & 0xff]);
}

const GREETING_NO_AUTH = new Uint8Array([0x05, 0x01, 0x00]);

/** Reads a SOCKS5 reply with an IPv4 bound address; returns [REP, bound port]. */
async function readReply(client: TestClient): Promise<{ rep: number; host: string; port: number }> {
  const head = await client.readBytes(4);
  assert.equal(head[0], 0x05);
  assert.equal(head[3], 0x01, "bound address is IPv4");
  const rest = await client.readBytes(6);
  return { rep: head[1], host: rest.subarray(0, 4).join("."), port: (rest[4] << 8) | rest[5] };
}

async function curl(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const out = await withTimeout(
    new Deno.Command("curl", { args: ["-sS", "--max-time", "10", ...args] }).output(),
    15_000,
    { what: "curl" },
  );
  return { code: out.code, stdout: dec(out.stdout), stderr: dec(out.stderr) };
}

// --- curl -------------------------------------------------------------------------------

peerTest("curl", {
  name: "socks5: curl --socks5 and --socks5-hostname fetch a local page",
  fn: async () => {
    await using http = startHttp();
    await using proxy = startTestProxy();
    const a = await curl([
      "--socks5",
      `127.0.0.1:${proxy.port}`,
      `http://127.0.0.1:${http.port}/a`,
    ]);
    assert.equal(a.code, 0, a.stderr);
    assert.equal(a.stdout, "hello from /a\n");
    const b = await curl([
      "--socks5-hostname",
      `127.0.0.1:${proxy.port}`,
      `http://localhost:${http.port}/b`,
    ]);
    assert.equal(b.code, 0, b.stderr);
    assert.equal(b.stdout, "hello from /b\n");
    const line = await proxy.waitForLog(/CONNECT "localhost":\d+ via/);
    assert.match(
      line,
      /127\.0\.0\.1:\d+ CONNECT "localhost":\d+ via 127\.0\.0\.1:\d+ reply=0x00 .*up=\d+B down=\d+B/,
    );
  },
});

peerTest("curl", {
  name: "socks5: curl with --proxy-user passes; a wrong password is rejected",
  fn: async () => {
    await using http = startHttp();
    await using proxy = startTestProxy({ users: UserTable.fromSpecs(["alice:s3cret:x"]) });
    const proxyArg = ["--socks5-hostname", `127.0.0.1:${proxy.port}`];
    const url = `http://localhost:${http.port}/secret`;
    const ok = await curl([...proxyArg, "--proxy-user", "alice:s3cret:x", url]);
    assert.equal(ok.code, 0, ok.stderr);
    assert.equal(ok.stdout, "hello from /secret\n");
    const wrong = await curl([...proxyArg, "--proxy-user", "alice:guess", url]);
    assert.notEqual(wrong.code, 0);
    assert.equal(wrong.stdout, "");
    const none = await curl([...proxyArg, url]);
    assert.notEqual(none.code, 0);
    await proxy.waitForLog(/authentication failed for user "alice"/);
    await proxy.waitForLog(/no acceptable method/);
    await proxy.waitForLog(/user="alice" CONNECT/);
  },
});

peerTest("curl", {
  name: "socks5: curl through the sockit process, which logs one line per session",
  fn: async () => {
    await using http = startHttp();
    await using proxy = await startSockit(["socks5", "--port", "0"]);
    const r = await curl([
      "--socks5-hostname",
      `127.0.0.1:${proxy.port}`,
      `http://127.0.0.1:${http.port}/x`,
    ]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, "hello from /x\n");
    await proxy.waitForStderr(/CONNECT 127\.0\.0\.1:\d+ via 127\.0\.0\.1:\d+ reply=0x00/);
    const status = await proxy.stop("SIGTERM");
    assert.equal(status.code, 0);
  },
});

// --- raw clients --------------------------------------------------------------------------

Deno.test("socks5: a greeting and request sent one byte at a time still connect", async () => {
  await using echo = startEchoServer();
  await using proxy = startTestProxy();
  await using client = await TestClient.connect(proxy.port);
  client.conn.setNoDelay(true);
  for (const b of GREETING_NO_AUTH) await client.write(new Uint8Array([b]));
  assert.deepEqual(await client.readBytes(2), new Uint8Array([0x05, 0x00]));
  for (const b of connectRequest(echo.port)) await client.write(new Uint8Array([b]));
  const reply = await readReply(client);
  assert.equal(reply.rep, Reply.Succeeded);
  assert.equal(reply.host, "127.0.0.1");
  assert.notEqual(reply.port, 0);
  await client.write("ping\n");
  assert.equal(await client.readLine(), "ping");
});

Deno.test("socks5: greeting, request and first payload in one write: the payload is forwarded", async () => {
  await using echo = startEchoServer();
  await using proxy = startTestProxy();
  await using client = await TestClient.connect(proxy.port);
  const payload = enc("early bytes\n");
  await client.write(
    new Uint8Array([...GREETING_NO_AUTH, ...connectRequest(echo.port), ...payload]),
  );
  assert.deepEqual(await client.readBytes(2), new Uint8Array([0x05, 0x00]));
  assert.equal((await readReply(client)).rep, Reply.Succeeded);
  assert.equal(await client.readLine(), "early bytes");
});

Deno.test("socks5: an unknown command gets reply 0x07 and the connection is closed", async () => {
  await using proxy = startTestProxy();
  await using client = await TestClient.connect(proxy.port);
  await client.write(
    new Uint8Array([...GREETING_NO_AUTH, 0x05, 0x09, 0x00, 0x01, 127, 0, 0, 1, 0, 80]),
  );
  await client.readBytes(2);
  assert.equal((await readReply(client)).rep, Reply.CommandNotSupported);
  assert.equal((await client.readToEnd()).length, 0);
  await proxy.waitForLog(/command 0x09 .*reply=0x07/);
});

Deno.test("socks5: an unknown address type gets reply 0x08", async () => {
  await using proxy = startTestProxy();
  await using client = await TestClient.connect(proxy.port);
  await client.write(
    new Uint8Array([...GREETING_NO_AUTH, 0x05, 0x01, 0x00, 0x09, 1, 2, 3, 4, 0, 80]),
  );
  await client.readBytes(2);
  assert.equal((await readReply(client)).rep, Reply.AddressTypeNotSupported);
  assert.equal((await client.readToEnd()).length, 0);
});

Deno.test("socks5: a destination the rules deny gets reply 0x02, even by name", async () => {
  await using echo = startEchoServer();
  await using proxy = startTestProxy({ rules: new DestinationRules({ denyPrivate: true }) });
  const target = parseProxyUrl(`socks5://127.0.0.1:${proxy.port}`);
  for (const hostname of ["127.0.0.1", "localhost", "::ffff:127.0.0.1"]) {
    await assert.rejects(
      socks5Connect(target, { hostname, port: echo.port }),
      (e: unknown) => e instanceof Socks5Error && e.reply === Reply.NotAllowedByRuleset,
      hostname,
    );
  }
  await proxy.waitForLog(/denied by rules/);
});

Deno.test("socks5: --allow opens one address of a denied range", async () => {
  await using echo = startEchoServer();
  await using proxy = startTestProxy({
    rules: new DestinationRules({ denyPrivate: true, allow: ["127.0.0.1/32"] }),
  });
  const via = parseProxyUrl(`socks5://127.0.0.1:${proxy.port}`);
  const conn = await socks5Connect(via, { hostname: "127.0.0.1", port: echo.port });
  conn.close();
  await assert.rejects(
    socks5Connect(via, { hostname: "127.0.0.2", port: echo.port }),
    (e: unknown) => e instanceof Socks5Error && e.reply === Reply.NotAllowedByRuleset,
  );
});

Deno.test("socks5: a closed port gets reply 0x05 (connection refused)", async () => {
  await using proxy = startTestProxy();
  await using client = await TestClient.connect(proxy.port);
  await client.write(new Uint8Array([...GREETING_NO_AUTH, ...connectRequest(closedPort())]));
  await client.readBytes(2);
  assert.equal((await readReply(client)).rep, Reply.ConnectionRefused);
  assert.equal((await client.readToEnd()).length, 0);
});

Deno.test("socks5: with HTTP off, a bad version byte closes the connection without a reply", async () => {
  await using proxy = startTestProxy({ allowHttp: false });
  await using client = await TestClient.connect(proxy.port);
  await client.write("GET / HTTP/1.1\r\n\r\n");
  assert.equal((await client.readToEnd()).length, 0);
  await proxy.waitForLog(/bad version 0x47/);
  // The server keeps serving others.
  await using again = await TestClient.connect(proxy.port);
  await again.write(GREETING_NO_AUTH);
  assert.deepEqual(await again.readBytes(2), new Uint8Array([0x05, 0x00]));
});

Deno.test("socks5: a wrong password gets status 1 and the connection is closed", async () => {
  await using proxy = startTestProxy({ users: UserTable.fromSpecs(["bob:pw"]) });
  await using client = await TestClient.connect(proxy.port);
  await client.write(new Uint8Array([0x05, 0x02, 0x00, 0x02]));
  assert.deepEqual(await client.readBytes(2), new Uint8Array([0x05, 0x02]));
  await client.write(new Uint8Array([0x01, 3, ...enc("bob"), 2, ...enc("px")]));
  const [ver, status] = await client.readBytes(2);
  assert.equal(ver, 0x01);
  assert.notEqual(status, 0);
  assert.equal((await client.readToEnd()).length, 0);
});

Deno.test("socks5: the client module authenticates and maps a refusal to Socks5Error", async () => {
  await using echo = startEchoServer();
  await using proxy = startTestProxy({ users: UserTable.fromSpecs(["bob:pw"]) });
  const good = parseProxyUrl(`socks5://bob:pw@127.0.0.1:${proxy.port}`);
  const conn = await socks5Connect(good, { hostname: "localhost", port: echo.port });
  const reader = new BufferedReader(conn);
  await conn.write(enc("hi\n"));
  assert.equal(dec((await reader.readLine(100))!), "hi");
  conn.close();
  const bad = parseProxyUrl(`socks5://bob:nope@127.0.0.1:${proxy.port}`);
  await assert.rejects(
    socks5Connect(bad, { hostname: "localhost", port: echo.port }),
    /rejected user 'bob'/,
  );
  const anon = parseProxyUrl(`socks5://127.0.0.1:${proxy.port}`);
  await assert.rejects(
    socks5Connect(anon, { hostname: "localhost", port: echo.port }),
    Socks5Error,
  );
});

Deno.test("socks5: half-close passes through: the client shuts its write side and still gets the answer", async () => {
  // A server that reads to EOF, then answers with the byte count.
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const served = (async () => {
    const conn = await listener.accept();
    let total = 0;
    const buf = new Uint8Array(65536);
    let n;
    while ((n = await conn.read(buf)) !== null) total += n;
    await conn.write(enc(`got ${total}\n`));
    conn.close();
  })();
  await using proxy = startTestProxy();
  const conn = await socks5Connect(parseProxyUrl(`socks5://127.0.0.1:${proxy.port}`), {
    hostname: "127.0.0.1",
    port: listener.addr.port,
  });
  const client = new BufferedReader(conn);
  const data = pseudoRandomBytes(1024 * 1024 + 3);
  let off = 0;
  while (off < data.length) off += await conn.write(data.subarray(off));
  await conn.closeWrite();
  assert.equal(
    dec((await withTimeout(client.readLine(100), EVENT_TIMEOUT_MS, { what: "answer" }))!),
    `got ${data.length}`,
  );
  assert.equal(await client.readLine(100), null);
  conn.close();
  await served;
  listener.close();
  await proxy.waitForLog(new RegExp(`up=1\\.0MiB down=${`got ${data.length}\n`.length}B`));
});

/** True when this machine can listen on the IPv6 loopback address. */
function hasIpv6Loopback(): boolean {
  try {
    Deno.listen({ hostname: "::1", port: 0 }).close();
    return true;
  } catch {
    return false;
  }
}

Deno.test({
  name: "socks5: every resolved address is tried in turn, IPv6 included (needs IPv6 loopback ::1)",
  ignore: !hasIpv6Loopback(),
  fn: async () => {
    // Listen on ::1 only: 127.0.0.1 on the same port refuses, then ::1 answers. (Another
    // process may hold 127.0.0.1 on the port the kernel picked for ::1: pick again then.)
    let listener = Deno.listen({ hostname: "::1", port: 0 });
    for (let i = 0; i < 20; i++) {
      try {
        Deno.listen({ hostname: "127.0.0.1", port: listener.addr.port }).close();
        break; // Free on 127.0.0.1: dialling it will be refused.
      } catch {
        listener.close();
        listener = Deno.listen({ hostname: "::1", port: 0 });
      }
    }
    const dialled = await dialAny(["127.0.0.1", "::1"], {
      port: listener.addr.port,
      timeoutMs: 5000,
    });
    assert.ok("conn" in dialled);
    assert.equal(dialled.address, "::1");
    dialled.conn.close();
    (await listener.accept()).close();
    const refused = await dialAny(["127.0.0.1"], { port: listener.addr.port, timeoutMs: 5000 });
    assert.ok("reply" in refused && refused.reply === Reply.ConnectionRefused);
    // An IPv6 destination (ATYP 4) through the proxy.
    const accepted = listener.accept();
    await using proxy = startTestProxy();
    const conn = await socks5Connect(parseProxyUrl(`socks5://127.0.0.1:${proxy.port}`), {
      hostname: "::1",
      port: listener.addr.port,
    });
    const peer = await accepted;
    await peer.write(enc("v6\n"));
    assert.equal(dec((await new BufferedReader(conn).readLine(10))!), "v6");
    conn.close();
    peer.close();
    listener.close();
    await proxy.waitForLog(/CONNECT \[::1\]:\d+ via \[::1\]:\d+ reply=0x00/);
  },
});

Deno.test("socks5: --no-bind and --no-udp answer 0x07", async () => {
  await using proxy = startTestProxy({ allowBind: false, allowUdp: false });
  for (const cmd of [0x02, 0x03]) {
    await using client = await TestClient.connect(proxy.port);
    await client.write(
      new Uint8Array([...GREETING_NO_AUTH, 0x05, cmd, 0x00, 0x01, 0, 0, 0, 0, 0, 0]),
    );
    await client.readBytes(2);
    assert.equal((await readReply(client)).rep, Reply.CommandNotSupported);
  }
});

Deno.test("socks5: a silent client is closed after the handshake timeout", async () => {
  await using proxy = startTestProxy({ handshakeTimeoutMs: 200 });
  await using client = await TestClient.connect(proxy.port);
  await client.write(new Uint8Array([0x05]));
  assert.equal((await client.readToEnd(5000)).length, 0);
  await proxy.waitForLog(/Timed out after 200 ms/);
});

// --- SOCKS4 ------------------------------------------------------------------------------

Deno.test("socks5: SOCKS4a connects by name on an open proxy", async () => {
  await using echo = startEchoServer();
  await using proxy = startTestProxy();
  await using client = await TestClient.connect(proxy.port);
  await client.write(
    new Uint8Array([
      0x04,
      0x01,
      echo.port >> 8,
      echo.port & 0xff,
      0,
      0,
      0,
      1,
      ...enc("me"),
      0,
      ...enc("localhost"),
      0,
      ...enc("four\n"),
    ]),
  );
  const reply = await client.readBytes(8);
  assert.equal(reply[0], 0x00);
  assert.equal(reply[1], 0x5a);
  assert.equal(await client.readLine(), "four");
  client.close();
  await proxy.waitForLog(/socks4 CONNECT "localhost":\d+ via 127\.0\.0\.1:\d+/);
});

Deno.test("socks5: SOCKS4 is refused (0x5b) when users are configured", async () => {
  await using echo = startEchoServer();
  await using proxy = startTestProxy({ users: UserTable.fromSpecs(["u:p"]) });
  await using client = await TestClient.connect(proxy.port);
  await client.write(
    new Uint8Array([0x04, 0x01, echo.port >> 8, echo.port & 0xff, 127, 0, 0, 1, 0]),
  );
  const reply = await client.readBytes(8);
  assert.equal(reply[1], 0x5b);
  assert.equal((await client.readToEnd()).length, 0);
});

// --- command line --------------------------------------------------------------------------

Deno.test("socks5: refuses to start an open proxy on 0.0.0.0", async () => {
  const r = await runSockit(["socks5", "--host", "0.0.0.0", "--port", "0"]);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /Refusing to start an open proxy on 0\.0\.0\.0/);
  const bad = await runSockit(["socks5", "--deny", "10.0.0.0/33"]);
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /bad prefix length '33'/);
});

Deno.test("socks5: --users FILE is read, and the proxy then requires a password", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const file = `${dir}/users`;
    await Deno.writeTextFile(file, "# users\n\ncarol:pa:ss\n");
    await using echo = startEchoServer();
    await using proxy = await startSockit(["socks5", "--port", "0", "--users", file]);
    await proxy.waitForStderr(/1 user\(s\)/);
    const conn = await socks5Connect(
      parseProxyUrl(`socks5://carol:pa%3Ass@127.0.0.1:${proxy.port}`),
      { hostname: "127.0.0.1", port: echo.port },
    );
    conn.close();
    await assert.rejects(
      socks5Connect(parseProxyUrl(`socks5://127.0.0.1:${proxy.port}`), {
        hostname: "127.0.0.1",
        port: echo.port,
      }),
      /none of our methods/,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("socks5: an idle tunnel is closed after the idle timeout", async () => {
  await using echo = startEchoServer();
  // Long enough that the echo round trip below never races it on a busy machine.
  await using proxy = startTestProxy({ idleTimeoutMs: 1000 });
  const conn = await socks5Connect(parseProxyUrl(`socks5://127.0.0.1:${proxy.port}`), {
    hostname: "127.0.0.1",
    port: echo.port,
  });
  const reader = new BufferedReader(conn);
  await conn.write(enc("still here\n"));
  assert.equal(dec((await reader.readLine(100))!), "still here");
  // Then silence: the proxy closes the tunnel.
  assert.equal(await withTimeout(reader.readLine(100), EVENT_TIMEOUT_MS, { what: "EOF" }), null);
  conn.close();
  await proxy.waitForLog(/reply=0x00 .*\[idle timeout\]/);
});

Deno.test("socks5: a half-open tunnel is closed after the half-open cap", async () => {
  // A target that never closes its side.
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const accepted = listener.accept();
  await using proxy = startTestProxy({ halfOpenTimeoutMs: 150 });
  const conn = await socks5Connect(parseProxyUrl(`socks5://127.0.0.1:${proxy.port}`), {
    hostname: "127.0.0.1",
    port: listener.addr.port,
  });
  const target = await accepted;
  await conn.closeWrite();
  // The target sees EOF, keeps its side open; the proxy gives up and the client sees EOF.
  assert.equal(await target.read(new Uint8Array(8)), null);
  const eof = await withTimeout(conn.read(new Uint8Array(8)), EVENT_TIMEOUT_MS, { what: "EOF" });
  assert.equal(eof, null);
  await proxy.waitForLog(/\[half-open timeout\]/);
  conn.close();
  target.close();
  listener.close();
});

Deno.test("socks5: connections over --max-conns are closed at once, others still served", async () => {
  await using echo = startEchoServer();
  await using proxy = startTestProxy({ maxConnections: 1 });
  const via = parseProxyUrl(`socks5://127.0.0.1:${proxy.port}`);
  const first = await socks5Connect(via, { hostname: "127.0.0.1", port: echo.port });
  await using second = await TestClient.connect(proxy.port);
  assert.equal((await second.readToEnd()).length, 0);
  await proxy.waitForLog(/refused 127\.0\.0\.1:\d+: 1 connections open/);
  first.close();
  await proxy.waitForLog(/CONNECT 127\.0\.0\.1/);
  const third = await socks5Connect(via, { hostname: "127.0.0.1", port: echo.port });
  third.close();
});

Deno.test("socks5: --advertise puts its address in the BIND reply", async () => {
  await using proxy = startTestProxy({ advertise: "192.0.2.7" });
  await using client = await TestClient.connect(proxy.port);
  await client.write(
    new Uint8Array([...GREETING_NO_AUTH, 0x05, 0x02, 0x00, 0x01, 0, 0, 0, 0, 0, 0]),
  );
  await client.readBytes(2);
  const first = await readReply(client);
  assert.equal(first.rep, Reply.Succeeded);
  assert.equal(first.host, "192.0.2.7");
  // The listener itself is on the control connection's local address.
  const peer = await Deno.connect({ hostname: "127.0.0.1", port: first.port });
  const second = await readReply(client);
  assert.equal(second.rep, Reply.Succeeded);
  assert.equal(second.port, peer.localAddr.port);
  await peer.write(enc("bound\n"));
  assert.equal(await client.readLine(), "bound");
  peer.close();
});

Deno.test("socks5: greeting, credentials, request and data in one write work with users", async () => {
  await using echo = startEchoServer();
  await using proxy = startTestProxy({ users: UserTable.fromSpecs(["dan:pw"]) });
  await using client = await TestClient.connect(proxy.port);
  await client.write(
    new Uint8Array([
      ...[0x05, 0x01, 0x02],
      ...[0x01, 3, ...enc("dan"), 2, ...enc("pw")],
      ...connectRequest(echo.port),
      ...enc("optimistic\n"),
    ]),
  );
  assert.deepEqual(await client.readBytes(2), new Uint8Array([0x05, 0x02]));
  assert.deepEqual(await client.readBytes(2), new Uint8Array([0x01, 0x00]));
  assert.equal((await readReply(client)).rep, Reply.Succeeded);
  assert.equal(await client.readLine(), "optimistic");
  client.close();
  await proxy.waitForLog(/user="dan" CONNECT/);
});
