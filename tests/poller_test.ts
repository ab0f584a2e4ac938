/**
 * Database faults against real MariaDB servers: a throw-away `mariadbd` that is down at start,
 * restarted, locked or frozen (SIGSTOP), filled to `max_connections`; and a wrong password next
 * to a good database. After every recovery each subscriber holds the latest values within two
 * ticks (the retry delay is capped at two poll intervals by default).
 */

import assert from "node:assert/strict";
import mysql from "mysql2/promise";
import { RetryBackoff } from "../lib/backoff.ts";
import { realHandle } from "../lib/real_handle.ts";
import {
  createTestDatabase,
  startThrowawayMariadb,
  type TestDatabase,
  type ThrowawayMariadb,
} from "./support/mysql.ts";
import { delay, startTestApp, type TestApp, waitFor } from "./support/app.ts";
import { type Frame, TestClient } from "./support/ws_client.ts";

const POLL_MS = 200;

let throwaway: Promise<ThrowawayMariadb> | undefined;
/** One throw-away server for this file, started on first use. */
function server(): Promise<ThrowawayMariadb> {
  throwaway ??= startThrowawayMariadb();
  return throwaway;
}

async function plantOn(mariadb: ThrowawayMariadb): Promise<TestDatabase> {
  const db = await createTestDatabase(mariadb.info);
  await db.addPoints([{ unit: 1, code: "ua", address: "GW1" }, { unit: 1, code: "ia", address: "GW1" }]);
  await db.setData("GW1", { ua: 230, ia: 10 });
  return db;
}

/** A second admin connection that survives nothing: opened after each restart. */
async function admin(mariadb: ThrowawayMariadb, database: string) {
  return await mysql.createConnection({ ...mariadb.info, database });
}

/**
 * Reads frames (applying snapshots and updates) until the topic holds `ua`/`ia`; returns the
 * tick count at that moment.
 */
async function expectValues(client: TestClient, app: TestApp, ua: number, ia: number): Promise<number> {
  const values: Record<string, unknown> = {};
  while (true) {
    const frame: Frame = await client.next(15_000);
    if (frame.type === "snapshot") {
      for (const key of Object.keys(values)) delete values[key];
      for (const p of frame.points) values[p.code] = p.value;
    } else if (frame.type === "update") {
      for (const c of frame.changes) values[c.code] = c.value;
    } else continue;
    if (values.ua === ua && values.ia === ia) return app.metrics.value("gatecast_ticks_total");
  }
}

function ticks(app: TestApp): number {
  return app.metrics.value("gatecast_ticks_total");
}

Deno.test("the retry delay doubles from one interval up to its cap and resets on success", () => {
  const backoff = new RetryBackoff(1000, 4000);
  assert.deepEqual([backoff.failed(0), backoff.failed(0), backoff.failed(0), backoff.failed(0)], [
    1000,
    2000,
    4000,
    4000,
  ]);
  assert.deepEqual(backoff.ready(3000), false);
  assert.deepEqual(backoff.ready(3500), true);
  backoff.succeeded();
  assert.deepEqual(backoff.failureCount, 0);
  assert.deepEqual(backoff.ready(0), true);
});

Deno.test("started with its database down, the server serves stale topics and 503, backs off, and delivers the values within 2 ticks of the database starting", async () => {
  const mariadb = await server();
  const db = await plantOn(mariadb);
  await mariadb.stop();
  const app = await startTestApp({ plant1: db.settings }, { pollIntervalMs: POLL_MS });
  const client = await TestClient.open(app.wsUrl, "gatecast.v1");
  try {
    client.send({ type: "subscribe", id: 1, topic: "plant1/real/1" });
    await client.expect("subscribed");
    const stale = await client.expect("stale");
    assert.deepEqual(stale.code, "SOURCE_UNAVAILABLE");
    assert.match(stale.message, /database 'plant1' is unavailable/);
    const health = await fetch(`${app.httpUrl}/healthz`);
    assert.deepEqual(health.status, 503);
    assert.deepEqual((await health.json()).databases.plant1.healthy, false);
    await waitFor(
      "a deferred poll",
      () => app.metrics.value("gatecast_polls_deferred_total", { db: "plant1" }) > 2,
    );
    // Backing off: fewer attempts than ticks.
    assert.ok(
      app.metrics.value("gatecast_db_errors_total", { db: "plant1" }) < ticks(app),
      "some ticks made no attempt",
    );
    await mariadb.restart();
    const upAt = ticks(app);
    const gotAt = await expectValues(client, app, 230, 10);
    assert.ok(gotAt - upAt <= 2, `values ${gotAt - upAt} ticks after the database came up`);
    await waitFor(
      "healthy",
      async () =>
        (await fetch(`${app.httpUrl}/healthz`).then((r) => r.body?.cancel().then(() => r.status))) === 200,
    );
  } finally {
    await client.close();
    await app.stop();
    await db.drop().catch(() => {});
  }
});

