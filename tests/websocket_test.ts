/**
 * Tests of the server-side WebSocket (`lib/net/websocket.ts`, `websocket_conn.ts`,
 * `websocket_frame.ts`) and its line adapter (`lib/relay/web/websocket_lines.ts`) over real
 * loopback sockets. Deno's own `WebSocket` (an independent implementation) is the client of
 * the happy paths; hand-built frames over `Deno.connect` are the client of fragmentation and of
 * every hostile case, each of which must close that client only, with the right code, while a
 * healthy client on the same server goes on.
 */

import assert from "node:assert/strict";
import { BufferedReader } from "../lib/net/buffered_reader.ts";
import { Connection } from "../lib/net/connection.ts";
import { withTimeout } from "../lib/net/deadline.ts";
import { writeAll } from "../lib/net/write_all.ts";
import {
  acceptWebSocket,
  CloseCode,
  type CloseStatus,
  Opcode,
  type WebSocketConn,
  WebSocketError,
} from "../lib/net/websocket.ts";
import { encodeClosePayload } from "../lib/net/websocket_frame.ts";
import { webSocketLines } from "../lib/relay/web/websocket_lines.ts";
import { EVENT_TIMEOUT_MS, peerTest } from "./_helpers.ts";
import { EventQueue, runCurl, startHttpTestServer } from "./_http.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();
const bytes = (text: string) => encoder.encode(text);
/** The RFC 6455 section 1.3 example key and its accept value. */
const KEY = "dGhlIHNhbXBsZSBub25jZQ==";
const ACCEPT = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";
const MiB = 1024 * 1024;

/**
 * A WebSocket server on /ws that echoes (text as text, binary as binary; `close-me` makes it
 * close with 4000). Query options per connection: `max` (maxMessageBytes), `idle`
 * (idleTimeoutMs), so a hostile client can get a tight limit while the healthy one keeps the
 * defaults. `closes` gets each connection's final status.
 */
function startWsServer(serve: (ws: WebSocketConn) => Promise<void> = echo) {
  const closes = new EventQueue<CloseStatus>();
  const server = startHttpTestServer(async ({ conn, reader, head }) => {
    const query = new URLSearchParams(head.target.form === "origin" ? head.target.query : "");
    const ws = await acceptWebSocket(conn, head, {
      reader,
      maxMessageBytes: query.has("max") ? Number(query.get("max")) : undefined,
      idleTimeoutMs: query.has("idle") ? Number(query.get("idle")) : undefined,
    });
    try {
      await serve(ws);
    } finally {
      closes.push(await ws.closed);
    }
  });
  return Object.assign(server, { closes });
}

async function echo(ws: WebSocketConn): Promise<void> {
  let message;
  while ((message = await ws.readMessage()) !== null) {
    if (message.type === "text" && message.data === "close-me") await ws.close(4000, "asked");
    else if (message.type === "text") await ws.sendText(message.data);
    else await ws.sendBinary(message.data);
  }
}

/** Deno's WebSocket client, opened, with its messages and its close event as events. */
async function openClient(port: number) {
  const ws = new WebSocket(`ws://127.0.0.1:${port}/ws`);
  ws.binaryType = "arraybuffer";
  const messages = new EventQueue<string | ArrayBuffer>();
  const closed = new Promise<CloseEvent>((resolve) => (ws.onclose = resolve));
  ws.onmessage = (e) => messages.push(e.data);
  await withTimeout(new Promise((resolve) => (ws.onopen = resolve)), EVENT_TIMEOUT_MS, {
    what: "the WebSocket to open",
  });
  const close = async () => {
    ws.close(1000, "done");
    await closed;
  };
  return { ws, messages, closed, close };
}

