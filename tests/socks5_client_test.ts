import assert from "node:assert/strict";
import { UsageError } from "../lib/net/errors.ts";
import { parseProxyUrl, Reply, socks5Connect, Socks5Error } from "../lib/socks5/mod.ts";
import { EVENT_TIMEOUT_MS, peerTest, TestClient } from "./_helpers.ts";
import { withTimeout } from "../lib/net/deadline.ts";

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
  assert.throws(() => parseProxyUrl("socks5://user@127.0.0.1:1080"), /user:pass/);
  assert.throws(() => parseProxyUrl("socks5://127.0.0.1:99999"), /bad port/);
  assert.throws(() => parseProxyUrl("socks5://u:@127.0.0.1:1"), /password/);
});

/** A TCP server answering each connection with a greeting line, then echoing lines. */
function greeter() {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  (async () => {
    for await (const conn of listener) {
      (async () => {
        await conn.write(new TextEncoder().encode("hello\n"));
        const buf = new Uint8Array(1024);
        let n;
        while ((n = await conn.read(buf)) !== null) await conn.write(buf.subarray(0, n));
        conn.close();
      })().catch(() => {});
    }
  })().catch(() => {});
  return listener;
}

peerTest(
  "microsocks",
  "socks5Connect() tunnels through microsocks and keeps early target bytes",
  async () => {
    using listener = greeter();
    const port = listener.addr.port + 1000 > 65000 ? 40123 : listener.addr.port + 1000;
    const child = new Deno.Command("microsocks", {
      args: ["-i", "127.0.0.1", "-p", String(port)],
      stdout: "null",
      stderr: "null",
    }).spawn();
    try {
      let conn: Deno.TcpConn | undefined;
      await withTimeout(
        (async () => {
          while (true) {
            try {
              conn = await socks5Connect({ hostname: "127.0.0.1", port }, {
                hostname: "localhost",
                port: listener.addr.port,
              });
              return;
            } catch (error) {
              if (!(error instanceof Deno.errors.ConnectionRefused)) throw error;
              await new Promise((r) => setTimeout(r, 20));
            }
          }
        })(),
        EVENT_TIMEOUT_MS,
        "microsocks",
      );
      const c = conn!;
      const reader = new (await import("../lib/net/buffered_reader.ts")).BufferedReader(c);
      assert.equal(new TextDecoder().decode((await reader.readLine(100))!), "hello");
      c.close();
      await assert.rejects(
        socks5Connect({ hostname: "127.0.0.1", port }, { hostname: "127.0.0.1", port: 1 }),
        (e: unknown) => e instanceof Socks5Error && e.reply !== Reply.Succeeded,
      );
    } finally {
      child.kill("SIGKILL");
      await child.status;
    }
    void TestClient;
  },
);
