/**
 * CONNECT (RFC 1928 section 4): dial the destination and relay.
 *
 * @module
 */

import { formatAddress } from "../net/address.ts";
import { dialAny, resolveDestination } from "./dial.ts";
import { Reply, type SocksAddress } from "./protocol.ts";
import { fail, relay, sendReply, type SessionContext } from "./session.ts";

/**
 * CONNECT: resolve, check the rules against each address, dial within the connect timeout,
 * reply with the real local address of the outgoing connection, then relay.
 */
export async function handleConnect(ctx: SessionContext, dst: SocksAddress): Promise<void> {
  const { opts, record } = ctx;
  const resolved = await resolveDestination(dst.hostname, opts.rules);
  if ("reply" in resolved) return await fail(ctx, { reply: resolved.reply, why: resolved.why });
  const dialled = await dialAny(resolved.addresses, {
    port: dst.port,
    timeoutMs: opts.connectTimeoutMs,
    deadlines: ctx.deadlines,
  });
  if ("reply" in dialled) return await fail(ctx, { reply: dialled.reply, why: dialled.why });
  const target = dialled.conn;
  record.via = formatAddress({ hostname: dialled.address, port: dst.port });
  try {
    await sendReply(ctx, Reply.Succeeded, target.localAddr);
  } catch (error) {
    target.close();
    throw error;
  }
  await relay(ctx, target);
}
