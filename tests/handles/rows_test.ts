/**
 * Rows and their diff: which polls of a unit an update can express (changed cells, rows gone,
 * rows added at the end) and which need a snapshot (a reorder, a row added in the middle, other
 * columns).
 */

import assert from "node:assert/strict";
import {
  type Cell,
  diffRows,
  LayoutError,
  layoutOf,
  rowKey,
  type RowSet,
  toScalar,
} from "../../lib/handles/rows.ts";

const TANKS = layoutOf(["tank_id", "level_m", "temp_c"], ["tank_id"]);

/** A row set of the tanks layout from rows written as arrays. */
function tanks(...rows: Cell[][]): RowSet {
  const cells = rows.flat();
  const keys = rows.map((_, i) => rowKey(cells, i * 3, TANKS.keyIndexes));
  return { shape: { layout: TANKS, keys }, cells };
}

const BEFORE = tanks([1, 2.5, 20], [2, 3.0, 21], [3, 1.0, 19]);

Deno.test("layouts are interned: equal columns and key give the same object", () => {
  assert.equal(layoutOf(["tank_id", "level_m", "temp_c"], ["tank_id"]), TANKS);
  assert.notEqual(layoutOf(["tank_id", "level_m"], ["tank_id"]), TANKS);
  assert.deepEqual(TANKS.keyIndexes, [0]);
  assert.deepEqual(TANKS.varying, [1, 2]);
});

Deno.test("a key column missing from the columns is a LayoutError naming it", () => {
  assert.throws(() => layoutOf(["id", "level"], ["tank_id"]), (error) => {
    assert.ok(error instanceof LayoutError);
    assert.equal(error.column, "tank_id");
    assert.equal(error.message, "no column 'tank_id' in the result (columns: id, level)");
    return true;
  });
});

Deno.test("row keys tell 1 from '1' and null, and join compound keys without collisions", () => {
  const keyOf = (...cells: Cell[]) => rowKey(cells, 0, cells.map((_, i) => i));
  assert.notEqual(keyOf(1), keyOf("1"));
  assert.notEqual(keyOf(null), keyOf("null"));
  assert.notEqual(keyOf("a", "bc"), keyOf("ab", "c"));
  assert.equal(keyOf("a", 1), keyOf("a", 1));
});

Deno.test("the same rows are unchanged", () => {
  assert.deepEqual(diffRows(BEFORE, tanks([1, 2.5, 20], [2, 3.0, 21], [3, 1.0, 19])), { kind: "unchanged" });
  assert.deepEqual(diffRows(BEFORE, BEFORE), { kind: "unchanged" }, "the same object");
});

Deno.test("an UPDATE is an upsert of the changed row naming only its changed columns", () => {
  assert.deepEqual(diffRows(BEFORE, tanks([1, 2.5, 20], [2, 3.5, 22], [3, 1.0, 19])), {
    kind: "changed",
    upserts: [{ row: 1, columns: [1, 2] }],
    deleted: [],
  });
});

Deno.test("an INSERT at the end is a new row, whole", () => {
  assert.deepEqual(diffRows(BEFORE, tanks([1, 2.5, 20], [2, 3.0, 21], [3, 1.0, 19], [4, 0.5, 18])), {
    kind: "changed",
    upserts: [{ row: 3, columns: undefined }],
    deleted: [],
  });
});

Deno.test("an INSERT in the middle cannot be applied in order: reshaped", () => {
  assert.deepEqual(diffRows(BEFORE, tanks([1, 2.5, 20], [4, 0.5, 18], [2, 3.0, 21], [3, 1.0, 19])), {
    kind: "reshaped",
  });
});

Deno.test("a DELETE anywhere names the previous row; a change beside it is an upsert", () => {
  assert.deepEqual(diffRows(BEFORE, tanks([1, 2.5, 20], [3, 1.5, 19])), {
    kind: "changed",
    upserts: [{ row: 1, columns: [1] }],
    deleted: [1],
  });
  assert.deepEqual(diffRows(BEFORE, tanks([2, 3.0, 21], [3, 1.0, 19])), {
    kind: "changed",
    upserts: [],
    deleted: [0],
  });
  assert.deepEqual(diffRows(BEFORE, tanks()), { kind: "changed", upserts: [], deleted: [0, 1, 2] });
});

Deno.test("rows gone and rows added at the end together are one update", () => {
  assert.deepEqual(diffRows(BEFORE, tanks([2, 3.0, 21], [3, 1.0, 19], [5, 9.0, 30], [6, 8.0, 31])), {
    kind: "changed",
    upserts: [{ row: 2, columns: undefined }, { row: 3, columns: undefined }],
    deleted: [0],
  });
});

Deno.test("a reorder (a leaderboard) is reshaped", () => {
  assert.deepEqual(diffRows(BEFORE, tanks([2, 3.0, 21], [1, 2.5, 20], [3, 1.0, 19])), { kind: "reshaped" });
  assert.deepEqual(diffRows(BEFORE, tanks([3, 1.0, 19], [1, 2.5, 20])), { kind: "reshaped" });
});

Deno.test("other columns are reshaped", () => {
  const other = layoutOf(["tank_id", "level_m"], ["tank_id"]);
  const cells = [1, 2.5];
  assert.deepEqual(diffRows(BEFORE, { shape: { layout: other, keys: [rowKey(cells, 0, [0])] }, cells }), {
    kind: "reshaped",
  });
});

Deno.test("the same shape object compares only the varying cells: the producer vouches for the rest", () => {
  const points = layoutOf(["address", "code", "name", "value"], ["address", "code"], ["value"]);
  const shape = { layout: points, keys: ["GW1\u0000ua", "GW1\u0000ia"] };
  const before = { shape, cells: ["GW1", "ua", "Voltage", 229.5, "GW1", "ia", "Current", 10] };
  // A changed name under the same shape object is not looked at; a changed value is.
  const after = { shape, cells: ["GW1", "ua", "Renamed", 230, "GW1", "ia", "Current", 10] };
  assert.deepEqual(diffRows(before, after), {
    kind: "changed",
    upserts: [{ row: 0, columns: [3] }],
    deleted: [],
  });
  // Another shape object with the same keys compares every cell outside the key.
  const renamed = { shape: { layout: points, keys: [...shape.keys] }, cells: after.cells };
  assert.deepEqual(diffRows(before, renamed), {
    kind: "changed",
    upserts: [{ row: 0, columns: [2, 3] }],
    deleted: [],
  });
});

Deno.test("no value and NULL read alike (v1 shows both as null)", () => {
  const layout = layoutOf(["id", "value"], ["id"]);
  const shape = { layout, keys: ["n1"] };
  assert.deepEqual(diffRows({ shape, cells: [1, undefined] }, { shape, cells: [1, null] }), {
    kind: "unchanged",
  });
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
