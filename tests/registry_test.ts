/**
 * The registry: topics exist while they have subscribers, grouped by (database, handle), and
 * the poller hears of each new topic.
 */

import assert from "node:assert/strict";
import { groupKey, Registry, type TopicGroup } from "../lib/registry.ts";
import { parseTopic } from "../lib/topic.ts";
import { FakePeer } from "./support/fake_peer.ts";

Deno.test("the first subscriber creates the topic and its group and tells the poller once", () => {
  const added: TopicGroup[] = [];
  const registry = new Registry((group) => added.push(group));
  const peer = new FakePeer();
  const subscription = registry.subscribe(parseTopic("plant1/real/12"), peer, false);
  assert.equal(subscription.seq, 0);
  assert.equal(subscription.peer, peer);
  assert.equal(subscription.legacy, false);
  assert.equal(registry.topicCount, 1);
  assert.equal(registry.subscriptionCount, 1);
  const topic = registry.topic("plant1/real/12")!;
  assert.equal(subscription.topic, topic);
  assert.equal(topic.keyJson, '"plant1/real/12"');
  assert.equal(topic.points, undefined);
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
  const a = registry.subscribe(parseTopic("plant1/real/12"), new FakePeer(), false);
  const b = registry.subscribe(parseTopic("plant1/real/12"), new FakePeer(), true);
  assert.equal(a.topic, b.topic);
  assert.equal(added.length, 1);
  assert.equal(registry.topicCount, 1);
  assert.equal(registry.subscriptionCount, 2);
});

Deno.test("a new v1 subscriber is owed a snapshot; a legacy one is not", () => {
  const registry = new Registry();
  const v1 = registry.subscribe(parseTopic("plant1/real/12"), new FakePeer(), false);
  const legacy = registry.subscribe(parseTopic("plant1/real/12"), new FakePeer(), true);
  assert.ok(v1.topic.owed.has(v1));
  assert.ok(!v1.topic.owed.has(legacy));
  assert.ok(v1.topic.subscriptions.has(legacy));
});

Deno.test("topics of one database and handle share a group; another handle or database is another group", () => {
  const added: string[] = [];
  const registry = new Registry((group) => added.push(group.key));
  const peer = new FakePeer();
  registry.subscribe(parseTopic("plant1/real/1"), peer, false);
  registry.subscribe(parseTopic("plant1/real/2"), peer, false);
  registry.subscribe(parseTopic("plant1/history/1"), peer, false);
  registry.subscribe(parseTopic("plant2/real/1"), peer, false);
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
  const a = registry.subscribe(parseTopic("plant1/real/1"), new FakePeer(), false);
  const b = registry.subscribe(parseTopic("plant1/real/1"), new FakePeer(), true);
  const c = registry.subscribe(parseTopic("plant1/real/2"), new FakePeer(), false);
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
  const a = registry.subscribe(parseTopic("plant1/real/1"), new FakePeer(), false);
  const b = registry.subscribe(parseTopic("plant1/real/1"), new FakePeer(), false);
  registry.unsubscribe(a);
  assert.deepEqual([...b.topic.owed], [b]);
});

Deno.test("unsubscribe is idempotent, even after the topic was recreated by a new subscriber", () => {
  const added: string[] = [];
  const registry = new Registry((group) => added.push(group.key));
  const first = registry.subscribe(parseTopic("plant1/real/1"), new FakePeer(), false);
  registry.unsubscribe(first);
  registry.unsubscribe(first);
  assert.equal(registry.topicCount, 0);
  const second = registry.subscribe(parseTopic("plant1/real/1"), new FakePeer(), false);
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
