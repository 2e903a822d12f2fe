/**
 * Sending a folder the way Magic Wormhole does: as one zip archive whose exact size goes into
 * the offer (`zipsize`) before its first byte is sent, streamed from the files without holding
 * the folder (or the archive) in memory.
 *
 * That size is known in advance because every entry is stored (method 0): an entry takes its
 * local header, its bytes and a data descriptor, and each of those has a size fixed by the
 * entry's name and length. The CRC-32, the one value that needs the data, is computed while
 * streaming and written in the data descriptor (flag bit 3) and the central directory. Names
 * are UTF-8 (flag bit 11); the unix mode goes into the external attributes (made by unix) and
 * the modification time into the DOS fields and an extended timestamp block. Zip64 fields and
 * end records are used when a size or offset reaches 4 GiB or there are 65,535 entries or
 * more, and the size computation includes them.
 *
 * A file that changes size between {@linkcode planZip} and {@linkcode writeZip} stops the
 * writer with a {@linkcode ZipSourceChangedError}: it never emits more bytes than planned, nor
 * an archive of another size.
 *
 * @module
 */

import { concatBytes } from "../net/bytes.ts";
import { quote } from "../log.ts";
import { EntryKind } from "../transfer/protocol.ts";
import { splitSafePath, UnsafePathError } from "../transfer/safe_path.ts";
import { collectEntries, type SkippedEntry } from "../transfer/walk.ts";
import {
  CentralHeader,
  crc32,
  DataDescriptor,
  DataDescriptor64,
  DOS_DIRECTORY_ATTRIBUTE,
  EndRecord,
  Flag,
  LocalHeader,
  Method,
  MTIME_EXTRA_BYTES,
  toDosDateTime,
  U16_MAX,
  U32_MAX,
  UnixMode,
  VERSION_MADE_BY,
  VERSION_NEEDED,
  VERSION_NEEDED_ZIP64,
  writeMtimeExtra,
  writeZip64Extra,
  ZIP64_END_RECORD_SIZE,
  Zip64End,
  zip64ExtraBytes,
  Zip64Locator,
  ZIP_LIMITS,
  ZipError,
  ZipPathError,
  ZipSourceChangedError,
} from "./zip_format.ts";

/** One entry to put in the archive. */
export interface ZipEntryPlan {
  /** Relative `/`-separated path inside the folder (no trailing `/` for folders). */
  path: string;
  /** A file (data follows) or a folder (no data). */
  kind: "file" | "dir";
  /** Size in bytes (0 for folders). */
  size: number;
  /** Permission bits (only `0o777` is kept; folders always get `0o700`). */
  mode: number;
  /** Modification time in ms since the epoch. */
  mtimeMs: number;
  /** Absolute path of the file to read (files only). */
  source?: string;
}

/** An entry with its place in the archive, as {@linkcode planZip} laid it out. */
export interface PlannedEntry extends Readonly<ZipEntryPlan> {
  /** The name as stored: UTF-8, folders with a trailing `/`. */
  readonly name: Uint8Array;
  /** Offset of its local header. */
  readonly offset: number;
  /** Its sizes live in zip64 fields (and its data descriptor has 64-bit sizes). */
  readonly zip64: boolean;
  /** Its local header offset lives in a zip64 field of the central directory. */
  readonly zip64Offset: boolean;
}

/** The archive's layout, computed from names and sizes alone. */
export interface ZipPlan {
  /** Exact size of the archive in bytes: the offer's `zipsize`. */
  readonly zipSize: number;
  /** Total bytes of the files: the offer's `numbytes`. */
  readonly numBytes: number;
  /**
   * Entries in the archive, files and folders: the offer's `numfiles` (wormhole-william's
   * receiver refuses an archive whose entry count differs from it).
   */
  readonly numFiles: number;
  /** The entries in archive order. */
  readonly entries: readonly PlannedEntry[];
  /** Offset of the central directory. */
  readonly centralOffset: number;
  /** Size of the central directory. */
  readonly centralSize: number;
  /** The archive ends with zip64 end records. */
  readonly zip64: boolean;
}

/** Options for {@linkcode planZip}. */
export interface PlanOptions {
  /** Use zip64 fields and end records even where nothing overflows (for tests). @default {false} */
  forceZip64?: boolean;
}

/** Where {@linkcode writeZip} puts the archive. */
export interface ZipSink {
  /** Takes one chunk; the writer never touches a chunk again once it is handed over. */
  write(chunk: Uint8Array): Promise<void>;
}

