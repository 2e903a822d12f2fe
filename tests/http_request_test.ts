/**
 * Tests of the HTTP request-head parser (`lib/net/http_request.ts`, `http_target.ts`) and its
 * answers (`http_response.ts`): every rule on bytes fed one at a time, then real loopback
 * sockets with curl as an independent client (origin-form, absolute-form through `--proxy`,
 * CONNECT through `--proxytunnel`), a 1 MB header (431, then end of input, no reset) and a head
 * that never ends (408 once the timeout passed).
 */

import assert from "node:assert/strict";
import { BufferedReader } from "../lib/net/buffered_reader.ts";
import {
  HTTP_LIMITS,
  readRequestHead,
  type RequestHead,
  type RequestHeadOptions,
} from "../lib/net/http_request.ts";
import { HttpError, writeResponse } from "../lib/net/http_response.ts";
import { writeAll } from "../lib/net/write_all.ts";
import { peerTest, trickleReader } from "./_helpers.ts";
import { readToEnd, runCurl, startHttpTestServer } from "./_http.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** Parses `text` fed one byte per read (every buffering path runs). */
function parse(text: string | Uint8Array, options: RequestHeadOptions = {}) {
  const bytes = typeof text === "string" ? encoder.encode(text) : text;
  return readRequestHead(new BufferedReader(trickleReader(bytes, 1)), options);
}

/** The status of the HttpError that parsing `text` rejects with. */
async function statusOf(text: string, options: RequestHeadOptions = {}): Promise<number> {
  try {
    await parse(text, options);
  } catch (error) {
    if (error instanceof HttpError) return error.status;
    throw error;
  }
  throw new Error(`expected ${JSON.stringify(text.slice(0, 60))} to be refused`);
}

const HOST = "Host: example.com\r\n";

Deno.test("readRequestHead() parses an origin-form request with its fields, ignoring case", async () => {
  const head = await parse(
    `GET /chat/room?x=1&y=2 HTTP/1.1\r\n${HOST}Accept: text/html\r\n` +
      "X-Twice: a\r\nx-twice: b\r\nConnection:keep-alive, Upgrade \r\n\r\nBODY NOT READ",
  );
  assert.ok(head);
  assert.equal(head.method, "GET");
  assert.equal(head.version, "1.1");
  assert.deepEqual(head.target, { form: "origin", path: "/chat/room", query: "x=1&y=2" });
  assert.equal(head.headers.get("ACCEPT"), "text/html");
  assert.equal(head.headers.get("x-TWICE"), "a, b");
  assert.deepEqual(head.headers.getAll("X-Twice"), ["a", "b"]);
  assert.equal(head.headers.get("connection"), "keep-alive, Upgrade");
  assert.equal(head.headers.hasToken("Connection", "upgrade"), true);
  assert.equal(head.headers.size, 5);
  assert.deepEqual([...head.headers][3], ["x-twice", "b"]);
});

Deno.test("readRequestHead() leaves the body in the reader", async () => {
  const reader = new BufferedReader(
    trickleReader(encoder.encode(`POST / HTTP/1.1\r\n${HOST}\r\nbody`), 3),
  );
  const head = await readRequestHead(reader);
  assert.equal(head?.headBytes, 15 + 2 + 17 + 2 + 2);
  assert.equal(decoder.decode(await reader.readExact(4)), "body");
});

Deno.test("readRequestHead() takes bare LF line ends and skips one leading empty line", async () => {
  const head = await parse(`\r\nGET / HTTP/1.1\nHost: a\n\n`);
  assert.deepEqual(head?.target, { form: "origin", path: "/", query: "" });
  assert.equal(head?.headers.get("host"), "a");
});

Deno.test("readRequestHead() reads field values byte for byte (obs-text)", async () => {
  const bytes = new Uint8Array([
    ...encoder.encode(`GET / HTTP/1.1\r\n${HOST}X: caf`),
    0xe9,
    13,
    10,
    13,
    10,
  ]);
  const head = await parse(bytes);
  assert.equal(head?.headers.get("x"), "caf\u00e9");
});

Deno.test("readRequestHead() resolves null for a peer that closed before a byte", async () => {
  assert.equal(await parse(""), null);
});

