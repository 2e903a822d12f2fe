/**
 * SPAKE2 on Ed25519, symmetric variant: the password-authenticated key exchange Magic Wormhole
 * runs over the mailbox. Byte-compatible with `SPAKE2_Symmetric` of python-spake2 0.8
 * (`spake2/spake2.py`, `spake2/ed25519_basic.py`, `spake2/groups.py`, `spake2/params.py`).
 *
 * ## The math
 *
 * `G` is the Ed25519 base point, `L` the order of its subgroup, `p = 2^255 - 19`. Both sides know
 * the password `pw` and the identity `idS`, and do the same thing:
 *
 * - `S = arbitrary_element("symmetric")`, a point nobody knows the discrete log of
 *   ({@linkcode arbitraryElement}: HKDF-SHA256 of the seed, read big-endian mod `p`, is a
 *   `y`; the first `y, y+1, ...` on the curve (with even `x`) is multiplied by the cofactor 8).
 * - `w = int(HKDF-SHA256(ikm = pw, salt = "", info = "SPAKE2 pw", 48 bytes)) mod L`, big-endian.
 * - `x = int(64 random bytes) mod L`, big-endian; the message element is `X = x·G + w·S`.
 * - Given the peer's `Y = y·G + w·S`: `K = x·(Y - w·S) = x·y·G`, the same on both sides.
 * - `key = SHA256(SHA256(pw) | SHA256(idS) | min(X, Y) | max(X, Y) | K)`: the two elements
 *   sorted bytewise, since neither side is "first".
 *
 * A wrong password leaves `K` random-looking to each side, so the keys differ; with this protocol
 * that only shows when the first box fails to open (`keys.ts`).
 *
 * ## Wire format
 *
 * | bytes | field                                                            |
 * | ----- | ---------------------------------------------------------------- |
 * | 1     | side byte {@linkcode Side.Symmetric} (`0x53`, ASCII `S`)           |
 * | 32    | `X`, the standard Ed25519 point encoding (`y` little-endian, sign of `x` in bit 255) |
 *
 * An inbound message is accepted only if it is exactly {@linkcode MESSAGE_BYTES} long, has the
 * symmetric side byte, encodes a curve point canonically, that point is in the prime-order
 * subgroup (not the identity, not of small order, no torsion component: python's
 * `bytes_to_element`), and it is not our own message reflected back (python's
 * `ReflectionThwarted`). Otherwise {@linkcode Spake2Error} says which check failed. Stricter
 * than python: python also accepts non-canonical encodings (`y >= p`, or `x = 0` with the sign
 * bit set), which its own `start()` never produces.
 *
 * `start()` and `finish()` each run once; a `finish()` that throws still uses the instance up,
 * as in python, so one exchange cannot be probed with many messages.
 *
 * ## In Magic Wormhole
 *
 * `wormhole/_key.py` runs `SPAKE2_Symmetric(code.encode("utf-8"),
 * idSymmetric=appid.encode("utf-8"))`, sends `start()` as the body of the `pake` phase, JSON
 * `{"pake_v1": "<hex of the 33 bytes>"}`, feeds the peer's `pake_v1` to `finish()`, and uses the
 * result as the wormhole key for `deriveKey`/`derivePhaseKey`. That JSON wrapping is the
 * caller's job, not this module's.
 *
 * The curve arithmetic comes from `@noble/curves`, the hashes from `@noble/hashes`; this module
 * is glue only.
 *
 * @module
 */

import { concatBytes } from "../net/bytes.ts";
import { toHex } from "./keys.ts";
import { ed25519 } from "@noble/curves/ed25519.js";
import { bytesToNumberBE, equalBytes, numberToBytesLE } from "@noble/curves/utils.js";
import { hkdf } from "@noble/hashes/hkdf.js";
import { sha256 } from "@noble/hashes/sha2.js";

/** The side bytes of python-spake2 (`SideA`, `SideB`, `SideSymmetric` in `spake2.py`). */
export const Side = {
  /** `SideA`: the first side of the asymmetric `SPAKE2_A`/`SPAKE2_B` exchange. */
  A: 0x41,
  /** `SideB`: the second side of the asymmetric exchange. */
  B: 0x42,
  /** `SideSymmetric`: both sides of `SPAKE2_Symmetric`, the variant Magic Wormhole uses. */
  Symmetric: 0x53,
} as const;

