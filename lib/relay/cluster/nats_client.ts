/**
 * A NATS core client on a `Deno.TcpConn`: the text protocol (INFO, CONNECT, PUB, SUB, UNSUB,
 * MSG, PING, PONG, +OK, -ERR) and nothing else, written for the relay cluster's needs.
 *
 * Why not `npm:@nats-io/transport-node`: it runs over Deno's `node:net` compatibility layer
 * and copies each message several times; in the relay-cluster benchmark the client library
 * took about as much CPU as relaying itself. This client reads and writes the socket with
 * `conn.read`/`conn.write` into reused buffers (the project's measured fast path), hands each
 * message's payload out as a view of its read buffer, and bounds everything:
 *
 * - **Outbound**: publishes are queued as bytes and written by one writer loop, coalesced into
 *   large writes. At most {@linkcode NATS_CLIENT_DEFAULTS}.maxQueuedBytes wait; past that, and
 *   while disconnected, {@linkcode NatsClient.publish} refuses (returns false) instead of
 *   buffering: nothing grows without bound.
 * - **Inbound**: a control line is at most `maxLineBytes`; a payload at most the server's
 *   announced `max_payload` (checked before anything is allocated). A server that breaks the
 *   protocol is disconnected, then reconnected to.
 * - **Liveness**: a PING every `pingIntervalMs`; `maxPingsOut` unanswered ones close the
 *   connection. Reconnects every `reconnectWaitMs`, forever, to the servers in turn, and
 *   subscribes again to everything.
 *
 * Wire format (https://docs.nats.io/reference/reference-protocols/nats-protocol):
 *
 * ```text
 * client: CONNECT {"verbose":false,"echo":false,...}\r\n PING\r\n
 * client: SUB <subject> <sid>\r\n   UNSUB <sid>\r\n   PUB <subject> [reply] <n>\r\n<n bytes>\r\n
 * server: INFO {...}\r\n   MSG <subject> <sid> [reply] <n>\r\n<n bytes>\r\n   PING\r\n PONG\r\n
 *         +OK\r\n   -ERR '<message>'\r\n
 * ```
 *
 * @module
 */

import { concatBytes } from "../../net/bytes.ts";
import { writeAll } from "../../net/write_all.ts";

/** Defaults of {@linkcode NatsClient}, with their reasons. */
export const NATS_CLIENT_DEFAULTS = {
  /** Most time to connect and get the server's PONG at start, in ms. */
  connectTimeoutMs: 5_000,
  /** Wait between reconnect attempts, in ms. */
  reconnectWaitMs: 250,
  /** Client pings, in ms apart. */
  pingIntervalMs: 2_000,
  /** Unanswered pings before the connection is considered dead. */
  maxPingsOut: 2,
  /** Bytes of publishes waiting to be written before `publish` refuses. */
  maxQueuedBytes: 16 * 1024 * 1024,
  /** Longest protocol line from the server (INFO is the longest), in bytes. */
  maxLineBytes: 64 * 1024,
  /** Largest payload accepted whatever the server announces, in bytes. */
  maxPayloadBytes: 8 * 1024 * 1024,
  /** Size of the read buffer; it grows for a payload larger than this. */
  readBufferBytes: 256 * 1024,
} as const;

/** A message as it arrives; `data` is valid only during the callback. */
export interface NatsMessage {
  /** The subject it was published to. */
  subject: string;
  /** Where a reply goes, if any. */
  reply?: string;
  /** Its payload: a view of the read buffer, valid until the callback returns. */
  data: Uint8Array;
}

/** Options of {@linkcode NatsClient.connect}. */
export interface NatsClientOptions {
  /** The client's name, shown by the server's monitoring. */
  name?: string;
  /** Most time to connect at start, in ms. */
  connectTimeoutMs?: number;
  /** Wait between reconnect attempts, in ms. */
  reconnectWaitMs?: number;
  /** Client pings, in ms apart. */
  pingIntervalMs?: number;
}

/**
 * The NATS connection could not be made, or the server broke the protocol; the message says
 * which server and why.
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert/strict";
 * import { NatsError } from "./nats_client.ts";
 * assert.equal(new NatsError("Cannot reach NATS at nats://x:1").name, "NatsError");
 * ```
 */
export class NatsError extends Error {
  /** Creates the error. */
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "NatsError";
  }
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();
const CRLF = encoder.encode("\r\n");
const PING = encoder.encode("PING\r\n");
const PONG = encoder.encode("PONG\r\n");

