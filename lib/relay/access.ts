/**
 * Who may connect to the relay, and how the relay reports those it turns away.
 *
 * - `--allow CIDR` / `--deny CIDR` (repeatable) on the client's address, checked right after
 *   accept, before any byte is read: a denied client is closed at once. The rules are the
 *   project's one implementation (`lib/net/address_rules.ts`): the longest matching prefix
 *   decides, a tie denies, and any `--allow` makes an allow list. IPv4-mapped IPv6 addresses
 *   (a relay bound to `::`) are matched as the IPv4 address they carry.
 * - `--max-per-ip N`: the N+1th connection at once from one address is closed at once
 *   (`lib/net/server.ts` counts them).
 * - With `--tls-only` a client that does not start TLS is closed; a TLS handshake that fails
 *   or does not finish within the handshake timeout ends that connection.
 *
 * Each of those is a {@linkcode Refusal}. {@linkcode RefusalLog} counts them by kind and logs
 * at most one line per interval (with how many it did not log), so a flood of refused
 * connections costs no more than a line now and then.
 *
 * @module
 */

import { AddressRules } from "../net/address_rules.ts";
import type { Logger } from "../log.ts";

/** Why the relay turned a connection away before serving it. */
export type Refusal =
  /** The address rules (`--allow` / `--deny`) deny the client's address. */
  | { kind: "denied" }
  /** The client's address already has `--max-per-ip` connections. */
  | { kind: "per-ip"; limit: number }
  /** `--tls-only`, and the client did not start TLS. */
  | { kind: "plaintext" }
  /** The client started TLS on a relay without `--tls`. */
  | { kind: "tls-off" }
  /** The TLS handshake failed or timed out. */
  | { kind: "handshake"; message: string };

/** Every kind of {@linkcode Refusal}, for counters. */
export const REFUSAL_KINDS = ["denied", "per-ip", "plaintext", "tls-off", "handshake"] as const;

/** One of {@linkcode REFUSAL_KINDS}. */
export type RefusalKind = typeof REFUSAL_KINDS[number];

/**
 * A refusal in words, for the log.
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert/strict";
 * import { describeRefusal } from "./access.ts";
 * assert.equal(describeRefusal({ kind: "denied" }), "address denied by --allow/--deny");
 * assert.equal(describeRefusal({ kind: "per-ip", limit: 2 }), "already 2 connections from its address (--max-per-ip)");
 * ```
 */
export function describeRefusal(refusal: Refusal): string {
  switch (refusal.kind) {
    case "denied":
      return "address denied by --allow/--deny";
    case "per-ip":
      return `already ${refusal.limit} connections from its address (--max-per-ip)`;
    case "plaintext":
      return "did not start TLS (--tls-only)";
    case "tls-off":
      return "started TLS, but the relay runs without --tls";
    case "handshake":
      return refusal.message;
  }
}

/**
 * The address rules of `--allow` / `--deny`, or undefined when there are none (every address
 * may connect). Throws a `UsageError` naming a bad CIDR.
 *
 * @example Only one network, but not one host in it
 * ```ts
 * import assert from "node:assert/strict";
 * import { clientRules } from "./access.ts";
 * const rules = clientRules({ allow: ["127.0.0.0/8"], deny: ["127.0.0.2"] })!;
 * assert.equal(rules.allows("127.0.0.1"), true);
 * assert.equal(rules.allows("127.0.0.2"), false);
 * assert.equal(rules.allows("::ffff:127.0.0.2"), false);
 * assert.equal(rules.allows("192.0.2.1"), false);
 * assert.equal(clientRules({}), undefined);
 * ```
 */
export function clientRules(
  options: { allow?: string[]; deny?: string[] },
): AddressRules | undefined {
  const rules = new AddressRules({ allow: options.allow, deny: options.deny });
  return rules.empty ? undefined : rules;
}

/**
 * Counts refused connections by kind and logs at most one line per `intervalMs`: the first
 * refusal at once, later ones only once the interval passed, with how many were not logged.
 *
 * @example Three refusals in a burst make one line; the next interval logs the count
 * ```ts
 * import assert from "node:assert/strict";
 * import { RefusalLog } from "./access.ts";
 * const lines: string[] = [];
 * let now = 0;
 * const log = new RefusalLog({
 *   log: (line) => lines.push(line), intervalMs: 1000, clock: () => now,
 * });
 * for (const peer of ["a:1", "b:2", "c:3"]) log.record(peer, { kind: "denied" });
 * now = 1500;
 * log.record("d:4", { kind: "plaintext" });
 * assert.deepEqual(lines, [
 *   "refused a:1: address denied by --allow/--deny",
 *   "refused d:4: did not start TLS (--tls-only) (and 2 more refused since the last such line)",
 * ]);
 * assert.equal(log.counts.denied, 3);
 * ```
 */
export class RefusalLog {
  /** Refusals so far, by kind. */
  readonly counts: Record<RefusalKind, number> = Object.fromEntries(
    REFUSAL_KINDS.map((k) => [k, 0]),
  ) as Record<RefusalKind, number>;
  #log: ((line: string) => void) | undefined;
  #intervalMs: number;
  #clock: () => number;
  #lastAt = -Infinity;
  #unlogged = 0;

  /** Logs through `options.log` (or `options.logger` at info); none: counts only. */
  constructor(
    options: {
      logger?: Logger;
      log?: (line: string) => void;
      intervalMs: number;
      clock?: () => number;
    },
  ) {
    const logger = options.logger;
    this.#log = options.log ?? (logger ? (line) => logger.info(line) : undefined);
    this.#intervalMs = options.intervalMs;
    this.#clock = options.clock ?? (() => performance.now());
  }

  /** All refusals so far. */
  get total(): number {
    return REFUSAL_KINDS.reduce((sum, k) => sum + this.counts[k], 0);
  }

  /** Counts a refusal of the client at `peer`, and logs it unless a line went out lately. */
  record(peer: string, refusal: Refusal): void {
    this.counts[refusal.kind]++;
    const now = this.#clock();
    if (now - this.#lastAt < this.#intervalMs) {
      this.#unlogged++;
      return;
    }
    const more = this.#unlogged > 0
      ? ` (and ${this.#unlogged} more refused since the last such line)`
      : "";
    this.#lastAt = now;
    this.#unlogged = 0;
    this.#log?.(`refused ${peer}: ${describeRefusal(refusal)}${more}`);
  }
}
