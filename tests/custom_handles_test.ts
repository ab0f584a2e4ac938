/**
 * Handles defined in the configuration, end to end: a real MariaDB with tables that are not the
 * seed's, the server in-process, real WebSocket clients. Exact frames for every kind of change,
 * bad topics of each unit grammar, a table dropped at run time, legacy clients, `/catalog`, and
 * a handle's own poll interval.
 */

import assert from "node:assert/strict";
import { startTestApp, type TestApp, waitFor } from "./support/app.ts";
import type { TestDatabase } from "./support/mysql.ts";
import { EXPECTED_12, seedTestDatabase } from "./support/seed_fixture.ts";
import { type Frame, TestClient } from "./support/ws_client.ts";

/** Tables of a plant other than the seed's; the seed's own tables hold unit 12 of `real`. */
const TABLES = [
  `CREATE TABLE quote (
    instrument_id INT NOT NULL, venue VARCHAR(16) NOT NULL, bid DECIMAL(10,2), ask DECIMAL(10,2),
    at DATETIME NOT NULL, PRIMARY KEY (instrument_id, venue))`,
  tankLevelTable(),
  `CREATE TABLE alarm (
    id INT PRIMARY KEY, severity TINYINT NOT NULL, message VARCHAR(200) NOT NULL, cleared_at DATETIME NULL)`,
];

function tankLevelTable(): string {
  return `CREATE TABLE tank_level (
    site VARCHAR(32) NOT NULL, tank_id INT NOT NULL, level_m DOUBLE, temp_c DECIMAL(4,1),
    updated_at DATETIME, PRIMARY KEY (site, tank_id))`;
}

const ROWS = [
  `INSERT INTO quote VALUES (7, 'xetra', 101.5, 101.75, '2026-12-01 09:00:00'),
    (7, 'lse', 101.25, 101.5, '2026-12-01 09:00:00'), (8, 'lse', 55, 55.5, '2026-12-01 09:00:00')`,
  `INSERT INTO tank_level VALUES ('north', 1, 4.25, 12.5, '2026-12-01 10:00:00'),
    ('north', 3, 2.5, 11, '2026-12-01 10:00:00'), ('south', 1, 7, 9.5, '2026-12-01 10:00:00')`,
  `INSERT INTO alarm VALUES (1, 2, 'pump 1 hot', NULL), (2, 3, 'tank 4 overflow', NULL), (3, 1, 'door open', NULL)`,
];

/** The handles as an operator writes them in the config file. */
const HANDLES = {
  quotes: {
    sql:
      "SELECT instrument_id, venue, bid, ask, at FROM quote WHERE instrument_id IN (:units) ORDER BY venue",
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
      "SELECT id, severity, message FROM alarm WHERE cleared_at IS NULL ORDER BY severity DESC, id LIMIT 5",
    key: ["id"],
    databases: ["plant1"],
  },
};

/** A test on a fresh database with the seed's fixture and the tables above, served as plant1 and plant2. */
function withPlant(
  name: string,
  fn: (db: TestDatabase, app: TestApp) => Promise<void>,
  settings: Record<string, unknown> = {},
) {
  Deno.test(name, async () => {
    epochs.clear();
    const db = await seedTestDatabase();
    try {
      for (const sql of [...TABLES, ...ROWS]) await db.query(sql);
      const app = await startTestApp(
        { plant1: db.settings, plant2: db.settings },
        { handles: HANDLES, ...settings },
      );
      try {
        await fn(db, app);
      } finally {
        await app.stop();
      }
    } finally {
      await db.drop();
    }
  });
}

/**
 * The `epoch` of each topic's frames in the running test, set by the topic's first frame: every
 * test's topics keep one epoch (one server run, each topic subscribed throughout). Cleared as
 * each test starts.
 */
const epochs = new Map<string, string>();

/**
 * Asserts that a `snapshot`, `update` or `stale` frame carries a non-empty string `epoch`, the
 * same as the earlier frames of its topic in this test; returns it.
 */
