/**
 * Handles: the kinds of data a topic can name (`<db>/<handle>/<unit>` or `<db>/<handle>`). A
 * handle owns its topic grammar (its unit type) and turns a set of units into their rows with a
 * bounded number of queries, whatever the number of units, so that one poll serves every
 * subscriber of every unit. `real` (the seed's points) is built in; the others come from the
 * configuration's `handles` (`sql_handle.ts`).
 */

import type { RowSet } from "./rows.ts";
import type { Source } from "../sources/source.ts";
import type { Unit, UnitType } from "../config/unit.ts";

/** How a handle's topics look in protocol v1 frames. */
export type FrameFamily =
  /** The seed's points: `snapshot` with `points`, `update` with `changes` (value changes only). */
  | "points"
  /** Rows of any table: `snapshot` with `key` and `rows`, `update` with `upsert` and `delete`. */
  | "rows";

/** Why one unit of a poll could not be served; its topic goes `stale` with this code. */
export class UnitFault {
  /**
   * @param code the `stale` frame's code, e.g. `TOO_MANY_ROWS`
   * @param message what happened, naming the handle and the limit
   */
  constructor(readonly code: string, readonly message: string) {}
}

/** One unit's share of a poll. */
export type UnitPoll = RowSet | UnitFault;

/**
 * A handle's own failure (its SQL failed, its result lacks a column it needs): only its topics
 * go `stale`; its database and the other handles keep flowing.
 */
export class HandleError extends Error {
  override name = "HandleError";
  /**
   * @param handle the handle's name
   * @param message what happened, naming the handle (and the column, when one is missing)
   */
  constructor(readonly handle: string, message: string) {
    super(message);
  }
}

/** A kind of data, read through any {@link Source}. */
export interface Handle {
  /** The name used in topics, e.g. `real`. */
  readonly name: string;
  /** The grammar of its topics' last part. */
  readonly unitType: UnitType;
  /** Its protocol v1 frames. */
  readonly frames: FrameFamily;
  /** Database codes it is offered on; `undefined`: every database. */
  readonly databases: ReadonlySet<string> | undefined;
  /** Its own poll interval in ms; `undefined`: the configuration's `pollIntervalMs`. */
  readonly pollIntervalMs: number | undefined;
  /** Most queries one fetch of `units` units runs (the poller's budget per tick). */
  queriesPerFetch(units: number): number;
  /**
   * Reads the rows of every unit in `units` (`[null]` for a unit-less handle). Every requested
   * unit is in the result; a unit with no rows maps to an empty row set. Rejects with the
   * source's {@link SourceError} or a {@link HandleError}.
   */
  fetch(source: Source, units: readonly Unit[]): Promise<Map<Unit, UnitPoll>>;
}
