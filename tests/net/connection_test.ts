/**
 * One connection over real sockets. Slow consumers: a raw TCP client that stops reading makes
 * the server's send buffer grow; over the soft limit it gets no intermediate updates and ends on
 * the latest values with one snapshot once it reads again; over the hard limit, or over the soft
 * one for longer than `slowClientGraceMs`, it is closed with 4008 and counted by reason.
 * Batch frames (`topics`): answered topic by topic, one frame for the rate limit. Closes for
 * abuse: the close frame reaches a client that flooded the server, read off the wire.
 */

import assert from "node:assert/strict";
import { createTestDatabase, type TestDatabase } from "../support/mysql.ts";
import { delay, startTestApp, type TestApp, waitFor } from "../support/app.ts";
import { type RawClient, RawClient as Raw, type RawFrame } from "../support/raw_ws.ts";
import { type Frame, TestClient } from "../support/ws_client.ts";
import { parseConfig } from "../../lib/config/config.ts";
import { Connection } from "../../lib/net/connection.ts";
import { Logger } from "../../lib/ops/log.ts";
import { METRIC_FAMILIES, Metrics } from "../../lib/ops/metrics.ts";
import { Registry } from "../../lib/hub/registry.ts";
import { defaultHandles } from "../support/handles.ts";

const UNITS = 40;
const ADDRESSES = 30;

/**
 * `unitCount` units of `addresses` × 3 points each. 40 × 30 gives many topics; 1 × 1700 gives
 * one topic whose every frame is a few hundred KB, which fills the kernel's socket buffers fast.
 */
async function bigPlant(unitCount = UNITS, addresses = ADDRESSES): Promise<TestDatabase> {
  const db = await createTestDatabase();
  const units = Array.from({ length: unitCount }, (_, i) => i + 1);
  const rows: unknown[] = [];
  for (const unit of units) {
    for (let a = 0; a < addresses; a++) {
      for (const code of ["ua", "ub", "ia"]) {
        rows.push([unit, code, code, code, `U${unit}A${a} ${code}`, 1, `U${unit}A${a}`, 1, "modbus", "a"]);
      }
    }
  }
  await db.query(
    "INSERT INTO archive_device (unit_id, code, recode, name, `rename`, show_id, gateway_address, gateway_id, lot_type, status) VALUES ?",
    [rows],
  );
  const data = units.flatMap((unit) =>
    Array.from({ length: addresses }, (_, a) => [`U${unit}A${a}`, 0, 0, 0])
  );
  await db.query("INSERT INTO device_data_real (equip_address, ua, ub, ia) VALUES ?", [data]);
  return db;
}

/** A v1 raw client subscribed to every unit, reading nothing after the handshake. */
async function stalledClient(app: TestApp, units = UNITS): Promise<RawClient> {
  const client = await Raw.open(app.port, { protocol: "gatecast.v1" });
  assert.deepEqual(client.answer.status, 101);
  for (let unit = 1; unit <= units; unit++) {
    await client.sendText(JSON.stringify({ type: "subscribe", id: unit, topic: `plant1/real/${unit}` }));
  }
  return client;
}

/** Changes every value every 60 ms until `until` holds. */
async function churnUntil(db: TestDatabase, what: string, until: () => boolean): Promise<void> {
  await waitFor(what, async () => {
    await db.query("UPDATE device_data_real SET ua = ua + 1, ub = ub + 1, ia = ia + 1");
    await delay(60);
    return until();
  }, 30_000);
}

function dropped(app: TestApp, reason: string): number {
  return app.metrics.value("gatecast_clients_dropped_total", { reason });
}

