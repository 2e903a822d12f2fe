import assert from "node:assert/strict";
import { udpPing as ping } from "../lib/udp/ping.ts";
import type { PingSummary } from "../lib/udp/ping_stats.ts";
import { ProbeOffset, readProbe, writeProbe } from "../lib/udp/probe.ts";
import { runSockit, startSockit } from "./_helpers.ts";

/** Runs `sockit udp-ping ARGS...` to completion. */
function udpPing(args: string[]) {
  return runSockit(["udp-ping", ...args]);
}

function parseSummary(stdout: string): PingSummary {
  const lines = stdout.trim().split("\n");
  assert.equal(lines.length, 1, `--json prints one line, got:\n${stdout}`);
  return JSON.parse(lines[0]);
}

Deno.test("udp-ping against sockit udp-echo reports 0% loss and RTT percentiles", async () => {
  await using echo = await startSockit(["udp-echo", "--port", "0"]);
  const run = await udpPing([
    `127.0.0.1:${echo.port}`,
    "--count",
    "20",
    "--interval",
    "5",
    "--json",
  ]);
  assert.equal(run.code, 0, run.stderr);
  const s = parseSummary(run.stdout);
  assert.equal(s.target, `127.0.0.1:${echo.port}`);
  assert.equal(s.sent, 20);
  assert.equal(s.received, 20);
  assert.equal(s.lossPercent, 0);
  for (const k of ["duplicates", "reordered", "late", "corrupted", "truncated"] as const) {
    assert.equal(s[k], 0, k);
  }
  assert.equal(s.unexpectedSource, 0);
  assert.ok(s.rtt, "rtt stats present");
  const r = s.rtt;
  assert.ok(0 < r.min && r.min <= r.p50 && r.p50 <= r.p90 && r.p90 <= r.p99 && r.p99 <= r.max);
  assert.ok(r.min <= r.avg && r.avg <= r.max && r.mdev >= 0 && r.jitter >= 0);
});

Deno.test("udp-ping prints a line per reply like ping, then the summary", async () => {
  await using echo = await startSockit(["udp-echo", "--port", "0"]);
  const run = await udpPing([`127.0.0.1:${echo.port}`, "-c", "3", "-i", "5"]);
  assert.equal(run.code, 0, run.stderr);
  const lines = run.stdout.split("\n");
  assert.equal(lines[0], `UDP-PING 127.0.0.1:${echo.port}: 64-byte probes`);
  for (let seq = 0; seq < 3; seq++) {
    assert.match(
      lines[1 + seq],
      new RegExp(`^64 bytes from 127\\.0\\.0\\.1:${echo.port}: seq=${seq} time=\\d+\\.\\d{3} ms$`),
    );
  }
  assert.match(run.stdout, /3 sent, 3 received, 0% loss, 0 duplicates, 0 reordered, 0 late/);
  assert.match(run.stdout, /rtt min\/avg\/max\/mdev = [\d.]+\/[\d.]+\/[\d.]+\/[\d.]+ ms/);
  assert.match(run.stdout, /rtt p50\/p90\/p99 = [\d.]+\/[\d.]+\/[\d.]+ ms, jitter [\d.]+ ms/);
});

Deno.test("udp-ping carries 65,507-byte probes intact through udp-echo", async () => {
  await using echo = await startSockit(["udp-echo", "--port", "0"]);
  const run = await udpPing([
    `127.0.0.1:${echo.port}`,
    "-c",
    "3",
    "-i",
    "5",
    "-s",
    "65507",
    "--json",
  ]);
  const s = parseSummary(run.stdout);
  assert.equal(s.size, 65_507);
  assert.equal(s.received, 3);
  assert.equal(s.corrupted + s.truncated, 0);
});

Deno.test("udp-ping --flood keeps a window in flight and reports the achieved rate", async () => {
  await using echo = await startSockit(["udp-echo", "--port", "0", "--rate", "0"]);
  const run = await udpPing([
    `127.0.0.1:${echo.port}`,
    "-c",
    "2000",
    "--flood",
    "--window",
    "16",
    "--json",
  ]);
  assert.equal(run.code, 0, run.stderr);
  const s = parseSummary(run.stdout);
  assert.equal(s.sent, 2000);
  assert.equal(s.received, 2000);
  // The rates are what the run achieved, however fast this machine is: the send span is
  // within the run's duration, and every probe was answered.
  assert.ok(s.sentPps !== null && s.sentPps >= 1999 * 1000 / s.durationMs, `sentPps ${s.sentPps}`);
  assert.equal(s.receivedPps, s.sentPps);
});

