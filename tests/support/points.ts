/**
 * Points for tests: a point with plausible metadata, a unit's poll built from whole points
 * (sharing one metadata array across polls, as the `real` handle does while nothing changes) and
 * the reverse, and the seed's key order.
 */

import type { Point, PointMetadata, UnitPoints } from "../../lib/point.ts";

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
  value: Point["value"],
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

/** Metadata lists already handed out, by their JSON: equal metadata gets the same array. */
const sharedMetadata = new Map<string, PointMetadata[]>();

/** A unit's poll of these points; polls with equal metadata share one metadata array. */
export function unitPoints(points: readonly Point[]): UnitPoints {
  const metadata = points.map(({ value: _, ...rest }) => rest);
  const json = JSON.stringify(metadata);
  if (!sharedMetadata.has(json)) sharedMetadata.set(json, metadata);
  return { metadata: sharedMetadata.get(json)!, values: points.map((p) => p.value) };
}

/** A unit's poll as whole points: each point's metadata with its value (`undefined` kept). */
export function joinPoints(unit: UnitPoints): Point[] {
  return unit.metadata.map((metadata, i) => ({ ...metadata, value: unit.values[i] }));
}
