/**
 * Users for RFC 1929 username/password authentication: parsed from `--user NAME:PASS` and
 * `--users FILE`, and checked in constant time.
 *
 * Passwords are compared as SHA-256 digests with `timingSafeEqual`, so neither the password's
 * content nor its length shows in the time taken; an unknown user costs the same comparison
 * against a dummy digest.
 *
 * @module
 */

import { createHash, timingSafeEqual } from "node:crypto";
import { UsageError } from "../net/errors.ts";

const digest = (bytes: Uint8Array | string) => createHash("sha256").update(bytes).digest();
const DUMMY = digest("sockit: no such user");

/**
 * Known users and their password digests.
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert/strict";
 * import { UserTable } from "./auth.ts";
 * const users = UserTable.fromSpecs(["alice:secret"]);
 * const enc = new TextEncoder();
 * assert.equal(users.check(enc.encode("alice"), enc.encode("secret")), true);
 * assert.equal(users.check(enc.encode("alice"), enc.encode("guess")), false);
 * assert.equal(users.check(enc.encode("mallory"), enc.encode("secret")), false);
 * ```
 */
export class UserTable {
  #users = new Map<string, Uint8Array>();

  /** Number of users. */
  get size(): number {
    return this.#users.size;
  }

  /** Adds a user; throws UsageError when name or password is empty or over 255 bytes. */
  add(name: string, password: string): void {
    const enc = new TextEncoder();
    for (const [what, v] of [["user name", name], ["password", password]]) {
      const n = enc.encode(v).length;
      if (n < 1 || n > 255) {
        throw new UsageError(`Cannot add user '${name}': ${what} must be 1 to 255 bytes`);
      }
    }
    this.#users.set(name, digest(password));
  }

  /** The user names, sorted (never the passwords). */
  names(): string[] {
    return [...this.#users.keys()].sort();
  }

  /** True when `name` has the same password here and in `other` (for reload logs). */
  samePassword(name: string, other: UserTable): boolean {
    const a = this.#users.get(name);
    const b = other.#users.get(name);
    return a !== undefined && b !== undefined && timingSafeEqual(a, b);
  }

  /** True when `name` exists and `password` is its password; constant time in the password. */
  check(name: Uint8Array, password: Uint8Array): boolean {
    const want = this.#users.get(new TextDecoder().decode(name));
    const ok = timingSafeEqual(digest(password), want ?? DUMMY);
    return ok && want !== undefined;
  }

  /** Builds a table from `NAME:PASS` specs (the password may contain ':'). */
  static fromSpecs(specs: string[], source = "--user"): UserTable {
    const table = new UserTable();
    for (const spec of specs) table.#addSpec(spec, source);
    return table;
  }

  /** Adds the users of a file: one `NAME:PASS` per line; blank lines and `#` comments skipped. */
  addFile(path: string): void {
    let text: string;
    try {
      text = Deno.readTextFileSync(path);
    } catch (error) {
      const why = error instanceof Error ? error.message : String(error);
      throw new UsageError(`Cannot read --users file '${path}': ${why}`);
    }
    text.split(/\r?\n/).forEach((line, i) => {
      const t = line.trim();
      if (t === "" || t.startsWith("#")) return;
      this.#addSpec(t, `${path} line ${i + 1}`);
    });
  }

  #addSpec(spec: string, source: string): void {
    const colon = spec.indexOf(":");
    if (colon <= 0) {
      throw new UsageError(`Cannot parse user in ${source}: expected NAME:PASS`);
    }
    this.add(spec.slice(0, colon), spec.slice(colon + 1));
  }
}
