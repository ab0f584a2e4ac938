/**
 * The poller, with SQLite sources (the demo schema) and a real registry: one fetch per group
 * per tick, no overlapping polls of a group, failures isolated as `stale`, and immediate polls
 * for new topics. Then database faults against a throw-away `mariadbd` (down at start,
 * restarted, locked, frozen, at max_connections, a wrong password), end to end.
 */

import assert from "node:assert/strict";
import mysql from "mysql2/promise";
import { DatabaseSync } from "node:sqlite";
import { createDemoSchema } from "../../lib/sources/demo_plant.ts";
import type { Handle } from "../../lib/handles/handle.ts";
import { Logger } from "../../lib/ops/log.ts";
import { MeteredSource } from "../../lib/sources/metered_source.ts";
import { METRIC_FAMILIES, Metrics } from "../../lib/ops/metrics.ts";
import { Poller } from "../../lib/hub/poller.ts";
import { Registry } from "../../lib/hub/registry.ts";
import { type Row, type Source, SourceError, type SqlParam } from "../../lib/sources/source.ts";
import { SqliteSource } from "../../lib/sources/sqlite_source.ts";
import { parseTopic } from "../support/topics.ts";
import { pointsV1 } from "../../lib/wire/points_v1.ts";
import { startTestApp, type TestApp, waitFor } from "../support/app.ts";
import { defaultHandles } from "../support/handles.ts";
import {
  createTestDatabase,
  startThrowawayMariadb,
  type TestDatabase,
  type ThrowawayMariadb,
} from "../support/mysql.ts";
import { type Frame, TestClient } from "../support/ws_client.ts";
import { FakePeer } from "../support/fake_peer.ts";

// The handles a default server has: `real` re-reads a unit's metadata every 10th poll.
const HANDLES: ReadonlyMap<string, Handle> = defaultHandles();

/** A demo-schema SQLite source whose SELECTs the test can count, hold back or fail. */
class ControlledSource implements Source {
  readonly sql: string[] = [];
  private readonly inner: SqliteSource;
  private gate: Promise<void> | undefined;
  /** When set, every SELECT rejects with it. */
  failure: SourceError | undefined;

  constructor(readonly code: string) {
    const db = new DatabaseSync(":memory:");
    createDemoSchema(db);
    this.inner = new SqliteSource(code, db);
  }

  /** Holds every SELECT from now on until the returned function is called. */
  hold(): () => void {
    const { promise, resolve } = Promise.withResolvers<void>();
    this.gate = promise;
    return () => {
      this.gate = undefined;
      resolve();
    };
  }

  /** Runs SQL on the database directly, as the plant would. */
  exec(sql: string): void {
    this.inner.db.exec(sql);
  }

  async select(sql: string, params: readonly SqlParam[]): Promise<Row[]> {
    this.sql.push(sql);
    if (this.gate) await this.gate;
    if (this.failure) throw this.failure;
    return this.inner.select(sql, params);
  }

  close(): Promise<void> {
    return this.inner.close();
  }
}

function setup(codes: string[], options: { wire?: boolean; intervalMs?: number } = {}) {
  const sources = new Map(codes.map((code) => [code, new ControlledSource(code)]));
  const metrics = new Metrics(METRIC_FAMILIES);
  const logs: Record<string, unknown>[] = [];
  const logger = new Logger("debug", (line) => logs.push(JSON.parse(line)));
  let poller: Poller | undefined = undefined;
  const registry = new Registry(options.wire ? (group) => poller!.pollNow(group) : undefined);
  // Queries are counted by the MeteredSource that app.ts wraps around every source.
  const metered = new Map([...sources].map(([code, source]) => [code, new MeteredSource(source, metrics)]));
  poller = new Poller(registry, metered, HANDLES, options.intervalMs ?? 60_000, metrics, logger);
  const subscribe = (topic: string) => {
    const peer = new FakePeer();
    registry.subscribe(parseTopic(topic), peer, pointsV1);
    return peer;
  };
  const cleanup = async () => {
    await poller.stop();
    for (const source of sources.values()) await source.close();
  };
  return { sources, metrics, logs, registry, poller, subscribe, cleanup };
}

