/**
 * The embedded demo plant for `deno task demo`: an in-memory SQLite database with the seed's
 * two tables (three units of gateways and points), the tables of two handles an operator would
 * define in the config (`tank_level` by site, `alarm` without units; {@link DEMO_HANDLES}), and a
 * simulator that changes some readings, moves some tanks and raises and clears alarms every
 * second. No MySQL needed.
 */

import { DatabaseSync } from "node:sqlite";
import type { Source } from "./source.ts";
import { SqliteSource } from "./sqlite_source.ts";
import demoHandles from "./demo_handles.json" with { type: "json" };

/**
 * The demo's handles, exactly as an operator writes them under `handles` in gatecast.json:
 * `tanks` (string units, the site: `demo/tanks/north`) and `alarms` (no unit: `demo/alarms`).
 */
export const DEMO_HANDLES: Readonly<Record<string, Readonly<Record<string, unknown>>>> = demoHandles;

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

/** The tanks of each site (tank ids 1, 2, …): level (m) and temperature (°C) at start. */
const SITES = [
  { site: "north", levels: [4.2, 6.75, 3.1, 7.5], temps: [14.8, 15.2, 13.9, 16.1] },
  { site: "south", levels: [5, 2.4, 8.15], temps: [18.4, 19, 17.6] },
  { site: "east", levels: [6.3, 4.7, 3.9, 5.6], temps: [12.5, 12.1, 13.3, 12.8] },
] as const;

/** The ranges a tank's level (m) and temperature (°C) drift within. */
const LEVEL_RANGE = { min: 0.5, max: 9.5 };
const TEMP_RANGE = { min: 4, max: 30 };

/** The alarms in the table when the demo starts: three open, two already cleared. */
const INITIAL_ALARMS = [
  { severity: "info", message: "north tank 3: level below 3.5 m", cleared: true },
  { severity: "warning", message: "south tank 2: level below 2.5 m", cleared: false },
  { severity: "info", message: "east tank 1: inlet valve opened", cleared: true },
  { severity: "critical", message: "south tank 3: level above 8 m", cleared: false },
  { severity: "warning", message: "north tank 1: level sensor not responding", cleared: false },
] as const;

/**
 * Creates the demo schema and data in a database: the seed's `archive_device` and
 * `device_data_real`, and the tables of {@link DEMO_HANDLES}, `tank_level` and `alarm`, their
 * rows dated `now`. Exported for tests.
 */
export function createDemoSchema(db: DatabaseSync, now: Date = new Date()): void {
  createSeedTables(db);
  createHandleTables(db, now.toISOString());
}

