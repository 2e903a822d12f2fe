/**
 * The relay's limits and its flow-control and slow-client policy, in one place.
 *
 * **Every live reader gets every line, in order.** Each client has an outbox. A message is
 * appended to the outbox of every other member of the sender's room, as one buffer shared by
 * all of them. When a recipient's outbox passes its **high-water mark**
 * (`highWaterBytes`, 1 MiB) while the recipient is *live*, the relay stops reading from the
 * senders whose messages go to it; their kernel buffers fill and TCP pushes back on the
 * sending clients. They resume once the recipient drains to its **low-water mark**
 * (`lowWaterBytes`, 256 KiB). Nothing is dropped and nobody healthy is cut: a room moves at
 * the pace of its slowest live reader, as with `ncat --broker`. A live recipient's outbox is
 * bounded by high water plus one read chunk per sender: what one read brought in, at most
 * {@linkcode LINE_READ_BUFFER_BYTES} (256 KiB) of lines, or one frame of `maxLineBytes`. The
 * messages are shared by every recipient, so the relay holds each chunk once.
 *
 * **Stuck is "the socket took no byte for `stallTimeoutMs`"** (1 s) while the relay had data
 * for it, asked of the kernel: Linux wakes a blocked write only after a large part of the send
 * buffer drained, so the stall check also compares the connection's unacknowledged bytes
 * (`lib/net/tcp_queue.ts`) at half the stall time and at the stall time, and a peer that
 * acknowledged bytes in between is reading, however slowly. A stuck client stops holding anyone back: from then on messages for it pile up in
 * its outbox up to `maxQueuedBytes` (4 MiB), and then the slow policy applies. If it reads
 * again before that, it gets everything queued, in order, and is live again (it may hold
 * senders once more). Why 1 s: a healthy reader is never silent that long (a GC pause, a
 * descheduled process on a loaded machine or a terminal scrolling megabytes stall it for tens
 * to a few hundred ms), while a reader that is suspended (Ctrl-S, a stopped process, a full
 * pipe nobody drains) is silent indefinitely. Each client that gets stuck costs the senders of
 * its room one pause of at most this long; afterwards they go at full speed.
 *
 * **Slow policy** `"disconnect"` (the default): a stuck client past the cap is sent one line
 * saying why (`* disconnected: slow consumer: ...`) after what was already on its way, and
 * disconnected; the reason reaches it even if it only reads again much later (within
 * `writeTimeoutMs`). `"drop"`: no flow control at all (never wait for a slow reader):
 * messages a client's full outbox cannot take are dropped and counted, and once it catches up
 * it is told how many it missed. `writeTimeoutMs` (30 s) is the last resort for a socket that
 * takes nothing: the client is disconnected even when nothing more is sent to it.
 *
 * **What pauses whom.** A sender is held by every outbox that what it caused left above high
 * water: its messages, and also the answers to its commands, the notices its joins, leaves and
 * renames send to others, and its pongs (so floods of commands are paced too).
 *
 * **Half-closed clients** (`nc -N host port </dev/null`, listen-only clients) stay connected
 * in line mode and keep receiving; the relay notices that they went away when a write fails,
 * or, on Linux, when the kernel shows the connection reset (checked every `listenerCheckMs`).
 *
 * **TLS and access** (`listener.ts`, `access.ts`): with `--tls` (or a web handler) a new
 * connection has `sniffWaitMs` (300 ms) to show its first bytes before it is served as a line
 * client, and a TLS client `tlsHandshakeTimeoutMs` (10 s) to finish its handshake; both count
 * against `maxClients` (and `maxPerIp`) meanwhile. Refusals are logged at most once per
 * `refusalLogIntervalMs` (10 s).
 *
 * The figures are the defaults; the `relay` command's options override every one except
 * `defaultRoom`, `maxNameLength`, `sniffWaitMs` and `refusalLogIntervalMs`, which are fixed.
 *
 * @module
 */

import type { Logger } from "../log.ts";
import { SNIFF_WAIT_MS } from "../net/sniff.ts";
import { TLS_DEFAULTS, type TlsServerKey } from "../net/tls_stream.ts";
import type { RelayWebHandler } from "./listener.ts";
import type { Cluster } from "./cluster/cluster.ts";

/** What happens to a stuck client whose outbox is full. */
export type SlowClientPolicy = "disconnect" | "drop";

