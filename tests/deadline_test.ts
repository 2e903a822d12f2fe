import assert from "node:assert/strict";
import { DEADLINES, Deadlines, delay, withTimeout } from "../lib/net/deadline.ts";
import { TimeoutError } from "../lib/net/errors.ts";

/** Resolves once `deadlines` has nothing left, polling with its own tasks. */
function drained(deadlines: Deadlines): Promise<void> {
  return new Promise((resolve) => {
    const check = () => {
      // This polling task is the only one left.
      if (deadlines.size === 1) {
        resolve();
        return undefined;
      }
      return performance.now() + 2;
    };
    deadlines.schedule(performance.now() + 2, check);
  });
}

Deno.test("Deadlines runs due tasks in due-time order, ties in scheduling order", async () => {
  const deadlines = new Deadlines();
  const order: string[] = [];
  const t0 = performance.now();
  const at = (ms: number, name: string) =>
    deadlines.schedule(t0 + ms, () => {
      order.push(name);
      return undefined;
    });
  at(30, "c");
  at(10, "a");
  at(20, "b1");
  at(20, "b2");
  at(5, "first");
  assert.equal(deadlines.size, 5);
  await drained(deadlines);
  assert.deepEqual(order, ["first", "a", "b1", "b2", "c"]);
  assert.equal(deadlines.size, 0);
});

Deno.test("Deadlines calls a task again at the time it returns, until it returns undefined", async () => {
  const deadlines = new Deadlines();
  const calls: number[] = [];
  const start = performance.now();
  await new Promise<void>((resolve) => {
    deadlines.schedule(start + 5, (now) => {
      calls.push(now);
      if (calls.length < 3) return now + 10;
      resolve();
      return undefined;
    });
  });
  assert.equal(calls.length, 3);
  assert.ok(calls[0] >= start + 4, `first call ${calls[0] - start} ms after start`);
  assert.ok(calls[1] - calls[0] >= 9, `re-armed after ${calls[1] - calls[0]} ms`);
  assert.ok(calls[2] - calls[1] >= 9, `re-armed after ${calls[2] - calls[1]} ms`);
  assert.equal(deadlines.size, 0);
});

Deno.test("Deadlines re-arms a moved deadline lazily (idle: last activity + idle time)", async () => {
  const deadlines = new Deadlines();
  const idleMs = 30;
  let last = performance.now();
  let checks = 0;
  const closed = new Promise<number>((resolve) => {
    deadlines.schedule(last + idleMs, (now) => {
      checks++;
      // Activity just before each of the first two checks (whenever they come): the task
      // must move its due time instead of firing.
      if (checks <= 2) last = now - 1;
      if (now < last + idleMs) return last + idleMs;
      resolve(now - last);
      return undefined;
    });
  });
  const silentFor = await closed;
  assert.ok(silentFor >= idleMs - 1, `closed after ${silentFor} ms of silence`);
  assert.equal(checks, 3);
  assert.equal(deadlines.size, 0);
});

Deno.test("Deadlines: a cancelled task never runs, and cancelling is idempotent", async () => {
  const deadlines = new Deadlines();
  const fired: string[] = [];
  const cancelA = deadlines.after(5, () => fired.push("a"));
  const cancelB = deadlines.after(10, () => fired.push("b"));
  deadlines.after(15, () => fired.push("c"));
  assert.equal(deadlines.size, 3);
  cancelA();
  cancelA();
  assert.equal(deadlines.size, 2);
  // Cancelled by a task due before it: even when a stall makes both due in one pass, the
  // earlier one runs first and B never does.
  deadlines.after(5, () => {
    cancelB();
    fired.push("cancelled b");
  });
  await drained(deadlines);
  assert.deepEqual(fired, ["cancelled b", "c"]);
  // Cancelling after the task ended changes nothing.
  cancelB();
  assert.equal(deadlines.size, 0);
});

Deno.test("Deadlines: a task can cancel itself, and one that throws does not stop the others", async () => {
  const deadlines = new Deadlines();
  const fired: string[] = [];
  let cancelSelf = () => {};
  cancelSelf = deadlines.schedule(performance.now() + 2, (now) => {
    fired.push("self");
    cancelSelf();
    return now + 1; // Ignored: it is cancelled.
  });
  deadlines.after(2, () => {
    throw new Error("boom");
  });
  await new Promise<void>((resolve) =>
    deadlines.after(4, () => {
      fired.push("after");
      resolve();
    })
  );
  assert.deepEqual(fired, ["self", "after"]);
  assert.equal(deadlines.size, 0);
});

Deno.test("Deadlines.watch() polls expired() every everyMs and calls expire() once", async () => {
  const deadlines = new Deadlines();
  const asked: number[] = [];
  let expired = 0;
  const start = performance.now();
  await new Promise<void>((resolve) => {
    deadlines.watch({
      expired: (now) => {
        asked.push(now);
        return asked.length === 3;
      },
      expire: () => {
        expired++;
        resolve();
      },
    }, { everyMs: 10 });
  });
  assert.equal(asked.length, 3);
  assert.equal(expired, 1);
  assert.ok(asked[0] - start >= 9, `first poll after ${asked[0] - start} ms`);
  assert.ok(asked[2] - asked[1] >= 9, `polled every ${asked[2] - asked[1]} ms`);
  assert.equal(deadlines.size, 0);
  // An entry that is unwatched before it expires is never asked again.
  let polls = 0;
  const unwatch = deadlines.watch({ expired: () => (polls++, false), expire: () => {} }, {
    everyMs: 5,
  });
  await delay(12);
  unwatch();
  const seen = polls;
  await delay(12);
  assert.ok(seen >= 1);
  assert.equal(polls, seen);
  assert.equal(deadlines.size, 0);
});

