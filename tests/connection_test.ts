/**
 * Slow consumers over real sockets: a raw TCP client that stops reading makes the server's
 * send buffer grow; over the soft limit it gets no intermediate updates and ends on the latest
 * values with one snapshot once it reads again; over the hard limit, or over the soft one for
 * longer than `slowClientGraceMs`, it is closed with 4008 and counted by reason.
 */

import assert from "node:assert/strict";
import { createTestDatabase, type TestDatabase } from "./support/mysql.ts";
import { delay, startTestApp, type TestApp, waitFor } from "./support/app.ts";
import { type RawClient, RawClient as Raw } from "./support/raw_ws.ts";
import { parseConfig } from "../lib/config.ts";
import { Connection } from "../lib/connection.ts";
import { Logger } from "../lib/log.ts";
import { METRIC_FAMILIES, Metrics } from "../lib/metrics.ts";
import { Registry } from "../lib/registry.ts";

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
    const lastSeq = new Map<string, number>();
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
      assert.deepEqual(parsed.seq, (lastSeq.get(topic) ?? 0) + 1, `seq of ${topic} has no gap`);
      lastSeq.set(topic, parsed.seq);
      if (parsed.type === "snapshot") {
        if (parsed.seq > 1) catchUpSnapshots++;
        const points = parsed.points as { address: string; code: string; value: number }[];
        state.set(topic, new Map(points.map((p) => [`${p.address}|${p.code}`, p.value])));
      } else {
        assert.deepEqual(parsed.type, "update");
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
      handles: new Set(["real"]),
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