/** A frame as a client sends it: masked unless told otherwise, in the length form asked. */
function clientFrame(
  opcode: number,
  payload: Uint8Array,
  options: { fin?: boolean; masked?: boolean; rsv?: number; form?: 7 | 16 | 64 } = {},
): Uint8Array {
  const { fin = true, masked = true, rsv = 0 } = options;
  const n = payload.length;
  const form = options.form ?? (n < 126 ? 7 : n < 65536 ? 16 : 64);
  const head = [(fin ? 0x80 : 0) | (rsv << 4) | opcode];
  const m = masked ? 0x80 : 0;
  if (form === 7) head.push(m | n);
  else if (form === 16) head.push(m | 126, n >> 8, n & 0xff);
  else head.push(m | 127, 0, 0, 0, 0, n >>> 24, (n >> 16) & 0xff, (n >> 8) & 0xff, n & 0xff);
  const mask = masked ? crypto.getRandomValues(new Uint8Array(4)) : new Uint8Array(0);
  const body = payload.map((b, i) => (masked ? b ^ mask[i & 3] : b));
  return new Uint8Array([...head, ...mask, ...body]);
}

/** A client speaking raw frames over TCP. */
class RawClient implements AsyncDisposable {
  readonly conn: Deno.TcpConn;
  readonly reader: BufferedReader;

  private constructor(conn: Deno.TcpConn) {
    this.conn = conn;
    this.reader = new BufferedReader(conn, { bufferSize: 4 * MiB });
  }

  /** Connects and upgrades `path`; checks the 101 and its accept value. */
  static async open(port: number, path = "/ws", extra = ""): Promise<RawClient> {
    const client = new RawClient(await Deno.connect({ hostname: "127.0.0.1", port }));
    await client.write(bytes(
      `GET ${path} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nUpgrade: websocket\r\n` +
        `Connection: Upgrade\r\nSec-WebSocket-Key: ${KEY}\r\nSec-WebSocket-Version: 13\r\n${extra}\r\n`,
    ));
    const head = await client.responseHead();
    assert.match(head[0], /^HTTP\/1\.1 101 Switching Protocols$/);
    assert.ok(head.includes(`Sec-WebSocket-Accept: ${ACCEPT}`), head.join("\n"));
    return client;
  }

  async responseHead(): Promise<string[]> {
    const lines: string[] = [];
    while (true) {
      const line = await withTimeout(this.reader.readLine(8192), EVENT_TIMEOUT_MS, {
        what: "a response line",
      });
      if (line === null || line.length === 0) return lines;
      lines.push(decoder.decode(line));
    }
  }

  async write(data: Uint8Array): Promise<void> {
    await writeAll(this.conn, data);
  }

  send(opcode: number, payload: Uint8Array, options: Parameters<typeof clientFrame>[2] = {}) {
    return this.write(clientFrame(opcode, payload, options));
  }

  /** The next server frame; server frames are never masked, never use reserved bits. */
  readFrame(): Promise<{ fin: boolean; opcode: number; payload: Uint8Array; form: number }> {
    return withTimeout(
      (async () => {
        const b0 = await this.reader.readU8();
        const b1 = await this.reader.readU8();
        assert.equal(b1 & 0x80, 0, "server frames are not masked");
        assert.equal(b0 & 0x70, 0, "no reserved bits");
        let n = b1 & 0x7f;
        const form = n < 126 ? 7 : n === 126 ? 16 : 64;
        if (n === 126) n = await this.reader.readU16();
        else if (n === 127) {
          n = (await this.reader.readU32()) * 2 ** 32 + await this.reader.readU32();
        }
        const payload = await this.reader.readExact(n, 4 * MiB);
        return { fin: (b0 & 0x80) !== 0, opcode: b0 & 0x0f, payload, form };
      })(),
      EVENT_TIMEOUT_MS,
      { what: "a frame from the server" },
    );
  }

  /** The next frame must be a close with `code`; then the server ends the connection. */
  async expectClose(code: number): Promise<string> {
    const frame = await this.readFrame();
    assert.equal(frame.opcode, Opcode.Close, `expected a close frame, got opcode ${frame.opcode}`);
    assert.equal((frame.payload[0] << 8) | frame.payload[1], code);
    await this.expectEnd();
    return decoder.decode(frame.payload.subarray(2));
  }

