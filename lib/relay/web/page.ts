/**
 * The relay's chat page, embedded: one HTML document with its style and script inline, no
 * external file, no CDN. It opens a WebSocket to `/ws` on its own origin (`wss:` under https)
 * and is then a relay client like any nc user: each line the relay sends is one text message
 * (`[NAME] text` a message, `* text` a notice), each line typed is sent as is, so `/nick`,
 * `/join ROOM`, `/who` work as for everyone. It keeps who is in the room from the welcome,
 * joined, left, renamed and `/who` notices, shows its own messages (the relay sends a message
 * to everyone but its sender), reconnects by itself with a growing delay (0.5 s doubling to
 * 30 s, with jitter), and shows network text through `textContent` only.
 *
 * {@linkcode servePage} answers `GET /` with it under a Content-Security-Policy that allows
 * nothing but the page's own script and style (by SHA-256 hash) and WebSocket connections to
 * its own origin.
 *
 * @module
 */

import { createHash } from "node:crypto";
import type { RequestHead } from "../../net/http_request.ts";
import { HttpError, HttpStatus, refuseRequest, writeResponse } from "../../net/http_response.ts";
import { closeAfterLastWrite } from "../../net/linger.ts";
import { quote } from "../../log.ts";

/** The page's path, and the path its WebSocket connects to. */
export const PAGE_PATHS = { page: "/", webSocket: "/ws" } as const;

/** The page's style sheet (inline, allowed by its hash). */
export const PAGE_STYLE = `
*{box-sizing:border-box}
html,body{height:100%;margin:0}
body{display:flex;flex-direction:column;font:15px/1.4 system-ui,sans-serif;background:#fafafa;color:#222}
header{display:flex;gap:1em;align-items:baseline;padding:.5em 1em;background:#234;color:#eee}
header b{font-weight:600}
#status{margin-left:auto;font-size:.85em;opacity:.8}
main{flex:1;display:flex;min-height:0}
#log{flex:1;overflow-y:auto;padding:.5em 1em;margin:0}
#who{width:12em;overflow-y:auto;margin:0;padding:.5em 1em;list-style:none;border-left:1px solid #ddd}
.line{white-space:pre-wrap;overflow-wrap:anywhere}
.line span{unicode-bidi:isolate}
.nick{font-weight:600;margin-right:.5em}
.nick::before{content:"["}.nick::after{content:"]"}
.mine .nick{color:#174}
.notice{color:#667;font-style:italic}
form{display:flex;padding:.5em;border-top:1px solid #ddd}
#input{flex:1;font:inherit;padding:.4em}
`;

