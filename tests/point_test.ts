/**
 * Points: the v1 and legacy projections of a missing value, the diff between two polls, and
 * the normalization of driver values to JSON scalars.
 */

import assert from "node:assert/strict";
import { diffPoints, type Point, toLegacyPoint, toScalar, toV1Point } from "../lib/point.ts";

function point(address: string, code: string, value: Point["value"], extra: Partial<Point> = {}): Point {
  return {
    code,
    recode: code.toUpperCase(),
    name: code,
    rename: `${address} ${code}`,
    show_id: 1,
    address,
    gateway_id: 1,
    address_type: "modbus",
    value,
    ...extra,
  };
}

Deno.test("a v1 point shows a missing value as null and keeps a present one", () => {
  assert.equal(toV1Point(point("GW1", "ua", undefined)).value, null);
  assert.equal(toV1Point(point("GW1", "ua", null)).value, null);
  assert.equal(toV1Point(point("GW1", "ua", 229.5)).value, 229.5);
  assert.equal(toV1Point(point("GW1", "ua", 0)).value, 0);
});

Deno.test('a legacy point shows a missing value as "" but a NULL column as null, as the seed did', () => {
  assert.equal(toLegacyPoint(point("GW1", "ua", undefined)).value, "");
  assert.equal(toLegacyPoint(point("GW1", "ua", null)).value, null);
  assert.equal(toLegacyPoint(point("GW1", "ua", 229.5)).value, 229.5);
});

Deno.test("both projections keep the nine keys in the seed's order", () => {
  const keys = [
    "code",
    "recode",
    "name",
    "rename",
    "show_id",
    "address",
    "gateway_id",
    "address_type",
    "value",
  ];
  assert.deepEqual(Object.keys(toV1Point(point("GW1", "ua", undefined))), keys);
  assert.deepEqual(Object.keys(toLegacyPoint(point("GW1", "ua", undefined))), keys);
  assert.deepEqual(Object.keys(toV1Point(point("GW1", "ua", 1))), keys);
});

Deno.test("two identical polls are unchanged", () => {
  const a = [point("GW1", "ua", 1), point("GW1", "ia", undefined)];
  const b = [point("GW1", "ua", 1), point("GW1", "ia", undefined)];
  assert.deepEqual(diffPoints(a, b), { kind: "unchanged" });
  assert.deepEqual(diffPoints([], []), { kind: "unchanged" });
});

Deno.test("a changed value yields exactly the changed points with address, code and new value", () => {
  const before = [point("GW1", "ua", 229.5), point("GW1", "ia", 10), point("GW2", "ua", 231)];
  const after = [point("GW1", "ua", 230.25), point("GW1", "ia", 10), point("GW2", "ua", null)];
  assert.deepEqual(diffPoints(before, after), {
    kind: "changed",
    changes: [
      { address: "GW1", code: "ua", value: 230.25 },
      { address: "GW2", code: "ua", value: null },
    ],
  });
});

Deno.test("a missing value and a NULL value are the same to the diff (both null in v1)", () => {
  assert.deepEqual(diffPoints([point("GW1", "ua", undefined)], [point("GW1", "ua", null)]), {
    kind: "unchanged",
  });
  assert.deepEqual(diffPoints([point("GW1", "ua", undefined)], [point("GW1", "ua", 5)]), {
    kind: "changed",
    changes: [{ address: "GW1", code: "ua", value: 5 }],
  });
});

Deno.test('a value changing type (1 to "1") is a change', () => {
  assert.deepEqual(diffPoints([point("GW1", "state", 1)], [point("GW1", "state", "1")]), {
    kind: "changed",
    changes: [{ address: "GW1", code: "state", value: "1" }],
  });
});

Deno.test("a point added or removed reshapes the topic", () => {
  const one = [point("GW1", "ua", 1)];
  const two = [point("GW1", "ua", 1), point("GW1", "ia", 2)];
  assert.deepEqual(diffPoints(one, two), { kind: "reshaped" });
  assert.deepEqual(diffPoints(two, one), { kind: "reshaped" });
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
    assert.deepEqual(
      diffPoints([base], [{ ...base, ...change }]),
      { kind: "reshaped" },
      JSON.stringify(change),
    );
  }
  const a = point("GW1", "ua", 1);
  const b = point("GW1", "ia", 2);
  assert.deepEqual(diffPoints([a, b], [b, a]), { kind: "reshaped" });
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
