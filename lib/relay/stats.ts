/**
 * The relay's counters and the one line `--stats` (and the final shutdown line) prints them
 * as.
 *
 * @module
 */

import type { CloseKind } from "../net/close_reason.ts";
import type { RefusalKind } from "./access.ts";
import type { ClusterStats } from "./cluster/cluster.ts";

/** Counters of a running relay. */
export interface RelayStats {
  /** Clients connected now (not counting those being disconnected). */
  clients: number;
  /** Clients accepted since start. */
  accepted: number;
  /** Connections refused because the relay was full. */
  refused: number;
  /** Clients connected over TLS now. */
  tlsClients: number;
  /**
   * Connections turned away before they were served, by reason (address rules,
   * `--max-per-ip`, `--tls-only`, failed TLS handshakes: `access.ts`).
   */
  turnedAway: Record<RefusalKind, number>;
  /** Messages (lines or frames) received from clients. */
  messagesIn: number;
  /** Message copies queued to recipients. */
  delivered: number;
  /** Message copies dropped for slow clients (policy "drop"). */
  dropped: number;
  /** Clients disconnected as slow consumers (stuck past the cap, or write timeout). */
  slowDisconnects: number;
  /** Senders held back right now by a recipient above high water. */
  pausedSenders: number;
  /** Total time senders spent held back, in ms (summed over senders). */
  pausedMs: number;
  /** Clients stuck right now (their socket took no byte for the stall time). */
  stuckClients: number;
  /** Times a client became stuck. */
  stalls: number;
  /** Clients that ended, by close reason. */
  closes: Record<CloseKind, number>;
  /** Bytes read from clients. */
  bytesIn: number;
  /** Bytes written to clients. */
  bytesOut: number;
  /** The node's cluster state and counters, with `--cluster`. */
  cluster?: ClusterStats;
}

/**
 * The counters as one log line.
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert/strict";
 * import { formatRelayStats, type RelayStats } from "./stats.ts";
 * const closes = { "peer-closed": 0, "slow-bytes": 0, "slow-stall": 0, "write-timeout": 0,
 *   idle: 0, heartbeat: 0, shutdown: 0, error: 0 };
 * const turnedAway = { denied: 0, "per-ip": 0, plaintext: 0, "tls-off": 0, handshake: 0 };
 * const stats: RelayStats = { clients: 1, accepted: 1, refused: 0, tlsClients: 0, turnedAway,
 *   messagesIn: 2, delivered: 0, dropped: 0, slowDisconnects: 0, pausedSenders: 0,
 *   pausedMs: 12.4, stuckClients: 0, stalls: 0, closes, bytesIn: 8, bytesOut: 90 };
 * assert.match(formatRelayStats(stats), /^clients 1 \(accepted 1, refused 0\), messages in 2, /);
 * assert.match(formatRelayStats(stats), /paused 12 ms in all.*bytes in 8, out 90$/);
 * const busy = { ...stats, tlsClients: 1, turnedAway: { ...turnedAway, denied: 3 } };
 * assert.match(formatRelayStats(busy), /^clients 1, tls 1 \(accepted 1, refused 0, turned away denied 3\), /);
 * ```
 */
export function formatRelayStats(s: RelayStats): string {
  const away = Object.entries(s.turnedAway).filter(([, n]) => n > 0);
  const turnedAway = away.length > 0
    ? `, turned away ${away.map(([kind, n]) => `${kind} ${n}`).join(" ")}`
    : "";
  const tls = s.tlsClients > 0 ? `, tls ${s.tlsClients}` : "";
  return `clients ${s.clients}${tls} (accepted ${s.accepted}, refused ${s.refused}` +
    `${turnedAway}), ` +
    `messages in ${s.messagesIn}, paused senders ${s.pausedSenders} ` +
    `(paused ${Math.round(s.pausedMs)} ms in all), stuck clients ${s.stuckClients} ` +
    `(stalls ${s.stalls}), delivered ${s.delivered}, dropped ${s.dropped}, ` +
    `slow disconnects ${s.slowDisconnects}, bytes in ${s.bytesIn}, out ${s.bytesOut}` +
    (s.cluster ? `, ${formatClusterStats(s.cluster)}` : "");
}

/**
 * The cluster part of a stats line: node, bus state, other nodes and the envelope counters.
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert/strict";
 * import { formatClusterStats } from "./stats.ts";
 * const line = formatClusterStats({
 *   nodeId: "a", bus: "up", url: "nats://127.0.0.1:4222", nodes: 2, published: 5,
 *   notPublished: 0, remoteIn: 9, missed: 0, malformed: 0,
 * });
 * assert.equal(line, "cluster node a, bus up (nats://127.0.0.1:4222), nodes 2, published 5, " +
 *   "not published 0, remote in 9, missed 0, malformed 0");
 * ```
 */
export function formatClusterStats(c: ClusterStats): string {
  return `cluster node ${c.nodeId}, bus ${c.bus} (${c.url}), nodes ${c.nodes}, ` +
    `published ${c.published}, not published ${c.notPublished}, remote in ${c.remoteIn}, ` +
    `missed ${c.missed}, malformed ${c.malformed}`;
}
