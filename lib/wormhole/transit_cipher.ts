/**
 * Sealing and opening transit records: the record keys, the counter nonces, and the two
 * record ciphers.
 *
 * One record on the wire is `length: u32 (big-endian) | nonce | box`, `length` counting the
 * nonce and the box. Each direction has its own key and counts its records from 0; the nonce
 * is the record's number, big-endian, and the receiver of a record checks it equals the number
 * it expects before opening the box (a dropped, replayed or reordered record is a
 * {@linkcode RecordNonceError}).
 *
 * | cipher                | nonce    | box                      | keys (HKDF purposes)                   |
 * | --------------------- | -------- | ------------------------ | -------------------------------------- |
 * | `secretbox` (default) | 24 bytes | `tag (16) \| ciphertext` | `transit_record_sender_key`, `transit_record_receiver_key` |
 * | `chacha20-poly1305`   | 12 bytes | `ciphertext \| tag (16)` | the same with `sockit:` before and `:chacha20-poly1305` after |
 *
 * `secretbox` (NaCl XSalsa20-Poly1305) is the Magic Wormhole standard and the default, the
 * only cipher other clients speak. `chacha20-poly1305` (IETF, RFC 8439, no associated data) is
 * for two sockit peers that both offered it in their `app_versions` and agreed on it there;
 * both ends must pass the same `cipher`, and a mismatch only shows on the first record (a
 * {@linkcode RecordNonceError} or {@linkcode RecordAuthError}).
 * Its keys are derived with their own purposes, so they never equal the secretbox keys of the
 * same transit key, and its nonces are the 12-byte big-endian record counter.
 *
 * Both ciphers run on the native libsodium where the process may load it (`transit_sodium.ts`:
 * the `ffi` permission and an installed libsodium), sealing into the record buffer and opening
 * in place, nothing allocated per record; elsewhere secretbox runs in JavaScript
 * (`@noble/ciphers`, about 100-150 MB/s per core, a tenth of libsodium) and chacha20-poly1305
 * on `node:crypto` (as fast as libsodium, but a fresh buffer per record). Either way the
 * records are the same bytes, so the two ends need not match. The numbers are in
 * `transit_sodium.ts`; what they mean end to end is in `bench/wormhole.ts`.
 *
 * @module
 */

import { createCipheriv, createDecipheriv } from "node:crypto";
import { xsalsa20poly1305 } from "@noble/ciphers/salsa.js";
import { ProtocolError } from "../net/errors.ts";
import { deriveKey, TAG_BYTES } from "./keys.ts";
import { type NativeSodium, nativeSodium } from "./transit_sodium.ts";

/** The record ciphers. */
export const RecordCipher = {
  /** NaCl SecretBox, XSalsa20-Poly1305 with a 24-byte nonce: the protocol's own. */
  SecretBox: "secretbox",
  /** IETF ChaCha20-Poly1305 with a 12-byte nonce: sockit to sockit only, when both agreed. */
  ChaCha20Poly1305: "chacha20-poly1305",
} as const;

/** The name of a record cipher. */
export type RecordCipherName = typeof RecordCipher[keyof typeof RecordCipher];

/** The two ends of a transit connection. */
export type TransitRole = "sender" | "receiver";

/** Bytes of the length prefix of every record. */
export const LENGTH_BYTES = 4;

/** Nonce bytes of each cipher. */
const NONCE_BYTES: Record<RecordCipherName, number> = {
  [RecordCipher.SecretBox]: 24,
  [RecordCipher.ChaCha20Poly1305]: 12,
};

/**
 * A record's nonce is not the number its receiver expected: a record was dropped, replayed or
 * reordered. The connection must be dropped.
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert/strict";
 * import { RecordNonceError } from "./transit_cipher.ts";
 * const error = new RecordNonceError(3, 1n);
 * assert.match(error.message, /got record 1, expected 3/);
 * ```
 */
