/**
 * The sender's view of what it sends: each PATH argument becomes a list of entries named
 * relative to the argument's parent (`send dir/photos` sends `photos/...`). Folders come
 * before their contents so empty folders are kept; entries are sorted by name for a
 * reproducible order. Symlinks inside a folder are sent as links when they point inside that
 * folder's tree, resolved through the tree's other links as the receiver will resolve them
 * (`link_policy.ts`: beside `s -> .`, `up -> s/..` is skipped), and skipped otherwise; they are
 * never followed. A PATH that is itself a symlink is followed (it names what the user wants
 * sent).
 *
 * Only entries are held in memory (names and sizes), never file contents.
 *
 * @module
 */

import * as posix from "node:path/posix";
import { LinkEscapeError, resolveLinkTarget } from "./link_policy.ts";
import { EntryKind, type EntryKindValue } from "./protocol.ts";

/** One thing to send. */
export interface LocalEntry {
  /** File, folder or symlink. */
  kind: EntryKindValue;
  /** Absolute local path. */
  source: string;
  /** Relative `/`-separated path sent on the wire. */
  path: string;
  /** Size in bytes (files only). */
  size: number;
  /** Permission bits. */
  mode: number;
  /** Modification time in ms since the epoch (0 if unknown). */
  mtimeMs: number;
  /** Link text for symlinks (made relative). */
  target: string;
}

/** An entry the walk left out, and why. */
export interface SkippedEntry {
  /** Local path. */
  path: string;
  /** Why it was skipped. */
  reason: string;
}

/** What {@linkcode collectEntries} found. */
export interface WalkResult {
  /** Entries in sending order. */
  entries: LocalEntry[];
  /** Entries skipped with a warning. */
  skipped: SkippedEntry[];
}

function entryOf(
  kind: EntryKindValue,
  source: string,
  path: string,
  info: Deno.FileInfo,
  target = "",
): LocalEntry {
  return {
    kind,
    source,
    path,
    size: kind === EntryKind.File ? info.size : 0,
    mode: (info.mode ?? 0o644) & 0o7777,
    mtimeMs: info.mtime?.getTime() ?? 0,
    target,
  };
}

/** The sent tree: its path as given, and its real path (for absolute link texts). */
interface Tree {
  root: string;
  aliases: string[];
}

/**
 * The link text to send for the link at `source` whose text is `raw`, or why it is skipped:
 * it must resolve inside the tree through the tree's own links (as the receiver checks). A
 * relative text is sent normalised; an absolute one (into the tree) is made relative.
 */
function linkTarget(tree: Tree, source: string, raw: string): { target: string } | { why: string } {
  const rel = posix.relative(tree.root, source).split("/");
  let resolved: string[];
  try {
    resolved = resolveLinkTarget(tree.root, { path: rel, target: raw }, {
      rootName: "the sent tree",
      aliases: tree.aliases,
    });
  } catch (error) {
    if (error instanceof LinkEscapeError) return { why: error.why };
    throw error;
  }
  const from = posix.join("/", ...rel.slice(0, -1));
  const to = raw.startsWith("/") ? posix.join("/", ...resolved) : posix.resolve(from, raw);
  return { target: posix.relative(from, to) || "." };
}

/**
 * Walks `dir` with synchronous calls: one quick metadata syscall each, where the async forms
 * cost a thread hop apiece (measured: 110 ms against 13 ms for 2,000 files).
 */
function walkDir(tree: Tree, dir: string, wireDir: string, out: WalkResult): void {
  const names: string[] = [];
  for (const e of Deno.readDirSync(dir)) names.push(e.name);
  names.sort();
  for (const name of names) {
    const source = `${dir}/${name}`;
    const wire = `${wireDir}/${name}`;
    const info = Deno.lstatSync(source);
    if (info.isSymlink) {
      const raw = Deno.readLinkSync(source);
      const link = linkTarget(tree, source, raw);
      if ("why" in link) {
        out.skipped.push({ path: source, reason: `symlink ${link.why} (${raw})` });
        continue;
      }
      out.entries.push(entryOf(EntryKind.Symlink, source, wire, info, link.target));
    } else if (info.isDirectory) {
      out.entries.push(entryOf(EntryKind.Directory, source, wire, info));
      walkDir(tree, source, wire, out);
    } else if (info.isFile) {
      out.entries.push(entryOf(EntryKind.File, source, wire, info));
    } else {
      out.skipped.push({ path: source, reason: "not a regular file, folder or symlink" });
    }
  }
}

/**
 * Lists the entries to send for `paths` (files or folders). Throws `Deno.errors.NotFound`
 * for a missing PATH.
 *
 * @example Usage
 * ```ts ignore
 * import { collectEntries } from "./walk.ts";
 * const { entries, skipped } = await collectEntries(["photos", "notes.txt"]);
 * console.log(entries.map((e) => e.path), skipped);
 * ```
 */
export async function collectEntries(paths: string[]): Promise<WalkResult> {
  const out: WalkResult = { entries: [], skipped: [] };
  for (const arg of paths) {
    const source = posix.resolve(arg);
    const name = posix.basename(source);
    if (name === "") throw new Error(`Cannot send '${arg}': it has no name to send it under`);
    const info = await Deno.stat(source);
    if (info.isDirectory) {
      out.entries.push(entryOf(EntryKind.Directory, source, name, info));
      const real = await Deno.realPath(source);
      walkDir({ root: source, aliases: real === source ? [] : [real] }, source, name, out);
    } else if (info.isFile) {
      out.entries.push(entryOf(EntryKind.File, source, name, info));
    } else {
      out.skipped.push({ path: source, reason: "not a regular file or folder" });
    }
  }
  return out;
}
