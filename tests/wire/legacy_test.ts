/**
 * The seed's subscription frame: recognizing its shape, reading it as JSON or as a Python dict,
 * and validating it with close reasons that name the field at fault.
 */

import assert from "node:assert/strict";
import {
  isLegacyShape,
  LegacyFrameError,
  parseJsonOrLegacyLiteral,
  parseLegacySubscription,
} from "../../lib/wire/legacy.ts";

function legacyError(message: string) {
  return (error: unknown) => {
    assert.ok(error instanceof LegacyFrameError, `expected a LegacyFrameError, got ${error}`);
    assert.equal(error.name, "LegacyFrameError");
    assert.equal(error.message, message);
    return true;
  };
}

Deno.test("an object with db_code and no type has the seed's shape", () => {
  assert.equal(isLegacyShape({ db_code: "plant1", unit_id: 12, handle: "real" }), true);
  assert.equal(isLegacyShape({ db_code: "plant1" }), true);
});

Deno.test("an object with a type, without db_code, an array or a scalar is not the seed's shape", () => {
  assert.equal(isLegacyShape({ type: "subscribe", db_code: "plant1" }), false);
  assert.equal(isLegacyShape({ unit_id: 12, handle: "real" }), false);
  assert.equal(isLegacyShape([{ db_code: "plant1" }]), false);
  assert.equal(isLegacyShape(null), false);
  assert.equal(isLegacyShape("db_code"), false);
});

Deno.test("JSON text is read as JSON, whatever its shape", () => {
  assert.deepEqual(parseJsonOrLegacyLiteral('{"a":1}'), { value: { a: 1 } });
  assert.deepEqual(parseJsonOrLegacyLiteral("[1]"), { value: [1] });
  assert.deepEqual(parseJsonOrLegacyLiteral("1"), { value: 1 });
});

Deno.test("the seed's subscription written as a Python dict is read", () => {
  assert.deepEqual(
    parseJsonOrLegacyLiteral(
      `  {'unit_id': 12, 'handle': 'real', 'db_code': 'plant1', 'config': "{'PASSWORD': 'pw'}"}`,
    ),
    { value: { unit_id: 12, handle: "real", db_code: "plant1", config: "{'PASSWORD': 'pw'}" } },
  );
});

Deno.test("a Python literal of any other shape is not accepted", () => {
  assert.equal(parseJsonOrLegacyLiteral("{'a': 1}"), undefined);
  assert.equal(parseJsonOrLegacyLiteral("{'type': 'ping'}"), undefined);
  assert.equal(parseJsonOrLegacyLiteral("{'db_code': 'x', 'type': 'y'}"), undefined);
  assert.equal(parseJsonOrLegacyLiteral("'str'"), undefined);
  assert.equal(parseJsonOrLegacyLiteral("(1, 2)"), undefined);
});

Deno.test("text that is neither JSON nor a Python dict is not accepted", () => {
  assert.equal(parseJsonOrLegacyLiteral("nope"), undefined);
  assert.equal(parseJsonOrLegacyLiteral(""), undefined);
  assert.equal(parseJsonOrLegacyLiteral("{'db_code': 'p', 'unit_id': 1"), undefined);
  assert.equal(parseJsonOrLegacyLiteral("{'db_code': __import__('os')}"), undefined);
});

Deno.test("a valid subscription names db, handle and unit id and records that config was sent", () => {
  assert.deepEqual(
    parseLegacySubscription({ unit_id: 12, handle: "real", db_code: "plant1", config: "{'PASSWORD': 'pw'}" }),
    { db: "plant1", handle: "real", unit: 12, sentConfig: true },
  );
  assert.deepEqual(parseLegacySubscription({ unit_id: 12, handle: "real", db_code: "plant1" }), {
    db: "plant1",
    handle: "real",
    unit: 12,
    sentConfig: false,
  });
});

Deno.test("the config value is never part of the result, even when it is not a string", () => {
  const result = parseLegacySubscription({
    unit_id: 1,
    handle: "real",
    db_code: "p",
    config: { PASSWORD: "pw" },
  });
  assert.ok(!JSON.stringify(result).includes("pw"));
  assert.equal(result.sentConfig, true);
});

Deno.test("a unit_id sent as text is kept as text: the handle's grammar reads it (the seed's clients sent digits)", () => {
  assert.equal(parseLegacySubscription({ unit_id: "12", handle: "real", db_code: "plant1" }).unit, "12");
  assert.equal(
    parseLegacySubscription({ unit_id: "north", handle: "tanks", db_code: "plant1" }).unit,
    "north",
  );
  assert.equal(parseLegacySubscription({ handle: "alarms", db_code: "plant1" }).unit, undefined);
});

Deno.test("a bad db_code is rejected naming db_code and what was sent", () => {
  assert.throws(
    () => parseLegacySubscription({ unit_id: 1, handle: "real", db_code: 5 }),
    legacyError("db_code must match [A-Za-z0-9_-]{1,64}, got 5"),
  );
  assert.throws(
    () => parseLegacySubscription({ unit_id: 1, handle: "real", db_code: "plant 1" }),
    legacyError('db_code must match [A-Za-z0-9_-]{1,64}, got "plant 1"'),
  );
});

Deno.test("a bad handle is rejected naming handle and what was sent", () => {
  assert.throws(
    () => parseLegacySubscription({ unit_id: 1, handle: "Real", db_code: "plant1" }),
    legacyError('handle must match [a-z][a-z0-9_]{0,31}, got "Real"'),
  );
  assert.throws(
    () => parseLegacySubscription({ unit_id: 1, db_code: "plant1" }),
    legacyError("handle must match [a-z][a-z0-9_]{0,31}, got undefined"),
  );
});

Deno.test("a unit_id that no unit grammar accepts is rejected naming unit_id and what is accepted", () => {
  const accepted = "unit_id must be an integer from 1 to 2147483647 or a name matching [A-Za-z0-9_.:-]{1,64}";
  assert.throws(
    () => parseLegacySubscription({ unit_id: 0, handle: "real", db_code: "plant1" }),
    legacyError(`${accepted}, got 0`),
  );
  assert.throws(
    () => parseLegacySubscription({ unit_id: "12 OR 1=1", handle: "real", db_code: "plant1" }),
    legacyError(`${accepted}, got "12 OR 1=1"`),
  );
  assert.throws(
    () => parseLegacySubscription({ unit_id: true, handle: "real", db_code: "plant1" }),
    legacyError(`${accepted}, got true`),
  );
});