export class RecordNonceError extends ProtocolError {
  /** `expected` is the record number this side expected, `got` the one in the nonce. */
  constructor(readonly expected: number, readonly got: bigint) {
    super(`Cannot open transit record: out of order (got record ${got}, expected ${expected})`);
    this.name = "RecordNonceError";
  }
}

/**
 * A record's box did not authenticate: it was altered on the way (or sealed with another key,
 * which after a good handshake means the same).
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert/strict";
 * import { RecordAuthError } from "./transit_cipher.ts";
 * assert.match(new RecordAuthError(7).message, /record 7 did not authenticate/);
 * ```
 */
export class RecordAuthError extends ProtocolError {
  /** `seq` is the number of the record that failed. */
  constructor(readonly seq: number) {
    super(`Cannot open transit record: record ${seq} did not authenticate (altered on the way)`);
    this.name = "RecordAuthError";
  }
}

/** Options of {@linkcode RecordSealer} and {@linkcode RecordOpener}. */
export interface CipherOptions {
  /** The record cipher. @default {"secretbox"} */
  cipher?: RecordCipherName;
  /**
   * The native libsodium to seal and open with, or null for the JavaScript ciphers
   * (`@noble/ciphers`, `node:crypto`); the records are the same either way.
   * @default {nativeSodium(): libsodium where the process may load it, else null}
   */
  native?: NativeSodium | null;
}

/** The send and receive keys of one end. */
export interface RecordKeys {
  /** Seals what this end sends. */
  send: Uint8Array;
  /** Opens what this end receives. */
  receive: Uint8Array;
}

/**
 * The record keys of `role` for the transit key `transitKey`: the sender's records are sealed
 * with the `transit_record_sender_key` derivation, the receiver's with
 * `transit_record_receiver_key` (for chacha20-poly1305, the same purposes wrapped in `sockit:`
 * and `:chacha20-poly1305`).
 *
 * @example The sender's send key is the receiver's receive key
 * ```ts
 * import assert from "node:assert/strict";
 * import { recordKeys } from "./transit_cipher.ts";
 * const key = new Uint8Array(32).fill(1);
 * const s = recordKeys(key, "sender"), r = recordKeys(key, "receiver");
 * assert.deepEqual(s.send, r.receive);
 * assert.notDeepEqual(s.send, s.receive);
 * assert.notDeepEqual(recordKeys(key, "sender", { cipher: "chacha20-poly1305" }).send, s.send);
 * ```
 */
export function recordKeys(
  transitKey: Uint8Array,
  role: TransitRole,
  options: { cipher?: RecordCipherName } = {},
): RecordKeys {
  const cipher = options.cipher ?? RecordCipher.SecretBox;
  const purpose = (who: TransitRole) => {
    const base = `transit_record_${who}_key`;
    return cipher === RecordCipher.SecretBox ? base : `sockit:${base}:${cipher}`;
  };
  const mine = deriveKey(transitKey, purpose(role));
  const theirs = deriveKey(transitKey, purpose(role === "sender" ? "receiver" : "sender"));
  return { send: mine, receive: theirs };
}

/** Wire bytes a record adds to its plaintext with `cipher` (length prefix, nonce, tag). */
export function recordOverhead(cipher: RecordCipherName): number {
  return LENGTH_BYTES + NONCE_BYTES[cipher] + TAG_BYTES;
}

/** Writes `seq` big-endian into the last 8 bytes of `nonce` (the rest is zero). */
function putCounter(nonce: Uint8Array, seq: number): void {
  const view = new DataView(nonce.buffer, nonce.byteOffset, nonce.byteLength);
  view.setUint32(nonce.length - 8, Math.floor(seq / 2 ** 32));
  view.setUint32(nonce.length - 4, seq >>> 0);
}

/** The number in a big-endian nonce. */
function readCounter(nonce: Uint8Array): bigint {
  let n = 0n;
  for (const b of nonce) n = (n << 8n) | BigInt(b);
  return n;
}

