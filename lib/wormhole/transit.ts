/**
 * Transit: the connection that carries a Magic Wormhole file, made from the hints both ends
 * exchanged through the mailbox.
 *
 * ```
 *   sender                                   receiver
 *   new Transit("sender", ...)               new Transit("receiver", ...)
 *     listens on an ephemeral port             listens on an ephemeral port
 *   {"transit": transit.message()}  ------>  {"transit": transit.message()}   (via mailbox)
 *                                  <------
 *   addPeerHints(their hints-v1)             addPeerHints(their hints-v1)
 *   connect(transit key)                     connect(transit key)
 *     accepts on its listener, dials every direct hint of the other end, and (after
 *     relayDelayMs, or at once when every direct dial failed or with forceRelay) every relay;
 *     runs the handshake (transit_handshake.ts) on each connection; the sender writes `go` on
 *     the first to pass and `nevermind` on the others, the receiver takes the one it reads
 *     `go` on; everything else is closed.
 *   TransitConnection  <======== encrypted records (transit_records.ts) ========>
 * ```
 *
 * The transit key is `deriveKey(sessionKey, appId + "/transit-key")`, computed by the caller.
 * Our hints are the listener's port at this machine's addresses ({@linkcode localAddresses}:
 * not loopback, not IPv6 link-local; or `advertise`), plus a `relay-v1` hint per `--transit`
 * relay. `connect` gives up after `timeoutMs` with a {@linkcode TransitConnectError} that
 * lists every attempt and why it failed; sooner when nothing is left to try and this end does
 * not listen.
 *
 * @module
 */

import { isLoopbackHost } from "../net/address.ts";
import { LimitError } from "../net/errors.ts";
import type { Logger } from "../log.ts";
import {
  type DirectHint,
  encodeHints,
  HINT_LIMITS,
  type HintJson,
  hintKey,
  localAddresses,
  type ParsedHints,
  parseHints,
  parseRelayAddress,
  TRANSIT_ABILITIES,
} from "./hints.ts";
import type { TransitRole } from "./transit_cipher.ts";
import { randomSide } from "./transit_handshake.ts";
import type { TransitConnection } from "./transit_records.ts";
import { type ConnectOptions, connectRace, TRANSIT_DEFAULTS } from "./transit_race.ts";

export { type ConnectOptions, TRANSIT_DEFAULTS, TransitConnectError } from "./transit_race.ts";
export { TransitConnection } from "./transit_records.ts";
export { RecordCipher, type RecordCipherName, type TransitRole } from "./transit_cipher.ts";

/** Options for {@linkcode Transit}. */
export interface TransitOptions {
  /** Relays from `--transit` (`tcp:HOST:PORT` or `HOST:PORT`), offered to the peer and dialed. */
  relays?: (string | DirectHint)[];
  /** Connect through a relay only: no listener, no direct hints, no direct dials. */
  forceRelay?: boolean;
  /** Do not listen (no direct hints of ours; the peer's are still dialed). @default {false} */
  noListen?: boolean;
  /** The addresses to advertise with the listener's port. @default {localAddresses()} */
  advertise?: string[];
  /**
   * Where to listen. @default {"127.0.0.1" when every advertised address is loopback, else
   * "::" (IPv4 and IPv6), or "0.0.0.0" where IPv6 is missing}
   */
  listenHostname?: string;
  /** See {@linkcode TRANSIT_DEFAULTS}. @default {30000} */
  timeoutMs?: number;
  /** See {@linkcode TRANSIT_DEFAULTS}. @default {2000} */
  relayDelayMs?: number;
  /** Where failed attempts (debug) and wrong handshakes (warnings) are logged. */
  logger?: Logger;
}

function isParsed(value: unknown): value is ParsedHints {
  return typeof value === "object" && value !== null && !Array.isArray(value) &&
    Array.isArray((value as ParsedHints).direct) && Array.isArray((value as ParsedHints).relays);
}

function listen(hostname: string | undefined, loopbackOnly: boolean): Deno.TcpListener {
  if (hostname !== undefined) return Deno.listen({ hostname, port: 0 });
  if (loopbackOnly) return Deno.listen({ hostname: "127.0.0.1", port: 0 });
  try {
    return Deno.listen({ hostname: "::", port: 0 });
  } catch {
    return Deno.listen({ hostname: "0.0.0.0", port: 0 });
  }
}

/**
 * One end of a transit connection: listens (unless told not to) as soon as it is made, so
 * its hints can be sent; {@linkcode Transit.connect} then makes the connection, once.
 *
 * @example Two ends on loopback
 * ```ts
 * import assert from "node:assert/strict";
 * import { Transit } from "./transit.ts";
 * const key = new Uint8Array(32).fill(3);
 * await using a = new Transit("sender", { advertise: ["127.0.0.1"] });
 * await using b = new Transit("receiver", { advertise: ["127.0.0.1"] });
 * a.addPeerHints(b.hints);
 * b.addPeerHints(a.hints);
 * const [ca, cb] = await Promise.all([a.connect(key), b.connect(key)]);
 * await ca.sendRecord(new TextEncoder().encode("hi"));
 * assert.equal(new TextDecoder().decode((await cb.receiveRecord())!), "hi");
 * ca.close();
 * cb.close();
 * ```
 */
