/**
 * A buffered reader over any byte source (`Deno.Conn`, a file, a test double) that reads
 * exactly N bytes, one line, or big-endian integers. Every higher layer (frames, the relay's
 * line mode, the SOCKS5 handshake) uses it instead of its own `conn.read` loop.
 *
 * Every size comes with a limit: {@linkcode BufferedReader.readLine} refuses a line longer
 * than its `max` with a {@linkcode LimitError} before buffering more of it, and
 * {@linkcode BufferedReader.readExact} refuses a length above its `max`.
 *
 * @module
 */

import { LimitError, UnexpectedEofError } from "./errors.ts";

/** Anything with Deno's `read(p)` contract: fills part of `p`, returns the count or null at EOF. */
export interface Reader {
  /** Reads up to `p.byteLength` bytes into `p`; resolves to the count, or null at end of file. */
  read(p: Uint8Array): Promise<number | null>;
}

/** Options for {@linkcode BufferedReader}. */
export interface BufferedReaderOptions {
  /**
   * Largest size the internal buffer grows to, in bytes; also bounds the longest line
   * {@linkcode BufferedReader.readLine} can return. The buffer starts at
   * {@linkcode INITIAL_BUFFER_SIZE} and grows on demand. @default {65536}
   */
  bufferSize?: number;
}

/** Default capacity of a {@linkcode BufferedReader}'s buffer. */
export const DEFAULT_BUFFER_SIZE = 64 * 1024;

/**
 * A reader's buffer starts this small and doubles, up to its capacity, when a read fills it
 * or a line or `ensure(n)` needs more room: an idle connection costs 4 KiB, a busy one gets
 * full-size reads after a few.
 */
export const INITIAL_BUFFER_SIZE = 4 * 1024;

const LF = 0x0a;
const CR = 0x0d;

/**
 * Buffered reads over a {@linkcode Reader}.
 *
 * @example Read a line and a length-prefixed payload
 * ```ts
 * import assert from "node:assert/strict";
 * import { BufferedReader } from "./buffered_reader.ts";
 * const bytes = new TextEncoder().encode("hi\n\x00\x03abc");
 * let off = 0;
 * const source = { read: (p: Uint8Array) => {
 *   if (off >= bytes.length) return Promise.resolve(null);
 *   p[0] = bytes[off++];
 *   return Promise.resolve(1);
 * } };
 * const reader = new BufferedReader(source);
 * const line = await reader.readLine(100);
 * assert.equal(new TextDecoder().decode(line!), "hi");
 * const n = await reader.readU16();
 * assert.equal(n, 3);
 * assert.equal(new TextDecoder().decode(await reader.readExact(n)), "abc");
 * ```
 */
export class BufferedReader implements Reader {
  #source: Reader;
  #buf: Uint8Array;
  #capacity: number;
  #growNext = false;
  #start = 0;
  #end = 0;
  #eof = false;

  /** Wraps `source`; nothing is read until a read method is called. */
  constructor(source: Reader, options: BufferedReaderOptions = {}) {
    this.#source = source;
    this.#capacity = options.bufferSize ?? DEFAULT_BUFFER_SIZE;
    this.#buf = new Uint8Array(Math.min(this.#capacity, INITIAL_BUFFER_SIZE));
  }

  /** Bytes read from the source but not yet consumed. */
  get buffered(): number {
    return this.#end - this.#start;
  }

  /** True once the source reported end of file (buffered bytes may remain). */
  get eof(): boolean {
    return this.#eof;
  }