/** `nats://HOST:PORT` as a hostname and a port (4222 by default). */
function parseServer(url: string): { hostname: string; port: number } {
  const u = new URL(url);
  if (u.protocol !== "nats:" || !u.hostname) {
    throw new NatsError(`Cannot use NATS server ${JSON.stringify(url)}: expected nats://HOST:PORT`);
  }
  return { hostname: u.hostname.replace(/^\[|\]$/g, ""), port: u.port ? Number(u.port) : 4222 };
}

/** A subject token check: no spaces or control characters (the server checks the rest). */
function checkSubject(subject: string): void {
  // deno-lint-ignore no-control-regex
  if (subject === "" || /[\s\x00-\x1f]/.test(subject)) {
    throw new NatsError(`Cannot use NATS subject ${JSON.stringify(subject)}`);
  }
}

/**
 * A NATS core connection (see the module doc). `onState` learns of every disconnect and
 * reconnect.
 *
 * @example Against a running nats-server (skipped here: needs one)
 * ```ts ignore
 * import assert from "node:assert/strict";
 * import { NatsClient } from "./nats_client.ts";
 * const nc = await NatsClient.connect(["nats://127.0.0.1:4222"]);
 * const got = Promise.withResolvers<string>();
 * nc.subscribe("demo", (m) => got.resolve(new TextDecoder().decode(m.data)));
 * await nc.flush();
 * nc.publish("demo", new TextEncoder().encode("hi"));
 * assert.equal(await got.promise, "hi");
 * await nc.close();
 * ```
 */
export class NatsClient {
  #servers: { hostname: string; port: number }[];
  #urls: string[];
  #options: Required<Omit<NatsClientOptions, "name">> & { name?: string };
  #conn: Deno.TcpConn | undefined;
  #connected = false;
  #closed = false;
  #subs = new Map<number, { subject: string; handler: (m: NatsMessage) => void }>();
  #nextSid = 1;
  #queue: Uint8Array[] = [];
  #queuedBytes = 0;
  #wake: (() => void) | undefined;
  #pongs: { resolve(): void; reject(error: Error): void }[] = [];
  #pingsOut = 0;
  #pingTimer: ReturnType<typeof setInterval> | undefined;
  #maxPayload: number = NATS_CLIENT_DEFAULTS.maxPayloadBytes;
  #serverIndex = 0;
  #onState: ((connected: boolean) => void)[] = [];
  #loop: Promise<void> = Promise.resolve();
  #retry: ReturnType<typeof setTimeout> | undefined;
  #retryWake: (() => void) | undefined;
  #onHandlerError: ((error: unknown) => void) | undefined;

