/**
 * `POST /notify` (lib/net/notify.ts): the body's two forms and their errors, pure; then end to
 * end against a real MariaDB with the server in-process and real HTTP requests: a notify brings a
 * change to a subscriber long before the next tick (the interval is a minute), a flood of them
 * during a slow poll costs one more poll, every refusal, and who may notify with and without
 * tokens.
 */

import assert from "node:assert/strict";
import { sha256Hex } from "../../lib/net/auth.ts";
import { parseTopicPattern } from "../../lib/config/topic_pattern.ts";
import { groupCovered, NotifyError, parseNotifyBody } from "../../lib/net/notify.ts";
import { startTestApp, type TestApp, waitFor } from "../support/app.ts";
import { createTestDatabase, type TestDatabase } from "../support/mysql.ts";
import { signToken, tokenAuth } from "../support/tokens.ts";
import { type Frame, TestClient } from "../support/ws_client.ts";

// ---------------------------------------------------------------------------------------------
// The body, pure.

function bodyRefusal(body: unknown): string {
  try {
    parseNotifyBody(body);
  } catch (error) {
    assert.ok(error instanceof NotifyError);
    assert.equal(error.status, 400);
    assert.equal(error.code, "BAD_BODY");
    return error.message;
  }
  return "(accepted)";
}

Deno.test("a notify body names topics, or a database and a handle", () => {
  assert.deepEqual(parseNotifyBody({ topics: ["plant1/tanks/north", "plant1/alarms"] }), {
    topics: ["plant1/tanks/north", "plant1/alarms"],
  });
  assert.deepEqual(parseNotifyBody({ db: "plant1", handle: "tanks" }), { db: "plant1", handle: "tanks" });
});

Deno.test("a bad notify body is refused naming the field and what is accepted", () => {
  const shape = '{"topics":["plant1/tanks/north", …]} or {"db":"plant1","handle":"tanks"}';
  const cases: [unknown, string][] = [
    [[], `the body must be a JSON object, ${shape}; got an array`],
    ["plant1/tanks", `the body must be a JSON object, ${shape}; got "plant1/tanks"`],
    [null, `the body must be a JSON object, ${shape}; got null`],
    [{}, `the body must be ${shape}`],
    [{ topic: "plant1/alarms" }, "topic: unknown key; accepted keys are topics, or db and handle"],
    [{ topics: [] }, "topics: expected a non-empty array of topic strings, got an array"],
    [{ topics: "plant1/alarms" }, 'topics: expected a non-empty array of topic strings, got "plant1/alarms"'],
    [{ topics: ["plant1/alarms"], db: "plant1" }, "db: give either topics, or db and handle, not both"],
    [{ topics: ["plant1/alarms"], handle: "x" }, "handle: give either topics, or db and handle, not both"],
    [{ db: "plant1" }, "handle: is required with db"],
    [{ handle: "tanks" }, "db: is required with handle"],
    [{ db: 1, handle: "tanks" }, "db: expected a non-empty string, got 1"],
    [{ db: "plant1", handle: "" }, 'handle: expected a non-empty string, got ""'],
  ];
  for (const [body, message] of cases) assert.equal(bodyRefusal(body), message, JSON.stringify(body));
});

Deno.test("a group is covered by patterns that grant every topic of it", () => {
  const covered = (patterns: string[], handle: string, unitType: "int" | "string" | "none") =>
    groupCovered(patterns.map(parseTopicPattern), "plant1", handle, unitType);
  assert.equal(covered(["plant1/tanks/*"], "tanks", "string"), true);
  assert.equal(covered(["*/*/*"], "tanks", "string"), true);
  assert.equal(covered(["plant1/tanks/north"], "tanks", "string"), false);
  assert.equal(covered(["plant2/tanks/*", "plant1/real/*"], "tanks", "string"), false);
  assert.equal(covered(["*/*"], "tanks", "string"), false);
  // A handle without units has one topic, `plant1/alarms`: a two-part pattern or a `*` unit covers it.
  assert.equal(covered(["plant1/alarms"], "alarms", "none"), true);
  assert.equal(covered(["*/*"], "alarms", "none"), true);
  assert.equal(covered(["plant1/*/*"], "alarms", "none"), true);
  assert.equal(covered(["plant1/tanks/*"], "alarms", "none"), false);
});

