import { concatBytes } from "../lib/net/bytes.ts";
import assert from "node:assert/strict";
import { deflateRawSync } from "node:zlib";
import { peerTest, pseudoRandomBytes, tempTree } from "./_helpers.ts";
import { DEBIAN_PYTHON, missingPythonModule, wormholeTest } from "./_wormhole.ts";
import { writeAll } from "../lib/net/write_all.ts";
import { type ExtractOptions, extractZip } from "../lib/wormhole/zip_reader.ts";
import {
  planFolder,
  planZip,
  writeZip,
  type ZipPlan,
  type ZipSink,
} from "../lib/wormhole/zip_writer.ts";
import {
  CentralHeader,
  crc32,
  EndRecord,
  Flag,
  LocalHeader,
  Method,
  ZipBombError,
  ZipError,
  ZipPathError,
  ZipSourceChangedError,
  ZipTargetExistsError,
  ZipUnsupportedError,
} from "../lib/wormhole/zip_format.ts";

const encoder = new TextEncoder();
const NON_ASCII = "héllo wörld ☃ 日本.txt";
const FIXED_MTIME = new Date("2021-06-15T10:20:30Z");

/** A folder `root/tree` with nested and empty folders, an empty file, a non-ASCII name and 3 MiB. */
async function makeTree(root: string): Promise<string> {
  const tree = `${root}/tree`;
  await Deno.mkdir(`${tree}/sub/deeper/empty-inside`, { recursive: true });
  await Deno.mkdir(`${tree}/empty`);
  await Deno.writeTextFile(`${tree}/a.txt`, "hello\n");
  await Deno.writeFile(`${tree}/zero`, new Uint8Array(0));
  await Deno.writeFile(`${tree}/sub/big.bin`, pseudoRandomBytes(3 * 1024 * 1024 + 17, 7));
  await Deno.chmod(`${tree}/sub/big.bin`, 0o750);
  await Deno.writeTextFile(`${tree}/sub/${NON_ASCII}`, "unicode\n");
  await Deno.writeTextFile(`${tree}/sub/deeper/run.sh`, "#!/bin/sh\necho hi\n");
  await Deno.chmod(`${tree}/sub/deeper/run.sh`, 0o755);
  await Deno.utime(`${tree}/a.txt`, FIXED_MTIME, FIXED_MTIME);
  return tree;
}

interface Node {
  kind: "file" | "dir";
  mode: number;
  data?: string;
  mtime?: number;
}

/** Every entry under `dir`: kind, permission bits, contents (hex digest) and file mtime (s). */
async function snapshot(dir: string, options: { files?: boolean } = {}) {
  const out: Record<string, Node> = {};
  const walk = async (rel: string) => {
    for await (const e of Deno.readDir(rel ? `${dir}/${rel}` : dir)) {
      const path = rel ? `${rel}/${e.name}` : e.name;
      const info = await Deno.lstat(`${dir}/${path}`);
      if (info.isDirectory) {
        if (!options.files) out[path] = { kind: "dir", mode: info.mode! & 0o7777 };
        await walk(path);
      } else {
        const digest = await crypto.subtle.digest("SHA-256", await Deno.readFile(`${dir}/${path}`));
        out[path] = {
          kind: "file",
          mode: info.mode! & 0o7777,
          data: Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, "0")).join(""),
          mtime: Math.floor(info.mtime!.getTime() / 1000),
        };
      }
    }
  };
  await walk("");
  return out;
}

async function list(dir: string): Promise<string[]> {
  const names: string[] = [];
  for await (const e of Deno.readDir(dir)) names.push(e.name);
  return names.sort();
}

/** Writes the archive of `plan` to `path`; returns the bytes the sink received. */
async function writeArchive(plan: ZipPlan, path: string, chunkBytes?: number): Promise<number> {
  using file = await Deno.open(path, { write: true, create: true, truncate: true });
  let n = 0;
  await writeZip(plan, {
    write: async (chunk) => {
      n += chunk.length;
      await writeAll(file, chunk);
    },
  }, { chunkBytes });
  return n;
}

