/**
 * The embedded demo plant: the seed's two tables in SQLite, three units of points, the tables of
 * the demo's own handles (`tank_level`, `alarm`), and a simulator that moves a few readings and
 * tanks every second and raises and clears alarms. The simulator is driven step by step here.
 */

import assert from "node:assert/strict";
import { DatabaseSync } from "node:sqlite";
import {
  createDemoSchema,
  DEMO_HANDLES,
  demoSimulator,
  MAX_CLEARED_ALARMS,
  MAX_OPEN_ALARMS,
  startDemoPlant,
} from "../../lib/sources/demo_plant.ts";
import { expandUnits, parseHandles } from "../../lib/config/handle_settings.ts";
import { joinPoints } from "../support/points.ts";
import { defaultRealHandle } from "../support/handles.ts";
import { rowCount, type RowSet } from "../../lib/handles/rows.ts";
import { SqliteSource } from "../../lib/sources/sqlite_source.ts";
import { delay } from "../support/app.ts";

Deno.test("the demo schema has three units with five measurements per gateway", () => {
  const db = new DatabaseSync(":memory:");
  try {
    createDemoSchema(db);
    const perUnit = db.prepare(
      "SELECT unit_id, COUNT(*) AS points, COUNT(DISTINCT gateway_address) AS gateways FROM archive_device GROUP BY unit_id ORDER BY unit_id",
    ).all().map((r) => ({ ...r }));
    assert.deepEqual(perUnit, [
      { unit_id: 1, points: 10, gateways: 2 },
      { unit_id: 2, points: 15, gateways: 3 },
      { unit_id: 3, points: 5, gateways: 1 },
    ]);
    const codes = db.prepare("SELECT DISTINCT code FROM archive_device ORDER BY code").all().map((r) =>
      r.code
    );
    assert.deepEqual(codes, ["ia", "p", "temp", "ua", "ub"]);
    assert.equal(db.prepare("SELECT COUNT(*) AS n FROM archive_device WHERE status <> 'a'").get()!.n, 0);
  } finally {
    db.close();
  }
});

Deno.test("every demo gateway has a data row with a value in each measurement column", async () => {
  const db = new DatabaseSync(":memory:");
  createDemoSchema(db);
  const source = new SqliteSource("demo", db);
  try {
    const units = await defaultRealHandle().fetch(source, [1, 2, 3]) as Map<number, RowSet>;
    assert.deepEqual([...units.values()].map(rowCount), [10, 15, 5]);
    const first = joinPoints(units.get(1)!)[0];
    assert.deepEqual(first, {
      code: "ua",
      recode: "UA",
      name: "Voltage A",
      rename: "GW-101 Voltage A (V)",
      show_id: 1,
      address: "GW-101",
      gateway_id: 1,
      address_type: "modbus",
      value: 230,
    });
    for (const unit of units.values()) {
      for (const point of joinPoints(unit)) {
        assert.equal(typeof point.value, "number", `${point.address} ${point.code}`);
      }
    }
  } finally {
    await source.close();
  }
});

Deno.test("a started demo plant serves the source 'demo' and an example subscription", async () => {
  const plant = startDemoPlant();
  try {
    assert.deepEqual([...plant.sources.keys()], ["demo"]);
    const source = plant.sources.get("demo")!;
    assert.equal(source.code, "demo");
    assert.equal(rowCount((await defaultRealHandle().fetch(source, [3])).get(3) as RowSet), 5);
    assert.equal(
      plant.exampleCommand("ws://127.0.0.1:4053/ws"),
      'send {"type":"subscribe","id":1,"topic":"demo/real/1"} to ws://127.0.0.1:4053/ws (units 1-3); ' +
        "also demo/tanks/north (sites north, south, east) and demo/alarms",
    );
  } finally {
    plant.stop();
  }
});

