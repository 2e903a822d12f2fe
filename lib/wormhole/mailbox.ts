/**
 * The client of the Magic Wormhole mailbox (rendezvous) server, for one wormhole: connect and
 * bind, allocate or claim a nameplate, open its mailbox, add messages and take the other
 * side's, release and close. The messages themselves are in `mailbox_wire.ts`.
 *
 * A request is done when its answer arrives (`allocated`, `claimed`, `released`, `closed`,
 * `nameplates`) or, for those without one (`bind`, `open`, `add`), the server's ack of its
 * `id`. Messages whose `side` is ours are our own echoes and are dropped; of the others, a
 * phase seen before is dropped too (the server does not de-duplicate; the Python client drops
 * repeats the same way); the rest are buffered in arrival order until {@linkcode Mailbox.next}
 * takes them, at most {@linkcode MAILBOX_DEFAULTS}`.maxBufferedBytes` of them.
 *
 * Failures are typed. The server's `error` is a `MailboxError` (`CrowdedError` for "crowded")
 * naming the refused request; it rejects every pending wait, and afterwards only `release()`
 * and `close()` are allowed, to clean up. A refusal in the welcome is a `WelcomeError`. A
 * connection that cannot be made or is lost is a `MailboxConnectionError`, which rejects every
 * pending wait; a frame over `maxFrameBytes` is a `LimitError` and one that is not a
 * well-formed message a `ProtocolError` (both drop the connection). A wait that takes too long
 * is a `TimeoutError` that says what was awaited.
 *
 * No reconnection: the Python client reconnects with backoff and resumes; here a wormhole is
 * short-lived and someone is watching it, so a lost connection is an error the caller
 * reports (or retries from scratch, with a new code).
 *
 * @module
 */

import denoJson from "../../deno.json" with { type: "json" };
import { type Widened, withDefaults } from "../defaults.ts";
import { withTimeout } from "../net/deadline.ts";
import { LimitError, ProtocolError } from "../net/errors.ts";
import { printable, quote } from "../log.ts";
import { toHex } from "./keys.ts";
import {
  CrowdedError,
  MailboxConnectionError,
  MailboxError,
  parseServerMessage,
  type ServerMessage,
  WelcomeError,
} from "./mailbox_wire.ts";

export {
  CrowdedError,
  MailboxConnectionError,
  MailboxError,
  type ServerMessage,
  WelcomeError,
} from "./mailbox_wire.ts";

/** Limits and timeouts of a {@linkcode Mailbox}; each can be overridden in its options. */
export const MAILBOX_DEFAULTS = {
  /** Longest wait for the server (connect and welcome, each answer, close), in ms. */
  timeoutMs: 30_000,
  /** Largest frame accepted from the server, in bytes (characters for a text frame). */
  maxFrameBytes: 1 << 20,
  /** Most bytes of the other side's messages buffered until {@linkcode Mailbox.next}. */
  maxBufferedBytes: 16 << 20,
  /**
   * Longest wait for the WebSocket closing handshake, and for the answers to release and close
   * when a mailbox is disposed without close(), in ms.
   */
  closeTimeoutMs: 2_000,
} as const;

/** The phases a wormhole has: `pake`, `version`, and numbered application messages. */
const PHASE_NAME = /^(pake|version|\d{1,9})$/;

/** Bytes each buffered message counts for besides its body and phase (its bookkeeping). */
const MESSAGE_OVERHEAD_BYTES = 256;

/** Most distinct phases one wormhole takes from the other side. */
const MAX_PHASES = 100_000;

/** What a client tells the server about how the wormhole went (`close`'s `mood`). */
export type Mood = "happy" | "lonely" | "scary" | "errory";

/** A message from the other side. */
export interface MailboxMessage {
  /** The sender's side. */
  side: string;
  /** The phase: `pake`, `version`, or a number for application data. */
  phase: string;
  /** The body, decoded from hex. */
  body: Uint8Array;
}

/** Options for {@linkcode Mailbox.connect}. */
export interface MailboxOptions {
  /** The application id both sides use, e.g. `lothar.com/wormhole/text-or-file-xfer`. */
  appId: string;
  /** Our side. @default {a new randomSide()} */
  side?: string;
  /** Sent in `bind` as `client_version`. @default {["sockit", the version in deno.json]} */
  clientVersion?: readonly [string, string];
  /** Called with the server's message of the day: raw server text, show it `printable()`. */
  onMotd?: (motd: string) => void;
  /** See {@linkcode MAILBOX_DEFAULTS}. @default {30000} */
  timeoutMs?: number;
  /** See {@linkcode MAILBOX_DEFAULTS}. @default {1 MiB} */
  maxFrameBytes?: number;
  /** See {@linkcode MAILBOX_DEFAULTS}. @default {16 MiB} */
  maxBufferedBytes?: number;
  /** See {@linkcode MAILBOX_DEFAULTS}. @default {2000} */
  closeTimeoutMs?: number;
}

