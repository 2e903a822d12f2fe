import assert from "node:assert/strict";
import { isRateLimitedSource, startUdpEcho, UDP_ECHO_DEFAULTS } from "../lib/udp/echo_server.ts";
import { REFLECTOR_PORTS } from "../lib/udp/reflector_ports.ts";
import { withTimeout } from "../lib/net/deadline.ts";
import { EVENT_TIMEOUT_MS, pseudoRandomBytes, runSockit, startSockit } from "./_helpers.ts";
import { hasQueued, receive, udpSocket } from "./_udp.ts";

function to(hostname: string, port: number): Deno.NetAddr {
  return { transport: "udp", hostname, port };
}

function hasIpv6Loopback(): boolean {
  try {
    udpSocket("::1")[Symbol.dispose]();
    return true;
  } catch {
    return false;
  }
}

Deno.test("udp-echo returns datagrams of every size class byte-identical", async () => {
  await using echo = await startSockit(["udp-echo", "--port", "0"]);
  using client = udpSocket();
  for (const size of [0, 1, 1472, 8192, 65_507]) {
    const sent = pseudoRandomBytes(size, size + 1);
    await client.send(sent, to(echo.hostname, echo.port));
    const [got, from] = await receive(client);
    assert.equal(got.length, size, `size ${size}`);
    assert.deepEqual(got, sent, `size ${size}`);
    assert.equal(from.port, echo.port);
  }
});

Deno.test({
  name: "udp-echo serves IPv6 up to the 65,527-byte IPv6 maximum (needs IPv6 loopback ::1)",
  ignore: !hasIpv6Loopback(),
  fn: async () => {
    await using echo = await startSockit(["udp-echo", "--host", "::1", "--port", "0"]);
    assert.equal(echo.hostname, "::1");
    using client = udpSocket("::1");
    for (const size of [1, 65_527]) {
      const sent = pseudoRandomBytes(size, 7);
      await client.send(sent, to("::1", echo.port));
      const [got] = await receive(client);
      assert.deepEqual(got, sent);
    }
  },
});

Deno.test("udp-echo returns five back-to-back datagrams as five, in order", async () => {
  await using echo = await startSockit(["udp-echo", "--port", "0"]);
  using client = udpSocket();
  const sent = [1, 2, 3, 4, 5].map((i) => pseudoRandomBytes(100 * i, i));
  for (const d of sent) await client.send(d, to(echo.hostname, echo.port));
  for (const d of sent) assert.deepEqual((await receive(client))[0], d);
  assert.equal(await hasQueued(client), false);
});

Deno.test("udp-echo never answers a reflector source port and counts the drop", async () => {
  await using echo = await startSockit(["udp-echo", "--port", "0"]);
  // Bind one of the reflector ports (the tests run as root or with low ports allowed).
  let reflector: (Deno.DatagramConn & Disposable) | undefined;
  for (const port of [19, 17, 13, 37, 11211, 1900, 3702]) {
    try {
      reflector = udpSocket("127.0.0.1", port);
      break;
    } catch {
      // Taken or not allowed; try the next.
    }
  }
  assert.ok(reflector, "could bind none of the reflector ports tried");
  using _r = reflector;
  const port = (reflector.addr as Deno.NetAddr).port;
  assert.ok(REFLECTOR_PORTS.has(port));
  using client = udpSocket();
  await reflector.send(new Uint8Array([1, 2, 3]), to("127.0.0.1", echo.port));
  // The server handles datagrams in order: once this one is back, the first was handled.
  await client.send(new Uint8Array([4]), to("127.0.0.1", echo.port));
  assert.deepEqual((await receive(client))[0], new Uint8Array([4]));
  assert.equal(await hasQueued(reflector), false, "the reflector port got an answer");
  await echo.waitForStderr(
    new RegExp(`dropped 3 bytes from 127\\.0\\.0\\.1:${port}: reflector-port`),
  );
  const status = await echo.stop("SIGTERM");
  assert.equal(status.code, 0);
  const summary = echo.stderr.find((l) => /stopped; received/.test(l)) ?? "";
  assert.match(summary, /received 2 datagrams .* echoed 1 .* dropped 1 .*reflector port 1,/);
});

