/**
 * The registry: topics exist while they have subscribers, grouped by (database, handle), and
 * the poller hears of each new topic.
 */

import assert from "node:assert/strict";
import { groupKey, Registry, type TopicGroup } from "../../lib/hub/registry.ts";
import { legacyArray } from "../../lib/wire/legacy_array.ts";
import { pointsV1 } from "../../lib/wire/points_v1.ts";
import { FakePeer } from "../support/fake_peer.ts";
import { parseTopic } from "../support/topics.ts";

Deno.test("the first subscriber creates the topic and its group and tells the poller once", () => {
  const added: TopicGroup[] = [];
  const registry = new Registry((group) => added.push(group));
  const peer = new FakePeer();
  const subscription = registry.subscribe(parseTopic("plant1/real/12"), peer, pointsV1);
  assert.equal(subscription.peer, peer);
  assert.equal(subscription.encoder, pointsV1);
  assert.equal(registry.topicCount, 1);
  assert.equal(registry.subscriptionCount, 1);
  const topic = registry.topic("plant1/real/12")!;
  assert.equal(subscription.topic, topic);
  assert.equal(topic.keyJson, '"plant1/real/12"');
  assert.equal(topic.feed.rows, undefined);
  assert.equal(added.length, 1);
  assert.equal(added[0].key, "plant1/real");
  assert.equal(added[0].db, "plant1");
  assert.equal(added[0].handle, "real");
  assert.deepEqual([...added[0].topics.keys()], [12]);
  assert.equal(registry.group("plant1/real"), added[0]);
});

Deno.test("a second subscriber joins the existing topic without telling the poller", () => {
  const added: TopicGroup[] = [];
  const registry = new Registry((group) => added.push(group));
  const a = registry.subscribe(parseTopic("plant1/real/12"), new FakePeer(), pointsV1);
  const b = registry.subscribe(parseTopic("plant1/real/12"), new FakePeer(), legacyArray);
  assert.equal(a.topic, b.topic);
  assert.equal(added.length, 1);
  assert.equal(registry.topicCount, 1);
  assert.equal(registry.subscriptionCount, 2);
});

Deno.test("a new incremental (v1) subscriber is owed a snapshot; one of the seed's array is not", () => {
  const registry = new Registry();
  const v1 = registry.subscribe(parseTopic("plant1/real/12"), new FakePeer(), pointsV1);
  const legacy = registry.subscribe(parseTopic("plant1/real/12"), new FakePeer(), legacyArray);
  assert.ok(v1.topic.feed.owed.has(v1));
  assert.ok(!v1.topic.feed.owed.has(legacy));
  assert.ok(v1.topic.subscriptions.has(legacy));
});

Deno.test("topics of one database and handle share a group; another handle or database is another group", () => {
  const added: string[] = [];
  const registry = new Registry((group) => added.push(group.key));
  const peer = new FakePeer();
  registry.subscribe(parseTopic("plant1/real/1"), peer, pointsV1);
  registry.subscribe(parseTopic("plant1/real/2"), peer, pointsV1);
  registry.subscribe(parseTopic("plant1/history/1"), peer, pointsV1);
  registry.subscribe(parseTopic("plant2/real/1"), peer, pointsV1);
  assert.deepEqual([...registry.groups()].map((g) => g.key), [
    "plant1/real",
    "plant1/history",
    "plant2/real",
  ]);
  assert.deepEqual([...registry.group("plant1/real")!.topics.keys()], [1, 2]);
  // Each new topic asks for a poll of its group, so that it is served at once.
  assert.deepEqual(added, ["plant1/real", "plant1/real", "plant1/history", "plant2/real"]);
});