/** The page's script (inline, allowed by its hash). Plain ES2020, no module, no eval. */
export const PAGE_SCRIPT = `
"use strict";
(() => {
  const $ = (id) => document.getElementById(id);
  const log = $("log"), who = $("who"), input = $("input"), status = $("status");
  const MAX_LINES = 2000, FIRST_RETRY_MS = 500, MAX_RETRY_MS = 30000;
  const people = new Set();
  let me = "", room = "", ws = null, retryMs = FIRST_RETRY_MS, quietWho = 0;

  function el(tag, cls, text) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    return e;
  }
  function add(cls, nick, text) {
    const atEnd = log.scrollTop + log.clientHeight >= log.scrollHeight - 8;
    const row = el("div", "line " + cls);
    if (nick !== null) row.appendChild(el("span", "nick", nick));
    row.appendChild(el("span", "text", text));
    log.appendChild(row);
    while (log.childElementCount > MAX_LINES) log.removeChild(log.firstElementChild);
    if (atEnd) log.scrollTop = log.scrollHeight;
  }
  function showPeople() {
    while (who.firstChild) who.removeChild(who.firstChild);
    for (const p of [...people].sort()) who.appendChild(el("li", "", p));
  }
  function setStatus(text) {
    status.textContent = text;
  }
  function send(line) {
    if (!ws || ws.readyState !== 1) return false;
    ws.send(line);
    return true;
  }
  function notice(text) {
    let m;
    if ((m = /^welcome (\\S+), you are in room (\\S+);/.exec(text))) {
      if (me) people.delete(me);
      me = m[1];
      people.add(me);
      $("name").textContent = me;
      if (m[2] !== room) {
        room = m[2];
        $("room").textContent = room;
        document.title = room + " - sockit";
        people.clear();
        people.add(me);
        quietWho++;
        send("/who");
      }
      showPeople();
    } else if ((m = /^in (\\S+): (.*)$/.exec(text))) {
      if (m[1] === room) {
        people.clear();
        for (const p of m[2].split(", ")) if (p) people.add(p);
        showPeople();
      }
      if (quietWho > 0) {
        quietWho--;
        return;
      }
    } else if ((m = /^(\\S+) joined (\\S+)$/.exec(text))) {
      people.add(m[1]);
      showPeople();
    } else if ((m = /^(\\S+) left\\b/.exec(text))) {
      people.delete(m[1]);
      showPeople();
    } else if ((m = /^(\\S+) is now (\\S+)$/.exec(text))) {
      people.delete(m[1]);
      people.add(m[2]);
      showPeople();
    }
    add("notice", null, "* " + text);
  }
  function receive(line) {
    let m;
    if (line.startsWith("* ")) notice(line.slice(2));
    else if ((m = /^\\[([^\\]]+)\\] ([\\s\\S]*)$/.exec(line))) add("message", m[1], m[2]);
    else add("other", null, line);
  }
  function connect() {
    setStatus("connecting...");
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    const socket = new WebSocket(scheme + "//" + location.host + "/ws");
    ws = socket;
    socket.onopen = () => {
      retryMs = FIRST_RETRY_MS;
      room = "";
      quietWho = 0;
      setStatus("connected");
    };
    socket.onmessage = (event) => {
      if (typeof event.data === "string") receive(event.data);
    };
    socket.onclose = (event) => {
      if (ws !== socket) return;
      ws = null;
      const wait = Math.round(retryMs * (0.75 + Math.random() * 0.5));
      retryMs = Math.min(retryMs * 2, MAX_RETRY_MS);
      add("notice", null, "* connection closed (" + event.code + "), reconnecting in " +
        Math.ceil(wait / 1000) + " s");
      setStatus("disconnected");
      setTimeout(connect, wait);
    };
  }
  $("form").addEventListener("submit", (event) => {
    event.preventDefault();
    const line = input.value;
    if (line === "") return;
    if (!send(line)) {
      add("notice", null, "* not connected: the line was not sent");
      return;
    }
    input.value = "";
    if (!line.startsWith("/")) add("mine", me, line);
    else if (line.startsWith("//")) add("mine", me, line.slice(1));
  });
  connect();
})();
`;

/** The page: a document around {@linkcode PAGE_STYLE} and {@linkcode PAGE_SCRIPT}. */
export const PAGE_HTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>sockit relay</title>
<style>${PAGE_STYLE}</style>
</head>
<body>
<header><span>sockit relay</span><span>you are <b id="name">...</b> in <b id="room">...</b></span><span id="status"></span></header>
<main><div id="log" role="log" aria-live="polite"></div><ul id="who" aria-label="people in the room"></ul></main>
<form id="form" autocomplete="off"><input id="input" maxlength="65536" placeholder="message, or /help" aria-label="message" autofocus></form>
<script>${PAGE_SCRIPT}</script>
</body>
</html>
`;

const encoder = new TextEncoder();
const PAGE_BYTES = encoder.encode(PAGE_HTML);

function sha256Source(text: string): string {
  return `'sha256-${createHash("sha256").update(text).digest("base64")}'`;
}

/** A `Host` value plain enough to name in the policy (no CSP syntax can ride in on it). */
const PLAIN_HOST = /^(?:[A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])(?::\d{1,5})?$/;

/**
 * The Content-Security-Policy of the page: nothing but its own script and style (by hash),
 * WebSocket connections to its own origin (`'self'`, and `ws:`/`wss:` to `host` spelled out for
 * browsers whose `'self'` does not cover them), no framing, no base or form targets.
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert/strict";
 * import { pagePolicy } from "./page.ts";
 * const csp = pagePolicy("127.0.0.1:7070");
 * assert.match(csp, /^default-src 'none'; script-src 'sha256-[A-Za-z0-9+/]+=*';/);
 * assert.match(csp, /connect-src 'self' ws:\/\/127\.0\.0\.1:7070 wss:\/\/127\.0\.0\.1:7070;/);
 * assert.doesNotMatch(pagePolicy("evil;script-src *"), /evil/);
 * ```
 */
