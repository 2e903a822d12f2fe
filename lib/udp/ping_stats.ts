/**
 * What udp-ping counts and how it sums it up: loss, duplicates, reordering, late, corrupted
 * and truncated replies, replies from the wrong address, and RTT statistics.
 *
 * Definitions:
 * - received: probes answered once, whole, from the target, within the timeout;
 * - loss %: `(sent - received) / sent`; late, corrupted and truncated replies count as lost;
 * - duplicate: another whole reply to a probe already answered;
 * - reordered: a first reply whose sequence number is below one already answered;
 * - late: a whole reply that came after the timeout;
 * - mdev: the standard deviation of RTTs (ping's `mdev`);
 * - p50/p90/p99: nearest-rank percentiles of RTTs;
 * - jitter: the mean absolute difference between consecutive RTTs, in arrival order.
 *
 * @module
 */

/** Limits of {@linkcode PingStats}. */
export const PING_STATS_LIMITS = {
  /** RTT samples kept for percentiles; beyond, a uniform reservoir sample of that size. */
  maxRttSamples: 1_000_000,
} as const;

/** RTT statistics in ms. */
export interface RttSummary {
  /** Fastest. */
  min: number;
  /** Mean. */
  avg: number;
  /** Slowest. */
  max: number;
  /** Standard deviation. */
  mdev: number;
  /** Median. */
  p50: number;
  /** 90th percentile. */
  p90: number;
  /** 99th percentile. */
  p99: number;
  /** Mean absolute difference of consecutive RTTs. */
  jitter: number;
}

/** The outcome of a udp-ping run (the `--json` object). */
export interface PingSummary {
  /** Target as `HOST:PORT`. */
  target: string;
  /** Probe size in bytes. */
  size: number;
  /** Probes sent. */
  sent: number;
  /** Probes answered (see the module's definitions). */
  received: number;
  /** Lost percentage, 0-100. */
  lossPercent: number;
  /** Extra copies of answered probes. */
  duplicates: number;
  /** First replies that came after a higher sequence number's. */
  reordered: number;
  /** Whole replies after the timeout. */
  late: number;
  /** Replies whose check, magic or length did not match. */
  corrupted: number;
  /** Replies shorter than the probe. */
  truncated: number;
  /** Datagrams from an address other than the target. */
  unexpectedSource: number;
  /** Whole probes from another run (another session id) or never sent. */
  stray: number;
  /** RTT statistics in ms, or null without replies. */
  rtt: RttSummary | null;
  /** From the first probe sent to the end, in ms. */
  durationMs: number;
  /** Achieved send rate, probes per second (null with fewer than two probes). */
  sentPps: number | null;
  /** Achieved reply rate over the same span (null with fewer than two probes). */
  receivedPps: number | null;
  /**
   * Whether the target's port is closed, checked only when nothing came back: true when the
   * target is a loopback address and no UDP socket is bound to that port (what an ICMP port
   * unreachable would say; Deno's UDP sockets are unconnected, so that ICMP message is never
   * seen), false when a socket is bound there or replies came, null when it cannot be told
   * (an address that is not loopback, or a port this process may not bind).
   */
  portClosed: boolean | null;
}

/** Flags of one reply. */
export interface ReplyFlags {
  /** Already answered before. */
  duplicate: boolean;
  /** A higher sequence number was answered first. */
  reordered: boolean;
  /** Came after the timeout. */
  late: boolean;
}

/**
 * Accumulates a run's counts and RTTs.
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert/strict";
 * import { PingStats } from "./ping_stats.ts";
 * const stats = new PingStats({ timeoutMs: 1000 });
 * stats.sent = 2;
 * stats.reply(1, 0.5);
 * stats.reply(0, 0.7); // reordered
 * stats.reply(0, 0.7); // duplicate
 * const s = stats.summary({ target: "127.0.0.1:7", size: 64, durationMs: 10, sendSpanMs: 5 });
 * assert.equal(s.received, 2);
 * assert.equal(s.reordered, 1);
 * assert.equal(s.duplicates, 1);
 * ```
 */
