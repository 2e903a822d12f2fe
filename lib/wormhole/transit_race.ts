/**
 * One transit `connect`: every connection attempt at once, the first through the handshake
 * wins (see `transit.ts` for the whole picture, `transit_handshake.ts` for the handshake).
 *
 * Attempts: each connection accepted on our listener (at most `maxInbound` in handshake at
 * once), a dial to each direct hint of the peer, and, `relayDelayMs` later (at once when no
 * direct dial is left pending), a dial to each relay; `maxOutbound` dials in all. The sender
 * writes `go` on the first connection through and closes the others (writing `nevermind` on
 * those that got its handshake line); the receiver takes the connection it reads `go` on.
 * Everything is abandoned after `timeoutMs`, and at once when nothing is pending, the relays
 * were dialed and this end does not listen.
 *
 * @module
 */

import { formatAddress } from "../net/address.ts";
import { DEADLINES } from "../net/deadline.ts";
import type { Logger } from "../log.ts";
import type { DirectHint } from "./hints.ts";
import { type RecordCipherName, recordKeys, type TransitRole } from "./transit_cipher.ts";
import {
  HandshakeError,
  negotiate,
  NEVERMIND,
  relayRequest,
  type TransitTokens,
  transitTokens,
} from "./transit_handshake.ts";
import { TransitConnection } from "./transit_records.ts";

/** Defaults of {@linkcode Transit}. */
export const TRANSIT_DEFAULTS = {
  /** Longest wait in `connect` for a connection to pass the handshake, in ms. */
  timeoutMs: 30_000,
  /** Wait before dialing relays while direct dials are pending (Python: `RELAY_DELAY`). */
  relayDelayMs: 2_000,
  /** Accepted connections in handshake at once; more are closed at once. */
  maxInbound: 16,
  /** Outbound connections tried in one `connect` (direct and relay); the rest are skipped. */
  maxOutbound: 32,
  /** Failed attempts listed in a {@linkcode TransitConnectError}; the rest are counted. */
  maxReported: 32,
} as const;

/** Options for {@linkcode Transit.connect}. */
export interface ConnectOptions {
  /** Overrides {@linkcode TransitOptions.timeoutMs} for this connect. */
  timeoutMs?: number;
  /** The record cipher both ends agreed on (in their `app_versions`). @default {"secretbox"} */
  cipher?: RecordCipherName;
  /** Plaintext bytes per record written. @default {RECORD_LIMITS.recordPayloadBytes} */
  recordPayloadBytes?: number;
  /** Largest record accepted. @default {RECORD_LIMITS.maxRecordBytes} */
  maxRecordBytes?: number;
  /** Aborting it gives up (rejects with its reason) and closes every attempt. */
  signal?: AbortSignal;
}

/**
 * No connection passed the handshake. `attempts` has one line per connection tried.
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert/strict";
 * import { TransitConnectError } from "./transit.ts";
 * const error = new TransitConnectError("no transit connection", ["direct 10.0.0.5:1: refused"]);
 * assert.deepEqual(error.attempts, ["direct 10.0.0.5:1: refused"]);
 * ```
 */
export class TransitConnectError extends Error {
  /** `message` says what happened; `attempts` what was tried. */
  constructor(message: string, readonly attempts: string[]) {
    super(message);
    this.name = "TransitConnectError";
  }
}

/** `::ffff:1.2.3.4` as `1.2.3.4`. */
function unmapped(hostname: string): string {
  return hostname.startsWith("::ffff:") && hostname.includes(".") ? hostname.slice(7) : hostname;
}