function assertEpoch(frame: Frame): string {
  const epoch = frame.epoch;
  assert.ok(typeof epoch === "string" && epoch !== "", `epoch of ${JSON.stringify(frame)}`);
  const known = epochs.get(frame.topic);
  if (known === undefined) epochs.set(frame.topic, epoch);
  else assert.equal(epoch, known, `the epoch of ${frame.topic} stays the same`);
  return epoch;
}

/** Asserts a numbered frame exactly; its `ts` only has to be a recent time, its `epoch` as {@link assertEpoch}. */
function assertFrame(frame: Frame, expected: Record<string, unknown>): void {
  assert.ok(
    typeof frame.ts === "number" && Math.abs(frame.ts - Date.now()) < 60_000,
    `ts of ${JSON.stringify(frame)}`,
  );
  const epoch = assertEpoch(frame);
  assert.deepEqual(frame, { ...expected, epoch, ts: frame.ts });
}

/** Asserts a `stale` frame exactly, its `epoch` as {@link assertEpoch}. */
function assertStale(frame: Frame, expected: Record<string, unknown>): void {
  const epoch = assertEpoch(frame);
  assert.deepEqual(frame, { ...expected, epoch });
}

/**
 * A v1 client subscribed to `topic`, its `subscribed` frame checked, its snapshot returned (its
 * `epoch` checked and taken as the topic's).
 */
async function subscriber(app: TestApp, topic: string): Promise<{ client: TestClient; snapshot: Frame }> {
  const client = await TestClient.open(app.wsUrl, "gatecast.v1");
  client.send({ type: "subscribe", id: 1, topic });
  assert.deepEqual(await client.next(), { type: "subscribed", id: 1, topic });
  const snapshot = await client.expect("snapshot");
  assertEpoch(snapshot);
  return { client, snapshot };
}

/** Resolves once `n` more queries of database `db` have completed (each poll of a group is one). */
async function queriesPass(app: TestApp, db: string, n: number): Promise<void> {
  const from = app.metrics.value("gatecast_db_queries_total", { db });
  await waitFor(
    `${n} queries on ${db}`,
    () => app.metrics.value("gatecast_db_queries_total", { db }) >= from + n,
  );
}

async function health(app: TestApp): Promise<{ status: number; body: Record<string, unknown> }> {
  const response = await fetch(`${app.httpUrl}/healthz`);
  return { status: response.status, body: await response.json() };
}

const TANKS_NORTH = [
  { site: "north", tank_id: 1, level_m: 4.25, temp_c: 12.5, updated_at: "2026-12-01 10:00:00" },
  { site: "north", tank_id: 3, level_m: 2.5, temp_c: 11, updated_at: "2026-12-01 10:00:00" },
];

withPlant(
  "a string-unit handle: snapshot, then UPDATE, INSERT at the end, INSERT in the middle and DELETE, exactly",
  async (db, app) => {
    const topic = "plant1/tanks/north";
    const { client, snapshot } = await subscriber(app, topic);
    assertFrame(snapshot, { type: "snapshot", topic, seq: 1, key: ["tank_id"], rows: TANKS_NORTH });

    await db.query(
      "UPDATE tank_level SET level_m = 2.75, updated_at = '2026-12-01 10:01:00' WHERE site = 'north' AND tank_id = 3",
    );
    assertFrame(await client.expect("update"), {
      type: "update",
      topic,
      seq: 2,
      upsert: [{ tank_id: 3, level_m: 2.75, updated_at: "2026-12-01 10:01:00" }],
      delete: [],
    });

    await db.query("INSERT INTO tank_level VALUES ('north', 5, 1.5, 10, '2026-12-01 10:02:00')");
    assertFrame(await client.expect("update"), {
      type: "update",
      topic,
      seq: 3,
      upsert: [{ site: "north", tank_id: 5, level_m: 1.5, temp_c: 10, updated_at: "2026-12-01 10:02:00" }],
      delete: [],
    });

    await db.query("INSERT INTO tank_level VALUES ('north', 2, 3, NULL, NULL)");
    assertFrame(await client.expect("snapshot"), {
      type: "snapshot",
      topic,
      seq: 4,
      key: ["tank_id"],
      rows: [
        TANKS_NORTH[0],
        { site: "north", tank_id: 2, level_m: 3, temp_c: null, updated_at: null },
        { site: "north", tank_id: 3, level_m: 2.75, temp_c: 11, updated_at: "2026-12-01 10:01:00" },
        { site: "north", tank_id: 5, level_m: 1.5, temp_c: 10, updated_at: "2026-12-01 10:02:00" },
      ],
    });

    await db.query("DELETE FROM tank_level WHERE site = 'north' AND tank_id = 3");
    assertFrame(await client.expect("update"), {
      type: "update",
      topic,
      seq: 5,
      upsert: [],
      delete: [{ tank_id: 3 }],
    });

    // Nothing changes for north: five more polls bring no frame (the sixth one's could still be on its way).
    await queriesPass(app, "plant1", 6);
    assert.deepEqual(client.pending, 0);
    await client.close();
  },
);

