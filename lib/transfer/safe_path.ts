/**
 * Path safety for the receiver, which trusts nothing it is sent.
 *
 * A name from the wire is accepted only when it is relative, `/`-separated, every component
 * non-empty and not `.` or `..`, free of NUL, control characters and backslashes, without a
 * drive prefix (`C:`), and not a reserved partial-file name. It is then resolved under the
 * receiver's folder component by component: every component that exists is checked with
 * `lstat`, and one that is a symlink (or a file where a folder is needed) refuses the path,
 * so nothing is ever written through a link, even one planted earlier. Missing folders are
 * created one at a time, each as a real folder.
 *
 * @module
 */

import * as posix from "node:path/posix";
import { quote } from "../log.ts";
import { MAX_PATH_BYTES } from "./protocol.ts";

/** Suffix of the partial file a transfer writes before renaming it to its final name. */
export const PARTIAL_SUFFIX = ".sockit-partial";
/** Longest single path component, in UTF-8 bytes (the usual filesystem limit). */
export const MAX_COMPONENT_BYTES = 255;
/** How many `name (N).ext` candidates `--rename` tries before giving up. */
export const MAX_RENAME_ATTEMPTS = 10_000;

/**
 * A path from the wire is unsafe or cannot be placed under the receiver's folder.
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert/strict";
 * import { UnsafePathError } from "./safe_path.ts";
 * const err = new UnsafePathError("Cannot accept '../x': contains '..'");
 * assert.equal(err.name, "UnsafePathError");
 * ```
 */
export class UnsafePathError extends Error {
  /** Creates an unsafe path error whose message names the path and the rule it broke. */
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "UnsafePathError";
  }
}

// deno-lint-ignore no-control-regex
const CONTROL_CHARS = /[\x00-\x1f\x7f]/;

/**
 * Checks a relative path from the wire and returns its components. Throws
 * {@linkcode UnsafePathError} for anything that is not a plain relative path.
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert/strict";
 * import { splitSafePath } from "./safe_path.ts";
 * assert.deepEqual(splitSafePath("a/b.txt"), ["a", "b.txt"]);
 * assert.throws(() => splitSafePath("../etc/passwd"), /contains '\.\.'/);
 * ```
 */
export function splitSafePath(path: string): string[] {
  const bad = (why: string) => new UnsafePathError(`Cannot accept path ${quote(path)}: ${why}`);
  if (path.length === 0) throw bad("empty");
  if (utf8Length(path) > MAX_PATH_BYTES) throw bad(`longer than ${MAX_PATH_BYTES} bytes`);
  if (path.includes("\0")) throw bad("contains NUL");
  if (CONTROL_CHARS.test(path)) throw bad("contains a control character");
  if (path.includes("\\")) throw bad("contains a backslash");
  if (path.startsWith("/")) throw bad("absolute");
  if (/^[A-Za-z]:/.test(path)) throw bad("starts with a drive letter");
  const parts = path.split("/");
  for (const part of parts) {
    if (part === "") throw bad("has an empty component");
    if (part === "." || part === "..") throw bad(`contains '${part}'`);
    if (part.length > MAX_COMPONENT_BYTES / 3 && utf8Length(part) > MAX_COMPONENT_BYTES) {
      throw bad(`a component is longer than ${MAX_COMPONENT_BYTES} bytes`);
    }
  }
  if (parts[parts.length - 1].endsWith(PARTIAL_SUFFIX)) throw bad("reserved partial-file name");
  return parts;
}

/**
 * Bytes of `text` in UTF-8, counted without encoding it (names are checked for every file of a
 * tree). A lone surrogate counts 3, as `TextEncoder` writes it (U+FFFD).
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert/strict";
 * import { utf8Length } from "./safe_path.ts";
 * for (const text of ["plain.txt", "caf\u00e9", "\u{1f600}.png", "\ud800x"]) {
 *   assert.equal(utf8Length(text), new TextEncoder().encode(text).length);
 * }
 * ```
 */
export function utf8Length(text: string): number {
  let bytes = text.length;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c < 0x80) continue;
    if (c < 0x800) bytes += 1;
    else if (c >= 0xd800 && c <= 0xdbff && i + 1 < text.length) {
      const next = text.charCodeAt(i + 1);
      // A surrogate pair: 2 UTF-16 units, 4 bytes.
      if (next >= 0xdc00 && next <= 0xdfff) {
        bytes += 2;
        i++;
      } else bytes += 2;
    } else bytes += 2;
  }
  return bytes;
}

/**
 * Checks a symlink's target: relative, no NUL or backslash, and resolving (from the link's
 * folder) to a place inside the receiver's folder. Returns the normalised target relative to
 * the folder. Throws {@linkcode UnsafePathError} otherwise.
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert/strict";
 * import { checkLinkTarget } from "./safe_path.ts";
 * assert.equal(checkLinkTarget("tree/a/link", "../b"), "tree/b");
 * assert.throws(() => checkLinkTarget("link", "../../etc"), /outside the folder/);
 * ```
 */
