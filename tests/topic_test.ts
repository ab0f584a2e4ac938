/**
 * Topic names: parsing, validation messages (they travel to clients in `error` frames) and the
 * canonical key.
 */

import assert from "node:assert/strict";
import { describe, MAX_UNIT_ID, parseTopic, parseUnitId, TopicError, topicKey } from "../lib/topic.ts";

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
    unitId: 12,
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
  assert.equal(parseTopic("plant1/real/2147483647").unitId, 2147483647);
});

Deno.test("a topic with four parts is rejected with a message naming the shape", () => {
  assert.throws(
    () => parseTopic("a/b/c/d"),
    topicError('topic "a/b/c/d" must have three parts <db>/<handle>/<unit_id>'),
  );
});

Deno.test("a topic with two parts or none is rejected with the same shape message", () => {
  assert.throws(
    () => parseTopic("plant1/real"),
    topicError('topic "plant1/real" must have three parts <db>/<handle>/<unit_id>'),
  );
  assert.throws(() => parseTopic(""), topicError('topic "" must have three parts <db>/<handle>/<unit_id>'));
});

Deno.test("a topic that is not a string is rejected naming what was sent", () => {
  assert.throws(() => parseTopic(12), topicError('topic must be a string like "plant1/real/12", got 12'));
  assert.throws(() => parseTopic(null), topicError('topic must be a string like "plant1/real/12", got null'));
  assert.throws(
    () => parseTopic(["a"]),
    topicError('topic must be a string like "plant1/real/12", got an array'),
  );
  assert.throws(
    () => parseTopic({}),
    topicError('topic must be a string like "plant1/real/12", got an object'),
  );
  assert.throws(
    () => parseTopic(undefined),
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

Deno.test("a unit id of 0, negative, out of range, padded, decimal or SQL is rejected naming unit_id", () => {
  for (
    const unit of ["0", "-1", "2147483648", "012", "1.0", "1e3", " 1", "+1", "1 OR 1=1", "", "99999999999"]
  ) {
    assert.throws(
      () => parseTopic(`plant1/real/${unit}`),
      topicError(`topic "plant1/real/${unit}": unit_id must be an integer from 1 to 2147483647`),
    );
  }
});

Deno.test("parseUnitId accepts integers and decimal digit strings from 1 to 2147483647 only", () => {
  assert.equal(parseUnitId(1), 1);
  assert.equal(parseUnitId("12"), 12);
  assert.equal(parseUnitId(2147483647), 2147483647);
  for (const bad of [0, -3, 1.5, NaN, Infinity, 2147483648, "0", "012", "+1", "2147483648", true, null, []]) {
    assert.equal(parseUnitId(bad), undefined, `for ${String(bad)}`);
  }
});

Deno.test("topicKey joins db, handle and unit id with slashes", () => {
  assert.equal(topicKey("plant1", "real", 12), "plant1/real/12");
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
