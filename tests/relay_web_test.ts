/**
 * The relay's web face: the chat page at `/` and WebSocket clients at `/ws`, on the relay's own
 * port, talking with plain line clients. The WebSocket client is Deno's own (an independent
 * implementation).
 */

import assert from "node:assert/strict";
import { withTimeout } from "../lib/net/deadline.ts";
import { EVENT_TIMEOUT_MS, joinRelay, startSockit } from "./_helpers.ts";

/** A WebSocket client whose text messages can be awaited one by one. */
async function openWebSocket(url: string) {
  const ws = new WebSocket(url);
  const queue: string[] = [];
  const waiters: ((m: string) => void)[] = [];
  ws.onmessage = (e) => {
    const waiter = waiters.shift();
    if (waiter) waiter(String(e.data));
    else queue.push(String(e.data));
  };
  await withTimeout(
    new Promise<void>((resolve, reject) => {
      ws.onopen = () => resolve();
      ws.onerror = () => reject(new Error(`cannot open ${url}`));
    }),
    EVENT_TIMEOUT_MS,
    { what: "the WebSocket to open" },
  );
  const next = () =>
    withTimeout(
      queue.length > 0
        ? Promise.resolve(queue.shift()!)
        : new Promise<string>((resolve) => waiters.push(resolve)),
      EVENT_TIMEOUT_MS,
      { what: "a WebSocket message" },
    );
  const until = async (re: RegExp) => {
    while (true) {
      const m = await next();
      if (re.test(m)) return m;
    }
  };
  const closed = new Promise<void>((resolve) => (ws.onclose = () => resolve()));
  return { ws, next, until, closed };
}

Deno.test("relay --web on: a browser's WebSocket and an nc client chat both ways on one port", async () => {
  await using relay = await startSockit(["relay", "--port", "0", "--web", "on"]);
  const page = await fetch(`http://127.0.0.1:${relay.port}/`);
  assert.equal(page.status, 200);
  assert.match(page.headers.get("content-type") ?? "", /^text\/html/);
  assert.match(await page.text(), /^<!doctype html>/);

  const browser = await openWebSocket(`ws://127.0.0.1:${relay.port}/ws`);
  const welcome = await browser.until(/^\* welcome (\S+),/);
  const webName = welcome.match(/^\* welcome (\S+),/)![1];
  const { client: nc, name: ncName } = await joinRelay(relay.port);
  try {
    browser.ws.send("héllo from the browser ✓");
    assert.equal(
      await nc.readLineMatching(/from the browser/),
      `[${webName}] héllo from the browser ✓`,
    );
    await nc.write("hello from nc\n");
    assert.equal(await browser.until(/from nc/), `[${ncName}] hello from nc`);
    browser.ws.send("/nick webby");
    await nc.readLineMatching(/is now known as webby|webby/);
  } finally {
    browser.ws.close();
    await browser.closed;
    await nc[Symbol.asyncDispose]();
  }
});
