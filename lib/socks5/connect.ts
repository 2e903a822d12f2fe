/**
 * CONNECT (RFC 1928 section 4): dial the destination and relay.
 *
 * @module
 */

import { formatAddress } from "../net/address.ts";
import { reachForClient } from "./dial.ts";
import { Reply, type SocksAddress } from "./protocol.ts";
import { type ClientContext, fail, sendReply } from "./client_context.ts";
import { relay } from "./tunnel.ts";

/**
 * CONNECT: resolve, check the rules against each address, dial the allowed addresses (the
 * lookup and the dialling within the connect timeout together), reply with the real local
 * address of the outgoing connection, then relay.
 */
export async function handleConnect(ctx: ClientContext, dst: SocksAddress): Promise<void> {
  const { record } = ctx;
  const dialled = await reachForClient(ctx, dst);
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
