/**
 * Which proxy `send` and `chat` use and with which credentials (`lib/socks5/client_proxy.ts`):
 * `--proxy`, else SOCKS_PROXY/ALL_PROXY, NO_PROXY, the password from SOCKIT_PROXY_PASSWORD or
 * a file rather than argv; and a real `sockit chat` through a real `sockit socks5` with users,
 * configured only by its environment.
 */

import assert from "node:assert/strict";
import { UsageError } from "../lib/net/errors.ts";
import { clientProxy } from "../lib/socks5/client_proxy.ts";
import { joinRelay, startSockit } from "./_helpers.ts";

const TARGET = { hostname: "relay.example", port: 7070 };
const envOf = (vars: Record<string, string>) => (name: string) => vars[name];

Deno.test("clientProxy: --proxy first, then SOCKS_PROXY before ALL_PROXY; none means direct", () => {
  const env = envOf({ SOCKS_PROXY: "socks5://s:1", ALL_PROXY: "socks5://a:2" });
  assert.deepEqual(clientProxy(TARGET, { url: "socks5://flag:3", env }), {
    hostname: "flag",
    port: 3,
  });
  assert.deepEqual(clientProxy(TARGET, { env }), { hostname: "s", port: 1 });
  assert.deepEqual(clientProxy(TARGET, { env: envOf({ all_proxy: "socks5h://a:2" }) }), {
    hostname: "a",
    port: 2,
  });
  assert.equal(clientProxy(TARGET, { env: envOf({}) }), undefined);
});

Deno.test("clientProxy: NO_PROXY exempts hosts; an HTTP proxy in ALL_PROXY is skipped with a warning", () => {
  const warnings: string[] = [];
  const warn = (t: string) => warnings.push(t);
  const env = envOf({ ALL_PROXY: "socks5://p:1080", NO_PROXY: ".example, 10.0.0.1" });
  assert.equal(clientProxy(TARGET, { env, warn }), undefined);
  assert.equal(clientProxy({ hostname: "10.0.0.1", port: 1 }, { env, warn }), undefined);
  assert.deepEqual(clientProxy({ hostname: "10.0.0.2", port: 1 }, { env, warn }), {
    hostname: "p",
    port: 1080,
  });
  const http = envOf({ ALL_PROXY: "http://user:secret@corp:3128" });
  assert.equal(clientProxy(TARGET, { env: http, warn }), undefined);
  assert.match(
    warnings.at(-1)!,
    /ignoring ALL_PROXY=http:\/\/user:\*\*\*@corp:3128: .*SOCKS5 only/,
  );
  assert.ok(!warnings.join("\n").includes("secret"));
});

Deno.test("clientProxy: the password from SOCKIT_PROXY_PASSWORD or a file; argv passwords are warned about", async () => {
  const warnings: string[] = [];
  const warn = (t: string) => warnings.push(t);
  const env = envOf({ SOCKIT_PROXY_PASSWORD: "from-env" });
  assert.deepEqual(clientProxy(TARGET, { url: "socks5://alice@p:1", env, warn }), {
    hostname: "p",
    port: 1,
    username: "alice",
    password: "from-env",
  });
  assert.equal(warnings.length, 0);
  assert.throws(
    () => clientProxy(TARGET, { url: "socks5://alice@p:1", env: envOf({}) }),
    (e: Error) => e instanceof UsageError && /no password .*SOCKIT_PROXY_PASSWORD/.test(e.message),
  );
  clientProxy(TARGET, { url: "socks5://alice:typed@p:1", env: envOf({}), warn });
  assert.match(
    warnings[0],
    /password in --proxy socks5:\/\/alice:\*\*\*@p:1 can be read by every local user/,
  );
  assert.ok(!warnings[0].includes("typed"));

  const file = await Deno.makeTempFile();
  try {
    await Deno.writeTextFile(file, "# proxy login\nbob:from-file\n");
    await Deno.chmod(file, 0o600);
    assert.deepEqual(clientProxy(TARGET, { url: "socks5://p:1", authFile: file, env, warn }), {
      hostname: "p",
      port: 1,
      username: "bob",
      password: "from-file",
    });
    assert.equal(warnings.length, 1);
    await Deno.chmod(file, 0o644);
    clientProxy(TARGET, { url: "socks5://p:1", authFile: file, env, warn });
    assert.match(warnings[1], /can be read by other users \(chmod 600 it\)/);
    await Deno.writeTextFile(file, "no colon\n");
    assert.throws(() => clientProxy(TARGET, { url: "socks5://p:1", authFile: file }), /user:pass/);
  } finally {
    await Deno.remove(file);
  }
});

Deno.test("sockit chat goes through the proxy in ALL_PROXY, its password from SOCKIT_PROXY_PASSWORD", async () => {
  await using relay = await startSockit(["relay", "--port", "0"]);
  await using proxy = await startSockit(["socks5", "--port", "0", "--user", "alice:wonder"]);
  const { client: reader, name } = await joinRelay(relay.port);
  await using _reader = reader;
  await using chat = await startSockit(
    ["chat", `127.0.0.1:${relay.port}`, "--name", "viaproxy"],
    {
      ready: false,
      stdin: true,
      env: {
        ALL_PROXY: `socks5://alice@127.0.0.1:${proxy.port}`,
        SOCKIT_PROXY_PASSWORD: "wonder",
        NO_PROXY: "",
      },
    },
  );
  await reader.readLineMatching(/viaproxy/);
  await chat.write("hello through the proxy\n");
  assert.equal(
    await reader.readLineMatching(/through the proxy/),
    "[viaproxy] hello through the proxy",
  );
  // The session's log line comes when the tunnel ends: at the end of chat's input.
  await chat.closeStdin();
  await chat.status;
  await proxy.waitForStderr(new RegExp(`user="alice" CONNECT 127\\.0\\.0\\.1:${relay.port} `));
  assert.ok(name.length > 0);
});
