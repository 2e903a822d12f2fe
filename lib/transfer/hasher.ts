/**
 * Incremental SHA-256 over the chunks of a transfer, on this thread or on a worker thread.
 *
 * Hashing 1 GiB costs about 0.6 s of CPU at each end. {@linkcode WorkerHasher} moves it off
 * the thread that moves bytes between the disk and the socket, so hashing and I/O overlap
 * where a core is free. Chunks must be views of a `SharedArrayBuffer` (see
 * {@linkcode allocateChunk}); `update` resolves once the worker has hashed them, after which
 * the caller may reuse the bytes. The worker is only worth it where a core is free
 * ({@linkcode useHashWorker}). {@linkcode startHasher} falls back to
 * {@linkcode InlineHasher} when no worker can be started (for instance in a compiled binary
 * without the worker module).
 *
 * @module
 */

import { createHash, type Hash } from "node:crypto";
import { withTimeout } from "../net/deadline.ts";
import { KEEPALIVE_INTERVAL_MS } from "./protocol.ts";

/** Files at least this large may be hashed on the worker thread (4 MiB); smaller ones inline. */
export const PARALLEL_HASH_MIN_BYTES = 4 * 1024 * 1024;
/**
 * The worker thread is used only on machines with at least this many cores (4). Measured on
 * 2 cores (sender and receiver on the same machine): the worker costs about 0.3 s more CPU per
 * GiB on each side and gains no wall time, because both cores are already busy.
 */
export const PARALLEL_HASH_MIN_CORES = 4;

/** Options for {@linkcode useHashWorker}. */
export interface UseHashWorkerOptions {
  /** Cores on this machine. @default {navigator.hardwareConcurrency} */
  cores?: number;
  /** `"auto"` decides by size and cores; `"always"` / `"never"` decide alone. @default {"auto"} */
  mode?: HashWorkerMode;
}

/**
 * Whether a file of `size` bytes is worth hashing on the worker thread here: at least
 * {@linkcode PARALLEL_HASH_MIN_BYTES}, and at least {@linkcode PARALLEL_HASH_MIN_CORES} cores.
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert/strict";
 * import { useHashWorker } from "./hasher.ts";
 * assert.equal(useHashWorker(1024), false);
 * assert.equal(useHashWorker(64 * 1024 * 1024, { cores: 8 }), true);
 * assert.equal(useHashWorker(1024, { mode: "always" }), true);
 * ```
 */
export function useHashWorker(size: number, options: UseHashWorkerOptions = {}): boolean {
  const { cores = navigator.hardwareConcurrency ?? 1, mode = "auto" } = options;
  if (mode !== "auto") return mode === "always";
  return size >= PARALLEL_HASH_MIN_BYTES && cores >= PARALLEL_HASH_MIN_CORES;
}

/** Where to hash: `"auto"` ({@linkcode useHashWorker}'s rule), or always / never on the worker. */
export type HashWorkerMode = "auto" | "always" | "never";
/**
 * Chunk buffers in flight per session, on each side: one being filled, one being written,
 * one being hashed, one spare.
 */
export const RING_SLOTS = 4;
/** Longest wait for the hash worker to start before falling back to inline hashing, in ms. */
export const WORKER_START_TIMEOUT_MS = 5000;

/** A message to the hash worker. */
export type HasherRequest =
  | { op: "update"; id: number; buffer: SharedArrayBuffer; offset: number; length: number }
  | { op: "peek" | "digest" | "reset"; id: number };

/** The hash worker's answer to one request. */
export interface HasherResponse {
  /** The request's id. */
  id: number;
  /** The digest, for `peek` and `digest`. */
  digest?: Uint8Array;
}

/** Incremental SHA-256 whose steps may run elsewhere. */
export interface ChunkHasher extends Disposable {
  /** Starts over (a new file). */
  reset(): Promise<void>;
  /** Adds `chunk`; resolves when its bytes have been hashed and may be reused. */
  update(chunk: Uint8Array): Promise<void>;
  /** The SHA-256 of everything so far; the hash goes on. */
  peek(): Promise<Uint8Array>;
  /** The final SHA-256; the hasher starts over. */
  digest(): Promise<Uint8Array>;
}