/** Bytes of an encoded Ed25519 element (python's `Ed25519Group.element_size_bytes`). */
export const ELEMENT_BYTES = 32;
/** Bytes of a message on the wire: the side byte, then the element. */
export const MESSAGE_BYTES: number = 1 + ELEMENT_BYTES;
/** Bytes of the session key `finish()` returns (a SHA-256 digest). */
export const KEY_BYTES = 32;

/** The seed of the symmetric blinding element `S` (`_Params(S=b"symmetric")`, `params.py`). */
export const SYMMETRIC_SEED = "symmetric";
/** HKDF info that turns the password into a scalar (`expand_password`, `groups.py`). */
const PASSWORD_INFO = "SPAKE2 pw";
/** HKDF info that turns a seed into an element (`expand_arbitrary_element_seed`). */
const ARBITRARY_ELEMENT_INFO = "SPAKE2 arbitrary element";
/** HKDF output for the password scalar: `scalar_size_bytes + 16`, so `mod L` is near uniform. */
const PASSWORD_EXPANSION_BYTES = 32 + 16;
/** HKDF output for an arbitrary element's `y`: 16 bytes more than the field, as in python. */
const ARBITRARY_ELEMENT_EXPANSION_BYTES = 32 + 16;
/** Random bytes per secret scalar (`random_scalar`, `ed25519_basic.py`: `entropy_f(32 + 32)`). */
export const SCALAR_ENTROPY_BYTES = 64;

const Point = ed25519.Point;
type Point = InstanceType<typeof Point>;
const P = Point.Fp.ORDER;
const L = Point.Fn.ORDER;
const encoder = new TextEncoder();

/** Which check a {@linkcode Spake2Error} is about. */
export type Spake2ErrorReason =
  /** The inbound message is not {@linkcode MESSAGE_BYTES} long. */
  | "bad-length"
  /** The inbound side byte is not {@linkcode Side.Symmetric}. */
  | "wrong-side"
  /** The inbound element is not a (canonical) encoding of a curve point. */
  | "not-a-point"
  /** The inbound element is the identity or another point of small order. */
  | "small-order"
  /** The inbound element is a curve point outside the prime-order subgroup. */
  | "not-in-subgroup"
  /** The inbound message is our own outbound message. */
  | "reflection"
  /** `start()` or `finish()` called twice, or `finish()` before `start()`. */
  | "out-of-order";

/**
 * A SPAKE2 exchange failed: a malformed or hostile inbound message, or the API used out of
 * order. {@linkcode Spake2Error.reason} says which.
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert/strict";
 * import { Spake2Error, Spake2Symmetric } from "./spake2.ts";
 * const spake = new Spake2Symmetric(new TextEncoder().encode("4-purple-sausages"));
 * spake.start();
 * assert.throws(() => spake.finish(new Uint8Array(5)), (error: unknown) => {
 *   assert.ok(error instanceof Spake2Error);
 *   assert.equal(error.reason, "bad-length");
 *   return true;
 * });
 * ```
 */
export class Spake2Error extends Error {
  /** Which check failed. */
  readonly reason: Spake2ErrorReason;

  /** `reason` classifies the failure; `message` says what exactly was wrong. */
  constructor(reason: Spake2ErrorReason, message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "Spake2Error";
    this.reason = reason;
  }
}

/** Options of {@linkcode Spake2Symmetric}. */
export interface Spake2SymmetricOptions {
  /**
   * The identity both sides share, mixed into the key (python's `idSymmetric`). Magic Wormhole
   * passes its app id as UTF-8. @default {empty}
   */
  idSymmetric?: Uint8Array;
  /**
   * Source of the secret scalar: called once with {@linkcode SCALAR_ENTROPY_BYTES}, must return
   * that many bytes (python's `entropy_f`). Only deterministic tests should set it.
   * @default {crypto.getRandomValues}
   */
  random?: (n: number) => Uint8Array;
}

const systemRandom = (n: number): Uint8Array => crypto.getRandomValues(new Uint8Array(n));

/** `scalar·point` in constant time, with python's `scalarmult(0) = Zero`. */
function times(point: Point, scalar: bigint): Point {
  return scalar === 0n ? Point.ZERO : point.multiply(scalar);
}

/** The point `(x, y)` with even `x`, or `undefined` when `y` is not on the curve. */
function pointWithEvenX(y: bigint): Point | undefined {
  try {
    return Point.fromBytes(numberToBytesLE(y, ELEMENT_BYTES)); // sign bit 0: even x
  } catch {
    return undefined;
  }
}

