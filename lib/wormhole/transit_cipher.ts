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
 * only cipher other clients speak; it runs in JavaScript (`@noble/ciphers`). `chacha20-poly1305`
 * (IETF, native through `node:crypto`) is for two sockit peers that both offered it in their
 * `app_versions` and agreed on it there; both ends must pass the same `cipher`, and a mismatch
 * only shows on the first record (a {@linkcode RecordNonceError} or {@linkcode RecordAuthError}).
 * Its keys are derived with their own purposes, so they never equal the secretbox keys of the
 * same transit key, and its nonces are the 12-byte big-endian record counter.
 *
 * Measured on the 2-core build machine (Deno 2.9.6, one core, busy; 64 KiB / 256 KiB records):
 *
 * | per core                          | seal             | open            |
 * | --------------------------------- | ---------------- | --------------- |
 * | secretbox (`@noble/ciphers`)      | 105 / 117 MB/s   | 91 / 128 MB/s   |
 * | chacha20-poly1305 (`node:crypto`) | 1067 / 1034 MB/s | 693 / 1040 MB/s |
 *
 * Two sockit processes end to end over loopback, 256 KiB records (the range is how busy the
 * machine was): secretbox 30-60 MB/s, chacha20-poly1305 150-370 MB/s direct and 110-350 MB/s
 * through the Python transit relay (which alone passes 375-560 MB/s).
 *
 * @module
 */

import { createCipheriv, createDecipheriv } from "node:crypto";
import { xsalsa20poly1305 } from "@noble/ciphers/salsa.js";
import { ProtocolError } from "../net/errors.ts";
import { deriveKey, TAG_BYTES } from "./keys.ts";

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
 */
export class RecordSealer {
  #key: Uint8Array;
  #cipher: RecordCipherName;
  #seq = 0;

  /** Seals with `key` and `options.cipher` (default secretbox). */
  constructor(key: Uint8Array, options: { cipher?: RecordCipherName } = {}) {
    this.#key = key;
    this.#cipher = options.cipher ?? RecordCipher.SecretBox;
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
    if (this.#cipher === RecordCipher.SecretBox) {
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
  #seq = 0;

  /** Opens with `key` and `options.cipher` (default secretbox). */
  constructor(key: Uint8Array, options: { cipher?: RecordCipherName } = {}) {
    this.#key = key;
    this.#cipher = options.cipher ?? RecordCipher.SecretBox;
  }

  /**
   * Bytes to leave free before the record body in the buffer given to {@linkcode open}: the
   * box is opened in place and needs that much scratch space in front of it.
   */
  get headroom(): number {
    return this.#cipher === RecordCipher.SecretBox ? 32 - NONCE_BYTES[this.#cipher] : 0;
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
    const nonceBytes = NONCE_BYTES[this.#cipher];
    const body = buf.subarray(this.headroom);
    if (body.length < nonceBytes + TAG_BYTES) {
      throw new ProtocolError(`Cannot open transit record: ${body.length} bytes is too short`);
    }
    const nonce = body.subarray(0, nonceBytes);
    const seq = this.#seq;
    if (!isCounter(nonce, seq)) throw new RecordNonceError(seq, readCounter(nonce));
    this.#seq++;
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
