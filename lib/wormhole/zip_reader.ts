/**
 * Extracting a received Magic Wormhole folder: a zip archive from a peer nobody trusts.
 *
 * The central directory is the index. Its end record is searched for in the last 65,557
 * bytes (and must end the file exactly), zip64 end records are followed, and every count,
 * length and offset is checked against the file before anything is allocated for it. Each
 * entry must be stored or deflated, unencrypted, named in UTF-8 by the receiver's path rules
 * (`splitSafePath`: relative, no `..`, no backslash, NUL, control character or drive letter),
 * unique, neither a symlink nor a special file, and its local header must agree with the
 * central one (name, method, flags, and CRC and sizes unless a data descriptor follows).
 * Entries may not overlap (the "better zip bomb"), the declared sizes together may not exceed
 * `maxBytes`, and while inflating an entry stops the moment it produces more than it declared;
 * deflate streams through `node:zlib` in 64 KiB pieces (it honours backpressure, unlike
 * `DecompressionStream`, which hands out a whole chunk's expansion at once). Each entry's
 * CRC-32 and size are verified.
 *
 * Nothing partial appears under the final name: the archive is extracted into a fresh
 * `.NAME.RANDOM.sockit-partial` folder beside it (no entry may name such a folder, so none can
 * reach it), which is renamed to NAME only when every entry verified, and removed on any error.
 * Files get their mode without setuid, setgid and sticky bits, without group and other write
 * (as umask 022 would: a stranger's files are not made writable for everyone) and at least
 * `0o600`, folders at least `0o700`; modification times come from the extended timestamp or
 * the DOS fields.
 *
 * @module
 */

import { syncFolder } from "../transfer/partial_file.ts";
import { createInflateRaw } from "node:zlib";
import { pipeline } from "node:stream/promises";
import { quote } from "../log.ts";
import { writeAll } from "../net/write_all.ts";
import {
  partialName,
  resolveInsideSync,
  splitSafePath,
  UnsafePathError,
} from "../transfer/safe_path.ts";
import {
  CentralHeader,
  crc32,
  decodeMtimeExtra,
  EndRecord,
  ExtraId,
  type FieldsOf,
  Flag,
  fromDosDateTime,
  HostSystem,
  LocalHeader,
  Method,
  readExtras,
  U32_MAX,
  UnixMode,
  ZIP64_END_RECORD_SIZE,
  Zip64End,
  Zip64Locator,
  zip64Values,
  ZIP_LIMITS,
  ZipBombError,
  ZipError,
  ZipPathError,
  ZipTargetExistsError,
  ZipUnsupportedError,
} from "./zip_format.ts";

/** Options for {@linkcode extractZip}. */
export interface ExtractOptions {
  /** The folder to create in `destDir` (the offer's `dirname`): one safe path component. */
  name: string;
  /** Most bytes the entries may expand to in total (the offer's `numbytes`). */
  maxBytes: number;
  /** Most entries the archive may hold (the offer's `numfiles`). */
  maxEntries: number;
  /** Called after each entry is written and verified. */
  onEntry?: (entry: ExtractedEntry) => void;
  /**
   * fsync every file and folder before the folder gets its final name (the caller syncs the
   * folder it is in). @default {false}
   */
  sync?: boolean;
  /** Bytes read from the archive at once. @default {ZIP_LIMITS.chunkBytes} (1 MiB) */
  chunkBytes?: number;
  /** Largest central directory read into memory. @default {ZIP_LIMITS.maxCentralDirectoryBytes} */
  maxCentralDirectoryBytes?: number;
}

/** One entry {@linkcode extractZip} wrote. */
export interface ExtractedEntry {
  /** Its relative `/`-separated path inside the folder. */
  path: string;
  /** File or folder. */
  kind: "file" | "dir";
  /** Its size in bytes (0 for folders). */
  size: number;
}

/** What {@linkcode extractZip} made. */
export interface ExtractResult {
  /** The final folder: `destDir/name`. */
  path: string;
  /** Files written. */
  files: number;
  /** Folders made inside it (listed in the archive or implied by a path). */
  dirs: number;
  /** Bytes written. */
  bytes: number;
}

