import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { ROOT, runSockit } from "./_helpers.ts";
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
