/**
 * Trust on first use for relays with self-signed certificates, as ssh does it: the first
 * certificate seen for a host and port is recorded; later connections must present the same.
 *
 * File: `$XDG_CONFIG_HOME/sockit/known_hosts` (else `~/.config/sockit/known_hosts`), one host
 * a line, `#` comments and blank lines ignored:
 *
 * ```text
 * # HOST:PORT        FINGERPRINT (sha256 of the certificate's DER bytes)
 * relay.example:7000 sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08
 * [::1]:7000         sha256:...
 * ```
 *
 * A host's first certificate is appended (the folder is created 0700, the file 0600) and
 * announced (see {@linkcode KnownHostOptions.onNew}: by default one line on stderr, since
 * seeing the fingerprint the first time is what lets a user compare it with the relay's).
 * A different certificate later is refused with a {@linkcode CertificateChangedError} naming
 * both fingerprints and the line to delete if the change is expected.
 *
 * @module
 */

import { parseFingerprint, sockitConfigDir } from "./tls_cert.ts";
import { UsageError } from "./errors.ts";

/** File name of the known hosts list in the config folder. */
export const KNOWN_HOSTS_FILE_NAME = "known_hosts";

/**
 * A host presented a certificate other than the one recorded for it: either someone is in the
 * middle, or the relay's certificate was replaced.
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert/strict";
 * import { CertificateChangedError } from "./known_hosts.ts";
 * const err = new CertificateChangedError({
 *   hostPort: "a:1", known: "sha256:aa", presented: "sha256:bb", file: "/k", line: 3,
 * });
 * assert.equal(err.name, "CertificateChangedError");
 * assert.match(err.message, /line 3 of \/k/);
 * ```
 */
export class CertificateChangedError extends Error {
  /** The host and port connected to. */
  readonly hostPort: string;
  /** The fingerprint on record. */
  readonly known: string;
  /** The fingerprint the host presented. */
  readonly presented: string;
  /** The known hosts file. */
  readonly file: string;
  /** The line of `file` with the record (1-based). */
  readonly line: number;

  /** Creates the error; its message shows both fingerprints and the line to edit. */
  constructor(
    at: { hostPort: string; known: string; presented: string; file: string; line: number },
  ) {
    super(
      `The certificate of ${at.hostPort} has CHANGED, refusing to connect.\n` +
        `  recorded:  ${at.known}\n` +
        `  presented: ${at.presented}\n` +
        `Someone may be intercepting the connection, or the relay has a new certificate. ` +
        `If you know it does, delete line ${at.line} of ${at.file} and connect again ` +
        `(or pass --fingerprint ${at.presented}).`,
    );
    this.name = "CertificateChangedError";
    this.hostPort = at.hostPort;
    this.known = at.known;
    this.presented = at.presented;
    this.file = at.file;
    this.line = at.line;
  }
}

/**
 * The known hosts file could not be read or written, or one of its lines is malformed; the
 * message names the file (and line).
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert/strict";
 * import { KnownHostsError } from "./known_hosts.ts";
 * const err = new KnownHostsError("Cannot read line 2 of /k: expected HOST:PORT sha256:HEX");
 * assert.equal(err.name, "KnownHostsError");
 * ```
 */
export class KnownHostsError extends Error {
  /** Creates the error. */
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "KnownHostsError";
  }
}

/** One record of the known hosts file. */
export interface KnownHost {
  /** `HOST:PORT` as {@linkcode hostPortKey} writes it. */
  hostPort: string;
  /** `sha256:HEX`. */
  fingerprint: string;
  /** Line number in the file (1-based). */
  line: number;
}

/** A host seen for the first time, as passed to {@linkcode KnownHostOptions.onNew}. */
export interface NewHost {
  /** The host and port. */
  hostPort: string;
  /** Its certificate's fingerprint, now recorded. */
  fingerprint: string;
  /** The file it was recorded in. */
  file: string;
}

/** Options for {@linkcode checkKnownHost} and {@linkcode knownHostsPath}. */
export interface KnownHostOptions {
  /** The known hosts file. @default {CONFIG_DIR/known_hosts} */
  file?: string;
  /** The config folder. @default {$XDG_CONFIG_HOME/sockit, else ~/.config/sockit} */
  configDir?: string;
  /** Environment to take XDG_CONFIG_HOME and HOME from. @default {Deno.env} */
  env?: Record<string, string | undefined>;
  /**
   * Called when a host is recorded for the first time.
   * @default {a line on stderr: the host, its fingerprint and the file}
   */
  onNew?: (host: NewHost) => void;
}

/**
 * The key a host is recorded under: `host:port`, the host in lower case, an IPv6 address in
 * brackets.
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert/strict";
 * import { hostPortKey } from "./known_hosts.ts";
 * assert.equal(hostPortKey("Relay.Example", 7000), "relay.example:7000");
 * assert.equal(hostPortKey("::1", 7000), "[::1]:7000");
 * assert.equal(hostPortKey("[::1]", 7000), "[::1]:7000");
 * ```
 */
export function hostPortKey(hostname: string, port: number): string {
  const host = hostname.replace(/^\[(.*)\]$/, "$1").toLowerCase();
  return host.includes(":") ? `[${host}]:${port}` : `${host}:${port}`;
}