/** An entry of the central directory, checked. */
interface Entry {
  label: string;
  rawName: Uint8Array;
  components: string[];
  kind: "file" | "dir";
  method: number;
  flags: number;
  crc: number;
  compressedSize: number;
  size: number;
  localOffset: number;
  mode: number;
  mtimeMs: number;
}

const utf8 = new TextDecoder("utf-8", { fatal: true });
const encoder = new TextEncoder();

async function readAt(file: Deno.FsFile, offset: number, length: number): Promise<Uint8Array> {
  const out = new Uint8Array(length);
  await file.seek(offset, Deno.SeekMode.Start);
  let at = 0;
  while (at < length) {
    const n = await file.read(out.subarray(at));
    if (n === null) throw new ZipError("Cannot read the archive: it ends early");
    at += n;
  }
  return out;
}

/** The fields the plain and the zip64 end record share. */
interface EndFields {
  disk: number;
  centralDisk: number;
  diskEntries: number;
  entries: number;
  centralOffset: number;
  centralSize: number;
}

/** Finds the end record (and zip64 end record) and checks where the directory lies. */
async function findCentralDirectory(file: Deno.FsFile, fileSize: number) {
  if (fileSize < EndRecord.size) {
    throw new ZipError(`Cannot read the archive: ${fileSize} bytes is too short for a zip`);
  }
  const tailLength = Math.min(fileSize, ZIP_LIMITS.endSearchBytes);
  const tailStart = fileSize - tailLength;
  const tail = await readAt(file, tailStart, tailLength);
  const view = new DataView(tail.buffer);
  let at = -1;
  for (let i = tailLength - EndRecord.size; i >= 0; i--) {
    if (
      view.getUint32(i, true) === EndRecord.signature &&
      view.getUint16(i + 20, true) === tailLength - i - EndRecord.size
    ) {
      at = i;
      break;
    }
  }
  if (at < 0) {
    throw new ZipError("Cannot read the archive: no end of central directory (truncated?)");
  }
  const end = EndRecord.decode(tail, at);
  const endOffset = tailStart + at;
  let dir: EndFields = end;
  let directoryEnd = endOffset;
  const locatorOffset = endOffset - Zip64Locator.size;
  const locator = locatorOffset < 0 ? null : await readAt(file, locatorOffset, Zip64Locator.size);
  if (locator && new DataView(locator.buffer).getUint32(0, true) === Zip64Locator.signature) {
    const loc = Zip64Locator.decode(locator, 0);
    if (loc.endDisk !== 0 || loc.disks > 1) {
      throw new ZipUnsupportedError("Cannot read the archive: it spans several disks");
    }
    if (loc.endOffset + Zip64End.size > locatorOffset) {
      throw new ZipError("Cannot read the archive: its zip64 end record lies past its locator");
    }
    const z = Zip64End.decode(await readAt(file, loc.endOffset, Zip64End.size), 0);
    if (z.recordSize < ZIP64_END_RECORD_SIZE || loc.endOffset + 12 + z.recordSize > locatorOffset) {
      throw new ZipError("Cannot read the archive: its zip64 end record has a wrong size");
    }
    dir = z;
    directoryEnd = loc.endOffset;
  }
  if (dir.disk !== 0 || dir.centralDisk !== 0 || dir.diskEntries !== dir.entries) {
    throw new ZipUnsupportedError("Cannot read the archive: it spans several disks");
  }
  if (dir.centralOffset + dir.centralSize !== directoryEnd) {
    throw new ZipError(
      `Cannot read the archive: its central directory (offset ${dir.centralOffset}, ` +
        `${dir.centralSize} bytes)` +
        ` does not end where its end record starts (${directoryEnd})`,
    );
  }
  return { entries: dir.entries, offset: dir.centralOffset, size: dir.centralSize };
}

