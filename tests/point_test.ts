/**
 * Points: the v1 and legacy projections of a missing value, the diff between two polls, and
 * the normalization of driver values to JSON scalars.
 */

import assert from "node:assert/strict";
import {
  changesJson,
  diffPoints,
  type Point,
  toLegacyPoints,
  toScalar,
  toV1Points,
  type UnitPoints,
} from "../lib/point.ts";
import { point, SEED_POINT_KEYS, unitPoints } from "./support/points.ts";

/** The diff of two polls given as whole points. */
function diff(before: Point[], after: Point[]) {
  return diffPoints(unitPoints(before), unitPoints(after));
}

Deno.test("v1 points show a missing value as null and keep a present one", () => {
  const unit = unitPoints([
    point("GW1", "ua", undefined),
    point("GW1", "ia", null),
    point("GW1", "p", 229.5),
  ]);
  assert.deepEqual(toV1Points(unit).map((p) => p.value), [null, null, 229.5]);
  assert.deepEqual(toV1Points(unitPoints([point("GW1", "ua", 0)]))[0].value, 0);
});

Deno.test('legacy points show a missing value as "" but a NULL column as null, as the seed did', () => {
  const unit = unitPoints([
    point("GW1", "ua", undefined),
    point("GW1", "ia", null),
    point("GW1", "p", 229.5),
  ]);
  assert.deepEqual(toLegacyPoints(unit).map((p) => p.value), ["", null, 229.5]);
});

Deno.test("both projections keep the nine keys in the seed's order", () => {
  const unit = unitPoints([point("GW1", "ua", undefined), point("GW1", "ia", 1)]);
  for (const points of [toV1Points(unit), toLegacyPoints(unit)]) {
    for (const p of points) assert.deepEqual(Object.keys(p), SEED_POINT_KEYS);
  }
});

Deno.test("two identical polls are unchanged", () => {
  const a = [point("GW1", "ua", 1), point("GW1", "ia", undefined)];
  const b = [point("GW1", "ua", 1), point("GW1", "ia", undefined)];
  assert.deepEqual(diff(a, b), { kind: "unchanged" });
  assert.deepEqual(diff([], []), { kind: "unchanged" });
});

Deno.test("a changed value yields exactly the indexes of the changed points", () => {
  const before = [point("GW1", "ua", 229.5), point("GW1", "ia", 10), point("GW2", "ua", 231)];
  const after = [point("GW1", "ua", 230.25), point("GW1", "ia", 10), point("GW2", "ua", null)];
  assert.deepEqual(diff(before, after), { kind: "changed", changed: [0, 2] });
});

Deno.test("a missing value and a NULL value are the same to the diff (both null in v1)", () => {
  assert.deepEqual(diff([point("GW1", "ua", undefined)], [point("GW1", "ua", null)]), { kind: "unchanged" });
  assert.deepEqual(diff([point("GW1", "ua", undefined)], [point("GW1", "ua", 5)]), {
    kind: "changed",
    changed: [0],
  });
});

Deno.test('a value changing type (1 to "1") is a change', () => {
  assert.deepEqual(diff([point("GW1", "state", 1)], [point("GW1", "state", "1")]), {
    kind: "changed",
    changed: [0],
  });
});

Deno.test("a point added or removed reshapes the topic", () => {
  const one = [point("GW1", "ua", 1)];
  const two = [point("GW1", "ua", 1), point("GW1", "ia", 2)];
  assert.deepEqual(diff(one, two), { kind: "reshaped" });
  assert.deepEqual(diff(two, one), { kind: "reshaped" });
});

Deno.test("a change of any metadata field or of the order reshapes the topic", () => {
  const base = point("GW1", "ua", 1);
  const fields: Partial<Point>[] = [
    { code: "ub" },
    { recode: "X" },
    { name: "X" },
    { rename: "Main voltage" },
    { show_id: 2 },
    { address: "GW9" },
    { gateway_id: 2 },
    { address_type: "lora" },
  ];
  for (const change of fields) {
    assert.deepEqual(diff([base], [{ ...base, ...change }]), { kind: "reshaped" }, JSON.stringify(change));
  }
  const a = point("GW1", "ua", 1);
  const b = point("GW1", "ia", 2);
  assert.deepEqual(diff([a, b], [b, a]), { kind: "reshaped" });
});

Deno.test("equal metadata in two different arrays is compared field by field, not reshaped", () => {
  const before: UnitPoints = { metadata: [...unitPoints([point("GW1", "ua", 1)]).metadata], values: [1] };
  const after: UnitPoints = { metadata: [...unitPoints([point("GW1", "ua", 1)]).metadata], values: [2] };
  assert.notEqual(before.metadata, after.metadata);
  assert.deepEqual(diffPoints(before, after), { kind: "changed", changed: [0] });
});

Deno.test("changesJson is the JSON of address, code and value of each changed point, null when missing", () => {
  const unit = unitPoints([
    point('GW"1', "ua", 229.5),
    point("GW1", "ia", 10),
    point("GW2", "ua", undefined),
    point("GW2", "st", "on\n"),
  ]);
  const expected = [
    { address: 'GW"1', code: "ua", value: 229.5 },
    { address: "GW2", code: "ua", value: null },
    { address: "GW2", code: "st", value: "on\n" },
  ];
  assert.equal(changesJson(unit, [0, 2, 3]).json, JSON.stringify(expected));
  assert.equal(changesJson(unit, []).json, "[]");
  // The cached parts follow the metadata array, and values are read anew each call.
  assert.equal(
    changesJson({ ...unit, values: [1, 2, 3, 4] }, [1]).json,
    '[{"address":"GW1","code":"ia","value":2}]',
  );
});

Deno.test("changesJson's byte count is the UTF-8 length of its JSON, with non-ASCII names and values", () => {
  const encoder = new TextEncoder();
  const unit = unitPoints([
    point("网关1", "ua", 229.5),
    point("GW1", "温度", "高°C"),
    point("GW2", "ua", undefined),
    point("GW2", "st", true),
  ]);
  for (const changed of [[], [0], [1], [0, 1, 2, 3], [2, 3]]) {
    const { json, bytes } = changesJson(unit, changed);
    assert.equal(bytes, encoder.encode(json).length, JSON.stringify(changed));
  }
});

Deno.test("toScalar passes strings, booleans, finite numbers and null through", () => {
  assert.equal(toScalar("abc"), "abc");
  assert.equal(toScalar(true), true);
  assert.equal(toScalar(229.5), 229.5);
  assert.equal(toScalar(null), null);
  assert.equal(toScalar(undefined), null);
});

Deno.test("toScalar turns non-finite numbers, bigints, bytes and dates into JSON-safe values", () => {
  assert.equal(toScalar(NaN), "NaN");
  assert.equal(toScalar(Infinity), "Infinity");
  assert.equal(toScalar(42n), 42);
  assert.equal(toScalar(2n ** 63n - 1n), "9223372036854775807");
  assert.equal(toScalar(new TextEncoder().encode("GW-1 é")), "GW-1 é");
  assert.equal(toScalar(new Date(Date.UTC(2025, 10, 26, 3, 4, 5))), "2025-11-26T03:04:05.000Z");
  assert.equal(toScalar({ toString: () => "obj" }), "obj");
});
