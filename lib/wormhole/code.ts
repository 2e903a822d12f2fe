/**
 * Wormhole codes: `NAMEPLATE-WORD-WORD...`, e.g. `7-crossover-clockwork`.
 *
 * The nameplate (decimal digits) names the rendezvous point on the mailbox server; the whole
 * code, nameplate included, is the SPAKE2 password. Both sides must therefore use the very
 * same string, so this module changes what a human typed only where the Python client would
 * have refused it anyway:
 *
 * - {@linkcode normalizeCode} trims the text and turns each run of whitespace into one `-`
 *   (whitespace next to a `-` is dropped). Python rejects any code that contains a space, so
 *   no code a Python peer can use is changed by this.
 * - Nothing is lowercased or Unicode-normalised here. Python uses a code as typed
 *   (`4-Purple-x` is a different password from `4-purple-x`), and its key layer NFC-normalises
 *   the code before SPAKE2: ours must do the same.
 *
 * {@linkcode parseCode} enforces Python's `validate_code` rules (no spaces; the text before the
 * first `-` is the nameplate and must be digits) plus two of its own: the nameplate must be
 * ASCII digits (Python's `\d` also takes other scripts' digits), and at least one character
 * must follow the `-` (Python's `set_code` also takes `4` and `4-`; its interactive input
 * requires the `-`). Words are not checked against the list: a code set by hand
 * (`wormhole send --code 4-our-secret`) is any text.
 *
 * {@linkcode generateCode} picks words as Python's `PGPWordList.choose_words` does: word 1, 3,
 * 5... from the "odd" (three-syllable) list and word 2, 4... from the "even" (two-syllable)
 * list, one random byte each, lowercased. {@linkcode completeWords} completes a partly typed
 * word the way Python's tab completion does.
 *
 * @module
 */

import { UsageError } from "../net/errors.ts";
import { quote } from "../log.ts";
import { PGP_WORDS } from "./wordlist.ts";

/** Words in a code unless the caller asks otherwise (Python's `--code-length` default). */
export const DEFAULT_CODE_WORDS = 2;
/** Most words {@linkcode generateCode} makes a code of. */
export const MAX_CODE_WORDS = 64;

/** The "even" (two-syllable) words, lowercased, indexed by byte. */
export const EVEN_WORDS: readonly string[] = PGP_WORDS.map(([even]) => even.toLowerCase());
/** The "odd" (three-syllable) words, lowercased, indexed by byte. */
export const ODD_WORDS: readonly string[] = PGP_WORDS.map(([, odd]) => odd.toLowerCase());

const NAMEPLATE = /^[0-9]+$/;

/**
 * A wormhole code (or a nameplate) is malformed. A usage error: the CLI shows it with the
 * command's usage.
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert/strict";
 * import { CodeFormatError, parseCode } from "./code.ts";
 * assert.throws(() => parseCode("purple-sausages"), CodeFormatError);
 * ```
 */
export class CodeFormatError extends UsageError {
  /** Creates a code format error; the message says what is wrong with which text. */
  constructor(message: string) {
    super(message);
    this.name = "CodeFormatError";
  }
}

/** A code split into its parts by {@linkcode parseCode}. */
export interface ParsedCode {
  /** The digits before the first `-`: what is claimed on the mailbox server. */
  nameplate: string;
  /** The whole normalised code, nameplate included: the SPAKE2 password. */
  code: string;
}

/**
 * What a human typed, made into a code: trimmed, each run of whitespace made one `-`, and
 * whitespace around a `-` dropped. Nothing else changes (no lowercasing).
 *
 * @example Spaces become dashes; case is kept
 * ```ts
 * import assert from "node:assert/strict";
 * import { normalizeCode } from "./code.ts";
 * assert.equal(normalizeCode("  7 crossover\tclockwork\n"), "7-crossover-clockwork");
 * assert.equal(normalizeCode("7 - crossover -clockwork"), "7-crossover-clockwork");
 * assert.equal(normalizeCode("7-Crossover-clockwork"), "7-Crossover-clockwork");
 * ```
 */
export function normalizeCode(text: string): string {
  return text.trim().replace(/\s*-\s*/g, "-").replace(/\s+/g, "-");
}

/** Throws {@linkcode CodeFormatError} unless `nameplate` is ASCII digits. */
function checkNameplate(nameplate: string, what: string): void {
  if (!NAMEPLATE.test(nameplate)) {
    throw new CodeFormatError(
      `Cannot use ${what}: nameplate ${quote(nameplate)} must be digits (0-9)`,
    );
  }
}