Deno.test("udp-echo --limit-loopback drops datagrams over a source's rate and counts them", async () => {
  // Rate 1/s with a burst of 3: ten datagrams sent at once, three come back.
  await using echo = await startSockit([
    "udp-echo",
    "--port",
    "0",
    "--rate",
    "1",
    "--burst",
    "3",
    "--limit-loopback",
  ]);
  using noisy = udpSocket();
  for (let i = 0; i < 10; i++) await noisy.send(new Uint8Array([i]), to("127.0.0.1", echo.port));
  // Another source has its own bucket; its echo means the ten were handled.
  using other = udpSocket("127.0.0.2");
  await other.send(new Uint8Array([99]), to("127.0.0.1", echo.port));
  assert.deepEqual((await receive(other))[0], new Uint8Array([99]));
  for (let i = 0; i < 3; i++) assert.deepEqual((await receive(noisy))[0], new Uint8Array([i]));
  assert.equal(await hasQueued(noisy), false);
  const status = await echo.stop("SIGINT");
  assert.equal(status.code, 0);
  const summary = echo.stderr.find((l) => /SIGINT: stopped; received/.test(l)) ?? "";
  assert.match(summary, /received 11 datagrams .* echoed 4 .* dropped 7 \(rate-limited 7,/);
});

Deno.test("udp-echo --stats logs a summary line while it runs", async () => {
  await using echo = await startSockit(["udp-echo", "--port", "0", "--stats-interval", "1"]);
  using client = udpSocket();
  await client.send(new Uint8Array(10), to("127.0.0.1", echo.port));
  await receive(client);
  await echo.waitForStderr(/^sockit udp-echo: received 1 datagrams \(10 B\), echoed 1 \(10 B\)/);
  assert.equal((await echo.stop("SIGTERM")).code, 0);
});

Deno.test("udp-echo binds 127.0.0.1 by default and says so in its ready line", async () => {
  // The default port may be taken on a shared machine; only the host is checked here.
  await using echo = await startSockit(["udp-echo", "--port", "0", "--rate", "0"]);
  assert.equal(echo.hostname, "127.0.0.1");
  assert.ok(echo.stderr.some((l) => /listening on 127\.0\.0\.1:\d+ \(no rate limit\)/.test(l)));
});

Deno.test("udp-echo exits 2 with usage for a bad option value", async () => {
  await using echo = await startSockit(["udp-echo", "--rate", "fast"], { ready: false });
  const status = await withTimeout(echo.status, EVENT_TIMEOUT_MS, { what: "exit" });
  assert.equal(status.code, 2);
  assert.ok(echo.stderr.some((l) => /Cannot parse --rate 'fast'/.test(l)));
});

Deno.test("startUdpEcho refuses datagrams from its own port (itself or a twin echo server)", async () => {
  const conn = Deno.listenDatagram({ transport: "udp", hostname: "127.0.0.1", port: 0 });
  const server = startUdpEcho(conn);
  try {
    // A datagram whose source is the server itself would echo forever.
    await conn.send(new Uint8Array([1]), server.addr);
    // A twin echo server on the same port elsewhere (here 127.0.0.2): a forged datagram
    // between the two would bounce forever.
    using twin = udpSocket("127.0.0.2", server.addr.port);
    await twin.send(new Uint8Array([3]), server.addr);
    using client = udpSocket();
    await client.send(new Uint8Array([2]), server.addr);
    assert.deepEqual((await receive(client))[0], new Uint8Array([2]));
    assert.equal(server.stats.refusedSamePort, 2);
    assert.equal(await hasQueued(twin), false);
    assert.equal(server.stats.echoed, 1);
  } finally {
    await server.stop();
  }
});

Deno.test("udp-echo answers a loopback flood beyond the default rate in full", async () => {
  // The default limit (1000/s, burst 1000) would drop most of 5000 probes sent in well under
  // 4 s; loopback sources are exempt, so udp-ping measures the server, not the limiter.
  await using echo = await startSockit(["udp-echo", "--port", "0"]);
  const count = UDP_ECHO_DEFAULTS.ratePerSecond * 5;
  const run = await runSockit([
    "udp-ping",
    `127.0.0.1:${echo.port}`,
    "-c",
    String(count),
    "--flood",
    "--window",
    "32",
    "--json",
  ]);
  assert.equal(run.code, 0, run.stderr);
  const summary = JSON.parse(run.stdout);
  assert.equal(summary.sent, count);
  assert.equal(summary.received, count, `lost ${count - summary.received}`);
  assert.equal((await echo.stop("SIGTERM")).code, 0);
  const line = echo.stderr.find((l) => /stopped; received/.test(l)) ?? "";
  assert.match(line, new RegExp(`echoed ${count} .*\\(rate-limited 0,`));
  assert.ok(
    echo.stderr.some((l) =>
      /rate 1000\/s per source, burst 1000, loopback sources not limited/.test(l)
    ),
    "the ready line says loopback sources are not limited",
  );
});

Deno.test("isRateLimitedSource() exempts loopback sources only, unless told otherwise", () => {
  for (const source of ["127.0.0.1", "127.1.2.3", "127.255.255.254", "::1", "::ffff:127.0.0.1"]) {
    assert.equal(isRateLimitedSource(source), false, source);
    assert.equal(isRateLimitedSource(source, { limitLoopback: true }), true, source);
  }
  for (
    const source of ["10.0.0.1", "192.168.1.7", "203.0.113.5", "128.0.0.1", "::ffff:10.0.0.1"]
  ) {
    assert.equal(isRateLimitedSource(source), true, source);
  }
  for (const source of ["2001:db8::1", "fe80::1", "::", "0.0.0.0", "::2"]) {
    assert.equal(isRateLimitedSource(source), true, source);
  }
});

/**
 * A DatagramConn stand-in that delivers `datagrams` from `from` (an address traffic on
 * loopback cannot come from), records what is sent, and ends when the queue is empty.
 */
function scriptedConn(from: Deno.NetAddr, datagrams: number) {
  const sent: Deno.NetAddr[] = [];
  let left = datagrams;
  let closed = false;
  let drained: () => void = () => {};
  const empty = new Promise<void>((resolve) => drained = resolve);
  const conn = {
    addr: { transport: "udp", hostname: "127.0.0.1", port: 40_007 } as Deno.NetAddr,
    receive(buf?: Uint8Array): Promise<[Uint8Array, Deno.Addr]> {
      if (closed) return Promise.reject(new Deno.errors.BadResource("closed"));
      if (left === 0) {
        drained();
        return new Promise((_, reject) => {
          const check = setInterval(() => {
            if (!closed) return;
            clearInterval(check);
            reject(new Deno.errors.BadResource("closed"));
          }, 5);
        });
      }
      left--;
      return Promise.resolve([(buf ?? new Uint8Array(1)).subarray(0, 1), from]);
    },
    send(_data: Uint8Array, to: Deno.Addr): Promise<number> {
      sent.push(to as Deno.NetAddr);
      return Promise.resolve(1);
    },
    close() {
      closed = true;
    },
  };
  return { conn: conn as unknown as Deno.DatagramConn, sent, empty };
}

Deno.test("startUdpEcho keeps the default rate limit for a non-loopback source", async () => {
  // 3000 datagrams handled back to back from 203.0.113.5: the bucket holds 1000 and refills
  // at 1000/s, so most are dropped unless handling them took over 2 s.
  const n = UDP_ECHO_DEFAULTS.ratePerSecond * 3;
  const remote = scriptedConn({ transport: "udp", hostname: "203.0.113.5", port: 40_000 }, n);
  const server = startUdpEcho(remote.conn);
  await withTimeout(remote.empty, EVENT_TIMEOUT_MS, { what: "the datagrams to be handled" });
  await server.stop();
  assert.equal(server.stats.received, n);
  assert.equal(server.stats.echoed + server.stats.rateLimited, n);
  assert.ok(server.stats.rateLimited > 0, "nothing was rate limited");
  assert.ok(server.stats.echoed >= UDP_ECHO_DEFAULTS.ratePerSecond, "the burst was not answered");
  assert.equal(server.trackedSources, 1);
});

Deno.test("startUdpEcho exempts a loopback source from the default rate limit", async () => {
  const n = UDP_ECHO_DEFAULTS.ratePerSecond * 3;
  const local = scriptedConn({ transport: "udp", hostname: "127.0.0.1", port: 40_000 }, n);
  const localServer = startUdpEcho(local.conn);
  await withTimeout(local.empty, EVENT_TIMEOUT_MS, { what: "the datagrams to be handled" });
  await localServer.stop();
  assert.equal(localServer.stats.echoed, n);
  assert.equal(localServer.trackedSources, 0);
});
