/**
 * End to end over real sockets against a real MariaDB: subscribe, snapshot, updates, legacy
 * clients, isolation of a dead database, and the query budget per tick.
 */

import assert from "node:assert/strict";
import type { Point } from "./support/points.ts";
import { createTestDatabase, freePort, type TestDatabase } from "./support/mysql.ts";
import { startTestApp, type TestApp, waitFor, withTestApp } from "./support/app.ts";
import { SEED_POINT_KEYS } from "./support/points.ts";
import { EXPECTED_12, EXPECTED_13, seedTestDatabase } from "./support/seed_fixture.ts";
import { TestClient } from "./support/ws_client.ts";

const plant = seedTestDatabase;

function withPlant(name: string, fn: (db: TestDatabase, app: TestApp) => Promise<void>, settings = {}) {
  Deno.test(name, async () => {
    const db = await plant();
    await withTestApp(db, { plant1: db.settings }, (app) => fn(db, app), settings);
  });
}

/** Points as v1 frames carry them: no value is `null`. */
const v1Points = (points: readonly Point[]) => points.map((p) => ({ ...p, value: p.value ?? null }));

/** Points as the seed's legacy array carries them: no value is `""`, a NULL column `null`. */
const legacyPoints = (points: readonly Point[]) =>
  points.map((p) => ({ ...p, value: p.value === undefined ? "" : p.value }));

const EXPECTED_UNIT_12 = v1Points(EXPECTED_12);

/** Resolves once the server has ticked `n` more times than when called. */
async function ticksPass(app: TestApp, n: number): Promise<void> {
  const from = app.metrics.value("gatecast_ticks_total");
  const timeoutMs = 5000 + 5 * n * app.config.pollIntervalMs;
  await waitFor(`${n} ticks`, () => app.metrics.value("gatecast_ticks_total") >= from + n, timeoutMs);
}

withPlant(
  "a subscriber gets 'subscribed' then a snapshot of every active point with its value",
  async (_db, app) => {
    const client = await TestClient.open(app.wsUrl, "gatecast.v1");
    assert.deepEqual(client.socket.protocol, "gatecast.v1");
    client.send({ type: "subscribe", id: 1, topic: "plant1/real/12" });
    assert.deepEqual(await client.next(), { type: "subscribed", id: 1, topic: "plant1/real/12" });
    const snapshot = await client.expect("snapshot");
    assert.deepEqual(snapshot.topic, "plant1/real/12");
    assert.deepEqual(snapshot.seq, 1);
    assert.ok(Math.abs(snapshot.ts - Date.now()) < 5000);
    assert.deepEqual(snapshot.points, EXPECTED_UNIT_12);
    await client.close();
  },
);

withPlant(
  "an UPDATE of device_data_real yields an update with exactly the changed points",
  async (db, app) => {
    const client = await TestClient.open(app.wsUrl, "gatecast.v1");
    client.send({ type: "subscribe", id: 1, topic: "plant1/real/12" });
    await client.expect("subscribed");
    await client.expect("snapshot");
    await db.query("UPDATE device_data_real SET ua = 230.25, ia = 11 WHERE equip_address = 'GW1'");
    const update = await client.expect("update", 2000);
    assert.deepEqual(update.seq, 2);
    assert.deepEqual(update.topic, "plant1/real/12");
    assert.deepEqual(update.changes, [
      { address: "GW1", code: "ua", value: 230.25 },
      { address: "GW1", code: "ia", value: 11 },
    ]);
    await db.query("UPDATE device_data_real SET ua = NULL WHERE equip_address = 'GW2'");
    assert.deepEqual((await client.expect("update", 2000)).changes, [{
      address: "GW2",
      code: "ua",
      value: null,
    }]);
    await client.close();
  },
);

withPlant("no frame is sent when nothing changed", async (_db, app) => {
  const client = await TestClient.open(app.wsUrl, "gatecast.v1");
  client.send({ type: "subscribe", id: 1, topic: "plant1/real/12" });
  await client.expect("subscribed");
  await client.expect("snapshot");
  await ticksPass(app, 6); // five polls done, a sixth under way
  assert.deepEqual(client.pending, 0);
  await client.close();
});

