/**
 * Topic names: their syntax, each handle's unit grammar (int, string, none), the validation
 * messages (they travel to clients in `error` frames) and the canonical key.
 */

import assert from "node:assert/strict";
import { describe } from "../../lib/config/names.ts";
import { MAX_UNIT_ID, parseIntUnit } from "../../lib/config/unit.ts";
import { splitTopic, TopicError, topicKey } from "../../lib/hub/topic.ts";
import { parseTopic } from "../support/topics.ts";

const SHAPE =
  "must have three parts <db>/<handle>/<unit_id> (two, <db>/<handle>, for a handle without units)";

function topicError(message: string) {
  return (error: unknown) => {
    assert.ok(error instanceof TopicError, `expected a TopicError, got ${error}`);
    assert.equal(error.name, "TopicError");
    assert.equal(error.message, message);
    return true;
  };
}

Deno.test("a well-formed topic parses into db, handle, unit id and canonical key", () => {
  assert.deepEqual(parseTopic("plant1/real/12"), {
    db: "plant1",
    handle: "real",
    unit: 12,
    key: "plant1/real/12",
  });
});

Deno.test("database codes may use letters, digits, '_' and '-', up to 64 characters", () => {
  const db = "Plant_1-" + "x".repeat(56);
  assert.equal(db.length, 64);
  assert.equal(parseTopic(`${db}/real/1`).db, db);
});

Deno.test("the largest unit id, 2147483647, is accepted", () => {
  assert.equal(MAX_UNIT_ID, 2147483647);
  assert.equal(parseTopic("plant1/real/2147483647").unit, 2147483647);
});

Deno.test("a topic with four parts, one or none is rejected with a message naming the shape", () => {
  assert.throws(() => splitTopic("a/b/c/d"), topicError(`topic "a/b/c/d" ${SHAPE}`));
  assert.throws(() => splitTopic("plant1"), topicError(`topic "plant1" ${SHAPE}`));
  assert.throws(() => splitTopic(""), topicError(`topic "" ${SHAPE}`));
});

Deno.test("two parts name the topic of a handle without units; a handle with units says it needs one", () => {
  assert.deepEqual(parseTopic("plant1/alarms", "none"), {
    db: "plant1",
    handle: "alarms",
    unit: null,
    key: "plant1/alarms",
  });
  assert.throws(
    () => parseTopic("plant1/real"),
    topicError('topic "plant1/real" must have three parts <db>/<handle>/<unit>'),
  );
  assert.throws(
    () => parseTopic("plant1/alarms/3", "none"),
    topicError(`topic "plant1/alarms/3": handle 'alarms' has no units; its topic is "plant1/alarms"`),
  );
});

Deno.test("a string unit is a name of up to 64 letters, digits and _.:-, kept as text", () => {
  assert.deepEqual(parseTopic("plant1/tanks/north-2.a:b_c", "string"), {
    db: "plant1",
    handle: "tanks",
    unit: "north-2.a:b_c",
    key: "plant1/tanks/north-2.a:b_c",
  });
  // Digits stay text for a string handle: "12" and 12 are different units.
  assert.equal(parseTopic("plant1/tanks/12", "string").unit, "12");
  assert.equal(parseTopic(`plant1/tanks/${"n".repeat(64)}`, "string").unit, "n".repeat(64));
  for (const unit of ["n".repeat(65), "a b", "nörd", "a/b", "a'b", ""]) {
    assert.throws(() => parseTopic(`plant1/tanks/${unit}`, "string"), TopicError, JSON.stringify(unit));
  }
});

Deno.test("a topic that is not a string is rejected naming what was sent", () => {
  assert.throws(() => splitTopic(12), topicError('topic must be a string like "plant1/real/12", got 12'));
  assert.throws(() => splitTopic(null), topicError('topic must be a string like "plant1/real/12", got null'));
  assert.throws(
    () => splitTopic(["a"]),
    topicError('topic must be a string like "plant1/real/12", got an array'),
  );
  assert.throws(
    () => splitTopic({}),
    topicError('topic must be a string like "plant1/real/12", got an object'),
  );
  assert.throws(
    () => splitTopic(undefined),
    topicError('topic must be a string like "plant1/real/12", got undefined'),
  );
});

Deno.test("a topic over 200 characters is rejected by length before anything else", () => {
  assert.throws(
    () => parseTopic("x".repeat(201)),
    topicError("topic is 201 characters long; at most 200 are accepted"),
  );
});

Deno.test("a database code with a space or 65 characters is rejected naming the database part", () => {
  assert.throws(
    () => parseTopic("pl ant/real/1"),
    topicError('topic "pl ant/real/1": database code must match [A-Za-z0-9_-]{1,64}'),
  );
  const long = "a".repeat(65);
  assert.throws(
    () => parseTopic(`${long}/real/1`),
    topicError(`topic "${long}/real/1": database code must match [A-Za-z0-9_-]{1,64}`),
  );
});

Deno.test("a handle with capitals, a leading digit or underscore, or 33 characters is rejected", () => {
  for (const handle of ["Real", "9x", "_x", "a".repeat(33), ""]) {
    assert.throws(
      () => parseTopic(`plant1/${handle}/1`),
      topicError(`topic "plant1/${handle}/1": handle must match [a-z][a-z0-9_]{0,31}`),
    );
  }
});

Deno.test("an int unit of 0, negative, out of range, padded, decimal or a name is rejected naming unit_id", () => {
  for (const unit of ["0", "-1", "2147483648", "012", "1.0", "1e3", "north", "99999999999"]) {
    assert.throws(
      () => parseTopic(`plant1/real/${unit}`),
      topicError(`topic "plant1/real/${unit}": unit_id must be an integer from 1 to 2147483647`),
    );
  }
});

Deno.test("a unit no grammar accepts (spaces, SQL, empty) is rejected by its syntax", () => {
  for (const unit of [" 1", "+1", "1 OR 1=1", ""]) {
    assert.throws(
      () => splitTopic(`plant1/real/${unit}`),
      topicError(
        `topic "plant1/real/${unit}": unit must be an integer from 1 to 2147483647 or a name matching [A-Za-z0-9_.:-]{1,64}`,
      ),
    );
  }
});

Deno.test("parseIntUnit accepts integers and decimal digit strings from 1 to 2147483647 only", () => {
  assert.equal(parseIntUnit(1), 1);
  assert.equal(parseIntUnit("12"), 12);
  assert.equal(parseIntUnit(2147483647), 2147483647);
  for (const bad of [0, -3, 1.5, NaN, Infinity, 2147483648, "0", "012", "+1", "2147483648", true, null, []]) {
    assert.equal(parseIntUnit(bad), undefined, `for ${String(bad)}`);
  }
});

Deno.test("topicKey joins db, handle and unit with slashes; a handle without units has two parts", () => {
  assert.equal(topicKey("plant1", "real", 12), "plant1/real/12");
  assert.equal(topicKey("plant1", "tanks", "north"), "plant1/tanks/north");
  assert.equal(topicKey("plant1", "alarms", null), "plant1/alarms");
});

Deno.test("describe shows JSON values briefly and truncates long strings to 32 characters", () => {
  assert.equal(describe(null), "null");
  assert.equal(describe(undefined), "undefined");
  assert.equal(describe(true), "true");
  assert.equal(describe(1.5), "1.5");
  assert.equal(describe([1]), "an array");
  assert.equal(describe({ a: 1 }), "an object");
  assert.equal(describe("abc"), '"abc"');
  assert.equal(describe("x".repeat(40)), `"${"x".repeat(32)}…"`);
});