async function python(script: string, ...args: string[]): Promise<string> {
  const out = await new Deno.Command(DEBIAN_PYTHON, {
    args: ["-c", script, ...args],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder().decode(out.stdout);
  assert.ok(out.success, `python failed: ${new TextDecoder().decode(out.stderr)}`);
  return text;
}

interface HandEntry {
  name: string;
  /** The bytes stored in the archive (already deflated for method 8). */
  payload: Uint8Array;
  method?: number;
  /** Declared uncompressed size (default: the payload's length). */
  size?: number;
  crc?: number;
  unixMode?: number;
  /** Local header offset the central directory claims (default: the real one). */
  localOffset?: number;
  /** Declared compressed size (default: the payload's length). */
  compressedSize?: number;
}

/**
 * A zip built field by field, so a test can make it lie. Flag bit 3 is set, so the local
 * headers carry no CRC or sizes and only the central directory's are checked.
 */
function handZip(entries: HandEntry[]): Uint8Array {
  const locals: Uint8Array[] = [];
  const centrals: Uint8Array[] = [];
  let offset = 0;
  for (const e of entries) {
    const name = encoder.encode(e.name);
    const method = e.method ?? Method.Stored;
    const flags = Flag.Utf8 | Flag.DataDescriptor;
    const common = { versionNeeded: 20, flags, method, time: 0, date: 33 };
    const local = concatBytes(
      LocalHeader.encode({
        ...common,
        crc: 0,
        compressedSize: 0,
        size: 0,
        nameLength: name.length,
        extraLength: 0,
      }),
      name,
      e.payload,
    );
    centrals.push(concatBytes(
      CentralHeader.encode({
        ...common,
        versionMadeBy: 0x031e,
        crc: e.crc ?? crc32(e.payload),
        compressedSize: e.compressedSize ?? e.payload.length,
        size: e.size ?? e.payload.length,
        nameLength: name.length,
        extraLength: 0,
        commentLength: 0,
        diskStart: 0,
        internalAttributes: 0,
        externalAttributes: ((e.unixMode ?? 0o100644) << 16) >>> 0,
        localOffset: e.localOffset ?? offset,
      }),
      name,
    ));
    locals.push(local);
    offset += local.length;
  }
  const cd = concatBytes(...centrals);
  const end = EndRecord.encode({
    disk: 0,
    centralDisk: 0,
    diskEntries: entries.length,
    entries: entries.length,
    centralSize: cd.length,
    centralOffset: offset,
    commentLength: 0,
  });
  return concatBytes(...locals, cd, end);
}

const LIMITS = { name: "got", maxBytes: 64 * 1024 * 1024, maxEntries: 1000 };

/**
 * Extracting `zip` fails with `errorClass` and a message matching `message`, and leaves the
 * destination folder empty (no temporary folder) and its parent as it was.
 */
async function assertRefused(
  zip: Uint8Array,
  errorClass: typeof ZipError,
  message: RegExp,
  options: Partial<ExtractOptions> = {},
): Promise<void> {
  await using t = await tempTree("sockit-zip-");
  await Deno.writeFile(`${t.base}/in.zip`, zip);
  await assert.rejects(
    extractZip(`${t.base}/in.zip`, t.out, { ...LIMITS, ...options }),
    (error: Error) => {
      assert.ok(error instanceof errorClass, `expected ${errorClass.name}, got ${error.stack}`);
      assert.match(error.message, message);
      return true;
    },
  );
  assert.deepEqual(await list(t.out), []);
  assert.deepEqual(await list(t.base), ["in.zip", "out", "src"]);
}

async function ourArchive(): Promise<Uint8Array> {
  await using t = await tempTree("sockit-zip-");
  await Deno.writeTextFile(`${t.src}/one.txt`, "first file\n");
  await Deno.writeTextFile(`${t.src}/two.txt`, "second file\n");
  const { plan } = await planFolder(t.src);
  await writeArchive(plan, `${t.base}/a.zip`);
  return await Deno.readFile(`${t.base}/a.zip`);
}

// --- writer ---------------------------------------------------------------------------------

Deno.test("writeZip() round trip through extractZip() is byte-identical, with modes, times and empty folders", async () => {
  await using t = await tempTree("sockit-zip-");
  const tree = await makeTree(t.src);
  const { dirname, plan, skipped } = await planFolder(tree, { directories: "all" });
  assert.equal(dirname, "tree");
  assert.deepEqual(skipped, []);
  const written = await writeArchive(plan, `${t.base}/tree.zip`);
  assert.equal(written, plan.zipSize);
  assert.equal((await Deno.stat(`${t.base}/tree.zip`)).size, plan.zipSize);
  assert.equal(plan.numBytes, 3 * 1024 * 1024 + 17 + 6 + 8 + 18);
  assert.equal(plan.numFiles, 9); // 5 files and 4 folders
  const seen: string[] = [];
  const got = await extractZip(`${t.base}/tree.zip`, t.out, {
    name: dirname,
    maxBytes: plan.numBytes,
    maxEntries: plan.numFiles,
    onEntry: (e) => seen.push(e.path),
    sync: true,
  });
  assert.deepEqual(got, { path: `${t.out}/tree`, files: 5, dirs: 4, bytes: plan.numBytes });
  assert.equal(seen.length, plan.numFiles);
  assert.deepEqual(await snapshot(`${t.out}/tree`), await snapshot(tree));
  const mtime = (await Deno.stat(`${t.out}/tree/a.txt`)).mtime!;
  assert.equal(mtime.getTime(), FIXED_MTIME.getTime());
  assert.deepEqual(await list(t.out), ["tree"]);
});

Deno.test("planFolder() writes no folder entries by default and lists empty folders as skipped", async () => {
  await using t = await tempTree("sockit-zip-");
  const tree = await makeTree(t.src);
  const byDefault = await planFolder(tree);
  assert.deepEqual(byDefault.plan.entries.filter((e) => e.kind === "dir"), []);
  assert.deepEqual(
    byDefault.skipped.map((s) => s.path).filter((p) => p.includes("empty")).length,
    2,
  );
});

Deno.test('planFolder() with directories: "empty" gives only empty folders an entry', async () => {
  await using t = await tempTree("sockit-zip-");
  const tree = await makeTree(t.src);
  const { plan } = await planFolder(tree, { directories: "empty" });
  const dirs = plan.entries.filter((e) => e.kind === "dir").map((e) => e.path);
  assert.deepEqual(dirs, ["empty", "sub/deeper/empty-inside"]);
  assert.equal(plan.numFiles, 7);
  assert.equal(await writeArchive(plan, `${t.base}/tree.zip`), plan.zipSize);
  await extractZip(`${t.base}/tree.zip`, t.out, {
    name: "tree",
    maxBytes: plan.numBytes,
    maxEntries: plan.numFiles,
  });
  // Implied folders get the default mode, so compare files, and the empty folders exist.
  assert.deepEqual(
    await snapshot(`${t.out}/tree`, { files: true }),
    await snapshot(tree, { files: true }),
  );
  assert.ok((await Deno.stat(`${t.out}/tree/sub/deeper/empty-inside`)).isDirectory);
});

Deno.test("writeZip() emits the same bytes whatever the chunk size", async () => {
  await using t = await tempTree("sockit-zip-");
  const tree = await makeTree(t.src);
  const { plan } = await planFolder(tree, { directories: "all" });
  const archives: Uint8Array[] = [];
  for (const chunkBytes of [997, 4096, 1 << 20]) {
    const chunks: Uint8Array[] = [];
    const sink: ZipSink = { write: (c) => Promise.resolve(void chunks.push(c)) };
    await writeZip(plan, sink, { chunkBytes });
    assert.ok(chunks.slice(0, -1).every((c) => c.length === chunkBytes));
    archives.push(concatBytes(...chunks));
  }
  assert.equal(archives[0].length, plan.zipSize);
  assert.deepEqual(archives[0], archives[1]);
  assert.deepEqual(archives[1], archives[2]);
});

Deno.test("planFolder() skips symlinks and says why", async () => {
  await using t = await tempTree("sockit-zip-");
  await Deno.mkdir(`${t.src}/tree`);
  await Deno.writeTextFile(`${t.src}/tree/real.txt`, "real\n");
  await Deno.symlink("real.txt", `${t.src}/tree/inside-link`);
  await Deno.symlink("/etc/passwd", `${t.src}/tree/outside-link`);
  const { plan, skipped } = await planFolder(`${t.src}/tree`);
  assert.deepEqual(plan.entries.map((e) => e.path), ["real.txt"]);
  assert.deepEqual(skipped.map((s) => s.path).sort(), [
    `${t.src}/tree/inside-link`,
    `${t.src}/tree/outside-link`,
  ]);
  assert.ok(skipped.every((s) => /symlink/.test(s.reason)));
});

Deno.test("planFolder() skips names the receiver's path rules refuse, a folder with its contents", async () => {
  await using t = await tempTree("sockit-zip-");
  await Deno.mkdir(`${t.src}/tree/back\\slash`, { recursive: true });
  await Deno.writeTextFile(`${t.src}/tree/back\\slash/inside.txt`, "x");
  await Deno.writeTextFile(`${t.src}/tree/line\nbreak`, "x");
  await Deno.writeTextFile(`${t.src}/tree/fine.txt`, "x");
  const { plan, skipped } = await planFolder(`${t.src}/tree`);
  assert.deepEqual(plan.entries.map((e) => e.path), ["fine.txt"]);
  assert.deepEqual(skipped.map((s) => s.reason.match(/: (.*)$/)?.[1]).sort(), [
    "contains a backslash",
    "contains a control character",
  ]);
});

Deno.test("planZip() switches to zip64 at 4 GiB and at 65,535 entries, and sizes it exactly", () => {
  const big = (size: number) =>
    ({
      path: "big",
      kind: "file",
      size,
      mode: 0o644,
      mtimeMs: 0,
      source: "/x",
    }) as const;
  const below = planZip([big(0xfffffffe)]);
  assert.equal(below.entries[0].zip64, false);
  assert.equal(below.zip64, true); // the central directory starts past 4 GiB
  // local 30 + name + timestamp 9, data, descriptor 16; central 46 + 3 + 9; ends 56 + 20 + 22
  assert.equal(below.zipSize, 42 + 0xfffffffe + 16 + 58 + 98);
  const at = planZip([big(0xffffffff)]);
  assert.equal(at.entries[0].zip64, true);
  // local + zip64 block (20), data descriptor with 64-bit sizes (24), central + 2 sizes (20)
  assert.equal(at.zipSize, 42 + 20 + 0xffffffff + 24 + 58 + 20 + 98);
  const dir = (i: number) =>
    ({ path: `d${i}`, kind: "dir", size: 0, mode: 0o755, mtimeMs: 0 }) as const;
  assert.equal(planZip(Array.from({ length: 65_534 }, (_, i) => dir(i))).zip64, false);
  const many = planZip(Array.from({ length: 65_535 }, (_, i) => dir(i)));
  assert.equal(many.zip64, true);
  assert.equal(many.zipSize, many.centralOffset + many.centralSize + 56 + 20 + 22);
});

Deno.test("planZip() refuses unsafe and repeated paths", () => {
  const file = { kind: "file", size: 1, mode: 0o644, mtimeMs: 0, source: "/x" } as const;
  assert.throws(() => planZip([{ ...file, path: "../x" }]), ZipPathError);
  assert.throws(() => planZip([{ ...file, path: "/x" }]), ZipPathError);
  assert.throws(() => planZip([{ ...file, path: "a" }, { ...file, path: "a" }]), ZipPathError);
  assert.throws(() => planZip([{ ...file, path: "a", source: undefined }]), ZipError);
});

Deno.test("writeZip() stops with ZipSourceChangedError when a file grows or shrinks, never writing more than planned", async () => {
  for (const change of ["grow", "shrink"] as const) {
    await using t = await tempTree("sockit-zip-");
    await Deno.mkdir(`${t.src}/tree`);
    await Deno.writeFile(`${t.src}/tree/log.txt`, new Uint8Array(1000));
    const { plan } = await planFolder(`${t.src}/tree`);
    if (change === "grow") {
      await Deno.writeFile(`${t.src}/tree/log.txt`, new Uint8Array(1), { append: true });
    } else await Deno.truncate(`${t.src}/tree/log.txt`, 999);
    let n = 0;
    const sink: ZipSink = { write: (c) => Promise.resolve(void (n += c.length)) };
    await assert.rejects(writeZip(plan, sink, { chunkBytes: 100 }), ZipSourceChangedError);
    assert.ok(n < plan.zipSize, `${n} bytes written of ${plan.zipSize}`);
  }
});

Deno.test("writeZip() notices a file that changes size while being read", async () => {
  await using t = await tempTree("sockit-zip-");
  await Deno.mkdir(`${t.src}/tree`);
  const path = `${t.src}/tree/growing.bin`;
  await Deno.writeFile(path, new Uint8Array(64 * 1024));
  const { plan } = await planFolder(`${t.src}/tree`);
  let n = 0;
  const sink: ZipSink = {
    write: async (c) => {
      // After the first chunk is out, the file grows behind the writer's back.
      if (n === 0) await Deno.writeFile(path, new Uint8Array(10), { append: true });
      n += c.length;
    },
  };
  await assert.rejects(writeZip(plan, sink, { chunkBytes: 4096 }), /grew beyond 65536 bytes/);
  assert.ok(n < plan.zipSize);
});

Deno.test("writeZip() honours an abort signal", async () => {
  await using t = await tempTree("sockit-zip-");
  await Deno.mkdir(`${t.src}/tree`);
  await Deno.writeFile(`${t.src}/tree/f`, new Uint8Array(10_000));
  const { plan } = await planFolder(`${t.src}/tree`);
  const abort = new AbortController();
  const sink: ZipSink = { write: () => Promise.resolve(abort.abort()) };
  await assert.rejects(writeZip(plan, sink, { chunkBytes: 1000, signal: abort.signal }), {
    name: "AbortError",
  });
});

// --- interoperability with Python's zipfile (the wormhole client) and Info-ZIP ---------------

const PY_READ_AND_WORMHOLE_EXTRACT = `
import os, sys, zipfile
zip_path, dest = sys.argv[1], os.path.abspath(sys.argv[2])
with zipfile.ZipFile(zip_path) as zf:
    assert zf.testzip() is None
    infos = zf.infolist()
    print(len(infos), sum(i.file_size for i in infos))
    for info in infos:   # what wormhole's cmd_receive._extract_file does
        out_path = os.path.abspath(os.path.join(dest, info.filename))
        assert out_path.startswith(dest)
        zf.extract(info.filename, path=dest)
        os.chmod(out_path, info.external_attr >> 16)
`;

wormholeTest(() => missingPythonModule("zipfile"), {
  name:
    "Python's zipfile tests our archive and extracts it as the wormhole client does, identically",
  fn: async () => {
    await using t = await tempTree("sockit-zip-");
    const tree = await makeTree(t.src);
    const { plan } = await planFolder(tree, { directories: "all" });
    await writeArchive(plan, `${t.base}/tree.zip`);
    const out = await python(PY_READ_AND_WORMHOLE_EXTRACT, `${t.base}/tree.zip`, `${t.out}/tree`);
    // wormhole-william refuses an archive whose entry count or byte total differs from the offer.
    assert.equal(out.trim(), `${plan.numFiles} ${plan.numBytes}`);
    const theirs = await snapshot(`${t.out}/tree`);
    const ours = await snapshot(tree);
    for (const node of [...Object.values(theirs), ...Object.values(ours)]) delete node.mtime;
    assert.deepEqual(theirs, ours);
  },
});

wormholeTest(() => missingPythonModule("zipfile"), {
  name: "a forced zip64 archive is read by Python and by extractZip()",
  fn: async () => {
    await using t = await tempTree("sockit-zip-");
    const tree = await makeTree(t.src);
    const { plan } = await planFolder(tree, { forceZip64: true });
    assert.ok(plan.zip64 && plan.entries.every((e) => e.zip64 && e.zip64Offset));
    assert.equal(await writeArchive(plan, `${t.base}/z.zip`), plan.zipSize);
    const bytes = await Deno.readFile(`${t.base}/z.zip`);
    // The plain end record is saturated, so a reader must take the zip64 end record.
    const end = EndRecord.decode(bytes, bytes.length - EndRecord.size);
    assert.equal(end.centralOffset, 0xffffffff);
    assert.equal(end.entries, 0xffff);
    const out = await python(PY_READ_AND_WORMHOLE_EXTRACT, `${t.base}/z.zip`, `${t.base}/py`);
    assert.equal(out.trim(), `${plan.numFiles} ${plan.numBytes}`);
    await extractZip(`${t.base}/z.zip`, t.out, {
      name: "tree",
      maxBytes: plan.numBytes,
      maxEntries: plan.numFiles,
    });
    const files = { files: true };
    assert.deepEqual(await snapshot(`${t.out}/tree`, files), await snapshot(tree, files));
  },
});

const PY_WORMHOLE_SEND = `
import os, sys, zipfile
what, zip_path = sys.argv[1], sys.argv[2]
num_files = num_bytes = 0
tostrip = len(what.split(os.sep))
with zipfile.ZipFile(zip_path, "w", compression=zipfile.ZIP_DEFLATED, allowZip64=True) as zf:
    for path, dirs, files in os.walk(what):   # what wormhole's cmd_send does
        localpath = list(path.split(os.sep)[tostrip:])
        for fn in files:
            zf.write(os.path.join(path, fn), os.path.join(*tuple(localpath + [fn])))
            num_bytes += os.stat(os.path.join(path, fn)).st_size
            num_files += 1
print(num_files, num_bytes)
`;

wormholeTest(() => missingPythonModule("zipfile"), {
  name:
    "extractZip() extracts a deflated archive made as the wormhole client makes it, identically",
  fn: async () => {
    await using t = await tempTree("sockit-zip-");
    const tree = await makeTree(t.src);
    const [numFiles, numBytes] = (await python(PY_WORMHOLE_SEND, tree, `${t.base}/py.zip`))
      .trim().split(" ").map(Number);
    const got = await extractZip(`${t.base}/py.zip`, t.out, {
      name: "tree",
      maxBytes: numBytes,
      maxEntries: numFiles,
    });
    assert.equal(got.files, numFiles);
    assert.equal(got.bytes, numBytes);
    const files = { files: true };
    const theirs = await snapshot(`${t.out}/tree`, files);
    const ours = await snapshot(tree, files);
    // Python stores only DOS times, in 2-second steps.
    for (const [path, node] of Object.entries(ours)) {
      assert.ok(Math.abs(node.mtime! - theirs[path].mtime!) <= 1, path);
      delete node.mtime;
      delete theirs[path].mtime;
    }
    assert.deepEqual(theirs, ours);
  },
});

peerTest("unzip", {
  name: "unzip -t accepts our archive, plain and zip64",
  fn: async () => {
    await using t = await tempTree("sockit-zip-");
    const tree = await makeTree(t.src);
    for (const forceZip64 of [false, true]) {
      const { plan } = await planFolder(tree, { directories: "all", forceZip64 });
      await writeArchive(plan, `${t.base}/t.zip`);
      const out = await new Deno.Command("unzip", {
        args: ["-t", `${t.base}/t.zip`],
        stdout: "piped",
        stderr: "piped",
      }).output();
      const text = new TextDecoder().decode(out.stdout);
      assert.ok(out.success, text + new TextDecoder().decode(out.stderr));
      assert.match(text, /No errors detected/);
      assert.equal(text.match(/ OK$/gm)?.length, plan.numFiles);
    }
  },
});

// --- extractor: modes, targets ----------------------------------------------------------------

Deno.test("extractZip() drops setuid, setgid, sticky and group/other write bits, keeps owners able to use entries", async () => {
  await using t = await tempTree("sockit-zip-");
  const zip = handZip([
    { name: "locked/", payload: new Uint8Array(0), unixMode: 0o040500 },
    { name: "locked/suid", payload: encoder.encode("x"), unixMode: 0o106755 },
    { name: "none", payload: encoder.encode("y"), unixMode: 0o100000 },
    { name: "open", payload: encoder.encode("z"), unixMode: 0o100666 },
  ]);
  await Deno.writeFile(`${t.base}/m.zip`, zip);
  await extractZip(`${t.base}/m.zip`, t.out, LIMITS);
  const mode = async (p: string) => (await Deno.stat(`${t.out}/got/${p}`)).mode! & 0o7777;
  assert.equal(await mode("locked"), 0o700);
  assert.equal(await mode("locked/suid"), 0o755);
  assert.equal(await mode("none"), 0o600);
  assert.equal(await mode("open"), 0o644);
});

Deno.test("extractZip() refuses an existing final name before writing anything", async () => {
  await using t = await tempTree("sockit-zip-");
  await Deno.writeFile(`${t.base}/a.zip`, await ourArchive());
  await Deno.mkdir(`${t.out}/got`);
  await Deno.writeTextFile(`${t.out}/got/keep`, "mine");
  await assert.rejects(extractZip(`${t.base}/a.zip`, t.out, LIMITS), ZipTargetExistsError);
  assert.deepEqual(await list(t.out), ["got"]);
  assert.deepEqual(await list(`${t.out}/got`), ["keep"]);
});

Deno.test("extractZip() refuses a final name that is not one safe component", async () => {
  const zip = await ourArchive();
  for (const name of ["../up", "a/b", "", ".x.sockit-partial"]) {
    await assertRefused(zip, ZipPathError, /Cannot/, { name });
  }
});

// --- extractor: hostile archives --------------------------------------------------------------

Deno.test("a hand-built archive the hostile cases derive from extracts", async () => {
  await using t = await tempTree("sockit-zip-");
  await Deno.writeFile(
    `${t.base}/ok.zip`,
    handZip([{ name: "ok.txt", payload: encoder.encode("fine") }]),
  );
  await extractZip(`${t.base}/ok.zip`, t.out, LIMITS);
  assert.equal(await Deno.readTextFile(`${t.out}/got/ok.txt`), "fine");
});

Deno.test("extractZip() refuses entry names that leave the folder or break the path rules", async () => {
  const payload = encoder.encode("evil");
  await assertRefused(
    handZip([{ name: "../evil", payload }]),
    ZipPathError,
    /"\.\.\/evil".*'\.\.'/,
  );
  await assertRefused(handZip([{ name: "ok/../../evil", payload }]), ZipPathError, /'\.\.'/);
  await assertRefused(handZip([{ name: "/abs-escape", payload }]), ZipPathError, /absolute/);
  await assertRefused(handZip([{ name: "a\\..\\b", payload }]), ZipPathError, /backslash/);
  await assertRefused(handZip([{ name: "C:evil", payload }]), ZipPathError, /drive letter/);
  await assertRefused(handZip([{ name: "nul\0.txt", payload }]), ZipPathError, /NUL/);
  await assertRefused(handZip([{ name: "x.sockit-partial", payload }]), ZipPathError, /reserved/);
});

Deno.test("extractZip() refuses symlink and special-file entries", async () => {
  const payload = encoder.encode("/etc/passwd");
  await assertRefused(
    handZip([{ name: "link", payload, unixMode: 0o120777 }]),
    ZipPathError,
    /"link".*symlink/,
  );
  await assertRefused(
    handZip([{ name: "fifo", payload: new Uint8Array(0), unixMode: 0o010644 }]),
    ZipPathError,
    /special file/,
  );
});

Deno.test("extractZip() refuses duplicate names and a file used as a folder", async () => {
  const payload = encoder.encode("x");
  await assertRefused(
    handZip([{ name: "dup.txt", payload }, { name: "dup.txt", payload }]),
    ZipPathError,
    /"dup\.txt".*twice/,
  );
  await assertRefused(
    handZip([{ name: "d/", payload: new Uint8Array(0), unixMode: 0o040755 }, {
      name: "d",
      payload,
    }]),
    ZipPathError,
    /twice/,
  );
  await assertRefused(
    handZip([{ name: "f", payload }, { name: "f/inside", payload }]),
    ZipPathError,
    /"f\/inside".*"f" is a file/,
  );
});

Deno.test("extractZip() stops a deflate entry that expands beyond its declared size", async () => {
  const payload = deflateRawSync(new Uint8Array(4 * 1024 * 1024));
  await assertRefused(
    handZip([{ name: "small.txt", payload, method: Method.Deflated, size: 1000 }]),
    ZipBombError,
    /"small\.txt".*beyond the 1000 bytes/,
  );
});

wormholeTest(() => missingPythonModule("zipfile"), {
  name: "extractZip() refuses a classic bomb (10 MB of zeros, deflated) beyond maxBytes",
  fn: async () => {
    await using t = await tempTree("sockit-zip-");
    await python(
      `import sys, zipfile
with zipfile.ZipFile(sys.argv[1], "w", compression=zipfile.ZIP_DEFLATED) as zf:
    zf.writestr("zeros.bin", bytes(10_000_000))`,
      `${t.base}/bomb.zip`,
    );
    const bomb = await Deno.readFile(`${t.base}/bomb.zip`);
    assert.ok(bomb.length < 20_000);
    await assertRefused(bomb, ZipBombError, /10000000 bytes, more than the 1000000/, {
      maxBytes: 1_000_000,
    });
  },
});

Deno.test("extractZip() refuses more entries than allowed", async () => {
  const payload = encoder.encode("x");
  const zip = handZip([{ name: "a", payload }, { name: "b", payload }, { name: "c", payload }]);
  await assertRefused(zip, ZipBombError, /3 entries, more than the 2 allowed/, { maxEntries: 2 });
});

Deno.test("extractZip() refuses overlapping entries", async () => {
  // "outer" claims the bytes of "inner" (header and data) as its own data.
  const inner = handZip([{ name: "inner", payload: encoder.encode("data") }]);
  const innerLocal = inner.subarray(0, LocalHeader.size + 5 + 4);
  const outerHeader = LocalHeader.size + 5;
  const zip = handZip([
    { name: "outer", payload: innerLocal },
    { name: "inner", payload: encoder.encode("data"), localOffset: outerHeader },
  ]);
  await assertRefused(zip, ZipError, /overlaps/);
});

Deno.test("extractZip() refuses a truncated archive", async () => {
  const zip = await ourArchive();
  await assertRefused(zip.subarray(0, zip.length >> 1), ZipError, /no end of central directory/);
  await assertRefused(zip.subarray(0, zip.length - 1), ZipError, /no end of central directory/);
  await assertRefused(zip.subarray(0, 10), ZipError, /too short/);
  // Cut out of the middle: the end record survives, the offsets no longer fit.
  await assertRefused(concatBytes(zip.subarray(0, 40), zip.subarray(60)), ZipError, /Cannot/);
});

Deno.test("extractZip() refuses a central directory count that lies", async () => {
  const zip = await ourArchive();
  for (const delta of [-1, 1]) {
    const lying = zip.slice();
    const view = new DataView(lying.buffer, lying.length - EndRecord.size);
    const n = view.getUint16(10, true);
    view.setUint16(8, n + delta, true);
    view.setUint16(10, n + delta, true);
    await assertRefused(lying, ZipError, /central directory/);
  }
});

Deno.test("extractZip() refuses an end record whose directory offset is past the end", async () => {
  const zip = await ourArchive();
  const bad = zip.slice();
  new DataView(bad.buffer, bad.length - EndRecord.size).setUint32(16, zip.length + 1000, true);
  await assertRefused(bad, ZipError, /does not end where its end record starts/);
});

Deno.test("extractZip() refuses corrupt data and a local header that disagrees", async () => {
  const zip = await ourArchive();
  const corrupt = zip.slice();
  const dataAt = LocalHeader.decode(zip, 0).extraLength + LocalHeader.size + "one.txt".length;
  corrupt[dataAt] ^= 0xff;
  await assertRefused(corrupt, ZipError, /"one\.txt".*CRC-32/);
  const renamed = zip.slice();
  renamed[LocalHeader.size] = "X".charCodeAt(0);
  await assertRefused(renamed, ZipError, /"one\.txt".*local header names "Xne\.txt"/);
  const payload = deflateRawSync(encoder.encode("hello"));
  await assertRefused(
    handZip([{ name: "trunc", payload: payload.subarray(0, 2), method: Method.Deflated, size: 5 }]),
    ZipError,
    /"trunc"/,
  );
});

wormholeTest(() => missingPythonModule("bz2"), {
  name: "extractZip() refuses compression methods other than stored and deflate",
  fn: async () => {
    await using t = await tempTree("sockit-zip-");
    await python(
      `import sys, zipfile
with zipfile.ZipFile(sys.argv[1], "w", compression=zipfile.ZIP_BZIP2) as zf:
    zf.writestr("b.txt", "bzip2 data " * 100)`,
      `${t.base}/bz.zip`,
    );
    await assertRefused(
      await Deno.readFile(`${t.base}/bz.zip`),
      ZipUnsupportedError,
      /"b\.txt".*method 12/,
    );
  },
});

Deno.test("extractZip() refuses an encrypted entry", async () => {
  const zip = handZip([{ name: "secret", payload: encoder.encode("xxxx") }]);
  const cdAt = zip.length - EndRecord.size - CentralHeader.size - "secret".length;
  const view = new DataView(zip.buffer);
  view.setUint16(6, view.getUint16(6, true) | Flag.Encrypted, true);
  view.setUint16(cdAt + 8, view.getUint16(cdAt + 8, true) | Flag.Encrypted, true);
  await assertRefused(zip, ZipUnsupportedError, /"secret".*encrypted/);
});
