/**
 * The code mode of `sockit send` and `sockit recv`: how the code is obtained (never from argv
 * unless the user put it there: `SOCKIT_CODE`, or a prompt), what is printed, and the exit
 * codes. The direct mode stays in `lib/transfer/command.ts`, which loads this module only when
 * `mode.ts` says a code is used (it pulls in the curves, ciphers and zip code).
 *
 * @module
 */

import { intOption, listOption, type OptionValues } from "../command.ts";
import { UsageError } from "../net/errors.ts";
import { type Logger, printable } from "../log.ts";
import { formatBytes } from "../transfer/human.ts";
import {
  BarReporter,
  JsonReporter,
  LineReporter,
  type ReceiveProgress,
  type SendReporter,
} from "../transfer/progress.ts";
import { TRANSFER_VERSION } from "../transfer/protocol.ts";
import type { WalkResult } from "../transfer/walk.ts";
import { DEFAULT_CODE_WORDS, generateCode, MAX_CODE_WORDS } from "./code.ts";
import { WrongCodeError } from "./keys.ts";
import type { Offer } from "./offer.ts";
import { WORMHOLE_DEFAULTS, WORMHOLE_ENV } from "./options.ts";
import { refuseDirectOptions } from "./mode.ts";
import { OfferRefusedError, receiveThroughWormhole } from "./receive.ts";
import { sendThroughWormhole } from "./send.ts";
import { RecordCipher, type RecordCipherName, Transit, type TransitRole } from "./transit.ts";
import { Wormhole } from "./wormhole.ts";
import { PeerGaveUpError } from "./peer_transit.ts";

/** Record ciphers this sockit offers another sockit, best first (measured in transit_cipher.ts). */
export const SOCKIT_CIPHERS: readonly RecordCipherName[] = [
  RecordCipher.ChaCha20Poly1305,
  RecordCipher.SecretBox,
];

/** What sockit announces in `app_versions`, so another sockit switches to its own protocol. */
export function sockitAppVersions(): Record<string, unknown> {
  return { sockit: { transfer: TRANSFER_VERSION, ciphers: [...SOCKIT_CIPHERS] } };
}

function flag(values: OptionValues, name: string): boolean {
  return values[name] === true;
}

/** The mailbox URL, the transit relays and the relay-only switch, from options and env. */
function servers(values: OptionValues): {
  mailboxUrl: string;
  relays: string[];
  forceRelay: boolean;
} {
  const mailboxUrl = (values.mailbox as string | undefined) ??
    Deno.env.get(WORMHOLE_ENV.mailbox) ?? WORMHOLE_DEFAULTS.mailboxUrl;
  let relays = listOption(values, "transit");
  if (relays.length === 0) {
    const env = Deno.env.get(WORMHOLE_ENV.transit);
    relays = env ? env.split(",").map((s) => s.trim()).filter(Boolean) : [];
  }
  if (relays.length === 0) relays = [...WORMHOLE_DEFAULTS.transitRelays];
  return { mailboxUrl, relays, forceRelay: flag(values, "force-relay") };
}

function transitFactory(
  role: TransitRole,
  values: OptionValues,
  log: Logger,
): () => Transit {
  const { relays, forceRelay } = servers(values);
  return () =>
    new Transit(role, {
      relays,
      forceRelay,
      timeoutMs: WORMHOLE_DEFAULTS.transitTimeoutMs,
      logger: log,
    });
}

/** Connects to the mailbox server of `values` as sockit (announcing its transfer protocol). */
function openWormhole(values: OptionValues, log: Logger): Promise<Wormhole> {
  return Wormhole.open(servers(values).mailboxUrl, {
    appVersions: sockitAppVersions(),
    serverTimeoutMs: WORMHOLE_DEFAULTS.serverTimeoutMs,
    onMotd: (motd) => log.info(`mailbox server says: ${printable(motd)}`),
  });
}

/** Asks `question` on the terminal; true for y/yes. */
function askYes(question: string): boolean {
  const answer = prompt(`${question} (y/N)`);
  return answer !== null && /^\s*y(es)?\s*$/i.test(answer);
}

