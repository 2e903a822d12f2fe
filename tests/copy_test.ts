import assert from "node:assert/strict";
import { copyBidirectional } from "../lib/net/copy.ts";
import { Deadlines, delay } from "../lib/net/deadline.ts";
import { pseudoRandomBytes, TestClient } from "./_helpers.ts";

/**
 * A forwarder on loopback: accepts one client, connects to `targetPort`, copies both ways.
 */
function forwardOnce(targetPort: number, options: Parameters<typeof copyBidirectional>[2] = {}) {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const result = (async () => {
    const client = await listener.accept();
    const target = await Deno.connect({ hostname: "127.0.0.1", port: targetPort });
    listener.close();
    return await copyBidirectional(client, target, options);
  })();
  return { port: listener.addr.port, result };
}

/** A server that reads everything until EOF, then answers with its byte count and closes. */
function countingServer() {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const done = (async () => {
    const conn = await listener.accept();
    listener.close();
    let total = 0;
    const buf = new Uint8Array(65536);
    let n;
    while ((n = await conn.read(buf)) !== null) total += n;
    await conn.write(new TextEncoder().encode(`got ${total}\n`));
    conn.close();
    return total;
  })();
  return { port: listener.addr.port, done };
}

Deno.test("copyBidirectional() propagates half-close: the client still gets the reply", async () => {
  const server = countingServer();
  const fwd = forwardOnce(server.port);
  const client = await TestClient.connect(fwd.port);
  const data = pseudoRandomBytes(3 * 1024 * 1024 + 17);
  await client.write(data);
  await client.conn.closeWrite();
  assert.equal(await client.readLine(), `got ${data.length}`);
  assert.equal(await client.readLine(), null);
  const result = await fwd.result;
  assert.equal(result.aToB, data.length);
  assert.equal(result.bToA, `got ${data.length}\n`.length);
  assert.equal(result.end, "done");
  assert.equal(await server.done, data.length);
  client.close();
});

Deno.test("copyBidirectional() copies bytes intact in both directions", async () => {
  // An echo server: what goes up comes back down through the same forwarder.
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const echo = (async () => {
    const conn = await listener.accept();
    listener.close();
    const buf = new Uint8Array(8192);
    let n;
    while ((n = await conn.read(buf)) !== null) {
      let off = 0;
      while (off < n) off += await conn.write(buf.subarray(off, n));
    }
    await conn.closeWrite();
    conn.close();
  })();
  const fwd = forwardOnce(listener.addr.port);
  const client = await TestClient.connect(fwd.port);
  const data = pseudoRandomBytes(2 * 1024 * 1024, 7);
  const [, back] = await Promise.all([
    client.write(data).then(() => client.conn.closeWrite()),
    client.readToEnd(),
  ]);
  assert.deepEqual(back, data);
  await echo;
  await fwd.result;
  client.close();
});

Deno.test("copyBidirectional() caps how long a half-open pair lingers", async () => {
  // The target never closes its side; the client half-closes; the cap ends the pair.
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const accepted = listener.accept();
  const fwd = forwardOnce(listener.addr.port, { halfOpenTimeoutMs: 100 });
  const client = await TestClient.connect(fwd.port);
  const target = await accepted;
  listener.close();
  await client.conn.closeWrite();
  const result = await fwd.result;
  assert.equal(result.end, "half-open timeout");
  assert.equal(await client.readLine(), null);
  client.close();
  target.close();
});

Deno.test("copyBidirectional() closes an idle pair, but not one where bytes keep moving", async () => {
  // An echo target: every byte the client sends comes back, so each line is activity.
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const echo = (async () => {
    const conn = await listener.accept();
    listener.close();
    const buf = new Uint8Array(1024);
    let n;
    try {
      while ((n = await conn.read(buf)) !== null) await conn.write(buf.subarray(0, n));
    } catch {
      // Closed by the forwarder's idle cap.
    }
    conn.close();
  })();
  const deadlines = new Deadlines();
  const idleTimeoutMs = 300;
  const fwd = forwardOnce(listener.addr.port, { idleTimeoutMs, deadlines });
  const client = await TestClient.connect(fwd.port);
  const start = performance.now();
  // Active for longer than the idle timeout: the idle task re-arms instead of firing.
  for (let i = 0; i < 8; i++) {
    await client.writeLine(`ping ${i}`);
    assert.equal(await client.readLine(), `ping ${i}`);
    await delay(50);
  }
  assert.ok(performance.now() - start > idleTimeoutMs);
  assert.equal(deadlines.size, 1);
  // Then silence: the pair is closed and its task is gone.
  const result = await fwd.result;
  assert.equal(result.end, "idle timeout");
  assert.equal(result.aToB, result.bToA);
  assert.equal(deadlines.size, 0);
  assert.equal(await client.readLine(), null);
  client.close();
  await echo;
});
