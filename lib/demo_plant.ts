/**
 * The embedded demo plant for `deno task demo`: an in-memory SQLite database with the seed's
 * two tables, three units of gateways and points, and a simulator that changes some readings
 * every second. No MySQL needed.
 */

import { DatabaseSync } from "node:sqlite";
import type { Source } from "./source.ts";
import { SqliteSource } from "./sqlite_source.ts";

/** The columns of `device_data_real` the demo fills: one per measurement code. */
const MEASUREMENTS = [
  { code: "ua", name: "Voltage A", unit: "V", base: 230, spread: 3 },
  { code: "ub", name: "Voltage B", unit: "V", base: 230, spread: 3 },
  { code: "ia", name: "Current A", unit: "A", base: 12, spread: 2 },
  { code: "p", name: "Active power", unit: "kW", base: 8, spread: 1.5 },
  { code: "temp", name: "Temperature", unit: "°C", base: 41, spread: 4 },
] as const;

/** Units of the demo plant: id, name, and its gateways. */
const UNITS = [
  { id: 1, name: "Boiler house", gateways: ["GW-101", "GW-102"] },
  { id: 2, name: "Compressor hall", gateways: ["GW-201", "GW-202", "GW-203"] },
  { id: 3, name: "Water treatment", gateways: ["GW-301"] },
];

/** Creates the demo schema and data in a database. Exported for tests. */
export function createDemoSchema(db: DatabaseSync): void {
  db.exec(`
    CREATE TABLE archive_device (
      id INTEGER PRIMARY KEY, unit_id INTEGER NOT NULL, code TEXT, recode TEXT, name TEXT,
      rename TEXT, show_id INTEGER, gateway_address TEXT, gateway_id INTEGER, lot_type TEXT,
      status TEXT NOT NULL DEFAULT 'a');
    CREATE INDEX archive_device_unit ON archive_device (unit_id, status);
    CREATE TABLE device_data_real (
      equip_address TEXT PRIMARY KEY, ${MEASUREMENTS.map((m) => `${m.code} REAL`).join(", ")},
      update_time TEXT);`);
  const point = db.prepare(
    "INSERT INTO archive_device (unit_id, code, recode, name, rename, show_id, gateway_address, gateway_id, lot_type) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
  );
  const data = db.prepare(
    `INSERT INTO device_data_real (equip_address, ${
      MEASUREMENTS.map((m) => m.code).join(", ")
    }, update_time) VALUES (?, ${MEASUREMENTS.map(() => "?").join(", ")}, datetime('now'))`,
  );
  let gatewayId = 1;
  for (const unit of UNITS) {
    let showId = 1;
    for (const address of unit.gateways) {
      for (const m of MEASUREMENTS) {
        point.run(
          unit.id,
          m.code,
          m.code.toUpperCase(),
          m.name,
          `${address} ${m.name} (${m.unit})`,
          showId++,
          address,
          gatewayId,
          "modbus",
        );
      }
      data.run(address, ...MEASUREMENTS.map((m) => round(m.base)));
      gatewayId++;
    }
  }
}

function round(value: number): number {
  return Math.round(value * 10) / 10;
}

/** A running demo plant. */
export interface DemoPlant {
  /** The demo database as the source `demo`. */
  readonly sources: ReadonlyMap<string, Source>;
  /** A one-line example of subscribing, for the start banner. */
  exampleCommand(url: string): string;
  /** Stops the simulator and closes the database. */
  stop(): void;
}

/** Creates the demo database and starts changing a few readings every second. */
export function startDemoPlant(): DemoPlant {
  const db = new DatabaseSync(":memory:");
  createDemoSchema(db);
  const addresses = UNITS.flatMap((u) => u.gateways);
  const updates = new Map(
    MEASUREMENTS.map((
      m,
    ) => [
      m,
      db.prepare(
        `UPDATE device_data_real SET ${m.code} = ?, update_time = datetime('now') WHERE equip_address = ?`,
      ),
    ]),
  );
  const timer = setInterval(() => {
    // A few points move each second; most stay put, so updates stay small.
    for (let i = 0; i < 4; i++) {
      const m = MEASUREMENTS[Math.floor(Math.random() * MEASUREMENTS.length)];
      const address = addresses[Math.floor(Math.random() * addresses.length)];
      updates.get(m)!.run(round(m.base + (Math.random() * 2 - 1) * m.spread), address);
    }
  }, 1000);
  return {
    sources: new Map([["demo", new SqliteSource("demo", db)]]),
    exampleCommand: (url) => `send {"type":"subscribe","id":1,"topic":"demo/real/1"} to ${url} (units 1-3)`,
    stop() {
      clearInterval(timer);
      if (db.isOpen) db.close();
    },
  };
}