Deno.test("the simulator changes some readings within a few seconds", async () => {
  const plant = startDemoPlant();
  try {
    const source = plant.sources.get("demo")!;
    const real = defaultRealHandle();
    const read = async () =>
      JSON.stringify(
        [...(await real.fetch(source, [1, 2, 3])).values()].map((unit) => (unit as RowSet).cells),
      );
    const before = await read();
    let after = before;
    for (let i = 0; i < 40 && after === before; i++) {
      await delay(100);
      after = await read();
    }
    assert.notEqual(after, before);
  } finally {
    plant.stop();
  }
});

Deno.test("stopping the demo plant closes its database, and stopping twice is harmless", async () => {
  const plant = startDemoPlant();
  plant.stop();
  plant.stop();
  await assert.rejects(plant.sources.get("demo")!.select("SELECT 1", []), { name: "SourceError" });
});

// --- the demo's own handles: tanks by site, alarms without units (issue 11) ------------------------------

const CREATED = "2026-03-01T08:00:00.000Z";

/** A database with the demo schema, created at {@link CREATED}. */
function demoDatabase(): DatabaseSync {
  const db = new DatabaseSync(":memory:");
  createDemoSchema(db, new Date(CREATED));
  return db;
}

/** A clock that says 08:00:01, 08:00:02, … one second later at each call, as the plant's timer would. */
function stepClock(): { now: () => Date; last: () => string } {
  let seconds = 0;
  return {
    now: () => new Date(Date.parse(CREATED) + ++seconds * 1000),
    last: () => new Date(Date.parse(CREATED) + seconds * 1000).toISOString(),
  };
}

type TankRow = { site: string; tank_id: number; level_m: number; temp_c: number; updated_at: string };
type AlarmRow = {
  id: number;
  severity: string;
  message: string;
  raised_at: string;
  cleared_at: string | null;
};

function tanks(db: DatabaseSync): TankRow[] {
  return db.prepare("SELECT * FROM tank_level ORDER BY site, tank_id").all().map((r) =>
    ({ ...r }) as TankRow
  );
}

function alarms(db: DatabaseSync): AlarmRow[] {
  return db.prepare("SELECT * FROM alarm ORDER BY id").all().map((r) => ({ ...r }) as AlarmRow);
}

Deno.test("the demo's tank_level has 3 or 4 tanks at each of north, south and east, dated at creation", () => {
  const db = demoDatabase();
  try {
    const tank = (site: string, tank_id: number, level_m: number, temp_c: number) => ({
      site,
      tank_id,
      level_m,
      temp_c,
      updated_at: CREATED,
    });
    assert.deepEqual(tanks(db), [
      tank("east", 1, 6.3, 12.5),
      tank("east", 2, 4.7, 12.1),
      tank("east", 3, 3.9, 13.3),
      tank("east", 4, 5.6, 12.8),
      tank("north", 1, 4.2, 14.8),
      tank("north", 2, 6.75, 15.2),
      tank("north", 3, 3.1, 13.9),
      tank("north", 4, 7.5, 16.1),
      tank("south", 1, 5, 18.4),
      tank("south", 2, 2.4, 19),
      tank("south", 3, 8.15, 17.6),
    ]);
  } finally {
    db.close();
  }
});

Deno.test("the demo's alarm table starts with three open alarms and two cleared ones", () => {
  const db = demoDatabase();
  try {
    const alarm = (id: number, severity: string, message: string, cleared: boolean) => ({
      id,
      severity,
      message,
      raised_at: CREATED,
      cleared_at: cleared ? CREATED : null,
    });
    assert.deepEqual(alarms(db), [
      alarm(1, "info", "north tank 3: level below 3.5 m", true),
      alarm(2, "warning", "south tank 2: level below 2.5 m", false),
      alarm(3, "info", "east tank 1: inlet valve opened", true),
      alarm(4, "critical", "south tank 3: level above 8 m", false),
      alarm(5, "warning", "north tank 1: level sensor not responding", false),
    ]);
  } finally {
    db.close();
  }
});