/** Options of one wait. */
export interface WaitOptions {
  /**
   * How long to wait, in ms (`Infinity`: no limit).
   * @default {the mailbox's timeoutMs; no limit when `signal` is given}
   */
  timeoutMs?: number;
  /** Ends the wait when aborted, rejecting with the signal's reason. */
  signal?: AbortSignal;
}

/**
 * A new side: 5 random bytes in hex, as the Python client makes them.
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert/strict";
 * import { randomSide } from "./mailbox.ts";
 * assert.match(randomSide(), /^[0-9a-f]{10}$/);
 * ```
 */
export function randomSide(): string {
  return toHex(crypto.getRandomValues(new Uint8Array(5)));
}

interface Waiter {
  what: string;
  resolve(value: unknown): void;
  reject(error: Error): void;
}

interface SendOptions extends WaitOptions {
  /** Wait for the server's ack. */
  ack?: boolean;
  /** Allowed after the server refused something (release, close). */
  cleanup?: boolean;
}

/** The key in `#answers` of the WebSocket's open event (no server message has this type). */
const SOCKET_OPEN = "(socket open)";

const closedError = () => new MailboxConnectionError("Cannot use the mailbox: it is closed");

/**
 * One connection to a mailbox server, for one wormhole.
 *
 * @example An unreachable server is a clear error
 * ```ts
 * import assert from "node:assert/strict";
 * import { Mailbox, MailboxConnectionError } from "./mailbox.ts";
 * const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
 * const url = `ws://127.0.0.1:${listener.addr.port}/v1`;
 * listener.close(); // Nothing listens there now.
 * await assert.rejects(
 *   Mailbox.connect(url, { appId: "example.com/app" }),
 *   (error) => error instanceof MailboxConnectionError &&
 *     error.message.startsWith(`cannot reach the mailbox server at ${url}: `),
 * );
 * ```
 *
 * @example Two clients meet (needs a mailbox server)
 * ```ts ignore
 * const a = await Mailbox.connect("ws://relay.magic-wormhole.io:4000/v1", { appId });
 * const nameplate = await a.allocate();
 * await a.open(await a.claim(nameplate));
 * await a.add("pake", new Uint8Array([1, 2, 3]));
 * const reply = await a.next("pake", { timeoutMs: 60_000 }); // { side, phase, body }
 * await a.close("happy"); // Releases the nameplate too.
 * ```
 */
export class Mailbox implements AsyncDisposable {
  /** Our side. */
  readonly side: string;
  /** The server's URL. */
  readonly url: string;
  #ws: WebSocket;
  #config: Widened<typeof MAILBOX_DEFAULTS> & MailboxOptions;
  /** Why the connection is unusable (never made, lost, a bad frame, closed by us). */
  #broken: Error | undefined;
  /** The server's first `error`: only release() and close() may follow. */
  #refused: MailboxError | undefined;
  #waiters = new Set<Waiter>();
  /** Waiters for an answer, by the answer's type (or {@linkcode SOCKET_OPEN}). */
  #answers = new Map<string, Waiter[]>();
  #acks = new Map<string, Waiter>();
  #inbox: MailboxMessage[] = [];
  #inboxBytes = 0;
  #inboxWaiters: { match: (phase: string) => boolean; waiter: Waiter }[] = [];
  #seenPhases = new Set<string>();
  #connected = false;
  #errorText = "";
  #socketClosed: Promise<void>;
  /** Requests made (each at most once per connection). */
  #done = new Set<string>();
  #nameplate: string | undefined;
  #mailboxId: string | undefined;
  #closing: Promise<void> | undefined;

