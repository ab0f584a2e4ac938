/**
 * Rows: what every handle produces for a unit each poll, and the difference between two polls.
 *
 * A unit's poll is a {@link RowSet}: a {@link Shape} (the columns, the key columns and each
 * row's key, in order) plus the rows' cells, row after row. A handle hands out the same `Shape`
 * object poll after poll while it stays the same, and promises that the cells outside
 * `layout.varying` are then unchanged too, so the diff compares only the cells that can change
 * (for `real`, one value per point). Pure, no I/O.
 */

/** A value read from the database, after normalization to a JSON-safe scalar. */
export type Scalar = string | number | boolean | null;

/**
 * One cell: a scalar, or `undefined` where the handle has no value at all (only `real` makes
 * those: a point without a data row; v1 shows `null`, the seed's array `""`).
 */
export type Cell = Scalar | undefined;

/** The columns of a unit's rows, interned: equal layouts are one object. */
export interface Layout {
  /** Column names in the result's order. */
  readonly columns: readonly string[];
  /** The key columns' names, in the order the handle declared them. */
  readonly key: readonly string[];
  /** Index in {@link columns} of each key column. */
  readonly keyIndexes: readonly number[];
  /** Indexes of the columns whose cells may change while a unit's shape stays the same. */
  readonly varying: readonly number[];
}

/** A layout with a column the key names missing from its columns. */
export class LayoutError extends Error {
  override name = "LayoutError";
  /**
   * @param column the key column that is not among the columns
   * @param message what is wrong
   */
  constructor(readonly column: string, message: string) {
    super(message);
  }
}

const layouts = new Map<string, Layout>();

/**
 * The interned layout of these columns and key columns. `varying` defaults to every column
 * outside the key.
 *
 * @example
 * ```ts
 * layoutOf(["tank_id", "level_m"], ["tank_id"]) === layoutOf(["tank_id", "level_m"], ["tank_id"]); // true
 * ```
 * @throws {LayoutError} when a key column is not among the columns.
 */
export function layoutOf(
  columns: readonly string[],
  key: readonly string[],
  varying?: readonly string[],
): Layout {
  const keyIndexes = key.map((name) => {
    const index = columns.indexOf(name);
    if (index < 0) {
      throw new LayoutError(name, `no column '${name}' in the result (columns: ${columns.join(", ")})`);
    }
    return index;
  });
  const varyingIndexes = varying === undefined
    ? columns.map((_, i) => i).filter((i) => !keyIndexes.includes(i))
    : varying.map((name) => columns.indexOf(name)).filter((i) => i >= 0);
  // Interned by what the layout is, not by how it was asked for (a default or a named `varying`).
  const id = JSON.stringify([columns, key, varyingIndexes]);
  let layout = layouts.get(id);
  if (layout) return layout;
  layout = Object.freeze({
    columns: Object.freeze([...columns]),
    key: Object.freeze([...key]),
    keyIndexes: Object.freeze(keyIndexes),
    varying: Object.freeze(varyingIndexes),
  });
  layouts.set(id, layout);
  return layout;
}

/** The identity of a unit's rows: their layout and each row's key, in order. */
export interface Shape {
  /** The columns. */
  readonly layout: Layout;
  /** Each row's key (see {@link rowKey}), in the rows' order; no two alike. */
  readonly keys: readonly string[];
}

/** One unit's poll: its shape and its cells, `layout.columns.length` per row, row after row. */
export interface RowSet {
  /** Same object poll after poll while the rows, their keys and their fixed cells stay the same. */
  readonly shape: Shape;
  /** Row-major cells. */
  readonly cells: readonly Cell[];
}

/** The number of rows of a row set. */
export function rowCount(rows: RowSet): number {
  return rows.shape.keys.length;
}

/**
 * A row's key: its key cells, written so that different values never meet (`1` and `"1"`
 * differ). A single string or number key is its own text, prefixed by its type.
 */
export function rowKey(cells: readonly Cell[], offset: number, keyIndexes: readonly number[]): string {
  if (keyIndexes.length === 1) return keyText(cells[offset + keyIndexes[0]]);
  let key = "";
  for (let k = 0; k < keyIndexes.length; k++) {
    key += (k === 0 ? "" : "\u0000") + keyText(cells[offset + keyIndexes[k]]);
  }
  return key;
}

function keyText(cell: Cell): string {
  switch (typeof cell) {
    case "string":
      return "s" + cell;
    case "number":
      return "n" + cell;
    case "boolean":
      return cell ? "t" : "f";
    default:
      return cell === null ? "z" : "u";
  }
}

/** One row of an update: a changed row (only the changed columns) or a new row (every column). */
export interface RowChange {
  /** The row's index in the new poll. */
  readonly row: number;
  /** Indexes of the changed columns; `undefined` for a new row. */
  readonly columns: readonly number[] | undefined;
}

