/**
 * A real browser for tests: Debian's `chromium --headless`, driven over the Chrome DevTools
 * Protocol (JSON over a WebSocket, which Deno's own `WebSocket` speaks; no npm package).
 *
 * The browser is kept on loopback: every host name but `127.0.0.1` and `localhost` resolves
 * to nothing (`--host-resolver-rules`), background networking, component updates and sync
 * are off, and it runs with a throwaway profile. With `trustSpki` it accepts exactly the
 * certificates whose public key has that SHA-256 (`--ignore-certificate-errors-spki-list`,
 * honoured with a custom profile): a test's self-signed relay, nothing else.
 *
 * @module
 */

import { X509Certificate } from "node:crypto";
import { createHash } from "node:crypto";
import { withTimeout } from "../lib/net/deadline.ts";
import { EVENT_TIMEOUT_MS, hasCommand } from "./_helpers.ts";

/** The browser binary the tests use, or undefined when none is installed. */
export const CHROMIUM: string | undefined = ["chromium", "chromium-browser", "google-chrome"]
  .find(hasCommand);

/** The SHA-256 of a PEM certificate's public key (SPKI), base64: what Chromium pins by. */
export function spkiHash(certPem: string): string {
  const spki = new X509Certificate(certPem).publicKey.export({ type: "spki", format: "der" });
  return createHash("sha256").update(spki).digest("base64");
}

/** What a page evaluation threw, with the page's own message. */
export class PageError extends Error {
  /** Creates the error. */
  constructor(message: string) {
    super(message);
    this.name = "PageError";
  }
}

/** One browser tab, driven over its DevTools session. */
export interface BrowserPage {
  /** Loads `url` and resolves once its `load` event fired. */
  goto(url: string): Promise<void>;
  /**
   * Evaluates `expression` in the page (a promise is awaited) and returns its value (JSON).
   * Rejects with {@linkcode PageError} when it throws.
   */
  evaluate<T>(expression: string): Promise<T>;
  /**
   * Waits until `condition` (a JavaScript expression) is truthy in the page, checking on every
   * DOM change and every 100 ms, for at most `timeoutMs`; returns its value.
   */
  waitFor<T>(condition: string, timeoutMs?: number): Promise<T>;
  /** Types `text` into the element `selector` names, as keystrokes would, then presses Enter. */
  typeLine(selector: string, text: string): Promise<void>;
  /** A PNG of what the page shows. */
  screenshot(): Promise<Uint8Array>;
}

/** A running headless browser; close it with `await using`. */
export interface Browser extends AsyncDisposable {
  /** Opens a new tab of `width` x `height` CSS pixels. */
  newPage(options?: { width?: number; height?: number }): Promise<BrowserPage>;
}

interface CdpMessage {
  id?: number;
  method?: string;
  params?: Record<string, unknown>;
  result?: Record<string, unknown>;
  error?: { message: string };
  sessionId?: string;
}

