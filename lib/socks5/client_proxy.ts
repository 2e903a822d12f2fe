/**
 * Which SOCKS5 proxy a client (`send`, `chat`) goes through, and with which credentials,
 * kept out of argv (which every local user can read with `ps`):
 *
 * 1. `--proxy URL` when given; otherwise the environment, as curl reads it: `SOCKS_PROXY`,
 *    `socks_proxy`, `ALL_PROXY`, `all_proxy` (the first set). An environment proxy that is
 *    not `socks5://` or `socks5h://` (an HTTP proxy in `ALL_PROXY`) is skipped with a warning:
 *    sockit's clients speak SOCKS5. `NO_PROXY` / `no_proxy` (comma-separated host names,
 *    `.domain` suffixes, IP literals, or `*`) exempts a destination from an environment proxy.
 * 2. Credentials: `--proxy-auth-file FILE` (one `user:pass` line; a warning when others can read
 *    it) wins; then the URL's `user:pass@`; a URL with only `user@` takes the password from
 *    `SOCKIT_PROXY_PASSWORD`. A password typed in `--proxy` itself works but is warned about.
 *
 * @module
 */

import type { HostPort } from "../net/address.ts";
import { UsageError } from "../net/errors.ts";
import { parseIP } from "../net/ip.ts";
import { checkProxyPassword, parseProxyUrl, redactProxyUrl, type Socks5Proxy } from "./client.ts";

/** The environment variables a client reads, in order of precedence. */
export const CLIENT_PROXY_ENV = {
  /** Proxy URLs, the first set wins. */
  proxy: ["SOCKS_PROXY", "socks_proxy", "ALL_PROXY", "all_proxy"],
  /** Destinations that go direct. */
  noProxy: ["NO_PROXY", "no_proxy"],
  /** The password for a proxy URL that names only the user. */
  password: "SOCKIT_PROXY_PASSWORD",
} as const;

/** Options of {@linkcode clientProxy}. */
export interface ClientProxyOptions {
  /** `--proxy URL`, if given. */
  url?: string;
  /** `--proxy-auth-file FILE`, if given. */
  authFile?: string;
  /** Reads an environment variable. @default {Deno.env.get} */
  env?: (name: string) => string | undefined;
  /** Where warnings go (a password in argv, a skipped HTTP proxy, a readable auth file). */
  warn?: (text: string) => void;
}

/**
 * Whether `NO_PROXY` (its text) exempts `host`.
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert/strict";
 * import { noProxyMatches } from "./client_proxy.ts";
 * assert.equal(noProxyMatches("localhost,.corp.example,10.1.2.3", "a.corp.example"), true);
 * assert.equal(noProxyMatches("localhost,.corp.example,10.1.2.3", "10.1.2.3"), true);
 * assert.equal(noProxyMatches("corp.example", "www.corp.example"), true);
 * assert.equal(noProxyMatches("corp.example", "notcorp.example"), false);
 * assert.equal(noProxyMatches("*", "anything"), true);
 * ```
 */
export function noProxyMatches(noProxy: string, host: string): boolean {
  const h = host.toLowerCase().replace(/^\[|\]$/g, "").replace(/\.$/, "");
  for (const raw of noProxy.split(",")) {
    let entry = raw.trim().toLowerCase().replace(/^\[|\]$/g, "");
    if (entry === "") continue;
    if (entry === "*") return true;
    // An optional :port is ignored (a destination is exempt on every port).
    if (!parseIP(entry) && /:\d+$/.test(entry)) entry = entry.replace(/:\d+$/, "");
    if (parseIP(entry)) {
      if (parseIP(h) && entry === h) return true;
      continue;
    }
    const domain = entry.replace(/^\./, "");
    if (h === domain || h.endsWith(`.${domain}`)) return true;
  }
  return false;
}

