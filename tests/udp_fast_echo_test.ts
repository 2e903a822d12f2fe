import assert from "node:assert/strict";
import { fastEchoUnavailable, startFastUdpEcho } from "../lib/udp/fast_echo.ts";
import { LibcError } from "../lib/udp/libc.ts";
import type { UdpEchoServer } from "../lib/udp/echo_server.ts";
import { REFLECTOR_PORTS } from "../lib/udp/reflector_ports.ts";
import { MAX_UDP_PAYLOAD_IPV4, MAX_UDP_PAYLOAD_IPV6 } from "../lib/udp/datagram.ts";
import { withTimeout } from "../lib/net/deadline.ts";
import {
  EVENT_TIMEOUT_MS,
  PERMISSIONS_WITHOUT_FFI,
  pseudoRandomBytes,
  type SockitProcess,
  startSockit,
} from "./_helpers.ts";
import { hasQueued, receive, udpSocket } from "./_udp.ts";

/** The fast path runs in this process (the tests run with -A on Linux x86_64/aarch64). */
const FAST = fastEchoUnavailable("127.0.0.1") === undefined;
const NO_FAST_PATH = FAST ? "" : ` (skipped: ${fastEchoUnavailable("127.0.0.1")})`;

/** What the tests need of a running `udp-echo`. */
type EchoProcess = SockitProcess;

