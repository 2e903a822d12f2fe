/**
 * The relay server: a TCP hub that pushes what one client sends to every other client in the
 * same room. Each client is a {@linkcode Connection} (reader, bounded writer, handler). A reader
 * that is behind paces the senders of its room; one that is stuck stops holding them back
 * and meets the slow policy (`limits.ts` has the whole policy).
 *
 * @module
 */

import { type Widened, withDefaults } from "../defaults.ts";
import {
  CLOSE_KINDS,
  type CloseKind,
  type CloseReason,
  describeCloseReason,
  isSlowConsumer,
} from "../net/close_reason.ts";
import { DEADLINES, withTimeout } from "../net/deadline.ts";
import { ProtocolError, TimeoutError } from "../net/errors.ts";
import { waitForOutboxes } from "../net/flow.ts";
import { ControlFrame, encodeFrame, encodeHello, readFrame, readHello } from "../net/frame.ts";
import { unackedBytes } from "../net/tcp_queue.ts";
import { Connection, type ConnectionIo } from "../net/connection.ts";
import { concatBytes } from "../net/bytes.ts";
import type { Logger } from "../log.ts";
import type { RelayStats } from "./stats.ts";
import type { Cluster } from "./cluster/cluster.ts";
import { clientRules } from "./access.ts";
import { type Client, linePrefix, listenUntilGone } from "./client.ts";
import { type ClientSocket, RelayListener } from "./listener.ts";
import { HELP_TEXT, parseCommand } from "./client_commands.ts";
import {
  LINE_READ_BUFFER_BYTES,
  LINE_SCRATCH_BYTES,
  MAX_PREFIX_BYTES,
  RELAY_DEFAULTS,
  type RelayOptions,
  waterMarks,
} from "./limits.ts";
import {
  encodeDeliverPayload,
  encodeLineDelivers,
  encodeLineNotice,
  FRAME_CODEC,
  LINE_CODEC,
  RELAY_PROTOCOL,
  RELAY_PROTOCOL_VERSION,
  type RelayCodec,
  RelayFrame,
} from "./protocol.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

const LF_BYTES = new Uint8Array([0x0a]);

export type { RelayOptions } from "./limits.ts";
export type { RelayStats } from "./stats.ts";

/**
 * A running relay: the accept loop, the clients, their rooms and the counters.
 *
 * @example Start a relay on a free port and stop it
 * ```ts ignore
 * import { Relay } from "./relay.ts";
 * const relay = new Relay(Deno.listen({ hostname: "127.0.0.1", port: 0 }), {});
 * console.log(relay.addr.port);
 * await relay.shutdown();
 * ```
 */
