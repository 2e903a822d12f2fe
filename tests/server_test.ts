import assert from "node:assert/strict";
import { listenTcp } from "../lib/net/server.ts";
import { SocketError } from "../lib/net/errors.ts";

Deno.test("listenTcp names the address and says 'address in use'", () => {
  using first = listenTcp({ hostname: "127.0.0.1", port: 0 });
  const port = first.addr.port;
  assert.throws(
    () => listenTcp({ hostname: "127.0.0.1", port }),
    (error: Error) => {
      assert.ok(error instanceof SocketError);
      assert.equal(error.message, `Cannot listen on 127.0.0.1:${port}: address in use`);
      return true;
    },
  );
});