function selects(source: ControlledSource): number {
  return source.sql.filter((sql) => sql !== "SELECT 1").length;
}

Deno.test("one tick polls each (database, handle) group once, whatever its number of units", async () => {
  const t = setup(["a", "b"]);
  try {
    const peers = [
      t.subscribe("a/real/1"),
      t.subscribe("a/real/2"),
      t.subscribe("a/real/3"),
      t.subscribe("b/real/2"),
    ];
    t.poller.tick();
    await t.poller.stop();
    assert.equal(selects(t.sources.get("a")!), 2);
    assert.equal(selects(t.sources.get("b")!), 2);
    assert.deepEqual(peers.map((p) => p.frames().map((f) => [f.type, f.seq, f.points.length])), [
      [["snapshot", 1, 10]],
      [["snapshot", 1, 15]],
      [["snapshot", 1, 5]],
      [["snapshot", 1, 15]],
    ]);
    assert.equal(t.metrics.value("gatecast_ticks_total"), 1);
    assert.equal(t.metrics.value("gatecast_db_queries_total", { db: "a" }), 2);
    assert.equal(t.metrics.value("gatecast_db_queries_total", { db: "b" }), 2);
    assert.equal(t.metrics.value("gatecast_poll_duration_seconds", { db: "a" }), 1);
    assert.ok(t.poller.health.get("a")!.lastGoodPoll > 0);
  } finally {
    await t.cleanup();
  }
});

Deno.test("a later tick sends updates with only the values that changed in the database", async () => {
  const t = setup(["a"]);
  try {
    const peer = t.subscribe("a/real/3");
    t.poller.tick();
    await t.poller.stop();
    t.sources.get("a")!.exec("UPDATE device_data_real SET ia = 12.5 WHERE equip_address = 'GW-301'");
    t.poller.tick();
    await t.poller.stop();
    t.poller.tick();
    await t.poller.stop();
    const [snapshot, update, ...rest] = peer.frames();
    assert.equal(snapshot.type, "snapshot");
    assert.deepEqual(rest, []);
    assert.deepEqual({ ...update, ts: undefined }, {
      type: "update",
      topic: "a/real/3",
      seq: 2,
      epoch: t.registry.topic("a/real/3")!.feed.epoch,
      ts: undefined,
      changes: [{ address: "GW-301", code: "ia", value: 12.5 }],
    });
    assert.ok(update.ts >= snapshot.ts);
    // The first poll reads the unit's metadata and values; the next two only the values.
    assert.equal(selects(t.sources.get("a")!), 4);
  } finally {
    await t.cleanup();
  }
});

Deno.test("a database no topic uses is probed with SELECT 1, so that its health is known", async () => {
  const t = setup(["a", "idle"], { intervalMs: 50 });
  try {
    t.subscribe("a/real/1");
    t.sources.get("idle")!.failure = new SourceError(
      "idle",
      "unavailable",
      "database 'idle' is unavailable: ECONNREFUSED",
    );
    t.poller.tick();
    await t.poller.stop();
    assert.deepEqual(t.sources.get("idle")!.sql, ["SELECT 1"]);
    assert.deepEqual(t.poller.health.get("idle"), {
      lastGoodPoll: 0,
      error: "database 'idle' is unavailable: ECONNREFUSED",
    });
    assert.equal(t.poller.health.get("a")!.error, undefined);
    t.sources.get("idle")!.failure = undefined;
    // The failed database's retry waits one interval (lib/backoff.ts): tick until it is due.
    await waitFor("the idle database's next probe", async () => {
      t.poller.tick();
      await t.poller.stop();
      return t.sources.get("idle")!.sql.length === 2;
    }, 2000);
    assert.equal(t.poller.health.get("idle")!.error, undefined);
    assert.ok(t.poller.health.get("idle")!.lastGoodPoll > 0);
  } finally {
    await t.cleanup();
  }
});

