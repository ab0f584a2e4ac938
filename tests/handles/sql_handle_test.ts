/**
 * Handles of the configuration against a real MariaDB, over schemas that are not the seed's: an
 * integer-unit handle (quotes by instrument), a string-unit one (tank levels by site) and a
 * unit-less one with ORDER BY and LIMIT (open alarms). Exact rows, queries counted on the server,
 * the read-only session, and every fault a result can have.
 */

import assert from "node:assert/strict";
import { parseHandles } from "../../lib/config/handle_settings.ts";
import type { Unit } from "../../lib/config/unit.ts";
import { type Handle, HandleError, UnitFault, type UnitPoll } from "../../lib/handles/handle.ts";
import type { RowSet } from "../../lib/handles/rows.ts";
import { createSqlHandle, UNIT_LIST_SIZES } from "../../lib/handles/sql_handle.ts";
import { MysqlSource } from "../../lib/sources/mysql_source.ts";
import {
  type Row,
  type SelectOptions,
  type Source,
  SourceError,
  type SqlParam,
} from "../../lib/sources/source.ts";
import { createTestDatabase, type TestDatabase } from "../support/mysql.ts";
import { joinRows } from "../support/rows.ts";

/** Three tables of other plants than the seed's. */
const SCHEMA = [
  `CREATE TABLE quote (
    id INT AUTO_INCREMENT PRIMARY KEY, instrument_id INT NOT NULL, venue VARCHAR(16) NOT NULL,
    bid DECIMAL(10,2), ask DECIMAL(10,2), at DATETIME NOT NULL, KEY instrument (instrument_id))`,
  `CREATE TABLE tank_level (
    site VARCHAR(32) NOT NULL, tank_id INT NOT NULL, level_m DOUBLE, temp_c DECIMAL(4,1),
    updated_at DATETIME, PRIMARY KEY (site, tank_id))`,
  `CREATE TABLE alarm (
    id INT PRIMARY KEY, severity TINYINT NOT NULL, message VARCHAR(200) NOT NULL, cleared_at DATETIME NULL)`,
];

/** The handles as an operator would configure them, validated by the configuration's own parser. */
const SETTINGS = parseHandles({
  quotes: {
    sql:
      "SELECT instrument_id, venue, bid, ask, at FROM quote WHERE instrument_id IN (:units) ORDER BY venue, at DESC",
    unit: "instrument_id",
    key: ["venue"],
  },
  tanks: {
    sql:
      "SELECT site, tank_id, level_m, temp_c, updated_at FROM tank_level WHERE site IN (:units) ORDER BY tank_id",
    unit: "site",
    unitType: "string",
    key: ["tank_id"],
  },
  alarms: {
    sql:
      "SELECT id, severity, message FROM alarm WHERE cleared_at IS NULL ORDER BY severity DESC, id LIMIT 3",
    key: ["id"],
  },
}, ["plant1"]);

/** Duplicate-key reports of a handle, as `[handle, key, count]`. */
type Reports = [string, string, number][];

function handleFrom(settings: Parameters<typeof createSqlHandle>[0]): { handle: Handle; reports: Reports } {
  const reports: Reports = [];
  const handle = createSqlHandle(settings, { duplicateKeys: (...report) => reports.push(report) });
  return { handle, reports };
}

/** A configured handle, with the duplicate keys it reports. */
function handleNamed(name: keyof typeof SETTINGS): { handle: Handle; reports: Reports } {
  return handleFrom(SETTINGS[name]);
}

/** A handle from settings written in the test, validated like a config file. */
function customHandle(name: string, settings: Record<string, unknown>) {
  return handleFrom(parseHandles({ [name]: settings }, ["plant1"])[name]);
}

/** A fresh database with the three tables, and a source on it (the admin login, which may write). */
async function withPlant(fn: (db: TestDatabase, source: MysqlSource) => Promise<void>): Promise<void> {
  const db = await createTestDatabase();
  const source = new MysqlSource("plant1", db.settings, 5000);
  try {
    for (const sql of SCHEMA) await db.query(sql);
    await fn(db, source);
  } finally {
    await source.close();
    await db.drop();
  }
}

/** A unit's rows, asserting that it was served (not a fault). */
function rowsOf(polls: Map<Unit, UnitPoll>, unit: Unit): RowSet {
  const poll = polls.get(unit);
  assert.ok(poll !== undefined, `unit ${unit} is missing from the result`);
  assert.ok(!(poll instanceof UnitFault), `unit ${unit} faulted: ${(poll as UnitFault).message}`);
  return poll;
}

