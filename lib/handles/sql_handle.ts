/**
 * A handle defined in the configuration: the operator's own SELECT, run once per poll for every
 * subscribed unit of a database (`:units` becomes the list of units, as bound parameters), its
 * result split into units by the `unit` column and into rows by the `key` columns.
 *
 * The unit list is padded to one of a few sizes (repeating its last unit), so that the server
 * prepares a handful of statements whatever the number of subscribers; more than
 * {@link MAX_UNITS_PER_QUERY} units are read in chunks. Padded IN lists beat one JSON array bound
 * through JSON_TABLE (bench/unit_list_query.ts, bench/README.md): as fast or faster, and they keep
 * the unit column's index whatever its collation.
 */

import { expandUnits, type HandleSettings, unitsPlaceholderCount } from "../config/handle_settings.ts";
import type { Unit } from "../config/unit.ts";
import { unitOfCell } from "../config/unit.ts";
import type { Row, Source, SqlParam } from "../sources/source.ts";
import { type Handle, HandleError, UnitFault, type UnitPoll } from "./handle.ts";
import {
  type Cell,
  type Layout,
  LayoutError,
  layoutOf,
  rowKey,
  type RowSet,
  sameKeys,
  type Shape,
  toScalar,
} from "./rows.ts";

/** Most units one query asks for; MariaDB turns longer IN lists into a subquery. */
export const MAX_UNITS_PER_QUERY = 1000;

/** The list sizes units are padded to: a handful of statement texts for any number of units. */
export const UNIT_LIST_SIZES = [1, 4, 16, 64, 256, MAX_UNITS_PER_QUERY] as const;

/** The padded size of a list of `count` units (at most {@link MAX_UNITS_PER_QUERY}). */
export function paddedSize(count: number): number {
  return UNIT_LIST_SIZES.find((size) => size >= count) ?? MAX_UNITS_PER_QUERY;
}

/** The operator's SQL is prepared: a `?` in its own string literals stays text. */
const PREPARED = { prepared: true } as const;

/** What a SQL handle reports besides its rows. */
export interface SqlHandleEvents {
  /**
   * Rows that repeated a key within their unit were dropped (the first row wins).
   * @param handle the handle's name
   * @param key the first repeated key's cells, as JSON
   * @param count how many rows were dropped in this poll
   */
  duplicateKeys(handle: string, key: string, count: number): void;
}

/**
 * Creates a handle from its validated settings.
 *
 * @example
 * ```ts
 * const tanks = createSqlHandle(config.handles.tanks, { duplicateKeys() {} });
 * await tanks.fetch(source, ["north", "south"]); // Map { "north" => RowSet, "south" => RowSet }
 * ```
 */
export function createSqlHandle(settings: HandleSettings, events: SqlHandleEvents): Handle {
  const occurrences = unitsPlaceholderCount(settings.sql);
  const statements = new Map<number, string>();
  const statementFor = (size: number) => {
    let sql = statements.get(size);
    if (sql === undefined) statements.set(size, sql = expandUnits(settings.sql, size));
    return sql;
  };
  // Per source: each unit's last shape, handed out again while its rows keep their keys.
  const shapes = new WeakMap<Source, Map<Unit, Shape>>();

  const read = async (source: Source, units: readonly Unit[]): Promise<Row[]> => {
    if (settings.unit === undefined) return await source.select(settings.sql, [], PREPARED);
    const rows: Row[] = [];
    for (let start = 0; start < units.length; start += MAX_UNITS_PER_QUERY) {
      const chunk = units.slice(start, start + MAX_UNITS_PER_QUERY) as SqlParam[];
      const size = paddedSize(chunk.length);
      const list = [...chunk, ...Array<SqlParam>(size - chunk.length).fill(chunk[chunk.length - 1])];
      const params = Array.from({ length: occurrences }, () => list).flat();
      rows.push(...await source.select(statementFor(size), params, PREPARED));
    }
    return rows;
  };

  return {
    name: settings.name,
    unitType: settings.unitType,
    frames: "rows",
    databases: settings.databases === undefined ? undefined : new Set(settings.databases),
    pollIntervalMs: settings.pollIntervalMs,
    queriesPerFetch: (units) => settings.unit === undefined ? 1 : Math.ceil(units / MAX_UNITS_PER_QUERY),

    async fetch(source: Source, units: readonly Unit[]): Promise<Map<Unit, UnitPoll>> {
      const rows = await read(source, units);
      let known = shapes.get(source);
      if (!known) shapes.set(source, known = new Map());
      const result = splitByUnit(settings, rows, units, events);
      for (const unit of known.keys()) if (!result.has(unit)) known.delete(unit);
      for (const [unit, poll] of result) {
        if (poll instanceof UnitFault) continue;
        const last = known.get(unit);
        // The same keys in the same order keep the shape object: the diff then compares cells only.
        if (last && last.layout === poll.shape.layout && sameKeys(last.keys, poll.shape.keys)) {
          result.set(unit, { shape: last, cells: poll.cells });
        } else {
          known.set(unit, poll.shape);
        }
      }
      return result;
    },
  };
}

