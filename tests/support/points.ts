/**
 * Points for tests: a point with plausible metadata, a unit's poll built from whole points
 * (sharing one shape across polls while the metadata stays the same, as the `real` handle does)
 * and the reverse, and the seed's key order.
 */

import { POINT_COLUMNS, POINT_LAYOUT } from "../../lib/handles/real_handle.ts";
import { type Cell, rowKey, type RowSet, type Shape } from "../../lib/handles/rows.ts";

/** A point as the contract names its fields; `value` is `undefined` when it has none. */
export type Point = { readonly [column in typeof POINT_COLUMNS[number]]: Cell };

/** The keys of a point as the seed sent them, in its order: v1 keeps the same keys and order. */
export const SEED_POINT_KEYS = [
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

/** A point of gateway `address` measuring `code`; `extra` overrides any field. */
export function point(
  address: string,
  code: string,
  value: Cell,
  extra: Partial<Point> = {},
): Point {
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

/** Shapes already handed out, by their metadata's JSON: equal metadata gets the same shape. */
const sharedShapes = new Map<string, Shape>();

/** A unit's poll of these points; polls with equal metadata share one shape. */
export function unitRows(points: readonly Point[]): RowSet {
  const cells = points.flatMap((p) => POINT_COLUMNS.map((column) => p[column]));
  const metadata = JSON.stringify(points.map(({ value: _, ...rest }) => rest));
  let shape = sharedShapes.get(metadata);
  if (!shape) {
    const keys = points.map((_, i) => rowKey(cells, i * POINT_COLUMNS.length, POINT_LAYOUT.keyIndexes));
    sharedShapes.set(metadata, shape = { layout: POINT_LAYOUT, keys });
  }
  return { shape, cells };
}

/** A unit's poll as whole points (`undefined` values kept). */
export function joinPoints(rows: RowSet): Point[] {
  const width = POINT_COLUMNS.length;
  return rows.shape.keys.map((_, row) =>
    Object.fromEntries(POINT_COLUMNS.map((column, c) => [column, rows.cells[row * width + c]])) as Point
  );
}