/**
 * Parses a code a human typed (after {@linkcode normalizeCode}): `{ nameplate, code }`, or a
 * {@linkcode CodeFormatError} that says what is wrong.
 *
 * @example Parse, and reject codes without a numeric nameplate or without words
 * ```ts
 * import assert from "node:assert/strict";
 * import { CodeFormatError, parseCode } from "./code.ts";
 * assert.deepEqual(parseCode(" 7 crossover clockwork "), {
 *   nameplate: "7",
 *   code: "7-crossover-clockwork",
 * });
 * assert.throws(() => parseCode("x7-crossover"), /nameplate "x7" must be digits/);
 * assert.throws(() => parseCode("7"), CodeFormatError);
 * assert.throws(() => parseCode("7-"), CodeFormatError);
 * ```
 */
export function parseCode(text: string): ParsedCode {
  const code = normalizeCode(text);
  if (code === "") throw new CodeFormatError("Cannot use the wormhole code: it is empty");
  const dash = code.indexOf("-");
  if (dash < 0) {
    checkNameplate(code, `code ${quote(code)}`);
    throw new CodeFormatError(
      `Cannot use code ${quote(code)}: it has no words (expected NAMEPLATE-WORD-WORD)`,
    );
  }
  const nameplate = code.slice(0, dash);
  checkNameplate(nameplate, `code ${quote(code)}`);
  if (dash === code.length - 1) {
    throw new CodeFormatError(
      `Cannot use code ${
        quote(code)
      }: nothing follows the nameplate (expected NAMEPLATE-WORD-WORD)`,
    );
  }
  return { nameplate, code };
}

/** Options for {@linkcode generateCode}. */
export interface GenerateCodeOptions {
  /** How many words follow the nameplate (1 to {@linkcode MAX_CODE_WORDS}). @default {2} */
  words?: number;
  /** Fills `bytes` with random values (one byte picks one word). @default {crypto.getRandomValues} */
  random?: (bytes: Uint8Array) => void;
}

/**
 * A new code for `nameplate`: `NAMEPLATE-ODDWORD-EVENWORD-ODDWORD...`, words lowercased, as
 * Python's `choose_words` makes them.
 *
 * @example A code with fixed "random" bytes, and one with real ones
 * ```ts
 * import assert from "node:assert/strict";
 * import { generateCode, parseCode } from "./code.ts";
 * const fixed = (bytes: Uint8Array) => bytes.set([0x3c, 0x3b, 0x09].slice(0, bytes.length));
 * assert.equal(generateCode("7", { random: fixed }), "7-crossover-clockwork");
 * assert.equal(generateCode("7", { words: 3, random: fixed }), "7-crossover-clockwork-applicant");
 * const code = generateCode("12");
 * assert.equal(parseCode(code).nameplate, "12");
 * assert.equal(code.split("-").length, 3);
 * ```
 */
export function generateCode(nameplate: string, options: GenerateCodeOptions = {}): string {
  const { words = DEFAULT_CODE_WORDS, random = (b) => crypto.getRandomValues(b) } = options;
  checkNameplate(nameplate, "nameplate");
  if (!Number.isInteger(words) || words < 1 || words > MAX_CODE_WORDS) {
    throw new RangeError(
      `Cannot generate a code of ${words} words: expected 1 to ${MAX_CODE_WORDS}`,
    );
  }
  const bytes = new Uint8Array(words);
  random(bytes);
  const chosen = [...bytes].map((byte, i) => (i % 2 === 0 ? ODD_WORDS : EVEN_WORDS)[byte]);
  return `${nameplate}-${chosen.join("-")}`;
}

/** Options for {@linkcode completeWords}. */
export interface CompleteWordsOptions {
  /** Words the code has; a completion before the last word ends in `-`. @default {2} */
  words?: number;
}

/**
 * Completions of the last, partly typed word of `prefix` (the words after `NAMEPLATE-`), as
 * Python's `PGPWordList.get_completions` makes them: the whole of `prefix` with the last word
 * completed from the list its position uses, plus `-` when more words follow; sorted. Matching
 * is case-sensitive against the lowercase words, as in Python.
 *
 * @example Complete the first and the second word
 * ```ts
 * import assert from "node:assert/strict";
 * import { completeWords } from "./code.ts";
 * assert.deepEqual(completeWords("crosso"), ["crossover-"]);
 * assert.deepEqual(completeWords("crossover-clo"), ["crossover-clockwork"]);
 * assert.deepEqual(completeWords("crossover-zz"), []);
 * assert.equal(completeWords("").length, 256);
 * ```
 */
export function completeWords(prefix: string, options: CompleteWordsOptions = {}): string[] {
  const { words = DEFAULT_CODE_WORDS } = options;
  const dashes = prefix.split("-").length - 1;
  const list = dashes % 2 === 0 ? ODD_WORDS : EVEN_WORDS;
  const partial = prefix.slice(prefix.lastIndexOf("-") + 1);
  const head = prefix.slice(0, prefix.length - partial.length);
  const tail = dashes + 1 < words ? "-" : "";
  return list.filter((word) => word.startsWith(partial)).map((word) => head + word + tail)
    .sort();
}
