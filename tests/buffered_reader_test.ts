import assert from "node:assert/strict";
import { BufferedReader } from "../lib/net/buffered_reader.ts";
import { LimitError, UnexpectedEofError } from "../lib/net/errors.ts";
import { writeAll } from "../lib/net/write_all.ts";
import { trickleReader } from "./_helpers.ts";

const enc = (s: string) => new TextEncoder().encode(s);
const dec = (b: Uint8Array | null) => (b === null ? null : new TextDecoder().decode(b));

Deno.test("BufferedReader.readLine() handles LF and CRLF delivered one byte at a time", async () => {
  const r = new BufferedReader(trickleReader(enc("one\r\ntwo\n\nthree"), 1), { bufferSize: 16 });
  assert.equal(dec(await r.readLine(10)), "one");
  assert.equal(dec(await r.readLine(10)), "two");
  assert.equal(dec(await r.readLine(10)), "");
  assert.equal(dec(await r.readLine(10, { partialAtEof: true })), "three");
  assert.equal(await r.readLine(10), null);
});

Deno.test("BufferedReader.readLine() rejects an unterminated final line unless asked", async () => {
  const r = new BufferedReader(trickleReader(enc("abc"), 2));
  await assert.rejects(r.readLine(10), UnexpectedEofError);
});

Deno.test("BufferedReader.readLine() refuses an over-long line and skipLine() recovers", async () => {
  const long = "x".repeat(100);
  const r = new BufferedReader(trickleReader(enc(`${long}\nok\n`), 7), { bufferSize: 32 });
  await assert.rejects(r.readLine(20), LimitError);
  assert.equal(await r.skipLine(), true);
  assert.equal(dec(await r.readLine(20)), "ok");
});

Deno.test("BufferedReader.readExact() assembles partial reads and big-endian integers", async () => {
  const data = new Uint8Array([0x01, 0x02, 0xde, 0xad, 0xbe, 0xef, 9, 8, 7, 6, 5]);
  const r = new BufferedReader(trickleReader(data, 1), { bufferSize: 4 });
  assert.equal(await r.readU16(), 0x0102);
  assert.equal(await r.readU32(), 0xdeadbeef);
  assert.deepEqual([...await r.readExact(5)], [9, 8, 7, 6, 5]);
  assert.equal(await r.read(new Uint8Array(4)), null);
});

Deno.test("BufferedReader.readExact() rejects a length above its limit before reading", async () => {
  let reads = 0;
  const r = new BufferedReader({
    read() {
      reads++;
      return Promise.resolve(null);
    },
  });
  await assert.rejects(r.readExact(2 ** 31, 1024), LimitError);
  assert.equal(reads, 0);
});

Deno.test("BufferedReader.readExact() reports a connection closed early", async () => {
  const r = new BufferedReader(trickleReader(new Uint8Array(3), 3));
  await assert.rejects(r.readExact(5), /closed after 3/);
});

Deno.test("BufferedReader.read() returns read-ahead bytes before reading the source", async () => {
  const r = new BufferedReader(trickleReader(enc("hello\nworld"), 100));
  assert.equal(dec(await r.readLine(10)), "hello");
  assert.equal(r.buffered, 5);
  const buf = new Uint8Array(10);
  const n = await r.read(buf);
  assert.equal(dec(buf.subarray(0, n!)), "world");
});

Deno.test("writeAll() loops over partial writes", async () => {
  const got: number[] = [];
  const writer = {
    write(p: Uint8Array) {
      const n = Math.min(3, p.length);
      got.push(...p.subarray(0, n));
      return Promise.resolve(n);
    },
  };
  const data = new Uint8Array(100).map((_, i) => i);
  await writeAll(writer, data);
  assert.deepEqual(got, [...data]);
});

Deno.test("BufferedReader grows from a small buffer for a long line, up to its capacity", async () => {
  const long = "z".repeat(50_000);
  const r = new BufferedReader(trickleReader(enc(`${long}\nnext\n${long}x\n`), 999), {
    bufferSize: 50_002,
  });
  assert.equal(dec(await r.readLine(50_000)), long);
  assert.equal(dec(await r.readLine(50_000)), "next");
  await assert.rejects(r.readLine(50_000), LimitError);
});

Deno.test("BufferedReader.readExact() beyond the initial buffer size is served whole", async () => {
  const data = new Uint8Array(20_000).map((_, i) => i & 0xff);
  const r = new BufferedReader(trickleReader(data, 3000));
  assert.equal(await r.readU8(), 0);
  const rest = await r.peek(19_999);
  assert.deepEqual([...rest.subarray(0, 3)], [1, 2, 3]);
  assert.equal(rest.length, 19_999);
});
