/**
 * Native libsodium for the transit record ciphers, when this process may load it.
 *
 * A transfer seals and opens every byte once at each end, so the record cipher's speed bounds
 * a transfer's. In JavaScript, NaCl SecretBox (XSalsa20-Poly1305, the only cipher the other
 * Wormhole clients speak) runs at about 100-150 MB/s per core; libsodium's own build runs it at
 * about 1 GB/s, as fast as `node:crypto`'s ChaCha20-Poly1305, and seals and opens in place
 * (no buffer allocated per record). So where the process has the `ffi` permission
 * (`--allow-ffi` or `-A`; it is queried, never requested, so nothing prompts) and a libsodium
 * is installed ({@linkcode SODIUM_LIBRARY_NAMES}; Debian's `libsodium23`, which the Python
 * client depends on, is one), {@linkcode nativeSodium} opens it with `Deno.dlopen` and the
 * record ciphers use it (`transit_cipher.ts`); elsewhere they fall back to `@noble/ciphers`
 * and `node:crypto`, whose records are byte for byte the same.
 *
 * Measured on the 2-core build machine (Deno 2.9.6, the machine busy to idle; CPU seconds per
 * GiB on one core, 256 KiB records):
 *
 * | per GiB                                       | seal        | open        |
 * | --------------------------------------------- | ----------- | ----------- |
 * | secretbox, libsodium 1.0.18 (this module)     | 0.80-1.05 s | 0.92-1.02 s |
 * | secretbox, `libsodium-wrappers` 0.8.4 (WASM)  | 7.2 s       | 7.5 s       |
 * | secretbox, `@noble/ciphers` 2.4               | 10.5-11.1 s | 8-11 s      |
 * | chacha20-poly1305, libsodium (this module)    | 0.87-1.12 s | about same  |
 * | chacha20-poly1305, `node:crypto`              | 1.24-1.39 s | 1.19 s      |
 *
 * `sodium-native` from npm measured the same as this module, but needs the `ffi` permission
 * too and brings 17 MB of prebuilt binaries and 16 more packages. `libsodium-wrappers` needs
 * no permission, but is a seventh of libsodium's speed and would be a second dependency for
 * what `@noble/ciphers` (already used for the mailbox messages, `keys.ts`) does at two thirds
 * of its speed; so the fallback stays `@noble/ciphers`.
 *
 * @example Seals a SecretBox in place and opens it
 * ```ts
 * import assert from "node:assert/strict";
 * import { nativeSodium } from "./transit_sodium.ts";
 * const sodium = nativeSodium();
 * if (sodium !== null) { // with --allow-ffi and a libsodium installed
 *   const key = new Uint8Array(32).fill(1), nonce = new Uint8Array(24);
 *   const data = new Uint8Array([1, 2, 3]), mac = new Uint8Array(16);
 *   sodium.secretboxSeal(data, mac, data, nonce, key);
 *   assert.notDeepEqual(data, new Uint8Array([1, 2, 3]));
 *   assert.ok(sodium.secretboxOpen(data, data, mac, nonce, key));
 *   assert.deepEqual(data, new Uint8Array([1, 2, 3]));
 * }
 * ```
 *
 * @module
 */

/**
 * Where {@linkcode nativeSodium} looks for libsodium, in order: bare names go through the
 * dynamic loader's search, and need `--allow-ffi` for all libraries; a full path can also be
 * granted alone (`--allow-ffi=/usr/lib/x86_64-linux-gnu/libsodium.so.23`).
 */
export const SODIUM_LIBRARY_NAMES: readonly string[] = {
  darwin: [
    "libsodium.dylib",
    "/opt/homebrew/lib/libsodium.dylib",
    "/usr/local/lib/libsodium.dylib",
  ],
  windows: ["libsodium.dll"],
}[Deno.build.os as string] ?? [
  "libsodium.so.23",
  "libsodium.so.26",
  "libsodium.so",
  `/usr/lib/${Deno.build.arch}-linux-gnu/libsodium.so.23`,
  `/usr/lib/${Deno.build.arch}-linux-gnu/libsodium.so.26`,
];

/** The libsodium functions used, as `Deno.dlopen` declares them (all return 0 on success). */
const SYMBOLS = {
  sodium_init: { parameters: [], result: "i32" },
  // (c, mac, m, mlen, n, k)
  crypto_secretbox_detached: {
    parameters: ["buffer", "buffer", "buffer", "u64", "buffer", "buffer"],
    result: "i32",
  },
  // (m, c, mac, clen, n, k)
  crypto_secretbox_open_detached: {
    parameters: ["buffer", "buffer", "buffer", "u64", "buffer", "buffer"],
    result: "i32",
  },
  // (c, mac, maclen_p, m, mlen, ad, adlen, nsec, npub, k)
  crypto_aead_chacha20poly1305_ietf_encrypt_detached: {
    parameters: [
      "buffer",
      "buffer",
      "pointer",
      "buffer",
      "u64",
      "pointer",
      "u64",
      "pointer",
      "buffer",
      "buffer",
    ],
    result: "i32",
  },
  // (m, nsec, c, clen, mac, ad, adlen, npub, k)
  crypto_aead_chacha20poly1305_ietf_decrypt_detached: {
    parameters: [
      "buffer",
      "pointer",
      "buffer",
      "u64",
      "buffer",
      "pointer",
      "u64",
      "buffer",
      "buffer",
    ],
    result: "i32",
  },
} as const;

