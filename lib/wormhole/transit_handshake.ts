/**
 * The transit handshake on one TCP connection, before it carries records.
 *
 * ```
 * (relay only)  client -> relay:    please relay RELAY_TOKEN for side SIDE\n
 *               relay  -> client:   ok\n                  (once the other end is there too)
 * sender -> receiver:   transit sender SENDER_TOKEN ready\n\n
 * receiver -> sender:   transit receiver RECEIVER_TOKEN ready\n\n
 * sender -> receiver:   go\n        (first connection through: the winner)
 *                       nevermind\n (any other; then the sender closes it)
 * ```
 *
 * Both ends write their line as soon as the connection is up (after the relay's `ok`), on
 * connections they made and connections they accepted alike. The tokens are 32-byte HKDF
 * derivations of the transit key, hex-encoded: purposes `transit_sender`, `transit_receiver`
 * and `transit_relay_token` ({@linkcode transitTokens}); SIDE is 8 random bytes in hex, so the
 * relay never pairs two connections of one end. A connection from anything that does not know
 * the key fails at the first wrong byte. Every read here is bounded by the fixed size of what
 * is expected and never reads past it, so the bytes after `go\n` are left for the records.
 *
 * @module
 */

import { ProtocolError } from "../net/errors.ts";
import { writeAll } from "../net/write_all.ts";
import { quote } from "../log.ts";
import { deriveKey, toHex } from "./keys.ts";
import type { TransitRole } from "./transit_cipher.ts";

const encoder = new TextEncoder();

/** The relay's answer once both ends of a token are connected. */
export const RELAY_OK: Uint8Array = encoder.encode("ok\n");
/** What the sender writes on the connection it picked. */
export const GO: Uint8Array = encoder.encode("go\n");
/** What the sender writes on every other connection before closing it. */
export const NEVERMIND: Uint8Array = encoder.encode("nevermind\n");

/**
 * Why a connection failed its handshake: `wrong-bytes` (another program, or a peer with
 * another transit key), `closed` (it hung up first) or `not-chosen` (the sender picked
 * another connection).
 */
export type HandshakeFailure = "wrong-bytes" | "closed" | "not-chosen";

/**
 * A connection did not follow the transit handshake; {@linkcode HandshakeError.failure} says
 * how.
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert/strict";
 * import { HandshakeError } from "./transit_handshake.ts";
 * const error = new HandshakeError("wrong-bytes", "expected go, got \"nev\"");
 * assert.equal(error.failure, "wrong-bytes");
 * assert.equal(error.name, "HandshakeError");
 * ```
 */
export class HandshakeError extends ProtocolError {
  /** `failure` says how it failed, `message` what was seen. */
  constructor(readonly failure: HandshakeFailure, message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "HandshakeError";
  }
}

/** The handshake lines of one transit key. */
export interface TransitTokens {
  /** `transit sender HEX ready\n\n`. */
  sender: Uint8Array;
  /** `transit receiver HEX ready\n\n`. */
  receiver: Uint8Array;
  /** The hex token for `please relay TOKEN for side SIDE\n`. */
  relayToken: string;
}

/**
 * The handshake lines and relay token derived from `transitKey`.
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert/strict";
 * import { transitTokens } from "./transit_handshake.ts";
 * const tokens = transitTokens(new Uint8Array(32));
 * const line = new TextDecoder().decode(tokens.sender);
 * assert.match(line, /^transit sender [0-9a-f]{64} ready\n\n$/);
 * assert.equal(tokens.relayToken.length, 64);
 * ```
 */
export function transitTokens(transitKey: Uint8Array): TransitTokens {
  const line = (who: TransitRole) =>
    encoder.encode(`transit ${who} ${toHex(deriveKey(transitKey, `transit_${who}`))} ready\n\n`);
  return {
    sender: line("sender"),
    receiver: line("receiver"),
    relayToken: toHex(deriveKey(transitKey, "transit_relay_token")),
  };
}

/**
 * `please relay TOKEN for side SIDE\n` for `transitKey` and this end's `side` (16 hex digits).
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert/strict";
 * import { relayRequest } from "./transit_handshake.ts";
 * const line = new TextDecoder().decode(relayRequest(new Uint8Array(32), "0123456789abcdef"));
 * assert.match(line, /^please relay [0-9a-f]{64} for side 0123456789abcdef\n$/);
 * ```
 */
export function relayRequest(transitKey: Uint8Array, side: string): Uint8Array {
  if (!/^[0-9a-f]{16}$/.test(side)) {
    throw new RangeError(`side ${quote(side)} is not 16 hex digits`);
  }
  return encoder.encode(`please relay ${transitTokens(transitKey).relayToken} for side ${side}\n`);
}

