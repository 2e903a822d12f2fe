/**
 * The encrypted record stream over a transit connection once the handshake is done, as both a
 * record pipe (for the Magic Wormhole file-transfer protocol, whose last message is one record:
 * `{"ack": "ok", "sha256": "..."}`) and a byte stream shaped like `Deno.TcpConn` (for sockit's
 * own transfer protocol in `lib/transfer/`).
 *
 * Records are sealed by {@linkcode RecordSealer} (`length: u32 | nonce | box`, see
 * `transit_cipher.ts`). A record longer than {@linkcode RECORD_LIMITS}`.maxRecordBytes` is
 * refused with a {@linkcode LimitError} before anything is allocated for it.
 *
 * Writing (`transit_writer.ts`): {@linkcode TransitConnection.write} seals what it is given
 * into records of at most `recordPayloadBytes` and queues them for the socket; it resolves once
 * its bytes are queued and the queue is under `maxQueuedBytes`. Small writes made while the
 * socket is busy are gathered into one record. What a resolved write queued is sent even when
 * {@linkcode TransitConnection.close} follows at once (close waits for the queue, at most
 * {@linkcode RECORD_LIMITS}`.closeFlushMs`).
 *
 * End of stream: the relay does not pass a TCP half-close on (it closes both sides), so
 * {@linkcode TransitConnection.closeWrite} sends an empty record instead, and
 * {@linkcode TransitConnection.read} reports an empty record as end of file. (Other Wormhole
 * clients never send empty records, and never need to see one: file transfers end on a byte
 * count.) A TCP end of file between records is end of file too; in the middle of one it is an
 * {@linkcode UnexpectedEofError}.
 *
 * @module
 */

import { BufferedReader } from "../net/buffered_reader.ts";
import { LimitError, ProtocolError } from "../net/errors.ts";
import { writeAll } from "../net/write_all.ts";
import { closedError, RecordWriter } from "./transit_writer.ts";
import {
  RecordCipher,
  type RecordCipherName,
  type RecordKeys,
  RecordOpener,
  recordOverhead,
  RecordSealer,
} from "./transit_cipher.ts";

/** Limits and sizes of the record stream. */
export const RECORD_LIMITS = {
  /**
   * Largest record accepted, as its length prefix counts it (nonce, tag and plaintext). The
   * Python client sends records of 16 KiB (Twisted's `FileSender.CHUNK_SIZE`) plus 40 bytes
   * and its ack; sockit sends up to `recordPayloadBytes` (256 KiB) plus 40. 1 MiB leaves room
   * for clients that send bigger records, and bounds what one record costs in memory.
   */
  maxRecordBytes: 1024 * 1024,
  /**
   * Plaintext per record this side writes (to another sockit; to other clients see
   * `plainRecordPayloadBytes`). Sealing costs the same per byte from 64 KiB up; bigger
   * records mean fewer cipher set-ups and socket writes, but 1 MiB measured no better than
   * 256 KiB end to end (320-370 against 340-350 MB/s with chacha20-poly1305 through the relay).
   */
  recordPayloadBytes: 256 * 1024,
  /**
   * Plaintext per record a sockit sender writes to another client (`send.ts`). The Python
   * receiver appends every read to one buffer until a record is whole, which costs it more
   * the bigger the record: its CPU seconds per GiB received from sockit through the relay
   * measured 6.1 with 16 KiB records (its own sender's size), 6.1 with 32 KiB, 5.3 with
   * 64 KiB, 6.2 with 128 KiB and 9.5 with 256 KiB (1 GiB, one or two runs each, 2 busy cores).
   */
  plainRecordPayloadBytes: 64 * 1024,
  /**
   * Plaintext sealed into one buffer for one socket write: smaller records are sealed back to
   * back (four 64 KiB records a write, not four writes).
   */
  writeBytes: 256 * 1024,
  /** Sealed bytes waiting for the socket before a write waits for them to drain. */
  maxQueuedBytes: 512 * 1024,
  /** A write smaller than this is copied into the record being gathered, not sealed alone. */
  gatherBelowBytes: 16 * 1024,
  /** Longest wait in `close()` for queued records to reach the socket, in ms. */
  closeFlushMs: 2000,
} as const;

/** Options for {@linkcode TransitConnection}. */
export interface TransitConnectionOptions {
  /** The record cipher both ends agreed on. @default {"secretbox"} */
  cipher?: RecordCipherName;
  /** See {@linkcode RECORD_LIMITS}. @default {1048576} */
  maxRecordBytes?: number;
  /** See {@linkcode RECORD_LIMITS}. @default {262144} */
  recordPayloadBytes?: number;
  /** See {@linkcode RECORD_LIMITS}. @default {524288} */
  maxQueuedBytes?: number;
  /** How the connection was made, for messages (`direct 10.0.0.5:4100`, `relay ...`). */
  description?: string;
}

