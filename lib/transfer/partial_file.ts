/**
 * The partial file of an incoming file, `.NAME.sockit-partial` in its final folder: created
 * (mode 0600, or a verified pipelined file directly with its final mode where the umask
 * leaves that whole) or reopened for a resume, moved to its final name (a hard link that
 * cannot clobber, or an atomic rename with `overwrite`), and the folder synced after.
 *
 * Why a link and not a rename: the final name must never replace a file that appeared under
 * it meanwhile (another program, another sender's folder or link), and `link(2)` is the one
 * call Deno offers that creates a name only if it is free, atomically; `rename(2)` replaces,
 * and `renameat2(RENAME_NOREPLACE)` is out of reach without FFI. An exists check before a
 * rename would leave a window in which such a file is overwritten; creating the final name
 * with O_EXCL first would put an empty or partial file under it until the data is in, which a
 * crash could leave behind. So the price of the guarantee is one more call per file, the
 * unlink of the partial name (two with Deno's `removeSync`, which `lstat`s first).
 *
 * Metadata calls for small files are synchronous: each is one quick syscall, and a tree of
 * small files makes thousands of them.
 *
 * @module
 */

import { retryOnEmfile } from "../net/fd_budget.ts";
import { type ChunkHasher, hashFileBytes } from "./hasher.ts";
import { Reason } from "./protocol.ts";
import { findFreeNameSync } from "./safe_path.ts";
import { Refusal } from "./refusal.ts";

/** `Deno.lstat`, or null when nothing is at `path`. */
export async function lstatOrNull(path: string): Promise<Deno.FileInfo | null> {
  try {
    return await Deno.lstat(path);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return null;
    throw error;
  }
}

/**
 * `Deno.lstatSync`, or null when nothing is at `path`.
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert/strict";
 * import { lstatSyncOrNull } from "./partial_file.ts";
 * assert.equal(lstatSyncOrNull("/no/such/path/here"), null);
 * assert.equal(lstatSyncOrNull("/")?.isDirectory, true);
 * ```
 */
export function lstatSyncOrNull(path: string): Deno.FileInfo | null {
  try {
    return Deno.lstatSync(path);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return null;
    throw error;
  }
}

/** Removes `path` if it is there; a file already gone is no error. */
export function removeQuietly(path: string): void {
  try {
    Deno.removeSync(path);
  } catch {
    // Already gone.
  }
}

/**
 * Free bytes for unprivileged users on the filesystem holding `dir`, or null if unknown.
 * (`node:fs/promises` is loaded on first use: only files of 1 MiB or more need it, and a
 * sender's start-up should not pay for it.)
 */
export async function freeSpace(dir: string): Promise<number | null> {
  try {
    const { statfs } = await import("node:fs/promises");
    const s = await statfs(dir);
    return Number(s.bavail) * Number(s.bsize);
  } catch {
    return null;
  }
}

/** fsyncs the folder `dir`, so a rename in it is durable; a no-op where folders cannot sync. */
export async function syncFolder(dir: string): Promise<void> {
  try {
    using d = await retryOnEmfile(() => Deno.open(dir, { read: true }));
    await d.sync();
  } catch {
    // Not every platform can open a folder for syncing; the file itself is synced.
  }
}

/** How much of a file of `size` bytes the partial file at `partial` holds for a resume. */
export async function resumableLength(partial: string, size: number): Promise<number> {
  const info = await lstatOrNull(partial);
  return info !== null && info.isFile && info.size <= size ? info.size : 0;
}

/** Mode of a partial file until it is complete, unless it is created with its final mode. */
export const PARTIAL_MODE = 0o600;

let processUmask: number | null | undefined;

/**
 * The process's umask, read once from the `Umask:` line of `/proc/self/status` (reading it
 * with `umask(2)` would set it for a moment, under the other threads' feet); null where that
 * line is missing.
 */
export function readUmask(): number | null {
  if (processUmask !== undefined) return processUmask;
  try {
    const m = /^Umask:\s*([0-7]+)$/m.exec(Deno.readTextFileSync("/proc/self/status"));
    processUmask = m ? parseInt(m[1], 8) : null;
  } catch {
    processUmask = null;
  }
  return processUmask;
}

/**
 * True when a file created with `mode` gets exactly `mode` (no bit of it is in the umask), so
 * a complete file can be created with its final mode instead of {@linkcode PARTIAL_MODE} and
 * a `chmod` after.
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert/strict";
 * import { createdExactly, readUmask } from "./partial_file.ts";
 * const umask = readUmask();
 * if (umask !== null) assert.equal(createdExactly(0o777), umask === 0);
 * ```
 */
