import assert from "node:assert/strict";
import {
  AddressCounter,
  connectionCap,
  FrameRate,
  readOpenFileLimit,
  RESERVED_DESCRIPTORS,
} from "../lib/limits.ts";

Deno.test("the frame bucket allows a burst of its rate, then refills at its rate", () => {
  let now = 0;
  const bucket = new FrameRate(10, () => now);
  for (let i = 0; i < 10; i++) assert.equal(bucket.take(), true, `frame ${i}`);
  assert.equal(bucket.take(), false);
  now = 100; // 0.1 s refills one frame
  assert.equal(bucket.take(), true);
  assert.equal(bucket.take(), false);
  now = 60_000; // a long pause refills to the burst size, not beyond
  for (let i = 0; i < 10; i++) assert.equal(bucket.take(), true);
  assert.equal(bucket.take(), false);
});

Deno.test("an address holds at most its maximum of connections and gets slots back on release", () => {
  const counter = new AddressCounter();
  assert.equal(counter.acquire("203.0.113.7", 2), true);
  assert.equal(counter.acquire("203.0.113.7", 2), true);
  assert.equal(counter.acquire("203.0.113.7", 2), false);
  assert.equal(counter.acquire("198.51.100.1", 2), true);
  counter.release("203.0.113.7");
  assert.equal(counter.count("203.0.113.7"), 1);
  assert.equal(counter.acquire("203.0.113.7", 2), true);
  counter.release("198.51.100.1");
  assert.equal(counter.count("198.51.100.1"), 0);
});

Deno.test("the connection cap stays below the open-file limit, with a reserve", () => {
  assert.equal(connectionCap(10_000, 1024), 1024 - RESERVED_DESCRIPTORS - 103);
  assert.equal(connectionCap(500, 1024), 500);
  assert.equal(connectionCap(10_000, 20_000), 10_000);
  assert.equal(connectionCap(10_000, 100), 1);
  assert.equal(connectionCap(10_000, undefined), 10_000);
});

Deno.test("the open-file limit is read from /proc/self/limits", async () => {
  const shell = await new Deno.Command("sh", { args: ["-c", "ulimit -n"] }).output();
  const expected = Number(new TextDecoder().decode(shell.stdout).trim());
  assert.equal(readOpenFileLimit(), expected);
});