Deno.test("the topic is forgotten when its last subscriber leaves, and the group with its last topic", () => {
  const registry = new Registry();
  const a = registry.subscribe(parseTopic("plant1/real/1"), new FakePeer(), pointsV1);
  const b = registry.subscribe(parseTopic("plant1/real/1"), new FakePeer(), legacyArray);
  const c = registry.subscribe(parseTopic("plant1/real/2"), new FakePeer(), pointsV1);
  registry.unsubscribe(a);
  assert.ok(registry.topic("plant1/real/1"));
  assert.equal(registry.subscriptionCount, 2);
  registry.unsubscribe(b);
  assert.equal(registry.topic("plant1/real/1"), undefined);
  assert.deepEqual([...registry.group("plant1/real")!.topics.keys()], [2]);
  registry.unsubscribe(c);
  assert.equal(registry.group("plant1/real"), undefined);
  assert.deepEqual([...registry.groups()], []);
  assert.equal(registry.topicCount, 0);
  assert.equal(registry.subscriptionCount, 0);
});

Deno.test("unsubscribe removes the subscription from those owed a snapshot", () => {
  const registry = new Registry();
  const a = registry.subscribe(parseTopic("plant1/real/1"), new FakePeer(), pointsV1);
  const b = registry.subscribe(parseTopic("plant1/real/1"), new FakePeer(), pointsV1);
  registry.unsubscribe(a);
  assert.deepEqual([...b.topic.feed.owed], [b]);
});

Deno.test("unsubscribe is idempotent, even after the topic was recreated by a new subscriber", () => {
  const added: string[] = [];
  const registry = new Registry((group) => added.push(group.key));
  const first = registry.subscribe(parseTopic("plant1/real/1"), new FakePeer(), pointsV1);
  registry.unsubscribe(first);
  registry.unsubscribe(first);
  assert.equal(registry.topicCount, 0);
  const second = registry.subscribe(parseTopic("plant1/real/1"), new FakePeer(), pointsV1);
  assert.notEqual(second.topic, first.topic);
  registry.unsubscribe(first); // a stale handle must not remove the new topic
  assert.equal(registry.topic("plant1/real/1"), second.topic);
  assert.equal(registry.group("plant1/real")!.topics.get(1), second.topic);
  assert.equal(registry.subscriptionCount, 1);
  assert.deepEqual(added, ["plant1/real", "plant1/real"]);
});

Deno.test("groupKey is db/handle", () => {
  assert.equal(groupKey({ db: "plant1", handle: "real" }), "plant1/real");
  assert.equal(groupKey(parseTopic("plant1/real/12")), "plant1/real");
});

Deno.test("a handle without units has one topic per database, under the unit null", () => {
  const registry = new Registry();
  const subscription = registry.subscribe(parseTopic("plant1/alarms", "none"), new FakePeer(), pointsV1);
  assert.deepEqual([...registry.group("plant1/alarms")!.topics.keys()], [null]);
  assert.equal(registry.topic("plant1/alarms"), subscription.topic);
});

Deno.test("subscriptionsOf lists every subscription to the topics of one database", () => {
  const registry = new Registry();
  const a = registry.subscribe(parseTopic("plant1/real/1"), new FakePeer(), pointsV1);
  const b = registry.subscribe(parseTopic("plant1/tanks/north", "string"), new FakePeer(), pointsV1);
  registry.subscribe(parseTopic("plant2/real/1"), new FakePeer(), pointsV1);
  assert.deepEqual(registry.subscriptionsOf("plant1"), [a, b]);
  assert.deepEqual(registry.subscriptionsOf("plant9"), []);
});

// --- topics held for other nodes' clients (cluster mode) ---

/** A registry whose added and removed topics are recorded by key. */
function recording() {
  const added: string[] = [];
  const removed: string[] = [];
  const registry = new Registry(
    (group, topic) => added.push(`${group.key} ${topic.name.key}`),
    (topic) => removed.push(topic.name.key),
  );
  return { registry, added, removed };
}

Deno.test("hold creates a topic without subscribers, in its group, and tells the poller once", () => {
  const { registry, added, removed } = recording();
  const topic = registry.hold(parseTopic("plant1/real/12"));
  assert.equal(topic.heldForPeers, true);
  assert.equal(topic.subscriptions.size, 0);
  assert.equal(registry.topic("plant1/real/12"), topic);
  assert.equal(registry.group("plant1/real")!.topics.get(12), topic);
  assert.equal(registry.topicCount, 1);
  assert.equal(registry.subscriptionCount, 0);
  assert.deepEqual(added, ["plant1/real plant1/real/12"]);
  // Held again, or subscribed to, it is the same topic: nobody is told twice.
  assert.equal(registry.hold(parseTopic("plant1/real/12")), topic);
  assert.equal(registry.subscribe(parseTopic("plant1/real/12"), new FakePeer(), pointsV1).topic, topic);
  assert.deepEqual(added, ["plant1/real plant1/real/12"]);
  assert.deepEqual(removed, []);
});

