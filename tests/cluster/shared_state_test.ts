/**
 * The state a polling node shares through Redis (lib/cluster/shared_state.ts): a topic's rows or
 * stale reason survive encodeState → decodeState exactly (missing values, keys of several
 * columns, the interned layout), every malformed message is refused with one message naming
 * what is wrong, and decoded states feed a follower's subscribers the same updates.
 */

import assert from "node:assert/strict";
import {
  decodeState,
  encodeChange,
  encodeState,
  latestState,
  readStateBatch,
  SHARED_STATE_VERSION,
  SharedStateError,
  valuesField,
  withValues,
} from "../../lib/cluster/shared_state.ts";
import { type Cell, layoutOf, rowKey, type RowSet, type Shape } from "../../lib/handles/rows.ts";
import { publishAdopted, publishPoll, publishStale } from "../../lib/hub/fanout.ts";
import { Registry, Topic } from "../../lib/hub/registry.ts";
import { topicName } from "../../lib/hub/topic.ts";
import { rowsV1 } from "../../lib/wire/rows_v1.ts";
import { FakePeer } from "../support/fake_peer.ts";

const NAME = topicName("plant1", "tanks", "north");

/** Tanks keyed by (tank_id, site), in that order; only the level and the alarm change between polls. */
const TANKS = layoutOf(
  ["site", "tank_id", "level_m", "note", "alarm"],
  ["tank_id", "site"],
  ["level_m", "alarm"],
);

/** Two tanks; the first has no note at all (`undefined`), the second a NULL alarm. */
const CELLS: Cell[] = [
  "north",
  1,
  3.25,
  undefined,
  false,
  "north",
  2,
  0.5,
  "refilled",
  null,
];

/** The rows of these cells, with a shape of their own unless one is given (as a handle reuses it). */
function tankRows(cells: readonly Cell[], shape?: Shape): RowSet {
  const width = TANKS.columns.length;
  const keys: string[] = [];
  for (let offset = 0; offset < cells.length; offset += width) {
    keys.push(rowKey(cells, offset, TANKS.keyIndexes));
  }
  return { shape: shape ?? { layout: TANKS, keys }, cells };
}

/** A topic of this node that polled these rows at `ts`. */
function polledTopic(cells: readonly Cell[], ts = 1234): Topic {
  const topic = new Topic(NAME);
  publishPoll(topic, tankRows(cells), ts);
  return topic;
}

Deno.test("rows survive encode and decode: every cell, missing values, a two-column key and the same interned layout", () => {
  const topic = polledTopic(CELLS);
  const text = encodeState(topic, "node-a", 7);
  assert.deepEqual(JSON.parse(text), {
    v: SHARED_STATE_VERSION,
    topic: "plant1/tanks/north",
    node: "node-a",
    fence: 7,
    epoch: topic.feed.epoch,
    seq: 1,
    ts: 1234,
    rows: {
      columns: ["site", "tank_id", "level_m", "note", "alarm"],
      key: ["tank_id", "site"],
      varying: ["level_m", "alarm"],
      cells: ["north", 1, 3.25, null, false, "north", 2, 0.5, "refilled", null],
      missing: [3],
    },
  });
  const state = decodeState(text);
  assert.deepEqual(state, {
    topic: "plant1/tanks/north",
    node: "node-a",
    fence: 7,
    epoch: topic.feed.epoch,
    seq: 1,
    ts: 1234,
    rows: { shape: { layout: TANKS, keys: topic.feed.rows!.shape.keys }, cells: CELLS },
  });
  // The receiving node's rows have the polling node's layout object: its diffs compare like with like.
  assert.equal(state.rows!.shape.layout, TANKS);
  assert.equal(state.rows!.cells[3], undefined);
  assert.equal(state.rows!.cells[9], null);
});

Deno.test("rows without a missing value carry no missing list", () => {
  const cells = CELLS.map((cell) => cell === undefined ? "dry" : cell);
  const text = encodeState(polledTopic(cells), "node-a", 1);
  assert.equal("missing" in JSON.parse(text).rows, false);
  assert.deepEqual(decodeState(text).rows!.cells, cells);
});