// ---------------------------------------------------------------------------------------------
// End to end.

const TABLES = [
  `CREATE TABLE tank_level (site VARCHAR(32) NOT NULL, tank_id INT NOT NULL, level_m DOUBLE,
    PRIMARY KEY (site, tank_id))`,
  "INSERT INTO tank_level VALUES ('north', 1, 4.25), ('north', 3, 2.5), ('south', 1, 7)",
  "CREATE TABLE alarm (id INT PRIMARY KEY, message VARCHAR(200) NOT NULL)",
  "INSERT INTO alarm VALUES (1, 'pump 1 hot')",
  "CREATE TABLE slow_row (id INT PRIMARY KEY, v INT NOT NULL)",
  "INSERT INTO slow_row VALUES (1, 10)",
];

/** A poll of `slow` takes this long: its one row makes the server sleep once. */
const SLOW_POLL_SECONDS = 0.5;

const HANDLES = {
  tanks: {
    sql: "SELECT site, tank_id, level_m FROM tank_level WHERE site IN (:units) ORDER BY tank_id",
    unit: "site",
    unitType: "string",
    key: ["tank_id"],
  },
  alarms: { sql: "SELECT id, message FROM alarm ORDER BY id", key: ["id"] },
  slow: { sql: `SELECT id, v FROM slow_row WHERE SLEEP(${SLOW_POLL_SECONDS}) = 0`, key: ["id"] },
};

const API_KEY = "gk_notify_7d1e0c9b8a7f6e5d4c3b2a1908f7e6d5";

interface Plant {
  readonly app: TestApp;
  readonly db: TestDatabase;
  /** SELECTs the server ran for gatecast's own login. */
  readonly selects: () => Promise<number>;
}

/**
 * A test on a fresh database served as plant1 and plant2 through a login of its own, with a
 * one-minute poll interval: within a test, no tick polls anything, so only a notify can explain
 * a poll.
 */
function withPlant(
  name: string,
  fn: (plant: Plant) => Promise<void>,
  settings: Record<string, unknown> = {},
) {
  Deno.test(name, async () => {
    const db = await createTestDatabase();
    try {
      for (const sql of TABLES) await db.query(sql);
      const login = await db.dedicatedUser();
      const app = await startTestApp(
        { plant1: login.settings, plant2: login.settings },
        { pollIntervalMs: 60_000, handles: HANDLES, ...settings },
      );
      try {
        await fn({ app, db, selects: login.selects });
      } finally {
        await app.stop();
      }
    } finally {
      await db.drop();
    }
  });
}

interface Answer {
  readonly status: number;
  readonly headers: Headers;
  // deno-lint-ignore no-explicit-any
  readonly body: any;
}

/** POSTs to /notify: an object as JSON, a string or bytes as they are, `application/json` unless `headers` say otherwise. */
async function notify(
  app: TestApp,
  body: unknown,
  headers: Record<string, string> = {},
  init: { method?: string; path?: string } = {},
): Promise<Answer> {
  const raw = typeof body === "string" || body instanceof Uint8Array;
  const response = await fetch(`${app.httpUrl}${init.path ?? "/notify"}`, {
    method: init.method ?? "POST",
    headers: { "content-type": "application/json", ...headers },
    body: init.method === "GET" ? undefined : raw ? body as BodyInit : JSON.stringify(body),
  });
  return { status: response.status, headers: response.headers, body: await response.json() };
}

/** Group polls that have ended, per database. */
function pollsDone(app: TestApp, db = "plant1"): number {
  return app.metrics.value("gatecast_poll_duration_seconds", { db });
}

