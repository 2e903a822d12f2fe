/**
 * The worker side of {@linkcode WorkerHasher} (`hasher.ts`): holds one incremental SHA-256
 * and answers every message in order. Chunks arrive as views of shared buffers, so nothing is
 * copied; the reply tells the owner that the bytes may be reused.
 *
 * @module
 */

/// <reference no-default-lib="true" />
/// <reference lib="deno.worker" />

import { createHash, type Hash } from "node:crypto";
import type { HasherRequest, HasherResponse } from "./hasher.ts";

let hash: Hash = createHash("sha256");

self.onmessage = (event: MessageEvent<HasherRequest>) => {
  const m = event.data;
  let reply: HasherResponse;
  if (m.op === "update") {
    hash.update(new Uint8Array(m.buffer, m.offset, m.length));
    reply = { id: m.id };
  } else if (m.op === "peek") {
    reply = { id: m.id, digest: new Uint8Array(hash.copy().digest()) };
  } else if (m.op === "digest") {
    reply = { id: m.id, digest: new Uint8Array(hash.digest()) };
    hash = createHash("sha256");
  } else {
    hash = createHash("sha256");
    reply = { id: m.id };
  }
  self.postMessage(reply);
};
