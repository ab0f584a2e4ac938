/**
 * Metrics: counters, gauges and histograms, and their Prometheus text rendering; and `/metrics`
 * of a running server (connections, subscriptions, topics, ticks, queries and their durations and
 * errors per database, frames and UTF-8 bytes sent, clients dropped by reason), checked against
 * what real clients received.
 */

import assert from "node:assert/strict";
import { DURATION_BUCKETS, METRIC_FAMILIES, Metrics } from "../../lib/ops/metrics.ts";
import { createTestDatabase, freePort } from "../support/mysql.ts";
import { waitFor, withTestApp } from "../support/app.ts";
import { TestClient } from "../support/ws_client.ts";

/** A set holding only the named families of METRIC_FAMILIES, in the order given. */
function only(...names: string[]): Metrics {
  return new Metrics(names.map((name) => METRIC_FAMILIES.find((f) => f.name === name)!));
}

Deno.test("a counter starts at 0 and adds 1 or the amount given, per label set", () => {
  const metrics = only("gatecast_db_queries_total");
  assert.equal(metrics.value("gatecast_db_queries_total", { db: "plant1" }), 0);
  metrics.inc("gatecast_db_queries_total", { db: "plant1" });
  metrics.inc("gatecast_db_queries_total", { db: "plant1" }, 2);
  metrics.inc("gatecast_db_queries_total", { db: "plant2" });
  assert.equal(metrics.value("gatecast_db_queries_total", { db: "plant1" }), 3);
  assert.equal(metrics.value("gatecast_db_queries_total", { db: "plant2" }), 1);
  assert.equal(metrics.value("gatecast_db_queries_total"), 0);
});

Deno.test("a resolved counter adds to the same series as inc, and an undeclared one throws", () => {
  const metrics = only("gatecast_db_queries_total");
  const plant1 = metrics.counter("gatecast_db_queries_total", { db: "plant1" });
  plant1.add();
  plant1.add(4);
  metrics.inc("gatecast_db_queries_total", { db: "plant1" });
  assert.equal(metrics.value("gatecast_db_queries_total", { db: "plant1" }), 6);
  assert.match(metrics.render(), /^gatecast_db_queries_total\{db="plant1"\} 6$/m);
  assert.throws(() => metrics.counter("gatecast_nope_total"), /not declared/);
});

Deno.test("counters render with HELP, TYPE and one line per label set", () => {
  const metrics = new Metrics([
    { name: "gatecast_ticks_total", type: "counter", help: "Poll ticks run." },
    { name: "gatecast_poll_errors_total", type: "counter", help: "Failed polls, per database.", initial: [] },
  ]);
  metrics.inc("gatecast_ticks_total");
  metrics.inc("gatecast_poll_errors_total", { db: "plant1" }, 4);
  assert.equal(
    metrics.render(),
    [
      "# HELP gatecast_ticks_total Poll ticks run.",
      "# TYPE gatecast_ticks_total counter",
      "gatecast_ticks_total 1",
      "# HELP gatecast_poll_errors_total Failed polls, per database.",
      "# TYPE gatecast_poll_errors_total counter",
      'gatecast_poll_errors_total{db="plant1"} 4',
      "",
    ].join("\n"),
  );
});

Deno.test("several labels render in the order given", () => {
  const metrics = new Metrics([{
    name: "gatecast_ticks_skipped_total",
    type: "counter",
    help: "Skipped.",
    initial: [],
  }]);
  metrics.inc("gatecast_ticks_skipped_total", { db: "plant1", handle: "real" });
  assert.ok(metrics.render().includes('gatecast_ticks_skipped_total{db="plant1",handle="real"} 1\n'));
  assert.equal(metrics.value("gatecast_ticks_skipped_total", { db: "plant1", handle: "real" }), 1);
});

Deno.test("label values escape backslash, double quote and newline", () => {
  const metrics = new Metrics([{ name: "x_total", type: "counter", help: "X.", initial: [] }]);
  metrics.inc("x_total", { db: 'a"b\\c\nd' });
  assert.ok(metrics.render().includes('x_total{db="a\\"b\\\\c\\nd"} 1\n'), metrics.render());
});

Deno.test("a gauge is read when rendered and when its value is asked for", () => {
  const metrics = only("gatecast_connections");
  let connections = 2;
  metrics.gauge("gatecast_connections", () => connections);
  assert.equal(metrics.value("gatecast_connections"), 2);
  connections = 7;
  assert.equal(metrics.value("gatecast_connections"), 7);
  assert.equal(
    metrics.render(),
    "# HELP gatecast_connections Open client connections: WebSockets (v1, legacy, WAMP) and event streams.\n# TYPE gatecast_connections gauge\ngatecast_connections 7\n",
  );
});

