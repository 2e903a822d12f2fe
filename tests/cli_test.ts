import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { EVENT_TIMEOUT_MS, ROOT, runSockit, startSockit } from "./_helpers.ts";
import { withTimeout } from "../lib/net/deadline.ts";
import { VERSION } from "../lib/cli.ts";

Deno.test("sockit --version prints the version from deno.json", async () => {
  const r = await runSockit(["--version"]);
  assert.equal(r.code, 0);
  assert.equal(r.stdout.trim(), `sockit ${VERSION}`);
});

Deno.test("sockit --help lists every command", async () => {
  const r = await runSockit(["--help"]);
  assert.equal(r.code, 0);
  for (const name of ["relay", "chat", "send", "recv", "udp-echo", "udp-ping", "socks5"]) {
    assert.match(r.stdout, new RegExp(`^  ${name} `, "m"));
  }
});

Deno.test("sockit with an unknown command or option exits 2 with usage", async () => {
  const a = await runSockit(["frobnicate"]);
  assert.equal(a.code, 2);
  assert.match(a.stderr, /unknown command 'frobnicate'/);
  const b = await runSockit(["relay", "--no-such-option"]);
  assert.equal(b.code, 2);
  assert.match(b.stderr, /Unknown option '--no-such-option'/);
  assert.match(b.stderr, /Usage: sockit relay/);
});

Deno.test("global options work before the command: sockit -v udp-echo prints the stack", async () => {
  // A port in use makes udp-echo fail at run time; --verbose adds the stack to the message.
  const taken = Deno.listenDatagram({ transport: "udp", hostname: "127.0.0.1", port: 0 });
  try {
    const port = (taken.addr as Deno.NetAddr).port;
    for (const verbose of ["-v", "--verbose"]) {
      const r = await runSockit([verbose, "udp-echo", "--port", String(port)]);
      assert.equal(r.code, 1, r.stderr);
      assert.match(
        r.stderr,
        new RegExp(`^sockit udp-echo: Cannot listen on 127\\.0\\.0\\.1:${port}`),
      );
      assert.match(r.stderr, /^\s+at /m, "no stack trace with --verbose before the command");
    }
    const plain = await runSockit(["udp-echo", "--port", String(port)]);
    assert.equal(plain.code, 1);
    assert.doesNotMatch(plain.stderr, /^\s+at /m);
  } finally {
    taken.close();
  }
});

Deno.test("global options work before the command: sockit --quiet udp-echo logs no summary", async () => {
  await using echo = await startSockit(["--quiet", "udp-echo", "--port", "0"]);
  const status = await echo.stop("SIGTERM");
  assert.equal(status.code, 0);
  assert.ok(!echo.stderr.some((l) => /stopped; received/.test(l)), echo.stderr.join("\n"));
  // Grouped short flags before the command, too.
  await using ping = await startSockit(["-qv", "udp-ping", "127.0.0.1:9", "-c", "1", "-W", "1"], {
    ready: false,
  });
  const done = await withTimeout(ping.status, EVENT_TIMEOUT_MS, { what: "udp-ping to exit" });
  assert.equal(done.code, 1);
  assert.ok(!ping.stdout.some((l) => l.startsWith("UDP-PING")), "-q did not reach udp-ping");
});

Deno.test("sockit --help CMD and sockit help CMD print the command's usage", async () => {
  for (const args of [["--help", "relay"], ["-h", "relay"], ["help", "relay"]]) {
    const r = await runSockit(args);
    assert.equal(r.code, 0, `${args.join(" ")}: ${r.stderr}`);
    assert.match(r.stdout, /^Usage: sockit relay/);
  }
  const version = await runSockit(["-v", "--version"]);
  assert.equal(version.stdout.trim(), `sockit ${VERSION}`);
});

Deno.test("sockit rejects a command option before the command with exit 2", async () => {
  const r = await runSockit(["--port", "0", "relay"]);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /Unknown option '--port' before the command/);
  assert.match(r.stderr, /Usage: sockit \[global options\] <command>/);
  const alone = await runSockit(["-v"]);
  assert.equal(alone.code, 2);
  assert.match(alone.stderr, /Commands:/);
});

Deno.test("deno task install puts a working sockit command in DENO_INSTALL_ROOT/bin", async () => {
  const root = await Deno.makeTempDir({ prefix: "sockit-install-" });
  try {
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["task", "install"],
      cwd: ROOT,
      env: { DENO_INSTALL_ROOT: root },
      stdout: "piped",
      stderr: "piped",
    }).output();
    assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
    const bin = `${root}/bin/sockit`;
    // The shim runs `deno` from PATH: make it the one running these tests.
    const env = {
      PATH: `${Deno.execPath().replace(/\/[^/]+$/, "")}:${Deno.env.get("PATH") ?? ""}`,
    };
    const help = await new Deno.Command(bin, { args: ["--help"], env, stdout: "piped" }).output();
    assert.equal(help.code, 0);
    assert.match(new TextDecoder().decode(help.stdout), /^ {2}udp-echo /m);
    // A server: the unstable-net config and the permissions came along.
    const child = new Deno.Command(bin, {
      args: ["udp-echo", "--port", "0"],
      env,
      stdout: "null",
      stderr: "piped",
    }).spawn();
    const lines = child.stderr.pipeThrough(new TextDecoderStream()).values();
    let seen = "";
    try {
      await withTimeout(
        (async () => {
          for await (const chunk of lines) {
            seen += chunk;
            if (/listening on 127\.0\.0\.1:\d+/.test(seen)) return;
          }
          throw new Error(`sockit udp-echo exited before its ready line:\n${seen}`);
        })(),
        20_000,
        { what: "the installed sockit udp-echo's ready line" },
      );
    } finally {
      child.kill("SIGTERM");
      await lines.return?.();
    }
    assert.equal((await child.status).code, 0, seen);
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

function denortAvailable(): string | undefined {
  const bin = Deno.env.get("DENORT_BIN");
  if (bin && existsSync(bin)) return bin;
  const home = Deno.env.get("DENO_DIR") ?? `${Deno.env.get("HOME")}/.cache/deno`;
  try {
    for (const entry of Deno.readDirSync(`${home}/dl/release/v${Deno.version.deno}`)) {
      if (entry.name.startsWith("denort")) return entry.name;
    }
  } catch {
    // No cached runtime.
  }
  return undefined;
}

const denort = denortAvailable();
if (!denort) {
  console.error(
    "cli_test: skipping the compile test: the denort runtime is not available " +
      "(deno compile downloads it; offline, set DENORT_BIN to a denort binary)",
  );
}

Deno.test({
  name: denort
    ? "deno task compile builds dist/sockit that runs --version"
    : "deno task compile builds dist/sockit that runs --version (skipped: denort runtime not available, set DENORT_BIN)",
  ignore: !denort,
  async fn() {
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["task", "compile"],
      cwd: ROOT,
      stdout: "piped",
      stderr: "piped",
    }).output();
    assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
    const run = await new Deno.Command(`${ROOT}dist/sockit`, { args: ["--version"] }).output();
    assert.equal(run.code, 0);
    assert.equal(new TextDecoder().decode(run.stdout).trim(), `sockit ${VERSION}`);
  },
});
