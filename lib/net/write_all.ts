/**
 * Writing a whole buffer. Deno's `conn.write` often writes only part of what it is given, so
 * every writer in sockit goes through {@linkcode writeAll}.
 *
 * @module
 */

/** Anything with Deno's `write(p)` contract: writes part of `p`, resolves to the count. */
export interface Writer {
  /** Writes up to `p.byteLength` bytes; resolves to how many were written. */
  write(p: Uint8Array): Promise<number>;
}

/**
 * Writes every byte of `data` to `writer`, looping over partial writes.
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert/strict";
 * import { writeAll } from "./write_all.ts";
 * const got: number[] = [];
 * const writer = { write: (p: Uint8Array) => { got.push(p[0]); return Promise.resolve(1); } };
 * await writeAll(writer, new Uint8Array([1, 2, 3]));
 * assert.deepEqual(got, [1, 2, 3]);
 * ```
 */
export async function writeAll(writer: Writer, data: Uint8Array): Promise<void> {
  let off = 0;
  while (off < data.length) {
    off += await writer.write(off === 0 ? data : data.subarray(off));
  }
}
