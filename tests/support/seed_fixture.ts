/**
 * The seed fixture: unit 12 with every kind of point (values, a NULL column, a code naming no
 * column, an address with no data row, an inactive point, codes like `__proto__` or SQL text),
 * unit 13 with one point, unit 14 with only an inactive one. One copy, loaded into a MariaDB
 * test database or a SQLite demo-schema database, with the points the `real` handle yields.
 */

import type { DatabaseSync } from "node:sqlite";
import type { Point } from "./points.ts";
import { createTestDatabase, type PointRow, type TestDatabase } from "./mysql.ts";

/** Codes that must only ever be looked up in a returned row: never in SQL, never on a prototype. */
export const HOSTILE_CODES = [
  "constructor",
  "__proto__",
  "toString",
  "hasOwnProperty",
  "id; DROP TABLE archive_device",
];

/** The `archive_device` rows, in table order. */
export const SEED_POINTS: readonly PointRow[] = [
  { unit: 12, code: "ua", address: "GW1", showId: 1 },
  { unit: 12, code: "ia", address: "GW1", showId: 2 },
  { unit: 12, code: "ua", address: "GW2", showId: 3 },
  { unit: 12, code: "ia", address: "GW2", showId: 4 },
  { unit: 12, code: "nosuchcolumn", address: "GW1", showId: 5 },
  { unit: 12, code: "ua", address: "GW-NODATA", showId: 6 },
  { unit: 12, code: "ub", address: "GW1", showId: 7, status: "d" },
  ...HOSTILE_CODES.map((code, i) => ({ unit: 12, code, address: "GW1", showId: 8 + i })),
  { unit: 13, code: "ua", address: "GW3", showId: 1 },
  { unit: 14, code: "ua", address: "GW3", showId: 1, status: "x" },
];

/** The `device_data_real` rows by `equip_address` (GW-NODATA has none). */
export const SEED_DATA: Readonly<Record<string, Record<string, number | null>>> = {
  GW1: { ua: 229.5, ia: 10, ub: 1 },
  GW2: { ua: 231, ia: null },
  GW3: { ua: 220 },
};

/** A point as the fixture's rows make it (`recode`, `rename`, ... derived as the loaders do). */
export function seedPoint(code: string, address: string, showId: number, value: Point["value"]): Point {
  return {
    code,
    recode: code.toUpperCase(),
    name: code,
    rename: `${address} ${code}`,
    show_id: showId,
    address,
    gateway_id: 1,
    address_type: "modbus",
    value,
  };
}

/** Unit 12's active points with their values, in table order; `undefined`: no value. */
export const EXPECTED_12: readonly Point[] = [
  seedPoint("ua", "GW1", 1, 229.5),
  seedPoint("ia", "GW1", 2, 10),
  seedPoint("ua", "GW2", 3, 231),
  seedPoint("ia", "GW2", 4, null),
  seedPoint("nosuchcolumn", "GW1", 5, undefined),
  seedPoint("ua", "GW-NODATA", 6, undefined),
  ...HOSTILE_CODES.map((code, i) => seedPoint(code, "GW1", 8 + i, undefined)),
];

/** Unit 13's one point. */
export const EXPECTED_13: readonly Point[] = [seedPoint("ua", "GW3", 1, 220)];

/** A fresh MariaDB test database holding the fixture. */
export async function seedTestDatabase(): Promise<TestDatabase> {
  const db = await createTestDatabase();
  await db.addPoints([...SEED_POINTS]);
  for (const [address, values] of Object.entries(SEED_DATA)) await db.setData(address, values);
  return db;
}

/** Adds the fixture to a SQLite database with the demo schema (`createDemoSchema`). */
export function seedSqlite(db: DatabaseSync): void {
  const insert = db.prepare(
    "INSERT INTO archive_device (unit_id, code, recode, name, rename, show_id, gateway_address, gateway_id, lot_type, status) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
  );
  for (const p of SEED_POINTS) {
    insert.run(
      p.unit,
      p.code,
      p.code.toUpperCase(),
      p.name ?? p.code,
      p.rename ?? `${p.address} ${p.code}`,
      p.showId ?? 1,
      p.address,
      p.gatewayId ?? 1,
      "modbus",
      p.status ?? "a",
    );
  }
  for (const [address, values] of Object.entries(SEED_DATA)) {
    const columns = Object.keys(values);
    db.prepare(
      `INSERT INTO device_data_real (equip_address, ${columns.join(", ")}) VALUES (?, ${
        columns.map(() => "?").join(", ")
      })`,
    ).run(address, ...Object.values(values));
  }
}
