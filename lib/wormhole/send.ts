/**
 * Sending with a code: the sender's side of the Wormhole file-transfer application, once the
 * key is confirmed ({@linkcode Wormhole.confirm}).
 *
 * The sender sends its transit hints and its offer, waits for the receiver's answer (and
 * hints), connects the transit stream and closes the mailbox. What flows through the stream
 * depends on the receiver:
 *
 * - another sockit (it announced sockit's transfer protocol in `app_versions`): sockit's own
 *   protocol ({@linkcode sendEntries}, as in direct mode): each file verified, folders entry by
 *   entry, and a rerun resumes;
 * - any other client: the file's bytes, or the folder as one zip (`zip_writer.ts`), then the
 *   receiver's `{"ack": "ok", "sha256": HEX}` record, which must match the SHA-256 of what
 *   was sent.
 *
 * A text needs no transit: `{"offer": {"message": ...}}`, then its `message_ack`.
 *
 * @module
 */

import { createHash } from "node:crypto";
import { withTimeout } from "../net/deadline.ts";
import { ProtocolError } from "../net/errors.ts";
import { writeAll } from "../net/write_all.ts";
import { quote } from "../log.ts";
import type { EntryResult, SendReporter, SendSummary } from "../transfer/progress.ts";
import { EntryKind, TRANSFER_VERSION } from "../transfer/protocol.ts";
import { sendEntries } from "../transfer/sender.ts";
import { TransferRefusedError } from "../transfer/send_errors.ts";
import type { WalkResult } from "../transfer/walk.ts";
import {
  encodeOffer,
  type Offer,
  parseTransferMessage,
  peerSockitVersion,
  type SockitAppVersion,
} from "./offer.ts";
import { type RecordCipherName, type Transit, type TransitConnection } from "./transit.ts";
import { RECORD_LIMITS } from "./transit_records.ts";
import type { Wormhole } from "./wormhole.ts";
import { connectTransit, PeerGaveUpError } from "./peer_transit.ts";
import { planFolder, writeZip, type ZipPlan } from "./zip_writer.ts";

/**
 * How fast a receiver is assumed to store what it got, at the least, when waiting for its
 * acknowledgement: 10 MB/s (bytes per ms), on top of `ackTimeoutMs`.
 */
export const ACK_WAIT_BYTES_PER_MS = 10_000;

/** What to send: a text, or the files and folders `collectEntries` found. */
export type CodeSendSource = { text: string } | { walk: WalkResult; paths: string[] };

/** How the sending went. */
export interface CodeSendResult {
  /** "sockit" when the receiver spoke sockit's protocol, else "wormhole". */
  peer: "sockit" | "wormhole";
  /** The transfer summary (files and folders; a text has none). */
  summary?: SendSummary;
  /** How the transit connection was made (`direct ...`, `relay ...`). */
  route?: string;
}

/** Options of {@linkcode sendThroughWormhole}. */
export interface CodeSendOptions {
  /** Makes our transit end (listening, with the relays chosen by the caller). */
  openTransit: () => Transit;
  /** Longest wait for the transit connection, in ms. */
  transitTimeoutMs: number;
  /** Longest wait for a plain Wormhole receiver's final ack, in ms. */
  ackTimeoutMs: number;
  /** Reports the files' progress. */
  reporter?: SendReporter;
  /** Verify files by SHA-256 between two sockit peers. @default {true} */
  verify?: boolean;
  /** Ends the waits and the transfer. */
  signal?: AbortSignal;
  /** Record ciphers we can use with another sockit, best first. */
  ciphers: readonly RecordCipherName[];
}

/** The first cipher of ours that the peer also lists ("secretbox" is everybody's). */
export function chooseCipher(
  ours: readonly RecordCipherName[],
  peer: SockitAppVersion,
): RecordCipherName {
  return ours.find((c) => peer.ciphers.includes(c)) ?? "secretbox";
}

