/**
 * A private network namespace for the Wormhole interop tests: `lo` up, a veth pair whose one
 * end has a 198.18.0.x address (RFC 2544 benchmarking range; it exists only inside the
 * namespace) so the other clients have a "LAN" address to advertise as a direct hint, and a
 * private `/etc/hosts` (through `ip netns exec`, which bind-mounts `/etc/netns/NAME/hosts`)
 * that maps the public Wormhole server names to 127.0.0.1. Every process of a scenario runs
 * inside it with {@linkcode Netns.command}; nothing it does reaches this machine's real
 * interfaces. Needs root (`missingNetns()` in tests/_wormhole.ts says why not).
 *
 * The namespace has no route to the npm registry: the test that uses it must already have
 * loaded sockit's modules (importing them caches every `npm:` dependency).
 *
 * @module
 */

/** Host names the private `/etc/hosts` maps to 127.0.0.1 (the Wormhole public servers). */
export const PUBLIC_SERVER_NAMES = [
  "relay.magic-wormhole.io",
  "transit.magic-wormhole.io",
] as const;

let counter = 0;

function ip(args: string[]): void {
  const out = new Deno.Command("ip", { args, stdout: "null", stderr: "piped" }).outputSync();
  if (!out.success) {
    throw new Error(`ip ${args.join(" ")} failed: ${new TextDecoder().decode(out.stderr).trim()}`);
  }
}

/** A network namespace made by {@linkcode createNetns}; deleted on dispose. */
export interface Netns extends AsyncDisposable {
  /** Its name (`ip netns list`). */
  name: string;
  /** The 198.18.0.x address of its veth end. */
  lanAddress: string;
  /** A `Deno.Command` that runs `program args...` inside the namespace. */
  command(program: string, options?: Deno.CommandOptions): Deno.Command;
}

/**
 * Makes a namespace `sockit-PID-N` with `lo` up, a veth pair (`v0` with `lanAddress`), and a
 * hosts file that maps {@linkcode PUBLIC_SERVER_NAMES} (and localhost) to 127.0.0.1.
 */
export function createNetns(options: { lanAddress?: string } = {}): Netns {
  const name = `sockit-${Deno.pid}-${counter++}`;
  const lanAddress = options.lanAddress ?? "198.18.0.1";
  const etc = `/etc/netns/${name}`;
  Deno.mkdirSync(etc, { recursive: true });
  Deno.writeTextFileSync(
    `${etc}/hosts`,
    `127.0.0.1 localhost ${PUBLIC_SERVER_NAMES.join(" ")}\n::1 localhost\n`,
  );
  try {
    ip(["netns", "add", name]);
    ip(["-n", name, "link", "set", "lo", "up"]);
    ip(["-n", name, "link", "add", "v0", "type", "veth", "peer", "name", "v1"]);
    ip(["-n", name, "addr", "add", `${lanAddress}/24`, "dev", "v0"]);
    ip(["-n", name, "link", "set", "v0", "up"]);
    ip(["-n", name, "link", "set", "v1", "up"]);
  } catch (error) {
    try {
      ip(["netns", "del", name]);
    } catch { /* never made */ }
    Deno.removeSync(etc, { recursive: true });
    throw error;
  }
  return {
    name,
    lanAddress,
    command(program, commandOptions = {}) {
      return new Deno.Command("ip", {
        ...commandOptions,
        args: ["netns", "exec", name, program, ...(commandOptions.args ?? [])],
      });
    },
    [Symbol.asyncDispose]() {
      try {
        ip(["netns", "del", name]);
      } finally {
        Deno.removeSync(etc, { recursive: true });
      }
      return Promise.resolve();
    },
  };
}
