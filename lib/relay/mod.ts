/**
 * The relay tool: a TCP hub that pushes what one client sends to every other client in its
 * room (line mode for nc/telnet/ncat, framed mode for binary messages), and its chat client.
 * One port serves plain clients, TLS (`RelayOptions.tls`) and HTTP (`RelayOptions.web`, the
 * integration point of the web chat), told apart by their first bytes (`listener.ts`).
 *
 * @example Run a relay in-process
 * ```ts ignore
 * import { Relay } from "./mod.ts";
 * const relay = new Relay(Deno.listen({ hostname: "127.0.0.1", port: 0 }), { maxClients: 10 });
 * console.log(`relay on port ${relay.addr.port}`);
 * await relay.shutdown();
 * ```
 *
 * @module
 */

export { Relay, type RelayOptions, type RelayStats } from "./relay.ts";
export { type RelayWebContext, type RelayWebHandler } from "./listener.ts";
export { RelayCertificate } from "./certificate.ts";
export { describeRefusal, type Refusal, type RefusalKind } from "./access.ts";
export { type ChatOptions, type ChatResult, runChat } from "./chat.ts";
export { RELAY_DEFAULTS, type SlowClientPolicy } from "./limits.ts";
export * from "./protocol.ts";
export { chatCommand, relayCommand } from "./command.ts";