Deno.test("readRequestHead() parses absolute-form, authority-form and asterisk-form targets", async () => {
  const target = async (line: string) => (await parse(`${line}\r\n${HOST}\r\n`))?.target;
  assert.deepEqual(await target("GET http://example.com/a/b?c=d HTTP/1.1"), {
    form: "absolute",
    scheme: "http",
    host: "example.com",
    port: 80,
    path: "/a/b",
    query: "c=d",
  });
  assert.deepEqual(await target("GET HTTPS://[2001:db8::1]:8443 HTTP/1.1"), {
    form: "absolute",
    scheme: "https",
    host: "2001:db8::1",
    port: 8443,
    path: "/",
    query: "",
  });
  assert.deepEqual(await target("CONNECT example.com:443 HTTP/1.1"), {
    form: "authority",
    host: "example.com",
    port: 443,
  });
  assert.deepEqual(await target("CONNECT [::1]:22 HTTP/1.1"), {
    form: "authority",
    host: "::1",
    port: 22,
  });
  assert.deepEqual(await target("OPTIONS * HTTP/1.1"), { form: "asterisk" });
});

Deno.test("readRequestHead() refuses targets the method does not take, with 400", async () => {
  for (
    const line of [
      "CONNECT example.com HTTP/1.1", // no port
      "CONNECT example.com:0 HTTP/1.1",
      "CONNECT example.com:65536 HTTP/1.1",
      "CONNECT /path HTTP/1.1",
      "GET example.com:443 HTTP/1.1", // authority-form is CONNECT's only
      "GET * HTTP/1.1",
      "GET ftp://example.com/ HTTP/1.1",
      "GET http://user:pw@example.com/ HTTP/1.1",
      "GET /a#frag HTTP/1.1",
      "GET http://[::1/ HTTP/1.1",
    ]
  ) {
    assert.equal(await statusOf(`${line}\r\n${HOST}\r\n`), 400, line);
  }
});

Deno.test("readRequestHead() refuses malformed lines with 400", async () => {
  const cases: [string, string][] = [
    ["obs-fold", `GET / HTTP/1.1\r\n${HOST}X-A: one\r\n two\r\n\r\n`],
    ["obs-fold with a tab", `GET / HTTP/1.1\r\n${HOST}X-A: one\r\n\ttwo\r\n\r\n`],
    ["a space before the colon", `GET / HTTP/1.1\r\n${HOST}X-A : one\r\n\r\n`],
    ["no colon", `GET / HTTP/1.1\r\n${HOST}X-A\r\n\r\n`],
    ["an empty name", `GET / HTTP/1.1\r\n${HOST}: one\r\n\r\n`],
    ["a NUL in a value", `GET / HTTP/1.1\r\n${HOST}X-A: o\x00ne\r\n\r\n`],
    ["a bare CR in a value", `GET / HTTP/1.1\r\n${HOST}X-A: o\rne\r\n\r\n`],
    ["two spaces in the request line", `GET  / HTTP/1.1\r\n${HOST}\r\n`],
    ["a lowercase version", `GET / http/1.1\r\n${HOST}\r\n`],
    ["a version with letters", `GET / HTTP/1.1x\r\n${HOST}\r\n`],
    ["a method that is not a token", `G(T / HTTP/1.1\r\n${HOST}\r\n`],
    ["no Host in HTTP/1.1", `GET / HTTP/1.1\r\nAccept: */*\r\n\r\n`],
    ["two Host fields", `GET / HTTP/1.1\r\n${HOST}${HOST}\r\n`],
    ["a bad Host", `GET / HTTP/1.1\r\nHost: a b\r\n\r\n`],
    ["a Host with user information", `GET / HTTP/1.1\r\nHost: u@a\r\n\r\n`],
    ["end of input inside the head", `GET / HTTP/1.1\r\n${HOST}`],
    ["end of input inside the request line", `GET / HTT`],
  ];
  for (const [what, text] of cases) assert.equal(await statusOf(text), 400, what);
  // HTTP/1.0 needs no Host.
  assert.equal((await parse("GET / HTTP/1.0\r\n\r\n"))?.version, "1.0");
});

Deno.test("readRequestHead() refuses HTTP/2 and later with 505", async () => {
  assert.equal(await statusOf(`GET / HTTP/2.0\r\n${HOST}\r\n`), 505);
  assert.equal(await statusOf(`GET / HTTP/3.0\r\n${HOST}\r\n`), 505);
});

