/**
 * `sockit relay --tls` with real clients: ncat --ssl, openssl s_client and nc on one port,
 * `--tls-only`, a silent client; `sockit chat --tls` (trust on first use, a changed
 * certificate, a pin, a CA, framed mode); the certificate reloaded on SIGHUP; a handshake that
 * never completes. Every spawned process gets its own XDG_CONFIG_HOME.
 */

import assert from "node:assert/strict";
import { createSelfSignedCert } from "../lib/net/tls_cert.ts";
import { connectTlsSocket } from "../lib/net/tls_stream.ts";
import { concatBytes } from "../lib/net/bytes.ts";
import {
  EVENT_TIMEOUT_MS,
  type PeerClient,
  peerTest,
  readRelayWelcome,
  runSockit,
  spawnPeerClient,
  startSockit,
  TestClient,
} from "./_helpers.ts";

const enc = (s: string) => new TextEncoder().encode(s);
const dec = (b: Uint8Array) => new TextDecoder().decode(b);
const FINGERPRINT = /certificate (sha256:[0-9a-f]{64})/;

/** A config folder of its own for the processes of one test. */
async function tempConfig(): Promise<
  { dir: string; env: Record<string, string> } & AsyncDisposable
> {
  const dir = await Deno.makeTempDir({ prefix: "sockit-relay-tls-" });
  return {
    dir,
    env: { XDG_CONFIG_HOME: dir },
    [Symbol.asyncDispose]: () => Deno.remove(dir, { recursive: true }),
  };
}

/** Writes a certificate and its key as PEM files in `dir`; returns their paths. */
async function writePair(
  dir: string,
  name: string,
  pair: { cert: string; key: string },
): Promise<{ certFile: string; keyFile: string }> {
  const certFile = `${dir}/${name}-cert.pem`;
  const keyFile = `${dir}/${name}-key.pem`;
  await Deno.writeTextFile(certFile, pair.cert);
  await Deno.writeTextFile(keyFile, pair.key);
  return { certFile, keyFile };
}

const welcomeOf = readRelayWelcome;

/** Reads lines (bytes) until a message line (`[name] ...`), skipping the relay's notices. */
async function nextMessage(peer: PeerClient): Promise<Uint8Array> {
  while (true) {
    const line = await peer.readLine();
    assert.notEqual(line, null, "the peer's output ended before a message");
    if (line![0] === 0x5b) return line!;
  }
}

// --- Real clients on one port ---------------------------------------------------------------

/** UTF-8 text and every byte value but LF (a CR only before LF is dropped by line mode). */
const MIXED = concatBytes(
  enc("grüße, 世界 ✓ "),
  Uint8Array.from({ length: 256 }, (_, i) => i).filter((b) => b !== 0x0a),
  enc(" end"),
);

peerTest(["ncat", "openssl", "nc"], {
  name: "relay --tls: ncat --ssl, openssl s_client and plain nc chat on one port, bytes intact",
  fn: async () => {
    await using config = await tempConfig();
    await using relay = await startSockit(["relay", "--port", "0", "--tls"], {
      env: config.env,
    });
    const port = String(relay.port);
    await using plain = spawnPeerClient("nc", ["127.0.0.1", port]);
    const plainName = await welcomeOf(plain);
    await using ncat = spawnPeerClient("ncat", ["--ssl", "127.0.0.1", port]);
    const ncatName = await welcomeOf(ncat);
    await using openssl = spawnPeerClient("openssl", [
      "s_client",
      "-quiet",
      "-connect",
      `127.0.0.1:${port}`,
    ]);
    const opensslName = await welcomeOf(openssl);
    const peers = [
      { peer: plain, name: plainName },
      { peer: ncat, name: ncatName },
      { peer: openssl, name: opensslName },
    ];
    // Each one sends; both others get the bytes exactly, under the sender's name.
    for (const [i, from] of peers.entries()) {
      const payload = concatBytes(enc(`${i} `), MIXED);
      await from.peer.write(concatBytes(payload, enc("\n")));
      for (const to of peers.filter((p) => p !== from)) {
        assert.deepEqual(
          await nextMessage(to.peer),
          concatBytes(enc(`[${from.name}] `), payload),
          `${from.name} -> ${to.name}`,
        );
      }
    }
    // The relay counts two of them as TLS clients.
    await plain.writeLine("/who");
    assert.match(
      await plain.readLineMatching(/^\* in lobby: /),
      new RegExp(`${ncatName}.*${opensslName}|${opensslName}.*${ncatName}`),
    );
  },
});