export class Transit implements AsyncDisposable {
  /** This end's role: the sender picks the connection. */
  readonly role: TransitRole;
  /** 16 hex digits that tell the relay our connections from the peer's. */
  readonly side: string = randomSide();
  /** Our `hints-v1`: direct hints at the listener's port, then relay hints. */
  readonly hints: HintJson[];
  #listener: Deno.TcpListener | null = null;
  #relays: DirectHint[];
  #forceRelay: boolean;
  #timeoutMs: number;
  #relayDelayMs: number;
  #log: Logger | undefined;
  #used = false;
  #peerDirect: DirectHint[] = [];
  #peerRelays: DirectHint[] = [];

  /** Makes the `role` end and starts listening. Needs `--allow-sys` without `advertise`. */
  constructor(role: TransitRole, options: TransitOptions = {}) {
    this.role = role;
    this.#forceRelay = options.forceRelay ?? false;
    this.#timeoutMs = options.timeoutMs ?? TRANSIT_DEFAULTS.timeoutMs;
    this.#relayDelayMs = options.relayDelayMs ?? TRANSIT_DEFAULTS.relayDelayMs;
    this.#log = options.logger;
    this.#relays = (options.relays ?? []).map((r) =>
      typeof r === "string" ? parseRelayAddress(r) : r
    );
    const direct: DirectHint[] = [];
    if (!this.#forceRelay && !options.noListen) {
      const advertise = options.advertise;
      const loopbackOnly = advertise !== undefined && advertise.every(isLoopbackHost);
      this.#listener = listen(options.listenHostname, loopbackOnly);
      const { hostname, port } = this.#listener.addr;
      const ipv6 = hostname.includes(":");
      const addresses = advertise ?? localAddresses({ ipv6 });
      for (const a of addresses) direct.push({ hostname: a, port, priority: 0 });
    }
    this.hints = encodeHints(direct, this.#relays.map((r) => ({ hints: [r] })));
  }

  /** The listener's port, or null when this end does not listen. */
  get port(): number | null {
    return this.#listener?.addr.port ?? null;
  }

  /** The value for the `transit` key of the file-transfer message. */
  message(): { "abilities-v1": { type: string }[]; "hints-v1": HintJson[] } {
    return { "abilities-v1": TRANSIT_ABILITIES.map((a) => ({ ...a })), "hints-v1": this.hints };
  }

  /**
   * Adds the peer's `hints-v1` (the list as received, or what {@linkcode parseHints} made of
   * it); may be called again for hints that come in a later message. Throws a `ProtocolError`
   * or `LimitError` for a malformed list (also when the hints added so far pass the limit);
   * returns what was parsed, `ignored` saying which hints were skipped and why.
   */
  addPeerHints(hints: unknown): ParsedHints {
    const parsed = isParsed(hints) ? hints : parseHints(hints);
    for (const why of parsed.ignored) this.#log?.debug(`transit: ignored the peer's ${why}`);
    const add = (list: DirectHint[], hint: DirectHint) => {
      if (list.some((x) => hintKey(x) === hintKey(hint))) return;
      if (list.length >= HINT_LIMITS.maxHints) {
        throw new LimitError(`the peer sent more than ${HINT_LIMITS.maxHints} transit hints`);
      }
      list.push(hint);
    };
    for (const h of parsed.direct) add(this.#peerDirect, h);
    for (const h of parsed.relays.flatMap((r) => r.hints)) add(this.#peerRelays, h);
    return parsed;
  }

  /**
   * Connects, with the transit key `transitKey`, to the peer whose hints were given to
   * {@linkcode addPeerHints} (and to our relays). Resolves to the encrypted connection;
   * rejects with {@linkcode TransitConnectError} (nothing passed the handshake within the
   * timeout, or every attempt failed) or the signal's reason. Call it once; it stops the
   * listener when it is done.
   */
  connect(transitKey: Uint8Array, options: ConnectOptions = {}): Promise<TransitConnection> {
    if (this.#used) return Promise.reject(new Error("Transit.connect() was already called"));
    this.#used = true;
    const byPriority = (a: DirectHint, b: DirectHint) => b.priority - a.priority;
    const direct = this.#forceRelay ? [] : [...this.#peerDirect].sort(byPriority);
    const relays: DirectHint[] = [];
    for (const r of [...this.#relays, ...this.#peerRelays]) {
      if (!relays.some((x) => hintKey(x) === hintKey(r))) relays.push(r);
    }
    relays.sort(byPriority);
    return connectRace(this.role, transitKey, {
      side: this.side,
      listener: this.#listener,
      direct,
      relays,
      relayDelayMs: this.#forceRelay ? 0 : this.#relayDelayMs,
      timeoutMs: options.timeoutMs ?? this.#timeoutMs,
      log: this.#log,
      connect: options,
    }).finally(() => this.close());
  }

  /** Stops listening. */
  close(): void {
    if (this.#listener) {
      try {
        this.#listener.close();
      } catch {
        // Already closed.
      }
      this.#listener = null;
    }
  }

  /** Stops listening. */
  [Symbol.asyncDispose](): Promise<void> {
    this.close();
    return Promise.resolve();
  }
}
