/**
 * A bare TCP forwarder built on sockit's core copy loop, for the raw throughput benchmark:
 * `deno run -A bench/_forward.ts LISTEN_PORT TARGET_PORT`. Prints `listening on HOST:PORT`.
 * It copies with the buffer sizes the shipped proxy (socks5) uses, so the row measures what
 * users run.
 *
 * @module
 */

import { copyBidirectional } from "../lib/net/copy.ts";
import { serve } from "../lib/net/server.ts";
import { SOCKS5_DEFAULTS } from "../lib/socks5/mod.ts";

const [listenPort, targetPort] = Deno.args.map(Number);
const listener = Deno.listen({ hostname: "127.0.0.1", port: listenPort });
serve(listener, async (conn) => {
  const target = await Deno.connect({ hostname: "127.0.0.1", port: targetPort });
  conn.setNoDelay(true);
  target.setNoDelay(true);
  await copyBidirectional(conn, target, {
    initialBufferSize: SOCKS5_DEFAULTS.initialRelayBufferSize,
    maxBufferSize: SOCKS5_DEFAULTS.maxRelayBufferSize,
  });
});
console.error(`sockit forward: listening on 127.0.0.1:${listener.addr.port}`);