export function checkLinkTarget(linkPath: string, target: string): string {
  const bad = (why: string) =>
    new UnsafePathError(
      `Cannot create link ${quote(linkPath)} -> ${quote(target)}: ${why}`,
    );
  if (target.length === 0) throw bad("empty target");
  if (target.includes("\0")) throw bad("target contains NUL");
  if (target.includes("\\")) throw bad("target contains a backslash");
  if (target.startsWith("/")) throw bad("absolute target");
  const resolved = posix.normalize(posix.join(posix.dirname(linkPath), target));
  if (resolved === ".." || resolved.startsWith("../") || resolved.startsWith("/")) {
    throw bad("target points outside the folder");
  }
  return resolved;
}

/** Options for {@linkcode resolveInside}. */
export interface ResolveOptions {
  /** Create missing parent folders (one at a time, each a real folder). @default {false} */
  createParents?: boolean;
  /** Mode of created folders. @default {0o755} */
  dirMode?: number;
  /**
   * Folders already checked (or created) as real folders under root by this caller; they are
   * not checked again, and the ones checked now are added. A receiving session keeps one set,
   * so a tree of many small files costs one `lstat` per folder, not per file. (A sender cannot
   * turn a folder into a symlink: a symlink offer never replaces a folder.)
   */
  knownDirs?: Set<string>;
  /** Folders this caller created; the ones created now (missing parents) are added. */
  createdDirs?: Set<string>;
  /**
   * Folders in which the final name is not looked up (a receiving session passes the ones it
   * created itself, see {@linkcode ResolvedPath.unchecked}). @default {none}
   */
  assumeFreeIn?: ReadonlySet<string>;
}

/** Where an accepted path lands. */
export interface ResolvedPath {
  /** Absolute final path. */
  path: string;
  /** Absolute folder holding it. */
  dir: string;
  /** Last component. */
  name: string;
  /** `lstat` of the final path, or null when it does not exist (or was not looked up). */
  existing: Deno.FileInfo | null;
  /**
   * True when the final name was not looked up because its folder is in
   * {@linkcode ResolveOptions.assumeFreeIn}: a folder the receiver made itself, where only
   * what it placed since, or what another program put there meanwhile, can be. Whoever
   * places the file must still refuse a taken name, as the hard link it is placed with does.
   */
  unchecked?: boolean;
}

/**
 * `lstat` of a final name, or null when there is none. Most names a receiver checks are new,
 * and `Deno.lstatSync` reports that by throwing, which costs ~10 us per file in building the
 * error (a tenth of the receiver's time for 2,000 small files); `existsSync` answers without
 * throwing. It follows links, so a dangling symlink counts as missing here: harmless, because
 * nothing is ever written through the final name. A file is placed with `link` (which fails on
 * any existing name, the link included) or, with `--overwrite`, `rename` (which replaces the
 * link itself, as for any existing file); a folder or link offer fails on `mkdir`/`symlink`.
 */
function finalOrNull(path: string): Deno.FileInfo | null {
  return existsNow === undefined || existsNow(path) ? lstatOrNull(path) : null;
}

/** `node:fs`'s `existsSync`, once {@linkcode loadExistsCheck} has loaded it. */
let existsNow: ((path: string) => boolean) | undefined;

/**
 * Loads the cheap existence check {@linkcode resolveInsideSync} uses for final names
 * (`node:fs`'s `existsSync`). A receiver calls it before its first name; until then a missing
 * name costs a thrown `lstat` error instead. Loaded on demand so that `sockit send`, which
 * shares this module, does not pay for `node:fs` at start-up.
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert/strict";
 * import { loadExistsCheck, resolveInsideSync } from "./safe_path.ts";
 * await loadExistsCheck();
 * assert.equal(resolveInsideSync("/", ["no-such-name"]).existing, null);
 * ```
 */
export async function loadExistsCheck(): Promise<void> {
  existsNow ??= (await import("node:fs")).existsSync;
}

/**
 * `lstat`, or null when nothing is there. Synchronous: one quick metadata syscall, and a
 * tree of small files makes thousands of them (the async form costs a thread hop each).
 */
function lstatOrNull(path: string): Deno.FileInfo | null {
  try {
    return Deno.lstatSync(path);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return null;
    throw error;
  }
}

/**
 * Resolves checked `components` under `root` (an absolute, real folder path). Every existing
 * parent component is checked with `lstat`: a symlink or a non-folder refuses the path with
 * {@linkcode UnsafePathError}. With `createParents`, missing folders are created one by one.
 *
 * @example Usage
 * ```ts ignore
 * import { resolveInside, splitSafePath } from "./safe_path.ts";
 * const where = await resolveInside("/srv/in", splitSafePath("a/b.txt"), { createParents: true });
 * console.log(where.path); // /srv/in/a/b.txt
 * ```
 */