Deno.test("a client that stops reading gets no intermediate updates and, reading again, ends on the latest values, held-back topics through a fresh snapshot", async () => {
  const db = await bigPlant();
  const app = await startTestApp({ plant1: db.settings }, {
    pollIntervalMs: 50,
    sendBufferSoftBytes: 64 << 10,
    sendBufferHardBytes: 1 << 30,
    slowClientGraceMs: 600_000,
  });
  const client = await stalledClient(app);
  try {
    await churnUntil(db, "frames held back", () => app.metrics.value("gatecast_frames_held_back_total") > 0);
    // A few more ticks while held back, then the final values.
    await churnUntil(
      db,
      "more frames held back",
      () => app.metrics.value("gatecast_frames_held_back_total") > 100,
    );
    await db.query("UPDATE device_data_real SET ua = 7001, ub = 7002, ia = 7003");
    const FINAL: Record<string, number> = { ua: 7001, ub: 7002, ia: 7003 };
    // Each topic's last frame read: its seq and epoch.
    const last = new Map<string, { seq: number; epoch: string }>();
    const state = new Map<string, Map<string, number>>();
    let catchUpSnapshots = 0;
    const done = () =>
      state.size === UNITS &&
      [...state.values()].every((points) =>
        [...points].every(([key, value]) => value === FINAL[key.split("|")[1]])
      );
    while (!done()) {
      const frame = await client.read(10_000);
      assert.ok(frame && frame.opcode === 1, "expected text frames");
      const parsed = JSON.parse(frame.text);
      if (parsed.type === "subscribed") continue;
      const topic = parsed.topic as string;
      const { seq, epoch } = parsed;
      assert.ok(typeof epoch === "string" && epoch !== "", `epoch of ${topic}: ${JSON.stringify(epoch)}`);
      assert.ok(Number.isInteger(seq) && seq >= 1, `seq of ${topic}: ${seq}`);
      const before = last.get(topic);
      // One server run, every topic subscribed throughout: one epoch per topic.
      if (before !== undefined) assert.equal(epoch, before.epoch, `epoch of ${topic} stays`);
      last.set(topic, { seq, epoch });
      if (parsed.type === "snapshot") {
        // The topic's sequence is shared: a snapshot (the first, or a catch-up one) carries the
        // topic's current seq, past the frames this client was not sent, never back.
        if (before !== undefined) {
          assert.ok(seq > before.seq, `snapshot of ${topic} at ${seq} after ${before.seq}`);
          catchUpSnapshots++;
        }
        const points = parsed.points as { address: string; code: string; value: number }[];
        state.set(topic, new Map(points.map((p) => [`${p.address}|${p.code}`, p.value])));
      } else {
        assert.deepEqual(parsed.type, "update");
        // An update follows the frame before it: no gap between updates.
        assert.ok(before !== undefined, `an update of ${topic} before its snapshot`);
        assert.equal(seq, before.seq + 1, `update of ${topic} follows seq ${before.seq}`);
        for (const c of parsed.changes) state.get(topic)!.set(`${c.address}|${c.code}`, c.value);
      }
    }
    // Held-back topics caught up through a fresh snapshot, not through the updates they missed.
    assert.ok(catchUpSnapshots > 0, "some topic caught up with a snapshot");
    assert.deepEqual(dropped(app, "slow_hard_limit") + dropped(app, "slow_grace_expired"), 0);
  } finally {
    client.destroy();
    await app.stop();
    await db.drop();
  }
});

Deno.test("a client over the hard send-buffer limit is closed with 4008 and counted as slow_hard_limit", async () => {
  const db = await bigPlant(1, 1700);
  const app = await startTestApp({ plant1: db.settings }, {
    pollIntervalMs: 50,
    sendBufferSoftBytes: 1024,
    sendBufferHardBytes: 64 << 10,
    slowClientGraceMs: 600_000,
  });
  const client = await stalledClient(app, 1);
  try {
    await churnUntil(db, "the slow client dropped", () => dropped(app, "slow_hard_limit") === 1);
    let frame;
    do frame = await client.read(10_000); while (frame && frame.opcode !== 8);
    assert.deepEqual(frame?.code, 4008);
    assert.deepEqual(frame?.text, "client is not reading its frames");
    assert.deepEqual(dropped(app, "slow_grace_expired"), 0);
    await waitFor("the connection released", () => app.registry.subscriptionCount === 0);
  } finally {
    client.destroy();
    await app.stop();
    await db.drop();
  }
});

Deno.test("a client over the soft limit for longer than slowClientGraceMs is closed with 4008 and counted as slow_grace_expired", async () => {
  const db = await bigPlant(1, 1700);
  const app = await startTestApp({ plant1: db.settings }, {
    pollIntervalMs: 50,
    sendBufferSoftBytes: 1024,
    sendBufferHardBytes: 1 << 30,
    slowClientGraceMs: 300,
  });
  const client = await stalledClient(app, 1);
  try {
    await churnUntil(db, "the slow client dropped", () => dropped(app, "slow_grace_expired") === 1);
    let frame;
    do frame = await client.read(10_000); while (frame && frame.opcode !== 8);
    assert.deepEqual(frame?.code, 4008);
    assert.deepEqual(dropped(app, "slow_hard_limit"), 0);
  } finally {
    client.destroy();
    await app.stop();
    await db.drop();
  }
});

