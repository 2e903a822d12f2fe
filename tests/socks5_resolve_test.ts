// Units behind the SOCKS5 hardening: inet_aton parsing, name resolution without the C
// library, the failed-login table and the open-file limit check.
import assert from "node:assert/strict";
import { descriptorWarning } from "../lib/net/fd_limit.ts";
import { isUnspecified } from "../lib/socks5/dial.ts";
import { isNumericHost, parseInetAton, parseIPv4 } from "../lib/net/ip.ts";
import { SOCKS5_DEFAULTS } from "../lib/socks5/options.ts";
import { LoginGuard } from "../lib/socks5/login_guard.ts";
import { literalAddress, resolveHost } from "../lib/socks5/resolve.ts";

/** A DNS server on loopback that counts the queries it gets and never answers. */
function startSilentDns() {
  const socket = Deno.listenDatagram({ transport: "udp", hostname: "127.0.0.1", port: 0 });
  let queries = 0;
  const done = (async () => {
    for await (const _ of socket) queries++;
  })().catch(() => {});
  return {
    nameServer: { ipAddr: "127.0.0.1", port: (socket.addr as Deno.NetAddr).port },
    get queries() {
      return queries;
    },
    async [Symbol.asyncDispose]() {
      socket.close();
      await done;
    },
  };
}

Deno.test("parseInetAton() reads octal, hex, short and mixed forms as inet_aton does", () => {
  const cases: [string, string | undefined][] = [
    ["127.0.0.1", "127.0.0.1"],
    ["127.0.0.010", "127.0.0.8"],
    ["012.0.0.1", "10.0.0.1"],
    ["0177.0.0.1", "127.0.0.1"],
    ["0x7f.0.0.1", "127.0.0.1"],
    ["0X7F.0.0.0X1", "127.0.0.1"],
    ["0x7f.1", "127.0.0.1"],
    ["127.1", "127.0.0.1"],
    ["127.0.1", "127.0.0.1"],
    ["10.0x10203", "10.1.2.3"],
    ["10.1.0x203", "10.1.2.3"],
    ["2130706433", "127.0.0.1"],
    ["0x7f000001", "127.0.0.1"],
    ["017700000001", "127.0.0.1"],
    ["0177.0x0.00.0001", "127.0.0.1"],
    ["0", "0.0.0.0"],
    ["4294967295", "255.255.255.255"],
    ["08.0.0.1", undefined], // 8 is not an octal digit
    ["0x", undefined],
    ["0xg", undefined],
    ["1.2.3.4.5", undefined],
    ["256.0.0.1", undefined],
    ["1.2.3.256", undefined],
    ["1.2.65536", undefined],
    ["1.16777216", undefined],
    ["4294967296", undefined],
    ["127.0.0.1.", undefined],
    ["127..1", undefined],
    ["", undefined],
    [" 127.0.0.1", undefined],
    ["127.0.0.1 ", undefined],
    ["+1.2.3.4", undefined],
  ];
  for (const [text, want] of cases) {
    const got = parseInetAton(text);
    assert.equal(got === undefined ? undefined : got.join("."), want, JSON.stringify(text));
  }
  // The strict parser leaves every non-canonical spelling to parseInetAton.
  for (const text of ["127.0.0.010", "012.0.0.1", "00.0.0.0", "0x7f.0.0.1"]) {
    assert.equal(parseIPv4(text), undefined, text);
  }
  assert.ok(isNumericHost("127.0.0.08") && isNumericHost("1.2.3.4.5") && isNumericHost("0x"));
  assert.ok(!isNumericHost("1a.de") && !isNumericHost("3com.com") && !isNumericHost("a.1"));
  assert.equal(literalAddress("::ffff:127.0.0.1"), "127.0.0.1");
  assert.equal(literalAddress("127.0.0.08"), null);
  assert.ok(
    isUnspecified("0") && isUnspecified("0x0") && isUnspecified("0.0") && isUnspecified("::"),
  );
  assert.ok(!isUnspecified("0.0.0.1"));
});

Deno.test("resolveHost() answers localhost from the system's files, with no DNS server", async () => {
  await using dns = startSilentDns();
  const found = await resolveHost("localhost", { timeoutMs: 2000, nameServer: dns.nameServer });
  assert.ok("addresses" in found && found.addresses.includes("127.0.0.1"), JSON.stringify(found));
  const numeric = await resolveHost("0x7f.1", { timeoutMs: 2000, nameServer: dns.nameServer });
  assert.deepEqual(numeric, { addresses: ["127.0.0.1"] });
  assert.equal(dns.queries, 0);
});

Deno.test("LoginGuard: a sliding window, a lockout that ends, a bounded table, IPv6 by /64", () => {
  assert.equal(SOCKS5_DEFAULTS.authMaxFailures, 5);
  assert.equal(SOCKS5_DEFAULTS.authLockoutMs, 60_000);
  const guard = new LoginGuard({ maxFailures: 3, windowMs: 1000, lockoutMs: 5000, maxSources: 4 });
  const a = LoginGuard.source("192.0.2.1");
  // Failures spread wider than the window never add up.
  assert.equal(guard.fail(a, 0), false);
  assert.equal(guard.fail(a, 600), false);
  assert.equal(guard.fail(a, 1200), false);
  assert.equal(guard.locked(a, 1300), false);
  assert.equal(guard.fail(a, 1300), true, "three within a second");
  assert.equal(guard.locked(a, 6299), true);
  assert.equal(guard.fail(a, 3000), false, "no second lockout line while locked");
  assert.equal(guard.locked(a, 6300), false, "the lockout ends");
  // IPv6 counts per /64; IPv4-mapped as IPv4.
  assert.equal(LoginGuard.source("2001:db8:1:2:aaaa::1"), "2001:db8:1:2::/64");
  assert.equal(LoginGuard.source("2001:db8:1:2:bbbb::2"), "2001:db8:1:2::/64");
  assert.equal(LoginGuard.source("::ffff:192.0.2.1"), "192.0.2.1");
  // The table stays within maxSources.
  for (let i = 0; i < 100; i++) guard.fail(`198.51.100.${i}`, 7000 + i);
  assert.ok(guard.size <= 4, `size ${guard.size}`);
});

Deno.test("descriptorWarning() says what to raise or lower, and nothing when the limit is unknown", () => {
  assert.match(
    descriptorWarning(1024, { flag: "--max-conns", perConnection: 2, limit: 1024 })!,
    /^open file limit is 1024, but --max-conns 1024 needs about 2112 .* or lower --max-conns to 480$/,
  );
  assert.equal(
    descriptorWarning(100, { flag: "--max-conns", perConnection: 2, limit: 4096 }),
    undefined,
  );
  assert.equal(descriptorWarning(1e9, { flag: "--max-conns", limit: null }), undefined);
});

Deno.test("SOCKS5_DEFAULTS: every option's @default text is the constant's value", async () => {
  const source = await Deno.readTextFile(new URL("../lib/socks5/options.ts", import.meta.url));
  const documented = new Map<string, string>();
  for (const m of source.matchAll(/\/\*\*((?:(?!\*\/)[^])*)\*\/\s*(\w+)\?:/g)) {
    const value = /@default \{([^}]*)\}/.exec(m[1]);
    if (value) documented.set(m[2], value[1]);
  }
  for (const [key, value] of Object.entries(SOCKS5_DEFAULTS)) {
    assert.equal(documented.get(key), String(value), `@default of ${key}`);
  }
  assert.deepEqual([...documented.keys()].filter((k) => !(k in SOCKS5_DEFAULTS)), []);
});
