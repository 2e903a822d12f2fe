// `sockit send` and `sockit recv` as a new user and an attacker meet them: errors that name what
// failed, a second run of the same send, a receiver short of file descriptors, a receiver
// listening where other machines can reach it. Real processes, real files in temp folders.

import assert from "node:assert/strict";
import { withTimeout } from "../lib/net/deadline.ts";
import {
  EVENT_TIMEOUT_MS,
  freePort,
  MAIN,
  peerTest,
  pseudoRandomBytes,
  ROOT,
  runSockit,
  startSockit,
  tempTree,
} from "./_helpers.ts";

const MiB = 1024 * 1024;

function jsonEvents(stdout: string): Record<string, unknown>[] {
  // Every line must be JSON, whatever the names and messages contain.
  return stdout.trim().split("\n").map((l) => JSON.parse(l));
}

Deno.test("sending the same files again exits 0: files already there count as done", async () => {
  await using t = await tempTree("sockit-hardening-");
  await Deno.mkdir(`${t.src}/tree/sub`, { recursive: true });
  await Deno.writeTextFile(`${t.src}/tree/a.txt`, "alpha\n");
  await Deno.writeTextFile(`${t.src}/tree/sub/b.txt`, "beta\n");
  await Deno.writeFile(`${t.src}/tree/big.bin`, pseudoRandomBytes(2 * MiB + 3, 71)); // streamed
  await using recv = await startSockit(["recv", "--port", "0", "--dir", t.out]);
  const send = (...extra: string[]) =>
    runSockit(["send", `127.0.0.1:${recv.port}`, `${t.src}/tree`, ...extra]);
  const first = await send();
  assert.equal(first.code, 0, first.stderr);

  const again = await send("--json");
  assert.equal(again.code, 0, again.stderr);
  const events = jsonEvents(again.stdout);
  const files = events.filter((e) => e.event === "entry" && e.kind === "file");
  assert.equal(files.length, 3);
  for (const e of files) assert.equal(e.alreadyThere, true, JSON.stringify(e));
  const summary = events.at(-1)!;
  assert.equal(summary.ok, true);
  assert.equal(summary.alreadyThere, 3);
  assert.equal(summary.bytesSent, "alpha\n".length + "beta\n".length); // big.bin: not a byte
  const plain = await send();
  assert.equal(plain.code, 0, plain.stderr);
  assert.match(plain.stderr, /already there: tree\/big\.bin \(same size and SHA-256\)/);
  assert.doesNotMatch(plain.stderr, /resuming/);
  assert.match(plain.stderr, /5\/5 entries confirmed \(3 already there\)/);
  await recv.waitForStderr(/already there: "tree\/big\.bin"/);

  // A different file under those names (same sizes) is still refused.
  await Deno.writeTextFile(`${t.src}/tree/a.txt`, "ALPHA\n");
  const big = pseudoRandomBytes(2 * MiB + 3, 71);
  big[MiB] ^= 1;
  await Deno.writeFile(`${t.src}/tree/big.bin`, big);
  const changed = await send("--json");
  assert.equal(changed.code, 1);
  const refused = jsonEvents(changed.stdout).filter((e) =>
    e.event === "entry" && e.status !== "confirmed"
  );
  assert.deepEqual(refused.map((e) => [e.path, e.reason]), [
    ["tree/a.txt", "exists"],
    ["tree/big.bin", "exists"],
  ]);
  assert.equal(await Deno.readTextFile(`${t.out}/tree/a.txt`), "alpha\n");
  assert.deepEqual(
    await Deno.readFile(`${t.out}/tree/big.bin`),
    pseudoRandomBytes(2 * MiB + 3, 71),
  );
});

