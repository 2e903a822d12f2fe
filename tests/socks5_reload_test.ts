/**
 * socks5 configuration reload and client rules: SIGHUP re-reads `--users` and `--rules`
 * while tunnels stay up, a broken file keeps the old configuration, and `--deny-client` /
 * `deny-client` lines refuse a source address (127.0.0.2 here) before any byte is read.
 */

import assert from "node:assert/strict";
import { parseProxyUrl, socks5Connect } from "../lib/socks5/client.ts";
import { peerTest, startEchoServer, startSockit } from "./_helpers.ts";

const enc = (s: string) => new TextEncoder().encode(s);
const dec = (b: Uint8Array) => new TextDecoder().decode(b);

/** Opens a SOCKS5 tunnel to `target` as `user:pass`; throws when the proxy refuses. */
function tunnel(proxyPort: number, auth: string, target: number): Promise<Deno.TcpConn> {
  return socks5Connect(
    parseProxyUrl(`socks5://${auth}@127.0.0.1:${proxyPort}`),
    { hostname: "127.0.0.1", port: target },
  );
}

/** Writes `text` and reads the echo back. */
async function echo(conn: Deno.TcpConn, text: string): Promise<string> {
  await conn.write(enc(text));
  const buf = new Uint8Array(text.length);
  let got = 0;
  while (got < text.length) {
    const n = await conn.read(buf.subarray(got));
    if (n === null) throw new Error("the tunnel closed");
    got += n;
  }
  return dec(buf);
}

Deno.test("socks5: SIGHUP swaps users for new sessions while an open tunnel keeps going", async () => {
  const dir = await Deno.makeTempDir({ prefix: "sockit-reload-" });
  try {
    const usersFile = `${dir}/users`;
    await Deno.writeTextFile(usersFile, "alice:wonder\n");
    await using echoServer = startEchoServer();
    await using proxy = await startSockit(["socks5", "--port", "0", "--users", usersFile]);
    const open = await tunnel(proxy.port, "alice:wonder", echoServer.port);
    try {
      assert.equal(await echo(open, "before"), "before");

      await Deno.writeTextFile(usersFile, "# alice is gone\nbob:builder\n");
      proxy.child.kill("SIGHUP");
      await proxy.waitForStderr(/SIGHUP: reloaded \(users \+bob -alice\); open tunnels keep going/);
      assert.equal(await echo(open, "after the reload"), "after the reload");
      await assert.rejects(tunnel(proxy.port, "alice:wonder", echoServer.port));
      const bob = await tunnel(proxy.port, "bob:builder", echoServer.port);
      assert.equal(await echo(bob, "hi bob"), "hi bob");
      bob.close();

      // A broken file keeps the old configuration (bob), and says why.
      await Deno.writeTextFile(usersFile, "no colon here\n");
      proxy.child.kill("SIGHUP");
      await proxy.waitForStderr(
        /SIGHUP: keeping the old users and rules: Cannot parse user in .* line 1/,
      );
      const bobAgain = await tunnel(proxy.port, "bob:builder", echoServer.port);
      assert.equal(await echo(bobAgain, "still bob"), "still bob");
      bobAgain.close();
      assert.equal(await echo(open, "alice's tunnel"), "alice's tunnel");
    } finally {
      open.close();
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

/** curl through the proxy from `source`; its exit code and body. */
async function curlFrom(source: string, proxyPort: number, url: string) {
  const out = await new Deno.Command("curl", {
    args: [
      "-sS",
      "--max-time",
      "10",
      "--interface",
      source,
      "--socks5",
      `127.0.0.1:${proxyPort}`,
      url,
    ],
    stdout: "piped",
    stderr: "piped",
  }).output();
  return { code: out.code, body: dec(out.stdout) };
}

peerTest("curl", {
  name: "socks5: client rules refuse 127.0.0.2 before a byte is read; a --rules reload lifts it",
  fn: async () => {
    const dir = await Deno.makeTempDir({ prefix: "sockit-client-rules-" });
    try {
      const rulesFile = `${dir}/rules`;
      await Deno.writeTextFile(rulesFile, "deny-client 127.0.0.2  # one source out\n");
      const origin = Deno.serve(
        { hostname: "127.0.0.1", port: 0, onListen: () => {} },
        () => new Response("ok"),
      );
      try {
        const url = `http://127.0.0.1:${origin.addr.port}/`;
        await using proxy = await startSockit(["socks5", "--port", "0", "--rules", rulesFile]);
        assert.deepEqual(await curlFrom("127.0.0.1", proxy.port, url), { code: 0, body: "ok" });
        const denied = await curlFrom("127.0.0.2", proxy.port, url);
        assert.notEqual(denied.code, 0);
        await proxy.waitForStderr(/refused 127\.0\.0\.2:\d+: client address denied by the rules/);

        await Deno.writeTextFile(rulesFile, "# nobody refused now\n");
        proxy.child.kill("SIGHUP");
        await proxy.waitForStderr(/SIGHUP: reloaded \(rules -deny-client 127\.0\.0\.2\)/);
        assert.deepEqual(await curlFrom("127.0.0.2", proxy.port, url), { code: 0, body: "ok" });
      } finally {
        await origin.shutdown();
      }
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test("socks5 --deny-client and --allow-client take CIDRs; a bad one is a usage error", async () => {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "main.ts", "socks5", "--port", "0", "--deny-client", "300.1.2.3"],
    cwd: new URL("..", import.meta.url).pathname,
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert.equal(out.code, 2);
  assert.match(dec(out.stderr), /300\.1\.2\.3/);
});