/** A v1 client subscribed to `topic`, and the snapshot it got. */
async function subscribed(
  app: TestApp,
  topic: string,
  headers?: Record<string, string>,
): Promise<{ client: TestClient; snapshot: Frame }> {
  const client = await TestClient.open(app.wsUrl, "gatecast.v1", headers);
  client.send({ type: "subscribe", id: 1, topic });
  await client.expect("subscribed");
  return { client, snapshot: await client.expect("snapshot") };
}

/** A v1 client subscribed to `topic`, its snapshot taken. */
async function subscriber(
  app: TestApp,
  topic: string,
  headers?: Record<string, string>,
): Promise<TestClient> {
  return (await subscribed(app, topic, headers)).client;
}

withPlant(
  "a notify right after an UPDATE brings the change to a subscriber long before the next tick",
  async ({ app, db }) => {
    const { client, snapshot } = await subscribed(app, "plant1/tanks/north");
    assert.equal(snapshot.seq, 1);
    assert.ok(
      typeof snapshot.epoch === "string" && snapshot.epoch !== "",
      `epoch of ${JSON.stringify(snapshot)}`,
    );
    await db.query("UPDATE tank_level SET level_m = 5.5 WHERE site = 'north' AND tank_id = 3");
    const sent = Date.now();
    const answer = await notify(app, { topics: ["plant1/tanks/north"] });
    assert.deepEqual([answer.status, answer.body], [202, { scheduled: ["plant1/tanks"], idle: [] }]);
    // The next tick is a minute away: only the notify's poll can bring this.
    const update = await client.expect("update", 10_000);
    assert.ok(Date.now() - sent < 10_000);
    assert.deepEqual({ ...update, ts: 0 }, {
      type: "update",
      topic: "plant1/tanks/north",
      seq: 2,
      epoch: snapshot.epoch,
      ts: 0,
      upsert: [{ tank_id: 3, level_m: 5.5 }],
      delete: [],
    });
    assert.equal(app.metrics.value("gatecast_notifies_total", { result: "scheduled" }), 1);
    assert.equal(
      app.metrics.value("gatecast_notified_groups_total", {
        db: "plant1",
        handle: "tanks",
        answer: "started",
      }),
      1,
    );
    await client.close();
  },
);

withPlant(
  "a notify naming a database and a handle polls that group; groups without subscribers are idle",
  async ({ app, db }) => {
    const alarms = await subscriber(app, "plant1/alarms");
    const tanks = await subscriber(app, "plant1/tanks/north");
    await db.query("INSERT INTO alarm VALUES (2, 'tank 4 overflow')");
    await db.query("UPDATE tank_level SET level_m = 1 WHERE site = 'north' AND tank_id = 1");
    const polls = pollsDone(app);
    const answer = await notify(app, { db: "plant1", handle: "alarms" });
    assert.deepEqual([answer.status, answer.body], [202, { scheduled: ["plant1/alarms"], idle: [] }]);
    assert.deepEqual((await alarms.expect("update", 10_000)).upsert, [{ id: 2, message: "tank 4 overflow" }]);
    await waitFor("the alarms poll to end", () => pollsDone(app) === polls + 1);
    // The tanks group was not named: its change waits for a tick.
    assert.equal(tanks.pending, 0);

    // plant2's groups and plant1's south tank have no subscriber: nothing to poll.
    const queries = () =>
      ["plant1", "plant2"].map((db) => app.metrics.value("gatecast_db_queries_total", { db }));
    const before = queries();
    const idle = await notify(app, { topics: ["plant2/alarms", "plant1/tanks/south", "plant2/tanks/north"] });
    assert.deepEqual([idle.status, idle.body], [202, {
      scheduled: [],
      idle: ["plant2/alarms", "plant1/tanks", "plant2/tanks"],
    }]);
    const group = await notify(app, { db: "plant2", handle: "tanks" });
    assert.deepEqual([group.status, group.body], [202, { scheduled: [], idle: ["plant2/tanks"] }]);
    assert.deepEqual(queries(), before);
    assert.equal(pollsDone(app) + pollsDone(app, "plant2"), polls + 1);
    await alarms.close();
    await tanks.close();
  },
);

