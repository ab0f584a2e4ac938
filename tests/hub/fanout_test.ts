/**
 * Fan-out: which frame each subscriber of a topic gets after a poll (snapshot, update, stale,
 * the legacy array or nothing), with per-subscription `seq` and frame text shared between
 * subscribers at the same `seq`.
 */

import assert from "node:assert/strict";
import { publishPoll, publishStale, type Stale, welcome } from "../../lib/hub/fanout.ts";
import { Registry, type Subscription, type Topic } from "../../lib/hub/registry.ts";
import { topicName } from "../../lib/hub/topic.ts";
import { legacyArray as legacyEncoder } from "../../lib/wire/legacy_array.ts";
import { pointsV1 } from "../../lib/wire/points_v1.ts";
import { FakePeer } from "../support/fake_peer.ts";
import { joinPoints, type Point, point, unitRows } from "../support/points.ts";

const TOPIC = "plant1/real/12";
const NAME = topicName("plant1", "real", 12);

/** A database outage as the poller reports it. */
function down(message: string): Stale {
  return { code: "SOURCE_UNAVAILABLE", message };
}

/** Publishes a poll given as whole points. */
function publish(topic: Topic, points: Point[], now: number): void {
  publishPoll(topic, unitRows(points), now);
}

const POLL_1 = [point("GW1", "ua", 229.5), point("GW1", "ia", 10), point("GW2", "ua", undefined)];
const POLL_2 = [point("GW1", "ua", 230.25), point("GW1", "ia", 10), point("GW2", "ua", undefined)];
const POLL_3 = [point("GW1", "ua", 230.25), point("GW1", "ia", 11), point("GW2", "ua", undefined)];

function v1(points: Point[]) {
  return points.map((p) => ({ ...p, value: p.value === undefined ? null : p.value }));
}

function legacyArray(points: Point[]) {
  return points.map((p) => ({ ...p, value: p.value === undefined ? "" : p.value }));
}

/** A registry with one topic and the given subscribers (true: legacy). */
function setup(...legacy: boolean[]) {
  const registry = new Registry();
  const peers = legacy.map(() => new FakePeer());
  const subscriptions = peers.map((peer, i) =>
    registry.subscribe(NAME, peer, legacy[i] ? legacyEncoder : pointsV1)
  );
  return { registry, peers, subscriptions, topic: subscriptions[0].topic };
}

function subscribe(registry: Registry, legacy = false): { peer: FakePeer; subscription: Subscription } {
  const peer = new FakePeer();
  return { peer, subscription: registry.subscribe(NAME, peer, legacy ? legacyEncoder : pointsV1) };
}

Deno.test("the first poll sends a snapshot with seq 1 and every point to each v1 subscriber", () => {
  const { peers, topic } = setup(false, false);
  publish(topic, POLL_1, 1000);
  for (const peer of peers) {
    assert.deepEqual(peer.frames(), [{
      type: "snapshot",
      topic: TOPIC,
      seq: 1,
      ts: 1000,
      points: v1(POLL_1),
    }]);
  }
  assert.equal(topic.feed.owed.size, 0);
  assert.deepEqual(joinPoints(topic.feed.rows!), POLL_1);
  assert.equal(topic.feed.ts, 1000);
});

Deno.test("a snapshot frame has exactly the contract's keys in order", () => {
  const { peers, topic } = setup(false);
  publish(topic, POLL_1, 1000);
  assert.equal(
    peers[0].sent[0],
    `{"type":"snapshot","topic":"plant1/real/12","seq":1,"ts":1000,"points":${JSON.stringify(v1(POLL_1))}}`,
  );
});

Deno.test("a poll with changed values sends an update carrying only the changes", () => {
  const { peers, topic } = setup(false);
  publish(topic, POLL_1, 1000);
  peers[0].take();
  publish(topic, POLL_2, 2000);
  assert.deepEqual(peers[0].sent, [
    `{"type":"update","topic":"plant1/real/12","seq":2,"ts":2000,"changes":[{"address":"GW1","code":"ua","value":230.25}]}`,
  ]);
  publish(topic, POLL_3, 3000);
  assert.deepEqual(peers[0].frames()[1], {
    type: "update",
    topic: TOPIC,
    seq: 3,
    ts: 3000,
    changes: [{ address: "GW1", code: "ia", value: 11 }],
  });
});