export class Relay {
  /** Bound address. */
  readonly addr: Deno.NetAddr;
  #opts: Widened<typeof RELAY_DEFAULTS> & { framed: boolean };
  #log: Logger | undefined;
  #codec: RelayCodec;
  #listener: RelayListener;
  #clients = new Set<Client>();
  #names = new Map<string, Client>();
  #rooms = new Map<string, Set<Client>>();
  #nextUser = 1;
  #closedBytesIn = 0;
  #closedBytesOut = 0;
  #stats = {
    accepted: 0,
    messagesIn: 0,
    delivered: 0,
    dropped: 0,
    slowDisconnects: 0,
    pausedMs: 0,
    stalls: 0,
  };
  #closes = Object.fromEntries(CLOSE_KINDS.map((k) => [k, 0])) as Record<CloseKind, number>;
  #pausedSenders = 0;
  #stuckClients = 0;
  #shuttingDown = false;
  #scratch: Uint8Array | undefined;
  #cluster: Cluster | undefined;

  /** Starts serving on `listener`. Throws a `UsageError` for a bad `allow`/`deny` CIDR. */
  constructor(listener: Deno.TcpListener, options: RelayOptions = {}) {
    const { logger, tls, tlsOnly, web, allow, deny, cluster, ...rest } = options;
    this.#opts = withDefaults({ ...RELAY_DEFAULTS, framed: false }, rest);
    this.#log = logger;
    this.#codec = this.#opts.framed ? FRAME_CODEC : LINE_CODEC;
    this.addr = listener.addr;
    const full = `server full (${this.#opts.maxClients} clients), try again later`;
    this.#listener = new RelayListener(listener, {
      ...this.#opts,
      tls,
      tlsOnly,
      web,
      rules: clientRules({ allow, deny }),
      logger,
      full: { text: full, bytes: this.#codec.refusal(full) },
      serve: (io, at) => this.#handle(io, at),
    });
    this.#cluster = cluster;
    cluster?.attach({
      deliver: (room, payload, count) => this.#deliverRemote(room, payload, count),
      notice: (room, text) => {
        const members = this.#rooms.get(room);
        if (!members) return;
        const bytes = this.#codec.notice(text);
        for (const m of members) m.connection.send(bytes);
      },
      members: (room) => [...(this.#rooms.get(room) ?? [])].map((m) => m.name),
      rooms: () => [...this.#rooms].map(([room, m]) => [room, m.size]),
      hasName: (name) => this.#names.has(name.toLowerCase()),
    });
  }

  /**
   * Replaces the client address rules (`--allow`/`--deny`) for connections accepted from now
   * on; clients already connected stay. Throws a `UsageError` for a bad CIDR.
   */
  setAccessRules(rules: { allow?: string[]; deny?: string[] }): void {
    this.#listener.setRules(clientRules(rules));
  }

  /** A snapshot of the counters. */
  stats(): RelayStats {
    let bytesIn = this.#closedBytesIn;
    let bytesOut = this.#closedBytesOut;
    let clients = 0;
    for (const c of this.#clients) {
      bytesIn += c.connection.bytesIn;
      bytesOut += c.connection.bytesOut;
      if (!c.connection.closing) clients++;
    }
    return {
      clients,
      ...this.#stats,
      ...this.#listener.stats(),
      pausedSenders: this.#pausedSenders,
      stuckClients: this.#stuckClients,
      closes: { ...this.#closes },
      bytesIn,
      bytesOut,
      cluster: this.#cluster?.stats(),
    };
  }

  /**
   * Stops accepting, tells every client `reason`, flushes what is queued (bounded by
   * `shutdownFlushMs`) and closes them all.
   */
  async shutdown(reason = "server shutting down"): Promise<void> {
    if (this.#shuttingDown) return;
    this.#shuttingDown = true;
    const stopping = this.#listener.stop({ timeoutMs: this.#opts.shutdownFlushMs + 1000 });
    const why: CloseReason = { kind: "shutdown", text: reason };
    const connections = [...this.#clients].map((c) => c.connection);
    // Clients already closing (a slow consumer's farewell may wait up to the write timeout)
    // are cut at the same shutdown deadline as the rest.
    const cut = DEADLINES.after(this.#opts.shutdownFlushMs, () => {
      for (const c of connections) c.terminate(why);
    });
    await Promise.all(
      connections.map((c) => c.close(why, { farewell: this.#codec.farewell(why) })),
    );
    cut();
    this.#cluster?.close();
    await stopping;
  }

  /**
   * Serves `io`, any byte stream (a WebSocket carrying lines, say), as one client of the
   * relay in its mode (lines or frames): same rooms, commands, flow control, slow-client
   * policy and deadlines as a TCP client. `at.socket` is the TCP socket beneath, whose
   * kernel state the stall checks read; `at.peer` names the client in logs. Resolves once
   * the client left.
   */
  async serveClient(io: ConnectionIo, at: ClientSocket): Promise<void> {
    await this.#handle(io, at);
  }

  async #handle(conn: ConnectionIo, at: ClientSocket): Promise<void> {
    const o = this.#opts;
    const { peer, socket } = at;
    const flow = o.slowPolicy === "drop" ? undefined : {
      ...waterMarks(o),
      stallTimeoutMs: o.stallTimeoutMs,
    };
    const connection = new Connection(conn, {
      maxQueuedBytes: o.maxQueuedBytes,
      overflow: o.slowPolicy === "drop" ? "drop" : "close",
      flow,
      unackedBytes: socket && (() => unackedBytes(socket.localAddr, socket.remoteAddr)),
      writeTimeoutMs: o.writeTimeoutMs,
      idleTimeoutMs: o.idleTimeoutMs,
      pingIntervalMs: o.framed ? o.heartbeatMs : 0,
      heartbeatMisses: o.heartbeatMisses,
      ping: () => encodeFrame(ControlFrame.Ping),
      farewell: (reason) => this.#codec.farewell(reason),
      flushTimeoutMs: o.shutdownFlushMs,
      onClosing: (info) => {
        this.#closes[info.reason.kind]++;
        if (isSlowConsumer(info.reason)) this.#stats.slowDisconnects++;
        if (connection.stuck) this.#stuckClients--;
        client?.stopHold?.();
        if (client) this.#depart(client, info.reason);
      },
      onDrained: () => {
        if (client) this.#reportDrops(client);
      },
      onStuck: (stuck) => {
        if (connection.closing) return;
        this.#stuckClients += stuck ? 1 : -1;
        if (stuck) {
          this.#stats.stalls++;
          this.#log?.info(
            `${client?.name ?? peer} is stuck (took no byte for ${o.stallTimeoutMs} ms): ` +
              `no longer holding senders back`,
          );
        }
      },
      // A whole line (plus CRLF) must fit in the read buffer.
      readBufferSize: o.framed ? 64 * 1024 : Math.max(LINE_READ_BUFFER_BYTES, o.maxLineBytes + 2),
    });
    this.#stats.accepted++;
    let client: Client | undefined;
    const info = await connection.run(async (s) => {
      try {
        if (o.framed) {
          s.send(encodeHello(RELAY_PROTOCOL, RELAY_PROTOCOL_VERSION));
          await withTimeout(
            readHello(s.reader, { protocol: RELAY_PROTOCOL, version: RELAY_PROTOCOL_VERSION }),
            o.helloTimeoutMs,
            { what: "the client's hello" },
          );
        }
        if (this.#shuttingDown) return;
        client = this.#register(s, peer);
        if (o.framed) await this.#readFrames(client);
        else if (await this.#readLines(client)) {
          // End of input without /quit: a listen-only client (nc -N, ncat --recv-only)
          // stays and keeps receiving until it goes away or the relay closes it.
          this.#log?.debug(`${client.name} half-closed: listening only`);
          await listenUntilGone(s, { socket, everyMs: this.#opts.listenerCheckMs });
        }
      } catch (error) {
        if (error instanceof ProtocolError || error instanceof TimeoutError) {
          s.send(
            o.framed
              ? encodeFrame(ControlFrame.Error, encoder.encode(error.message))
              : encodeLineNotice(`error: ${error.message}`),
          );
        }
        throw error;
      } finally {
        if (client?.paused) this.#pausedSenders--;
      }
    });
    this.#closedBytesIn += connection.bytesIn;
    this.#closedBytesOut += connection.bytesOut;
    if (client) this.#clients.delete(client);
    else if (info.error) this.#log?.warn(`${peer}: ${info.text}`);
  }

  #register(connection: Connection, peer: string): Client {
    let name: string;
    do {
      const n = this.#nextUser++;
      name = this.#cluster ? this.#cluster.generatedName(n) : `user${n}`;
    } while (this.#names.has(name.toLowerCase()));
    const client: Client = {
      name,
      room: this.#opts.defaultRoom,
      connection,
      peer,
      missed: 0,
      reportedDrops: 0,
      quit: false,
      holders: [],
      paused: false,
      prefix: linePrefix(name),
    };
    this.#clients.add(client);
    this.#names.set(name.toLowerCase(), client);
    connection.send(this.#codec.welcome(client.name, client.room));
    this.#enterRoom(client, client.room);
    this.#log?.info(`${name} connected from ${peer}`);
    return client;
  }

  /** Takes a closing client out of its room at once, so nothing more is queued to it. */
  #depart(client: Client, reason: CloseReason): void {
    this.#names.delete(client.name.toLowerCase());
    const why = client.quit ? "quit" : describeCloseReason(reason);
    this.#leaveRoom(client, `${client.name} left (${why})`);
    const s = client.connection;
    this.#log?.info(
      `${client.name} disconnected: ${why} (in ${s.bytesIn} B, out ${s.bytesOut} B)`,
    );
  }

  /** Drop policy: once a client's outbox has drained, tell it how many messages it missed. */
  #reportDrops(client: Client): void {
    if (client.missed <= client.reportedDrops) return;
    const missed = client.missed - client.reportedDrops;
    client.reportedDrops = client.missed;
    this.#tell(
      client,
      `you missed ${missed} message${missed === 1 ? "" : "s"} (your outbox was full)`,
    );
  }

  #enterRoom(client: Client, room: string): void {
    let members = this.#rooms.get(room);
    const first = !members;
    if (!members) this.#rooms.set(room, members = new Set());
    client.room = room;
    this.#notice(members, `${client.name} joined ${room}`, client);
    members.add(client);
    this.#cluster?.joined(room, client.name, first);
  }

  /** Takes `client` out of its room, telling the others `text` (`NAME left ...`). */
  #leaveRoom(client: Client, text: string): void {
    const members = this.#rooms.get(client.room);
    if (!members) return;
    members.delete(client);
    if (members.size === 0) this.#rooms.delete(client.room);
    else this.#notice(members, text, client);
    // Other nodes get what follows the name, and put the name in front again.
    const rest = text.slice(client.name.length + 1);
    this.#cluster?.left(client.room, client.name, rest, members.size === 0);
  }

  /**
   * Queues a notice to `members`, caused by `cause`. Flow control covers what a client causes,
   * not only its messages: a member left above high water by it holds `cause` back too, so
   * join/leave or command floods cannot grow anyone's outbox without bound.
   */
  #notice(members: Iterable<Client>, text: string, cause: Client): void {
    const bytes = this.#codec.notice(text);
    for (const m of members) this.#queue(m, bytes, cause);
  }

  /** Queues a notice to `client` itself (a command's answer holds the asker back). */
  #tell(client: Client, text: string): void {
    this.#queue(client, this.#codec.notice(text), client);
  }

  /** Queues `bytes` to `to`; if that leaves it holding producers, `cause` waits for it. */
  #queue(to: Client, bytes: Uint8Array, cause: Client): void {
    if (to.connection.send(bytes) && to.connection.holdsProducers) {
      cause.holders.push(to.connection);
    }
  }

  /**
   * Queues `bytes`, which hold `count` encoded messages from `from`, to every other member of
   * the sender's room: one buffer shared by all recipients, queued once per recipient.
   */
  #broadcast(from: Client, bytes: Uint8Array, count: number): void {
    this.#stats.messagesIn += count;
    // Other nodes first: publishing never waits, and their members are not held up by ours.
    const cluster = this.#cluster;
    if (cluster) {
      cluster.publish(from.room, bytes, count);
      const hold = cluster.remoteHold(from.room);
      if (hold) from.holders.push(hold);
    }
    const members = this.#rooms.get(from.room);
    if (!members || members.size < 2) return;
    for (const m of members) {
      if (m === from) continue;
      if (this.#offer(m, bytes, count) && m.connection.holdsProducers) {
        from.holders.push(m.connection);
      }
    }
  }

  /** Queues `count` messages to `m`, counting them delivered or dropped; true when queued. */
  #offer(m: Client, bytes: Uint8Array, count: number): boolean {
    if (m.connection.send(bytes)) {
      this.#stats.delivered += count;
      return true;
    }
    if (!m.connection.closing) {
      this.#stats.dropped += count;
      m.missed += count;
      // Nothing queued means no drain to report at: tell it now.
      if (m.connection.queuedBytes === 0) this.#reportDrops(m);
    }
    return false;
  }

  /**
   * Messages from another node: queued to every local member of `room` under the same
   * slow-client policy. The bus is never paused; a member left above high water asks the
   * other nodes to hold their senders instead (`cluster/remote_hold.ts`).
   */
  #deliverRemote(room: string, bytes: Uint8Array, count: number): void {
    const members = this.#rooms.get(room);
    if (!members) return;
    for (const m of members) {
      if (this.#offer(m, bytes, count) && m.connection.holdsProducers) {
        this.#cluster?.holdFor(room, m.connection);
      }
    }
  }

  /**
   * Runs `work` (a command the cluster answers) before `client` is read again: the client's
   * next lines wait for it, and its idle clock stops meanwhile.
   */
  #defer(client: Client, work: () => Promise<void>): void {
    const resume = client.connection.holdReads();
    client.pending = work().catch((error) => {
      this.#log?.warn(`${client.name}: cluster command failed: ${(error as Error).message}`);
    }).finally(() => {
      client.pending = undefined;
      resume();
    });
  }

  /**
   * Flow control: before `client` is read again, waits while any recipient its messages
   * went to is above high water and live (see `limits.ts`). Its socket is not read
   * meanwhile, so TCP pushes back on the sending client.
   */
  async #holdSender(client: Client): Promise<void> {
    const holders = client.holders;
    client.holders = [];
    let resumeReads = () => {};
    // A sender closed while held (its own slow-stall, a shutdown) stops waiting at once. (A
    // promise per hold: racing the connection's long-lived `closed` would pile up reactions.)
    const stop = Promise.withResolvers<void>();
    client.stopHold = stop.resolve;
    const waited = await waitForOutboxes(holders, {
      until: stop.promise,
      onHeld: () => {
        client.paused = true;
        this.#pausedSenders++;
        // Not reading it is our doing: its idle and heartbeat clocks stop meanwhile.
        resumeReads = client.connection.holdReads();
      },
    });
    client.stopHold = undefined;
    resumeReads();
    if (client.paused) {
      client.paused = false;
      this.#pausedSenders--;
      this.#stats.pausedMs += waited;
    }
  }

  /**
   * Line mode. Every whole line already buffered is handled in one pass: the messages
   * among them go out as one buffer per recipient, so lines that arrive together cost one
   * queue entry each, not one per line. Resolves true at end of input, false after /quit.
   */
  async #readLines(client: Client): Promise<boolean> {
    const reader = client.connection.reader;
    const max = this.#opts.maxLineBytes;
    while (true) {
      const block = reader.takeLines();
      if (block !== null) {
        // Commands can be held back mid-block (their answers fill outboxes too); the block
        // stays in the reader's buffer meanwhile, since nothing reads this client.
        for (let start = 0; start < block.length;) {
          start = this.#handleLines(client, block, start);
          if (start < 0) return false;
          if (client.pending) await client.pending;
          if (client.holders.length > 0) await this.#holdSender(client);
        }
        continue;
      }
      if (client.holders.length > 0) await this.#holdSender(client);
      // A line may hold max bytes plus a CR whose LF has not arrived yet; #handleLines checks
      // the exact length once the line is whole.
      if (reader.buffered > max + 1) {
        this.#refuseLongLine(client);
        if (!(await reader.skipLine())) return true;
        continue;
      }
      if (!(await reader.fill())) {
        // End of input: a last line without a newline still counts as a whole line.
        const rest = reader.takeBuffered();
        if (rest.length > 0) {
          const block = concatBytes(rest, LF_BYTES);
          for (let start = 0; start >= 0 && start < block.length;) {
            start = this.#handleLines(client, block, start);
          }
        }
        return true;
      }
    }
  }

  /**
   * Handles whole lines (each ending in LF) in `block`: commands run in order, runs of
   * messages are encoded into the relay's scratch buffer in one pass and broadcast together
   * (one exact-size copy per run). Returns where to go on: the end of the block, the line
   * after a command that left someone holding this client back, or -1 after /quit.
   */
  #handleLines(client: Client, block: Uint8Array, from: number): number {
    const maxLineBytes = this.#opts.maxLineBytes;
    // One message is at most a quarter of an outbox cap (or one longest line), so that a
    // burst never makes a message no outbox can take.
    const out = this.#scratch ??= new Uint8Array(
      Math.max(
        Math.min(LINE_SCRATCH_BYTES, this.#opts.maxQueuedBytes / 4),
        maxLineBytes + MAX_PREFIX_BYTES + 4,
      ),
    );
    let start = from;
    while (start < block.length) {
      // A /nick among the lines changes the prefix of the lines after it.
      const prefix = client.prefix;
      const scan = encodeLineDelivers(block, { start, prefix, out, maxLineBytes });
      if (scan.count > 0) this.#broadcast(client, out.slice(0, scan.written), scan.count);
      start = scan.next;
      if (scan.stop === "long") {
        this.#refuseLongLine(client);
        start = scan.lineEnd + 1;
      } else if (scan.stop === "command") {
        let end = scan.lineEnd;
        if (end > start && block[end - 1] === 0x0d) end--;
        if (!this.#command(client, decoder.decode(block.subarray(start, end)))) return -1;
        start = scan.lineEnd + 1;
        if (client.holders.length > 0 || client.pending) return start;
      }
    }
    return start;
  }

  #refuseLongLine(client: Client): void {
    const max = this.#opts.maxLineBytes;
    this.#tell(client, `line refused: longer than ${max} bytes`);
    this.#log?.info(`${client.name}: refused a line longer than ${max} bytes`);
  }

  async #readFrames(client: Client): Promise<void> {
    const s = client.connection;
    while (true) {
      const frame = await readFrame(s.reader, { maxPayload: this.#opts.maxLineBytes });
      if (frame === null) return;
      switch (frame.type) {
        case RelayFrame.Message: {
          const delivery = { from: client.name, room: client.room, data: frame.payload };
          const bytes = encodeFrame(RelayFrame.Deliver, encodeDeliverPayload(delivery));
          this.#broadcast(client, bytes, 1);
          if (client.holders.length > 0) await this.#holdSender(client);
          break;
        }
        case RelayFrame.Command:
          if (!this.#command(client, decoder.decode(frame.payload))) return;
          if (client.pending) await client.pending;
          if (client.holders.length > 0) await this.#holdSender(client);
          break;
        case ControlFrame.Ping:
          this.#queue(client, encodeFrame(ControlFrame.Pong, frame.payload), client);
          if (client.holders.length > 0) await this.#holdSender(client);
          break;
        case ControlFrame.Pong:
          break;
        case ControlFrame.Bye:
          return;
        default:
          throw new ProtocolError(`Cannot handle frame: unknown type 0x${frame.type.toString(16)}`);
      }
    }
  }

  /** Gives `client` its new `name` (checked free) and tells its room and the cluster. */
  #rename(client: Client, name: string): void {
    const old = client.name;
    this.#names.delete(old.toLowerCase());
    this.#names.set(name.toLowerCase(), client);
    client.name = name;
    client.prefix = linePrefix(name);
    const members = this.#rooms.get(client.room) ?? [];
    const others = [...members].filter((m) => m !== client);
    this.#notice(others, `${old} is now ${name}`, client);
    this.#queue(client, this.#codec.welcome(client.name, client.room), client);
    this.#cluster?.renamed(client.room, old, name);
    this.#log?.info(`${old} is now ${name}`);
  }

  /** Runs a command line; resolves false when the client asked to leave. */
  #command(client: Client, text: string): boolean {
    const command = parseCommand(text, { maxNameLength: this.#opts.maxNameLength });
    switch (command.kind) {
      case "refused":
        this.#tell(client, command.notice);
        return true;
      case "nick": {
        const name = command.name;
        const key = name.toLowerCase();
        if (this.#names.has(key) && key !== client.name.toLowerCase()) {
          this.#tell(client, `cannot rename to ${name}: the name is taken`);
          return true;
        }
        const cluster = this.#cluster;
        if (cluster && key !== client.name.toLowerCase()) {
          if (cluster.claiming(name)) {
            this.#tell(client, `cannot rename to ${name}: the name is taken`);
            return true;
          }
          this.#defer(client, async () => {
            const granted = await cluster.claim(name);
            if (client.connection.closing) return;
            // A local client may have taken it meanwhile (its claim came first).
            if (!granted || this.#names.has(key)) {
              this.#tell(client, `cannot rename to ${name}: the name is taken`);
            } else this.#rename(client, name);
          });
          return true;
        }
        this.#rename(client, name);
        return true;
      }
      case "join":
        if (command.room !== client.room) {
          this.#leaveRoom(client, `${client.name} left for another room`);
          this.#enterRoom(client, command.room);
        }
        this.#queue(client, this.#codec.welcome(client.name, client.room), client);
        return true;
      case "who": {
        const room = client.room;
        const names = [...(this.#rooms.get(room) ?? [])].map((m) => m.name);
        const answer = (all: string[]) =>
          this.#tell(client, `in ${room}: ${[...new Set(all)].sort().join(", ")}`);
        const cluster = this.#cluster;
        if (!cluster) answer(names);
        else this.#defer(client, async () => answer([...names, ...await cluster.who(room)]));
        return true;
      }
      case "rooms": {
        const counts = new Map([...this.#rooms].map(([r, m]) => [r, m.size]));
        const answer = () => {
          const rooms = [...counts].map(([r, n]) => `${r} (${n})`).sort();
          this.#tell(client, `rooms: ${rooms.join(", ")}`);
        };
        const cluster = this.#cluster;
        if (!cluster) answer();
        else {
          this.#defer(client, async () => {
            for (const [r, n] of await cluster.rooms()) counts.set(r, (counts.get(r) ?? 0) + n);
            answer();
          });
        }
        return true;
      }
      case "help":
        this.#tell(client, HELP_TEXT);
        return true;
      case "quit":
        this.#tell(client, "bye");
        client.quit = true;
        return false;
    }
  }
}
