/**
 * The relay's access rules: `--allow` / `--deny` on client addresses (checked right after
 * accept, before any byte is read), `--max-per-ip`, and the rate-limited log of refusals.
 * Clients connect from 127.0.0.1 and 127.0.0.2 (node:net's `localAddress`, or `nc -s`).
 */

import assert from "node:assert/strict";
import net from "node:net";
import { Relay, type RelayOptions } from "../lib/relay/mod.ts";
import { withTimeout } from "../lib/net/deadline.ts";
import {
  captureLog,
  EVENT_TIMEOUT_MS,
  peerTest,
  readRelayWelcome,
  spawnPeerClient,
  startSockit,
  TestClient,
} from "./_helpers.ts";

const dec = (b: Uint8Array) => new TextDecoder().decode(b);

/** A client connected from a chosen source address, that collects everything it receives. */
interface SourcedClient {
  /** Resolves the first line received (without LF), or null if the connection ended first. */
  firstLine(): Promise<string | null>;
  /** Resolves everything received once the connection ended (by close or reset). */
  ended(): Promise<Uint8Array>;
  /** Writes text. */
  write(text: string): void;
  /** Closes the connection. */
  close(): void;
}

/** Connects to 127.0.0.1:`port` from `source` (node:net, since Deno.connect cannot bind). */
function connectFrom(source: string, port: number, hostname = "127.0.0.1"): Promise<SourcedClient> {
  return new Promise((resolve, reject) => {
    const chunks: Uint8Array[] = [];
    let wake: (() => void) | undefined;
    let over = false;
    const socket = net.connect({ host: hostname, port, localAddress: source });
    socket.on("data", (chunk: Uint8Array) => {
      chunks.push(new Uint8Array(chunk));
      wake?.();
    });
    const finish = () => {
      over = true;
      wake?.();
    };
    socket.on("close", finish);
    socket.on("error", finish); // a reset: the relay closed with our bytes unread
    socket.once("connect", () => {
      const all = () => {
        const out = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));
        let off = 0;
        for (const c of chunks) out.set(c, (off += c.length) - c.length);
        return out;
      };
      const until = (done: () => boolean) =>
        withTimeout(
          (async () => {
            while (!done()) await new Promise<void>((r) => (wake = r));
          })(),
          EVENT_TIMEOUT_MS,
          { what: `data from the relay to ${source}` },
        );
      resolve({
        async firstLine() {
          await until(() => over || dec(all()).includes("\n"));
          const text = dec(all());
          return text.includes("\n") ? text.slice(0, text.indexOf("\n")) : null;
        },
        async ended() {
          await until(() => over);
          return all();
        },
        write: (text) => void socket.write(text),
        close: () => socket.destroy(),
      });
    });
    socket.once("error", reject);
  });
}

/** An in-process relay on 127.0.0.1 (or `hostname`) with its log captured. */
function startAccessRelay(options: RelayOptions, hostname = "127.0.0.1") {
  const log = captureLog("relay");
  const relay = new Relay(Deno.listen({ hostname, port: 0 }), { logger: log.logger, ...options });
  const clients: { close(): void }[] = [];
  return {
    relay,
    log,
    port: relay.addr.port,
    async from(source: string): Promise<SourcedClient> {
      const c = await connectFrom(source, relay.addr.port);
      clients.push(c);
      return c;
    },
    async [Symbol.asyncDispose]() {
      clients.forEach((c) => c.close());
      await relay.shutdown();
    },
  };
}

Deno.test("relay --deny closes a denied address at once, before reading a byte; others are served", async () => {
  await using t = startAccessRelay({ deny: ["127.0.0.2"] });
  const denied = await t.from("127.0.0.2");
  denied.write("hello, is this thing on?\n");
  assert.equal((await denied.ended()).length, 0);
  await t.log.waitForLog(/refused 127\.0\.0\.2:\d+: address denied by --allow\/--deny/);
  const stats = t.relay.stats();
  assert.equal(stats.turnedAway.denied, 1);
  assert.equal(stats.accepted, 0, "a denied client never reaches the relay");
  assert.equal(stats.bytesIn, 0);
  const allowed = await t.from("127.0.0.1");
  allowed.write("hi\n");
  assert.match((await allowed.firstLine())!, /^\* welcome user1,/);
});

Deno.test("relay --allow makes an allow list; --deny inside it wins by the longer prefix", async () => {
  await using t = startAccessRelay({ allow: ["127.0.0.0/8"], deny: ["127.0.0.3"] });
  for (const [source, served] of [["127.0.0.1", true], ["127.0.0.2", true], ["127.0.0.3", false]]) {
    const c = await t.from(source as string);
    c.write("hi\n");
    if (served) assert.match((await c.firstLine())!, /^\* welcome /, `${source}`);
    else assert.equal((await c.ended()).length, 0, `${source}`);
  }
  assert.equal(t.relay.stats().turnedAway.denied, 1);
});

Deno.test("relay on :: matches an IPv4 client (::ffff:127.0.0.2) against IPv4 rules", async () => {
  await using t = startAccessRelay({ deny: ["127.0.0.2/32"] }, "::");
  const denied = await t.from("127.0.0.2");
  assert.equal((await denied.ended()).length, 0);
  await t.log.waitForLog(/refused (\[::ffff:127\.0\.0\.2\]|127\.0\.0\.2):\d+: address denied/);
  const allowed = await t.from("127.0.0.1");
  allowed.write("hi\n");
  assert.match((await allowed.firstLine())!, /^\* welcome /);
});