Deno.test("a stale topic travels as its reason, with the seq and time of its latest rows", () => {
  const topic = polledTopic(CELLS);
  publishStale(topic, {
    code: "SOURCE_UNAVAILABLE",
    message: "database 'plant1' is unavailable: ECONNREFUSED",
  });
  const text = encodeState(topic, "node-a", 3);
  assert.equal("rows" in JSON.parse(text), false);
  assert.deepEqual(decodeState(text), {
    topic: "plant1/tanks/north",
    node: "node-a",
    fence: 3,
    epoch: topic.feed.epoch,
    seq: 1,
    ts: 1234,
    stale: { code: "SOURCE_UNAVAILABLE", message: "database 'plant1' is unavailable: ECONNREFUSED" },
  });
});

Deno.test("a topic stale before its first rows is shared at seq 0", () => {
  const topic = new Topic(NAME);
  publishStale(topic, { code: "HANDLE_FAILED", message: "handle 'tanks': no such table" });
  assert.deepEqual(decodeState(encodeState(topic, "node-a", 2)), {
    topic: "plant1/tanks/north",
    node: "node-a",
    fence: 2,
    epoch: topic.feed.epoch,
    seq: 0,
    ts: 0,
    stale: { code: "HANDLE_FAILED", message: "handle 'tanks': no such table" },
  });
});

Deno.test("a topic with neither rows nor a stale reason has nothing to share", () => {
  assert.throws(() => encodeState(new Topic(NAME), "node-a", 1), {
    name: "SharedStateError",
    message: "topic plant1/tanks/north has no state to share yet",
  });
});

/** A valid message, parsed, for a refusal test to spoil. */
// deno-lint-ignore no-explicit-any
function message(): any {
  return JSON.parse(encodeState(polledTopic(CELLS), "node-a", 7));
}

/** Asserts that decoding `text` is refused with exactly `expected`. */
function refused(text: string, expected: string): void {
  assert.throws(() => decodeState(text), (error: unknown) => {
    assert.ok(error instanceof SharedStateError, `${error} is a SharedStateError`);
    assert.equal(error.name, "SharedStateError");
    assert.equal(error.message, expected);
    return true;
  });
}

Deno.test("a batch is read back as its (topic, state) pairs, each state whole, line breaks in cells included", () => {
  const first = encodeState(polledTopic(CELLS), "node-a", 7);
  const multiline = encodeState(
    polledTopic(CELLS.map((cell) => typeof cell === "string" ? `${cell}\nnext` : cell)),
    "node-a",
    7,
  );
  assert.ok(!multiline.includes("\n"), "JSON escapes a line break in a cell");
  const batch = [NAME.key, first, "plant1/tanks/south", multiline].join("\n");
  const pairs = readStateBatch(batch);
  assert.deepEqual(pairs, [[NAME.key, first], ["plant1/tanks/south", multiline]]);
  assert.equal(
    decodeState(pairs[1][1]).rows!.cells.filter((cell) => String(cell).endsWith("\nnext")).length,
    CELLS.filter((cell) => typeof cell === "string").length,
  );
});

Deno.test("a batch that is empty or not of (topic, state) pairs is refused", () => {
  for (
    const [text, expected] of [
      ["", "state batch: empty"],
      ["plant1/tanks/north", "state batch: 1 lines do not make (topic, state) pairs"],
      [`plant1/tanks/north\n{}\nplant1/tanks/south`, "state batch: 3 lines do not make (topic, state) pairs"],
    ]
  ) {
    assert.throws(() => readStateBatch(text), (error: unknown) => {
      assert.ok(error instanceof SharedStateError);
      assert.equal(error.message, expected);
      return true;
    });
  }
});

Deno.test("a message that is not JSON is refused", () => {
  refused('{"v":1,', "shared state is not JSON");
  refused("", "shared state is not JSON");
});

Deno.test("a message that is JSON but not an object is refused", () => {
  refused("null", "shared state is not an object");
  refused("42", "shared state is not an object");
  refused("[1]", "shared state is not an object");
});

Deno.test("a message of another version is refused, naming both versions", () => {
  refused(JSON.stringify({ ...message(), v: 2 }), "shared state of version 2; this node reads 3");
  refused(JSON.stringify({ ...message(), v: "3" }), 'shared state of version "3"; this node reads 3');
  const { v: _, ...unversioned } = message();
  refused(JSON.stringify(unversioned), "shared state of version undefined; this node reads 3");
});