withPlant("a second subscriber gets the cached snapshot without a new query", async (_db, app) => {
  const first = await TestClient.open(app.wsUrl, "gatecast.v1");
  first.send({ type: "subscribe", id: 1, topic: "plant1/real/12" });
  await first.expect("subscribed");
  const firstSnapshot = await first.expect("snapshot");
  await app.poller.stop(); // no more ticks: any query now would come from the subscribe
  const queries = app.metrics.value("gatecast_db_queries_total", { db: "plant1" });
  const second = await TestClient.open(app.wsUrl, "gatecast.v1");
  second.send({ type: "subscribe", id: 7, topic: "plant1/real/12" });
  await second.expect("subscribed");
  const secondSnapshot = await second.expect("snapshot", 1000);
  assert.deepEqual(secondSnapshot.points, firstSnapshot.points);
  assert.deepEqual(secondSnapshot.seq, 1);
  assert.deepEqual(app.metrics.value("gatecast_db_queries_total", { db: "plant1" }), queries);
  await first.close();
  await second.close();
});

withPlant("the first subscriber of a new topic is served at once, not at the next tick", async (_db, app) => {
  const client = await TestClient.open(app.wsUrl, "gatecast.v1");
  const ticks = app.metrics.value("gatecast_ticks_total"); // the probe at start; the next is in a minute
  client.send({ type: "subscribe", id: 1, topic: "plant1/real/13" });
  await client.expect("subscribed");
  const snapshot = await client.expect("snapshot", 30_000);
  assert.deepEqual(app.metrics.value("gatecast_ticks_total"), ticks);
  assert.deepEqual(snapshot.points, v1Points(EXPECTED_13));
  await client.close();
}, { pollIntervalMs: 60_000 });

withPlant("unsubscribe stops delivery and forgets the topic", async (db, app) => {
  const client = await TestClient.open(app.wsUrl, "gatecast.v1");
  client.send({ type: "subscribe", id: 1, topic: "plant1/real/12" });
  await client.expect("subscribed");
  await client.expect("snapshot");
  client.send({ type: "unsubscribe", id: 2, topic: "plant1/real/12" });
  assert.deepEqual(await client.next(), { type: "unsubscribed", id: 2, topic: "plant1/real/12" });
  assert.deepEqual(app.registry.topicCount, 0);
  await db.query("UPDATE device_data_real SET ua = 1 WHERE equip_address = 'GW1'");
  await ticksPass(app, 4);
  assert.deepEqual(client.pending, 0);
  client.send({ type: "unsubscribe", id: 3, topic: "plant1/real/12" });
  assert.deepEqual((await client.next()).code, "NOT_SUBSCRIBED");
  await client.close();
});

withPlant("closing the socket removes its subscriptions at once", async (_db, app) => {
  const client = await TestClient.open(app.wsUrl, "gatecast.v1");
  client.send({ type: "subscribe", id: 1, topic: "plant1/real/12" });
  client.send({ type: "subscribe", id: 2, topic: "plant1/real/13" });
  await client.expect("subscribed");
  await waitFor("two topics", () => app.registry.topicCount === 2);
  await client.close();
  await waitFor(
    "no topics",
    () => app.registry.topicCount === 0 && app.registry.subscriptionCount === 0,
    1000,
  );
});

