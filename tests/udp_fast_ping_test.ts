import assert from "node:assert/strict";
import { withTimeout } from "../lib/net/deadline.ts";
import { fastPingUnavailable } from "../lib/udp/fast_ping.ts";
import { type PingClient, udpPing } from "../lib/udp/ping.ts";
import type { PingSummary } from "../lib/udp/ping_stats.ts";
import { ProbeOffset, readProbe, writeProbe } from "../lib/udp/probe.ts";
import { EVENT_TIMEOUT_MS, PERMISSIONS_WITHOUT_FFI, runSockit, startSockit } from "./_helpers.ts";

/** The fast path runs here (Linux, -A); elsewhere the fast-path tests are skipped. */
const FAST = fastPingUnavailable("127.0.0.1");
const fastTest = (name: string, fn: () => Promise<void>) =>
  Deno.test({
    name: FAST === undefined ? name : `${name} (skipped: ${FAST})`,
    ignore: FAST !== undefined,
    fn,
  });

/** Runs `sockit udp-ping ARGS... --json --verbose` with `permissions`; its summary and log. */
async function cliPing(
  permissions: readonly string[],
  args: string[],
): Promise<{ code: number; summary: PingSummary; stderr: string }> {
  const out = await runSockit(["udp-ping", ...args, "--json", "--verbose"], {
    permissions: [...permissions],
  });
  const stdout = out.stdout.trim();
  assert.equal(
    stdout.split("\n").length,
    1,
    `--json prints one line, got:\n${stdout}\n${out.stderr}`,
  );
  return { code: out.code, summary: JSON.parse(stdout), stderr: out.stderr };
}

