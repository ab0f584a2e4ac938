/**
 * Points and their changes: what a handle produces each poll and what `update` frames carry.
 *
 * Pure functions, no I/O: a unit's poll as metadata plus values, its two projections (protocol
 * v1 and the seed's legacy array), the diff between two polls of one topic, and the JSON of an
 * `update` frame's changes.
 */

import { utf8Length } from "./utf8.ts";

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

/** A point without its value: one `archive_device` row. */
export type PointMetadata = Omit<Point, "value">;

/**
 * One unit's poll, kept as two parallel arrays: the points' metadata and their values, index
 * for index. Metadata rarely changes, so a handle hands out the same `metadata` array poll after
 * poll while it stays the same; only `values` is new each poll. That spares building a point
 * object per value per poll, and lets the diff skip comparing metadata it has already seen.
 */
export interface UnitPoints {
  /** The points' metadata, in the order they are sent. */
  readonly metadata: readonly PointMetadata[];
  /** `values[i]` is the value of `metadata[i]`; `undefined` when no data row or column exists. */
  readonly values: readonly (Scalar | undefined)[];
}

/** Each point's metadata with its value, `missing` where it has none. */
function withValues(unit: UnitPoints, missing: Scalar | undefined): Point[] {
  return unit.metadata.map((point, i) => ({
    ...point,
    value: unit.values[i] === undefined ? missing : unit.values[i],
  }));
}

/** The difference between two successive polls of one topic. */
export type PointsDelta =
  | { readonly kind: "unchanged" }
  /** `changed` holds the indexes of the points whose value changed, in order. */
  | { readonly kind: "changed"; readonly changed: readonly number[] }
  /** The set of points, their order or their metadata changed: send a fresh snapshot. */
  | { readonly kind: "reshaped" };

/** The points as protocol v1 objects: a missing value is `null`. */
export function toV1Points(unit: UnitPoints): Point[] {
  return withValues(unit, null);
}

/** The points as the seed sent them: a missing value is `""`, a NULL column `null`. */
export function toLegacyPoints(unit: UnitPoints): Point[] {
  return withValues(unit, "");
}

/**
 * Compares two polls of one topic. When both share one `metadata` array only values are
 * compared; otherwise every point's metadata is compared too.
 *
 * @example
 * ```ts
 * diffPoints(before, after); // { kind: "changed", changed: [0] }
 * ```
 */
export function diffPoints(previous: UnitPoints, next: UnitPoints): PointsDelta {
  if (previous.metadata !== next.metadata && !sameMetadataList(previous.metadata, next.metadata)) {
    return { kind: "reshaped" };
  }
  const changed: number[] = [];
  const before = previous.values;
  const after = next.values;
  for (let i = 0; i < after.length; i++) {
    if ((before[i] ?? null) !== (after[i] ?? null)) changed.push(i);
  }
  return changed.length === 0 ? { kind: "unchanged" } : { kind: "changed", changed };
}

/** Whether two metadata lists describe the same points in the same order. */
export function sameMetadataList(a: readonly PointMetadata[], b: readonly PointMetadata[]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (!sameMetadata(a[i], b[i])) return false;
  return true;
}

/** Each point's start of its change object in `update` frames, and its UTF-8 length. */
interface ChangePrefixes {
  readonly text: readonly string[];
  readonly bytes: readonly number[];
}

/** Change prefixes per metadata list; a list is handed out poll after poll while unchanged. */
const changePrefixes = new WeakMap<readonly PointMetadata[], ChangePrefixes>();

/** The JSON of the changes an `update` frame carries, with its UTF-8 length. */
export interface ChangesJson {
  /** `[{"address":…,"code":…,"value":…},…]`, `value` `null` when missing. */
  readonly json: string;
  /** UTF-8 length of {@link json}. */
  readonly bytes: number;
}

/**
 * The JSON array of `update` changes, one `{"address","code","value"}` per changed point. Each
 * point's `{"address":…,"code":…,"value":` is serialized (and measured) once per metadata list,
 * not once per change, and only string values are scanned for their UTF-8 length.
 */
export function changesJson(unit: UnitPoints, changed: readonly number[]): ChangesJson {
  let prefixes = changePrefixes.get(unit.metadata);
  if (!prefixes) {
    const text = unit.metadata.map((p) =>
      `{"address":${JSON.stringify(p.address)},"code":${JSON.stringify(p.code)},"value":`
    );
    prefixes = { text, bytes: text.map(utf8Length) };
    changePrefixes.set(unit.metadata, prefixes);
  }
  let json = "[";
  let bytes = 2 + Math.max(0, changed.length - 1); // the brackets and the commas
  for (let k = 0; k < changed.length; k++) {
    const i = changed[k];
    const value = unit.values[i] ?? null;
    const valueJson = JSON.stringify(value);
    json += (k === 0 ? "" : ",") + prefixes.text[i] + valueJson + "}";
    bytes += prefixes.bytes[i] + (typeof value === "string" ? utf8Length(valueJson) : valueJson.length) + 1;
  }
  return { json: json + "]", bytes };
}

function sameMetadata(a: PointMetadata, b: PointMetadata): boolean {
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
