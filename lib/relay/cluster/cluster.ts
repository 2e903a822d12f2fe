/**
 * Rooms across relay processes: the cluster protocol a relay node runs over a {@linkcode Bus}
 * (subjects: `subjects.ts`; wire format: `envelope.ts`). The relay tells it what happens
 * locally (joins, leaves, renames, broadcasts) and asks it questions (`/who`, `/rooms`, may
 * I take this name?); it calls the relay back through a {@linkcode ClusterHost} with what
 * other nodes sent.
 *
 * **Messages.** Each local broadcast becomes one envelope on `sockit.room.<room>.msg`,
 * published without waiting. A node subscribes to a room's subjects only while it has local
 * members there, and queues what arrives to them under the relay's slow-client policy, never
 * pausing the bus for a slow client. Envelopes carry a sequence number per node, process and
 * room, counted in messages: a gap (the bus dropped envelopes, or this node was cut off for a
 * while) is told to the room as `* missed N messages from node X`. NATS keeps one
 * publisher's order per subject, so a room sees each sender's lines in order, exactly once.
 *
 * **Presence.** Joins, leaves and renames go out on `sockit.room.<room>.presence` and become
 * the same notices a local one would (`bob joined lobby`). A node keeps, for each room it is
 * in, who is there on which other node; on joining a room it asks (`.who`) and fills that in
 * silently. Every node sends a heartbeat on `sockit.nodes` every `heartbeatMs` (1 s); a node
 * not heard from for `expireMs` (3.5 s) is gone, and its members leave every room with
 * `* NAME left (node X unreachable)`. A node that shuts down says goodbye first, so its
 * members leave at once; one that restarts (a new epoch) drops its old members too.
 *
 * **Questions.** `/who` asks the room's other nodes (the ones known to have members there)
 * and answers with the replies that came within `requestTimeoutMs` (300 ms), taking the
 * known members of a node that did not answer in time; `/rooms` asks every live node.
 *
 * **Names.** A node hands out `userN.NODE` names (relay-generated names cannot be taken with
 * `/nick`, and node ids are unique), so they never collide. `/nick NAME` is a claim: the node
 * asks every live node on `sockit.names`; each answers no if one of its clients has the name,
 * or if it has a claim of its own for it that came first (earlier time, then lower node id,
 * then lower claim id: one order on every node), so of two simultaneous claims exactly one
 * wins. A node that does not answer within the wait does not block it: while the bus is down
 * or a node is cut off, names are unique per node only, and the first claim after that
 * settles nothing retroactively (a duplicate made during a split stays until one renames).
 *
 * **Link down.** While the bus is down the node publishes nothing (no buffering), tells each
 * room once `* cluster link down: this room is local only`, and its rooms go on locally; it
 * expires no one meanwhile. Once it is back: `* cluster link restored`, its member lists are
 * re-announced (`hello`) and re-asked, and heartbeats resume.
 *
 * @module
 */

import type { Logger } from "../../log.ts";
import { quote } from "../../log.ts";
import type { Bus, BusMessage, BusState } from "./bus.ts";
import {
  type ControlMessage,
  decodeControl,
  decodeEnvelope,
  encodeControl,
  encodeMessagesHead,
  ENVELOPE_LIMITS,
  EnvelopeError,
} from "./envelope.ts";
import { CLUSTER_SUBJECTS, roomSubjects } from "./subjects.ts";
import type { FlowOutbox } from "../../net/flow.ts";
import { RemoteHold } from "./remote_hold.ts";

/** Timing of the cluster protocol, with their reasons. */
export const CLUSTER_DEFAULTS = {
  /** Heartbeats, in ms apart. */
  heartbeatMs: 1_000,
  /**
   * A node not heard from this long is gone (three and a half heartbeats: one lost or late
   * heartbeat on a busy machine is not a death).
   */
  expireMs: 3_500,
  /** Most time a question (`/who`, `/rooms`, a name claim) waits for answers, in ms. */
  requestTimeoutMs: 300,
} as const;