  private constructor(ws: WebSocket, url: string, options: MailboxOptions) {
    this.#ws = ws;
    this.url = url;
    this.#config = withDefaults(MAILBOX_DEFAULTS, options);
    this.side = options.side ?? randomSide();
    ws.binaryType = "arraybuffer";
    this.#socketClosed = new Promise((resolve) => ws.addEventListener("close", () => resolve()));
    ws.addEventListener("open", () => {
      this.#connected = true;
      this.#answer(SOCKET_OPEN, undefined);
    });
    ws.addEventListener("error", (event) => {
      this.#errorText = (event as ErrorEvent).message ?? "";
    });
    ws.addEventListener("close", (event) => this.#lost(event));
    ws.addEventListener("message", (event) => this.#receive(event.data));
  }

  /**
   * Connects to the server at `url`, waits for its welcome and binds to `options.appId` and
   * our side, all within `options.timeoutMs`. Calls `options.onMotd` with the welcome's motd.
   */
  static async connect(url: string, options: MailboxOptions): Promise<Mailbox> {
    let ws: WebSocket;
    try {
      ws = new WebSocket(url);
    } catch (error) {
      throw new MailboxConnectionError(
        `cannot reach the mailbox server at ${printable(url)}: ${(error as Error).message}`,
        { cause: error },
      );
    }
    const mailbox = new Mailbox(ws, url, options);
    const at = printable(url);
    const bind = {
      appid: options.appId,
      side: mailbox.side,
      client_version: options.clientVersion ?? ["sockit", denoJson.version],
    };
    try {
      const [welcome] = await withTimeout(
        Promise.all([
          mailbox.#expect<ServerMessage & { type: "welcome" }>("welcome", "the welcome", {
            timeoutMs: Infinity,
          }),
          mailbox.#expect(SOCKET_OPEN, "the connection", { timeoutMs: Infinity })
            .then(() => mailbox.#send("bind", bind, { ack: true, timeoutMs: Infinity })),
        ]),
        mailbox.#config.timeoutMs,
        { what: `the mailbox server at ${at} to accept the connection and welcome us` },
      );
      if (welcome.motd !== undefined) options.onMotd?.(welcome.motd);
      return mailbox;
    } catch (error) {
      await mailbox.#shutdown(error as Error);
      throw error;
    }
  }

  /** Asks the server for a free nameplate (`allocate`) and returns it. */
  async allocate(options: WaitOptions = {}): Promise<string> {
    return (await this.#request("allocate", {}, "allocated", options)).nameplate;
  }

  /** Claims `nameplate` and returns the id of its mailbox; `CrowdedError` when it is full. */
  async claim(nameplate: string, options: WaitOptions = {}): Promise<string> {
    const answer = await this.#request("claim", { nameplate }, "claimed", options);
    this.#nameplate = nameplate;
    return answer.mailbox;
  }

  /** Opens mailbox `mailboxId`: its messages, past and future, start to arrive. */
  async open(mailboxId: string, options: WaitOptions = {}): Promise<void> {
    this.#once("open");
    this.#mailboxId = mailboxId;
    await this.#send("open", { mailbox: mailboxId }, { ...options, ack: true });
  }

  /** Adds a message of `phase` with `body` to the open mailbox; resolves on the server's ack. */
  async add(phase: string, body: Uint8Array, options: WaitOptions = {}): Promise<void> {
    if (this.#mailboxId === undefined) {
      throw new Error("Cannot add a message: open() a mailbox first");
    }
    await this.#send("add", { phase, body: toHex(body) }, { ...options, ack: true });
  }

  /**
   * The next message from the other side whose phase is `phase` (or passes the test), in
   * arrival order; messages of other phases stay buffered for later calls.
   */
  next(
    phase: string | ((phase: string) => boolean),
    options: WaitOptions = {},
  ): Promise<MailboxMessage> {
    const match = typeof phase === "string" ? (p: string) => p === phase : phase;
    const failure = this.#broken ?? this.#refused;
    if (failure) return Promise.reject(failure);
    const i = this.#inbox.findIndex((m) => match(m.phase));
    if (i >= 0) {
      const [message] = this.#inbox.splice(i, 1);
      this.#inboxBytes -= message.body.length + message.phase.length + MESSAGE_OVERHEAD_BYTES;
      return Promise.resolve(message);
    }
    if (this.#mailboxId === undefined) {
      return Promise.reject(new Error("Cannot wait for a message: open() a mailbox first"));
    }
    const what = typeof phase === "string" ? `a ${quote(phase)} message` : "a message";
    return this.#wait<MailboxMessage>(`${what} from the other side`, options, (waiter) => {
      const entry = { match, waiter };
      this.#inboxWaiters.push(entry);
      return () => this.#inboxWaiters = this.#inboxWaiters.filter((e) => e !== entry);
    });
  }