export class PingStats {
  /** Probes sent; the sender increments it. */
  sent = 0;
  /** Counted replies. */
  received = 0;
  /** See {@linkcode PingSummary.duplicates}. */
  duplicates = 0;
  /** See {@linkcode PingSummary.reordered}. */
  reordered = 0;
  /** See {@linkcode PingSummary.late}. */
  late = 0;
  /** See {@linkcode PingSummary.corrupted}. */
  corrupted = 0;
  /** See {@linkcode PingSummary.truncated}. */
  truncated = 0;
  /** See {@linkcode PingSummary.unexpectedSource}. */
  unexpectedSource = 0;
  /** See {@linkcode PingSummary.stray}. */
  stray = 0;

  #timeoutMs: number;
  #seen = new Uint8Array(1024);
  #highest = -1;
  #samples: number[] = [];
  #rttCount = 0;
  #sum = 0;
  #sumSq = 0;
  #min = Infinity;
  #max = -Infinity;
  #prevRtt: number | undefined;
  #jitterSum = 0;
  #jitterCount = 0;

  /** Creates an empty accumulator; replies slower than `timeoutMs` count as late. */
  constructor(options: { timeoutMs: number }) {
    this.#timeoutMs = options.timeoutMs;
  }

  /** True when probe `seq` has had a whole reply (counted, late or not). */
  answered(seq: number): boolean {
    const i = seq >>> 3;
    return i < this.#seen.length && (this.#seen[i] & (1 << (seq & 7))) !== 0;
  }