/** What the cluster needs from the relay it runs in. */
export interface ClusterHost {
  /** Queues `payload` (`count` encoded messages from another node) to the local members of `room`. */
  deliver(room: string, payload: Uint8Array, count: number): void;
  /** Tells the local members of `room` a notice. */
  notice(room: string, text: string): void;
  /** The names of the local members of `room`. */
  members(room: string): string[];
  /** Rooms with local members, and how many. */
  rooms(): [string, number][];
  /** True when a local client has `name` (ignoring case). */
  hasName(name: string): boolean;
}

/** Options of {@linkcode Cluster}. */
export interface ClusterOptions {
  /** This node's id (`NODE_ID_PATTERN`). */
  nodeId: string;
  /** True for a framed relay (envelopes of the other mode are dropped). */
  framed: boolean;
  /** Where warnings go. */
  logger?: Logger;
  /** Heartbeats, in ms apart. */
  heartbeatMs?: number;
  /** A node not heard from this long is gone, in ms. */
  expireMs?: number;
  /** Most time a question waits for answers, in ms. */
  requestTimeoutMs?: number;
}

/** Counters and state of a node, for `--stats` and the ready line. */
export interface ClusterStats {
  /** This node's id. */
  nodeId: string;
  /** The bus's state. */
  bus: BusState;
  /** Where the bus is. */
  url: string;
  /** Other nodes heard from recently. */
  nodes: number;
  /** Envelopes published. */
  published: number;
  /** Envelopes (and control messages) not published: bus down or over budget. */
  notPublished: number;
  /** Messages that arrived from other nodes. */
  remoteIn: number;
  /** Messages other nodes sent that never arrived (sequence gaps). */
  missed: number;
  /** Bus messages dropped as malformed. */
  malformed: number;
}

interface RoomLink {
  /** The room's subjects. */
  subjects: { msg: string; presence: string; who: string };
  unsubscribe: () => void;
  /** Other nodes' readers that hold this room's local senders (`remote_hold.ts`). */
  hold: RemoteHold;
  /** Local readers above high water with other nodes' messages: this node holds the room. */
  holding: Set<FlowOutbox>;
  /** Settles once the first ask of who is there got its answers. */
  synced: Promise<void>;
  /** Who is in the room on which other node. */
  remote: Map<string, Set<string>>;
  /** Next expected sequence number per `node/epoch`. */
  expect: Map<string, number>;
}

interface Claim {
  at: number;
  id: number;
  lost: boolean;
}

/** One relay's membership in a cluster (see the module doc). */
export class Cluster {
  /** This node's id. */
  readonly nodeId: string;
  #bus: Bus;
  #host: ClusterHost | undefined;
  #framed: boolean;
  #log: Logger | undefined;
  #epoch = crypto.getRandomValues(new Uint32Array(1))[0];
  #timing: Required<Pick<ClusterOptions, "heartbeatMs" | "expireMs" | "requestTimeoutMs">>;
  #links = new Map<string, RoomLink>();
  #seqOut = new Map<string, number>();
  #nodes = new Map<string, { epoch: number; lastSeen: number }>();
  #claims = new Map<string, Claim>();
  #unsubscribe: (() => void)[] = [];
  #timer: ReturnType<typeof setInterval> | undefined;
  #warned = new Set<string>();
  #closed = false;
  #warm = false;
  #warmTimer: ReturnType<typeof setTimeout> | undefined;
  #stats = { published: 0, notPublished: 0, remoteIn: 0, missed: 0, malformed: 0 };