Deno.test("readRequestHead() refuses a request line over its limit with 414", async () => {
  const max = HTTP_LIMITS.maxRequestLineBytes;
  const line = (n: number) => `GET /${"a".repeat(n - "GET / HTTP/1.1".length)} HTTP/1.1`;
  assert.equal(line(max).length, max);
  assert.equal((await parse(`${line(max)}\r\n${HOST}\r\n`))?.method, "GET");
  assert.equal(await statusOf(`${line(max + 1)}\r\n${HOST}\r\n`), 414);
  assert.equal(await statusOf(`${line(101)}\r\n${HOST}\r\n`, { maxRequestLineBytes: 100 }), 414);
});

Deno.test("readRequestHead() refuses too many fields or too big a head with 431", async () => {
  const fields = (n: number) => Array.from({ length: n }, (_, i) => `X-${i}: v\r\n`).join("");
  const max = HTTP_LIMITS.maxHeaders;
  assert.equal((await parse(`GET / HTTP/1.1\r\n${HOST}${fields(max - 1)}\r\n`))?.headers.size, max);
  assert.equal(await statusOf(`GET / HTTP/1.1\r\n${HOST}${fields(max)}\r\n`), 431);
  const big = `X-Big: ${"b".repeat(12 * 1024)}\r\n`;
  assert.equal(await statusOf(`GET / HTTP/1.1\r\n${HOST}${big}${big}${big}\r\n`), 431);
  assert.equal(await statusOf(`GET / HTTP/1.1\r\n${HOST}${big}\r\n`, { maxHeadBytes: 4096 }), 431);
});

Deno.test("readRequestHead() stops reading at the head limit, whatever the peer sends", async () => {
  let read = 0;
  const endless = {
    read(p: Uint8Array) {
      const head = read === 0 ? encoder.encode(`GET / HTTP/1.1\r\n${HOST}X: `) : undefined;
      if (head) p.set(head);
      else p.fill(0x61);
      const n = head ? head.length : p.length;
      read += n;
      return Promise.resolve(n);
    },
  };
  const error = await readRequestHead(new BufferedReader(endless)).catch((e) => e);
  assert.ok(error instanceof HttpError);
  assert.equal(error.status, 431);
  assert.ok(read <= 64 * 1024, `read ${read} bytes for a 32 KiB head limit`);
});

Deno.test("writeResponse() adds Content-Length, omits a HEAD body and refuses response splitting", async () => {
  const written: string[] = [];
  const writer = {
    write: (p: Uint8Array) => (written.push(decoder.decode(p)), Promise.resolve(p.length)),
  };
  await writeResponse(writer, 200, { body: "héllo", omitBody: true });
  assert.equal(written.pop(), "HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\n");
  await writeResponse(writer, 101, { headers: [["Upgrade", "websocket"]] });
  assert.equal(written.pop(), "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n");
  await assert.rejects(
    writeResponse(writer, 200, { headers: { "X-A": "b\nSet-Cookie: c" } }),
    RangeError,
  );
  await assert.rejects(writeResponse(writer, 200, { headers: { "Bad Name": "x" } }), RangeError);
  assert.equal(written.length, 0);
});

/** A server that answers each head with what it parsed, as JSON and as `X-Target`. */
function startEchoHeadServer(options: RequestHeadOptions = {}) {
  return startHttpTestServer(async ({ conn, head }) => {
    const t = head.target;
    const summary = t.form === "origin"
      ? `origin ${t.path} ${t.query}`
      : t.form === "absolute"
      ? `absolute ${t.scheme} ${t.host} ${t.port} ${t.path} ${t.query}`
      : t.form === "authority"
      ? `authority ${t.host} ${t.port}`
      : "asterisk";
    // A CONNECT is refused so that curl does not go on to speak through a tunnel.
    await writeResponse(conn, head.method === "CONNECT" ? 403 : 200, {
      headers: { "X-Target": summary, "Content-Type": "application/json", Connection: "close" },
      body: JSON.stringify(describe(head)),
    });
  }, options);
}

function describe(head: RequestHead) {
  return {
    method: head.method,
    version: head.version,
    target: head.target,
    host: head.headers.get("HOST"),
    twice: head.headers.get("x-twice"),
  };
}