Deno.test("a histogram renders cumulative buckets, +Inf, sum and count", () => {
  const metrics = only("gatecast_poll_duration_seconds");
  metrics.observe("gatecast_poll_duration_seconds", { db: "plant1" }, 0.02);
  metrics.observe("gatecast_poll_duration_seconds", { db: "plant1" }, 20);
  const lines = metrics.render().trimEnd().split("\n");
  assert.deepEqual(lines.slice(0, 2), [
    "# HELP gatecast_poll_duration_seconds Duration of one group poll.",
    "# TYPE gatecast_poll_duration_seconds histogram",
  ]);
  const buckets = DURATION_BUCKETS.map((bound) =>
    `gatecast_poll_duration_seconds_bucket{db="plant1",le="${bound}"} ${bound >= 0.02 ? 1 : 0}`
  );
  assert.deepEqual(lines.slice(2), [
    ...buckets,
    'gatecast_poll_duration_seconds_bucket{db="plant1",le="+Inf"} 2',
    'gatecast_poll_duration_seconds_sum{db="plant1"} 20.02',
    'gatecast_poll_duration_seconds_count{db="plant1"} 2',
  ]);
  assert.equal(metrics.value("gatecast_poll_duration_seconds", { db: "plant1" }), 2);
});

Deno.test("an observation exactly on a bound counts in that bucket", () => {
  const metrics = new Metrics([{ name: "h", type: "histogram", help: "H." }]);
  metrics.observe("h", {}, 0.1);
  assert.ok(metrics.render().includes('h_bucket{le="0.1"} 1\n'));
  assert.ok(metrics.render().includes('h_bucket{le="0.05"} 0\n'));
});

Deno.test("the duration buckets are increasing, from 1 ms to 10 s", () => {
  assert.equal(DURATION_BUCKETS[0], 0.001);
  assert.equal(DURATION_BUCKETS.at(-1), 10);
  for (let i = 1; i < DURATION_BUCKETS.length; i++) assert.ok(DURATION_BUCKETS[i] > DURATION_BUCKETS[i - 1]);
});

Deno.test("no metrics render as a single newline", () => {
  assert.equal(new Metrics().render(), "\n");
});

Deno.test("a metric that is not declared, or used as another type, is a programming error", () => {
  const metrics = only("gatecast_ticks_total");
  assert.throws(
    () => metrics.inc("gatecast_tick_total"),
    new Error("metric gatecast_tick_total is not declared"),
  );
  assert.throws(
    () => metrics.observe("gatecast_ticks_total", {}, 1),
    new Error("metric gatecast_ticks_total is a counter, not a histogram"),
  );
});

Deno.test("a new Metrics lists every declared family; counters start at 0 with their initial labels", () => {
  const metrics = new Metrics([
    { name: "t_ticks_total", type: "counter", help: "Ticks." },
    {
      name: "t_dropped_total",
      type: "counter",
      help: "Drops.",
      initial: [{ reason: "slow" }, { reason: "big" }],
    },
    { name: "t_wait_seconds", type: "histogram", help: "Waits." },
    { name: "t_open", type: "gauge", help: "Open." },
  ]);
  assert.deepEqual(
    metrics.render(),
    [
      "# HELP t_ticks_total Ticks.",
      "# TYPE t_ticks_total counter",
      "t_ticks_total 0",
      "# HELP t_dropped_total Drops.",
      "# TYPE t_dropped_total counter",
      't_dropped_total{reason="slow"} 0',
      't_dropped_total{reason="big"} 0',
      "# HELP t_wait_seconds Waits.",
      "# TYPE t_wait_seconds histogram",
      "# HELP t_open Open.",
      "# TYPE t_open gauge",
      "",
    ].join("\n"),
  );
});

/** Parses Prometheus text into "name{labels}" → value, skipping comments. */
function parseMetrics(text: string): Map<string, number> {
  const values = new Map<string, number>();
  for (const line of text.split("\n")) {
    if (line === "" || line.startsWith("#")) continue;
    const space = line.lastIndexOf(" ");
    values.set(line.slice(0, space), Number(line.slice(space + 1)));
  }
  return values;
}

