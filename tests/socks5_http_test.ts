/**
 * HTTP proxying on the socks5 port (`lib/socks5/http.ts`), tested with real curl: CONNECT to
 * a local TLS server (`-x`, and `https_proxy=` in the environment), plain `GET http://`
 * forwarding with keep-alive, Proxy-Authorization (407), rules (403), refused dials (502),
 * hostile heads; SOCKS on the same port still works, and `--no-http` turns HTTP off.
 */

import assert from "node:assert/strict";
import { createSelfSignedCert } from "../lib/net/tls_cert.ts";
import {
  EVENT_TIMEOUT_MS,
  hasCommand,
  peerTest,
  startSockit,
  startTcpTestServer,
  TestClient,
} from "./_helpers.ts";
import { startTestProxy } from "./_socks5.ts";
import { writeAll } from "../lib/net/write_all.ts";

const enc = (s: string) => new TextEncoder().encode(s);

const HAVE_CURL = hasCommand("curl");

/** A local HTTP (or HTTPS) origin answering `hello PATH` (and echoing a POST body). */
function startOrigin(tls?: { cert: string; key: string }) {
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen: () => {}, ...(tls ?? {}) },
    async (req) => {
      const url = new URL(req.url);
      if (req.method === "POST") return new Response(`posted ${await req.text()}`);
      if (url.pathname === "/chunked") {
        const body = new ReadableStream({
          start(c) {
            c.enqueue(new TextEncoder().encode("part one, "));
            c.enqueue(new TextEncoder().encode("part two"));
            c.close();
          },
        });
        return new Response(body);
      }
      return new Response(`hello ${url.pathname}${url.search}`, {
        headers: { "x-seen-proxy-auth": String(req.headers.has("proxy-authorization")) },
      });
    },
  );
  return {
    port: server.addr.port,
    [Symbol.asyncDispose]: () => server.shutdown(),
  };
}

/** Runs curl; stdout and the exit code. */
async function curl(args: string[], env: Record<string, string> = {}) {
  const out = await new Deno.Command("curl", {
    args: ["-sS", "--max-time", "10", ...args],
    env: { ...env, no_proxy: "", NO_PROXY: "" },
    stdout: "piped",
    stderr: "piped",
  }).output();
  return {
    code: out.code,
    stdout: new TextDecoder().decode(out.stdout),
    stderr: new TextDecoder().decode(out.stderr),
  };
}

peerTest("curl", {
  name: "proxy: curl -x http:// forwards GETs (kept alive), POSTs and chunked answers",
  fn: async () => {
    await using origin = startOrigin();
    await using proxy = await startSockit(["proxy", "--port", "0"]);
    const x = `http://127.0.0.1:${proxy.port}`;
    const base = `http://127.0.0.1:${origin.port}`;
    const two = await curl([
      "-x",
      x,
      `${base}/one?a=1`,
      "-w",
      " [%{num_connects}]\n",
      `${base}/two`,
      "-w",
      " [%{num_connects}]\n",
    ]);
    assert.equal(two.code, 0, two.stderr);
    // The second request reused the proxy connection (no new connect).
    assert.equal(two.stdout, "hello /one?a=1 [1]\nhello /two [0]\n");
    const post = await curl(["-x", x, "--data-binary", "grüße", `${base}/p`]);
    assert.equal(post.stdout, "posted grüße");
    const chunked = await curl(["-x", x, `${base}/chunked`]);
    assert.equal(chunked.stdout, "part one, part two");
    await proxy.waitForStderr(/http GET 127\.0\.0\.1:\d+ via .* status=200/);
  },
});