/** The parts of a WebSocket a Connection uses, with a settable `readyState`. */
class StuckSocket {
  readyState: number = WebSocket.OPEN;
  bufferedAmount = 0;
  onmessage: ((event: { data: unknown }) => void) | null = null;
  onclose: (() => void) | null = null;
  onerror: (() => void) | null = null;
  readonly sent: string[] = [];
  send(text: string): void {
    this.sent.push(text);
  }
  close(): void {
    this.readyState = WebSocket.CLOSING;
  }
}

Deno.test("a socket left CLOSING by Deno's keep-alive (its close event still pending) is released at the next frame", () => {
  // Deno closes a peer that missed its pong itself; when the peer also stopped reading, the close
  // frame waits behind the unread data and `close` fires only once the peer goes away.
  const registry = new Registry();
  const config = parseConfig(
    { auth: { mode: "none" }, databases: { plant1: { user: "u", database: "d" } } },
    () => undefined,
  );
  const socket = new StuckSocket();
  const connection = new Connection(
    socket as unknown as WebSocket,
    {
      config,
      registry,
      handles: defaultHandles(),
      metrics: new Metrics(METRIC_FAMILIES),
      logger: new Logger("error"),
    },
    false,
    "127.0.0.1",
  );
  socket.onmessage!({ data: `{"unit_id": 1, "handle": "real", "db_code": "plant1"}` });
  assert.deepEqual(registry.subscriptionCount, 1);
  assert.deepEqual(connection.admit(), "send");
  socket.readyState = WebSocket.CLOSING;
  assert.deepEqual(connection.admit(), "dropped");
  assert.deepEqual(registry.subscriptionCount, 0);
  assert.deepEqual(registry.topicCount, 0);
});

// ---- Batch subscribe and unsubscribe ----

/** Units 1 to `units`, one point each (`ua` of gateway `G<unit>`, valued the unit number). */
async function smallPlant(units: number): Promise<TestDatabase> {
  const db = await createTestDatabase();
  const numbers = Array.from({ length: units }, (_, i) => i + 1);
  await db.addPoints(numbers.map((unit) => ({ unit, code: "ua", address: `G${unit}` })));
  await db.query("INSERT INTO device_data_real (equip_address, ua) VALUES ?", [
    numbers.map((unit) => [`G${unit}`, unit]),
  ]);
  return db;
}

async function withSmallPlant(
  units: number,
  settings: Record<string, unknown>,
  fn: (app: TestApp, client: TestClient) => Promise<void>,
): Promise<void> {
  const db = await smallPlant(units);
  const app = await startTestApp({ plant1: db.settings }, settings);
  const client = await TestClient.open(app.wsUrl, "gatecast.v1");
  try {
    await fn(app, client);
  } finally {
    await client.close();
    await app.stop();
    await db.drop();
  }
}

/** Reads frames until `snapshots` snapshots came; returns the other frames in order and the snapshots by topic. */
async function answersAndSnapshots(
  client: TestClient,
  snapshots: number,
): Promise<{ answers: Frame[]; snapshots: Map<string, Frame> }> {
  const answers: Frame[] = [];
  const byTopic = new Map<string, Frame>();
  while (byTopic.size < snapshots) {
    const frame = await client.next();
    if (frame.type === "snapshot") byTopic.set(frame.topic, frame);
    else answers.push(frame);
  }
  return { answers, snapshots: byTopic };
}

Deno.test("a batch subscribe answers each topic in order: a bad topic among good ones gets its own error naming it, the good ones their ack and snapshot", async () => {
  await withSmallPlant(3, {}, async (app, client) => {
    client.send({
      type: "subscribe",
      id: 7,
      topics: ["plant1/real/1", "plant1/real/0", "plant9/real/2", "plant1/real/3"],
    });
    const { answers, snapshots } = await answersAndSnapshots(client, 2);
    assert.deepEqual(answers, [
      { type: "subscribed", id: 7, topic: "plant1/real/1" },
      {
        type: "error",
        id: 7,
        code: "BAD_TOPIC",
        message: 'topic "plant1/real/0": unit_id must be an integer from 1 to 2147483647',
        topic: "plant1/real/0",
      },
      {
        type: "error",
        id: 7,
        code: "UNKNOWN_DB",
        message: "no database 'plant9' is configured",
        topic: "plant9/real/2",
      },
      { type: "subscribed", id: 7, topic: "plant1/real/3" },
    ]);
    assert.deepEqual([...snapshots.keys()].sort(), ["plant1/real/1", "plant1/real/3"]);
    assert.deepEqual(snapshots.get("plant1/real/3").seq, 1);
    assert.deepEqual(snapshots.get("plant1/real/3").points.map((p: { value: unknown }) => p.value), [3]);
    assert.deepEqual(app.registry.subscriptionCount, 2);
    // The single form is answered as it always was: its error names no topic.
    client.send({ type: "subscribe", id: 8, topic: "plant9/real/2" });
    assert.deepEqual(await client.expect("error"), {
      type: "error",
      id: 8,
      code: "UNKNOWN_DB",
      message: "no database 'plant9' is configured",
    });
  });
});

