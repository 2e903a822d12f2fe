/**
 * The part of the socks5 configuration that SIGHUP re-reads: users (`--user`, `--users FILE`),
 * destination rules (`--allow`, `--deny`, `--deny-private`) and client rules
 * (`--allow-client`, `--deny-client`), plus a `--rules FILE` with the same rules one per line:
 *
 * ```text
 * # destinations
 * allow 10.0.0.0/8
 * deny 10.1.0.0/16
 * deny-private
 * # client (source) addresses, checked before a byte is read
 * allow-client 192.0.2.0/24
 * deny-client 192.0.2.66
 * ```
 *
 * Flags and files add up; on SIGHUP only the files are read again. {@linkcode loadSocks5Config}
 * builds the whole configuration or throws a `UsageError` naming the file and line, so a
 * broken file never half-applies: the server keeps its old configuration.
 * {@linkcode describeConfigChange} says what a reload changed, for the log line.
 *
 * @module
 */

import { AddressRules, readRuleFile } from "../net/address_rules.ts";
import { UsageError } from "../net/errors.ts";
import { UserTable } from "./auth.ts";

/** What the flags gave: fixed for the process's life. */
export interface Socks5ConfigSources {
  /** `--user NAME:PASS` specs. */
  userSpecs?: string[];
  /** `--users FILE`. */
  usersFile?: string;
  /** `--rules FILE`. */
  rulesFile?: string;
  /** `--allow CIDR` (destinations). */
  allow?: string[];
  /** `--deny CIDR` (destinations). */
  deny?: string[];
  /** `--deny-private`. */
  denyPrivate?: boolean;
  /** `--allow-client CIDR`. */
  allowClient?: string[];
  /** `--deny-client CIDR`. */
  denyClient?: string[];
}

/** A complete reloadable configuration. */
export interface Socks5Config {
  /** The users; empty means no authentication. */
  users: UserTable;
  /** Destination rules. */
  rules: AddressRules;
  /** Client (source address) rules. */
  clientRules: AddressRules;
  /** The rules as text, for change logs: `allow 10.0.0.0/8`, `deny-client 192.0.2.66`, ... */
  ruleLines: string[];
}

/**
 * Builds the configuration from the flags and (re-)reads the files; throws a `UsageError`
 * naming what is wrong.
 *
 * @example Flags and a rules file
 * ```ts
 * import assert from "node:assert/strict";
 * import { loadSocks5Config } from "./config.ts";
 * const rulesFile = await Deno.makeTempFile();
 * await Deno.writeTextFile(rulesFile, "deny 10.0.0.0/8  # no LAN\ndeny-client 127.0.0.2\n");
 * const config = loadSocks5Config({ userSpecs: ["alice:pw"], rulesFile });
 * assert.equal(config.users.size, 1);
 * assert.equal(config.rules.allows("10.1.2.3"), false);
 * assert.equal(config.clientRules.allows("127.0.0.2"), false);
 * assert.deepEqual(config.ruleLines, ["deny 10.0.0.0/8", "deny-client 127.0.0.2"]);
 * await Deno.remove(rulesFile);
 * ```
 */
export function loadSocks5Config(sources: Socks5ConfigSources): Socks5Config {
  const users = UserTable.fromSpecs(sources.userSpecs ?? []);
  if (sources.usersFile !== undefined) {
    users.addFile(sources.usersFile);
    if (users.size === 0) {
      throw new UsageError(`Cannot use --users '${sources.usersFile}': it lists no users`);
    }
  }
  const lines = [
    ...(sources.allow ?? []).map((c) => `allow ${c}`),
    ...(sources.deny ?? []).map((c) => `deny ${c}`),
    ...(sources.denyPrivate ? ["deny-private"] : []),
    ...(sources.allowClient ?? []).map((c) => `allow-client ${c}`),
    ...(sources.denyClient ?? []).map((c) => `deny-client ${c}`),
    ...(sources.rulesFile === undefined ? [] : readRuleFile(sources.rulesFile, {
      kinds: ["allow", "deny", "allow-client", "deny-client"],
      bare: ["deny-private"],
    })),
  ];
  const of = (kind: string) =>
    lines.filter((l) => l.startsWith(`${kind} `)).map((l) => l.slice(kind.length + 1));
  return {
    users,
    rules: new AddressRules({
      allow: of("allow"),
      deny: of("deny"),
      denyPrivate: lines.includes("deny-private"),
    }),
    clientRules: new AddressRules({ allow: of("allow-client"), deny: of("deny-client") }),
    ruleLines: lines,
  };
}

/**
 * What changed between two configurations, for the reload's log line; "nothing changed" when
 * nothing did. Passwords are never shown, only which users came and went.
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert/strict";
 * import { describeConfigChange, loadSocks5Config } from "./config.ts";
 * const before = loadSocks5Config({ userSpecs: ["alice:a", "bob:b"], deny: ["10.0.0.0/8"] });
 * const after = loadSocks5Config({ userSpecs: ["bob:b", "carol:c"] });
 * assert.equal(
 *   describeConfigChange(before, after),
 *   "users +carol -alice; rules -deny 10.0.0.0/8",
 * );
 * ```
 */
export function describeConfigChange(before: Socks5Config, after: Socks5Config): string {
  const diff = (a: string[], b: string[]) => {
    const added = b.filter((x) => !a.includes(x)).map((x) => `+${x}`);
    const removed = a.filter((x) => !b.includes(x)).map((x) => `-${x}`);
    return [...added, ...removed].join(" ");
  };
  const users = diff(before.users.names(), after.users.names());
  const passwords = before.users.names().filter((n) =>
    after.users.names().includes(n) && !before.users.samePassword(n, after.users)
  );
  const rules = diff(before.ruleLines, after.ruleLines);
  const parts = [
    users ? `users ${users}` : "",
    passwords.length ? `new password for ${passwords.join(", ")}` : "",
    rules ? `rules ${rules}` : "",
  ].filter(Boolean);
  return parts.length ? parts.join("; ") : "nothing changed";
}
