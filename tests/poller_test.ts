/**
 * The poller, with SQLite sources (the demo schema) and a real registry: one fetch per group
 * per tick, no overlapping polls of a group, failures isolated as `stale`, and immediate polls
 * for new topics.
 */

import assert from "node:assert/strict";
import { DatabaseSync } from "node:sqlite";
import { createDemoSchema } from "../lib/demo_plant.ts";
import type { Handle } from "../lib/handle.ts";
import { Logger } from "../lib/log.ts";
import { MeteredSource } from "../lib/metered_source.ts";
import { Metrics } from "../lib/metrics.ts";
import { Poller } from "../lib/poller.ts";
import { realHandle } from "../lib/real_handle.ts";
import { Registry } from "../lib/registry.ts";
import { type Row, type Source, SourceError, type SqlParam } from "../lib/source.ts";
import { SqliteSource } from "../lib/sqlite_source.ts";
import { parseTopic } from "../lib/topic.ts";
import { delay, waitFor } from "./support/app.ts";
import { FakePeer } from "./support/fake_peer.ts";

const HANDLES: ReadonlyMap<string, Handle> = new Map([["real", realHandle]]);

/** A demo-schema SQLite source whose SELECTs the test can count, hold back or fail. */
class ControlledSource implements Source {
  readonly sql: string[] = [];
  private readonly inner: SqliteSource;
  private gate: Promise<void> | undefined;
  /** When set, every SELECT rejects with it. */
  failure: SourceError | undefined;

  constructor(readonly code: string) {
    const db = new DatabaseSync(":memory:");
    createDemoSchema(db);
    this.inner = new SqliteSource(code, db);
  }

  /** Holds every SELECT from now on until the returned function is called. */
  hold(): () => void {
    const { promise, resolve } = Promise.withResolvers<void>();
    this.gate = promise;
    return () => {
      this.gate = undefined;
      resolve();
    };
  }

  /** Runs SQL on the database directly, as the plant would. */
  exec(sql: string): void {
    this.inner.db.exec(sql);
  }

  async select(sql: string, params: readonly SqlParam[]): Promise<Row[]> {
    this.sql.push(sql);
    if (this.gate) await this.gate;
    if (this.failure) throw this.failure;
    return this.inner.select(sql, params);
  }

  close(): Promise<void> {
    return this.inner.close();
  }
}

function setup(codes: string[], options: { wire?: boolean; intervalMs?: number } = {}) {
  const sources = new Map(codes.map((code) => [code, new ControlledSource(code)]));
  const metrics = new Metrics();
  const logs: Record<string, unknown>[] = [];
  const logger = new Logger("debug", (line) => logs.push(JSON.parse(line)));
  let poller: Poller | undefined = undefined;
  const registry = new Registry(options.wire ? (group) => poller!.pollNow(group) : undefined);
  // Queries are counted by the MeteredSource that app.ts wraps around every source.
  const metered = new Map([...sources].map(([code, source]) => [code, new MeteredSource(source, metrics)]));
  poller = new Poller(registry, metered, HANDLES, options.intervalMs ?? 60_000, metrics, logger);
  const subscribe = (topic: string) => {
    const peer = new FakePeer();
    registry.subscribe(parseTopic(topic), peer, false);
    return peer;
  };
  const cleanup = async () => {
    await poller.stop();
    for (const source of sources.values()) await source.close();
  };
  return { sources, metrics, logs, registry, poller, subscribe, cleanup };
}

function selects(source: ControlledSource): number {
  return source.sql.filter((sql) => sql !== "SELECT 1").length;
}

Deno.test("one tick polls each (database, handle) group once, whatever its number of units", async () => {
  const t = setup(["a", "b"]);
  try {
    const peers = [
      t.subscribe("a/real/1"),
      t.subscribe("a/real/2"),
      t.subscribe("a/real/3"),
      t.subscribe("b/real/2"),
    ];
    t.poller.tick();
    await t.poller.stop();
    assert.equal(selects(t.sources.get("a")!), 2);
    assert.equal(selects(t.sources.get("b")!), 2);
    assert.deepEqual(peers.map((p) => p.frames().map((f) => [f.type, f.seq, f.points.length])), [
      [["snapshot", 1, 10]],
      [["snapshot", 1, 15]],
      [["snapshot", 1, 5]],
      [["snapshot", 1, 15]],
    ]);
    assert.equal(t.metrics.value("gatecast_ticks_total"), 1);
    assert.equal(t.metrics.value("gatecast_db_queries_total", { db: "a" }), 2);
    assert.equal(t.metrics.value("gatecast_db_queries_total", { db: "b" }), 2);
    assert.equal(t.metrics.value("gatecast_poll_duration_seconds", { db: "a" }), 1);
    assert.ok(t.poller.health.get("a")!.lastGoodPoll > 0);
  } finally {
    await t.cleanup();
  }
});

