import assert from "node:assert/strict";
import { BufferedReader } from "../lib/net/buffered_reader.ts";
import { withTimeout } from "../lib/net/deadline.ts";
import { TimeoutError } from "../lib/net/errors.ts";
import { writeAll } from "../lib/net/write_all.ts";
import { printable } from "../lib/log.ts";
import { ChatRefusedError, runChat } from "../lib/relay/chat.ts";
import {
  EVENT_TIMEOUT_MS,
  joinRelay,
  runSockit,
  startSockit,
  startTcpTestServer,
} from "./_helpers.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** An output for runChat that keeps every byte and can wait for a line. */
class Collected {
  chunks: Uint8Array[] = [];
  #waiters: (() => void)[] = [];

  write(p: Uint8Array): Promise<number> {
    this.chunks.push(p.slice());
    for (const w of this.#waiters.splice(0)) w();
    return Promise.resolve(p.length);
  }

  bytes(): Uint8Array {
    const out = new Uint8Array(this.chunks.reduce((n, c) => n + c.length, 0));
    let off = 0;
    for (const c of this.chunks) {
      out.set(c, off);
      off += c.length;
    }
    return out;
  }

  text(): string {
    return decoder.decode(this.bytes());
  }

  /** Waits until the output has a line equal to `line`. */
  waitForLine(line: string): Promise<void> {
    return withTimeout(
      (async () => {
        while (!this.text().split("\n").includes(line)) {
          await new Promise<void>((resolve) => this.#waiters.push(resolve));
        }
      })(),
      EVENT_TIMEOUT_MS,
      { what: `output line ${JSON.stringify(line)} (output so far: ${this.text()})` },
    );
  }
}

/** An input for runChat that hands out lines when told to and ends when told to. */
function heldInput() {
  const pending: Uint8Array[] = [];
  let ended = false;
  let wake = () => {};
  return {
    reader: {
      async read(p: Uint8Array): Promise<number | null> {
        while (pending.length === 0 && !ended) {
          await new Promise<void>((resolve) => wake = resolve);
        }
        const chunk = pending.shift();
        if (chunk === undefined) return null;
        p.set(chunk);
        return chunk.length;
      },
    },
    send(line: string) {
      pending.push(encoder.encode(line + "\n"));
      wake();
    },
    end() {
      ended = true;
      wake();
    },
  };
}

function welcomeLines(stdout: string): string[] {
  return stdout.split("\n").filter((l) => /welcome|you are /.test(l));
}

Deno.test("printable escapes controls, bidi overrides and invalid UTF-8, keeps the rest", () => {
  assert.equal(printable("plain \u00e9\u4e16 \\ tab\there"), "plain \u00e9\u4e16 \\ tab\there");
  assert.equal(printable("a\nb\rc\x00d\x1be\x7f"), "a\\nb\\rc\\x00d\\x1be\\x7f");
  assert.equal(
    printable("\u0085\u009b\u202a\u202e\u2066\u2069"),
    [
      "\\u{85}",
      "\\u{9b}",
      "\\u{202a}",
      "\\u{202e}",
      "\\u{2066}",
      "\\u{2069}",
    ].join(""),
  );
  assert.equal(printable("\ud800x\udc00"), "\\u{d800}x\\u{dc00}");
  assert.equal(printable("\u{1f600}"), "\u{1f600}");
  // Bytes: valid UTF-8 decoded, C1 as a code point, each bad byte as \xNN.
  assert.equal(printable(new Uint8Array([0xc2, 0x85, 0x80, 0x41])), "\\u{85}\\x80A");
  assert.equal(printable(new Uint8Array([0xe2, 0x80, 0xae, 0x21])), "\\u{202e}!");
  assert.equal(
    printable(new Uint8Array([0xc0, 0xaf, 0xed, 0xa0, 0x80])),
    "\\xc0\\xaf\\xed\\xa0\\x80",
  );
  assert.equal(
    printable(new Uint8Array([0xf0, 0x9f, 0x98, 0x80, 0xf0, 0x9f])),
    "\u{1f600}\\xf0\\x9f",
  );
  assert.equal(printable(new Uint8Array([0x1b, 0x5d, 0x30, 0x3b, 0x74, 0x07])), "\\x1b]0;t\\x07");
});

Deno.test("sockit chat exits 1 when the relay is full", async () => {
  await using relay = await startSockit(["relay", "--port", "0", "--max-clients", "1"]);
  await using _first = await joinRelay(relay.port).then((j) => j.client);
  const r = await runSockit(["chat", `127.0.0.1:${relay.port}`, "--name", "late"], {
    stdin: "never sent\n",
  });
  assert.equal(r.code, 1, r.stderr);
  assert.equal(r.stdout, "* server full (1 clients), try again later\n");
  assert.match(
    r.stderr,
    /^sockit chat: Cannot join the relay at 127\.0\.0\.1:\d+: server full \(1 clients\)/,
  );
});

Deno.test("sockit chat --framed exits 1 when the framed relay is full", async () => {
  await using relay = await startSockit([
    "relay",
    "--port",
    "0",
    "--framed",
    "--max-clients",
    "1",
  ]);
  await using first = await startSockit(
    ["chat", `127.0.0.1:${relay.port}`, "--framed", "--name", "first"],
    { ready: false, stdin: true },
  );
  await first.waitForStdout(/you are first in lobby/);
  const r = await runSockit(["chat", `127.0.0.1:${relay.port}`, "--framed"], { stdin: "" });
  assert.equal(r.code, 1, r.stderr);
  assert.equal(r.stdout, "* server full (1 clients), try again later\n");
  assert.match(r.stderr, /Cannot join the relay at 127\.0\.0\.1:\d+: server full/);
});

Deno.test("sockit chat exits 1 when --name is taken, without a welcome", async () => {
  await using relay = await startSockit(["relay", "--port", "0"]);
  await using alice = await startSockit(["chat", `127.0.0.1:${relay.port}`, "--name", "alice"], {
    ready: false,
    stdin: true,
  });
  await alice.waitForStdout(/welcome alice/);
  const r = await runSockit(["chat", `127.0.0.1:${relay.port}`, "--name", "alice"], {
    stdin: "not sent\n",
  });
  assert.equal(r.code, 1, r.stderr);
  assert.equal(r.stdout, "* cannot rename to alice: the name is taken\n");
  assert.match(
    r.stderr,
    /^sockit chat: Cannot take the name alice: cannot rename to alice: the name is taken$/m,
  );
  // The refused chat never sent its input: alice sees it join and quit, and no message.
  await alice.waitForStdout(/^\* user\d+ left \(quit\)$/);
  assert.ok(!alice.stdout.some((l) => l.startsWith("[")), alice.stdout.join("\n"));
});

Deno.test("sockit chat exits 1 when --name user5 or a bad --room is refused", async () => {
  await using relay = await startSockit(["relay", "--port", "0"]);
  const a = await runSockit(["chat", `127.0.0.1:${relay.port}`, "--name", "user5"], {
    stdin: "",
  });
  assert.equal(a.code, 1, a.stderr);
  assert.match(a.stdout, /^\* cannot rename to user5: names like user1 are handed out/);
  assert.match(a.stderr, /Cannot take the name user5: cannot rename to user5/);
  assert.deepEqual(welcomeLines(a.stdout), []);

  const b = await runSockit([
    "chat",
    `127.0.0.1:${relay.port}`,
    "--name",
    "roomy",
    "--room",
    "bad/room",
  ], { stdin: "" });
  assert.equal(b.code, 1, b.stderr);
  assert.match(b.stdout, /^\* cannot join: a room name is/m);
  assert.match(b.stderr, /Cannot join room bad\/room: cannot join: a room name is/);
  assert.deepEqual(welcomeLines(b.stdout), []);
});

Deno.test("sockit chat --framed exits 1 when the name is refused", async () => {
  await using relay = await startSockit(["relay", "--port", "0", "--framed"]);
  const r = await runSockit(["chat", `127.0.0.1:${relay.port}`, "--framed", "--name", "user7"], {
    stdin: "",
  });
  assert.equal(r.code, 1, r.stderr);
  assert.match(r.stdout, /^\* cannot rename to user7: names like user1 are handed out/);
  assert.match(r.stderr, /Cannot take the name user7/);
  assert.deepEqual(welcomeLines(r.stdout), []);
});

Deno.test("sockit chat prints one welcome line with --name and --room", async () => {
  await using relay = await startSockit(["relay", "--port", "0"]);
  const r = await runSockit([
    "chat",
    `127.0.0.1:${relay.port}`,
    "--name",
    "alice",
    "--room",
    "den",
  ], { stdin: "" });
  assert.equal(r.code, 0, r.stderr);
  assert.deepEqual(welcomeLines(r.stdout), [
    "* welcome alice, you are in room den; /help lists commands",
  ]);
  // The room it is in already: no /join is needed.
  const same = await runSockit(["chat", `127.0.0.1:${relay.port}`, "--room", "lobby"], {
    stdin: "",
  });
  assert.equal(same.code, 0, same.stderr);
  assert.equal(welcomeLines(same.stdout).length, 1);
  assert.match(welcomeLines(same.stdout)[0], /^\* welcome user\d+, you are in room lobby;/);
});

Deno.test("sockit chat --framed prints one welcome line with --name and --room", async () => {
  await using relay = await startSockit(["relay", "--port", "0", "--framed"]);
  const r = await runSockit([
    "chat",
    `127.0.0.1:${relay.port}`,
    "--framed",
    "--name",
    "fa",
    "--room",
    "den",
  ], { stdin: "" });
  assert.equal(r.code, 0, r.stderr);
  assert.deepEqual(welcomeLines(r.stdout), ["* you are fa in den"]);
});

Deno.test("sockit chat names the relay when it is killed, not a user's notice", async () => {
  await using relay = await startSockit(["relay", "--port", "0"]);
  await using chat = await startSockit(["chat", `127.0.0.1:${relay.port}`, "--name", "k"], {
    ready: false,
    stdin: true,
  });
  await chat.waitForStdout(/welcome k/);
  const { client, name } = await joinRelay(relay.port);
  await chat.waitForStdout(new RegExp(`^\\* ${name} joined lobby$`));
  await relay.stop("SIGKILL");
  const status = await withTimeout(chat.status, EVENT_TIMEOUT_MS, { what: "chat to exit" });
  client.close();
  assert.equal(status.code, 1);
  const stderr = chat.stderr.join("\n");
  assert.match(stderr, /^sockit chat: connection closed: the relay (closed|reset) the connection$/);
  assert.doesNotMatch(stderr, /joined|left/);
});

Deno.test("sockit chat names the relay when it dies after another user left", async () => {
  await using relay = await startSockit(["relay", "--port", "0"]);
  await using chat = await startSockit(["chat", `127.0.0.1:${relay.port}`, "--name", "k2"], {
    ready: false,
    stdin: true,
  });
  await chat.waitForStdout(/welcome k2/);
  const other = await joinRelay(relay.port);
  await using _other = other.client;
  await other.client.writeLine("/quit");
  await chat.waitForStdout(new RegExp(`^\\* ${other.name} left \\(quit\\)$`));
  await relay.stop("SIGKILL");
  const status = await withTimeout(chat.status, EVENT_TIMEOUT_MS, { what: "chat to exit" });
  assert.equal(status.code, 1);
  const stderr = chat.stderr.join("\n");
  assert.match(stderr, /connection closed: the relay (closed|reset) the connection$/);
  assert.doesNotMatch(stderr, /left/);
});

Deno.test("sockit chat in line mode against a framed relay fails with a clear error", async () => {
  await using relay = await startSockit(["relay", "--port", "0", "--framed"]);
  const r = await runSockit(["chat", `127.0.0.1:${relay.port}`], { stdin: "hi\n" });
  assert.equal(r.code, 1);
  assert.equal(r.stdout, "");
  assert.match(
    r.stderr,
    /the relay at 127\.0\.0\.1:\d+ speaks the framed protocol: use --framed/,
  );
});

Deno.test("sockit chat --framed against a line relay says to drop --framed", async () => {
  await using relay = await startSockit(["relay", "--port", "0"]);
  const r = await runSockit(["chat", `127.0.0.1:${relay.port}`, "--framed"], { stdin: "" });
  assert.equal(r.code, 1);
  assert.match(r.stderr, /peer is not a sockit peer/);
  assert.match(r.stderr, /the relay at 127\.0\.0\.1:\d+ speaks the line protocol: drop --framed/);
});

const FORGED = ["\r* fake notice", "\x1b]0;title\x07"];

async function chatWithForger(
  escapeControls: boolean,
): Promise<{ out: Collected; name: string; code: number }> {
  await using relay = await startSockit(["relay", "--port", "0"]);
  const conn = await Deno.connect({ hostname: "127.0.0.1", port: relay.port });
  const input = heldInput();
  const out = new Collected();
  const chat = runChat(conn, { input: input.reader, output: out, escapeControls, name: "esc" });
  await out.waitForLine("* welcome esc, you are in room lobby; /help lists commands");
  const joined = await joinRelay(relay.port);
  await using peer = joined.client;
  const name = joined.name;
  for (const line of FORGED) await peer.writeLine(line);
  await peer.write(new Uint8Array([0xff, 0x41, 0xc3, 0x0a]));
  await peer.writeLine("done");
  await out.waitForLine(`[${name}] done`);
  input.end();
  const result = await chat;
  return { out, name, code: result.code };
}

Deno.test("runChat with escapeControls shows control characters of received lines", async () => {
  const { out, name, code } = await chatWithForger(true);
  assert.equal(code, 0);
  const text = out.text();
  assert.ok(text.includes(`[${name}] \\r* fake notice\n`), text);
  assert.ok(text.includes(`[${name}] \\x1b]0;title\\x07\n`), text);
  assert.ok(text.includes(`[${name}] \\xffA\\xc3\n`), text);
  // No control character but the line ends is left.
  assert.ok([...text].every((c) => c === "\n" || c >= " " && c !== "\x7f"), text);
});

Deno.test("runChat without escapeControls writes received lines byte-exact", async () => {
  const { out, name, code } = await chatWithForger(false);
  assert.equal(code, 0);
  const text = out.text();
  for (const line of FORGED) assert.ok(text.includes(`[${name}] ${line}\n`), text);
  const raw = out.bytes();
  const expected = new Uint8Array([...encoder.encode(`[${name}] `), 0xff, 0x41, 0xc3, 0x0a]);
  assert.ok(indexOfBytes(raw, expected) >= 0, "the invalid UTF-8 line is written as received");
});

function indexOfBytes(haystack: Uint8Array, needle: Uint8Array): number {
  outer: for (let i = 0; i + needle.length <= haystack.length; i++) {
    for (let k = 0; k < needle.length; k++) if (haystack[i + k] !== needle[k]) continue outer;
    return i;
  }
  return -1;
}

Deno.test("runChat prints traffic that arrives during setup and one welcome at the end", async () => {
  // A scripted relay: its answer to /nick comes after a message and a notice.
  await using server = startTcpTestServer(async (conn) => {
    const reader = new BufferedReader(conn);
    await writeAll(
      conn,
      encoder.encode("* welcome user1, you are in room lobby; /help lists commands\n"),
    );
    assert.equal(decoder.decode((await reader.readLine(100))!), "/nick neo");
    await writeAll(
      conn,
      encoder.encode(
        "[bob] early\n* carol joined lobby\n" +
          "* welcome neo, you are in room lobby; /help lists commands\n",
      ),
    );
    assert.equal(decoder.decode((await reader.readLine(100))!), "/join den");
    await writeAll(
      conn,
      encoder.encode("* welcome neo, you are in room den; /help lists commands\n"),
    );
    assert.equal(decoder.decode((await reader.readLine(100))!), "first input");
    assert.equal(decoder.decode((await reader.readLine(100))!), "/quit");
    await writeAll(conn, encoder.encode("* bye\n"));
  });
  const conn = await Deno.connect({ hostname: "127.0.0.1", port: server.port });
  const input = heldInput();
  const out = new Collected();
  const chat = runChat(conn, {
    input: input.reader,
    output: out,
    name: "neo",
    room: "den",
    escapeControls: false,
  });
  await out.waitForLine("* welcome neo, you are in room den; /help lists commands");
  input.send("first input");
  input.end();
  const result = await chat;
  assert.deepEqual(result, { code: 0, reason: "quit" });
  assert.equal(
    out.text(),
    "[bob] early\n* carol joined lobby\n" +
      "* welcome neo, you are in room den; /help lists commands\n* bye\n",
  );
});

Deno.test("runChat gives up on a relay that does not answer /nick in time", async () => {
  await using server = startTcpTestServer(async (conn) => {
    await writeAll(
      conn,
      encoder.encode("* welcome user1, you are in room lobby; /help lists commands\n"),
    );
    // Never answers; reads until chat gives up.
    const buf = new Uint8Array(1024);
    while ((await conn.read(buf)) !== null) { /* keep reading */ }
  });
  const conn = await Deno.connect({ hostname: "127.0.0.1", port: server.port });
  const out = new Collected();
  await assert.rejects(
    runChat(conn, {
      input: heldInput().reader,
      output: out,
      name: "slowpoke",
      setupTimeoutMs: 200,
    }),
    (error: unknown) =>
      error instanceof TimeoutError && /the relay's answer to \/nick/.test(error.message),
  );
  assert.equal(out.text(), "");
});

Deno.test("runChat throws ChatRefusedError for a refused name", async () => {
  await using relay = await startSockit(["relay", "--port", "0"]);
  const conn = await Deno.connect({ hostname: "127.0.0.1", port: relay.port });
  const out = new Collected();
  await assert.rejects(
    runChat(conn, { input: heldInput().reader, output: out, name: "bad name!" }),
    ChatRefusedError,
  );
  assert.match(out.text(), /^\* cannot rename: use 1 to 32 letters/);
});

Deno.test("runChat ends with exit 0 when /quit is typed", async () => {
  await using relay = await startSockit(["relay", "--port", "0"]);
  const conn = await Deno.connect({ hostname: "127.0.0.1", port: relay.port });
  const input = heldInput();
  const out = new Collected();
  const chat = runChat(conn, { input: input.reader, output: out, escapeControls: false });
  input.send("/quit");
  const result = await withTimeout(chat, EVENT_TIMEOUT_MS, { what: "the chat to end" });
  assert.deepEqual(result, { code: 0, reason: "quit" });
  assert.match(out.text(), /\* bye\n$/);
});

Deno.test("sockit chat refuses a --name that spans lines with exit 2", async () => {
  const r = await runSockit(["chat", "127.0.0.1:9", "--name", "a\nhello everyone"]);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /Cannot use --name: it must fit on one line/);
});
