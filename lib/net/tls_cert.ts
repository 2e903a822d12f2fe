/**
 * The relay's TLS certificate: create a self-signed one, keep it in the config folder, load a
 * given one, and name it by its fingerprint.
 *
 * A created certificate is what rustls (Deno's TLS) and browsers accept as a server's leaf:
 *
 * | field            | value                                                            |
 * | ---------------- | ---------------------------------------------------------------- |
 * | key              | ECDSA P-256 (WebCrypto), signature ecdsa-with-SHA256             |
 * | subject, issuer  | `CN=sockit relay` (self-signed)                                  |
 * | serial           | 16 random bytes, positive                                        |
 * | validity         | {@linkcode CERT_DEFAULTS} (1 day back-dated, 10 years ahead)     |
 * | basicConstraints | critical, `cA=false` (a CA cert is refused as a leaf by webpki)   |
 * | keyUsage         | critical, digitalSignature                                       |
 * | extKeyUsage      | serverAuth                                                       |
 * | subjectAltName   | the given names; default localhost, 127.0.0.1, ::1, the hostname |
 *
 * Output is PEM: the certificate and its PKCS#8 private key. Creating one takes about 10 ms
 * once `@peculiar/x509` is loaded; loading that library takes about 200 ms, so it is imported
 * only when a certificate is created, never to read one.
 *
 * A fingerprint is the SHA-256 of the certificate's DER bytes, shown as `sha256:` and 64
 * lowercase hex digits. {@linkcode parseFingerprint} also takes the form openssl prints
 * (`sha256 Fingerprint=AB:CD:...`, or just the colon-separated pairs).
 *
 * Files: `$XDG_CONFIG_HOME/sockit/` (else `~/.config/sockit/`) holds `relay-cert.pem` and
 * `relay-key.pem`; the folder is created 0700 and the key 0600. Each file is written under a
 * temporary name and then linked to its final name, which fails rather than overwrites when
 * the name exists: two relays starting at once cannot end up with one's certificate and the
 * other's key; the later one uses the pair the first one wrote.
 *
 * @module
 */

import { createHash, createPrivateKey, createPublicKey, X509Certificate } from "node:crypto";
import { isIP } from "node:net";
import { delay } from "./deadline.ts";
import { UsageError } from "./errors.ts";

/** Defaults of certificate creation, with their reasons. */
export const CERT_DEFAULTS = {
  /** Subject and issuer common name. */
  commonName: "sockit relay",
  /** How long a created certificate is valid, in days: ten years, so a relay never expires. */
  validDays: 3650,
  /** Start of validity before now, in days: a client whose clock is behind still accepts it. */
  backdateDays: 1,
  /** Random serial number size in bytes (RFC 5280 4.1.2.2 allows up to 20). */
  serialBytes: 16,
  /** File name of the relay's certificate in the config folder. */
  certFileName: "relay-cert.pem",
  /** File name of the relay's private key in the config folder. */
  keyFileName: "relay-key.pem",
  /**
   * How long to wait for the certificate file when another process created the key first
   * (both are being written at once), in ms.
   */
  pairWaitMs: 2000,
} as const;

const DAY_MS = 24 * 60 * 60 * 1000;
const ECDSA_P256 = { name: "ECDSA", namedCurve: "P-256", hash: "SHA-256" } as const;
const CERT_PEM_RE = /-----BEGIN CERTIFICATE-----([A-Za-z0-9+/=\s]+)-----END CERTIFICATE-----/;
const FINGERPRINT_PREFIX = "sha256:";

/**
 * A certificate or key could not be read, parsed or matched; the message names the file.
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert/strict";
 * import { CertificateError } from "./tls_cert.ts";
 * const err = new CertificateError('Cannot read certificate file "/x.pem": not found');
 * assert.equal(err.name, "CertificateError");
 * ```
 */
export class CertificateError extends Error {
  /** Creates a certificate error with a message naming the file and what failed. */
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "CertificateError";
  }
}

