// Hardening of the SOCKS5 server: non-canonical IPv4 names (the address checked is the
// address dialled), DNS bounded by the connect timeout, peer strings quoted in the log, the
// failed-login budget, SIGHUP, and the open-file limit check.
import assert from "node:assert/strict";
import { withTimeout } from "../lib/net/deadline.ts";
import { DestinationRules, Reply, UserTable } from "../lib/socks5/mod.ts";
import {
  EVENT_TIMEOUT_MS,
  peerTest,
  startEchoServer,
  startSockit,
  startTcpTestServer,
  TestClient,
} from "./_helpers.ts";
import { startTestProxy, type TestProxy } from "./_socks5.ts";

const enc = (s: string) => new TextEncoder().encode(s);
const dec = (b: Uint8Array) => new TextDecoder().decode(b);

const GREETING_NO_AUTH = new Uint8Array([0x05, 0x01, 0x00]);

/** A SOCKS5 request for the domain `name` (ATYP 3). */
function domainRequest(command: number, name: string, port: number): Uint8Array {
  const n = enc(name);
  return new Uint8Array([0x05, command, 0x00, 0x03, n.length, ...n, port >> 8, port & 0xff]);
}

/** Reads a SOCKS5 reply (any address type); returns REP and the bound address. */
async function readReply(client: TestClient): Promise<{ rep: number; host: string; port: number }> {
  const [ver, rep, , atyp] = await client.readBytes(4);
  assert.equal(ver, 0x05);
  const len = atyp === 0x01 ? 4 : atyp === 0x04 ? 16 : (await client.readBytes(1))[0];
  const addr = await client.readBytes(len);
  const p = await client.readBytes(2);
  return { rep, host: atyp === 0x01 ? addr.join(".") : dec(addr), port: (p[0] << 8) | p[1] };
}

/** CONNECT to the domain `name` through an open proxy; resolves the reply code. */
async function connectByName(proxy: TestProxy, name: string, port: number): Promise<number> {
  await using client = await TestClient.connect(proxy.port);
  await client.write(new Uint8Array([...GREETING_NO_AUTH, ...domainRequest(0x01, name, port)]));
  assert.deepEqual(await client.readBytes(2), new Uint8Array([0x05, 0x00]));
  const { rep } = await readReply(client);
  if (rep === Reply.Succeeded) assert.equal(await client.readLine(), "hello from 127.0.0.8");
  return rep;
}

/** A server on 127.0.0.8 (a loopback address other than 127.0.0.1) that greets and closes. */
function startGreeterOn8() {
  const listener = Deno.listen({ hostname: "127.0.0.8", port: 0 });
  const done = (async () => {
    for await (const conn of listener) {
      await conn.write(enc("hello from 127.0.0.8\n")).catch(() => {});
      conn.close();
    }
  })().catch(() => {});
  return {
    port: listener.addr.port,
    async [Symbol.asyncDispose]() {
      listener.close();
      await done;
    },
  };
}

/** A DNS server on loopback that records the names asked for and never answers. */
function startSilentDns() {
  const socket = Deno.listenDatagram({ transport: "udp", hostname: "127.0.0.1", port: 0 });
  const names: string[] = [];
  const waiters: (() => void)[] = [];
  const done = (async () => {
    for await (const [data] of socket) {
      // Header (12 bytes), then QNAME as length-prefixed labels.
      const labels: string[] = [];
      for (let i = 12; i < data.length && data[i] !== 0; i += data[i] + 1) {
        labels.push(dec(data.subarray(i + 1, i + 1 + data[i])));
      }
      names.push(labels.join("."));
      waiters.splice(0).forEach((w) => w());
    }
  })().catch(() => {});
  return {
    nameServer: { ipAddr: "127.0.0.1", port: (socket.addr as Deno.NetAddr).port },
    names,
    /** Resolves once a query arrived (at once when one did). */
    async firstQuery(): Promise<string> {
      if (names.length === 0) {
        await withTimeout(new Promise<void>((r) => waiters.push(r)), EVENT_TIMEOUT_MS, {
          what: "a DNS query",
        });
      }
      return names[0];
    },
    async [Symbol.asyncDispose]() {
      socket.close();
      await done;
    },
  };
}

// --- 1. the address checked is the address dialled -------------------------------------------

