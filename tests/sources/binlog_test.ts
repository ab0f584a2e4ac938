/**
 * Binlog wake-ups against a real throw-away `mariadbd` with `--log-bin --binlog-format=ROW`:
 * a change reaches a subscriber at once although the poll interval is long, a server without
 * binlog is polled as before, a killed stream is retried while polling carries on, and an idle
 * database sees nothing but the safety polls.
 */

import assert from "node:assert/strict";
import { binlogProblems, includeSchema } from "../../lib/sources/binlog.ts";
import { wakeTargets } from "../../lib/app.ts";
import { type MysqlSettings, parseConfig } from "../../lib/config/config.ts";
import { startTestApp, type TestApp, waitFor } from "../support/app.ts";
import { createTestDatabase, type TestDatabase } from "../support/mysql.ts";
import { startThrowawayMariadb, type ThrowawayMariadb } from "../support/servers.ts";
import { type Frame, TestClient } from "../support/ws_client.ts";

const BINLOG_ARGS = ["--log-bin", "--binlog-format=ROW", "--server-id=1"];

let binlogServer: Promise<ThrowawayMariadb> | undefined;
/** One server with a row-based binlog for the whole file. */
function withBinlog(): Promise<ThrowawayMariadb> {
  binlogServer ??= startThrowawayMariadb(32, undefined, BINLOG_ARGS);
  return binlogServer;
}

/** A test database with a `tank_level` table and a login of its own that may read the binlog. */
async function tankDatabase(server: ThrowawayMariadb): Promise<{
  db: TestDatabase;
  user: Awaited<ReturnType<TestDatabase["dedicatedUser"]>>;
}> {
  const db = await createTestDatabase(server.info);
  await db.query("CREATE TABLE tank_level (id INT PRIMARY KEY, level DOUBLE NOT NULL)");
  await db.query("CREATE TABLE unrelated (id INT PRIMARY KEY, v INT)");
  await db.query("INSERT INTO tank_level VALUES (1, 10), (2, 20)");
  const user = await db.dedicatedUser();
  await db.query(`GRANT REPLICATION SLAVE, REPLICATION CLIENT ON *.* TO '${user.settings.user}'@'%'`);
  return { db, user };
}

const HANDLES = {
  tanks: { sql: "SELECT id, level FROM tank_level ORDER BY id", key: ["id"], tables: ["tank_level"] },
  // Reads the same table but names none: only ever polled.
  quiet: { sql: "SELECT id, level FROM tank_level ORDER BY id", key: ["id"] },
};

async function startBinlogApp(
  user: { settings: MysqlSettings },
  settings: Record<string, unknown>,
): Promise<TestApp> {
  return await startTestApp(
    { plant1: { ...user.settings, binlog: { serverId: 4242 } } },
    { handles: HANDLES, ...settings },
  );
}

async function binlogStatus(app: TestApp): Promise<string> {
  const body = await (await fetch(`${app.httpUrl}/healthz`)).json();
  return body.databases.plant1.binlog;
}

async function subscriber(app: TestApp, topic: string): Promise<{ client: TestClient; snapshot: Frame }> {
  const client = await TestClient.open(app.wsUrl, "gatecast.v1");
  client.send({ type: "subscribe", id: 1, topic });
  assert.deepEqual(await client.next(), { type: "subscribed", id: 1, topic });
  return { client, snapshot: await client.expect("snapshot") };
}

/** Cleans up a test's app, clients and database in order, whatever failed. */
async function cleanUp(app: TestApp | undefined, clients: TestClient[], db: TestDatabase | undefined) {
  for (const client of clients) await client.close().catch(() => {});
  await app?.stop();
  await db?.drop();
}

Deno.test("the start-up check names every missing setting and grant", () => {
  assert.deepEqual(
    binlogProblems({ log_bin: "OFF", binlog_format: "MIXED" }, ["GRANT SELECT ON `plant1`.* TO `u`@`%`"]),
    [
      "log_bin is OFF (start the server with --log-bin)",
      "missing grant REPLICATION SLAVE ON *.*",
      "missing grant REPLICATION CLIENT ON *.* (BINLOG MONITOR on MariaDB >= 10.5)",
    ],
  );
  assert.deepEqual(
    binlogProblems({ log_bin: "ON", binlog_format: "STATEMENT" }, [
      "GRANT REPLICATION SLAVE, BINLOG MONITOR ON *.* TO `u`@`%`",
    ]),
    ["binlog_format is STATEMENT (set binlog_format=ROW)"],
  );
  assert.deepEqual(
    binlogProblems({ log_bin: "ON", binlog_format: "ROW" }, [
      "GRANT ALL PRIVILEGES ON *.* TO `root`@`localhost`",
    ]),
    [],
  );
});