Deno.test("udp-ping --rate sends open loop at the asked rate", async () => {
  await using echo = await startSockit(["udp-echo", "--port", "0", "--rate", "0"]);
  const run = await udpPing([`127.0.0.1:${echo.port}`, "-c", "100", "--rate", "1000", "--json"]);
  const s = parseSummary(run.stdout);
  assert.equal(s.sent, 100);
  assert.ok(s.received > 0);
  // Never faster than asked: probe k leaves no earlier than k ms after the first (it catches
  // up after a stall, but not beyond the schedule), so a busy machine can only lower the
  // rate and lengthen the run, never break these bounds.
  assert.ok(s.sentPps !== null && s.sentPps <= 1000, `sentPps ${s.sentPps}`);
  assert.ok(s.durationMs >= 99, `duration ${s.durationMs}`);
});

Deno.test("udp-ping exits 1 when nothing answers", async () => {
  // A bound socket that never answers: no ICMP, just silence.
  const silent = Deno.listenDatagram({ transport: "udp", hostname: "127.0.0.1", port: 0 });
  try {
    const port = (silent.addr as Deno.NetAddr).port;
    const run = await udpPing([`127.0.0.1:${port}`, "-c", "2", "-i", "5", "-W", "50"]);
    assert.equal(run.code, 1);
    assert.match(run.stdout, /2 sent, 0 received, 100% loss/);
    assert.doesNotMatch(run.stdout, /rtt min/);
    // Something is bound there: not a closed port, and the summary does not claim one.
    assert.doesNotMatch(run.stdout, /port unreachable/);
    assert.match(
      run.stdout,
      /no reply: a UDP socket is bound to 127\.0\.0\.1:\d+ but did not answer/,
    );
  } finally {
    silent.close();
  }
});

/** A loopback UDP port that nothing is bound to (bound for an instant to find a free one). */
function closedPort(): number {
  const conn = Deno.listenDatagram({ transport: "udp", hostname: "127.0.0.1", port: 0 });
  const { port } = conn.addr as Deno.NetAddr;
  conn.close();
  return port;
}

Deno.test("udp-ping to a closed loopback port says port unreachable", async () => {
  const port = closedPort();
  const run = await udpPing([`127.0.0.1:${port}`, "-c", "2", "-i", "5", "-W", "50"]);
  assert.equal(run.code, 1);
  assert.match(run.stdout, /2 sent, 0 received, 100% loss/);
  assert.match(
    run.stdout,
    new RegExp(
      `^port unreachable: no UDP socket on this machine is bound to 127\\.0\\.0\\.1:${port}$`,
      "m",
    ),
  );
  const json = await udpPing([`127.0.0.1:${port}`, "-c", "1", "-W", "50", "--json"]);
  assert.equal(json.code, 1);
  assert.equal(parseSummary(json.stdout).portClosed, true);
});

Deno.test("udp-ping --json says the port is open once replies come", async () => {
  await using echo = await startSockit(["udp-echo", "--port", "0"]);
  const run = await udpPing([`127.0.0.1:${echo.port}`, "-c", "1", "--json"]);
  assert.equal(run.code, 0, run.stderr);
  assert.equal(parseSummary(run.stdout).portClosed, false);
  assert.doesNotMatch(run.stdout, /unreachable|no reply/);
});