withPlant(
  "a change in another unit of the same handle reaches only that unit's subscribers",
  async (db, app) => {
    const north = await subscriber(app, "plant1/tanks/north");
    const south = await subscriber(app, "plant1/tanks/south");
    // One connection holding both: the poll that serves both units would send north's frame first.
    const both = await TestClient.open(app.wsUrl, "gatecast.v1");
    both.send({ type: "subscribe", id: 1, topic: "plant1/tanks/north" });
    both.send({ type: "subscribe", id: 2, topic: "plant1/tanks/south" });
    // Each topic's one sequence: a later subscriber gets the same snapshot, seq and epoch included.
    await both.expect("subscribed");
    assert.deepEqual(await both.expect("snapshot"), north.snapshot);
    await both.expect("subscribed");
    assert.deepEqual(await both.expect("snapshot"), south.snapshot);

    await db.query("UPDATE tank_level SET level_m = 6.5 WHERE site = 'south'");
    const expected = {
      type: "update",
      topic: "plant1/tanks/south",
      seq: 2,
      upsert: [{ tank_id: 1, level_m: 6.5 }],
      delete: [],
    };
    const update = await south.client.expect("update");
    assertFrame(update, expected);
    // Fan-out sends every subscriber of the topic the same frame.
    assert.deepEqual(await both.expect("update"), update);
    await queriesPass(app, "plant1", 3);
    assert.deepEqual(north.client.pending, 0);
    assert.deepEqual(both.pending, 0);
    for (const client of [north.client, south.client, both]) await client.close();
  },
);

withPlant(
  "a unit-less handle with ORDER BY and LIMIT: a reorder and an insert in the middle are snapshots",
  async (db, app) => {
    const topic = "plant1/alarms";
    const { client, snapshot } = await subscriber(app, topic);
    const pump = { id: 1, severity: 2, message: "pump 1 hot" };
    const tank = { id: 2, severity: 3, message: "tank 4 overflow" };
    assertFrame(snapshot, {
      type: "snapshot",
      topic,
      seq: 1,
      key: ["id"],
      rows: [tank, pump, { id: 3, severity: 1, message: "door open" }],
    });

    await db.query("UPDATE alarm SET message = 'door open (east)' WHERE id = 3");
    assertFrame(await client.expect("update"), {
      type: "update",
      topic,
      seq: 2,
      upsert: [{ id: 3, message: "door open (east)" }],
      delete: [],
    });

    await db.query("INSERT INTO alarm VALUES (4, 1, 'filter due', NULL)");
    assertFrame(await client.expect("update"), {
      type: "update",
      topic,
      seq: 3,
      upsert: [{ id: 4, severity: 1, message: "filter due" }],
      delete: [],
    });

    await db.query("UPDATE alarm SET severity = 3 WHERE id = 3");
    assertFrame(await client.expect("snapshot"), {
      type: "snapshot",
      topic,
      seq: 4,
      key: ["id"],
      rows: [tank, { id: 3, severity: 3, message: "door open (east)" }, pump, {
        id: 4,
        severity: 1,
        message: "filter due",
      }],
    });

    await db.query("UPDATE alarm SET cleared_at = NOW() WHERE id = 1");
    assertFrame(await client.expect("update"), {
      type: "update",
      topic,
      seq: 5,
      upsert: [],
      delete: [{ id: 1 }],
    });

    await db.query("INSERT INTO alarm VALUES (5, 2, 'valve stuck', NULL)");
    assertFrame(await client.expect("snapshot"), {
      type: "snapshot",
      topic,
      seq: 6,
      key: ["id"],
      rows: [
        tank,
        { id: 3, severity: 3, message: "door open (east)" },
        { id: 5, severity: 2, message: "valve stuck" },
        { id: 4, severity: 1, message: "filter due" },
      ],
    });

    await queriesPass(app, "plant1", 5);
    assert.deepEqual(client.pending, 0);
    await client.close();
  },
);

