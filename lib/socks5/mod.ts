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
export { Reply, Socks5Error } from "./protocol.ts";
