/**
 * TLS for sockit, one import for all of it:
 *
 * - `tls_cert.ts`: create a self-signed relay certificate, keep it in the config folder or
 *   load a given one, fingerprints (`sha256:HEX`).
 * - `known_hosts.ts`: trust on first use, `checkKnownHost`, {@linkcode CertificateChangedError}.
 * - `tls_stream.ts`: TLS on a connection already held: {@linkcode acceptTls} (server side,
 *   after `sniff.ts` read the ClientHello) and {@linkcode connectTlsSocket} (client side), both
 *   as a `Deno.TcpConn`.
 * - `tls_client.ts`: {@linkcode connectVerifiedTls}, what `chat --tls` trusts: a pinned
 *   fingerprint, a CA, or the known hosts file.
 *
 * @example A relay's certificate, served after sniffing, trusted on first use by a client
 * ```ts
 * import assert from "node:assert/strict";
 * import { acceptTls, connectVerifiedTls, loadOrCreateServerCert } from "./tls.ts";
 * import { sniff } from "./sniff.ts";
 * const configDir = await Deno.makeTempDir();
 * const key = await loadOrCreateServerCert({ configDir, names: ["localhost"] });
 * using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
 * const client = connectVerifiedTls("127.0.0.1", listener.addr.port, {
 *   configDir,
 *   onNew: () => {},
 * });
 * const { kind, conn } = await sniff(await listener.accept());
 * assert.equal(kind, "tls");
 * const server = await acceptTls(conn, key);
 * const { trust, fingerprint, conn: tls } = await client;
 * assert.equal(trust, "new");
 * assert.equal(fingerprint, key.fingerprint);
 * tls.close();
 * server.close();
 * await Deno.remove(configDir, { recursive: true });
 * ```
 *
 * @module
 */

export {
  CERT_DEFAULTS,
  CertificateError,
  type CertifiedKey,
  type CreateCertOptions,
  createSelfSignedCert,
  defaultCertNames,
  fingerprintOf,
  fingerprintOfDer,
  loadOrCreateServerCert,
  parseFingerprint,
  pemToDer,
  type ServerCert,
  type ServerCertOptions,
  sockitConfigDir,
} from "./tls_cert.ts";
export {
  CertificateChangedError,
  checkKnownHost,
  hostPortKey,
  KNOWN_HOSTS_FILE_NAME,
  type KnownHost,
  type KnownHostOptions,
  KnownHostsError,
  knownHostsPath,
  type NewHost,
  readKnownHosts,
} from "./known_hosts.ts";
export {
  acceptTls,
  type AcceptTlsOptions,
  connectTlsSocket,
  type ConnectTlsSocketOptions,
  TLS_DEFAULTS,
  TlsHandshakeError,
  type TlsServerKey,
  TlsStreamConn,
} from "./tls_stream.ts";
export {
  CertificatePinError,
  connectVerifiedTls,
  type TlsTrust,
  type VerifiedTls,
  type VerifiedTlsOptions,
} from "./tls_client.ts";