Deno.test("GET /metrics counts what real clients received, per database, and every family the issue names", async () => {
  const db = await createTestDatabase();
  await db.addPoints([
    { unit: 5, code: "ua", address: "K1", showId: 1, rename: "Kessel 1 Temperatur (°C)" },
    { unit: 5, code: "state", address: "K1", showId: 2, rename: "Kessel 1 Zustand" },
  ]);
  await db.setData("K1", { ua: 80, state: "läuft" });
  // `down` points at a port nobody listens on: its probes fail.
  const down = { host: "127.0.0.1", port: freePort(), user: "x", password: "y", database: "z" };
  const received: string[] = [];
  await withTestApp(db, { plant1: db.settings, down }, async (app) => {
    const first = app.metrics.render();
    for (const family of METRIC_FAMILIES) {
      assert.match(first, new RegExp(`^# TYPE ${family.name} ${family.type}$`, "m"));
    }
    for (
      const name of [
        "gatecast_connections",
        "gatecast_subscriptions",
        "gatecast_topics",
        "gatecast_ticks_total",
        "gatecast_ticks_skipped_total",
        "gatecast_db_queries_total",
        "gatecast_db_query_duration_seconds",
        "gatecast_db_query_errors_total",
        "gatecast_frames_sent_total",
        "gatecast_sent_bytes_total",
        "gatecast_clients_dropped_total",
      ]
    ) assert.match(first, new RegExp(`^# HELP ${name} `, "m"));

    const client = await TestClient.open(app.wsUrl, "gatecast.v1");
    client.send({ type: "subscribe", id: 1, topic: "plant1/real/5" });
    received.push(await client.nextText(), await client.nextText());
    await db.query("UPDATE device_data_real SET state = 'gestört ⚠' WHERE equip_address = 'K1'");
    received.push(await client.nextText());
    client.send({ type: "subscribe", id: 2, topic: "plant1/bogus/5" });
    received.push(await client.nextText());
    assert.deepEqual(JSON.parse(received[3]).code, "UNKNOWN_HANDLE");

    const big = await TestClient.open(app.wsUrl, "gatecast.v1");
    big.send("x".repeat(300));
    assert.deepEqual((await big.closed).code, 1009);
    await waitFor(
      "the down database to fail a probe",
      () => app.metrics.value("gatecast_db_query_errors_total", { db: "down", failure: "unavailable" }) >= 1,
    );

    const response = await fetch(`${app.httpUrl}/metrics`);
    assert.deepEqual(response.headers.get("content-type"), "text/plain; version=0.0.4; charset=utf-8");
    const m = parseMetrics(await response.text());
    assert.deepEqual(m.get("gatecast_connections"), 1);
    assert.deepEqual(m.get("gatecast_subscriptions"), 1);
    assert.deepEqual(m.get("gatecast_topics"), 1);
    assert.deepEqual(m.get("gatecast_frames_sent_total"), 4);
    const bytes = received.reduce((sum, text) => sum + new TextEncoder().encode(text).length, 0);
    assert.ok(bytes > received.join("").length, "the frames hold non-ASCII text");
    assert.deepEqual(m.get("gatecast_sent_bytes_total"), bytes);
    assert.deepEqual(m.get('gatecast_clients_dropped_total{reason="frame_too_big"}'), 1);
    assert.deepEqual(m.get('gatecast_clients_dropped_total{reason="slow_hard_limit"}'), 0);
    assert.deepEqual(m.get('gatecast_clients_dropped_total{reason="slow_grace_expired"}'), 0);
    assert.deepEqual(m.get('gatecast_clients_dropped_total{reason="policy"}'), 0);
    assert.deepEqual(m.get('gatecast_client_errors_total{code="UNKNOWN_HANDLE"}'), 1);
    assert.ok(m.get("gatecast_ticks_total")! >= 1);

    const queries = m.get('gatecast_db_queries_total{db="plant1"}')!;
    assert.ok(queries >= 4, `plant1 ran ${queries} queries`); // at least the first poll and the update's
    assert.deepEqual(m.get('gatecast_db_query_duration_seconds_count{db="plant1"}'), queries);
    assert.deepEqual(m.get('gatecast_db_query_duration_seconds_bucket{db="plant1",le="+Inf"}'), queries);
    assert.deepEqual(m.get('gatecast_db_query_errors_total{db="plant1",failure="unavailable"}'), 0);
    assert.deepEqual(m.get('gatecast_poll_errors_total{db="plant1"}'), 0);
    const downQueries = m.get('gatecast_db_queries_total{db="down"}')!;
    assert.ok(downQueries >= 1);
    assert.deepEqual(m.get('gatecast_db_query_errors_total{db="down",failure="unavailable"}'), downQueries);
    assert.deepEqual(m.get('gatecast_db_query_duration_seconds_count{db="down"}'), downQueries);
    await client.close();
  }, { pollIntervalMs: 100, maxFrameBytes: 256 });
});

Deno.test("a legacy client closed for an unknown database counts as dropped for policy", async () => {
  const db = await createTestDatabase();
  await withTestApp(db, { plant1: db.settings }, async (app) => {
    const legacy = await TestClient.open(`ws://127.0.0.1:${app.port}/`);
    legacy.send({ unit_id: 1, handle: "real", db_code: "plant9", config: "" });
    assert.deepEqual((await legacy.closed).code, 1008);
    assert.deepEqual(app.metrics.value("gatecast_clients_dropped_total", { reason: "policy" }), 1);
  });
});