withPlant(
  "a flood of 50 notifies during a slow poll costs one more poll, not 50",
  async ({ app, db, selects }) => {
    const client = await subscriber(app, "plant1/slow");
    const polls = pollsDone(app);
    const queries = app.metrics.value("gatecast_db_queries_total", { db: "plant1" });
    const serverSelects = await selects();

    // The first notify starts a poll, which sleeps; the other 49 come while it runs.
    assert.equal((await notify(app, { topics: ["plant1/slow"] })).status, 202);
    const flood = await Promise.all(
      Array.from({ length: 49 }, () => notify(app, { db: "plant1", handle: "slow" })),
    );
    assert.deepEqual(new Set(flood.map((answer) => answer.status)), new Set([202]));
    assert.equal(pollsDone(app), polls, `the flood took longer than a ${SLOW_POLL_SECONDS} s poll: no proof`);

    await waitFor(
      "the notified poll and the one after it to end",
      () => pollsDone(app) === polls + 2,
      10_000,
    );
    // Had the flood started a further poll, its query would be running now, ahead of this check.
    const running = await db.query(
      "SELECT COUNT(*) AS n FROM information_schema.PROCESSLIST WHERE USER = ? AND INFO LIKE '%slow_row%'",
      [db.settings.database],
    ) as { n: number }[];
    assert.equal(Number(running[0].n), 0);
    assert.equal(pollsDone(app), polls + 2);
    assert.equal(app.metrics.value("gatecast_db_queries_total", { db: "plant1" }), queries + 2);
    assert.equal(await selects() - serverSelects, 2);
    assert.equal(app.metrics.value("gatecast_notifies_total", { result: "scheduled" }), 50);
    // The first notify started a poll, the second queued one more, the other 48 folded into it.
    const answers = Object.fromEntries(
      ["started", "queued", "coalesced", "deferred"].map((answer) => [
        answer,
        app.metrics.value("gatecast_notified_groups_total", { db: "plant1", handle: "slow", answer }),
      ]),
    );
    assert.deepEqual(answers, { started: 1, queued: 1, coalesced: 48, deferred: 0 });
    await client.close();
  },
);