/**
 * An encrypted transit connection over `conn` (whose handshake is done), with the record keys
 * of this end. Implements `Deno.TcpConn`, so `sendEntries` and `receiveSession` of
 * `lib/transfer/` run over it unchanged. Reads must not overlap each other (one reader), and
 * neither may {@linkcode receiveRecord} calls; writes may.
 *
 * @example Bytes written on one end are read on the other
 * ```ts
 * import assert from "node:assert/strict";
 * import { recordKeys } from "./transit_cipher.ts";
 * import { TransitConnection } from "./transit_records.ts";
 * const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
 * const dialed = Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port });
 * const key = new Uint8Array(32).fill(5);
 * const a = new TransitConnection(await listener.accept(), recordKeys(key, "sender"));
 * const b = new TransitConnection(await dialed, recordKeys(key, "receiver"));
 * await a.write(new TextEncoder().encode("hello"));
 * await a.closeWrite();
 * const buf = new Uint8Array(16);
 * assert.equal(new TextDecoder().decode(buf.subarray(0, (await b.read(buf))!)), "hello");
 * assert.equal(await b.read(buf), null);
 * await b.sendRecord(new TextEncoder().encode('{"ack":"ok"}'));
 * assert.equal(new TextDecoder().decode((await a.receiveRecord())!), '{"ack":"ok"}');
 * a.close();
 * b.close();
 * listener.close();
 * ```
 */
export class TransitConnection implements Deno.TcpConn {
  /** How the connection was made (`direct HOST:PORT`, `relay HOST:PORT`, `inbound ...`). */
  readonly description: string;
  /** The record cipher in use. */
  readonly cipher: RecordCipherName;
  #conn: Deno.TcpConn;
  #reader: BufferedReader;
  #opener: RecordOpener;
  #maxRecord: number;
  // Reading.
  #plain: Uint8Array = new Uint8Array(0);
  #eof = false;
  #closed = false;
  /** Fails the read in progress (close() calls it). */
  #failRead: ((error: Error) => void) | null = null;
  // Writing.
  #writer: RecordWriter;
  /** Reused for reading record bodies (its plaintext is consumed before the next read). */
  #recvBuf = new Uint8Array(0);
  #readable?: ReadableStream<Uint8Array<ArrayBuffer>>;
  #writable?: WritableStream<Uint8Array<ArrayBufferLike>>;

