/**
 * Relay rooms across processes (`relay --cluster`): real relay processes joined through a
 * real `nats-server` (Debian's, with `deploy/nats-server.conf`) on loopback, real TCP
 * clients. Skips where nats-server is missing.
 */

import assert from "node:assert/strict";
import { NatsClient } from "../lib/relay/cluster/nats_client.ts";
import {
  decodeEnvelope,
  encodeControl,
  encodeMessages,
  EnvelopeError,
} from "../lib/relay/cluster/envelope.ts";
import { roomSubjects, roomToken } from "../lib/relay/cluster/subjects.ts";
import { joinRelay, type SockitProcess, startSockit, type TestClient } from "./_helpers.ts";
import { HAVE_NATS, type NatsServer, startNats } from "./_nats.ts";

const NATS_MISSING = HAVE_NATS ? "" : " (skipped: nats-server is not installed)";

function clusterTest(name: string, fn: (nats: NatsServer) => Promise<void>): void {
  Deno.test({
    name: `relay --cluster: ${name}${NATS_MISSING}`,
    ignore: !HAVE_NATS,
    fn: async () => {
      await using nats = await startNats();
      await fn(nats);
    },
  });
}

/** Starts relay node `id` on `nats`. */
function startNode(nats: NatsServer, id: string, args: string[] = []): Promise<SockitProcess> {
  return startSockit(["relay", "--port", "0", "--cluster", nats.url, "--node-id", id, ...args]);
}

/** Joins a client to `node` and, when given, renames it (waiting for the new welcome). */
async function member(node: SockitProcess, nick?: string): Promise<TestClient & { name: string }> {
  const { client, name } = await joinRelay(node.port);
  const named = client as TestClient & { name: string };
  named.name = name;
  if (nick) {
    await client.writeLine(`/nick ${nick}`);
    await client.readLineMatching(new RegExp(`^\\* welcome ${nick},`));
    named.name = nick;
  }
  return named;
}

/** Reads message lines (`[...]`), skipping notices, until `count` arrived; returns them. */
async function readMessages(client: TestClient, count: number): Promise<string[]> {
  const lines: string[] = [];
  while (lines.length < count) {
    const line = await client.readLine();
    assert.notEqual(line, null, `the relay closed after ${lines.length} of ${count} messages`);
    if (line!.startsWith("[")) lines.push(line!);
  }
  return lines;
}

const LINES = 20_000;

function burst(count: number, pad = ""): string {
  let text = "";
  for (let i = 0; i < count; i++) text += `m${i} ${pad}\n`;
  return text;
}

clusterTest(
  "a burst on node a reaches members on a, b and c exactly once, in order, never echoed",
  async (nats) => {
    await using a = await startNode(nats, "a");
    await using b = await startNode(nats, "b");
    await using c = await startNode(nats, "c");
    await using sender = await member(a);
    await using local = await member(a);
    await using onB = await member(b);
    await using onC = await member(c);
    assert.match(onB.name, /^user\d+\.b$/, "generated names are node-qualified");
    await sender.readLineMatching(new RegExp(`^\\* ${onB.name.replace(".", "\\.")} joined lobby$`));
    await sender.readLineMatching(new RegExp(`^\\* ${onC.name.replace(".", "\\.")} joined lobby$`));

    const writing = sender.write(burst(LINES, "x".repeat(40)));
    const expected = Array.from(
      { length: LINES },
      (_, i) => `[${sender.name}] m${i} ${"x".repeat(40)}`,
    );
    const [gotLocal, gotB, gotC] = await Promise.all(
      [local, onB, onC].map((client) => readMessages(client, LINES)),
    );
    await writing;
    assert.deepEqual(gotLocal, expected);
    assert.deepEqual(gotB, expected);
    assert.deepEqual(gotC, expected);

    // Nothing twice: the next message each sees is a new one from node c.
    await onC.writeLine("after the burst");
    for (const client of [local, onB, sender]) {
      assert.deepEqual(await readMessages(client, 1), [`[${onC.name}] after the burst`]);
    }
    // The sender got none of its own lines back (its first message line was c's).
    await sender.writeLine("/who");
    const who = await sender.readLineMatching(/^\* in lobby: /);
    for (const client of [sender, local, onB, onC]) assert.ok(who.includes(client.name), who);
  },
);

