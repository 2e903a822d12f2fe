/**
 * Connecting the transit stream of a file transfer while the mailbox stays open: the transit
 * key, and {@linkcode connectTransit}, which races the connection against the other side
 * giving up. Both sides connect at once after the answer; if either cannot (no relay, no
 * route), it says so with an `{"error": ...}` message, and the other stops waiting at once
 * instead of running into its own transit timeout. (Hints that arrive once the connection
 * attempt started are recorded but not dialed: both clients send theirs before the answer.)
 *
 * @module
 */

import { quote } from "../log.ts";
import { parseTransferMessage } from "./offer.ts";
import type { ConnectOptions, Transit, TransitConnection } from "./transit.ts";
import { FILE_TRANSFER_APPID, type Wormhole } from "./wormhole.ts";

/** The other side sent an `error` message: it gave up (or refused). */
export class PeerGaveUpError extends Error {
  /** `text` is the other side's message (quoted in ours); `who` names that side. */
  constructor(readonly text: string, who: "sender" | "receiver") {
    super(`the ${who} gave up: ${quote(text)}`);
    this.name = "PeerGaveUpError";
  }
}

/**
 * The transit key both ends derive from the session key. The purpose names the file-transfer
 * app id whatever app id the wormhole uses, as the Python client does (its "bug 339").
 */
export function transitKey(wormhole: Wormhole): Uint8Array {
  return wormhole.deriveKey(`${FILE_TRANSFER_APPID}/transit-key`);
}

/**
 * Connects `transit` with the wormhole's transit key while reading the mailbox: an `error`
 * from the other side ends the attempt with {@linkcode PeerGaveUpError}. If our connect fails,
 * the other side is told before the error is thrown.
 */
export async function connectTransit(
  wormhole: Wormhole,
  transit: Transit,
  options: ConnectOptions & { peer: "sender" | "receiver" },
): Promise<TransitConnection> {
  const stop = new AbortController();
  const outer = options.signal;
  const forward = () => stop.abort(outer!.reason);
  outer?.addEventListener("abort", forward, { once: true });
  const watching = (async (): Promise<never> => {
    while (true) {
      const message = parseTransferMessage(await wormhole.receive({ signal: stop.signal }));
      if (message.error !== undefined) throw new PeerGaveUpError(message.error, options.peer);
      if (message.transit) transit.addPeerHints(message.transit.hints);
    }
  })();
  try {
    return await Promise.race([
      transit.connect(transitKey(wormhole), { ...options, signal: stop.signal }),
      watching,
    ]);
  } catch (error) {
    if (!(error instanceof PeerGaveUpError) && !outer?.aborted) {
      const why = error instanceof Error ? error.message : String(error);
      await wormhole.send({ error: `no transit connection: ${why}` }).catch(() => {});
    }
    throw error;
  } finally {
    outer?.removeEventListener("abort", forward);
    stop.abort(new Error("transit connected"));
    watching.catch(() => {});
  }
}
