/**
 * The Python literal reader: what the seed's clients sent with `str(dict)` is read as data,
 * and nothing else (no names, calls or expressions) is accepted.
 */

import assert from "node:assert/strict";
import { MAX_DEPTH, parsePythonLiteral, PythonLiteralError } from "../../lib/wire/python_literal.ts";

function literalError(message: string) {
  return (error: unknown) => {
    assert.ok(error instanceof PythonLiteralError, `expected a PythonLiteralError, got ${error}`);
    assert.ok(error instanceof SyntaxError);
    assert.equal(error.name, "PythonLiteralError");
    assert.equal(error.message, message);
    return true;
  };
}

Deno.test("the seed's subscription dict, as Python prints it, reads as the equivalent object", () => {
  const text =
    `{'unit_id': 12, 'handle': 'real', 'db_code': 'plant1', 'config': "{'HOST': 'db', 'PASSWORD': 'pw'}"}`;
  assert.deepEqual(parsePythonLiteral(text), {
    unit_id: 12,
    handle: "real",
    db_code: "plant1",
    config: "{'HOST': 'db', 'PASSWORD': 'pw'}",
  });
});

Deno.test("True, False and None read as true, false and null", () => {
  assert.deepEqual(parsePythonLiteral("[True, False, None]"), [true, false, null]);
});

Deno.test("tuples and lists read as arrays, with trailing commas allowed", () => {
  assert.deepEqual(parsePythonLiteral("('a',)"), ["a"]);
  assert.deepEqual(parsePythonLiteral("(1, [2, 3,], ())"), [1, [2, 3], []]);
  assert.deepEqual(parsePythonLiteral("{'a': 1,}"), { a: 1 });
  assert.deepEqual(parsePythonLiteral(" { } "), {});
});

Deno.test("numbers read with signs, fractions and exponents", () => {
  assert.deepEqual(parsePythonLiteral("[-1, +3, 2.5, -.5, 1e3, 1.5E-2, 7.]"), [
    -1,
    3,
    2.5,
    -0.5,
    1000,
    0.015,
    7,
  ]);
});

Deno.test("number dict keys become strings", () => {
  assert.deepEqual(parsePythonLiteral("{1: 2, 'b': 3}"), { "1": 2, b: 3 });
});

Deno.test("string escapes read as Python reads them", () => {
  assert.equal(
    parsePythonLiteral(String.raw`'it\'s \\ \n\t\r\0 \x41\u00e9\U0001F600'`),
    "it's \\ \n\t\r\0 Aé😀",
  );
  assert.equal(parsePythonLiteral(`"it's"`), "it's");
  assert.equal(parsePythonLiteral(`'say "hi"'`), 'say "hi"');
});

Deno.test("a '__proto__' key is an own property of a plain object and pollutes no prototype", () => {
  const value = parsePythonLiteral("{'__proto__': {'polluted': True}, 'constructor': 1}") as Record<
    string,
    unknown
  >;
  assert.equal(Object.getPrototypeOf(value), Object.prototype);
  assert.ok(Object.hasOwn(value, "__proto__"));
  assert.deepEqual(value.constructor, 1);
  assert.equal(({} as Record<string, unknown>).polluted, undefined);
});

Deno.test("a call or a name is rejected without running anything", () => {
  assert.throws(
    () => parsePythonLiteral("__import__('os').system('id')"),
    literalError('unexpected "_" at offset 0'),
  );
  assert.throws(() => parsePythonLiteral("{'a': open('x')}"), literalError('unexpected "o" at offset 6'));
});

Deno.test("text after the literal is rejected with its offset", () => {
  assert.throws(
    () => parsePythonLiteral("[]]"),
    literalError("unexpected text after the literal at offset 2"),
  );
  assert.throws(
    () => parsePythonLiteral("Truex"),
    literalError("unexpected text after the literal at offset 4"),
  );
});

Deno.test("malformed literals are rejected with what was expected and the offset", () => {
  assert.throws(() => parsePythonLiteral("[1,2"), literalError("expected ',' or ']' at offset 4"));
  assert.throws(() => parsePythonLiteral("{'a' 1}"), literalError("expected ':' at offset 5"));
  assert.throws(() => parsePythonLiteral(""), literalError("unexpected end of text at offset 0"));
  assert.throws(
    () => parsePythonLiteral("{(1, 2): 3}"),
    literalError("dict keys must be strings or numbers at offset 7"),
  );
});

Deno.test("an unterminated string, or one broken by a newline, is rejected", () => {
  assert.throws(
    () => parsePythonLiteral("'abc"),
    (e: Error) => /^unterminated string at offset \d+$/.test(e.message),
  );
  assert.throws(() => parsePythonLiteral("'a\nb'"), literalError("unterminated string at offset 3"));
});

Deno.test("unknown or malformed escapes and code points past U+10FFFF are rejected", () => {
  assert.throws(() => parsePythonLiteral(String.raw`'\q'`), literalError("unknown escape \\q at offset 3"));
  assert.throws(() => parsePythonLiteral(String.raw`'\x4'`), literalError("bad escape at offset 3"));
  assert.throws(
    () => parsePythonLiteral(String.raw`'\U00110000'`),
    literalError("escape beyond U+10FFFF at offset 11"),
  );
});

Deno.test("a number too large for a double is rejected", () => {
  assert.throws(() => parsePythonLiteral("1e999"), literalError("number out of range at offset 5"));
});

Deno.test(`nesting up to ${MAX_DEPTH} levels is read; deeper is rejected before the stack is at risk`, () => {
  const ok = "[".repeat(MAX_DEPTH + 1) + "]".repeat(MAX_DEPTH + 1);
  assert.equal(JSON.stringify(parsePythonLiteral(ok)), ok);
  const deep = "[".repeat(MAX_DEPTH + 2) + "]".repeat(MAX_DEPTH + 2);
  assert.throws(
    () => parsePythonLiteral(deep),
    literalError(`nesting deeper than 32 at offset ${MAX_DEPTH + 1}`),
  );
  assert.doesNotThrow(() => {
    assert.throws(() => parsePythonLiteral("[".repeat(100_000)), PythonLiteralError);
  });
});
