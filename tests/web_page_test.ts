/**
 * Tests of the relay's embedded chat page (`lib/relay/web/page.ts`): what `servePage` answers
 * over real loopback sockets (curl for the headers as a browser sees them, fetch for the
 * body), that the page is self-contained and its policy allows exactly its own script and
 * style, that the script parses, and what the script does, run against a small fake DOM and a
 * fake WebSocket: names, rooms, people, escaping, sending and reconnecting.
 */

import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { acceptWebSocket } from "../lib/net/websocket.ts";
import { PAGE_HTML, PAGE_SCRIPT, PAGE_STYLE, servePage } from "../lib/relay/web/page.ts";
import { EVENT_TIMEOUT_MS, peerTest } from "./_helpers.ts";
import { EventQueue, runCurl, startHttpTestServer } from "./_http.ts";
import { withTimeout } from "../lib/net/deadline.ts";

/** A server on the relay's model: the page, 404s, and `/ws` upgraded to an echo. */
function startPageServer() {
  return startHttpTestServer(async ({ conn, reader, head }) => {
    if ((await servePage(conn, head)) === "served") return;
    const ws = await acceptWebSocket(conn, head, { reader });
    let message;
    while ((message = await ws.readMessage()) !== null) {
      if (message.type === "text") await ws.sendText(message.data);
    }
  });
}

const sha256 = (text: string) => `'sha256-${createHash("sha256").update(text).digest("base64")}'`;

/** Splits curl's `--include` output into its status line, headers (lowercased names) and body. */
function splitResponse(text: string) {
  const end = text.indexOf("\r\n\r\n");
  const [status, ...lines] = text.slice(0, end).split("\r\n");
  const headers = new Map(lines.map((l) => {
    const i = l.indexOf(":");
    return [l.slice(0, i).toLowerCase(), l.slice(i + 1).trim()] as const;
  }));
  return { status, headers, body: text.slice(end + 4) };
}

peerTest("curl", {
  name: "servePage() answers curl -i --http1.1 / with the page and its security headers",
  fn: async () => {
    await using server = startPageServer();
    const res = await runCurl(["--include", "--http1.1", `http://127.0.0.1:${server.port}/`]);
    assert.equal(res.code, 0, res.stderr);
    const { status, headers, body } = splitResponse(res.stdout);
    assert.equal(status, "HTTP/1.1 200 OK");
    assert.equal(headers.get("content-type"), "text/html; charset=utf-8");
    assert.equal(Number(headers.get("content-length")), new TextEncoder().encode(body).length);
    assert.equal(headers.get("cache-control"), "no-store");
    assert.equal(headers.get("x-content-type-options"), "nosniff");
    assert.equal(headers.get("connection"), "close");
    const csp = headers.get("content-security-policy") ?? "";
    assert.match(csp, /^default-src 'none'; /);
    assert.ok(csp.includes(`script-src ${sha256(PAGE_SCRIPT)};`), csp);
    assert.ok(csp.includes(`style-src ${sha256(PAGE_STYLE)};`), csp);
    assert.ok(
      csp.includes(
        `connect-src 'self' ws://127.0.0.1:${server.port} wss://127.0.0.1:${server.port};`,
      ),
      csp,
    );
    assert.match(csp, /frame-ancestors 'none'/);
    assert.equal(body, PAGE_HTML);
  },
});

peerTest("curl", {
  name: "servePage() answers HEAD without a body, 404 elsewhere and 405 for other methods",
  fn: async () => {
    await using server = startPageServer();
    const base = `http://127.0.0.1:${server.port}`;
    const head = splitResponse((await runCurl(["--head", "--http1.1", `${base}/`])).stdout);
    assert.equal(head.status, "HTTP/1.1 200 OK");
    assert.ok(Number(head.headers.get("content-length")) > 1000);
    assert.equal(head.body, "");
    const missing = await runCurl(["--include", "--http1.1", `${base}/index.html`]);
    assert.match(missing.stdout, /^HTTP\/1\.1 404 Not Found\r\n/);
    assert.match(missing.stdout, /Cannot serve "\/index\.html": not found\n$/);
    const post = await runCurl(["--include", "--http1.1", "--data", "x=1", `${base}/`]);
    assert.match(post.stdout, /^HTTP\/1\.1 405 Method Not Allowed\r\n/);
    assert.match(post.stdout, /\r\nAllow: GET, HEAD\r\n/);
  },
});

