/**
 * The retry delay of a failing database: doubling from one interval, capped, reset by a success.
 */

import assert from "node:assert/strict";
import { RetryBackoff, retryCap } from "../lib/backoff.ts";
import { parseConfig } from "../lib/config.ts";

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