export function resolveInside(
  root: string,
  components: string[],
  options: ResolveOptions = {},
): Promise<ResolvedPath> {
  return new Promise((resolve) => resolve(resolveInsideSync(root, components, options)));
}

/**
 * {@linkcode resolveInside} with synchronous `lstat` and `mkdir` calls (one quick metadata
 * syscall each; a tree of thousands of small files saves a thread hop per call).
 *
 * @example Usage
 * ```ts ignore
 * import { resolveInsideSync, splitSafePath } from "./safe_path.ts";
 * const where = resolveInsideSync("/srv/in", splitSafePath("a/b.txt"), { createParents: true });
 * console.log(where.existing === null ? "new" : "exists");
 * ```
 */
export function resolveInsideSync(
  root: string,
  components: string[],
  options: ResolveOptions = {},
): ResolvedPath {
  let dir = root;
  const rel = components.join("/");
  for (let i = 0; i < components.length - 1; i++) {
    const next = `${dir}/${components[i]}`;
    if (options.knownDirs?.has(next)) {
      dir = next;
      continue;
    }
    let info = lstatOrNull(next);
    if (info === null && options.createParents) {
      try {
        Deno.mkdirSync(next, { mode: options.dirMode ?? 0o755 });
        options.createdDirs?.add(next);
      } catch (error) {
        if (!(error instanceof Deno.errors.AlreadyExists)) throw error;
      }
      info = lstatOrNull(next);
    }
    if (info === null) {
      throw new UnsafePathError(
        `Cannot place '${rel}': folder '${components.slice(0, i + 1).join("/")}' is missing`,
      );
    }
    if (info.isSymlink) {
      throw new UnsafePathError(
        `Cannot place '${rel}': '${components.slice(0, i + 1).join("/")}' is a symlink`,
      );
    }
    if (!info.isDirectory) {
      throw new UnsafePathError(
        `Cannot place '${rel}': '${components.slice(0, i + 1).join("/")}' is not a folder`,
      );
    }
    options.knownDirs?.add(next);
    dir = next;
  }
  const name = components[components.length - 1];
  const path = `${dir}/${name}`;
  // Belt and braces: the joined path must still be under root after normalisation.
  if (!posix.normalize(path).startsWith(root.endsWith("/") ? root : root + "/")) {
    throw new UnsafePathError(`Cannot place '${rel}': it resolves outside the folder`);
  }
  if (options.assumeFreeIn?.has(dir)) return { path, dir, name, existing: null, unchecked: true };
  return { path, dir, name, existing: finalOrNull(path) };
}

/**
 * The partial file a transfer of `name` writes in the same folder: `.NAME.sockit-partial`.
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert/strict";
 * import { partialName } from "./safe_path.ts";
 * assert.equal(partialName("a.txt"), ".a.txt.sockit-partial");
 * ```
 */
export function partialName(name: string): string {
  return `.${name}${PARTIAL_SUFFIX}`;
}

/**
 * The `n`-th alternative of `name` for `--rename`: `report (1).pdf`, `archive.tar (2).gz`,
 * `.bashrc (1)`.
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert/strict";
 * import { renamedName } from "./safe_path.ts";
 * assert.equal(renamedName("a.txt", 1), "a (1).txt");
 * assert.equal(renamedName("README", 2), "README (2)");
 * ```
 */
export function renamedName(name: string, n: number): string {
  const dot = name.lastIndexOf(".");
  if (dot <= 0) return `${name} (${n})`;
  return `${name.slice(0, dot)} (${n})${name.slice(dot)}`;
}

/**
 * Finds the first `name (N).ext` in `dir` that does not exist yet. Throws
 * {@linkcode UnsafePathError} after {@linkcode MAX_RENAME_ATTEMPTS} candidates.
 */
export function findFreeName(dir: string, name: string): Promise<string> {
  return new Promise((resolve) => resolve(findFreeNameSync(dir, name)));
}

/**
 * {@linkcode findFreeName} with synchronous `lstat` calls (no thread hop per candidate; only
 * `--rename` with a taken name gets here). A dangling symlink counts as taken.
 *
 * @example Usage
 * ```ts ignore
 * import { findFreeNameSync } from "./safe_path.ts";
 * console.log(findFreeNameSync("/srv/in", "report.pdf")); // "report (1).pdf" if that is free
 * ```
 */
export function findFreeNameSync(dir: string, name: string): string {
  for (let n = 1; n <= MAX_RENAME_ATTEMPTS; n++) {
    const candidate = renamedName(name, n);
    if (utf8Length(candidate) > MAX_COMPONENT_BYTES) break;
    if (lstatOrNull(`${dir}/${candidate}`) === null) return candidate;
  }
  throw new UnsafePathError(`Cannot find a free name for '${name}' in its folder`);
}