/** A certificate with its private key, both PEM, and the certificate's fingerprint. */
export interface CertifiedKey {
  /** The certificate, PEM. */
  cert: string;
  /** Its private key, PKCS#8 PEM. */
  key: string;
  /** `sha256:` and the hex SHA-256 of the certificate's DER bytes. */
  fingerprint: string;
}

/** Options for {@linkcode createSelfSignedCert}. */
export interface CreateCertOptions {
  /**
   * DNS names and IP addresses for subjectAltName.
   * @default {localhost, 127.0.0.1, ::1 and this machine's hostname}
   */
  names?: string[];
  /** Subject common name. @default {"sockit relay"} */
  commonName?: string;
  /** Days of validity from now. @default {3650} */
  validDays?: number;
  /** The time "now" (for tests). @default {new Date()} */
  now?: Date;
}

/**
 * The subjectAltName entries of a created certificate when none are given: localhost,
 * 127.0.0.1, ::1 and the hostname (when this process may read it).
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert/strict";
 * import { defaultCertNames } from "./tls_cert.ts";
 * assert.deepEqual(defaultCertNames().slice(0, 3), ["localhost", "127.0.0.1", "::1"]);
 * ```
 */
export function defaultCertNames(): string[] {
  const names = ["localhost", "127.0.0.1", "::1"];
  try {
    const host = Deno.hostname().toLowerCase();
    if (host && !names.includes(host)) names.push(host);
  } catch {
    // No --allow-sys: the loopback names only.
  }
  return names;
}

/**
 * Creates a self-signed ECDSA P-256 server certificate (see the module doc for its fields).
 *
 * @example A certificate Deno's TLS serves and trusts when pinned as the CA
 * ```ts
 * import assert from "node:assert/strict";
 * import { createSelfSignedCert } from "./tls_cert.ts";
 * const { cert, key, fingerprint } = await createSelfSignedCert({ names: ["localhost"] });
 * assert.match(fingerprint, /^sha256:[0-9a-f]{64}$/);
 * using listener = Deno.listenTls({ hostname: "127.0.0.1", port: 0, cert, key });
 * const accepted = listener.accept().then((c) => c.handshake().then(() => c));
 * const client = await Deno.connectTls({
 *   hostname: "localhost", port: listener.addr.port, caCerts: [cert],
 * });
 * await client.handshake();
 * (await accepted).close();
 * client.close();
 * ```
 */
export async function createSelfSignedCert(options: CreateCertOptions = {}): Promise<CertifiedKey> {
  // About 200 ms to load: only when a certificate is made (see the module doc).
  const x509 = await import("@peculiar/x509");
  const names = options.names ?? defaultCertNames();
  if (names.length === 0) throw new UsageError("Cannot create a certificate: no names given");
  const now = (options.now ?? new Date()).getTime();
  const keys = await crypto.subtle.generateKey(ECDSA_P256, true, ["sign", "verify"]);
  const serial = crypto.getRandomValues(new Uint8Array(CERT_DEFAULTS.serialBytes));
  // 0x10-0x7f: positive, and no leading zero nibble that a reader would strip.
  serial[0] = 0x10 + (serial[0] % 0x70);
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: hex(serial),
    name: [{ CN: [options.commonName ?? CERT_DEFAULTS.commonName] }],
    notBefore: new Date(now - CERT_DEFAULTS.backdateDays * DAY_MS),
    notAfter: new Date(now + (options.validDays ?? CERT_DEFAULTS.validDays) * DAY_MS),
    signingAlgorithm: ECDSA_P256,
    keys,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
      new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth], false),
      new x509.SubjectAlternativeNameExtension(
        names.map((name) => {
          const ip = stripBrackets(name);
          return isIP(ip) ? { type: "ip", value: ip } : { type: "dns", value: name };
        }),
        false,
      ),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    ],
  });
  const pkcs8 = await crypto.subtle.exportKey("pkcs8", keys.privateKey);
  const certPem = cert.toString("pem") + "\n";
  return {
    cert: certPem,
    key: x509.PemConverter.encode(pkcs8, "PRIVATE KEY") + "\n",
    fingerprint: fingerprintOfDer(new Uint8Array(cert.rawData)),
  };
}