withPlant(
  "an int-unit handle keyed by venue: snapshot, then an update with the key and the changed prices",
  async (db, app) => {
    const topic = "plant1/quotes/7";
    const { client, snapshot } = await subscriber(app, topic);
    assertFrame(snapshot, {
      type: "snapshot",
      topic,
      seq: 1,
      key: ["venue"],
      rows: [
        { instrument_id: 7, venue: "lse", bid: 101.25, ask: 101.5, at: "2026-12-01 09:00:00" },
        { instrument_id: 7, venue: "xetra", bid: 101.5, ask: 101.75, at: "2026-12-01 09:00:00" },
      ],
    });
    await db.query("UPDATE quote SET bid = 101.3, ask = 101.55 WHERE instrument_id = 7 AND venue = 'xetra'");
    assertFrame(await client.expect("update"), {
      type: "update",
      topic,
      seq: 2,
      upsert: [{ venue: "xetra", bid: 101.3, ask: 101.55 }],
      delete: [],
    });
    await client.close();
  },
);

withPlant("bad topics of each unit grammar get their exact error frames", async (_db, app) => {
  const client = await TestClient.open(app.wsUrl, "gatecast.v1");
  const cases: [string, string, string][] = [
    [
      "plant1/quotes/lse",
      "BAD_TOPIC",
      'topic "plant1/quotes/lse": unit_id must be an integer from 1 to 2147483647',
    ],
    [
      "plant1/quotes/0",
      "BAD_TOPIC",
      'topic "plant1/quotes/0": unit_id must be an integer from 1 to 2147483647',
    ],
    [
      "plant1/tanks/a b",
      "BAD_TOPIC",
      'topic "plant1/tanks/a b": unit must be an integer from 1 to 2147483647 or a name matching [A-Za-z0-9_.:-]{1,64}',
    ],
    ["plant1/tanks", "BAD_TOPIC", 'topic "plant1/tanks" must have three parts <db>/<handle>/<unit>'],
    [
      "plant1/alarms/north",
      "BAD_TOPIC",
      'topic "plant1/alarms/north": handle \'alarms\' has no units; its topic is "plant1/alarms"',
    ],
    [
      "plant2/alarms",
      "UNKNOWN_HANDLE",
      "no handle 'alarms' on database 'plant2'; its handles: real, quotes, tanks",
    ],
    [
      "plant1/levels/north",
      "UNKNOWN_HANDLE",
      "no handle 'levels' on database 'plant1'; its handles: real, quotes, tanks, alarms",
    ],
    ["plant9/tanks/north", "UNKNOWN_DB", "no database 'plant9' is configured"],
  ];
  let id = 0;
  for (const [topic, code, message] of cases) {
    client.send({ type: "subscribe", id: ++id, topic });
    assert.deepEqual(await client.next(), { type: "error", id, code, message }, topic);
  }
  // The connection stays usable: a good topic of each grammar is served.
  for (const topic of ["plant1/quotes/8", "plant1/tanks/north", "plant1/alarms", "plant2/tanks/south"]) {
    client.send({ type: "subscribe", id: ++id, topic });
    assert.deepEqual(await client.next(), { type: "subscribed", id, topic });
    assert.deepEqual((await client.expect("snapshot")).topic, topic);
  }
  await client.close();
});