/** True when `nonce` holds exactly `seq` (all zeros but the last 8 bytes, which are `seq`). */
function isCounter(nonce: Uint8Array, seq: number): boolean {
  for (let i = 0; i < nonce.length - 8; i++) if (nonce[i] !== 0) return false;
  const view = new DataView(nonce.buffer, nonce.byteOffset, nonce.byteLength);
  return view.getUint32(nonce.length - 8) === Math.floor(seq / 2 ** 32) &&
    view.getUint32(nonce.length - 4) === seq >>> 0;
}

/**
 * Seals the records one direction sends, numbering them from 0.
 *
 * @example A sealed record opens on the other side
 * ```ts
 * import assert from "node:assert/strict";
 * import { RecordOpener, RecordSealer } from "./transit_cipher.ts";
 * const key = new Uint8Array(32).fill(9);
 * const sealer = new RecordSealer(key), opener = new RecordOpener(key);
 * const frame = sealer.seal(new Uint8Array([1, 2, 3]));
 * const body = new Uint8Array(opener.headroom + frame.length - 4);
 * body.set(frame.subarray(4), opener.headroom);
 * assert.deepEqual(opener.open(body), new Uint8Array([1, 2, 3]));
 * ```
 *
 * @example libsodium and the JavaScript ciphers make the same records
 * ```ts
 * import assert from "node:assert/strict";
 * import {
 *   RecordAuthError,
 *   RecordNonceError,
 *   RecordOpener,
 *   RecordSealer,
 * } from "./transit_cipher.ts";
 * import { nativeSodium } from "./transit_sodium.ts";
 * const key = new Uint8Array(32).fill(9), data = new Uint8Array(1000).fill(7);
 * for (const cipher of ["secretbox", "chacha20-poly1305"] as const) {
 *   const portable = new RecordSealer(key, { cipher, native: null }).seal(data);
 *   assert.deepEqual(new RecordSealer(key, { cipher }).seal(data), portable);
 *   for (const native of [nativeSodium(), null]) {
 *     const opener = new RecordOpener(key, { cipher, native });
 *     const body = new Uint8Array(opener.headroom + portable.length - 4);
 *     body.set(portable.subarray(4), opener.headroom);
 *     const out = new Uint8Array(1000);
 *     assert.equal(opener.openInto(body, out), 1000);
 *     assert.deepEqual(out, data);
 *     body[body.length - 1] ^= 1; // altered on the way
 *     const fresh = new RecordOpener(key, { cipher, native });
 *     assert.throws(() => fresh.open(body), RecordAuthError);
 *     assert.throws(() => opener.open(body), RecordNonceError); // record 0 again
 *   }
 * }
 * ```
 */
export class RecordSealer {
  #key: Uint8Array;
  #cipher: RecordCipherName;
  #native: NativeSodium | null;
  #seq = 0;

  /** Seals with `key` and `options.cipher` (default secretbox); see {@linkcode CipherOptions}. */
  constructor(key: Uint8Array, options: CipherOptions = {}) {
    this.#key = key;
    this.#cipher = options.cipher ?? RecordCipher.SecretBox;
    this.#native = options.native === undefined ? nativeSodium() : options.native;
  }

  /** How many records were sealed (the number of the next one). */
  get sealed(): number {
    return this.#seq;
  }

