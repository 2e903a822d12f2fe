/**
 * The udp-ping probe: what each datagram carries so that the reply alone tells which probe it
 * answers, when it was sent, and whether it came back whole and unchanged.
 *
 * Wire format (big-endian), {@linkcode PROBE_HEADER_SIZE} bytes then filler:
 *
 * ```
 * 0   magic    u32  "SKPG"
 * 4   seq      u32  sequence number, from 0
 * 8   session  u32  random per run: replies to an earlier run are told apart
 * 12  sentAt   f64  sender's monotonic clock (performance.now()) in ms
 * 20  length   u32  the probe's full size in bytes
 * 24  check    u32  CRC-32 of the whole probe with this field taken as zero
 * 28  filler   (seq + i) & 0xff for byte i, up to length
 * ```
 *
 * A reply shorter than its `length` field is truncated; one whose magic, length or check do
 * not match is corrupted.
 *
 * @module
 */

import { crc32 } from "./crc32.ts";

/** "SKPG": the first four bytes of every probe. */
export const PROBE_MAGIC = 0x534b5047;
/** Bytes before the filler; the smallest probe. */
export const PROBE_HEADER_SIZE = 28;

/** Field offsets of the probe header. */
export const ProbeOffset = {
  Magic: 0,
  Seq: 4,
  Session: 8,
  SentAt: 12,
  Length: 20,
  Check: 24,
} as const;

const ZERO4 = new Uint8Array(4);

/** The header fields of one probe. */
export interface Probe {
  /** Sequence number. */
  seq: number;
  /** Session id of the run. */
  session: number;
  /** Send time on the sender's monotonic clock, in ms. */
  sentAt: number;
  /** Full size in bytes, at least {@linkcode PROBE_HEADER_SIZE}. */
  length: number;
}

/** What a received datagram turned out to be. */
export type ProbeCheck =
  | { kind: "ok"; probe: Probe }
  | { kind: "truncated"; seq?: number; expected?: number }
  | { kind: "corrupted"; reason: string };

function checksum(data: Uint8Array): number {
  let c = crc32(data.subarray(0, ProbeOffset.Check));
  c = crc32(ZERO4, c);
  return crc32(data.subarray(ProbeOffset.Check + 4), c);
}

/**
 * Writes `probe` into the start of `buf` (which must hold `probe.length` bytes) and returns
 * that view.
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert/strict";
 * import { readProbe, writeProbe } from "./probe.ts";
 * const data = writeProbe(new Uint8Array(64), { seq: 3, session: 9, sentAt: 1.5, length: 64 });
 * const check = readProbe(data);
 * assert.deepEqual(check, { kind: "ok", probe: { seq: 3, session: 9, sentAt: 1.5, length: 64 } });
 * ```
 */
export function writeProbe(buf: Uint8Array, probe: Probe): Uint8Array {
  if (probe.length < PROBE_HEADER_SIZE || probe.length > buf.length) {
    throw new RangeError(
      `Cannot write probe of ${probe.length} bytes: must be ${PROBE_HEADER_SIZE} to ${buf.length}`,
    );
  }
  const data = buf.subarray(0, probe.length);
  const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  view.setUint32(ProbeOffset.Magic, PROBE_MAGIC);
  view.setUint32(ProbeOffset.Seq, probe.seq >>> 0);
  view.setUint32(ProbeOffset.Session, probe.session >>> 0);
  view.setFloat64(ProbeOffset.SentAt, probe.sentAt);
  view.setUint32(ProbeOffset.Length, probe.length);
  const s = probe.seq & 0xff;
  for (let i = PROBE_HEADER_SIZE; i < data.length; i++) data[i] = (s + i) & 0xff;
  view.setUint32(ProbeOffset.Check, checksum(data));
  return data;
}

/**
 * Checks a received datagram: a whole, unchanged probe, a truncated one (with its sequence
 * number when the header survived), or a corrupted one.
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert/strict";
 * import { readProbe, writeProbe } from "./probe.ts";
 * const data = writeProbe(new Uint8Array(64), { seq: 1, session: 1, sentAt: 0, length: 64 });
 * assert.deepEqual(readProbe(data.subarray(0, 40)), { kind: "truncated", seq: 1, expected: 64 });
 * data[50] ^= 1;
 * assert.deepEqual(readProbe(data), { kind: "corrupted", reason: "checksum mismatch" });
 * ```
 */
export function readProbe(data: Uint8Array): ProbeCheck {
  const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  if (data.length < PROBE_HEADER_SIZE) {
    // Whatever of the magic arrived must match for this to be a cut-off probe.
    for (let i = 0; i < Math.min(4, data.length); i++) {
      if (data[i] !== ((PROBE_MAGIC >>> (24 - 8 * i)) & 0xff)) {
        return { kind: "corrupted", reason: `${data.length}-byte datagram is not a probe` };
      }
    }
    const seq = data.length >= 8 ? view.getUint32(ProbeOffset.Seq) : undefined;
    const expected = data.length >= 24 ? view.getUint32(ProbeOffset.Length) : undefined;
    return { kind: "truncated", seq, expected };
  }
  if (view.getUint32(ProbeOffset.Magic) !== PROBE_MAGIC) {
    return { kind: "corrupted", reason: "bad magic" };
  }
  const length = view.getUint32(ProbeOffset.Length);
  const seq = view.getUint32(ProbeOffset.Seq);
  if (length > data.length) return { kind: "truncated", seq, expected: length };
  if (length < data.length) {
    return { kind: "corrupted", reason: `${data.length} bytes, probe says ${length}` };
  }
  if (view.getUint32(ProbeOffset.Check) !== checksum(data)) {
    return { kind: "corrupted", reason: "checksum mismatch" };
  }
  return {
    kind: "ok",
    probe: {
      seq,
      session: view.getUint32(ProbeOffset.Session),
      sentAt: view.getFloat64(ProbeOffset.SentAt),
      length,
    },
  };
}
