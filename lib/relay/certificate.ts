/**
 * The relay's TLS certificate while it runs: loaded (or created) once at start, reloaded on
 * request (`SIGHUP`) without dropping anyone.
 *
 * - With `--cert FILE --key FILE` those files (PEM) are used. Without, the self-signed pair in
 *   the config folder (`$XDG_CONFIG_HOME/sockit/relay-cert.pem`, `relay-key.pem`) is reused,
 *   or created on the first start (`lib/net/tls_cert.ts`).
 * - {@linkcode RelayCertificate.reload} reads the same two files again. A pair that reads,
 *   parses, matches and makes a TLS context replaces the old one for new handshakes;
 *   connections already open keep theirs. A broken pair is refused with the reason, and the
 *   old pair stays in use.
 *
 * @module
 */

import tls from "node:tls";
import {
  CertificateError,
  loadOrCreateServerCert,
  type ServerCert,
  type ServerCertOptions,
} from "../net/tls_cert.ts";
import type { TlsServerKey } from "../net/tls_stream.ts";

/** What a {@linkcode RelayCertificate.reload} did. */
export interface CertificateReload {
  /** The fingerprint in use before. */
  before: string;
  /** The fingerprint in use now. */
  after: string;
}

/**
 * The certificate and key a relay's new TLS handshakes use.
 *
 * @example Load, then reload a replaced pair; a broken one keeps the pair in use
 * ```ts
 * import assert from "node:assert/strict";
 * import { RelayCertificate } from "./certificate.ts";
 * import { createSelfSignedCert } from "../net/tls_cert.ts";
 * const dir = await Deno.makeTempDir();
 * const [certFile, keyFile] = [`${dir}/cert.pem`, `${dir}/key.pem`];
 * const first = await createSelfSignedCert({ names: ["localhost"] });
 * await Deno.writeTextFile(certFile, first.cert);
 * await Deno.writeTextFile(keyFile, first.key);
 * const cert = await RelayCertificate.load({ certFile, keyFile });
 * assert.equal(cert.fingerprint, first.fingerprint);
 * const second = await createSelfSignedCert({ names: ["localhost"] });
 * await Deno.writeTextFile(certFile, second.cert);
 * await Deno.writeTextFile(keyFile, second.key);
 * assert.deepEqual(await cert.reload(), { before: first.fingerprint, after: second.fingerprint });
 * assert.equal(cert.key().cert, second.cert);
 * await Deno.writeTextFile(keyFile, first.key); // not the certificate's key
 * await assert.rejects(cert.reload(), /not the key of certificate/);
 * assert.equal(cert.fingerprint, second.fingerprint);
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export class RelayCertificate {
  #current: ServerCert;

  private constructor(current: ServerCert) {
    this.#current = current;
  }

  /**
   * Loads `options.certFile` and `options.keyFile`, or reuses or creates the config folder's
   * self-signed pair (see `loadOrCreateServerCert`). Throws a `CertificateError` naming the
   * file that is wrong.
   */
  static async load(options: ServerCertOptions = {}): Promise<RelayCertificate> {
    const cert = await loadOrCreateServerCert(options);
    checkContext(cert);
    return new RelayCertificate(cert);
  }

  /** The pair in use: its files, fingerprint, and whether this start created it. */
  get current(): ServerCert {
    return this.#current;
  }

  /** The fingerprint of the certificate in use (`sha256:HEX`). */
  get fingerprint(): string {
    return this.#current.fingerprint;
  }

  /** The pair for a new handshake (a function, for `RelayOptions.tls`). */
  readonly key = (): TlsServerKey => this.#current;

  /**
   * Reads the pair's files again and uses them for new handshakes. Rejects with a
   * `CertificateError` saying what is wrong, and keeps the pair in use, when they do not make
   * a working pair.
   */
  async reload(): Promise<CertificateReload> {
    const { certFile, keyFile } = this.#current;
    const next = await loadOrCreateServerCert({ certFile, keyFile });
    checkContext(next);
    const before = this.#current.fingerprint;
    this.#current = next;
    return { before, after: next.fingerprint };
  }
}

/** Throws a `CertificateError` when node:tls cannot serve the pair. */
function checkContext(cert: ServerCert): void {
  try {
    tls.createSecureContext({ cert: cert.cert, key: cert.key });
  } catch (error) {
    throw new CertificateError(
      `Cannot serve TLS with "${cert.certFile}" and "${cert.keyFile}": ${
        error instanceof Error ? error.message : String(error)
      }`,
      { cause: error },
    );
  }
}
