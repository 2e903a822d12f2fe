import assert from "node:assert/strict";
import { LimitError, ProtocolError, TimeoutError } from "../lib/net/errors.ts";
import { withTimeout } from "../lib/net/deadline.ts";
import {
  CrowdedError,
  Mailbox,
  MAILBOX_DEFAULTS,
  MailboxConnectionError,
  MailboxError,
  type MailboxOptions,
  WelcomeError,
} from "../lib/wormhole/mailbox.ts";
import { EVENT_TIMEOUT_MS, freePort } from "./_helpers.ts";
import {
  DEBIAN_PYTHON,
  missingPythonModule,
  missingWormholeServers,
  startMailbox,
  WORMHOLE_APPID,
  wormholeTest,
} from "./_wormhole.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();
const bytes = (text: string) => encoder.encode(text);

function connect(url: string, options: Partial<MailboxOptions> = {}): Promise<Mailbox> {
  return Mailbox.connect(url, { appId: WORMHOLE_APPID, timeoutMs: EVENT_TIMEOUT_MS, ...options });
}

/** Resolves how long `promise` took to reject, and with what. */
async function rejection(promise: Promise<unknown>): Promise<{ error: Error; ms: number }> {
  const start = performance.now();
  try {
    await promise;
  } catch (error) {
    return { error: error as Error, ms: performance.now() - start };
  }
  throw new assert.AssertionError({ message: "expected a rejection" });
}

// ---------------------------------------------------------------------------------------------
// Against the Debian mailbox server.

wormholeTest(missingWormholeServers, {
  name: "two mailboxes meet on a nameplate and exchange messages both ways, in order, " +
    "without their own echoes",
  fn: async () => {
    await using server = await startMailbox();
    await using a = await connect(server.url);
    await using b = await connect(server.url);
    assert.notEqual(a.side, b.side);
    assert.match(a.side, /^[0-9a-f]{10}$/);

    const nameplate = await a.allocate();
    assert.match(nameplate, /^[0-9]+$/);
    assert.deepEqual(await b.list(), [nameplate]);
    const mailboxA = await a.claim(nameplate);
    await a.open(mailboxA);
    const mailboxB = await b.claim(nameplate);
    assert.equal(mailboxB, mailboxA);
    await b.open(mailboxB);

    await a.add("pake", bytes("pake from a"));
    await a.add("version", bytes("version from a"));
    await a.add("0", new Uint8Array([0, 1, 0xff]));
    await b.add("pake", bytes("pake from b"));
    await b.add("0", bytes("b0"));
    await b.add("1", bytes("b1"));

    // b asks for "version" first: the "pake" before it stays buffered, in order.
    const version = await b.next("version");
    assert.equal(version.side, a.side);
    assert.equal(decoder.decode(version.body), "version from a");
    const pake = await b.next("pake");
    assert.equal(decoder.decode(pake.body), "pake from a");
    assert.deepEqual((await b.next("0")).body, new Uint8Array([0, 1, 0xff]));

    // a gets b's messages in the order b added them, none of its own.
    const any = () => true;
    const fromB = [await a.next(any), await a.next(any), await a.next(any)];
    assert.deepEqual(fromB.map((m) => [m.side, m.phase, decoder.decode(m.body)]), [
      [b.side, "pake", "pake from b"],
      [b.side, "0", "b0"],
      [b.side, "1", "b1"],
    ]);
    // b's "done" is sent after all of a's echoes on a's connection: nothing else is buffered.
    await b.add("99", new Uint8Array());
    assert.equal((await a.next(any)).phase, "99");
    await assert.rejects(a.next(any, { timeoutMs: 0 }), TimeoutError);

    await a.release();
    await b.close("happy");
    await a.close("happy");
    // Both released the nameplate: it is free again.
    await using c = await connect(server.url);
    assert.deepEqual(await c.list(), []);
    await assert.rejects(a.add("late", new Uint8Array()), /mailbox: it is closed/);
  },
});

wormholeTest(missingWormholeServers, {
  name: "a third side claiming a nameplate gets CrowdedError and can still close",
  fn: async () => {
    await using server = await startMailbox();
    await using a = await connect(server.url);
    await using b = await connect(server.url);
    await using c = await connect(server.url);
    const nameplate = await a.allocate();
    await a.open(await a.claim(nameplate));
    await b.open(await b.claim(nameplate));

    const { error } = await rejection(c.claim(nameplate));
    assert.ok(error instanceof CrowdedError, String(error));
    assert.equal(error.request, "claim");
    assert.match(error.message, /^mailbox server refused claim: "crowded"/);
    // After a refusal only release/close are allowed.
    await assert.rejects(c.allocate(), CrowdedError);
    await c.close("errory");

    // The two who met are unaffected.
    await a.add("pake", bytes("x"));
    assert.equal(decoder.decode((await b.next("pake")).body), "x");
    await a.close("happy");
    await b.close("happy");
  },
});