Deno.test("a message with a field missing or of the wrong type is refused, naming the field", () => {
  for (const [name, type] of [["topic", "string"], ["node", "string"], ["epoch", "string"]] as const) {
    const { [name]: _, ...without } = message();
    refused(JSON.stringify(without), `shared state: ${name} must be a ${type}`);
    refused(JSON.stringify({ ...message(), [name]: 1 }), `shared state: ${name} must be a ${type}`);
  }
  for (const name of ["fence", "seq", "ts"]) {
    const { [name]: _, ...without } = message();
    refused(JSON.stringify(without), `shared state: ${name} must be a number`);
    refused(JSON.stringify({ ...message(), [name]: "7" }), `shared state: ${name} must be a number`);
  }
  const { rows: _, ...rowless } = message();
  refused(JSON.stringify(rowless), "shared state: rows must be an object");
  refused(JSON.stringify({ ...message(), rows: [] }), "shared state: rows must be an object");
  for (const name of ["columns", "key", "varying"]) {
    const spoilt = message();
    spoilt.rows[name] = ["site", 2];
    refused(JSON.stringify(spoilt), `shared state: rows.${name} must be an array of strings`);
  }
  const cellless = message();
  delete cellless.rows.cells;
  refused(JSON.stringify(cellless), "shared state: rows.cells must be an array");
  const halfMissing = message();
  halfMissing.rows.missing = [1.5];
  refused(JSON.stringify(halfMissing), "shared state: rows.missing must be an array of integers");
  refused(JSON.stringify({ ...message(), stale: "down" }), "shared state: stale must be an object");
  refused(
    JSON.stringify({ ...message(), stale: { code: "SOURCE_UNAVAILABLE" } }),
    "shared state: stale.message must be a string",
  );
  const outside = message();
  outside.rows.missing = [outside.rows.cells.length];
  refused(
    JSON.stringify(outside),
    `shared state: rows.missing names cell ${outside.rows.cells.length}; there are ${outside.rows.cells.length}`,
  );
});

Deno.test("a cell that is not a scalar is refused, naming its index", () => {
  for (const cell of [{ litres: 12 }, [1]]) {
    const spoilt = message();
    spoilt.rows.cells[7] = cell;
    refused(JSON.stringify(spoilt), "shared state: cell 7 is not a scalar");
  }
});

Deno.test("cells that do not fill whole rows are refused", () => {
  const spoilt = message();
  spoilt.rows.cells.pop();
  refused(JSON.stringify(spoilt), "shared state: 9 cells do not make rows of 5 columns");
  const empty = message();
  empty.rows.columns = [];
  empty.rows.key = [];
  empty.rows.varying = [];
  refused(JSON.stringify(empty), "shared state: 10 cells do not make rows of 0 columns");
});

Deno.test("a key column that is not among the columns is refused, naming it and the columns", () => {
  const spoilt = message();
  spoilt.rows.key = ["tank_id", "zone"];
  refused(
    JSON.stringify(spoilt),
    "shared state: no column 'zone' in the result (columns: site, tank_id, level_m, note, alarm)",
  );
});