clusterTest(
  "/who, /rooms and presence span the nodes; names are unique across them",
  async (nats) => {
    await using a = await startNode(nats, "a");
    await using b = await startNode(nats, "b");
    await using c = await startNode(nats, "c");
    await using alice = await member(a, "alice");
    await using bob = await member(b, "bob");
    await alice.readLineMatching(/^\* bob joined lobby$|^\* user\d+\.b is now bob$/);
    await using carol = await member(c, "carol");
    await alice.readLineMatching(/^\* carol joined lobby$|^\* user\d+\.c is now carol$/);

    await alice.writeLine("/who");
    assert.equal(await alice.readLineMatching(/^\* in /), "* in lobby: alice, bob, carol");
    await carol.writeLine("/join ops");
    await carol.readLineMatching(/^\* welcome carol, you are in room ops;/);
    assert.equal(await alice.readLineMatching(/^\* carol left/), "* carol left for another room");
    await bob.writeLine("/rooms");
    assert.equal(await bob.readLineMatching(/^\* rooms: /), "* rooms: lobby (2), ops (1)");

    // A name held on another node is refused, in any case.
    await carol.writeLine("/nick ALICE");
    assert.equal(
      await carol.readLineMatching(/^\* cannot rename|^\* welcome/),
      "* cannot rename to ALICE: the name is taken",
    );
    await carol.writeLine("/nick user1.a");
    assert.match(await carol.readLineMatching(/^\* cannot rename/), /handed out by the relay/);
    // Renames and leaves are told across nodes.
    await bob.writeLine("/nick robert");
    assert.equal(await alice.readLineMatching(/ is now /), "* bob is now robert");
    await bob.writeLine("/quit");
    assert.equal(await alice.readLineMatching(/ left/), "* robert left (quit)");
    await alice.writeLine("/who");
    assert.equal(await alice.readLineMatching(/^\* in /), "* in lobby: alice");
  },
);

clusterTest("two nodes claiming one name at the same moment: exactly one gets it", async (nats) => {
  await using a = await startNode(nats, "a");
  await using b = await startNode(nats, "b");
  await using x = await member(a);
  await using y = await member(b);
  await x.readLineMatching(/ joined lobby$/);
  for (let round = 0; round < 5; round++) {
    const name = `zed${round}`;
    await Promise.all([x.writeLine(`/nick ${name}`), y.writeLine(`/nick ${name}`)]);
    const outcome = (client: TestClient) =>
      client.readLineMatching(new RegExp(`^\\* (welcome ${name},|cannot rename to ${name}:)`));
    const answers = await Promise.all([outcome(x), outcome(y)]);
    const winners = answers.filter((line) => line.startsWith(`* welcome ${name},`));
    assert.equal(winners.length, 1, `round ${round}: ${answers.join(" / ")}`);
  }
});

