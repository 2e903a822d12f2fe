/**
 * Flow control across nodes: a room's readers on other nodes hold this node's senders back,
 * as a local reader does.
 *
 * A node whose local member of a room is above high water with messages from other nodes
 * (and live: `limits.ts`) announces `hold` for the room, repeats it every heartbeat while it
 * lasts, and announces `release` once every such member drained to low water, became stuck
 * or left. On the sending nodes a {@linkcode RemoteHold} per room is one more
 * {@linkcode FlowOutbox} among a sender's holders: while any node holds the room, the relay
 * stops reading that room's senders (TCP pushes back on them), exactly as for a local reader
 * above high water. The bus itself is never paused: what is in flight when a hold begins
 * still arrives, and lands in the outboxes (bounded by the outbox cap, far above high water).
 *
 * A hold lapses by itself {@linkcode REMOTE_HOLD_TTL_MS} after it was last announced (a
 * lost `release`, a node that died or was cut off), and every hold is dropped while the bus
 * is down, so no node can freeze another's room for longer.
 *
 * @module
 */

import type { FlowOutbox } from "../../net/flow.ts";

/**
 * How long a `hold` lasts unless announced again, in ms: more than two heartbeats, so a
 * lost or late repeat does not release it early.
 */
export const REMOTE_HOLD_TTL_MS = 2_500;

/**
 * The holds other nodes have on one room (see the module doc).
 *
 * @example A hold, then its release
 * ```ts
 * import assert from "node:assert/strict";
 * import { RemoteHold } from "./remote_hold.ts";
 * const hold = new RemoteHold();
 * hold.hold("b");
 * assert.equal(hold.holdsProducers, true);
 * const released = hold.released();
 * hold.release("b");
 * await released;
 * assert.equal(hold.holdsProducers, false);
 * ```
 */
export class RemoteHold implements FlowOutbox {
  #until = new Map<string, number>();
  #waiters: (() => void)[] = [];
  #timer: ReturnType<typeof setTimeout> | undefined;
  #ttlMs: number;

  /** A room's holds; each lasts `ttlMs` after its last announcement. */
  constructor(options: { ttlMs?: number } = {}) {
    this.#ttlMs = options.ttlMs ?? REMOTE_HOLD_TTL_MS;
  }

  /** True while some node holds the room. */
  get holdsProducers(): boolean {
    this.#prune(performance.now());
    return this.#until.size > 0;
  }

  /** Resolves once no node holds the room. */
  released(): Promise<void> {
    if (!this.holdsProducers) return Promise.resolve();
    return new Promise((resolve) => this.#waiters.push(resolve));
  }

  /** `node` holds the room (again), for the next `ttlMs`. */
  hold(node: string): void {
    this.#until.set(node, performance.now() + this.#ttlMs);
    this.#arm();
  }

  /** `node` no longer holds the room. */
  release(node: string): void {
    if (this.#until.delete(node)) this.#wake();
  }

  /** No node holds the room (the bus went down, the room is gone here). */
  clear(): void {
    this.#until.clear();
    this.#wake();
  }

  #prune(now: number): void {
    for (const [node, until] of this.#until) if (until <= now) this.#until.delete(node);
  }

  #arm(): void {
    if (this.#timer !== undefined) return;
    const next = Math.min(...this.#until.values());
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      this.#prune(performance.now());
      if (this.#until.size > 0) this.#arm();
      else this.#wake();
    }, Math.max(1, next - performance.now()));
  }

  #wake(): void {
    if (this.#until.size > 0) return;
    clearTimeout(this.#timer);
    this.#timer = undefined;
    const waiters = this.#waiters;
    this.#waiters = [];
    for (const wake of waiters) wake();
  }
}