Deno.test("relay logs one line for a burst of refused connections and counts them all", async () => {
  await using t = startAccessRelay({ deny: ["127.0.0.2"] });
  for (let i = 0; i < 5; i++) {
    const c = await t.from("127.0.0.2");
    await c.ended();
  }
  assert.equal(t.relay.stats().turnedAway.denied, 5);
  assert.equal(t.log.lines.filter((l) => /refused/.test(l)).length, 1);
});

Deno.test("relay --max-per-ip 2 closes the third connection from one address at once", async () => {
  await using t = startAccessRelay({ maxPerIp: 2 });
  const first = await t.from("127.0.0.1");
  first.write("/who\n");
  assert.match((await first.firstLine())!, /^\* welcome user1,/);
  await using second = await TestClient.connect(t.port);
  await second.write("/who\n");
  assert.match((await second.readLine())!, /^\* welcome user2,/);
  const third = await t.from("127.0.0.1");
  third.write("hi\n");
  assert.equal((await third.ended()).length, 0);
  await t.log.waitForLog(
    /refused 127\.0\.0\.1:\d+: already 2 connections from its address \(--max-per-ip\)/,
  );
  // Another address has places of its own.
  const other = await t.from("127.0.0.2");
  other.write("hi\n");
  assert.match((await other.firstLine())!, /^\* welcome /);
  // Once one of the two leaves, its address may connect again.
  first.write("/quit\n");
  await second.readLineMatching(/^\* user1 left \(quit\)/);
  await using again = await TestClient.connect(t.port);
  await again.write("hi\n");
  assert.match((await again.readLine())!, /^\* welcome /);
  assert.equal(t.relay.stats().turnedAway["per-ip"], 1);
});

peerTest("nc", {
  name: "sockit relay --allow and --max-per-ip with nc -s as the client",
  fn: async () => {
    const config = await Deno.makeTempDir();
    try {
      await using relay = await startSockit(
        ["relay", "--port", "0", "--allow", "127.0.0.1", "--max-per-ip", "1"],
        { env: { XDG_CONFIG_HOME: config } },
      );
      const port = String(relay.port);
      await using denied = spawnPeerClient("nc", ["-s", "127.0.0.2", "127.0.0.1", port]);
      await denied.writeLine("let me in");
      assert.equal(await denied.readLine(), null);
      await relay.waitForStderr(/refused 127\.0\.0\.2:\d+: address denied by --allow\/--deny/);
      await using allowed = spawnPeerClient("nc", ["-s", "127.0.0.1", "127.0.0.1", port]);
      await readRelayWelcome(allowed);
      await using second = spawnPeerClient("nc", ["127.0.0.1", port]);
      await second.writeLine("me too");
      assert.equal(await second.readLine(), null);
    } finally {
      await Deno.remove(config, { recursive: true });
    }
  },
});

peerTest("nc", {
  name: "sockit relay --rules FILE: SIGHUP applies new rules to new clients, connected ones stay",
  fn: async () => {
    const config = await Deno.makeTempDir();
    try {
      const rulesFile = `${config}/rules`;
      await Deno.writeTextFile(rulesFile, "# one host out\ndeny 127.0.0.2\n");
      await using relay = await startSockit(["relay", "--port", "0", "--rules", rulesFile], {
        env: { XDG_CONFIG_HOME: config },
      });
      const port = String(relay.port);
      await using denied = spawnPeerClient("nc", ["-s", "127.0.0.2", "127.0.0.1", port]);
      await denied.writeLine("let me in");
      assert.equal(await denied.readLine(), null);
      await using stays = spawnPeerClient("nc", ["-s", "127.0.0.1", "127.0.0.1", port]);
      await readRelayWelcome(stays);

      // Now 127.0.0.1 is out and 127.0.0.2 in; the connected client is not cut.
      await Deno.writeTextFile(rulesFile, "deny 127.0.0.1\n");
      relay.child.kill("SIGHUP");
      await relay.waitForStderr(
        /SIGHUP: access rules reloaded \(\+deny 127\.0\.0\.1 -deny 127\.0\.0\.2\); connected clients stay/,
      );
      await using admitted = spawnPeerClient("nc", ["-s", "127.0.0.2", "127.0.0.1", port]);
      await readRelayWelcome(admitted);
      await using refused = spawnPeerClient("nc", ["-s", "127.0.0.1", "127.0.0.1", port]);
      await refused.writeLine("let me in");
      assert.equal(await refused.readLine(), null);
      await admitted.writeLine("still talking to you");
      assert.match(await stays.readLineMatching(/still talking/), /\] still talking to you$/);

      // A broken file keeps the rules in force.
      await Deno.writeTextFile(rulesFile, "allow not-an-address\n");
      relay.child.kill("SIGHUP");
      await relay.waitForStderr(/SIGHUP: keeping the access rules: .*not-an-address/);
      await using stillRefused = spawnPeerClient("nc", ["-s", "127.0.0.1", "127.0.0.1", port]);
      await stillRefused.writeLine("let me in");
      assert.equal(await stillRefused.readLine(), null);
    } finally {
      await Deno.remove(config, { recursive: true });
    }
  },
});