Deno.test("each table wakes exactly the handles offered on the database that name it", () => {
  const config = parseConfig({
    auth: { mode: "none" },
    databases: {
      plant1: { user: "u", database: "iot", binlog: { serverId: 7 } },
      plant2: { user: "u", database: "other" },
    },
    handles: {
      tanks: { sql: "SELECT 1 AS id", key: ["id"], tables: ["tank_level", "Shared.Sites"] },
      only2: { sql: "SELECT 1 AS id", key: ["id"], tables: ["tank_level"], databases: ["plant2"] },
      quiet: { sql: "SELECT 1 AS id", key: ["id"] },
    },
  }, () => undefined);
  assert.deepEqual(
    [...wakeTargets(config, "plant1")],
    [
      ["iot.archive_device", ["real"]],
      ["iot.device_data_real", ["real"]],
      ["iot.tank_level", ["tanks"]],
      ["shared.sites", ["tanks"]],
    ],
  );
  assert.deepEqual(includeSchema([...wakeTargets(config, "plant1").keys()]), {
    iot: ["archive_device", "device_data_real", "tank_level"],
    shared: ["sites"],
  });
});

Deno.test({
  name: "a change wakes its handle's group and reaches the subscriber although pollIntervalMs is 60000",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    const server = await withBinlog();
    const { db, user } = await tankDatabase(server);
    let app: TestApp | undefined;
    const clients: TestClient[] = [];
    try {
      app = await startBinlogApp(user, { pollIntervalMs: 60_000 });
      const running = app;
      await waitFor("binlog following", async () => (await binlogStatus(running)) === "following", 10_000);
      const tanks = await subscriber(app, "plant1/tanks");
      const quiet = await subscriber(app, "plant1/quiet");
      clients.push(tanks.client, quiet.client);
      assert.deepEqual(tanks.snapshot.rows, [{ id: 1, level: 10 }, { id: 2, level: 20 }]);

      await db.query("UPDATE tank_level SET level = 11 WHERE id = 1");
      const update = await tanks.client.expect("update", 5000);
      assert.deepEqual([update.upsert, update.delete], [[{ id: 1, level: 11 }], []]);
      assert.ok(app.metrics.value("gatecast_binlog_events_total", { db: "plant1" }) >= 1);
      // The handle that names no tables is not woken: it waits for its (60 s) poll.
      await quiet.client.expectNothing(500);
    } finally {
      await cleanUp(app, clients, db);
    }
  },
});

Deno.test({
  name: "a database without log_bin gets one log line naming it and is polled as before",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    const server = await startThrowawayMariadb(); // the default: --skip-log-bin
    const { db, user } = await tankDatabase(server);
    let app: TestApp | undefined;
    const clients: TestClient[] = [];
    try {
      app = await startBinlogApp(user, { pollIntervalMs: 200 });
      const running = app;
      await waitFor("binlog off", async () => (await binlogStatus(running)).startsWith("off"), 10_000);
      assert.equal(await binlogStatus(app), "off: log_bin is OFF (start the server with --log-bin)");
      const tanks = await subscriber(app, "plant1/tanks");
      clients.push(tanks.client);
      await db.query("UPDATE tank_level SET level = 12 WHERE id = 2");
      const update = await tanks.client.expect("update", 5000);
      assert.deepEqual(update.upsert, [{ id: 2, level: 12 }]);
      const lines = app.logs.filter((line) => String(line.msg).startsWith("binlog"));
      assert.deepEqual(lines.map((line) => [line.msg, line.db, line.reason]), [
        [
          "binlog off: the database is polled as without binlog",
          "plant1",
          "log_bin is OFF (start the server with --log-bin)",
        ],
      ]);
    } finally {
      await cleanUp(app, clients, db);
      await server.stop();
      await Deno.remove(server.dir, { recursive: true }).catch(() => {});
    }
  },
});