withPlant(
  "subscribing twice is one subscription and answers a fresh snapshot at the topic's current seq",
  async (db, app) => {
    const client = await TestClient.open(app.wsUrl, "gatecast.v1");
    client.send({ type: "subscribe", id: 1, topic: "plant1/real/12" });
    await client.expect("subscribed");
    const first = await client.expect("snapshot");
    assert.deepEqual(first.seq, 1);
    assert.ok(typeof first.epoch === "string" && first.epoch !== "", `epoch of ${JSON.stringify(first)}`);
    await db.query("UPDATE device_data_real SET ua = 1 WHERE equip_address = 'GW1'");
    const update = await client.expect("update");
    assert.deepEqual([update.seq, update.epoch], [2, first.epoch]);
    client.send({ type: "subscribe", id: 2, topic: "plant1/real/12" });
    assert.deepEqual(await client.next(), { type: "subscribed", id: 2, topic: "plant1/real/12" });
    // The topic's sequence goes on: the fresh snapshot is at its current seq, in the same epoch.
    const snapshot = await client.expect("snapshot");
    assert.deepEqual([snapshot.seq, snapshot.epoch], [2, first.epoch]);
    assert.deepEqual(snapshot.ts, update.ts);
    assert.deepEqual(snapshot.points[0].value, 1);
    assert.deepEqual(app.registry.subscriptionCount, 1);
    // The next change follows that snapshot: seq 3, still the same epoch.
    await db.query("UPDATE device_data_real SET ua = 2 WHERE equip_address = 'GW1'");
    const next = await client.expect("update");
    assert.deepEqual([next.seq, next.epoch], [3, first.epoch]);
    assert.deepEqual(next.changes, [{ address: "GW1", code: "ua", value: 2 }]);
    await client.close();
  },
);

withPlant("a change to archive_device sends a fresh snapshot instead of an update", async (db, app) => {
  const client = await TestClient.open(app.wsUrl, "gatecast.v1");
  client.send({ type: "subscribe", id: 1, topic: "plant1/real/12" });
  await client.expect("subscribed");
  await client.expect("snapshot");
  await db.query("UPDATE archive_device SET `rename` = 'Main voltage' WHERE unit_id = 12 AND show_id = 1");
  const snapshot = await client.expect("snapshot", 2000);
  assert.deepEqual(snapshot.seq, 2);
  assert.deepEqual(snapshot.points[0].rename, "Main voltage");
  await client.close();
});

withPlant("a legacy client gets the seed's array at once and every interval", async (_db, app) => {
  const client = await TestClient.open(`ws://127.0.0.1:${app.port}/`);
  client.send(
    `{'unit_id': 12, 'handle': 'real', 'db_code': 'plant1', 'config': "{'HOST': 'evil', 'PORT': '3306', 'NAME': 'x', 'USER': 'root', 'PASSWORD': 'pw'}"}`,
  );
  const first = JSON.parse(await client.nextText());
  const expected = legacyPoints(EXPECTED_12); // no such column, no data row: the seed sent ""
  assert.deepEqual(first, expected);
  assert.deepEqual(Object.keys(first[0]), SEED_POINT_KEYS);
  assert.deepEqual(JSON.parse(await client.nextText(1000)), expected); // again next interval, unchanged
  const ignored = app.logs.filter((l) => String(l.msg).includes("ignored"));
  assert.deepEqual(ignored.length, 1);
  assert.ok(!JSON.stringify(app.logs).includes("pw"), "the password must never be logged");
  await client.close();
});

withPlant(
  "a legacy JSON subscription with a NULL column sends null, unknown database closes with 1008",
  async (db, app) => {
    await db.setData("GW2", { ua: null });
    const client = await TestClient.open(app.wsUrl);
    client.send(JSON.stringify({ unit_id: "12", handle: "real", db_code: "plant1", config: "{}" }));
    const array = JSON.parse(await client.nextText());
    assert.deepEqual(array[2].value, null);
    await client.close();
    const unknown = await TestClient.open(app.wsUrl);
    unknown.send(JSON.stringify({ unit_id: 12, handle: "real", db_code: "plant9" }));
    const closed = await unknown.closed;
    assert.deepEqual(closed.code, 1008);
    assert.deepEqual(closed.reason, "no database 'plant9' is configured");
  },
);