Deno.test("send and recv errors name what failed, and never repeat a proxy password", async () => {
  await using t = await tempTree("sockit-hardening-");
  const file = `${t.src}/x.txt`;
  await Deno.writeTextFile(file, "x");
  const closed = freePort();
  const refused = await runSockit(["send", `127.0.0.1:${closed}`, file]);
  assert.equal(refused.code, 1);
  assert.match(
    refused.stderr,
    new RegExp(
      `^sockit send: Cannot connect to 127\\.0\\.0\\.1:${closed}: connection refused$`,
      "m",
    ),
  );
  const proxyPort = freePort();
  const viaProxy = await runSockit([
    "send",
    `127.0.0.1:${closed}`,
    file,
    "--proxy",
    `socks5://bob:s3cret@127.0.0.1:${proxyPort}`,
  ]);
  assert.equal(viaProxy.code, 1);
  assert.match(
    viaProxy.stderr,
    new RegExp(
      `Cannot connect to 127\\.0\\.0\\.1:${closed} through the proxy 127\\.0\\.0\\.1:${proxyPort}: connection refused`,
    ),
  );
  const badUrl = await runSockit([
    "send",
    `127.0.0.1:${closed}`,
    file,
    "--proxy",
    "socks5://bob:s3cret@127.0.0.1:notaport",
  ]);
  assert.equal(badUrl.code, 2);
  assert.match(
    badUrl.stderr,
    /Cannot parse proxy URL 'socks5:\/\/bob:\*\*\*@127\.0\.0\.1:notaport'/,
  );
  for (const run of [viaProxy, badUrl]) assert.doesNotMatch(run.stdout + run.stderr, /s3cret/);

  // A local path first means the code mode: the mailbox server named is unreachable here.
  const alone = await runSockit(["send", file, "--mailbox", `ws://127.0.0.1:${closed}/v1`]);
  assert.equal(alone.code, 1);
  assert.match(
    alone.stderr,
    /sockit send: cannot reach the mailbox server at ws:\/\/127\.0\.0\.1:/,
  );

  const taken = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  try {
    const busy = await runSockit(["recv", "--port", String(taken.addr.port), "--dir", t.out]);
    assert.equal(busy.code, 1);
    assert.match(
      busy.stderr,
      new RegExp(
        `Cannot listen on 127\\.0\\.0\\.1:${taken.addr.port}: address (already )?in use`,
        "i",
      ),
    );
  } finally {
    taken.close();
  }
});

/** Whether recv's default port is free here (the test that needs it is skipped otherwise). */
const DEFAULT_PORT_FREE = (() => {
  try {
    Deno.listen({ hostname: "127.0.0.1", port: 7071 }).close();
    return true;
  } catch {
    return false;
  }
})();

Deno.test({
  name: `send HOST without a port sends to recv's default port 7071${
    DEFAULT_PORT_FREE ? "" : " (skipped: 7071 is in use here)"
  }`,
  ignore: !DEFAULT_PORT_FREE,
}, async () => {
  await using t = await tempTree("sockit-hardening-");
  await Deno.writeTextFile(`${t.src}/d.txt`, "default port\n");
  await using recv = await startSockit(["recv", "--dir", t.out, "--once"]);
  assert.equal(recv.port, 7071);
  const run = await runSockit(["send", "127.0.0.1", `${t.src}/d.txt`]);
  assert.equal(run.code, 0, run.stderr);
  assert.equal(await Deno.readTextFile(`${t.out}/d.txt`), "default port\n");
});

Deno.test("recv on a non-loopback address warns at start what protects it and what does not", async () => {
  await using t = await tempTree("sockit-hardening-");
  await using recv = await startSockit([
    "recv",
    "--host",
    "0.0.0.0",
    "--port",
    "0",
    "--dir",
    t.out,
  ]);
  const m = await recv.waitForStderr(/warning: 0\.0\.0\.0 is reachable from other machines/);
  const line = m.input!;
  assert.match(line, /anyone who can connect can store files/);
  assert.match(line, /What protects it: names stay inside the folder/);
  assert.match(line, /What does not: there is no authentication and no encryption/);
});

