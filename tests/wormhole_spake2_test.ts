import assert from "node:assert/strict";
import { ed25519, ED25519_TORSION_SUBGROUP } from "@noble/curves/ed25519.js";
import {
  arbitraryElement,
  KEY_BYTES,
  MESSAGE_BYTES,
  SCALAR_ENTROPY_BYTES,
  Side,
  Spake2Error,
  type Spake2ErrorReason,
  Spake2Symmetric,
  SYMMETRIC_SEED,
} from "../lib/wormhole/spake2.ts";
import { fromHex, toHex } from "../lib/wormhole/keys.ts";
import { DEBIAN_PYTHON, missingPythonModule, WORMHOLE_APPID, wormholeTest } from "./_wormhole.ts";

const utf8 = (text: string) => new TextEncoder().encode(text);
const APPID = utf8(WORMHOLE_APPID);

const Point = ed25519.Point;

function message(element: Uint8Array, side: number = Side.Symmetric): Uint8Array {
  const out = new Uint8Array(MESSAGE_BYTES);
  out[0] = side;
  out.set(element, 1);
  return out;
}

/** A valid element: what an honest peer sends. */
const honest = () => new Spake2Symmetric(utf8("pw")).start();

interface Hostile {
  element: Uint8Array;
  reason: Spake2ErrorReason;
}

/** Curve points outside the prime-order subgroup, by name, and the reason we give. */
const HOSTILE_ELEMENTS = new Map<string, Hostile>([
  ...ED25519_TORSION_SUBGROUP.map((hex, i): [string, Hostile] => [
    i === 0 ? "the identity" : `small-order point ${i}`,
    { element: fromHex(hex, "torsion point"), reason: "small-order" },
  ]),
  ["the base point plus a point of order 8", {
    element: Point.BASE.add(Point.fromHex(ED25519_TORSION_SUBGROUP[1])).toBytes(),
    reason: "not-in-subgroup",
  }],
]);

/** Fixed entropy: `random` for our side, `entropy_f` for python's. */
function fixedEntropy(first: number): Uint8Array {
  return Uint8Array.from({ length: SCALAR_ENTROPY_BYTES }, (_, i) => (first + i) & 0xff);
}

/**
 * One side of python-spake2's `SPAKE2_Symmetric`. argv: password hex, idSymmetric hex and,
 * optionally, the 64 bytes its `entropy_f` returns, as hex. It prints its start() message as
 * a hex line, reads the peer's message as a hex line, and prints `key HEX` or
 * `error CLASS MESSAGE`.
 */
const PYTHON_SIDE = `
import sys, spake2
password, id_symmetric = bytes.fromhex(sys.argv[1]), bytes.fromhex(sys.argv[2])
kwargs = {}
if len(sys.argv) > 3:
    entropy = bytes.fromhex(sys.argv[3])
    def entropy_f(n):
        assert n == len(entropy), n
        return entropy
    kwargs["entropy_f"] = entropy_f
side = spake2.SPAKE2_Symmetric(password, idSymmetric=id_symmetric, **kwargs)
print(side.start().hex(), flush=True)
inbound = bytes.fromhex(sys.stdin.readline().strip())
try:
    print("key " + side.finish(inbound).hex(), flush=True)
except Exception as e:
    print("error %s %s" % (type(e).__name__, e), flush=True)
`;

interface PythonRun {
  /** Python's start() message. */
  message: Uint8Array;
  /** Python's finish() result: `key HEX` or `error CLASS MESSAGE`. */
  outcome: string;
}