Deno.test("a batch is one frame for the rate limit: 40 topics at 2 frames per second are all subscribed", async () => {
  await withSmallPlant(40, { maxFramesPerSecond: 2 }, async (app, client) => {
    const topics = Array.from({ length: 40 }, (_, i) => `plant1/real/${i + 1}`);
    client.send({ type: "subscribe", id: 1, topics });
    const { answers, snapshots } = await answersAndSnapshots(client, 40);
    assert.deepEqual(answers, topics.map((topic) => ({ type: "subscribed", id: 1, topic })));
    assert.deepEqual(snapshots.size, 40);
    assert.deepEqual(app.metrics.value("gatecast_client_errors_total", { code: "RATE_LIMITED" }), 0);
    client.send({ type: "ping", id: 2 }); // the second frame of the second
    assert.deepEqual(await client.next(), { type: "pong", id: 2 });
  });
});

Deno.test("topics of a batch past maxSubscriptionsPerConnection get TOO_MANY_SUBSCRIPTIONS each; those before are served", async () => {
  await withSmallPlant(5, { maxSubscriptionsPerConnection: 3 }, async (app, client) => {
    client.send({ type: "subscribe", id: 1, topic: "plant1/real/1" });
    await answersAndSnapshots(client, 1);
    client.send({
      type: "subscribe",
      id: 2,
      topics: ["plant1/real/2", "plant1/real/1", "plant1/real/3", "plant1/real/4", "plant1/real/5"],
    });
    const { answers } = await answersAndSnapshots(client, 3); // 2 and 3 new, 1 again
    const tooMany = (topic: string) => ({
      type: "error",
      id: 2,
      code: "TOO_MANY_SUBSCRIPTIONS",
      message: "a connection may hold at most 3 subscriptions",
      topic,
    });
    assert.deepEqual(answers, [
      { type: "subscribed", id: 2, topic: "plant1/real/2" },
      { type: "subscribed", id: 2, topic: "plant1/real/1" }, // held already: still one subscription
      { type: "subscribed", id: 2, topic: "plant1/real/3" },
      tooMany("plant1/real/4"),
      tooMany("plant1/real/5"),
    ]);
    assert.deepEqual(app.registry.subscriptionCount, 3);
  });
});

Deno.test("a batch unsubscribe ends each topic held and names the one not held with NOT_SUBSCRIBED", async () => {
  await withSmallPlant(3, {}, async (app, client) => {
    client.send({ type: "subscribe", id: 1, topics: ["plant1/real/1", "plant1/real/2"] });
    await answersAndSnapshots(client, 2);
    client.send({ type: "unsubscribe", id: 2, topics: ["plant1/real/2", "plant1/real/3", "plant1/real/1"] });
    assert.deepEqual([await client.next(), await client.next(), await client.next()], [
      { type: "unsubscribed", id: 2, topic: "plant1/real/2" },
      {
        type: "error",
        id: 2,
        code: "NOT_SUBSCRIBED",
        message: "not subscribed to 'plant1/real/3'",
        topic: "plant1/real/3",
      },
      { type: "unsubscribed", id: 2, topic: "plant1/real/1" },
    ]);
    assert.deepEqual(app.registry.subscriptionCount, 0);
  });
});

Deno.test("a batch with a duplicate, a non-string, or a topic beside it gets one BAD_FRAME and subscribes nothing", async () => {
  await withSmallPlant(2, {}, async (app, client) => {
    const frames: [unknown, string][] = [
      [
        { type: "subscribe", id: 1, topics: ["plant1/real/1", "plant1/real/1"] },
        '"topics" names "plant1/real/1" twice (at 1); name each topic once',
      ],
      [
        { type: "subscribe", id: 2, topics: ["plant1/real/1", 2] },
        '"topics[1]" must be a topic string, got 2',
      ],
      [
        { type: "subscribe", id: 3, topic: "plant1/real/1", topics: ["plant1/real/2"] },
        'a subscribe frame names one "topic" or a list of "topics", not both',
      ],
      [{ type: "unsubscribe", id: 4, topics: [] }, '"topics" must name at least one topic'],
    ];
    for (const [frame, message] of frames) {
      client.send(frame);
      const id = (frame as { id: number }).id;
      assert.deepEqual(await client.next(), { type: "error", id, code: "BAD_FRAME", message });
    }
    assert.deepEqual(app.registry.subscriptionCount, 0);
  });
});

