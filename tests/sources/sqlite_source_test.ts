/**
 * The SQLite source: parameterized SELECTs on `node:sqlite`, errors as SourceError, and the
 * demo schema it serves.
 */

import assert from "node:assert/strict";
import { DatabaseSync } from "node:sqlite";
import { createDemoSchema } from "../../lib/sources/demo_plant.ts";
import { SourceError } from "../../lib/sources/source.ts";
import { SqliteSource } from "../../lib/sources/sqlite_source.ts";

function sourceError(failure: string, message: string) {
  return (error: unknown) => {
    assert.ok(error instanceof SourceError, `expected a SourceError, got ${error}`);
    assert.equal(error.name, "SourceError");
    assert.equal(error.code, "demo");
    assert.equal(error.failure, failure);
    assert.equal(error.message, message);
    return true;
  };
}

Deno.test("a SELECT binds its ? parameters and returns rows keyed by column", async () => {
  const source = SqliteSource.open("demo", ":memory:");
  try {
    const rows = await source.select("SELECT ? AS a, ? AS b", [1, "x"]);
    assert.deepEqual(rows.map((r) => ({ ...r })), [{ a: 1, b: "x" }]);
    assert.equal(source.code, "demo");
  } finally {
    await source.close();
  }
});

Deno.test("the same SQL text runs again with other parameters (statements are reused)", async () => {
  const db = new DatabaseSync(":memory:");
  createDemoSchema(db);
  const source = new SqliteSource("demo", db);
  try {
    const sql =
      "SELECT `gateway_address` AS `address` FROM `archive_device` WHERE `unit_id` = ? AND `code` = ?";
    assert.deepEqual((await source.select(sql, [3, "ua"])).map((r) => r.address), ["GW-301"]);
    assert.deepEqual((await source.select(sql, [1, "ua"])).map((r) => r.address), ["GW-101", "GW-102"]);
  } finally {
    await source.close();
  }
});

Deno.test("bad SQL rejects with failure 'query' and the database's message", async () => {
  const source = SqliteSource.open("demo", ":memory:");
  try {
    await assert.rejects(
      source.select("SELECT * FROM nope", []),
      sourceError("query", "database 'demo': no such table: nope"),
    );
    await assert.rejects(
      source.select("SELEC 1", []),
      sourceError("query", `database 'demo': near "SELEC": syntax error`),
    );
  } finally {
    await source.close();
  }
});

Deno.test("after close, select rejects with failure 'unavailable', and close is idempotent", async () => {
  const source = SqliteSource.open("demo", ":memory:");
  assert.equal((await source.select("SELECT 1 AS one", [])).length, 1);
  await source.close();
  await source.close();
  await assert.rejects(
    source.select("SELECT 1 AS one", []),
    sourceError("unavailable", "database 'demo' is closed"),
  );
  await assert.rejects(
    source.select("SELECT 2 AS two", []),
    sourceError("unavailable", "database 'demo' is closed"),
  );
});

Deno.test("a database file is opened from its path", async () => {
  const dir = await Deno.makeTempDir({ prefix: "gatecast-sqlite-" });
  try {
    const path = `${dir}/plant.db`;
    const db = new DatabaseSync(path);
    createDemoSchema(db);
    db.close();
    const source = SqliteSource.open("demo", path);
    const rows = await source.select("SELECT COUNT(*) AS n FROM device_data_real", []);
    assert.equal(rows[0].n, 6);
    await source.close();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
