/**
 * Test and benchmark helpers for the Magic Wormhole work: the Debian mailbox and transit relay
 * servers started on free loopback ports, the Python interpreter that has the Debian
 * `wormhole`/`spake2` modules, and whether a private network namespace can be made (root,
 * `unshare`, `ip`), which the interop scenarios need so that the other clients advertise only
 * addresses that exist inside it.
 *
 * @module
 */

import { hasCommand } from "./_helpers.ts";
import { withTimeout } from "../lib/net/deadline.ts";
import type { Netns } from "./_netns.ts";

/**
 * The Debian Python (its dist-packages hold `wormhole`, `spake2`, `nacl`); a `python3` found
 * first on PATH (pyenv, a venv) may not have them.
 */
export const DEBIAN_PYTHON = "/usr/bin/python3";

/** The app id the Wormhole file-transfer clients use. */
export const WORMHOLE_APPID = "lothar.com/wormhole/text-or-file-xfer";

function fileExists(path: string): boolean {
  try {
    Deno.statSync(path);
    return true;
  } catch {
    return false;
  }
}

/** Why the Debian Python with module `module` cannot be used, or `undefined` when it can. */
export function missingPythonModule(module: string): string | undefined {
  if (!fileExists(DEBIAN_PYTHON)) return `${DEBIAN_PYTHON} is not installed`;
  const out = new Deno.Command(DEBIAN_PYTHON, {
    args: ["-c", `import ${module}`],
    stdout: "null",
    stderr: "null",
  }).outputSync();
  return out.success ? undefined : `python module ${module} is not installed`;
}

/** Why the Debian mailbox/transit servers cannot be started, or `undefined` when they can. */
export function missingWormholeServers(): string | undefined {
  if (!hasCommand("twist3")) return "twist3 (python3-twisted) is not installed";
  return missingPythonModule("wormhole_mailbox_server") ??
    missingPythonModule("wormhole_transit_relay");
}

/** Why a private network namespace cannot be made here, or `undefined` when it can. */
export function missingNetns(): string | undefined {
  if (Deno.uid() !== 0) return "needs root for a private network namespace";
  if (!hasCommand("unshare")) return "unshare is not installed";
  if (!hasCommand("ip")) return "ip (iproute2) is not installed";
  return undefined;
}

/**
 * Registers a test that needs what `missing()` checks; when something is missing the test is
 * skipped and its name says why. `fn` gets the test context (for steps).
 */
export function wormholeTest(
  missing: () => string | undefined,
  test: { name: string; fn: (t: Deno.TestContext) => Promise<void> },
): void {
  const why = missing();
  Deno.test({
    name: why ? `${test.name} (skipped: ${why})` : test.name,
    ignore: why !== undefined,
    fn: test.fn,
    sanitizeResources: false,
    sanitizeOps: false,
  });
}

/** A server process started by {@linkcode startMailbox} or {@linkcode startTransitRelay}. */
export interface WormholeServer extends AsyncDisposable {
  /** The loopback port it listens on. */
  port: number;
  /** `ws://127.0.0.1:PORT/v1` for the mailbox; `tcp:127.0.0.1:PORT` for the transit relay. */
  url: string;
  /** Its working folder (the mailbox keeps its database there). */
  dir: string;
}

/** Where {@linkcode startMailbox} and {@linkcode startTransitRelay} run the server. */
export interface ServerOptions {
  /** Run it inside this namespace (its loopback) instead of this machine's. */
  netns?: Netns;
  /** The port (inside a namespace, the public servers' 4000 and 4001). @default {0: a free one} */
  port?: number;
}

async function startTwist(
  plugin: string,
  url: (port: number) => string,
  options: ServerOptions,
): Promise<WormholeServer> {
  const dir = await Deno.makeTempDir({ prefix: `sockit-${plugin}-` });
  const commandOptions: Deno.CommandOptions = {
    // With port 0 the server picks a free one; either way it logs "... starting on PORT".
    args: [plugin, `--port=tcp:${options.port ?? 0}:interface=127.0.0.1`],
    cwd: dir,
    stdin: "null",
    stdout: "piped",
    stderr: "null",
  };
  const child = (options.netns?.command("twist3", commandOptions) ??
    new Deno.Command("twist3", commandOptions)).spawn();
  const lines = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  const readPort = async (): Promise<number> => {
    let text = "";
    while (true) {
      const { value, done } = await lines.read();
      if (done) throw new Error(`twist3 ${plugin} exited before it listened:\n${text}`);
      text += value;
      const m = text.match(/starting on (\d+)/);
      if (m) return Number(m[1]);
    }
  };
  let port: number;
  try {
    port = await withTimeout(readPort(), 30_000, { what: `twist3 ${plugin} to listen` });
  } catch (error) {
    try {
      child.kill("SIGKILL");
    } catch { /* already gone */ }
    await child.status;
    await Deno.remove(dir, { recursive: true });
    throw error;
  }
  // Keep draining its log so the server never blocks on a full pipe.
  const drained = (async () => {
    while (!(await lines.read()).done) { /* discard */ }
  })().catch(() => {});
  return {
    port,
    url: url(port),
    dir,
    async [Symbol.asyncDispose]() {
      try {
        child.kill("SIGTERM");
      } catch { /* already gone */ }
      await child.status;
      await drained;
      await Deno.remove(dir, { recursive: true });
    },
  };
}

/** Starts `twist3 wormhole-mailbox` on a free loopback port and waits until it listens. */
export function startMailbox(options: ServerOptions = {}): Promise<WormholeServer> {
  return startTwist("wormhole-mailbox", (port) => `ws://127.0.0.1:${port}/v1`, options);
}

/** Starts `twist3 transitrelay` on a free loopback port and waits until it listens. */
export function startTransitRelay(options: ServerOptions = {}): Promise<WormholeServer> {
  return startTwist("transitrelay", (port) => `tcp:127.0.0.1:${port}`, options);
}