/** Shows the verifier and, on a terminal, asks whether it matches. */
function checkVerifier(values: OptionValues, verifier: string, log: Logger): void {
  if (!flag(values, "verify")) return;
  // In full, as the Python client prints it, so the two can be compared.
  const shown = verifier;
  log.info(`Verifier ${shown}: it must be the same on the other side`);
  if (!Deno.stdin.isTerminal()) throw new UsageError("--verify needs a terminal to ask on");
  if (!askYes(`Verifier ${shown} matches the other side's?`)) {
    throw new Error("verification rejected, abandoning transfer");
  }
}

function describeOffer(offer: Offer): string {
  switch (offer.kind) {
    case "message":
      return "a text message";
    case "file":
      return `file ${printable(offer.filename)} (${formatBytes(offer.filesize)})`;
    case "directory":
      return `folder ${printable(offer.dirname)} (${offer.numfiles} entries, ${
        formatBytes(offer.numbytes)
      })`;
    case "sockit":
      return `${offer.names.map((n) => printable(n)).join(", ")} (${offer.numfiles} files, ${
        formatBytes(offer.numbytes)
      })`;
  }
}

/**
 * Runs `work` on a confirmed wormhole; when it fails for a reason of our own (a refused
 * verifier, an offer the other client cannot take, a broken transfer), the other side hears
 * it as an `error` message instead of waiting for us. Errors the other side sent, and
 * refusals already sent, are not echoed back.
 */
async function tellingPeer<T>(wormhole: Wormhole, work: () => Promise<T>): Promise<T> {
  try {
    return await work();
  } catch (error) {
    if (!(error instanceof PeerGaveUpError) && !(error instanceof OfferRefusedError)) {
      const text = error instanceof Error ? error.message : String(error);
      // Once the transit is up the mailbox is closed: then there is nobody to tell here.
      await wormhole.send({ error: text }).catch(() => {});
    }
    throw error;
  }
}

function wrongCode(error: unknown): never {
  if (error instanceof WrongCodeError) {
    throw new Error(
      "wrong code (or someone tried to guess it): nothing was transferred; the code is used up",
    );
  }
  throw error;
}

/** `sockit send` with a code: the text or the walked paths. Resolves the exit code. */
export async function runCodeSend(
  values: OptionValues,
  source: { text: string } | { walk: WalkResult; paths: string[] },
  options: { log: Logger; signal: AbortSignal },
): Promise<number> {
  const { log, signal } = options;
  const words = intOption(values, "code-length", {
    fallback: DEFAULT_CODE_WORDS,
    min: 1,
    max: MAX_CODE_WORDS,
  });
  const json = flag(values, "json");
  const given = (values.code as string | undefined) ?? Deno.env.get(WORMHOLE_ENV.code);
  const wormhole = await openWormhole(values, log);
  try {
    let code: string;
    if (given !== undefined) {
      await wormhole.setCode(given);
      code = given;
    } else {
      code = await wormhole.allocateCode((nameplate) => generateCode(nameplate, { words }));
    }
    if (json) {
      Deno.stdout.writeSync(
        new TextEncoder().encode(JSON.stringify({ event: "code", code }) + "\n"),
      );
    }
    if (given === undefined) {
      log.info(`Wormhole code is: ${code}`);
      log.info(
        `On the other computer run: sockit recv (and type the code), or: wormhole receive ${code}`,
      );
    }
    const confirmed = await wormhole.confirm({ signal }).catch(wrongCode);
    return await tellingPeer(wormhole, async () => {
      checkVerifier(values, confirmed.verifier, log);
      let reporter: SendReporter | undefined;
      if (!("text" in source)) {
        if (json) reporter = new JsonReporter();
        else if (Deno.stderr.isTerminal() && !flag(values, "quiet")) {
          reporter = new BarReporter(log);
        } else reporter = new LineReporter(log);
      }
      const result = await sendThroughWormhole(wormhole, confirmed.peerAppVersions, source, {
        openTransit: transitFactory("sender", values, log),
        transitTimeoutMs: WORMHOLE_DEFAULTS.transitTimeoutMs,
        ackTimeoutMs: WORMHOLE_DEFAULTS.ackTimeoutMs,
        reporter,
        verify: !flag(values, "no-verify"),
        signal,
        ciphers: SOCKIT_CIPHERS,
      });
      if ("text" in source) log.info("text message sent");
      if (result.route) log.debug(`transit: ${result.route}`);
      return result.summary === undefined || result.summary.ok ? 0 : 1;
    });
  } finally {
    await wormhole.close("errory");
  }
}

