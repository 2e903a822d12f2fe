/**
 * The relay's limits and its slow-client policy, in one place.
 *
 * **Slow clients.** Every client has an outbox capped in bytes (`maxQueuedBytes`). Delivery
 * to one client never waits for another: a message is appended to each recipient's outbox and
 * the sender moves on. A client whose outbox would pass the cap, or whose socket accepts no
 * byte for `writeTimeoutMs`, is a slow consumer. With the policy `"disconnect"` (the default)
 * it is sent one line saying why and disconnected; with `"drop"` the messages it cannot take
 * are dropped, counted, and once it catches up it is told how many it missed.
 *
 * Every figure here is a default: the `relay` command's options override each one.
 *
 * @module
 */

/** What happens to a client whose outbox is full. */
export type SlowClientPolicy = "disconnect" | "drop";

/** Defaults of {@linkcode RelayOptions}. */
export const RELAY_DEFAULTS = {
  /** Address the relay binds. */
  host: "127.0.0.1",
  /** Port the relay listens on. */
  port: 7070,
  /** Longest line (line mode) or message payload (framed mode), in bytes: 64 KiB. */
  maxLineBytes: 64 * 1024,
  /** Bytes queued for one client before it is a slow consumer: 4 MiB. */
  maxQueuedBytes: 4 * 1024 * 1024,
  /** Slow-client policy. */
  slowPolicy: "disconnect" as SlowClientPolicy,
  /** A write blocked this long marks a client as not reading, in ms. */
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
  /** Room every client starts in. */
  defaultRoom: "lobby",
  /** Longest name or room name, in characters. */
  maxNameLength: 32,
  /** Seconds between `--stats` log lines. */
  statsIntervalSeconds: 10,
} as const;

/** Names and rooms: letters, digits and `_ . -` (rooms may also start with `#`). */
export const NAME_PATTERN: RegExp = /^[A-Za-z0-9_.-]+$/;
/** Room names. */
export const ROOM_PATTERN: RegExp = /^#?[A-Za-z0-9_.-]+$/;
/** Names the relay hands out itself (`user1`, `user2`, ...); nobody may take one by /nick. */
export const GENERATED_NAME_PATTERN: RegExp = /^user\d+$/i;