Deno.test("each simulator step moves three tanks a little, dated by its clock, and leaves the others as they were", () => {
  const db = demoDatabase();
  const clock = stepClock();
  const step = demoSimulator(db, { now: clock.now });
  try {
    let before = tanks(db);
    for (let i = 0; i < 200; i++) {
      step();
      const after = tanks(db);
      const moved = after.filter((row, j) => JSON.stringify(row) !== JSON.stringify(before[j]));
      assert.equal(moved.length, 3, `step ${i + 1}: ${JSON.stringify(moved)}`);
      after.forEach((row, j) => {
        const was = before[j];
        assert.deepEqual([row.site, row.tank_id], [was.site, was.tank_id]);
        if (!moved.includes(row)) return;
        assert.equal(row.updated_at, clock.last());
        const level = Math.abs(row.level_m - was.level_m);
        assert.ok(level > 0.0199 && level < 0.0801, `level ${was.level_m} → ${row.level_m}`);
        assert.ok(row.level_m >= 0.5 && row.level_m <= 9.5, `level ${row.level_m} within 0.5..9.5 m`);
        assert.equal(row.level_m, Math.round(row.level_m * 100) / 100);
        const temp = Math.abs(row.temp_c - was.temp_c);
        assert.ok(temp === 0 || (temp > 0.099 && temp < 0.401), `temperature ${was.temp_c} → ${row.temp_c}`);
        assert.ok(row.temp_c >= 4 && row.temp_c <= 30, `temperature ${row.temp_c} within 4..30 °C`);
      });
      before = after;
    }
  } finally {
    db.close();
  }
});

Deno.test("the simulator raises an alarm on its third step and clears an open one on its fourth", () => {
  const db = demoDatabase();
  const clock = stepClock();
  const step = demoSimulator(db, { now: clock.now });
  try {
    const initial = alarms(db);
    step();
    step();
    assert.deepEqual(alarms(db), initial);
    step();
    const raised = alarms(db);
    assert.deepEqual(raised.slice(0, 5), initial);
    assert.equal(raised.length, 6);
    const { id, severity, message, raised_at, cleared_at } = raised[5];
    assert.deepEqual({ id, raised_at, cleared_at }, {
      id: 6,
      raised_at: "2026-03-01T08:00:03.000Z",
      cleared_at: null,
    });
    assert.ok(["info", "warning", "critical"].includes(severity), severity);
    assert.match(message, /^(north|south|east) tank [1-4]: \S/);
    step();
    const after = alarms(db);
    const cleared = after.filter((alarm, i) => alarm.cleared_at !== raised[i].cleared_at);
    assert.equal(cleared.length, 1);
    assert.equal(cleared[0].cleared_at, "2026-03-01T08:00:04.000Z");
    assert.ok([2, 4, 5, 6].includes(cleared[0].id), `cleared alarm ${cleared[0].id} was open`);
    assert.deepEqual(
      after.map(({ cleared_at: _, ...rest }) => rest),
      raised.map(({ cleared_at: _, ...rest }) => rest),
    );
  } finally {
    db.close();
  }
});

Deno.test("over many steps alarms keep coming and going, never more than 8 open, the table bounded", () => {
  const db = demoDatabase();
  const step = demoSimulator(db, { now: stepClock().now });
  const openCount = db.prepare("SELECT COUNT(*) AS n FROM alarm WHERE cleared_at IS NULL");
  const clearedCount = db.prepare("SELECT COUNT(*) AS n FROM alarm WHERE cleared_at IS NOT NULL");
  try {
    let maxOpen = 0;
    const seenOpen = new Set<number>();
    for (let i = 0; i < 1200; i++) {
      step();
      const open = openCount.get()!.n as number;
      maxOpen = Math.max(maxOpen, open);
      assert.ok(open <= MAX_OPEN_ALARMS, `step ${i + 1}: ${open} open alarms`);
      assert.ok(
        (clearedCount.get()!.n as number) <= MAX_CLEARED_ALARMS,
        `step ${i + 1}: cleared alarms kept`,
      );
      for (const row of db.prepare("SELECT id FROM alarm WHERE cleared_at IS NULL").all()) {
        seenOpen.add(row.id as number);
      }
    }
    assert.equal(MAX_OPEN_ALARMS, 8);
    assert.equal(maxOpen, MAX_OPEN_ALARMS);
    assert.equal(seenOpen.size, 3 + 1200 / 3);
    assert.equal(clearedCount.get()!.n, MAX_CLEARED_ALARMS);
  } finally {
    db.close();
  }
});