/**
 * The fingerprint of the first certificate in `pem`: `sha256:` and 64 lowercase hex digits
 * (the SHA-256 of its DER bytes, what `openssl x509 -noout -fingerprint -sha256` prints).
 * Throws a {@linkcode CertificateError} when `pem` holds no certificate.
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert/strict";
 * import { createSelfSignedCert, fingerprintOf } from "./tls_cert.ts";
 * const created = await createSelfSignedCert({ names: ["localhost"] });
 * assert.equal(fingerprintOf(created.cert), created.fingerprint);
 * ```
 */
export function fingerprintOf(pem: string): string {
  return fingerprintOfDer(pemToDer(pem));
}

/**
 * The fingerprint of a certificate's DER bytes, as {@linkcode fingerprintOf} shows it.
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert/strict";
 * import { fingerprintOfDer } from "./tls_cert.ts";
 * assert.equal(
 *   fingerprintOfDer(new Uint8Array(0)),
 *   "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
 * );
 * ```
 */
export function fingerprintOfDer(der: Uint8Array): string {
  return FINGERPRINT_PREFIX + createHash("sha256").update(der).digest("hex");
}

/**
 * Reads a fingerprint as a user may give it and returns the one display form
 * (`sha256:` and 64 lowercase hex digits). Takes `sha256:HEX` (any case), openssl's
 * `sha256 Fingerprint=AB:CD:...`, the bare colon-separated pairs, or 64 bare hex digits.
 * Throws a {@linkcode UsageError} for anything else (another hash, a wrong length).
 *
 * @example Both the display form and openssl's form
 * ```ts
 * import assert from "node:assert/strict";
 * import { parseFingerprint } from "./tls_cert.ts";
 * const hex = "ab".repeat(32);
 * assert.equal(parseFingerprint(`SHA256:${hex.toUpperCase()}`), `sha256:${hex}`);
 * const openssl = "sha256 Fingerprint=" + Array(32).fill("AB").join(":");
 * assert.equal(parseFingerprint(openssl), `sha256:${hex}`);
 * assert.throws(() => parseFingerprint("md5:abcd"), /Cannot parse fingerprint/);
 * ```
 */
export function parseFingerprint(text: string): string {
  let rest = text.trim();
  const openssl = rest.match(/^sha-?256 fingerprint=(.*)$/i);
  if (openssl) rest = openssl[1];
  else if (/^sha-?256:/i.test(rest)) rest = rest.slice(rest.indexOf(":") + 1);
  let digits = rest;
  if (/^([0-9a-f]{2}:){31}[0-9a-f]{2}$/i.test(rest)) digits = rest.replaceAll(":", "");
  if (!/^[0-9a-f]{64}$/i.test(digits)) {
    throw new UsageError(
      `Cannot parse fingerprint "${text}": expected sha256: and 64 hex digits ` +
        `(or openssl's AB:CD:... form of a SHA-256 fingerprint)`,
    );
  }
  return FINGERPRINT_PREFIX + digits.toLowerCase();
}

/**
 * The DER bytes of the first certificate in `pem`; a {@linkcode CertificateError} if none.
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert/strict";
 * import { createSelfSignedCert, pemToDer } from "./tls_cert.ts";
 * const { cert } = await createSelfSignedCert({ names: ["localhost"] });
 * assert.equal(pemToDer(cert)[0], 0x30); // a DER SEQUENCE
 * assert.throws(() => pemToDer("hello"), /no PEM CERTIFICATE block/);
 * ```
 */
export function pemToDer(pem: string): Uint8Array<ArrayBuffer> {
  const m = pem.match(CERT_PEM_RE);
  if (!m) throw new CertificateError("Cannot read certificate: no PEM CERTIFICATE block");
  try {
    return Uint8Array.from(atob(m[1].replace(/\s+/g, "")), (c) => c.charCodeAt(0));
  } catch (error) {
    throw new CertificateError("Cannot read certificate: its PEM block is not base64", {
      cause: error,
    });
  }
}