/** The kind, path components and mode of a central header, by the rules in the module doc. */
function checkName(
  h: FieldsOf<typeof CentralHeader>,
  name: string,
  label: string,
) {
  const unix = h.versionMadeBy >> 8 === HostSystem.Unix ? h.externalAttributes >>> 16 : 0;
  const type = unix & UnixMode.TypeMask;
  const kind = name.endsWith("/") ? "dir" : "file";
  if (type === UnixMode.Symlink) {
    throw new ZipPathError(`Cannot extract ${label}: it is a symlink (links are not extracted)`);
  }
  if (type !== 0 && type !== UnixMode.Regular && type !== UnixMode.Directory) {
    throw new ZipPathError(
      `Cannot extract ${label}: it is a special file (mode 0o${unix.toString(8)})`,
    );
  }
  if ((type === UnixMode.Directory) !== (kind === "dir") && type !== 0) {
    throw new ZipError(`Cannot extract ${label}: its mode and its name disagree on folder or file`);
  }
  let components: string[];
  try {
    components = splitSafePath(kind === "dir" ? name.slice(0, -1) : name);
  } catch (error) {
    if (error instanceof UnsafePathError) throw new ZipPathError(error.message, { cause: error });
    throw error;
  }
  const perm = unix !== 0 ? unix & 0o755 : kind === "dir" ? 0o755 : 0o644;
  return { kind, components, mode: perm | (kind === "dir" ? 0o700 : 0o600) } as const;
}

/** Parses and checks one central header's variable part into an entry. */
function centralEntry(
  h: FieldsOf<typeof CentralHeader>,
  rawName: Uint8Array,
  extra: Uint8Array,
): Entry {
  let name: string;
  try {
    name = utf8.decode(rawName);
  } catch {
    throw new ZipPathError(`Cannot extract ${quote(rawName)}: its name is not UTF-8`);
  }
  const label = quote(name);
  if (h.flags & (Flag.Encrypted | Flag.StrongEncryption | Flag.MaskedHeaders)) {
    throw new ZipUnsupportedError(`Cannot extract ${label}: it is encrypted`);
  }
  if (h.method !== Method.Stored && h.method !== Method.Deflated) {
    throw new ZipUnsupportedError(
      `Cannot extract ${label}: compression method ${h.method} (only stored and deflate)`,
    );
  }
  const extras = readExtras(extra, label);
  const next = zip64Values(extras.get(ExtraId.Zip64), label);
  const size = h.size === U32_MAX ? next() : h.size;
  const compressedSize = h.compressedSize === U32_MAX ? next() : h.compressedSize;
  const localOffset = h.localOffset === U32_MAX ? next() : h.localOffset;
  if (h.diskStart !== 0) throw new ZipUnsupportedError(`Cannot extract ${label}: on another disk`);
  const { kind, components, mode } = checkName(h, name, label);
  if (kind === "dir" && size !== 0) {
    throw new ZipError(`Cannot extract ${label}: a folder entry with ${size} bytes of data`);
  }
  if (h.method === Method.Stored && compressedSize !== size) {
    throw new ZipError(`Cannot extract ${label}: stored, but ${compressedSize} bytes for ${size}`);
  }
  const mtimeMs = decodeMtimeExtra(extras.get(ExtraId.ExtendedTimestamp)) ??
    fromDosDateTime(h.date, h.time);
  return {
    label,
    rawName,
    components,
    kind,
    method: h.method,
    flags: h.flags,
    crc: h.crc,
    compressedSize,
    size,
    localOffset,
    mode,
    mtimeMs,
  };
}