Deno.test("a database restarted mid-run: topics go stale, then every subscriber holds the latest values within 2 ticks", async () => {
  const mariadb = await server();
  const db = await plantOn(mariadb);
  const app = await startTestApp({ plant1: db.settings }, { pollIntervalMs: POLL_MS });
  const clients = await Promise.all([1, 2, 3].map(() => TestClient.open(app.wsUrl, "gatecast.v1")));
  try {
    for (const client of clients) {
      client.send({ type: "subscribe", id: 1, topic: "plant1/real/1" });
      await client.expect("subscribed");
      await expectValues(client, app, 230, 10);
    }
    await mariadb.stop();
    for (const client of clients) {
      assert.deepEqual((await client.expect("stale", 5000)).topic, "plant1/real/1");
    }
    await mariadb.restart();
    const conn = await admin(mariadb, db.settings.database);
    await conn.query("UPDATE device_data_real SET ua = 231.5, ia = 12 WHERE equip_address = 'GW1'");
    await conn.end();
    const upAt = ticks(app);
    for (const client of clients) {
      const gotAt = await expectValues(client, app, 231.5, 12);
      assert.ok(gotAt - upAt <= 2, `values ${gotAt - upAt} ticks after the database came back`);
    }
  } finally {
    for (const client of clients) await client.close();
    await app.stop();
    await db.drop().catch(() => {});
  }
});

Deno.test("a query stalled past queryTimeoutMs is cancelled by the server, its ticks are skipped without overlap, and values arrive within 2 ticks after", async () => {
  const mariadb = await server();
  const db = await plantOn(mariadb);
  const app = await startTestApp({ plant1: db.settings }, { pollIntervalMs: POLL_MS, queryTimeoutMs: 600 });
  const client = await TestClient.open(app.wsUrl, "gatecast.v1");
  const locker = await admin(mariadb, db.settings.database);
  const watcher = await admin(mariadb, db.settings.database);
  try {
    client.send({ type: "subscribe", id: 1, topic: "plant1/real/1" });
    await client.expect("subscribed");
    await expectValues(client, app, 230, 10);
    const skippedBefore = app.metrics.value("gatecast_ticks_skipped_total", { db: "plant1", handle: "real" });
    await locker.query("LOCK TABLES device_data_real WRITE, archive_device WRITE");
    await locker.query("UPDATE device_data_real SET ua = 240, ia = 20");
    let mostAtOnce = 0;
    let oldest = 0;
    const deadline = Date.now() + 3000;
    while (Date.now() < deadline) {
      const [rows] = await watcher.query(
        "SELECT TIME_MS FROM information_schema.PROCESSLIST WHERE DB = ? AND COMMAND = 'Query' AND INFO LIKE 'SET STATEMENT max_statement_time%'",
        [db.settings.database],
      );
      const running = rows as { TIME_MS: number }[];
      mostAtOnce = Math.max(mostAtOnce, running.length);
      for (const row of running) oldest = Math.max(oldest, Number(row.TIME_MS));
      await delay(50);
    }
    const stale = await client.expect("stale", 1000);
    assert.match(stale.message, /exceeded 600 ms/);
    // One poll's queries at a time: a tick that finds the poll running is skipped.
    assert.ok(mostAtOnce >= 1 && mostAtOnce <= realHandle.queriesPerFetch, `${mostAtOnce} queries at once`);
    assert.ok(oldest < 600 + 300, `the server ended the query after ${oldest} ms`);
    assert.ok(
      app.metrics.value("gatecast_ticks_skipped_total", { db: "plant1", handle: "real" }) > skippedBefore,
      "ticks during the stall were skipped",
    );
    await locker.query("UNLOCK TABLES");
    const upAt = ticks(app);
    const gotAt = await expectValues(client, app, 240, 20);
    assert.ok(gotAt - upAt <= 2, `values ${gotAt - upAt} ticks after the lock was released`);
  } finally {
    await locker.end().catch(() => {});
    await watcher.end().catch(() => {});
    await client.close();
    await app.stop();
    await db.drop().catch(() => {});
  }
});