  /** The server closes its side: end of input, not a reset. */
  async expectEnd(): Promise<void> {
    const n = await withTimeout(this.reader.read(new Uint8Array(1)), EVENT_TIMEOUT_MS, {
      what: "end of input",
    });
    assert.equal(n, null);
    this.conn.close(); // As a client does once the server closed: the server stops lingering.
  }

  [Symbol.asyncDispose](): Promise<void> {
    try {
      this.conn.close();
    } catch {
      // Closed.
    }
    return Promise.resolve();
  }
}

Deno.test("WebSocket echoes text and binary messages to Deno's WebSocket client", async () => {
  await using server = startWsServer();
  const client = await openClient(server.port);
  for (const text of ["hello", "", "h\u00e9llo \u2713 \u{1f389}"]) {
    client.ws.send(text);
    assert.equal(await client.messages.next("the echo"), text);
  }
  const binary = Uint8Array.from({ length: 256 }, (_, i) => i);
  client.ws.send(binary);
  assert.deepEqual(new Uint8Array(await client.messages.next("the echo") as ArrayBuffer), binary);
  await client.close();
  assert.equal((await server.closes.next("the close")).code, CloseCode.Normal);
});

Deno.test("WebSocket takes a 1 MiB message (its default limit) and refuses one byte more with 1009", async () => {
  await using server = startWsServer();
  const client = await openClient(server.port);
  const text = "x".repeat(MiB);
  client.ws.send(text);
  assert.equal(await client.messages.next("the 1 MiB echo"), text);
  const binary = new Uint8Array(MiB).fill(7);
  client.ws.send(binary);
  assert.equal((await client.messages.next("the echo") as ArrayBuffer).byteLength, MiB);
  client.ws.send(new Uint8Array(MiB + 1));
  const closed = await withTimeout(client.closed, EVENT_TIMEOUT_MS, { what: "the close" });
  assert.equal(closed.code, CloseCode.MessageTooBig);
  const error = await server.errors.next("the error");
  assert.ok(error instanceof WebSocketError && error.code === 1009, String(error));
});

Deno.test("WebSocket close() runs the close handshake with Deno's client", async () => {
  await using server = startWsServer();
  const client = await openClient(server.port);
  client.ws.send("close-me");
  const closed = await withTimeout(client.closed, EVENT_TIMEOUT_MS, { what: "the close" });
  assert.deepEqual([closed.code, closed.reason, closed.wasClean], [4000, "asked", true]);
  assert.equal((await server.closes.next("the server's close")).code, 4000);
});

Deno.test("WebSocket echoes a client's close frame, then closes TCP itself", async () => {
  await using server = startWsServer();
  await using raw = await RawClient.open(server.port);
  await raw.send(Opcode.Close, encodeClosePayload(1000, "bye"));
  assert.equal(await raw.expectClose(1000), "");
  assert.deepEqual(await server.closes.next("the close"), { code: 1000, reason: "bye" });
  await using quiet = await RawClient.open(server.port);
  await quiet.send(Opcode.Close, new Uint8Array(0)); // No status: none comes back.
  const frame = await quiet.readFrame();
  assert.deepEqual([frame.opcode, frame.payload.length], [Opcode.Close, 0]);
  await quiet.expectEnd();
  assert.equal((await server.closes.next("the close")).code, CloseCode.NoStatus);
});