/** A unit's rows while they are read: cells and keys, in the result's order. */
interface Collecting {
  readonly cells: Cell[];
  readonly keys: string[];
  readonly seen: Set<string>;
  rows: number;
}

/** Splits a result into the requested units' row sets; every requested unit is in the map. */
function splitByUnit(
  settings: HandleSettings,
  rows: readonly Row[],
  units: readonly Unit[],
  events: SqlHandleEvents,
): Map<Unit, UnitPoll> {
  const layout = layoutOfResult(settings, rows);
  const byUnit = new Map<Unit, Collecting>();
  for (const unit of units) byUnit.set(unit, { cells: [], keys: [], seen: new Set(), rows: 0 });
  const { columns, keyIndexes } = layout;
  const width = columns.length;
  let duplicates = 0;
  let firstDuplicate = "";
  for (const row of rows) {
    const unit = settings.unit === undefined
      ? null
      : unitOfCell(settings.unitType, toScalar(row[settings.unit]));
    const into = unit === undefined ? undefined : byUnit.get(unit);
    if (!into) continue; // a unit no one asked for (the SQL may read more than `:units`)
    into.rows++;
    if (into.rows > settings.maxRowsPerUnit) continue;
    const offset = into.cells.length;
    for (let c = 0; c < width; c++) into.cells.push(toScalar(row[columns[c]]));
    const key = rowKey(into.cells, offset, keyIndexes);
    if (into.seen.has(key)) {
      if (duplicates++ === 0) firstDuplicate = JSON.stringify(keyIndexes.map((i) => into.cells[offset + i]));
      into.cells.length = offset;
      into.rows--;
      continue;
    }
    into.seen.add(key);
    into.keys.push(key);
  }
  if (duplicates > 0) events.duplicateKeys(settings.name, firstDuplicate, duplicates);
  const result = new Map<Unit, UnitPoll>();
  for (const [unit, collected] of byUnit) {
    result.set(
      unit,
      collected.rows > settings.maxRowsPerUnit
        ? new UnitFault(
          "TOO_MANY_ROWS",
          `handle '${settings.name}' read ${collected.rows} rows for ${unitText(unit)}; ` +
            `at most ${settings.maxRowsPerUnit} are served (maxRowsPerUnit)`,
        )
        : { shape: { layout, keys: collected.keys }, cells: collected.cells } satisfies RowSet,
    );
  }
  return result;
}

function unitText(unit: Unit): string {
  return unit === null ? "its topic" : `unit ${JSON.stringify(unit)}`;
}

/** The layout of a result: its columns (in order) and the handle's key. @throws {HandleError} naming a missing column. */
function layoutOfResult(settings: HandleSettings, rows: readonly Row[]): Layout {
  // An empty result has no columns to read: its rows are none, whatever the layout says.
  const columns = rows.length > 0 ? Object.keys(rows[0]) : [...settings.key];
  if (settings.unit !== undefined && rows.length > 0 && !columns.includes(settings.unit)) {
    throw new HandleError(
      settings.name,
      `handle '${settings.name}': the result has no column '${settings.unit}' (its unit); ` +
        `columns: ${columns.join(", ")}`,
    );
  }
  try {
    return layoutOf(columns, settings.key);
  } catch (error) {
    if (!(error instanceof LayoutError)) throw error;
    throw new HandleError(
      settings.name,
      `handle '${settings.name}': the result has no column '${error.column}' (in its key); ` +
        `columns: ${columns.join(", ")}`,
    );
  }
}