/** A source that records every statement it passes on. */
class RecordingSource implements Source {
  readonly code: string;
  readonly statements: { sql: string; params: number; prepared: boolean }[] = [];
  constructor(private readonly inner: Source) {
    this.code = inner.code;
  }
  select(sql: string, params: readonly SqlParam[], options?: SelectOptions): Promise<Row[]> {
    this.statements.push({ sql, params: params.length, prepared: options?.prepared === true });
    return this.inner.select(sql, params, options);
  }
  close(): Promise<void> {
    return this.inner.close();
  }
}

Deno.test("an int-unit handle splits one result into its units, rows keyed by venue in the result's order", async () => {
  await withPlant(async (db, source) => {
    await db.query(
      `INSERT INTO quote (instrument_id, venue, bid, ask, at) VALUES
        (7, 'xetra', 101.5, 101.75, '2026-12-01 09:00:00'), (7, 'lse', 101.25, 101.5, '2026-12-01 09:00:01'),
        (8, 'lse', 55, 55.1, '2026-12-01 09:00:02'), (10, 'lse', 1, 2, '2026-12-01 09:00:03')`,
    );
    const { handle, reports } = handleNamed("quotes");
    assert.deepEqual([handle.name, handle.unitType, handle.frames], ["quotes", "int", "rows"]);
    const polls = await handle.fetch(source, [7, 8, 9]);
    assert.deepEqual([...polls.keys()], [7, 8, 9]);
    const seven = rowsOf(polls, 7);
    assert.deepEqual(seven.shape.layout.columns, ["instrument_id", "venue", "bid", "ask", "at"]);
    assert.deepEqual(seven.shape.layout.key, ["venue"]);
    assert.deepEqual(joinRows(seven), [
      { instrument_id: 7, venue: "lse", bid: 101.25, ask: 101.5, at: "2026-12-01 09:00:01" },
      { instrument_id: 7, venue: "xetra", bid: 101.5, ask: 101.75, at: "2026-12-01 09:00:00" },
    ]);
    assert.deepEqual(joinRows(rowsOf(polls, 8)), [
      { instrument_id: 8, venue: "lse", bid: 55, ask: 55.1, at: "2026-12-01 09:00:02" },
    ]);
    assert.deepEqual(joinRows(rowsOf(polls, 9)), [], "a unit without rows is served, empty");
    assert.deepEqual(reports, []);
  });
});

Deno.test("a string-unit handle splits by site, keyed by tank_id", async () => {
  await withPlant(async (db, source) => {
    await db.query(
      `INSERT INTO tank_level VALUES
        ('north', 2, 3.5, 11.5, '2026-12-01 10:00:00'), ('north', 1, 4.25, 12, '2026-12-01 10:00:00'),
        ('south-2', 1, 0.5, NULL, NULL), ('east', 1, 9, 9, '2026-12-01 10:00:00')`,
    );
    const { handle } = handleNamed("tanks");
    assert.deepEqual(handle.unitType, "string");
    const polls = await handle.fetch(source, ["north", "south-2"]);
    assert.deepEqual([...polls.keys()], ["north", "south-2"]);
    assert.deepEqual(joinRows(rowsOf(polls, "north")), [
      { site: "north", tank_id: 1, level_m: 4.25, temp_c: 12, updated_at: "2026-12-01 10:00:00" },
      { site: "north", tank_id: 2, level_m: 3.5, temp_c: 11.5, updated_at: "2026-12-01 10:00:00" },
    ]);
    assert.deepEqual(joinRows(rowsOf(polls, "south-2")), [
      { site: "south-2", tank_id: 1, level_m: 0.5, temp_c: null, updated_at: null },
    ]);
  });
});

Deno.test("a unit-less handle serves its one topic with the result's ORDER BY and LIMIT", async () => {
  await withPlant(async (db, source) => {
    await db.query(
      `INSERT INTO alarm VALUES (1, 2, 'pump 1 hot', NULL), (2, 3, 'tank 4 overflow', NULL),
        (3, 1, 'door open', NULL), (4, 3, 'cleared already', '2026-12-01 08:00:00'), (5, 1, 'filter due', NULL)`,
    );
    const { handle } = handleNamed("alarms");
    assert.deepEqual(handle.unitType, "none");
    assert.deepEqual(handle.queriesPerFetch(1), 1);
    const polls = await handle.fetch(source, [null]);
    assert.deepEqual([...polls.keys()], [null]);
    assert.deepEqual(joinRows(rowsOf(polls, null)), [
      { id: 2, severity: 3, message: "tank 4 overflow" },
      { id: 1, severity: 2, message: "pump 1 hot" },
      { id: 3, severity: 1, message: "door open" },
    ]);
  });
});

