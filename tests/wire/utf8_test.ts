/** UTF-8 byte counts: they must equal what TextEncoder writes, for every kind of character. */

import assert from "node:assert/strict";
import { utf8Length } from "../../lib/wire/utf8.ts";

const encoder = new TextEncoder();

Deno.test("utf8Length equals the encoded length for ASCII, 2-, 3- and 4-byte characters", () => {
  for (
    const text of [
      "",
      "abc",
      '{"ts":1}',
      "é",
      "Ω°C",
      "€",
      "水位",
      "😀",
      "a😀b€c",
      "\u007f\u0080\u07ff\u0800\uffff",
    ]
  ) {
    assert.equal(utf8Length(text), encoder.encode(text).length, JSON.stringify(text));
  }
});

Deno.test("a lone surrogate counts 3 bytes, as TextEncoder writes U+FFFD for it", () => {
  for (const text of ["\ud800", "\udc00", "a\ud800b", "\ud800\ud800", "\udc00\ud800"]) {
    assert.equal(utf8Length(text), encoder.encode(text).length, JSON.stringify(text));
  }
});

Deno.test("utf8Length agrees with TextEncoder on 2,000 random strings", () => {
  let seed = 7;
  const random = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
  for (let n = 0; n < 2000; n++) {
    const units = Array.from({ length: Math.floor(random() * 20) }, () => Math.floor(random() * 0x10000));
    const text = String.fromCharCode(...units);
    assert.equal(utf8Length(text), encoder.encode(text).length);
  }
});