Deno.test("socks5: CONNECT to a non-canonical IPv4 name is checked as the address it dials (deny)", async () => {
  await using target = startGreeterOn8();
  await using proxy = startTestProxy({
    rules: new DestinationRules({ deny: ["127.0.0.8"] }),
    connectTimeoutMs: 2000,
  });
  // The C library reads each of these as 127.0.0.8.
  for (
    const name of ["127.0.0.010", "0177.0.0.010", "0x7f.0.0.8", "127.8", "127.0.8", "2130706440"]
  ) {
    assert.equal(await connectByName(proxy, name, target.port), Reply.NotAllowedByRuleset, name);
  }
  await proxy.waitForLog(
    /CONNECT "127\.0\.0\.010":\d+ reply=0x02 .*\[denied by rules: 127\.0\.0\.8\]/,
  );
});

Deno.test("socks5: --deny-private cannot be bypassed with an octal name (012.0.0.1 is 10.0.0.1)", async () => {
  await using proxy = startTestProxy({
    rules: new DestinationRules({ denyPrivate: true }),
    connectTimeoutMs: 1000,
  });
  for (const name of ["012.0.0.1", "0xa.0.0.1", "10.1", "167772161", "0177.1", "0x7f.1"]) {
    assert.equal(await connectByName(proxy, name, 9), Reply.NotAllowedByRuleset, name);
  }
  await proxy.waitForLog(/CONNECT "012\.0\.0\.1":9 reply=0x02 .*\[denied by rules: 10\.0\.0\.1\]/);
});

Deno.test("socks5: an allow rule admits the address a numeric name really is, and that is what is dialled", async () => {
  await using target = startGreeterOn8();
  await using proxy = startTestProxy({
    rules: new DestinationRules({ allow: ["127.0.0.8"] }),
    connectTimeoutMs: 2000,
  });
  for (const name of ["127.0.0.010", "0x7f.0.0.010", "127.8", "0177.0x0.00.8", "2130706440"]) {
    assert.equal(await connectByName(proxy, name, target.port), Reply.Succeeded, name);
  }
  // 127.0.0.10 is what a decimal reading of 127.0.0.010 would give: not allowed.
  assert.equal(await connectByName(proxy, "127.0.0.10", target.port), Reply.NotAllowedByRuleset);
  await proxy.waitForLog(/CONNECT "127\.0\.0\.010":\d+ via 127\.0\.0\.8:\d+ reply=0x00/);
});

Deno.test("socks5: a numeric name inet_aton rejects is refused with 0x02, not sent to DNS", async () => {
  await using dns = startSilentDns();
  await using proxy = startTestProxy({ nameServer: dns.nameServer, connectTimeoutMs: 500 });
  for (const name of ["127.0.0.08", "1.2.3.4.5", "127.0.0.256", "0x", "127.0.0.1."]) {
    assert.equal(await connectByName(proxy, name, 9), Reply.NotAllowedByRuleset, name);
  }
  await proxy.waitForLog(
    /CONNECT "127\.0\.0\.08":9 reply=0x02 .*is a number but not an IPv4 address/,
  );
  // None of them reached the DNS server: the first query it sees is this name's.
  assert.equal(await connectByName(proxy, "probe.example.org", 9), Reply.HostUnreachable);
  assert.equal(await dns.firstQuery(), "probe.example.org");
});

Deno.test("socks5: SOCKS4a and BIND take the same path for numeric names", async () => {
  await using target = startGreeterOn8();
  await using proxy = startTestProxy({ rules: new DestinationRules({ deny: ["127.0.0.8"] }) });
  {
    // SOCKS4a CONNECT to the name 127.0.0.010: refused (0x5b), it is 127.0.0.8.
    await using client = await TestClient.connect(proxy.port);
    const port = target.port;
    await client.write(
      new Uint8Array([0x04, 0x01, port >> 8, port & 0xff, 0, 0, 0, 1, 0, ...enc("127.0.0.010"), 0]),
    );
    const reply = await client.readBytes(8);
    assert.equal(reply[1], 0x5b);
    assert.equal((await client.readToEnd()).length, 0);
  }
  await proxy.waitForLog(
    /socks4 CONNECT "127\.0\.0\.010":\d+ reply=0x02 .*denied by rules: 127\.0\.0\.8/,
  );
  {
    // BIND expecting a peer from 127.0.0.010 (= 127.0.0.8, denied): refused at once.
    await using client = await TestClient.connect(proxy.port);
    await client.write(
      new Uint8Array([...GREETING_NO_AUTH, ...domainRequest(0x02, "127.0.0.010", 0)]),
    );
    await client.readBytes(2);
    assert.equal((await readReply(client)).rep, Reply.NotAllowedByRuleset);
  }
  {
    // BIND expecting a peer from 0x7f.1 (= 127.0.0.1): the peer from 127.0.0.1 is accepted.
    await using client = await TestClient.connect(proxy.port);
    await client.write(new Uint8Array([...GREETING_NO_AUTH, ...domainRequest(0x02, "0x7f.1", 0)]));
    await client.readBytes(2);
    const first = await readReply(client);
    assert.equal(first.rep, Reply.Succeeded);
    const peer = await Deno.connect({ hostname: "127.0.0.1", port: first.port });
    const second = await readReply(client);
    assert.equal(second.rep, Reply.Succeeded);
    assert.equal(second.port, peer.localAddr.port);
    peer.close();
  }
});