Deno.test("a poll with nothing changed sends no frame to v1 subscribers and keeps the snapshot time", () => {
  const { peers, topic } = setup(false, false);
  publish(topic, POLL_1, 1000);
  peers.forEach((p) => p.take());
  publish(topic, POLL_1.map((p) => ({ ...p })), 2000);
  publish(topic, POLL_1.map((p) => ({ ...p })), 3000);
  assert.deepEqual(peers.map((p) => p.sent), [[], []]);
  assert.equal(topic.feed.ts, 1000);
});

Deno.test("seq counts per subscription: a later subscriber starts at 1 while an earlier one goes on", () => {
  const { registry, peers, topic } = setup(false);
  publish(topic, POLL_1, 1000);
  publish(topic, POLL_2, 2000);
  const late = subscribe(registry);
  welcome(late.subscription);
  assert.deepEqual(late.peer.frames().map((f) => [f.type, f.seq]), [["snapshot", 1]]);
  assert.deepEqual(late.peer.frames()[0].points, v1(POLL_2));
  assert.equal(late.peer.frames()[0].ts, 2000);
  publish(topic, POLL_3, 3000);
  assert.deepEqual(peers[0].frames().map((f) => [f.type, f.seq]), [["snapshot", 1], ["update", 2], [
    "update",
    3,
  ]]);
  assert.deepEqual(late.peer.frames().map((f) => [f.type, f.seq]), [["snapshot", 1], ["update", 2]]);
  assert.deepEqual(late.peer.frames()[1].changes, peers[0].frames()[2].changes);
});

Deno.test("subscribers at the same seq get the same frame text; another seq differs only in seq", () => {
  const { registry, peers, topic } = setup(false, false, false);
  publish(topic, POLL_1, 1000);
  publish(topic, POLL_2, 2000);
  const late = subscribe(registry);
  welcome(late.subscription);
  assert.equal(
    late.peer.sent[0],
    peers[0].sent[0].replace('"ts":1000', '"ts":2000').replace(
      JSON.stringify(v1(POLL_1)),
      JSON.stringify(v1(POLL_2)),
    ),
  );
  publish(topic, POLL_3, 3000);
  assert.equal(peers[0].sent[2], peers[1].sent[2]);
  assert.equal(peers[1].sent[2], peers[2].sent[2]);
  assert.equal(JSON.parse(peers[0].sent[2]).seq, 3);
  assert.equal(late.peer.sent[1], peers[0].sent[2].replace('"seq":3', '"seq":2'));
});

Deno.test("a subscriber that is behind gets no updates, then one snapshot with its next seq", () => {
  const { peers, topic } = setup(false, false);
  const [slow, fast] = peers;
  publish(topic, POLL_1, 1000);
  slow.take();
  slow.admits = "skip";
  publish(topic, POLL_2, 2000);
  assert.deepEqual(slow.sent, []);
  assert.ok(topic.feed.owed.has([...topic.subscriptions][0]));
  slow.admits = "send";
  publish(topic, POLL_2.map((p) => ({ ...p })), 3000); // nothing changed, but slow is owed a snapshot
  assert.deepEqual(slow.frames(), [{ type: "snapshot", topic: TOPIC, seq: 2, ts: 2000, points: v1(POLL_2) }]);
  assert.deepEqual(fast.frames().map((f) => [f.type, f.seq]), [["snapshot", 1], ["update", 2]]);
});

Deno.test("a subscriber caught up by a snapshot in a tick with changes gets no update in that tick", () => {
  const { peers, topic } = setup(false, false);
  const [slow, fast] = peers;
  publish(topic, POLL_1, 1000);
  slow.take();
  slow.admits = "skip";
  publish(topic, POLL_2, 2000);
  slow.admits = "send";
  publish(topic, POLL_3, 3000);
  assert.deepEqual(slow.frames(), [{ type: "snapshot", topic: TOPIC, seq: 2, ts: 3000, points: v1(POLL_3) }]);
  assert.deepEqual(fast.frames().map((f) => [f.type, f.seq]), [["snapshot", 1], ["update", 2], [
    "update",
    3,
  ]]);
});