peerTest("curl", {
  name: "readRequestHead() parses curl's origin-form request with repeated fields",
  fn: async () => {
    await using server = startEchoHeadServer();
    const url = `http://127.0.0.1:${server.port}/path/to?q=1`;
    const res = await runCurl(["--http1.1", "-H", "X-Twice: a", "-H", "X-Twice: b", url]);
    assert.equal(res.code, 0, res.stderr);
    assert.deepEqual(JSON.parse(res.stdout), {
      method: "GET",
      version: "1.1",
      target: { form: "origin", path: "/path/to", query: "q=1" },
      host: `127.0.0.1:${server.port}`,
      twice: "a, b",
    });
  },
});

peerTest("curl", {
  name: "readRequestHead() parses the absolute-form request curl sends to a proxy",
  fn: async () => {
    await using server = startEchoHeadServer();
    const res = await runCurl([
      "--http1.1",
      "--proxy",
      `http://127.0.0.1:${server.port}`,
      "http://example.test:8080/a/b?c=d",
    ]);
    assert.equal(res.code, 0, res.stderr);
    const got = JSON.parse(res.stdout);
    assert.deepEqual(got.target, {
      form: "absolute",
      scheme: "http",
      host: "example.test",
      port: 8080,
      path: "/a/b",
      query: "c=d",
    });
    assert.equal(got.host, "example.test:8080");
  },
});

peerTest("curl", {
  name: "readRequestHead() parses the CONNECT curl sends for a proxy tunnel",
  fn: async () => {
    await using server = startEchoHeadServer();
    const res = await runCurl([
      "--verbose",
      "--http1.1",
      "--proxytunnel",
      "--proxy",
      `http://127.0.0.1:${server.port}`,
      "http://example.test:8443/",
    ]);
    assert.notEqual(res.code, 0); // The tunnel was refused on purpose.
    assert.match(res.stderr, /> CONNECT example\.test:8443 HTTP\/1\.1/);
    assert.match(res.stderr, /< X-Target: authority example\.test 8443/);
  },
});

peerTest("curl", {
  name: "a malformed request from curl is answered 400 with the reason",
  fn: async () => {
    await using server = startEchoHeadServer();
    const res = await runCurl([
      "--http1.1",
      "--include",
      "-H",
      "Host: a b",
      `http://127.0.0.1:${server.port}/`,
    ]);
    assert.match(res.stdout, /^HTTP\/1\.1 400 Bad Request\r\n/);
    assert.match(res.stdout, /Connection: close\r\n/);
    assert.match(res.stdout, /Cannot parse Host header "a b": bad host\n$/);
    const error = await server.errors.next("the refusal");
    assert.ok(error instanceof HttpError && error.status === 400);
  },
});

Deno.test("a 1 MB header is answered 431 and the connection closed without a reset", async () => {
  await using server = startEchoHeadServer();
  const conn = await Deno.connect({ hostname: "127.0.0.1", port: server.port });
  try {
    const request = encoder.encode(
      `GET / HTTP/1.1\r\n${HOST}X-Big: ${"x".repeat(1024 * 1024)}\r\n\r\n`,
    );
    // The server stops reading at 32 KiB: write while reading, or both sides could wait.
    const writing = writeAll(conn, request).catch((e) => e);
    const answer = await readToEnd(conn);
    assert.match(answer, /^HTTP\/1\.1 431 Request Header Fields Too Large\r\n/);
    assert.match(answer, /Cannot read request head: longer than 32768 bytes\n$/);
    assert.equal(await writing, undefined); // Every byte was taken: the server read on to the end.
    const error = await server.errors.next("the refusal");
    assert.ok(error instanceof HttpError && error.status === 431);
  } finally {
    conn.close();
  }
});

Deno.test("a request head that never ends is answered 408 once the head timeout passed", async () => {
  const timeoutMs = 300;
  await using server = startEchoHeadServer({ timeoutMs });
  const conn = await Deno.connect({ hostname: "127.0.0.1", port: server.port });
  try {
    const start = performance.now();
    await writeAll(conn, encoder.encode(`GET / HTTP/1.1\r\n${HOST}X-Slow: `));
    const answer = await readToEnd(conn);
    const waited = performance.now() - start;
    assert.match(answer, /^HTTP\/1\.1 408 Request Timeout\r\n/);
    assert.match(answer, /not complete within 300 ms\n$/);
    assert.ok(waited >= timeoutMs - 5, `answered after ${waited} ms`);
    const error = await server.errors.next("the refusal");
    assert.ok(error instanceof HttpError && error.status === 408);
  } finally {
    conn.close();
  }
});
