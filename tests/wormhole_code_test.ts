import assert from "node:assert/strict";
import {
  CodeFormatError,
  completeWords,
  EVEN_WORDS,
  generateCode,
  MAX_CODE_WORDS,
  normalizeCode,
  ODD_WORDS,
  parseCode,
} from "../lib/wormhole/code.ts";
import { PGP_WORDS } from "../lib/wormhole/wordlist.ts";
import { UsageError } from "../lib/net/errors.ts";
import { DEBIAN_PYTHON, missingPythonModule, wormholeTest } from "./_wormhole.ts";

const decoder = new TextDecoder();

/** A `random` for generateCode that hands out `values` in turn. */
function fixedRandom(values: number[]): (bytes: Uint8Array) => void {
  let next = 0;
  return (bytes) => {
    for (let i = 0; i < bytes.length; i++) bytes[i] = values[next++];
  };
}

Deno.test("the word lists hold 256 distinct lowercase words each, and no word in both", () => {
  assert.equal(PGP_WORDS.length, 256);
  for (const list of [EVEN_WORDS, ODD_WORDS]) {
    assert.equal(list.length, 256);
    assert.equal(new Set(list).size, 256);
    for (const word of list) assert.match(word, /^[a-z]+$/);
  }
  const even = new Set(EVEN_WORDS);
  assert.deepEqual(ODD_WORDS.filter((w) => even.has(w)), []);
});

Deno.test("generateCode() uses only list words, odd-list words first, then alternating", () => {
  const odd = new Set(ODD_WORDS);
  const even = new Set(EVEN_WORDS);
  for (let i = 0; i < 200; i++) {
    const code = generateCode(String(i), { words: 5 });
    const [nameplate, ...words] = code.split("-");
    assert.equal(nameplate, String(i));
    assert.equal(words.length, 5);
    words.forEach((word, position) => {
      assert.ok((position % 2 === 0 ? odd : even).has(word), `${code}: word ${position + 1}`);
    });
    assert.deepEqual(parseCode(code), { nameplate: String(i), code });
  }
  assert.equal(generateCode("4").split("-").length, 3, "two words by default");
});

Deno.test("generateCode() maps each random byte to its word", () => {
  const random = fixedRandom([0x00, 0x00, 0xff, 0xff]);
  assert.equal(generateCode("1", { words: 4, random }), "1-adroitness-aardvark-yucatan-zulu");
  assert.equal(
    generateCode("23", { words: 2, random: fixedRandom([0x09, 0x09]) }),
    "23-applicant-algol",
  );
});

Deno.test("generateCode() rejects a nameplate that is not digits and a bad word count", () => {
  for (const nameplate of ["", "x", "4a", " 4", "-4", "\u0664"]) {
    assert.throws(() => generateCode(nameplate), CodeFormatError, JSON.stringify(nameplate));
  }
  for (const words of [0, -1, 1.5, MAX_CODE_WORDS + 1, NaN]) {
    assert.throws(() => generateCode("4", { words }), RangeError, String(words));
  }
  assert.equal(generateCode("4", { words: MAX_CODE_WORDS }).split("-").length, MAX_CODE_WORDS + 1);
});

Deno.test("normalizeCode() trims and turns whitespace into dashes, and changes nothing else", () => {
  const cases: [string, string][] = [
    ["7-crossover-clockwork", "7-crossover-clockwork"],
    ["  7-crossover-clockwork\n", "7-crossover-clockwork"],
    ["7 crossover clockwork", "7-crossover-clockwork"],
    ["7\tcrossover \u00a0 clockwork", "7-crossover-clockwork"],
    ["7 - crossover- clockwork", "7-crossover-clockwork"],
    ["7-Crossover-CLOCKWORK", "7-Crossover-CLOCKWORK"],
    ["7--crossover", "7--crossover"],
    ["7 -- crossover", "7--crossover"],
    ["7-cafe\u0301", "7-cafe\u0301"], // Not NFC-normalised here: the key layer does that.
    ["7-our secret phrase", "7-our-secret-phrase"],
  ];
  for (const [typed, code] of cases) {
    assert.equal(normalizeCode(typed), code, JSON.stringify(typed));
  }
});

Deno.test("parseCode() returns the nameplate and the normalised code", () => {
  assert.deepEqual(parseCode("7-crossover-clockwork"), {
    nameplate: "7",
    code: "7-crossover-clockwork",
  });
  assert.deepEqual(parseCode(" 123 Crossover "), { nameplate: "123", code: "123-Crossover" });
  assert.deepEqual(parseCode("0-x"), { nameplate: "0", code: "0-x" });
  assert.deepEqual(parseCode("7-not-in-the-list"), { nameplate: "7", code: "7-not-in-the-list" });
});