function arbitraryPoint(seed: Uint8Array): Point {
  const info = encoder.encode(ARBITRARY_ELEMENT_INFO);
  const expanded = hkdf(sha256, seed, undefined, info, ARBITRARY_ELEMENT_EXPANSION_BYTES);
  let y = bytesToNumberBE(expanded) % P;
  for (;;) {
    const candidate = pointWithEvenX(y);
    if (candidate !== undefined) {
      // The curve has order 8·L: times 8 lands in the prime-order subgroup, or on the
      // identity for the eight small-order points, which python skips.
      const inSubgroup = candidate.clearCofactor();
      if (!inSubgroup.is0()) return inSubgroup;
    }
    y = (y + 1n) % P;
  }
}

/**
 * python-spake2's `arbitrary_element(seed)`: a point of the prime-order subgroup derived from
 * `seed` so that nobody knows its discrete log, as its 32-byte encoding. The symmetric exchange
 * blinds with the one for {@linkcode SYMMETRIC_SEED}; the asymmetric one uses seeds `M` and `N`.
 *
 * @example The symmetric blinding element S
 * ```ts
 * import assert from "node:assert/strict";
 * import { arbitraryElement, SYMMETRIC_SEED } from "./spake2.ts";
 * import { toHex } from "./keys.ts";
 * const s = arbitraryElement(new TextEncoder().encode(SYMMETRIC_SEED));
 * assert.equal(toHex(s), "6f00dae87c1be1a73b5922ef431cd8f57879569c222d22b1cd71e8546ab8e6f1");
 * ```
 */
export function arbitraryElement(seed: Uint8Array): Uint8Array {
  return arbitraryPoint(seed).toBytes();
}

let symmetricPoint: Point | undefined;
function blindingS(): Point {
  return symmetricPoint ??= arbitraryPoint(encoder.encode(SYMMETRIC_SEED));
}

/** python-spake2's `password_to_scalar`: HKDF-SHA256 to 48 bytes, big-endian, mod L. */
function passwordToScalar(password: Uint8Array): bigint {
  const info = encoder.encode(PASSWORD_INFO);
  const expanded = hkdf(sha256, password, undefined, info, PASSWORD_EXPANSION_BYTES);
  return bytesToNumberBE(expanded) % L;
}

function compareBytes(a: Uint8Array, b: Uint8Array): number {
  for (let i = 0; i < Math.min(a.length, b.length); i++) {
    if (a[i] !== b[i]) return a[i] - b[i];
  }
  return a.length - b.length;
}

/** The inbound element as a point of the prime-order subgroup, or a {@linkcode Spake2Error}. */
function parseInbound(inbound: Uint8Array): { element: Uint8Array; point: Point } {
  const what = "Cannot finish SPAKE2: the inbound message";
  if (inbound.length !== MESSAGE_BYTES) {
    throw new Spake2Error(
      "bad-length",
      `${what} is ${inbound.length} bytes, expected ${MESSAGE_BYTES} (side byte and element)`,
    );
  }
  const side = inbound[0];
  if (side !== Side.Symmetric) {
    const from = side === Side.A
      ? "side A of an asymmetric exchange"
      : side === Side.B
      ? "side B of an asymmetric exchange"
      : "no known side";
    throw new Spake2Error(
      "wrong-side",
      `${what} has side byte 0x${side.toString(16).padStart(2, "0")} (${from}), ` +
        `expected 0x53 ('S', symmetric)`,
    );
  }
  const element = inbound.slice(1);
  let point: Point;
  try {
    point = Point.fromBytes(element);
  } catch (error) {
    const why = error instanceof Error ? error.message : String(error);
    throw new Spake2Error(
      "not-a-point",
      `${what}'s element ${toHex(element)} is not a canonical Ed25519 point encoding (${why})`,
      { cause: error },
    );
  }
  if (point.is0()) {
    throw new Spake2Error("small-order", `${what}'s element is the identity point`);
  }
  if (point.isSmallOrder()) {
    throw new Spake2Error(
      "small-order",
      `${what}'s element ${toHex(element)} is a point of small order (it divides 8)`,
    );
  }
  if (!point.isTorsionFree()) {
    throw new Spake2Error(
      "not-in-subgroup",
      `${what}'s element ${toHex(element)} is not in the prime-order subgroup ` +
        `(it has a small-order component)`,
    );
  }
  return { element, point };
}

