/**
 * The relay's chat page in a real browser: headless Chromium (Debian's `chromium`, driven over
 * the DevTools protocol: `_browser.ts`) loads `/` from the relay, joins a room through the
 * page's own input box, and chats with an nc-style line client, over `http://` and over
 * `https://` with the relay's self-signed certificate (trusted for this browser only, by its
 * key). Skips where no chromium is installed.
 *
 * `SOCKIT_SCREENSHOT=FILE` saves the plain-HTTP page as a PNG (the README's picture).
 */

import assert from "node:assert/strict";
import { CHROMIUM, spkiHash, startBrowser } from "./_browser.ts";
import { joinRelay, type SockitProcess, startSockit } from "./_helpers.ts";

const BROWSER_MISSING = CHROMIUM ? "" : " (skipped: chromium is not installed)";

/** The page's texts, read in the browser. */
const NAME = `document.getElementById("name").textContent`;
const ROOM = `document.getElementById("room").textContent`;

/** An expression: the page shows a line of `kind` (`message`, or `mine`: its own) from `nick`. */
function shows(kind: "message" | "mine", nick: string, text: string): string {
  return `[...document.querySelectorAll("#log .line.${kind}")].some((row) =>
    row.querySelector(".nick")?.textContent === ${JSON.stringify(nick)} &&
    row.querySelector(".text")?.textContent === ${JSON.stringify(text)})`;
}

/** An expression: `nick` is in the page's list of people in the room. */
function lists(nick: string): string {
  return `[...document.querySelectorAll("#who li")].some((li) =>
    li.textContent === ${JSON.stringify(nick)})`;
}

/** One chat between the page at `url` and a line client of `relay`, both in room "devs". */
async function chatThroughPage(
  relay: SockitProcess,
  url: string,
  options: { trustSpki?: string[]; screenshot?: string } = {},
): Promise<void> {
  await using browser = await startBrowser({ trustSpki: options.trustSpki });
  const page = await browser.newPage();
  await page.goto(url);
  const webName = await page.waitFor<string>(`${NAME} !== "..." && ${NAME}`);
  assert.match(webName, /^user\d+$/);
  assert.equal(await page.evaluate(`document.getElementById("status").textContent`), "connected");

  await page.typeLine("#input", "/join devs");
  assert.equal(await page.waitFor<string>(`${ROOM} === "devs" && ${ROOM}`), "devs");

  const { client: nc, name: ncName } = await joinRelay(relay.port);
  try {
    await nc.writeLine("/join devs");
    await nc.readLineMatching(/^\* welcome .* room devs/);
    assert.equal(await page.waitFor<boolean>(lists(ncName)), true);

    // Browser to nc: typed into the page's box, UTF-8 intact.
    await page.typeLine("#input", "héllo from chromium ✓");
    assert.equal(
      await nc.readLineMatching(/from chromium/),
      `[${webName}] héllo from chromium ✓`,
    );
    assert.equal(
      await page.waitFor<boolean>(shows("mine", webName, "héllo from chromium ✓")),
      true,
    );

    // nc to browser: shown as text, never as markup.
    const markup = `hi browser <b id="bold">not bold</b> ✓`;
    await nc.writeLine(markup);
    assert.equal(await page.waitFor<boolean>(shows("message", ncName, markup)), true);
    assert.equal(await page.evaluate(`document.getElementById("bold") === null`), true);

    const png = await page.screenshot();
    assert.deepEqual([...png.subarray(0, 4)], [0x89, 0x50, 0x4e, 0x47], "a PNG");
    if (options.screenshot) await Deno.writeFile(options.screenshot, png);

    // nc leaves: the page takes it off the list.
    await nc.writeLine("/quit");
    assert.equal(await page.waitFor<boolean>(`!(${lists(ncName)})`), true);
  } finally {
    await nc[Symbol.asyncDispose]();
  }
}

Deno.test({
  name:
    `relay --web on: Chromium loads the page over http, joins a room and chats with nc${BROWSER_MISSING}`,
  ignore: !CHROMIUM,
  fn: async () => {
    await using relay = await startSockit(["relay", "--port", "0", "--web", "on"]);
    await chatThroughPage(relay, `http://127.0.0.1:${relay.port}/`, {
      screenshot: Deno.env.get("SOCKIT_SCREENSHOT"),
    });
  },
});

Deno.test({
  name:
    `relay --tls: Chromium chats over https and wss with the self-signed relay${BROWSER_MISSING}`,
  ignore: !CHROMIUM,
  fn: async () => {
    const config = await Deno.makeTempDir({ prefix: "sockit-relay-browser-" });
    try {
      await using relay = await startSockit(["relay", "--port", "0", "--tls"], {
        env: { XDG_CONFIG_HOME: config },
      });
      const cert = await Deno.readTextFile(`${config}/sockit/relay-cert.pem`);
      await chatThroughPage(relay, `https://127.0.0.1:${relay.port}/`, {
        trustSpki: [spkiHash(cert)],
      });
    } finally {
      await Deno.remove(config, { recursive: true });
    }
  },
});
