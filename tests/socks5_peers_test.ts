// BIND and UDP ASSOCIATE with real third-party clients: the npm package `socks` and PySocks.
import assert from "node:assert/strict";
import net from "node:net";
import dgram from "node:dgram";
import { Buffer } from "node:buffer";
import { type EventEmitter, once as eventOnce } from "node:events";
import { SocksClient, type SocksClientOptions, type SocksRemoteHost } from "npm:socks@2";
import { withTimeout } from "../lib/net/deadline.ts";
import { EVENT_TIMEOUT_MS } from "./_helpers.ts";
import { startTestProxy } from "./_socks5.ts";

const enc = (s: string) => new TextEncoder().encode(s);
const dec = (b: Uint8Array) => new TextDecoder().decode(b);

/** Node's sockets keep timers and ops a little past close; these tests do not leak them. */
const NODE_IO = { sanitizeOps: false, sanitizeResources: false };

/** Resolves the first value an event emitter emits for `event`, within the test timeout. */
function once<T>(emitter: EventEmitter, event: string): Promise<T> {
  return withTimeout(eventOnce(emitter, event).then(([value]) => value as T), EVENT_TIMEOUT_MS, {
    what: event,
  });
}

/** Reads from a node socket until `want` bytes arrived. */
function readN(socket: net.Socket, want: number): Promise<string> {
  let got = "";
  return withTimeout(
    new Promise<string>((resolve, reject) => {
      const onData = (chunk: Buffer) => {
        got += chunk.toString();
        if (got.length >= want) {
          socket.off("data", onData);
          resolve(got);
        }
      };
      socket.on("data", onData);
      socket.once("error", reject);
    }),
    EVENT_TIMEOUT_MS,
    { what: `${want} bytes` },
  );
}

/**
 * Sends a BIND request with npm `socks` for a peer at `peerHost`; resolves the proxy's two
 * replies as the package reports them.
 */
function startBind(proxyPort: number, peerHost: string) {
  const client = new SocksClient({
    proxy: { host: "127.0.0.1", port: proxyPort, type: 5 },
    command: "bind",
    destination: { host: peerHost, port: 0 },
    timeout: EVENT_TIMEOUT_MS,
  } as SocksClientOptions);
  const bound = once<{ remoteHost: SocksRemoteHost }>(client, "bound");
  const established = once<{ socket: net.Socket; remoteHost: SocksRemoteHost }>(
    client,
    "established",
  );
  client.connect();
  return { bound, established };
}

Deno.test({
  name: "socks5: BIND with npm socks gets both replies, then data flows both ways",
  ...NODE_IO,
  async fn() {
    await using proxy = startTestProxy();
    const { bound, established } = startBind(proxy.port, "0.0.0.0");
    const first = await bound;
    assert.equal(first.remoteHost.host, "127.0.0.1");
    assert.notEqual(first.remoteHost.port, 0);
    const peer = await Deno.connect({ hostname: "127.0.0.1", port: first.remoteHost.port });
    const second = await established;
    assert.equal(second.remoteHost.host, "127.0.0.1");
    assert.equal(second.remoteHost.port, peer.localAddr.port);
    const socket = second.socket;
    await peer.write(enc("from peer\n"));
    assert.equal(await readN(socket, 10), "from peer\n");
    socket.write("from client\n");
    const buf = new Uint8Array(64);
    let text = "";
    while (text.length < 12) text += dec(buf.subarray(0, (await peer.read(buf))!));
    assert.equal(text, "from client\n");
    socket.end();
    peer.close();
    await once(socket, "close");
  },
});

Deno.test({
  name: "socks5: BIND for a given peer address closes a peer from another address",
  ...NODE_IO,
  async fn() {
    await using proxy = startTestProxy();
    const { bound, established } = startBind(proxy.port, "127.0.0.2");
    const { port } = (await bound).remoteHost;
    // From 127.0.0.1: not the expected peer, closed by the proxy.
    const stranger = await Deno.connect({ hostname: "127.0.0.1", port });
    assert.equal(
      await withTimeout(stranger.read(new Uint8Array(8)), EVENT_TIMEOUT_MS, { what: "EOF" }),
      null,
    );
    stranger.close();
    // From 127.0.0.2: accepted.
    const peer = net.connect({ host: "127.0.0.1", port, localAddress: "127.0.0.2" });
    await once(peer, "connect");
    const second = await established;
    assert.equal(second.remoteHost.host, "127.0.0.2");
    peer.write("ok\n");
    assert.equal(await readN(second.socket, 3), "ok\n");
    second.socket.destroy();
    peer.destroy();
  },
});

/** A UDP echo server on 127.0.0.1 that remembers every payload it saw. */
function startUdpEcho() {
  const socket = Deno.listenDatagram({ transport: "udp", hostname: "127.0.0.1", port: 0 });
  const seen: string[] = [];
  const done = (async () => {
    try {
      while (true) {
        const [data, addr] = await socket.receive();
        seen.push(dec(data));
        await socket.send(data, addr);
      }
    } catch {
      // Closed.
    }
  })();
  return {
    port: (socket.addr as Deno.NetAddr).port,
    seen,
    async [Symbol.asyncDispose]() {
      socket.close();
      await done;
    },
  };
}

