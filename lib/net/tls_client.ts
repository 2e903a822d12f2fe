/**
 * How `chat --tls` decides to trust a relay, in order:
 *
 * 1. `--fingerprint sha256:...` (a pin): only the certificate with that fingerprint; the
 *    known hosts file is neither read nor written.
 * 2. `--ca FILE`: the chain must verify against that CA (it replaces the public roots) and
 *    the certificate must name the host, as a browser checks. A pin given too must match.
 * 3. Neither: trust on first use against the known hosts file (`known_hosts.ts`): new hosts
 *    are recorded and announced, a changed certificate is refused loudly.
 *
 * Every mode is one TLS connection, judged after the handshake and before any byte is sent,
 * so the relay never sees a probe connection. For 1 and 3 the handshake runs without chain
 * verification (a self-signed certificate has none), but Deno's verifier still checks the
 * handshake signature with the presented certificate's key, so a matching fingerprint proves
 * the peer holds that certificate's private key (see `tls_stream.ts`).
 *
 * What Deno 2.9 offered instead, and why not:
 * - `Deno.connectTls({ caCerts: [selfSignedPem] })` does accept the relay's own certificate
 *   as its trust anchor (tested: a leaf with cA=false works), but `caCerts` is added to the
 *   public roots, so any publicly trusted certificate for the name passes too, and the peer's
 *   certificate is never shown (`handshake()` gives only `alpnProtocol`): no way to get the
 *   certificate to record on first use, nor to pin exactly.
 * - `unsafelyIgnoreCertificateErrors` is a process-wide flag: it would switch off
 *   verification for every connection of the process.
 * - Fetching the certificate first (a probe connection, or the relay printing it over plain
 *   TCP) is unauthenticated, costs the relay a join/leave, and a man in the middle can show
 *   the real certificate to the probe and its own to the connection that follows.
 *
 * @module
 */

import { checkKnownHost, hostPortKey, type KnownHostOptions } from "./known_hosts.ts";
import { parseFingerprint } from "./tls_cert.ts";
import { connectTlsSocket, TlsHandshakeError, type TlsStreamConn } from "./tls_stream.ts";

/** How a relay came to be trusted. */
export type TlsTrust = "pinned" | "ca" | "known" | "new";

/** Options for {@linkcode connectVerifiedTls}. */
export interface VerifiedTlsOptions extends KnownHostOptions {
  /** Accept only the certificate with this fingerprint (any form {@linkcode parseFingerprint} reads). */
  fingerprint?: string;
  /** Verify the chain against this CA certificate (PEM) and check the name. */
  ca?: string;
  /** SNI, and the name checked with `ca`. @default {the hostname, unless an IP address} */
  servername?: string;
  /** Protocols offered for ALPN. */
  alpnProtocols?: string[];
  /** Most time to connect and handshake, in ms. @default {10000} */
  timeoutMs?: number;
}

/** A TLS connection to a relay that passed {@linkcode connectVerifiedTls}'s checks. */
export interface VerifiedTls {
  /** The connection; nothing was sent on it yet. */
  conn: TlsStreamConn;
  /** Why it is trusted. */
  trust: TlsTrust;
  /** The relay certificate's fingerprint. */
  fingerprint: string;
}

/**
 * The relay presented a certificate other than the pinned one (`--fingerprint`).
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert/strict";
 * import { CertificatePinError } from "./tls_client.ts";
 * const err = new CertificatePinError("a:1", { expected: "sha256:aa", presented: "sha256:bb" });
 * assert.equal(err.name, "CertificatePinError");
 * assert.match(err.message, /sha256:bb/);
 * ```
 */
export class CertificatePinError extends Error {
  /** The pinned fingerprint. */
  readonly expected: string;
  /** The fingerprint presented. */
  readonly presented: string;

  /** Creates the error; the message shows both fingerprints. */
  constructor(hostPort: string, at: { expected: string; presented: string }) {
    super(
      `The certificate of ${hostPort} is not the pinned one, refusing to connect.\n` +
        `  pinned:    ${at.expected}\n` +
        `  presented: ${at.presented}`,
    );
    this.name = "CertificatePinError";
    this.expected = at.expected;
    this.presented = at.presented;
  }
}

/**
 * Connects to a relay with TLS and checks its certificate (see the module doc for the modes).
 * Rejects with {@linkcode CertificatePinError}, `CertificateChangedError` (`known_hosts.ts`) or
 * {@linkcode TlsHandshakeError}; the connection is closed then, with nothing sent.
 *
 * @example Trust on first use, then a match
 * ```ts
 * import assert from "node:assert/strict";
 * import { connectVerifiedTls } from "./tls_client.ts";
 * import { createSelfSignedCert } from "./tls_cert.ts";
 * const key = await createSelfSignedCert({ names: ["localhost"] });
 * using listener = Deno.listenTls({ hostname: "127.0.0.1", port: 0, ...key });
 * (async () => {
 *   for await (const c of listener) c.handshake().then(() => c.close(), () => c.close());
 * })();
 * const configDir = await Deno.makeTempDir();
 * const options = { configDir, onNew: () => {} };
 * const first = await connectVerifiedTls("127.0.0.1", listener.addr.port, options);
 * assert.equal(first.trust, "new");
 * assert.equal(first.fingerprint, key.fingerprint);
 * first.conn.close();
 * const again = await connectVerifiedTls("127.0.0.1", listener.addr.port, options);
 * assert.equal(again.trust, "known");
 * again.conn.close();
 * await Deno.remove(configDir, { recursive: true });
 * ```
 */
export async function connectVerifiedTls(
  hostname: string,
  port: number,
  options: VerifiedTlsOptions = {},
): Promise<VerifiedTls> {
  const pin = options.fingerprint === undefined ? undefined : parseFingerprint(options.fingerprint);
  const hostPort = hostPortKey(hostname, port);
  const conn = await connectTlsSocket(hostname, port, {
    ca: options.ca === undefined ? undefined : [options.ca],
    rejectUnauthorized: options.ca !== undefined,
    servername: options.servername,
    alpnProtocols: options.alpnProtocols,
    timeoutMs: options.timeoutMs,
  });
  try {
    const fingerprint = conn.fingerprint;
    if (fingerprint === undefined) {
      throw new TlsHandshakeError(`Cannot trust ${hostPort}: it presented no certificate`);
    }
    if (pin !== undefined && fingerprint !== pin) {
      throw new CertificatePinError(hostPort, { expected: pin, presented: fingerprint });
    }
    let trust: TlsTrust;
    if (pin !== undefined) trust = "pinned";
    else if (options.ca !== undefined) trust = "ca";
    else trust = await checkKnownHost(hostPort, fingerprint, options) === "new" ? "new" : "known";
    return { conn, trust, fingerprint };
  } catch (error) {
    conn.close();
    throw error;
  }
}