  /** The nameplates in use for our app id (`list`). */
  async list(options: WaitOptions = {}): Promise<string[]> {
    return (await this.#request("list", {}, "nameplates", options)).nameplates;
  }

  /** Releases the claimed nameplate; nothing to do when none is claimed or it was released. */
  async release(options: WaitOptions = {}): Promise<void> {
    if (this.#nameplate === undefined || this.#done.has("release")) return;
    await this.#request("release", { nameplate: this.#nameplate }, "released", options, true);
  }

  /**
   * Releases the nameplate if still claimed, closes the mailbox with `mood` if it was opened,
   * waits for both answers, and closes the connection. Calling it again returns the same
   * result.
   */
  close(mood: Mood, options: WaitOptions = {}): Promise<void> {
    this.#closing ??= (async () => {
      if (this.#broken) throw this.#broken;
      try {
        const waits: Promise<unknown>[] = [this.release(options)];
        if (this.#mailboxId !== undefined) {
          const fields = { mailbox: this.#mailboxId, mood };
          waits.push(this.#request("close", fields, "closed", options, true));
        }
        await Promise.all(waits);
      } finally {
        await this.#shutdown(closedError());
      }
    })();
    return this.#closing;
  }

  /** Closes with mood `errory` unless close() was called, briefly; never throws. */
  async [Symbol.asyncDispose](): Promise<void> {
    if (this.#closing === undefined && this.#broken === undefined) {
      this.close("errory", { timeoutMs: this.#config.closeTimeoutMs }).catch(() => {});
    }
    await this.#closing?.catch(() => {});
    await this.#shutdown(closedError());
  }

  /** Sends a request that is answered with a message of type `answer`; waits for it. */
  #request<A extends ServerMessage["type"]>(
    type: string,
    fields: Record<string, unknown>,
    answer: A,
    options: WaitOptions,
    cleanup = false,
  ): Promise<ServerMessage & { type: A }> {
    if (type !== "list") this.#once(type, cleanup);
    else this.#check();
    const waiting = this.#expect<ServerMessage & { type: A }>(
      answer,
      `the ${quote(answer)} answer to ${type}`,
      options,
    );
    this.#send(type, fields, { cleanup }).catch(() => {}); // A failed send rejects `waiting` too.
    return waiting;
  }

  /** Throws unless the connection works (and, unless `cleanup`, the server refused nothing). */
  #check(cleanup = false): void {
    const failure = this.#broken ?? (cleanup ? undefined : this.#refused);
    if (failure) throw failure;
  }

  /** Marks request `type` made; the server allows each once per connection. */
  #once(type: string, cleanup = false): void {
    this.#check(cleanup);
    if (this.#done.has(type)) throw new Error(`Cannot ${type} twice on one mailbox connection`);
    this.#done.add(type);
  }

  /**
   * Sends one message with a fresh random `id`; with `ack`, resolves when the server acks it.
   * A send that fails breaks the connection (every wait rejects).
   */
  #send(type: string, fields: Record<string, unknown>, options: SendOptions = {}): Promise<void> {
    try {
      this.#check(options.cleanup);
    } catch (error) {
      return Promise.reject(error);
    }
    let id: string;
    do {
      id = toHex(crypto.getRandomValues(new Uint8Array(4)));
    } while (this.#acks.has(id));
    try {
      this.#ws.send(JSON.stringify({ type, id, ...fields }));
    } catch (error) {
      const at = printable(this.url);
      const failure = new MailboxConnectionError(
        `Cannot send ${type} to the mailbox server at ${at}: ${(error as Error).message}`,
        { cause: error },
      );
      this.#fail(failure);
      return Promise.reject(failure);
    }
    if (!options.ack) return Promise.resolve();
    return this.#wait<void>(`the ack of ${type}`, options, (waiter) => {
      this.#acks.set(id, waiter);
      return () => this.#acks.delete(id);
    });
  }