/** Starts headless Chromium; `trustSpki` lists public-key hashes whose certificates it accepts. */
export async function startBrowser(options: { trustSpki?: string[] } = {}): Promise<Browser> {
  if (!CHROMIUM) throw new Error("no chromium is installed");
  const profile = await Deno.makeTempDir({ prefix: "sockit-chromium-" });
  const args = [
    "--headless=new",
    "--no-sandbox", // CI runs as root, where Chromium's sandbox refuses to start.
    "--disable-gpu",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--disable-default-apps",
    "--disable-dev-shm-usage",
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1, EXCLUDE localhost",
    `--user-data-dir=${profile}`,
    "--remote-debugging-port=0",
    ...(options.trustSpki?.length
      ? [`--ignore-certificate-errors-spki-list=${options.trustSpki.join(",")}`]
      : []),
    "about:blank",
  ];
  const child = new Deno.Command(CHROMIUM, {
    args,
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).spawn();
  const stopProcess = async () => {
    try {
      child.kill("SIGKILL");
    } catch {
      // Already gone.
    }
    await child.status;
    await Deno.remove(profile, { recursive: true }).catch(() => {});
  };

  // "DevTools listening on ws://127.0.0.1:PORT/devtools/browser/ID" on stderr; keep draining
  // stderr afterwards so the browser never blocks on a full pipe.
  const stderrLines: string[] = [];
  const endpoint = new Promise<string>((resolve, reject) => {
    (async () => {
      const decoder = new TextDecoderStream();
      let pending = "";
      for await (const chunk of child.stderr.pipeThrough(decoder)) {
        pending += chunk;
        let nl;
        while ((nl = pending.indexOf("\n")) >= 0) {
          const line = pending.slice(0, nl);
          pending = pending.slice(nl + 1);
          if (stderrLines.length < 200) stderrLines.push(line);
          const m = line.match(/DevTools listening on (ws:\/\/\S+)/);
          if (m) resolve(m[1]);
        }
      }
      reject(new Error(`chromium exited before its DevTools endpoint:\n${stderrLines.join("\n")}`));
    })().catch(reject);
  });
  let ws: WebSocket;
  try {
    const url = await withTimeout(endpoint, 30_000, { what: "chromium's DevTools endpoint" });
    ws = new WebSocket(url);
    await withTimeout(
      new Promise<void>((resolve, reject) => {
        ws.onopen = () => resolve();
        ws.onerror = () => reject(new Error(`cannot open the DevTools socket ${url}`));
      }),
      EVENT_TIMEOUT_MS,
      { what: "the DevTools socket" },
    );
  } catch (error) {
    await stopProcess();
    throw error;
  }

  let nextId = 1;
  const calls = new Map<number, { resolve(r: CdpMessage): void }>();
  const listeners: ((m: CdpMessage) => void)[] = [];
  ws.onmessage = (event) => {
    const message = JSON.parse(String(event.data)) as CdpMessage;
    if (message.id !== undefined) {
      calls.get(message.id)?.resolve(message);
      calls.delete(message.id);
    } else {
      for (const listener of [...listeners]) listener(message);
    }
  };
  const closed = new Promise<void>((resolve) => (ws.onclose = () => resolve()));

  async function send(
    method: string,
    params: Record<string, unknown> = {},
    sessionId?: string,
  ): Promise<Record<string, unknown>> {
    const id = nextId++;
    const reply = new Promise<CdpMessage>((resolve) => calls.set(id, { resolve }));
    ws.send(JSON.stringify({ id, method, params, ...(sessionId ? { sessionId } : {}) }));
    const message = await withTimeout(reply, 30_000, { what: `the browser's answer to ${method}` });
    if (message.error) throw new Error(`${method}: ${message.error.message}`);
    return message.result ?? {};
  }

  function nextEvent(method: string, sessionId: string): Promise<CdpMessage> {
    return new Promise((resolve) => {
      const listener = (m: CdpMessage) => {
        if (m.method === method && m.sessionId === sessionId) {
          listeners.splice(listeners.indexOf(listener), 1);
          resolve(m);
        }
      };
      listeners.push(listener);
    });
  }

  return {
    async newPage({ width = 900, height = 560 } = {}) {
      const { targetId } = await send("Target.createTarget", { url: "about:blank" });
      const { sessionId } = await send("Target.attachToTarget", { targetId, flatten: true }) as {
        sessionId: string;
      };
      await send("Page.enable", {}, sessionId);
      await send("Runtime.enable", {}, sessionId);
      await send("Emulation.setDeviceMetricsOverride", {
        width,
        height,
        deviceScaleFactor: 1,
        mobile: false,
      }, sessionId);
      const evaluate = async <T>(expression: string): Promise<T> => {
        const result = await send("Runtime.evaluate", {
          expression,
          awaitPromise: true,
          returnByValue: true,
        }, sessionId) as {
          result: { value?: T };
          exceptionDetails?: { exception?: { description?: string }; text: string };
        };
        if (result.exceptionDetails) {
          const d = result.exceptionDetails;
          throw new PageError(d.exception?.description ?? d.text);
        }
        return result.result.value as T;
      };
      return {
        async goto(url) {
          const loaded = nextEvent("Page.loadEventFired", sessionId);
          const nav = await send("Page.navigate", { url }, sessionId) as { errorText?: string };
          if (nav.errorText) throw new Error(`cannot load ${url}: ${nav.errorText}`);
          await withTimeout(loaded, EVENT_TIMEOUT_MS, { what: `${url} to load` });
        },
        evaluate,
        waitFor<T>(condition: string, timeoutMs = EVENT_TIMEOUT_MS) {
          // The check runs in the page on every DOM mutation and on a 100 ms tick, and gives
          // up after timeoutMs with the condition's text in the error.
          return evaluate<T>(`new Promise((resolve, reject) => {
            const check = () => { try { return (${condition}); } catch { return undefined; } };
            const first = check();
            if (first) return resolve(first);
            const done = (value, error) => {
              observer.disconnect(); clearInterval(tick); clearTimeout(limit);
              error ? reject(error) : resolve(value);
            };
            const test = () => { const v = check(); if (v) done(v); };
            const observer = new MutationObserver(test);
            observer.observe(document, { subtree: true, childList: true, characterData: true });
            const tick = setInterval(test, 100);
            const limit = setTimeout(() => done(undefined, new Error(
              "timed out after ${timeoutMs} ms waiting for: " + ${JSON.stringify(condition)})),
              ${timeoutMs});
          })`);
        },
        async typeLine(selector, text) {
          await evaluate(`document.querySelector(${JSON.stringify(selector)}).focus()`);
          await send("Input.insertText", { text }, sessionId);
          const enter = { key: "Enter", code: "Enter", windowsVirtualKeyCode: 13 };
          await send(
            "Input.dispatchKeyEvent",
            { type: "keyDown", text: "\r", ...enter },
            sessionId,
          );
          await send("Input.dispatchKeyEvent", { type: "keyUp", ...enter }, sessionId);
        },
        async screenshot() {
          const { data } = await send("Page.captureScreenshot", { format: "png" }, sessionId) as {
            data: string;
          };
          return Uint8Array.from(atob(data), (c) => c.charCodeAt(0));
        },
      };
    },
    async [Symbol.asyncDispose]() {
      try {
        await withTimeout(send("Browser.close"), 5_000, { what: "the browser to close" });
      } catch {
        // Killed below.
      }
      ws.close();
      await withTimeout(closed, 5_000, { what: "the DevTools socket to close" }).catch(() => {});
      await stopProcess();
    },
  };
}