/** Options for {@linkcode writeZip}. */
export interface WriteZipOptions {
  /** Bytes per chunk handed to the sink. @default {ZIP_LIMITS.chunkBytes} (1 MiB) */
  chunkBytes?: number;
  /** Stops the writer (it rejects with the signal's reason) between chunks. */
  signal?: AbortSignal;
}

const encoder = new TextEncoder();

/** The 64-bit values a central header carries in its zip64 block, in APPNOTE 4.5.3 order. */
function wideValues(e: PlannedEntry): number[] {
  return [...(e.zip64 ? [e.size, e.size] : []), ...(e.zip64Offset ? [e.offset] : [])];
}

/** Bytes of `e`'s local header, name and extra field. */
function localLength(e: PlannedEntry): number {
  return LocalHeader.size + e.name.length + MTIME_EXTRA_BYTES + zip64ExtraBytes(e.zip64 ? 2 : 0);
}

/** Bytes of `e`'s central header, name and extra field. */
function centralLength(e: PlannedEntry): number {
  return CentralHeader.size + e.name.length + MTIME_EXTRA_BYTES +
    zip64ExtraBytes(wideValues(e).length);
}

/** Checks that a header came out as long as planned: the archive's size depends on it. */
function planned(out: Uint8Array, end: number): Uint8Array {
  if (end !== out.length) {
    throw new Error(`zip writer bug: header of ${end} bytes, planned ${out.length}`);
  }
  return out;
}

function localHeader(e: PlannedEntry): Uint8Array {
  const out = new Uint8Array(localLength(e));
  const { date, time } = toDosDateTime(e.mtimeMs);
  const extraStart = LocalHeader.size + e.name.length;
  // With a data descriptor the local CRC and sizes are zero; zip64 saturates the 32-bit
  // sizes and puts the (zero) 64-bit ones in its block, as APPNOTE 4.5.3 asks.
  LocalHeader.encodeInto(
    {
      versionNeeded: e.zip64 ? VERSION_NEEDED_ZIP64 : VERSION_NEEDED,
      flags: Flag.Utf8 | (e.kind === "file" ? Flag.DataDescriptor : 0),
      method: Method.Stored,
      time,
      date,
      crc: 0,
      compressedSize: e.zip64 ? U32_MAX : 0,
      size: e.zip64 ? U32_MAX : 0,
      nameLength: e.name.length,
      extraLength: out.length - extraStart,
    },
    out,
    0,
  );
  out.set(e.name, LocalHeader.size);
  const at = writeMtimeExtra(out, extraStart, e.mtimeMs);
  return planned(out, writeZip64Extra(out, at, e.zip64 ? [0, 0] : []));
}

function dataDescriptor(e: PlannedEntry, crc: number): Uint8Array {
  const layout = e.zip64 ? DataDescriptor64 : DataDescriptor;
  return layout.encode({ crc, compressedSize: e.size, size: e.size });
}

function externalAttributes(e: ZipEntryPlan): number {
  if (e.kind === "dir") {
    const mode = UnixMode.Directory | (e.mode & 0o777) | 0o700;
    return ((mode << 16) | DOS_DIRECTORY_ATTRIBUTE) >>> 0;
  }
  return ((UnixMode.Regular | (e.mode & 0o777)) << 16) >>> 0;
}

function centralHeader(e: PlannedEntry, crc: number): Uint8Array {
  const out = new Uint8Array(centralLength(e));
  const { date, time } = toDosDateTime(e.mtimeMs);
  const extraStart = CentralHeader.size + e.name.length;
  CentralHeader.encodeInto(
    {
      versionMadeBy: VERSION_MADE_BY,
      versionNeeded: e.zip64 || e.zip64Offset ? VERSION_NEEDED_ZIP64 : VERSION_NEEDED,
      flags: Flag.Utf8 | (e.kind === "file" ? Flag.DataDescriptor : 0),
      method: Method.Stored,
      time,
      date,
      crc,
      compressedSize: e.zip64 ? U32_MAX : e.size,
      size: e.zip64 ? U32_MAX : e.size,
      nameLength: e.name.length,
      extraLength: out.length - extraStart,
      commentLength: 0,
      diskStart: 0,
      internalAttributes: 0,
      externalAttributes: externalAttributes(e),
      localOffset: e.zip64Offset ? U32_MAX : e.offset,
    },
    out,
    0,
  );
  out.set(e.name, CentralHeader.size);
  const at = writeMtimeExtra(out, extraStart, e.mtimeMs);
  return planned(out, writeZip64Extra(out, at, wideValues(e)));
}