export function pagePolicy(host: string | undefined): string {
  const connect = host !== undefined && PLAIN_HOST.test(host)
    ? `'self' ws://${host} wss://${host}`
    : "'self'";
  return [
    "default-src 'none'",
    `script-src ${SCRIPT_HASH}`,
    `style-src ${STYLE_HASH}`,
    `connect-src ${connect}`,
    "base-uri 'none'",
    "form-action 'none'",
    "frame-ancestors 'none'",
  ].join("; ");
}

const SCRIPT_HASH = sha256Source(PAGE_SCRIPT);
const STYLE_HASH = sha256Source(PAGE_STYLE);

/** What {@linkcode servePage} did: answered (and closed), or left `/ws` to the caller. */
export type PageOutcome = "served" | "websocket";

/**
 * Answers one request on the relay's port: `GET /` (or `HEAD /`) with the page, `/ws` not at
 * all (returns `"websocket"`: upgrade it with `acceptWebSocket`), any other method on `/` with
 * 405 and any other path with 404. After an answer the connection is closed (`Connection: close`).
 *
 * @example Serve the page to fetch
 * ```ts
 * import assert from "node:assert/strict";
 * import { BufferedReader } from "../../net/buffered_reader.ts";
 * import { readRequestHead } from "../../net/http_request.ts";
 * import { servePage } from "./page.ts";
 * using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
 * const response = fetch(`http://127.0.0.1:${listener.addr.port}/`);
 * const conn = await listener.accept();
 * const head = await readRequestHead(new BufferedReader(conn));
 * assert.equal(await servePage(conn, head!), "served");
 * const res = await response;
 * assert.equal(res.headers.get("content-type"), "text/html; charset=utf-8");
 * assert.match(await res.text(), /^<!doctype html>/);
 * ```
 */
export async function servePage(conn: Deno.Conn, head: RequestHead): Promise<PageOutcome> {
  const path = head.target.form === "origin" ? head.target.path : undefined;
  if (path === PAGE_PATHS.webSocket) return "websocket";
  if (path !== PAGE_PATHS.page) {
    await refuseRequest(
      conn,
      new HttpError(HttpStatus.NotFound, `Cannot serve ${quote(head.rawTarget)}: not found`),
    );
    return "served";
  }
  if (head.method !== "GET" && head.method !== "HEAD") {
    await refuseRequest(
      conn,
      new HttpError(
        HttpStatus.MethodNotAllowed,
        `Cannot serve ${head.method} /: only GET and HEAD`,
        {
          headers: { Allow: "GET, HEAD" },
        },
      ),
    );
    return "served";
  }
  try {
    await writeResponse(conn, HttpStatus.Ok, {
      headers: {
        "Content-Type": "text/html; charset=utf-8",
        "Cache-Control": "no-store",
        "Content-Security-Policy": pagePolicy(head.headers.get("host")),
        "X-Content-Type-Options": "nosniff",
        "X-Frame-Options": "DENY",
        "Referrer-Policy": "no-referrer",
        Connection: "close",
      },
      body: PAGE_BYTES,
      omitBody: head.method === "HEAD",
    });
  } catch {
    // The browser went away; nothing to answer.
  }
  await closeAfterLastWrite(conn);
  return "served";
}