/** A new random side: 8 bytes in hex. */
export function randomSide(): string {
  return toHex(crypto.getRandomValues(new Uint8Array(8)));
}

/**
 * Reads exactly `expected.length` bytes from `conn` (never more) and throws
 * {@linkcode HandshakeError} at the first byte that differs, or when the connection closes
 * first. `what` names the expected message for the error.
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert/strict";
 * import { expectBytes, HandshakeError } from "./transit_handshake.ts";
 * const source = (text: string) => {
 *   let data = new TextEncoder().encode(text);
 *   return { read: (p: Uint8Array) => {
 *     const n = Math.min(p.length, data.length);
 *     p.set(data.subarray(0, n));
 *     data = data.subarray(n);
 *     return Promise.resolve(n === 0 ? null : n);
 *   } };
 * };
 * await expectBytes(source("go\nrest"), new TextEncoder().encode("go\n"), "go");
 * await assert.rejects(
 *   expectBytes(source("nevermind\n"), new TextEncoder().encode("go\n"), "go"),
 *   HandshakeError,
 * );
 * ```
 */
export async function expectBytes(
  conn: { read(p: Uint8Array): Promise<number | null> },
  expected: Uint8Array,
  what: string,
): Promise<void> {
  const got = new Uint8Array(expected.length);
  let n = 0;
  while (n < expected.length) {
    const r = await conn.read(got.subarray(n));
    if (r === null) {
      const seen = n > 0 ? ` (${quote(got.subarray(0, n))})` : "";
      throw new HandshakeError("closed", `connection closed after ${n} bytes of ${what}${seen}`);
    }
    for (let i = n; i < n + r; i++) {
      if (got[i] !== expected[i]) {
        throw new HandshakeError(
          "wrong-bytes",
          `expected ${what}, got ${quote(got.subarray(0, n + r))} (wrong transit key?)`,
        );
      }
    }
    n += r;
  }
}

/** What {@linkcode negotiate} needs to know about this end. */
export interface NegotiateContext {
  /** This end's role. */
  role: TransitRole;
  /** The handshake lines. */
  tokens: TransitTokens;
  /** The relay request, for connections to a relay; undefined for direct ones. */
  relayRequest?: Uint8Array;
  /** Called once our handshake line is written (from then on `nevermind` is meaningful). */
  onHandshakeSent?: () => void;
  /**
   * Sender only: called when the peer's line arrived; true when this connection wins (then
   * `go` is written), false when another already won (then `nevermind`, and it fails).
   */
  claim?: () => boolean;
}

/**
 * Runs the handshake on `conn` as `ctx.role`; resolves when the connection is ready for
 * records (the sender wrote `go`, the receiver read it); throws {@linkcode HandshakeError}.
 *
 * @example A sender and a receiver on a loopback connection
 * ```ts
 * import assert from "node:assert/strict";
 * import { negotiate, transitTokens } from "./transit_handshake.ts";
 * const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
 * const dialed = Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port });
 * const accepted = await listener.accept();
 * const tokens = transitTokens(new Uint8Array(32).fill(1));
 * let won = false;
 * const claim = () => !won && (won = true);
 * await Promise.all([
 *   negotiate(accepted, { role: "sender", tokens, claim }),
 *   negotiate(await dialed, { role: "receiver", tokens }),
 * ]);
 * assert.ok(won);
 * accepted.close();
 * (await dialed).close();
 * listener.close();
 * ```
 */
export async function negotiate(conn: Deno.Conn, ctx: NegotiateContext): Promise<void> {
  if (ctx.relayRequest) {
    await writeAll(conn, ctx.relayRequest);
    await expectBytes(conn, RELAY_OK, "the relay's ok");
  }
  const sender = ctx.role === "sender";
  await writeAll(conn, sender ? ctx.tokens.sender : ctx.tokens.receiver);
  ctx.onHandshakeSent?.();
  await expectBytes(
    conn,
    sender ? ctx.tokens.receiver : ctx.tokens.sender,
    sender ? "the receiver's handshake" : "the sender's handshake",
  );
  if (!sender) {
    try {
      await expectBytes(conn, GO, "go");
    } catch (error) {
      if (error instanceof HandshakeError && error.failure === "closed") throw error;
      throw new HandshakeError("not-chosen", "the sender chose another connection", {
        cause: error,
      });
    }
    return;
  }
  if (!(ctx.claim?.() ?? true)) {
    await writeAll(conn, NEVERMIND).catch(() => {});
    throw new HandshakeError("not-chosen", "another connection won");
  }
  await writeAll(conn, GO);
}
