import assert from "node:assert/strict";
import { crc32 } from "../lib/udp/crc32.ts";
import { PROBE_HEADER_SIZE, readProbe, writeProbe } from "../lib/udp/probe.ts";
import { SourceRateLimiter } from "../lib/udp/rate_limiter.ts";
import { formatPingSummary, PingStats } from "../lib/udp/ping_stats.ts";

Deno.test("crc32() matches the IEEE check value", () => {
  assert.equal(crc32(new TextEncoder().encode("123456789")), 0xcbf43926);
  assert.equal(crc32(new Uint8Array(0)), 0);
});

Deno.test("readProbe() accepts a whole probe and returns its fields", () => {
  const probe = { seq: 123_456, session: 0xdeadbeef, sentAt: 98765.4321, length: 1472 };
  const check = readProbe(writeProbe(new Uint8Array(2000), probe));
  assert.deepEqual(check, { kind: "ok", probe });
});

Deno.test("readProbe() reports any single flipped bit as corrupted", () => {
  const data = writeProbe(new Uint8Array(64), { seq: 5, session: 1, sentAt: 2, length: 64 });
  for (let bit = 0; bit < 64 * 8; bit++) {
    const copy = data.slice();
    copy[bit >> 3] ^= 1 << (bit & 7);
    const kind = readProbe(copy).kind;
    // A flip in the length field can make it look longer than what arrived: truncated.
    assert.ok(kind === "corrupted" || kind === "truncated", `bit ${bit}: ${kind}`);
    if (bit < 20 * 8 || bit >= 24 * 8) assert.equal(kind, "corrupted", `bit ${bit}`);
  }
});

Deno.test("readProbe() reports a cut probe as truncated with its sequence number", () => {
  const data = writeProbe(new Uint8Array(100), { seq: 9, session: 1, sentAt: 2, length: 100 });
  assert.deepEqual(readProbe(data.subarray(0, 50)), { kind: "truncated", seq: 9, expected: 100 });
  assert.deepEqual(readProbe(data.subarray(0, 10)), {
    kind: "truncated",
    seq: 9,
    expected: undefined,
  });
  assert.equal(readProbe(data.subarray(0, 0)).kind, "truncated");
  assert.equal(readProbe(new Uint8Array([1, 2, 3])).kind, "corrupted");
});

Deno.test("readProbe() reports a longer datagram (two merged probes) as corrupted", () => {
  const one = writeProbe(new Uint8Array(64), { seq: 1, session: 1, sentAt: 2, length: 64 });
  const merged = new Uint8Array(128);
  merged.set(one);
  merged.set(one, 64);
  assert.equal(readProbe(merged).kind, "corrupted");
});

Deno.test("writeProbe() refuses a size below the header", () => {
  assert.throws(
    () => writeProbe(new Uint8Array(64), { seq: 0, session: 0, sentAt: 0, length: 20 }),
    RangeError,
  );
  assert.equal(PROBE_HEADER_SIZE, 28);
});

Deno.test("SourceRateLimiter refills at its rate and caps at the burst", () => {
  const limiter = new SourceRateLimiter({ ratePerSecond: 100, burst: 5 });
  let allowed = 0;
  for (let i = 0; i < 10; i++) if (limiter.allow("a", 0)) allowed++;
  assert.equal(allowed, 5);
  // 50 ms at 100/s: five tokens again, but no more than the burst after a long pause.
  allowed = 0;
  for (let i = 0; i < 10; i++) if (limiter.allow("a", 50)) allowed++;
  assert.equal(allowed, 5);
  allowed = 0;
  for (let i = 0; i < 10; i++) if (limiter.allow("a", 60_000)) allowed++;
  assert.equal(allowed, 5);
});

Deno.test("SourceRateLimiter tracks at most maxSources, forgetting idle ones first", () => {
  const limiter = new SourceRateLimiter({ ratePerSecond: 1, burst: 1, maxSources: 3 });
  assert.ok(limiter.allow("a", 0));
  assert.ok(limiter.allow("b", 0));
  assert.ok(limiter.allow("c", 500));
  assert.ok(limiter.allow("d", 1000)); // "a" and "b" have refilled: forgotten
  assert.ok(limiter.size <= 3);
  assert.equal(limiter.allow("c", 1000), false); // "c" is still tracked and empty
  for (let i = 0; i < 1000; i++) limiter.allow(`x${i}`, 1000);
  assert.ok(limiter.size <= 3);
});

Deno.test("PingStats computes ping's mdev, nearest-rank percentiles and jitter", () => {
  const stats = new PingStats({ timeoutMs: 100 });
  stats.sent = 10;
  for (let seq = 0; seq < 10; seq++) stats.reply(seq, seq + 1); // RTTs 1..10 ms
  const r = stats.rtt()!;
  assert.equal(r.min, 1);
  assert.equal(r.max, 10);
  assert.equal(r.avg, 5.5);
  assert.ok(Math.abs(r.mdev - Math.sqrt(8.25)) < 1e-9);
  assert.equal(r.p50, 5);
  assert.equal(r.p90, 9);
  assert.equal(r.p99, 10);
  assert.equal(r.jitter, 1);
});

Deno.test("PingStats counts a reply slower than the timeout as late, not received", () => {
  const stats = new PingStats({ timeoutMs: 100 });
  stats.sent = 2;
  assert.deepEqual(stats.reply(0, 150), { duplicate: false, reordered: false, late: true });
  assert.deepEqual(stats.reply(0, 150), { duplicate: true, reordered: false, late: false });
  stats.reply(1, 5);
  const s = stats.summary({ target: "x:1", size: 64, durationMs: 200, sendSpanMs: 100 });
  assert.equal(s.received, 1);
  assert.equal(s.late, 1);
  assert.equal(s.duplicates, 1);
  assert.equal(s.lossPercent, 50);
  assert.equal(s.sentPps, 10);
});

Deno.test("formatPingSummary() says why nothing came back only as far as it knows", () => {
  const run = { target: "127.0.0.1:7", size: 64, durationMs: 10, sendSpanMs: 5 };
  const silent = new PingStats({ timeoutMs: 100 });
  silent.sent = 3;
  const closed = formatPingSummary(silent.summary({ ...run, portClosed: true }));
  assert.match(
    closed,
    /^port unreachable: no UDP socket on this machine is bound to 127\.0\.0\.1:7$/m,
  );
  const bound = formatPingSummary(silent.summary({ ...run, portClosed: false }));
  assert.match(bound, /^no reply: a UDP socket is bound to 127\.0\.0\.1:7 but did not answer/m);
  // Another machine: a closed port cannot be told from loss, and the line says so.
  const remote = formatPingSummary(silent.summary({ ...run, target: "192.0.2.1:7" }));
  assert.match(remote, /^no reply: a closed port, a firewall and a stopped server look the same/m);
  assert.doesNotMatch(remote, /unreachable:/);
  // A corrupted reply is an answer: no guessing about why nothing was received.
  silent.corrupted = 1;
  const garbled = formatPingSummary(silent.summary({ ...run, portClosed: null }));
  assert.doesNotMatch(garbled, /no reply|unreachable/);
  // Replies make the port open whatever the caller passed.
  const answered = new PingStats({ timeoutMs: 100 });
  answered.sent = 1;
  answered.reply(0, 1);
  assert.equal(answered.summary({ ...run, portClosed: true }).portClosed, false);
});