  /** Replaces the buffer by a bigger one (at least `min` bytes, at most the capacity). */
  #grow(min: number): void {
    const size = Math.min(this.#capacity, Math.max(this.#buf.length * 2, min));
    const next = new Uint8Array(size);
    next.set(this.#buf.subarray(this.#start, this.#end));
    this.#end -= this.#start;
    this.#start = 0;
    this.#buf = next;
  }

  /** Reads once more from the source into free buffer space. Resolves false at end of file. */
  async fill(): Promise<boolean> {
    if (this.#eof) return false;
    if (this.#start > 0 && (this.#end === this.#buf.length || this.#start === this.#end)) {
      this.#buf.copyWithin(0, this.#start, this.#end);
      this.#end -= this.#start;
      this.#start = 0;
    }
    if ((this.#growNext || this.#end === this.#buf.length) && this.#buf.length < this.#capacity) {
      this.#grow(this.#buf.length * 2);
    }
    this.#growNext = false;
    if (this.#end === this.#buf.length) {
      throw new LimitError(`Cannot buffer more: ${this.#capacity} bytes already buffered`);
    }
    const free = this.#buf.length - this.#end;
    const n = await this.#source.read(this.#buf.subarray(this.#end));
    if (n === null) {
      this.#eof = true;
      return false;
    }
    // A read that filled all the free space suggests a busy peer: grow before the next one.
    if (n === free) this.#growNext = true;
    this.#end += n;
    return true;
  }

  /** Makes sure `n` bytes (at most the buffer size) are buffered; throws on early EOF. */
  async ensure(n: number): Promise<void> {
    if (n > this.#capacity) {
      throw new LimitError(`Cannot buffer ${n} bytes: buffer holds ${this.#capacity}`);
    }
    if (n > this.#buf.length) this.#grow(n);
    while (this.buffered < n) {
      if (this.#start + n > this.#buf.length) {
        this.#buf.copyWithin(0, this.#start, this.#end);
        this.#end -= this.#start;
        this.#start = 0;
      }
      if (!(await this.fill())) {
        throw new UnexpectedEofError(
          `Cannot read ${n} bytes: connection closed after ${this.buffered}`,
        );
      }
    }
  }

  /**
   * Returns a view of the next `n` buffered bytes without consuming them. The view is valid
   * until the next read call. `n` must not exceed the buffer size.
   */
  async peek(n: number): Promise<Uint8Array> {
    await this.ensure(n);
    return this.#buf.subarray(this.#start, this.#start + n);
  }

  /**
   * A view of every byte buffered and not yet consumed, without reading or waiting; valid
   * until the next read call. With {@linkcode skipBuffered}, a parser takes the records that
   * are already wholly there without one `await` each.
   */
  bufferedView(): Uint8Array {
    return this.#buf.subarray(this.#start, this.#end);
  }

  /** Consumes `n` bytes that are already buffered (after {@linkcode peek} or {@linkcode ensure}). */
  skipBuffered(n: number): void {
    if (n > this.buffered) {
      throw new RangeError(`Cannot skip ${n} bytes: ${this.buffered} buffered`);
    }
    this.#start += n;
  }

  /** Reads one byte; throws {@linkcode UnexpectedEofError} at end of file. */
  async readU8(): Promise<number> {
    if (this.buffered < 1) await this.ensure(1);
    return this.#buf[this.#start++];
  }

  /** Reads a big-endian unsigned 16-bit integer. */
  async readU16(): Promise<number> {
    if (this.buffered < 2) await this.ensure(2);
    const b = this.#buf;
    const s = this.#start;
    this.#start += 2;
    return (b[s] << 8) | b[s + 1];
  }

  /** Reads a big-endian unsigned 32-bit integer. */
  async readU32(): Promise<number> {
    if (this.buffered < 4) await this.ensure(4);
    const b = this.#buf;
    const s = this.#start;
    this.#start += 4;
    return ((b[s] << 24) >>> 0) + (b[s + 1] << 16) + (b[s + 2] << 8) + b[s + 3];
  }

  /**
   * Reads exactly `n` bytes into a new array. Throws {@linkcode LimitError} when `n` exceeds
   * `max` (default 64 KiB, checked before allocating) and {@linkcode UnexpectedEofError} on early EOF.
   */
  async readExact(n: number, max: number = DEFAULT_BUFFER_SIZE): Promise<Uint8Array> {
    if (!Number.isInteger(n) || n < 0) throw new RangeError(`Cannot read ${n} bytes`);
    if (n > max) throw new LimitError(`Cannot read ${n} bytes: limit is ${max}`);
    const out = new Uint8Array(n);
    await this.readFull(out);
    return out;
  }

  /** Fills `dst` completely, from the buffer first and then straight from the source. */
  async readFull(dst: Uint8Array): Promise<void> {
    let filled = 0;
    while (filled < dst.length) {
      const n = await this.read(dst.subarray(filled));
      if (n === null) {
        throw new UnexpectedEofError(
          `Cannot read ${dst.length} bytes: connection closed after ${filled}`,
        );
      }
      filled += n;
    }
  }

  /**
   * Reads up to `p.length` bytes: buffered bytes first, otherwise one read from the source
   * straight into `p` (no copy). Resolves null at end of file. This makes a BufferedReader a
   * {@linkcode Reader} itself, so a copy loop can take over after a handshake without losing
   * bytes the handshake read ahead.
   */
  async read(p: Uint8Array): Promise<number | null> {
    if (p.length === 0) return 0;
    if (this.buffered > 0) {
      const n = Math.min(p.length, this.buffered);
      p.set(this.#buf.subarray(this.#start, this.#start + n));
      this.#start += n;
      return n;
    }
    if (this.#eof) return null;
    const n = await this.#source.read(p);
    if (n === null) this.#eof = true;
    return n;
  }

  /**
   * Removes and returns every buffered byte (a copy), for handing read-ahead bytes to
   * another layer.
   */
  takeBuffered(): Uint8Array {
    const out = this.#buf.slice(this.#start, this.#end);
    this.#start = this.#end = 0;
    return out;
  }

  /**
   * Reads one line ending in LF or CRLF and returns it without the terminator (a copy).
   * Resolves null at end of file when no bytes are pending. A final line without a
   * terminator is returned when `options.partialAtEof` is true, and otherwise raises
   * {@linkcode UnexpectedEofError}. A line longer than `max` bytes raises
   * {@linkcode LimitError} without consuming it; call {@linkcode skipLine} to drop it.
   */
  async readLine(
    max: number,
    options: { partialAtEof?: boolean } = {},
  ): Promise<Uint8Array | null> {
    const view = await this.readLineView(max, options);
    return view === null ? null : view.slice();
  }

  /**
   * Like {@linkcode readLine}, but returns a view into the internal buffer instead of a
   * copy: no allocation. The view stays valid until the next call that has to read from
   * the source (one that finds no whole line buffered: see {@linkcode hasBufferedLine}).
   */
  async readLineView(
    max: number,
    options: { partialAtEof?: boolean } = {},
  ): Promise<Uint8Array | null> {
    const limit = Math.min(max, this.#capacity - 1);
    let scanned = 0;
    while (true) {
      const view = this.#buf.subarray(this.#start + scanned, this.#end);
      const i = view.indexOf(LF);
      if (i >= 0) {
        const lineEnd = this.#start + scanned + i;
        let contentEnd = lineEnd;
        if (contentEnd > this.#start && this.#buf[contentEnd - 1] === CR) contentEnd--;
        if (contentEnd - this.#start > max) {
          throw new LimitError(`Cannot read line: longer than ${max} bytes`);
        }
        const line = this.#buf.subarray(this.#start, contentEnd);
        this.#start = lineEnd + 1;
        return line;
      }
      scanned = this.buffered;
      if (scanned > limit) {
        throw new LimitError(`Cannot read line: longer than ${limit} bytes`);
      }
      if (!(await this.fill())) {
        if (this.buffered === 0) return null;
        if (options.partialAtEof) {
          const line = this.#buf.subarray(this.#start, this.#end);
          this.#start = this.#end;
          return line;
        }
        throw new UnexpectedEofError(
          `Cannot read line: connection closed after ${this.buffered} bytes without a newline`,
        );
      }
    }
  }

  /**
   * Removes and returns, as one view, every whole line already buffered (up to and including
   * the last LF), or null when no whole line is buffered. No copy is made: the view stays
   * valid until the next call that reads from the source. For parsers that scan many short
   * lines at once.
   */
  takeLines(): Uint8Array | null {
    const last = this.#buf.subarray(this.#start, this.#end).lastIndexOf(LF);
    if (last < 0) return null;
    const view = this.#buf.subarray(this.#start, this.#start + last + 1);
    this.#start += last + 1;
    return view;
  }

  /** True when a whole line (up to an LF) is already buffered, so readLine will not wait. */
  hasBufferedLine(): boolean {
    return this.#buf.subarray(this.#start, this.#end).indexOf(LF) >= 0;
  }

  /**
   * Discards bytes up to and including the next LF, however many there are. Resolves false
   * when end of file came first.
   */
  async skipLine(): Promise<boolean> {
    while (true) {
      const i = this.#buf.subarray(this.#start, this.#end).indexOf(LF);
      if (i >= 0) {
        this.#start += i + 1;
        return true;
      }
      this.#start = this.#end = 0;
      if (!(await this.fill())) return false;
    }
  }
}
