/**
 * A real NATS server for the cluster tests: Debian's `nats-server`, on a free loopback port,
 * with the project's shipped configuration (`deploy/nats-server.conf`). It can be stopped and
 * started again on the same port (the link-down tests).
 *
 * @module
 */

import { withTimeout } from "../lib/net/deadline.ts";
import { freePort, hasCommand, ROOT } from "./_helpers.ts";

/** True when `nats-server` is installed. */
export const HAVE_NATS: boolean = hasCommand("nats-server");

/** A running (or stopped) nats-server on one port. */
export interface NatsServer extends AsyncDisposable {
  /** Its port on 127.0.0.1. */
  port: number;
  /** `nats://127.0.0.1:PORT`. */
  url: string;
  /** The server's process id while it runs. */
  readonly pid: number | undefined;
  /** Stops it (SIGTERM) and waits for the exit. */
  stop(): Promise<void>;
  /** Starts it again on the same port; resolves once it is ready. */
  start(): Promise<void>;
}

/** Starts nats-server on a free port (or `port`) and waits until it is ready. */
export async function startNats(options: { port?: number } = {}): Promise<NatsServer> {
  const port = options.port ?? freePort();
  let child: Deno.ChildProcess | undefined;
  let exited: Promise<unknown> = Promise.resolve();
  const start = async () => {
    const proc = new Deno.Command("nats-server", {
      args: ["-c", `${ROOT}deploy/nats-server.conf`, "-a", "127.0.0.1", "-p", String(port)],
      stdin: "null",
      stdout: "null",
      stderr: "piped",
    }).spawn();
    child = proc;
    const ready = Promise.withResolvers<void>();
    const log: string[] = [];
    exited = (async () => {
      let pending = "";
      for await (const chunk of proc.stderr.pipeThrough(new TextDecoderStream())) {
        pending += chunk;
        const lines = pending.split("\n");
        pending = lines.pop()!;
        for (const line of lines) {
          if (log.length < 50) log.push(line);
          if (/Server is ready/.test(line)) ready.resolve();
        }
      }
      ready.reject(new Error(`nats-server exited before it was ready:\n${log.join("\n")}`));
      await proc.status;
    })();
    await withTimeout(ready.promise, 10_000, { what: "nats-server to be ready" });
  };
  const stop = async () => {
    try {
      child?.kill("SIGTERM");
    } catch {
      // Gone already.
    }
    await withTimeout(exited, 10_000, { what: "nats-server to exit" });
    child = undefined;
  };
  await start();
  return {
    port,
    url: `nats://127.0.0.1:${port}`,
    get pid() {
      return child?.pid;
    },
    stop,
    start,
    async [Symbol.asyncDispose]() {
      if (!child) return;
      try {
        child.kill("SIGKILL");
      } catch {
        // Gone already.
      }
      await exited;
    },
  };
}