  /** Waits for the next message of type `type` from the server. */
  #expect<T>(type: string, what: string, options: WaitOptions): Promise<T> {
    return this.#wait<T>(what, options, (waiter) => {
      const list = this.#answers.get(type) ?? [];
      list.push(waiter);
      this.#answers.set(type, list);
      return () => this.#answers.set(type, this.#answers.get(type)!.filter((w) => w !== waiter));
    });
  }

  /**
   * A wait that `register` files where an event will resolve it (and returns how to unfile
   * it), bounded by `options.timeoutMs` and `options.signal`.
   */
  #wait<T>(what: string, options: WaitOptions, register: (w: Waiter) => () => void): Promise<T> {
    const { signal } = options;
    const ms = options.timeoutMs ?? (signal ? Infinity : this.#config.timeoutMs);
    if (signal?.aborted) return Promise.reject(signal.reason);
    let waiter!: Waiter;
    let unregister = () => {};
    const settle = () => {
      this.#waiters.delete(waiter);
      signal?.removeEventListener("abort", onAbort);
      unregister();
    };
    const onAbort = () => waiter.reject(signal!.reason);
    const promise = new Promise<T>((resolve, reject) => {
      waiter = {
        what,
        resolve: (value) => (settle(), resolve(value as T)),
        reject: (error) => (settle(), reject(error)),
      };
    });
    signal?.addEventListener("abort", onAbort, { once: true });
    this.#waiters.add(waiter);
    unregister = register(waiter);
    if (!Number.isFinite(ms)) return promise;
    // On timeout the wait is only unfiled: withTimeout rejects with the TimeoutError.
    const at = printable(this.url);
    return withTimeout(promise, ms, {
      what: `${what} (mailbox server at ${at})`,
      onTimeout: settle,
    });
  }

  #answer(type: string, message: unknown): void {
    this.#answers.get(type)?.[0]?.resolve(message);
  }

  /** Marks the connection unusable and rejects every pending wait with `error` (or `perWait`). */
  #fail(error: Error, perWait?: (what: string) => Error): void {
    this.#broken ??= error;
    for (const waiter of [...this.#waiters]) waiter.reject(perWait?.(waiter.what) ?? error);
  }

  /** Fails what is pending with `reason`, closes the socket and waits (bounded) until it is. */
  async #shutdown(reason: Error): Promise<void> {
    this.#fail(reason);
    const state = this.#ws.readyState;
    if (state === WebSocket.CONNECTING || state === WebSocket.OPEN) this.#ws.close(1000);
    const ms = this.#config.closeTimeoutMs;
    await withTimeout(this.#socketClosed, ms, { what: "the socket to close" }).catch(() => {});
  }

  #lost(event: CloseEvent): void {
    if (this.#broken) return;
    const at = printable(this.url);
    const code = `code ${event.code}${event.reason ? ` ${quote(event.reason)}` : ""}`;
    if (!this.#connected) {
      const cause = this.#errorText.replace(/^NetworkError: /, "") || code;
      this.#fail(new MailboxConnectionError(`cannot reach the mailbox server at ${at}: ${cause}`));
      return;
    }
    const text = `lost the connection to the mailbox server at ${at} (${code})`;
    this.#fail(
      new MailboxConnectionError(text),
      (what) => new MailboxConnectionError(`${text} while waiting for ${what}`),
    );
  }

  #receive(data: unknown): void {
    if (this.#broken) return;
    try {
      const from = `the mailbox server at ${printable(this.url)}`;
      this.#dispatch(parseServerMessage(data, { maxFrameBytes: this.#config.maxFrameBytes, from }));
    } catch (error) {
      this.#shutdown(error as Error);
    }
  }

  #dispatch(message: ServerMessage): void {
    switch (message.type) {
      case "ack":
        if (message.id !== undefined) this.#acks.get(message.id)?.resolve(undefined);
        return;
      case "welcome":
        if (message.error !== undefined) throw new WelcomeError(this.url, message.error);
        return this.#answer("welcome", message);
      case "message":
        return this.#deliver({ side: message.side, phase: message.phase, body: message.body });
      case "error": {
        const { request, error: text } = message;
        const error = text === "crowded"
          ? new CrowdedError(request)
          : new MailboxError(request, text);
        this.#refused ??= error;
        for (const waiter of [...this.#waiters]) waiter.reject(error);
        return;
      }
      case "other":
        return;
      default:
        return this.#answer(message.type, message);
    }
  }

  #deliver(message: MailboxMessage): void {
    if (message.side === this.side) return;
    // Only the phases the protocol has: a peer (anyone who claimed the nameplate, before the
    // key is known) cannot fill memory with new phase names, each with an empty body.
    if (!PHASE_NAME.test(message.phase)) {
      throw new ProtocolError(`the other side sent a message of phase ${quote(message.phase)}`);
    }
    if (this.#seenPhases.has(message.phase)) return;
    this.#seenPhases.add(message.phase);
    const entry = this.#inboxWaiters.find((e) => e.match(message.phase));
    if (entry) return entry.waiter.resolve(message);
    const max = this.#config.maxBufferedBytes;
    const cost = message.body.length + message.phase.length + MESSAGE_OVERHEAD_BYTES;
    if (this.#inboxBytes + cost > max || this.#seenPhases.size > MAX_PHASES) {
      throw new LimitError(
        `Cannot buffer the other side's messages: more than ${max} bytes or ${MAX_PHASES} ` +
          "messages unread",
      );
    }
    this.#inbox.push(message);
    this.#inboxBytes += cost;
  }
}
