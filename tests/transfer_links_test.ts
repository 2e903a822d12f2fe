// The link policy (lib/transfer/link_policy.ts) on real folders with real symlinks.

import assert from "node:assert/strict";
import { LinkEscapeError, MAX_LINK_HOPS, resolveLinkTarget } from "../lib/transfer/link_policy.ts";

async function tree() {
  const root = await Deno.realPath(await Deno.makeTempDir({ prefix: "sockit-links-" }));
  await Deno.mkdir(`${root}/a/b`, { recursive: true });
  await Deno.writeTextFile(`${root}/a/file`, "x");
  return {
    root,
    [Symbol.asyncDispose]: () => Deno.remove(root, { recursive: true }),
  };
}

function why(fn: () => unknown): string {
  try {
    fn();
  } catch (error) {
    assert.ok(error instanceof LinkEscapeError, String(error));
    return error.why;
  }
  throw new Error("expected a LinkEscapeError");
}

Deno.test("resolveLinkTarget() follows links as the kernel does and keeps what stays inside", async () => {
  await using t = await tree();
  await Deno.symlink(".", `${t.root}/s`);
  await Deno.symlink("a/b", `${t.root}/ab`);
  await Deno.symlink("ab", `${t.root}/ab2`); // a link to a link
  const at = (link: string, target: string) =>
    resolveLinkTarget(t.root, { path: link.split("/"), target });
  assert.deepEqual(at("a/b/up", "../../a/file"), ["a", "file"]);
  assert.deepEqual(at("x", "s/s/s/a"), ["a"]);
  assert.deepEqual(at("y", "ab2/new/name"), ["a", "b", "new", "name"]); // missing parts are fine
  assert.deepEqual(at("z", "a/b/../file"), ["a", "file"]); // '..' out of a real folder
  assert.deepEqual(at("top", "."), []);
});

Deno.test("resolveLinkTarget() refuses every way out, whatever the text normalises to", async () => {
  await using t = await tree();
  await Deno.symlink(".", `${t.root}/s`);
  await Deno.symlink("a/b", `${t.root}/ab`);
  await Deno.symlink("/etc", `${t.root}/planted`); // put there by someone else
  await Deno.symlink("loop2", `${t.root}/loop1`);
  await Deno.symlink("loop1", `${t.root}/loop2`);
  const at = (link: string, target: string) => () =>
    resolveLinkTarget(t.root, { path: link.split("/"), target });
  // The example: normalises to s/etc, resolves to ../../etc.
  const escape = "s/".repeat(10) + "../".repeat(9) + "etc";
  assert.match(why(at("u", escape)), /out of the link 's'|outside/);
  assert.match(why(at("up", "s/..")), /out of the link 's'/);
  assert.match(why(at("v", "ab/..")), /out of the link 'ab'/); // depends on where ab points
  assert.match(why(at("w", "later/../..")), /'later', which does not exist yet/);
  assert.match(why(at("f", "a/file/..")), /'a\/file', which is not a folder/);
  assert.equal(why(at("x", "../x")), "points outside the folder");
  assert.equal(why(at("a/b/x", "../../../x")), "points outside the folder");
  assert.equal(why(at("p", "planted/passwd")), "points outside the folder");
  assert.equal(why(at("q", "/etc/passwd")), "points outside the folder");
  assert.equal(why(at("l", "loop1")), `goes through more than ${MAX_LINK_HOPS} links`);
  assert.equal(why(at("self", "self/x")), `goes through more than ${MAX_LINK_HOPS} links`);
  // The link being created, and others about to be, count as links.
  assert.match(
    why(() =>
      resolveLinkTarget(t.root, { path: ["m"], target: "n/.." }, {
        pending: new Map([["n", "a/b"]]),
      })
    ),
    /out of the link 'n'/,
  );
  // An absolute text into the folder (by its own path) resolves like a relative one.
  assert.deepEqual(resolveLinkTarget(t.root, { path: ["abs"], target: `${t.root}/a/file` }), [
    "a",
    "file",
  ]);
});
