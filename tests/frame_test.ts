import assert from "node:assert/strict";
import { BufferedReader } from "../lib/net/buffered_reader.ts";
import { concatBytes } from "../lib/net/bytes.ts";
import {
  encodeFrame,
  encodeFrameHeader,
  encodeHello,
  readFrame,
  readHello,
} from "../lib/net/frame.ts";
import {
  LimitError,
  ProtocolError,
  UnexpectedEofError,
  VersionMismatchError,
} from "../lib/net/errors.ts";
import { trickleReader } from "./_helpers.ts";

Deno.test("readFrame() decodes frames split byte by byte", async () => {
  const every = new Uint8Array(256).map((_, i) => i);
  const wire = concatBytes(encodeFrame(0x10, every), encodeFrame(0x11), encodeFrame(0x12, every));
  const r = new BufferedReader(trickleReader(wire, 1), { bufferSize: 8 });
  const a = await readFrame(r);
  assert.equal(a?.type, 0x10);
  assert.deepEqual(a?.payload, every);
  const b = await readFrame(r);
  assert.equal(b?.type, 0x11);
  assert.equal(b?.payload.length, 0);
  assert.deepEqual((await readFrame(r))?.payload, every);
  assert.equal(await readFrame(r), null);
});

Deno.test("readFrame() rejects an oversized length before allocating", async () => {
  const wire = encodeFrameHeader(0x10, 0xffffffff);
  const r = new BufferedReader(trickleReader(wire, 5));
  await assert.rejects(readFrame(r, { maxPayload: 1024 }), LimitError);
});

Deno.test("readFrame() reports a frame cut short", async () => {
  const wire = encodeFrame(0x10, new Uint8Array(10)).subarray(0, 9);
  const r = new BufferedReader(trickleReader(wire, 3));
  await assert.rejects(readFrame(r), UnexpectedEofError);
});

Deno.test("readHello() accepts the same protocol and version", async () => {
  const r = new BufferedReader(trickleReader(encodeHello("relay", 1), 1));
  assert.equal(await readHello(r, { protocol: "relay", version: 1 }), 1);
});

Deno.test("readHello() names both versions on a mismatch", async () => {
  const r = new BufferedReader(trickleReader(encodeHello("relay", 2), 4));
  await assert.rejects(readHello(r, { protocol: "relay", version: 1 }), (err: unknown) => {
    assert.ok(err instanceof VersionMismatchError);
    assert.match(err.message, /peer speaks relay v2, this side speaks relay v1/);
    return true;
  });
});

Deno.test("readHello() rejects another protocol and a non-sockit peer", async () => {
  const other = new BufferedReader(trickleReader(encodeHello("transfer", 1), 64));
  await assert.rejects(readHello(other, { protocol: "relay", version: 1 }), VersionMismatchError);
  const http = new BufferedReader(
    trickleReader(new TextEncoder().encode("GET / HTTP/1.1\r\n\r\n")),
  );
  await assert.rejects(readHello(http, { protocol: "relay", version: 1 }), (err: unknown) => {
    assert.ok(err instanceof ProtocolError);
    assert.match(err.message, /not a sockit peer/);
    return true;
  });
});

Deno.test("readHello quotes a hostile protocol name so it cannot forge a log line", async () => {
  const hostile = "x v1\nsockit relay: mallory is now root\nsockit relay: x";
  const reader = new BufferedReader(trickleReader(encodeHello(hostile, 1), 7));
  await assert.rejects(readHello(reader, { protocol: "relay", version: 1 }), (error: Error) => {
    assert.ok(!error.message.includes("\n"), error.message);
    assert.match(error.message, /peer speaks "x v1\\nsockit relay: mallory is now root\\nsockit/);
    return true;
  });
});
