/**
 * Typed errors shared by every sockit tool.
 *
 * A {@linkcode ProtocolError} means a peer sent something that breaks the wire format; a
 * {@linkcode LimitError} means a peer asked for more than a configured bound; a
 * {@linkcode TimeoutError} means a deadline passed. Servers close the one connection that
 * raised them and keep serving everyone else.
 *
 * @module
 */

/**
 * A peer sent bytes that do not follow the protocol.
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert/strict";
 * import { ProtocolError } from "./errors.ts";
 * const err = new ProtocolError("Cannot read frame: unknown type 0x7f");
 * assert.equal(err.name, "ProtocolError");
 * ```
 */
export class ProtocolError extends Error {
  /** Creates a protocol error with a message that says what failed. */
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "ProtocolError";
  }
}

/**
 * A length or count read off the wire (or asked for by a peer) exceeds its configured limit.
 * Raised before anything is allocated for it.
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert/strict";
 * import { LimitError } from "./errors.ts";
 * const err = new LimitError("Cannot read line: longer than 65536 bytes");
 * assert.ok(err instanceof Error);
 * assert.equal(err.name, "LimitError");
 * ```
 */
export class LimitError extends ProtocolError {
  /** Creates a limit error with a message naming the limit. */
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "LimitError";
  }
}

/**
 * The peer speaks the sockit framing but a different protocol or version.
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert/strict";
 * import { VersionMismatchError } from "./errors.ts";
 * const err = new VersionMismatchError("Cannot talk to peer: it speaks relay v2, we speak v1");
 * assert.equal(err.name, "VersionMismatchError");
 * ```
 */
export class VersionMismatchError extends ProtocolError {
  /** Creates a version mismatch error. */
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "VersionMismatchError";
  }
}

/**
 * A deadline passed before an operation finished.
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert/strict";
 * import { TimeoutError } from "./errors.ts";
 * const err = new TimeoutError("Timed out after 500 ms waiting for the handshake");
 * assert.equal(err.name, "TimeoutError");
 * ```
 */
export class TimeoutError extends Error {
  /** Creates a timeout error. */
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "TimeoutError";
  }
}

/**
 * The peer closed the connection in the middle of a message.
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert/strict";
 * import { UnexpectedEofError } from "./errors.ts";
 * const err = new UnexpectedEofError("Cannot read 5 bytes: connection closed after 2");
 * assert.ok(err instanceof Error);
 * assert.equal(err.name, "UnexpectedEofError");
 * ```
 */
export class UnexpectedEofError extends ProtocolError {
  /** Creates an unexpected EOF error. */
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "UnexpectedEofError";
  }
}

/**
 * A command-line argument or address given by the user is malformed. The CLI prints the
 * message with the command's usage and exits with status 2.
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert/strict";
 * import { UsageError } from "./errors.ts";
 * const err = new UsageError("Cannot parse address 'x': missing port");
 * assert.equal(err.name, "UsageError");
 * ```
 */
export class UsageError extends Error {
  /** Creates a usage error. */
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "UsageError";
  }
}

/**
 * A socket could not be bound or connected; the message names the address and the cause.
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert/strict";
 * import { SocketError } from "./errors.ts";
 * const err = new SocketError("Cannot listen on 127.0.0.1:80: Permission denied");
 * assert.equal(err.name, "SocketError");
 * ```
 */
export class SocketError extends Error {
  /** Creates a socket error; pass the system error as `cause`. */
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "SocketError";
  }
}
