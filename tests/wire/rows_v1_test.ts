/**
 * Rows v1 frames, exactly: a snapshot carries `key` and every column of every row; an update
 * carries `upsert` (key columns plus changed columns, new rows whole, last) and `delete` (key
 * columns), both always present; what an update cannot say is a snapshot.
 */

import assert from "node:assert/strict";
import { type Cell, layoutOf, rowKey, type RowSet } from "../../lib/handles/rows.ts";
import { publishPoll, publishStale, welcome } from "../../lib/hub/fanout.ts";
import { Registry } from "../../lib/hub/registry.ts";
import { topicName } from "../../lib/hub/topic.ts";
import { legacyArray } from "../../lib/wire/legacy_array.ts";
import { rowsV1 } from "../../lib/wire/rows_v1.ts";
import { FakePeer } from "../support/fake_peer.ts";

const TANKS = layoutOf(["site", "tank_id", "level_m", "note"], ["tank_id"]);
const TOPIC = topicName("plant1", "tanks", "north");

function tanks(...rows: Cell[][]): RowSet {
  const cells = rows.flat();
  return {
    shape: { layout: TANKS, keys: rows.map((_, i) => rowKey(cells, i * 4, TANKS.keyIndexes)) },
    cells,
  };
}

const POLL_1 = tanks(["north", 1, 2.5, "ok"], ["north", 2, 3, null], ["north", 3, 1, "low"]);

function setup() {
  const registry = new Registry();
  const peer = new FakePeer();
  const subscription = registry.subscribe(TOPIC, peer, rowsV1);
  const topic = subscription.topic;
  publishPoll(topic, POLL_1, 1000);
  return { registry, peer, subscription, topic };
}

Deno.test("a snapshot carries key and every column of every row, in the result's order", () => {
  const { peer, topic } = setup();
  assert.deepEqual(peer.sent, [
    `{"type":"snapshot","topic":"plant1/tanks/north","seq":1,"epoch":${JSON.stringify(topic.feed.epoch)},` +
    '"ts":1000,"key":["tank_id"],"rows":[' +
    '{"site":"north","tank_id":1,"level_m":2.5,"note":"ok"},{"site":"north","tank_id":2,"level_m":3,"note":null},' +
    '{"site":"north","tank_id":3,"level_m":1,"note":"low"}]}',
  ]);
});

Deno.test("an UPDATE sends the row's key columns and only its changed columns; delete is present and empty", () => {
  const { peer, topic } = setup();
  peer.take();
  publishPoll(
    topic,
    tanks(["north", 1, 2.5, "ok"], ["north", 2, 3.25, "check"], ["north", 3, 1, "low"]),
    2000,
  );
  assert.deepEqual(peer.sent, [
    `{"type":"update","topic":"plant1/tanks/north","seq":2,"epoch":${JSON.stringify(topic.feed.epoch)},` +
    '"ts":2000,"upsert":[{"tank_id":2,"level_m":3.25,"note":"check"}],"delete":[]}',
  ]);
});

Deno.test("an INSERT at the end is a whole new row in upsert", () => {
  const { peer, topic } = setup();
  peer.take();
  publishPoll(
    topic,
    tanks(["north", 1, 2.5, "ok"], ["north", 2, 3, null], ["north", 3, 1, "low"], ["north", 7, 0.5, "new"]),
    2000,
  );
  assert.deepEqual(peer.frames(), [{
    type: "update",
    topic: "plant1/tanks/north",
    seq: 2,
    epoch: topic.feed.epoch,
    ts: 2000,
    upsert: [{ site: "north", tank_id: 7, level_m: 0.5, note: "new" }],
    delete: [],
  }]);
});

Deno.test("a DELETE sends the gone row's key columns; a change beside it is an upsert", () => {
  const { peer, topic } = setup();
  peer.take();
  publishPoll(topic, tanks(["north", 1, 2.75, "ok"], ["north", 3, 1, "low"]), 2000);
  assert.deepEqual(peer.frames(), [{
    type: "update",
    topic: "plant1/tanks/north",
    seq: 2,
    epoch: topic.feed.epoch,
    ts: 2000,
    upsert: [{ tank_id: 1, level_m: 2.75 }],
    delete: [{ tank_id: 2 }],
  }]);
});

Deno.test("an INSERT in the middle and a reorder are fresh snapshots", () => {
  const { peer, topic } = setup();
  peer.take();
  publishPoll(
    topic,
    tanks(["north", 1, 2.5, "ok"], ["north", 9, 4, "mid"], ["north", 2, 3, null], ["north", 3, 1, "low"]),
    2000,
  );
  publishPoll(topic, tanks(["north", 3, 1, "low"], ["north", 1, 2.5, "ok"]), 3000);
  const frames = peer.frames();
  assert.deepEqual(frames.map((f) => [f.type, f.seq, f.rows.map((r: { tank_id: number }) => r.tank_id)]), [
    ["snapshot", 2, [1, 9, 2, 3]],
    ["snapshot", 3, [3, 1]],
  ]);
});

Deno.test("nothing changed, nothing sent", () => {
  const { peer, topic } = setup();
  peer.take();
  publishPoll(topic, tanks(["north", 1, 2.5, "ok"], ["north", 2, 3, null], ["north", 3, 1, "low"]), 2000);
  assert.deepEqual(peer.sent, []);
});

Deno.test("a stale topic sends its code; the next good poll is a snapshot", () => {
  const { peer, topic } = setup();
  peer.take();
  publishStale(topic, {
    code: "HANDLE_FAILED",
    message: "handle 'tanks': Table 'iot.tank_level' doesn't exist",
  });
  publishPoll(topic, POLL_1, 3000);
  assert.deepEqual(peer.frames().map((f) => [f.type, f.code ?? f.seq]), [["stale", "HANDLE_FAILED"], [
    "snapshot",
    2,
  ]]);
});

Deno.test("a legacy subscriber of a rows handle gets the array of row objects every poll", () => {
  const { registry, topic } = setup();
  const old = new FakePeer();
  const subscription = registry.subscribe(TOPIC, old, legacyArray);
  welcome(subscription);
  publishPoll(topic, POLL_1, 2000);
  const array = [
    { site: "north", tank_id: 1, level_m: 2.5, note: "ok" },
    { site: "north", tank_id: 2, level_m: 3, note: null },
    { site: "north", tank_id: 3, level_m: 1, note: "low" },
  ];
  assert.deepEqual(old.frames(), [array, array]);
});