Deno.test("WebSocket gathers fragments, answers a ping between them and skips pongs", async () => {
  await using server = startWsServer();
  await using raw = await RawClient.open(server.port);
  const euro = bytes("\u20ac"); // 3 bytes: split across fragments, still one valid message
  await raw.send(Opcode.Text, bytes("price: "), { fin: false });
  await raw.send(Opcode.Continuation, euro.subarray(0, 1), { fin: false });
  await raw.send(Opcode.Ping, bytes("are you there"));
  await raw.send(Opcode.Pong, bytes("unasked"));
  await raw.send(Opcode.Continuation, new Uint8Array([...euro.subarray(1), ...bytes("5")]));
  const pong = await raw.readFrame();
  assert.deepEqual([pong.opcode, decoder.decode(pong.payload)], [Opcode.Pong, "are you there"]);
  const message = await raw.readFrame();
  assert.deepEqual([message.opcode, message.fin], [Opcode.Text, true]);
  assert.equal(decoder.decode(message.payload), "price: \u20ac5");
  await raw.send(Opcode.Binary, new Uint8Array([1, 2]), { fin: false });
  await raw.send(Opcode.Continuation, new Uint8Array([3]));
  assert.deepEqual((await raw.readFrame()).payload, new Uint8Array([1, 2, 3]));
});

Deno.test("WebSocket reads the 16-bit and 64-bit length forms and answers in the shortest", async () => {
  await using server = startWsServer();
  await using raw = await RawClient.open(server.port);
  for (const [n, form, replyForm] of [[200, 16, 16], [70_000, 64, 64], [5, 64, 7]] as const) {
    const payload = Uint8Array.from({ length: n }, (_, i) => i % 251);
    await raw.send(Opcode.Binary, payload, { form });
    const reply = await raw.readFrame();
    assert.equal(reply.form, replyForm);
    assert.deepEqual(reply.payload, payload);
  }
});

/**
 * Registers a hostile-client test: `act` sends bad frames on a raw client (upgraded on
 * `path`); it must get a close with `code` and end of input, the server's read must reject
 * with that code, and a healthy Deno client on the same server must keep echoing.
 */
function hostile(name: string, code: number, act: (raw: RawClient) => Promise<void>, path = "/ws") {
  Deno.test(`WebSocket closes a client that ${name} with ${code}`, async () => {
    await using server = startWsServer();
    const healthy = await openClient(server.port);
    await using raw = await RawClient.open(server.port, path);
    await act(raw);
    await raw.expectClose(code);
    const error = await server.errors.next("the server's error");
    if (code === CloseCode.GoingAway) assert.equal((error as Error).name, "TimeoutError");
    else assert.ok(error instanceof WebSocketError && error.code === code, String(error));
    healthy.ws.send("still here");
    assert.equal(await healthy.messages.next("the healthy echo"), "still here");
    await healthy.close();
  });
}

hostile(
  "sends an unmasked frame",
  1002,
  (raw) => raw.send(Opcode.Text, bytes("hi"), { masked: false }),
);
hostile("announces a 64-bit length with its top bit set", 1009, (raw) =>
  // Only the header: the refusal must come before any payload is read (or allocated).
  raw.write(new Uint8Array([0x82, 0xff, 0x80, 0, 0, 0, 0, 0, 0, 1, 1, 2, 3, 4])));
