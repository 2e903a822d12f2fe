/**
 * Allow/deny rules on IP addresses (CIDR ranges), the one implementation every tool uses:
 *
 * - `sockit socks5`: which resolved addresses the proxy may dial (CONNECT), send to (UDP
 *   ASSOCIATE), or accept from (BIND). Rules are checked against the IP address actually used,
 *   after name resolution, so a name that resolves to a denied address is denied.
 * - `sockit relay`: which client addresses may connect, checked right after accept.
 *
 * Evaluation: the rule with the longest matching prefix decides (a tie goes to deny). When no
 * rule matches, the address is allowed if there are no `allow` rules, denied otherwise: one
 * `--allow` turns the rules into an allow list. So `--deny-private --allow 10.1.2.3` allows
 * 10.1.2.3 and nothing else (8.8.8.8 matches no rule and is denied); to open one private
 * host and keep the rest of the internet reachable, allow everything else too:
 * `--deny-private --allow 10.1.2.3 --allow 0.0.0.0/0 --allow ::/0` (10.0.0.1 stays denied:
 * 10.0.0.0/8 is a longer prefix than 0.0.0.0/0).
 *
 * @module
 */

import { UsageError } from "./errors.ts";
import { type Cidr, cidrContains, parseCidr, parseIP } from "./ip.ts";

/**
 * Ranges denied by the `--deny-private` shortcut: "this network", loopback, RFC 1918 private,
 * carrier-grade NAT, link-local, IPv6 unspecified, loopback, unique-local and link-local.
 */
export const PRIVATE_RANGES: readonly string[] = [
  "0.0.0.0/8",
  "10.0.0.0/8",
  "100.64.0.0/10",
  "127.0.0.0/8",
  "169.254.0.0/16",
  "172.16.0.0/12",
  "192.168.0.0/16",
  "::/128",
  "::1/128",
  "fc00::/7",
  "fe80::/10",
];

/** Options of {@linkcode AddressRules}. */
export interface AddressRulesOptions {
  /** CIDR ranges (or single addresses) that are allowed. */
  allow?: string[];
  /** CIDR ranges (or single addresses) that are denied. */
  deny?: string[];
  /** Add {@linkcode PRIVATE_RANGES} to the deny list. @default {false} */
  denyPrivate?: boolean;
}

/**
 * A parsed set of allow/deny rules.
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert/strict";
 * import { AddressRules } from "./address_rules.ts";
 * // An allow rule makes an allow list: what matches no rule is denied.
 * const one = new AddressRules({ denyPrivate: true, allow: ["10.1.2.3"] });
 * assert.equal(one.allows("10.1.2.3"), true);
 * assert.equal(one.allows("10.0.0.1"), false);
 * assert.equal(one.allows("8.8.8.8"), false);
 * // One private host opened, the public internet kept: allow everything, the longest prefix decides.
 * const open = new AddressRules({ denyPrivate: true, allow: ["10.1.2.3", "0.0.0.0/0", "::/0"] });
 * assert.equal(open.allows("10.1.2.3"), true);
 * assert.equal(open.allows("10.0.0.1"), false);
 * assert.equal(open.allows("8.8.8.8"), true);
 * assert.equal(open.allows("::ffff:127.0.0.1"), false); // IPv4-mapped IPv6 counts as IPv4
 * // No allow rule: everything not denied is allowed.
 * const deny = new AddressRules({ denyPrivate: true });
 * assert.equal(deny.allows("8.8.8.8"), true);
 * assert.equal(deny.allows("127.0.0.1"), false);
 * ```
 */
export class AddressRules {
  #rules: { cidr: Cidr; allow: boolean }[] = [];
  #hasAllow: boolean;

  /** Parses the rules; throws UsageError naming a bad CIDR. */
  constructor(options: AddressRulesOptions = {}) {
    for (const text of options.allow ?? []) {
      this.#rules.push({ cidr: parseCidr(text), allow: true });
    }
    const deny = [...(options.deny ?? []), ...(options.denyPrivate ? PRIVATE_RANGES : [])];
    for (const text of deny) this.#rules.push({ cidr: parseCidr(text), allow: false });
    this.#hasAllow = (options.allow ?? []).length > 0;
  }

  /** True when there are no rules at all (everything is allowed). */
  get empty(): boolean {
    return this.#rules.length === 0;
  }

  /** Whether the IP literal (or 4/16 address bytes) is allowed; names are never allowed. */
  allows(address: string | Uint8Array): boolean {
    const bytes = typeof address === "string" ? parseIP(address) : address;
    if (!bytes) return false;
    let best: { cidr: Cidr; allow: boolean } | undefined;
    for (const r of this.#rules) {
      if (!cidrContains(r.cidr, bytes)) continue;
      if (
        !best || r.cidr.prefix > best.cidr.prefix ||
        (r.cidr.prefix === best.cidr.prefix && !r.allow)
      ) best = r;
    }
    return best ? best.allow : !this.#hasAllow;
  }
}

/**
 * The rule lines of a `--rules FILE`: one rule per line, `KIND CIDR` (or a bare `KIND` for the
 * kinds in `options.bare`), `#` comments and blank lines skipped; only `kinds` are accepted.
 * Returns the lines normalised (`allow 10.0.0.0/8`); the CIDRs are checked where the rules are
 * built. Throws a `UsageError` naming the file and line.
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert/strict";
 * import { readRuleFile } from "./address_rules.ts";
 * const file = await Deno.makeTempFile();
 * await Deno.writeTextFile(file, "# office\nallow 10.0.0.0/8\n\ndeny   10.1.0.0/16 # lab\n");
 * assert.deepEqual(readRuleFile(file, { kinds: ["allow", "deny"] }), [
 *   "allow 10.0.0.0/8",
 *   "deny 10.1.0.0/16",
 * ]);
 * await Deno.writeTextFile(file, "permit 1.2.3.4\n");
 * assert.throws(() => readRuleFile(file, { kinds: ["allow", "deny"] }), /line 1: expected allow or deny/);
 * await Deno.remove(file);
 * ```
 */
export function readRuleFile(
  path: string,
  options: { kinds: readonly string[]; bare?: readonly string[] },
): string[] {
  let text: string;
  try {
    text = Deno.readTextFileSync(path);
  } catch (error) {
    throw new UsageError(`Cannot read --rules file '${path}': ${(error as Error).message}`);
  }
  const bare = options.bare ?? [];
  const all = [...options.kinds, ...bare];
  const expected = all.length > 1
    ? `${all.slice(0, -1).join(", ")} or ${all.at(-1)}`
    : all.join("");
  const lines: string[] = [];
  text.split(/\r?\n/).forEach((raw, i) => {
    const line = raw.replace(/#.*$/, "").trim();
    if (line === "") return;
    const [kind, value, ...rest] = line.split(/\s+/);
    const where = `${path} line ${i + 1}`;
    if (bare.includes(kind)) {
      if (value !== undefined) {
        throw new UsageError(`Cannot parse ${where}: ${kind} takes no value`);
      }
      lines.push(kind);
    } else if (options.kinds.includes(kind)) {
      if (value === undefined || rest.length > 0) {
        throw new UsageError(`Cannot parse ${where}: expected '${kind} CIDR'`);
      }
      lines.push(`${kind} ${value}`);
    } else {
      throw new UsageError(`Cannot parse ${where}: expected ${expected}`);
    }
  });
  return lines;
}