Deno.test("a frozen database (SIGSTOP) times out on the client side, and after SIGCONT the values arrive within 2 ticks", async () => {
  const mariadb = await server();
  const db = await plantOn(mariadb);
  const app = await startTestApp({ plant1: db.settings }, { pollIntervalMs: POLL_MS, queryTimeoutMs: 500 });
  const client = await TestClient.open(app.wsUrl, "gatecast.v1");
  try {
    client.send({ type: "subscribe", id: 1, topic: "plant1/real/1" });
    await client.expect("subscribed");
    await expectValues(client, app, 230, 10);
    mariadb.pause(true);
    const stale = await client.expect("stale", 5000);
    assert.match(stale.message, /exceeded 500 ms|within 500 ms/);
    await delay(1500);
    assert.ok(app.metrics.value("gatecast_ticks_skipped_total", { db: "plant1", handle: "real" }) > 0);
    mariadb.pause(false);
    const conn = await admin(mariadb, db.settings.database);
    await conn.query("UPDATE device_data_real SET ua = 250, ia = 25");
    await conn.end();
    const upAt = ticks(app);
    const gotAt = await expectValues(client, app, 250, 25);
    assert.ok(gotAt - upAt <= 2, `values ${gotAt - upAt} ticks after the database thawed`);
  } finally {
    mariadb.pause(false);
    await client.close();
    await app.stop();
    await db.drop().catch(() => {});
  }
});

Deno.test("a database at max_connections makes its topics stale; once connections free up the values arrive within 2 ticks", async () => {
  const mariadb = await server();
  const db = await plantOn(mariadb);
  const root = await admin(mariadb, db.settings.database);
  await root.query("CREATE USER IF NOT EXISTS 'gc_pool'@'127.0.0.1' IDENTIFIED BY 'pw'");
  await root.query("GRANT SELECT ON *.* TO 'gc_pool'@'127.0.0.1'");
  const [[{ n }]] =
    (await root.query("SELECT COUNT(*) AS n FROM information_schema.PROCESSLIST")) as unknown as [
      { n: number }[],
    ];
  await root.query("SET GLOBAL max_connections = ?", [Number(n) + 2]);
  const hogs: mysql.Connection[] = [];
  const settings = { ...db.settings, user: "gc_pool", password: "pw" };
  try {
    while (true) {
      try {
        hogs.push(await mysql.createConnection({ ...mariadb.info, user: "gc_pool", password: "pw" }));
      } catch (error) {
        assert.deepEqual((error as { code?: string }).code, "ER_CON_COUNT_ERROR");
        break;
      }
    }
    const app = await startTestApp({ plant1: settings }, { pollIntervalMs: POLL_MS });
    const client = await TestClient.open(app.wsUrl, "gatecast.v1");
    try {
      client.send({ type: "subscribe", id: 1, topic: "plant1/real/1" });
      await client.expect("subscribed");
      const stale = await client.expect("stale");
      assert.match(stale.message, /Too many connections|ER_CON_COUNT_ERROR/);
      for (const hog of hogs.splice(0)) await hog.end();
      await delay(100);
      const upAt = ticks(app);
      const gotAt = await expectValues(client, app, 230, 10);
      assert.ok(gotAt - upAt <= 2, `values ${gotAt - upAt} ticks after connections were freed`);
    } finally {
      await client.close();
      await app.stop();
    }
  } finally {
    for (const hog of hogs) await hog.end().catch(() => {});
    await root.query("SET GLOBAL max_connections = 151");
    await root.end();
    await db.drop().catch(() => {});
  }
});

Deno.test("one of several databases with a wrong password: only its topics are stale, the message names no password, the others flow", async () => {
  const mariadb = await server();
  const good = await plantOn(mariadb);
  const app = await startTestApp({
    good: good.settings,
    badpw: { ...good.settings, password: "not-the-password" },
  }, { pollIntervalMs: POLL_MS });
  const client = await TestClient.open(app.wsUrl, "gatecast.v1");
  try {
    client.send({ type: "subscribe", id: 1, topic: "badpw/real/1" });
    await client.expect("subscribed");
    const stale = await client.expect("stale");
    assert.deepEqual(stale.topic, "badpw/real/1");
    assert.match(stale.message, /database 'badpw' is unavailable: ER_ACCESS_DENIED_ERROR/);
    assert.ok(!stale.message.includes("not-the-password"));
    client.send({ type: "subscribe", id: 2, topic: "good/real/1" });
    await client.expect("subscribed");
    const snapshot = await client.expect("snapshot");
    assert.deepEqual(snapshot.topic, "good/real/1");
    const conn = await admin(mariadb, good.settings.database);
    await conn.query("UPDATE device_data_real SET ua = 232");
    await conn.end();
    assert.deepEqual((await client.expect("update", 2000)).changes, [{
      address: "GW1",
      code: "ua",
      value: 232,
    }]);
    const body = await (await fetch(`${app.httpUrl}/healthz`)).json();
    assert.deepEqual(body.databases.good.healthy, true);
    assert.deepEqual(body.databases.badpw.healthy, false);
  } finally {
    await client.close();
    await app.stop();
    await good.drop().catch(() => {});
  }
});

Deno.test("stop the throw-away server of this file", async () => {
  if (!throwaway) return;
  const mariadb = await throwaway;
  await mariadb.stop();
  await Deno.remove(mariadb.dir, { recursive: true }).catch(() => {});
});
