/**
 * The NATS subjects a relay cluster uses, and how a room name becomes one subject token.
 *
 * | subject                          | carries                                            | who subscribes                          |
 * | -------------------------------- | -------------------------------------------------- | --------------------------------------- |
 * | `sockit.room.<room>.msg`         | message envelopes (`envelope.ts`)                  | nodes with local members in the room    |
 * | `sockit.room.<room>.presence`    | joins, leaves, renames, a node's member list       | nodes with local members in the room    |
 * | `sockit.room.<room>.who`         | `/who` requests (each node answers its members)    | nodes with local members in the room    |
 * | `sockit.nodes`                   | heartbeats and goodbyes of every node              | every node                              |
 * | `sockit.rooms`                   | `/rooms` requests (each node answers its rooms)    | every node                              |
 * | `sockit.names`                   | name claims (`/nick` across the cluster)           | every node                              |
 *
 * A room name (`[#]` then letters, digits, `_`, `.`, `-`: `client_commands.ts`) may hold a
 * `.`, which separates NATS tokens, and a `#`. {@linkcode roomToken} keeps `A-Z a-z 0-9 _ -`
 * and writes every other character as `~` and its code in hex, so `#ops.eu` is `~23ops~2eeu`;
 * `~` never occurs in a room name, so two rooms never share a token.
 *
 * @module
 */

/** Every subject starts with this. */
export const SUBJECT_PREFIX = "sockit";

/** The cluster-wide subjects (every node subscribes to them). */
export const CLUSTER_SUBJECTS = {
  nodes: `${SUBJECT_PREFIX}.nodes`,
  rooms: `${SUBJECT_PREFIX}.rooms`,
  names: `${SUBJECT_PREFIX}.names`,
} as const;

/**
 * The subject token for `room`.
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert/strict";
 * import { roomToken } from "./subjects.ts";
 * assert.equal(roomToken("lobby"), "lobby");
 * assert.equal(roomToken("#ops.eu"), "~23ops~2eeu");
 * ```
 */
export function roomToken(room: string): string {
  return room.replace(
    /[^A-Za-z0-9_-]/g,
    (c) => `~${c.charCodeAt(0).toString(16).padStart(2, "0")}`,
  );
}

/**
 * The three subjects of `room`.
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert/strict";
 * import { roomSubjects } from "./subjects.ts";
 * assert.equal(roomSubjects("#ops").msg, "sockit.room.~23ops.msg");
 * ```
 */
export function roomSubjects(room: string): { msg: string; presence: string; who: string } {
  const base = `${SUBJECT_PREFIX}.room.${roomToken(room)}`;
  return { msg: `${base}.msg`, presence: `${base}.presence`, who: `${base}.who` };
}