Deno.test("decoded states reach a follower's subscribers as updates of exactly the cells that changed", () => {
  // The polling node: its handle hands out the same shape while the tanks stay the same.
  const polling = new Registry();
  const pollingPeer = new FakePeer();
  const polled = polling.subscribe(NAME, pollingPeer, rowsV1).topic;
  const first = tankRows(CELLS);
  publishPoll(polled, first, 1000);
  const second = [...CELLS];
  second[2] = 3.5; // tank 1's level
  second[9] = true; // tank 2's alarm
  // The follower: each message decodes to a shape of its own.
  const following = new Registry();
  const peer = new FakePeer();
  const topic = following.subscribe(NAME, peer, rowsV1).topic;
  const sharedFirst = decodeState(encodeState(polled, "node-a", 1));
  assert.equal(
    publishAdopted(topic, { rows: sharedFirst.rows!, seq: 1, epoch: sharedFirst.epoch, ts: 1000 }),
    true,
  );
  publishPoll(polled, tankRows(second, first.shape), 2000);
  const sharedSecond = decodeState(encodeState(polled, "node-a", 1));
  assert.notEqual(sharedSecond.rows!.shape, sharedFirst.rows!.shape);
  assert.equal(
    publishAdopted(topic, { rows: sharedSecond.rows!, seq: 2, epoch: sharedSecond.epoch, ts: 2000 }),
    true,
  );
  const [snapshot, update, ...rest] = peer.frames();
  assert.deepEqual(rest, []);
  assert.deepEqual([snapshot.type, snapshot.seq], ["snapshot", 1]);
  assert.deepEqual(update, {
    type: "update",
    topic: "plant1/tanks/north",
    seq: 2,
    epoch: polled.feed.epoch,
    ts: 2000,
    upsert: [
      { site: "north", tank_id: 1, level_m: 3.5 },
      { site: "north", tank_id: 2, alarm: true },
    ],
    delete: [],
  });
  // Frame for frame what the polling node's own subscriber got.
  assert.deepEqual(peer.sent, pollingPeer.sent);
});

/** CELLS polled again with the same shape (as a handle reuses it): tank 1's level and tank 2's alarm moved. */
function pollAgain(topic: Topic, ts = 2000): Cell[] {
  const next = [...CELLS];
  next[2] = 3.5;
  next[9] = true;
  publishPoll(topic, tankRows(next, topic.feed.rows!.shape), ts);
  return next;
}

Deno.test("a poll that changed varying cells only is shared as those cells, which rebuild its rows on the state before", () => {
  const topic = polledTopic(CELLS);
  const held = decodeState(encodeState(topic, "node-a", 7)).rows!;
  const next = pollAgain(topic);
  const change = encodeChange(topic, "node-a", 7);
  assert.equal(change.kind, "values");
  const text = change.text;
  // level_m and alarm of each row, in row order; no layout, no keys, no metadata.
  assert.deepEqual(JSON.parse(text), {
    v: SHARED_STATE_VERSION,
    topic: "plant1/tanks/north",
    node: "node-a",
    fence: 7,
    epoch: topic.feed.epoch,
    seq: 2,
    ts: 2000,
    values: [3.5, false, 0.5, true],
  });
  const state = decodeState(text);
  assert.deepEqual(state.values, [3.5, false, 0.5, true]);
  assert.equal(state.rows, undefined);
  const rows = withValues(held, state.values!);
  assert.deepEqual(rows.cells, next);
  assert.equal(rows.shape, held.shape, "the held shape: a diff compares the varying cells only");
  assert.deepEqual(held.cells, CELLS, "the held rows are left as they were");
});

Deno.test("a varying cell with no value travels in the values' missing list", () => {
  const layout = layoutOf(["id", "reading"], ["id"]);
  const topic = new Topic(NAME);
  const shape = { layout, keys: [rowKey([1], 0, layout.keyIndexes)] };
  publishPoll(topic, { shape, cells: [1, 20] }, 1000);
  publishPoll(topic, { shape, cells: [1, undefined] }, 2000);
  const text = encodeChange(topic, "node-a", 1).text;
  assert.deepEqual(JSON.parse(text).values, [null]);
  assert.deepEqual(JSON.parse(text).missing, [0]);
  const values = decodeState(text).values!;
  assert.deepEqual(values, [undefined]);
  assert.deepEqual(withValues({ shape, cells: [1, 20] }, values).cells, [1, undefined]);
});

Deno.test("a first poll, a new shape, a stale topic, its recovery and a new epoch are shared whole", () => {
  const topic = polledTopic(CELLS);
  const kind = () => encodeChange(topic, "node-a", 1).kind;
  assert.equal(kind(), "state", "the first poll");
  pollAgain(topic);
  assert.equal(kind(), "values", "then values");
  // The same cells under a shape of their own: the handle saw its metadata change.
  publishPoll(topic, tankRows(CELLS), 3000);
  assert.equal(kind(), "state", "a new shape");
  publishStale(topic, { code: "SOURCE_UNAVAILABLE", message: "down" });
  assert.equal(kind(), "state", "stale");
  assert.ok(JSON.parse(encodeChange(topic, "node-a", 1).text).stale);
  pollAgain(topic, 4000);
  assert.equal(kind(), "state", "recovered from stale");
  pollAgain(topic, 5000);
  topic.feed.restart("another-epoch");
  assert.equal(kind(), "state", "a new epoch not yet numbered");
  pollAgain(topic, 6000);
  assert.equal(kind(), "state", "the first state of the new epoch");
  // A whole state is the state hash's own message, with nothing else.
  assert.deepEqual(encodeChange(topic, "node-a", 1), {
    kind: "state",
    text: encodeState(topic, "node-a", 1),
  });
});

