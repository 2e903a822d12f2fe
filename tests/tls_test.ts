/**
 * Tests of sockit's TLS pieces against real peers: certificates made by `tls_cert.ts` checked
 * by openssl and used by Deno's rustls on both sides, the config folder (modes, reuse, races),
 * fingerprints against openssl's, and the client's trust decisions (pin, CA, trust on first
 * use) over real loopback TLS, including an openssl s_server as the relay.
 */

import assert from "node:assert/strict";
import {
  CertificateChangedError,
  CertificateError,
  CertificatePinError,
  checkKnownHost,
  connectTlsSocket,
  connectVerifiedTls,
  createSelfSignedCert,
  defaultCertNames,
  fingerprintOf,
  KnownHostsError,
  knownHostsPath,
  loadOrCreateServerCert,
  type NewHost,
  parseFingerprint,
  readKnownHosts,
  sockitConfigDir,
  TlsHandshakeError,
} from "../lib/net/tls.ts";
import { UsageError } from "../lib/net/errors.ts";
import { withTimeout } from "../lib/net/deadline.ts";
import { writeAll } from "../lib/net/write_all.ts";
import { BufferedReader } from "../lib/net/buffered_reader.ts";
import { EVENT_TIMEOUT_MS, freePort, peerTest, tempTree } from "./_helpers.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** Runs a program to completion; its stdout, stderr and exit code. */
async function run(program: string, args: string[], stdin?: string) {
  const child = new Deno.Command(program, {
    args,
    stdin: stdin === undefined ? "null" : "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  if (stdin !== undefined) {
    const w = child.stdin.getWriter();
    await w.write(encoder.encode(stdin));
    await w.close();
  }
  const out = await withTimeout(child.output(), EVENT_TIMEOUT_MS, { what: program });
  return { code: out.code, stdout: decoder.decode(out.stdout), stderr: decoder.decode(out.stderr) };
}

/** Writes `text` to a new temporary file and returns its path. */
async function tempFile(text: string): Promise<string> {
  const path = await Deno.makeTempFile({ suffix: ".pem" });
  await Deno.writeTextFile(path, text);
  return path;
}

/**
 * A Deno TLS server on 127.0.0.1 that greets each client with `hello` and echoes one line;
 * `received` counts the application bytes each connection sent.
 */
function startTlsServer(key: { cert: string; key: string }, port = 0) {
  const listener = Deno.listenTls({ hostname: "127.0.0.1", port, ...key });
  const received: number[] = [];
  let onEnded: (() => void)[] = [];
  const conns = new Set<Deno.TlsConn>();
  const serving = (async () => {
    for await (const conn of listener) {
      conns.add(conn);
      (async () => {
        let got = 0;
        try {
          await conn.handshake();
          await writeAll(conn, encoder.encode("hello\n"));
          const reader = new BufferedReader(conn);
          const line = await reader.readLine(1024);
          if (line !== null) {
            got += line.length + 1;
            await writeAll(conn, encoder.encode(`echo ${decoder.decode(line)}\n`));
          }
        } catch {
          // The client refused us or went away.
        } finally {
          received.push(got);
          onEnded.forEach((f) => f());
          conns.delete(conn);
          try {
            conn.close();
          } catch {
            // Already closed.
          }
        }
      })();
    }
  })().catch(() => {});
  return {
    port: listener.addr.port,
    received,
    /** Resolves once `count` connections have ended. */
    ended(count: number): Promise<void> {
      const done = new Promise<void>((resolve) => {
        const check = () => {
          if (received.length < count) return;
          onEnded = onEnded.filter((f) => f !== check);
          resolve();
        };
        onEnded.push(check);
        check();
      });
      return withTimeout(done, EVENT_TIMEOUT_MS, { what: `${count} connections to end` });
    },
    async [Symbol.asyncDispose]() {
      listener.close();
      for (const c of conns) {
        try {
          c.close();
        } catch {
          // Already closed.
        }
      }
      await serving;
    },
  };
}

/** Reads one line from a TLS connection with the test deadline. */
async function readLine(reader: BufferedReader): Promise<string | null> {
  const line = await withTimeout(reader.readLine(1024), EVENT_TIMEOUT_MS, { what: "a line" });
  return line === null ? null : decoder.decode(line);
}

// --- Certificates ---------------------------------------------------------------------------

peerTest("openssl", {
  name: "createSelfSignedCert() makes a server leaf openssl reads as asked",
  fn: async () => {
    const before = Date.now();
    const { cert, key } = await createSelfSignedCert();
    const certFile = await tempFile(cert);
    const keyFile = await tempFile(key);
    try {
      const text = (await run("openssl", ["x509", "-in", certFile, "-noout", "-text"])).stdout;
      assert.match(text, /Signature Algorithm: ecdsa-with-SHA256/);
      assert.match(text, /NIST CURVE: P-256/);
      assert.match(text, /Basic Constraints: critical\s+CA:FALSE/);
      assert.match(text, /Key Usage: critical\s+Digital Signature\n/);
      assert.match(text, /Extended Key Usage: \s*\n\s+TLS Web Server Authentication/);
      const san = text.match(/Subject Alternative Name: \s*\n\s+(.*)/)![1];
      const names = san.split(", ");
      for (const want of ["DNS:localhost", "IP Address:127.0.0.1", "IP Address:0:0:0:0:0:0:0:1"]) {
        assert.ok(names.includes(want), `${want} in ${san}`);
      }
      const host = defaultCertNames()[3];
      if (host) assert.ok(names.includes(`DNS:${host}`), `the hostname in ${san}`);
      const dates = (await run("openssl", ["x509", "-in", certFile, "-noout", "-dates"])).stdout;
      const notBefore = Date.parse(dates.match(/notBefore=(.*)/)![1]);
      const notAfter = Date.parse(dates.match(/notAfter=(.*)/)![1]);
      const day = 24 * 3600 * 1000;
      assert.ok(notBefore <= before - day + 1000, "back-dated a day");
      assert.ok(notAfter - notBefore >= 3650 * day, "ten years");
      // The key is PKCS#8 and belongs to the certificate.
      assert.match(key, /^-----BEGIN PRIVATE KEY-----\n/);
      const fromKey = await run("openssl", ["pkey", "-in", keyFile, "-pubout"]);
      const fromCert = await run("openssl", ["x509", "-in", certFile, "-noout", "-pubkey"]);
      assert.equal(fromKey.stdout, fromCert.stdout);
      // Self-signed, usable as its own trust anchor for a server named localhost.
      const ok = await run("openssl", [
        "verify",
        "-CAfile",
        certFile,
        "-purpose",
        "sslserver",
        "-verify_hostname",
        "localhost",
        certFile,
      ]);
      assert.equal(ok.code, 0, ok.stdout + ok.stderr);
      const wrongName = await run("openssl", [
        "verify",
        "-CAfile",
        certFile,
        "-verify_hostname",
        "other.example",
        certFile,
      ]);
      assert.notEqual(wrongName.code, 0);
    } finally {
      await Deno.remove(certFile);
      await Deno.remove(keyFile);
    }
  },
});

Deno.test("createSelfSignedCert() makes a random positive serial each time", async () => {
  const { X509Certificate } = await import("node:crypto");
  const a = new X509Certificate((await createSelfSignedCert({ names: ["localhost"] })).cert);
  const b = new X509Certificate((await createSelfSignedCert({ names: ["localhost"] })).cert);
  assert.notEqual(a.serialNumber, b.serialNumber);
  assert.match(a.serialNumber, /^[1-7][0-9A-F]{31}$/);
});

Deno.test("a created certificate is served and trusted by Deno's TLS for each of its names", async () => {
  const key = await createSelfSignedCert({ names: ["localhost", "127.0.0.1", "::1"] });
  await using server = startTlsServer(key);
  for (const hostname of ["localhost", "127.0.0.1"]) {
    const conn = await Deno.connectTls({ hostname, port: server.port, caCerts: [key.cert] });
    try {
      assert.equal(await readLine(new BufferedReader(conn)), "hello", hostname);
    } finally {
      conn.close();
    }
  }
  // Without the certificate as a trust anchor, rustls refuses it.
  await assert.rejects(async () => {
    const conn = await Deno.connectTls({ hostname: "localhost", port: server.port });
    try {
      await conn.handshake();
    } finally {
      conn.close();
    }
  }, /UnknownIssuer|certificate/i);
});

Deno.test("createSelfSignedCert() takes about 10 ms once its library is loaded", async () => {
  await createSelfSignedCert({ names: ["localhost"] }); // loads @peculiar/x509
  const runs = 5;
  const started = performance.now();
  for (let i = 0; i < runs; i++) await createSelfSignedCert({ names: ["localhost"] });
  const ms = (performance.now() - started) / runs;
  // Generous bound for a busy machine: the point is that it is not seconds (no RSA).
  assert.ok(ms < 1000, `took ${ms.toFixed(1)} ms per certificate`);
});

// --- Fingerprints ----------------------------------------------------------------------------

peerTest("openssl", {
  name: "fingerprintOf() equals openssl's SHA-256 fingerprint, in either form",
  fn: async () => {
    const { cert, fingerprint } = await createSelfSignedCert({ names: ["localhost"] });
    const file = await tempFile(cert);
    try {
      const out = await run("openssl", ["x509", "-in", file, "-noout", "-fingerprint", "-sha256"]);
      const line = out.stdout.trim(); // sha256 Fingerprint=AB:CD:...
      assert.equal(fingerprintOf(cert), fingerprint);
      assert.equal(parseFingerprint(line), fingerprint);
      assert.equal(parseFingerprint(line.split("=")[1]), fingerprint);
      assert.equal(fingerprint, "sha256:" + line.split("=")[1].replaceAll(":", "").toLowerCase());
    } finally {
      await Deno.remove(file);
    }
  },
});

Deno.test("parseFingerprint() takes the display form in any case and refuses others", () => {
  const hex = "0123456789abcdef".repeat(4);
  assert.equal(parseFingerprint(`sha256:${hex}`), `sha256:${hex}`);
  assert.equal(parseFingerprint(` SHA256:${hex.toUpperCase()} `), `sha256:${hex}`);
  assert.equal(parseFingerprint(hex), `sha256:${hex}`);
  for (const bad of ["", "sha1:abcd", `sha256:${hex.slice(2)}`, `sha512:${hex}`, "AB:CD"]) {
    assert.throws(() => parseFingerprint(bad), UsageError, JSON.stringify(bad));
  }
  assert.throws(() => fingerprintOf("not a certificate"), CertificateError);
});

// --- The config folder -------------------------------------------------------------------------

Deno.test("loadOrCreateServerCert() creates the pair in XDG_CONFIG_HOME/sockit, then reuses it", async () => {
  await using tree = await tempTree();
  const env = { XDG_CONFIG_HOME: `${tree.base}/config`, HOME: "/nonexistent" };
  const dir = `${tree.base}/config/sockit`;
  assert.equal(sockitConfigDir({ env }), dir);
  const first = await loadOrCreateServerCert({ env, names: ["localhost"] });
  assert.equal(first.created, true);
  assert.equal(first.certFile, `${dir}/relay-cert.pem`);
  assert.equal(first.keyFile, `${dir}/relay-key.pem`);
  assert.equal((await Deno.stat(dir)).mode! & 0o777, 0o700);
  assert.equal((await Deno.stat(first.keyFile)).mode! & 0o777, 0o600);
  assert.equal(fingerprintOf(await Deno.readTextFile(first.certFile)), first.fingerprint);
  const names = [];
  for await (const e of Deno.readDir(dir)) names.push(e.name);
  assert.deepEqual(names.sort(), ["relay-cert.pem", "relay-key.pem"], "no temporary file left");
  const again = await loadOrCreateServerCert({ env });
  assert.equal(again.created, false);
  assert.equal(again.fingerprint, first.fingerprint);
  assert.equal(again.key, first.key);
  // HOME is the fallback.
  assert.equal(sockitConfigDir({ env: { HOME: "/home/u" } }), "/home/u/.config/sockit");
  assert.throws(() => sockitConfigDir({ env: {} }), UsageError);
});

Deno.test("loadOrCreateServerCert() started twice at once ends with one pair for both", async () => {
  await using tree = await tempTree();
  const configDir = `${tree.base}/sockit`;
  const results = await Promise.all(
    Array.from({ length: 4 }, () => loadOrCreateServerCert({ configDir, names: ["localhost"] })),
  );
  assert.equal(results.filter((r) => r.created).length, 1);
  assert.equal(new Set(results.map((r) => r.fingerprint)).size, 1);
  assert.equal(new Set(results.map((r) => r.key)).size, 1);
  // The pair on disk matches (readPair checks the key against the certificate).
  assert.equal((await loadOrCreateServerCert({ configDir })).fingerprint, results[0].fingerprint);
});

Deno.test("loadOrCreateServerCert() with files reads them and names the file that is wrong", async () => {
  await using tree = await tempTree();
  const a = await createSelfSignedCert({ names: ["localhost"] });
  const b = await createSelfSignedCert({ names: ["localhost"] });
  const file = (name: string, text: string) => {
    Deno.writeTextFileSync(`${tree.base}/${name}`, text);
    return `${tree.base}/${name}`;
  };
  const cert = file("a-cert.pem", a.cert);
  const key = file("a-key.pem", a.key);
  const loaded = await loadOrCreateServerCert({ certFile: cert, keyFile: key });
  assert.equal(loaded.fingerprint, a.fingerprint);
  assert.equal(loaded.created, false);
  const missing = `${tree.base}/missing.pem`;
  await assert.rejects(
    loadOrCreateServerCert({ certFile: missing, keyFile: key }),
    (e: Error) => e instanceof CertificateError && e.message.includes(missing),
  );
  const garbage = file("garbage.pem", "hello\n");
  await assert.rejects(
    loadOrCreateServerCert({ certFile: garbage, keyFile: key }),
    (e: Error) => e instanceof CertificateError && e.message.includes(garbage),
  );
  await assert.rejects(
    loadOrCreateServerCert({ certFile: cert, keyFile: garbage }),
    (e: Error) => e instanceof CertificateError && e.message.includes(garbage),
  );
  const otherKey = file("b-key.pem", b.key);
  await assert.rejects(
    loadOrCreateServerCert({ certFile: cert, keyFile: otherKey }),
    (e: Error) =>
      e instanceof CertificateError && e.message.includes(otherKey) && e.message.includes(cert),
  );
  await assert.rejects(loadOrCreateServerCert({ certFile: cert }), UsageError);
});

Deno.test("loadOrCreateServerCert() refuses a key left without its certificate", async () => {
  await using tree = await tempTree();
  const made = await loadOrCreateServerCert({ configDir: tree.base, names: ["localhost"] });
  await Deno.remove(made.certFile);
  await assert.rejects(
    loadOrCreateServerCert({ configDir: tree.base }),
    (e: Error) => e instanceof CertificateError && e.message.includes(made.certFile),
  );
});

// --- Trust: known hosts, pins, CAs ---------------------------------------------------------

Deno.test("checkKnownHost() records a new host, matches it, refuses a change loudly", async () => {
  await using tree = await tempTree();
  const announced: NewHost[] = [];
  const options = { configDir: `${tree.base}/sockit`, onNew: (h: NewHost) => announced.push(h) };
  const file = knownHostsPath(options);
  const a = `sha256:${"a1".repeat(32)}`;
  const b = `sha256:${"b2".repeat(32)}`;
  assert.equal(await checkKnownHost("other:1", b, options), "new");
  assert.equal(await checkKnownHost("relay.example:7000", a, options), "new");
  assert.equal(await checkKnownHost("Relay.Example:7000", a.toUpperCase(), options), "match");
  assert.deepEqual(announced.map((h) => [h.hostPort, h.fingerprint, h.file]), [
    ["other:1", b, file],
    ["relay.example:7000", a, file],
  ]);
  assert.equal(await Deno.readTextFile(file), `other:1 ${b}\nrelay.example:7000 ${a}\n`);
  assert.equal((await Deno.stat(file)).mode! & 0o777, 0o600);
  const changed = await checkKnownHost("relay.example:7000", b, options).catch((e) => e);
  assert.ok(changed instanceof CertificateChangedError);
  assert.equal(changed.line, 2);
  assert.equal(changed.file, file);
  for (const part of [a, b, `line 2 of ${file}`, "relay.example:7000", "CHANGED"]) {
    assert.ok(changed.message.includes(part), `message shows ${part}:\n${changed.message}`);
  }
  assert.equal(announced.length, 2, "a refused host is not announced");
  assert.equal((await readKnownHosts(file)).length, 2, "nor recorded");
});

Deno.test("readKnownHosts() refuses a malformed line and names it", async () => {
  await using tree = await tempTree();
  const file = `${tree.base}/known_hosts`;
  await Deno.writeTextFile(
    file,
    `# mine\nrelay:7000 sha256:${"0".repeat(64)}\nrelay:7001 md5:00\n`,
  );
  await assert.rejects(
    readKnownHosts(file),
    (e: Error) => e instanceof KnownHostsError && e.message.includes(`line 3 of ${file}`),
  );
});

Deno.test("connectVerifiedTls() trusts on first use, then matches, then refuses a new certificate", async () => {
  await using tree = await tempTree();
  const announced: NewHost[] = [];
  const options = { configDir: tree.base, onNew: (h: NewHost) => announced.push(h) };
  const first = await createSelfSignedCert({ names: ["localhost"] });
  let port: number;
  {
    await using server = startTlsServer(first);
    port = server.port;
    const a = await connectVerifiedTls("127.0.0.1", port, options);
    assert.equal(a.trust, "new");
    assert.equal(a.fingerprint, first.fingerprint);
    const reader = new BufferedReader(a.conn);
    assert.equal(await readLine(reader), "hello");
    await writeAll(a.conn, encoder.encode("over tofu\n"));
    assert.equal(await readLine(reader), "echo over tofu");
    a.conn.close();
    const b = await connectVerifiedTls("127.0.0.1", port, options);
    assert.equal(b.trust, "known");
    b.conn.close();
  }
  assert.deepEqual(announced.map((h) => h.hostPort), [`127.0.0.1:${port}`]);
  // Same address, another certificate: someone else is answering.
  const second = await createSelfSignedCert({ names: ["localhost"] });
  await using impostor = startTlsServer(second, port);
  const refused = await connectVerifiedTls("127.0.0.1", port, options).catch((e) => e);
  assert.ok(refused instanceof CertificateChangedError, String(refused));
  assert.equal(refused.known, first.fingerprint);
  assert.equal(refused.presented, second.fingerprint);
  await impostor.ended(1);
  assert.deepEqual(impostor.received, [0], "not a byte was sent to it");
  // A pin overrides the record: the new certificate is accepted when pinned.
  const pinned = await connectVerifiedTls("127.0.0.1", port, {
    ...options,
    fingerprint: second.fingerprint,
  });
  assert.equal(pinned.trust, "pinned");
  pinned.conn.close();
  assert.equal((await readKnownHosts(knownHostsPath(options))).length, 1);
});

Deno.test("connectVerifiedTls() with a pin accepts only that certificate", async () => {
  await using tree = await tempTree();
  const key = await createSelfSignedCert({ names: ["localhost"] });
  await using server = startTlsServer(key);
  const options = { configDir: tree.base, onNew: () => assert.fail("no known hosts with a pin") };
  const ok = await connectVerifiedTls("127.0.0.1", server.port, {
    ...options,
    fingerprint: key.fingerprint.toUpperCase(),
  });
  assert.equal(ok.trust, "pinned");
  ok.conn.close();
  const wrong = `sha256:${"0".repeat(64)}`;
  const refused = await connectVerifiedTls("127.0.0.1", server.port, {
    ...options,
    fingerprint: wrong,
  }).catch((e) => e);
  assert.ok(refused instanceof CertificatePinError, String(refused));
  assert.ok(refused.message.includes(wrong) && refused.message.includes(key.fingerprint));
  assert.deepEqual(await readKnownHosts(knownHostsPath(options)), []);
});

Deno.test("connectVerifiedTls() with a CA verifies the chain and the name", async () => {
  await using tree = await tempTree();
  const key = await createSelfSignedCert({ names: ["localhost", "127.0.0.1"] });
  await using server = startTlsServer(key);
  const options = { configDir: tree.base, onNew: () => assert.fail("no known hosts with a CA") };
  for (const hostname of ["localhost", "127.0.0.1"]) {
    const ok = await connectVerifiedTls(hostname, server.port, { ...options, ca: key.cert });
    assert.equal(ok.trust, "ca", hostname);
    assert.equal(ok.conn.authorized, true);
    ok.conn.close();
  }
  // The name is checked: the certificate does not name other.example.
  await assert.rejects(
    connectVerifiedTls("127.0.0.1", server.port, {
      ...options,
      ca: key.cert,
      servername: "other.example",
    }),
    TlsHandshakeError,
  );
  // Another CA does not vouch for it.
  const stranger = await createSelfSignedCert({ names: ["localhost"] });
  await assert.rejects(
    connectVerifiedTls("localhost", server.port, { ...options, ca: stranger.cert }),
    TlsHandshakeError,
  );
  // The public roots are not consulted: no CA given and a strict connection refuses.
  await assert.rejects(
    connectTlsSocket("localhost", server.port, { rejectUnauthorized: true }),
    TlsHandshakeError,
  );
});

Deno.test("connectVerifiedTls() reports a peer that is not TLS as a handshake failure", async () => {
  await using tree = await tempTree();
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const accepted = listener.accept().then(async (c) => {
    await writeAll(c, encoder.encode("* welcome, this is plain text\n"));
    c.close();
  });
  await assert.rejects(
    connectVerifiedTls("127.0.0.1", listener.addr.port, { configDir: tree.base }),
    TlsHandshakeError,
  );
  await accepted;
  listener.close();
});

peerTest("openssl", {
  name: "connectVerifiedTls() pins an openssl s_server relay and talks to it",
  fn: async () => {
    await using tree = await tempTree();
    const key = await createSelfSignedCert({ names: ["localhost"] });
    const certFile = `${tree.base}/cert.pem`;
    const keyFile = `${tree.base}/key.pem`;
    await Deno.writeTextFile(certFile, key.cert);
    await Deno.writeTextFile(keyFile, key.key);
    const port = freePort();
    const child = new Deno.Command("openssl", {
      args: [
        "s_server",
        "-accept",
        `127.0.0.1:${port}`,
        "-cert",
        certFile,
        "-key",
        keyFile,
        "-naccept",
        "1",
      ],
      stdin: "piped",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const stdout = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
    const stderr = new Response(child.stderr).text();
    const writer = child.stdin.getWriter();
    try {
      let seen = "";
      const waitForOutput = (text: string) =>
        withTimeout(
          (async () => {
            while (!seen.includes(text)) {
              const { value, done } = await stdout.read();
              if (done) throw new Error(`s_server ended: ${await stderr}`);
              seen += value;
            }
          })(),
          EVENT_TIMEOUT_MS,
          { what: `s_server to print ${JSON.stringify(text)}` },
        );
      await waitForOutput("ACCEPT\n"); // listening
      const verified = await connectVerifiedTls("127.0.0.1", port, {
        configDir: tree.base,
        onNew: () => {},
      });
      assert.equal(verified.trust, "new");
      assert.equal(verified.fingerprint, key.fingerprint);
      await writeAll(verified.conn, encoder.encode("to openssl\n"));
      await waitForOutput("to openssl\n");
      await writer.write(encoder.encode("from openssl\n"));
      assert.equal(await readLine(new BufferedReader(verified.conn)), "from openssl");
      verified.conn.close();
    } finally {
      try {
        child.kill("SIGKILL");
      } catch {
        // Exited.
      }
      await writer.close().catch(() => {});
      await stdout.cancel().catch(() => {});
      await child.status;
      await stderr;
    }
  },
});

// --- The TLS connection itself ----------------------------------------------------------------

Deno.test("acceptTls() refuses a broken ClientHello and a stalled one, and closes the socket", async () => {
  const key = await createSelfSignedCert({ names: ["localhost"] });
  const { acceptTls } = await import("../lib/net/tls_stream.ts");
  using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  for (
    const [what, bytes, match] of [
      ["garbage", new Uint8Array([0x16, 0x03, 0x01, 0x00, 0x04, 0xde, 0xad, 0xbe, 0xef]), /./],
      ["a stall", new Uint8Array([0x16, 0x03]), /Timed out/],
    ] as const
  ) {
    const client = await Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port });
    try {
      await writeAll(client, bytes);
      const accepting = acceptTls(await listener.accept(), key, { timeoutMs: 300 });
      await assert.rejects(
        accepting,
        (e: Error) => e instanceof TlsHandshakeError && match.test(e.message),
        what,
      );
      // The server closed its socket: the client reads an alert or end of file, then EOF.
      const buf = new Uint8Array(1024);
      const ended = withTimeout(
        (async () => {
          try {
            while ((await client.read(buf)) !== null) { /* an alert */ }
          } catch {
            // Reset by the peer: closed too.
          }
        })(),
        EVENT_TIMEOUT_MS,
        { what: `the server to close after ${what}` },
      );
      await ended;
    } finally {
      client.close();
    }
  }
});

Deno.test("a TLS connection holds a reader's data without loss and pushes back on its writer", async () => {
  const key = await createSelfSignedCert({ names: ["localhost"] });
  const { acceptTls } = await import("../lib/net/tls_stream.ts");
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const clientP = connectTlsSocket("127.0.0.1", listener.addr.port, { rejectUnauthorized: false });
  const server = await acceptTls(await listener.accept(), key);
  const client = await clientP;
  listener.close();
  try {
    // The client does not read: the server's writes stall once the socket buffers are full.
    const chunk = new Uint8Array(64 * 1024).fill(7);
    let written = 0;
    let stalled = false;
    while (written < 256 * 1024 * 1024) {
      const write = server.write(chunk);
      const outcome = await Promise.race([
        write.then(() => "written"),
        new Promise((r) => setTimeout(() => r("stalled"), 500)),
      ]);
      if (outcome === "stalled") {
        stalled = true;
        // Reading everything written (and what is in flight) releases the writer.
        const total = written + chunk.length;
        const reading = withTimeout(
          (async () => {
            let got = 0;
            const buf = new Uint8Array(64 * 1024);
            while (got < total) {
              const n = await client.read(buf);
              if (n === null) break;
              assert.ok(buf.subarray(0, n).every((b) => b === 7), "bytes arrive intact");
              got += n;
            }
            return got;
          })(),
          EVENT_TIMEOUT_MS,
          { what: `${total} bytes` },
        );
        await withTimeout(write, EVENT_TIMEOUT_MS, { what: "the stalled write to finish" });
        written = total;
        assert.equal(await reading, total, "every byte arrived");
        break;
      }
      written += chunk.length;
    }
    assert.ok(stalled, `a writer whose peer does not read was never held (${written} bytes)`);
    assert.ok(written < 64 * 1024 * 1024, `held after ${written} bytes`);
  } finally {
    client.close();
    server.close();
  }
});
