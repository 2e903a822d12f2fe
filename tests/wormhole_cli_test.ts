/**
 * `sockit send`/`sockit recv` with a code, sockit to sockit, against the Debian mailbox and
 * transit relay on loopback. Both sides use `--force-relay`, so neither listens nor advertises
 * an address: all traffic stays on 127.0.0.1 and no network namespace (root) is needed. The
 * interop matrix with the other clients is in wormhole_interop_test.ts.
 */

import assert from "node:assert/strict";
import { partialName } from "../lib/transfer/safe_path.ts";
import {
  freePort,
  pseudoRandomBytes,
  runSockit,
  startSockit,
  type TempTree,
  tempTree,
} from "./_helpers.ts";
import {
  missingWormholeServers,
  startMailbox,
  startTransitRelay,
  type WormholeServer,
  wormholeTest,
} from "./_wormhole.ts";

function env(mailbox: WormholeServer, relay: WormholeServer, code: string) {
  return {
    SOCKIT_MAILBOX: mailbox.url,
    SOCKIT_TRANSIT: `127.0.0.1:${relay.port}`,
    SOCKIT_CODE: code,
  };
}

let codes = 0;
function freshCode(): string {
  return `${100 + codes++}-sockit-test`;
}

async function sendAndReceive(
  t: TempTree,
  servers: { mailbox: WormholeServer; relay: WormholeServer },
  sendArgs: string[],
  recvArgs: string[] = [],
) {
  const code = freshCode();
  const vars = env(servers.mailbox, servers.relay, code);
  const [sent, received] = await Promise.all([
    runSockit(["send", "--force-relay", ...sendArgs], { env: vars }),
    runSockit(["recv", "--force-relay", "--yes", "--dir", t.out, ...recvArgs], { env: vars }),
  ]);
  return { sent, received };
}

async function treeOf(root: string, rel = ""): Promise<string[]> {
  const out: string[] = [];
  for await (const e of Deno.readDir(`${root}/${rel}`)) {
    const path = rel ? `${rel}/${e.name}` : e.name;
    if (e.isDirectory) out.push(`${path}/`, ...(await treeOf(root, path)));
    else out.push(`${path} ${(await Deno.readFile(`${root}/${path}`)).join(",").length}`);
  }
  return out.sort();
}

wormholeTest(missingWormholeServers, {
  name: "send/recv with a code: a file, a folder and a text, sockit to sockit through the relay",
  async fn() {
    await using mailbox = await startMailbox();
    await using relay = await startTransitRelay();
    await using t = await tempTree();
    const data = pseudoRandomBytes(3 * 1024 * 1024 + 17);
    await Deno.writeFile(`${t.src}/blob.bin`, data);
    await Deno.mkdir(`${t.src}/tree/a/b`, { recursive: true });
    await Deno.mkdir(`${t.src}/tree/empty`);
    await Deno.writeTextFile(`${t.src}/tree/a/b/ünïcode.txt`, "héllo\n");
    await Deno.writeFile(`${t.src}/tree/zero`, new Uint8Array(0));

    const file = await sendAndReceive(t, { mailbox, relay }, [`${t.src}/blob.bin`]);
    assert.equal(file.sent.code, 0, file.sent.stderr);
    assert.equal(file.received.code, 0, file.received.stderr);
    assert.deepEqual(await Deno.readFile(`${t.out}/blob.bin`), data);
    assert.match(file.sent.stderr, /sha256 verified/);

    const folder = await sendAndReceive(t, { mailbox, relay }, [`${t.src}/tree`]);
    assert.equal(folder.sent.code, 0, folder.sent.stderr);
    assert.equal(folder.received.code, 0, folder.received.stderr);
    assert.deepEqual(await treeOf(`${t.out}/tree`), await treeOf(`${t.src}/tree`));

    const text = await sendAndReceive(t, { mailbox, relay }, ["--text", "hello ✓ world"]);
    assert.equal(text.sent.code, 0, text.sent.stderr);
    assert.equal(text.received.code, 0, text.received.stderr);
    assert.equal(text.received.stdout, "hello ✓ world\n");
    // The code never appears in argv, and a given code is not printed either.
    assert.doesNotMatch(file.sent.stderr + file.received.stderr, /sockit-test/);
  },
});