Deno.test("the demo's handles are a valid `handles` config: tanks by string site, alarms without a unit", () => {
  const handles = parseHandles(DEMO_HANDLES, ["demo"]);
  assert.deepEqual(handles, {
    tanks: {
      name: "tanks",
      sql:
        "SELECT site, tank_id, level_m, temp_c, updated_at FROM tank_level WHERE site IN (:units) ORDER BY site, tank_id",
      unit: "site",
      unitType: "string",
      key: ["tank_id"],
      databases: undefined,
      pollIntervalMs: undefined,
      maxRowsPerUnit: 10000,
    },
    alarms: {
      name: "alarms",
      sql: "SELECT id, severity, message, raised_at FROM alarm WHERE cleared_at IS NULL ORDER BY id LIMIT 50",
      unit: undefined,
      unitType: "none",
      key: ["id"],
      databases: undefined,
      pollIntervalMs: undefined,
      maxRowsPerUnit: 10000,
    },
  });
});

Deno.test("the tanks handle's SQL, :units bound to three sites, returns the tanks of the sites that exist", async () => {
  const source = new SqliteSource("demo", demoDatabase());
  try {
    const sql = expandUnits(DEMO_HANDLES.tanks.sql as string, 3);
    const rows = await source.select(sql, ["north", "nowhere", "south"]);
    assert.deepEqual(
      rows.map((row) => Object.keys(row)),
      Array(7).fill(["site", "tank_id", "level_m", "temp_c", "updated_at"]),
    );
    assert.deepEqual(rows.map((row) => ({ ...row })), [
      { site: "north", tank_id: 1, level_m: 4.2, temp_c: 14.8, updated_at: CREATED },
      { site: "north", tank_id: 2, level_m: 6.75, temp_c: 15.2, updated_at: CREATED },
      { site: "north", tank_id: 3, level_m: 3.1, temp_c: 13.9, updated_at: CREATED },
      { site: "north", tank_id: 4, level_m: 7.5, temp_c: 16.1, updated_at: CREATED },
      { site: "south", tank_id: 1, level_m: 5, temp_c: 18.4, updated_at: CREATED },
      { site: "south", tank_id: 2, level_m: 2.4, temp_c: 19, updated_at: CREATED },
      { site: "south", tank_id: 3, level_m: 8.15, temp_c: 17.6, updated_at: CREATED },
    ]);
  } finally {
    await source.close();
  }
});

Deno.test("the alarms handle's SQL returns the open alarms oldest first: a raised one joins the end, a cleared one leaves", async () => {
  const db = demoDatabase();
  const source = new SqliteSource("demo", db);
  const step = demoSimulator(db, { now: stepClock().now });
  const sql = DEMO_HANDLES.alarms.sql as string;
  try {
    const initial = await source.select(sql, []);
    assert.deepEqual(initial.map((row) => ({ ...row })), [
      { id: 2, severity: "warning", message: "south tank 2: level below 2.5 m", raised_at: CREATED },
      { id: 4, severity: "critical", message: "south tank 3: level above 8 m", raised_at: CREATED },
      {
        id: 5,
        severity: "warning",
        message: "north tank 1: level sensor not responding",
        raised_at: CREATED,
      },
    ]);
    step();
    step();
    step();
    const raised = await source.select(sql, []);
    assert.deepEqual(raised.slice(0, 3), initial);
    assert.deepEqual(Object.keys(raised[3]), ["id", "severity", "message", "raised_at"]);
    assert.deepEqual([raised.length, raised[3].id, raised[3].raised_at], [4, 6, "2026-03-01T08:00:03.000Z"]);
    step();
    const left = await source.select(sql, []);
    assert.equal(left.length, 3);
    assert.deepEqual(left, raised.filter((row) => left.some((kept) => kept.id === row.id)));
  } finally {
    await source.close();
  }
});