type State =
  | { phase: "new" }
  | { phase: "started"; secret: bigint; blinding: Point; outbound: Uint8Array }
  | { phase: "finished" };

/**
 * One side of a symmetric SPAKE2 exchange on Ed25519, compatible with python-spake2's
 * `SPAKE2_Symmetric`: {@linkcode Spake2Symmetric.start} gives the message to send,
 * {@linkcode Spake2Symmetric.finish} takes the peer's and returns the session key. Both sides
 * get the same key exactly when they used the same password and `idSymmetric`.
 *
 * @example Two sides with the same password agree on a key
 * ```ts
 * import assert from "node:assert/strict";
 * import { MESSAGE_BYTES, Spake2Symmetric } from "./spake2.ts";
 * const code = new TextEncoder().encode("4-purple-sausages");
 * const idSymmetric = new TextEncoder().encode("lothar.com/wormhole/text-or-file-xfer");
 * const alice = new Spake2Symmetric(code, { idSymmetric });
 * const bob = new Spake2Symmetric(code, { idSymmetric });
 * const fromAlice = alice.start(), fromBob = bob.start();
 * assert.equal(fromAlice.length, MESSAGE_BYTES);
 * assert.deepEqual(alice.finish(fromBob), bob.finish(fromAlice));
 * ```
 */
export class Spake2Symmetric {
  readonly #passwordScalar: bigint;
  readonly #passwordHash: Uint8Array;
  readonly #idHash: Uint8Array;
  readonly #random: (n: number) => Uint8Array;
  #state: State = { phase: "new" };

  /** `password` is the shared secret (for Magic Wormhole: the code as UTF-8). */
  constructor(password: Uint8Array, options: Spake2SymmetricOptions = {}) {
    this.#passwordScalar = passwordToScalar(password);
    this.#passwordHash = sha256(password);
    this.#idHash = sha256(options.idSymmetric ?? new Uint8Array(0));
    this.#random = options.random ?? systemRandom;
  }

  /**
   * The outbound message: the side byte, then `x·G + w·S` ({@linkcode MESSAGE_BYTES} in all).
   * Throws {@linkcode Spake2Error} (`out-of-order`) when called a second time.
   */
  start(): Uint8Array {
    if (this.#state.phase !== "new") {
      throw new Spake2Error("out-of-order", "Cannot start SPAKE2: start() was already called");
    }
    const entropy = this.#random(SCALAR_ENTROPY_BYTES);
    if (!(entropy instanceof Uint8Array) || entropy.length !== SCALAR_ENTROPY_BYTES) {
      throw new RangeError(
        `Cannot start SPAKE2: random(${SCALAR_ENTROPY_BYTES}) returned ${entropy?.length} bytes`,
      );
    }
    const secret = bytesToNumberBE(entropy) % L;
    const blinding = times(blindingS(), this.#passwordScalar);
    const outbound = times(Point.BASE, secret).add(blinding).toBytes();
    this.#state = { phase: "started", secret, blinding, outbound };
    const message = new Uint8Array(MESSAGE_BYTES);
    message[0] = Side.Symmetric;
    message.set(outbound, 1);
    return message;
  }

  /**
   * The {@linkcode KEY_BYTES}-byte session key, from the peer's message `inbound`. Throws
   * {@linkcode Spake2Error} when `inbound` is malformed, not a point of the prime-order
   * subgroup, or our own message; or when called before `start()` or a second time. After the
   * first call, successful or not, the instance is used up.
   */
  finish(inbound: Uint8Array): Uint8Array {
    const state = this.#state;
    if (state.phase === "new") {
      throw new Spake2Error("out-of-order", "Cannot finish SPAKE2: start() was not called");
    }
    if (state.phase === "finished") {
      throw new Spake2Error("out-of-order", "Cannot finish SPAKE2: finish() was already called");
    }
    this.#state = { phase: "finished" };
    const { element, point } = parseInbound(inbound);
    if (equalBytes(element, state.outbound)) {
      throw new Spake2Error(
        "reflection",
        "Cannot finish SPAKE2: the inbound message is our own outbound message reflected back",
      );
    }
    const shared = times(point.subtract(state.blinding), state.secret).toBytes();
    const [first, second] = [element, state.outbound].sort(compareBytes);
    return sha256(concatBytes(this.#passwordHash, this.#idHash, first, second, shared));
  }
}