Deno.test("a unit keeps its shape object while its rows keep their keys, and gets a new one when a row arrives", async () => {
  await withPlant(async (db, source) => {
    await db.query("INSERT INTO tank_level VALUES ('north', 1, 4, 12, NULL), ('north', 2, 3, 11, NULL)");
    const { handle } = handleNamed("tanks");
    const first = rowsOf(await handle.fetch(source, ["north"]), "north");
    await db.query("UPDATE tank_level SET level_m = 3.75 WHERE tank_id = 2");
    const second = rowsOf(await handle.fetch(source, ["north"]), "north");
    assert.ok(second.shape === first.shape, "same keys in the same order: the same shape object");
    assert.deepEqual(joinRows(second)[1].level_m, 3.75);
    await db.query("INSERT INTO tank_level VALUES ('north', 3, 1, 10, NULL)");
    const third = rowsOf(await handle.fetch(source, ["north"]), "north");
    assert.ok(third.shape !== second.shape, "a new row: a new shape");
    assert.deepEqual(third.shape.layout, second.shape.layout);
    assert.deepEqual(joinRows(third).map((row) => row.tank_id), [1, 2, 3]);
  });
});

Deno.test("one query per fetch at 1, 100 and 1,000 units and two at 1,500, counted by the server", async () => {
  await withPlant(async (db) => {
    const values = Array.from({ length: 1500 }, (_, i) => `(${i + 1}, 'lse', ${i}, ${i + 1}, '2026-12-01')`);
    await db.query(`INSERT INTO quote (instrument_id, venue, bid, ask, at) VALUES ${values.join(", ")}`);
    const login = await db.dedicatedUser();
    const source = new MysqlSource("plant1", login.settings, 5000);
    try {
      const { handle, reports } = handleNamed("quotes");
      const units = Array.from({ length: 1500 }, (_, i) => i + 1);
      for (const [count, queries] of [[1, 1], [100, 1], [1000, 1], [1500, 2]]) {
        const before = await login.selects();
        const polls = await handle.fetch(source, units.slice(0, count));
        assert.deepEqual(await login.selects() - before, queries, `SELECTs for ${count} units`);
        assert.deepEqual(handle.queriesPerFetch(count), queries, `the budget for ${count} units`);
        assert.deepEqual(polls.size, count);
        const last = joinRows(rowsOf(polls, count));
        assert.deepEqual(last, [{
          instrument_id: count,
          venue: "lse",
          bid: count - 1,
          ask: count,
          at: "2026-12-01 00:00:00",
        }]);
        for (const unit of units.slice(0, count)) {
          assert.deepEqual(rowsOf(polls, unit).shape.keys.length, 1, `unit ${unit} has its one row`);
        }
      }
      assert.deepEqual(reports, [], "padding repeats a unit, which adds no row");
    } finally {
      await source.close();
    }
  });
});

Deno.test("any number of units from 1 to 1,000 is read with six prepared statement texts", async () => {
  await withPlant(async (_db, mysqlSource) => {
    const source = new RecordingSource(mysqlSource);
    const { handle } = handleNamed("quotes");
    const units = Array.from({ length: 1000 }, (_, i) => i + 1);
    for (let count = 1; count <= 1000; count++) await handle.fetch(source, units.slice(0, count));
    assert.deepEqual(source.statements.length, 1000);
    assert.ok(source.statements.every((s) => s.prepared), "every statement is prepared");
    const texts = [...new Set(source.statements.map((s) => s.sql))];
    const listSizes = texts.map((sql) => sql.split("?").length - 1).sort((a, b) => a - b);
    assert.deepEqual(listSizes, [...UNIT_LIST_SIZES]);
  });
});