const PATHS = [
  { name: "fast path (-A)", permissions: ["-A"], log: /fast path: sendmmsg\/recvmmsg/ },
  {
    name: "fallback (no --allow-ffi)",
    permissions: PERMISSIONS_WITHOUT_FFI,
    log: /Deno sockets, one datagram per call \(fast path off: no ffi permission/,
  },
];

for (const path of PATHS) {
  Deno.test(`udp-ping --flood, ${path.name}: every probe of a real udp-echo counted once`, async () => {
    await using echo = await startSockit(["udp-echo", "--port", "0"]);
    const count = 20_000;
    const run = await cliPing(path.permissions, [
      `127.0.0.1:${echo.port}`,
      "--flood",
      "--window",
      "64",
      "--count",
      String(count),
    ]);
    assert.equal(run.code, 0, run.stderr);
    assert.match(run.stderr, path.log);
    const s = run.summary;
    assert.equal(s.sent, count);
    assert.equal(s.received, count);
    assert.equal(s.lossPercent, 0);
    for (const k of ["duplicates", "late", "corrupted", "truncated", "stray"] as const) {
      assert.equal(s[k], 0, k);
    }
    assert.equal(s.unexpectedSource, 0);
    assert.equal(s.portClosed, false);
    assert.ok(s.rtt && 0 < s.rtt.min && s.rtt.p50 <= s.rtt.p99 && s.rtt.p99 <= s.rtt.max);
    assert.ok(s.receivedPps !== null && s.receivedPps > 0);
  });

  Deno.test(`udp-ping --flood, ${path.name}: counts what a rate-limited udp-echo drops`, async () => {
    const [rate, burst, count] = [500, 100, 600];
    await using echo = await startSockit([
      "udp-echo",
      "--port",
      "0",
      "--limit-loopback",
      "--rate",
      String(rate),
      "--burst",
      String(burst),
    ]);
    const run = await cliPing(path.permissions, [
      `127.0.0.1:${echo.port}`,
      "--flood",
      "--window",
      "32",
      "--count",
      String(count),
      "--timeout",
      "100",
    ]);
    assert.equal(run.code, 0, run.stderr);
    assert.match(run.stderr, path.log);
    const s = run.summary;
    assert.equal(s.sent, count);
    // The bucket starts full: the first `burst` probes are answered; then `rate` a second.
    const most = burst + Math.ceil(rate * s.durationMs / 1000);
    assert.ok(s.received >= burst && s.received <= most, `received ${s.received}, most ${most}`);
    assert.ok(s.received < s.sent, "the limit dropped some");
    assert.equal(s.lossPercent, (s.sent - s.received) * 100 / s.sent);
    for (const k of ["duplicates", "corrupted", "truncated", "stray"] as const) {
      assert.equal(s[k], 0, k);
    }
    // Echo drops are silence: nothing is unexpected, and replies came, so the port is open.
    assert.equal(s.unexpectedSource, 0);
    assert.equal(s.portClosed, false);
  });
}

/**
 * An echo server that misbehaves on purpose, by sequence number: drops 3 and 17, answers 7
 * twice, answers 11 before 10, flips a byte of 25, cuts 30 short, answers 35 from another
 * port, and follows 40's reply with a copy from another session (stray).
 */
function startMisbehavingServer(): { port: number; close(): Promise<void> } {
  const conn = Deno.listenDatagram({ transport: "udp", hostname: "127.0.0.1", port: 0 });
  const other = Deno.listenDatagram({ transport: "udp", hostname: "127.0.0.1", port: 0 });
  let held: Uint8Array | undefined;
  const loop = (async () => {
    const buf = new Uint8Array(65_536);
    while (true) {
      let data: Uint8Array;
      let from: Deno.Addr;
      try {
        [data, from] = await conn.receive(buf);
      } catch {
        return;
      }
      const seq = new DataView(data.buffer, data.byteOffset).getUint32(ProbeOffset.Seq);
      const copy = data.slice();
      switch (seq) {
        case 3:
        case 17:
          break;
        case 7:
          await conn.send(copy, from);
          await conn.send(copy, from);
          break;
        case 10:
          held = copy;
          break;
        case 11:
          await conn.send(copy, from);
          if (held) await conn.send(held, from);
          break;
        case 25:
          copy[copy.length - 1] ^= 0x40;
          await conn.send(copy, from);
          break;
        case 30:
          await conn.send(copy.subarray(0, 40), from);
          break;
        case 35:
          await other.send(copy, from);
          break;
        case 40: {
          await conn.send(copy, from);
          const check = readProbe(copy);
          if (check.kind === "ok") {
            const probe = { ...check.probe, session: (check.probe.session + 1) >>> 0 };
            await conn.send(writeProbe(new Uint8Array(probe.length), probe), from);
          }
          break;
        }
        default:
          await conn.send(copy, from);
      }
    }
  })();
  return {
    port: (conn.addr as Deno.NetAddr).port,
    async close() {
      conn.close();
      other.close();
      await loop;
    },
  };
}

for (const fastPath of [true, false]) {
  const name = fastPath ? "the fast path" : "Deno's sockets";
  const define = fastPath ? fastTest : (n: string, fn: () => Promise<void>) => Deno.test(n, fn);
  define(
    `udp-ping --flood on ${name} counts drops, duplicates, reordering and bad replies exactly`,
    async () => {
      const server = startMisbehavingServer();
      try {
        let client: PingClient | undefined;
        const s = await udpPing({ hostname: "127.0.0.1", port: server.port }, {
          flood: true,
          window: 64,
          count: 50,
          timeoutMs: 1000,
          fastPath,
          onStart: (c) => client = c,
        });
        assert.equal(client?.fastPath, fastPath, client?.reason);
        assert.deepEqual(
          {
            sent: s.sent,
            received: s.received,
            lossPercent: s.lossPercent,
            duplicates: s.duplicates,
            reordered: s.reordered,
            late: s.late,
            corrupted: s.corrupted,
            truncated: s.truncated,
            unexpectedSource: s.unexpectedSource,
            stray: s.stray,
          },
          {
            sent: 50,
            // Lost: 3 and 17 (dropped), 25 (corrupted), 30 (truncated), 35 (from elsewhere).
            received: 45,
            lossPercent: 10,
            duplicates: 1,
            reordered: 1,
            late: 0,
            corrupted: 1,
            truncated: 1,
            unexpectedSource: 1,
            stray: 1,
          },
        );
        assert.ok(s.rtt && s.rtt.min > 0);
      } finally {
        await server.close();
      }
    },
  );
}

fastTest("udp-ping --flood on the fast path stops at once on abort, with its summary", async () => {
  await using echo = await startSockit(["udp-echo", "--port", "0"]);
  const abort = new AbortController();
  let replies = 0;
  const started = performance.now();
  const s = await withTimeout(
    udpPing({ hostname: "127.0.0.1", port: echo.port }, {
      flood: true,
      signal: abort.signal,
      onEvent(event) {
        if (event.kind === "reply" && ++replies === 5_000) abort.abort();
      },
    }),
    EVENT_TIMEOUT_MS,
    { what: "the aborted flood to end" },
  );
  assert.ok(s.received >= 5_000 && s.sent >= s.received, `${s.sent} sent, ${s.received}`);
  assert.ok(performance.now() - started < EVENT_TIMEOUT_MS);
});

fastTest(
  "udp-ping --flood on the fast path to a closed port: all lost, port unreachable",
  async () => {
    const conn = Deno.listenDatagram({ transport: "udp", hostname: "127.0.0.1", port: 0 });
    const { port } = conn.addr as Deno.NetAddr;
    conn.close();
    const s = await udpPing({ hostname: "localhost", port }, {
      flood: true,
      window: 4,
      count: 10,
      timeoutMs: 50,
    });
    assert.equal(s.target, `localhost:${port}`); // as given, though 127.0.0.1 was pinged
    assert.equal(s.sent, 10);
    assert.equal(s.received, 0);
    assert.equal(s.lossPercent, 100);
    assert.equal(s.portClosed, true);
  },
);

Deno.test("fastPingUnavailable says why a target cannot take the fast path", () => {
  assert.match(fastPingUnavailable("example.com") ?? "", /not an IP address literal/);
  assert.match(fastPingUnavailable("10.0.0.01") ?? "", /not in canonical form/);
  if (FAST === undefined) {
    assert.equal(fastPingUnavailable("::1"), undefined);
    assert.match(fastPingUnavailable("0:0::1") ?? "", /not in canonical form/);
  }
});