/** Reads and checks the whole central directory; the entries come back in archive order. */
async function readEntries(
  file: Deno.FsFile,
  fileSize: number,
  options: ExtractOptions,
): Promise<{ entries: Entry[]; centralOffset: number }> {
  const dir = await findCentralDirectory(file, fileSize);
  if (dir.entries > options.maxEntries) {
    throw new ZipBombError(
      `Cannot extract the archive: ${dir.entries} entries, more than the ${options.maxEntries} allowed`,
    );
  }
  const maxCentral = options.maxCentralDirectoryBytes ?? ZIP_LIMITS.maxCentralDirectoryBytes;
  if (dir.size > maxCentral || dir.entries * CentralHeader.size > dir.size) {
    throw new ZipError(
      `Cannot read the archive: ${dir.entries} entries in a ${dir.size}-byte central directory`,
    );
  }
  const cd = await readAt(file, dir.offset, dir.size);
  const entries: Entry[] = [];
  const seen = new Set<string>();
  let declared = 0;
  let at = 0;
  for (let i = 0; i < dir.entries; i++) {
    const h = CentralHeader.decode(cd, at, `central directory header ${i + 1}`);
    const start = at + CentralHeader.size;
    at = start + h.nameLength + h.extraLength + h.commentLength;
    if (at > cd.length) {
      throw new ZipError(`Cannot read central directory header ${i + 1}: it runs past its end`);
    }
    if (h.nameLength > ZIP_LIMITS.maxNameBytes) {
      throw new ZipPathError(`Cannot read central directory header ${i + 1}: name too long`);
    }
    const nameEnd = start + h.nameLength;
    const e = centralEntry(
      h,
      cd.subarray(start, nameEnd),
      cd.subarray(nameEnd, nameEnd + h.extraLength),
    );
    const key = e.components.join("/");
    if (seen.has(key)) {
      throw new ZipPathError(`Cannot extract ${e.label}: the archive holds it twice`);
    }
    seen.add(key);
    if (e.localOffset + LocalHeader.size > dir.offset) {
      throw new ZipError(`Cannot extract ${e.label}: its local header lies outside the data`);
    }
    declared += e.size;
    entries.push(e);
  }
  if (at !== cd.length) {
    throw new ZipError(
      `Cannot read the archive: ${cd.length - at} central directory bytes follow the ` +
        `${dir.entries} entries its end record declares`,
    );
  }
  if (declared > options.maxBytes) {
    throw new ZipBombError(
      `Cannot extract the archive: its entries declare ${declared} bytes, more than the ` +
        `${options.maxBytes} allowed`,
    );
  }
  const files = new Set(
    entries.filter((e) => e.kind === "file").map((e) => e.components.join("/")),
  );
  for (const e of entries) {
    for (let n = 1; n < e.components.length; n++) {
      const up = e.components.slice(0, n).join("/");
      if (files.has(up)) {
        throw new ZipPathError(`Cannot extract ${e.label}: ${quote(up)} is a file`);
      }
    }
  }
  return { entries, centralOffset: dir.offset };
}

/** Checks an entry's local header against its central one; returns where its data starts. */
async function checkLocalHeader(file: Deno.FsFile, e: Entry, limit: number): Promise<number> {
  const head = await readAt(file, e.localOffset, LocalHeader.size + e.rawName.length);
  const h = LocalHeader.decode(head, 0, `local header of ${e.label}`);
  const name = head.subarray(LocalHeader.size);
  if (h.nameLength !== e.rawName.length || name.some((b, i) => b !== e.rawName[i])) {
    throw new ZipError(`Cannot extract ${e.label}: its local header names ${quote(name)}`);
  }
  if (h.method !== e.method || (h.flags ^ e.flags) & (Flag.DataDescriptor | Flag.Encrypted)) {
    throw new ZipError(`Cannot extract ${e.label}: its local header disagrees on method or flags`);
  }
  const extraStart = e.localOffset + LocalHeader.size + h.nameLength;
  const dataStart = extraStart + h.extraLength;
  if ((h.flags & Flag.DataDescriptor) === 0) {
    let { size, compressedSize } = h;
    if (size === U32_MAX || compressedSize === U32_MAX) {
      if (extraStart + h.extraLength > limit) {
        throw new ZipError(`Cannot extract ${e.label}: its local extra field overruns`);
      }
      const extras = readExtras(await readAt(file, extraStart, h.extraLength), e.label);
      const next = zip64Values(extras.get(ExtraId.Zip64), e.label);
      if (size === U32_MAX) size = next();
      if (compressedSize === U32_MAX) compressedSize = next();
    }
    if (h.crc !== e.crc || size !== e.size || compressedSize !== e.compressedSize) {
      throw new ZipError(`Cannot extract ${e.label}: its local header disagrees on CRC or sizes`);
    }
  }
  if (dataStart + e.compressedSize > limit) {
    throw new ZipError(`Cannot extract ${e.label}: its data overlaps the next entry or the index`);
  }
  return dataStart;
}

/** Counts what an entry produced against its declared size and the archive's budget. */
class Budget {
  total = 0;
  constructor(readonly max: number) {}

  take(e: Entry, entryTotal: number, n: number): void {
    if (entryTotal > e.size) {
      throw new ZipBombError(
        `Cannot extract ${e.label}: it expands beyond the ${e.size} bytes its header declares`,
      );
    }
    this.total += n;
    if (this.total > this.max) {
      throw new ZipBombError(
        `Cannot extract ${e.label}: the archive expands beyond ${this.max} bytes`,
      );
    }
  }
}

