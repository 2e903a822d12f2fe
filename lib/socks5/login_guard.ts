/**
 * A per-source budget of failed logins (RFC 1929 username/password), so that guessing
 * passwords is slow: after `maxFailures` failures from one source within `windowMs`, every
 * login from that source is refused, without looking at the password, for `lockoutMs`.
 *
 * - A source is a client's IPv4 address, or the /64 network of an IPv6 address (one host
 *   usually holds a whole /64, so counting single IPv6 addresses would count nothing).
 *   Other sources are not affected: an attacker locks out only its own address.
 * - A successful login does not clear the failures: otherwise a user with an account of
 *   their own could reset the budget between guesses at someone else's password.
 * - The table is bounded (`maxSources`): when it is full, forgotten entries (lockout over,
 *   failures out of the window) are dropped, then the least recently seen ones.
 *
 * @module
 */

import { formatIP, parseIP, unmapIPv4 } from "../net/ip.ts";

/** Options of {@linkcode LoginGuard}; the server's defaults are in `SOCKS5_DEFAULTS`. */
export interface LoginGuardOptions {
  /** Failures from one source within `windowMs` that start a lockout. */
  maxFailures: number;
  /** How long a failure counts, in ms. */
  windowMs: number;
  /** How long a source is refused once locked out, in ms. */
  lockoutMs: number;
  /** Sources remembered at most. */
  maxSources: number;
}

interface SourceEntry {
  /** `performance.now()` of the failures still inside the window, oldest first. */
  failures: number[];
  /** Refused until then (`performance.now()` time); 0 when not locked out. */
  lockedUntil: number;
}

/** Minimum time between two sweeps of a full table, in ms (each sweep looks at every entry). */
const SWEEP_EVERY_MS = 1000;

/**
 * Failed logins per source, and the lockouts they cause.
 *
 * @example Five failures lock one address out, not its neighbour
 * ```ts
 * import assert from "node:assert/strict";
 * import { LoginGuard } from "./login_guard.ts";
 * const guard = new LoginGuard({ maxFailures: 5, windowMs: 60_000, lockoutMs: 60_000, maxSources: 100 });
 * const a = LoginGuard.source("127.0.0.1");
 * const started = [1, 2, 3, 4, 5].map((t) => guard.fail(a, t));
 * assert.deepEqual(started, [false, false, false, false, true]);
 * assert.equal(guard.locked(a, 10), true);
 * assert.equal(guard.locked(LoginGuard.source("127.0.0.2"), 10), false);
 * assert.equal(guard.locked(a, 60_006), false);
 * ```
 */
export class LoginGuard {
  #options: LoginGuardOptions;
  #sources = new Map<string, SourceEntry>();
  #lastSweep = -Infinity;

  /** Creates an empty table. */
  constructor(options: LoginGuardOptions) {
    this.#options = options;
  }

  /**
   * The source a client address counts for: the IPv4 address itself (IPv4-mapped IPv6 as
   * IPv4), the /64 of an IPv6 address (`2001:db8:1:2::/64`), anything else as it is.
   */
  static source(hostname: string): string {
    const ip = parseIP(hostname);
    if (!ip) return hostname;
    const bytes = unmapIPv4(ip);
    if (bytes.length === 4) return formatIP(bytes);
    const net = new Uint8Array(16);
    net.set(bytes.subarray(0, 8));
    return `${formatIP(net)}/64`;
  }

  /** Sources in the table. */
  get size(): number {
    return this.#sources.size;
  }

  /** Whether logins from `source` are refused at `now` (a `performance.now()` time). */
  locked(source: string, now: number = performance.now()): boolean {
    const entry = this.#sources.get(source);
    return entry !== undefined && entry.lockedUntil > now;
  }

  /**
   * Counts a failed login from `source` at `now`; returns true when it starts a lockout (the
   * moment to log it, once per burst).
   */
  fail(source: string, now: number = performance.now()): boolean {
    const { maxFailures, windowMs, lockoutMs } = this.#options;
    let entry = this.#sources.get(source);
    if (entry) {
      this.#sources.delete(source); // Re-inserted below: the map stays ordered by last use.
    } else {
      this.#makeRoom(now);
      entry = { failures: [], lockedUntil: 0 };
    }
    this.#sources.set(source, entry);
    if (entry.lockedUntil > now) return false;
    const failures = entry.failures.filter((t) => t > now - windowMs);
    failures.push(now);
    if (failures.length >= maxFailures) {
      entry.failures = [];
      entry.lockedUntil = now + lockoutMs;
      return true;
    }
    entry.failures = failures;
    return false;
  }

  #forgotten(entry: SourceEntry, now: number): boolean {
    return entry.lockedUntil <= now &&
      entry.failures.every((t) => t <= now - this.#options.windowMs);
  }

  #makeRoom(now: number): void {
    const max = Math.max(1, this.#options.maxSources);
    if (this.#sources.size < max) return;
    if (now - this.#lastSweep >= SWEEP_EVERY_MS) {
      this.#lastSweep = now;
      for (const [key, entry] of this.#sources) {
        if (this.#forgotten(entry, now)) this.#sources.delete(key);
      }
    }
    // Still full: drop the least recently seen.
    for (const key of this.#sources.keys()) {
      if (this.#sources.size < max) break;
      this.#sources.delete(key);
    }
  }
}