peerTest(["ncat", "nc"], {
  name: "relay --tls-only refuses a plain nc with a log line and serves ncat --ssl",
  fn: async () => {
    await using config = await tempConfig();
    await using relay = await startSockit(["relay", "--port", "0", "--tls-only"], {
      env: config.env,
    });
    assert.match(relay.stderr.join("\n"), /\(line mode, TLS only, certificate sha256:/);
    await using plain = spawnPeerClient("nc", ["127.0.0.1", String(relay.port)]);
    await plain.writeLine("hello?");
    // Closed without a byte of the relay's.
    assert.equal(await plain.readLine(), null);
    await relay.waitForStderr(/refused 127\.0\.0\.1:\d+: did not start TLS \(--tls-only\)/);
    await using tls = spawnPeerClient("ncat", ["--ssl", "127.0.0.1", String(relay.port)]);
    await welcomeOf(tls);
  },
});

peerTest("ncat", {
  name: "relay --tls serves a client that sends nothing as a line client after the sniff wait",
  fn: async () => {
    await using config = await tempConfig();
    await using relay = await startSockit(["relay", "--port", "0", "--tls"], {
      env: config.env,
    });
    await using listener = spawnPeerClient("ncat", [
      "--recv-only",
      "127.0.0.1",
      String(relay.port),
    ]);
    const name = await welcomeOf(listener);
    await using talker = await TestClient.connect(relay.port);
    await talker.write("hi listener\n"); // decides the kind at once: a line client
    const talkerName = await welcomeOf(talker);
    assert.equal(await listener.readLineMatching(/^\[/), `[${talkerName}] hi listener`);
    assert.notEqual(name, talkerName);
  },
});

// --- sockit chat --tls ----------------------------------------------------------------------

Deno.test("sockit chat --tls trusts on first use, then refuses a changed certificate with exit 1", async () => {
  await using config = await tempConfig();
  const first = await createSelfSignedCert({ names: ["localhost"] });
  const second = await createSelfSignedCert({ names: ["localhost"] });
  const files = await writePair(config.dir, "relay", first);
  await using relay = await startSockit(
    ["relay", "--port", "0", "--cert", files.certFile, "--key", files.keyFile],
    { env: config.env },
  );
  assert.equal(relay.stderr.join("\n").match(FINGERPRINT)?.[1], first.fingerprint);
  const address = `127.0.0.1:${relay.port}`;
  const knownHosts = `${config.dir}/sockit/known_hosts`;
  await using member = await TestClient.connect(relay.port);
  await member.write("/who\n");
  await welcomeOf(member);
  const chat = (input: string) =>
    runSockit(["chat", "--tls", address], { stdin: input, env: config.env });

  const tofu = await chat("hello\n");
  assert.equal(tofu.code, 0, tofu.stderr);
  assert.match(tofu.stdout, /^\* welcome user\d+, you are in room lobby/);
  assert.match(tofu.stderr, new RegExp(`new host ${address}, certificate ${first.fingerprint}`));
  assert.equal(await Deno.readTextFile(knownHosts), `${address} ${first.fingerprint}\n`);

  const again = await chat("hello again\n");
  assert.equal(again.code, 0, again.stderr);
  assert.doesNotMatch(again.stderr, /new host/);

  // The relay's certificate changes under the same address: refused loudly, nothing sent.
  await writePair(config.dir, "relay", second);
  relay.child.kill("SIGHUP");
  await relay.waitForStderr(new RegExp(`SIGHUP: TLS certificate reloaded.*${second.fingerprint}`));
  const changed = await chat("must not arrive\n");
  assert.equal(changed.code, 1);
  assert.equal(changed.stdout, "");
  assert.match(changed.stderr, /certificate of 127\.0\.0\.1:\d+ has CHANGED, refusing/);
  assert.match(changed.stderr, new RegExp(`recorded: +${first.fingerprint}`));
  assert.match(changed.stderr, new RegExp(`presented: +${second.fingerprint}`));
  assert.equal(await Deno.readTextFile(knownHosts), `${address} ${first.fingerprint}\n`);
  // What it would have sent never reached the room: the next message there is this one.
  await using other = await TestClient.connect(relay.port);
  await other.write("marker\n");
  const otherName = await welcomeOf(other);
  const heard: string[] = [];
  while (heard.at(-1) !== `[${otherName}] marker`) heard.push(await member.readLineMatching(/^\[/));
  assert.deepEqual(heard.map((l) => l.replace(/^\[\S+\] /, "")), [
    "hello",
    "hello again",
    "marker",
  ]);
});

Deno.test("sockit chat --tls --fingerprint accepts only the pinned certificate", async () => {
  await using config = await tempConfig();
  await using relay = await startSockit(["relay", "--port", "0", "--tls"], { env: config.env });
  const fingerprint = relay.stderr.join("\n").match(FINGERPRINT)![1];
  const address = `127.0.0.1:${relay.port}`;
  // The fingerprint as openssl prints it works too.
  const opensslForm = "sha256 Fingerprint=" +
    fingerprint.slice(7).toUpperCase().match(/../g)!.join(":");
  for (const pin of [fingerprint, opensslForm]) {
    const ok = await runSockit(["chat", "--tls", "--fingerprint", pin, address], {
      stdin: "pinned\n",
      env: config.env,
    });
    assert.equal(ok.code, 0, ok.stderr);
    assert.doesNotMatch(ok.stderr, /new host/);
  }
  const wrong = `sha256:${"0".repeat(64)}`;
  const refused = await runSockit(["chat", "--tls", "--fingerprint", wrong, address], {
    stdin: "must not arrive\n",
    env: config.env,
  });
  assert.equal(refused.code, 1);
  assert.match(refused.stderr, /is not the pinned one, refusing to connect/);
  assert.match(refused.stderr, new RegExp(`presented: ${fingerprint}`));
  // A pin never touches the known hosts file.
  await assert.rejects(Deno.stat(`${config.dir}/sockit/known_hosts`), Deno.errors.NotFound);
});

/** Makes a CA and a leaf it signed for 127.0.0.1 and localhost, with openssl. */
async function makeCa(dir: string): Promise<{ ca: string; certFile: string; keyFile: string }> {
  const openssl = async (args: string[]) => {
    const out = await new Deno.Command("openssl", { args, cwd: dir, stdin: "null" }).output();
    assert.equal(out.code, 0, `openssl ${args.join(" ")}: ${dec(out.stderr)}`);
  };
  const ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"];
  await openssl([
    "req",
    "-x509",
    ...ec,
    "-keyout",
    "ca-key.pem",
    "-out",
    "ca.pem",
    "-days",
    "2",
    "-subj",
    "/CN=sockit test CA",
    "-addext",
    "basicConstraints=critical,CA:TRUE",
    "-addext",
    "keyUsage=critical,keyCertSign",
  ]); // deno-fmt-ignore
  await openssl(["req", ...ec, "-keyout", "leaf-key.pem", "-out", "leaf.csr", "-subj", "/CN=relay"]);
  await Deno.writeTextFile(
    `${dir}/leaf.ext`,
    "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n" +
      "extendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1,DNS:localhost\n",
  );
  await openssl([
    "x509",
    "-req",
    "-in",
    "leaf.csr",
    "-CA",
    "ca.pem",
    "-CAkey",
    "ca-key.pem",
    "-CAcreateserial",
    "-out",
    "leaf.pem",
    "-days",
    "2",
    "-extfile",
    "leaf.ext",
  ]); // deno-fmt-ignore
  return { ca: `${dir}/ca.pem`, certFile: `${dir}/leaf.pem`, keyFile: `${dir}/leaf-key.pem` };
}

peerTest("openssl", {
  name: "sockit chat --tls --ca verifies a relay whose certificate a CA signed",
  fn: async () => {
    await using config = await tempConfig();
    const made = await makeCa(config.dir);
    await using relay = await startSockit(
      ["relay", "--port", "0", "--cert", made.certFile, "--key", made.keyFile],
      { env: config.env },
    );
    const address = `127.0.0.1:${relay.port}`;
    const ok = await runSockit(["chat", "--tls", "--ca", made.ca, address], {
      stdin: "signed\n",
      env: config.env,
    });
    assert.equal(ok.code, 0, ok.stderr);
    assert.match(ok.stdout, /^\* welcome /);
    assert.doesNotMatch(ok.stderr, /new host/);
    // Another CA does not vouch for it.
    const other = await createSelfSignedCert({ names: ["localhost"] });
    const otherCa = `${config.dir}/other-ca.pem`;
    await Deno.writeTextFile(otherCa, other.cert);
    const refused = await runSockit(["chat", "--tls", "--ca", otherCa, address], {
      stdin: "must not arrive\n",
      env: config.env,
    });
    assert.equal(refused.code, 1);
    assert.match(refused.stderr, /Cannot complete the TLS handshake with 127\.0\.0\.1:\d+/);
    await assert.rejects(Deno.stat(`${config.dir}/sockit/known_hosts`), Deno.errors.NotFound);
  },
});

Deno.test("sockit chat --tls --framed talks to a framed relay over TLS", async () => {
  await using config = await tempConfig();
  await using relay = await startSockit(["relay", "--port", "0", "--tls", "--framed"], {
    env: config.env,
  });
  assert.match(relay.stderr.join("\n"), /\(framed mode, TLS, certificate sha256:/);
  const out = await runSockit(
    ["chat", "--tls", "--framed", "--name", "alice", `127.0.0.1:${relay.port}`],
    { stdin: "framed over tls\n", env: config.env },
  );
  assert.equal(out.code, 0, out.stderr);
  assert.match(out.stdout, /^\* you are alice in lobby\n/);
  assert.match(out.stderr, /new host 127\.0\.0\.1:\d+/);
  await relay.waitForStderr(/alice disconnected: quit/);
});

Deno.test("sockit chat and relay refuse TLS flags that do not go together with exit 2", async () => {
  await using config = await tempConfig();
  for (
    const [args, message] of [
      [["chat", "--fingerprint", `sha256:${"0".repeat(64)}`, "127.0.0.1:1"], /without --tls/],
      [["chat", "--tls", "--proxy", "socks5://127.0.0.1:1", "127.0.0.1:1"], /--tls with --proxy/],
      [["chat", "--tls", "--ca", `${config.dir}/missing.pem`, "127.0.0.1:1"], /--ca file/],
      [["relay", "--port", "0", "--cert", `${config.dir}/c.pem`], /--cert alone/],
      [["relay", "--port", "0", "--deny", "10.0.0.0/33"], /Cannot parse CIDR '10\.0\.0\.0\/33'/],
    ] as const
  ) {
    const out = await runSockit([...args], { env: config.env });
    assert.equal(out.code, 2, `${args.join(" ")}: ${out.stderr}`);
    assert.match(out.stderr, message);
  }
});

// --- The certificate on SIGHUP --------------------------------------------------------------

Deno.test("relay --cert/--key: SIGHUP gives new connections the new pair, old ones keep chatting", async () => {
  await using config = await tempConfig();
  const first = await createSelfSignedCert({ names: ["localhost"] });
  const second = await createSelfSignedCert({ names: ["localhost"] });
  const files = await writePair(config.dir, "relay", first);
  await using relay = await startSockit(
    ["relay", "--port", "0", "--cert", files.certFile, "--key", files.keyFile],
    { env: config.env },
  );
  const connect = async () => {
    const conn = await connectTlsSocket("127.0.0.1", relay.port, { rejectUnauthorized: false });
    const client = TestClient.over(conn);
    return { conn, client, name: await welcomeOf(client) };
  };
  const old = await connect();
  assert.equal(old.conn.fingerprint, first.fingerprint);

  await writePair(config.dir, "relay", second);
  relay.child.kill("SIGHUP");
  await relay.waitForStderr(
    new RegExp(`SIGHUP: TLS certificate reloaded: new connections get ${second.fingerprint}`),
  );
  const fresh = await connect();
  assert.equal(fresh.conn.fingerprint, second.fingerprint);
  // The old connection is still served, both ways.
  await old.client.writeLine("from the old one");
  assert.equal(await fresh.client.readLineMatching(/^\[/), `[${old.name}] from the old one`);
  await fresh.client.writeLine("from the new one");
  assert.equal(await old.client.readLineMatching(/^\[/), `[${fresh.name}] from the new one`);

  // A broken file is refused with the reason; the pair in use stays.
  await Deno.writeTextFile(files.certFile, "not a certificate\n");
  relay.child.kill("SIGHUP");
  await relay.waitForStderr(
    new RegExp(`SIGHUP: keeping TLS certificate ${second.fingerprint}: .*relay-cert\\.pem`),
  );
  const later = await connect();
  assert.equal(later.conn.fingerprint, second.fingerprint);
  for (const c of [old, fresh, later]) c.client.close();
});

// --- Hostile clients ------------------------------------------------------------------------

Deno.test("relay --tls: a handshake that never completes is cut at the timeout; others chat meanwhile", async () => {
  await using config = await tempConfig();
  const timeoutMs = 2000;
  await using relay = await startSockit(
    ["relay", "--port", "0", "--tls", "--handshake-timeout", String(timeoutMs)],
    { env: config.env },
  );
  const tlsConn = await connectTlsSocket("127.0.0.1", relay.port, { rejectUnauthorized: false });
  await using tls = TestClient.over(tlsConn);
  const tlsName = await welcomeOf(tls);
  await using plain = await TestClient.connect(relay.port);
  await plain.write("hi\n");
  const plainName = await welcomeOf(plain);
  assert.equal(await tls.readLineMatching(/^\[/), `[${plainName}] hi`);

  // A ClientHello's record header and the start of its body, then silence.
  await using hostile = await TestClient.connect(relay.port);
  await hostile.write(new Uint8Array([0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03]));
  const sentAt = performance.now();
  let closedAt: number | undefined;
  const closed = hostile.readToEnd(EVENT_TIMEOUT_MS + timeoutMs).then((rest) => {
    closedAt = performance.now();
    return rest;
  });
  for (let i = 0; i < 20; i++) {
    await tls.writeLine(`tls ${i}`);
    assert.equal(await plain.readLineMatching(/^\[/), `[${tlsName}] tls ${i}`);
    await plain.writeLine(`plain ${i}`);
    assert.equal(await tls.readLineMatching(/^\[/), `[${plainName}] plain ${i}`);
  }
  assert.equal(closedAt, undefined, "the half-done handshake was cut before its timeout");
  assert.equal((await closed).length, 0);
  assert.ok(closedAt! - sentAt >= timeoutMs - 50, `cut after ${closedAt! - sentAt} ms`);
  await relay.waitForStderr(/refused 127\.0\.0\.1:\d+: Cannot complete the TLS handshake/);
  // Still chatting afterwards.
  await plain.writeLine("after");
  assert.equal(await tls.readLineMatching(/^\[/), `[${plainName}] after`);
});
