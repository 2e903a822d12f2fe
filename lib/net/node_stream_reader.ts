/**
 * `Deno.Conn`-style reads from a `node:stream` socket (a `node:tls` socket, a `node:net`
 * socket): the socket's `data` chunks queue up, `read(p)` takes as much of them as fits, and
 * a {@linkcode ReadGate} stops the source while more than `highWaterBytes` wait (and starts it
 * again below half of that), so memory stays bounded and the peer meets TCP backpressure.
 * `tls_stream.ts` and `bound_connect.ts` read through it.
 *
 * @module
 */

/** How a {@linkcode NodeStreamReader} stops and restarts its source. */
export interface ReadGate {
  /** True while the source is stopped. */
  readonly held: boolean;
  /** Stops the source. */
  hold(): void;
  /** Starts it again. */
  release(): void;
}

/** The minimum of a node socket a {@linkcode NodeStreamReader} listens to. */
export interface NodeReadable {
  on(event: "data", listener: (chunk: Uint8Array) => void): unknown;
  on(event: "end" | "close", listener: () => void): unknown;
  on(event: "error", listener: (error: Error) => void): unknown;
}

/**
 * The queued reads of one node socket.
 *
 * @example Chunks read as they fit
 * ```ts
 * import assert from "node:assert/strict";
 * import { PassThrough } from "node:stream";
 * import { NodeStreamReader } from "./node_stream_reader.ts";
 * const source = new PassThrough();
 * const reader = new NodeStreamReader(source, {
 *   highWaterBytes: 1024,
 *   gate: { held: false, hold() {}, release() {} },
 * });
 * source.write(new TextEncoder().encode("hello"));
 * const buf = new Uint8Array(3);
 * assert.equal(await reader.read(buf), 3);
 * assert.equal(new TextDecoder().decode(buf), "hel");
 * source.end();
 * assert.equal(await reader.read(buf), 2);
 * assert.equal(await reader.read(buf), null);
 * ```
 */
export class NodeStreamReader {
  #chunks: Uint8Array[] = [];
  #buffered = 0;
  #ended = false;
  #error: Error | undefined;
  #wake: (() => void) | undefined;
  #highWater: number;
  #gate: ReadGate;

  /** Queues what `socket` emits; `gate` stops it above `highWaterBytes` waiting. */
  constructor(socket: NodeReadable, options: { highWaterBytes: number; gate: ReadGate }) {
    this.#highWater = options.highWaterBytes;
    this.#gate = options.gate;
    socket.on("data", (chunk: Uint8Array) => {
      this.#chunks.push(new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.byteLength));
      this.#buffered += chunk.byteLength;
      if (this.#buffered >= this.#highWater && !this.#gate.held) this.#gate.hold();
      this.wake();
    });
    socket.on("end", () => {
      this.#ended = true;
      this.wake();
    });
    socket.on("error", (error: Error) => {
      this.#error ??= error;
      this.wake();
    });
    socket.on("close", () => {
      this.#ended = true;
      this.wake();
    });
  }

  /** The first error the socket reported, if any. */
  get error(): Error | undefined {
    return this.#error;
  }

  /** Wakes a waiting read (it then checks again: the owner closed, say). */
  wake(): void {
    const wake = this.#wake;
    this.#wake = undefined;
    wake?.();
  }

  /**
   * Reads into `p` as much of what is queued as fits; null once the socket ended and nothing
   * is left. `stop` is asked before each wait: what it returns (an error) is thrown instead.
   */
  async read(p: Uint8Array, stop?: () => Error | undefined): Promise<number | null> {
    while (this.#chunks.length === 0) {
      const stopped = stop?.();
      if (stopped) throw stopped;
      if (this.#error) throw this.#error;
      if (this.#ended) return null;
      await new Promise<void>((resolve) => (this.#wake = resolve));
    }
    let n = 0;
    while (n < p.length && this.#chunks.length > 0) {
      const chunk = this.#chunks[0];
      const take = Math.min(p.length - n, chunk.length);
      p.set(take === chunk.length ? chunk : chunk.subarray(0, take), n);
      n += take;
      if (take === chunk.length) this.#chunks.shift();
      else this.#chunks[0] = chunk.subarray(take);
    }
    this.#buffered -= n;
    if (this.#gate.held && this.#buffered < this.#highWater / 2) this.#gate.release();
    return n;
  }
}