/** The difference between two successive polls of one unit. */
export type RowsDelta =
  | { readonly kind: "unchanged" }
  /**
   * Applying it to the previous rows (remove `deleted`, change `upserts` in place, append the
   * new rows of `upserts` in order) gives exactly the new rows in their order.
   */
  | {
    readonly kind: "changed";
    /** Changed rows in the new order, then new rows in the new order. */
    readonly upserts: readonly RowChange[];
    /** Indexes in the previous poll of the rows that are gone. */
    readonly deleted: readonly number[];
  }
  /** The layout changed, or no update could reproduce the new order: send a snapshot. */
  | { readonly kind: "reshaped" };

const UNCHANGED = { kind: "unchanged" } as const;
const RESHAPED = { kind: "reshaped" } as const;

/**
 * Compares two polls of one unit. Same shape object: only the varying cells are compared. Same
 * keys in the same order: every cell outside the key is compared. Otherwise rows may be
 * removed anywhere and added at the end; anything else (a reorder, a row added in the middle)
 * is `reshaped`.
 *
 * @example
 * ```ts
 * diffRows(before, after); // { kind: "changed", upserts: [{ row: 0, columns: [2] }], deleted: [] }
 * ```
 */
export function diffRows(previous: RowSet, next: RowSet): RowsDelta {
  if (previous === next) return UNCHANGED; // a handle hands the same rows out again (real_handle.ts)
  const layout = next.shape.layout;
  if (previous.shape.layout !== layout) return RESHAPED;
  if (previous.shape === next.shape) return changedCells(previous, next, layout.varying);
  const before = previous.shape.keys;
  const after = next.shape.keys;
  if (sameKeys(before, after)) return changedCells(previous, next, nonKeyColumns(layout));
  return movedRows(previous, next, nonKeyColumns(layout));
}

/** Rows at the same index: which of `columns` changed. */
function changedCells(previous: RowSet, next: RowSet, columns: readonly number[]): RowsDelta {
  const width = next.shape.layout.columns.length;
  const upserts: RowChange[] = [];
  const rows = next.shape.keys.length;
  for (let row = 0; row < rows; row++) {
    const changed = changedColumns(previous.cells, row * width, next.cells, row * width, columns);
    if (changed) upserts.push({ row, columns: changed });
  }
  return upserts.length === 0 ? UNCHANGED : { kind: "changed", upserts, deleted: [] };
}

/** Rows removed anywhere and rows added at the end; `reshaped` for anything else. */
function movedRows(previous: RowSet, next: RowSet, columns: readonly number[]): RowsDelta {
  const width = next.shape.layout.columns.length;
  const before = previous.shape.keys;
  const after = next.shape.keys;
  const indexBefore = new Map<string, number>();
  for (let i = 0; i < before.length; i++) indexBefore.set(before[i], i);
  const kept = new Set<string>();
  for (const key of after) if (indexBefore.has(key)) kept.add(key);
  const upserts: RowChange[] = [];
  const deleted: number[] = [];
  let p = 0; // the next previous row not yet matched or deleted
  let row = 0;
  for (; row < after.length; row++) {
    const at = indexBefore.get(after[row]);
    if (at === undefined) break; // the first new row: every later row must be new too
    while (p < before.length && !kept.has(before[p])) deleted.push(p++);
    if (at !== p) return RESHAPED; // a kept row moved
    const changed = changedColumns(previous.cells, at * width, next.cells, row * width, columns);
    if (changed) upserts.push({ row, columns: changed });
    p++;
  }
  for (let added = row; added < after.length; added++) {
    if (indexBefore.has(after[added])) return RESHAPED; // a kept row after a new one
    upserts.push({ row: added, columns: undefined });
  }
  for (; p < before.length; p++) {
    if (kept.has(before[p])) return RESHAPED;
    deleted.push(p);
  }
  return upserts.length === 0 && deleted.length === 0 ? UNCHANGED : { kind: "changed", upserts, deleted };
}

function changedColumns(
  before: readonly Cell[],
  from: number,
  after: readonly Cell[],
  to: number,
  columns: readonly number[],
): number[] | undefined {
  let changed: number[] | undefined;
  for (const column of columns) {
    // No value and NULL both read `null` in v1; the seed's array is sent whole every poll anyway.
    if ((before[from + column] ?? null) !== (after[to + column] ?? null)) (changed ??= []).push(column);
  }
  return changed;
}

/** Whether two shapes' row keys are the same, in the same order. */
export function sameKeys(a: readonly string[], b: readonly string[]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

const nonKey = new WeakMap<Layout, readonly number[]>();

/** Every column outside the key. */
function nonKeyColumns(layout: Layout): readonly number[] {
  let columns = nonKey.get(layout);
  if (!columns) {
    columns = layout.columns.map((_, i) => i).filter((i) => !layout.keyIndexes.includes(i));
    nonKey.set(layout, columns);
  }
  return columns;
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