hostile(
  "announces 1 GiB in one frame",
  1009,
  (raw) => raw.write(new Uint8Array([0x82, 0xff, 0, 0, 0, 0, 0x40, 0, 0, 0, 1, 2, 3, 4])),
);
hostile(
  "sends a frame over the configured limit",
  1009,
  (raw) => raw.send(Opcode.Text, new Uint8Array(2000).fill(0x61)),
  "/ws?max=1000",
);
hostile("sends fragments that together pass the limit", 1009, async (raw) => {
  await raw.send(Opcode.Binary, new Uint8Array(600), { fin: false });
  await raw.send(Opcode.Continuation, new Uint8Array(600));
}, "/ws?max=1000");
hostile(
  "sends a ping longer than 125 bytes",
  1002,
  (raw) => raw.send(Opcode.Ping, new Uint8Array(126)),
);
hostile("fragments a ping", 1002, (raw) => raw.send(Opcode.Ping, bytes("p"), { fin: false }));
hostile(
  "sets RSV1 without an extension",
  1002,
  (raw) => raw.send(Opcode.Text, bytes("hi"), { rsv: 4 }),
);
hostile(
  "sets RSV3 without an extension",
  1002,
  (raw) => raw.send(Opcode.Text, bytes("hi"), { rsv: 1 }),
);
hostile(
  "sends text that is not UTF-8",
  1007,
  (raw) => raw.send(Opcode.Text, new Uint8Array([0x68, 0xc3, 0x28])),
);
hostile("sends fragments that are not UTF-8 together", 1007, async (raw) => {
  await raw.send(Opcode.Text, new Uint8Array([0x68, 0xe2, 0x82]), { fin: false });
  await raw.send(Opcode.Continuation, new Uint8Array([0x41])); // 0x41 cannot end U+20AC
});
hostile(
  "sends a close reason that is not UTF-8",
  1007,
  (raw) => raw.send(Opcode.Close, new Uint8Array([0x03, 0xe8, 0xff])),
);
hostile(
  "sends a continuation with no message to continue",
  1002,
  (raw) => raw.send(Opcode.Continuation, bytes("orphan")),
);
hostile("starts a new message inside a fragmented one", 1002, async (raw) => {
  await raw.send(Opcode.Text, bytes("part"), { fin: false });
  await raw.send(Opcode.Text, bytes("another"));
});
hostile("sends opcode 0x3", 1002, (raw) => raw.send(0x3, bytes("?")));
hostile("sends opcode 0xB", 1002, (raw) => raw.send(0xb, bytes("?")));
hostile(
  "sends a 1-byte close payload",
  1002,
  (raw) => raw.send(Opcode.Close, new Uint8Array([0x03])),
);
hostile(
  "sends close code 1005, which is never sent",
  1002,
  (raw) => raw.send(Opcode.Close, new Uint8Array([0x03, 0xed])),
);
hostile(
  "sends close code 2999",
  1002,
  (raw) => raw.send(Opcode.Close, new Uint8Array([0x0b, 0xb7])),
);
hostile("stays silent past the idle timeout", 1001, () => Promise.resolve(), "/ws?idle=200");

Deno.test("acceptWebSocket() refuses a bad upgrade with the status RFC 6455 asks for", async () => {
  const server = startWsServer();
  await using _ = server;
  const ask = async (request: string) => {
    const conn = await Deno.connect({ hostname: "127.0.0.1", port: server.port });
    try {
      await writeAll(conn, bytes(request));
      return await new Response(conn.readable).text();
    } finally {
      try {
        conn.close();
      } catch {
        // Closed by the readable.
      }
    }
  };
  const base = (lines: Record<string, string>, method = "GET") =>
    `${method} /ws HTTP/1.1\r\n` +
    Object.entries({
      Host: `127.0.0.1:${server.port}`,
      Upgrade: "websocket",
      Connection: "Upgrade",
      "Sec-WebSocket-Key": KEY,
      "Sec-WebSocket-Version": "13",
      ...lines,
    }).filter(([, v]) => v !== "").map(([k, v]) => `${k}: ${v}\r\n`).join("") + "\r\n";
  const cases: [string, string, RegExp][] = [
    ["POST", base({}, "POST"), /^HTTP\/1\.1 405 [^]*\r\nAllow: GET\r\n/],
    ["no Upgrade", base({ Upgrade: "" }), /^HTTP\/1\.1 426 [^]*\r\nUpgrade: websocket\r\n/],
    ["no upgrade token", base({ Connection: "keep-alive" }), /^HTTP\/1\.1 400 /],
    [
      "version 8",
      base({ "Sec-WebSocket-Version": "8" }),
      /^HTTP\/1\.1 426 [^]*\r\nSec-WebSocket-Version: 13\r\n/,
    ],
    [
      "a short key",
      base({ "Sec-WebSocket-Key": "c2hvcnQ=" }),
      /^HTTP\/1\.1 400 [^]*Sec-WebSocket-Key/,
    ],
    ["another site's page", base({ Origin: "http://evil.example" }), /^HTTP\/1\.1 403 /],
  ];
  for (const [what, request, expected] of cases) {
    assert.match(await ask(request), expected, what);
    assert.ok(await server.errors.next(what));
  }
  // The page's own origin is welcome.
  await using same = await RawClient.open(
    server.port,
    "/ws",
    `Origin: http://127.0.0.1:${server.port}\r\n`,
  );
  await same.send(Opcode.Text, bytes("ok"));
  assert.equal(decoder.decode((await same.readFrame()).payload), "ok");
});

