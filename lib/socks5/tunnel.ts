/**
 * The tunnel that follows a successful CONNECT, BIND or SOCKS4 request: bytes relayed both
 * ways between the client and the destination, with the idle and half-open caps, and what
 * it moved put in the client's record.
 *
 * @module
 */

import type { Reader } from "../net/buffered_reader.ts";
import { copyBidirectional, type CopyResult } from "../net/copy.ts";
import type { ClientContext } from "./client_context.ts";
import { describeError } from "./errors.ts";

/**
 * Relays the client connection and `target`, recording the bytes moved and how it ended. The
 * idle and half-open caps are tasks on the server's {@linkcode Deadlines}, not a timer per
 * tunnel: a read notes the time, and the idle task, when due, re-arms itself for the last
 * read plus the idle timeout; the first end of file one way starts the half-open task. Reads
 * are not wrapped, so an idle tunnel holds nothing extra.
 */
export async function relay(
  ctx: ClientContext,
  target: Deno.TcpConn,
  readA: Reader = ctx.reader,
): Promise<void> {
  const { opts, record, conn } = ctx;
  target.setNoDelay(true);
  const result: CopyResult = await copyBidirectional(conn, target, {
    readA,
    readB: target,
    initialBufferSize: opts.initialRelayBufferSize,
    maxBufferSize: opts.maxRelayBufferSize,
    idleTimeoutMs: opts.idleTimeoutMs,
    halfOpenTimeoutMs: opts.halfOpenTimeoutMs,
    deadlines: ctx.deadlines,
  });
  ctx.closed = true;
  record.up = result.aToB;
  record.down = result.bToA;
  if (result.end !== "done") {
    record.note ??= result.end === "error" ? `relay: ${describeError(result.error)}` : result.end;
  }
}
