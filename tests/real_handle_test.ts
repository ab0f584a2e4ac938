/**
 * The `real` handle against both sources it runs on: SQLite (the demo schema) and a real
 * MariaDB database over TCP. Same fixture, same expectations: active points with their latest
 * value, two queries per fetch for any number of units, and a point's `code` only ever looked
 * up in the returned row, never put into SQL.
 */

import assert from "node:assert/strict";
import { DatabaseSync } from "node:sqlite";
import { createDemoSchema } from "../lib/demo_plant.ts";
import { MysqlSource } from "../lib/mysql_source.ts";
import type { Point } from "../lib/point.ts";
import { joinPoints } from "./support/points.ts";
import type { Handle } from "../lib/handle.ts";
import { createRealHandle, realHandle } from "../lib/real_handle.ts";
import type { Row, Source, SqlParam } from "../lib/source.ts";
import { SqliteSource } from "../lib/sqlite_source.ts";
import { createTestDatabase, type PointRow } from "./support/mysql.ts";

const HOSTILE_CODES = [
  "constructor",
  "__proto__",
  "toString",
  "hasOwnProperty",
  "id; DROP TABLE archive_device",
];

/** A fetch, with each unit's points joined into whole {@link Point} objects. */
async function fetchPoints(handle: Handle, source: Source, units: number[]): Promise<Map<number, Point[]>> {
  const result = await handle.fetch(source, units);
  return new Map([...result].map(([id, unit]) => [id, joinPoints(unit)]));
}

/** The fixture: unit 12 has every kind of point, 13 one point, 14 only an inactive one. */
const POINTS: PointRow[] = [
  { unit: 12, code: "ua", address: "GW1", showId: 1 },
  { unit: 12, code: "ia", address: "GW1", showId: 2 },
  { unit: 12, code: "ua", address: "GW2", showId: 3 },
  { unit: 12, code: "nosuchcolumn", address: "GW1", showId: 4 },
  { unit: 12, code: "ua", address: "GW-NODATA", showId: 5 },
  { unit: 12, code: "ub", address: "GW1", showId: 6, status: "d" },
  ...HOSTILE_CODES.map((code, i) => ({ unit: 12, code, address: "GW1", showId: 7 + i })),
  { unit: 13, code: "ua", address: "GW3", showId: 1 },
  { unit: 14, code: "ua", address: "GW3", showId: 1, status: "x" },
];
const DATA: Record<string, Record<string, number | null>> = {
  GW1: { ua: 229.5, ia: 10, ub: 1 },
  GW2: { ua: null, ia: 3 },
  GW3: { ua: 220 },
};