Deno.test("the page is self-contained: no external URL, no inline handler, its script parses", async () => {
  await using server = startPageServer();
  const res = await fetch(`http://127.0.0.1:${server.port}/`);
  const html = await res.text();
  assert.doesNotMatch(html, /https?:\/\//i);
  assert.doesNotMatch(html, /\b(src|href|action)\s*=/i);
  assert.doesNotMatch(html, /<(link|img|iframe|object|embed)\b|@import|url\(/i);
  assert.doesNotMatch(html, /\son[a-z]+\s*=/i); // No inline event handler attributes.
  const scripts = [...html.matchAll(/<script>([^]*?)<\/script>/g)].map((m) => m[1]);
  assert.deepEqual(scripts, [PAGE_SCRIPT]);
  new Function(scripts[0]); // Throws a SyntaxError if it does not parse.
  const csp = res.headers.get("content-security-policy") ?? "";
  assert.ok(csp.includes(sha256(scripts[0])));
  const styles = [...html.matchAll(/<style>([^]*?)<\/style>/g)].map((m) => m[1]);
  assert.ok(csp.includes(sha256(styles[0])));
  // Network text is shown with textContent only.
  assert.doesNotMatch(PAGE_SCRIPT, /innerHTML|outerHTML|insertAdjacentHTML|document\.write|eval\(/);
});

Deno.test("servePage() leaves /ws to the WebSocket upgrade on the same port", async () => {
  await using server = startPageServer();
  const ws = new WebSocket(`ws://127.0.0.1:${server.port}/ws`);
  const messages = new EventQueue<string>();
  const closed = new Promise((resolve) => (ws.onclose = resolve));
  ws.onmessage = (e) => messages.push(e.data);
  ws.onopen = () => ws.send("hi");
  assert.equal(await messages.next("the echo"), "hi");
  ws.close(1000);
  await withTimeout(closed, EVENT_TIMEOUT_MS, { what: "the close" });
});

/** A DOM element with what the page's script uses; `innerHTML` throws. */
class FakeElement {
  className = "";
  value = "";
  scrollTop = 0;
  clientHeight = 100;
  children: FakeElement[] = [];
  listeners = new Map<string, (event: unknown) => void>();
  #text = "";
  constructor(readonly tag: string, readonly id = "") {}
  get textContent(): string {
    return this.#text + this.children.map((c) => c.textContent).join(" ");
  }
  set textContent(text: string) {
    this.#text = text;
    this.children = [];
  }
  set innerHTML(_: string) {
    throw new Error("the page must not set innerHTML");
  }
  get scrollHeight(): number {
    return this.children.length * 20;
  }
  get childElementCount(): number {
    return this.children.length;
  }
  get firstElementChild(): FakeElement | undefined {
    return this.children[0];
  }
  get firstChild(): FakeElement | undefined {
    return this.children[0];
  }
  appendChild(child: FakeElement): void {
    this.children.push(child);
  }
  removeChild(child: FakeElement): void {
    this.children = this.children.filter((c) => c !== child);
  }
  addEventListener(type: string, fn: (event: unknown) => void): void {
    this.listeners.set(type, fn);
  }
}

/** A WebSocket the test drives: `open()`, `receive(line)`, `drop(code)`. */
class FakeWebSocket {
  static made: FakeWebSocket[] = [];
  readyState = 0;
  sent: string[] = [];
  onopen?: () => void;
  onmessage?: (event: { data: unknown }) => void;
  onclose?: (event: { code: number }) => void;
  constructor(readonly url: string) {
    FakeWebSocket.made.push(this);
  }
  send(data: string): void {
    this.sent.push(data);
  }
  open(): void {
    this.readyState = 1;
    this.onopen?.();
  }
  receive(data: unknown): void {
    this.onmessage?.({ data });
  }
  drop(code: number): void {
    this.readyState = 3;
    this.onclose?.({ code });
  }
}

/** Runs the page's script against the fakes, as if loaded from `origin`. */
function runPage(location: { protocol: string; host: string }) {
  const ids = ["log", "who", "input", "status", "name", "room", "form"];
  const byId = new Map(ids.map((id) => [id, new FakeElement(id === "who" ? "ul" : "div", id)]));
  const document = {
    title: "",
    getElementById: (id: string) => byId.get(id),
    createElement: (tag: string) => new FakeElement(tag),
  };
  const timers: { fn: () => void; ms: number }[] = [];
  const setTimeout = (fn: () => void, ms: number) => timers.push({ fn, ms });
  FakeWebSocket.made = [];
  new Function("document", "WebSocket", "location", "setTimeout", PAGE_SCRIPT)(
    document,
    FakeWebSocket,
    location,
    setTimeout,
  );
  const el = (id: string) => byId.get(id)!;
  const rows = () => el("log").children.map((r) => ({ cls: r.className, text: r.textContent }));
  const people = () => el("who").children.map((li) => li.textContent);
  const submit = (line: string) => {
    el("input").value = line;
    el("form").listeners.get("submit")!({ preventDefault() {} });
  };
  return { document, el, rows, people, submit, timers, sockets: FakeWebSocket.made };
}

Deno.test("the page's script shows names, rooms and people, escapes nothing away, and sends lines", () => {
  const page = runPage({ protocol: "https:", host: "chat.example:8443" });
  const [ws] = page.sockets;
  assert.equal(ws.url, "wss://chat.example:8443/ws");
  ws.open();
  assert.equal(page.el("status").textContent, "connected");
  ws.receive("* welcome user3, you are in room lobby; /help lists commands");
  assert.equal(page.el("name").textContent, "user3");
  assert.equal(page.el("room").textContent, "lobby");
  assert.equal(page.document.title, "lobby - sockit");
  assert.deepEqual(ws.sent, ["/who"]); // Asked quietly, to list who is there.
  ws.receive("* in lobby: user1, user3");
  assert.deepEqual(page.people(), ["user1", "user3"]);
  ws.receive("[user1] <img src=x onerror=alert(1)> \u202eevil");
  ws.receive("* user2 joined lobby");
  ws.receive("* user1 left (peer closed)");
  ws.receive("* user2 is now bob");
  assert.deepEqual(page.people(), ["bob", "user3"]);
  page.submit("hi all");
  page.submit("//slash");
  page.submit("/nick carol");
  page.submit("");
  assert.deepEqual(ws.sent, ["/who", "hi all", "//slash", "/nick carol"]);
  ws.receive("* welcome carol, you are in room lobby; /help lists commands");
  assert.deepEqual(page.people(), ["bob", "carol"]);
  ws.receive("* in lobby: bob, carol"); // Asked for by the user this time: shown.
  assert.deepEqual(page.rows(), [
    { cls: "line notice", text: "* welcome user3, you are in room lobby; /help lists commands" },
    { cls: "line message", text: "user1 <img src=x onerror=alert(1)> \u202eevil" },
    { cls: "line notice", text: "* user2 joined lobby" },
    { cls: "line notice", text: "* user1 left (peer closed)" },
    { cls: "line notice", text: "* user2 is now bob" },
    { cls: "line mine", text: "user3 hi all" },
    { cls: "line mine", text: "user3 /slash" },
    { cls: "line notice", text: "* welcome carol, you are in room lobby; /help lists commands" },
    { cls: "line notice", text: "* in lobby: bob, carol" },
  ]);
  // The message's parts: a nick element and a text element, each set with textContent.
  const message = page.el("log").children[1];
  assert.deepEqual(message.children.map((c) => [c.className, c.textContent]), [
    ["nick", "user1"],
    ["text", "<img src=x onerror=alert(1)> \u202eevil"],
  ]);
});

Deno.test("the page's script reconnects with a doubling, jittered delay, reset once connected", () => {
  const page = runPage({ protocol: "http:", host: "127.0.0.1:7070" });
  assert.equal(page.sockets[0].url, "ws://127.0.0.1:7070/ws");
  const delays: number[] = [];
  for (let i = 0; i < 8; i++) {
    page.sockets.at(-1)!.drop(1006);
    const timer = page.timers.shift()!;
    delays.push(timer.ms);
    timer.fn(); // Reconnect now.
  }
  assert.equal(page.sockets.length, 9);
  const base = [500, 1000, 2000, 4000, 8000, 16000, 30000, 30000];
  delays.forEach((ms, i) => assert.ok(ms >= base[i] * 0.75 && ms <= base[i] * 1.25, `${i}: ${ms}`));
  page.submit("lost?");
  assert.deepEqual(page.sockets.at(-1)!.sent, []);
  assert.match(page.rows().at(-1)!.text, /not connected/);
  page.sockets.at(-1)!.open();
  page.sockets.at(-1)!.drop(1001);
  const ms = page.timers.shift()!.ms;
  assert.ok(ms >= 375 && ms <= 625, `after a good connection: ${ms}`);
  assert.match(page.rows().at(-1)!.text, /connection closed \(1001\), reconnecting in 1 s/);
});