withPlant(
  "every bad notify is refused with its status and a message naming the field, and polls nothing",
  async ({ app }) => {
    const client = await subscriber(app, "plant1/tanks/north");
    const queries = app.metrics.value("gatecast_db_queries_total", { db: "plant1" });
    const shape = '{"topics":["plant1/tanks/north", …]} or {"db":"plant1","handle":"tanks"}';
    const cases: [unknown, number, string, string][] = [
      ["{not json", 400, "BAD_JSON", `the body is not valid JSON; send ${shape}`],
      ["", 400, "BAD_JSON", `the body is not valid JSON; send ${shape}`],
      [new Uint8Array([0x7b, 0xff, 0x7d]), 400, "BAD_JSON", "the body is not UTF-8 text"],
      [[1], 400, "BAD_BODY", `the body must be a JSON object, ${shape}; got an array`],
      [{ topics: [] }, 400, "BAD_BODY", "topics: expected a non-empty array of topic strings, got an array"],
      [
        { topics: ["plant1/tanks/north", "plant1/tanks"] },
        400,
        "BAD_TOPIC",
        'topics[1]: topic "plant1/tanks" must have three parts <db>/<handle>/<unit>',
      ],
      [
        { topics: ["plant1/real/north"] },
        400,
        "BAD_TOPIC",
        'topics[0]: topic "plant1/real/north": unit_id must be an integer from 1 to 2147483647',
      ],
      [
        { topics: ["plant1/alarms/1"] },
        400,
        "BAD_TOPIC",
        'topics[0]: topic "plant1/alarms/1": handle \'alarms\' has no units; its topic is "plant1/alarms"',
      ],
      [
        { topics: [12] },
        400,
        "BAD_TOPIC",
        'topics[0]: topic must be a string like "plant1/real/12", got 12',
      ],
      [
        { topics: ["plant9/tanks/north"] },
        404,
        "UNKNOWN_DB",
        "topics[0]: no database 'plant9' is configured",
      ],
      [
        { topics: ["plant1/alarms", "plant1/pumps/1"] },
        404,
        "UNKNOWN_HANDLE",
        "topics[1]: no handle 'pumps' on database 'plant1'; its handles: real, tanks, alarms, slow",
      ],
      [{ db: "plant9", handle: "tanks" }, 404, "UNKNOWN_DB", "db: no database 'plant9' is configured"],
      [
        { db: "plant1", handle: "pumps" },
        404,
        "UNKNOWN_HANDLE",
        "handle: no handle 'pumps' on database 'plant1'; its handles: real, tanks, alarms, slow",
      ],
    ];
    for (const [body, status, code, error] of cases) {
      const answer = await notify(app, body);
      assert.deepEqual([answer.status, answer.body], [status, { error, code }], JSON.stringify(body));
    }
    const big = await notify(app, { topics: Array(100).fill("plant1/tanks/north") });
    assert.deepEqual([big.status, big.body], [413, {
      error: "the body is over the 1024-byte limit (maxFrameBytes)",
      code: "TOO_BIG",
    }]);
    const text = await notify(app, JSON.stringify({ topics: ["plant1/tanks/north"] }), {
      "content-type": "text/plain",
    });
    assert.deepEqual([text.status, text.body], [415, {
      error: "send the body with Content-Type: application/json",
      code: "UNSUPPORTED_MEDIA_TYPE",
    }]);
    const get = await notify(app, undefined, {}, { method: "GET" });
    assert.deepEqual([get.status, get.headers.get("allow"), get.body], [405, "POST", {
      error: "GET is not allowed on /notify; use POST",
      code: "METHOD_NOT_ALLOWED",
    }]);
    const origin = await notify(app, { topics: ["plant1/tanks/north"] }, { origin: "https://evil.example" });
    assert.deepEqual([origin.status, origin.body], [403, {
      error: "origin not allowed; see allowedOrigins",
      code: "FORBIDDEN",
    }]);

    assert.equal(app.metrics.value("gatecast_db_queries_total", { db: "plant1" }), queries);
    assert.equal(client.pending, 0);
    const counted = (result: string) => app.metrics.value("gatecast_notifies_total", { result });
    assert.deepEqual(
      [
        "bad_request",
        "not_found",
        "too_large",
        "unsupported_media_type",
        "method_not_allowed",
        "forbidden",
        "scheduled",
      ]
        .map(counted),
      [9, 4, 1, 1, 1, 1, 0],
    );
    await client.close();
  },
  { maxFrameBytes: 1024 },
);

withPlant(
  "with auth off, a notify is accepted from loopback and trusted proxies and refused from other addresses",
  async ({ app }) => {
    const client = await subscriber(app, "plant1/alarms");
    const body = { topics: ["plant1/alarms"] };
    // Over loopback, only a trusted proxy's X-Forwarded-For can name another address.
    const remote = await notify(app, body, { "x-forwarded-for": "203.0.113.7" });
    assert.deepEqual([remote.status, remote.body], [403, {
      error:
        'notify is accepted only from loopback and trustedProxies while auth is off (notifyFrom "local"); 203.0.113.7 is neither',
      code: "FORBIDDEN",
    }]);
    const proxy = await notify(app, body, { "x-forwarded-for": "10.1.2.3" });
    assert.deepEqual([proxy.status, proxy.body], [202, { scheduled: ["plant1/alarms"], idle: [] }]);
    const local = await notify(app, body);
    assert.deepEqual([local.status, local.body], [202, { scheduled: ["plant1/alarms"], idle: [] }]);
    assert.equal(app.metrics.value("gatecast_notifies_total", { result: "forbidden" }), 1);
    await client.close();
  },
  { trustedProxies: ["127.0.0.1", "10.0.0.0/8"] },
);

