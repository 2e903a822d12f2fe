import assert from "node:assert/strict";
import { UsageError } from "../lib/net/errors.ts";
import { formatIP, parseCidr, parseIPv4, parseIPv6 } from "../lib/net/ip.ts";
import { AddressRules as DestinationRules } from "../lib/net/address_rules.ts";
import { UserTable } from "../lib/socks5/auth.ts";
import { decodeAddress, encodeAddress } from "../lib/socks5/protocol.ts";

const enc = (s: string) => new TextEncoder().encode(s);

Deno.test("parseIPv6() and formatIP() round-trip the usual spellings", () => {
  for (
    const [text, canonical] of [
      ["::1", "::1"],
      ["::", "::"],
      ["fe80::1:2", "fe80::1:2"],
      ["2001:DB8:0:0:0:0:0:1", "2001:db8::1"],
      ["::ffff:10.0.0.1", "::ffff:a00:1"],
      ["1:0:0:1:0:0:0:1", "1:0:0:1::1"],
    ]
  ) {
    assert.equal(formatIP(parseIPv6(text)!), canonical, text);
  }
  for (const bad of ["1::2::3", "12345::", "1:2:3:4:5:6:7:8:9", "::g", "1.2.3.4", ":::"]) {
    assert.equal(parseIPv6(bad), undefined, bad);
  }
  assert.equal(parseIPv4("256.1.1.1"), undefined);
});

Deno.test("DestinationRules: the longest prefix decides, a tie denies", () => {
  const rules = new DestinationRules({
    deny: ["10.0.0.0/8", "192.0.2.1"],
    allow: ["10.1.0.0/16", "192.0.2.1/32", "0.0.0.0/0"],
  });
  assert.equal(rules.allows("10.2.3.4"), false);
  assert.equal(rules.allows("10.1.3.4"), true);
  assert.equal(rules.allows("192.0.2.1"), false);
  assert.equal(rules.allows("8.8.8.8"), true);
  // IPv6 is not covered by 0.0.0.0/0: with allow rules, unmatched means denied.
  assert.equal(rules.allows("2001:db8::1"), false);
});

Deno.test("DestinationRules --deny-private covers loopback, private, link-local, mapped IPv4", () => {
  const rules = new DestinationRules({ denyPrivate: true });
  for (
    const ip of [
      "127.0.0.1",
      "10.9.9.9",
      "172.31.0.1",
      "192.168.1.1",
      "169.254.1.1",
      "0.0.0.0",
      "::1",
      "::",
      "fe80::1",
      "fd00::1",
      "::ffff:127.0.0.1",
      "::ffff:192.168.0.1",
    ]
  ) {
    assert.equal(rules.allows(ip), false, ip);
  }
  for (const ip of ["8.8.8.8", "172.32.0.1", "2001:db8::1", "::ffff:8.8.8.8"]) {
    assert.equal(rules.allows(ip), true, ip);
  }
  assert.equal(rules.allows("example.com"), false, "names are never allowed, only addresses");
});

Deno.test("parseCidr() names a bad rule", () => {
  assert.throws(() => parseCidr("10.0.0.0/33"), /bad prefix length '33'/);
  assert.throws(() => parseCidr("example.com/8"), UsageError);
  assert.equal(parseCidr("::ffff:10.0.0.0/104").prefix, 8);
});

Deno.test("UserTable checks name and password, and rejects unknown users", () => {
  const users = UserTable.fromSpecs(["alice:pa:ss", "bob:x"]);
  assert.equal(users.check(enc("alice"), enc("pa:ss")), true);
  assert.equal(users.check(enc("alice"), enc("pa:s")), false);
  assert.equal(users.check(enc("bob"), enc("pa:ss")), false);
  assert.equal(users.check(enc("carol"), enc("x")), false);
  assert.throws(() => UserTable.fromSpecs(["nopassword"]), /NAME:PASS/);
  assert.throws(() => UserTable.fromSpecs(["a:"]), /password must be 1 to 255 bytes/);
});

Deno.test("encodeAddress() and decodeAddress() agree on all three address types", () => {
  for (
    const addr of [
      { hostname: "127.0.0.1", port: 80 },
      { hostname: "2001:db8::1", port: 65535 },
      { hostname: "example.com", port: 1 },
    ]
  ) {
    const bytes = encodeAddress(addr);
    const back = decodeAddress(bytes)!;
    assert.equal(back.length, bytes.length);
    assert.equal(back.address.hostname, addr.hostname);
    assert.equal(back.address.port, addr.port);
  }
  assert.equal(decodeAddress(new Uint8Array([0x01, 1, 2, 3])), undefined, "truncated");
  assert.equal(decodeAddress(new Uint8Array([0x09, 0, 0])), undefined, "unknown type");
  assert.throws(() => encodeAddress({ hostname: "x".repeat(256), port: 1 }), RangeError);
});