async function* readRange(file: Deno.FsFile, start: number, length: number, chunk: number) {
  await file.seek(start, Deno.SeekMode.Start);
  let remaining = length;
  while (remaining > 0) {
    const buf = new Uint8Array(Math.min(chunk, remaining));
    const n = await file.read(buf);
    if (n === null) throw new ZipError("Cannot read the archive: it ends early");
    remaining -= n;
    yield buf.subarray(0, n);
  }
}

/** Writes one entry's data to `out`, checking as it goes; returns its CRC-32 and size. */
async function copyEntry(
  file: Deno.FsFile,
  e: Entry,
  dataStart: number,
  out: Deno.FsFile,
  budget: Budget,
  chunkBytes: number,
): Promise<{ crc: number; size: number }> {
  let crc = 0;
  let size = 0;
  const take = async (chunk: Uint8Array) => {
    size += chunk.length;
    budget.take(e, size, chunk.length);
    crc = crc32(chunk, crc);
    await writeAll(out, chunk);
  };
  const source = readRange(file, dataStart, e.compressedSize, chunkBytes);
  if (e.method === Method.Stored) {
    for await (const chunk of source) await take(chunk);
    return { crc, size };
  }
  try {
    await pipeline(
      source,
      createInflateRaw({ chunkSize: ZIP_LIMITS.inflateChunkBytes }),
      async (inflated: AsyncIterable<Uint8Array>) => {
        for await (const chunk of inflated) await take(chunk);
      },
    );
  } catch (error) {
    const code = (error as { code?: unknown }).code;
    if (typeof code === "string" && code.startsWith("Z_")) {
      throw new ZipError(`Cannot extract ${e.label}: its deflate data is corrupt (${code})`, {
        cause: error,
      });
    }
    throw error;
  }
  return { crc, size };
}

/** A fresh `.NAME.RANDOM.sockit-partial` folder in `root`. */
function makePartialDir(root: string, name: string): string {
  let stem = "";
  for (const ch of name) {
    if (encoder.encode(stem + ch).length > 200) break;
    stem += ch;
  }
  for (;;) {
    const tag = Array.from(
      crypto.getRandomValues(new Uint8Array(4)),
      (b) => b.toString(16).padStart(2, "0"),
    );
    const path = `${root}/${partialName(`${stem}.${tag.join("")}`)}`;
    try {
      Deno.mkdirSync(path, { mode: 0o755 });
      return path;
    } catch (error) {
      if (!(error instanceof Deno.errors.AlreadyExists)) throw error;
    }
  }
}

function exists(path: string): boolean {
  try {
    Deno.lstatSync(path);
    return true;
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return false;
    throw error;
  }
}

function checkFolderName(name: string): void {
  let parts: string[];
  try {
    parts = splitSafePath(name);
  } catch (error) {
    if (error instanceof UnsafePathError) throw new ZipPathError(error.message, { cause: error });
    throw error;
  }
  if (parts.length !== 1) {
    throw new ZipPathError(`Cannot extract into ${quote(name)}: not a single folder name`);
  }
}