  /**
   * The whole wire record for `plaintext`: length prefix, nonce and box, in one buffer. With
   * `out` (at least {@linkcode recordOverhead} + `plaintext.length` bytes, not overlapping
   * `plaintext`) the record is sealed into it and the result is a view of its start.
   */
  seal(plaintext: Uint8Array, out?: Uint8Array): Uint8Array {
    const nonceBytes = NONCE_BYTES[this.#cipher];
    const length = nonceBytes + TAG_BYTES + plaintext.length;
    if (length > 0xffffffff) throw new RangeError(`record of ${plaintext.length} bytes is too big`);
    if (out !== undefined && out.length < LENGTH_BYTES + length) {
      throw new RangeError(
        `buffer of ${out.length} bytes cannot hold a record of ${LENGTH_BYTES + length}`,
      );
    }
    const frame = out?.subarray(0, LENGTH_BYTES + length) ?? new Uint8Array(LENGTH_BYTES + length);
    const nonce = frame.subarray(LENGTH_BYTES, LENGTH_BYTES + nonceBytes);
    const seq = this.#seq++;
    const native = this.#native;
    if (native !== null) {
      // In place in the frame, nothing allocated: `nonce | tag | ciphertext` for secretbox,
      // `nonce | ciphertext | tag` for chacha20-poly1305.
      nonce.fill(0);
      putCounter(nonce, seq);
      const at = LENGTH_BYTES + nonceBytes;
      const n = plaintext.length;
      if (this.#cipher === RecordCipher.SecretBox) {
        const box = frame.subarray(at + TAG_BYTES, at + TAG_BYTES + n);
        native.secretboxSeal(box, frame.subarray(at, at + TAG_BYTES), plaintext, nonce, this.#key);
      } else {
        const tag = frame.subarray(at + n, at + n + TAG_BYTES);
        native.chachaSeal(frame.subarray(at, at + n), tag, plaintext, nonce, this.#key);
      }
    } else if (this.#cipher === RecordCipher.SecretBox) {
      const counter = new Uint8Array(nonceBytes);
      putCounter(counter, seq);
      // encrypt() wants `plaintext.length + 32` bytes of output and returns its last
      // `16 + plaintext.length` (tag, ciphertext): exactly the frame after the nonce. Its
      // first 16 bytes are scratch, zeroed before it returns, so the prefix is written after.
      const start = LENGTH_BYTES + nonceBytes - 16;
      xsalsa20poly1305(this.#key, counter).encrypt(plaintext, frame.subarray(start));
      nonce.set(counter);
    } else {
      nonce.fill(0);
      putCounter(nonce, seq);
      const c = createCipheriv("chacha20-poly1305", this.#key, nonce, { authTagLength: TAG_BYTES });
      const body = c.update(plaintext);
      c.final();
      frame.set(body, LENGTH_BYTES + nonceBytes);
      frame.set(c.getAuthTag(), LENGTH_BYTES + nonceBytes + plaintext.length);
    }
    new DataView(frame.buffer, frame.byteOffset).setUint32(0, length);
    return frame;
  }
}

/**
 * Opens the records one direction receives, checking that they come numbered from 0 in order.
 * See {@linkcode RecordSealer} for an example.
 */
export class RecordOpener {
  #key: Uint8Array;
  #cipher: RecordCipherName;
  #native: NativeSodium | null;
  #seq = 0;

  /** Opens with `key` and `options.cipher` (default secretbox); see {@linkcode CipherOptions}. */
  constructor(key: Uint8Array, options: CipherOptions = {}) {
    this.#key = key;
    this.#cipher = options.cipher ?? RecordCipher.SecretBox;
    this.#native = options.native === undefined ? nativeSodium() : options.native;
  }

  /** True when records are opened by the native libsodium (`transit_sodium.ts`). */
  get native(): boolean {
    return this.#native !== null;
  }

  /**
   * Bytes to leave free before the record body in the buffer given to {@linkcode open}: the
   * box is opened in place, and `@noble/ciphers`' SecretBox needs that much scratch space in
   * front of it.
   */
  get headroom(): number {
    return this.#cipher === RecordCipher.SecretBox && this.#native === null
      ? 32 - NONCE_BYTES[this.#cipher]
      : 0;
  }

  /** Bytes of nonce and tag: the smallest valid record length. */
  get minLength(): number {
    return NONCE_BYTES[this.#cipher] + TAG_BYTES;
  }

  /** How many records were opened (the number expected next). */
  get opened(): number {
    return this.#seq;
  }

  /**
   * The plaintext of the record whose body (`nonce | box`, without the length prefix) is
   * `buf` after its first {@linkcode headroom} bytes. The buffer is reused: the result is a
   * view into it. Throws {@linkcode RecordNonceError} or {@linkcode RecordAuthError}.
   */
  open(buf: Uint8Array): Uint8Array {
    return this.#open(buf, null) as Uint8Array;
  }

  /**
   * Opens the record in `buf` (as for {@linkcode open}) into `out`, which must hold its
   * plaintext (the body's length less {@linkcode minLength}); resolves that length. With
   * libsodium the plaintext is written straight to `out`, else it is opened in place and
   * copied. On a throw, `out` may have been written to.
   */
  openInto(buf: Uint8Array, out: Uint8Array): number {
    return this.#open(buf, out) as number;
  }

  /** {@linkcode open} with `out` null, {@linkcode openInto} otherwise. */
  #open(buf: Uint8Array, out: Uint8Array | null): Uint8Array | number {
    const nonceBytes = NONCE_BYTES[this.#cipher];
    const body = buf.subarray(this.headroom);
    if (body.length < nonceBytes + TAG_BYTES) {
      throw new ProtocolError(`Cannot open transit record: ${body.length} bytes is too short`);
    }
    const plainLength = body.length - nonceBytes - TAG_BYTES;
    if (out !== null && out.length < plainLength) {
      throw new RangeError(`buffer of ${out.length} bytes cannot hold ${plainLength}`);
    }
    const nonce = body.subarray(0, nonceBytes);
    const seq = this.#seq;
    if (!isCounter(nonce, seq)) throw new RecordNonceError(seq, readCounter(nonce));
    this.#seq++;
    const native = this.#native;
    if (native === null) {
      const plain = this.#openPortable(buf, body, seq);
      if (out === null) return plain;
      out.set(plain);
      return plain.length;
    }
    const secretbox = this.#cipher === RecordCipher.SecretBox;
    const tagAt = secretbox ? nonceBytes : body.length - TAG_BYTES;
    const box = secretbox
      ? body.subarray(nonceBytes + TAG_BYTES)
      : body.subarray(nonceBytes, body.length - TAG_BYTES);
    const tag = body.subarray(tagAt, tagAt + TAG_BYTES);
    // In place (the plaintext where the ciphertext was), or straight into `out`.
    const into = out === null ? box : out.subarray(0, plainLength);
    const ok = secretbox
      ? native.secretboxOpen(into, box, tag, nonce, this.#key)
      : native.chachaOpen(into, box, tag, nonce, this.#key);
    if (!ok) throw new RecordAuthError(seq);
    return out === null ? box : plainLength;
  }

  /** Opens `body` (the view of `buf` past the headroom) with the JavaScript ciphers. */
  #openPortable(buf: Uint8Array, body: Uint8Array, seq: number): Uint8Array {
    const nonceBytes = NONCE_BYTES[this.#cipher];
    const nonce = body.subarray(0, nonceBytes);
    if (this.#cipher === RecordCipher.SecretBox) {
      const counter = nonce.slice();
      try {
        // In place: decrypt() copies the box to output[32..] (where it already is) and
        // returns the plaintext at output[48..].
        return xsalsa20poly1305(this.#key, counter).decrypt(body.subarray(nonceBytes), buf);
      } catch {
        throw new RecordAuthError(seq);
      }
    }
    const end = body.length - TAG_BYTES;
    const d = createDecipheriv("chacha20-poly1305", this.#key, nonce, {
      authTagLength: TAG_BYTES,
    });
    d.setAuthTag(body.subarray(end));
    const plain = d.update(body.subarray(nonceBytes, end));
    try {
      d.final();
    } catch {
      throw new RecordAuthError(seq);
    }
    return new Uint8Array(plain.buffer, plain.byteOffset, plain.byteLength);
  }
}
