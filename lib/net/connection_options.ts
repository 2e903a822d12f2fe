/**
 * The options of a `Connection` (`connection.ts`), its defaults in one place, and the socket it runs
 * on.
 *
 * @module
 */

import type { CloseInfo, CloseReason } from "./close_reason.ts";
import type { FlowOptions } from "./flow.ts";

/** Defaults of {@linkcode ConnectionOptions}, in one place. */
export const CONNECTION_DEFAULTS = {
  /** Bytes queued for one peer before it counts as a slow consumer: 8 MiB. */
  maxQueuedBytes: 8 * 1024 * 1024,
  /** What happens when the outbox is full. */
  overflow: "close" as OverflowPolicy,
  /** The socket taking no byte this long marks the peer as not reading, in ms (0 disables). */
  writeTimeoutMs: 30_000,
  /** Close a peer that sent nothing for this long, in ms (0 disables). */
  idleTimeoutMs: 0,
  /** Send a ping after this long without reading anything, in ms (0 disables). */
  pingIntervalMs: 0,
  /** Close after this many ping intervals without reading anything (0: pings only). */
  heartbeatMisses: 0,
  /** How long `Connection.close` waits for queued bytes to go out, in ms. */
  flushTimeoutMs: 2_000,
  /** Read buffer per connection (also the longest line or handshake it can buffer). */
  readBufferSize: 64 * 1024,
} as const;

/** What a full outbox does: close the connection, or drop the message and count it. */
export type OverflowPolicy = "close" | "drop";

/** Options for `Connection` (`connection.ts`). Defaults are in {@linkcode CONNECTION_DEFAULTS}. */
export interface ConnectionOptions {
  /** Bytes that may wait in the outbox. @default {8 MiB} */
  maxQueuedBytes?: number;
  /** Policy when the outbox would exceed its cap. @default {"close"} */
  overflow?: OverflowPolicy;
  /** Water marks and stall time; without them the cap applies to every peer. */
  flow?: FlowOptions;
  /** Close when the socket took no byte this long, in ms; 0 disables. @default {30000} */
  writeTimeoutMs?: number;
  /** Close when nothing was read for this long, in ms; 0 disables. @default {0} */
  idleTimeoutMs?: number;
  /** Send `ping()` after this long without reading anything, in ms; 0 disables. @default {0} */
  pingIntervalMs?: number;
  /** Close after this many ping intervals without reading anything; 0: never. @default {0} */
  heartbeatMisses?: number;
  /** Makes the heartbeat message sent every `pingIntervalMs`. */
  ping?: () => Uint8Array;
  /** Message queued just before a slow-consumer, idle or heartbeat close: a reason line. */
  farewell?: (reason: CloseReason) => Uint8Array | undefined;
  /** Called once, synchronously, when the connection starts closing (for any reason). */
  onClosing?: (info: CloseInfo) => void;
  /** Called each time the writer has emptied the outbox. */
  onDrained?: () => void;
  /**
   * Bytes the kernel still holds for the peer, unacknowledged (`unackedBytes()` in
   * `tcp_queue.ts`); lets the stall check tell a slow reader from a stuck one.
   */
  unackedBytes?: () => number | undefined;
  /** Called when the peer becomes stuck (true) and when it takes bytes again (false). */
  onStuck?: (stuck: boolean) => void;
  /** How long `Connection.close` waits for queued bytes, in ms. @default {2000} */
  flushTimeoutMs?: number;
  /** Read buffer size in bytes. @default {65536} */
  readBufferSize?: number;
}

/** Options for `Connection.close`. */
export interface CloseOptions {
  /** Wait for queued bytes to go out first (bounded). @default {true} */
  flush?: boolean;
  /** How long to wait for them, in ms. @default {ConnectionOptions.flushTimeoutMs} */
  flushTimeoutMs?: number;
  /** The error behind the close. */
  error?: unknown;
  /** A last message, queued after everything else. */
  farewell?: Uint8Array;
}

/** The socket a connection runs on: `Deno.Conn` or anything with the same calls. */
export interface ConnectionIo {
  /** Reads into `p`. */
  read(p: Uint8Array): Promise<number | null>;
  /** Writes part of `p`. */
  write(p: Uint8Array): Promise<number>;
  /** Shuts down the write side, so the peer reads end of file. */
  closeWrite(): Promise<void>;
  /** Closes the connection. */
  close(): void;
}
