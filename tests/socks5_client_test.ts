import assert from "node:assert/strict";
import { TimeoutError, UsageError } from "../lib/net/errors.ts";
import { BufferedReader } from "../lib/net/buffered_reader.ts";
import { withTimeout } from "../lib/net/deadline.ts";
import {
  parseProxyUrl,
  Reply,
  socks5Bind,
  socks5Connect,
  Socks5Error,
  startSocks5Server,
} from "../lib/socks5/mod.ts";
import { EVENT_TIMEOUT_MS, peerTest, startTcpTestServer } from "./_helpers.ts";
import { writeAll } from "../lib/net/write_all.ts";

const dec = (b: Uint8Array) => new TextDecoder().decode(b);

Deno.test("parseProxyUrl() reads host, port and percent-encoded credentials", () => {
  assert.deepEqual(parseProxyUrl("socks5://127.0.0.1:1080"), {
    hostname: "127.0.0.1",
    port: 1080,
  });
  assert.deepEqual(parseProxyUrl("socks5h://a%40b:p%3Ass@[::1]:9050/"), {
    hostname: "::1",
    port: 9050,
    username: "a@b",
    password: "p:ss",
  });
  assert.equal(parseProxyUrl("socks5://proxy.local").port, 1080);
});

Deno.test("parseProxyUrl() names the bad part", () => {
  assert.throws(() => parseProxyUrl("http://127.0.0.1:1080"), /scheme 'http'/);
  assert.throws(() => parseProxyUrl("127.0.0.1:1080"), UsageError);
  // A user without a password is allowed: the password comes from SOCKIT_PROXY_PASSWORD.
  assert.deepEqual(parseProxyUrl("socks5://user@127.0.0.1:1080"), {
    hostname: "127.0.0.1",
    port: 1080,
    username: "user",
  });
  assert.throws(() => parseProxyUrl("socks5://@127.0.0.1:1080"), /user name/);
  assert.throws(() => parseProxyUrl("socks5://127.0.0.1:99999"), /bad port/);
  assert.throws(() => parseProxyUrl("socks5://u:@127.0.0.1:1"), /password/);
});

/** A TCP server that greets each connection with a line, then echoes what it reads. */
function startGreeter() {
  return startTcpTestServer(async (conn) => {
    await writeAll(conn, new TextEncoder().encode("hello\n"));
    const buf = new Uint8Array(1024);
    let n;
    while ((n = await conn.read(buf)) !== null) await writeAll(conn, buf.subarray(0, n));
  });
}

/** Calls `fn` until it stops failing with ConnectionRefused (a peer still starting). */
async function retryRefused<T>(fn: () => Promise<T>): Promise<T> {
  return await withTimeout(
    (async () => {
      while (true) {
        try {
          return await fn();
        } catch (error) {
          if (!(error instanceof Deno.errors.ConnectionRefused)) throw error;
          await new Promise((r) => setTimeout(r, 20));
        }
      }
    })(),
    EVENT_TIMEOUT_MS,
    { what: "the proxy to listen" },
  );
}

Deno.test("socks5Connect() keeps the bytes a target sends right after the proxy's reply", async () => {
  await using greeter = startGreeter();
  const server = startSocks5Server(Deno.listen({ hostname: "127.0.0.1", port: 0 }));
  try {
    const conn = await socks5Connect({ hostname: "127.0.0.1", port: server.addr.port }, {
      hostname: "localhost",
      port: greeter.port,
    });
    const reader = new BufferedReader(conn);
    assert.equal(dec((await reader.readLine(100))!), "hello");
    conn.close();
  } finally {
    await server.stop();
  }
});

Deno.test("socks5Connect() times out on a proxy that never answers", async () => {
  const silent = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const accepted = silent.accept();
  await assert.rejects(
    socks5Connect({ hostname: "127.0.0.1", port: silent.addr.port }, {
      hostname: "127.0.0.1",
      port: 9,
    }, { timeoutMs: 100 }),
    TimeoutError,
  );
  (await accepted).close();
  silent.close();
});

Deno.test("socks5Bind() reports the listening address, then the peer, then carries data", async () => {
  const server = startSocks5Server(Deno.listen({ hostname: "127.0.0.1", port: 0 }));
  try {
    const bind = await socks5Bind({ hostname: "127.0.0.1", port: server.addr.port }, {
      hostname: "0.0.0.0",
      port: 0,
    });
    assert.equal(bind.bound.hostname, "127.0.0.1");
    const peer = await Deno.connect({ hostname: "127.0.0.1", port: bind.bound.port });
    const from = await bind.accepted();
    assert.equal(from.port, peer.localAddr.port);
    await peer.write(new TextEncoder().encode("via bind\n"));
    assert.equal(dec((await new BufferedReader(bind.conn).readLine(100))!), "via bind");
    peer.close();
    bind.conn.close();
  } finally {
    await server.stop();
  }
});

peerTest("microsocks", {
  name: "socks5Connect() works against microsocks, and maps its refusal",
  fn: async () => {
    await using greeter = startGreeter();
    const probe = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const port = probe.addr.port;
    probe.close();
    const child = new Deno.Command("microsocks", {
      args: ["-i", "127.0.0.1", "-p", String(port)],
      stdout: "null",
      stderr: "null",
    }).spawn();
    try {
      const proxy = { hostname: "127.0.0.1", port };
      const conn = await retryRefused(() =>
        socks5Connect(proxy, { hostname: "localhost", port: greeter.port })
      );
      assert.equal(dec((await new BufferedReader(conn).readLine(100))!), "hello");
      conn.close();
      await assert.rejects(
        socks5Connect(proxy, { hostname: "127.0.0.1", port: 1 }),
        (e: unknown) => e instanceof Socks5Error && e.reply !== Reply.Succeeded,
      );
    } finally {
      child.kill("SIGKILL");
      await child.status;
    }
  },
});

Deno.test("parseProxyUrl never echoes the password of a bad proxy URL", () => {
  for (
    const bad of [
      "socks5://alice:s3cret@host:99999",
      "socks5://alice:p@ss:w0rd@host:1080/x",
      "http://alice:s3cret@host:1080",
    ]
  ) {
    assert.throws(() => parseProxyUrl(bad), (error: Error) => {
      assert.doesNotMatch(error.message, /s3cret|w0rd|p@ss/);
      assert.match(error.message, /:\/\/alice:\*\*\*@/);
      return true;
    });
  }
});