withPlant('with notifyFrom "any" and auth off, any address may notify', async ({ app }) => {
  const answer = await notify(app, { db: "plant1", handle: "alarms" }, { "x-forwarded-for": "203.0.113.7" });
  assert.deepEqual([answer.status, answer.body], [202, { scheduled: [], idle: ["plant1/alarms"] }]);
}, { trustedProxies: ["127.0.0.1"], notifyFrom: "any" });

withPlant(
  "with tokens, a notify needs a Bearer token whose notify patterns cover every topic it names",
  async ({ app }) => {
    const bearer = (token: string) => ({ authorization: `Bearer ${token}` });
    const reader = await signToken({ topics: ["plant1/*/*"] });
    const client = await subscriber(app, "plant1/tanks/north", bearer(reader));
    const north = { topics: ["plant1/tanks/north"] };

    const none = await notify(app, north);
    assert.deepEqual([none.status, none.headers.get("www-authenticate"), none.body], [401, "Bearer", {
      error: "send a token as Authorization: Bearer <token>",
      code: "UNAUTHENTICATED",
    }]);
    const query = await notify(app, north, {}, { path: `/notify?token=${reader}` });
    assert.deepEqual([query.status, query.body], [401, {
      error: "send a token as Authorization: Bearer <token> (?token= is not accepted here)",
      code: "UNAUTHENTICATED",
    }]);
    const bad = await notify(app, north, bearer("not-a-key"));
    assert.deepEqual([bad.status, bad.body], [401, {
      error: "authentication failed: unknown API key or malformed token",
      code: "AUTH_FAILED",
    }]);
    // Reading is not notifying: a token without the claim may not notify at all.
    const readOnly = await notify(app, north, bearer(reader));
    assert.deepEqual([readOnly.status, readOnly.body], [403, {
      error: "your token does not grant notify for 'plant1/tanks/north'",
      code: "FORBIDDEN",
    }]);

    const northOnly = await signToken({ topics: [], notify: ["plant1/tanks/north"] });
    const granted = await notify(app, north, bearer(northOnly));
    assert.deepEqual([granted.status, granted.body], [202, { scheduled: ["plant1/tanks"], idle: [] }]);
    const wider = await notify(
      app,
      { topics: ["plant1/tanks/north", "plant1/tanks/south"] },
      bearer(northOnly),
    );
    assert.deepEqual([wider.status, wider.body], [403, {
      error: "your token does not grant notify for 'plant1/tanks/south'",
      code: "FORBIDDEN",
    }]);
    const group = await notify(app, { db: "plant1", handle: "tanks" }, bearer(northOnly));
    assert.deepEqual([group.status, group.body], [403, {
      error: "your token does not grant notify for 'plant1/tanks/*'",
      code: "FORBIDDEN",
    }]);
    const allTanks = await signToken({ topics: [], notify: ["*/tanks/*"] });
    const whole = await notify(app, { db: "plant1", handle: "tanks" }, bearer(allTanks));
    assert.deepEqual([whole.status, whole.body], [202, { scheduled: ["plant1/tanks"], idle: [] }]);

    // An API key's own notify list.
    const alarms = await notify(app, { db: "plant1", handle: "alarms" }, bearer(API_KEY));
    assert.deepEqual([alarms.status, alarms.body], [202, { scheduled: [], idle: ["plant1/alarms"] }]);
    const keyTanks = await notify(app, north, bearer(API_KEY));
    assert.deepEqual([keyTanks.status, keyTanks.body], [403, {
      error: "your token does not grant notify for 'plant1/tanks/north'",
      code: "FORBIDDEN",
    }]);
    // With tokens, being local is not enough: the first refusal above came over loopback.
    const counted = (result: string) => app.metrics.value("gatecast_notifies_total", { result });
    assert.deepEqual(["unauthorized", "forbidden", "scheduled"].map(counted), [3, 4, 3]);
    await client.close();
  },
  {
    auth: tokenAuth({
      apiKeys: [{
        name: "writer",
        sha256: await sha256Hex(API_KEY),
        topics: [],
        notify: ["plant1/alarms"],
      }],
    }),
  },
);