wormholeTest(missingWormholeServers, {
  name: "disposing a mailbox without close() releases its nameplate (mood errory)",
  fn: async () => {
    await using server = await startMailbox();
    let nameplate: string;
    {
      await using a = await connect(server.url);
      nameplate = await a.allocate();
      await a.open(await a.claim(nameplate));
    }
    await using b = await connect(server.url);
    assert.equal((await b.list()).includes(nameplate), false);
  },
});

/** The Python client (the Debian `wormhole` library) with code `code`, reporting its result. */
const PYTHON_PEER = `
import sys
from twisted.internet import defer, task
import wormhole
from wormhole.errors import WrongPasswordError

@defer.inlineCallbacks
def main(reactor, url, appid, code):
    w = wormhole.create(appid, url, reactor)
    w.set_code(code)
    try:
        yield w.get_verifier()
        print("verified")
    except WrongPasswordError:
        print("WrongPasswordError")
    try:
        yield w.close()
    except WrongPasswordError:
        pass

task.react(main, sys.argv[1:])
`;

wormholeTest(() => missingWormholeServers() ?? missingPythonModule("wormhole"), {
  name: "the Python client's mailbox layer and ours exchange messages through one mailbox",
  fn: async () => {
    await using server = await startMailbox();
    await using ours = await connect(server.url);
    const nameplate = await ours.allocate();
    await ours.open(await ours.claim(nameplate));
    const child = new Deno.Command(DEBIAN_PYTHON, {
      args: ["-c", PYTHON_PEER, server.url, WORMHOLE_APPID, `${nameplate}-interop-test`],
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    try {
      // Python -> us: its PAKE message, {"pake_v1": hex}.
      const pake = await ours.next("pake");
      assert.notEqual(pake.side, ours.side);
      const payload = JSON.parse(decoder.decode(pake.body));
      assert.match(payload.pake_v1, /^([0-9a-f]{2})+$/);
      // Us -> Python: a PAKE message without pake_v1, which it must call a wrong password.
      await ours.add("pake", bytes(JSON.stringify({ not_pake: true })));
      const out = await withTimeout(child.output(), EVENT_TIMEOUT_MS, { what: "python" });
      assert.equal(
        decoder.decode(out.stdout).trim(),
        "WrongPasswordError",
        decoder.decode(out.stderr),
      );
      await ours.close("scary");
    } finally {
      try {
        child.kill("SIGKILL");
      } catch { /* exited */ }
    }
  },
});

// ---------------------------------------------------------------------------------------------
// Against a fake server that misbehaves on purpose.

type Json = Record<string, unknown>;

interface FakeScript {
  /** What to send when a client connects. @default {a welcome} */
  onOpen?: (send: (frame: Json | string) => void, close: () => void) => void;
  /** What to answer a client's message with. @default {like the real server} */
  onMessage?: (message: Json, send: (frame: Json | string) => void, close: () => void) => void;
}

interface FakeMailbox extends AsyncDisposable {
  url: string;
  /** Every message the clients sent. */
  received: Json[];
}

/** Answers like the real server: ack, then the direct answer. */
function behave(message: Json, send: (frame: Json | string) => void): void {
  send({ type: "ack", id: message.id });
  const answers: Record<string, Json> = {
    allocate: { type: "allocated", nameplate: "7" },
    claim: { type: "claimed", mailbox: "mb1" },
    release: { type: "released" },
    close: { type: "closed" },
    list: { type: "nameplates", nameplates: [{ id: "7" }] },
  };
  const answer = answers[message.type as string];
  if (answer) send(answer);
}

function startFakeMailbox(script: FakeScript = {}): FakeMailbox {
  const sockets = new Set<WebSocket>();
  const received: Json[] = [];
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, (request) => {
    const { socket, response } = Deno.upgradeWebSocket(request);
    sockets.add(socket);
    const send = (frame: Json | string) => {
      if (socket.readyState === WebSocket.OPEN) {
        socket.send(typeof frame === "string" ? frame : JSON.stringify(frame));
      }
    };
    const close = () => socket.close();
    socket.onopen = () =>
      (script.onOpen ?? ((s) => s({ type: "welcome", welcome: {} })))(send, close);
    socket.onmessage = (event) => {
      const message = JSON.parse(event.data);
      received.push(message);
      (script.onMessage ?? behave)(message, send, close);
    };
    socket.onclose = () => sockets.delete(socket);
    return response;
  });
  return {
    url: `ws://127.0.0.1:${server.addr.port}/v1`,
    received,
    async [Symbol.asyncDispose]() {
      for (const socket of sockets) socket.close();
      await server.shutdown();
    },
  };
}

Deno.test("Mailbox.connect() to a port nobody listens on fails at once, naming the URL", async () => {
  const url = `ws://127.0.0.1:${freePort()}/v1`;
  const { error, ms } = await rejection(connect(url));
  assert.ok(error instanceof MailboxConnectionError, String(error));
  assert.ok(error.message.startsWith(`cannot reach the mailbox server at ${url}: `), error.message);
  assert.ok(ms < EVENT_TIMEOUT_MS / 2, `took ${ms} ms`);
  await assert.rejects(connect("not a url"), /cannot reach the mailbox server at not a url: /);
});

Deno.test("Mailbox.connect() binds with our app id, side and version, and passes the motd", async () => {
  await using fake = startFakeMailbox({
    onOpen: (send) => send({ type: "welcome", welcome: { motd: "be nice", unknown: 1 } }),
  });
  const motds: string[] = [];
  await using mailbox = await connect(fake.url, {
    side: "0123456789",
    onMotd: (m) => motds.push(m),
  });
  assert.deepEqual(motds, ["be nice"]);
  const [bind] = fake.received;
  assert.equal(bind.type, "bind");
  assert.equal(bind.appid, WORMHOLE_APPID);
  assert.equal(bind.side, "0123456789");
  assert.equal((bind.client_version as string[])[0], "sockit");
  assert.match(bind.id as string, /^[0-9a-f]{8}$/);
  assert.equal(mailbox.side, "0123456789");
});

Deno.test("Mailbox.connect() surfaces the welcome's error as WelcomeError, quoted", async () => {
  await using fake = startFakeMailbox({
    onOpen: (send) => send({ type: "welcome", welcome: { error: "go away\nsockit: forged" } }),
  });
  const { error } = await rejection(connect(fake.url));
  assert.ok(error instanceof WelcomeError, String(error));
  assert.equal(
    error.message,
    `mailbox server at ${fake.url} refused us: "go away\\nsockit: forged"`,
  );
});

Deno.test("Mailbox.connect() times out when the server never welcomes us", async () => {
  await using fake = startFakeMailbox({ onOpen: () => {} });
  const { error, ms } = await rejection(connect(fake.url, { timeoutMs: 200 }));
  assert.ok(error instanceof TimeoutError, String(error));
  assert.match(
    error.message,
    /Timed out after 200 ms waiting for the mailbox server at .* welcome us/,
  );
  assert.ok(ms < EVENT_TIMEOUT_MS / 2, `took ${ms} ms`);
});

Deno.test("Mailbox.connect() times out when the server never answers the WebSocket handshake", async () => {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const accepted: Deno.Conn[] = [];
  const accepting = (async () => {
    for await (const conn of listener) accepted.push(conn);
  })();
  try {
    const url = `ws://127.0.0.1:${listener.addr.port}/v1`;
    const { error, ms } = await rejection(connect(url, { timeoutMs: 200 }));
    assert.ok(error instanceof TimeoutError, String(error));
    assert.match(error.message, /^Timed out after 200 ms waiting for the mailbox server at ws:/);
    assert.ok(ms < EVENT_TIMEOUT_MS / 2, `took ${ms} ms`);
    assert.equal(accepted.length, 1);
  } finally {
    listener.close();
    await accepting;
    for (const conn of accepted) conn.close();
  }
});

Deno.test("a frame that is not JSON, or not a message, is a ProtocolError that drops the connection", async () => {
  for (
    const [garbage, expected] of [
      ["{nope", /a frame is not JSON: "\{nope"/],
      ['["allocated"]', /a frame is not an object with a "type"/],
      ['{"type": 7}', /a frame is not an object with a "type"/],
      [
        '{"type": "allocated", "nameplate": 7}',
        /"allocated" message with a nameplate that is not digits/,
      ],
    ] as const
  ) {
    await using fake = startFakeMailbox({
      onMessage: (m, send) => m.type === "allocate" ? send(garbage) : behave(m, send),
    });
    await using mailbox = await connect(fake.url);
    const { error } = await rejection(mailbox.allocate());
    assert.ok(error instanceof ProtocolError, String(error));
    assert.match(error.message, expected);
    await assert.rejects(mailbox.list(), ProtocolError);
  }
});

Deno.test("a frame of exactly maxFrameBytes is read; one byte more is a LimitError", async () => {
  const max = MAILBOX_DEFAULTS.maxFrameBytes;
  const frame = (size: number) => {
    const head = '{"type": "allocated", "nameplate": "7", "pad": "';
    return head + "x".repeat(size - head.length - 2) + '"}';
  };
  for (const size of [max, max + 1]) {
    await using fake = startFakeMailbox({
      onMessage: (m, send) => m.type === "allocate" ? send(frame(size)) : behave(m, send),
    });
    await using mailbox = await connect(fake.url);
    if (size === max) {
      assert.equal(await mailbox.allocate(), "7");
      continue;
    }
    const { error } = await rejection(mailbox.allocate());
    assert.ok(error instanceof LimitError, String(error));
    assert.match(
      error.message,
      new RegExp(`a frame of ${max + 1} bytes exceeds the limit of ${max}`),
    );
  }
});

Deno.test("a message with a body that is not hex, or a bad side or phase, is a ProtocolError", async () => {
  for (
    const [message, expected] of [
      [{ side: "s", phase: "pake", body: "zz" }, /body that is not hex/],
      [{ side: "s", phase: "pake", body: "abc" }, /body that is not hex/],
      [{ side: "s", phase: 5, body: "00" }, /phase that is not text/],
      [{ phase: "pake", body: "00" }, /side that is not text/],
    ] as const
  ) {
    await using fake = startFakeMailbox({
      onMessage: (m, send) => {
        behave(m, send);
        if (m.type === "open") send({ type: "message", ...message });
      },
    });
    await using mailbox = await connect(fake.url);
    await mailbox.open(await mailbox.claim("7"));
    const { error } = await rejection(mailbox.next("pake"));
    assert.ok(error instanceof ProtocolError, String(error));
    assert.match(error.message, expected);
  }
});

Deno.test("the server's error message rejects the request it names as MailboxError", async () => {
  await using fake = startFakeMailbox({
    onMessage: (m, send) => {
      if (m.type !== "claim") return behave(m, send);
      send({ type: "ack", id: m.id });
      send({ type: "error", error: 'no "such"\x1b[2J nameplate', orig: m });
    },
  });
  await using mailbox = await connect(fake.url);
  const { error } = await rejection(mailbox.claim("7"));
  assert.ok(error instanceof MailboxError, String(error));
  assert.equal(error.request, "claim");
  assert.equal(error.serverMessage, 'no "such"\x1b[2J nameplate');
  assert.equal(error.message, 'mailbox server refused claim: "no \\"such\\"\\x1b[2J nameplate"');
  await assert.rejects(mailbox.allocate(), MailboxError);
  await mailbox.close("errory"); // Nothing claimed or opened: nothing to release or close.
  assert.deepEqual(fake.received.map((m) => m.type), ["bind", "claim"]);
});

Deno.test("a connection lost mid-way rejects every pending wait, saying what each awaited", async () => {
  await using fake = startFakeMailbox({
    onMessage: (m, send, close) => m.type === "add" ? close() : behave(m, send),
  });
  await using mailbox = await connect(fake.url);
  await mailbox.open(await mailbox.claim("7"));
  const waits = [mailbox.next("pake"), mailbox.next("version"), mailbox.add("0", bytes("x"))];
  const errors = await Promise.all(waits.map((w) => rejection(w)));
  for (const { error } of errors) assert.ok(error instanceof MailboxConnectionError, String(error));
  const lost = `lost the connection to the mailbox server at ${fake.url}`;
  assert.ok(errors[0].error.message.startsWith(lost), errors[0].error.message);
  assert.match(errors[0].error.message, /while waiting for a "pake" message from the other side$/);
  assert.match(errors[1].error.message, /while waiting for a "version" message/);
  assert.match(errors[2].error.message, /while waiting for the ack of add$/);
  await assert.rejects(mailbox.close("happy"), MailboxConnectionError);
});

Deno.test("repeated phases and unknown message types are ignored; others are buffered", async () => {
  await using fake = startFakeMailbox({
    onMessage: (m, send) => {
      behave(m, send);
      if (m.type !== "open") return;
      send({ type: "pong", pong: 1 });
      send({ type: "something-newer", x: 1 });
      send({ type: "message", side: "peer", phase: "pake", body: "01", extra: true });
      send({ type: "message", side: "peer", phase: "pake", body: "02" });
      send({ type: "message", side: "peer", phase: "version", body: "03" });
    },
  });
  await using mailbox = await connect(fake.url);
  await mailbox.open(await mailbox.claim("7"));
  const first = await mailbox.next("pake");
  assert.deepEqual(first, { side: "peer", phase: "pake", body: new Uint8Array([1]) });
  const second = await mailbox.next(() => true);
  assert.deepEqual(second, { side: "peer", phase: "version", body: new Uint8Array([3]) });
});

Deno.test("more unread bytes than maxBufferedBytes is a LimitError", async () => {
  await using fake = startFakeMailbox({
    onMessage: (m, send) => {
      behave(m, send);
      if (m.type !== "open") return;
      send({ type: "message", side: "peer", phase: "0", body: "00".repeat(8) });
      send({ type: "message", side: "peer", phase: "1", body: "00".repeat(8) });
    },
  });
  await using mailbox = await connect(fake.url, { maxBufferedBytes: 10 });
  await mailbox.open(await mailbox.claim("7"));
  const { error } = await rejection(mailbox.next("never"));
  assert.ok(error instanceof LimitError, String(error));
  assert.match(error.message, /more than 10 bytes or \d+ messages unread/);
});

Deno.test("a message of a phase the protocol does not have is a ProtocolError", async () => {
  await using fake = startFakeMailbox({
    onMessage: (m, send) => {
      behave(m, send);
      if (m.type !== "open") return;
      send({ type: "message", side: "peer", phase: "x".repeat(500), body: "" });
    },
  });
  await using mailbox = await connect(fake.url);
  await mailbox.open(await mailbox.claim("7"));
  const { error } = await rejection(mailbox.next("pake"));
  assert.ok(error instanceof ProtocolError, String(error));
  assert.match(error.message, /a message of phase "x+/);
});

Deno.test("next() times out naming the phase, and ends early when its signal aborts", async () => {
  await using fake = startFakeMailbox();
  await using mailbox = await connect(fake.url);
  await mailbox.open(await mailbox.claim("7"));
  const { error } = await rejection(mailbox.next("pake", { timeoutMs: 50 }));
  assert.ok(error instanceof TimeoutError, String(error));
  assert.match(
    error.message,
    /^Timed out after 50 ms waiting for a "pake" message from the other side/,
  );
  const controller = new AbortController();
  const waiting = mailbox.next("pake", { signal: controller.signal });
  controller.abort(new Error("user pressed ^C"));
  await assert.rejects(waiting, /user pressed \^C/);
});

Deno.test("close() releases, closes with the mood, and is bounded by its timeout", async () => {
  {
    await using fake = startFakeMailbox();
    const mailbox = await connect(fake.url);
    await mailbox.open(await mailbox.claim("7"));
    await mailbox.close("lonely");
    const sent = fake.received.slice(2).map(({ id: _, ...rest }) => rest);
    assert.deepEqual(sent, [
      { type: "open", mailbox: "mb1" },
      { type: "release", nameplate: "7" },
      { type: "close", mailbox: "mb1", mood: "lonely" },
    ]);
    await mailbox.close("lonely"); // Again: the same (settled) result.
  }
  {
    await using fake = startFakeMailbox({
      onMessage: (m, send) => m.type === "close" ? undefined : behave(m, send),
    });
    const mailbox = await connect(fake.url);
    await mailbox.open(await mailbox.claim("7"));
    const { error } = await rejection(mailbox.close("happy", { timeoutMs: 100 }));
    assert.ok(error instanceof TimeoutError, String(error));
    assert.match(error.message, /waiting for the "closed" answer to close/);
    await assert.rejects(mailbox.add("x", new Uint8Array()), /it is closed/);
  }
});

Deno.test("disposing without close() sends close with mood errory", async () => {
  await using fake = startFakeMailbox();
  {
    await using mailbox = await connect(fake.url);
    await mailbox.open(await mailbox.claim("7"));
  }
  const close = fake.received.find((m) => m.type === "close");
  assert.equal(close?.mood, "errory");
  assert.ok(fake.received.some((m) => m.type === "release"));
});
