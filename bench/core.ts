/**
 * Core benchmark: raw TCP throughput through a forwarder, sockit's copy loop
 * (`lib/net/copy.ts`) against `socat -b262144`, with the direct connection for reference.
 *
 * @module
 */

import {
  type BenchRow,
  freePort,
  median,
  peerAvailable,
  type Scenario,
  spawnPeer,
  startSink,
  waitForTcpPort,
} from "./_harness.ts";
import { writeAll } from "../lib/net/write_all.ts";

const TOTAL_BYTES = 1024 * 1024 * 1024;
const RUNS = 3;

/** Pushes TOTAL_BYTES to `port` and resolves MiB/s measured until the sink has them all. */
async function pushThrough(port: number, sink: ReturnType<typeof startSink>): Promise<number> {
  const received = sink.next();
  const buf = new Uint8Array(256 * 1024).fill(0x5a);
  const start = performance.now();
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  for (let sent = 0; sent < TOTAL_BYTES; sent += buf.length) await writeAll(conn, buf);
  await conn.closeWrite();
  const got = await received;
  const seconds = (performance.now() - start) / 1000;
  conn.close();
  if (got !== TOTAL_BYTES) throw new Error(`sink got ${got} of ${TOTAL_BYTES} bytes`);
  return TOTAL_BYTES / 1024 / 1024 / seconds;
}

async function rawThroughput(): Promise<BenchRow[]> {
  const sink = startSink();
  const fwdPort = freePort();
  await using _fwd = spawnPeer(Deno.execPath(), [
    "run",
    "-A",
    new URL("./_forward.ts", import.meta.url).pathname,
    String(fwdPort),
    String(sink.port),
  ]);
  await waitForTcpPort(fwdPort);
  const socatPort = peerAvailable("socat") ? freePort() : undefined;
  await using _socat = socatPort === undefined ? undefined : spawnPeer("socat", [
    "-b262144",
    `TCP-LISTEN:${socatPort},bind=127.0.0.1,reuseaddr,fork`,
    `TCP:127.0.0.1:${sink.port}`,
  ]);
  if (socatPort !== undefined) await waitForTcpPort(socatPort);
  try {
    const direct: number[] = [];
    const sockit: number[] = [];
    const peer: number[] = [];
    // Interleaved, and who goes first alternates, so neither side always gets the warmer
    // machine.
    for (let i = 0; i < RUNS; i++) {
      direct.push(await pushThrough(sink.port, sink));
      if (socatPort !== undefined && i % 2 === 1) peer.push(await pushThrough(socatPort, sink));
      sockit.push(await pushThrough(fwdPort, sink));
      if (socatPort !== undefined && i % 2 === 0) peer.push(await pushThrough(socatPort, sink));
    }
    return [{
      scenario: "raw TCP throughput via forwarder (1 GiB), socks5's copy buffers",
      unit: "MiB/s",
      sockit: median(sockit),
      peerName: "socat -b262144",
      peer: peer.length ? median(peer) : undefined,
      higherIsBetter: true,
      note: `direct, no forwarder: ${median(direct).toFixed(0)} MiB/s; median of ${RUNS}`,
    }];
  } finally {
    sink.close();
  }
}

/** The core scenarios. */
export const scenarios: Scenario[] = [{ name: "core", run: rawThroughput }];
