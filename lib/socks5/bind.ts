/**
 * BIND (RFC 1928 section 4): listen for one incoming connection on the client's behalf,
 * with the two replies the RFC describes.
 *
 * @module
 */

import { formatAddress } from "../net/address.ts";
import { LimitError } from "../net/errors.ts";
import { canonicalIP, isUnspecified, resolveDestination } from "./dial.ts";
import { Reply, type SocksAddress } from "./protocol.ts";
import { type ClientContext, fail, sendReply } from "./client_context.ts";
import { describeError } from "./errors.ts";
import { relay } from "./tunnel.ts";

/**
 * BIND: listen on the control connection's local address, reply with that address (or
 * `--advertise`), wait for one peer (from DST's address when it is set, and allowed by the
 * rules), reply again with the peer's address, then relay. Peers from elsewhere are closed
 * and the wait goes on until the BIND timeout.
 */
export async function handleBind(ctx: ClientContext, dst: SocksAddress): Promise<void> {
  const { conn, reader, opts, record } = ctx;
  let expected: Set<string> | undefined;
  if (!isUnspecified(dst.hostname)) {
    const resolved = await resolveDestination(dst.hostname, {
      rules: opts.rules,
      timeoutMs: opts.connectTimeoutMs,
      deadlines: ctx.deadlines,
      nameServer: opts.nameServer,
    });
    if ("reply" in resolved) return await fail(ctx, { reply: resolved.reply, why: resolved.why });
    expected = new Set(resolved.addresses.map(canonicalIP));
  }
  const local = conn.localAddr;
  let listener: Deno.TcpListener;
  try {
    listener = Deno.listen({ hostname: local.hostname, port: 0, transport: "tcp" });
  } catch (error) {
    return await fail(ctx, {
      reply: Reply.GeneralFailure,
      why: `cannot listen: ${describeError(error)}`,
    });
  }
  let peer: Deno.TcpConn | undefined;
  // Watch the control connection: EOF means the client gave up. Bytes that arrive stay
  // buffered in the reader and go to the peer once the relay starts.
  let watch: Promise<boolean> | undefined;
  try {
    const bound = { hostname: opts.advertise ?? local.hostname, port: listener.addr.port };
    record.via = formatAddress(bound);
    await sendReply(ctx, Reply.Succeeded, bound);
    // A full buffer (LimitError) is not end of file.
    watch = reader.fill().catch((error) => error instanceof LimitError);
    const deadline = performance.now() + opts.bindTimeoutMs;
    while (!peer) {
      const left = deadline - performance.now();
      if (left <= 0) {
        return await fail(ctx, { reply: Reply.TtlExpired, why: "no peer connected in time" });
      }
      const accepted = listener.accept();
      let stop = () => {};
      const outcome = await Promise.race([
        accepted.then((c) => ({ peer: c })),
        watch.then((more) => (more ? new Promise<never>(() => {}) : { eof: true })),
        new Promise<{ timeout: true }>((r) => {
          stop = ctx.deadlines.after(left, () => r({ timeout: true }));
        }),
      ]).finally(() => stop());
      if (!("peer" in outcome)) accepted.then((c) => c.close(), () => {});
      if ("eof" in outcome) {
        record.note = "client closed before a peer connected";
        return;
      }
      if ("timeout" in outcome) {
        return await fail(ctx, { reply: Reply.TtlExpired, why: "no peer connected in time" });
      }
      const from = canonicalIP(outcome.peer.remoteAddr.hostname);
      if ((expected && !expected.has(from)) || !opts.rules.allows(from)) {
        opts.logger?.debug(`${record.client}: BIND closed unexpected peer ${from}`);
        outcome.peer.close();
        continue;
      }
      peer = outcome.peer;
    }
  } finally {
    listener.close();
  }
  record.via = formatAddress(peer.remoteAddr);
  try {
    await sendReply(ctx, Reply.Succeeded, peer.remoteAddr);
  } catch (error) {
    peer.close();
    throw error;
  }
  const pending = watch;
  await relay(ctx, peer, {
    read: async (p: Uint8Array) => {
      await pending;
      return await reader.read(p);
    },
  });
}