/** Waits for the answer, feeding the transit hints that come before it to `transit`. */
async function awaitAnswer(
  wormhole: Wormhole,
  transit: Transit | undefined,
  signal: AbortSignal | undefined,
): Promise<"message_ack" | "file_ack"> {
  while (true) {
    const message = parseTransferMessage(await wormhole.receive({ signal }));
    if (message.error !== undefined) throw new PeerGaveUpError(message.error, "receiver");
    if (message.transit && transit) transit.addPeerHints(message.transit.hints);
    if (message.answer) return message.answer;
  }
}

/** What a plain Wormhole receiver gets: one file, or one folder as a zip. */
type PlainPlan =
  | { kind: "file"; source: string; name: string; size: number }
  | { kind: "dir"; name: string; zip: ZipPlan; skipped: { path: string; reason: string }[] };

async function plainPlan(source: { walk: WalkResult; paths: string[] }): Promise<PlainPlan> {
  const tops = source.walk.entries.filter((e) => !e.path.includes("/"));
  if (tops.length !== 1) {
    throw new TransferRefusedError(
      "the receiver is not sockit: its client takes one file or one folder per code " +
        `(this send has ${tops.length} top-level entries)`,
    );
  }
  const top = tops[0];
  if (top.kind === EntryKind.File) {
    return { kind: "file", source: top.source, name: top.path, size: top.size };
  }
  if (top.kind !== EntryKind.Directory) {
    throw new TransferRefusedError(`${quote(top.path)} is a link: send what it points to`);
  }
  const folder = await planFolder(top.source);
  return { kind: "dir", name: folder.dirname, zip: folder.plan, skipped: folder.skipped };
}

function plainOffer(plan: PlainPlan): Offer {
  if (plan.kind === "file") return { kind: "file", filename: plan.name, filesize: plan.size };
  return {
    kind: "directory",
    mode: "zipfile/deflated",
    dirname: plan.name,
    zipsize: plan.zip.zipSize,
    numbytes: plan.zip.numBytes,
    numfiles: plan.zip.numFiles,
  };
}

/**
 * Runs the sender's side on the confirmed `wormhole`, whose peer announced `peerAppVersions`.
 * Closes the mailbox once the transit connection is up (or the text was acknowledged).
 */
export async function sendThroughWormhole(
  wormhole: Wormhole,
  peerAppVersions: unknown,
  source: CodeSendSource,
  options: CodeSendOptions,
): Promise<CodeSendResult> {
  const { signal } = options;
  const sockit = peerSockitVersion(peerAppVersions, TRANSFER_VERSION);
  const peer = sockit ? "sockit" : "wormhole";
  if ("text" in source) {
    await wormhole.send({ offer: encodeOffer({ kind: "message", message: source.text }) });
    const answer = await awaitAnswer(wormhole, undefined, signal);
    if (answer !== "message_ack") throw new ProtocolError("the text was answered with file_ack");
    await wormhole.close("happy");
    return { peer };
  }
  const plain = sockit ? undefined : await plainPlan(source);
  if (plain?.kind === "dir") {
    // A zip carries no links, and names the receiver would refuse are left out.
    for (const s of plain.skipped) options.reporter?.warn(`skipped ${s.path}: ${s.reason}`, s.path);
  }
  const cipher = sockit ? chooseCipher(options.ciphers, sockit) : "secretbox";
  await using transit = options.openTransit();
  await wormhole.send({ transit: transit.message() });
  let offer: Offer;
  if (plain) {
    offer = plainOffer(plain);
  } else {
    const files = source.walk.entries.filter((e) => e.kind === EntryKind.File);
    offer = {
      kind: "sockit",
      names: source.walk.entries.filter((e) => !e.path.includes("/")).map((e) => e.path),
      numfiles: files.length,
      numbytes: files.reduce((sum, e) => sum + e.size, 0),
      cipher,
    };
  }
  await wormhole.send({ offer: encodeOffer(offer) });
  const answer = await awaitAnswer(wormhole, transit, signal);
  if (answer !== "file_ack") throw new ProtocolError("the files were answered with message_ack");
  const stream = await connectTransit(wormhole, transit, {
    timeoutMs: options.transitTimeoutMs,
    cipher,
    // Other clients take smaller records best (see RECORD_LIMITS).
    recordPayloadBytes: plain ? RECORD_LIMITS.plainRecordPayloadBytes : undefined,
    signal,
    peer: "receiver",
  });
  await wormhole.close("happy");
  try {
    if (!plain) {
      const summary = await sendEntries(stream, source.walk, {
        verify: options.verify ?? true,
        reporter: options.reporter,
        signal,
      });
      return { peer, summary, route: stream.description };
    }
    const summary = await sendPlain(stream, plain, options);
    return { peer, summary, route: stream.description };
  } finally {
    stream.close();
  }
}