/** Defaults of {@linkcode RelayOptions}. */
export const RELAY_DEFAULTS = {
  /** Address the relay binds. */
  host: "127.0.0.1",
  /** Port the relay listens on. */
  port: 7070,
  /** Longest line (line mode) or message payload (framed mode), in bytes: 64 KiB. */
  maxLineBytes: 64 * 1024,
  /** Largest `maxLineBytes` the relay accepts: 16 MiB. */
  maxLineLimit: 16 * 1024 * 1024,
  /** Bytes queued for a stuck client before the slow policy applies: 4 MiB. */
  maxQueuedBytes: 4 * 1024 * 1024,
  /** A live client's outbox above this holds the senders of its room: 1 MiB. */
  highWaterBytes: 1024 * 1024,
  /** Held senders go on once the outbox is down to this: 256 KiB. */
  lowWaterBytes: 256 * 1024,
  /** A client whose socket took no byte for this long is stuck, in ms. */
  stallTimeoutMs: 1_000,
  /** Slow-client policy. */
  slowPolicy: "disconnect" as SlowClientPolicy,
  /** A socket that takes no byte for this long is disconnected, in ms (0: never). */
  writeTimeoutMs: 30_000,
  /** Clients served at once; more get a one-line refusal. */
  maxClients: 1024,
  /** Close a client that sent nothing for this long, in ms (0: never). */
  idleTimeoutMs: 0,
  /** Framed mode: send a ping after this long without hearing from a client, in ms. */
  heartbeatMs: 15_000,
  /** Framed mode: drop a client silent for this many heartbeat intervals. */
  heartbeatMisses: 3,
  /** How long shutdown waits for queued messages to reach clients, in ms. */
  shutdownFlushMs: 2_000,
  /**
   * How often the kernel is asked whether a half-closed (listen-only) client is still there,
   * in ms: nothing else reveals that one went away while nothing is written to it.
   */
  listenerCheckMs: 5_000,
  /** How long a framed client has to send its hello, in ms. */
  helloTimeoutMs: 10_000,
  /** Room every client starts in (fixed). */
  defaultRoom: "lobby",
  /** Longest name or room name, in characters (fixed). */
  maxNameLength: 32,
  /** Seconds between `--stats` log lines. */
  statsIntervalSeconds: 10,
  /**
   * How long a new connection may take to send its first bytes before it is served as a line
   * client, in ms, when the relay tells kinds of client apart (`--tls`, or a web handler):
   * `SNIFF_WAIT_MS` of `lib/net/sniff.ts`, where the reasons are.
   */
  sniffWaitMs: SNIFF_WAIT_MS,
  /** Most time for a TLS handshake, in ms (`TLS_DEFAULTS` of `lib/net/tls_stream.ts`). */
  tlsHandshakeTimeoutMs: TLS_DEFAULTS.handshakeTimeoutMs,
  /** Connections at once from one client IP address (0: no cap). */
  maxPerIp: 0,
  /**
   * Refused connections (denied by `--allow`/`--deny`, over `--max-per-ip`, plaintext under
   * `--tls-only`, failed TLS handshakes) are logged at most once per this many ms, with the
   * count of those not logged: a flood of them must not become a flood of log lines.
   */
  refusalLogIntervalMs: 10_000,
} as const;