Deno.test("a stored function that writes, called from a handle's SELECT, fails: the query is read-only even for a login that may write", async () => {
  await withPlant(async (db, source) => {
    await db.query("CREATE TABLE audit (id INT AUTO_INCREMENT PRIMARY KEY, note VARCHAR(32))");
    await db.query(
      "CREATE FUNCTION stamp() RETURNS INT MODIFIES SQL DATA BEGIN INSERT INTO audit (note) VALUES ('written'); RETURN 1; END",
    );
    await db.query("INSERT INTO alarm VALUES (1, 2, 'pump 1 hot', NULL)");
    // The function does write for this login outside gatecast.
    await db.query("SELECT stamp()");
    assert.deepEqual(await db.query("SELECT COUNT(*) AS n FROM audit"), [{ n: 1 }]);
    await db.query("DELETE FROM audit");
    const { handle } = customHandle("stamped", {
      sql: "SELECT id, stamp() AS stamped FROM alarm",
      key: ["id"],
    });
    await assert.rejects(handle.fetch(source, [null]), (error: unknown) => {
      assert.ok(error instanceof SourceError, String(error));
      assert.deepEqual(error.failure, "query");
      assert.deepEqual(
        error.message,
        "database 'plant1': ER_CANT_EXECUTE_IN_READ_ONLY_TRANSACTION: Cannot execute statement in a READ ONLY transaction",
      );
      return true;
    });
    assert.deepEqual(await db.query("SELECT COUNT(*) AS n FROM audit"), [{ n: 0 }]);
  });
});

Deno.test("SQL that fails on the server rejects with the source's 'query' failure", async () => {
  await withPlant(async (db, source) => {
    const { handle } = handleNamed("tanks");
    await db.query("DROP TABLE tank_level");
    await assert.rejects(handle.fetch(source, ["north"]), (error: unknown) => {
      assert.ok(error instanceof SourceError, String(error));
      assert.deepEqual(error.failure, "query");
      assert.match(
        error.message,
        /^database 'plant1': ER_NO_SUCH_TABLE: Table '.*tank_level' doesn't exist$/,
      );
      return true;
    });
  });
});

Deno.test("a result without its unit column is a HandleError naming the handle and the column", async () => {
  await withPlant(async (db, source) => {
    await db.query("INSERT INTO tank_level VALUES ('north', 1, 4, 12, NULL)");
    const { handle } = customHandle("levels", {
      sql: "SELECT site AS place, tank_id, level_m FROM tank_level WHERE site IN (:units)",
      unit: "site",
      unitType: "string",
      key: ["tank_id"],
    });
    await assert.rejects(handle.fetch(source, ["north"]), (error: unknown) => {
      assert.ok(error instanceof HandleError, String(error));
      assert.deepEqual(error.handle, "levels");
      assert.deepEqual(
        error.message,
        "handle 'levels': the result has no column 'site' (its unit); columns: place, tank_id, level_m",
      );
      return true;
    });
  });
});

Deno.test("a result without a key column is a HandleError naming the handle and the column", async () => {
  await withPlant(async (db, source) => {
    await db.query("INSERT INTO tank_level VALUES ('north', 1, 4, 12, NULL)");
    const { handle } = customHandle("levels", {
      sql: "SELECT site, tank_id AS tank, level_m FROM tank_level WHERE site IN (:units)",
      unit: "site",
      unitType: "string",
      key: ["site", "tank_id"],
    });
    await assert.rejects(handle.fetch(source, ["north"]), (error: unknown) => {
      assert.ok(error instanceof HandleError, String(error));
      assert.deepEqual(error.handle, "levels");
      assert.deepEqual(
        error.message,
        "handle 'levels': the result has no column 'tank_id' (in its key); columns: site, tank, level_m",
      );
      return true;
    });
  });
});

Deno.test("rows repeating a key within a unit: the first row wins, reported once per poll with the first key", async () => {
  await withPlant(async (db, source) => {
    // A quote history: the newest quote of each venue comes first (ORDER BY venue, at DESC).
    await db.query(
      `INSERT INTO quote (instrument_id, venue, bid, ask, at) VALUES
        (7, 'lse', 100, 101, '2026-12-01 09:00:00'), (7, 'lse', 102, 103, '2026-12-01 09:05:00'),
        (7, 'lse', 99, 100, '2026-12-01 08:00:00'), (7, 'xetra', 50, 51, '2026-12-01 09:00:00'),
        (8, 'xetra', 60, 61, '2026-12-01 09:00:00'), (8, 'xetra', 61, 62, '2026-12-01 09:01:00'),
        (9, 'lse', 1, 2, '2026-12-01 09:00:00')`,
    );
    const { handle, reports } = handleNamed("quotes");
    const polls = await handle.fetch(source, [7, 8, 9]);
    assert.deepEqual(joinRows(rowsOf(polls, 7)), [
      { instrument_id: 7, venue: "lse", bid: 102, ask: 103, at: "2026-12-01 09:05:00" },
      { instrument_id: 7, venue: "xetra", bid: 50, ask: 51, at: "2026-12-01 09:00:00" },
    ]);
    assert.deepEqual(joinRows(rowsOf(polls, 8)), [
      { instrument_id: 8, venue: "xetra", bid: 61, ask: 62, at: "2026-12-01 09:01:00" },
    ]);
    assert.deepEqual(rowsOf(polls, 7).shape.keys.length, 2);
    assert.deepEqual(reports, [["quotes", '["lse"]', 3]]);
  });
});