/** Streams one file or one zip to a plain Wormhole receiver and checks its ack. */
async function sendPlain(
  stream: TransitConnection,
  plan: PlainPlan,
  options: CodeSendOptions,
): Promise<SendSummary> {
  const size = plan.kind === "file" ? plan.size : plan.zip.zipSize;
  // An abort (Ctrl-C) ends a write or read that waits on a stalled peer, too.
  const abort = () => stream.close();
  options.signal?.addEventListener("abort", abort, { once: true });
  try {
    return await streamPlain(stream, plan, size, options);
  } finally {
    options.signal?.removeEventListener("abort", abort);
  }
}

async function streamPlain(
  stream: TransitConnection,
  plan: PlainPlan,
  size: number,
  options: CodeSendOptions,
): Promise<SendSummary> {
  const reporter = options.reporter;
  const started = performance.now();
  const hash = createHash("sha256");
  let sent = 0;
  const put = async (chunk: Uint8Array) => {
    hash.update(chunk);
    await writeAll(stream, chunk);
    sent += chunk.length;
    reporter?.progress(chunk.length);
  };
  reporter?.start({ entries: 1, files: 1, bytes: size });
  reporter?.fileStart(plan.name, size, 0);
  if (plan.kind === "file") {
    using file = await Deno.open(plan.source);
    const buf = new Uint8Array(1 << 20);
    while (sent < size) {
      options.signal?.throwIfAborted();
      const n = await file.read(buf.subarray(0, Math.min(buf.length, size - sent)));
      if (n === null) throw new Error(`${quote(plan.source)} shrank while it was being sent`);
      await put(buf.subarray(0, n));
    }
  } else {
    await writeZip(plan.zip, { write: put }, { signal: options.signal });
  }
  const digest = hash.digest("hex");
  // The receiver acknowledges after storing (a folder: extracting and syncing) everything.
  const ackMs = options.ackTimeoutMs + size / ACK_WAIT_BYTES_PER_MS;
  const record = await withTimeout(stream.receiveRecord(), ackMs, {
    what: "the receiver's acknowledgement",
  });
  if (record === null) throw new ProtocolError("the receiver closed without acknowledging");
  let ack: { ack?: unknown; sha256?: unknown };
  try {
    ack = JSON.parse(new TextDecoder().decode(record));
  } catch {
    throw new ProtocolError("the receiver's acknowledgement is not JSON");
  }
  if (ack.ack !== "ok") throw new PeerGaveUpError(String(ack.ack ?? "no ack"), "receiver");
  if (ack.sha256 !== undefined && ack.sha256 !== digest) {
    throw new ProtocolError(
      `the receiver's SHA-256 ${quote(String(ack.sha256))} differs from the one sent (${digest})`,
    );
  }
  const seconds = (performance.now() - started) / 1000;
  const result: EntryResult = {
    kind: plan.kind,
    path: plan.name,
    status: "confirmed",
    size,
    sent,
    resumedFrom: 0,
    verified: ack.sha256 !== undefined,
    seconds,
  };
  reporter?.entry(result);
  const summary: SendSummary = {
    entries: 1,
    confirmed: 1,
    alreadyThere: 0,
    rejected: 0,
    failed: 0,
    skipped: 0,
    bytesTotal: size,
    bytesSent: sent,
    seconds,
    ok: true,
  };
  reporter?.summary(summary);
  return summary;
}
