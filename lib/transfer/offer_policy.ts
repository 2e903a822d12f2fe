/**
 * What the receiver makes of an offer, decided in one place for every kind of file offer
 * (pipelined or streamed) so the two paths cannot drift apart: {@linkcode vetOffer} checks
 * the size limit, the path (through `safe_path.ts`), the final name (`--overwrite`,
 * `--rename`), whether another sender is writing it, the free space, and whether the same
 * file may already be there; it returns a target to write, a file to compare, or a
 * {@linkcode Refusal}.
 *
 * @module
 */

import { quote } from "../log.ts";
import { formatBytes } from "./human.ts";
import { type Offer, Reason } from "./protocol.ts";
import { Refusal, toRefusal } from "./refusal.ts";
import {
  findFreeNameSync,
  partialName,
  type ResolvedPath,
  resolveInsideSync,
  splitSafePath,
  UnsafePathError,
} from "./safe_path.ts";
import { freeSpace, resumableLength } from "./partial_file.ts";
import type { ReceiveSettings } from "./receive_options.ts";

/**
 * Files needing less than this (1 MiB) skip the free-space check: a full disk then shows up
 * as a write error (answered with Failed), and small files in a tree save a `statfs` each.
 */
export const FREE_SPACE_CHECK_MIN_BYTES = 1024 * 1024;

/** The checked components of an offer's path; {@linkcode UnsafePathError} for a bad name. */
export function offerComponents(offer: Offer): string[] {
  if (offer.invalid !== undefined) {
    throw new UnsafePathError(`Cannot accept path ${quote(offer.path)}: ${offer.invalid}`);
  }
  return splitSafePath(offer.path);
}

/**
 * The relative path of an entry stored under `name` in the folder of `components`.
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert/strict";
 * import { relName } from "./offer_policy.ts";
 * assert.equal(relName(["a", "b.txt"], "b (1).txt"), "a/b (1).txt");
 * ```
 */
export function relName(components: string[], name: string): string {
  if (components.length === 1) return name;
  return `${components.slice(0, -1).join("/")}/${name}`;
}

/** Where an accepted file offer is written. */
export interface Target {
  /** The offer's checked path components. */
  components: string[];
  /** The real folder it lands in. */
  dir: string;
  /** Its final name in `dir` (after `--rename`). */
  name: string;
  /** Its partial file, `dir/.NAME.sockit-partial`; taken in `inUse` until released. */
  partial: string;
  /**
   * True when the final name was not looked up (a folder this session made): if it turns out
   * taken when the file is placed, {@linkcode takenVerdict} gives the answer a look-up would
   * have given.
   */
  unchecked: boolean;
}

/**
 * The verdict on a file offer: write it to `target` (its partial name is then taken in
 * `inUse`: the caller releases it), compare it with the file `present` at its name, or send
 * the `refusal`.
 */
export type OfferVerdict =
  | { target: Target; present?: undefined; refusal?: undefined }
  | { present: ResolvedPath; target?: undefined; refusal?: undefined }
  | { refusal: Refusal; target?: undefined; present?: undefined };

/** What {@linkcode vetOffer} decides with. */
export interface OfferPolicy {
  /** The session's settings: folder, overwrite, rename, size limit. */
  settings: ReceiveSettings;
  /** Folders known to exist inside the receiving folder (a cache for `resolveInside`). */
  knownDirs: Set<string>;
  /** Folders this session created (their names need no look-up, see `assumeFree`). */
  createdDirs: Set<string>;
  /** Partial files being written by any session of this receiver. */
  inUse: Set<string>;
}

/** Options for {@linkcode vetOffer}. */
export interface VetOptions {
  /** What a partial file already holds counts as written (free-space check). @default {false} */
  resumable?: boolean;
  /**
   * In a folder this session created, take the final name to be free without looking it up
   * (the target is then `unchecked`), unless `--overwrite` (a rename would not refuse a taken
   * name). For pipelined files: saves a syscall per file of a new tree. @default {false}
   */
  assumeFree?: boolean;
}

/**
 * Decides on a file offer: size limit, safe path (parents created), final name, busy, free
 * space (for {@linkcode FREE_SPACE_CHECK_MIN_BYTES} or more; with `options.resumable` what a
 * partial file already holds counts as written), or a same-size file already there.
 */