/**
 * Where the known hosts file is: `file` when given, else `known_hosts` in the config folder.
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert/strict";
 * import { knownHostsPath } from "./known_hosts.ts";
 * assert.equal(knownHostsPath({ env: { XDG_CONFIG_HOME: "/c" } }), "/c/sockit/known_hosts");
 * ```
 */
export function knownHostsPath(options: KnownHostOptions = {}): string {
  return options.file ?? `${sockitConfigDir(options)}/${KNOWN_HOSTS_FILE_NAME}`;
}

/**
 * The records of a known hosts file (none when it does not exist). A malformed line is a
 * {@linkcode KnownHostsError} naming the file and line, not skipped: a record that silently
 * does not count would make a host look new.
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert/strict";
 * import { readKnownHosts } from "./known_hosts.ts";
 * const file = await Deno.makeTempFile();
 * await Deno.writeTextFile(file, `# comment\n\na:1 sha256:${"0".repeat(64)}\n`);
 * const hosts = await readKnownHosts(file);
 * assert.deepEqual(hosts, [{ hostPort: "a:1", fingerprint: `sha256:${"0".repeat(64)}`, line: 3 }]);
 * await Deno.remove(file);
 * ```
 */
export async function readKnownHosts(file: string): Promise<KnownHost[]> {
  let text: string;
  try {
    text = await Deno.readTextFile(file);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return [];
    throw new KnownHostsError(`Cannot read known hosts file ${file}: ${messageOf(error)}`, {
      cause: error,
    });
  }
  const hosts: KnownHost[] = [];
  text.split("\n").forEach((raw, i) => {
    const line = raw.trim();
    if (line === "" || line.startsWith("#")) return;
    const fields = line.split(/\s+/);
    let fingerprint: string | undefined;
    try {
      if (fields.length === 2 && /^(\[[^\]]+\]|[^:\s]+):\d+$/.test(fields[0])) {
        fingerprint = parseFingerprint(fields[1]);
      }
    } catch (error) {
      if (!(error instanceof UsageError)) throw error;
    }
    if (fingerprint === undefined) {
      throw new KnownHostsError(
        `Cannot read line ${i + 1} of ${file}: expected "HOST:PORT sha256:HEX", got "${line}"`,
      );
    }
    hosts.push({ hostPort: fields[0].toLowerCase(), fingerprint, line: i + 1 });
  });
  return hosts;
}

/**
 * Checks `fingerprint` against the record for `hostPort` (see {@linkcode hostPortKey}):
 * `"match"` when it is the recorded one; `"new"` when the host has no record (it is then
 * recorded and announced); a {@linkcode CertificateChangedError} when it differs.
 *
 * @example New, then match, then changed
 * ```ts
 * import assert from "node:assert/strict";
 * import { CertificateChangedError, checkKnownHost } from "./known_hosts.ts";
 * const configDir = await Deno.makeTempDir();
 * const seen: string[] = [];
 * const options = { configDir, onNew: (h: { hostPort: string }) => seen.push(h.hostPort) };
 * const a = `sha256:${"a".repeat(64)}`, b = `sha256:${"b".repeat(64)}`;
 * assert.equal(await checkKnownHost("relay:7000", a, options), "new");
 * assert.equal(await checkKnownHost("relay:7000", a, options), "match");
 * await assert.rejects(checkKnownHost("relay:7000", b, options), CertificateChangedError);
 * assert.deepEqual(seen, ["relay:7000"]);
 * await Deno.remove(configDir, { recursive: true });
 * ```
 */
export async function checkKnownHost(
  hostPort: string,
  fingerprint: string,
  options: KnownHostOptions = {},
): Promise<"new" | "match"> {
  const key = hostPort.toLowerCase();
  const presented = parseFingerprint(fingerprint);
  const file = knownHostsPath(options);
  const records = (await readKnownHosts(file)).filter((h) => h.hostPort === key);
  if (records.some((h) => h.fingerprint === presented)) return "match";
  if (records.length > 0) {
    const { fingerprint: known, line } = records[0];
    throw new CertificateChangedError({ hostPort: key, known, presented, file, line });
  }
  await appendRecord(file, `${key} ${presented}\n`);
  (options.onNew ?? announce)({ hostPort: key, fingerprint: presented, file });
  return "new";
}

/** The default announcement of a new host: one line on stderr. */
function announce(host: NewHost): void {
  console.error(
    `sockit: new host ${host.hostPort}, certificate ${host.fingerprint}; ` +
      `recorded in ${host.file} (compare it with the fingerprint the relay printed)`,
  );
}

/** Appends `record`, starting a new line if the file does not end with one. */
async function appendRecord(file: string, record: string): Promise<void> {
  const dir = file.slice(0, file.lastIndexOf("/"));
  try {
    if (dir) await Deno.mkdir(dir, { recursive: true, mode: 0o700 });
    let prefix = "";
    try {
      const text = await Deno.readTextFile(file);
      if (text.length > 0 && !text.endsWith("\n")) prefix = "\n";
    } catch (error) {
      if (!(error instanceof Deno.errors.NotFound)) throw error;
    }
    await Deno.writeTextFile(file, prefix + record, { append: true, mode: 0o600 });
  } catch (error) {
    throw new KnownHostsError(`Cannot record the host in ${file}: ${messageOf(error)}`, {
      cause: error,
    });
  }
}

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
