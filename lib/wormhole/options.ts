/**
 * Defaults and limits of sending and receiving with a code (the Magic Wormhole mode of
 * `send`/`recv`): the public servers, the code length, how long each wait may take. One
 * source of truth: the command line, the README and the tests read them from here.
 *
 * @module
 */

/** Defaults of the code mode. */
export const WORMHOLE_DEFAULTS = {
  /** The public mailbox (rendezvous) server the other Wormhole clients use. */
  mailboxUrl: "ws://relay.magic-wormhole.io:4000/v1",
  /** The public transit relay, used when no direct connection works. */
  transitRelays: ["transit.magic-wormhole.io:4001"] as readonly string[],
  /** Words in a generated code (after the nameplate number). */
  codeWords: 2,
  /** Longest wait for the mailbox server itself (connect, each reply), in ms. */
  serverTimeoutMs: 30_000,
  /** Longest wait for a transit connection once both sides sent their hints, in ms. */
  transitTimeoutMs: 60_000,
  /** Longest wait for the receiver's final acknowledgement after the last byte, in ms. */
  ackTimeoutMs: 60_000,
} as const;

/** Environment variables the code mode reads (the code stays out of argv, which `ps` shows). */
export const WORMHOLE_ENV = {
  /** The code, for `send` (instead of a generated one) and `recv` (instead of a prompt). */
  code: "SOCKIT_CODE",
  /** The mailbox server URL. */
  mailbox: "SOCKIT_MAILBOX",
  /** Transit relays, comma-separated HOST:PORT. */
  transit: "SOCKIT_TRANSIT",
} as const;