Deno.test("a group whose poll is still running is skipped by the tick and counted", async () => {
  const t = setup(["a"]);
  try {
    const peer = t.subscribe("a/real/1");
    const release = t.sources.get("a")!.hold();
    t.poller.tick();
    await waitFor("the poll under way", () => selects(t.sources.get("a")!) === 1, 1000);
    t.poller.tick();
    t.poller.tick();
    assert.equal(t.metrics.value("gatecast_ticks_skipped_total", { db: "a", handle: "real" }), 2);
    assert.equal(t.metrics.value("gatecast_ticks_total"), 3);
    assert.equal(selects(t.sources.get("a")!), 1); // the points query, held; values follow it
    assert.deepEqual(peer.sent, []);
    release();
    await t.poller.stop();
    assert.equal(selects(t.sources.get("a")!), 2);
    assert.deepEqual(peer.frames().map((f) => f.type), ["snapshot"]);
    assert.ok(t.metrics.render().includes('gatecast_ticks_skipped_total{db="a",handle="real"} 2\n'));
  } finally {
    await t.cleanup();
  }
});

Deno.test("a slow group does not hold back another database's group", async () => {
  const t = setup(["slow", "fast"]);
  try {
    t.subscribe("slow/real/1");
    const fast = t.subscribe("fast/real/1");
    const release = t.sources.get("slow")!.hold();
    t.poller.tick();
    await waitFor("the fast group's snapshot", () => fast.sent.length === 1, 1000);
    t.sources.get("fast")!.exec("UPDATE device_data_real SET ua = 1 WHERE equip_address = 'GW-101'");
    t.poller.tick();
    await waitFor("the fast group's update", () => fast.sent.length === 2, 1000);
    assert.equal(t.metrics.value("gatecast_ticks_skipped_total", { db: "slow", handle: "real" }), 1);
    assert.equal(t.metrics.value("gatecast_ticks_skipped_total", { db: "fast", handle: "real" }), 0);
    release();
  } finally {
    await t.cleanup();
  }
});

Deno.test("a failing source marks its topics stale once, keeps ticking, and recovers with a snapshot", async () => {
  const t = setup(["a", "b"], { intervalMs: 50 });
  try {
    const onA = t.subscribe("a/real/1");
    const onB = t.subscribe("b/real/1");
    const a = t.sources.get("a")!;
    a.failure = new SourceError("a", "unavailable", "database 'a' is unavailable: ECONNREFUSED");
    t.poller.start();
    await waitFor(
      "three failed polls",
      () => t.metrics.value("gatecast_poll_errors_total", { db: "a" }) >= 3,
    );
    assert.deepEqual(onA.frames(), [{
      type: "stale",
      topic: "a/real/1",
      epoch: t.registry.topic("a/real/1")!.feed.epoch,
      code: "SOURCE_UNAVAILABLE",
      message: "database 'a' is unavailable: ECONNREFUSED",
    }]);
    assert.deepEqual(onB.frames().map((f) => f.type), ["snapshot"]);
    assert.deepEqual(t.poller.health.get("a"), {
      lastGoodPoll: 0,
      error: "database 'a' is unavailable: ECONNREFUSED",
    });
    a.failure = undefined;
    await waitFor("the recovery snapshot", () => onA.sent.length === 2);
    assert.deepEqual(onA.frames()[1].type, "snapshot");
    assert.deepEqual(onA.frames()[1].seq, 1);
    assert.equal(t.poller.health.get("a")!.error, undefined);
    const failing = t.logs.filter((l) => l.msg === "database failing");
    assert.deepEqual(failing.map((l) => [l.level, l.db, l.error]), [[
      "warn",
      "a",
      "database 'a' is unavailable: ECONNREFUSED",
    ]]);
    assert.deepEqual(t.logs.filter((l) => l.msg === "database recovered").map((l) => l.db), ["a"]);
  } finally {
    await t.cleanup();
  }
});

