/**
 * The `real` handle's v1 frames and the seed's array, exactly: points in the seed's key order,
 * a missing value `null` in v1 and `""` in the array (a NULL column `null` in both), updates
 * carrying `{"address","code","value"}` of each changed point with their exact UTF-8 length, and
 * a snapshot for anything an update cannot say (a point added, removed, renamed or moved).
 */

import assert from "node:assert/strict";
import { type Frame, publishPoll, type RowsChanged } from "../../lib/hub/fanout.ts";
import { Registry, type Topic } from "../../lib/hub/registry.ts";
import { topicName } from "../../lib/hub/topic.ts";
import { legacyArray } from "../../lib/wire/legacy_array.ts";
import { pointsV1 } from "../../lib/wire/points_v1.ts";
import { diffRows } from "../../lib/handles/rows.ts";
import { FakePeer } from "../support/fake_peer.ts";
import { type Point, point, SEED_POINT_KEYS, unitRows } from "../support/points.ts";

const NAME = topicName("plant1", "real", 12);

/** One v1 and one legacy subscriber of a topic that has had `first` polled. */
function setup(first: Point[]) {
  const registry = new Registry();
  const v1 = new FakePeer();
  const old = new FakePeer();
  registry.subscribe(NAME, v1, pointsV1);
  const topic = registry.subscribe(NAME, old, legacyArray).topic;
  publishPoll(topic, unitRows(first), 1000);
  return { topic, v1, old };
}

/** The update frame of a change from `before` to `after`, encoded directly. */
function updateFrame(topic: Topic, before: Point[], after: Point[]): Frame | undefined {
  const previous = unitRows(before);
  const next = unitRows(after);
  const delta = diffRows(previous, next);
  assert.equal(delta.kind, "changed");
  publishPoll(topic, next, 2000);
  return pointsV1.update(topic, previous, delta as RowsChanged);
}

Deno.test('v1 shows a missing value as null; the seed\'s array as ""; a NULL column is null in both', () => {
  const { v1, old } = setup([point("GW1", "ua", undefined), point("GW1", "ia", null), point("GW1", "p", 0)]);
  assert.deepEqual(v1.frames()[0].points.map((p: Point) => p.value), [null, null, 0]);
  assert.deepEqual(old.frames()[0].map((p: Point) => p.value), ["", null, 0]);
});

Deno.test("both forms keep the nine keys in the seed's order", () => {
  const { v1, old } = setup([point("GW1", "ua", 1)]);
  assert.deepEqual(Object.keys(v1.frames()[0].points[0]), SEED_POINT_KEYS);
  assert.deepEqual(Object.keys(old.frames()[0][0]), SEED_POINT_KEYS);
});

Deno.test('a value changing type (1 to "1") is a change', () => {
  const { topic, v1 } = setup([point("GW1", "ua", 1)]);
  v1.take();
  publishPoll(topic, unitRows([point("GW1", "ua", "1")]), 2000);
  assert.deepEqual(v1.frames()[0].changes, [{ address: "GW1", code: "ua", value: "1" }]);
});

Deno.test("a point added, removed, renamed or moved is a fresh snapshot, never an update", () => {
  const a = point("GW1", "ua", 1);
  const b = point("GW1", "ia", 2);
  for (const next of [[a, b, point("GW2", "ua", 3)], [a], [a, { ...b, name: "Current" }], [b, a]]) {
    const { topic, v1 } = setup([a, b]);
    v1.take();
    publishPoll(topic, unitRows(next), 2000);
    assert.deepEqual(v1.frames().map((f) => [f.type, f.points.length]), [["snapshot", next.length]]);
  }
});

Deno.test("changes are address, code and value of each changed point, null when missing", () => {
  const before = [
    point('GW"1', "ua", 229.5),
    point("GW1", "ia", 10),
    point("GW2", "ua", 1),
    point("GW2", "st", "off"),
  ];
  const { topic } = setup(before);
  const after = [point('GW"1', "ua", 230), point("GW1", "ia", 10), point("GW2", "ua", undefined), {
    ...before[3],
    value: "on\n",
  }];
  const frame = updateFrame(topic, before, after)!;
  assert.deepEqual(JSON.parse(frame.text), {
    type: "update",
    topic: "plant1/real/12",
    seq: 2,
    epoch: topic.feed.epoch,
    ts: 2000,
    changes: [
      { address: 'GW"1', code: "ua", value: 230 },
      { address: "GW2", code: "ua", value: null },
      { address: "GW2", code: "st", value: "on\n" },
    ],
  });
});

Deno.test("a frame's byte count is the UTF-8 length of its text, with non-ASCII names and values", () => {
  const encoder = new TextEncoder();
  const before = [point("网关1", "ua", 229.5), point("GW1", "温度", "高°C"), point("GW2", "st", true)];
  const { topic, v1 } = setup(before);
  const snapshot = topic.feed.snapshotFor(topic, pointsV1);
  assert.equal(snapshot.bytes, encoder.encode(snapshot.text).length);
  assert.equal(v1.sent[0], snapshot.text);
  const after = [point("网关1", "ua", 230), point("GW1", "温度", "低°C"), point("GW2", "st", false)];
  const update = updateFrame(topic, before, after)!;
  assert.equal(update.bytes, encoder.encode(update.text).length);
});
