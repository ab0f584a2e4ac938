/**
 * Units: the last part of a topic, whose grammar each handle chooses. `int` units are 1 to
 * 2147483647 (the seed's `unit_id`), `string` units are `[A-Za-z0-9_.:-]{1,64}`, and a handle
 * with `none` has one topic per database, `<db>/<handle>`. Pure, no I/O.
 */

/** A unit: an integer id, a string name, or `null` for the one topic of a unit-less handle. */
export type Unit = number | string | null;

/** The grammars a handle's units may follow. */
export const UNIT_TYPES = ["int", "string", "none"] as const;
/** One of {@link UNIT_TYPES}. */
export type UnitType = typeof UNIT_TYPES[number];

/** The largest `int` unit (a signed 32-bit integer, as in MySQL's INT). */
export const MAX_UNIT_ID = 2147483647;

/** A `string` unit. */
export const STRING_UNIT_PATTERN = /^[A-Za-z0-9_.:-]{1,64}$/;

/**
 * Parses a unit given as a topic part (text) or a legacy frame's `unit_id` (a number or text);
 * `undefined` when it does not follow the grammar. For `none`, only an absent unit is valid.
 *
 * @example
 * ```ts
 * parseUnit("int", "12"); // 12
 * parseUnit("string", "north"); // "north"
 * parseUnit("none", undefined); // null
 * ```
 */
export function parseUnit(type: UnitType, value: unknown): Unit | undefined {
  switch (type) {
    case "int":
      return parseIntUnit(value);
    case "string":
      return typeof value === "string" && STRING_UNIT_PATTERN.test(value) ? value : undefined;
    case "none":
      return value === undefined ? null : undefined;
  }
}

/** An integer unit given as a number or decimal digits; `undefined` outside 1 to {@link MAX_UNIT_ID}. */
export function parseIntUnit(value: unknown): number | undefined {
  let n: number;
  if (typeof value === "number") n = value;
  else if (typeof value === "string" && /^[1-9][0-9]{0,9}$/.test(value)) n = Number(value);
  else return undefined;
  return Number.isInteger(n) && n >= 1 && n <= MAX_UNIT_ID ? n : undefined;
}

/** What a grammar accepts, for error messages. */
export function unitGrammarText(type: UnitType): string {
  switch (type) {
    case "int":
      return `an integer from 1 to ${MAX_UNIT_ID}`;
    case "string":
      return "a name matching [A-Za-z0-9_.:-]{1,64}";
    case "none":
      return "absent (the handle has one topic per database)";
  }
}

/**
 * The unit a result row's cell names, converted to the handle's unit type; `undefined` when it
 * cannot be one (a NULL, a fraction, a name for an `int` handle). An `int` column read for a
 * `string` handle gives its decimal text.
 */
export function unitOfCell(type: UnitType, cell: string | number | boolean | null): Unit | undefined {
  if (type === "string" && typeof cell === "number") return parseUnit(type, String(cell));
  return type === "none" ? null : parseUnit(type, cell);
}
