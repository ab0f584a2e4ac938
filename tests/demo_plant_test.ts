/**
 * The embedded demo plant: the seed's two tables in SQLite, three units of points, and a
 * simulator that moves a few readings every second.
 */

import assert from "node:assert/strict";
import { DatabaseSync } from "node:sqlite";
import { createDemoSchema, startDemoPlant } from "../lib/demo_plant.ts";
import { joinPoints } from "./support/points.ts";
import { realHandle } from "../lib/real_handle.ts";
import { SqliteSource } from "../lib/sqlite_source.ts";
import { delay } from "./support/app.ts";

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
    const units = await realHandle.fetch(source, [1, 2, 3]);
    assert.deepEqual([...units.values()].map((unit) => unit.values.length), [10, 15, 5]);
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
    assert.equal((await realHandle.fetch(source, [3])).get(3)!.values.length, 5);
    assert.equal(
      plant.exampleCommand("ws://127.0.0.1:4053/ws"),
      'send {"type":"subscribe","id":1,"topic":"demo/real/1"} to ws://127.0.0.1:4053/ws (units 1-3)',
    );
  } finally {
    plant.stop();
  }
});

Deno.test("the simulator changes some readings within a few seconds", async () => {
  const plant = startDemoPlant();
  try {
    const source = plant.sources.get("demo")!;
    const read = async () =>
      JSON.stringify([...(await realHandle.fetch(source, [1, 2, 3])).values()].map((unit) => unit.values));
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