/**
 * Extracts the archive at `zipPath` into a new folder `destDir/name`, all or nothing (see the
 * module doc for every check). The final name must not exist: {@linkcode ZipTargetExistsError}
 * otherwise, before anything is written, so the caller picks another name or removes the old
 * folder first. Any other failure is a {@linkcode ZipError} (`ZipBombError`, `ZipPathError`,
 * `ZipUnsupportedError`) naming the entry, after the temporary folder is removed.
 *
 * @example Sending a folder to ourselves
 * ```ts
 * import assert from "node:assert/strict";
 * import { extractZip } from "./zip_reader.ts";
 * import { planFolder, writeZip } from "./zip_writer.ts";
 * import { writeAll } from "../net/write_all.ts";
 * const dir = await Deno.realPath(await Deno.makeTempDir());
 * await Deno.mkdir(`${dir}/photos`);
 * await Deno.writeTextFile(`${dir}/photos/a.txt`, "hello");
 * const { dirname, plan } = await planFolder(`${dir}/photos`);
 * const zip = await Deno.open(`${dir}/in.zip`, { write: true, createNew: true });
 * await writeZip(plan, { write: (c) => writeAll(zip, c) }, { chunkBytes: 64 });
 * zip.close();
 * await Deno.mkdir(`${dir}/in`);
 * const got = await extractZip(`${dir}/in.zip`, `${dir}/in`, {
 *   name: dirname,
 *   maxBytes: plan.numBytes,
 *   maxEntries: plan.numFiles,
 * });
 * assert.deepEqual(got, { path: `${dir}/in/photos`, files: 1, dirs: 0, bytes: 5 });
 * assert.equal(await Deno.readTextFile(`${dir}/in/photos/a.txt`), "hello");
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export async function extractZip(
  zipPath: string,
  destDir: string,
  options: ExtractOptions,
): Promise<ExtractResult> {
  checkFolderName(options.name);
  const root = await Deno.realPath(destDir);
  const finalPath = `${root}/${options.name}`;
  if (exists(finalPath)) throw new ZipTargetExistsError(finalPath);
  const chunkBytes = options.chunkBytes ?? ZIP_LIMITS.chunkBytes;
  using file = await Deno.open(zipPath, { read: true });
  const fileSize = (await file.stat()).size;
  const { entries, centralOffset } = await readEntries(file, fileSize, options);
  const ordered = [...entries].sort((a, b) => a.localOffset - b.localOffset);
  const tmp = makePartialDir(root, options.name);
  try {
    const result = await extractEntries(file, ordered, tmp, options, chunkBytes, centralOffset);
    if (exists(finalPath)) throw new ZipTargetExistsError(finalPath);
    Deno.renameSync(tmp, finalPath);
    return { ...result, path: finalPath };
  } catch (error) {
    try {
      Deno.removeSync(tmp, { recursive: true });
    } catch {
      // Nothing more can be done; the error below says what went wrong.
    }
    throw error;
  }
}

async function extractEntries(
  file: Deno.FsFile,
  ordered: Entry[],
  tmp: string,
  options: ExtractOptions,
  chunkBytes: number,
  centralOffset: number,
): Promise<Omit<ExtractResult, "path">> {
  const knownDirs = new Set<string>();
  const dirs: { path: string; e: Entry }[] = [];
  const budget = new Budget(options.maxBytes);
  let files = 0;
  for (const [i, e] of ordered.entries()) {
    const limit = ordered[i + 1]?.localOffset ?? centralOffset;
    const dataStart = await checkLocalHeader(file, e, limit);
    const where = resolveInsideSync(tmp, e.components, {
      createParents: true,
      dirMode: 0o755,
      knownDirs,
    });
    const path = e.components.join("/");
    if (e.kind === "dir") {
      if (where.existing === null) Deno.mkdirSync(where.path, { mode: 0o700 });
      else if (!where.existing.isDirectory) {
        throw new ZipPathError(`Cannot extract ${e.label}: a file has that name`);
      }
      knownDirs.add(where.path);
      dirs.push({ path: where.path, e });
      options.onEntry?.({ path, kind: "dir", size: 0 });
      continue;
    }
    if (where.existing !== null) {
      throw new ZipPathError(`Cannot extract ${e.label}: a folder has that name`);
    }
    const out = await Deno.open(where.path, { write: true, createNew: true, mode: 0o600 });
    try {
      const got = await copyEntry(file, e, dataStart, out, budget, chunkBytes);
      if (got.size !== e.size) {
        throw new ZipError(
          `Cannot extract ${e.label}: ${got.size} bytes, its header says ${e.size}`,
        );
      }
      if (got.crc !== e.crc) throw new ZipError(`Cannot extract ${e.label}: its CRC-32 is wrong`);
      const mtime = new Date(e.mtimeMs);
      await out.utime(mtime, mtime);
      if (options.sync) await out.sync();
    } finally {
      out.close();
    }
    Deno.chmodSync(where.path, e.mode);
    files++;
    options.onEntry?.({ path, kind: "file", size: e.size });
  }
  // Deepest first, so setting a folder's time is not undone by work inside it.
  dirs.sort((a, b) => b.e.components.length - a.e.components.length);
  for (const { path, e } of dirs) {
    Deno.chmodSync(path, e.mode);
    Deno.utimeSync(path, new Date(e.mtimeMs), new Date(e.mtimeMs));
  }
  if (options.sync) {
    for (const dir of [...knownDirs, tmp]) await syncFolder(dir);
  }
  return { files, dirs: knownDirs.size, bytes: budget.total };
}
