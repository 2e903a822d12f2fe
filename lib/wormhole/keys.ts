/**
 * Key derivation and sealed boxes for the Magic Wormhole protocol.
 *
 * Every key in the protocol comes from the SPAKE2 session key through HKDF-SHA256 with no salt
 * and a purpose string as the info ({@linkcode deriveKey}); a phase message is sealed with the
 * key for its sender's side and its phase ({@linkcode derivePhaseKey}). Sealing is NaCl
 * SecretBox (XSalsa20-Poly1305): the wire form of a phase message is `nonce (24) | box`
 * ({@linkcode sealWithRandomNonce}); transit records use a counter nonce instead
 * ({@linkcode counterNonce}). A box that does not open is a {@linkcode WrongCodeError}: with
 * this protocol that means the other side derived a different key, which is what a wrong code
 * (or someone guessing it) looks like.
 *
 * The primitives come from `@noble/hashes` and `@noble/ciphers`; this module is glue only.
 *
 * @module
 */

import { hkdf } from "@noble/hashes/hkdf.js";
import { sha256 } from "@noble/hashes/sha2.js";
import { xsalsa20poly1305 } from "@noble/ciphers/salsa.js";

/** SecretBox key length in bytes. */
export const KEY_BYTES = 32;
/** SecretBox nonce length in bytes. */
export const NONCE_BYTES = 24;
/** SecretBox authenticator (Poly1305 tag) length in bytes. */
export const TAG_BYTES = 16;

const encoder = new TextEncoder();

/**
 * The other side derived a different key: a box failed to open. Almost always a mistyped
 * code; possibly someone who tried to guess it.
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert/strict";
 * import { WrongCodeError } from "./keys.ts";
 * const error = new WrongCodeError("the peer's version message");
 * assert.match(error.message, /wrong code/);
 * ```
 */
export class WrongCodeError extends Error {
  /** `what` names the message that did not decrypt. */
  constructor(what: string) {
    super(`wrong code (or someone tried to guess it): ${what} did not decrypt`);
    this.name = "WrongCodeError";
  }
}

/** A string (as UTF-8) or bytes. */
export type BytesLike = string | Uint8Array;

function bytes(value: BytesLike): Uint8Array {
  return typeof value === "string" ? encoder.encode(value) : value;
}

/**
 * HKDF-SHA256 of `key` with no salt and `purpose` as the info: the protocol's `derive_key`.
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert/strict";
 * import { deriveKey } from "./keys.ts";
 * const key = new Uint8Array(32);
 * assert.equal(deriveKey(key, "wormhole:verifier").length, 32);
 * assert.notDeepEqual(deriveKey(key, "a"), deriveKey(key, "b"));
 * ```
 */
export function deriveKey(key: Uint8Array, purpose: BytesLike, length = KEY_BYTES): Uint8Array {
  return hkdf(sha256, key, undefined, bytes(purpose), length);
}

/**
 * The key that seals the phase message `phase` sent by `side`: HKDF with the info
 * `"wormhole:phase:" | sha256(side) | sha256(phase)`.
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert/strict";
 * import { derivePhaseKey } from "./keys.ts";
 * const key = new Uint8Array(32);
 * assert.notDeepEqual(derivePhaseKey(key, "side1", "version"), derivePhaseKey(key, "side2", "version"));
 * ```
 */
export function derivePhaseKey(key: Uint8Array, side: string, phase: string): Uint8Array {
  const prefix = encoder.encode("wormhole:phase:");
  const info = new Uint8Array(prefix.length + 64);
  info.set(prefix);
  info.set(sha256(encoder.encode(side)), prefix.length);
  info.set(sha256(encoder.encode(phase)), prefix.length + 32);
  return deriveKey(key, info);
}

/**
 * Seals `plaintext` with `key` under `nonce`: the SecretBox (`tag | ciphertext`), without the
 * nonce.
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert/strict";
 * import { open, seal, TAG_BYTES } from "./keys.ts";
 * const key = new Uint8Array(32), nonce = new Uint8Array(24);
 * const box = seal(key, nonce, new Uint8Array([1, 2, 3]));
 * assert.equal(box.length, 3 + TAG_BYTES);
 * assert.deepEqual(open(key, nonce, box, "the test box"), new Uint8Array([1, 2, 3]));
 * ```
 */
export function seal(key: Uint8Array, nonce: Uint8Array, plaintext: Uint8Array): Uint8Array {
  return xsalsa20poly1305(key, nonce).encrypt(plaintext);
}