/** Options for {@linkcode loadOrCreateServerCert} and {@linkcode sockitConfigDir}. */
export interface ServerCertOptions {
  /** Certificate file (PEM) to use instead of the config folder's; needs `keyFile`. */
  certFile?: string;
  /** Private key file (PEM) of `certFile`. */
  keyFile?: string;
  /** The config folder. @default {$XDG_CONFIG_HOME/sockit, else ~/.config/sockit} */
  configDir?: string;
  /** Environment to take XDG_CONFIG_HOME and HOME from. @default {Deno.env} */
  env?: Record<string, string | undefined>;
  /** subjectAltName of a created certificate. @default {see defaultCertNames} */
  names?: string[];
}

/** What {@linkcode loadOrCreateServerCert} found or made. */
export interface ServerCert extends CertifiedKey {
  /** Where the certificate is. */
  certFile: string;
  /** Where the key is. */
  keyFile: string;
  /** True when this call created the pair. */
  created: boolean;
}

/**
 * sockit's config folder: `configDir` when given, else `$XDG_CONFIG_HOME/sockit`, else
 * `$HOME/.config/sockit`. Throws a {@linkcode UsageError} when neither variable is set.
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert/strict";
 * import { sockitConfigDir } from "./tls_cert.ts";
 * assert.equal(sockitConfigDir({ env: { XDG_CONFIG_HOME: "/x" } }), "/x/sockit");
 * assert.equal(sockitConfigDir({ env: { HOME: "/home/a" } }), "/home/a/.config/sockit");
 * ```
 */
export function sockitConfigDir(
  options: Pick<ServerCertOptions, "configDir" | "env"> = {},
): string {
  if (options.configDir) return options.configDir;
  const get = (name: string) => options.env ? options.env[name] : Deno.env.get(name);
  const xdg = get("XDG_CONFIG_HOME");
  if (xdg) return `${xdg.replace(/\/+$/, "")}/sockit`;
  const home = get("HOME");
  if (home) return `${home.replace(/\/+$/, "")}/.config/sockit`;
  throw new UsageError("Cannot find the config folder: neither XDG_CONFIG_HOME nor HOME is set");
}

/**
 * The relay's certificate and key. With `certFile` and `keyFile`, reads and checks them (each
 * error names its file; a key that is not the certificate's is refused). Without, reuses the
 * config folder's `relay-cert.pem` / `relay-key.pem` or creates them (folder 0700, key 0600,
 * see the module doc).
 *
 * @example Created once, then reused
 * ```ts
 * import assert from "node:assert/strict";
 * import { loadOrCreateServerCert } from "./tls_cert.ts";
 * const configDir = await Deno.makeTempDir();
 * const first = await loadOrCreateServerCert({ configDir, names: ["localhost"] });
 * const again = await loadOrCreateServerCert({ configDir });
 * assert.equal(first.created, true);
 * assert.equal(again.created, false);
 * assert.equal(again.fingerprint, first.fingerprint);
 * assert.equal(Deno.statSync(first.keyFile).mode! & 0o777, 0o600);
 * await Deno.remove(configDir, { recursive: true });
 * ```
 */
export async function loadOrCreateServerCert(options: ServerCertOptions = {}): Promise<ServerCert> {
  const { certFile, keyFile } = options;
  if (certFile !== undefined || keyFile !== undefined) {
    if (certFile === undefined || keyFile === undefined) {
      throw new UsageError(
        `Cannot use ${certFile === undefined ? "a key" : "a certificate"} file alone: ` +
          "give both the certificate and its key",
      );
    }
    return { ...await readPair(certFile, keyFile), certFile, keyFile, created: false };
  }
  const dir = sockitConfigDir(options);
  const paths = {
    certFile: `${dir}/${CERT_DEFAULTS.certFileName}`,
    keyFile: `${dir}/${CERT_DEFAULTS.keyFileName}`,
  };
  const existing = await readExistingPair(paths);
  if (existing) return { ...existing, ...paths, created: false };
  await Deno.mkdir(dir, { recursive: true, mode: 0o700 });
  const made = await createSelfSignedCert({ names: options.names });
  // Key first: whoever links the key owns the pair; a loser reads the winner's.
  if (!await linkNew(paths.keyFile, made.key, 0o600)) {
    return { ...await waitForPair(paths), ...paths, created: false };
  }
  await linkNew(paths.certFile, made.cert, 0o644);
  return { ...made, ...paths, created: true };
}

