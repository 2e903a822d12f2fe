/**
 * Where a symlink really points, resolved through the links that exist (or are being
 * created) in a folder, and whether that stays inside the folder. The receiver uses it before
 * it creates a link, the sender before it sends one, so both sides decide the same way.
 *
 * Only the link text, normalised, is not enough: beside `s -> .`, the link
 * `u -> s/s/s/../../../etc` normalises to `s/etc` (inside) but resolves to `../../etc`. So the
 * text is walked component by component from the link's folder, as the kernel does: each
 * component that is a link is replaced by where that link resolves (recursively, at most
 * {@linkcode MAX_LINK_HOPS} links). The result stays valid whatever happens in the folder
 * later, because a `..` is accepted only when it leaves a real folder that the walk entered by
 * name:
 *
 * - `..` right after a link (`s/..`) is refused: it would depend on where `s` points, and a
 *   link can be replaced (`--overwrite`).
 * - `..` after a component that does not exist yet, or is not a folder, is refused: that
 *   name may later be created as a link.
 * - `..` above the folder itself is refused.
 *
 * Real folders stay real folders (a receiver never replaces a folder), so a link accepted
 * under these rules keeps resolving inside the folder. Plain links such as
 * `a/b/link -> ../../top.txt`, `lib.so -> lib.so.1` or `s -> .` are accepted.
 *
 * @module
 */

import { quote } from "../log.ts";
import { UnsafePathError } from "./safe_path.ts";

/** Most links one resolution goes through before it is refused (Linux's own limit is 40). */
export const MAX_LINK_HOPS = 40;

/**
 * A symlink's target does not resolve inside the folder. `why` is the short reason
 * ("points outside the folder", "goes up ('..') through the link 's'").
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert/strict";
 * import { LinkEscapeError } from "./link_policy.ts";
 * const error = new LinkEscapeError("points outside the folder", "Cannot create link u");
 * assert.ok(error instanceof Error);
 * assert.equal(error.why, "points outside the folder");
 * ```
 */
export class LinkEscapeError extends UnsafePathError {
  /** Creates the error: `why` is the reason alone, `message` the whole sentence. */
  constructor(readonly why: string, message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "LinkEscapeError";
  }
}

/** A symlink: where it is and what it says. */
export interface LinkSpec {
  /** Its path, as components relative to the root. */
  path: readonly string[];
  /** Its text (the target as written). */
  target: string;
}

/** Options for {@linkcode resolveLinkTarget}. */
export interface LinkResolveOptions {
  /**
   * Links about to exist, by path relative to the root (`/`-separated) to their text: the
   * link being created (it overrides whatever is on disk under that name). @default {none}
   */
  pending?: ReadonlyMap<string, string>;
  /** How the root is called in reasons. @default {"the folder"} */
  rootName?: string;
  /** Other absolute paths of the root (its real path), for absolute link texts. @default {none} */
  aliases?: readonly string[];
}

type Kind = "dir" | "link" | "other" | "missing";

function kindOf(path: string): Kind {
  try {
    const info = Deno.lstatSync(path);
    if (info.isSymlink) return "link";
    return info.isDirectory ? "dir" : "other";
  } catch {
    // Missing, or below a file, or unreadable: never popped with '..', only walked into.
    return "missing";
  }
}

/**
 * Resolves the target of `link` (its path relative to `root`, an absolute folder, and its
 * text) through the links under `root`, and returns the components of the place it points to (relative to `root`; `[]` is the root itself). Throws
 * {@linkcode LinkEscapeError} when the target leaves `root` or breaks one of the rules in the
 * module doc. Synchronous: one `lstat` per component.
 *
 * @example `u -> s/s/s/../../../etc` beside `s -> .` is refused
 * ```ts
 * import assert from "node:assert/strict";
 * import { LinkEscapeError, resolveLinkTarget } from "./link_policy.ts";
 * const root = Deno.makeTempDirSync();
 * Deno.mkdirSync(`${root}/a`);
 * Deno.symlinkSync(".", `${root}/s`);
 * const at = (path: string, target: string) => resolveLinkTarget(root, { path: [path], target });
 * assert.deepEqual(resolveLinkTarget(root, { path: ["a", "in"], target: "../s/b" }), ["b"]);
 * assert.throws(() => at("u", "s/s/s/../../../etc"), LinkEscapeError);
 * assert.throws(() => at("up", "s/.."), /out of the link 's'/);
 * assert.throws(() => at("m", "new/.."), /'new', which does not exist/);
 * Deno.removeSync(root, { recursive: true });
 * ```
 */
export function resolveLinkTarget(
  root: string,
  link: LinkSpec,
  options: LinkResolveOptions = {},
): string[] {
  const { target } = link;
  const rootName = options.rootName ?? "the folder";
  const roots = [root, ...(options.aliases ?? [])].map((r) => r.replace(/\/+$/, ""));
  const linkName = link.path.join("/");
  const fail = (why: string): never => {
    throw new LinkEscapeError(
      why,
      `Cannot accept link ${quote(linkName)} -> ${quote(target)}: ${why}`,
    );
  };
  let hops = 0;
  const pending = new Map(options.pending ?? []);
  pending.set(linkName, target);

  const walk = (start: string[], text: string): string[] => {
    const stack = [...start];
    let floor = 0;
    let floorLink = "";
    for (const part of text.split("/")) {
      if (part === "" || part === ".") continue;
      if (part === "..") {
        if (floorLink !== "" && stack.length <= floor) {
          fail(`goes up ('..') out of the link '${floorLink}'`);
        }
        if (stack.length === 0) fail(`points outside ${rootName}`);
        const here = stack.join("/");
        const kind = kindOf(`${root}/${here}`);
        if (kind !== "dir") {
          fail(
            `goes up ('..') from '${here}', which ${
              kind === "missing" ? "does not exist yet" : "is not a folder"
            }`,
          );
        }
        stack.pop();
        continue;
      }
      stack.push(part);
      const rel = stack.join("/");
      let text: string | undefined = pending.get(rel);
      if (text === undefined && kindOf(`${root}/${rel}`) === "link") {
        try {
          text = Deno.readLinkSync(`${root}/${rel}`);
        } catch {
          fail(`goes through the link '${rel}', which cannot be read`);
        }
      }
      if (text === undefined) continue;
      if (++hops > MAX_LINK_HOPS) fail(`goes through more than ${MAX_LINK_HOPS} links`);
      stack.pop();
      const resolved = text.startsWith("/") ? absolute(text) : walk(stack, text);
      stack.splice(0, stack.length, ...resolved);
      floor = stack.length;
      floorLink = rel;
    }
    return stack;
  };

  const absolute = (text: string): string[] => {
    for (const r of roots) {
      if (text === r || text.startsWith(`${r}/`)) return walk([], text.slice(r.length));
    }
    return fail(`points outside ${rootName}`);
  };

  return target.startsWith("/") ? absolute(target) : walk(link.path.slice(0, -1), target);
}