Deno.test("socks5: a CONNECT to an IP literal or a numeric name asks no DNS server", async () => {
  await using echo = startEchoServer();
  await using dns = startSilentDns();
  await using proxy = startTestProxy({ nameServer: dns.nameServer, connectTimeoutMs: 500 });
  for (const name of ["127.0.0.1", "0x7f.1", "2130706433", "::ffff:127.0.0.1"]) {
    await using client = await TestClient.connect(proxy.port);
    await client.write(
      new Uint8Array([...GREETING_NO_AUTH, ...domainRequest(0x01, name, echo.port)]),
    );
    await client.readBytes(2);
    assert.equal((await readReply(client)).rep, Reply.Succeeded, name);
  }
  assert.equal(await connectByName(proxy, "after.example.org", 9), Reply.HostUnreachable);
  assert.equal(await dns.firstQuery(), "after.example.org");
});

// --- 2. DNS within the connect timeout -----------------------------------------------------

Deno.test("socks5: a DNS server that never answers costs no more than --connect-timeout", async () => {
  await using dns = startSilentDns();
  const connectTimeoutMs = 300;
  await using proxy = startTestProxy({ nameServer: dns.nameServer, connectTimeoutMs });
  const started = performance.now();
  assert.equal(await connectByName(proxy, "never.example.org", 80), Reply.HostUnreachable);
  const took = performance.now() - started;
  await proxy.waitForLog(
    /CONNECT "never\.example\.org":80 reply=0x04 .*Timed out after 300 ms waiting for the DNS answer/,
  );
  // The resolver's own timeout is seconds; the reply came with the connect timeout.
  assert.ok(took < connectTimeoutMs + 1500, `reply after ${took.toFixed(0)} ms`);
  assert.deepEqual(dns.names.slice(0, 1), ["never.example.org"]);
});

// --- 3. peer strings are quoted in the log ---------------------------------------------------

const FORGED = 'x" reply=0x00\nsockit socks5: 127.0.0.1:1 user="admin" CONNECT bank:443\x1b[2J';