/**
 * A chunk buffer that both this thread and the hash worker can read (a view of a
 * `SharedArrayBuffer`).
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert/strict";
 * import { allocateChunk } from "./hasher.ts";
 * assert.ok(allocateChunk(16).buffer instanceof SharedArrayBuffer);
 * ```
 */
export function allocateChunk(size: number): Uint8Array {
  return new Uint8Array(new SharedArrayBuffer(size));
}

/**
 * SHA-256 on the calling thread.
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert/strict";
 * import { InlineHasher } from "./hasher.ts";
 * using h = new InlineHasher();
 * await h.update(new TextEncoder().encode("abc"));
 * const d = await h.digest();
 * assert.equal(d[0], 0xba);
 * ```
 */
export class InlineHasher implements ChunkHasher {
  #hash: Hash = createHash("sha256");

  /** Starts over. */
  reset(): Promise<void> {
    this.#hash = createHash("sha256");
    return Promise.resolve();
  }

  /** Hashes `chunk` now. */
  update(chunk: Uint8Array): Promise<void> {
    this.#hash.update(chunk);
    return Promise.resolve();
  }

  /** Digest so far. */
  peek(): Promise<Uint8Array> {
    return Promise.resolve(new Uint8Array(this.#hash.copy().digest()));
  }

  /** Final digest; starts over. */
  digest(): Promise<Uint8Array> {
    const d = new Uint8Array(this.#hash.digest());
    this.#hash = createHash("sha256");
    return Promise.resolve(d);
  }

  /** Nothing to release. */
  [Symbol.dispose](): void {}
}

/**
 * SHA-256 on a worker thread. Requests are answered in order; a worker failure rejects every
 * pending request.
 *
 * @example Usage
 * ```ts ignore
 * import { allocateChunk, WorkerHasher } from "./hasher.ts";
 * using h = await WorkerHasher.start();
 * const chunk = allocateChunk(3);
 * chunk.set([0x61, 0x62, 0x63]);
 * await h.update(chunk);
 * console.log(await h.digest());
 * ```
 */
export class WorkerHasher implements ChunkHasher {
  #worker: Worker;
  #waiting = new Map<number, { resolve(r: HasherResponse): void; reject(e: Error): void }>();
  #nextId = 0;
  #failed: Error | null = null;

  private constructor(worker: Worker) {
    this.#worker = worker;
    worker.onmessage = (event: MessageEvent<HasherResponse>) => {
      const waiter = this.#waiting.get(event.data.id);
      this.#waiting.delete(event.data.id);
      waiter?.resolve(event.data);
    };
    worker.onerror = (event: ErrorEvent) => {
      event.preventDefault();
      this.#fail(new Error(`Hash worker failed: ${event.message}`));
    };
  }

  /** Starts the worker and waits (bounded) until it answers. */
  static async start(timeoutMs: number = WORKER_START_TIMEOUT_MS): Promise<WorkerHasher> {
    const worker = new Worker(new URL("./hash_worker.ts", import.meta.url), { type: "module" });
    const hasher = new WorkerHasher(worker);
    try {
      await withTimeout(hasher.reset(), timeoutMs, { what: "the hash worker to start" });
      return hasher;
    } catch (error) {
      hasher[Symbol.dispose]();
      throw error;
    }
  }

  #fail(error: Error): void {
    this.#failed ??= error;
    for (const w of this.#waiting.values()) w.reject(error);
    this.#waiting.clear();
  }

  #call(request: Omit<HasherRequest, "id">): Promise<HasherResponse> {
    if (this.#failed) return Promise.reject(this.#failed);
    const id = this.#nextId++;
    return new Promise((resolve, reject) => {
      this.#waiting.set(id, { resolve, reject });
      this.#worker.postMessage({ ...request, id });
    });
  }

  /** Starts over. */
  async reset(): Promise<void> {
    await this.#call({ op: "reset" });
  }

  /** Hashes `chunk` (a view of a SharedArrayBuffer) on the worker. */
  async update(chunk: Uint8Array): Promise<void> {
    if (!(chunk.buffer instanceof SharedArrayBuffer)) {
      throw new TypeError("WorkerHasher.update needs a chunk from allocateChunk()");
    }
    await this.#call({
      op: "update",
      buffer: chunk.buffer,
      offset: chunk.byteOffset,
      length: chunk.byteLength,
    } as Omit<HasherRequest, "id">);
  }

  /** Digest so far. */
  async peek(): Promise<Uint8Array> {
    return (await this.#call({ op: "peek" })).digest!;
  }

  /** Final digest; starts over. */
  async digest(): Promise<Uint8Array> {
    return (await this.#call({ op: "digest" })).digest!;
  }

  /** Stops the worker. */
  [Symbol.dispose](): void {
    this.#fail(new Error("Hash worker stopped"));
    this.#worker.terminate();
  }
}

/**
 * A {@linkcode WorkerHasher}, or an {@linkcode InlineHasher} when the worker cannot start.
 */
export async function startHasher(): Promise<ChunkHasher> {
  try {
    return await WorkerHasher.start();
  } catch {
    return new InlineHasher();
  }
}

/**
 * The SHA-256 of `data`, hashed at once on this thread.
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert/strict";
 * import { sha256 } from "./hasher.ts";
 * assert.equal(sha256(new TextEncoder().encode("abc"))[0], 0xba);
 * ```
 */
export function sha256(data: Uint8Array): Uint8Array {
  return new Uint8Array(createHash("sha256").update(data).digest());
}

/**
 * True when two digests are the same bytes: the one comparison of a SHA-256 with another, on
 * both sides of a transfer.
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert/strict";
 * import { sameDigest, sha256 } from "./hasher.ts";
 * const a = sha256(new Uint8Array([1]));
 * assert.equal(sameDigest(a, a.slice()), true);
 * assert.equal(sameDigest(a, sha256(new Uint8Array([2]))), false);
 * ```
 */
export function sameDigest(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/**
 * Picks the hasher for each file of a session: the {@linkcode InlineHasher} for small files,
 * one {@linkcode WorkerHasher} (started on first use) where {@linkcode useHashWorker} says so.
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert/strict";
 * import { HasherChoice, InlineHasher } from "./hasher.ts";
 * const hashers = new HasherChoice({ mode: "never" });
 * assert.ok(await hashers.forSize(1 << 30) instanceof InlineHasher);
 * await hashers.close();
 * ```
 */
export class HasherChoice {
  #mode: HashWorkerMode;
  #inline = new InlineHasher();
  #worker: Promise<ChunkHasher> | null = null;

  /** A choice by `options.mode` (`"auto"` by default). */
  constructor(options: { mode?: HashWorkerMode } = {}) {
    this.#mode = options.mode ?? "auto";
  }

  /** The hasher for a file of `size` bytes. */
  async forSize(size: number): Promise<ChunkHasher> {
    if (!useHashWorker(size, { mode: this.#mode })) return this.#inline;
    this.#worker ??= startHasher();
    return await this.#worker;
  }

  /** Stops the worker, if one was started. */
  async close(): Promise<void> {
    if (this.#worker) (await this.#worker)[Symbol.dispose]();
    this.#worker = null;
  }
}

/**
 * Adds the first `length` bytes of `file` (from its current position) to `hasher`, reading
 * through `options.buffer`, and calls `options.keepalive` every
 * {@linkcode KEEPALIVE_INTERVAL_MS} while it takes long. Throws when the file is shorter.
 */
export async function hashFileBytes(
  file: Deno.FsFile,
  hasher: ChunkHasher,
  options: { length: number; buffer: Uint8Array; keepalive?: () => Promise<void> },
): Promise<void> {
  const { buffer, keepalive } = options;
  let left = options.length;
  let lastPing = performance.now();
  while (left > 0) {
    const n = await file.read(buffer.subarray(0, Math.min(buffer.length, left)));
    if (n === null) throw new Error("file shrank while hashing it");
    await hasher.update(buffer.subarray(0, n));
    left -= n;
    if (keepalive && performance.now() - lastPing > KEEPALIVE_INTERVAL_MS) {
      lastPing = performance.now();
      await keepalive();
    }
  }
}