Deno.test("a subscriber dropped for not reading is not owed a snapshot (its connection is gone)", () => {
  const { peers, subscriptions, topic } = setup(false);
  publish(topic, POLL_1, 1000);
  peers[0].take();
  peers[0].admits = "dropped";
  publish(topic, POLL_2, 2000);
  assert.deepEqual(peers[0].sent, []);
  assert.ok(!topic.feed.owed.has(subscriptions[0]));
});

Deno.test("a dropped subscriber is sent nothing", () => {
  const { peers, topic } = setup(false, true);
  peers.forEach((p) => p.admits = "dropped");
  publish(topic, POLL_1, 1000);
  publish(topic, POLL_2, 2000);
  publishStale(topic, down("down"));
  assert.deepEqual(peers.map((p) => p.sent), [[], []]);
});

Deno.test("a change of the point set sends every v1 subscriber a fresh snapshot instead of an update", () => {
  const { peers, topic } = setup(false);
  publish(topic, POLL_1, 1000);
  peers[0].take();
  const renamed = [point("GW1", "ua", 229.5, { rename: "Main voltage" }), ...POLL_1.slice(1)];
  publish(topic, renamed, 2000);
  assert.deepEqual(peers[0].frames(), [{
    type: "snapshot",
    topic: TOPIC,
    seq: 2,
    ts: 2000,
    points: v1(renamed),
  }]);
  publish(topic, POLL_1.slice(0, 2), 3000);
  assert.deepEqual(peers[0].frames()[1].type, "snapshot");
  assert.deepEqual(peers[0].frames()[1].points.length, 2);
});

Deno.test("a failed poll sends one stale frame per outage, then a snapshot on recovery", () => {
  const { peers, topic } = setup(false);
  publish(topic, POLL_1, 1000);
  peers[0].take();
  publishStale(topic, down("database 'plant1' is unavailable: ECONNREFUSED"));
  publishStale(topic, down("database 'plant1' is unavailable: ECONNREFUSED"));
  publishStale(topic, down("query on database 'plant1' exceeded 300 ms"));
  assert.deepEqual(peers[0].frames(), [{
    type: "stale",
    topic: TOPIC,
    code: "SOURCE_UNAVAILABLE",
    message: "database 'plant1' is unavailable: ECONNREFUSED",
  }]);
  peers[0].take();
  publish(topic, POLL_1.map((p) => ({ ...p })), 5000); // same values: still a fresh snapshot
  assert.deepEqual(peers[0].frames(), [{
    type: "snapshot",
    topic: TOPIC,
    seq: 2,
    ts: 5000,
    points: v1(POLL_1),
  }]);
  assert.equal(topic.feed.stale, undefined);
  publishStale(topic, down("down again"));
  assert.deepEqual(peers[0].frames().map((f) => f.type), ["snapshot", "stale"]);
});

Deno.test("a topic whose first poll fails gets stale, then its first snapshot with seq 1", () => {
  const { peers, topic } = setup(false);
  publishStale(topic, down("down"));
  publish(topic, POLL_1, 1000);
  assert.deepEqual(peers[0].frames().map((f) => [f.type, f.seq]), [["stale", undefined], ["snapshot", 1]]);
});

Deno.test("legacy subscribers get the whole seed array every poll, changed or not, and nothing when stale", () => {
  const { peers, topic } = setup(true, true);
  publish(topic, POLL_1, 1000);
  publish(topic, POLL_1.map((p) => ({ ...p })), 2000);
  publish(topic, POLL_2, 3000);
  publishStale(topic, down("down"));
  for (const peer of peers) {
    assert.deepEqual(peer.frames(), [legacyArray(POLL_1), legacyArray(POLL_1), legacyArray(POLL_2)]);
  }
  assert.equal(peers[0].sent[2], peers[1].sent[2]);
  assert.deepEqual(topic.feed.owed.size, 0);
});

Deno.test("legacy and v1 subscribers of one topic each get their own form", () => {
  const { peers, topic } = setup(false, true);
  publish(topic, POLL_1, 1000);
  assert.equal(peers[0].frames()[0].type, "snapshot");
  assert.deepEqual(peers[1].frames()[0], legacyArray(POLL_1));
});