Deno.test("Deadlines.deadline() rejects with TimeoutError after onTimeout ran", async () => {
  const deadlines = new Deadlines();
  const events: string[] = [];
  const never = new Promise<never>(() => {});
  const start = performance.now();
  await assert.rejects(
    deadlines.deadline(never, 15, {
      what: "the peer",
      onTimeout: () => events.push("onTimeout"),
    }).catch((error) => {
      events.push("rejected");
      throw error;
    }),
    (error) => {
      assert.ok(error instanceof TimeoutError);
      assert.equal(error.message, "Timed out after 15 ms waiting for the peer");
      return true;
    },
  );
  assert.ok(performance.now() - start >= 14);
  assert.deepEqual(events, ["onTimeout", "rejected"]);
  assert.equal(deadlines.size, 0);
});

Deno.test("Deadlines.deadline() passes a result or error through and cancels its task", async () => {
  const deadlines = new Deadlines();
  let timedOut = false;
  const onTimeout = () => (timedOut = true);
  assert.equal(await deadlines.deadline(Promise.resolve(7), 10_000, { onTimeout }), 7);
  assert.equal(deadlines.size, 0);
  await assert.rejects(
    deadlines.deadline(Promise.reject(new RangeError("nope")), 10_000, { onTimeout }),
    RangeError,
  );
  assert.equal(deadlines.size, 0);
  assert.equal(timedOut, false);
  // withTimeout is the same on the shared scheduler, and leaves nothing on it.
  assert.equal(await withTimeout(delay(1).then(() => "ok"), 10_000), "ok");
  assert.equal(DEADLINES.size, 0);
});

Deno.test("Deadlines.clear() cancels everything, also from inside a running task", async () => {
  const deadlines = new Deadlines();
  const fired: string[] = [];
  deadlines.after(10_000, () => fired.push("late"));
  deadlines.schedule(performance.now() + 10_000, () => 0);
  assert.equal(deadlines.size, 2);
  deadlines.clear();
  assert.equal(deadlines.size, 0);
  // From inside a task (a server stopped by one of its deadlines): the running task, the
  // others and a re-arm it asks for are all dropped.
  await new Promise<void>((resolve) => {
    deadlines.after(20, () => fired.push("other"));
    deadlines.schedule(performance.now() + 2, (now) => {
      deadlines.clear();
      resolve();
      return now + 5;
    });
  });
  assert.equal(deadlines.size, 0);
  await delay(30);
  assert.deepEqual(fired, []);
  assert.equal(deadlines.size, 0);
  // Still usable afterwards.
  await new Promise<void>((resolve) => deadlines.after(1, resolve));
  assert.equal(deadlines.size, 0);
});

Deno.test("Deadlines leaves no timer behind once it is empty", async () => {
  // The test sanitizer fails this test if a timer is still pending when it ends: an armed
  // far-away deadline that is cancelled must take its timer with it.
  const deadlines = new Deadlines();
  const cancels = Array.from({ length: 100 }, (_, i) => deadlines.after(60_000 + i, () => {}));
  assert.equal(deadlines.size, 100);
  for (const cancel of cancels) cancel();
  assert.equal(deadlines.size, 0);
  const cancel = deadlines.schedule(performance.now() + 60_000, () => 0);
  await delay(1);
  cancel();
  assert.equal(deadlines.size, 0);
});

Deno.test("Deadlines compacts a heap that is mostly cancelled tasks", async () => {
  const deadlines = new Deadlines();
  const start = performance.now();
  const cancels = Array.from(
    { length: 5000 },
    (_, i) => deadlines.schedule(start + 1000 + i, () => undefined),
  );
  const order: number[] = [];
  for (let i = 0; i < 5000; i++) {
    if (i % 1000 === 0) continue;
    cancels[i]();
  }
  // The five left (and one more) still run, in order.
  for (const i of [0, 1000, 2000, 3000, 4000]) {
    cancels[i]();
    deadlines.schedule(start + 5 + i / 1000, () => (order.push(i), undefined));
  }
  assert.equal(deadlines.size, 5);
  await drained(deadlines);
  assert.deepEqual(order, [0, 1000, 2000, 3000, 4000]);
});

Deno.test("Deadlines: a task due beyond setTimeout's range does not spin", () => {
  // setTimeout treats more than 2^31 - 1 ms as 1 ms: the scheduler must never ask for more.
  const original = globalThis.setTimeout;
  const asked: number[] = [];
  globalThis.setTimeout = ((fn: () => void, ms?: number) => {
    asked.push(ms ?? 0);
    return original(fn, ms);
  }) as typeof setTimeout;
  try {
    const deadlines = new Deadlines();
    let ran = 0;
    const cancel = deadlines.schedule(performance.now() + 2 ** 31 + 1000, () => {
      ran++;
      return undefined;
    });
    assert.ok(asked.length >= 1 && asked.every((ms) => ms <= 2 ** 31 - 1), `asked ${asked}`);
    assert.equal(ran, 0);
    cancel();
    assert.equal(deadlines.size, 0);
  } finally {
    globalThis.setTimeout = original;
  }
});
