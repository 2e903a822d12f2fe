/**
 * The message bus a relay cluster runs on, as the cluster sees it: subject-based publish and
 * subscribe, replies, and a state that is up or down. `nats_bus.ts` is the implementation
 * over NATS core; the relay and the cluster protocol (`cluster.ts`) know only this interface.
 *
 * Contract:
 * - {@linkcode Bus.publish} never waits and never buffers without bound: it returns false and
 *   sends nothing while the bus is down, or while more than a bounded amount of what was
 *   published is not yet confirmed by the server.
 * - Handlers run synchronously as messages arrive, in arrival order per subject; a node never
 *   receives what it published itself.
 * - Subscriptions survive reconnects.
 *
 * @module
 */

/** Whether the bus can carry messages now. */
export type BusState = "up" | "down";

/** A message as it arrives. */
export interface BusMessage {
  /** The subject it was published to. */
  subject: string;
  /** Its bytes: valid only while the handler runs (copy what is kept). */
  data: Uint8Array;
  /** Where an answer goes, for requests. */
  reply?: string;
}

/** Options of {@linkcode Bus.request}. */
export interface RequestOptions {
  /** Stop once this many replies arrived. */
  maxReplies: number;
  /** Stop after this long, in ms, with the replies so far. */
  timeoutMs: number;
}

/** The cluster's message bus. */
export interface Bus {
  /** Up or down, now. */
  readonly state: BusState;
  /** Where the bus is, for logs (`nats://127.0.0.1:4222`). */
  readonly url: string;
  /**
   * Publishes `data` (or its pieces, sent as one message: no copy to join them) without
   * waiting; false when nothing was sent (down, or over the budget).
   */
  publish(subject: string, data: Uint8Array | readonly Uint8Array[]): boolean;
  /** Calls `handler` for each message on `subject`; returns the unsubscribe function. */
  subscribe(subject: string, handler: (message: BusMessage) => void): () => void;
  /**
   * Publishes a request and gathers replies until `maxReplies` came or `timeoutMs` passed;
   * resolves at once with none when the bus is down.
   */
  request(subject: string, data: Uint8Array, options: RequestOptions): Promise<Uint8Array[]>;
  /** Calls `handler` each time the state changes. */
  onState(handler: (state: BusState) => void): void;
  /** Counters of the bus itself. */
  stats(): BusStats;
  /** Sends what is pending (bounded wait) and disconnects. */
  close(): Promise<void>;
}

/** What the bus did. */
export interface BusStats {
  /** Messages published. */
  published: number;
  /** Messages not published because the bus was down or over its budget. */
  notPublished: number;
  /** Messages received. */
  received: number;
  /** Times the bus went down since start. */
  disconnects: number;
}