/** Options for `Relay` (`relay.ts`); defaults in {@linkcode RELAY_DEFAULTS}. */
export interface RelayOptions {
  /** Binary framed mode instead of lines. @default {false} */
  framed?: boolean;
  /** Longest line or message, in bytes. @default {65536} */
  maxLineBytes?: number;
  /** Outbox cap of a stuck client, in bytes. @default {4 MiB} */
  maxQueuedBytes?: number;
  /** A live client's outbox above this holds its room's senders. @default {1 MiB} */
  highWaterBytes?: number;
  /** Held senders resume once the outbox is down to this. @default {256 KiB} */
  lowWaterBytes?: number;
  /** A client whose socket took no byte this long is stuck, in ms. @default {1000} */
  stallTimeoutMs?: number;
  /** What to do with a stuck client whose outbox is full. @default {"disconnect"} */
  slowPolicy?: SlowClientPolicy;
  /** A socket that took no byte this long is disconnected, in ms. @default {30000} */
  writeTimeoutMs?: number;
  /** Clients at once. @default {1024} */
  maxClients?: number;
  /** Close a client silent this long, in ms; 0 disables. @default {0} */
  idleTimeoutMs?: number;
  /** Framed mode heartbeat interval, in ms. @default {15000} */
  heartbeatMs?: number;
  /** Framed mode: heartbeats missed before a client is dropped. @default {3} */
  heartbeatMisses?: number;
  /** How often a listen-only client is checked for being gone, in ms. @default {5000} */
  listenerCheckMs?: number;
  /** How long shutdown waits for queued messages, in ms. @default {2000} */
  shutdownFlushMs?: number;
  /**
   * TLS on the relay's port: the certificate and key for each new handshake (called per
   * handshake, so a reloaded pair takes effect at once and open connections keep theirs).
   * Without it the relay speaks no TLS.
   */
  tls?: () => TlsServerKey;
  /** With `tls`: close clients that do not start TLS. @default {false} */
  tlsOnly?: boolean;
  /** Most time for a TLS handshake, in ms. @default {10000} */
  tlsHandshakeTimeoutMs?: number;
  /** How long a new connection may stay silent before it is a line client, in ms. @default {300} */
  sniffWaitMs?: number;
  /** Client addresses (CIDR) allowed; with any, the others are denied (`address_rules.ts`). */
  allow?: string[];
  /** Client addresses (CIDR) denied. */
  deny?: string[];
  /** Connections at once from one client IP address; 0: no cap. @default {0} */
  maxPerIp?: number;
  /** Refusal log lines at most once per this many ms. @default {10000} */
  refusalLogIntervalMs?: number;
  /**
   * Handler of HTTP requests on the relay's port (plain, or inside TLS): the web chat page and
   * its WebSocket. Without it an HTTP request is answered 404. See `listener.ts`.
   */
  web?: RelayWebHandler;
  /**
   * Rooms shared with other relay processes (`cluster/`): messages, presence, `/who`,
   * `/rooms` and names cover every node. Without, the relay is on its own.
   */
  cluster?: Cluster;
  /** Where connection events go. */
  logger?: Logger;
}

/**
 * Line mode: the most a client's read buffer grows to (or a whole line and its CRLF, if
 * larger): 256 KiB. Big reads mean big messages and few writes per recipient; the buffer starts
 * at 4 KiB and grows only while reads fill it.
 */
export const LINE_READ_BUFFER_BYTES = 256 * 1024;
/** Line mode: the scratch buffer delivered lines are encoded into, at least: 512 KiB. */
export const LINE_SCRATCH_BYTES = 512 * 1024;
/** The longest `[NAME] ` prefix: a name of `maxNameLength` characters in UTF-8, and 3. */
export const MAX_PREFIX_BYTES = RELAY_DEFAULTS.maxNameLength * 4 + 3;

/**
 * The water marks for an outbox cap: the defaults, scaled down when `maxQueuedBytes` is set
 * below them so that low water < high water <= cap / 2 always holds.
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert/strict";
 * import { waterMarks } from "./limits.ts";
 * assert.deepEqual(waterMarks({ maxQueuedBytes: 4 << 20 }), {
 *   highWaterBytes: 1 << 20,
 *   lowWaterBytes: 256 << 10,
 * });
 * assert.deepEqual(waterMarks({ maxQueuedBytes: 64 << 10 }), {
 *   highWaterBytes: 32 << 10,
 *   lowWaterBytes: 8 << 10,
 * });
 * ```
 */
export function waterMarks(
  options: { maxQueuedBytes: number; highWaterBytes?: number; lowWaterBytes?: number },
): { highWaterBytes: number; lowWaterBytes: number } {
  const high = Math.max(
    2,
    Math.min(options.highWaterBytes ?? RELAY_DEFAULTS.highWaterBytes, options.maxQueuedBytes / 2),
  );
  const low = Math.min(options.lowWaterBytes ?? RELAY_DEFAULTS.lowWaterBytes, high / 4);
  return { highWaterBytes: Math.floor(high), lowWaterBytes: Math.floor(low) };
}

/** Names and rooms: letters, digits and `_ . -` (rooms may also start with `#`). */
export const NAME_PATTERN: RegExp = /^[A-Za-z0-9_.-]+$/;
/** Room names. */
export const ROOM_PATTERN: RegExp = /^#?[A-Za-z0-9_.-]+$/;
/** Names the relay hands out itself (`user1`, `user2`, ...); nobody may take one by /nick. */
export const GENERATED_NAME_PATTERN: RegExp = /^user\d+(\.[a-z0-9-]+)?$/i;