Deno.test("a unit over maxRowsPerUnit is a TOO_MANY_ROWS fault for that unit only, never truncated", async () => {
  await withPlant(async (db, source) => {
    await db.query(
      `INSERT INTO tank_level VALUES ('north', 1, 1, 1, NULL), ('north', 2, 2, 2, NULL), ('north', 3, 3, 3, NULL),
        ('south', 1, 1, 1, NULL), ('south', 2, 2, 2, NULL)`,
    );
    const { handle } = customHandle("levels", {
      sql: "SELECT site, tank_id, level_m FROM tank_level WHERE site IN (:units) ORDER BY tank_id",
      unit: "site",
      unitType: "string",
      key: ["tank_id"],
      maxRowsPerUnit: 2,
    });
    const polls = await handle.fetch(source, ["north", "south"]);
    const north = polls.get("north");
    assert.ok(north instanceof UnitFault, `expected a fault, got ${JSON.stringify(north)}`);
    assert.deepEqual({ ...north }, {
      code: "TOO_MANY_ROWS",
      message: "handle 'levels' read 3 rows for unit \"north\"; at most 2 are served (maxRowsPerUnit)",
    });
    assert.deepEqual(joinRows(rowsOf(polls, "south")), [
      { site: "south", tank_id: 1, level_m: 1 },
      { site: "south", tank_id: 2, level_m: 2 },
    ]);
  });
});

Deno.test("a ? and :units inside the operator's string literals stay text", async () => {
  await withPlant(async (db, source) => {
    await db.query("INSERT INTO tank_level VALUES ('north', 1, 4, 12, NULL), ('north?', 1, 5, 13, NULL)");
    const { handle } = customHandle("levels", {
      sql: "SELECT site, tank_id, CONCAT(site, '?') AS asked, ':units' AS note FROM tank_level " +
        "WHERE site IN (:units) AND site <> 'x?' AND site NOT LIKE '%:units%'",
      unit: "site",
      unitType: "string",
      key: ["tank_id"],
    });
    const polls = await handle.fetch(source, ["north"]);
    assert.deepEqual(joinRows(rowsOf(polls, "north")), [
      { site: "north", tank_id: 1, asked: "north?", note: ":units" },
    ]);
  });
});

Deno.test("values: DATETIME, DATE and TIMESTAMP as the server's text, DECIMAL a number, BIGINT past 2^53 a string, BLOB text, NULL null", async () => {
  await withPlant(async (db, source) => {
    await db.query(
      `CREATE TABLE reading (id INT PRIMARY KEY, at DATETIME, at_ms DATETIME(3), day DATE, stamped TIMESTAMP NULL,
        price DECIMAL(10,2), total BIGINT, count BIGINT, raw BLOB, note VARCHAR(8), ok TINYINT(1), ratio DOUBLE)`,
    );
    await db.query(
      `INSERT INTO reading VALUES
        (1, '2026-12-01 21:00:00', '2026-12-01 21:00:00.125', '2026-12-01', '2026-12-01 21:00:00', 12.25,
          9007199254740993, 42, X'68C3A9FF', NULL, 1, 0.1),
        (2, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL)`,
    );
    const { handle } = customHandle("readings", { sql: "SELECT * FROM reading ORDER BY id", key: ["id"] });
    const rows = joinRows(rowsOf(await handle.fetch(source, [null]), null));
    assert.deepEqual(rows, [
      {
        id: 1,
        at: "2026-12-01 21:00:00",
        at_ms: "2026-12-01 21:00:00.125",
        day: "2026-12-01",
        stamped: "2026-12-01 21:00:00",
        price: 12.25,
        total: "9007199254740993",
        count: 42,
        raw: "h\u00e9\ufffd",
        note: null,
        ok: 1,
        ratio: 0.1,
      },
      {
        id: 2,
        at: null,
        at_ms: null,
        day: null,
        stamped: null,
        price: null,
        total: null,
        count: null,
        raw: null,
        note: null,
        ok: null,
        ratio: null,
      },
    ]);
  });
});
