/**
 * SOCKS5 (RFC 1928, RFC 1929): the `sockit socks5` proxy server and a small client.
 *
 * @example Connect through a proxy
 * ```ts ignore
 * import { parseProxyUrl, socks5Connect } from "./mod.ts";
 * const conn = await socks5Connect(parseProxyUrl("socks5://127.0.0.1:1080"),
 *   { hostname: "example.com", port: 80 });
 * ```
 *
 * @example Run a proxy in-process
 * ```ts ignore
 * import { startSocks5Server } from "./mod.ts";
 * const server = startSocks5Server(Deno.listen({ hostname: "127.0.0.1", port: 0 }));
 * await server.stop();
 * ```
 *
 * @module
 */

export {
  CLIENT_DEFAULTS,
  DEFAULT_PROXY_PORT,
  parseProxyUrl,
  type Socks5Bind,
  socks5Bind,
  socks5Connect,
  type Socks5Proxy,
} from "./client.ts";
export {
  AddressType,
  AuthStatus,
  Command,
  Method,
  Reply,
  Socks4Reply,
  Socks5Error,
  Version,
} from "./protocol.ts";
export { SOCKS5_DEFAULTS, type Socks5ServerOptions } from "./options.ts";
// The proxy's destination rules are the shared address rules (lib/net/address_rules.ts).
export {
  AddressRules as DestinationRules,
  type AddressRulesOptions as DestinationRulesOptions,
  PRIVATE_RANGES,
} from "../net/address_rules.ts";
export { UserTable } from "./auth.ts";
export { type NameServer } from "./resolve.ts";
export { LoginGuard, type LoginGuardOptions } from "./login_guard.ts";
export { startSocks5Server } from "./server.ts";
export { socks5Command } from "./command.ts";
