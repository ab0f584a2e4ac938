/**
 * The MySQL/MariaDB source against a real server over TCP: parameterized SELECTs, the query
 * time limit enforced on the server too, and failures classified without leaking credentials.
 */

import assert from "node:assert/strict";
import { MysqlSource } from "../../lib/sources/mysql_source.ts";
import { type Row, SourceError } from "../../lib/sources/source.ts";
import { delay } from "../support/app.ts";
import { createTestDatabase, freePort, type TestDatabase } from "../support/mysql.ts";

function sourceError(failure: string, check?: (message: string) => void) {
  return (error: unknown) => {
    assert.ok(error instanceof SourceError, `expected a SourceError, got ${error}`);
    assert.equal(error.code, "plant1");
    assert.equal(error.failure, failure, error.message);
    check?.(error.message);
    return true;
  };
}

async function withDatabase(fn: (db: TestDatabase) => Promise<void>): Promise<void> {
  const db = await createTestDatabase();
  try {
    await fn(db);
  } finally {
    await db.drop();
  }
}

Deno.test("a SELECT binds its ? parameters and returns driver values as JSON-ready scalars", async () => {
  await withDatabase(async (db) => {
    await db.setData("GW1", { ua: 229.5, p: 12.25, state: "run" });
    await db.setData("GW2", { ua: null });
    const source = new MysqlSource("plant1", db.settings, 5000);
    try {
      const rows = await source.select(
        "SELECT `equip_address`, `ua`, `p`, `state` FROM `device_data_real` WHERE `equip_address` IN (?, ?) ORDER BY `equip_address`",
        ["GW1", "GW2"],
      );
      assert.deepEqual(rows.map((r) => ({ ...r })), [
        { equip_address: "GW1", ua: 229.5, p: 12.25, state: "run" },
        { equip_address: "GW2", ua: null, p: null, state: null },
      ]);
    } finally {
      await source.close();
    }
  });
});

Deno.test("integers beyond 2^53 come back as strings, not rounded numbers", async () => {
  await withDatabase(async (db) => {
    const source = new MysqlSource("plant1", db.settings, 5000);
    try {
      const [row] = await source.select("SELECT CAST(? AS SIGNED) AS big, CAST(? AS SIGNED) AS small", [
        "9007199254740993",
        "42",
      ]);
      assert.equal(row.big, "9007199254740993");
      assert.equal(row.small, 42);
    } finally {
      await source.close();
    }
  });
});

Deno.test("a query over queryTimeoutMs rejects with 'timeout' and no longer runs on the server", async () => {
  await withDatabase(async (db) => {
    const login = await db.dedicatedUser();
    const source = new MysqlSource("plant1", login.settings, 300);
    try {
      await assert.rejects(
        source.select("SELECT SLEEP(3) AS slept", []),
        sourceError(
          "timeout",
          (message) => assert.equal(message, "query on database 'plant1' exceeded 300 ms"),
        ),
      );
      const running = async () =>
        (await db.query(
          "SELECT ID, COMMAND, INFO FROM information_schema.PROCESSLIST WHERE USER = ? AND COMMAND = 'Query' AND INFO LIKE '%SLEEP(%'",
          [login.settings.user],
        )) as Row[];
      const deadline = Date.now() + 1500;
      let rows = await running();
      while (rows.length > 0 && Date.now() < deadline) {
        await delay(50);
        rows = await running();
      }
      assert.deepEqual(rows, [], "the SLEEP query is still running on the server");
      // The pool is still usable afterwards.
      assert.deepEqual((await source.select("SELECT 1 AS one", [])).map((r) => ({ ...r })), [{ one: 1 }]);
    } finally {
      await source.close();
    }
  });
});

Deno.test("a wrong password rejects with 'unavailable' and the message does not contain the password", async () => {
  await withDatabase(async (db) => {
    const login = await db.dedicatedUser();
    const password = "wrong-Pa55word-" + crypto.randomUUID();
    const source = new MysqlSource("plant1", { ...login.settings, password }, 2000);
    try {
      await assert.rejects(
        source.select("SELECT 1", []),
        sourceError("unavailable", (message) => {
          assert.ok(!message.includes(password), message);
          assert.ok(!message.includes(login.settings.password), message);
          assert.equal(message, "database 'plant1' is unavailable: ER_ACCESS_DENIED_ERROR");
        }),
      );
    } finally {
      await source.close();
    }
  });
});

Deno.test("nothing listening on the port rejects with 'unavailable'", async () => {
  const source = new MysqlSource("plant1", {
    driver: "mysql",
    host: "127.0.0.1",
    port: freePort(),
    user: "gatecast",
    password: "secret-pw",
    database: "iot",
    connectionLimit: 2,
  }, 1000);
  try {
    await assert.rejects(
      source.select("SELECT 1", []),
      sourceError("unavailable", (message) => {
        assert.equal(message, "database 'plant1' is unavailable: ECONNREFUSED");
      }),
    );
  } finally {
    await source.close();
  }
});

Deno.test("a database that does not exist on the server rejects with 'unavailable'", async () => {
  await withDatabase(async (db) => {
    const source = new MysqlSource("plant1", { ...db.settings, database: "gc_no_such_database" }, 2000);
    try {
      await assert.rejects(
        source.select("SELECT 1", []),
        sourceError(
          "unavailable",
          (m) => assert.equal(m, "database 'plant1' is unavailable: ER_BAD_DB_ERROR"),
        ),
      );
    } finally {
      await source.close();
    }
  });
});

Deno.test("a failing query rejects with 'query' and the server's error, and the pool stays usable", async () => {
  await withDatabase(async (db) => {
    const source = new MysqlSource("plant1", db.settings, 5000);
    try {
      await assert.rejects(
        source.select("SELECT * FROM `nope`", []),
        sourceError("query", (message) => {
          assert.equal(
            message,
            `database 'plant1': ER_NO_SUCH_TABLE: Table '${db.settings.database}.nope' doesn't exist`,
          );
        }),
      );
      assert.equal((await source.select("SELECT 2 AS two", []))[0].two, 2);
    } finally {
      await source.close();
    }
  });
});

Deno.test("after close, select rejects with 'unavailable', and close is idempotent", async () => {
  await withDatabase(async (db) => {
    const source = new MysqlSource("plant1", db.settings, 5000);
    assert.equal((await source.select("SELECT 1 AS one", []))[0].one, 1);
    await source.close();
    await source.close();
    await assert.rejects(
      source.select("SELECT 1", []),
      sourceError("unavailable", (m) => assert.equal(m, "database 'plant1' is closed")),
    );
  });
});
