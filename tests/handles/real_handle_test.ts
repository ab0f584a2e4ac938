/**
 * The `real` handle against both sources it runs on: SQLite (the demo schema) and a real
 * MariaDB database over TCP. Same fixture, same expectations: active points with their latest
 * value, two queries per fetch for any number of units, and a point's `code` only ever looked
 * up in the returned row, never put into SQL. The handle is the one a default server runs
 * (metadata re-read every 10th poll); the caching tests choose their own `pointsRefreshPolls`.
 */

import assert from "node:assert/strict";
import { DatabaseSync } from "node:sqlite";
import { createDemoSchema } from "../../lib/sources/demo_plant.ts";
import type { Handle } from "../../lib/handles/handle.ts";
import { MysqlSource } from "../../lib/sources/mysql_source.ts";
import type { RowSet } from "../../lib/handles/rows.ts";
import { createRealHandle } from "../../lib/handles/real_handle.ts";
import type { Row, Source, SqlParam } from "../../lib/sources/source.ts";
import { SqliteSource } from "../../lib/sources/sqlite_source.ts";
import { defaultConfig, defaultRealHandle } from "../support/handles.ts";
import { joinPoints, type Point } from "../support/points.ts";
import {
  EXPECTED_12,
  EXPECTED_13,
  HOSTILE_CODES,
  seedPoint,
  seedSqlite,
  seedTestDatabase,
} from "../support/seed_fixture.ts";

/** A fetch, with each unit's points joined into whole {@link Point} objects. */
async function fetchPoints(handle: Handle, source: Source, units: number[]): Promise<Map<number, Point[]>> {
  const result = await handle.fetch(source, units);
  return new Map([...result].map(([id, unit]) => [id as number, joinPoints(unit as RowSet)]));
}

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
  seedSqlite(db);
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
  const db = await seedTestDatabase();
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

/** The ids of the units whose metadata each of the next `polls` fetches re-read. */
async function rereads(real: Handle, source: RecordingSource, units: number[], polls: number) {
  const reread: number[][] = [];
  for (let poll = 0; poll < polls; poll++) {
    source.calls.length = 0;
    await real.fetch(source, units);
    reread.push(
      source.calls.filter((c) => c.sql.includes("archive_device")).flatMap((c) => c.params as number[]),
    );
  }
  return reread;
}

/** Asserts that every unit was re-read at least once in every `window` polls in a row. */
function assertEveryUnitWithin(reread: number[][], units: number[], window: number): void {
  for (const unit of units) {
    let last = -1;
    for (let poll = 0; poll < reread.length; poll++) {
      if (!reread[poll].includes(unit)) continue;
      assert.ok(
        poll - last <= window,
        `unit ${unit} re-read at poll ${poll}, ${poll - last} polls after the last`,
      );
      last = poll;
    }
    assert.ok(
      reread.length - last <= window,
      `unit ${unit} last re-read at poll ${last} of ${reread.length}`,
    );
  }
}

