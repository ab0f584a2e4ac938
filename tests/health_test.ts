/**
 * `/healthz`'s report: healthy while every database had a good poll within three intervals.
 */

import assert from "node:assert/strict";
import { healthReport } from "../lib/health.ts";
import type { DatabaseHealth } from "../lib/poller.ts";

const NOW = Date.UTC(2025, 10, 26, 12, 0, 0);
const STARTED = NOW - 90_500;

function dbs(entries: Record<string, DatabaseHealth>): Map<string, DatabaseHealth> {
  return new Map(Object.entries(entries));
}

Deno.test("every database polled within three intervals is ok, with the counts and uptime", () => {
  const report = healthReport(
    NOW,
    STARTED,
    1000,
    4,
    2,
    dbs({
      plant1: { lastGoodPoll: NOW - 500, error: undefined },
      plant2: { lastGoodPoll: NOW - 3000, error: undefined },
    }),
  );
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
  const report = healthReport(
    NOW,
    STARTED,
    1000,
    0,
    0,
    dbs({
      plant1: { lastGoodPoll: NOW - 100, error: undefined },
      plant2: { lastGoodPoll: NOW - 3001, error: "database 'plant2' is unavailable: ECONNREFUSED" },
    }),
  );
  assert.equal(report.status, "degraded");
  assert.deepEqual(report.databases.plant1.healthy, true);
  assert.deepEqual(report.databases.plant2, {
    lastGoodPoll: new Date(NOW - 3001).toISOString(),
    healthy: false,
    error: "database 'plant2' is unavailable: ECONNREFUSED",
  });
});

Deno.test("a database never polled successfully is unhealthy with lastGoodPoll null", () => {
  const report = healthReport(NOW, NOW, 1000, 0, 0, dbs({ plant1: { lastGoodPoll: 0, error: undefined } }));
  assert.equal(report.status, "degraded");
  assert.deepEqual(report.databases, { plant1: { lastGoodPoll: null, healthy: false } });
  assert.equal(report.uptimeSeconds, 0);
});

Deno.test("with no databases configured the server is ok", () => {
  const report = healthReport(NOW, STARTED, 1000, 0, 0, new Map());
  assert.equal(report.status, "ok");
  assert.deepEqual(report.databases, {});
});

Deno.test("every configured database is listed, also those after an unhealthy one", () => {
  const report = healthReport(
    NOW,
    STARTED,
    100,
    0,
    0,
    dbs({
      a: { lastGoodPoll: 0, error: "x" },
      b: { lastGoodPoll: NOW, error: undefined },
    }),
  );
  assert.deepEqual(Object.keys(report.databases), ["a", "b"]);
  assert.equal(report.databases.b.healthy, true);
});