function endRecords(plan: ZipPlan): Uint8Array {
  const n = plan.entries.length;
  const parts: Uint8Array[] = [];
  if (plan.zip64) {
    parts.push(Zip64End.encode({
      recordSize: ZIP64_END_RECORD_SIZE,
      versionMadeBy: VERSION_MADE_BY,
      versionNeeded: VERSION_NEEDED_ZIP64,
      disk: 0,
      centralDisk: 0,
      diskEntries: n,
      entries: n,
      centralSize: plan.centralSize,
      centralOffset: plan.centralOffset,
    }));
    parts.push(Zip64Locator.encode({
      endDisk: 0,
      endOffset: plan.centralOffset + plan.centralSize,
      disks: 1,
    }));
  }
  parts.push(EndRecord.encode({
    disk: 0,
    centralDisk: 0,
    diskEntries: plan.zip64 ? U16_MAX : n,
    entries: plan.zip64 ? U16_MAX : n,
    centralSize: plan.zip64 ? U32_MAX : plan.centralSize,
    centralOffset: plan.zip64 ? U32_MAX : plan.centralOffset,
    commentLength: 0,
  }));
  return concatBytes(...parts);
}

function checkEntry(e: ZipEntryPlan, seen: Set<string>): void {
  try {
    splitSafePath(e.path);
  } catch (error) {
    if (error instanceof UnsafePathError) throw new ZipPathError(error.message, { cause: error });
    throw error;
  }
  if (seen.has(e.path)) throw new ZipPathError(`Cannot plan ${quote(e.path)}: listed twice`);
  seen.add(e.path);
  if (!Number.isSafeInteger(e.size) || e.size < 0 || (e.kind === "dir" && e.size !== 0)) {
    throw new ZipError(`Cannot plan ${quote(e.path)}: bad size ${e.size}`);
  }
  if (e.kind === "file" && !e.source) {
    throw new ZipError(`Cannot plan ${quote(e.path)}: a file needs a source path`);
  }
}

/**
 * Lays out the archive for `entries` (in the order given; folders may be listed or implied)
 * and computes its exact size. Throws {@linkcode ZipPathError} for an unsafe or repeated path.
 *
 * @example An empty file and a folder
 * ```ts
 * import assert from "node:assert/strict";
 * import { planZip } from "./zip_writer.ts";
 * const plan = planZip([
 *   { path: "docs", kind: "dir", size: 0, mode: 0o755, mtimeMs: 0 },
 *   { path: "docs/a.txt", kind: "file", size: 5, mode: 0o644, mtimeMs: 0, source: "/x/a.txt" },
 * ]);
 * assert.equal(plan.numFiles, 2);
 * assert.equal(plan.numBytes, 5);
 * assert.equal(plan.entries[1].offset, 30 + 5 + 9);
 * ```
 */
export function planZip(entries: readonly ZipEntryPlan[], options: PlanOptions = {}): ZipPlan {
  const force = options.forceZip64 ?? false;
  const seen = new Set<string>();
  const entriesOut: PlannedEntry[] = [];
  let offset = 0;
  let numBytes = 0;
  for (const e of entries) {
    checkEntry(e, seen);
    const p: PlannedEntry = {
      ...e,
      name: encoder.encode(e.kind === "dir" ? `${e.path}/` : e.path),
      offset,
      zip64: force || e.size >= U32_MAX,
      zip64Offset: force || offset >= U32_MAX,
    };
    if (p.name.length > ZIP_LIMITS.maxNameBytes) {
      throw new ZipPathError(`Cannot plan ${quote(e.path)}: longer than the name limit`);
    }
    entriesOut.push(p);
    offset += localLength(p) + e.size;
    if (e.kind === "file") offset += p.zip64 ? DataDescriptor64.size : DataDescriptor.size;
    numBytes += e.size;
  }
  let centralSize = 0;
  for (const p of entriesOut) centralSize += centralLength(p);
  const zip64 = force || entriesOut.length >= U16_MAX || centralSize >= U32_MAX ||
    offset >= U32_MAX;
  const ends = (zip64 ? Zip64End.size + Zip64Locator.size : 0) + EndRecord.size;
  return {
    zipSize: offset + centralSize + ends,
    numBytes,
    numFiles: entriesOut.length,
    entries: entriesOut,
    centralOffset: offset,
    centralSize,
    zip64,
  };
}

/** Collects bytes into fresh chunks of a fixed size and hands each full one to the sink. */
class ChunkedSink {
  #sink: ZipSink;
  #size: number;
  #buf: Uint8Array;
  #fill = 0;
  #flushed = 0;