peerTest(["curl", "openssl"], {
  name: "proxy: CONNECT to a local TLS server, with -x and with https_proxy= in the environment",
  fn: async () => {
    const pair = await createSelfSignedCert({ names: ["127.0.0.1"] });
    const dir = await Deno.makeTempDir({ prefix: "sockit-http-proxy-" });
    try {
      await Deno.writeTextFile(`${dir}/ca.pem`, pair.cert);
      await using origin = startOrigin(pair);
      await using proxy = await startSockit(["socks5", "--port", "0"]);
      const url = `https://127.0.0.1:${origin.port}/secure`;
      const viaFlag = await curl([
        "--cacert",
        `${dir}/ca.pem`,
        "-x",
        `127.0.0.1:${proxy.port}`,
        url,
      ]);
      assert.equal(viaFlag.stdout, "hello /secure", viaFlag.stderr);
      const viaEnv = await curl(["--cacert", `${dir}/ca.pem`, url], {
        https_proxy: `http://127.0.0.1:${proxy.port}`,
      });
      assert.equal(viaEnv.stdout, "hello /secure", viaEnv.stderr);
      await proxy.waitForStderr(/http CONNECT 127\.0\.0\.1:\d+ via .* status=200/);
      // And SOCKS5 on the very same port.
      const socks = await curl([
        "--cacert",
        `${dir}/ca.pem`,
        "--socks5-hostname",
        `127.0.0.1:${proxy.port}`,
        url,
      ]);
      assert.equal(socks.stdout, "hello /secure", socks.stderr);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

peerTest("curl", {
  name: "proxy: users need Proxy-Authorization (407 otherwise); it is not passed on",
  fn: async () => {
    const dir = await Deno.makeTempDir({ prefix: "sockit-http-auth-" });
    try {
      await Deno.writeTextFile(`${dir}/users`, "alice:s3cret\n");
      await using origin = startOrigin();
      await using proxy = await startSockit(["proxy", "--port", "0", "--users", `${dir}/users`]);
      const x = `http://127.0.0.1:${proxy.port}`;
      const url = `http://127.0.0.1:${origin.port}/a`;
      const ok = await curl(["-x", x, "--proxy-user", "alice:s3cret", "-D", "-", url]);
      assert.match(ok.stdout, /^HTTP\/1\.1 200/);
      assert.match(ok.stdout, /x-seen-proxy-auth: false/i);
      const missing = await curl(["-x", x, "-o", "/dev/null", "-D", "-", url]);
      assert.match(missing.stdout, /^HTTP\/1\.1 407 /);
      assert.match(missing.stdout, /Proxy-Authenticate: Basic realm="sockit"/);
      const wrong = await curl([
        "-x",
        x,
        "--proxy-user",
        "alice:nope",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        url,
      ]);
      assert.equal(wrong.stdout, "407");
      const tunnel = await curl(["-p", "-x", x, "-o", "/dev/null", "-w", "%{http_connect}", url]);
      assert.equal(tunnel.stdout, "407");
      const tunnelOk = await curl(["-p", "-x", x, "--proxy-user", "alice:s3cret", url]);
      assert.equal(tunnelOk.stdout, "hello /a");
      await proxy.waitForStderr(/authentication failed for user "alice"/);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

peerTest("curl", {
  name: "proxy: rules answer 403, a refused dial 502, a bad request 400, huge headers 431",
  fn: async () => {
    await using origin = startOrigin();
    await using proxy = await startSockit(["proxy", "--port", "0", "--deny", "127.0.0.2/32"]);
    const x = `http://127.0.0.1:${proxy.port}`;
    const denied = await curl([
      "-p",
      "-x",
      x,
      "-o",
      "/dev/null",
      "-w",
      "%{http_connect}",
      `http://127.0.0.2:${origin.port}/`,
    ]);
    assert.equal(denied.stdout, "403");
    const deniedGet = await curl([
      "-x",
      x,
      "-o",
      "/dev/null",
      "-w",
      "%{http_code}",
      `http://127.0.0.2:${origin.port}/`,
    ]);
    assert.equal(deniedGet.stdout, "403");
    // A port nothing listens on: freed right after binding it.
    const closed = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const closedPort = closed.addr.port;
    closed.close();
    const refused = await curl([
      "-p",
      "-x",
      x,
      "-o",
      "/dev/null",
      "-w",
      "%{http_connect}",
      `http://127.0.0.1:${closedPort}/`,
    ]);
    assert.equal(refused.stdout, "502");

    // By hand: an origin-form request is not a proxy request; 1 MB of headers is refused at
    // the bound, and the proxy still serves the next client.
    await using plain = await TestClient.connect(proxy.port);
    await plain.write("GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    assert.match(await plain.readLineMatching(/^HTTP/), /^HTTP\/1\.1 400 /);
    await using huge = await TestClient.connect(proxy.port);
    await huge.write(`GET http://127.0.0.1:${origin.port}/ HTTP/1.1\r\n`);
    const junk = `X-Junk: ${"j".repeat(1000)}\r\n`.repeat(1000);
    const writing = huge.write(junk).catch(() => {});
    assert.match(await huge.readLineMatching(/^HTTP/), /^HTTP\/1\.1 431 /);
    await writing;
    const after = await curl(["-x", x, `http://127.0.0.1:${origin.port}/still`]);
    assert.equal(after.stdout, "hello /still");
  },
});

Deno.test({
  name: `proxy --no-http: an HTTP client is closed, SOCKS still served${
    HAVE_CURL ? "" : " (skipped: curl is not installed)"
  }`,
  ignore: !HAVE_CURL,
  fn: async () => {
    await using origin = startOrigin();
    await using proxy = await startSockit(["socks5", "--port", "0", "--no-http"]);
    const r = await curl([
      "-x",
      `http://127.0.0.1:${proxy.port}`,
      `http://127.0.0.1:${origin.port}/`,
    ]);
    assert.notEqual(r.code, 0);
    const socks = await curl([
      "--socks5-hostname",
      `127.0.0.1:${proxy.port}`,
      `http://127.0.0.1:${origin.port}/s`,
    ]);
    assert.equal(socks.stdout, "hello /s");
  },
});

// --- Forwarding edge cases (in-process proxy, raw origins) --------------------------------

/** Reads an origin's request head (up to its blank line) from `conn`. */
async function readHead(conn: Deno.Conn): Promise<string> {
  const buf = new Uint8Array(4096);
  let head = "";
  while (!head.includes("\r\n\r\n")) {
    const n = await conn.read(buf);
    if (n === null) break;
    head += new TextDecoder().decode(buf.subarray(0, n));
  }
  return head;
}

/** Sends `request` to the proxy and reads everything it answers until it closes. */
async function exchange(port: number, request: string): Promise<string> {
  await using client = await TestClient.connect(port);
  await client.write(request);
  return new TextDecoder().decode(await client.readToEnd());
}

Deno.test("proxy: an origin that never answers gets 504 after the idle limit, not a hang", async () => {
  await using silent = startTcpTestServer(async (conn) => {
    await readHead(conn);
    await new Promise<void>((resolve) => setTimeout(resolve, EVENT_TIMEOUT_MS)); // never answers
  });
  await using proxy = startTestProxy({ httpIdleMs: 300 });
  const answer = await exchange(
    proxy.port,
    `GET http://127.0.0.1:${silent.port}/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`,
  );
  assert.match(answer, /^HTTP\/1\.1 504 /);
  assert.match(answer, /no byte moved for 300 ms/);
});

Deno.test("proxy: 100 Continue is passed on before the final answer; Host is the target's", async () => {
  const seenHosts: string[] = [];
  await using origin = startTcpTestServer(async (conn) => {
    const head = await readHead(conn);
    seenHosts.push(head.match(/^Host: (.*)$/mi)?.[1] ?? "");
    await writeAll(conn, enc("HTTP/1.1 100 Continue\r\n\r\n"));
    await writeAll(conn, enc("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"));
  });
  await using proxy = startTestProxy();
  const answer = await exchange(
    proxy.port,
    `GET http://127.0.0.1:${origin.port}/x HTTP/1.1\r\nHost: internal.admin\r\n` +
      "Connection: close\r\n\r\n",
  );
  assert.match(answer, /^HTTP\/1\.1 100 Continue\r\n\r\nHTTP\/1\.1 200 OK\r\n/);
  assert.ok(answer.endsWith("\r\n\r\nok"), answer);
  assert.deepEqual(seenHosts, [`127.0.0.1:${origin.port}`]);
});

Deno.test("proxy: a chunked answer that also has a Content-Length loses the Content-Length", async () => {
  await using origin = startTcpTestServer(async (conn) => {
    await readHead(conn);
    await writeAll(
      conn,
      enc(
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 999\r\n\r\n" +
          "3\r\nabc\r\n0\r\n\r\n",
      ),
    );
  });
  await using proxy = startTestProxy();
  const answer = await exchange(
    proxy.port,
    `GET http://127.0.0.1:${origin.port}/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`,
  );
  assert.doesNotMatch(answer, /Content-Length/i);
  assert.match(answer, /Transfer-Encoding: chunked\r\n/);
  assert.ok(answer.endsWith("3\r\nabc\r\n0\r\n\r\n"), answer);
});