withPlant(
  "a table dropped at run time makes only its handle's topics stale, shows on /healthz, and recovers when re-created",
  async (db, app) => {
    const tanks = await subscriber(app, "plant1/tanks/north");
    const alarms = await subscriber(app, "plant1/alarms");
    const real = await subscriber(app, "plant1/real/12");
    assert.deepEqual(real.snapshot.points.length, EXPECTED_12.length);
    assert.deepEqual((await health(app)).status, 200);

    await db.query("DROP TABLE tank_level");
    const message =
      `handle 'tanks': database 'plant1': ER_NO_SUCH_TABLE: Table '${db.settings.database}.tank_level' doesn't exist`;
    assertStale(await tanks.client.next(), {
      type: "stale",
      topic: "plant1/tanks/north",
      code: "HANDLE_FAILED",
      message,
    });

    // The other handles of the same database keep flowing.
    await db.query("UPDATE alarm SET message = 'pump 1 very hot' WHERE id = 1");
    assertFrame(await alarms.client.expect("update"), {
      type: "update",
      topic: "plant1/alarms",
      seq: 2,
      upsert: [{ id: 1, message: "pump 1 very hot" }],
      delete: [],
    });
    await db.query("UPDATE device_data_real SET ua = 230.5 WHERE equip_address = 'GW1'");
    assertFrame(await real.client.expect("update"), {
      type: "update",
      topic: "plant1/real/12",
      seq: 2,
      changes: [{ address: "GW1", code: "ua", value: 230.5 }],
    });

    const failing = await health(app);
    assert.deepEqual(failing.status, 503);
    assert.deepEqual(failing.body.status, "degraded");
    assert.deepEqual(failing.body.handles, { "plant1/tanks": { error: message } });
    assert.deepEqual((failing.body.databases as Record<string, { healthy: boolean }>).plant1.healthy, true);

    // Many failed polls later: one stale frame, one log line.
    await queriesPass(app, "plant1", 10);
    assert.deepEqual(tanks.client.pending, 0);
    const failingLines = app.logs.filter((line) => line.msg === "handle failing");
    assert.deepEqual(failingLines.map(({ db, handle, error }) => ({ db, handle, error })), [
      { db: "plant1", handle: "tanks", error: message },
    ]);

    await db.query(tankLevelTable());
    await db.query("INSERT INTO tank_level VALUES ('north', 4, 1, 8, NULL)");
    assertFrame(await tanks.client.expect("snapshot"), {
      type: "snapshot",
      topic: "plant1/tanks/north",
      seq: 2,
      key: ["tank_id"],
      rows: [{ site: "north", tank_id: 4, level_m: 1, temp_c: 8, updated_at: null }],
    });
    await waitFor("/healthz to recover", async () => (await health(app)).status === 200);
    assert.deepEqual((await health(app)).body.handles, undefined);
    assert.deepEqual(app.logs.filter((line) => line.msg === "handle recovered").length, 1);
    assert.deepEqual(app.logs.filter((line) => line.msg === "handle failing").length, 1);
    for (const { client } of [tanks, alarms, real]) await client.close();
  },
);

withPlant("a failing handle whose last subscriber leaves no longer shows on /healthz", async (db, app) => {
  const tanks = await subscriber(app, "plant1/tanks/north");
  await db.query("DROP TABLE tank_level");
  const stale = await tanks.client.expect("stale");
  assert.deepEqual(stale.code, "HANDLE_FAILED");
  assertEpoch(stale);
  assert.deepEqual((await health(app)).status, 503);
  await tanks.client.close();
  await waitFor("the handle to leave /healthz", async () => (await health(app)).status === 200);
  assert.deepEqual((await health(app)).body.handles, undefined);
  assert.deepEqual(
    app.logs.filter((line) => line.msg === "handle no longer polled").map(({ db, handle }) => ({
      db,
      handle,
    })),
    [{ db: "plant1", handle: "tanks" }],
  );
});