Deno.test("welcome serves a polled topic's cached snapshot with seq 1", () => {
  const { registry, topic } = setup(false);
  publish(topic, POLL_1, 1000);
  const { peer, subscription } = subscribe(registry);
  welcome(subscription);
  assert.deepEqual(peer.frames(), [{ type: "snapshot", topic: TOPIC, seq: 1, ts: 1000, points: v1(POLL_1) }]);
  assert.ok(!topic.feed.owed.has(subscription));
});

Deno.test("welcome sends nothing before the first poll; that poll sends the snapshot", () => {
  const { registry, topic } = setup(false);
  const { peer, subscription } = subscribe(registry);
  welcome(subscription);
  assert.deepEqual(peer.sent, []);
  publish(topic, POLL_1, 1000);
  assert.deepEqual(peer.frames().map((f) => [f.type, f.seq]), [["snapshot", 1]]);
});

Deno.test("welcome on a stale topic sends the stale frame, and recovery sends the snapshot", () => {
  const { registry, topic } = setup(false);
  publish(topic, POLL_1, 1000);
  publishStale(topic, down("down"));
  const { peer, subscription } = subscribe(registry);
  welcome(subscription);
  assert.deepEqual(peer.frames(), [{
    type: "stale",
    topic: TOPIC,
    code: "SOURCE_UNAVAILABLE",
    message: "down",
  }]);
  publish(topic, POLL_1, 2000);
  assert.deepEqual(peer.frames()[1].type, "snapshot");
  assert.deepEqual(peer.frames()[1].seq, 1);
});

Deno.test("welcome gives a legacy subscriber the array at once, and nothing while stale", () => {
  const { registry, topic } = setup(false);
  publish(topic, POLL_1, 1000);
  const legacy = subscribe(registry, true);
  welcome(legacy.subscription);
  assert.deepEqual(legacy.peer.frames(), [legacyArray(POLL_1)]);
  publishStale(topic, down("down"));
  const late = subscribe(registry, true);
  welcome(late.subscription);
  assert.deepEqual(late.peer.sent, []);
});

Deno.test("welcome asks admit() before the legacy array and the stale frame, as every other send does", () => {
  const { registry, topic } = setup(false);
  publish(topic, POLL_1, 1000);
  const legacy = subscribe(registry, true);
  legacy.peer.admits = "skip";
  welcome(legacy.subscription);
  assert.deepEqual(legacy.peer.sent, []);
  // Held back, not forgotten: the next poll sends the array again.
  legacy.peer.admits = "send";
  publish(topic, POLL_2, 2000);
  assert.deepEqual(legacy.peer.frames(), [legacyArray(POLL_2)]);

  publishStale(topic, down("down"));
  const behind = subscribe(registry);
  behind.peer.admits = "skip";
  welcome(behind.subscription);
  assert.deepEqual(behind.peer.sent, []);
  // A subscriber that could not be told is owed the snapshot once the database is back.
  assert.ok(topic.feed.owed.has(behind.subscription));
  behind.peer.admits = "send";
  publish(topic, POLL_3, 3000);
  assert.deepEqual(behind.peer.frames().map((f) => [f.type, f.seq]), [["snapshot", 1]]);
});

Deno.test("welcome of a repeated subscribe starts seq over at 1 with a fresh snapshot", () => {
  const { peers, subscriptions, topic } = setup(false);
  publish(topic, POLL_1, 1000);
  publish(topic, POLL_2, 2000);
  peers[0].take();
  welcome(subscriptions[0]);
  assert.deepEqual(peers[0].frames(), [{
    type: "snapshot",
    topic: TOPIC,
    seq: 1,
    ts: 2000,
    points: v1(POLL_2),
  }]);
  publish(topic, POLL_3, 3000);
  assert.deepEqual(peers[0].frames()[1].seq, 2);
});

Deno.test("welcome of a subscriber that is behind holds the snapshot until the next poll", () => {
  const { registry, topic } = setup(false);
  publish(topic, POLL_1, 1000);
  const { peer, subscription } = subscribe(registry);
  peer.admits = "skip";
  welcome(subscription);
  assert.deepEqual(peer.sent, []);
  assert.ok(topic.feed.owed.has(subscription));
  peer.admits = "send";
  publish(topic, POLL_2, 2000);
  assert.deepEqual(peer.frames(), [{ type: "snapshot", topic: TOPIC, seq: 1, ts: 2000, points: v1(POLL_2) }]);
});
