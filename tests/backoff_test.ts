/**
 * The retry delay of a failing database: doubling from one interval, capped, reset by a success.
 */

import assert from "node:assert/strict";
import { RetryBackoff } from "../lib/backoff.ts";

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
