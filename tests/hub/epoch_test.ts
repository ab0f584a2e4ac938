/**
 * Epochs: every one made is new, names this process, and carries a cluster lease's fencing
 * counter in front when given one.
 */

import assert from "node:assert/strict";
import { newEpoch } from "../../lib/hub/epoch.ts";

Deno.test("every epoch is new: the process's start and random part, then a count that goes up", () => {
  const epochs = Array.from({ length: 100 }, () => newEpoch());
  assert.equal(new Set(epochs).size, 100);
  for (const epoch of epochs) assert.match(epoch, /^[0-9a-z]+-[0-9a-z]+\.[0-9]+$/);
  const process = epochs[0].slice(0, epochs[0].lastIndexOf("."));
  assert.ok(epochs.every((epoch) => epoch.startsWith(process + ".")));
  const counts = epochs.map((epoch) => Number(epoch.slice(process.length + 1)));
  assert.deepEqual(counts, counts.map((_, i) => counts[0] + i));
});

Deno.test("a prefix (a lease's fencing counter) comes first; an empty one is left out", () => {
  const plain = newEpoch("");
  const fenced = newEpoch("17");
  assert.match(plain, /^[0-9a-z]+-[0-9a-z]+\.[0-9]+$/);
  assert.match(fenced, /^17\.[0-9a-z]+-[0-9a-z]+\.[0-9]+$/);
  assert.notEqual(fenced.slice("17.".length), plain);
});