Deno.test("udp-ping -c 0 is a usage error, not a run without end", async () => {
  for (const args of [["-c", "0"], ["--count", "0"], ["--count=00"]]) {
    const run = await runSockit(["udp-ping", "127.0.0.1:7", ...args], { timeoutMs: 15_000 });
    assert.equal(run.code, 2, `${args.join(" ")}: ${run.stderr}`);
    assert.match(run.stderr, /Cannot use --count 0: give 1 or more probes, or leave --count out/);
    assert.match(run.stderr, /--count, -c N +probes to send, 1 or more \(default: until SIGINT/);
  }
});

Deno.test("udp-ping exits 2 on usage errors", async () => {
  for (
    const args of [
      ["udp-ping"],
      ["udp-ping", "127.0.0.1"],
      ["udp-ping", "127.0.0.1:7", "--size", "10"],
      ["udp-ping", "127.0.0.1:7", "--size", "65508"],
      ["udp-ping", "127.0.0.1:7", "--flood", "--rate", "10"],
      ["udp-ping", "127.0.0.1:7", "--count", "-1"],
    ]
  ) {
    const run = await runSockit(args);
    assert.equal(run.code, 2, `${args.join(" ")}: ${run.stderr}`);
    assert.match(run.stderr, /Usage: sockit udp-ping/);
  }
});

Deno.test("udp-ping prints the summary on SIGINT and exits 0 after replies", async () => {
  await using echo = await startSockit(["udp-echo", "--port", "0"]);
  await using ping = await startSockit(["udp-ping", `127.0.0.1:${echo.port}`, "-i", "20"], {
    ready: false,
  });
  await ping.waitForStdout(/seq=2 time=/);
  const status = await ping.stop("SIGINT");
  assert.equal(status.code, 0);
  await ping.waitForStdout(/\d+ sent, \d+ received/);
});

Deno.test({
  name: "udp-ping works over IPv6 (needs IPv6 loopback ::1)",
  ignore: (() => {
    try {
      Deno.listenDatagram({ transport: "udp", hostname: "::1", port: 0 }).close();
      return false;
    } catch {
      return true;
    }
  })(),
  fn: async () => {
    await using echo = await startSockit(["udp-echo", "--host", "::1", "--port", "0"]);
    const run = await udpPing([`[::1]:${echo.port}`, "-c", "3", "-i", "5", "--json"]);
    assert.equal(run.code, 0, run.stderr);
    const s = parseSummary(run.stdout);
    assert.equal(s.target, `[::1]:${echo.port}`);
    assert.equal(s.received, 3);
  },
});

/**
 * An echo server that misbehaves on purpose, by sequence number, so every count is known:
 * drops 3 and 17, answers 7 twice, answers 11 before 10, holds 2 back until 22 arrives (late:
 * at least 20 intervals), flips a byte of 25, cuts 30 short, answers 35 from another port,
 * and follows 40's reply with a copy from another session (stray). `onProbe` is called for
 * each probe received, before any reply goes out.
 */
function startMisbehavingServer(
  options: { onProbe?: (seq: number) => void } = {},
): { port: number; close(): Promise<void> } {
  const conn = Deno.listenDatagram({ transport: "udp", hostname: "127.0.0.1", port: 0 });
  const other = Deno.listenDatagram({ transport: "udp", hostname: "127.0.0.1", port: 0 });
  const held = new Map<number, Uint8Array>();
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
      options.onProbe?.(seq);
      const copy = data.slice();
      switch (seq) {
        case 3:
        case 17:
          break;
        case 7:
          await conn.send(copy, from);
          await conn.send(copy, from);
          break;
        case 2:
        case 10:
          held.set(seq, copy);
          break;
        case 11:
          await conn.send(copy, from);
          await conn.send(held.get(10)!, from);
          break;
        case 22:
          await conn.send(copy, from);
          await conn.send(held.get(2)!, from);
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
          assert.equal(check.kind, "ok");
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

Deno.test("udp-ping counts drops, duplicates, reordering, late, corrupted, truncated, unexpected source exactly", async () => {
  // The run's clock is the test's: it moves 10 ms each time the server receives a probe, and
  // past every deadline once the last reply is in. Late and on time are then decided by the
  // probes in between, not by how busy the machine is: 2, held until 22 arrives, is at least
  // 21 probes (210 ms) old, past the 150 ms timeout; 10, held until 11 arrives, is 2 probes
  // (20 ms) old; a stall of the process stops this clock too.
  const STEP_MS = 10;
  let clock = 0;
  const server = startMisbehavingServer({ onProbe: () => clock += STEP_MS });
  try {
    const s = await ping({ hostname: "127.0.0.1", port: server.port }, {
      count: 50,
      intervalMs: 2 * STEP_MS,
      timeoutMs: 15 * STEP_MS,
      now: () => clock,
      onEvent(event) {
        if (event.kind === "reply" && event.seq === 49) clock += 1_000_000;
      },
    });
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
        // Lost: 3 and 17 (dropped), 2 (late), 25, 30, 35.
        received: 44,
        lossPercent: 12,
        duplicates: 1,
        reordered: 1,
        late: 1,
        corrupted: 1,
        truncated: 1,
        unexpectedSource: 1,
        stray: 1,
      },
    );
  } finally {
    await server.close();
  }
});

Deno.test("udp-ping per-reply lines mark duplicates, reordering and bad replies", async () => {
  const server = startMisbehavingServer();
  try {
    const run = await udpPing([`127.0.0.1:${server.port}`, "-c", "41", "-i", "15", "-W", "200"]);
    assert.equal(run.code, 0, run.stderr);
    const out = run.stdout;
    assert.match(out, /seq=7 time=[\d.]+ ms \(DUP!\)/);
    // On the real clock: 10 is reordered, or late if a stall of over 185 ms hits its 15 ms
    // in the server (the exact counts are checked on a clock of the test's own above).
    assert.match(out, /seq=10 time=[\d.]+ ms \((reordered|late)\)/);
    assert.match(out, /seq=2 time=[\d.]+ ms \(late\)/);
    assert.match(out, /64 bytes from 127\.0\.0\.1:\d+: corrupted \(checksum mismatch\)/);
    assert.match(out, /40 bytes from 127\.0\.0\.1:\d+: seq=30 truncated \(probe was 64 bytes\)/);
    assert.match(out, /64 bytes from 127\.0\.0\.1:\d+: unexpected source \(expected 127\.0\.0\.1:/);
    assert.match(out, /seq=40 stray/);
    assert.doesNotMatch(out, /seq=(3|17) /);
  } finally {
    await server.close();
  }
});
