/**
 * The JSON of rows as frames carry them: each row an object of its columns, in the result's
 * order. Column names are serialized (and measured) once per layout, not once per cell, and only
 * string cells are scanned for their UTF-8 length. Pure, no I/O.
 */

import type { Cell, Layout, RowSet } from "../handles/rows.ts";
import { utf8Length } from "./utf8.ts";

/** A piece of JSON and its UTF-8 length. */
export interface Json {
  /** The text. */
  readonly json: string;
  /** Its UTF-8 length. */
  readonly bytes: number;
}

/** What a cell without a value (`undefined`) is written as: v1 `null`, the seed's array `""`. */
export type Missing = "null" | '""';

/** `"name":` of each column, and its UTF-8 length. */
interface ColumnNames {
  readonly text: readonly string[];
  readonly bytes: readonly number[];
}

const columnNames = new WeakMap<Layout, ColumnNames>();

function namesOf(layout: Layout): ColumnNames {
  let names = columnNames.get(layout);
  if (!names) {
    const text = layout.columns.map((column) => JSON.stringify(column) + ":");
    names = { text, bytes: text.map(utf8Length) };
    columnNames.set(layout, names);
  }
  return names;
}

/**
 * Writes JSON text while counting its UTF-8 bytes.
 *
 * @example
 * ```ts
 * const out = new JsonWriter();
 * out.raw("[");
 * out.object(layout, rows.cells, 0, [0, 1], "null");
 * out.raw("]");
 * out.done(); // { json: '[{"tank_id":1,"level_m":2.5}]', bytes: 29 }
 * ```
 */
export class JsonWriter {
  json = "";
  bytes = 0;

  /** Appends ASCII punctuation. */
  raw(text: string): void {
    this.json += text;
    this.bytes += text.length;
  }

  /** Appends pre-measured text. */
  measured(text: string, bytes: number): void {
    this.json += text;
    this.bytes += bytes;
  }

  /** Appends one cell's JSON. */
  cell(cell: Cell, missing: Missing): void {
    if (cell === undefined) return this.raw(missing);
    const text = JSON.stringify(cell);
    this.json += text;
    this.bytes += typeof cell === "string" ? utf8Length(text) : text.length;
  }

  /** Appends `{"a":…,"b":…}` of the given columns of the row starting at `offset`. */
  object(
    layout: Layout,
    cells: readonly Cell[],
    offset: number,
    columns: Iterable<number>,
    missing: Missing,
  ): void {
    const names = namesOf(layout);
    let first = true;
    this.raw("{");
    for (const column of columns) {
      if (!first) this.raw(",");
      first = false;
      this.measured(names.text[column], names.bytes[column]);
      this.cell(cells[offset + column], missing);
    }
    this.raw("}");
  }

  /** The text written. */
  done(): Json {
    return { json: this.json, bytes: this.bytes };
  }
}

const everyColumn = new WeakMap<Layout, readonly number[]>();

/** `[0, 1, …]`, one index per column. */
export function allColumns(layout: Layout): readonly number[] {
  let columns = everyColumn.get(layout);
  if (!columns) everyColumn.set(layout, columns = layout.columns.map((_, i) => i));
  return columns;
}

/**
 * `[{…},…]`: every row as an object of every column.
 *
 * @example
 * ```ts
 * rowsJson(rows, "null").json; // '[{"tank_id":1,"level_m":2.5}]'
 * ```
 */
export function rowsJson(rows: RowSet, missing: Missing): Json {
  const { layout, keys } = rows.shape;
  const width = layout.columns.length;
  const columns = allColumns(layout);
  const out = new JsonWriter();
  out.raw("[");
  for (let row = 0; row < keys.length; row++) {
    if (row > 0) out.raw(",");
    out.object(layout, rows.cells, row * width, columns, missing);
  }
  out.raw("]");
  return out.done();
}