  #mark(seq: number): void {
    const i = seq >>> 3;
    if (i >= this.#seen.length) {
      const grown = new Uint8Array(Math.max(i + 1, this.#seen.length * 2));
      grown.set(this.#seen);
      this.#seen = grown;
    }
    this.#seen[i] |= 1 << (seq & 7);
  }

  /** Records a whole reply to probe `seq` (which was sent) after `rttMs`; returns its flags. */
  reply(seq: number, rttMs: number): ReplyFlags {
    if (this.answered(seq)) {
      this.duplicates++;
      return { duplicate: true, reordered: false, late: false };
    }
    this.#mark(seq);
    if (rttMs > this.#timeoutMs) {
      this.late++;
      return { duplicate: false, reordered: false, late: true };
    }
    const reordered = seq < this.#highest;
    if (reordered) this.reordered++;
    else this.#highest = seq;
    this.received++;
    this.#addRtt(rttMs);
    return { duplicate: false, reordered, late: false };
  }

  #addRtt(rtt: number): void {
    this.#rttCount++;
    this.#sum += rtt;
    this.#sumSq += rtt * rtt;
    if (rtt < this.#min) this.#min = rtt;
    if (rtt > this.#max) this.#max = rtt;
    if (this.#prevRtt !== undefined) {
      this.#jitterSum += Math.abs(rtt - this.#prevRtt);
      this.#jitterCount++;
    }
    this.#prevRtt = rtt;
    const cap = PING_STATS_LIMITS.maxRttSamples;
    if (this.#samples.length < cap) {
      this.#samples.push(rtt);
    } else {
      const j = Math.floor(Math.random() * this.#rttCount);
      if (j < cap) this.#samples[j] = rtt;
    }
  }

  /** The RTT statistics so far, or null without replies. */
  rtt(): RttSummary | null {
    const n = this.#rttCount;
    if (n === 0) return null;
    const sorted = Float64Array.from(this.#samples).sort();
    const pct = (p: number) => sorted[Math.max(0, Math.ceil(p / 100 * sorted.length) - 1)];
    const avg = this.#sum / n;
    return {
      min: this.#min,
      avg,
      max: this.#max,
      mdev: Math.sqrt(Math.max(0, this.#sumSq / n - avg * avg)),
      p50: pct(50),
      p90: pct(90),
      p99: pct(99),
      jitter: this.#jitterCount ? this.#jitterSum / this.#jitterCount : 0,
    };
  }

  /**
   * The summary. `sendSpanMs` is the time from the first probe to the last, for the achieved
   * rates.
   */
  summary(
    run: {
      target: string;
      size: number;
      durationMs: number;
      sendSpanMs: number;
      portClosed?: boolean | null;
    },
  ): PingSummary {
    const sentPps = this.sent >= 2 && run.sendSpanMs > 0
      ? (this.sent - 1) * 1000 / run.sendSpanMs
      : null;
    return {
      target: run.target,
      size: run.size,
      sent: this.sent,
      received: this.received,
      lossPercent: this.sent ? (this.sent - this.received) * 100 / this.sent : 0,
      duplicates: this.duplicates,
      reordered: this.reordered,
      late: this.late,
      corrupted: this.corrupted,
      truncated: this.truncated,
      unexpectedSource: this.unexpectedSource,
      stray: this.stray,
      rtt: this.rtt(),
      durationMs: run.durationMs,
      sentPps,
      // The ratio first: with every probe answered it is exactly 1, and the rates are equal.
      receivedPps: sentPps === null ? null : sentPps * (this.received / this.sent),
      portClosed: this.received > 0 ? false : run.portClosed ?? null,
    };
  }
}

const ms = (n: number) => n.toFixed(3);

/** What a run that heard nothing back from the target can say about why. */
function noReplyLine(s: PingSummary): string {
  if (s.portClosed === true) {
    return `port unreachable: no UDP socket on this machine is bound to ${s.target}`;
  }
  if (s.portClosed === false) {
    return `no reply: a UDP socket is bound to ${s.target} but did not answer (not an echo server?)`;
  }
  // Deno's UDP sockets are not connected: the kernel keeps ICMP errors to itself.
  return "no reply: a closed port, a firewall and a stopped server look the same from here " +
    "(Deno's UDP sockets do not see ICMP port unreachable)";
}

/**
 * The summary as ping prints it: a header, the counts, RTTs and rates.
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert/strict";
 * import { formatPingSummary, PingStats } from "./ping_stats.ts";
 * const stats = new PingStats({ timeoutMs: 1000 });
 * stats.sent = 1;
 * stats.reply(0, 0.25);
 * const text = formatPingSummary(
 *   stats.summary({ target: "127.0.0.1:7", size: 64, durationMs: 1, sendSpanMs: 0 }),
 * );
 * assert.match(text, /^1 sent, 1 received, 0% loss, /m);
 * ```
 */
export function formatPingSummary(s: PingSummary): string {
  const loss = Number.isInteger(s.lossPercent) ? String(s.lossPercent) : s.lossPercent.toFixed(2);
  const lines = [
    `--- ${s.target} udp-ping statistics ---`,
    `${s.sent} sent, ${s.received} received, ${loss}% loss, ` +
    `${s.duplicates} duplicates, ${s.reordered} reordered, ${s.late} late, ` +
    `${s.corrupted} corrupted, ${s.truncated} truncated, ` +
    `${s.unexpectedSource} from unexpected source, time ${Math.round(s.durationMs)} ms`,
  ];
  if (s.stray) lines.push(`${s.stray} stray replies (another run's probes)`);
  if (s.rtt) {
    const r = s.rtt;
    lines.push(
      `rtt min/avg/max/mdev = ${ms(r.min)}/${ms(r.avg)}/${ms(r.max)}/${ms(r.mdev)} ms`,
      `rtt p50/p90/p99 = ${ms(r.p50)}/${ms(r.p90)}/${ms(r.p99)} ms, jitter ${ms(r.jitter)} ms`,
    );
  }
  if (s.sentPps !== null && s.receivedPps !== null) {
    lines.push(
      `rate ${s.sentPps.toFixed(0)} pps sent, ${s.receivedPps.toFixed(0)} pps received`,
    );
  }
  const heard = s.received + s.late + s.corrupted + s.truncated + s.stray;
  if (s.sent > 0 && heard === 0) lines.push(noReplyLine(s));
  return lines.join("\n");
}