  /** A node on `bus`; {@linkcode Cluster.attach} starts it. */
  constructor(bus: Bus, options: ClusterOptions) {
    this.#bus = bus;
    this.nodeId = options.nodeId;
    this.#framed = options.framed;
    this.#log = options.logger;
    this.#timing = {
      heartbeatMs: options.heartbeatMs ?? CLUSTER_DEFAULTS.heartbeatMs,
      expireMs: options.expireMs ?? CLUSTER_DEFAULTS.expireMs,
      requestTimeoutMs: options.requestTimeoutMs ?? CLUSTER_DEFAULTS.requestTimeoutMs,
    };
  }

  /** Starts the node for `host`: cluster-wide subscriptions and heartbeats. */
  attach(host: ClusterHost): void {
    this.#host = host;
    this.#unsubscribe.push(
      this.#bus.subscribe(CLUSTER_SUBJECTS.nodes, (m) => this.#onControl(m, undefined)),
      this.#bus.subscribe(CLUSTER_SUBJECTS.rooms, (m) => this.#onControl(m, undefined)),
      this.#bus.subscribe(CLUSTER_SUBJECTS.names, (m) => this.#onControl(m, undefined)),
    );
    this.#bus.onState((state) => this.#onBusState(state));
    this.#beat();
    this.#timer = setInterval(() => this.#beat(), this.#timing.heartbeatMs);
    this.#warmTimer = setTimeout(() => (this.#warm = true), this.#timing.heartbeatMs * 1.5);
  }

  /** The name a new local client gets: `userN.NODE`. */
  generatedName(n: number): string {
    return `user${n}.${this.nodeId}`;
  }

  /** Counters and state. */
  stats(): ClusterStats {
    const bus = this.#bus.stats();
    return {
      nodeId: this.nodeId,
      bus: this.#bus.state,
      url: this.#bus.url,
      nodes: this.#nodes.size,
      ...this.#stats,
      notPublished: bus.notPublished,
    };
  }

  // --- What the relay tells the cluster ---------------------------------------------------

  /** A local client `name` entered `room` (`first`: the room had no local member before). */
  joined(room: string, name: string, first: boolean): void {
    if (first) this.#subscribeRoom(room);
    this.#control(this.#subjects(room).presence, { t: "join", room, name });
  }

  /**
   * A local client left `room`; `why` is its notice after the name (`left (quit)`, `left for
   * another room`); `last`: nobody local is left there.
   */
  left(room: string, name: string, why: string, last: boolean): void {
    this.#control(this.#subjects(room).presence, { t: "leave", room, name, why });
    if (last) this.#unsubscribeRoom(room);
  }

  /** A local client of `room` was renamed. */
  renamed(room: string, old: string, name: string): void {
    this.#control(this.#subjects(room).presence, { t: "rename", room, old, name });
  }

  /** Publishes `count` messages (encoded as the relay queued them) to `room`'s other nodes. */
  publish(room: string, payload: Uint8Array, count: number): void {
    const seq = this.#seqOut.get(room) ?? 1;
    this.#seqOut.set(room, seq + count);
    const head = encodeMessagesHead({
      framed: this.#framed,
      node: this.nodeId,
      epoch: this.#epoch,
      seq,
      count,
    });
    // Header and payload as two pieces: the relay's buffer is sent as it is, not copied.
    if (this.#bus.publish(this.#subjects(room).msg, [head, payload])) this.#stats.published++;
  }

  /**
   * A local reader of `room` is above high water with messages from other nodes: they are
   * asked to hold their senders in `room` until it is not (`remote_hold.ts`).
   */
  holdFor(room: string, outbox: FlowOutbox): void {
    const link = this.#links.get(room);
    if (!link || link.holding.has(outbox)) return;
    if (link.holding.size === 0) this.#control(this.#subjects(room).presence, { t: "hold", room });
    link.holding.add(outbox);
    void outbox.released().then(() => {
      if (!link.holding.delete(outbox) || link.holding.size > 0) return;
      if (this.#links.get(room) === link) {
        this.#control(this.#subjects(room).presence, { t: "release", room });
      }
    });
  }

  /** What holds `room`'s local senders for other nodes' readers, while it does. */
  remoteHold(room: string): FlowOutbox | undefined {
    const hold = this.#links.get(room)?.hold;
    return hold?.holdsProducers ? hold : undefined;
  }

  /** The names in `room` on other nodes (see the module doc). */
  async who(room: string): Promise<string[]> {
    const link = this.#links.get(room);
    if (!link || this.#bus.state !== "up") return [];
    await link.synced;
    const known = [...link.remote].filter(([, names]) => names.size > 0).map(([node]) => node);
    const answered = new Map<string, string[]>();
    if (known.length > 0) {
      const replies = await this.#bus.request(
        this.#subjects(room).who,
        encodeControl(this.#from({ t: "who", room })),
        { maxReplies: known.length, timeoutMs: this.#timing.requestTimeoutMs },
      );
      for (const reply of replies) {
        const m = this.#decodeReply(reply);
        if (m?.t === "members" && m.room === room) answered.set(m.node, m.names);
      }
    }
    const names: string[] = [];
    for (const [node, members] of link.remote) {
      names.push(...(answered.get(node) ?? members));
      answered.delete(node);
    }
    for (const members of answered.values()) names.push(...members);
    return names;
  }

  /** Rooms on other nodes and how many are in each there. */
  async rooms(): Promise<Map<string, number>> {
    const rooms = new Map<string, number>();
    if (this.#bus.state !== "up") return rooms;
    const replies = await this.#bus.request(
      CLUSTER_SUBJECTS.rooms,
      encodeControl(this.#from({ t: "rooms" })),
      { maxReplies: this.#expectedNodes(), timeoutMs: this.#timing.requestTimeoutMs },
    );
    for (const reply of replies) {
      const m = this.#decodeReply(reply);
      if (m?.t !== "roomlist") continue;
      for (const [room, n] of m.rooms) rooms.set(room, (rooms.get(room) ?? 0) + n);
    }
    return rooms;
  }

  /**
   * Claims `name` across the cluster for a local client: resolves true when no live node
   * refused it (the relay checked its own clients already).
   */
  async claim(name: string): Promise<boolean> {
    const key = name.toLowerCase();
    if (this.#claims.has(key)) return false;
    const claim: Claim = {
      at: Date.now(),
      id: crypto.getRandomValues(new Uint32Array(1))[0],
      lost: false,
    };
    this.#claims.set(key, claim);
    try {
      const replies = await this.#bus.request(
        CLUSTER_SUBJECTS.names,
        encodeControl(this.#from({ t: "claim", name, at: claim.at, id: claim.id })),
        { maxReplies: this.#expectedNodes(), timeoutMs: this.#timing.requestTimeoutMs },
      );
      if (claim.lost) return false;
      return replies.every((reply) => {
        const m = this.#decodeReply(reply);
        return m?.t !== "claimed" || m.ok;
      });
    } finally {
      this.#claims.delete(key);
    }
  }

  /** True while a local claim for `name` is pending (so a second local one waits its turn). */
  claiming(name: string): boolean {
    return this.#claims.has(name.toLowerCase());
  }

  /** Says goodbye, unsubscribes and stops the heartbeats (the bus is the caller's). */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    clearInterval(this.#timer);
    clearTimeout(this.#warmTimer);
    this.#control(CLUSTER_SUBJECTS.nodes, { t: "bye" });
    for (const room of [...this.#links.keys()]) this.#unsubscribeRoom(room);
    for (const unsubscribe of this.#unsubscribe) unsubscribe();
  }

  // --- Inside ------------------------------------------------------------------------------

  /**
   * How many nodes should answer a cluster-wide question: the live ones, once this node had
   * a heartbeat's time to hear them all (before that, the full wait).
   */
  #expectedNodes(): number {
    return this.#warm ? this.#nodes.size : ENVELOPE_LIMITS.names;
  }

  /** `room`'s subjects, kept while this node is in the room (they are built per broadcast). */
  #subjects(room: string): { msg: string; presence: string; who: string } {
    return this.#links.get(room)?.subjects ?? roomSubjects(room);
  }

  #from<T extends object>(body: T): T & { node: string; epoch: number } {
    return { node: this.nodeId, epoch: this.#epoch, ...body };
  }

  #control(subject: string, body: Record<string, unknown> & { t: string }): void {
    this.#bus.publish(subject, encodeControl(this.#from(body) as unknown as ControlMessage));
  }

  #reply(to: string | undefined, body: Record<string, unknown> & { t: string }): void {
    if (to) this.#control(to, body);
  }

  #decodeReply(bytes: Uint8Array): ControlMessage | undefined {
    try {
      const m = decodeControl(bytes);
      return m.node === this.nodeId ? undefined : m;
    } catch (error) {
      this.#malformed(error);
      return undefined;
    }
  }

  #malformed(error: unknown): void {
    if (!(error instanceof EnvelopeError)) throw error;
    this.#stats.malformed++;
    this.#warnOnce(
      `malformed:${error.message}`,
      `cluster: dropped a bus message: ${error.message}`,
    );
  }

  #warnOnce(key: string, text: string): void {
    if (this.#warned.size > 1000) this.#warned.clear();
    if (this.#warned.has(key)) return;
    this.#warned.add(key);
    this.#log?.warn(text);
  }

  #subscribeRoom(room: string): void {
    if (this.#links.has(room)) return;
    const subjects = this.#subjects(room);
    const link: RoomLink = {
      subjects,
      unsubscribe: () => {},
      hold: new RemoteHold(),
      holding: new Set(),
      synced: Promise.resolve(),
      remote: new Map(),
      expect: new Map(),
    };
    const offs = [
      this.#bus.subscribe(subjects.msg, (m) => this.#onMessages(room, link, m)),
      this.#bus.subscribe(subjects.presence, (m) => this.#onControl(m, room)),
      this.#bus.subscribe(subjects.who, (m) => this.#onControl(m, room)),
    ];
    link.unsubscribe = () => offs.forEach((off) => off());
    this.#links.set(room, link);
    link.synced = this.#sync(room, link);
  }

  #unsubscribeRoom(room: string): void {
    const link = this.#links.get(room);
    link?.hold.clear();
    if (link && link.holding.size > 0) {
      this.#control(this.#subjects(room).presence, { t: "release", room });
    }
    link?.unsubscribe();
    this.#links.delete(room);
    this.#seqOut.delete(room);
  }

  /** Learns who is in `room` on the other nodes, silently (a join, or the link is back). */
  async #sync(room: string, link: RoomLink): Promise<void> {
    const replies = await this.#bus.request(
      this.#subjects(room).who,
      encodeControl(this.#from({ t: "who", room })),
      // Nodes without members there do not answer: the full wait, in the background.
      { maxReplies: ENVELOPE_LIMITS.names, timeoutMs: this.#timing.requestTimeoutMs },
    );
    if (this.#links.get(room) !== link) return;
    for (const reply of replies) {
      const m = this.#decodeReply(reply);
      if (m?.t === "members" && m.room === room) {
        this.#heard(m.node, m.epoch);
        link.remote.set(m.node, new Set(m.names));
      }
    }
  }

  #onMessages(room: string, link: RoomLink, message: BusMessage): void {
    let envelope;
    try {
      envelope = decodeEnvelope(message.data);
    } catch (error) {
      return this.#malformed(error);
    }
    if (envelope.kind !== "messages" || envelope.node === this.nodeId) return;
    if (envelope.framed !== this.#framed) {
      return this.#warnOnce(
        `mode:${envelope.node}`,
        `cluster: node ${envelope.node} runs in ${
          envelope.framed ? "framed" : "line"
        } mode, this one does not: its messages are dropped`,
      );
    }
    const key = `${envelope.node}/${envelope.epoch}`;
    const expected = link.expect.get(key);
    if (expected !== undefined && envelope.seq > expected) {
      const missed = envelope.seq - expected;
      this.#stats.missed += missed;
      this.#host?.notice(
        room,
        `missed ${missed} message${missed === 1 ? "" : "s"} from node ${envelope.node}`,
      );
    }
    link.expect.set(key, envelope.seq + envelope.count);
    this.#stats.remoteIn += envelope.count;
    // The payload is a view of the client's read buffer: one copy, shared by every recipient.
    this.#host?.deliver(room, envelope.payload.slice(), envelope.count);
  }

  #onControl(message: BusMessage, room: string | undefined): void {
    let m: ControlMessage;
    try {
      m = decodeControl(message.data);
    } catch (error) {
      return this.#malformed(error);
    }
    if (m.node === this.nodeId) {
      if (m.epoch !== this.#epoch) {
        this.#warnOnce(
          `twin:${m.epoch}`,
          `cluster: another relay uses node id ${quote(m.node)}: give each one its own --node-id`,
        );
      }
      return;
    }
    const host = this.#host;
    if (!host) return;
    const link = room === undefined ? undefined : this.#links.get(room);
    if (room !== undefined && (!link || !("room" in m) || m.room !== room)) return;
    // Room messages belong on a room's subjects; on a cluster-wide one they are dropped.
    if (room === undefined && "room" in m) {
      this.#stats.malformed++;
      return this.#warnOnce(
        `misplaced:${m.t}`,
        `cluster: dropped a "${m.t}" message from node ${m.node} on a cluster-wide subject`,
      );
    }
    switch (m.t) {
      case "beat":
        return this.#heard(m.node, m.epoch);
      case "bye":
        return this.#dropNode(m.node, "node shut down");
      case "join": {
        this.#heard(m.node, m.epoch);
        const names = link!.remote.get(m.node) ?? new Set();
        link!.remote.set(m.node, names);
        names.add(m.name);
        return host.notice(m.room, `${m.name} joined ${m.room}`);
      }
      case "leave":
        link!.remote.get(m.node)?.delete(m.name);
        return host.notice(m.room, `${m.name} ${m.why}`);
      case "rename": {
        const names = link!.remote.get(m.node);
        names?.delete(m.old);
        names?.add(m.name);
        return host.notice(m.room, `${m.old} is now ${m.name}`);
      }
      case "hello":
        this.#heard(m.node, m.epoch);
        link!.remote.set(m.node, new Set(m.names));
        return;
      case "hold":
        return link!.hold.hold(m.node);
      case "release":
        return link!.hold.release(m.node);
      case "who":
        return this.#reply(message.reply, {
          t: "members",
          room: m.room,
          names: host.members(m.room),
        });
      case "rooms":
        return this.#reply(message.reply, { t: "roomlist", rooms: host.rooms() });
      case "claim": {
        const key = m.name.toLowerCase();
        const mine = this.#claims.get(key);
        let ok = !host.hasName(m.name);
        if (ok && mine) {
          const mineFirst = mine.at !== m.at
            ? mine.at < m.at
            : this.nodeId !== m.node
            ? this.nodeId < m.node
            : mine.id < m.id;
          if (mineFirst) ok = false;
          else mine.lost = true;
        }
        return this.#reply(message.reply, { t: "claimed", ok });
      }
      default:
        return;
    }
  }

  /** A node is alive; a new epoch means it restarted, and its old members are gone. */
  #heard(node: string, epoch: number): void {
    const known = this.#nodes.get(node);
    if (known && known.epoch !== epoch) this.#dropNode(node, "node restarted");
    this.#nodes.set(node, { epoch, lastSeen: performance.now() });
    // A node new to this one learns of it at once rather than at the next heartbeat.
    if (!known || known.epoch !== epoch) this.#control(CLUSTER_SUBJECTS.nodes, { t: "beat" });
  }

  #dropNode(node: string, why: string): void {
    this.#nodes.delete(node);
    for (const [room, link] of this.#links) {
      link.hold.release(node);
      const names = link.remote.get(node);
      link.remote.delete(node);
      for (const key of [...link.expect.keys()]) {
        if (key.startsWith(`${node}/`)) link.expect.delete(key);
      }
      for (const name of [...(names ?? [])].sort()) {
        this.#host?.notice(room, `${name} left (${why}: ${node})`);
      }
    }
  }

  #beat(): void {
    if (this.#bus.state !== "up") return;
    this.#control(CLUSTER_SUBJECTS.nodes, { t: "beat" });
    // Holds lapse unless repeated.
    for (const [room, link] of this.#links) {
      if (link.holding.size > 0) this.#control(this.#subjects(room).presence, { t: "hold", room });
    }
    const now = performance.now();
    for (const [node, { lastSeen }] of [...this.#nodes]) {
      if (now - lastSeen > this.#timing.expireMs) this.#dropNode(node, "node unreachable");
    }
  }

  #onBusState(state: BusState): void {
    const host = this.#host;
    if (!host || this.#closed) return;
    const rooms = host.rooms().map(([room]) => room);
    if (state === "down") {
      // Nobody elsewhere can hold this node's senders now.
      for (const link of this.#links.values()) link.hold.clear();
      for (const room of rooms) host.notice(room, "cluster link down: this room is local only");
      this.#log?.warn(`cluster: lost the bus at ${this.#bus.url}; rooms are local only`);
      return;
    }
    this.#log?.info(`cluster: the bus at ${this.#bus.url} is back`);
    // Nobody is expired for the time this node could not hear them.
    const now = performance.now();
    for (const entry of this.#nodes.values()) entry.lastSeen = now;
    this.#beat();
    for (const room of rooms) {
      host.notice(room, "cluster link restored");
      this.#control(this.#subjects(room).presence, { t: "hello", room, names: host.members(room) });
      const link = this.#links.get(room);
      if (link) void this.#sync(room, link);
    }
  }
}