withPlant(
  "a column renamed at run time: each handle reading it goes stale naming itself and the column",
  async (db, app) => {
    const tanks = await subscriber(app, "plant1/tanks/north");
    const levels = await subscriber(app, "plant1/levels/north");
    const alarms = await subscriber(app, "plant1/alarms");
    await db.query("ALTER TABLE tank_level CHANGE tank_id tank INT NOT NULL");
    const stale = await tanks.client.next();
    // The server's own words after the column differ between versions ('field list', 'SELECT').
    assert.match(
      stale.message,
      /^handle 'tanks': database 'plant1': ER_BAD_FIELD_ERROR: Unknown column 'tank_id' in '[^']+'$/,
    );
    assertStale(stale, {
      type: "stale",
      topic: "plant1/tanks/north",
      code: "HANDLE_FAILED",
      message: stale.message,
    });
    assertStale(await levels.client.next(), {
      type: "stale",
      topic: "plant1/levels/north",
      code: "HANDLE_FAILED",
      message: "handle 'levels': the result has no column 'tank_id' (in its key); " +
        "columns: site, tank, level_m, temp_c, updated_at",
    });
    assert.deepEqual(Object.keys((await health(app)).body.handles as object).sort(), [
      "plant1/levels",
      "plant1/tanks",
    ]);
    await db.query("UPDATE alarm SET severity = 3 WHERE id = 3");
    const reordered = await alarms.client.expect("snapshot");
    assert.deepEqual(reordered.seq, 2, "the reordered alarms still flow");
    assertEpoch(reordered);
    for (const { client } of [tanks, levels, alarms]) await client.close();
  },
  {
    handles: {
      ...HANDLES,
      levels: {
        sql: "SELECT * FROM tank_level WHERE site IN (:units) ORDER BY 2",
        unit: "site",
        unitType: "string",
        key: ["tank_id"],
      },
    },
  },
);

withPlant(
  "a legacy client names a custom handle and gets the array of row objects at once and every interval",
  async (db, app) => {
    const client = await TestClient.open(`ws://127.0.0.1:${app.port}/`);
    client.send("{'unit_id': 'north', 'handle': 'tanks', 'db_code': 'plant1'}");
    assert.deepEqual(JSON.parse(await client.nextText()), TANKS_NORTH);
    assert.deepEqual(
      JSON.parse(await client.nextText(2000)),
      TANKS_NORTH,
      "again the next interval, unchanged",
    );
    await db.query("UPDATE tank_level SET temp_c = NULL WHERE site = 'north' AND tank_id = 1");
    const changed = [{ ...TANKS_NORTH[0], temp_c: null }, TANKS_NORTH[1]];
    await waitFor(
      "the changed array",
      async () => JSON.stringify(JSON.parse(await client.nextText())) === JSON.stringify(changed),
    );
    await client.close();

    const unitless = await TestClient.open(`ws://127.0.0.1:${app.port}/`);
    unitless.send("{'handle': 'alarms', 'db_code': 'plant1'}");
    const alarms = [
      { id: 2, severity: 3, message: "tank 4 overflow" },
      { id: 1, severity: 2, message: "pump 1 hot" },
      { id: 3, severity: 1, message: "door open" },
    ];
    assert.deepEqual(JSON.parse(await unitless.nextText()), alarms);
    assert.deepEqual(JSON.parse(await unitless.nextText(2000)), alarms);
    await unitless.close();
  },
);

withPlant(
  "a legacy subscription breaking a custom handle's grammar closes with 1008 and says why",
  async (_db, app) => {
    const cases: [string, string][] = [
      [
        "{'unit_id': 12, 'handle': 'alarms', 'db_code': 'plant1'}",
        "unit_id of handle 'alarms' must be absent (the handle has one topic per database)",
      ],
      [
        "{'unit_id': 'north', 'handle': 'quotes', 'db_code': 'plant1'}",
        "unit_id of handle 'quotes' must be an integer from 1 to 2147483647",
      ],
      [
        "{'handle': 'tanks', 'db_code': 'plant1'}",
        "unit_id of handle 'tanks' must be a name matching [A-Za-z0-9_.:-]{1,64}",
      ],
      [
        "{'handle': 'alarms', 'db_code': 'plant2'}",
        "no handle 'alarms' on database 'plant2'; its handles: real, quotes, tanks",
      ],
    ];
    for (const [frame, reason] of cases) {
      const client = await TestClient.open(`ws://127.0.0.1:${app.port}/`);
      client.send(frame);
      const closed = await client.closed;
      assert.deepEqual([closed.code, closed.reason], [1008, reason], frame);
    }
  },
);

