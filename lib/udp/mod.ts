/**
 * The udp tool: an RFC 862 echo server that is safe by default ({@linkcode startUdpEcho}, or
 * {@linkcode startFastUdpEcho} where the process may use libc's batched socket calls) and
 * a measuring client ({@linkcode udpPing}) whose probes catch loss, duplication, reordering,
 * truncation and corruption.
 *
 * @example Usage
 * ```ts ignore
 * import { startUdpEcho, udpPing } from "./mod.ts";
 * const conn = Deno.listenDatagram({ transport: "udp", hostname: "127.0.0.1", port: 0 });
 * const server = startUdpEcho(conn);
 * const summary = await udpPing({ hostname: "127.0.0.1", port: server.addr.port }, {
 *   count: 3,
 *   intervalMs: 10,
 * });
 * await server.stop();
 * console.log(summary.received); // 3
 * ```
 *
 * @module
 */

export * from "./echo_server.ts";
export * from "./fast_echo.ts";
export { LibcError } from "./libc.ts";
export * from "./ping.ts";
export * from "./ping_stats.ts";
export * from "./probe.ts";
export * from "./rate_limiter.ts";
export * from "./reflector_ports.ts";
export * from "./crc32.ts";
export * from "./datagram.ts";
export { udpEchoCommand, udpPingCommand } from "./command.ts";