/** Reads and checks a certificate/key pair, or null when neither file exists. */
async function readExistingPair(
  paths: { certFile: string; keyFile: string },
): Promise<CertifiedKey | null> {
  const [haveCert, haveKey] = await Promise.all([exists(paths.certFile), exists(paths.keyFile)]);
  if (!haveCert && !haveKey) return null;
  if (!haveCert) return await waitForPair(paths);
  return await readPair(paths.certFile, paths.keyFile);
}

/** The key exists: its certificate follows within `pairWaitMs`, or the pair is broken. */
async function waitForPair(paths: { certFile: string; keyFile: string }): Promise<CertifiedKey> {
  const until = performance.now() + CERT_DEFAULTS.pairWaitMs;
  while (!await exists(paths.certFile)) {
    if (performance.now() >= until) {
      throw new CertificateError(
        `Cannot use key file "${paths.keyFile}": its certificate "${paths.certFile}" is ` +
          "missing; delete the key file to have a new pair created",
      );
    }
    await delay(20);
  }
  return await readPair(paths.certFile, paths.keyFile);
}

async function readPair(certFile: string, keyFile: string): Promise<CertifiedKey> {
  const cert = await readText(certFile, "certificate");
  const key = await readText(keyFile, "key");
  let x509: X509Certificate;
  try {
    x509 = new X509Certificate(pemToDer(cert));
  } catch (error) {
    throw new CertificateError(
      `Cannot parse certificate file "${certFile}": ${messageOf(error)}`,
      { cause: error },
    );
  }
  let publicKey: Uint8Array;
  try {
    publicKey = createPublicKey(createPrivateKey(key)).export({ type: "spki", format: "der" });
  } catch (error) {
    throw new CertificateError(`Cannot parse key file "${keyFile}": ${messageOf(error)}`, {
      cause: error,
    });
  }
  const certKey = x509.publicKey.export({ type: "spki", format: "der" });
  if (!equalBytes(certKey, publicKey)) {
    throw new CertificateError(
      `Cannot use key file "${keyFile}": it is not the key of certificate "${certFile}"`,
    );
  }
  return { cert, key, fingerprint: fingerprintOfDer(new Uint8Array(x509.raw)) };
}

async function readText(path: string, what: string): Promise<string> {
  try {
    return await Deno.readTextFile(path);
  } catch (error) {
    const why = error instanceof Deno.errors.NotFound ? "not found" : messageOf(error);
    throw new CertificateError(`Cannot read ${what} file "${path}": ${why}`, { cause: error });
  }
}

/**
 * Writes `text` under a temporary name in the same folder, then links it to `path`: false
 * (and nothing changed) when `path` already exists.
 */
async function linkNew(path: string, text: string, mode: number): Promise<boolean> {
  const tmp = `${path}.tmp-${hex(crypto.getRandomValues(new Uint8Array(6)))}`;
  await Deno.writeTextFile(tmp, text, { mode, createNew: true });
  try {
    await Deno.chmod(tmp, mode); // mode on create is masked by the umask
    await Deno.link(tmp, path);
    return true;
  } catch (error) {
    if (error instanceof Deno.errors.AlreadyExists) return false;
    throw new CertificateError(`Cannot write "${path}": ${messageOf(error)}`, { cause: error });
  } finally {
    await Deno.remove(tmp).catch(() => {});
  }
}

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.lstat(path);
    return true;
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return false;
    throw error;
  }
}

function stripBrackets(name: string): string {
  return name.startsWith("[") && name.endsWith("]") ? name.slice(1, -1) : name;
}

function hex(bytes: Uint8Array): string {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((v, i) => v === b[i]);
}

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