function createSeedTables(db: DatabaseSync): void {
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

function createHandleTables(db: DatabaseSync, at: string): void {
  db.exec(`
    CREATE TABLE tank_level (
      site TEXT NOT NULL, tank_id INTEGER NOT NULL, level_m REAL NOT NULL, temp_c REAL NOT NULL,
      updated_at TEXT NOT NULL, PRIMARY KEY (site, tank_id));
    CREATE TABLE alarm (
      id INTEGER PRIMARY KEY, severity TEXT NOT NULL, message TEXT NOT NULL, raised_at TEXT NOT NULL,
      cleared_at TEXT NULL);
    CREATE INDEX alarm_open ON alarm (cleared_at, id);`);
  const tank = db.prepare(
    "INSERT INTO tank_level (site, tank_id, level_m, temp_c, updated_at) VALUES (?, ?, ?, ?, ?)",
  );
  for (const { site, levels, temps } of SITES) {
    levels.forEach((level, i) => tank.run(site, i + 1, level, temps[i], at));
  }
  const alarm = db.prepare(
    "INSERT INTO alarm (severity, message, raised_at, cleared_at) VALUES (?, ?, ?, ?)",
  );
  for (const a of INITIAL_ALARMS) alarm.run(a.severity, a.message, at, a.cleared ? at : null);
}

function round(value: number, digits = 1): number {
  const scale = 10 ** digits;
  return Math.round(value * scale) / scale;
}

/** How many of the `real` readings, and how many tanks, move in one step (the others stay put). */
const READINGS_PER_STEP = 4;
const TANKS_PER_STEP = 3;
/** An alarm is raised every {@link RAISE_EVERY} steps and a random open one cleared every {@link CLEAR_EVERY}. */
const RAISE_EVERY = 3;
const CLEAR_EVERY = 4;
/** At most this many alarms are open: raising one more first clears the oldest. */
export const MAX_OPEN_ALARMS = 8;
/** Cleared alarms kept as history; older ones are deleted, so the table stays small. */
export const MAX_CLEARED_ALARMS = 100;

const ALARM_SEVERITIES = ["info", "warning", "critical"] as const;
const ALARM_TEXTS = [
  "level above 8 m",
  "level below 1 m",
  "temperature above 25 °C",
  "level sensor not responding",
  "inlet valve stuck",
] as const;

/** What the simulator reads: its clock and its dice. */
export interface DemoSimulatorOptions {
  /** The time written to `updated_at`, `raised_at` and `cleared_at`; default the wall clock. */
  readonly now?: () => Date;
  /** Numbers in [0, 1) that pick what moves and by how much; default `Math.random`. */
  readonly random?: () => number;
}

/**
 * The demo's simulator over a database with the demo schema: each call of the returned step
 * moves {@link READINGS_PER_STEP} `real` readings and {@link TANKS_PER_STEP} tanks (level, and
 * half the time temperature), raises an alarm every third step and clears one every fourth.
 * The plant calls it every second; tests call it directly.
 *
 * @example
 * ```ts
 * const db = new DatabaseSync(":memory:");
 * createDemoSchema(db);
 * const step = demoSimulator(db);
 * step(); // three tanks moved, a few readings changed
 * ```
 */
export function demoSimulator(db: DatabaseSync, options: DemoSimulatorOptions = {}): () => void {
  const now = options.now ?? (() => new Date());
  const random = options.random ?? Math.random;
  const pick = <T>(items: readonly T[]): T => items[Math.floor(random() * items.length)];
  const addresses = UNITS.flatMap((u) => u.gateways);
  const readings = new Map(
    MEASUREMENTS.map((
      m,
    ) => [
      m,
      db.prepare(
        `UPDATE device_data_real SET ${m.code} = ?, update_time = datetime('now') WHERE equip_address = ?`,
      ),
    ]),
  );
  const tanks = SITES.flatMap(({ site, levels }) => levels.map((_, i) => ({ site, id: i + 1 })));
  const readTank = db.prepare("SELECT level_m, temp_c FROM tank_level WHERE site = ? AND tank_id = ?");
  const moveTank = db.prepare(
    "UPDATE tank_level SET level_m = ?, temp_c = ?, updated_at = ? WHERE site = ? AND tank_id = ?",
  );
  const openAlarms = db.prepare("SELECT id FROM alarm WHERE cleared_at IS NULL ORDER BY id");
  const raise = db.prepare("INSERT INTO alarm (severity, message, raised_at) VALUES (?, ?, ?)");
  const clear = db.prepare("UPDATE alarm SET cleared_at = ? WHERE id = ?");
  const prune = db.prepare(
    "DELETE FROM alarm WHERE id IN (SELECT id FROM alarm WHERE cleared_at IS NOT NULL ORDER BY id DESC LIMIT -1 OFFSET ?)",
  );
  const open = () => openAlarms.all().map((row) => row.id as number);
  // A drift of a few steps of `unit` either way, never zero, turned back at the range's edges.
  const drift = (value: number, unit: number, range: { min: number; max: number }, digits: number) => {
    const delta = (1 + Math.floor(random() * 4)) * unit * (random() < 0.5 ? -1 : 1);
    const next = value + delta < range.min || value + delta > range.max ? value - delta : value + delta;
    return round(next, digits);
  };
  const moveTanks = (at: string) => {
    // A partial shuffle: TANKS_PER_STEP different tanks, the others keep their row as it was.
    const order = tanks.slice();
    for (let i = 0; i < TANKS_PER_STEP; i++) {
      const j = i + Math.floor(random() * (order.length - i));
      [order[i], order[j]] = [order[j], order[i]];
      const { site, id } = order[i];
      const row = readTank.get(site, id)!;
      const level = drift(row.level_m as number, 0.02, LEVEL_RANGE, 2);
      const temp = random() < 0.5 ? drift(row.temp_c as number, 0.1, TEMP_RANGE, 1) : row.temp_c as number;
      moveTank.run(level, temp, at, site, id);
    }
  };
  let steps = 0;
  return () => {
    steps++;
    const at = now().toISOString();
    for (let i = 0; i < READINGS_PER_STEP; i++) {
      const m = pick(MEASUREMENTS);
      readings.get(m)!.run(round(m.base + (random() * 2 - 1) * m.spread), pick(addresses));
    }
    moveTanks(at);
    if (steps % CLEAR_EVERY === 0) {
      const ids = open();
      if (ids.length > 0) clear.run(at, pick(ids));
    }
    if (steps % RAISE_EVERY === 0) {
      const ids = open();
      if (ids.length >= MAX_OPEN_ALARMS) clear.run(at, ids[0]);
      const tank = pick(tanks);
      raise.run(pick(ALARM_SEVERITIES), `${tank.site} tank ${tank.id}: ${pick(ALARM_TEXTS)}`, at);
    }
    prune.run(MAX_CLEARED_ALARMS);
  };
}

/** A running demo plant. */
export interface DemoPlant {
  /** The demo database as the source `demo`. */
  readonly sources: ReadonlyMap<string, Source>;
  /** A one-line example of subscribing, naming the demo's other topics too, for the start banner. */
  exampleCommand(url: string): string;
  /** Stops the simulator and closes the database. */
  stop(): void;
}

/** Creates the demo database and starts its simulator ({@link demoSimulator}), one step a second. */
export function startDemoPlant(): DemoPlant {
  const db = new DatabaseSync(":memory:");
  createDemoSchema(db);
  const timer = setInterval(demoSimulator(db), 1000);
  const sites = SITES.map((s) => s.site).join(", ");
  return {
    sources: new Map([["demo", new SqliteSource("demo", db)]]),
    exampleCommand: (url) =>
      `send {"type":"subscribe","id":1,"topic":"demo/real/1"} to ${url} (units 1-3); ` +
      `also demo/tanks/north (sites ${sites}) and demo/alarms`,
    stop() {
      clearInterval(timer);
      if (db.isOpen) db.close();
    },
  };
}