  constructor(sink: ZipSink, size: number) {
    this.#sink = sink;
    this.#size = size;
    this.#buf = new Uint8Array(size);
  }

  /** Bytes accepted so far (flushed or buffered). */
  get position(): number {
    return this.#flushed + this.#fill;
  }

  async put(bytes: Uint8Array): Promise<void> {
    let at = 0;
    while (at < bytes.length) {
      const room = await this.space();
      const n = Math.min(room.length, bytes.length - at);
      room.set(bytes.subarray(at, at + n));
      this.commit(n);
      at += n;
    }
  }

  /** The free tail of the current chunk (flushing a full one first). */
  async space(): Promise<Uint8Array> {
    if (this.#fill === this.#size) await this.flush();
    return this.#buf.subarray(this.#fill);
  }

  commit(n: number): void {
    this.#fill += n;
  }

  async flush(): Promise<void> {
    if (this.#fill === 0) return;
    const chunk = this.#buf.subarray(0, this.#fill);
    this.#flushed += this.#fill;
    this.#buf = new Uint8Array(this.#size);
    this.#fill = 0;
    await this.#sink.write(chunk);
  }
}

async function openSource(e: PlannedEntry): Promise<Deno.FsFile> {
  const changed = (why: string, cause?: unknown) =>
    new ZipSourceChangedError(`Cannot send ${quote(e.path)}: ${why}`, { cause });
  let file: Deno.FsFile;
  try {
    file = await Deno.open(e.source!, { read: true });
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) throw changed("it was removed", error);
    throw error;
  }
  const info = await file.stat();
  if (!info.isFile || info.size !== e.size) {
    file.close();
    throw changed(
      info.isFile ? `its size changed from ${e.size} to ${info.size} bytes` : "not a file now",
    );
  }
  return file;
}

const probe = new Uint8Array(1);

/** Streams exactly `e.size` bytes of `file` into `out` and returns their CRC-32. */
async function copySource(
  file: Deno.FsFile,
  e: PlannedEntry,
  out: ChunkedSink,
  signal: AbortSignal | undefined,
): Promise<number> {
  let crc = 0;
  let remaining = e.size;
  while (remaining > 0) {
    signal?.throwIfAborted();
    const room = await out.space();
    const n = await file.read(room.subarray(0, Math.min(remaining, room.length)));
    if (n === null) {
      throw new ZipSourceChangedError(
        `Cannot send ${quote(e.path)}: it shrank below ${e.size} bytes while being sent`,
      );
    }
    crc = crc32(room.subarray(0, n), crc);
    out.commit(n);
    remaining -= n;
  }
  if (await file.read(probe) !== null) {
    throw new ZipSourceChangedError(
      `Cannot send ${quote(e.path)}: it grew beyond ${e.size} bytes while being sent`,
    );
  }
  return crc;
}

/**
 * Streams the archive of `plan` into `sink`: exactly `plan.zipSize` bytes, in chunks of
 * `chunkBytes`. Throws {@linkcode ZipSourceChangedError} if a file changed size (then fewer
 * bytes than planned were written and the transfer must be abandoned).
 *
 * @example Writing an archive into memory
 * ```ts
 * import assert from "node:assert/strict";
 * import { planZip, writeZip } from "./zip_writer.ts";
 * const plan = planZip([{ path: "empty", kind: "dir", size: 0, mode: 0o755, mtimeMs: 0 }]);
 * const chunks: Uint8Array[] = [];
 * await writeZip(plan, { write: (c) => Promise.resolve(void chunks.push(c)) });
 * assert.equal(chunks.reduce((n, c) => n + c.length, 0), plan.zipSize);
 * ```
 */
export async function writeZip(
  plan: ZipPlan,
  sink: ZipSink,
  options: WriteZipOptions = {},
): Promise<void> {
  const out = new ChunkedSink(sink, options.chunkBytes ?? ZIP_LIMITS.chunkBytes);
  const crcs = new Uint32Array(plan.entries.length);
  for (const [i, e] of plan.entries.entries()) {
    options.signal?.throwIfAborted();
    if (e.kind === "dir") {
      await out.put(localHeader(e));
      continue;
    }
    using file = await openSource(e);
    await out.put(localHeader(e));
    crcs[i] = await copySource(file, e, out, options.signal);
    await out.put(dataDescriptor(e, crcs[i]));
  }
  for (const [i, e] of plan.entries.entries()) await out.put(centralHeader(e, crcs[i]));
  await out.put(endRecords(plan));
  if (out.position !== plan.zipSize) {
    throw new Error(`zip writer bug: ${out.position} bytes written, ${plan.zipSize} planned`);
  }
  await out.flush();
}

/** Options for {@linkcode planFolder}. */
export interface FolderPlanOptions extends PlanOptions {
  /**
   * Which folders get an entry of their own. `"none"`: no folder entries, as the Python and Go
   * senders write them: folders are implied by their files' paths, and an empty folder is
   * left out (listed in `skipped`). wormhole-william's receiver (1.0.x) writes a folder entry
   * as an empty file (exit 0), and nothing tells it apart from the Python client (both send
   * empty `app_versions`), so no folder entries is the one choice that is right for every
   * receiver. `"empty"`: only folders with nothing under them (the Python receiver and
   * sockit's keep them; wormhole-william makes them empty files). `"all"`: every folder,
   * carrying each folder's mode and time. @default {"none"}
   */
  directories?: "none" | "empty" | "all";
}

/** What {@linkcode planFolder} found: the offer's `dirname`, the plan, and what it left out. */
export interface FolderPlan {
  /** The folder's own name: the offer's `dirname`. */
  dirname: string;
  /** The archive's layout. */
  plan: ZipPlan;
  /** Entries left out (symlinks, unsendable names), each with the reason. */
  skipped: SkippedEntry[];
}

/**
 * Plans the archive of the folder at `path`, with entries named relative to it (as the other
 * clients do). Walks it with `collectEntries` (sorted, never following links); symlinks are
 * skipped and reported, because a Wormhole folder carries no links and following them could
 * send files from outside the folder. Names the receiver's path rules would refuse (control
 * characters, backslashes) are skipped with the reason, a folder's with its contents.
 *
 * @example A folder with one file and one empty folder
 * ```ts
 * import assert from "node:assert/strict";
 * import { planFolder } from "./zip_writer.ts";
 * const dir = await Deno.makeTempDir();
 * await Deno.mkdir(`${dir}/photos/empty`, { recursive: true });
 * await Deno.writeTextFile(`${dir}/photos/a.txt`, "hello");
 * const { dirname, plan, skipped } = await planFolder(`${dir}/photos`);
 * assert.equal(dirname, "photos");
 * assert.deepEqual(plan.entries.map((e) => e.path), ["a.txt"]);
 * assert.equal(plan.numBytes, 5);
 * assert.deepEqual(skipped.map((s) => s.path), ["photos/empty"]);
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export async function planFolder(
  path: string,
  options: FolderPlanOptions = {},
): Promise<FolderPlan> {
  const info = await Deno.stat(path);
  if (!info.isDirectory) throw new ZipError(`Cannot send ${quote(path)} as a folder: not one`);
  const walk = await collectEntries([path]);
  const [root, ...rest] = walk.entries;
  const prefix = `${root.path}/`;
  const skipped = [...walk.skipped];
  const kept: ZipEntryPlan[] = [];
  let skipUnder: string | null = null;
  for (const e of rest) {
    const rel = e.path.slice(prefix.length);
    // The walk lists a folder's contents right after it, so one prefix suffices.
    if (skipUnder !== null && rel.startsWith(skipUnder)) continue;
    skipUnder = null;
    if (e.kind === EntryKind.Symlink) {
      skipped.push({ path: e.source, reason: "a symlink (a Wormhole folder carries no links)" });
      continue;
    }
    try {
      splitSafePath(rel);
    } catch (error) {
      if (!(error instanceof UnsafePathError)) throw error;
      skipped.push({ path: e.source, reason: error.message });
      if (e.kind === EntryKind.Directory) skipUnder = `${rel}/`;
      continue;
    }
    const kind = e.kind === EntryKind.Directory ? "dir" : "file";
    kept.push({
      path: rel,
      kind,
      size: e.size,
      mode: e.mode,
      mtimeMs: e.mtimeMs,
      source: e.source,
    });
  }
  const directories = options.directories ?? "none";
  const entries = kept.filter((e, i) => {
    if (e.kind === "file" || directories === "all") return true;
    const empty = !(kept[i + 1]?.path.startsWith(`${e.path}/`));
    if (empty && directories === "none") {
      skipped.push({
        path: `${root.path}/${e.path}`,
        reason: "empty folder (a zip for another client carries no folder entries)",
      });
    }
    return empty && directories === "empty";
  });
  return { dirname: root.path, plan: planZip(entries, options), skipped };
}
