/**
 * One wormhole: the mailbox connection, the PAKE, key confirmation and the encrypted phase
 * messages, as the Magic Wormhole clients speak them (client-protocol.md).
 *
 * 1. Both sides bind to the mailbox server and claim the nameplate of the code (the sender
 *    may have it allocated first), then open the mailbox behind it.
 * 2. Each adds a `pake` message: `{"pake_v1": HEX}` with its SPAKE2 (symmetric, the app id
 *    as identity, the whole code as password) message. With the other's, each derives the
 *    session key. The nameplate is released at once: a code works once.
 * 3. Each adds a `version` message sealed with its phase key: `{"app_versions": {...}}`.
 *    Opening the other's proves both derived the same key; a box that does not open means a
 *    wrong code (or a guess), and the wormhole closes with mood "scary". Nothing else is sent
 *    before this confirmation.
 * 4. Application messages follow as phases "0", "1", ... in each direction, sealed the same
 *    way and delivered in order.
 *
 * The mailbox server sees the nameplate, the two sides' random ids, and ciphertext.
 *
 * @module
 */

import { ProtocolError } from "../net/errors.ts";
import { quote } from "../log.ts";
import { parseCode } from "./code.ts";
import {
  deriveKey,
  derivePhaseKey,
  fromHex,
  openWithNonce,
  sealWithRandomNonce,
  toHex,
  WrongCodeError,
} from "./keys.ts";
import { Mailbox, type MailboxMessage, type Mood } from "./mailbox.ts";
import { Spake2Symmetric } from "./spake2.ts";

/** The app id of the Wormhole file-transfer clients (`wormhole send`, wormhole-william). */
export const FILE_TRANSFER_APPID = "lothar.com/wormhole/text-or-file-xfer";

/**
 * Longest wait for the mailbox server to confirm a close, in ms: the transfer starts after it,
 * and a slow server must not hold it up (the server closes an abandoned mailbox itself).
 */
export const CLOSE_TIMEOUT_MS = 3000;

/** Largest decrypted application message accepted, in bytes (an offer, hints, an answer). */
export const MAX_APP_MESSAGE_BYTES = 1 << 20;

const encoder = new TextEncoder();
const decoder = new TextDecoder("utf-8", { fatal: true });

/** Options of {@linkcode Wormhole.open}. */
export interface WormholeOptions {
  /** The app id (both sides must use the same). @default {FILE_TRANSFER_APPID} */
  appId?: string;
  /** Our `app_versions` (what the other side learns about us once the key is confirmed). */
  appVersions?: Record<string, unknown>;
  /** Longest wait for the mailbox server itself (connect, each reply), in ms. @default {30000} */
  serverTimeoutMs?: number;
  /** Called with the server's message of the day. */
  onMotd?: (motd: string) => void;
}

/** What {@linkcode Wormhole.confirm} learns. */
export interface Confirmed {
  /** Hex of the verifier key: equal on both sides exactly when they share the key. */
  verifier: string;
  /** The other side's `app_versions` (untrusted shape). */
  peerAppVersions: unknown;
}

/**
 * A wormhole between two sides: made with {@linkcode Wormhole.open}, given a code with
 * {@linkcode Wormhole.allocateCode} or {@linkcode Wormhole.setCode}, confirmed with
 * {@linkcode Wormhole.confirm}, then used with {@linkcode Wormhole.send} and
 * {@linkcode Wormhole.receive}, and ended with {@linkcode Wormhole.close}.
 *
 * @example Usage
 * ```ts ignore
 * const sender = await Wormhole.open("ws://127.0.0.1:4000/v1");
 * const code = await sender.allocateCode({ words: 2 });
 * // ... the receiver calls setCode(code) ...
 * await sender.confirm();
 * await sender.send({ offer: { message: "hello" } });
 * ```
 */
export class Wormhole {
  readonly #mailbox: Mailbox;
  readonly #appId: string;
  readonly #side: string;
  readonly #appVersions: Record<string, unknown>;
  #code: string | undefined;
  #pake: Spake2Symmetric | undefined;
  #key: Uint8Array | undefined;
  #peerSide: string | undefined;
  #txPhase = 0;
  #rxPhase = 0;
  #closed = false;

  private constructor(
    mailbox: Mailbox,
    side: string,
    options: { appId: string; appVersions: Record<string, unknown> },
  ) {
    this.#mailbox = mailbox;
    this.#side = side;
    this.#appId = options.appId;
    this.#appVersions = options.appVersions;
  }

  /** Connects to the mailbox server at `url` and binds a fresh side to the app id. */
  static async open(url: string, options: WormholeOptions = {}): Promise<Wormhole> {
    const appId = options.appId ?? FILE_TRANSFER_APPID;
    const side = toHex(crypto.getRandomValues(new Uint8Array(5)));
    const mailbox = await Mailbox.connect(url, {
      appId,
      side,
      timeoutMs: options.serverTimeoutMs,
      onMotd: options.onMotd,
    });
    return new Wormhole(mailbox, side, { appId, appVersions: options.appVersions ?? {} });
  }

  /** The app id both sides use. */
  get appId(): string {
    return this.#appId;
  }

  /**
   * The key for `purpose` derived from the confirmed session key (the Python client's
   * `derive_key`), e.g. the transit key for `APPID + "/transit-key"`.
   */
  deriveKey(purpose: string, length = 32): Uint8Array {
    return deriveKey(this.key, purpose.normalize("NFC"), length);
  }

  /** Our side's random id. */
  get side(): string {
    return this.#side;
  }

  /** The code, once allocated or set. */
  get code(): string | undefined {
    return this.#code;
  }