withPlant("bad frames get error codes and the connection stays usable", async (_db, app) => {
  const client = await TestClient.open(app.wsUrl, "gatecast.v1");
  const cases: [unknown, string][] = [
    ["{not json", "BAD_JSON"],
    ["[1,2]", "BAD_FRAME"],
    [{ type: 5 }, "BAD_FRAME"],
    [{ type: "dance", id: 4 }, "UNKNOWN_TYPE"],
    [{ type: "subscribe", id: 5, topic: "plant1/real" }, "BAD_TOPIC"],
    [{ type: "subscribe", id: 6, topic: "plant1/real/0" }, "BAD_TOPIC"],
    [{ type: "subscribe", id: 7, topic: "plant1/real/2147483648" }, "BAD_TOPIC"],
    [{ type: "subscribe", id: 8, topic: "plant1/real/1 OR 1=1" }, "BAD_TOPIC"],
    [{ type: "subscribe", id: 9, topic: "plant9/real/12" }, "UNKNOWN_DB"],
    [{ type: "subscribe", id: 10, topic: "plant1/history/12" }, "UNKNOWN_HANDLE"],
    [{ type: "subscribe", id: { x: 1 }, topic: "plant1/real/12" }, "BAD_FRAME"],
  ];
  for (const [frame, code] of cases) {
    client.send(frame);
    const reply = await client.expect("error");
    assert.deepEqual(reply.code, code, `for ${JSON.stringify(frame)}: ${reply.message}`);
    assert.ok(reply.message.length > 10);
  }
  client.socket.send(new Uint8Array([1, 2, 3]));
  const binary = await client.expect("error");
  assert.deepEqual(binary.code, "BAD_FRAME");
  assert.deepEqual(binary.message, "binary frames are not accepted; send UTF-8 JSON text frames");
  client.send({ type: "ping", id: 11 });
  assert.deepEqual(await client.next(), { type: "pong", id: 11 });
  client.send({ type: "subscribe", id: 12, topic: "plant1/real/12" });
  await client.expect("subscribed");
  await client.expect("snapshot");
  await client.close();
});

withPlant("a frame over the size limit closes the connection with 1009", async (_db, app) => {
  const client = await TestClient.open(app.wsUrl, "gatecast.v1");
  client.send(JSON.stringify({ type: "ping", id: 1, pad: "x".repeat(2000) }));
  const closed = await client.closed;
  assert.deepEqual(closed.code, 1009);
}, { maxFrameBytes: 1024 });

Deno.test("a dead database leaves other databases' topics flowing; its topics get stale", async () => {
  const db = await plant();
  const deadPort = freePort(); // nothing listens there
  const app = await startTestApp({
    plant1: db.settings,
    dead: { host: "127.0.0.1", port: deadPort, user: "root", database: "test" },
  });
  try {
    const client = await TestClient.open(app.wsUrl, "gatecast.v1");
    client.send({ type: "subscribe", id: 1, topic: "dead/real/12" });
    await client.expect("subscribed");
    const stale = await client.expect("stale");
    assert.deepEqual(stale.topic, "dead/real/12");
    assert.deepEqual(stale.code, "SOURCE_UNAVAILABLE");
    assert.ok(stale.message.includes("dead"), stale.message);
    client.send({ type: "subscribe", id: 2, topic: "plant1/real/12" });
    await client.expect("subscribed");
    await client.expect("snapshot");
    const ticks = app.metrics.value("gatecast_ticks_total");
    for (let i = 0; i < 3; i++) {
      await db.query("UPDATE device_data_real SET ia = ? WHERE equip_address = 'GW1'", [100 + i]);
      const update = await client.expect("update", 1000);
      assert.deepEqual(update.topic, "plant1/real/12");
      assert.deepEqual(update.changes, [{ address: "GW1", code: "ia", value: 100 + i }]);
    }
    assert.ok(app.metrics.value("gatecast_ticks_total") > ticks);
    const health = await fetch(`${app.httpUrl}/healthz`);
    assert.deepEqual(health.status, 503);
    const body = await health.json();
    assert.deepEqual(body.databases.plant1.healthy, true);
    assert.deepEqual(body.databases.dead.healthy, false);
    await client.close();
  } finally {
    await app.stop();
    await db.drop();
  }
});