function expected(code: string, address: string, showId: number, value: Point["value"]): Point {
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

const EXPECTED_12: Point[] = [
  expected("ua", "GW1", 1, 229.5),
  expected("ia", "GW1", 2, 10),
  expected("ua", "GW2", 3, null),
  expected("nosuchcolumn", "GW1", 4, undefined),
  expected("ua", "GW-NODATA", 5, undefined),
  ...HOSTILE_CODES.map((code, i) => expected(code, "GW1", 7 + i, undefined)),
];

/** Wraps a source to record every SELECT the handle runs. */
class RecordingSource implements Source {
  readonly calls: { sql: string; params: readonly SqlParam[] }[] = [];
  constructor(private readonly inner: Source) {}
  get code(): string {
    return this.inner.code;
  }
  select(sql: string, params: readonly SqlParam[]): Promise<Row[]> {
    this.calls.push({ sql, params });
    return this.inner.select(sql, params);
  }
  close(): Promise<void> {
    return this.inner.close();
  }
}

interface Backend {
  source: Source;
  /** Rows of archive_device, to show that nothing was dropped. */
  pointCount(): Promise<number>;
  /** Runs a statement directly, behind the handle's back. */
  exec(sql: string): Promise<void>;
  cleanup(): Promise<void>;
}

function sqliteBackend(): Promise<Backend> {
  const db = new DatabaseSync(":memory:");
  createDemoSchema(db);
  const insert = db.prepare(
    "INSERT INTO archive_device (unit_id, code, recode, name, rename, show_id, gateway_address, gateway_id, lot_type, status) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
  );
  for (const p of POINTS) {
    insert.run(
      p.unit,
      p.code,
      p.code.toUpperCase(),
      p.code,
      `${p.address} ${p.code}`,
      p.showId ?? 1,
      p.address,
      1,
      "modbus",
      p.status ?? "a",
    );
  }
  for (const [address, values] of Object.entries(DATA)) {
    const columns = Object.keys(values);
    db.prepare(
      `INSERT INTO device_data_real (equip_address, ${columns.join(", ")}) VALUES (?, ${
        columns.map(() => "?").join(", ")
      })`,
    ).run(address, ...Object.values(values));
  }
  const source = new SqliteSource("demo", db);
  return Promise.resolve({
    source,
    pointCount: () =>
      Promise.resolve(Number((db.prepare("SELECT COUNT(*) AS n FROM archive_device").get() as Row).n)),
    exec: (sql) => Promise.resolve(db.exec(sql)),
    cleanup: () => source.close(),
  });
}

async function mysqlBackend(): Promise<Backend> {
  const db = await createTestDatabase();
  await db.addPoints(POINTS);
  for (const [address, values] of Object.entries(DATA)) await db.setData(address, values);
  const source = new MysqlSource("plant1", db.settings, 5000);
  return {
    source,
    pointCount: async () =>
      Number(((await db.query("SELECT COUNT(*) AS n FROM archive_device")) as Row[])[0].n),
    exec: async (sql) => {
      await db.query(sql);
    },
    cleanup: async () => {
      await source.close();
      await db.drop();
    },
  };
}

for (const [name, open] of [["SQLite", sqliteBackend], ["MariaDB", mysqlBackend]] as const) {
  const test = (title: string, fn: (backend: Backend, source: RecordingSource) => Promise<void>) =>
    Deno.test(`${name}: ${title}`, async () => {
      const backend = await open();
      try {
        await fn(backend, new RecordingSource(backend.source));
      } finally {
        await backend.cleanup();
      }
    });

  test(
    "active points come back in table order with the value of the column their code names",
    async (_b, source) => {
      const result = await fetchPoints(realHandle, source, [12]);
      assert.deepEqual([...result.keys()], [12]);
      assert.deepEqual(result.get(12), EXPECTED_12);
    },
  );

  test("a code naming no column of device_data_real has no value", async (_b, source) => {
    const points = (await fetchPoints(realHandle, source, [12])).get(12)!;
    const point = points.find((p) => p.code === "nosuchcolumn")!;
    assert.equal(point.value, undefined);
    assert.ok(Object.hasOwn(point, "value"));
  });

  test(
    "codes like constructor, __proto__ or SQL text have no value and never reach the SQL",
    async (backend, source) => {
      const before = await backend.pointCount();
      const points = (await fetchPoints(realHandle, source, [12])).get(12)!;
      for (const code of HOSTILE_CODES) {
        const point = points.find((p) => p.code === code);
        assert.ok(point, `point ${code} missing`);
        assert.equal(point.value, undefined, `value of ${code}`);
      }
      for (const call of source.calls) {
        for (const code of HOSTILE_CODES) {
          assert.ok(!call.sql.includes(code), `${code} in ${call.sql}`);
          assert.ok(!call.params.includes(code), `${code} in params`);
        }
      }
      assert.equal(await backend.pointCount(), before);
    },
  );

  test("a point whose address has no data row has no value; a NULL column is null", async (_b, source) => {
    const points = (await fetchPoints(realHandle, source, [12])).get(12)!;
    assert.equal(points.find((p) => p.address === "GW-NODATA")!.value, undefined);
    assert.equal(points.find((p) => p.address === "GW2")!.value, null);
  });

  test("inactive points (status other than 'a') are left out", async (_b, source) => {
    const result = await fetchPoints(realHandle, source, [12, 14]);
    assert.ok(!result.get(12)!.some((p) => p.code === "ub"));
    assert.deepEqual(result.get(14), []);
  });

  test("every requested unit is in the result; units with no points map to []", async (_b, source) => {
    const result = await fetchPoints(realHandle, source, [99, 13, 14]);
    assert.deepEqual([...result.keys()], [99, 13, 14]);
    assert.deepEqual(result.get(99), []);
    assert.deepEqual(result.get(14), []);
    assert.deepEqual(result.get(13), [expected("ua", "GW3", 1, 220)]);
  });

  test(
    "one fetch of several units runs exactly 2 queries: points by unit id, then values by address",
    async (_b, source) => {
      const result = await fetchPoints(realHandle, source, [12, 13, 14, 99]);
      assert.equal(result.size, 4);
      assert.equal(source.calls.length, 2);
      assert.deepEqual(source.calls[0].params, [12, 13, 14, 99]);
      assert.deepEqual(source.calls[1].params, ["GW1", "GW2", "GW-NODATA", "GW3"]);
      const one = new RecordingSource(source);
      await fetchPoints(realHandle, one, [12]);
      assert.equal(one.calls.length, 2);
    },
  );

  test("units without points cost one query: no values are read for no addresses", async (_b, source) => {
    assert.deepEqual(await fetchPoints(realHandle, source, [14, 99]), new Map([[14, []], [99, []]]));
    assert.equal(source.calls.length, 1);
  });

  test(
    "with pointsRefreshPolls 3, later polls read only values plus the metadata of a third of the units",
    async (_b, source) => {
      const real = createRealHandle({ pointsRefreshPolls: 3 });
      const units = [12, 13, 15];
      await fetchPoints(real, source, units); // every unit is new: all metadata is read
      assert.deepEqual(source.calls[0].params, units);
      const refreshed: number[][] = [];
      for (let poll = 1; poll <= 3; poll++) {
        source.calls.length = 0;
        const result = await fetchPoints(real, source, units);
        assert.deepEqual(result.get(12), EXPECTED_12);
        const points = source.calls.filter((c) => c.sql.includes("archive_device"));
        assert.ok(source.calls.length <= 2);
        refreshed.push(points.flatMap((c) => c.params as number[]));
      }
      // Over three polls every unit was re-read exactly once.
      assert.deepEqual(refreshed.flat().sort(), [12, 13, 15]);
      // A new unit is read at once, alone.
      source.calls.length = 0;
      await fetchPoints(real, source, [...units, 99]);
      assert.ok(source.calls[0].params.includes(99));
    },
  );

  test(
    "re-read metadata that did not change is handed out as the same array; values are new",
    async (_b, source) => {
      const real = createRealHandle({ pointsRefreshPolls: 1 });
      const first = (await real.fetch(source, [12])).get(12)!;
      const second = (await real.fetch(source, [12])).get(12)!;
      assert.equal(source.calls.filter((c) => c.sql.includes("archive_device")).length, 2);
      assert.equal(second.metadata, first.metadata);
      assert.notEqual(second.values, first.values);
      assert.deepEqual(second.values, first.values);
    },
  );

  test("a later poll reads the values and the metadata due at the same time", async (_b, source) => {
    const real = createRealHandle({ pointsRefreshPolls: 1 });
    let running = 0;
    let most = 0;
    const concurrent: Source = {
      code: source.code,
      close: () => source.close(),
      async select(sql, params) {
        most = Math.max(most, ++running);
        try {
          return await source.select(sql, params);
        } finally {
          running--;
        }
      },
    };
    await real.fetch(concurrent, [12, 13]); // new units: metadata, then values
    assert.equal(most, 1);
    source.calls.length = 0;
    assert.deepEqual((await fetchPoints(real, concurrent, [12, 13])).get(12), EXPECTED_12);
    assert.equal(source.calls.length, 2);
    assert.equal(most, 2);
  });

  test(
    "re-read metadata with the same addresses is used in the poll that read it",
    async (backend, source) => {
      const real = createRealHandle({ pointsRefreshPolls: 1 });
      await real.fetch(source, [13]);
      await backend.exec("UPDATE archive_device SET `rename` = 'Renamed' WHERE unit_id = 13");
      assert.deepEqual((await fetchPoints(real, source, [13])).get(13), [
        { ...expected("ua", "GW3", 1, 220), rename: "Renamed" },
      ]);
    },
  );

  test(
    "a point moved to an address the poll did not read shows up, with its value, one poll later",
    async (backend, source) => {
      const real = createRealHandle({ pointsRefreshPolls: 1 });
      await real.fetch(source, [13]);
      await backend.exec("UPDATE archive_device SET gateway_address = 'GW1' WHERE unit_id = 13");
      // Polled with GW3's value while GW1 was not read: the old point, still with its value.
      assert.deepEqual((await fetchPoints(real, source, [13])).get(13), [expected("ua", "GW3", 1, 220)]);
      const moved = (await fetchPoints(real, source, [13])).get(13)!;
      assert.deepEqual(moved, [{ ...expected("ua", "GW1", 1, 229.5), rename: "GW3 ua" }]);
    },
  );

  test("a renamed point is seen within pointsRefreshPolls polls", async (backend, source) => {
    const real = createRealHandle({ pointsRefreshPolls: 2 });
    await fetchPoints(real, source, [13]);
    await backend.exec("UPDATE archive_device SET `rename` = 'Renamed' WHERE unit_id = 13");
    const seen = [];
    for (let poll = 0; poll < 2; poll++) {
      seen.push((await fetchPoints(real, source, [13])).get(13)![0].rename);
    }
    assert.ok(seen.includes("Renamed"), `renames seen: ${seen.join(", ")}`);
  });

  test("a fetch of no units runs no query", async (_b, source) => {
    assert.deepEqual(await fetchPoints(realHandle, source, []), new Map());
    assert.equal(source.calls.length, 0);
  });

  test("points of several units are each put under their own unit", async (_b, source) => {
    const result = await fetchPoints(realHandle, source, [13, 12]);
    assert.deepEqual(result.get(12), EXPECTED_12);
    assert.deepEqual(result.get(13), [expected("ua", "GW3", 1, 220)]);
  });
}

Deno.test("the handle is named 'real' and budgets 2 queries per fetch", () => {
  assert.equal(realHandle.name, "real");
  assert.equal(realHandle.queriesPerFetch, 2);
});

Deno.test("a failing source rejects the fetch with the source's error", async () => {
  const error = new Error("boom");
  const failing: Source = {
    code: "plant1",
    select: () => Promise.reject(error),
    close: () => Promise.resolve(),
  };
  await assert.rejects(fetchPoints(realHandle, failing, [1]), (e) => e === error);
});