Deno.test("a later tick sends updates with only the values that changed in the database", async () => {
  const t = setup(["a"]);
  try {
    const peer = t.subscribe("a/real/3");
    t.poller.tick();
    await t.poller.stop();
    t.sources.get("a")!.exec("UPDATE device_data_real SET ia = 12.5 WHERE equip_address = 'GW-301'");
    t.poller.tick();
    await t.poller.stop();
    t.poller.tick();
    await t.poller.stop();
    const [snapshot, update, ...rest] = peer.frames();
    assert.equal(snapshot.type, "snapshot");
    assert.deepEqual(rest, []);
    assert.deepEqual({ ...update, ts: undefined }, {
      type: "update",
      topic: "a/real/3",
      seq: 2,
      ts: undefined,
      changes: [{ address: "GW-301", code: "ia", value: 12.5 }],
    });
    assert.ok(update.ts >= snapshot.ts);
    assert.equal(selects(t.sources.get("a")!), 6);
  } finally {
    await t.cleanup();
  }
});

Deno.test("a database no topic uses is probed with SELECT 1, so that its health is known", async () => {
  const t = setup(["a", "idle"]);
  try {
    t.subscribe("a/real/1");
    t.sources.get("idle")!.failure = new SourceError(
      "idle",
      "unavailable",
      "database 'idle' is unavailable: ECONNREFUSED",
    );
    t.poller.tick();
    await t.poller.stop();
    assert.deepEqual(t.sources.get("idle")!.sql, ["SELECT 1"]);
    assert.deepEqual(t.poller.health.get("idle"), {
      lastGoodPoll: 0,
      error: "database 'idle' is unavailable: ECONNREFUSED",
    });
    assert.equal(t.poller.health.get("a")!.error, undefined);
    t.sources.get("idle")!.failure = undefined;
    t.poller.tick();
    await t.poller.stop();
    assert.equal(t.poller.health.get("idle")!.error, undefined);
    assert.ok(t.poller.health.get("idle")!.lastGoodPoll > 0);
  } finally {
    await t.cleanup();
  }
});

Deno.test("a group whose poll is still running is skipped by the tick and counted", async () => {
  const t = setup(["a"]);
  try {
    const peer = t.subscribe("a/real/1");
    const release = t.sources.get("a")!.hold();
    t.poller.tick();
    await delay(10);
    t.poller.tick();
    t.poller.tick();
    assert.equal(t.metrics.value("gatecast_ticks_skipped_total", { db: "a", handle: "real" }), 2);
    assert.equal(t.metrics.value("gatecast_ticks_total"), 3);
    assert.equal(selects(t.sources.get("a")!), 1); // the points query, held; values follow it
    assert.deepEqual(peer.sent, []);
    release();
    await t.poller.stop();
    assert.equal(selects(t.sources.get("a")!), 2);
    assert.deepEqual(peer.frames().map((f) => f.type), ["snapshot"]);
    assert.ok(t.metrics.render().includes('gatecast_ticks_skipped_total{db="a",handle="real"} 2\n'));
  } finally {
    await t.cleanup();
  }
});

Deno.test("a slow group does not hold back another database's group", async () => {
  const t = setup(["slow", "fast"]);
  try {
    t.subscribe("slow/real/1");
    const fast = t.subscribe("fast/real/1");
    const release = t.sources.get("slow")!.hold();
    t.poller.tick();
    await waitFor("the fast group's snapshot", () => fast.sent.length === 1, 1000);
    t.sources.get("fast")!.exec("UPDATE device_data_real SET ua = 1 WHERE equip_address = 'GW-101'");
    t.poller.tick();
    await waitFor("the fast group's update", () => fast.sent.length === 2, 1000);
    assert.equal(t.metrics.value("gatecast_ticks_skipped_total", { db: "slow", handle: "real" }), 1);
    assert.equal(t.metrics.value("gatecast_ticks_skipped_total", { db: "fast", handle: "real" }), 0);
    release();
  } finally {
    await t.cleanup();
  }
});

