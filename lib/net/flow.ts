/**
 * High/low-water flow control between producers and outboxes, the way TCP windows and NATS
 * pending limits work: a producer that fills a consumer's outbox past its high-water mark
 * stops producing until the outbox drains below its low-water mark, so a consumer that is
 * behind paces its producers instead of being cut off or losing messages.
 *
 * A consumer that makes **no progress** at all (its socket takes no byte for
 * {@linkcode FlowOptions.stallTimeoutMs}) is *stuck*: it stops holding producers back, so one
 * dead reader cannot freeze everyone; what it is sent then piles up against its byte cap and
 * the owner's slow-consumer policy applies. The outbox side of this lives in
 * {@linkcode Connection}; this module holds the options and the producer side.
 *
 * @module
 */

/** Flow control options of one outbox (see {@linkcode Connection}). */
export interface FlowOptions {
  /** Above this many queued bytes a live consumer holds its producers. */
  highWaterBytes: number;
  /** Held producers go on once the outbox is at or below this many bytes. */
  lowWaterBytes: number;
  /** A consumer whose socket took no byte for this long, in ms, is stuck (0: never). */
  stallTimeoutMs: number;
}

/** What a producer waits on: an outbox that may hold it back. */
export interface FlowOutbox {
  /** True while this outbox is above high water, its consumer is live, and it is open. */
  readonly holdsProducers: boolean;
  /** Resolves once {@linkcode holdsProducers} is false (drained, stuck or closing). */
  released(): Promise<void>;
}

/**
 * Waits until none of `outboxes` holds producers back, or until `options.until` settles (the
 * producer itself went away). Resolves the milliseconds spent waiting (0 without waiting).
 * `onHeld` runs once, before the first wait.
 *
 * @example A producer pauses until its consumer's outbox drains
 * ```ts
 * import assert from "node:assert/strict";
 * import { waitForOutboxes } from "./flow.ts";
 * let full = true;
 * let release = () => {};
 * const outbox = {
 *   get holdsProducers() { return full; },
 *   released: () => new Promise<void>((r) => (release = r)),
 * };
 * const waited = waitForOutboxes([outbox]);
 * full = false;
 * release();
 * assert.ok((await waited) >= 0);
 * assert.equal(await waitForOutboxes([outbox]), 0);
 * ```
 */
export async function waitForOutboxes(
  outboxes: Iterable<FlowOutbox>,
  options: { onHeld?: () => void; until?: Promise<unknown> } = {},
): Promise<number> {
  let start = 0;
  let over = false;
  const until = options.until?.then(() => (over = true), () => (over = true));
  for (const outbox of outboxes) {
    while (!over && outbox.holdsProducers) {
      if (start === 0) {
        start = performance.now();
        options.onHeld?.();
      }
      await (until ? Promise.race([outbox.released(), until]) : outbox.released());
    }
  }
  return start === 0 ? 0 : performance.now() - start;
}

/**
 * Checks a set of flow options: marks positive, low water below high water.
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert/strict";
 * import { checkFlowOptions } from "./flow.ts";
 * assert.throws(
 *   () => checkFlowOptions({ highWaterBytes: 10, lowWaterBytes: 20, stallTimeoutMs: 0 }),
 *   RangeError,
 * );
 * ```
 */
export function checkFlowOptions(flow: FlowOptions): FlowOptions {
  if (!(flow.highWaterBytes > 0) || !(flow.lowWaterBytes >= 0)) {
    throw new RangeError("Cannot use flow control: water marks must be positive");
  }
  if (flow.lowWaterBytes >= flow.highWaterBytes) {
    throw new RangeError(
      `Cannot use flow control: low water ${flow.lowWaterBytes} is not below high water ${flow.highWaterBytes}`,
    );
  }
  if (!(flow.stallTimeoutMs >= 0)) {
    throw new RangeError("Cannot use flow control: the stall timeout must be 0 or more");
  }
  return flow;
}
