/**
 * `/healthz`'s report: healthy while every database had a good poll within three intervals; and
 * a running server whose MariaDB goes away and comes back, with the log lines an operator sees.
 */

import assert from "node:assert/strict";
import mysql from "mysql2/promise";
import { healthReport } from "../../lib/ops/health.ts";
import type { DatabaseHealth } from "../../lib/hub/poller.ts";
import { startThrowawayMariadb } from "../support/mysql.ts";
import { startTestApp, waitFor } from "../support/app.ts";

const NOW = Date.UTC(2025, 10, 26, 12, 0, 0);
const STARTED = NOW - 90_500;

function dbs(entries: Record<string, DatabaseHealth>): Map<string, DatabaseHealth> {
  return new Map(Object.entries(entries));
}

Deno.test("a database's binlog status is shown beside its polls and never makes it unhealthy", () => {
  const report = healthReport({
    now: NOW,
    startedAt: STARTED,
    intervalMs: 1000,
    connections: 0,
    topics: 0,
    databases: dbs({
      plant1: { lastGoodPoll: NOW - 500, error: undefined },
      plant2: { lastGoodPoll: NOW - 500, error: undefined },
      plant3: { lastGoodPoll: NOW - 500, error: undefined },
    }),
    binlog: new Map([["plant1", "following"], [
      "plant2",
      "retrying: Connection lost: The server closed the connection.",
    ]]),
  });
  assert.equal(report.status, "ok");
  assert.deepEqual(Object.entries(report.databases).map(([code, db]) => [code, db.healthy, db.binlog]), [
    ["plant1", true, "following"],
    ["plant2", true, "retrying: Connection lost: The server closed the connection."],
    ["plant3", true, undefined],
  ]);
  assert.ok(!("binlog" in report.databases.plant3));
});

Deno.test("every database polled within three intervals is ok, with the counts and uptime", () => {
  const report = healthReport({
    now: NOW,
    startedAt: STARTED,
    intervalMs: 1000,
    connections: 4,
    topics: 2,
    databases: dbs({
      plant1: { lastGoodPoll: NOW - 500, error: undefined },
      plant2: { lastGoodPoll: NOW - 3000, error: undefined },
    }),
  });
  assert.deepEqual(report, {
    status: "ok",
    uptimeSeconds: 91,
    connections: 4,
    topics: 2,
    databases: {
      plant1: { lastGoodPoll: new Date(NOW - 500).toISOString(), healthy: true },
      plant2: { lastGoodPoll: new Date(NOW - 3000).toISOString(), healthy: true },
    },
  });
});

Deno.test("a database whose last good poll is older than three intervals makes the server degraded", () => {
  const report = healthReport({
    now: NOW,
    startedAt: STARTED,
    intervalMs: 1000,
    connections: 0,
    topics: 0,
    databases: dbs({
      plant1: { lastGoodPoll: NOW - 100, error: undefined },
      plant2: { lastGoodPoll: NOW - 3001, error: "database 'plant2' is unavailable: ECONNREFUSED" },
    }),
  });
  assert.equal(report.status, "degraded");
  assert.deepEqual(report.databases.plant1.healthy, true);
  assert.deepEqual(report.databases.plant2, {
    lastGoodPoll: new Date(NOW - 3001).toISOString(),
    healthy: false,
    error: "database 'plant2' is unavailable: ECONNREFUSED",
  });
});

Deno.test("a database never polled successfully is unhealthy with lastGoodPoll null", () => {
  const report = healthReport({
    now: NOW,
    startedAt: NOW,
    intervalMs: 1000,
    connections: 0,
    topics: 0,
    databases: dbs({ plant1: { lastGoodPoll: 0, error: undefined } }),
  });
  assert.equal(report.status, "degraded");
  assert.deepEqual(report.databases, { plant1: { lastGoodPoll: null, healthy: false } });
  assert.equal(report.uptimeSeconds, 0);
});

