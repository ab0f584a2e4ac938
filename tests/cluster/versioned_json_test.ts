/**
 * The envelope of the cluster's messages (lib/cluster/versioned_json.ts): an object of the right
 * version is returned as parsed; anything else is refused through the caller's error, naming it.
 */

import assert from "node:assert/strict";
import { readVersioned } from "../../lib/cluster/versioned_json.ts";

class TestError extends Error {}
const read = (text: string) => readVersioned(text, "test message", 3, (message) => new TestError(message));

Deno.test("a JSON object of the version is returned as parsed", () => {
  assert.deepEqual(read('{"v":3,"a":[1,null]}'), { v: 3, a: [1, null] });
});

Deno.test("anything else is refused with the caller's error, naming the message and the versions", () => {
  const cases: [string, string][] = [
    ["", "test message is not JSON"],
    ["{", "test message is not JSON"],
    ["null", "test message is not an object"],
    ["[3]", "test message is not an object"],
    ['"v"', "test message is not an object"],
    ['{"v":2}', "test message of version 2; this node reads 3"],
    ['{"v":"3"}', 'test message of version "3"; this node reads 3'],
    ["{}", "test message of version undefined; this node reads 3"],
  ];
  for (const [text, message] of cases) {
    assert.throws(() => read(text), (error: unknown) => {
      assert.ok(error instanceof TestError, text);
      assert.equal(error.message, message, text);
      return true;
    });
  }
});