for (const [name, open] of [["SQLite", sqliteBackend], ["MariaDB", mysqlBackend]] as const) {
  /** A test with a fresh backend, a recording source over it and a fresh default `real` handle. */
  const test = (
    title: string,
    fn: (backend: Backend, source: RecordingSource, real: Handle) => Promise<void>,
  ) =>
    Deno.test(`${name}: ${title}`, async () => {
      const backend = await open();
      try {
        await fn(backend, new RecordingSource(backend.source), defaultRealHandle());
      } finally {
        await backend.cleanup();
      }
    });

  test(
    "active points come back in table order with the value of the column their code names",
    async (_b, source, real) => {
      const result = await fetchPoints(real, source, [12]);
      assert.deepEqual([...result.keys()], [12]);
      assert.deepEqual(result.get(12), EXPECTED_12);
    },
  );

  test(
    "a unit's metadata is re-read every pointsRefreshPolls polls; the polls between read only the values",
    async (_b, source, real) => {
      const every = defaultConfig().pointsRefreshPolls;
      await fetchPoints(real, source, [12]);
      const reread: number[] = [];
      for (let poll = 1; poll <= 2 * every; poll++) {
        source.calls.length = 0;
        assert.deepEqual((await fetchPoints(real, source, [12])).get(12), EXPECTED_12);
        const values = source.calls.filter((c) => !c.sql.includes("archive_device"));
        assert.deepEqual(values.map((c) => c.params), [["GW1", "GW2", "GW-NODATA"]], `poll ${poll}`);
        if (source.calls.length > 1) reread.push(poll);
      }
      assert.deepEqual(reread.length, 2);
      assert.deepEqual(reread[1] - reread[0], every);
    },
  );

  test("a code naming no column of device_data_real has no value", async (_b, source, real) => {
    const points = (await fetchPoints(real, source, [12])).get(12)!;
    const point = points.find((p) => p.code === "nosuchcolumn")!;
    assert.equal(point.value, undefined);
    assert.ok(Object.hasOwn(point, "value"));
  });

  test(
    "codes like constructor, __proto__ or SQL text have no value and never reach the SQL",
    async (backend, source, real) => {
      const before = await backend.pointCount();
      for (let poll = 0; poll < 2; poll++) { // the first poll and a cached one
        const points = (await fetchPoints(real, source, [12])).get(12)!;
        for (const code of HOSTILE_CODES) {
          const point = points.find((p) => p.code === code);
          assert.ok(point, `point ${code} missing`);
          assert.equal(point.value, undefined, `value of ${code}`);
        }
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

  test(
    "a point whose address has no data row has no value; a NULL column is null",
    async (_b, source, real) => {
      const points = (await fetchPoints(real, source, [12])).get(12)!;
      assert.equal(points.find((p) => p.address === "GW-NODATA")!.value, undefined);
      assert.equal(points.find((p) => p.address === "GW2" && p.code === "ia")!.value, null);
    },
  );

  test("inactive points (status other than 'a') are left out", async (_b, source, real) => {
    const result = await fetchPoints(real, source, [12, 14]);
    assert.ok(!result.get(12)!.some((p) => p.code === "ub"));
    assert.deepEqual(result.get(14), []);
  });

  test("every requested unit is in the result; units with no points map to []", async (_b, source, real) => {
    const result = await fetchPoints(real, source, [99, 13, 14]);
    assert.deepEqual([...result.keys()], [99, 13, 14]);
    assert.deepEqual(result.get(99), []);
    assert.deepEqual(result.get(14), []);
    assert.deepEqual(result.get(13), EXPECTED_13);
  });

  test(
    "one fetch of several units runs its budget of queries, 2: points by unit id, then values by address",
    async (_b, source, real) => {
      const result = await fetchPoints(real, source, [12, 13, 14, 99]);
      assert.equal(result.size, 4);
      assert.equal(source.calls.length, real.queriesPerFetch(4));
      assert.equal(real.queriesPerFetch(4), 2);
      assert.deepEqual(source.calls[0].params, [12, 13, 14, 99]);
      assert.deepEqual(source.calls[1].params, ["GW1", "GW2", "GW-NODATA", "GW3"]);
      const one = new RecordingSource(source);
      await fetchPoints(real, one, [12]);
      assert.equal(one.calls.length, real.queriesPerFetch(1));
    },
  );

  test(
    "units without points cost one query: no values are read for no addresses",
    async (_b, source, real) => {
      assert.deepEqual(await fetchPoints(real, source, [14, 99]), new Map([[14, []], [99, []]]));
      assert.equal(source.calls.length, 1);
    },
  );

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
      // Over three polls every unit was re-read exactly once, one a poll.
      assert.deepEqual(refreshed.map((ids) => ids.length), [1, 1, 1]);
      assert.deepEqual(refreshed.flat().sort(), [12, 13, 15]);
      // A new unit is read at once.
      source.calls.length = 0;
      await fetchPoints(real, source, [...units, 99]);
      assert.ok(source.calls[0].params.includes(99));
    },
  );

  test(
    "units whose ids share a stride (10, 20, ... 100) fall due on different polls, each every pointsRefreshPolls",
    async (_b, source, real) => {
      const every = defaultConfig().pointsRefreshPolls;
      assert.equal(every, 10);
      const units = Array.from({ length: 10 }, (_, i) => 10 * (i + 1));
      await real.fetch(source, units);
      const reread = await rereads(real, source, units, 2 * every);
      assert.deepEqual(reread.map((ids) => ids.length), new Array(2 * every).fill(1));
      assertEveryUnitWithin(reread, units, every);
    },
  );

  test(
    "after the units re-read on the same polls leave, the rest spread out again within one round, none waiting longer",
    async (_b, source, real) => {
      const every = defaultConfig().pointsRefreshPolls;
      const units = Array.from({ length: 2 * every }, (_, i) => i + 1);
      await real.fetch(source, units);
      const first = await rereads(real, source, units, every);
      assert.deepEqual(first.map((ids) => ids.length), new Array(every).fill(2));
      // The units of the first half of the polls leave: half the polls would re-read two, half none.
      const leaving = new Set(first.slice(0, every / 2).flat());
      const staying = units.filter((id) => !leaving.has(id));
      const after = await rereads(real, source, staying, 2 * every);
      assertEveryUnitWithin([first.at(-1)!, ...after], staying, every);
      assert.deepEqual(after.slice(every).map((ids) => ids.length), new Array(every).fill(1));
    },
  );

  test(
    "re-read metadata that did not change keeps its shape object, and with no value changed its rows",
    async (_b, source) => {
      const real = createRealHandle({ pointsRefreshPolls: 1 });
      const first = (await real.fetch(source, [12])).get(12) as RowSet;
      const second = (await real.fetch(source, [12])).get(12) as RowSet;
      assert.equal(source.calls.filter((c) => c.sql.includes("archive_device")).length, 2);
      assert.equal(second.shape, first.shape);
      assert.equal(second, first);
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
        { ...EXPECTED_13[0], rename: "Renamed" },
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
      assert.deepEqual((await fetchPoints(real, source, [13])).get(13), EXPECTED_13);
      const moved = (await fetchPoints(real, source, [13])).get(13)!;
      assert.deepEqual(moved, [{ ...seedPoint("ua", "GW1", 1, 229.5), rename: "GW3 ua" }]);
    },
  );

  test(
    "a renamed point is seen within pointsRefreshPolls polls, not before its turn",
    async (backend, source, real) => {
      const every = defaultConfig().pointsRefreshPolls;
      await fetchPoints(real, source, [13]);
      await backend.exec("UPDATE archive_device SET `rename` = 'Renamed' WHERE unit_id = 13");
      const seen = [];
      for (let poll = 0; poll < every; poll++) {
        seen.push((await fetchPoints(real, source, [13])).get(13)![0].rename);
      }
      // Cached until its one re-read in the round, then the new name from that poll on.
      const at = seen.indexOf("Renamed");
      assert.ok(at >= 0, `renames seen: ${seen.join(", ")}`);
      assert.deepEqual(seen, [...new Array(at).fill("GW3 ua"), ...new Array(every - at).fill("Renamed")]);
    },
  );

  test(
    "a poll that changed no value hands the last poll's rows out again; a changed value makes new ones",
    async (backend, source, real) => {
      const first = await real.fetch(source, [12, 13]);
      const again = await real.fetch(source, [12, 13]);
      assert.equal(again.get(12), first.get(12));
      assert.equal(again.get(13), first.get(13));
      await backend.exec("UPDATE device_data_real SET ua = 230.5 WHERE equip_address = 'GW3'");
      const changed = await real.fetch(source, [12, 13]);
      assert.equal(changed.get(12), first.get(12)); // no point of unit 12 reads GW3
      assert.notEqual(changed.get(13), first.get(13));
      assert.deepEqual(joinPoints(changed.get(13) as RowSet), [{ ...EXPECTED_13[0], value: 230.5 }]);
      assert.deepEqual(
        joinPoints(first.get(13) as RowSet),
        EXPECTED_13,
        "the last poll's rows are untouched",
      );
    },
  );

  test("a fetch of no units runs no query", async (_b, source, real) => {
    assert.deepEqual(await fetchPoints(real, source, []), new Map());
    assert.equal(source.calls.length, 0);
  });

  test("points of several units are each put under their own unit", async (_b, source, real) => {
    const result = await fetchPoints(real, source, [13, 12]);
    assert.deepEqual(result.get(12), EXPECTED_12);
    assert.deepEqual(result.get(13), EXPECTED_13);
  });
}

Deno.test("a failing source rejects the fetch with the source's error", async () => {
  const error = new Error("boom");
  const failing: Source = {
    code: "plant1",
    select: () => Promise.reject(error),
    close: () => Promise.resolve(),
  };
  await assert.rejects(fetchPoints(defaultRealHandle(), failing, [1]), (e) => e === error);
});
