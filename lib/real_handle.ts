/**
 * The `real` handle: the seed's device points with their latest values, read with at most two
 * queries per poll for any number of units (the seed ran 1 + N per unit).
 *
 * Point metadata (`archive_device`) changes rarely and is the bulk of the rows, so it is
 * cached: each poll re-reads the metadata of a slice of the units (every unit at least once per
 * `pointsRefreshPolls` polls, new units at once), then reads the values of every cached
 * address. A point's `code` names a column of `device_data_real`; that name is looked up in
 * the returned row, never put into SQL, so a hostile or odd `code` can only yield "no value".
 */

import type { Handle } from "./handle.ts";
import { type Point, type Scalar, toScalar } from "./point.ts";
import type { Row, Source } from "./source.ts";

/** `?, ?, ?` for n placeholders. */
function placeholders(n: number): string {
  return Array.from({ length: n }, () => "?").join(", ");
}

// Rows come back in the table's natural order within a unit, as the seed sent them.
function pointsSql(units: number): string {
  return "SELECT `unit_id`, `code`, `recode`, `name`, `rename`, `show_id`, " +
    "`gateway_address` AS `address`, `gateway_id`, `lot_type` AS `address_type` " +
    "FROM `archive_device` WHERE `status` = 'a' AND `unit_id` IN (" + placeholders(units) + ")";
}

function valuesSql(addresses: number): string {
  return "SELECT * FROM `device_data_real` WHERE `equip_address` IN (" + placeholders(addresses) + ")";
}

/** A point without its value: one cached `archive_device` row. */
type PointMetadata = Omit<Point, "value">;

/** Options of {@link createRealHandle}. */
export interface RealHandleOptions {
  /**
   * Each unit's point metadata is re-read at least once every this many polls (1: every
   * poll). Values are read every poll. A renamed, added or removed point reaches subscribers
   * (as a fresh snapshot) within that many polls.
   */
  readonly pointsRefreshPolls: number;
}

/** Per source: the cached metadata of every unit polled, and the count of polls. */
interface MetadataCache {
  polls: number;
  readonly units: Map<number, PointMetadata[]>;
}

/**
 * Creates a `real` handle with its own metadata cache (per source).
 *
 * @example
 * ```ts
 * const real = createRealHandle({ pointsRefreshPolls: 10 });
 * const byUnit = await real.fetch(source, [12, 13]); // Map { 12 => [...], 13 => [...] }
 * ```
 */
export function createRealHandle(options: RealHandleOptions): Handle {
  const caches = new WeakMap<Source, MetadataCache>();
  return {
    name: "real",
    queriesPerFetch: 2,
    async fetch(source: Source, unitIds: readonly number[]): Promise<Map<number, Point[]>> {
      let cache = caches.get(source);
      if (!cache) {
        cache = { polls: 0, units: new Map() };
        caches.set(source, cache);
      }
      const poll = cache.polls++;
      // New units now; known ones in turn, spread evenly over the polls by unit id.
      const refresh = unitIds.filter((id) =>
        !cache.units.has(id) || (id + poll) % options.pointsRefreshPolls === 0
      );
      if (refresh.length > 0) {
        const fresh = groupByUnit(await source.select(pointsSql(refresh.length), refresh));
        for (const id of refresh) cache.units.set(id, fresh.get(id) ?? []);
      }
      const wanted = new Set(unitIds);
      for (const id of cache.units.keys()) if (!wanted.has(id)) cache.units.delete(id);

      const addresses = new Set<string>();
      for (const id of unitIds) {
        for (const point of cache.units.get(id)!) {
          if (point.address !== null) addresses.add(String(point.address));
        }
      }
      const dataRows = addresses.size === 0
        ? []
        : await source.select(valuesSql(addresses.size), [...addresses]);
      const dataByAddress = new Map<string, Row>();
      for (const row of dataRows) {
        const address = String(row.equip_address);
        if (!dataByAddress.has(address)) dataByAddress.set(address, row); // the seed's LIMIT 1
      }
      const result = new Map<number, Point[]>();
      for (const id of unitIds) {
        result.set(
          id,
          cache.units.get(id)!.map((point) => ({
            ...point,
            value: point.address === null
              ? undefined
              : readValue(dataByAddress.get(String(point.address)), point.code),
          })),
        );
      }
      return result;
    },
  };
}

/** A `real` handle that re-reads every unit's metadata on every poll (no caching across polls). */
export const realHandle: Handle = createRealHandle({ pointsRefreshPolls: 1 });

function groupByUnit(rows: Row[]): Map<number, PointMetadata[]> {
  const units = new Map<number, PointMetadata[]>();
  for (const row of rows) {
    const id = Number(row.unit_id);
    let points = units.get(id);
    if (!points) units.set(id, points = []);
    points.push({
      code: toScalar(row.code),
      recode: toScalar(row.recode),
      name: toScalar(row.name),
      rename: toScalar(row.rename),
      show_id: toScalar(row.show_id),
      address: toScalar(row.address),
      gateway_id: toScalar(row.gateway_id),
      address_type: toScalar(row.address_type),
    });
  }
  return units;
}

function readValue(data: Row | undefined, code: Scalar): Scalar | undefined {
  if (!data || typeof code !== "string" || !Object.hasOwn(data, code)) return undefined;
  return toScalar(data[code]);
}