/** Where the code comes from: the argument, `SOCKIT_CODE`, or a prompt on a terminal. */
function receiveCode(positionals: string[]): string {
  if (positionals.length > 1) throw new UsageError("recv takes one CODE");
  const code = positionals[0] ?? Deno.env.get(WORMHOLE_ENV.code);
  if (code !== undefined) return code;
  if (!Deno.stdin.isTerminal()) {
    throw new UsageError(
      `recv needs a code: as an argument, in ${WORMHOLE_ENV.code}, or typed on a terminal ` +
        "(or --port to listen for direct senders)",
    );
  }
  const typed = prompt("Enter the wormhole code:");
  if (!typed) throw new UsageError("no code given");
  return typed;
}

/** `sockit recv` with a code. Resolves the exit code. */
export async function runCodeRecv(
  values: OptionValues,
  positionals: string[],
  options: {
    log: Logger;
    signal: AbortSignal;
    dir: string;
    overwrite: boolean;
    rename: boolean;
    sync: boolean;
    maxFileSize: number;
    /** The status line on a terminal. */
    progress?: ReceiveProgress;
  },
): Promise<number> {
  refuseDirectOptions(values, positionals);
  const { log, signal } = options;
  const code = receiveCode(positionals);
  const wormhole = await openWormhole(values, log);
  try {
    await wormhole.setCode(code);
    const confirmed = await wormhole.confirm({ signal }).catch(wrongCode);
    return await tellingPeer(wormhole, async () => {
      checkVerifier(values, confirmed.verifier, log);
      const result = await receiveThroughWormhole(wormhole, {
        dir: options.dir,
        openTransit: transitFactory("receiver", values, log),
        transitTimeoutMs: WORMHOLE_DEFAULTS.transitTimeoutMs,
        overwrite: options.overwrite,
        rename: options.rename,
        sync: options.sync,
        maxFileSize: options.maxFileSize,
        logger: log,
        progress: options.progress,
        signal,
        onText: (text) => {
          // On a terminal, control sequences from the peer are shown escaped, lines kept.
          const shown = Deno.stdout.isTerminal()
            ? text.split("\n").map((line) => printable(line)).join("\n")
            : text;
          Deno.stdout.writeSync(
            new TextEncoder().encode(shown.endsWith("\n") ? shown : `${shown}\n`),
          );
        },
        accept: (offer) => {
          log.info(`Offered: ${describeOffer(offer)}`);
          if (flag(values, "yes")) return Promise.resolve(true);
          if (!Deno.stdin.isTerminal()) {
            throw new OfferRefusedError(
              "no terminal to ask on: run recv with --yes to accept offers",
            );
          }
          return Promise.resolve(askYes("Accept?"));
        },
      });
      if (!result.accepted) {
        log.info("declined: nothing was written");
        return 1;
      }
      if (result.storedAs) log.info(`stored ${printable(result.storedAs)}`);
      if (result.route) log.debug(`transit: ${result.route}`);
      if (flag(values, "json")) {
        const out = { event: "summary", storedAs: result.storedAs, ...result.summary };
        Deno.stdout.writeSync(new TextEncoder().encode(JSON.stringify(out) + "\n"));
      }
      return result.summary === undefined || result.summary.ok ? 0 : 1;
    });
  } finally {
    await wormhole.close("errory");
  }
}