wormholeTest(missingWormholeServers, {
  name: "send/recv with a code: a wrong code fails on both sides, nothing is written",
  async fn() {
    await using mailbox = await startMailbox();
    await using relay = await startTransitRelay();
    await using t = await tempTree();
    await Deno.writeTextFile(`${t.src}/secret.txt`, "do not leak");
    const code = freshCode();
    const [sent, received] = await Promise.all([
      runSockit(["send", "--force-relay", `${t.src}/secret.txt`], {
        env: env(mailbox, relay, code),
      }),
      runSockit(["recv", "--force-relay", "--yes", "--dir", t.out], {
        env: env(mailbox, relay, `${code.split("-")[0]}-wrong-guess`),
      }),
    ]);
    for (const run of [sent, received]) {
      assert.equal(run.code, 1, run.stderr);
      assert.match(run.stderr, /wrong code \(or someone tried to guess it\)/);
    }
    assert.deepEqual([...Deno.readDirSync(t.out)], []);
  },
});

wormholeTest(missingWormholeServers, {
  name: "send/recv with a code: the sender prints a generated code that the receiver uses",
  async fn() {
    await using mailbox = await startMailbox();
    await using relay = await startTransitRelay();
    await using t = await tempTree();
    await Deno.writeTextFile(`${t.src}/note.txt`, "generated code");
    const servers = { SOCKIT_MAILBOX: mailbox.url, SOCKIT_TRANSIT: `127.0.0.1:${relay.port}` };
    await using sender = await startSockit(
      ["send", "--force-relay", "--json", `${t.src}/note.txt`],
      { ready: false, env: servers },
    );
    const line = await sender.waitForStdout(/^\{"event":"code"/);
    const code = JSON.parse(line.input!).code as string;
    assert.match(code, /^\d+-[a-z]+-[a-z]+$/);
    const received = await runSockit(["recv", "--force-relay", "--yes", "--dir", t.out, code], {
      env: servers,
    });
    assert.equal(received.code, 0, received.stderr);
    assert.equal((await sender.status).code, 0);
    assert.equal(await Deno.readTextFile(`${t.out}/note.txt`), "generated code");
  },
});

wormholeTest(missingWormholeServers, {
  name: "send/recv with a code: an interrupted receiver resumes on the next run (sockit to sockit)",
  async fn() {
    await using mailbox = await startMailbox();
    await using relay = await startTransitRelay();
    await using t = await tempTree();
    const size = 48 * 1024 * 1024;
    const data = pseudoRandomBytes(size, 7);
    await Deno.writeFile(`${t.src}/big.bin`, data);
    const code = freshCode();
    const vars = env(mailbox, relay, code);
    await using sender = await startSockit(["send", "--force-relay", `${t.src}/big.bin`], {
      ready: false,
      env: vars,
    });
    await using receiver = await startSockit(
      ["recv", "--force-relay", "--yes", "--no-sync", "--dir", t.out],
      { ready: false, env: vars },
    );
    // Stop the receiver once part of the file is in its partial file.
    const partial = `${t.out}/${partialName("big.bin")}`;
    const deadline = Date.now() + 60_000;
    while (true) {
      const got = await Deno.stat(partial).then((s) => s.size, () => 0);
      if (got >= size / 4) break;
      if (Date.now() > deadline) throw new Error("the partial file never grew");
      await new Promise((r) => setTimeout(r, 20));
    }
    await receiver.stop("SIGKILL");
    await sender.status;
    const kept = (await Deno.stat(partial)).size;
    assert.ok(kept > 0 && kept < size, `kept ${kept}`);

    const again = await sendAndReceive(t, { mailbox, relay }, [
      "--json",
      `${t.src}/big.bin`,
    ]);
    assert.equal(again.sent.code, 0, again.sent.stderr);
    assert.equal(again.received.code, 0, again.received.stderr);
    const summary = JSON.parse(again.sent.stdout.trim().split("\n").at(-1)!);
    assert.ok(summary.bytesSent <= size - kept + 1024 * 1024, `sent ${summary.bytesSent}`);
    assert.deepEqual(await Deno.readFile(`${t.out}/big.bin`), data);
  },
});

Deno.test({
  name: "send with a code: an unreachable mailbox server is a clear error, exit 1",
  async fn() {
    await using t = await tempTree();
    await Deno.writeTextFile(`${t.src}/a.txt`, "a");
    const closed = freePort();
    const run = await runSockit(["send", `${t.src}/a.txt`], {
      env: { SOCKIT_MAILBOX: `ws://127.0.0.1:${closed}/v1` },
      timeoutMs: 40_000,
    });
    assert.equal(run.code, 1);
    assert.match(run.stderr, /cannot reach the mailbox server at ws:\/\/127\.0\.0\.1:\d+\/v1/);
  },
});