Deno.test({
  name: "a killed binlog stream is logged and retried; changes made meanwhile arrive by the safety poll",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    const server = await withBinlog();
    const { db, user } = await tankDatabase(server);
    const name = user.settings.user;
    let app: TestApp | undefined;
    const clients: TestClient[] = [];
    try {
      app = await startBinlogApp(user, { pollIntervalMs: 1500 });
      const running = app;
      await waitFor("binlog following", async () => (await binlogStatus(running)) === "following", 10_000);
      const tanks = await subscriber(app, "plant1/tanks");
      clients.push(tanks.client);

      // Kill the Binlog Dump thread, and keep the stream down: its retries are refused.
      await db.query(`REVOKE REPLICATION SLAVE ON *.* FROM '${name}'@'%'`);
      const dumps = await db.query(
        "SELECT ID FROM information_schema.PROCESSLIST WHERE COMMAND = 'Binlog Dump' AND USER = ?",
        [name],
      ) as { ID: number }[];
      assert.equal(dumps.length, 1);
      await db.query(`KILL ${Number(dumps[0].ID)}`);
      await waitFor(
        "binlog retrying",
        async () => (await binlogStatus(running)).startsWith("retrying: "),
        10_000,
      );
      const broken = app.logs.filter((line) =>
        line.msg === "binlog stream broken; polling goes on, retrying from the end"
      );
      assert.equal(broken.length, 1, JSON.stringify(broken));

      // Down: the change comes with the next safety poll.
      await db.query("UPDATE tank_level SET level = 13 WHERE id = 1");
      assert.deepEqual((await tanks.client.expect("update", 5000)).upsert, [{ id: 1, level: 13 }]);
      assert.ok((await binlogStatus(app)).startsWith("retrying: "));

      // Back: the retry follows from the end and changes arrive by binlog again.
      await db.query(`GRANT REPLICATION SLAVE ON *.* TO '${name}'@'%'`);
      await waitFor(
        "binlog following again",
        async () => (await binlogStatus(running)) === "following",
        15_000,
      );
      assert.ok(app.logs.some((line) => line.msg === "binlog following again"));
      const events = app.metrics.value("gatecast_binlog_events_total", { db: "plant1" });
      await db.query("UPDATE tank_level SET level = 14 WHERE id = 1");
      await waitFor(
        "a binlog event after the restart",
        () => app!.metrics.value("gatecast_binlog_events_total", { db: "plant1" }) > events,
      );
      assert.deepEqual((await tanks.client.expect("update", 5000)).upsert, [{ id: 1, level: 14 }]);
      // Restarted from the end: the change made while the stream was down was not replayed.
      assert.equal(app.metrics.value("gatecast_binlog_events_total", { db: "plant1" }) - events, 1);
    } finally {
      await cleanUp(app, clients, db);
    }
  },
});

Deno.test({
  name: "with binlog on and no change to a watched table, only the safety polls query the database",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    const server = await withBinlog();
    const { db, user } = await tankDatabase(server);
    let app: TestApp | undefined;
    const clients: TestClient[] = [];
    try {
      app = await startBinlogApp(user, { pollIntervalMs: 1000 });
      const running = app;
      await waitFor("binlog following", async () => (await binlogStatus(running)) === "following", 10_000);
      const tanks = await subscriber(app, "plant1/tanks");
      clients.push(tanks.client);
      const queries = () => running.metrics.value("gatecast_db_queries_total", { db: "plant1" });
      const ticks = () => running.metrics.value("gatecast_ticks_total");
      // From one tick's finished poll to the third tick after it: three safety polls of one query each.
      const firstTick = ticks();
      const firstQueries = queries();
      await waitFor("a tick and its poll", () => ticks() > firstTick && queries() > firstQueries, 3000);
      const from = queries();
      const startTick = ticks();
      // Changes to a table no handle names travel the binlog but wake nothing.
      await db.query("INSERT INTO unrelated VALUES (1, 1)");
      await db.query("UPDATE unrelated SET v = 2 WHERE id = 1");
      await waitFor("three ticks", () => ticks() >= startTick + 3, 6000);
      await waitFor("the third safety poll's query", () => queries() >= from + 3, 2000);
      assert.equal(queries() - from, 3);
      assert.equal(running.metrics.value("gatecast_binlog_events_total", { db: "plant1" }), 0);
    } finally {
      await cleanUp(app, clients, db);
    }
  },
});
