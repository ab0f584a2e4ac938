/**
 * Points and their changes: what a handle produces each poll and what `update` frames carry.
 *
 * Pure functions, no I/O: the two projections of a point (protocol v1 and the seed's legacy
 * array) and the diff between two polls of one topic.
 */

/** A value read from the database, after normalization to JSON-safe scalars. */
export type Scalar = string | number | boolean | null;

/**
 * One measured point: an `archive_device` row with its latest value from `device_data_real`.
 * `value` is `undefined` when there is no data row for the address or no column named `code`
 * (v1 shows `null`, the legacy array shows `""`).
 */
export interface Point {
  /** Measurement code; names the `device_data_real` column holding the value. */
  readonly code: Scalar;
  /** Alternative code. */
  readonly recode: Scalar;
  /** Point name. */
  readonly name: Scalar;
  /** Display name. */
  readonly rename: Scalar;
  /** Display order. */
  readonly show_id: Scalar;
  /** Device/gateway address; the `equip_address` of the data row. */
  readonly address: Scalar;
  /** Gateway id. */
  readonly gateway_id: Scalar;
  /** The seed's `lot_type`. */
  readonly address_type: Scalar;
  /** Latest value; `undefined` when no data row or column exists. */
  readonly value: Scalar | undefined;
}

/** One changed value, as carried by `update` frames. */
export interface PointChange {
  /** The point's address. */
  readonly address: Scalar;
  /** The point's code. */
  readonly code: Scalar;
  /** The new value (`null` when none). */
  readonly value: Scalar;
}

/** The difference between two successive polls of one topic. */
export type PointsDelta =
  | { readonly kind: "unchanged" }
  | { readonly kind: "changed"; readonly changes: PointChange[] }
  /** The set of points, their order or their metadata changed: send a fresh snapshot. */
  | { readonly kind: "reshaped" };

/** The point as a protocol v1 object: `value` is `null` when missing. */
export function toV1Point(point: Point): Point & { value: Scalar } {
  return point.value === undefined ? { ...point, value: null } : point as Point & { value: Scalar };
}

/** The point as the seed sent it: `value` is `""` when missing, `null` when the column is NULL. */
export function toLegacyPoint(point: Point): Point & { value: Scalar } {
  return point.value === undefined ? { ...point, value: "" } : point as Point & { value: Scalar };
}

/**
 * Compares two polls of one topic.
 *
 * @example
 * ```ts
 * diffPoints(before, after); // { kind: "changed", changes: [{ address: "GW1", code: "ua", value: 229.1 }] }
 * ```
 */
export function diffPoints(previous: readonly Point[], next: readonly Point[]): PointsDelta {
  if (previous.length !== next.length) return { kind: "reshaped" };
  const changes: PointChange[] = [];
  for (let i = 0; i < next.length; i++) {
    const a = previous[i];
    const b = next[i];
    if (!sameMetadata(a, b)) return { kind: "reshaped" };
    const before = a.value ?? null;
    const after = b.value ?? null;
    if (before !== after) changes.push({ address: b.address, code: b.code, value: after });
  }
  return changes.length === 0 ? { kind: "unchanged" } : { kind: "changed", changes };
}

function sameMetadata(a: Point, b: Point): boolean {
  return a.code === b.code && a.address === b.address && a.recode === b.recode &&
    a.name === b.name && a.rename === b.rename && a.show_id === b.show_id &&
    a.gateway_id === b.gateway_id && a.address_type === b.address_type;
}

/**
 * Turns a value read by a database driver into a JSON-safe scalar: bytes become UTF-8 text,
 * dates ISO strings, big integers numbers when safe and strings otherwise.
 */
export function toScalar(value: unknown): Scalar {
  if (value === null || value === undefined) return null;
  switch (typeof value) {
    case "string":
    case "boolean":
      return value;
    case "number":
      return Number.isFinite(value) ? value : String(value);
    case "bigint":
      return Number.isSafeInteger(Number(value)) ? Number(value) : value.toString();
  }
  if (value instanceof Uint8Array) return new TextDecoder().decode(value);
  if (value instanceof Date) return value.toISOString();
  return String(value);
}