Deno.test("hold of a topic that has subscribers keeps it and tells nobody", () => {
  const { registry, added } = recording();
  const subscription = registry.subscribe(parseTopic("plant1/real/12"), new FakePeer(), pointsV1);
  assert.equal(registry.hold(parseTopic("plant1/real/12")), subscription.topic);
  assert.equal(subscription.topic.heldForPeers, true);
  assert.deepEqual(added, ["plant1/real plant1/real/12"]);
});

Deno.test("a held topic survives its last unsubscribe", () => {
  const { registry, removed } = recording();
  const subscription = registry.subscribe(parseTopic("plant1/real/12"), new FakePeer(), pointsV1);
  const topic = registry.hold(parseTopic("plant1/real/12"));
  registry.unsubscribe(subscription);
  assert.equal(registry.topic("plant1/real/12"), topic);
  assert.equal(registry.group("plant1/real")!.topics.get(12), topic);
  assert.equal(registry.subscriptionCount, 0);
  assert.deepEqual(removed, []);
});

Deno.test("release forgets an unused topic and its emptied group, and tells the cluster once", () => {
  const { registry, removed } = recording();
  const topic = registry.hold(parseTopic("plant1/real/12"));
  registry.release(topic);
  assert.equal(topic.heldForPeers, false);
  assert.equal(registry.topic("plant1/real/12"), undefined);
  assert.equal(registry.group("plant1/real"), undefined);
  assert.equal(registry.topicCount, 0);
  assert.deepEqual(removed, ["plant1/real/12"]);
  registry.release(topic); // again: already forgotten
  assert.deepEqual(removed, ["plant1/real/12"]);
});

Deno.test("release of a topic with a subscriber keeps it, until that subscriber leaves", () => {
  const { registry, removed } = recording();
  const topic = registry.hold(parseTopic("plant1/real/12"));
  const subscription = registry.subscribe(parseTopic("plant1/real/12"), new FakePeer(), pointsV1);
  registry.release(topic);
  assert.equal(topic.heldForPeers, false);
  assert.equal(registry.topic("plant1/real/12"), topic);
  assert.deepEqual(removed, []);
  registry.unsubscribe(subscription);
  assert.equal(registry.topic("plant1/real/12"), undefined);
  assert.deepEqual(removed, ["plant1/real/12"]);
});

Deno.test("the last subscriber of a topic not held leaving tells the cluster once, even when unsubscribed twice", () => {
  const { registry, removed } = recording();
  const a = registry.subscribe(parseTopic("plant1/real/12"), new FakePeer(), pointsV1);
  const b = registry.subscribe(parseTopic("plant1/real/12"), new FakePeer(), pointsV1);
  registry.unsubscribe(a);
  assert.deepEqual(removed, []);
  registry.unsubscribe(b);
  assert.deepEqual(removed, ["plant1/real/12"]);
  assert.equal(registry.topic("plant1/real/12"), undefined);
  registry.unsubscribe(b);
  assert.deepEqual(removed, ["plant1/real/12"]);
});

Deno.test("a stale subscription of a forgotten topic does not remove the topic held anew", () => {
  const { registry, removed } = recording();
  const first = registry.subscribe(parseTopic("plant1/real/12"), new FakePeer(), pointsV1);
  registry.unsubscribe(first);
  const held = registry.hold(parseTopic("plant1/real/12"));
  registry.unsubscribe(first);
  registry.release(first.topic);
  assert.equal(registry.topic("plant1/real/12"), held);
  assert.equal(held.heldForPeers, true);
  assert.deepEqual(removed, ["plant1/real/12"]);
});