/** Reads `user:pass` from an auth file; throws a `UsageError` naming the file. */
function readAuthFile(path: string, warn?: (text: string) => void): [string, string] {
  let text: string;
  try {
    text = Deno.readTextFileSync(path);
    const mode = Deno.statSync(path).mode;
    if (mode !== null && (mode & 0o077) !== 0) {
      warn?.(`--proxy-auth-file ${path} can be read by other users (chmod 600 it)`);
    }
  } catch (error) {
    throw new UsageError(`Cannot read --proxy-auth-file '${path}': ${(error as Error).message}`);
  }
  const line = text.split(/\r?\n/).map((l) => l.trim()).find((l) => l !== "" && !l.startsWith("#"));
  const colon = line?.indexOf(":") ?? -1;
  if (!line || colon <= 0) {
    throw new UsageError(`Cannot parse --proxy-auth-file '${path}': expected one user:pass line`);
  }
  const password = line.slice(colon + 1);
  checkProxyPassword(password, `--proxy-auth-file '${path}'`);
  return [line.slice(0, colon), password];
}

/**
 * The proxy for a connection to `target` (see the module doc), or undefined to go direct.
 * Throws a `UsageError` for a bad `--proxy`, auth file or missing password.
 *
 * @example From the environment, the password kept out of the URL
 * ```ts
 * import assert from "node:assert/strict";
 * import { clientProxy } from "./client_proxy.ts";
 * const env = (name: string) =>
 *   ({ ALL_PROXY: "socks5://alice@proxy.example:1080", SOCKIT_PROXY_PASSWORD: "s3cret" })[name];
 * assert.deepEqual(clientProxy({ hostname: "relay.example", port: 7070 }, { env }), {
 *   hostname: "proxy.example",
 *   port: 1080,
 *   username: "alice",
 *   password: "s3cret",
 * });
 * ```
 */
export function clientProxy(
  target: HostPort,
  options: ClientProxyOptions = {},
): Socks5Proxy | undefined {
  const env = options.env ?? ((name: string) => Deno.env.get(name));
  const warn = options.warn;
  let proxy: Socks5Proxy;
  if (options.url !== undefined) {
    proxy = parseProxyUrl(options.url);
    if (proxy.password !== undefined && options.authFile === undefined) {
      warn?.(
        `the password in --proxy ${redactProxyUrl(options.url)} can be read by every local ` +
          `user (ps): put the user in the URL only and the password in ` +
          `${CLIENT_PROXY_ENV.password}, or use --proxy-auth-file`,
      );
    }
  } else {
    const name = CLIENT_PROXY_ENV.proxy.find((n) => (env(n) ?? "") !== "");
    if (name === undefined) {
      if (options.authFile !== undefined) {
        throw new UsageError("Cannot use --proxy-auth-file without --proxy or SOCKS_PROXY");
      }
      return undefined;
    }
    const url = env(name)!;
    if (!/^socks5h?:\/\//i.test(url)) {
      warn?.(`ignoring ${name}=${redactProxyUrl(url)}: sockit's clients speak SOCKS5 only`);
      return undefined;
    }
    const noProxy = CLIENT_PROXY_ENV.noProxy.map(env).find((v) => v !== undefined);
    if (noProxy !== undefined && noProxyMatches(noProxy, target.hostname)) return undefined;
    try {
      proxy = parseProxyUrl(url);
    } catch (error) {
      throw new UsageError(`Cannot use ${name}: ${(error as Error).message}`);
    }
  }
  if (options.authFile !== undefined) {
    const [username, password] = readAuthFile(options.authFile, warn);
    return { ...proxy, username, password };
  }
  if (proxy.username !== undefined && proxy.password === undefined) {
    const password = env(CLIENT_PROXY_ENV.password);
    if (password === undefined || password === "") {
      throw new UsageError(
        `Cannot authenticate to the proxy as ${JSON.stringify(proxy.username)}: no password ` +
          `(set ${CLIENT_PROXY_ENV.password}, or use --proxy-auth-file)`,
      );
    }
    checkProxyPassword(password, CLIENT_PROXY_ENV.password);
    return { ...proxy, password };
  }
  return proxy;
}