function reason(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

function closeQuietly(conn: Deno.Conn): void {
  try {
    conn.close();
  } catch {
    // Already closed.
  }
}

/** Everything {@linkcode connectRace} needs. */
export interface RaceOptions {
  /** Our side, for the relay. */
  side: string;
  /** Our listener, or null when we do not listen. */
  listener: Deno.TcpListener | null;
  /** The peer's direct hints, best first (empty with forceRelay). */
  direct: DirectHint[];
  /** Every relay (ours and the peer's), best first. */
  relays: DirectHint[];
  /** Wait before dialing relays while direct dials are pending, in ms. */
  relayDelayMs: number;
  /** Longest wait, in ms. */
  timeoutMs: number;
  /** Where attempts are logged. */
  log?: Logger;
  /** The caller's options (cipher, record sizes, signal). */
  connect: ConnectOptions;
}

/**
 * Runs one `connect` as `role` with the transit key `key`; resolves to the winner as an
 * encrypted {@linkcode TransitConnection}, rejects with {@linkcode TransitConnectError} or the
 * signal's reason. Does not close the listener when it is done (the caller does).
 *
 * @example Nothing to try and nothing listening fails at once
 * ```ts
 * import assert from "node:assert/strict";
 * import { connectRace, TransitConnectError } from "./transit_race.ts";
 * await assert.rejects(
 *   connectRace("sender", new Uint8Array(32), {
 *     side: "0123456789abcdef", listener: null, direct: [], relays: [],
 *     relayDelayMs: 0, timeoutMs: 1000, connect: {},
 *   }),
 *   TransitConnectError,
 * );
 * ```
 */
export function connectRace(
  role: TransitRole,
  key: Uint8Array,
  options: RaceOptions,
): Promise<TransitConnection> {
  return new Race(role, key, options).run();
}

/** One `connect`: every attempt, the first through wins. */
class Race {
  #role: TransitRole;
  #key: Uint8Array;
  #s: RaceOptions;
  #tokens: TransitTokens;
  #abort = new AbortController();
  /** Open connections of attempts still running, and whether our handshake line went out. */
  #open = new Map<Deno.TcpConn, { sent: boolean }>();
  #failures: string[] = [];
  #unreported = 0;
  #pending = 0;
  #pendingDirect = 0;
  #inbound = 0;
  #relaysStarted = false;
  #claimed = false;
  #settled = false;
  #resolve: (conn: TransitConnection) => void = () => {};
  #reject: (error: unknown) => void = () => {};

  constructor(role: TransitRole, key: Uint8Array, settings: RaceOptions) {
    this.#role = role;
    this.#key = key;
    this.#s = settings;
    this.#tokens = transitTokens(key);
  }

  run(): Promise<TransitConnection> {
    const { direct, relays, relayDelayMs } = this.#s;
    const done = new Promise<TransitConnection>((resolve, reject) => {
      this.#resolve = resolve;
      this.#reject = reject;
    });
    const { signal } = this.#s.connect;
    const onAbort = () => this.#fail(signal?.reason);
    if (signal?.aborted) onAbort();
    signal?.addEventListener("abort", onAbort, { once: true });
    const cancelTimeout = DEADLINES.after(this.#s.timeoutMs, () => this.#timedOut());
    void done.catch(() => {}).finally(() => {
      cancelTimeout();
      signal?.removeEventListener("abort", onAbort);
    });
    let budget = TRANSIT_DEFAULTS.maxOutbound;
    const skip = (what: string) => this.#note(`${what}: skipped (too many hints)`);
    const startRelays = () => {
      if (this.#relaysStarted || this.#settled) return;
      this.#relaysStarted = true;
      for (const r of relays) {
        if (budget-- > 0) this.#dial(`relay ${formatAddress(r)}`, r, true);
        else skip(`relay ${formatAddress(r)}`);
      }
      this.#check();
    };
    for (const h of direct) {
      if (budget-- > 0) this.#dial(`direct ${formatAddress(h)}`, h, false);
      else skip(`direct ${formatAddress(h)}`);
    }
    if (this.#s.listener) void this.#acceptLoop(this.#s.listener);
    if (this.#pendingDirect === 0 || relayDelayMs <= 0) startRelays();
    else {
      this.#onDirectDone = startRelays;
      const cancel = DEADLINES.after(relayDelayMs, startRelays);
      void done.catch(() => {}).finally(cancel);
    }
    return done;
  }

  /** Called when the last direct dial failed: the relays need not wait any longer. */
  #onDirectDone: () => void = () => {};

  #dial(what: string, hint: DirectHint, viaRelay: boolean): void {
    if (!viaRelay) this.#pendingDirect++;
    const open = () =>
      Deno.connect({ hostname: hint.hostname, port: hint.port, signal: this.#abort.signal });
    void this.#attempt(what, open, viaRelay).finally(() => {
      if (!viaRelay && --this.#pendingDirect === 0 && !this.#settled) this.#onDirectDone();
    });
  }

  async #acceptLoop(listener: Deno.TcpListener): Promise<void> {
    while (!this.#settled) {
      let conn: Deno.TcpConn;
      try {
        conn = await listener.accept();
      } catch {
        return; // Closed: settled, or the Transit was closed.
      }
      const from = `inbound from ${
        formatAddress({ ...conn.remoteAddr, hostname: unmapped(conn.remoteAddr.hostname) })
      }`;
      if (this.#settled || this.#inbound >= TRANSIT_DEFAULTS.maxInbound) {
        this.#s.log?.debug(`transit: ${from}: closed (${this.#inbound} handshakes already)`);
        closeQuietly(conn);
        continue;
      }
      this.#inbound++;
      void this.#attempt(from, () => Promise.resolve(conn), false).finally(() => this.#inbound--);
    }
  }

  async #attempt(
    what: string,
    open: () => Promise<Deno.TcpConn>,
    viaRelay: boolean,
  ): Promise<void> {
    this.#pending++;
    let conn: Deno.TcpConn | undefined;
    let chosen = false;
    try {
      conn = await open();
      if (this.#settled) throw new Error("too late");
      const state = { sent: false };
      this.#open.set(conn, state);
      await negotiate(conn, {
        role: this.#role,
        tokens: this.#tokens,
        relayRequest: viaRelay ? relayRequest(this.#key, this.#s.side) : undefined,
        onHandshakeSent: () => (state.sent = true),
        claim: () => {
          if (this.#claimed || this.#settled) return false;
          this.#claimed = chosen = true;
          this.#open.delete(conn!);
          this.#closeOthers();
          return true;
        },
      });
      if (this.#settled && !this.#claimed) throw new Error("too late");
      this.#open.delete(conn);
      this.#win(conn, what);
    } catch (error) {
      if (conn) {
        this.#open.delete(conn);
        closeQuietly(conn);
      }
      if (!this.#settled) {
        const line = `${what}: ${reason(error)}`;
        this.#note(line);
        if (error instanceof HandshakeError && error.failure === "wrong-bytes") {
          this.#s.log?.warn(`transit: ${line}; closed it`);
        } else this.#s.log?.debug(`transit: ${line}`);
      }
      if (chosen && !this.#settled) {
        // This was the winner, and its `go` could not be written: the others are closed.
        this.#fail(
          new TransitConnectError(`the chosen transit connection broke: ${this.#tried()}`, [
            ...this.#failures,
          ]),
        );
      }
    } finally {
      this.#pending--;
      this.#check();
    }
  }

  #win(conn: Deno.TcpConn, what: string): void {
    if (this.#settled) {
      closeQuietly(conn);
      return;
    }
    this.#settled = true;
    this.#closeOthers();
    this.#s.log?.debug(`transit: connected (${what})`);
    const { cipher, recordPayloadBytes, maxRecordBytes } = this.#s.connect;
    const keys = recordKeys(this.#key, this.#role, { cipher });
    this.#resolve(
      new TransitConnection(conn, keys, {
        cipher,
        recordPayloadBytes,
        maxRecordBytes,
        description: what,
      }),
    );
  }

  /** Closes every other attempt; the sender first writes `nevermind` where it is understood. */
  #closeOthers(): void {
    this.#abort.abort();
    try {
      this.#s.listener?.close();
    } catch {
      // Already closed.
    }
    for (const [conn, state] of this.#open) {
      if (state.sent && this.#role === "sender") {
        conn.write(NEVERMIND).catch(() => {}).finally(() => closeQuietly(conn));
      } else closeQuietly(conn);
    }
    this.#open.clear();
  }

  #fail(error: unknown): void {
    if (this.#settled) return;
    this.#settled = true;
    this.#closeOthers();
    this.#reject(error);
  }

  /** Records a failed attempt for the error message (the first `maxReported` of them). */
  #note(line: string): void {
    if (this.#failures.length < TRANSIT_DEFAULTS.maxReported) this.#failures.push(line);
    else this.#unreported++;
  }

  #tried(): string {
    if (this.#failures.length === 0) return "nothing";
    const more = this.#unreported > 0 ? `; and ${this.#unreported} more` : "";
    return this.#failures.join("; ") + more;
  }

  #timedOut(): void {
    const listening = this.#s.listener ? `; listened on port ${this.#s.listener.addr.port}` : "";
    const seconds = Math.round(this.#s.timeoutMs / 100) / 10;
    this.#fail(
      new TransitConnectError(
        `no transit connection within ${seconds} s: tried ${this.#tried()}${listening}`,
        [...this.#failures],
      ),
    );
  }

  /** Fails at once when nothing is pending, the relays were tried and nobody can dial us. */
  #check(): void {
    if (this.#settled || this.#pending > 0 || !this.#relaysStarted || this.#s.listener) return;
    this.#fail(
      new TransitConnectError(
        `no transit connection (every attempt failed): tried ${this.#tried()}`,
        [...this.#failures],
      ),
    );
  }
}
