/**
 * The cluster's {@linkcode Bus} over NATS core (`npm:@nats-io/transport-node`): plain
 * subjects, no JetStream, `noEcho` so a node never receives its own messages.
 *
 * **Bounded, never waiting.** The NATS client buffers without limit: while disconnected, and
 * also while connected to a server that reads slowly (its socket writes queue in memory).
 * {@linkcode NatsBus.publish} therefore sends only while the connection is up, and counts the
 * bytes published since the server last confirmed everything (a `flush()`: PING, then PONG
 * once the server processed all before it). Past {@linkcode NATS_BUS_DEFAULTS.flushAtBytes}
 * a confirmation is asked for; past {@linkcode NATS_BUS_DEFAULTS.maxUnconfirmedBytes}
 * publishing stops until it comes, and what is not sent is counted (the receiving nodes see
 * the gap in the sequence numbers and tell their rooms how many messages they missed).
 *
 * **Reconnects** forever, every `reconnectWaitMs`; subscriptions are restored by the client.
 * A dead server is noticed when its socket closes, or after `maxPingsOut` unanswered pings
 * `pingIntervalMs` apart.
 *
 * @module
 */

import { connect, type NatsConnection } from "@nats-io/transport-node";
import type { Bus, BusMessage, BusState, BusStats, RequestOptions } from "./bus.ts";

/** Defaults of {@linkcode connectNatsBus}, with their reasons. */
export const NATS_BUS_DEFAULTS = {
  /** Most time to reach a server at start, in ms: a relay that cannot join its cluster says so. */
  connectTimeoutMs: 5_000,
  /** Wait between reconnect attempts, in ms. */
  reconnectWaitMs: 250,
  /** Client pings, in ms apart: a server that stopped answering is left after a few. */
  pingIntervalMs: 2_000,
  /** Unanswered pings before the connection is considered dead. */
  maxPingsOut: 2,
  /** Unconfirmed bytes at which the server is asked to confirm (a flush). */
  flushAtBytes: 4 * 1024 * 1024,
  /** Unconfirmed bytes past which nothing more is published until the server confirms. */
  maxUnconfirmedBytes: 16 * 1024 * 1024,
  /** Most time `close()` waits for pending messages, in ms. */
  closeTimeoutMs: 2_000,
} as const;

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
  const D = NATS_BUS_DEFAULTS;
  let nc: NatsConnection;
  try {
    nc = await connect({
      servers,
      name: options.name,
      noEcho: true,
      timeout: options.connectTimeoutMs ?? D.connectTimeoutMs,
      maxReconnectAttempts: -1,
      reconnectTimeWait: D.reconnectWaitMs,
      reconnectJitter: 50,
      pingInterval: D.pingIntervalMs,
      maxPingOut: D.maxPingsOut,
    });
  } catch (error) {
    throw new BusConnectError(
      `Cannot reach NATS at ${servers.join(", ")}: ${(error as Error).message}`,
      { cause: error },
    );
  }
  return new NatsBus(nc, servers[0]);
}

/** A {@linkcode Bus} on a NATS connection; made by {@linkcode connectNatsBus}. */
export class NatsBus implements Bus {
  /** The first server, for logs. */
  readonly url: string;
  #nc: NatsConnection;
  #state: BusState = "up";
  #listeners: ((state: BusState) => void)[] = [];
  #unconfirmed = 0;
  #flushing = false;
  #generation = 0;
  #inbox: string;
  #nextRequest = 1;
  #requests = new Map<number, (data: Uint8Array) => void>();
  #stats: BusStats = { published: 0, notPublished: 0, received: 0, disconnects: 0 };

  /** Wraps a connected client (use {@linkcode connectNatsBus}). */
  constructor(nc: NatsConnection, url: string) {
    this.#nc = nc;
    this.url = url;
    this.#inbox = `_INBOX.sockit.${crypto.randomUUID().replaceAll("-", "")}`;
    nc.subscribe(`${this.#inbox}.*`, {
      callback: (_error, msg) => {
        this.#stats.received++;
        // The server's "no responders" status (503, no payload) is not an answer.
        if (msg.data.length === 0) return;
        const id = Number(msg.subject.slice(this.#inbox.length + 1));
        this.#requests.get(id)?.(msg.data);
      },
    });
    void this.#watch();
  }

  /** Up or down. */
  get state(): BusState {
    return this.#state;
  }

  async #watch(): Promise<void> {
    const closed = this.#nc.closed().then(() => this.#setState("down"));
    for await (const s of this.#nc.status()) {
      if (s.type === "disconnect") this.#setState("down");
      else if (s.type === "reconnect") this.#setState("up");
    }
    await closed;
  }

  #setState(state: BusState): void {
    if (state === this.#state) return;
    this.#state = state;
    // What was in flight is gone or arrived; either way the budget starts over.
    this.#generation++;
    this.#unconfirmed = 0;
    this.#flushing = false;
    if (state === "down") this.#stats.disconnects++;
    for (const listener of this.#listeners) listener(state);
  }

  /** Publishes without waiting (see the module doc for when it does not). */
  publish(subject: string, data: Uint8Array, reply?: string): boolean {
    const D = NATS_BUS_DEFAULTS;
    if (this.#state !== "up" || this.#unconfirmed + data.length > D.maxUnconfirmedBytes) {
      this.#stats.notPublished++;
      return false;
    }
    try {
      this.#nc.publish(subject, data, reply ? { reply } : undefined);
    } catch {
      this.#stats.notPublished++;
      return false;
    }
    this.#stats.published++;
    this.#unconfirmed += data.length;
    if (!this.#flushing && this.#unconfirmed >= D.flushAtBytes) this.#confirm();
    return true;
  }

  /** Asks the server to confirm everything published so far. */
  #confirm(): void {
    this.#flushing = true;
    const generation = this.#generation;
    const upTo = this.#unconfirmed;
    this.#nc.flush().then(() => {
      if (generation !== this.#generation) return;
      this.#unconfirmed -= upTo;
      this.#flushing = false;
      if (this.#unconfirmed >= NATS_BUS_DEFAULTS.flushAtBytes) this.#confirm();
    }, () => {
      // Disconnected meanwhile: #setState reset the budget.
    });
  }

  /** Subscribes `handler` to `subject`. */
  subscribe(subject: string, handler: (message: BusMessage) => void): () => void {
    const sub = this.#nc.subscribe(subject, {
      callback: (_error, msg) => {
        this.#stats.received++;
        handler({ subject: msg.subject, data: msg.data, reply: msg.reply || undefined });
      },
    });
    return () => sub.unsubscribe();
  }

  /** Publishes a request and gathers replies (see {@linkcode Bus.request}). */
  request(subject: string, data: Uint8Array, options: RequestOptions): Promise<Uint8Array[]> {
    const replies: Uint8Array[] = [];
    if (options.maxReplies <= 0 || this.#state !== "up") return Promise.resolve(replies);
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

  /** Flushes (bounded) and closes the connection. */
  async close(): Promise<void> {
    if (this.#nc.isClosed()) return;
    let timer: ReturnType<typeof setTimeout> | undefined;
    try {
      await Promise.race([
        this.#nc.drain(),
        new Promise((resolve) => (timer = setTimeout(resolve, NATS_BUS_DEFAULTS.closeTimeoutMs))),
      ]);
    } catch {
      // Closed or disconnected already.
    } finally {
      clearTimeout(timer);
    }
    if (!this.#nc.isClosed()) await this.#nc.close().catch(() => {});
  }
}
