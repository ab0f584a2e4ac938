/**
 * Row sets for tests: a unit's poll read back as objects of its columns, so that a test states
 * the rows it expects as a reader of the frames would.
 */

import type { Cell, RowSet } from "../../lib/handles/rows.ts";

/** A unit's rows as objects of their columns, in the rows' order. */
export function joinRows(rows: RowSet): Record<string, Cell>[] {
  const { columns } = rows.shape.layout;
  const width = columns.length;
  return rows.shape.keys.map((_, row) =>
    Object.fromEntries(columns.map((column, c) => [column, rows.cells[row * width + c]]))
  );
}