Deno.test("50 subscribed units cost at most 2 SELECTs per tick, counted by the server", async () => {
  const db = await createTestDatabase();
  const points = [];
  for (let unit = 1; unit <= 50; unit++) {
    for (let i = 0; i < 4; i++) {
      points.push({ unit, code: ["ua", "ub", "ia", "p"][i], address: `GW${unit}`, showId: i });
    }
  }
  await db.addPoints(points);
  for (let unit = 1; unit <= 50; unit++) {
    await db.setData(`GW${unit}`, { ua: unit, ub: unit, ia: unit, p: unit });
  }
  const reader = await db.dedicatedUser(); // the server counts this login's SELECTs alone
  const app = await startTestApp({ plant1: reader.settings }, { pollIntervalMs: 200 });
  try {
    const clients = await Promise.all(
      Array.from({ length: 5 }, () => TestClient.open(app.wsUrl, "gatecast.v1")),
    );
    for (let unit = 1; unit <= 50; unit++) {
      clients[unit % 5].send({ type: "subscribe", id: unit, topic: `plant1/real/${unit}` });
    }
    // Every subscriber has its snapshot: the immediate polls of the burst are done (one may run on).
    for (const client of clients) {
      let snapshots = 0;
      while (snapshots < 10) if ((await client.next()).type === "snapshot") snapshots++;
    }
    await ticksPass(app, 1);
    const ticksBefore = app.metrics.value("gatecast_ticks_total");
    const selectsBefore = await reader.selects();
    await ticksPass(app, 10);
    const selects = (await reader.selects()) - selectsBefore;
    const ticks = app.metrics.value("gatecast_ticks_total") - ticksBefore;
    console.log(
      `measured: ${selects} SELECTs over ${ticks} ticks for 50 units (${
        (selects / ticks).toFixed(2)
      } per tick)`,
    );
    assert.ok(selects <= 2 * (ticks + 1), `${selects} SELECTs over ${ticks} ticks`);
    assert.ok(
      selects >= 2 * (ticks - 1),
      `${selects} SELECTs over ${ticks} ticks: the counter did not see the polls`,
    );
    await Promise.all(clients.map((c) => c.close()));
  } finally {
    await app.stop();
    await db.drop();
  }
});

Deno.test("a stalled database is cut off by the query timeout; other databases keep their cadence", async () => {
  const healthy = await plant();
  const slow = await plant();
  // Every read of device_data_real now takes a second per row: the poll stalls.
  await slow.query("RENAME TABLE device_data_real TO device_data_real_t");
  await slow.query("CREATE VIEW device_data_real AS SELECT t.*, SLEEP(1) AS stall FROM device_data_real_t t");
  const app = await startTestApp({ plant1: healthy.settings, slow: slow.settings }, { queryTimeoutMs: 300 });
  try {
    const client = await TestClient.open(app.wsUrl, "gatecast.v1");
    client.send({ type: "subscribe", id: 1, topic: "slow/real/12" });
    await client.expect("subscribed");
    const stale = await client.expect("stale", 3000);
    assert.match(stale.message, /exceeded 300 ms/);
    client.send({ type: "subscribe", id: 2, topic: "plant1/real/12" });
    await client.expect("subscribed");
    await client.expect("snapshot");
    for (let i = 0; i < 3; i++) {
      await healthy.query("UPDATE device_data_real SET ia = ? WHERE equip_address = 'GW1'", [200 + i]);
      const update = await client.expect("update", 1000);
      assert.deepEqual(update.changes, [{ address: "GW1", code: "ia", value: 200 + i }]);
    }
    // The server cancels stalled statements itself: none runs much past the 300 ms limit.
    const running = await slow.query(
      "SELECT COUNT(*) AS n FROM information_schema.PROCESSLIST WHERE DB = ? AND ID <> CONNECTION_ID() AND TIME_MS > 800",
      [slow.settings.database],
    ) as { n: number }[];
    assert.equal(Number(running[0].n), 0);
    await client.close();
  } finally {
    await app.stop();
    await healthy.drop();
    await slow.drop();
  }
});