  private constructor(urls: string[], options: NatsClientOptions) {
    this.#urls = urls;
    this.#servers = urls.map(parseServer);
    const D = NATS_CLIENT_DEFAULTS;
    this.#options = {
      name: options.name,
      connectTimeoutMs: options.connectTimeoutMs ?? D.connectTimeoutMs,
      reconnectWaitMs: options.reconnectWaitMs ?? D.reconnectWaitMs,
      pingIntervalMs: options.pingIntervalMs ?? D.pingIntervalMs,
    };
  }

  /**
   * Connects to the first of `servers` that answers (within the connect timeout, each), then
   * stays connected: reconnecting to any of them when the connection drops.
   */
  static async connect(servers: string[], options: NatsClientOptions = {}): Promise<NatsClient> {
    if (servers.length === 0) throw new NatsError("Cannot connect to NATS: no server given");
    const client = new NatsClient(servers, options);
    const errors: string[] = [];
    for (let i = 0; i < client.#servers.length; i++) {
      try {
        await client.#open(i);
        client.#loop = client.#run();
        return client;
      } catch (error) {
        errors.push(`${servers[i]}: ${(error as Error).message}`);
      }
    }
    throw new NatsError(`Cannot reach NATS at ${errors.join("; ")}`);
  }

  /** True while connected. */
  get connected(): boolean {
    return this.#connected;
  }

  /** The server in use (or last used), as given. */
  get url(): string {
    return this.#urls[this.#serverIndex];
  }

  /** Calls `handler` with what a subscription's handler threw (the connection goes on). */
  onHandlerError(handler: (error: unknown) => void): void {
    this.#onHandlerError = handler;
  }

  /** Calls `handler` on each disconnect (false) and reconnect (true). */
  onState(handler: (connected: boolean) => void): void {
    this.#onState.push(handler);
  }

  /**
   * Queues a publish of `data`, or of its pieces one after the other (by reference: leave them
   * unchanged); false (nothing queued) while disconnected, or when it would pass the outbound
   * bound, or when it is larger than the server accepts.
   */
  publish(subject: string, data: Uint8Array | readonly Uint8Array[], reply?: string): boolean {
    const pieces = data instanceof Uint8Array ? [data] : data;
    let length = 0;
    for (const piece of pieces) length += piece.length;
    if (!this.#connected || length > this.#maxPayload) return false;
    const head = encoder.encode(
      reply ? `PUB ${subject} ${reply} ${length}\r\n` : `PUB ${subject} ${length}\r\n`,
    );
    const size = head.length + length + 2;
    if (this.#queuedBytes + size > NATS_CLIENT_DEFAULTS.maxQueuedBytes) return false;
    checkSubject(subject);
    if (reply) checkSubject(reply);
    // The writer gathers small pieces and writes large ones as they are.
    this.#enqueue(head);
    for (const piece of pieces) this.#enqueue(piece);
    this.#enqueue(CRLF);
    return true;
  }

  /** Subscribes `handler` to `subject` (wildcards allowed); returns the unsubscribe function. */
  subscribe(subject: string, handler: (m: NatsMessage) => void): () => void {
    checkSubject(subject);
    const sid = this.#nextSid++;
    this.#subs.set(sid, { subject, handler });
    if (this.#connected) this.#enqueue(encoder.encode(`SUB ${subject} ${sid}\r\n`));
    return () => {
      if (!this.#subs.delete(sid)) return;
      if (this.#connected) this.#enqueue(encoder.encode(`UNSUB ${sid}\r\n`));
    };
  }

  /** Resolves once the server processed everything sent before (PING, then its PONG). */
  flush(): Promise<void> {
    if (!this.#connected) return Promise.reject(new NatsError("Cannot flush: not connected"));
    const { promise, resolve, reject } = Promise.withResolvers<void>();
    this.#pongs.push({ resolve, reject });
    this.#enqueue(PING);
    return promise;
  }

  /** Writes what is queued (bounded wait) and closes for good. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    clearTimeout(this.#retry);
    this.#retryWake?.();
    const conn = this.#conn;
    if (conn && this.#connected && this.#queue.length > 0) {
      const pending = this.#drainQueue();
      this.#queue = [];
      this.#queuedBytes = 0;
      await Promise.race([
        writeAll(conn, pending).catch(() => {}),
        new Promise((resolve) => setTimeout(resolve, 1000)),
      ]);
    }
    this.#drop();
    this.#wake?.();
    await this.#loop;
  }

  // --- Inside ------------------------------------------------------------------------------

  #enqueue(bytes: Uint8Array): void {
    this.#queue.push(bytes);
    this.#queuedBytes += bytes.length;
    const wake = this.#wake;
    this.#wake = undefined;
    wake?.();
  }

  /** Everything queued as one buffer (for the last write at close). */
  #drainQueue(): Uint8Array {
    return gather(this.#queue);
  }

  /** Connects to server `index`: INFO, CONNECT, PING, PONG; then subscribes everything again. */
  async #open(index: number): Promise<void> {
    const server = this.#servers[index];
    const connecting = Deno.connect({ hostname: server.hostname, port: server.port });
    let conn: Deno.TcpConn;
    try {
      conn = await withDeadline(connecting, this.#options.connectTimeoutMs);
    } catch (error) {
      // A connection that completes after the deadline is closed, not leaked.
      connecting.then((late) => late.close(), () => {});
      throw error;
    }
    try {
      conn.setNoDelay(true);
      const reader = new LineReader(conn);
      const info = await withDeadline(reader.line(), this.#options.connectTimeoutMs);
      if (!info?.startsWith("INFO ")) {
        throw new NatsError(`expected INFO, got ${JSON.stringify(info?.slice(0, 80))}`);
      }
      const parsed = JSON.parse(info.slice(5));
      const maxPayload = Number(parsed.max_payload);
      this.#maxPayload = Math.min(
        Number.isSafeInteger(maxPayload) && maxPayload > 0 ? maxPayload : 1024 * 1024,
        NATS_CLIENT_DEFAULTS.maxPayloadBytes,
      );
      const connect = {
        verbose: false,
        pedantic: false,
        echo: false,
        lang: "sockit",
        version: "1",
        protocol: 1,
        headers: false,
        no_responders: false,
        ...(this.#options.name ? { name: this.#options.name } : {}),
      };
      let hello = `CONNECT ${JSON.stringify(connect)}\r\n`;
      const sent = new Set<number>();
      for (const [sid, sub] of this.#subs) {
        hello += `SUB ${sub.subject} ${sid}\r\n`;
        sent.add(sid);
      }
      await writeAll(conn, encoder.encode(hello + "PING\r\n"));
      while (true) {
        const line = await withDeadline(reader.line(), this.#options.connectTimeoutMs);
        if (line === "PONG") break;
        if (line === null) throw new NatsError("the server closed the connection");
        if (line.startsWith("-ERR")) throw new NatsError(`the server said ${line}`);
        // +OK, PING or INFO updates before the PONG: nothing to do.
      }
      this.#conn = conn;
      this.#serverIndex = index;
      this.#reader = reader;
      this.#connected = true;
      this.#pingsOut = 0;
      // Subscriptions made or dropped while the handshake was on its way.
      for (const [sid, sub] of this.#subs) {
        if (!sent.has(sid)) this.#enqueue(encoder.encode(`SUB ${sub.subject} ${sid}\r\n`));
      }
      for (const sid of sent) {
        if (!this.#subs.has(sid)) this.#enqueue(encoder.encode(`UNSUB ${sid}\r\n`));
      }
    } catch (error) {
      conn.close();
      throw error instanceof NatsError ? error : new NatsError((error as Error).message);
    }
  }

  #reader: LineReader | undefined;

  /** Connection after connection: read and write until it drops, then reconnect. */
  async #run(): Promise<void> {
    while (!this.#closed) {
      if (this.#connected && this.#conn && this.#reader) {
        this.#pingTimer = setInterval(() => this.#ping(), this.#options.pingIntervalMs);
        await Promise.all([this.#readLoop(this.#reader), this.#writeLoop(this.#conn)]);
        clearInterval(this.#pingTimer);
        this.#drop();
        if (this.#closed) break;
        for (const handler of this.#onState) handler(false);
      }
      // Reconnect: every server in turn, a pause between rounds.
      while (!this.#closed && !this.#connected) {
        await new Promise<void>((resolve) => {
          this.#retryWake = resolve;
          this.#retry = setTimeout(resolve, this.#options.reconnectWaitMs);
        });
        if (this.#closed) break;
        // Every server in turn, the one last used first.
        for (let k = 0; k < this.#servers.length && !this.#closed; k++) {
          try {
            await this.#open((this.#serverIndex + k) % this.#servers.length);
            break;
          } catch {
            // Next one, or the next round.
          }
        }
        if (this.#closed) {
          this.#drop();
          break;
        }
        if (this.#connected) { for (const handler of this.#onState) handler(true); }
      }
    }
  }

  #ping(): void {
    if (!this.#connected) return;
    if (this.#pingsOut >= NATS_CLIENT_DEFAULTS.maxPingsOut) {
      // Stale: the read loop ends once the socket is closed.
      this.#conn?.close();
      this.#conn = undefined;
      return;
    }
    this.#pingsOut++;
    this.#pongs.push({ resolve: () => {}, reject: () => {} });
    this.#enqueue(PING);
  }

  /** Ends the current connection: nothing more is queued for it, flushes fail. */
  #drop(): void {
    this.#connected = false;
    try {
      this.#conn?.close();
    } catch {
      // Closed already.
    }
    this.#conn = undefined;
    this.#reader = undefined;
    this.#queue = [];
    this.#queuedBytes = 0;
    const pongs = this.#pongs;
    this.#pongs = [];
    for (const pong of pongs) pong.reject(new NatsError("Cannot flush: the connection dropped"));
    this.#wake?.();
  }

  async #writeLoop(conn: Deno.TcpConn): Promise<void> {
    try {
      while (this.#connected && this.#conn === conn) {
        if (this.#queue.length === 0) {
          await new Promise<void>((resolve) => (this.#wake = resolve));
          continue;
        }
        const pieces = this.#queue;
        this.#queue = [];
        this.#queuedBytes = 0;
        // Small pieces are gathered into one write; a large payload goes out as it is.
        let run: Uint8Array[] = [];
        let runBytes = 0;
        for (const piece of pieces) {
          if (piece.length >= GATHER_BYTES) {
            if (runBytes > 0) await writeAll(conn, gather(run));
            run = [];
            runBytes = 0;
            await writeAll(conn, piece);
          } else {
            run.push(piece);
            runBytes += piece.length;
          }
        }
        if (runBytes > 0) await writeAll(conn, gather(run));
      }
    } catch {
      // The socket failed: the read loop ends too.
    }
    if (this.#conn === conn) {
      try {
        conn.close();
      } catch {
        // Closed already.
      }
    }
  }

  async #readLoop(reader: LineReader): Promise<void> {
    try {
      while (true) {
        const line = await reader.line();
        if (line === null) return;
        if (line.startsWith("MSG ")) {
          // MSG <subject> <sid> [reply] <#bytes>
          const parts = line.split(" ");
          if (parts.length !== 4 && parts.length !== 5) {
            throw new NatsError(`Cannot parse ${JSON.stringify(line.slice(0, 120))}`);
          }
          const size = Number(parts[parts.length - 1]);
          if (!Number.isSafeInteger(size) || size < 0 || size > this.#maxPayload) {
            throw new NatsError(`Cannot accept a NATS message of ${parts.at(-1)} bytes`);
          }
          const payload = await reader.payload(size);
          if (payload === null) return;
          const sub = this.#subs.get(Number(parts[2]));
          if (sub) {
            try {
              sub.handler({
                subject: parts[1],
                reply: parts.length === 5 ? parts[3] : undefined,
                data: payload,
              });
            } catch (error) {
              // A handler's failure is the handler's: the connection goes on.
              this.#onHandlerError?.(error);
            }
          }
        } else if (line === "PING") {
          this.#enqueue(PONG);
        } else if (line === "PONG") {
          this.#pingsOut = 0;
          this.#pongs.shift()?.resolve();
        } else if (line.startsWith("-ERR")) {
          // Permissions errors keep the connection; anything else ends it (server's call).
          if (!/permissions violation/i.test(line)) return;
        }
        // +OK, INFO: nothing to do.
      }
    } catch {
      // A protocol violation or a failed socket: reconnect.
    } finally {
      this.#connected = false;
      this.#wake?.();
    }
  }
}

/** Pieces at least this large are written as they are rather than copied into a batch. */
const GATHER_BYTES = 16 * 1024;

/** `pieces` as one buffer (the one piece itself when there is one). */
function gather(pieces: Uint8Array[]): Uint8Array {
  return pieces.length === 1 ? pieces[0] : concatBytes(...pieces);
}

/** Resolves `promise`, or rejects after `ms`. */
function withDeadline<T>(promise: Promise<T>, ms: number): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  return Promise.race([
    promise,
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new NatsError(`no answer within ${ms} ms`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

/** CRLF lines and sized payloads from a socket, in one growing buffer. */
class LineReader {
  #conn: Deno.Conn;
  #buf = new Uint8Array(NATS_CLIENT_DEFAULTS.readBufferBytes);
  #start = 0;
  #end = 0;

  constructor(conn: Deno.Conn) {
    this.#conn = conn;
  }

  /** Reads more; false at end of input. */
  async #fill(need: number): Promise<boolean> {
    if (this.#start > 0 && this.#buf.length - this.#start < need) {
      this.#buf.copyWithin(0, this.#start, this.#end);
      this.#end -= this.#start;
      this.#start = 0;
    }
    if (this.#buf.length < need) {
      const bigger = new Uint8Array(need);
      bigger.set(this.#buf.subarray(0, this.#end));
      this.#buf = bigger;
    }
    const n = await this.#conn.read(this.#buf.subarray(this.#end));
    if (n === null) return false;
    this.#end += n;
    return true;
  }

  /** The next line without its CRLF, or null at end of input. */
  async line(): Promise<string | null> {
    let from = this.#start;
    while (true) {
      const lf = this.#buf.subarray(from, this.#end).indexOf(0x0a);
      if (lf >= 0) {
        const end = from + lf;
        const text = decoder.decode(
          this.#buf.subarray(
            this.#start,
            end > this.#start && this.#buf[end - 1] === 0x0d ? end - 1 : end,
          ),
        );
        this.#start = end + 1;
        return text;
      }
      if (this.#end - this.#start > NATS_CLIENT_DEFAULTS.maxLineBytes) {
        throw new NatsError("Cannot accept a NATS protocol line that long");
      }
      from = this.#end;
      const scanned = from - this.#start;
      if (!(await this.#fill(this.#end - this.#start + 1024))) return null;
      from = this.#start + scanned;
    }
  }

  /** The next `size` bytes and their CRLF: a view valid until the next read. */
  async payload(size: number): Promise<Uint8Array | null> {
    while (this.#end - this.#start < size + 2) {
      if (!(await this.#fill(size + 2))) return null;
    }
    const data = this.#buf.subarray(this.#start, this.#start + size);
    if (this.#buf[this.#start + size] !== 0x0d || this.#buf[this.#start + size + 1] !== 0x0a) {
      throw new NatsError("Cannot parse a NATS message: no CRLF after its payload");
    }
    this.#start += size + 2;
    return data;
  }
}