Deno.test("parseCode() rejects malformed codes with a CodeFormatError that says why", () => {
  const cases: [string, RegExp][] = [
    ["", /it is empty/],
    [" \n ", /it is empty/],
    ["crossover-clockwork", /nameplate "crossover" must be digits/],
    ["-7-crossover", /nameplate "" must be digits/],
    ["7a-crossover", /nameplate "7a" must be digits/],
    ["\u0664-crossover", /nameplate "\u0664" must be digits/],
    ["7", /"7": it has no words/],
    ["7-", /"7-": nothing follows the nameplate/],
    ["7 ", /"7": it has no words/],
    ["x\x1b[2J-a", /nameplate "x\\x1b\[2J" must be digits/],
  ];
  for (const [text, expected] of cases) {
    assert.throws(
      () => parseCode(text),
      (error: Error) =>
        error instanceof CodeFormatError && error instanceof UsageError &&
        expected.test(error.message),
      JSON.stringify(text),
    );
  }
});

Deno.test("completeWords() completes the last word from the list its position uses", () => {
  assert.deepEqual(completeWords("crosso"), ["crossover-"]);
  assert.deepEqual(completeWords("crossover-clo"), ["crossover-clockwork"]);
  const third = completeWords("crossover-clockwork-", { words: 3 });
  assert.equal(third.length, 256, "the whole odd list for the third word");
  assert.ok(third.every((c) => ODD_WORDS.includes(c.slice("crossover-clockwork-".length))));
  assert.deepEqual(completeWords("crossover-clockwork-app", { words: 3 }), [
    "crossover-clockwork-applicant",
  ]);
  assert.deepEqual(completeWords("Crosso"), [], "case-sensitive, as in Python");
  assert.deepEqual(completeWords("ze"), []);
  const all = completeWords("");
  assert.equal(all.length, 256);
  assert.ok(all.every((c) => c.endsWith("-") && ODD_WORDS.includes(c.slice(0, -1))));
  assert.deepEqual(all, [...all].sort());
});

// ---------------------------------------------------------------------------------------------
// Against the Python client's own code.

/** Prints, as JSON, what the Python client's word list and code functions make of `inputs`. */
const PYTHON_CODES = `
import json, sys
from wormhole import _wordlist
from wormhole._code import validate_code
from wormhole.errors import KeyFormatError

inputs = json.loads(sys.argv[1])
values = iter(inputs["random"])
_wordlist.os.urandom = lambda n: bytes([next(values)])
wl = _wordlist.PGPWordList()

def valid(code):
    try:
        validate_code(code)
        return True
    except KeyFormatError:
        return False

print(json.dumps({
    "raw_words": [_wordlist.raw_words["%02X" % i] for i in range(256)],
    "chosen": wl.choose_words(len(inputs["random"])),
    "completions": [sorted(wl.get_completions(p, n)) for p, n in inputs["prefixes"]],
    "valid": [valid(c) for c in inputs["codes"]],
}))
`;

wormholeTest(() => missingPythonModule("wormhole"), {
  name: "the word list, generated words, completions and code checks match the Python client",
  fn: async () => {
    const random = [0x00, 0x01, 0x7f, 0x80, 0xfe, 0xff, 0x3c, 0x3b, 0x09];
    const prefixes: [string, number][] = [
      ["", 2],
      ["a", 2],
      ["crossover-", 2],
      ["crossover-c", 2],
      ["crossover-clockwork-", 3],
      ["zu", 2],
      ["Zu", 2],
      ["yuc", 4],
      ["aardvark-ad", 2],
    ];
    // Codes without whitespace (which we normalise) and without our two extra rules.
    const agreed = ["7-crossover-clockwork", "7-x", "12-Our-Secret", "7--x", "a-b", "-7-x", "7a-b"];
    // Python also accepts these; parseCode() rejects them on purpose (see code.ts).
    const stricter = ["7", "7-", "\u0664-x"];
    const out = await new Deno.Command(DEBIAN_PYTHON, {
      args: [
        "-c",
        PYTHON_CODES,
        JSON.stringify({ random, prefixes, codes: [...agreed, ...stricter] }),
      ],
      stdout: "piped",
      stderr: "piped",
    }).output();
    assert.ok(out.success, decoder.decode(out.stderr));
    const python = JSON.parse(decoder.decode(out.stdout));

    assert.deepEqual(PGP_WORDS, python.raw_words);
    assert.equal(
      generateCode("0", { words: random.length, random: fixedRandom(random) }),
      `0-${python.chosen}`,
    );
    assert.deepEqual(prefixes.map(([p, words]) => completeWords(p, { words })), python.completions);
    const ours = (code: string) => {
      try {
        parseCode(code);
        return true;
      } catch (error) {
        if (error instanceof CodeFormatError) return false;
        throw error;
      }
    };
    assert.deepEqual(agreed.map(ours), python.valid.slice(0, agreed.length));
    assert.deepEqual(python.valid.slice(agreed.length), [true, true, true]);
    assert.deepEqual(stricter.map(ours), [false, false, false]);
  },
});
