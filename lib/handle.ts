/**
 * Handles: the kinds of data a topic can name (`<db>/<handle>/<unit_id>`). A handle turns a
 * set of unit ids into their points with a bounded number of queries, whatever the number of
 * units, so that one poll serves every subscriber of every unit.
 */

import type { UnitPoints } from "./point.ts";
import type { Source } from "./source.ts";

/** A kind of data, read through any {@link Source}. */
export interface Handle {
  /** The name used in topics, e.g. `real`. */
  readonly name: string;
  /** Queries per call, whatever the number of units (the poller's budget per tick). */
  readonly queriesPerFetch: number;
  /**
   * Reads the points of every unit in `unitIds`. Every requested unit is in the result; a unit
   * with no points maps to empty arrays. Rejects with the source's error.
   */
  fetch(source: Source, unitIds: readonly number[]): Promise<Map<number, UnitPoints>>;
}
