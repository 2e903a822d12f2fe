import assert from "node:assert/strict";
import { formatAddress, parseAddress } from "../lib/net/address.ts";
import { UsageError } from "../lib/net/errors.ts";

Deno.test("parseAddress() reads IPv4, bracketed IPv6 and names", () => {
  assert.deepEqual(parseAddress("127.0.0.1:80"), { hostname: "127.0.0.1", port: 80 });
  assert.deepEqual(parseAddress("[::1]:9000"), { hostname: "::1", port: 9000 });
  assert.deepEqual(parseAddress("localhost:0"), { hostname: "localhost", port: 0 });
  assert.deepEqual(parseAddress("example.com", { defaultPort: 7 }), {
    hostname: "example.com",
    port: 7,
  });
});

Deno.test("parseAddress() names the bad part", () => {
  const cases: [string, RegExp][] = [
    ["x", /Cannot parse address 'x': missing port/],
    ["x:", /missing port/],
    [":80", /missing host/],
    ["h:99999", /bad port '99999'/],
    ["h:http", /bad port 'http'/],
    ["::1:80", /IPv6 addresses need brackets/],
    ["[::1:80", /missing '\]'/],
  ];
  for (const [text, re] of cases) {
    assert.throws(() => parseAddress(text), (err: unknown) => {
      assert.ok(err instanceof UsageError, text);
      assert.match(err.message, re);
      return true;
    });
  }
});

Deno.test("formatAddress() brackets IPv6", () => {
  assert.equal(formatAddress({ hostname: "::1", port: 1 }), "[::1]:1");
  assert.equal(formatAddress({ hostname: "10.0.0.1", port: 2 }), "10.0.0.1:2");
});