clusterTest(
  "a node that dies takes its members with it; one that stops says so at once",
  async (nats) => {
    await using a = await startNode(nats, "a");
    await using b = await startNode(nats, "b");
    await using c = await startNode(nats, "c");
    await using alice = await member(a, "alice");
    await using _bob = await member(b, "bob");
    await alice.readLineMatching(/bob/);
    await using _carol = await member(c, "carol");
    await alice.readLineMatching(/carol/);

    const killedAt = performance.now();
    c.child.kill("SIGKILL");
    assert.equal(
      await alice.readLineMatching(/^\* carol left/, 15_000),
      "* carol left (node unreachable: c)",
    );
    const tookMs = performance.now() - killedAt;
    assert.ok(tookMs < 10_000, `took ${tookMs} ms`);
    await alice.writeLine("/who");
    assert.equal(await alice.readLineMatching(/^\* in /), "* in lobby: alice, bob");

    await b.stop("SIGTERM");
    assert.match(await alice.readLineMatching(/^\* bob left/), /^\* bob left \(/);
    await alice.writeLine("/who");
    assert.equal(await alice.readLineMatching(/^\* in /), "* in lobby: alice");
  },
);

clusterTest(
  "NATS down: rooms go on locally, are told once, and cross-node delivery resumes after",
  async (nats) => {
    await using a = await startNode(nats, "a");
    await using b = await startNode(nats, "b");
    await using a1 = await member(a, "a1");
    await using a2 = await member(a, "a2");
    await using b1 = await member(b, "b1");
    await a1.readLineMatching(/b1/);
    await a1.writeLine("before");
    assert.deepEqual(await readMessages(b1, 1), ["[a1] before"]);

    await nats.stop();
    const down = "* cluster link down: this room is local only";
    for (const client of [a1, a2, b1]) {
      assert.equal(
        await client.readLineMatching(/cluster link/),
        down,
      );
    }
    await a1.writeLine("while the bus is down");
    assert.deepEqual(await readMessages(a2, 1), ["[a1] while the bus is down"]);

    await nats.start();
    for (const client of [a1, a2, b1]) {
      assert.equal(
        await client.readLineMatching(/cluster link/, 20_000),
        "* cluster link restored",
      );
    }
    await a1.writeLine("after the restart");
    // b1 is told what it missed (the line sent while the bus was down), then gets the new one.
    assert.equal(await b1.readLineMatching(/^\* missed|^\[/), "* missed 1 message from node a");
    assert.deepEqual(await readMessages(b1, 1), ["[a1] after the restart"]);
    assert.deepEqual(await readMessages(a2, 1), ["[a1] after the restart"]);
    await b1.writeLine("/who");
    assert.equal(await b1.readLineMatching(/^\* in /), "* in lobby: a1, a2, b1");
  },
);

clusterTest(
  "a stuck client on node b slows nobody: node a's and c's members get the whole burst",
  async (nats) => {
    await using a = await startNode(nats, "a");
    await using b = await startNode(nats, "b");
    await using c = await startNode(nats, "c");
    await using sender = await member(a);
    await using local = await member(a);
    await using stuck = await member(b); // never read again until the end
    await using onC = await member(c);
    await sender.readLineMatching(/\.b joined lobby$/);
    await sender.readLineMatching(/\.c joined lobby$/);

    const count = 60_000;
    const pad = "y".repeat(240);
    // Written while the others read: the relay paces the sender by its readers.
    const [, gotLocal, gotC] = await Promise.all([
      sender.write(burst(count, pad)),
      readMessages(local, count),
      readMessages(onC, count),
    ]);
    assert.equal(gotLocal.length, count);
    assert.equal(gotLocal.at(-1), `[${sender.name}] m${count - 1} ${pad}`);
    assert.deepEqual(gotC, gotLocal);
    // Node b cut its stuck client (15 MB for it: past its outbox cap), and said why.
    const rest = new TextDecoder().decode(await stuck.readToEnd(20_000));
    assert.match(rest, /\* disconnected: slow consumer/);
    // And node b still serves its room.
    await using late = await member(b);
    await onC.writeLine("still here");
    assert.deepEqual(await readMessages(late, 1), [`[${onC.name}] still here`]);
  },
);

clusterTest("malformed bus messages are dropped with a log line; the nodes go on", async (nats) => {
  await using a = await startNode(nats, "a");
  await using b = await startNode(nats, "b");
  await using x = await member(a);
  await using y = await member(b);
  await x.readLineMatching(/ joined lobby$/);

  const raw = await NatsClient.connect([nats.url]);
  try {
    const lobby = roomSubjects("lobby");
    const garbage = [
      new Uint8Array([0x01, 0x00, 0xff]), // node id too long
      new Uint8Array([0x07, 1, 2, 3]), // unknown kind
      new TextEncoder().encode("\x02{not json"),
      encodeControl({ t: "join", node: "evil", epoch: 1, room: "lobby", name: "a\nb" } as never),
      encodeMessages({
        framed: true,
        node: "z",
        epoch: 1,
        seq: 1,
        count: 1,
        payload: new Uint8Array(4),
      }),
    ];
    for (const bytes of garbage) {
      raw.publish(lobby.msg, bytes);
      raw.publish(lobby.presence, bytes);
      raw.publish("sockit.nodes", bytes);
    }
    // A well-formed room message on a cluster-wide subject: dropped, and nobody disconnects.
    raw.publish(
      "sockit.nodes",
      encodeControl({ t: "join", node: "stray", epoch: 1, room: "lobby", name: "ghost" }),
    );
    await raw.flush();
  } finally {
    await raw.close();
  }
  await b.waitForStderr(/cluster: dropped a bus message/);
  await b.waitForStderr(/node z runs in framed mode/);
  await b.waitForStderr(/dropped a "join" message from node stray on a cluster-wide subject/);
  await x.writeLine("still fine");
  assert.deepEqual(await readMessages(y, 1), [`[${x.name}] still fine`]);
});

Deno.test("cluster envelopes: round trip, and malformed ones are EnvelopeErrors", () => {
  const payload = new TextEncoder().encode("[bob] hi\n[bob] there\n");
  const bytes = encodeMessages({
    framed: false,
    node: "n-1",
    epoch: 42,
    seq: 7,
    count: 2,
    payload,
  });
  assert.deepEqual(decodeEnvelope(bytes), {
    kind: "messages",
    framed: false,
    node: "n-1",
    epoch: 42,
    seq: 7,
    count: 2,
    payload,
  });
  const bad = [
    new Uint8Array(0),
    bytes.subarray(0, 10),
    encodeMessages({ framed: false, node: "UPPER", epoch: 1, seq: 1, count: 1, payload }),
    encodeMessages({ framed: false, node: "a", epoch: 1, seq: 0, count: 1, payload }),
    encodeControl({ t: "members", node: "a", epoch: 1, room: "x y", names: [] } as never),
    encodeControl({ t: "leave", node: "a", epoch: 1, room: "r", name: "n", why: "\x1b[2J" }),
    encodeControl({ t: "roomlist", node: "a", epoch: 1, rooms: [["r", -1]] } as never),
    encodeControl({ t: "nope", node: "a", epoch: 1 } as never),
  ];
  for (const b of bad) assert.throws(() => decodeEnvelope(b), EnvelopeError);
  assert.equal(roomToken("#a.b~"), "~23a~2eb~7e");
});

clusterTest(
  "framed relays form a cluster too: sockit chat --framed across two nodes",
  async (nats) => {
    await using a = await startNode(nats, "a", ["--framed"]);
    await using b = await startNode(nats, "b", ["--framed"]);
    const chat = (node: SockitProcess, name: string) =>
      startSockit(["chat", `127.0.0.1:${node.port}`, "--framed", "--name", name], {
        ready: false,
        stdin: true,
      });
    await using fa = await chat(a, "fa");
    await fa.waitForStdout(/you are fa in lobby/);
    await using fb = await chat(b, "fb");
    await fb.waitForStdout(/you are fb in lobby/);
    await fa.waitForStdout(/is now fb|fb joined/);
    await fa.write("hello framed ✓\n");
    assert.match((await fb.waitForStdout(/^\[fa\] /))[0], /^\[fa\] /);
    assert.ok(fb.stdout.includes("[fa] hello framed ✓"), fb.stdout.join("\n"));
    await fb.write("/who\n");
    await fb.waitForStdout(/in lobby: fa, fb/);
  },
);
