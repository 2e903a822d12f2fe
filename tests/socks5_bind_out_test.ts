/**
 * `socks5 --bind-out IP`: outgoing connections come from that local address (127.0.0.2 here),
 * for SOCKS5 and HTTP CONNECT, and a bulk transfer through such a connection arrives intact
 * both ways (the `node:net` adapter of `lib/net/bound_connect.ts`, with its backpressure).
 */

import assert from "node:assert/strict";
import { parseProxyUrl, socks5Connect } from "../lib/socks5/client.ts";
import { writeAll } from "../lib/net/write_all.ts";
import { pseudoRandomBytes, startSockit } from "./_helpers.ts";

Deno.test("socks5 --bind-out 127.0.0.2: the destination sees 127.0.0.2; 8 MiB echo intact", async () => {
  using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  await using proxy = await startSockit(["socks5", "--port", "0", "--bind-out", "127.0.0.2"]);
  const seen: string[] = [];
  const serving = (async () => {
    for (let i = 0; i < 2; i++) {
      const conn = await listener.accept();
      seen.push(conn.remoteAddr.hostname);
      // Echo until the client's end of input, then close.
      const buf = new Uint8Array(64 * 1024);
      let n;
      while ((n = await conn.read(buf)) !== null) await writeAll(conn, buf.subarray(0, n));
      conn.close();
    }
  })();
  const target = { hostname: "127.0.0.1", port: listener.addr.port };

  const socks = await socks5Connect(parseProxyUrl(`socks5://127.0.0.1:${proxy.port}`), target);
  const data = pseudoRandomBytes(8 * 1024 * 1024, 7);
  const reading = (async () => {
    const got = new Uint8Array(data.length);
    let off = 0;
    while (off < got.length) {
      const n = await socks.read(got.subarray(off));
      if (n === null) break;
      off += n;
    }
    return got.subarray(0, off);
  })();
  await writeAll(socks, data);
  await socks.closeWrite();
  assert.deepEqual(await reading, data);
  socks.close();

  // HTTP CONNECT on the same port takes the same path out.
  const http = await Deno.connect({ hostname: "127.0.0.1", port: proxy.port });
  const authority = `127.0.0.1:${listener.addr.port}`;
  await writeAll(
    http,
    new TextEncoder().encode(`CONNECT ${authority} HTTP/1.1\r\nHost: ${authority}\r\n\r\n`),
  );
  const buf = new Uint8Array(256);
  let head = "";
  while (!head.includes("\r\n\r\n")) {
    const n = await http.read(buf);
    assert.notEqual(n, null);
    head += new TextDecoder().decode(buf.subarray(0, n!));
  }
  assert.match(head, /^HTTP\/1\.1 200 /);
  await writeAll(http, new TextEncoder().encode("ping"));
  const n = await http.read(buf);
  assert.equal(new TextDecoder().decode(buf.subarray(0, n!)), "ping");
  await http.closeWrite();
  await serving;
  http.close();
  assert.deepEqual(seen, ["127.0.0.2", "127.0.0.2"]);
  await proxy.waitForStderr(/CONNECT 127\.0\.0\.1:\d+ via 127\.0\.0\.1:\d+ reply=0x00/);
});

Deno.test("socks5 --bind-out: an IPv4 source does not dial IPv6 (0x03), a bad address is a usage error", async () => {
  await using proxy = await startSockit(["socks5", "--port", "0", "--bind-out", "127.0.0.1"]);
  await assert.rejects(
    socks5Connect(parseProxyUrl(`socks5://127.0.0.1:${proxy.port}`), { hostname: "::1", port: 9 }),
    /0x03|network unreachable/i,
  );
  const bad = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "main.ts", "socks5", "--port", "0", "--bind-out", "not-an-ip"],
    cwd: new URL("..", import.meta.url).pathname,
    stdout: "null",
    stderr: "piped",
  }).output();
  assert.equal(bad.code, 2);
  assert.match(new TextDecoder().decode(bad.stderr), /Cannot parse --bind-out 'not-an-ip'/);
});

Deno.test("socks5 --bind-out keeps half-close: after the destination's FIN the client still sends", async () => {
  using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  await using proxy = await startSockit(["socks5", "--port", "0", "--bind-out", "127.0.0.2"]);
  const served = (async () => {
    const conn = await listener.accept();
    await writeAll(conn, new TextEncoder().encode("bye"));
    await conn.closeWrite(); // FIN from the destination; it still reads
    const got: number[] = [];
    const buf = new Uint8Array(64);
    let n;
    while ((n = await conn.read(buf)) !== null) got.push(...buf.subarray(0, n));
    conn.close();
    return new TextDecoder().decode(new Uint8Array(got));
  })();
  const socks = await socks5Connect(parseProxyUrl(`socks5://127.0.0.1:${proxy.port}`), {
    hostname: "127.0.0.1",
    port: listener.addr.port,
  });
  const buf = new Uint8Array(64);
  let text = "";
  let n;
  while ((n = await socks.read(buf)) !== null) text += new TextDecoder().decode(buf.subarray(0, n));
  assert.equal(text, "bye");
  await writeAll(socks, new TextEncoder().encode("still talking"));
  await socks.closeWrite();
  assert.equal(await served, "still talking");
  socks.close();
});
