import assert from "node:assert/strict";
import { joinRelay, peerTest, runSockit, startSockit, TestClient } from "./_helpers.ts";

Deno.test("sockit relay announces SIGTERM shutdown to clients and exits 0", async () => {
  await using relay = await startSockit(["relay", "--port", "0"]);
  await using a = await joinRelay(relay.port).then((j) => j.client);
  const status = await relay.stop("SIGTERM");
  assert.equal(await a.readLine(), "* disconnected: server shutting down");
  assert.equal(await a.readLine(), null);
  assert.equal(status.code, 0);
  assert.ok(relay.stderr.some((l) => /stopped: clients/.test(l)));
});

Deno.test("sockit relay on IPv6 prints [::1]:PORT and relays over IPv6", async () => {
  await using relay = await startSockit(["relay", "--host", "::1", "--port", "0"]);
  assert.ok(relay.stderr.some((l) => l.includes(`listening on [::1]:${relay.port}`)));
  const a = await TestClient.connect(relay.port, "::1");
  const b = await TestClient.connect(relay.port, "::1");
  await b.readLine();
  await a.writeLine("over v6");
  assert.match(await b.readLineMatching(/^\[/), /^\[user\d+\] over v6$/);
  a.close();
  b.close();
});

Deno.test("sockit relay --stats logs its counters", async () => {
  await using relay = await startSockit([
    "relay",
    "--port",
    "0",
    "--stats",
    "--stats-interval",
    "1",
  ]);
  const { client } = await joinRelay(relay.port);
  await client.writeLine("counted");
  // A line every second; the first after the message was read counts it.
  const m = await relay.waitForStderr(/clients 1 \(accepted 1, refused 0\), messages in 1, .*/);
  assert.match(m[0], /delivered 0, dropped 0, slow disconnects 0, bytes in 8, out \d+$/);
  client.close();
});

Deno.test("sockit chat sends piped lines, then leaves cleanly with exit 0", async () => {
  await using relay = await startSockit(["relay", "--port", "0"]);
  const { client } = await joinRelay(relay.port);
  const r = await runSockit(["chat", `127.0.0.1:${relay.port}`, "--name", "alice"], {
    stdin: "a\nb\n",
  });
  assert.equal(r.code, 0, r.stderr);
  assert.equal(await client.readLineMatching(/^\[/), "[alice] a");
  assert.equal(await client.readLineMatching(/^\[/), "[alice] b");
  assert.match(await client.readLineMatching(/left/), /alice left \(quit\)/);
  client.close();
});

Deno.test("sockit chat prints what arrives and says why the relay closed", async () => {
  await using relay = await startSockit(["relay", "--port", "0", "--idle-timeout", "300"]);
  await using chat = await startSockit(["chat", `127.0.0.1:${relay.port}`, "--name", "bob"], {
    ready: false,
    stdin: true,
  });
  await chat.waitForStdout(/welcome bob/);
  const status = await chat.status;
  assert.equal(status.code, 1);
  assert.ok(chat.stdout.includes("* disconnected: idle for more than 300 ms"));
  assert.match(
    chat.stderr.join("\n"),
    /connection closed: disconnected: idle for more than 300 ms/,
  );
});

Deno.test("sockit chat prints a line of the relay's full --max-line length", async () => {
  await using relay = await startSockit(["relay", "--port", "0"]);
  await using chat = await startSockit(["chat", `127.0.0.1:${relay.port}`, "--name", "c"], {
    ready: false,
    stdin: true,
  });
  await chat.waitForStdout(/welcome c/);
  const { client, name } = await joinRelay(relay.port);
  const long = "L".repeat(64 * 1024);
  await client.writeLine(long);
  await client.writeLine("after");
  await chat.waitForStdout(new RegExp(`^\\[${name}\\] after$`));
  assert.ok(chat.stdout.includes(`[${name}] ${long}`));
  client.close();
});

Deno.test("sockit chat --framed talks to a framed relay", async () => {
  await using relay = await startSockit(["relay", "--port", "0", "--framed"]);
  await using listener = await startSockit([
    "chat",
    `127.0.0.1:${relay.port}`,
    "--framed",
    "--name",
    "l",
  ], {
    ready: false,
    stdin: true,
  });
  await listener.waitForStdout(/you are l in lobby/);
  const r = await runSockit(["chat", `127.0.0.1:${relay.port}`, "--framed", "--name", "s"], {
    stdin: "binary-safe \u00e9\n//slash\n",
  });
  assert.equal(r.code, 0, r.stderr);
  await listener.waitForStdout(/^\[s\] binary-safe \u00e9$/);
  await listener.waitForStdout(/^\[s\] \/slash$/);
});

Deno.test("sockit chat --proxy reaches the relay through sockit socks5", async () => {
  await using relay = await startSockit(["relay", "--port", "0"]);
  await using proxy = await startSockit(["socks5", "--port", "0", "--user", "u:p"]);
  const { client } = await joinRelay(relay.port);
  const r = await runSockit([
    "chat",
    `127.0.0.1:${relay.port}`,
    "--name",
    "viaproxy",
    "--proxy",
    `socks5://u:p@127.0.0.1:${proxy.port}`,
  ], { stdin: "through the proxy\n" });
  assert.equal(r.code, 0, r.stderr);
  assert.equal(await client.readLineMatching(/^\[/), "[viaproxy] through the proxy");
  client.close();
});

Deno.test("sockit chat --framed against a line relay fails with a clear error", async () => {
  await using relay = await startSockit(["relay", "--port", "0"]);
  const r = await runSockit(["chat", `127.0.0.1:${relay.port}`, "--framed"], { stdin: "" });
  assert.equal(r.code, 1);
  assert.match(r.stderr, /peer is not a sockit peer/);
});

Deno.test("sockit relay rejects a bad option value with exit 2", async () => {
  const r = await runSockit(["relay", "--slow", "maybe"]);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /Cannot parse --slow 'maybe'/);
  const c = await runSockit(["chat", "nohost"]);
  assert.equal(c.code, 2);
  assert.match(c.stderr, /Cannot parse address 'nohost': missing port/);
});

peerTest("ncat", {
  name: "ncat clients chat through sockit relay",
  fn: async () => {
    await using relay = await startSockit(["relay", "--port", "0"]);
    const { client } = await joinRelay(relay.port);
    const child = new Deno.Command("ncat", {
      args: ["127.0.0.1", String(relay.port)],
      stdin: "piped",
      stdout: "piped",
      stderr: "null",
    }).spawn();
    const w = child.stdin.getWriter();
    await w.write(new TextEncoder().encode("/nick ncatuser\nhi from ncat\n/quit\n"));
    await w.close();
    assert.equal(await client.readLineMatching(/^\[/), "[ncatuser] hi from ncat");
    const out = new TextDecoder().decode((await child.output()).stdout);
    assert.match(out, /\* bye/);
    client.close();
  },
});

peerTest("bash", {
  name: "sockit relay warns at start when the open-file limit is below --max-clients",
  fn: async () => {
    await using low = await startSockit(["relay", "--port", "0", "--max-clients", "100"], {
      fdLimit: 64,
    });
    assert.ok(
      low.stderr.some((l) =>
        /warning: open file limit is 64, but --max-clients 100 needs about 164/.test(l)
      ),
      low.stderr.join("\n"),
    );
    await using normal = await startSockit(["relay", "--port", "0", "--max-clients", "100"]);
    assert.ok(!normal.stderr.some((l) => l.includes("open file limit")));
  },
});