Deno.test("send --json stays valid JSON and recv's log stays one line per event with hostile names", async () => {
  await using t = await tempTree("sockit-hardening-");
  const names = ['q"uote.txt', "esc\x1b[31mape.txt", "new\nline.txt"];
  for (const n of names) await Deno.writeTextFile(`${t.src}/${n}`, n);
  await using recv = await startSockit(["recv", "--port", "0", "--dir", t.out]);
  const run = await runSockit([
    "send",
    `127.0.0.1:${recv.port}`,
    ...names.map((n) => `${t.src}/${n}`),
    "--json",
  ]);
  assert.equal(run.code, 1); // the two names with control characters are refused
  const entries = jsonEvents(run.stdout).filter((e) => e.event === "entry");
  assert.deepEqual(entries.map((e) => [e.path, e.status]), [
    [names[0], "confirmed"],
    [names[1], "rejected"],
    [names[2], "rejected"],
  ]);
  await recv.waitForStderr(/sender .* left early|sender .* finished/);
  for (const line of recv.stderr) {
    assert.ok(line.startsWith("sockit recv: "), JSON.stringify(line));
    assert.ok(!line.includes("\x1b"), JSON.stringify(line));
  }
  assert.ok(recv.stderr.some((l) => l.includes(String.raw`received "q\"uote.txt"`)));
  assert.ok(recv.stderr.some((l) => l.includes(String.raw`rejected "esc\x1b[31mape.txt"`)));
  assert.ok(recv.stderr.some((l) => l.includes(String.raw`rejected "new\nline.txt"`)));
});

/** A `sockit recv` under an open-file limit of `limit` (prlimit), with its stderr lines. */
async function startLimitedRecv(limit: number, args: string[]) {
  const child = new Deno.Command("prlimit", {
    args: [
      `--nofile=${limit}:${limit}`,
      Deno.execPath(),
      "run",
      "--allow-all",
      MAIN,
      "recv",
      ...args,
    ],
    cwd: ROOT,
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).spawn();
  const lines: string[] = [];
  let ready: (port: number) => void = () => {};
  let ended: (error: Error) => void = () => {};
  const port = new Promise<number>((resolve, reject) => {
    ready = resolve;
    ended = reject;
  });
  const reading = (async () => {
    let pending = "";
    for await (const chunk of child.stderr.pipeThrough(new TextDecoderStream())) {
      pending += chunk;
      let i;
      while ((i = pending.indexOf("\n")) >= 0) {
        const line = pending.slice(0, i);
        pending = pending.slice(i + 1);
        lines.push(line);
        const m = /listening on 127\.0\.0\.1:(\d+)/.exec(line);
        if (m) ready(Number(m[1]));
      }
    }
    ended(new Error(`recv ended before its ready line:\n${lines.join("\n")}`));
  })();
  try {
    return {
      port: await withTimeout(port, EVENT_TIMEOUT_MS, { what: "the limited recv's ready line" }),
      lines,
      async stop() {
        child.kill("SIGTERM");
        const status = await child.status;
        await reading;
        return status;
      },
    };
  } catch (error) {
    child.kill("SIGKILL");
    await child.status;
    await reading;
    throw error;
  }
}

peerTest("prlimit", {
  name: "under ulimit -n 64, 300 small files into recv all arrive, and recv warns at start",
  fn: async () => {
    await using t = await tempTree("sockit-hardening-");
    const tree = `${t.src}/many`;
    await Deno.mkdir(tree);
    for (let i = 0; i < 300; i++) {
      await Deno.writeFile(`${tree}/f${i}.bin`, pseudoRandomBytes(100 + i, i + 1));
    }
    const recv = await startLimitedRecv(64, ["--port", "0", "--dir", t.out]);
    try {
      const run = await runSockit(["send", `127.0.0.1:${recv.port}`, tree]);
      assert.equal(run.code, 0, run.stderr + recv.lines.join("\n"));
      assert.match(run.stderr, /301\/301 entries confirmed/);
      for (let i = 0; i < 300; i++) {
        assert.deepEqual(
          await Deno.readFile(`${t.out}/many/f${i}.bin`),
          pseudoRandomBytes(100 + i, i + 1),
        );
      }
    } finally {
      assert.equal((await recv.stop()).code, 0);
    }
    assert.ok(
      recv.lines.some((l) => /warning: open file limit is 64, but --max-senders 8 needs/.test(l)),
      recv.lines.join("\n"),
    );
    assert.ok(!recv.lines.some((l) => /Too many open files/.test(l)), recv.lines.join("\n"));
  },
});