  /** Takes over `conn`; `keys` are this end's (see `recordKeys`). */
  constructor(conn: Deno.TcpConn, keys: RecordKeys, options: TransitConnectionOptions = {}) {
    this.#conn = conn;
    this.cipher = options.cipher ?? RecordCipher.SecretBox;
    this.description = options.description ?? "transit";
    this.#opener = new RecordOpener(keys.receive, { cipher: this.cipher });
    this.#maxRecord = options.maxRecordBytes ?? RECORD_LIMITS.maxRecordBytes;
    const payload = options.recordPayloadBytes ??
      Math.min(RECORD_LIMITS.recordPayloadBytes, this.#maxRecord - this.#opener.minLength);
    if (payload < 1 || payload + this.#opener.minLength > this.#maxRecord) {
      throw new RangeError(
        `recordPayloadBytes ${payload} does not fit maxRecordBytes ${this.#maxRecord}`,
      );
    }
    this.#writer = new RecordWriter(conn, new RecordSealer(keys.send, { cipher: this.cipher }), {
      recordPayloadBytes: payload,
      recordBytes: payload + recordOverhead(this.cipher),
      maxQueuedBytes: options.maxQueuedBytes ?? RECORD_LIMITS.maxQueuedBytes,
      writeBytes: RECORD_LIMITS.writeBytes,
      gatherBelowBytes: RECORD_LIMITS.gatherBelowBytes,
      closeFlushMs: RECORD_LIMITS.closeFlushMs,
    });
    this.#reader = new BufferedReader(conn);
    try {
      conn.setNoDelay(true);
    } catch {
      // Not a socket that has the option (a test double): nothing to set.
    }
  }

  /** The local address of the TCP connection. */
  get localAddr(): Deno.NetAddr {
    return this.#conn.localAddr;
  }

  /** The TCP peer: the other end for a direct connection, the relay for a relayed one. */
  get remoteAddr(): Deno.NetAddr {
    return this.#conn.remoteAddr;
  }

  /** Records received so far. */
  get recordsReceived(): number {
    return this.#opener.opened;
  }

  /** Records sealed so far (queued or sent). */
  get recordsSent(): number {
    return this.#writer.sealed;
  }

  /**
   * The next record's plaintext, or null at end of file; fails at once on close(). With
   * `into`, a record whose plaintext fits is opened straight into it and the result is its
   * length instead.
   */
  #nextRecord(into: Uint8Array | null): Promise<Uint8Array | number | null> {
    if (this.#closed) return Promise.reject(closedError());
    return new Promise((resolve, reject) => {
      this.#failRead = reject;
      this.#readRecord(into).then(resolve, reject).finally(() => {
        if (this.#failRead === reject) this.#failRead = null;
      });
    });
  }

  /** Reads the next record's body and opens it; null at a TCP end of file between records. */
  async #readRecord(into: Uint8Array | null): Promise<Uint8Array | number | null> {
    const reader = this.#reader;
    while (reader.buffered === 0) {
      if (!(await reader.fill())) return null;
    }
    const length = await reader.readU32();
    if (length > this.#maxRecord) {
      throw new LimitError(
        `Cannot read transit record: length ${length} exceeds limit ${this.#maxRecord}`,
      );
    }
    if (length < this.#opener.minLength) {
      throw new ProtocolError(`Cannot read transit record: length ${length} is too short`);
    }
    const need = this.#opener.headroom + length;
    if (this.#recvBuf.length < need) this.#recvBuf = new Uint8Array(need);
    const buf = this.#recvBuf.subarray(0, need);
    await reader.readFull(buf.subarray(this.#opener.headroom));
    // Straight into the caller's buffer when it fits: one copy less (libsodium writes the
    // plaintext there; without it the record is opened in place and copied).
    if (into !== null && length - this.#opener.minLength <= into.length) {
      return this.#opener.openInto(buf, into);
    }
    return this.#opener.open(buf);
  }

  /**
   * Reads bytes of the stream into `p`: what is left of the current record, else the next
   * record. Null at end of file (an empty record, or the connection closed between records).
   */
  async read(p: Uint8Array): Promise<number | null> {
    if (this.#closed) throw closedError();
    if (this.#plain.length === 0) {
      if (this.#eof) return null;
      if (p.length === 0) return 0;
      const record = await this.#nextRecord(p);
      if (typeof record === "number" && record > 0) return record;
      if (record === null || typeof record === "number" || record.length === 0) {
        this.#eof = true;
        return null;
      }
      this.#plain = record;
    }
    const n = Math.min(p.length, this.#plain.length);
    p.set(this.#plain.subarray(0, n));
    this.#plain = this.#plain.subarray(n);
    return n;
  }

  /**
   * The next whole record (a fresh array), or null when the connection closed between
   * records. Throws when part of a record is still unread by {@linkcode read}.
   */
  async receiveRecord(): Promise<Uint8Array | null> {
    if (this.#plain.length > 0) {
      throw new ProtocolError("Cannot receive a record: part of the last one is still unread");
    }
    const record = await this.#nextRecord(null) as Uint8Array | null;
    return record === null ? null : record.slice();
  }

  /**
   * Seals up to a few records' worth of `p` and queues them; resolves to how many bytes were
   * taken once the queue is short enough (`Deno.Conn.write` semantics: may take part of `p`).
   */
  write(p: Uint8Array): Promise<number> {
    return this.#writer.write(p);
  }

  /**
   * Sends `record` as exactly one record (after anything written before) and resolves once
   * it reached the socket. Throws {@linkcode LimitError} above `maxRecordBytes`.
   */
  sendRecord(record: Uint8Array): Promise<void> {
    if (record.length + this.#opener.minLength > this.#maxRecord) {
      return Promise.reject(
        new LimitError(
          `Cannot send a record of ${record.length} bytes: limit is ${this.#maxRecord}`,
        ),
      );
    }
    return this.#writer.sendRecord(record);
  }

  /** Resolves once everything written so far reached the socket. */
  flush(): Promise<void> {
    return this.#writer.flush();
  }

  /**
   * Ends this direction: flushes, then sends the end-of-stream record (an empty record), after
   * which the peer's {@linkcode read} returns null. Reading goes on.
   */
  closeWrite(): Promise<void> {
    return this.#writer.end();
  }

  /**
   * Closes the connection: pending and later reads fail at once; records already queued still
   * go out (at most {@linkcode RECORD_LIMITS}`.closeFlushMs` more), then the socket closes.
   */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#failRead?.(closedError());
    this.#writer.close();
  }

  /** Closes, as {@linkcode close}. */
  [Symbol.dispose](): void {
    this.close();
  }

  /** Sets TCP_NODELAY on the socket (records are already gathered; on by default). */
  setNoDelay(noDelay?: boolean): void {
    this.#conn.setNoDelay(noDelay);
  }

  /** Sets SO_KEEPALIVE on the socket. */
  setKeepAlive(keepAlive?: boolean): void {
    this.#conn.setKeepAlive(keepAlive);
  }

  /** Keeps the process alive while a read is pending (the default). */
  ref(): void {
    this.#conn.ref();
  }

  /** Lets the process exit while a read is pending. */
  unref(): void {
    this.#conn.unref();
  }

  /** The stream's bytes as a `ReadableStream` (made on first use). */
  get readable(): ReadableStream<Uint8Array<ArrayBuffer>> {
    this.#readable ??= new ReadableStream<Uint8Array<ArrayBuffer>>({
      pull: async (controller) => {
        const buf = new Uint8Array(64 * 1024);
        const n = await this.read(buf);
        if (n === null) controller.close();
        else controller.enqueue(buf.subarray(0, n));
      },
      cancel: () => this.close(),
    });
    return this.#readable;
  }

  /** A `WritableStream` into the stream; closing it is {@linkcode closeWrite} (made on first use). */
  get writable(): WritableStream<Uint8Array<ArrayBufferLike>> {
    this.#writable ??= new WritableStream<Uint8Array<ArrayBufferLike>>({
      write: (chunk) => writeAll(this, chunk),
      close: () => this.closeWrite(),
      abort: () => this.close(),
    });
    return this.#writable;
  }
}
