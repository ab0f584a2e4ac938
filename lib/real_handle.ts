/**
 * The `real` handle: the seed's device points with their latest values, read with two
 * queries per poll for any number of units (the seed ran 1 + N per unit).
 *
 * A point's `code` names a column of `device_data_real`. That name is looked up in the
 * returned row, never put into SQL, so a hostile or odd `code` can only yield "no value".
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

function valuesSql(units: number): string {
  return "SELECT * FROM `device_data_real` WHERE `equip_address` IN (" +
    "SELECT `gateway_address` FROM `archive_device` WHERE `status` = 'a' AND `unit_id` IN (" +
    placeholders(units) + "))";
}

/** The built-in `real` handle. */
export const realHandle: Handle = {
  name: "real",
  queriesPerFetch: 2,
  async fetch(source: Source, unitIds: readonly number[]): Promise<Map<number, Point[]>> {
    const result = new Map<number, Point[]>(unitIds.map((id) => [id, []]));
    if (unitIds.length === 0) return result;
    const [pointRows, dataRows] = await Promise.all([
      source.select(pointsSql(unitIds.length), unitIds),
      source.select(valuesSql(unitIds.length), unitIds),
    ]);
    const dataByAddress = new Map<string, Row>();
    for (const row of dataRows) {
      const address = String(row.equip_address);
      if (!dataByAddress.has(address)) dataByAddress.set(address, row); // the seed's LIMIT 1
    }
    for (const row of pointRows) {
      const points = result.get(Number(row.unit_id));
      if (!points) continue;
      const code = toScalar(row.code);
      const address = toScalar(row.address);
      points.push({
        code,
        recode: toScalar(row.recode),
        name: toScalar(row.name),
        rename: toScalar(row.rename),
        show_id: toScalar(row.show_id),
        address,
        gateway_id: toScalar(row.gateway_id),
        address_type: toScalar(row.address_type),
        value: address === null ? undefined : readValue(dataByAddress.get(String(address)), code),
      });
    }
    return result;
  },
};

function readValue(data: Row | undefined, code: Scalar): Scalar | undefined {
  if (!data || typeof code !== "string" || !Object.hasOwn(data, code)) return undefined;
  return toScalar(data[code]);
}