export function createdExactly(mode: number): boolean {
  const umask = readUmask();
  return umask !== null && (mode & umask) === 0;
}

/**
 * Creates `partial` for writing (with `options.mode`, {@linkcode PARTIAL_MODE} by default),
 * replacing whatever is under that name.
 */
export function createPartialSync(
  partial: string,
  options: { mode?: number } = {},
): Deno.FsFile {
  const open = { write: true, createNew: true, mode: options.mode ?? PARTIAL_MODE } as const;
  try {
    return Deno.openSync(partial, open);
  } catch (error) {
    if (!(error instanceof Deno.errors.AlreadyExists)) throw error;
    // A partial file from an interrupted transfer (a pipelined file restarts from zero), or
    // something else under the partial name: removed, never written through.
    Deno.removeSync(partial);
    return Deno.openSync(partial, open);
  }
}

/** A partial file opened for a streamed file. */
export interface OpenedPartial {
  /** Open for reading and writing. */
  file: Deno.FsFile;
  /** Bytes kept for a resume (their SHA-256 is in the hasher). */
  offset: number;
  /** True when the file was created now. */
  created: boolean;
}

/** How {@linkcode openPartial} hashes a partial file it resumes. */
export interface OpenPartialOptions {
  /** The hasher the kept prefix goes into (reset first). */
  hasher: ChunkHasher;
  /** Read buffer for hashing. */
  buffer: Uint8Array;
  /** Called now and then while a long prefix is hashed (a Ping to the sender). */
  keepalive: () => Promise<void>;
}

/**
 * Opens the partial file of a streamed file of `size` bytes: creates it, or reopens the one an
 * interrupted transfer left and hashes the prefix it keeps (restarting from zero when it is
 * longer than `size`). Anything else under the partial name is removed, never written through.
 */
export async function openPartial(
  partial: string,
  size: number,
  options: OpenPartialOptions,
): Promise<OpenedPartial> {
  let info = await lstatOrNull(partial);
  if (info !== null && !info.isFile) {
    await Deno.remove(partial);
    info = null;
  }
  await options.hasher.reset();
  if (info === null) {
    const file = await retryOnEmfile(() =>
      Deno.open(partial, { read: true, write: true, createNew: true, mode: PARTIAL_MODE })
    );
    return { file, offset: 0, created: true };
  }
  const file = await retryOnEmfile(() => Deno.open(partial, { read: true, write: true }));
  try {
    const offset = info.size <= size ? info.size : 0;
    if (offset > 0) {
      await hashFileBytes(file, options.hasher, {
        length: offset,
        buffer: options.buffer,
        keepalive: options.keepalive,
      });
    }
    return { file, offset, created: false };
  } catch (error) {
    file.close();
    throw error;
  }
}

/**
 * Moves the finished `partial` file to `name` in `dir` and returns the name it got. Without
 * `overwrite` a hard link creates the name only if it is still free (then the partial name is
 * removed; with `rename` a free name is found); with `overwrite` an atomic rename replaces the
 * old file. A {@linkcode Refusal} (Exists) when the name was taken meanwhile.
 */
export function placeFile(
  partial: string,
  dir: string,
  options: { name: string; overwrite: boolean; rename: boolean },
): string {
  const { name } = options;
  if (options.overwrite) {
    Deno.renameSync(partial, `${dir}/${name}`);
    return name;
  }
  let candidate = name;
  for (let attempt = 0; attempt < 100; attempt++) {
    try {
      Deno.linkSync(partial, `${dir}/${candidate}`);
      Deno.removeSync(partial);
      return candidate;
    } catch (error) {
      if (error instanceof Deno.errors.AlreadyExists) {
        if (!options.rename) {
          throw new Refusal(Reason.Exists, `'${candidate}' appeared while receiving it`);
        }
        candidate = findFreeNameSync(dir, name);
        continue;
      }
      if (error instanceof Deno.errors.NotFound) throw error;
      // No hard links on this filesystem: check, then rename (here a file appearing in
      // between could be replaced: nothing better is reachable without hard links).
      if (lstatSyncOrNull(`${dir}/${candidate}`) !== null) {
        if (!options.rename) throw new Refusal(Reason.Exists, `'${candidate}' exists`);
        candidate = findFreeNameSync(dir, name);
      }
      Deno.renameSync(partial, `${dir}/${candidate}`);
      return candidate;
    }
  }
  throw new Refusal(Reason.Exists, `cannot find a free name for '${name}'`);
}