Deno.test("a frame over maxFrameBytes with non-ASCII text is reported with its UTF-8 byte count", async () => {
  const app = await startTestApp({}, { maxFrameBytes: 256 });
  try {
    const client = await TestClient.open(app.wsUrl, "gatecast.v1");
    const text = JSON.stringify({ type: "ping", pad: "é".repeat(150) }); // 174 UTF-16 units
    assert.deepEqual(new TextEncoder().encode(text).length, 324);
    client.send(text);
    const closed = await client.closed;
    assert.deepEqual([closed.code, closed.reason], [1009, "frame of 324 bytes is over the 256-byte limit"]);
  } finally {
    await app.stop();
  }
});

// ---- A close for abuse reaches the client ----

/** Reads frames until the close frame; null when the connection ended without one. */
async function readUntilClose(client: RawClient): Promise<{ texts: Frame[]; close: RawFrame | null }> {
  const texts: Frame[] = [];
  while (true) {
    const frame = await client.read(10_000);
    if (frame === null || frame.opcode === 8) return { texts, close: frame };
    texts.push(JSON.parse(frame.text));
  }
}

Deno.test("a raw client that sends 1,000 single subscribe frames at once gets its 4029 close frame, and the drop is logged with its reason", async () => {
  const db = await createTestDatabase();
  const app = await startTestApp({ plant1: db.settings }, { maxFramesPerSecond: 5 });
  const client = await Raw.open(app.port, { protocol: "gatecast.v1" });
  try {
    await client.sendTexts(
      Array.from(
        { length: 1000 },
        (_, i) => JSON.stringify({ type: "subscribe", id: i + 1, topic: `plant1/real/${i + 1}` }),
      ),
    );
    const { texts, close } = await readUntilClose(client);
    assert.ok(close, `a close frame, not a reset, after ${texts.length} frames`);
    assert.deepEqual([close.code, close.text], [4029, "over 5 frames per second"]);
    // The rate's burst was served; the close came after twice the rate refused in a row, each
    // with an error. (How many frames the bucket refilled for meanwhile depends on the clock.)
    const answers = texts.filter((f) => f.type !== "snapshot");
    assert.deepEqual(
      answers.slice(0, 5),
      [1, 2, 3, 4, 5].map((id) => ({
        type: "subscribed",
        id,
        topic: `plant1/real/${id}`,
      })),
    );
    assert.deepEqual(answers.slice(-10).map((f) => f.code), Array(10).fill("RATE_LIMITED"));
    await client.sendFrame(8, new Uint8Array([close.code! >> 8, close.code! & 255]));
    assert.deepEqual(await client.read(), null); // the server ends the TCP connection after the handshake
    assert.deepEqual(dropped(app, "rate_limited"), 1);
    const logged = app.logs.filter((line) => line.msg === "dropping client");
    assert.deepEqual(
      logged.map(({ level, reason, closeCode, closeReason }) => ({ level, reason, closeCode, closeReason })),
      [
        { level: "info", reason: "rate_limited", closeCode: 4029, closeReason: "over 5 frames per second" },
      ],
    );
    assert.deepEqual(app.registry.subscriptionCount, 0);
  } finally {
    client.destroy();
    await app.stop();
    await db.drop();
  }
});

Deno.test("a flooding client that never stops sending still gets its close frame, at the end of the linger's bound", async () => {
  const app = await startTestApp({}, { maxFramesPerSecond: 5 });
  const client = await Raw.open(app.port, { protocol: "gatecast.v1" });
  let sending = true;
  const trickle = (async () => {
    await client.sendTexts(Array.from({ length: 1000 }, () => '{"type":"ping"}'));
    // Never quiet for long: the server closes at its linger's bound, not when the client stops.
    while (sending) {
      await client.sendText('{"type":"ping"}').catch(() => sending = false);
      await delay(10);
    }
  })();
  try {
    const { close } = await readUntilClose(client);
    assert.deepEqual([close?.code, close?.text], [4029, "over 5 frames per second"]);
  } finally {
    sending = false;
    await trickle;
    client.destroy();
    await app.stop();
  }
});