export async function vetOffer(
  offer: Offer,
  policy: OfferPolicy,
  options: VetOptions = {},
): Promise<OfferVerdict> {
  const { settings, inUse } = policy;
  try {
    const components = offerComponents(offer);
    const max = settings.maxFileSize;
    if (max > 0 && offer.size > max) {
      throw new Refusal(Reason.TooLarge, `${formatBytes(offer.size)} exceeds ${formatBytes(max)}`);
    }
    // Synchronous calls: a tree of small files makes thousands of these quick syscalls.
    const assumeFree = options.assumeFree === true && !settings.overwrite;
    const resolve = (assumeFreeIn?: Set<string>) =>
      resolveInsideSync(settings.dir, components, {
        createParents: true,
        knownDirs: policy.knownDirs,
        createdDirs: policy.createdDirs,
        assumeFreeIn,
      });
    let where = resolve(assumeFree ? policy.createdDirs : undefined);
    // The same name already being written (a duplicate entry): looked up after all, so the
    // answer is the one an existing folder gets.
    if (where.unchecked && inUse.has(`${where.dir}/${partialName(where.name)}`)) where = resolve();
    if (maybePresent(offer, where, settings)) return { present: where };
    const name = finalName(offer, where, settings);
    const partial = `${where.dir}/${partialName(name)}`;
    if (inUse.has(partial)) throw new Refusal(Reason.Busy, "another sender is writing this name");
    if (offer.size >= FREE_SPACE_CHECK_MIN_BYTES) {
      const have = options.resumable ? await resumableLength(partial, offer.size) : 0;
      const need = offer.size - have;
      const free = await freeSpace(where.dir);
      if (free !== null && free < need) {
        throw new Refusal(Reason.NoSpace, `needs ${formatBytes(need)}, ${formatBytes(free)} free`);
      }
    }
    inUse.add(partial);
    return {
      target: { components, dir: where.dir, name, partial, unchecked: where.unchecked === true },
    };
  } catch (error) {
    return { refusal: toRefusal(error) };
  }
}

/**
 * The answer to an offer that met a file of its size: AlreadyThere when the SHA-256s are the
 * `same`, else Exists.
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert/strict";
 * import { presentAnswer } from "./offer_policy.ts";
 * import { Reason } from "./protocol.ts";
 * assert.equal(presentAnswer("a.txt", { same: true }).reason, Reason.AlreadyThere);
 * assert.equal(presentAnswer("a.txt", { same: false }).reason, Reason.Exists);
 * ```
 */
export function presentAnswer(path: string, options: { same: boolean }): Refusal {
  return options.same
    ? new Refusal(Reason.AlreadyThere, "the same file (size and SHA-256) is already there")
    : new Refusal(
      Reason.Exists,
      `${quote(path)} exists with other content (use --overwrite or --rename)`,
    );
}

/**
 * The verdict a look-up would have given for an unchecked target whose final name turned out
 * taken when the file was placed (by an earlier entry of the session, or by another program
 * meanwhile): compare with the file `present` there, or the refusal (Exists). Only without
 * `--overwrite` and `--rename`, where a taken name is refused.
 */
export function takenVerdict(
  offer: Offer,
  target: Target,
  settings: ReceiveSettings,
): { present: ResolvedPath } | { refusal: Refusal } {
  const path = `${target.dir}/${target.name}`;
  let existing: Deno.FileInfo | null = null;
  try {
    existing = Deno.lstatSync(path);
  } catch {
    // Gone again: still refused, as the name was taken when the link was made.
  }
  const where: ResolvedPath = { path, dir: target.dir, name: target.name, existing };
  try {
    if (maybePresent(offer, where, settings)) return { present: where };
    finalName(offer, where, settings);
    return { refusal: new Refusal(Reason.Exists, `${quote(offer.path)} appeared meanwhile`) };
  } catch (error) {
    return { refusal: toRefusal(error) };
  }
}

/** Picks the final name for a file offer, or refuses it. */
function finalName(offer: Offer, where: ResolvedPath, settings: ReceiveSettings): string {
  if (where.existing === null) return where.name;
  if (where.existing.isDirectory) {
    throw new Refusal(Reason.Exists, `${quote(offer.path)} exists and is a folder`);
  }
  if (settings.overwrite) return where.name;
  if (settings.rename) return findFreeNameSync(where.dir, where.name);
  throw new Refusal(Reason.Exists, `${quote(offer.path)} exists (use --overwrite or --rename)`);
}

/**
 * True when an offer meets a file that may be the same (same size, a regular file, no
 * --overwrite or --rename, and a SHA-256 to compare): it is then compared, not refused.
 */
function maybePresent(offer: Offer, where: ResolvedPath, settings: ReceiveSettings): boolean {
  const e = where.existing;
  return e !== null && e.isFile && !e.isSymlink && e.size === offer.size && offer.verify &&
    !settings.overwrite && !settings.rename;
}
