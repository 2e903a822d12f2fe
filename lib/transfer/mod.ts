/**
 * File and folder transfer (`sockit send` / `sockit recv`): a versioned, verified and
 * resumable protocol over the shared frame codec, with a receiver that trusts nothing it is
 * sent.
 *
 * @example Send a folder to a receiver
 * ```ts ignore
 * import { collectEntries, sendEntries } from "./mod.ts";
 * const conn = await Deno.connect({ hostname: "127.0.0.1", port: 7071 });
 * const summary = await sendEntries(conn, await collectEntries(["photos"]));
 * conn.close();
 * ```
 *
 * @module
 */

export * from "./protocol.ts";
export * from "./safe_path.ts";
export * from "./link_policy.ts";
export * from "./walk.ts";
export * from "./sender.ts";
export * from "./receiver.ts";
export * from "./progress.ts";
export * from "./human.ts";
export * from "./hasher.ts";
export { recvCommand, sendCommand, TRANSFER_CLI_DEFAULTS } from "./command.ts";