Deno.test("a failing source marks its topics stale once, keeps ticking, and recovers with a snapshot", async () => {
  const t = setup(["a", "b"], { intervalMs: 50 });
  try {
    const onA = t.subscribe("a/real/1");
    const onB = t.subscribe("b/real/1");
    const a = t.sources.get("a")!;
    a.failure = new SourceError("a", "unavailable", "database 'a' is unavailable: ECONNREFUSED");
    t.poller.start();
    await waitFor(
      "three failed polls",
      () => t.metrics.value("gatecast_poll_errors_total", { db: "a" }) >= 3,
    );
    assert.deepEqual(onA.frames(), [{
      type: "stale",
      topic: "a/real/1",
      code: "SOURCE_UNAVAILABLE",
      message: "database 'a' is unavailable: ECONNREFUSED",
    }]);
    assert.deepEqual(onB.frames().map((f) => f.type), ["snapshot"]);
    assert.deepEqual(t.poller.health.get("a"), {
      lastGoodPoll: 0,
      error: "database 'a' is unavailable: ECONNREFUSED",
    });
    a.failure = undefined;
    await waitFor("the recovery snapshot", () => onA.sent.length === 2);
    assert.deepEqual(onA.frames()[1].type, "snapshot");
    assert.deepEqual(onA.frames()[1].seq, 1);
    assert.equal(t.poller.health.get("a")!.error, undefined);
    const failing = t.logs.filter((l) => l.msg === "database failing");
    assert.deepEqual(failing.map((l) => [l.level, l.db, l.error]), [[
      "warn",
      "a",
      "database 'a' is unavailable: ECONNREFUSED",
    ]]);
    assert.deepEqual(t.logs.filter((l) => l.msg === "database recovered").map((l) => l.db), ["a"]);
  } finally {
    await t.cleanup();
  }
});

Deno.test("pollNow while the group's poll runs polls once more right after it, not once per call", async () => {
  const t = setup(["a"], { wire: true });
  try {
    const a = t.sources.get("a")!;
    const release = a.hold();
    const first = t.subscribe("a/real/1"); // the registry asks for an immediate poll
    await delay(10);
    assert.equal(selects(a), 1); // the points query, held
    const second = t.subscribe("a/real/2"); // arrives while the first poll runs
    t.poller.pollNow(t.registry.group("a/real")!);
    t.poller.pollNow(t.registry.group("a/real")!);
    assert.equal(selects(a), 1);
    release();
    await waitFor("the second subscriber's snapshot", () => second.sent.length === 1, 1000);
    await t.poller.stop();
    assert.equal(selects(a), 4);
    assert.deepEqual(first.frames().map((f) => [f.type, f.seq]), [["snapshot", 1]]);
    assert.deepEqual(second.frames().map((f) => [f.type, f.seq, f.points.length]), [["snapshot", 1, 15]]);
  } finally {
    await t.cleanup();
  }
});

Deno.test("a new topic is polled at once, without waiting for the tick", async () => {
  const t = setup(["a"], { wire: true });
  try {
    const peer = t.subscribe("a/real/3");
    await waitFor("the snapshot", () => peer.sent.length === 1, 1000);
    assert.equal(t.metrics.value("gatecast_ticks_total"), 0);
  } finally {
    await t.cleanup();
  }
});

Deno.test("a group whose topics all left during its poll is not polled again", async () => {
  const t = setup(["a"], { wire: true });
  try {
    const a = t.sources.get("a")!;
    const release = a.hold();
    const peer = new FakePeer();
    const subscription = t.registry.subscribe(parseTopic("a/real/1"), peer, false);
    t.poller.pollNow(t.registry.group("a/real")!); // marks "again"
    t.registry.unsubscribe(subscription);
    release();
    await t.poller.stop();
    assert.equal(selects(a), 2);
    t.poller.tick();
    await t.poller.stop();
    assert.deepEqual(a.sql.slice(2), ["SELECT 1"]); // only the idle probe
  } finally {
    await t.cleanup();
  }
});

Deno.test("stop waits for polls under way and ends the ticking", async () => {
  const t = setup(["a"], { intervalMs: 50 });
  try {
    const peer = t.subscribe("a/real/1");
    const release = t.sources.get("a")!.hold();
    t.poller.start();
    await waitFor("a poll under way", () => selects(t.sources.get("a")!) === 1, 1000);
    let stopped = false;
    const stopping = t.poller.stop().then(() => stopped = true);
    await delay(20);
    assert.equal(stopped, false);
    release();
    await stopping;
    assert.deepEqual(peer.frames().map((f) => f.type), ["snapshot"]);
    const ticks = t.metrics.value("gatecast_ticks_total");
    await delay(150);
    assert.equal(t.metrics.value("gatecast_ticks_total"), ticks);
  } finally {
    await t.cleanup();
  }
});
