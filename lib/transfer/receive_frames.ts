/**
 * Reading the sender's frames inside one file: the control frames among its data (End, Abort,
 * or an Error that ends the session), the SHA-256 its End carries, and its Start.
 *
 * @module
 */

import type { BufferedReader } from "../net/buffered_reader.ts";
import { ProtocolError, UnexpectedEofError } from "../net/errors.ts";
import { ControlFrame, readFrame } from "../net/frame.ts";
import { quote } from "../log.ts";
import {
  decodeEnd,
  decodeStart,
  frameName,
  MAX_CONTROL_PAYLOAD,
  type Offer,
  TransferFrame,
} from "./protocol.ts";

/** A pipelined file's bytes and the SHA-256 its End carried (null without Verify). */
export interface PipelinedContent {
  /** The file's data. */
  data: Uint8Array;
  /** The sender's SHA-256 of it, or null when the offer had no Verify flag. */
  digest: Uint8Array | null;
}

/**
 * Reads the payload of a control frame inside a file's data (End, Abort, Error), bounded by
 * {@linkcode MAX_CONTROL_PAYLOAD}. An Error frame from the sender ends the session here
 * ({@linkcode ProtocolError}).
 */
export async function readControlPayload(
  reader: BufferedReader,
  header: { type: number; length: number },
): Promise<Uint8Array> {
  if (header.length > MAX_CONTROL_PAYLOAD) {
    throw new ProtocolError(`Cannot read ${frameName(header.type)}: ${header.length} bytes`);
  }
  const payload = await reader.readExact(header.length, MAX_CONTROL_PAYLOAD);
  if (header.type === ControlFrame.Error) {
    throw new ProtocolError(`Sender ended the session: ${quote(payload)}`);
  }
  return payload;
}

/**
 * Decodes a file's End payload: its SHA-256, or null without one. Throws
 * {@linkcode ProtocolError} when it carries a hash the offer did not promise, or lacks one the
 * offer promised.
 */
export function endDigest(offer: Offer, payload: Uint8Array): Uint8Array | null {
  const digest = decodeEnd(payload);
  if ((digest !== null) !== offer.verify) {
    throw new ProtocolError(
      `Cannot finish ${quote(offer.path)}: End ${
        digest ? "carries" : "lacks"
      } a SHA-256 the offer ${offer.verify ? "promised" : "did not promise"}`,
    );
  }
  return digest;
}

/**
 * Reads the sender's Start for a streamed file (skipping keepalives); it must be 0 or
 * `offset`, the length the receiver offered to resume at.
 */
export async function readStart(
  reader: BufferedReader,
  offer: Offer,
  offset: number,
): Promise<number> {
  let frame = await readFrame(reader, { maxPayload: MAX_CONTROL_PAYLOAD });
  // Keepalives while the sender hashes its copy of the prefix.
  while (frame?.type === ControlFrame.Ping) {
    frame = await readFrame(reader, { maxPayload: MAX_CONTROL_PAYLOAD });
  }
  if (frame === null) {
    throw new UnexpectedEofError(`Sender closed before sending ${quote(offer.path)}`);
  }
  if (frame.type === ControlFrame.Error) {
    throw new ProtocolError(`Sender ended the session: ${quote(frame.payload)}`);
  }
  if (frame.type !== TransferFrame.Start) {
    throw new ProtocolError(
      `Cannot receive ${quote(offer.path)}: got ${frameName(frame.type)} instead of Start`,
    );
  }
  const start = decodeStart(frame.payload);
  if (start !== 0 && start !== offset) {
    throw new ProtocolError(
      `Cannot receive ${quote(offer.path)}: Start at ${start}, offered ${offset}`,
    );
  }
  return start;
}

/** The error for a sender that closed the connection after `received` bytes of `offer`. */
export function closedDuring(offer: Offer, received: string): UnexpectedEofError {
  return new UnexpectedEofError(
    `Sender closed the connection after ${received} of ${quote(offer.path)}`,
  );
}

/** The error for a Data frame that goes past the offered size. */
export function tooMuchData(offer: Offer): ProtocolError {
  return new ProtocolError(
    `Cannot receive ${quote(offer.path)}: more data than the ${offer.size} bytes offered`,
  );
}