Deno.test("with no databases configured the server is ok", () => {
  const report = healthReport({
    now: NOW,
    startedAt: STARTED,
    intervalMs: 1000,
    connections: 0,
    topics: 0,
    databases: new Map(),
  });
  assert.equal(report.status, "ok");
  assert.deepEqual(report.databases, {});
});

Deno.test("every configured database is listed, also those after an unhealthy one", () => {
  const report = healthReport({
    now: NOW,
    startedAt: STARTED,
    intervalMs: 100,
    connections: 0,
    topics: 0,
    databases: dbs({
      a: { lastGoodPoll: 0, error: "x" },
      b: { lastGoodPoll: NOW, error: undefined },
    }),
  });
  assert.deepEqual(Object.keys(report.databases), ["a", "b"]);
  assert.equal(report.databases.b.healthy, true);
});

const T0 = Date.parse("2026-11-26T03:00:00.000Z");

Deno.test("a database is healthy up to exactly three intervals after its last good poll, then degraded", () => {
  const at = (lastGoodPoll: number, error?: string) => new Map([["plant1", { lastGoodPoll, error }]]);
  assert.deepEqual(
    healthReport({
      now: T0 + 3000,
      startedAt: T0 - 60_000,
      intervalMs: 1000,
      connections: 4,
      topics: 2,
      databases: at(T0),
    }),
    {
      status: "ok",
      uptimeSeconds: 63,
      connections: 4,
      topics: 2,
      databases: { plant1: { lastGoodPoll: "2026-11-26T03:00:00.000Z", healthy: true } },
    },
  );
  assert.deepEqual(
    healthReport({
      now: T0 + 3001,
      startedAt: T0 - 60_000,
      intervalMs: 1000,
      connections: 4,
      topics: 2,
      databases: at(T0, "down"),
    }),
    {
      status: "degraded",
      uptimeSeconds: 63,
      connections: 4,
      topics: 2,
      databases: { plant1: { lastGoodPoll: "2026-11-26T03:00:00.000Z", healthy: false, error: "down" } },
    },
  );
});

Deno.test("GET /healthz turns 503 three intervals after MariaDB stops and 200 once it is back; the log says warn then info", async () => {
  const server = await startThrowawayMariadb();
  const admin = await mysql.createConnection(server.info);
  await admin.query("CREATE DATABASE iot");
  await admin.end();
  const app = await startTestApp({ plant1: { ...server.info, database: "iot" } }, { pollIntervalMs: 200 });
  const health = async () => {
    const response = await fetch(`${app.httpUrl}/healthz`);
    return { status: response.status, body: await response.json() };
  };
  try {
    await waitFor("healthy", async () => (await health()).status === 200);
    const ok = await health();
    assert.deepEqual(Object.keys(ok.body), ["status", "uptimeSeconds", "connections", "topics", "databases"]);
    assert.deepEqual(ok.body.status, "ok");
    assert.deepEqual(ok.body.databases.plant1.healthy, true);

    await server.stop();
    const stoppedAt = Date.now();
    await waitFor("degraded", async () => (await health()).status === 503, 10_000);
    // Not before three intervals (600 ms) without a good poll.
    assert.ok(Date.now() - stoppedAt >= 400, `503 after ${Date.now() - stoppedAt} ms`);
    const bad = await health();
    assert.deepEqual(bad.body.status, "degraded");
    assert.deepEqual(bad.body.databases.plant1.healthy, false);
    assert.match(bad.body.databases.plant1.error, /^database 'plant1' is unavailable: /);

    await server.restart();
    await waitFor("healthy again", async () => (await health()).status === 200, 15_000);

    const dbLines = app.logs.filter((l) => l.db === "plant1").map((l) => [l.level, l.msg]);
    assert.deepEqual(dbLines, [["warn", "database failing"], ["info", "database recovered"]]);
    const failing = app.logs.find((l) => l.msg === "database failing")!;
    assert.match(String(failing.error), /^database 'plant1' is unavailable: /);
  } finally {
    await app.stop();
    await server.stop();
    await Deno.remove(server.dir, { recursive: true }).catch(() => {});
  }
});
