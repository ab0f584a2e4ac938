/**
 * The retry delay of a failing database: doubling from one interval, capped, reset by a success,
 * and kept across a change of interval or cap.
 */

import assert from "node:assert/strict";
import { RetryBackoff, retryCap } from "../../lib/ops/backoff.ts";
import { parseConfig } from "../../lib/config/config.ts";

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

Deno.test("the retry cap is dbRetryMaxMs, or twice the poll interval when it is 0", () => {
  const config = (settings: Record<string, unknown>) =>
    parseConfig({ auth: { mode: "none" }, databases: {}, ...settings }, () => undefined);
  assert.deepEqual(retryCap(config({ pollIntervalMs: 700 })), 1400);
  assert.deepEqual(retryCap(config({ pollIntervalMs: 700, dbRetryMaxMs: 5000 })), 5000);
});

Deno.test("a new interval and cap keep a failing database failing and replan its next attempt", () => {
  const backoff = new RetryBackoff(1000, 4000);
  backoff.failed(0);
  backoff.failed(0); // next attempt: 2000 ms after, due at 1500
  backoff.retime(500, 4000); // two failures at 500 ms: 1000 ms after, due at 750
  assert.deepEqual(backoff.failureCount, 2);
  assert.deepEqual([backoff.ready(700), backoff.ready(750)], [false, true]);
  backoff.retime(1000, 1500); // capped at 1500 ms, due at 1000
  assert.deepEqual([backoff.ready(999), backoff.ready(1000)], [false, true]);
  assert.deepEqual(backoff.failed(1000), 1500); // the third failure doubles on, under the new cap
});