withPlant(
  "rows repeating a key: the first row wins, every dropped row is counted, and the key is logged once",
  async (_db, app) => {
    const topic = "plant1/venues";
    const { client, snapshot } = await subscriber(app, topic);
    // Instruments 7 and 8 both quote on lse: the first lse row (instrument 7) wins.
    assertFrame(snapshot, {
      type: "snapshot",
      topic,
      seq: 1,
      key: ["venue"],
      rows: [{ venue: "lse", instrument_id: 7, bid: 101.25 }, {
        venue: "xetra",
        instrument_id: 7,
        bid: 101.5,
      }],
    });
    const dropped = () => app.metrics.value("gatecast_duplicate_keys_total", { handle: "venues" });
    const before = dropped();
    await queriesPass(app, "plant1", 5);
    assert.ok(dropped() >= before + 5, `one dropped row counted per poll: ${before} then ${dropped()}`);
    const lines = app.logs.filter((line) => line.handle === "venues");
    assert.deepEqual(lines.map(({ level, msg, key }) => ({ level, msg, key })), [
      { level: "warn", msg: "rows with a repeated key were dropped; the first row wins", key: '["lse"]' },
    ]);
    assert.deepEqual(client.pending, 0);
    await client.close();
  },
  {
    handles: {
      venues: {
        sql: "SELECT venue, instrument_id, bid FROM quote ORDER BY venue, instrument_id",
        key: ["venue"],
      },
    },
  },
);

withPlant(
  "GET /catalog lists each database's handles with their unit type, frames and key",
  async (_db, app) => {
    const response = await fetch(`${app.httpUrl}/catalog`);
    assert.deepEqual(response.status, 200);
    const real = { unitType: "int", frames: "points" };
    const quotes = { unitType: "int", frames: "rows", key: ["venue"] };
    const tanks = { unitType: "string", frames: "rows", key: ["tank_id"] };
    assert.deepEqual(await response.json(), {
      databases: {
        plant1: {
          handles: { real, quotes, tanks, alarms: { unitType: "none", frames: "rows", key: ["id"] } },
        },
        plant2: { handles: { real, quotes, tanks } },
      },
    });
  },
);

Deno.test("a handle's own pollIntervalMs is honoured, faster or slower than the global interval", async () => {
  epochs.clear();
  const db = await seedTestDatabase();
  try {
    for (const sql of [...TABLES, ...ROWS]) await db.query(sql);
    const sql = HANDLES.alarms.sql;
    // One database under three codes, so that /metrics counts each handle's queries apart.
    const app = await startTestApp({ quick: db.settings, usual: db.settings, slow: db.settings }, {
      pollIntervalMs: 100,
      handles: {
        quick_alarms: { sql, key: ["id"], databases: ["quick"], pollIntervalMs: 50 },
        usual_alarms: { sql, key: ["id"], databases: ["usual"] },
        slow_alarms: { sql, key: ["id"], databases: ["slow"], pollIntervalMs: 200 },
      },
    });
    const clients: TestClient[] = [];
    try {
      for (const code of ["quick", "usual", "slow"]) {
        clients.push((await subscriber(app, `${code}/${code}_alarms`)).client);
      }
      // A poll is due or not by its tick; a due poll that finds the previous one running is skipped and counted.
      const due = () =>
        ["quick", "usual", "slow"].map((db) =>
          app.metrics.value("gatecast_db_queries_total", { db }) +
          app.metrics.value("gatecast_ticks_skipped_total", { db, handle: `${db}_alarms` })
        );
      const ticksFrom = app.metrics.value("gatecast_ticks_total");
      const before = due();
      // The tick is the largest common divisor, 50 ms: over 40 ticks quick is due 40 times, usual 20, slow 10.
      await waitFor("40 ticks", () => app.metrics.value("gatecast_ticks_total") >= ticksFrom + 40, 30_000);
      const polls = due().map((n, i) => n - before[i]);
      const [quick, usual, slow] = polls;
      // One either way: a poll under way at either end of the window.
      assert.ok(quick >= 39 && quick <= 41, `quick polled ${polls}`);
      assert.ok(usual >= 19 && usual <= 21, `usual polled ${polls}`);
      assert.ok(slow >= 9 && slow <= 11, `slow polled ${polls}`);
    } finally {
      for (const client of clients) await client.close();
      await app.stop();
    }
  } finally {
    await db.drop();
  }
});