Deno.test({
  name: "socks5: UDP ASSOCIATE with npm socks: round trip, FRAG != 0 dropped, strangers ignored",
  ...NODE_IO,
  async fn() {
    await using echo = startUdpEcho();
    await using proxy = startTestProxy();
    const client = new SocksClient({
      proxy: { host: "127.0.0.1", port: proxy.port, type: 5 },
      command: "associate",
      destination: { host: "0.0.0.0", port: 0 },
      timeout: EVENT_TIMEOUT_MS,
    } as SocksClientOptions);
    const established = once<{ socket: net.Socket; remoteHost: SocksRemoteHost }>(
      client,
      "established",
    );
    client.connect();
    const info = await established;
    const relay = info.remoteHost!;
    assert.equal(relay.host, "127.0.0.1");
    assert.notEqual(relay.port, 0);
    const udp = dgram.createSocket("udp4");
    const replies: { host: string; port: number; data: string }[] = [];
    let wake = () => {};
    udp.on("message", (msg: Buffer) => {
      const frame = SocksClient.parseUDPFrame(msg);
      replies.push({ ...frame.remoteHost, data: frame.data.toString() });
      wake();
    });
    await new Promise<void>((r) => udp.bind(0, "127.0.0.1", r));
    const send = (data: string, frameNumber = 0, host = "127.0.0.1") =>
      new Promise<void>((resolve, reject) => {
        const frame = SocksClient.createUDPFrame({
          remoteHost: { host, port: echo.port },
          data: Buffer.from(data),
          frameNumber,
        });
        udp.send(frame, relay.port, relay.host, (err) => (err ? reject(err) : resolve()));
      });
    const nextReply = () =>
      withTimeout(new Promise<void>((r) => (replies.length ? r() : (wake = r))), EVENT_TIMEOUT_MS, {
        what: "a UDP reply",
      }).then(() => replies.shift()!);

    await send("hello");
    assert.deepEqual(await nextReply(), { host: "127.0.0.1", port: echo.port, data: "hello" });

    // A fragment: dropped without a reply.
    await send("fragment", 1);
    // A well-formed datagram from another IP: ignored.
    const stranger = Deno.listenDatagram({ transport: "udp", hostname: "127.0.0.2", port: 0 });
    const header = SocksClient.createUDPFrame({
      remoteHost: { host: "127.0.0.1", port: echo.port },
      data: Buffer.from("intruder"),
    });
    await stranger.send(new Uint8Array(header), {
      transport: "udp",
      hostname: relay.host,
      port: relay.port,
    });
    stranger.close();
    // A big datagram (60 KiB) makes the round trip whole.
    const big = "x".repeat(60 * 1024);
    await send(big);
    const r = await nextReply();
    assert.equal(r.data.length, big.length);
    // A destination by name (ATYP 3): the reply comes back from its address.
    await send("by name", 0, "localhost");
    assert.deepEqual(await nextReply(), { host: "127.0.0.1", port: echo.port, data: "by name" });
    assert.deepEqual(echo.seen, ["hello", big, "by name"]);

    udp.close();
    // Closing the control connection ends the association, logged with its drops.
    info.socket.destroy();
    await proxy.waitForLog(/UDP ASSOCIATE .*reply=0x00 .*\[2 datagrams dropped\]/);
  },
});

const PYTHON = "/usr/bin/python3";
const hasPySocks = (() => {
  try {
    return new Deno.Command(PYTHON, { args: ["-c", "import socks"], stderr: "null" }).outputSync()
      .success;
  } catch {
    return false;
  }
})();

Deno.test({
  name: hasPySocks
    ? 'socks5: PySocks UDP (DST domain "0") round trip'
    : "socks5: PySocks UDP round trip (skipped: python3-socks is not installed)",
  ignore: !hasPySocks,
  async fn() {
    await using echo = startUdpEcho();
    await using proxy = startTestProxy();
    const script = `
import socks, socket, sys
s = socks.socksocket(socket.AF_INET, socket.SOCK_DGRAM)
s.set_proxy(socks.SOCKS5, "127.0.0.1", ${proxy.port})
s.settimeout(5)
s.sendto(b"py-hello", ("127.0.0.1", ${echo.port}))
data, addr = s.recvfrom(65535)
print(data.decode(), addr[1])
`;
    const out = await withTimeout(
      new Deno.Command(PYTHON, { args: ["-c", script], stdout: "piped", stderr: "piped" })
        .output(),
      EVENT_TIMEOUT_MS,
      { what: "python" },
    );
    assert.equal(out.code, 0, dec(out.stderr));
    assert.equal(dec(out.stdout).trim(), `py-hello ${echo.port}`);
  },
});