/**
 * Opens a SecretBox sealed by {@linkcode seal}; throws {@linkcode WrongCodeError} naming
 * `what` when it does not authenticate.
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert/strict";
 * import { open, seal, WrongCodeError } from "./keys.ts";
 * const nonce = new Uint8Array(24);
 * const box = seal(new Uint8Array(32), nonce, new Uint8Array([1]));
 * assert.throws(() => open(new Uint8Array(32).fill(1), nonce, box, "x"), WrongCodeError);
 * ```
 */
export function open(
  key: Uint8Array,
  nonce: Uint8Array,
  box: Uint8Array,
  what: string,
): Uint8Array {
  if (box.length < TAG_BYTES) throw new WrongCodeError(what);
  try {
    return xsalsa20poly1305(key, nonce).decrypt(box);
  } catch {
    throw new WrongCodeError(what);
  }
}

/**
 * Seals `plaintext` under a fresh random nonce and returns `nonce | box`: the wire form of a
 * phase message (the protocol's `encrypt_data`).
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert/strict";
 * import { openWithNonce, sealWithRandomNonce } from "./keys.ts";
 * const key = new Uint8Array(32).fill(7);
 * const sealed = sealWithRandomNonce(key, new TextEncoder().encode("hi"));
 * assert.equal(new TextDecoder().decode(openWithNonce(key, sealed, "hi")), "hi");
 * ```
 */
export function sealWithRandomNonce(key: Uint8Array, plaintext: Uint8Array): Uint8Array {
  const nonce = crypto.getRandomValues(new Uint8Array(NONCE_BYTES));
  const box = seal(key, nonce, plaintext);
  const out = new Uint8Array(NONCE_BYTES + box.length);
  out.set(nonce);
  out.set(box, NONCE_BYTES);
  return out;
}

/**
 * Opens `nonce | box` as written by {@linkcode sealWithRandomNonce} (the protocol's
 * `decrypt_data`); throws {@linkcode WrongCodeError} naming `what`.
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert/strict";
 * import { openWithNonce, WrongCodeError } from "./keys.ts";
 * assert.throws(() => openWithNonce(new Uint8Array(32), new Uint8Array(10), "short"), WrongCodeError);
 * ```
 */
export function openWithNonce(key: Uint8Array, sealed: Uint8Array, what: string): Uint8Array {
  if (sealed.length < NONCE_BYTES + TAG_BYTES) throw new WrongCodeError(what);
  return open(key, sealed.subarray(0, NONCE_BYTES), sealed.subarray(NONCE_BYTES), what);
}

/**
 * The 24-byte big-endian nonce for record number `seq` (transit records count from 0).
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert/strict";
 * import { counterNonce } from "./keys.ts";
 * const nonce = counterNonce(258);
 * assert.equal(nonce.length, 24);
 * assert.deepEqual([...nonce.subarray(22)], [1, 2]);
 * ```
 */
export function counterNonce(seq: number): Uint8Array {
  if (!Number.isSafeInteger(seq) || seq < 0) {
    throw new RangeError(`record number ${seq} is not a non-negative safe integer`);
  }
  const nonce = new Uint8Array(NONCE_BYTES);
  const view = new DataView(nonce.buffer);
  view.setUint32(NONCE_BYTES - 8, Math.floor(seq / 2 ** 32));
  view.setUint32(NONCE_BYTES - 4, seq >>> 0);
  return nonce;
}

/**
 * Lower-case hex of `data`.
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert/strict";
 * import { toHex } from "./keys.ts";
 * assert.equal(toHex(new Uint8Array([0, 171])), "00ab");
 * ```
 */
export function toHex(data: Uint8Array): string {
  let out = "";
  for (const byte of data) out += byte.toString(16).padStart(2, "0");
  return out;
}

/**
 * Bytes of the hex string `hex`; a `SyntaxError` naming `what` when it is not hex.
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert/strict";
 * import { fromHex } from "./keys.ts";
 * assert.deepEqual(fromHex("00ab", "body"), new Uint8Array([0, 171]));
 * assert.throws(() => fromHex("zz", "body"), SyntaxError);
 * ```
 */
export function fromHex(hex: string, what: string): Uint8Array {
  if (hex.length % 2 !== 0 || !/^[0-9a-fA-F]*$/.test(hex)) {
    throw new SyntaxError(`${what} is not hex`);
  }
  const out = new Uint8Array(hex.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(hex.slice(2 * i, 2 * i + 2), 16);
  return out;
}