Deno.test("values that are not scalars, or not one per varying cell of the held rows, are refused", () => {
  const topic = polledTopic(CELLS);
  pollAgain(topic);
  // deno-lint-ignore no-explicit-any
  const change = (): any => JSON.parse(encodeChange(topic, "node-a", 1).text);
  for (
    const [spoil, expected] of [
      [(m: Record<string, unknown>) => m.values = "3.5", "shared state: values must be an array"],
      [
        (m: Record<string, unknown>) => (m.values as unknown[])[1] = { on: true },
        "shared state: value 1 is not a scalar",
      ],
      [(m: Record<string, unknown>) => m.missing = [4], "shared state: missing names value 4; there are 4"],
      [
        (m: Record<string, unknown>) => m.missing = ["0"],
        "shared state: missing must be an array of integers",
      ],
    ] as const
  ) {
    const spoilt = change();
    spoil(spoilt);
    refused(JSON.stringify(spoilt), expected);
  }
  const held = polledTopic(CELLS).feed.rows!;
  assert.throws(() => withValues(held, [3.5, false, 0.5]), {
    name: "SharedStateError",
    message: "shared state: 3 values for 2 rows of 2 varying columns",
  });
});

Deno.test("values reach a follower's subscribers as the polling node's own frames", () => {
  const polling = new Registry();
  const pollingPeer = new FakePeer();
  const polled = polling.subscribe(NAME, pollingPeer, rowsV1).topic;
  publishPoll(polled, tankRows(CELLS), 1000);
  const following = new Registry();
  const peer = new FakePeer();
  const topic = following.subscribe(NAME, peer, rowsV1).topic;
  const first = decodeState(encodeChange(polled, "node-a", 1).text);
  publishAdopted(topic, { rows: first.rows!, seq: first.seq, epoch: first.epoch, ts: first.ts });
  pollAgain(polled);
  const second = decodeState(encodeChange(polled, "node-a", 1).text);
  const rows = withValues(topic.feed.rows!, second.values!);
  assert.equal(publishAdopted(topic, { rows, seq: second.seq, epoch: second.epoch, ts: second.ts }), true);
  assert.equal(topic.feed.varyingOnly, true, "a follower that leads later shares values too");
  assert.deepEqual(peer.frames().map((frame) => frame.type), ["snapshot", "update"]);
  assert.deepEqual(peer.sent, pollingPeer.sent);
});

Deno.test("the state hash's whole state and the values since make the latest state; values that do not follow it are left", () => {
  const topic = polledTopic(CELLS);
  const whole = decodeState(encodeState(topic, "node-a", 7));
  const next = pollAgain(topic, 2000);
  const values = decodeState(encodeChange(topic, "node-a", 7).text);
  const latest = latestState(whole, values);
  assert.deepEqual(latest.rows!.cells, next);
  assert.equal(latest.rows!.shape, whole.rows!.shape);
  assert.deepEqual([latest.seq, latest.ts, latest.epoch, latest.values], [2, 2000, whole.epoch, undefined]);
  assert.equal(latestState(whole, undefined), whole);
  assert.equal(latestState(whole, { ...values, seq: whole.seq }), whole, "not after it");
  assert.equal(latestState(whole, { ...values, epoch: "another" }), whole, "another epoch");
  assert.equal(latestState(whole, decodeState(encodeState(topic, "node-a", 7))), whole, "not values");
  assert.throws(() => latestState(whole, { ...values, values: [1] }), {
    name: "SharedStateError",
    message: "shared state: 1 values for 2 rows of 2 varying columns",
  });
  assert.equal(valuesField("plant1/tanks/north"), "plant1/tanks/north values");
});