Deno.test("socks5: a user name or a domain from the wire cannot forge a log line", async () => {
  await using proxy = startTestProxy({
    users: UserTable.fromSpecs(["alice:right"]),
    connectTimeoutMs: 500,
  });
  {
    await using client = await TestClient.connect(proxy.port);
    await client.write(new Uint8Array([0x05, 0x01, 0x02]));
    await client.readBytes(2);
    const name = enc(FORGED);
    await client.write(new Uint8Array([0x01, name.length, ...name, 3, ...enc("bad")]));
    assert.equal((await client.readBytes(2))[1], 0x01);
  }
  const line = await proxy.waitForLog(/authentication failed for user/);
  assert.ok(
    line.endsWith(
      String
        .raw`[authentication failed for user "x\" reply=0x00\nsockit socks5: 127.0.0.1:1 user=\"admin\" CONNECT bank:443\x1b[2J"]`,
    ),
    line,
  );
  {
    // A domain: the right user, a forged name to CONNECT to.
    await using client = await TestClient.connect(proxy.port);
    await client.write(
      new Uint8Array([0x05, 0x01, 0x02, 0x01, 5, ...enc("alice"), 5, ...enc("right")]),
    );
    await client.readBytes(4);
    await client.write(domainRequest(0x01, FORGED, 443));
    assert.notEqual((await readReply(client)).rep, Reply.Succeeded);
  }
  const connect = await proxy.waitForLog(/user="alice" CONNECT/);
  assert.match(connect, /CONNECT "x\\" reply=0x00\\nsockit socks5: .*\\x1b\[2J":443 reply=0x0/);
  for (const l of proxy.lines) {
    // deno-lint-ignore no-control-regex -- looking for control characters is the point.
    assert.doesNotMatch(l, /[\x00-\x08\x0a-\x1f\x7f]/, "no control character in a log line");
  }
  assert.equal(proxy.lines.filter((l) => l.includes('user="admin"')).length, 0);
});

// --- 4. password guessing --------------------------------------------------------------------

const PY_LOGIN = `
import socket, sys
s = socket.socket()
s.bind((sys.argv[1], 0))
s.settimeout(10)
s.connect(("127.0.0.1", int(sys.argv[2])))
s.sendall(bytes([5, 1, 2]))
assert s.recv(2) == bytes([5, 2])
u, p = sys.argv[3].encode(), sys.argv[4].encode()
s.sendall(bytes([1, len(u)]) + u + bytes([len(p)]) + p)
print(s.recv(2)[1])
`;

/** Logs in from `source` (a loopback address) with python3; resolves the RFC 1929 status. */
async function pythonLogin(port: number, source: string, user: string, pass: string) {
  const out = await withTimeout(
    new Deno.Command("python3", {
      args: ["-c", PY_LOGIN, source, String(port), user, pass],
    }).output(),
    EVENT_TIMEOUT_MS,
    { what: "python3" },
  );
  assert.equal(out.code, 0, dec(out.stderr));
  return Number(dec(out.stdout).trim());
}

peerTest("python3", {
  name: "socks5: after 5 failed logins one address is refused, another address still logs in",
  fn: async () => {
    const max = 5;
    await using proxy = startTestProxy({
      users: UserTable.fromSpecs(["alice:right"]),
      authMaxFailures: max,
      authFailureWindowMs: 60_000,
      authLockoutMs: 60_000,
    });
    for (let i = 0; i < max; i++) {
      assert.equal(await pythonLogin(proxy.port, "127.0.0.1", "alice", `guess${i}`), 1);
    }
    // Locked out: even the right password is refused, without being looked at.
    for (let i = 0; i < 3; i++) {
      assert.equal(await pythonLogin(proxy.port, "127.0.0.1", "alice", "right"), 1);
    }
    // The legitimate user on another address is not affected.
    assert.equal(await pythonLogin(proxy.port, "127.0.0.2", "alice", "right"), 0);
    await proxy.waitForLog(/127\.0\.0\.2:\d+ user="alice"/);
    const lockouts = proxy.lines.filter((l) => l.includes("failed logins within"));
    assert.deepEqual(lockouts, [
      "sockit socks5: warning: 127.0.0.1: 5 failed logins within 60s; refusing its logins for 60s",
    ]);
    // One line per failure before the lockout, none for the attempts it refused.
    assert.equal(proxy.lines.filter((l) => l.includes("authentication failed")).length, max);
    assert.equal(proxy.lines.filter((l) => l.includes("login refused")).length, 0);
  },
});

// --- 5. SIGHUP ---------------------------------------------------------------------------------

peerTest("curl", {
  name:
    "socks5: SIGHUP without --users/--rules files has nothing to reload; the proxy keeps serving",
  fn: async () => {
    await using http = startTcpTestServer(async (conn) => {
      await conn.read(new Uint8Array(4096));
      await conn.write(enc("HTTP/1.0 200 OK\r\nContent-Length: 3\r\n\r\nok\n"));
    });
    await using proxy = await startSockit(["socks5", "--port", "0"]);
    proxy.child.kill("SIGHUP");
    await proxy.waitForStderr(/SIGHUP: nothing to reload \(no --users or --rules file\)/);
    const out = await withTimeout(
      new Deno.Command("curl", {
        args: [
          "-sS",
          "--max-time",
          "10",
          "--socks5",
          `127.0.0.1:${proxy.port}`,
          `http://127.0.0.1:${http.port}/`,
        ],
      }).output(),
      15_000,
      { what: "curl" },
    );
    assert.equal(out.code, 0, dec(out.stderr));
    assert.equal(dec(out.stdout), "ok\n");
    const status = await proxy.stop("SIGTERM");
    assert.equal(status.code, 0);
    assert.equal(status.signal, null);
  },
});

// --- 6. the open-file limit ------------------------------------------------------------------

peerTest("bash", {
  name: "socks5: warns at start when the open-file limit is below what --max-conns needs",
  fn: async () => {
    await using low = await startSockit(["socks5", "--port", "0", "--max-conns", "100"], {
      fdLimit: 64,
    });
    const lines = low.stderr;
    assert.ok(
      lines.includes(
        "sockit socks5: warning: open file limit is 64, but --max-conns 100 needs about 264 " +
          "(2 per connection + 64): raise it (ulimit -n 264)",
      ),
      lines.join("\n"),
    );
    // Without the low limit, no warning.
    await using normal = await startSockit(["socks5", "--port", "0", "--max-conns", "100"]);
    assert.equal(normal.stderr.filter((l) => l.includes("open file limit")).length, 0);
  },
});