/** Runs one python side: sends it `ours`, returns its message and what finish() gave. */
async function runPython(
  password: Uint8Array,
  idSymmetric: Uint8Array,
  ours: Uint8Array,
  entropy?: Uint8Array,
): Promise<PythonRun> {
  const args = ["-c", PYTHON_SIDE, toHex(password), toHex(idSymmetric)];
  if (entropy) args.push(toHex(entropy));
  const child = new Deno.Command(DEBIAN_PYTHON, {
    args,
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const writer = child.stdin.getWriter();
  await writer.write(utf8(toHex(ours) + "\n"));
  await writer.close();
  const out = await child.output();
  const stderr = new TextDecoder().decode(out.stderr);
  assert.ok(out.success, `python side failed: ${stderr}`);
  const [message, outcome] = new TextDecoder().decode(out.stdout).trim().split("\n");
  return { message: fromHex(message, "python's message"), outcome };
}

const pythonTest = (name: string, fn: () => Promise<void>) =>
  wormholeTest(() => missingPythonModule("spake2"), { name, fn });

// --- against python-spake2 ----------------------------------------------------------------

const CROSS_CHECKS: { what: string; password: Uint8Array; idSymmetric: Uint8Array }[] = [
  { what: "a wormhole code and app id", password: utf8("4-purple-sausages"), idSymmetric: APPID },
  {
    what: "a non-ASCII code",
    password: utf8("7-café-über-ñandú-日本語-🦆"),
    idSymmetric: APPID,
  },
  { what: "an empty password and id", password: new Uint8Array(0), idSymmetric: new Uint8Array(0) },
  {
    what: "non-UTF-8 password bytes and a long id",
    password: Uint8Array.of(0xff, 0x00, 0xfe, 0x80),
    idSymmetric: utf8("x".repeat(500)),
  },
];

for (const { what, password, idSymmetric } of CROSS_CHECKS) {
  pythonTest(`Spake2Symmetric agrees with python-spake2 on the key for ${what}`, async () => {
    const ours = new Spake2Symmetric(password, { idSymmetric });
    const python = await runPython(password, idSymmetric, ours.start());
    assert.equal(python.message.length, MESSAGE_BYTES);
    const key = ours.finish(python.message);
    assert.equal(key.length, KEY_BYTES);
    assert.equal(python.outcome, `key ${toHex(key)}`);
    console.log(`  python key: ${python.outcome.slice(4)}`);
  });
}

pythonTest("with the same entropy, start() is python-spake2's message byte for byte", async () => {
  const password = utf8("4-purple-sausages");
  for (const [mine, theirs] of [[0, 64], [0xa5, 0x5a], [200, 7]]) {
    const ours = new Spake2Symmetric(password, {
      idSymmetric: APPID,
      random: () => fixedEntropy(mine),
    });
    const message = ours.start();
    // python with our entropy must send exactly our message
    const twin = await runPython(password, APPID, message, fixedEntropy(mine));
    assert.equal(toHex(twin.message), toHex(message));
    // and a python peer with other entropy agrees on the key
    const peer = await runPython(password, APPID, message, fixedEntropy(theirs));
    assert.equal(peer.outcome, `key ${toHex(ours.finish(peer.message))}`);
  }
});

pythonTest("arbitraryElement() derives python-spake2's M, N and S", async () => {
  const script = "from spake2.parameters.ed25519 import ParamsEd25519 as p\n" +
    "print(p.M.to_bytes().hex(), p.N.to_bytes().hex(), p.S.to_bytes().hex())";
  const out = await new Deno.Command(DEBIAN_PYTHON, { args: ["-c", script] }).output();
  assert.ok(out.success, new TextDecoder().decode(out.stderr));
  const ours = ["M", "N", SYMMETRIC_SEED].map((seed) => toHex(arbitraryElement(utf8(seed))));
  assert.deepEqual(new TextDecoder().decode(out.stdout).trim().split(" "), ours);
});

pythonTest("a wrong password gives different keys to us and to python-spake2", async () => {
  const ours = new Spake2Symmetric(utf8("4-purple-sausages"), { idSymmetric: APPID });
  const python = await runPython(utf8("4-purple-sausage"), APPID, ours.start());
  const key = ours.finish(python.message);
  assert.match(python.outcome, /^key [0-9a-f]{64}$/);
  assert.notEqual(python.outcome, `key ${toHex(key)}`);
});

pythonTest("python-spake2 also rejects the hostile elements we reject", async () => {
  // Parity: we are never more lenient than python. (Python accepts non-canonical encodings,
  // which we reject; those are left out here.)
  for (const element of [...HOSTILE_ELEMENTS.values()].map((h) => h.element)) {
    const python = await runPython(utf8("pw"), APPID, message(element));
    assert.match(python.outcome, /^error ValueError /, toHex(element));
  }
});

// --- our side alone -----------------------------------------------------------------------

Deno.test("start() and finish() reproduce the python-spake2 known-answer vector", () => {
  // Generated with python-spake2 0.8: SPAKE2_Symmetric(b"4-purple-sausages",
  // idSymmetric=APPID, entropy_f=lambda n: bytes(range(64))) and bytes(range(64, 128)).
  const password = utf8("4-purple-sausages");
  const a = new Spake2Symmetric(password, { idSymmetric: APPID, random: () => fixedEntropy(0) });
  const b = new Spake2Symmetric(password, { idSymmetric: APPID, random: () => fixedEntropy(64) });
  const fromA = a.start(), fromB = b.start();
  assert.equal(toHex(fromA), "5316de5b04d94e269258bc5a09ec1ddf55687fe3251b651296a77ea7a8ff3c70fd");
  assert.equal(toHex(fromB), "53c7b30ffc912f6310e5591f60ef9b314736cbc63dd09e3d8836e6ac95923fe20d");
  const key = "ed34eddf5db5cd00fdb4fa2a857846e3920e3993d0fc7203fefacaa6462b794b";
  assert.equal(toHex(a.finish(fromB)), key);
  assert.equal(toHex(b.finish(fromA)), key);
});

Deno.test("arbitraryElement() gives python-spake2's M, N and S", () => {
  assert.equal(
    toHex(arbitraryElement(utf8("M"))),
    "15cfd18e385952982b6a8f8c7854963b58e34388c8e6dae891db756481a02312",
  );
  assert.equal(
    toHex(arbitraryElement(utf8("N"))),
    "f04f2e7eb734b2a8f8b472eaf9c3c632576ac64aea650b496a8a20ff00e583c3",
  );
  assert.equal(
    toHex(arbitraryElement(utf8(SYMMETRIC_SEED))),
    "6f00dae87c1be1a73b5922ef431cd8f57879569c222d22b1cd71e8546ab8e6f1",
  );
});

function exchange(passwordA: string, passwordB: string, idA = APPID, idB = APPID) {
  const a = new Spake2Symmetric(utf8(passwordA), { idSymmetric: idA });
  const b = new Spake2Symmetric(utf8(passwordB), { idSymmetric: idB });
  const fromA = a.start(), fromB = b.start();
  return { keyA: a.finish(fromB), keyB: b.finish(fromA), fromA, fromB };
}

Deno.test("two sides with the same password get the same 32-byte key", () => {
  const { keyA, keyB, fromA, fromB } = exchange("4-purple-sausages", "4-purple-sausages");
  assert.equal(keyA.length, KEY_BYTES);
  assert.deepEqual(keyA, keyB);
  assert.equal(fromA[0], Side.Symmetric);
  assert.notDeepEqual(fromA, fromB);
});

Deno.test("a wrong password gives each side a different key", () => {
  const { keyA, keyB } = exchange("4-purple-sausages", "4-purple-sausage");
  assert.notDeepEqual(keyA, keyB);
});

Deno.test("a different idSymmetric gives each side a different key", () => {
  const { keyA, keyB } = exchange("4-purple-sausages", "4-purple-sausages", APPID, utf8("other"));
  assert.notDeepEqual(keyA, keyB);
});

Deno.test("two exchanges with the same password get different keys", () => {
  assert.notDeepEqual(exchange("1-a-b", "1-a-b").keyA, exchange("1-a-b", "1-a-b").keyA);
});

// --- malformed and hostile inbound messages -----------------------------------------------

/** Calls finish() on a started instance and returns the Spake2Error it throws. */
function rejection(inbound: Uint8Array, spake?: Spake2Symmetric): Spake2Error {
  if (!spake) {
    spake = new Spake2Symmetric(utf8("pw"));
    spake.start();
  }
  let caught: unknown;
  try {
    spake.finish(inbound);
  } catch (error) {
    caught = error;
  }
  assert.ok(caught instanceof Spake2Error, `expected a Spake2Error, got ${caught}`);
  return caught;
}

Deno.test("finish() rejects a message of the wrong length", () => {
  for (const length of [0, 1, MESSAGE_BYTES - 1, MESSAGE_BYTES + 1, 66]) {
    const inbound = new Uint8Array(length).fill(Side.Symmetric);
    const error = rejection(inbound);
    assert.equal(error.reason, "bad-length");
    assert.match(error.message, new RegExp(`is ${length} bytes, expected ${MESSAGE_BYTES}`));
  }
});

Deno.test("finish() rejects a message with another side byte", () => {
  const element = honest().subarray(1);
  for (
    const [side, says] of [
      [Side.A, /0x41 \(side A of an asymmetric exchange\)/],
      [Side.B, /0x42 \(side B of an asymmetric exchange\)/],
      [0x00, /0x00 \(no known side\)/],
      [0x73, /0x73 \(no known side\)/],
    ] as const
  ) {
    const error = rejection(message(element, side));
    assert.equal(error.reason, "wrong-side");
    assert.match(error.message, says);
    assert.match(error.message, /expected 0x53/);
  }
});

Deno.test("finish() rejects an element that is not a curve point", () => {
  const notOnCurve = new Uint8Array(32);
  notOnCurve[0] = 2; // y = 2: (y^2 - 1) / (d y^2 + 1) is not a square
  assert.throws(() => Point.fromBytes(notOnCurve));
  const error = rejection(message(notOnCurve));
  assert.equal(error.reason, "not-a-point");
  assert.match(error.message, /is not a canonical Ed25519 point encoding/);
});

Deno.test("finish() rejects non-canonical point encodings that python-spake2 accepts", () => {
  const encodings = [
    "eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f", // y = p + 1
    "0100000000000000000000000000000000000000000000000000000000000080", // x = 0, sign bit 1
  ];
  for (const hex of encodings) {
    const error = rejection(message(fromHex(hex, "encoding")));
    assert.equal(error.reason, "not-a-point", hex);
    assert.match(error.message, new RegExp(hex));
  }
});

Deno.test("finish() rejects the identity, small-order points and points with torsion", () => {
  for (const [what, { element, reason }] of HOSTILE_ELEMENTS) {
    const error = rejection(message(element));
    assert.equal(error.reason, reason, what);
    const says = what === "the identity"
      ? /is the identity point/
      : reason === "small-order"
      ? /is a point of small order/
      : /is not in the prime-order subgroup/;
    assert.match(error.message, says, what);
  }
});

Deno.test("finish() rejects our own message reflected back", () => {
  const spake = new Spake2Symmetric(utf8("pw"), { idSymmetric: APPID });
  const error = rejection(spake.start(), spake);
  assert.equal(error.reason, "reflection");
  assert.match(error.message, /our own outbound message reflected back/);
});

// --- call order -----------------------------------------------------------------------------

function outOfOrder(fn: () => unknown, says: RegExp): void {
  assert.throws(fn, (error: unknown) => {
    assert.ok(error instanceof Spake2Error);
    assert.equal(error.reason, "out-of-order");
    assert.match(error.message, says);
    return true;
  });
}

Deno.test("start() can only be called once", () => {
  const spake = new Spake2Symmetric(utf8("pw"));
  spake.start();
  outOfOrder(() => spake.start(), /start\(\) was already called/);
});

Deno.test("finish() before start() is refused, and start() still works after it", () => {
  const spake = new Spake2Symmetric(utf8("pw"));
  outOfOrder(() => spake.finish(honest()), /start\(\) was not called/);
  assert.equal(spake.start().length, MESSAGE_BYTES);
});

Deno.test("finish() can only be called once, even when the first call failed", () => {
  const done = new Spake2Symmetric(utf8("pw"));
  done.start();
  done.finish(honest());
  outOfOrder(() => done.finish(honest()), /finish\(\) was already called/);

  const failed = new Spake2Symmetric(utf8("pw"));
  failed.start();
  assert.throws(() => failed.finish(new Uint8Array(3)), Spake2Error);
  outOfOrder(() => failed.finish(honest()), /finish\(\) was already called/);
});

Deno.test("start() refuses a random source that returns the wrong number of bytes", () => {
  const spake = new Spake2Symmetric(utf8("pw"), { random: () => new Uint8Array(32) });
  assert.throws(() => spake.start(), /random\(64\) returned 32 bytes/);
});