Deno.test("pollNow while the group's poll runs polls once more right after it, not once per call", async () => {
  const t = setup(["a"], { wire: true });
  try {
    const a = t.sources.get("a")!;
    const release = a.hold();
    const first = t.subscribe("a/real/1"); // the registry asks for an immediate poll
    await waitFor("the points query, held", () => selects(a) === 1, 1000);
    const second = t.subscribe("a/real/2"); // arrives while the first poll runs
    t.poller.pollNow(t.registry.group("a/real")!);
    t.poller.pollNow(t.registry.group("a/real")!);
    assert.equal(selects(a), 1);
    release();
    await waitFor("the second subscriber's snapshot", () => second.sent.length === 1, 1000);
    await t.poller.stop();
    assert.equal(selects(a), 4);
    assert.deepEqual(first.frames().map((f) => [f.type, f.seq]), [["snapshot", 1]]);
    assert.deepEqual(second.frames().map((f) => [f.type, f.seq, f.points.length]), [["snapshot", 1, 15]]);
  } finally {
    await t.cleanup();
  }
});

Deno.test("a new topic is polled at once, without waiting for the tick", async () => {
  const t = setup(["a"], { wire: true });
  try {
    const peer = t.subscribe("a/real/3");
    await waitFor("the snapshot", () => peer.sent.length === 1, 1000);
    assert.equal(t.metrics.value("gatecast_ticks_total"), 0);
  } finally {
    await t.cleanup();
  }
});

Deno.test("a group whose topics all left during its poll is not polled again", async () => {
  const t = setup(["a"], { wire: true });
  try {
    const a = t.sources.get("a")!;
    const release = a.hold();
    const peer = new FakePeer();
    const subscription = t.registry.subscribe(parseTopic("a/real/1"), peer, pointsV1);
    t.poller.pollNow(t.registry.group("a/real")!); // marks "again"
    t.registry.unsubscribe(subscription);
    release();
    await t.poller.stop();
    assert.equal(selects(a), 2);
    t.poller.tick();
    await t.poller.stop();
    assert.deepEqual(a.sql.slice(2), ["SELECT 1"]); // only the idle probe
  } finally {
    await t.cleanup();
  }
});

Deno.test("stop waits for polls under way and ends the ticking", async () => {
  const t = setup(["a"], { intervalMs: 50 });
  // A poller of its own with the same interval: its ticks tell when the stopped one would have ticked.
  const witness = setup([], { intervalMs: 50 });
  try {
    const peer = t.subscribe("a/real/1");
    const release = t.sources.get("a")!.hold();
    t.poller.start();
    await waitFor("a poll under way", () => selects(t.sources.get("a")!) === 1, 1000);
    // What the peer had been sent when stop() resolved: a stop that did not wait for the poll
    // would resolve first, since the held poll still has its values query to run.
    const stopping = t.poller.stop().then(() => peer.frames().map((f) => f.type));
    release();
    assert.deepEqual(await stopping, ["snapshot"]);
    const ticks = t.metrics.value("gatecast_ticks_total");
    witness.poller.start();
    await waitFor("three intervals", () => witness.metrics.value("gatecast_ticks_total") >= 3, 2000);
    assert.equal(t.metrics.value("gatecast_ticks_total"), ticks);
  } finally {
    await witness.cleanup();
    await t.cleanup();
  }
});

Deno.test("a new poll interval keeps a failing database failing: its next attempt still waits", async () => {
  const t = setup(["a"]); // a 60 s interval, ticked by hand
  try {
    const a = t.sources.get("a")!;
    t.subscribe("a/real/1");
    a.failure = new SourceError("a", "unavailable", "database 'a' is unavailable: ECONNREFUSED");
    t.poller.tick(); // fails: the next attempt waits an interval
    await t.poller.stop();
    assert.equal(selects(a), 1);
    t.poller.retime(40_000, 80_000); // a reload: the next attempt 40 s after the failure
    t.poller.tick();
    await t.poller.stop();
    assert.equal(selects(a), 1);
    assert.equal(t.metrics.value("gatecast_polls_deferred_total", { db: "a" }), 1);
    assert.equal(t.poller.health.get("a")!.error, "database 'a' is unavailable: ECONNREFUSED");
  } finally {
    await t.cleanup();
  }
});