peerTest("curl", {
  name: "acceptWebSocket() answers a plain curl GET of /ws with 426",
  fn: async () => {
    await using server = startWsServer();
    const res = await runCurl(["--http1.1", "--include", `http://127.0.0.1:${server.port}/ws`]);
    assert.match(res.stdout, /^HTTP\/1\.1 426 Upgrade Required\r\n/);
    assert.match(res.stdout, /\r\nUpgrade: websocket\r\n/);
    assert.ok(await server.errors.next("the refusal"));
  },
});

Deno.test("webSocketLines() splits messages into lines and sends each line as a message", async () => {
  const lines = new EventQueue<string>();
  await using server = startWsServer(async (ws) => {
    const adapter = webSocketLines(ws);
    for await (const line of adapter) {
      lines.push(line);
      if (line === "done") {
        // Invalid UTF-8 from a line client arrives as U+FFFD: text frames must be UTF-8.
        await adapter.write(
          new Uint8Array([...bytes("[bob] a\n* b\r\n[bob] c"), 0xff, 0x0a, 0x78]),
        );
        adapter.setCloseStatus(CloseCode.GoingAway, "server shutting down");
        await adapter.closeWrite();
      }
    }
  });
  const client = await openClient(server.port);
  for (const text of ["one", "two\nthree", "four\r\n", "", "done"]) client.ws.send(text);
  for (const want of ["one", "two", "three", "four", "", "done"]) {
    assert.equal(await lines.next(want), want);
  }
  for (const want of ["[bob] a", "* b", "[bob] c\ufffd"]) {
    assert.equal(await client.messages.next(want), want);
  }
  const closed = await withTimeout(client.closed, EVENT_TIMEOUT_MS, { what: "the close" });
  assert.deepEqual([closed.code, closed.reason], [1001, "server shutting down"]);
  assert.equal(client.messages.pending, 0); // The partial "x" was never sent.
});

Deno.test("webSocketLines() refuses a binary message with 1003", async () => {
  await using server = startWsServer(async (ws) => {
    await webSocketLines(ws).readLine();
  });
  const client = await openClient(server.port);
  client.ws.send(new Uint8Array([1, 2, 3]));
  const closed = await withTimeout(client.closed, EVENT_TIMEOUT_MS, { what: "the close" });
  assert.equal(closed.code, CloseCode.UnsupportedData);
  const error = await server.errors.next("the error");
  assert.ok(error instanceof WebSocketError && error.code === 1003);
});

Deno.test("a WebSocket plugs into Connection as a line client: lines in, lines out", async () => {
  await using server = startWsServer(async (ws) => {
    // What the relay runs per client, with the WebSocket as its socket.
    const connection = new Connection(webSocketLines(ws), { readBufferSize: 64 * 1024 });
    const info = await connection.run(async (s) => {
      s.send(bytes("* welcome user1, you are in room lobby; /help lists commands\n"));
      let line;
      while ((line = await s.reader.readLine(1024)) !== null) {
        s.send(bytes(`[user1] ${decoder.decode(line)}\n`));
      }
    });
    assert.equal(info.reason.kind, "peer-closed");
  });
  const client = await openClient(server.port);
  assert.match(await client.messages.next("the welcome") as string, /^\* welcome user1,/);
  client.ws.send("hello\nworld");
  assert.equal(await client.messages.next("line 1"), "[user1] hello");
  assert.equal(await client.messages.next("line 2"), "[user1] world");
  await client.close();
  assert.equal((await server.closes.next("the close")).code, CloseCode.Normal);
});