/** The two ways `udp-echo` runs, each checked for the same behaviour. */
const PATHS = [
  {
    name: "fast path",
    ignore: !FAST,
    skip: NO_FAST_PATH,
    start: (args: string[]): Promise<EchoProcess> =>
      startSockit(["udp-echo", "--port", "0", "--verbose", ...args]),
    says: /fast path: recvmmsg\/sendmmsg/,
  },
  {
    name: "fallback (no --allow-ffi)",
    ignore: false,
    skip: "",
    start: (args: string[]): Promise<EchoProcess> =>
      startSockit(["udp-echo", "--port", "0", "--verbose", ...args], {
        permissions: [...PERMISSIONS_WITHOUT_FFI],
      }),
    says: /Deno sockets, one datagram per call \(fast path off: no ffi permission/,
  },
];

function to(port: number, hostname = "127.0.0.1"): Deno.NetAddr {
  return { transport: "udp", hostname, port };
}

function portOf(conn: Deno.DatagramConn): number {
  return (conn.addr as Deno.NetAddr).port;
}

/** A socket on a reflector port (the tests run as root, or with low ports allowed). */
function reflectorSocket(): (Deno.DatagramConn & Disposable) | undefined {
  for (const port of [19, 17, 13, 37, 11211, 1900, 3702]) {
    try {
      return udpSocket("127.0.0.1", port);
    } catch {
      // Taken or not allowed; try the next.
    }
  }
  return undefined;
}

function summaryOf(echo: EchoProcess, signal: string): string {
  return echo.stderr.find((l) => l.includes(`${signal}: stopped; received`)) ?? "";
}

for (const path of PATHS) {
  const test = (name: string, fn: () => Promise<void>) =>
    Deno.test({ name: `udp-echo ${path.name}: ${name}${path.skip}`, ignore: path.ignore, fn });

  test("says which path it runs, keeps boundaries, echoes 65,507 bytes intact", async () => {
    await using echo = await path.start([]);
    await echo.waitForStderr(path.says);
    using client = udpSocket();
    const sent = [1, 2, 3, 4, 5].map((i) => pseudoRandomBytes(100 * i, i));
    for (const d of sent) await client.send(d, to(echo.port));
    for (const d of sent) {
      const [got, from] = await receive(client);
      assert.deepEqual(got, d);
      assert.equal(from.port, echo.port);
    }
    assert.equal(await hasQueued(client), false, "more than five datagrams came back");
    const big = pseudoRandomBytes(MAX_UDP_PAYLOAD_IPV4, 9);
    await client.send(big, to(echo.port));
    assert.deepEqual((await receive(client))[0], big);
    assert.equal((await echo.stop("SIGTERM")).code, 0);
    const total = sent.reduce((n, d) => n + d.length, 0) + big.length;
    assert.match(
      summaryOf(echo, "SIGTERM"),
      new RegExp(`received 6 datagrams \\(${total} B\\), echoed 6 \\(${total} B\\), dropped 0 `),
    );
  });

  test("never answers a reflector port or a --refuse-port port, and counts both", async () => {
    using refusedClient = udpSocket();
    const refusedPort = portOf(refusedClient);
    await using echo = await path.start(["--refuse-port", String(refusedPort)]);
    const reflector = reflectorSocket();
    assert.ok(reflector, "could bind none of the reflector ports tried");
    using _r = reflector;
    assert.ok(REFLECTOR_PORTS.has(portOf(reflector)));
    await reflector.send(new Uint8Array([1, 2, 3]), to(echo.port));
    await refusedClient.send(new Uint8Array([1, 2]), to(echo.port));
    // Answers leave in arrival order: once this one is back, the two before were handled.
    using client = udpSocket();
    await client.send(new Uint8Array([4]), to(echo.port));
    assert.deepEqual((await receive(client))[0], new Uint8Array([4]));
    assert.equal(await hasQueued(reflector), false, "the reflector port got an answer");
    assert.equal(await hasQueued(refusedClient), false, "the --refuse-port port got an answer");
    await echo.waitForStderr(
      new RegExp(`dropped 3 bytes from 127\\.0\\.0\\.1:${portOf(reflector)}: reflector-port`),
    );
    assert.equal((await echo.stop("SIGTERM")).code, 0);
    assert.match(
      summaryOf(echo, "SIGTERM"),
      /received 3 datagrams .* echoed 1 .* dropped 2 .*reflector port 2,/,
    );
  });

  test("--limit-loopback --rate drops and counts datagrams over a source's rate", async () => {
    // Rate 1/s with a burst of 3: ten datagrams sent at once, three come back.
    await using echo = await path.start(["--rate", "1", "--burst", "3", "--limit-loopback"]);
    using noisy = udpSocket();
    for (let i = 0; i < 10; i++) await noisy.send(new Uint8Array([i]), to(echo.port));
    // Another source has its own bucket; its echo means the ten were handled.
    using other = udpSocket("127.0.0.2");
    await other.send(new Uint8Array([99]), to(echo.port));
    assert.deepEqual((await receive(other))[0], new Uint8Array([99]));
    for (let i = 0; i < 3; i++) assert.deepEqual((await receive(noisy))[0], new Uint8Array([i]));
    assert.equal(await hasQueued(noisy), false);
    await echo.waitForStderr(/dropped 1 bytes from 127\.0\.0\.1:\d+: rate-limited/);
    // SIGINT ends it with the summary and exit 0 (the process does not hang on the socket).
    assert.equal((await echo.stop("SIGINT")).code, 0);
    assert.match(
      summaryOf(echo, "SIGINT"),
      /received 11 datagrams .* echoed 4 .* dropped 7 \(rate-limited 7,/,
    );
  });
}

/** The inode of the IPv4 UDP socket bound to 127.0.0.1:`port`, from `/proc/net/udp`. */
function udpSocketInode(port: number): string | undefined {
  const local = `0100007F:${port.toString(16).toUpperCase().padStart(4, "0")}`;
  for (const line of Deno.readTextFileSync("/proc/net/udp").split("\n").slice(1)) {
    const fields = line.trim().split(/\s+/);
    if (fields[1] === local) return fields[9];
  }
  return undefined;
}

/** The socket inodes this process has descriptors for (`socket:[N]` links in /proc/self/fd). */
function socketInodesOpen(): Set<string> {
  const inodes = new Set<string>();
  for (const entry of Deno.readDirSync("/proc/self/fd")) {
    try {
      const m = /^socket:\[(\d+)\]$/.exec(Deno.readLinkSync(`/proc/self/fd/${entry.name}`));
      if (m) inodes.add(m[1]);
    } catch {
      // Closed while listing.
    }
  }
  return inodes;
}

Deno.test({
  name: `startFastUdpEcho: stop() ends the loop and closes the socket${NO_FAST_PATH}`,
  ignore: !FAST,
  fn: async () => {
    const server = startFastUdpEcho({ hostname: "127.0.0.1", port: 0 });
    assert.equal(server.addr.hostname, "127.0.0.1");
    // The server's socket, by inode: counting this process's descriptors would see other
    // tests running in parallel.
    const inode = udpSocketInode(server.addr.port);
    assert.ok(inode !== undefined && socketInodesOpen().has(inode), "the server's socket is open");
    using client = udpSocket();
    await client.send(new Uint8Array([7]), server.addr);
    assert.deepEqual((await receive(client))[0], new Uint8Array([7]));
    // A receive is waiting on the pool thread now; stop() must not wait out its timeout.
    await withTimeout(server.stop(), EVENT_TIMEOUT_MS, { what: "stop()" });
    await server.done;
    await server.stop(); // twice is fine
    assert.equal(socketInodesOpen().has(inode!), false, "the server's descriptor is still open");
    // The port is free again.
    udpSocket("127.0.0.1", server.addr.port)[Symbol.dispose]();
    assert.equal(server.stats.echoed, 1);
  },
});

Deno.test({
  name: `startFastUdpEcho: a port in use is a LibcError EADDRINUSE${NO_FAST_PATH}`,
  ignore: !FAST,
  fn: () => {
    using taken = udpSocket();
    assert.throws(
      () => startFastUdpEcho({ hostname: "127.0.0.1", port: portOf(taken) }),
      (error: unknown) =>
        error instanceof LibcError && error.code === "EADDRINUSE" &&
        /^bind failed: .*\(EADDRINUSE\)$/.test(error.message),
    );
  },
});

Deno.test({
  name: `startFastUdpEcho: small batches drain a burst in order; own port refused${NO_FAST_PATH}`,
  ignore: !FAST,
  fn: async () => {
    const server = startFastUdpEcho({ hostname: "127.0.0.1", port: 0 }, { batch: 2 });
    await stopSafe(server, async () => {
      // From the server's own port, here a twin on 127.0.0.2: it would bounce forever.
      using twin = udpSocket("127.0.0.2", server.addr.port);
      await twin.send(new Uint8Array([3]), server.addr);
      using client = udpSocket();
      const sent = Array.from({ length: 20 }, (_, i) => pseudoRandomBytes(10 + i, i + 1));
      for (const d of sent) await client.send(d, server.addr);
      for (const d of sent) assert.deepEqual((await receive(client))[0], d);
      assert.equal(await hasQueued(twin), false);
      assert.equal(server.stats.refusedSamePort, 1);
      assert.equal(server.stats.echoed, 20);
    });
  },
});

/** Runs `fn`, then stops `server` whatever happened. */
async function stopSafe(server: UdpEchoServer, fn: () => Promise<void>): Promise<void> {
  try {
    await fn();
  } finally {
    await server.stop();
  }
}

function hasIpv6Loopback(): boolean {
  try {
    udpSocket("::1")[Symbol.dispose]();
    return true;
  } catch {
    return false;
  }
}

Deno.test({
  name: `startFastUdpEcho: IPv6 up to 65,527 bytes; "::" reports IPv4 sources as ` +
    `Deno does${NO_FAST_PATH}`,
  ignore: !FAST || !hasIpv6Loopback(),
  fn: async () => {
    const v6 = startFastUdpEcho({ hostname: "::1", port: 0 });
    await stopSafe(v6, async () => {
      assert.equal(v6.addr.hostname, "::1");
      using client = udpSocket("::1");
      const big = pseudoRandomBytes(MAX_UDP_PAYLOAD_IPV6, 5);
      await client.send(big, v6.addr);
      const [got, from] = await receive(client);
      assert.deepEqual(got, big);
      assert.equal(from.hostname, "::1");
    });
    // A dual-stack socket: an IPv4 source shows as IPv4-mapped, like Deno.listenDatagram's.
    using refused = udpSocket();
    const drops: string[] = [];
    const any = startFastUdpEcho({ hostname: "::", port: 0 }, {
      refusedSourcePorts: [portOf(refused)],
      onDrop: (reason, from) => drops.push(`${reason} ${from.hostname}:${from.port}`),
    });
    await stopSafe(any, async () => {
      assert.equal(any.addr.hostname, "::");
      await refused.send(new Uint8Array([1]), to(any.addr.port));
      using client = udpSocket();
      await client.send(new Uint8Array([2]), to(any.addr.port));
      const [got, from] = await receive(client);
      assert.deepEqual(got, new Uint8Array([2]));
      assert.equal(from.port, any.addr.port);
      assert.deepEqual(drops, [`reflector-port ::ffff:127.0.0.1:${portOf(refused)}`]);
    });
  },
});

Deno.test({
  name:
    `startFastUdpEcho: a callback that throws neither ends the loop nor outlives stop()${NO_FAST_PATH}`,
  ignore: !FAST,
  fn: async () => {
    using refusedClient = udpSocket();
    const server = startFastUdpEcho({ hostname: "127.0.0.1", port: 0 }, {
      refusedSourcePorts: [portOf(refusedClient)],
      onDrop: () => {
        throw new Error("the log pipe is closed");
      },
    });
    await stopSafe(server, async () => {
      await refusedClient.send(new Uint8Array([1]), server.addr);
      using client = udpSocket();
      await client.send(new Uint8Array([2]), server.addr);
      assert.deepEqual((await receive(client))[0], new Uint8Array([2]));
      assert.equal(server.stats.refusedReflector, 1);
    });
  },
});

Deno.test("fastEchoUnavailable: literals inet_pton refuses go to the fallback", () => {
  for (const host of ["999.1.1.1", "127.0.0.01", "fe80::1%eth0", "localhost"]) {
    assert.match(fastEchoUnavailable(host) ?? "", /not an IP address literal/, host);
  }
});