  /** The session key, once {@linkcode Wormhole.confirm} has run (for deriving the transit key). */
  get key(): Uint8Array {
    if (!this.#key) throw new Error("the wormhole key is not confirmed yet");
    return this.#key;
  }

  /**
   * Has the server allocate a nameplate, makes the code with `makeCode(nameplate)` (e.g.
   * `generateCode` from code.ts), claims it and adds our PAKE message; returns the code.
   */
  async allocateCode(makeCode: (nameplate: string) => string): Promise<string> {
    const nameplate = await this.#mailbox.allocate();
    const code = makeCode(nameplate);
    await this.#claim(nameplate, code);
    return code;
  }

  /** Uses `code` (typed by a person or given by the sender): claims its nameplate. */
  async setCode(code: string): Promise<void> {
    const parsed = parseCode(code);
    await this.#claim(parsed.nameplate, parsed.code);
  }

  async #claim(nameplate: string, code: string): Promise<void> {
    this.#code = code;
    const mailboxId = await this.#mailbox.claim(nameplate);
    await this.#mailbox.open(mailboxId);
    // As the Python client's to_bytes(): NFC, then UTF-8.
    this.#pake = new Spake2Symmetric(encoder.encode(code.normalize("NFC")), {
      idSymmetric: encoder.encode(this.#appId.normalize("NFC")),
    });
    const body = JSON.stringify({ pake_v1: toHex(this.#pake.start()) });
    await this.#mailbox.add("pake", encoder.encode(body));
  }

  /**
   * Waits for the other side's PAKE and version messages and confirms the key. Waits as long
   * as `signal` allows for the other person to arrive. A wrong code throws
   * {@linkcode WrongCodeError} after closing the wormhole with mood "scary".
   */
  async confirm(options: { signal?: AbortSignal } = {}): Promise<Confirmed> {
    if (!this.#pake) throw new Error("confirm() before a code was allocated or set");
    const theirPake = await this.#peer("pake", options.signal);
    this.#peerSide = theirPake.side;
    let key: Uint8Array;
    try {
      const message = this.#json(theirPake.body, "the other side's PAKE message");
      const hex = (message as { pake_v1?: unknown }).pake_v1;
      if (typeof hex !== "string") throw new ProtocolError("the PAKE message has no pake_v1");
      key = this.#pake.finish(fromHex(hex, "pake_v1"));
    } catch (error) {
      await this.close("scary");
      throw error;
    }
    this.#key = key;
    // Both sides have claimed it by now: a code is single-use.
    await this.#mailbox.release();
    const versions = { app_versions: this.#appVersions };
    await this.#mailbox.add(
      "version",
      sealWithRandomNonce(
        derivePhaseKey(key, this.#side, "version"),
        encoder.encode(JSON.stringify(versions)),
      ),
    );
    const theirVersion = await this.#peer("version", options.signal);
    let peerVersions: unknown;
    try {
      const plain = openWithNonce(
        derivePhaseKey(key, theirVersion.side, "version"),
        theirVersion.body,
        "the other side's version message",
      );
      peerVersions = this.#json(plain, "the other side's version message");
    } catch (error) {
      await this.close(error instanceof WrongCodeError ? "scary" : "errory");
      throw error;
    }
    const appVersions = typeof peerVersions === "object" && peerVersions !== null
      ? (peerVersions as { app_versions?: unknown }).app_versions ?? {}
      : {};
    return { verifier: toHex(deriveKey(key, "wormhole:verifier")), peerAppVersions: appVersions };
  }

  /** Sends one application message (a JSON value) as the next phase. */
  async send(message: unknown): Promise<void> {
    const phase = String(this.#txPhase++);
    const plain = encoder.encode(JSON.stringify(message));
    await this.#mailbox.add(
      phase,
      sealWithRandomNonce(derivePhaseKey(this.key, this.#side, phase), plain),
    );
  }

  /** Receives the other side's next application message (phases in order). */
  async receive(options: { signal?: AbortSignal } = {}): Promise<unknown> {
    // The phase counts only once its message arrived: an aborted wait does not skip it.
    const phase = String(this.#rxPhase);
    const message = await this.#peer(phase, options.signal);
    this.#rxPhase++;
    if (this.#peerSide !== undefined && message.side !== this.#peerSide) {
      throw new ProtocolError(`phase ${phase} came from a third side ${quote(message.side)}`);
    }
    const plain = openWithNonce(
      derivePhaseKey(this.key, message.side, phase),
      message.body,
      `message ${phase}`,
    );
    return this.#json(plain, `message ${phase}`);
  }

  /**
   * The other side's next `phase` message, waiting as long as it takes a person to act, or
   * until `signal` aborts (the wormhole stays open: the caller closes it with its own mood).
   */
  #peer(phase: string, signal: AbortSignal | undefined): Promise<MailboxMessage> {
    return this.#mailbox.next(phase, { timeoutMs: Infinity, signal });
  }

  #json(data: Uint8Array, what: string): unknown {
    if (data.length > MAX_APP_MESSAGE_BYTES) {
      throw new ProtocolError(`${what} is larger than ${MAX_APP_MESSAGE_BYTES} bytes`);
    }
    try {
      return JSON.parse(decoder.decode(data));
    } catch {
      throw new ProtocolError(`${what} is not UTF-8 JSON`);
    }
  }

  /** Closes the mailbox with `mood` (the server logs it) and the connection. Idempotent. */
  async close(mood: Mood = "happy"): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await this.#mailbox.close(mood, { timeoutMs: CLOSE_TIMEOUT_MS }).catch(() => {});
  }
}
