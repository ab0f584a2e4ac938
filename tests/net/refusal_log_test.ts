/**
 * The refused-upgrades log, on a hand-driven timer: the first refusal of a burst at once, one
 * summary per interval while refusals go on, nothing when quiet, and bounded memory under a
 * flood from many addresses. The flood over real sockets is in server_test.ts.
 */

import assert from "node:assert/strict";
import { Logger } from "../../lib/ops/log.ts";
import { REFUSAL_ADDRESSES_TRACKED, RefusalLog, type Timers } from "../../lib/net/refusal_log.ts";

/** Timers that fire only when the test says so. */
class HandTimers implements Timers {
  private next = 1;
  readonly pending = new Map<number, { fn: () => void; ms: number }>();
  set(fn: () => void, ms: number): number {
    this.pending.set(this.next, { fn, ms });
    return this.next++;
  }
  clear(handle: unknown): void {
    this.pending.delete(handle as number);
  }
  /** Fires the one pending timer. */
  fire(): void {
    assert.equal(this.pending.size, 1, "one timer pending");
    const [[handle, { fn }]] = this.pending;
    this.pending.delete(handle);
    fn();
  }
}

function setUp() {
  const lines: Record<string, unknown>[] = [];
  const timers = new HandTimers();
  const log = new RefusalLog({
    logger: new Logger("info", (line) => {
      const { time: _, ...rest } = JSON.parse(line);
      lines.push(rest);
    }),
    intervalMs: 10_000,
    timers,
  });
  return { lines, timers, log };
}

Deno.test("the first refusal of a burst is logged at once, the rest in one summary per interval, nothing when quiet", () => {
  const { lines, timers, log } = setUp();
  log.record("connection_cap", "203.0.113.7");
  assert.deepEqual(lines[0], {
    level: "info",
    msg: "upgrade refused",
    remote: "203.0.113.7",
    reason: "connection_cap",
  });
  assert.equal(lines.length, 1);
  assert.equal([...timers.pending.values()][0].ms, 10_000);
  for (let i = 0; i < 40; i++) log.record("connection_cap", "203.0.113.7");
  log.record("origin", "198.51.100.2");
  assert.equal(lines.length, 1);
  timers.fire();
  assert.deepEqual(lines[1], {
    level: "info",
    msg: "upgrades refused",
    refused: 41,
    intervalMs: 10_000,
    byReason: "connection_cap=40 origin=1",
    addresses: 2,
    topAddresses: "203.0.113.7=40 198.51.100.2=1",
  });
  log.record("connection_cap", "203.0.113.7");
  timers.fire();
  assert.equal(lines.length, 3);
  assert.equal(lines[2].refused, 1);
  // A quiet interval ends the burst without a line and leaves no timer.
  timers.fire();
  assert.equal(lines.length, 3);
  assert.equal(timers.pending.size, 0);
  // The next refusal starts a new burst: logged at once.
  log.record("auth_failed", "192.0.2.1");
  assert.deepEqual(lines[3], {
    level: "info",
    msg: "upgrade refused",
    remote: "192.0.2.1",
    reason: "auth_failed",
  });
  assert.equal(timers.pending.size, 1);
});

Deno.test("a summary names at most five addresses, those refused most first", () => {
  const { lines, timers, log } = setUp();
  log.record("max_connections_per_address", "10.0.0.1");
  for (let a = 1; a <= 7; a++) {
    for (let i = 0; i < a; i++) log.record("max_connections_per_address", `10.0.0.${a}`);
  }
  timers.fire();
  assert.equal(lines[1].refused, 28);
  assert.equal(lines[1].addresses, 7);
  assert.equal(lines[1].topAddresses, "10.0.0.7=7 10.0.0.6=6 10.0.0.5=5 10.0.0.4=4 10.0.0.3=3");
});

Deno.test("a flood from more addresses than are tracked is counted in full, the further ones apart", () => {
  const { lines, timers, log } = setUp();
  log.record("connection_cap", "first");
  const total = REFUSAL_ADDRESSES_TRACKED + 250;
  for (let i = 0; i < total; i++) log.record("connection_cap", `address-${i}`);
  timers.fire();
  assert.equal(lines[1].refused, total);
  assert.equal(lines[1].byReason, `connection_cap=${total}`);
  assert.equal(lines[1].addresses, REFUSAL_ADDRESSES_TRACKED);
  assert.equal(lines[1].untrackedRefusals, 250);
});

Deno.test("flush logs what was counted and leaves no timer; with nothing counted it logs nothing", () => {
  const { lines, timers, log } = setUp();
  log.record("shutting_down", "127.0.0.1");
  log.record("shutting_down", "127.0.0.1");
  log.flush();
  assert.equal(timers.pending.size, 0);
  assert.deepEqual(lines.map((line) => [line.msg, line.refused]), [
    ["upgrade refused", undefined],
    ["upgrades refused", 1],
  ]);
  log.flush();
  assert.equal(lines.length, 2);
  log.record("shutting_down", "127.0.0.1");
  assert.equal(lines.length, 3, "after a flush the next refusal is logged at once");
  log.flush();
  assert.equal(lines.length, 3);
});
