/**
 * The cluster's {@linkcode Bus} over NATS core, on sockit's own protocol client
 * (`nats_client.ts`): plain subjects, no JetStream, `echo: false` so a node never receives
 * its own messages.
 *
 * **Bounded, never waiting.** {@linkcode NatsBus.publish} queues bytes for the client's writer
 * and returns at once; while disconnected, or while more than the client's bound
 * (`NATS_CLIENT_DEFAULTS.maxQueuedBytes`, 16 MiB) waits to be written, it sends nothing and
 * says so. What is not sent is counted; the receiving nodes see the gap in the sequence
 * numbers and tell their rooms how many messages they missed.
 *
 * **Reconnects** forever, every 250 ms; subscriptions are restored. A dead server is noticed
 * when its socket closes, or after two unanswered pings two seconds apart.
 *
 * @module
 */

import type { Bus, BusMessage, BusState, BusStats, RequestOptions } from "./bus.ts";
import { NatsClient, NatsError } from "./nats_client.ts";

/** Options of {@linkcode connectNatsBus}. */
export interface NatsBusOptions {
  /** The client's name, shown by the server's monitoring (`sockit-relay-NODE`). */
  name?: string;
  /** Most time to reach a server at start, in ms. */
  connectTimeoutMs?: number;
}

/**
 * A relay cluster's NATS link could not be made at start; the message names the servers.
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert/strict";
 * import { BusConnectError } from "./nats_bus.ts";
 * assert.equal(new BusConnectError("Cannot reach NATS at nats://x:1").name, "BusConnectError");
 * ```
 */
export class BusConnectError extends Error {
  /** Creates the error. */
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "BusConnectError";
  }
}

/**
 * Connects to NATS at `servers` (`nats://HOST:PORT`, tried in order, reconnecting to any).
 * Rejects with {@linkcode BusConnectError} when none answers within the connect timeout.
 *
 * @example Against a running nats-server (skipped here: needs one)
 * ```ts ignore
 * import assert from "node:assert/strict";
 * import { connectNatsBus } from "./nats_bus.ts";
 * const bus = await connectNatsBus(["nats://127.0.0.1:4222"]);
 * assert.equal(bus.state, "up");
 * await bus.close();
 * ```
 */
export async function connectNatsBus(
  servers: string[],
  options: NatsBusOptions = {},
): Promise<NatsBus> {
  try {
    return new NatsBus(await NatsClient.connect(servers, options));
  } catch (error) {
    if (!(error instanceof NatsError)) throw error;
    throw new BusConnectError(error.message, { cause: error });
  }
}

/** A {@linkcode Bus} on a {@linkcode NatsClient}; made by {@linkcode connectNatsBus}. */
export class NatsBus implements Bus {
  #nc: NatsClient;
  #listeners: ((state: BusState) => void)[] = [];
  #inbox: string;
  #nextRequest = 1;
  #requests = new Map<number, (data: Uint8Array) => void>();
  #stats: BusStats = { published: 0, notPublished: 0, received: 0, disconnects: 0 };

  /** Wraps a connected client (use {@linkcode connectNatsBus}). */
  constructor(nc: NatsClient) {
    this.#nc = nc;
    this.#inbox = `_INBOX.sockit.${crypto.randomUUID().replaceAll("-", "")}`;
    nc.subscribe(`${this.#inbox}.*`, (msg) => {
      this.#stats.received++;
      const id = Number(msg.subject.slice(this.#inbox.length + 1));
      // The payload is a view of the read buffer: keep a copy.
      this.#requests.get(id)?.(msg.data.slice());
    });
    nc.onState((connected) => {
      if (!connected) this.#stats.disconnects++;
      for (const listener of this.#listeners) listener(connected ? "up" : "down");
    });
  }

  /** Up or down. */
  get state(): BusState {
    return this.#nc.connected ? "up" : "down";
  }

  /** The server in use. */
  get url(): string {
    return this.#nc.url;
  }

  /** Publishes without waiting (see the module doc for when it does not). */
  publish(subject: string, data: Uint8Array | readonly Uint8Array[], reply?: string): boolean {
    if (this.#nc.publish(subject, data, reply)) {
      this.#stats.published++;
      return true;
    }
    this.#stats.notPublished++;
    return false;
  }

  /** Subscribes `handler` to `subject`; the message's bytes are valid during the call. */
  subscribe(subject: string, handler: (message: BusMessage) => void): () => void {
    return this.#nc.subscribe(subject, (msg) => {
      this.#stats.received++;
      handler(msg);
    });
  }

  /** Publishes a request and gathers replies (see {@linkcode Bus.request}). */
  request(subject: string, data: Uint8Array, options: RequestOptions): Promise<Uint8Array[]> {
    const replies: Uint8Array[] = [];
    if (options.maxReplies <= 0 || !this.#nc.connected) return Promise.resolve(replies);
    const id = this.#nextRequest++;
    const { promise, resolve } = Promise.withResolvers<Uint8Array[]>();
    const timer = setTimeout(() => finish(), options.timeoutMs);
    const finish = () => {
      clearTimeout(timer);
      this.#requests.delete(id);
      resolve(replies);
    };
    this.#requests.set(id, (reply) => {
      replies.push(reply);
      if (replies.length >= options.maxReplies) finish();
    });
    if (!this.publish(subject, data, `${this.#inbox}.${id}`)) finish();
    return promise;
  }

  /** Calls `handler` on each state change. */
  onState(handler: (state: BusState) => void): void {
    this.#listeners.push(handler);
  }

  /** Counters. */
  stats(): BusStats {
    return { ...this.#stats };
  }

  /** Writes what is queued (bounded) and disconnects. */
  close(): Promise<void> {
    return this.#nc.close();
  }
}
