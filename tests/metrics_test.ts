/**
 * Metrics: counters, gauges and histograms, and their Prometheus text rendering.
 */

import assert from "node:assert/strict";
import { DURATION_BUCKETS, Metrics } from "../lib/metrics.ts";

Deno.test("a counter starts at 0 and adds 1 or the amount given, per label set", () => {
  const metrics = new Metrics();
  assert.equal(metrics.value("gatecast_db_queries_total", { db: "plant1" }), 0);
  metrics.inc("gatecast_db_queries_total", "SQL queries run, per database.", { db: "plant1" });
  metrics.inc("gatecast_db_queries_total", "SQL queries run, per database.", { db: "plant1" }, 2);
  metrics.inc("gatecast_db_queries_total", "SQL queries run, per database.", { db: "plant2" });
  assert.equal(metrics.value("gatecast_db_queries_total", { db: "plant1" }), 3);
  assert.equal(metrics.value("gatecast_db_queries_total", { db: "plant2" }), 1);
  assert.equal(metrics.value("gatecast_db_queries_total"), 0);
});

Deno.test("counters render with HELP, TYPE and one line per label set", () => {
  const metrics = new Metrics();
  metrics.inc("gatecast_ticks_total", "Poll ticks run.");
  metrics.inc("gatecast_db_errors_total", "Failed polls, per database.", { db: "plant1" }, 4);
  assert.equal(
    metrics.render(),
    [
      "# HELP gatecast_ticks_total Poll ticks run.",
      "# TYPE gatecast_ticks_total counter",
      "gatecast_ticks_total 1",
      "# HELP gatecast_db_errors_total Failed polls, per database.",
      "# TYPE gatecast_db_errors_total counter",
      'gatecast_db_errors_total{db="plant1"} 4',
      "",
    ].join("\n"),
  );
});

Deno.test("several labels render in the order given", () => {
  const metrics = new Metrics();
  metrics.inc("gatecast_ticks_skipped_total", "Skipped.", { db: "plant1", handle: "real" });
  assert.ok(metrics.render().includes('gatecast_ticks_skipped_total{db="plant1",handle="real"} 1\n'));
  assert.equal(metrics.value("gatecast_ticks_skipped_total", { db: "plant1", handle: "real" }), 1);
});

Deno.test("label values escape backslash, double quote and newline", () => {
  const metrics = new Metrics();
  metrics.inc("x_total", "X.", { db: 'a"b\\c\nd' });
  assert.ok(metrics.render().includes('x_total{db="a\\"b\\\\c\\nd"} 1\n'), metrics.render());
});

Deno.test("a gauge is read when rendered and when its value is asked for", () => {
  const metrics = new Metrics();
  let connections = 2;
  metrics.gauge("gatecast_connections", "Open WebSocket connections.", () => connections);
  assert.equal(metrics.value("gatecast_connections"), 2);
  connections = 7;
  assert.equal(metrics.value("gatecast_connections"), 7);
  assert.equal(
    metrics.render(),
    "# HELP gatecast_connections Open WebSocket connections.\n# TYPE gatecast_connections gauge\ngatecast_connections 7\n",
  );
});

Deno.test("a histogram renders cumulative buckets, +Inf, sum and count", () => {
  const metrics = new Metrics();
  metrics.observe("gatecast_poll_duration_seconds", "Duration of one group poll.", { db: "plant1" }, 0.02);
  metrics.observe("gatecast_poll_duration_seconds", "Duration of one group poll.", { db: "plant1" }, 20);
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
  const metrics = new Metrics();
  metrics.observe("h", "H.", {}, 0.1);
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