// --- database faults against a throw-away mariadbd (issue 5) -----------------------------------
// After every recovery each subscriber holds the latest values within two ticks (the retry delay
// is capped at two poll intervals by default).

const POLL_MS = 200;

let throwaway: Promise<ThrowawayMariadb> | undefined;
/** One throw-away server for this file, started on first use. */
function server(): Promise<ThrowawayMariadb> {
  throwaway ??= startThrowawayMariadb();
  return throwaway;
}

// The test runner's cleanup: runs after the file's last test, under `--filter` too.
Deno.test.afterAll(async () => {
  if (!throwaway) return;
  const mariadb = await throwaway;
  await mariadb.stop();
  await Deno.remove(mariadb.dir, { recursive: true });
});

async function plantOn(mariadb: ThrowawayMariadb): Promise<TestDatabase> {
  const db = await createTestDatabase(mariadb.info);
  await db.addPoints([{ unit: 1, code: "ua", address: "GW1" }, { unit: 1, code: "ia", address: "GW1" }]);
  await db.setData("GW1", { ua: 230, ia: 10 });
  return db;
}

/** Whether a new connection with these settings is accepted (and closes it again). */
async function canConnect(options: mysql.ConnectionOptions): Promise<boolean> {
  try {
    await (await mysql.createConnection(options)).end();
    return true;
  } catch {
    return false;
  }
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
      app.metrics.value("gatecast_poll_errors_total", { db: "plant1" }) < ticks(app),
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
    const errorsBefore = app.metrics.value("gatecast_poll_errors_total", { db: "plant1" });
    await locker.query("LOCK TABLES device_data_real WRITE, archive_device WRITE");
    await locker.query("UPDATE device_data_real SET ua = 240, ia = 20");
    let mostAtOnce = 0;
    let oldest = 0;
    // Watch the server's running statements until two polls in a row have been cut off.
    await waitFor("two polls cut off by the server", async () => {
      const [rows] = await watcher.query(
        "SELECT TIME_MS FROM information_schema.PROCESSLIST WHERE DB = ? AND COMMAND = 'Query' AND INFO LIKE 'SET STATEMENT max_statement_time%'",
        [db.settings.database],
      );
      const running = rows as { TIME_MS: number }[];
      mostAtOnce = Math.max(mostAtOnce, running.length);
      for (const row of running) oldest = Math.max(oldest, Number(row.TIME_MS));
      return app.metrics.value("gatecast_poll_errors_total", { db: "plant1" }) >= errorsBefore + 2;
    }, 10_000);
    const stale = await client.expect("stale", 1000);
    assert.match(stale.message, /exceeded 600 ms/);
    // One poll's queries at a time: a tick that finds the poll running is skipped.
    const budget = HANDLES.get("real")!.queriesPerFetch(1);
    assert.ok(mostAtOnce >= 1 && mostAtOnce <= budget, `${mostAtOnce} queries at once`);
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
    await waitFor(
      "a tick skipped while a poll hangs",
      () => app.metrics.value("gatecast_ticks_skipped_total", { db: "plant1", handle: "real" }) > 0,
    );
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
      await waitFor(
        "a free connection",
        () => canConnect({ ...mariadb.info, user: "gc_pool", password: "pw" }),
      );
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

// --- a cluster's groups: polled here, or elsewhere (GroupPolling) ------------------------------
// Placed with the tests that use them, so that this section only appends to the file.

import { type AdoptedState, publishAdopted } from "../../lib/hub/fanout.ts";
import type { GroupPolling } from "../../lib/hub/poller.ts";
import type { Topic, TopicGroup } from "../../lib/hub/registry.ts";

/** A cluster's answers for the poller: the groups it polls, and what it was asked and told. */
class RecordingPolling implements GroupPolling {
  /** The groups this node polls; any other is polled elsewhere. */
  readonly here = new Set<string>();
  /** What {@link wakeElsewhere} answers (false: no other node can be asked, Redis is away). */
  canWake = true;
  /** Group keys {@link wakeElsewhere} was asked for. */
  readonly woken: string[] = [];
  /** Topic keys shared after each poll, in order. */
  readonly shared: string[] = [];
  /** How many topics each call shared: one call per poll. */
  readonly polls: number[] = [];

  pollsHere(group: { readonly key: string }): boolean {
    return this.here.has(group.key);
  }

  wakeElsewhere(groupKey: string): boolean {
    this.woken.push(groupKey);
    return this.canWake;
  }

  published(group: TopicGroup, topics: readonly Topic[]): void {
    for (const topic of topics) {
      assert.equal(group.topics.get(topic.name.unit), topic, "a topic of the group polled");
      this.shared.push(topic.name.key);
    }
    this.polls.push(topics.length);
  }
}

/** {@link setup}'s poller and registry for one database `a`, with a cluster's polling. */
function clusterSetup(options: { intervalMs?: number } = {}) {
  const source = new ControlledSource("a");
  const metrics = new Metrics(METRIC_FAMILIES);
  const logger = new Logger("error");
  const registry = new Registry();
  const polling = new RecordingPolling();
  const intervalMs = options.intervalMs ?? 60_000;
  const poller = new Poller(
    registry,
    new Map([["a", new MeteredSource(source, metrics)]]),
    HANDLES,
    intervalMs,
    metrics,
    logger,
    2 * intervalMs,
    polling,
  );
  const subscribe = (topic: string) => {
    const peer = new FakePeer();
    registry.subscribe(parseTopic(topic), peer, pointsV1);
    return peer;
  };
  const cleanup = async () => {
    await poller.stop();
    await source.close();
  };
  return { source, metrics, registry, polling, poller, subscribe, cleanup };
}

/** The state of a topic as the node that polls it shares it: a poll of `a/real/<unit>` on a node of its own. */
async function polledElsewhere(unit: number): Promise<AdoptedState> {
  const other = setup(["a"]);
  try {
    other.subscribe(`a/real/${unit}`);
    other.poller.tick();
    await other.poller.stop();
    const { rows, seq, epoch, ts } = other.registry.topic(`a/real/${unit}`)!.feed;
    return { rows: rows!, seq, epoch, ts };
  } finally {
    await other.cleanup();
  }
}

Deno.test("a group polled elsewhere runs no query at the tick; its database is probed until a report comes", async () => {
  const t = clusterSetup();
  try {
    const peer = t.subscribe("a/real/1");
    t.poller.tick();
    await t.poller.stop();
    assert.deepEqual(t.source.sql, ["SELECT 1"]);
    assert.equal(t.metrics.value("gatecast_db_queries_total", { db: "a" }), 1);
    assert.deepEqual(peer.sent, []);
    assert.deepEqual(t.polling.shared, []);
    assert.deepEqual(t.polling.woken, []);
  } finally {
    await t.cleanup();
  }
});

Deno.test("a database whose groups are polled elsewhere takes the polling node's reports and is not probed", async () => {
  const t = clusterSetup({ intervalMs: 50 });
  try {
    t.subscribe("a/real/1");
    t.poller.adoptHealth("a", { lastGoodPoll: 1_000, error: undefined });
    assert.deepEqual(t.poller.health.get("a"), { lastGoodPoll: 1_000, error: undefined });
    t.poller.tick();
    await t.poller.stop();
    assert.deepEqual(t.source.sql, [], "no probe while the polling node reports");
    // The polling node finds the database failing: so does this node's /healthz, still without a query.
    t.poller.adoptHealth("a", { lastGoodPoll: 1_000, error: "database 'a' is unavailable: ECONNREFUSED" });
    assert.deepEqual(t.poller.health.get("a"), {
      lastGoodPoll: 1_000,
      error: "database 'a' is unavailable: ECONNREFUSED",
    });
    // A report without an error clears the error, even when the database answered nothing newer.
    t.poller.adoptHealth("a", { lastGoodPoll: 1_000, error: undefined });
    assert.deepEqual(t.poller.health.get("a"), { lastGoodPoll: 1_000, error: undefined });
    // A failing report with a newer last good poll moves it on as well.
    t.poller.adoptHealth("a", { lastGoodPoll: 2_000, error: "database 'a' is unavailable: ECONNREFUSED" });
    assert.deepEqual(t.poller.health.get("a"), {
      lastGoodPoll: 2_000,
      error: "database 'a' is unavailable: ECONNREFUSED",
    });
    const recovered = Date.now();
    t.poller.adoptHealth("a", { lastGoodPoll: recovered, error: undefined });
    assert.deepEqual(t.poller.health.get("a"), { lastGoodPoll: recovered, error: undefined });
    // An older report does not move the last good poll back.
    t.poller.adoptHealth("a", { lastGoodPoll: 5, error: undefined });
    assert.equal(t.poller.health.get("a")!.lastGoodPoll, recovered);
    assert.deepEqual(t.source.sql, []);
    // Reports stop coming (the leaseholder is gone): after three intervals the database is probed again.
    await waitFor("a probe once the reports stopped", async () => {
      t.poller.tick();
      await t.poller.stop();
      return t.source.sql.length > 0;
    }, 2000);
    assert.deepEqual(t.source.sql, ["SELECT 1"]);
  } finally {
    await t.cleanup();
  }
});

Deno.test("a database polled here keeps the health of its own polls: another node's report is ignored", async () => {
  const t = clusterSetup();
  try {
    t.polling.here.add("a/real");
    t.subscribe("a/real/1");
    t.poller.tick();
    await t.poller.stop();
    const own = t.poller.health.get("a")!.lastGoodPoll;
    assert.ok(own > 0);
    t.poller.adoptHealth("a", { lastGoodPoll: own + 60_000, error: "from elsewhere" });
    assert.deepEqual(t.poller.health.get("a"), { lastGoodPoll: own, error: undefined });
  } finally {
    await t.cleanup();
  }
});

Deno.test("the tick serves the owed subscribers of a group polled elsewhere from its adopted state", async () => {
  const t = clusterSetup();
  try {
    const first = t.subscribe("a/real/1");
    const slow = t.subscribe("a/real/1");
    slow.admits = "skip";
    const state = await polledElsewhere(1);
    const topic = t.registry.topic("a/real/1")!;
    assert.equal(publishAdopted(topic, state), true);
    assert.deepEqual(first.frames().map((f) => [f.type, f.seq, f.epoch]), [["snapshot", 1, state.epoch]]);
    assert.deepEqual(slow.sent, []);
    slow.admits = "send"; // drained
    const late = t.subscribe("a/real/1"); // owed its snapshot
    t.poller.tick();
    await t.poller.stop();
    const snapshot = first.frames()[0];
    assert.deepEqual(slow.frames(), [snapshot]);
    assert.deepEqual(late.frames(), [snapshot]);
    assert.equal(first.sent.length, 1);
    assert.equal(snapshot.points.length, 10);
    assert.equal(selects(t.source), 0);
    assert.deepEqual(topic.feed.owed, new Set());
    // Served, they hear nothing more until the next state.
    t.poller.tick();
    await t.poller.stop();
    assert.deepEqual([first.sent.length, slow.sent.length, late.sent.length], [1, 1, 1]);
    assert.deepEqual(t.polling.shared, []);
  } finally {
    await t.cleanup();
  }
});

Deno.test("pollNow of a group polled elsewhere is forwarded to its node with the group's key, and runs no query", async () => {
  const t = clusterSetup();
  try {
    t.subscribe("a/real/1");
    const group = t.registry.group("a/real")!;
    assert.equal(t.poller.pollNow(group), "forwarded");
    assert.deepEqual(t.polling.woken, ["a/real"]);
    assert.equal(t.poller.forward("a/real"), true);
    assert.deepEqual(t.polling.woken, ["a/real", "a/real"]);
    await t.poller.stop();
    assert.deepEqual(t.source.sql, []);
  } finally {
    await t.cleanup();
  }
});

Deno.test("pollNow of a group polled elsewhere whose node cannot be asked polls it here", async () => {
  const t = clusterSetup();
  try {
    const peer = t.subscribe("a/real/1");
    t.polling.canWake = false; // Redis away
    assert.equal(t.poller.pollNow(t.registry.group("a/real")!), "started");
    assert.equal(t.poller.forward("a/real"), false);
    await t.poller.stop();
    assert.deepEqual(t.polling.woken, ["a/real", "a/real"]);
    assert.equal(selects(t.source), 2);
    assert.deepEqual(peer.frames().map((f) => [f.type, f.seq]), [["snapshot", 1]]);
  } finally {
    await t.cleanup();
  }
});

Deno.test("pollNow of a group polled here never asks another node", async () => {
  const t = clusterSetup();
  try {
    t.polling.here.add("a/real");
    t.subscribe("a/real/1");
    assert.equal(t.poller.pollNow(t.registry.group("a/real")!), "started");
    await t.poller.stop();
    assert.deepEqual(t.polling.woken, []);
  } finally {
    await t.cleanup();
  }
});

Deno.test("a group polled here is shared once per poll that changed a topic, and not after a poll that changed nothing", async () => {
  const t = clusterSetup();
  try {
    t.polling.here.add("a/real");
    t.subscribe("a/real/1");
    t.subscribe("a/real/3");
    t.poller.tick();
    await t.poller.stop();
    assert.deepEqual([...t.polling.shared].sort(), ["a/real/1", "a/real/3"]);
    assert.deepEqual(t.polling.polls, [2], "one call for the whole poll");
    t.poller.tick();
    await t.poller.stop();
    assert.equal(t.polling.shared.length, 2, "an unchanged poll shares nothing");
    assert.deepEqual(t.polling.polls, [2]);
    t.source.exec("UPDATE device_data_real SET ia = 12.5 WHERE equip_address = 'GW-301'");
    t.poller.tick();
    await t.poller.stop();
    assert.deepEqual(t.polling.shared.slice(2), ["a/real/3"]);
    assert.equal(t.registry.topic("a/real/3")!.feed.seq, 2);
    assert.equal(t.registry.topic("a/real/1")!.feed.seq, 1);
  } finally {
    await t.cleanup();
  }
});

Deno.test("a group polled here is shared once when it goes stale, not again while it stays so, and once on recovery", async () => {
  const t = clusterSetup({ intervalMs: 50 });
  try {
    t.polling.here.add("a/real");
    t.subscribe("a/real/1");
    t.poller.tick();
    await t.poller.stop();
    assert.deepEqual(t.polling.shared, ["a/real/1"]);
    t.source.failure = new SourceError("a", "unavailable", "database 'a' is unavailable: ECONNREFUSED");
    t.poller.tick();
    await t.poller.stop();
    assert.deepEqual(t.polling.shared, ["a/real/1", "a/real/1"]);
    assert.equal(t.registry.topic("a/real/1")!.feed.stale?.code, "SOURCE_UNAVAILABLE");
    // The retry waits for its backoff: tick until a second poll has failed too.
    await waitFor("a second failed poll", async () => {
      t.poller.tick();
      await t.poller.stop();
      return t.metrics.value("gatecast_poll_errors_total", { db: "a" }) === 2;
    }, 2000);
    assert.deepEqual(t.polling.shared, ["a/real/1", "a/real/1"]);
    t.source.failure = undefined;
    await waitFor("the recovery", async () => {
      t.poller.tick();
      await t.poller.stop();
      return t.registry.topic("a/real/1")!.feed.stale === undefined;
    }, 2000);
    assert.deepEqual(t.polling.shared, ["a/real/1", "a/real/1", "a/real/1"]);
    assert.equal(t.registry.topic("a/real/1")!.feed.seq, 2);
  } finally {
    await t.cleanup();
  }
});
