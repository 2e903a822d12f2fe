/**
 * The partial file of an incoming file, `.NAME.sockit-partial` in its final folder: created
 * (mode 0600) or reopened for a resume, moved to its final name (a hard link that cannot
 * clobber, or an atomic rename with `overwrite`), and the folder synced after.
 *
 * Metadata calls for small files are synchronous: each is one quick syscall, and a tree of
 * small files makes thousands of them.
 *
 * @module
 */

import { statfs } from "node:fs/promises";
import { retryOnEmfile } from "../net/fd_budget.ts";
import { type ChunkHasher, hashFileBytes } from "./hasher.ts";
import { Reason } from "./protocol.ts";
import { findFreeName } from "./safe_path.ts";
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

/** Removes `path` if it is there; a file already gone is no error. */
export function removeQuietly(path: string): void {
  try {
    Deno.removeSync(path);
  } catch {
    // Already gone.
  }
}

/** Free bytes for unprivileged users on the filesystem holding `dir`, or null if unknown. */
export async function freeSpace(dir: string): Promise<number | null> {
  try {
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

/** Creates `partial` for writing (mode 0600), replacing whatever is under that name. */
export function createPartialSync(partial: string): Deno.FsFile {
  const options = { write: true, createNew: true, mode: 0o600 } as const;
  try {
    return Deno.openSync(partial, options);
  } catch (error) {
    if (!(error instanceof Deno.errors.AlreadyExists)) throw error;
    // A partial file from an interrupted transfer (a pipelined file restarts from zero), or
    // something else under the partial name: removed, never written through.
    Deno.removeSync(partial);
    return Deno.openSync(partial, options);
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
      Deno.open(partial, { read: true, write: true, createNew: true, mode: 0o600 })
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
 * Moves the finished `partial` file to `name` in `dir` and resolves the name it got. Without
 * `overwrite` a hard link creates the name only if it is still free (then the partial name is
 * removed; with `rename` a free name is found); with `overwrite` an atomic rename replaces the
 * old file. A {@linkcode Refusal} (Exists) when the name was taken meanwhile.
 */
export async function placeFile(
  partial: string,
  dir: string,
  options: { name: string; overwrite: boolean; rename: boolean },
): Promise<string> {
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
        candidate = await findFreeName(dir, name);
        continue;
      }
      if (error instanceof Deno.errors.NotFound) throw error;
      // No hard links on this filesystem: check, then rename.
      if ((await lstatOrNull(`${dir}/${candidate}`)) !== null) {
        if (!options.rename) throw new Refusal(Reason.Exists, `'${candidate}' exists`);
        candidate = await findFreeName(dir, name);
      }
      await Deno.rename(partial, `${dir}/${candidate}`);
      return candidate;
    }
  }
  throw new Refusal(Reason.Exists, `cannot find a free name for '${name}'`);
}
