import assert from "node:assert/strict";
import { generateCode } from "../lib/wormhole/code.ts";
import { WrongCodeError } from "../lib/wormhole/keys.ts";
import { Mailbox } from "../lib/wormhole/mailbox.ts";
import { FILE_TRANSFER_APPID, Wormhole } from "../lib/wormhole/wormhole.ts";
import { missingWormholeServers, startMailbox, wormholeTest } from "./_wormhole.ts";

wormholeTest(missingWormholeServers, {
  name: "Wormhole: two sides confirm one key and exchange phase messages in order",
  async fn() {
    await using mailbox = await startMailbox();
    const a = await Wormhole.open(mailbox.url, { appVersions: { sockit: { transfer: 2 } } });
    const b = await Wormhole.open(mailbox.url);
    try {
      const code = await a.allocateCode((nameplate) => generateCode(nameplate));
      assert.match(code, /^\d+-[a-z]+-[a-z]+$/);
      await b.setCode(code);
      const [ca, cb] = await Promise.all([a.confirm(), b.confirm()]);
      assert.equal(ca.verifier, cb.verifier);
      assert.deepEqual(cb.peerAppVersions, { sockit: { transfer: 2 } });
      assert.deepEqual(ca.peerAppVersions, {});
      for (let i = 0; i < 5; i++) await a.send({ n: i, text: "héllo" });
      await b.send({ answer: "ok" });
      for (let i = 0; i < 5; i++) assert.deepEqual(await b.receive(), { n: i, text: "héllo" });
      assert.deepEqual(await a.receive(), { answer: "ok" });
    } finally {
      await Promise.all([a.close(), b.close()]);
    }
  },
});

wormholeTest(missingWormholeServers, {
  name: "Wormhole: a wrong code is a WrongCodeError on both sides, and the nameplate is freed",
  async fn() {
    await using mailbox = await startMailbox();
    const a = await Wormhole.open(mailbox.url);
    const b = await Wormhole.open(mailbox.url);
    let nameplate = "";
    try {
      const code = await a.allocateCode((nameplate) => generateCode(nameplate));
      nameplate = code.split("-")[0];
      await b.setCode(`${nameplate}-wrong-guess`);
      const [ra, rb] = await Promise.allSettled([a.confirm(), b.confirm()]);
      assert.equal(ra.status, "rejected");
      assert.equal(rb.status, "rejected");
      assert.ok(ra.reason instanceof WrongCodeError, String(ra.reason));
      assert.ok(rb.reason instanceof WrongCodeError, String(rb.reason));
      assert.match(ra.reason.message, /wrong code \(or someone tried to guess it\)/);
    } finally {
      await Promise.all([a.close(), b.close()]);
    }
    // A code is single-use: the nameplate was released, the server lists it no more.
    await using lister = await Mailbox.connect(mailbox.url, { appId: FILE_TRANSFER_APPID });
    assert.ok(!(await lister.list()).includes(nameplate), "the nameplate is still allocated");
  },
});