/**
 * The record ciphers of libsodium, in place: `out` may be the very bytes of the input (or not
 * overlap it at all); the tag goes to, or comes from, `mac` (16 bytes). The open functions
 * return false when the box did not authenticate (and then `out` holds nothing useful).
 */
export interface NativeSodium {
  /** Where it was loaded from (one of {@linkcode SODIUM_LIBRARY_NAMES}). */
  readonly library: string;
  /** NaCl `crypto_secretbox_detached`: XSalsa20-Poly1305, 24-byte `nonce`. */
  secretboxSeal(
    out: Uint8Array,
    mac: Uint8Array,
    plaintext: Uint8Array,
    nonce: Uint8Array,
    key: Uint8Array,
  ): void;
  /** NaCl `crypto_secretbox_open_detached`. */
  secretboxOpen(
    out: Uint8Array,
    ciphertext: Uint8Array,
    mac: Uint8Array,
    nonce: Uint8Array,
    key: Uint8Array,
  ): boolean;
  /** IETF ChaCha20-Poly1305 with no associated data, 12-byte `nonce` (RFC 8439). */
  chachaSeal(
    out: Uint8Array,
    mac: Uint8Array,
    plaintext: Uint8Array,
    nonce: Uint8Array,
    key: Uint8Array,
  ): void;
  /** The opening of {@linkcode NativeSodium.chachaSeal}. */
  chachaOpen(
    out: Uint8Array,
    ciphertext: Uint8Array,
    mac: Uint8Array,
    nonce: Uint8Array,
    key: Uint8Array,
  ): boolean;
}

/** Throws unless `out` can hold `length` bytes, `mac` 16, and the key and nonce are sized. */
function checkSizes(
  out: Uint8Array,
  length: number,
  mac: Uint8Array,
  nonce: Uint8Array,
  nonceBytes: number,
  key: Uint8Array,
): void {
  if (out.length < length || mac.length < 16 || nonce.length !== nonceBytes || key.length !== 32) {
    throw new RangeError(
      `libsodium: wrong sizes (out ${out.length} for ${length}, mac ${mac.length}, ` +
        `nonce ${nonce.length} for ${nonceBytes}, key ${key.length})`,
    );
  }
}

/** True when this process may load `library` (never asks: a prompt would stop a transfer). */
function mayLoad(library: string): boolean {
  try {
    return Deno.permissions.querySync({ name: "ffi", path: library }).state === "granted";
  } catch {
    return false;
  }
}

function open(): NativeSodium | null {
  for (const library of SODIUM_LIBRARY_NAMES) {
    if (!mayLoad(library)) continue;
    let lib: Deno.DynamicLibrary<typeof SYMBOLS>;
    try {
      lib = Deno.dlopen(library, SYMBOLS);
    } catch {
      continue;
    }
    if (lib.symbols.sodium_init() < 0) {
      lib.close();
      continue;
    }
    const s = lib.symbols;
    return {
      library,
      secretboxSeal(out, mac, plaintext, nonce, key) {
        checkSizes(out, plaintext.length, mac, nonce, 24, key);
        if (
          s.crypto_secretbox_detached(out, mac, plaintext, BigInt(plaintext.length), nonce, key) !==
            0
        ) {
          throw new Error("libsodium: crypto_secretbox_detached failed");
        }
      },
      secretboxOpen(out, ciphertext, mac, nonce, key) {
        checkSizes(out, ciphertext.length, mac, nonce, 24, key);
        return s.crypto_secretbox_open_detached(
          out,
          ciphertext,
          mac,
          BigInt(ciphertext.length),
          nonce,
          key,
        ) === 0;
      },
      chachaSeal(out, mac, plaintext, nonce, key) {
        checkSizes(out, plaintext.length, mac, nonce, 12, key);
        const r = s.crypto_aead_chacha20poly1305_ietf_encrypt_detached(
          out,
          mac,
          null,
          plaintext,
          BigInt(plaintext.length),
          null,
          0n,
          null,
          nonce,
          key,
        );
        if (r !== 0) throw new Error("libsodium: chacha20poly1305_ietf_encrypt_detached failed");
      },
      chachaOpen(out, ciphertext, mac, nonce, key) {
        checkSizes(out, ciphertext.length, mac, nonce, 12, key);
        return s.crypto_aead_chacha20poly1305_ietf_decrypt_detached(
          out,
          null,
          ciphertext,
          BigInt(ciphertext.length),
          mac,
          null,
          0n,
          nonce,
          key,
        ) === 0;
      },
    };
  }
  return null;
}

let loaded: NativeSodium | null | undefined;

/**
 * The native libsodium, loaded on first use; null when this process lacks the `ffi`
 * permission or no libsodium of {@linkcode SODIUM_LIBRARY_NAMES} loads.
 */
export function nativeSodium(): NativeSodium | null {
  if (loaded === undefined) loaded = open();
  return loaded;
}
