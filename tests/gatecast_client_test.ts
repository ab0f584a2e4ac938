/**
 * The client SDK (`client/gatecast_client.js`) in Deno against a running gatecast on a real
 * MariaDB: snapshot and updates, restart of the server on the same port, `seq` gaps, stale
 * topics, unsubscribing, the backoff schedule, and dashboards of many topics: batch frames,
 * resubscribing in batches, and retries of what the rate limit dropped. Then the rows of the
 * configuration's handles, over the demo plant's SQLite database with the demo's handles: after
 * every change made in the database, the SDK's rows equal the handle's query result. The rules of
 * the shared sequence (a snapshot at any `seq` is a base, another `epoch` means subscribe again,
 * no `epoch` from older servers) against a WebSocket endpoint that sends hand-written frames.
 */

import assert from "node:assert/strict";
import { DatabaseSync } from "node:sqlite";
import {
  backoffDelay,
  GatecastClient,
  MAX_BATCH_BYTES,
  POINT_KEY,
  pointKey,
  rowKey,
  type Status,
  type StatusDetail,
  topicOf,
  topicParts,
  type TopicState,
} from "../client/gatecast_client.js";
import { createDemoSchema, DEMO_HANDLES } from "../lib/sources/demo_plant.ts";
import { SqliteSource } from "../lib/sources/sqlite_source.ts";
import { createTestDatabase, freePort, type TestDatabase } from "./support/mysql.ts";
import { startTestApp, type TestApp, waitFor, withTestApp } from "./support/app.ts";
import { signToken, tokenAuth } from "./support/tokens.ts";

const TOPIC = "plant1/real/7";

async function boilerRoom(): Promise<TestDatabase> {
  const db = await createTestDatabase();
  await db.addPoints([
    { unit: 7, code: "ua", address: "B1", showId: 1, rename: "Boiler 1 voltage" },
    { unit: 7, code: "ia", address: "B1", showId: 2, rename: "Boiler 1 current" },
    { unit: 7, code: "ua", address: "B2", showId: 3, rename: "Boiler 2 voltage" },
  ]);
  await db.setData("B1", { ua: 230, ia: 5 });
  await db.setData("B2", { ua: 231 });
  return db;
}

/** Collects every state a handler saw and every status change. */
class Recorder {
  readonly states: TopicState[] = [];
  readonly statuses: { status: Status; detail: StatusDetail }[] = [];
  readonly handler = (state: TopicState) => this.states.push(state);
  readonly onStatus = (status: Status, detail: StatusDetail) => this.statuses.push({ status, detail });

  get last(): TopicState {
    return this.states[this.states.length - 1];
  }
  values(state: TopicState = this.last): Record<string, unknown> {
    return Object.fromEntries(state.points.map((p) => [`${p.address}.${p.code}`, p.value]));
  }
  statusNames(): Status[] {
    return this.statuses.map((s) => s.status);
  }
  async until(what: string, check: (state: TopicState | undefined) => boolean): Promise<TopicState> {
    await waitFor(what, () => check(this.last));
    return this.last;
  }
}

/** Fast reconnects for tests; no pings (the server under test is local). */
const FAST = { initialDelayMs: 50, maxDelayMs: 200, jitter: 0, pingIntervalMs: 0 };

async function withBoilerRoom(
  fn: (db: TestDatabase, app: TestApp) => Promise<void>,
  settings: Record<string, unknown> = {},
): Promise<void> {
  const db = await boilerRoom();
  await withTestApp(db, { plant1: db.settings }, (app) => fn(db, app), settings);
}

Deno.test("backoffDelay doubles from the initial delay, stops at the cap, and jitter only shortens it", () => {
  const options = { initialDelayMs: 500, maxDelayMs: 4000, factor: 2, jitter: 0.5 };
  const none = () => 0;
  assert.deepEqual([1, 2, 3, 4, 5, 9].map((n) => backoffDelay(n, options, none)), [
    500,
    1000,
    2000,
    4000,
    4000,
    4000,
  ]);
  assert.deepEqual(backoffDelay(3, options, () => 1), 1000);
  assert.deepEqual(backoffDelay(3, options, () => 0.25), 1750);
  assert.deepEqual(backoffDelay(1, {}, none), 500);
  assert.deepEqual(backoffDelay(30, {}, none), 30000);
});

Deno.test("pointKey tells points apart by address and code only", () => {
  assert.deepEqual(pointKey({ address: "B1", code: "ua" }), '["B1","ua"]');
  assert.notDeepEqual(pointKey({ address: "B1/ua", code: "" }), pointKey({ address: "B1", code: "/ua" }));
});

Deno.test("a handler gets the snapshot, then each UPDATE applied to the whole point list", async () => {
  await withBoilerRoom(async (db, app) => {
    const rec = new Recorder();
    const client = new GatecastClient(app.wsUrl, { ...FAST, onStatus: rec.onStatus });
    try {
      client.subscribe(TOPIC, rec.handler);
      const first = await rec.until("the snapshot", (s) => s?.reason === "snapshot");
      assert.deepEqual(first.seq, 1);
      assert.deepEqual(rec.values(first), { "B1.ua": 230, "B1.ia": 5, "B2.ua": 231 });
      assert.deepEqual(first.points.map((p) => p.rename), [
        "Boiler 1 voltage",
        "Boiler 1 current",
        "Boiler 2 voltage",
      ]);
      assert.deepEqual([...first.changed].sort(), ['["B1","ia"]', '["B1","ua"]', '["B2","ua"]']);

      await db.query("UPDATE device_data_real SET ia = 6.5 WHERE equip_address = 'B1'");
      const update = await rec.until("the update", (s) => s?.reason === "update");
      assert.deepEqual(update.seq, 2);
      assert.deepEqual(rec.values(update), { "B1.ua": 230, "B1.ia": 6.5, "B2.ua": 231 });
      assert.deepEqual([...update.changed], ['["B1","ia"]']);
      assert.deepEqual([...update.changedColumns], [['["B1","ia"]', ["value"]]]);
      assert.deepEqual(update.removed.size, 0);
      assert.deepEqual(update.frames, "points");
      assert.deepEqual(update.key, ["address", "code"]);
      assert.equal(update.rows, update.points);
      // The earlier state was not changed under the handler's feet.
      assert.deepEqual(rec.values(first), { "B1.ua": 230, "B1.ia": 5, "B2.ua": 231 });
      assert.deepEqual(rec.statusNames(), ["connecting", "open"]);
      assert.deepEqual(rec.statuses[0].detail, { attempt: 1 });
    } finally {
      client.close();
    }
  });
});

Deno.test("after a server restart on the same port the client reconnects, resubscribes and sees the new snapshot", async () => {
  const db = await boilerRoom();
  const port = freePort();
  let app = await startTestApp({ plant1: db.settings }, { port });
  const rec = new Recorder();
  const client = new GatecastClient(app.wsUrl, { ...FAST, onStatus: rec.onStatus });
  try {
    client.subscribe(TOPIC, rec.handler);
    await rec.until("the first snapshot", (s) => s?.reason === "snapshot");

    await app.stop();
    await waitFor("the client to notice", () => client.status !== "open");
    await db.query("UPDATE device_data_real SET ua = 199 WHERE equip_address = 'B2'");
    // Let at least one reconnect attempt fail against the closed port.
    await waitFor(
      "a failed attempt",
      () => rec.statuses.filter((s) => s.status === "connecting").length >= 3,
    );
    app = await startTestApp({ plant1: db.settings }, { port });

    const after = await rec.until("the snapshot after the restart", (s) => rec.values(s!)["B2.ua"] === 199);
    assert.deepEqual(after.reason, "snapshot");
    assert.deepEqual(after.seq, 1);
    assert.deepEqual(rec.values(after), { "B1.ua": 230, "B1.ia": 5, "B2.ua": 199 });
    assert.deepEqual([...after.changed], ['["B2","ua"]']);
    assert.deepEqual(client.status, "open");
    assert.deepEqual(app.registry.topicCount, 1);

    const names = rec.statusNames();
    assert.deepEqual(names.slice(0, 3), ["connecting", "open", "closed"]);
    assert.deepEqual(names[names.length - 1], "open");
    const firstLoss = rec.statuses[2].detail;
    assert.deepEqual(firstLoss.code, 1001); // the server said it was going away
    assert.deepEqual(firstLoss.reconnectInMs, 50);
    const delays = rec.statuses.filter((s) => s.status === "closed").map((s) => s.detail.reconnectInMs);
    assert.deepEqual(delays.slice(0, 3), [50, 100, 200]); // doubling, then capped at maxDelayMs
    assert.ok(delays.every((d) => d !== undefined && d <= 200));

    await db.query("UPDATE device_data_real SET ua = 200 WHERE equip_address = 'B2'");
    const update = await rec.until("an update on the new server", (s) => s?.reason === "update");
    assert.deepEqual(update.seq, 2);
    assert.deepEqual(rec.values(update)["B2.ua"], 200);
  } finally {
    client.close();
    await app.stop();
    await db.drop();
  }
});

/** A WebSocket that loses the first `update` frame it receives and records what is sent. */
function lossyWebSocket(sent: unknown[]) {
  return class LossyWebSocket extends WebSocket {
    #dropped = false;
    #handler: ((event: MessageEvent) => void) | null = null;
    override get onmessage() {
      return this.#handler;
    }
    override set onmessage(handler: ((event: MessageEvent) => void) | null) {
      this.#handler = handler;
      super.onmessage = handler && ((event: MessageEvent) => {
        if (!this.#dropped && typeof event.data === "string" && event.data.startsWith('{"type":"update"')) {
          this.#dropped = true;
          return;
        }
        handler(event);
      });
    }
    override send(data: string) {
      sent.push(JSON.parse(data));
      super.send(data);
    }
  };
}

Deno.test("a seq gap makes the client subscribe again and end on the latest points", async () => {
  await withBoilerRoom(async (db, app) => {
    const rec = new Recorder();
    const sent: unknown[] = [];
    const client = new GatecastClient(app.wsUrl, { ...FAST, WebSocket: lossyWebSocket(sent) });
    try {
      client.subscribe(TOPIC, rec.handler);
      await rec.until("the snapshot", (s) => s?.reason === "snapshot");
      await db.query("UPDATE device_data_real SET ua = 1 WHERE equip_address = 'B1'"); // seq 2: lost
      await waitFor("the lost update to be polled", async () => (await updatesSent(app)) >= 1);
      await db.query("UPDATE device_data_real SET ua = 2 WHERE equip_address = 'B1'"); // seq 3: a gap
      const fresh = await rec.until(
        "the fresh snapshot",
        (s) => s?.reason === "snapshot" && rec.states.length > 1,
      );
      assert.deepEqual(rec.values(fresh), { "B1.ua": 2, "B1.ia": 5, "B2.ua": 231 });
      assert.deepEqual([...fresh.changed], ['["B1","ua"]']);
      assert.deepEqual(rec.states.map((s) => `${s.reason}:${s.seq}`), ["snapshot:1", "snapshot:3"]);
      assert.deepEqual(sent, [
        { type: "subscribe", id: 1, topics: [TOPIC] },
        { type: "subscribe", id: 2, topics: [TOPIC] },
      ]);
    } finally {
      client.close();
    }
  });
});

/** A WebSocket endpoint on 127.0.0.1 that sends only the frames a test writes by hand. */
interface ScriptedServer {
  /** `ws://127.0.0.1:<port>/ws` */
  readonly url: string;
  /** Sends a frame to the connection the client opened last. */
  send(frame: Record<string, unknown>): void;
}

/** Runs `fn` with a {@link ScriptedServer}, then shuts it down, whether `fn` passed or failed. */
async function withScriptedServer(fn: (server: ScriptedServer) => Promise<void>): Promise<void> {
  let socket: WebSocket | undefined;
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, (request) => {
    const upgrade = Deno.upgradeWebSocket(request, { protocol: "gatecast.v1" });
    socket = upgrade.socket;
    return upgrade.response;
  });
  const send = (frame: Record<string, unknown>) => {
    if (socket?.readyState !== WebSocket.OPEN) throw new Error("the client is not connected");
    socket.send(JSON.stringify(frame));
  };
  try {
    await fn({ url: `ws://127.0.0.1:${server.addr.port}/ws`, send });
  } finally {
    socket?.close();
    await server.shutdown();
  }
}

/** One of `TOPIC`'s points as the server sends it: `B1`'s `ua`. */
function boilerPoint(value: number): Record<string, unknown> {
  return {
    code: "ua",
    recode: "UA",
    name: "ua",
    rename: "Boiler 1 voltage",
    show_id: 1,
    address: "B1",
    gateway_id: 1,
    address_type: "modbus",
    value,
  };
}

/** A hand-written snapshot of `TOPIC`, with `epoch` left out when `undefined` (an older server). */
function pointsSnapshot(seq: number, epoch: string | undefined, value: number): Record<string, unknown> {
  return {
    type: "snapshot",
    topic: TOPIC,
    seq,
    epoch,
    ts: 1764121212000 + seq,
    points: [boilerPoint(value)],
  };
}

/** A hand-written update of `TOPIC`'s one point, with `epoch` left out when `undefined`. */
function pointsUpdate(seq: number, epoch: string | undefined, value: number): Record<string, unknown> {
  return {
    type: "update",
    topic: TOPIC,
    seq,
    epoch,
    ts: 1764121212000 + seq,
    changes: [{ address: "B1", code: "ua", value }],
  };
}

/** `reason:seq:epoch` of every state, for comparing sequences at a glance. */
function seqTrail(rec: Recorder): string[] {
  return rec.states.map((s) => `${s.reason}:${s.seq}:${s.epoch}`);
}

/** The frames a {@link recordingWebSocket} recorded, without their sizes. */
function framesSent(sent: SentFrame[]): Record<string, unknown>[] {
  return sent.map(({ bytes: _, ...frame }) => frame);
}

Deno.test("a snapshot at the topic's current seq (57) is the base: the update 58 of its epoch is applied, and a later snapshot at any seq becomes the new base, with no subscribe again", async () => {
  await withScriptedServer(async (server) => {
    const rec = new Recorder();
    const sent: SentFrame[] = [];
    const client = new GatecastClient(server.url, { ...FAST, WebSocket: recordingWebSocket(sent) });
    try {
      client.subscribe(TOPIC, rec.handler);
      await waitFor("the subscribe", () => sent.length === 1);
      server.send({ type: "subscribed", id: 1, topic: TOPIC });
      server.send(pointsSnapshot(57, "k3x9-1", 230));
      server.send(pointsUpdate(58, "k3x9-1", 229.5));
      const update = await rec.until("the update", (s) => s?.reason === "update");
      assert.deepEqual(rec.values(update), { "B1.ua": 229.5 });
      assert.deepEqual(update.ts, 1764121212058);
      // A fresh snapshot (after being held back as slow, say) skips numbers: it is a base all the same.
      server.send(pointsSnapshot(61, "k3x9-1", 228));
      server.send(pointsUpdate(62, "k3x9-1", 227));
      const last = await rec.until("the update after the snapshot", (s) => s?.seq === 62);
      assert.deepEqual(rec.values(last), { "B1.ua": 227 });
      server.send({
        type: "stale",
        topic: TOPIC,
        epoch: "k3x9-1",
        code: "SOURCE_UNAVAILABLE",
        message: "down",
      });
      const stale = await rec.until("stale", (s) => s?.reason === "stale");
      assert.deepEqual([stale.seq, stale.epoch, rec.values(stale)], [62, "k3x9-1", { "B1.ua": 227 }]);
      assert.deepEqual(seqTrail(rec), [
        "snapshot:57:k3x9-1",
        "update:58:k3x9-1",
        "snapshot:61:k3x9-1",
        "update:62:k3x9-1",
        "stale:62:k3x9-1",
      ]);
      assert.deepEqual(framesSent(sent), [{ type: "subscribe", id: 1, topics: [TOPIC] }]);
    } finally {
      client.close();
    }
  });
});

Deno.test("an update of another epoch makes the client subscribe again even with the next seq; the new epoch's snapshot is the base", async () => {
  await withScriptedServer(async (server) => {
    const rec = new Recorder();
    const sent: SentFrame[] = [];
    const client = new GatecastClient(server.url, { ...FAST, WebSocket: recordingWebSocket(sent) });
    try {
      client.subscribe(TOPIC, rec.handler);
      await waitFor("the subscribe", () => sent.length === 1);
      server.send({ type: "subscribed", id: 1, topic: TOPIC });
      server.send(pointsSnapshot(57, "k3x9-1", 230));
      await rec.until("the snapshot", (s) => s?.reason === "snapshot");
      // The sequence started again elsewhere (a new leaseholder) and happens to be at 58 too.
      server.send(pointsUpdate(58, "k3x9-2", 1));
      await waitFor("the subscribe again", () => sent.length === 2);
      // Updates before the answering snapshot are not applied.
      server.send(pointsUpdate(3, "k3x9-2", 2));
      server.send({ type: "subscribed", id: 2, topic: TOPIC });
      server.send(pointsSnapshot(3, "k3x9-2", 231));
      server.send(pointsUpdate(4, "k3x9-2", 232));
      const update = await rec.until("the update of the new epoch", (s) => s?.reason === "update");
      assert.deepEqual(rec.values(update), { "B1.ua": 232 });
      assert.deepEqual(seqTrail(rec), ["snapshot:57:k3x9-1", "snapshot:3:k3x9-2", "update:4:k3x9-2"]);
      assert.deepEqual([...rec.states[1].changed], ['["B1","ua"]']);
      assert.deepEqual(framesSent(sent), [
        { type: "subscribe", id: 1, topics: [TOPIC] },
        { type: "subscribe", id: 2, topics: [TOPIC] },
      ]);
    } finally {
      client.close();
    }
  });
});

Deno.test("frames without epoch (a server older than the shared sequence) follow by seq alone, and a seq gap still subscribes again", async () => {
  await withScriptedServer(async (server) => {
    const rec = new Recorder();
    const sent: SentFrame[] = [];
    const client = new GatecastClient(server.url, { ...FAST, WebSocket: recordingWebSocket(sent) });
    try {
      client.subscribe(TOPIC, rec.handler);
      await waitFor("the subscribe", () => sent.length === 1);
      server.send({ type: "subscribed", id: 1, topic: TOPIC });
      server.send(pointsSnapshot(1, undefined, 230));
      server.send(pointsUpdate(2, undefined, 231));
      await rec.until("the update", (s) => s?.reason === "update");
      server.send(pointsUpdate(4, undefined, 233)); // 3 was lost
      await waitFor("the subscribe again", () => sent.length === 2);
      server.send({ type: "subscribed", id: 2, topic: TOPIC });
      server.send(pointsSnapshot(1, undefined, 233));
      const fresh = await rec.until(
        "the fresh snapshot",
        (s) => rec.states.length === 3 && s?.reason === "snapshot",
      );
      assert.deepEqual(rec.values(fresh), { "B1.ua": 233 });
      assert.deepEqual(seqTrail(rec), ["snapshot:1:undefined", "update:2:undefined", "snapshot:1:undefined"]);
      assert.deepEqual(framesSent(sent), [
        { type: "subscribe", id: 1, topics: [TOPIC] },
        { type: "subscribe", id: 2, topics: [TOPIC] },
      ]);
    } finally {
      client.close();
    }
  });
});

/** Frames the server sent beyond the first two (subscribed, snapshot): the updates. */
async function updatesSent(app: TestApp): Promise<number> {
  const text = await (await fetch(`${app.httpUrl}/metrics`)).text();
  const frames = Number(/^gatecast_frames_sent_total (\d+)$/m.exec(text)?.[1] ?? 0);
  return frames - 2;
}

Deno.test("status turns stale while the topic's query fails (its table renamed) and open again once it recovers", async () => {
  await withBoilerRoom(async (db, app) => {
    const rec = new Recorder();
    const client = new GatecastClient(app.wsUrl, { ...FAST, onStatus: rec.onStatus });
    try {
      client.subscribe(TOPIC, rec.handler);
      await rec.until("the snapshot", (s) => s?.reason === "snapshot");
      await db.query("RENAME TABLE device_data_real TO device_data_gone");
      const stale = await rec.until("stale", (s) => s?.reason === "stale");
      assert.deepEqual(stale.stale?.code, "HANDLE_FAILED"); // the table is gone, not the database
      assert.match(stale.stale!.message, /device_data_real/);
      assert.deepEqual(rec.values(stale), { "B1.ua": 230, "B1.ia": 5, "B2.ua": 231 }); // last known values kept
      assert.deepEqual(client.status, "stale");
      assert.deepEqual(rec.statuses[rec.statuses.length - 1].detail, { staleTopics: [TOPIC] });

      await db.query("RENAME TABLE device_data_gone TO device_data_real");
      const back = await rec.until(
        "the snapshot after recovery",
        (s) => s?.reason === "snapshot" && s.stale === undefined && rec.states.length > 2,
      );
      assert.deepEqual(back.changed.size, 0);
      assert.deepEqual(rec.statusNames(), ["connecting", "open", "stale", "open"]);
    } finally {
      client.close();
    }
  });
});

Deno.test("a second handler gets the current state at once; removing the last one unsubscribes on the server", async () => {
  await withBoilerRoom(async (_db, app) => {
    const one = new Recorder();
    const two = new Recorder();
    const client = new GatecastClient(app.wsUrl, FAST);
    try {
      const stopOne = client.subscribe(TOPIC, one.handler);
      await one.until("the snapshot", (s) => s?.reason === "snapshot");
      const stopTwo = client.subscribe(TOPIC, two.handler);
      assert.deepEqual(two.states.length, 1);
      assert.deepEqual(two.values(), { "B1.ua": 230, "B1.ia": 5, "B2.ua": 231 });
      assert.deepEqual(app.registry.subscriptionCount, 1);

      stopOne();
      assert.deepEqual(client.topics, [TOPIC]);
      stopTwo();
      assert.deepEqual(client.topics, []);
      await waitFor("the server to drop the topic", () => app.registry.topicCount === 0);
    } finally {
      client.close();
    }
  });
});

Deno.test("a refused subscription reaches its handler as an error and the connection stays open", async () => {
  await withBoilerRoom(async (_db, app) => {
    const rec = new Recorder();
    const client = new GatecastClient(app.wsUrl, FAST);
    try {
      client.subscribe("plant9/real/7", rec.handler);
      const refused = await rec.until("the error", (s) => s?.reason === "error");
      assert.deepEqual(refused.error, { code: "UNKNOWN_DB", message: "no database 'plant9' is configured" });
      assert.deepEqual(refused.points, []);
      client.subscribe(TOPIC, rec.handler);
      await rec.until("a snapshot on the same connection", (s) => s?.reason === "snapshot");
      assert.deepEqual(client.status, "open");
    } finally {
      client.close();
    }
  });
});

Deno.test("close() ends the connection for good: status closed, no reconnect", async () => {
  await withBoilerRoom(async (_db, app) => {
    const rec = new Recorder();
    const client = new GatecastClient(app.wsUrl, { ...FAST, onStatus: rec.onStatus });
    await waitFor("open", () => client.status === "open");
    await waitFor(
      "the server to count the connection",
      () => app.metrics.value("gatecast_connections") === 1,
    );
    client.close();
    await waitFor("the server to see the close", () => app.metrics.value("gatecast_connections") === 0);
    await new Promise((r) => setTimeout(r, 300)); // longer than any reconnect delay
    assert.deepEqual(rec.statusNames(), ["connecting", "open", "closed"]);
    assert.deepEqual(rec.statuses[2].detail, { code: 1000, reason: "client closed" });
    assert.deepEqual(app.metrics.value("gatecast_connections"), 0);
  });
});

Deno.test("with maxAttempts the client gives up after that many failed attempts in a row", async () => {
  const rec = new Recorder();
  const client = new GatecastClient(`ws://127.0.0.1:${freePort()}/ws`, {
    ...FAST,
    maxAttempts: 3,
    onStatus: rec.onStatus,
  });
  await waitFor(
    "giving up",
    () => rec.statuses.some((s) => s.status === "closed" && s.detail.reconnectInMs === undefined),
  );
  assert.deepEqual(rec.statusNames(), [
    "connecting",
    "closed",
    "connecting",
    "closed",
    "connecting",
    "closed",
  ]);
  assert.deepEqual(rec.statuses.map((s) => s.detail.attempt ?? s.detail.reconnectInMs ?? "final"), [
    1,
    50,
    2,
    100,
    3,
    "final",
  ]);
  client.close();
});

Deno.test("a URL that is not ws: or wss: is refused at once", () => {
  assert.throws(() => new GatecastClient("http://127.0.0.1:4053/ws"), {
    name: "SyntaxError",
    message: "expected a ws: or wss: URL, got http://127.0.0.1:4053/ws",
  });
  assert.throws(() => new GatecastClient("not a url"), TypeError);
});

Deno.test("with a token the client authenticates after every connect and its subscriptions work", async () => {
  const db = await boilerRoom();
  const token = await signToken({ topics: ["plant1/real/*"] });
  await withTestApp(db, { plant1: db.settings }, async (app) => {
    const recorder = new Recorder();
    const client = new GatecastClient(app.wsUrl, {
      ...FAST,
      token: () => token,
      onStatus: recorder.onStatus,
    });
    client.subscribe(TOPIC, recorder.handler);
    const state = await recorder.until("the snapshot", (s) => s?.reason === "snapshot");
    assert.deepEqual(recorder.values(state), { "B1.ua": 230, "B1.ia": 5, "B2.ua": 231 });
    client.close();
    const refused = new Recorder();
    const anonymous = new GatecastClient(app.wsUrl, { ...FAST, maxAttempts: 1, onStatus: refused.onStatus });
    anonymous.subscribe(TOPIC, refused.handler);
    await waitFor("the unauthenticated client to be closed", () => refused.statusNames().includes("closed"));
    assert.equal(refused.states.some((s) => s.reason === "snapshot"), false);
    anonymous.close();
  }, { auth: tokenAuth({ timeoutMs: 300 }) });
});

// ---- Dashboards of many topics ----

/** Units 1 to `units`, one point each (`ua` of gateway `U<unit>`, valued the unit number), in two statements. */
async function unitsPlant(units: number): Promise<TestDatabase> {
  const db = await createTestDatabase();
  const numbers = Array.from({ length: units }, (_, i) => i + 1);
  await db.query(
    "INSERT INTO archive_device (unit_id, code, recode, name, `rename`, show_id, gateway_address, gateway_id, lot_type, status) VALUES ?",
    [numbers.map((unit) => [unit, "ua", "UA", "ua", `U${unit} ua`, 1, `U${unit}`, 1, "modbus", "a"])],
  );
  await db.query("INSERT INTO device_data_real (equip_address, ua) VALUES ?", [
    numbers.map((unit) => [`U${unit}`, unit]),
  ]);
  return db;
}

/** A sent frame, parsed, with its size in bytes. */
type SentFrame = Record<string, unknown> & { bytes: number };

/** A WebSocket that records every frame the client sends. */
function recordingWebSocket(sent: SentFrame[]) {
  return class RecordingWebSocket extends WebSocket {
    override send(data: string) {
      sent.push({ ...JSON.parse(data), bytes: new TextEncoder().encode(data).length });
      super.send(data);
    }
  };
}

/** The topics of the subscribe frames sent, frame by frame. */
function subscribeBatches(sent: SentFrame[]): string[][] {
  return sent.filter((frame) => frame.type === "subscribe").map((frame) => frame.topics as string[]);
}

/** Lets the current turn of the event loop end. */
function nextTurn(): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, 0));
}

Deno.test("1,000 topics subscribed in one turn go out as batch frames under MAX_BATCH_BYTES and get 1,000 snapshots; after a restart they are resubscribed in batches; the connection stays open", async () => {
  const db = await unitsPlant(1000);
  const port = freePort();
  let app = await startTestApp({ plant1: db.settings }, { port });
  const sent: SentFrame[] = [];
  const recorder = new Recorder();
  const snapshots = new Map<string, TopicState[]>();
  const client = new GatecastClient(app.wsUrl, {
    ...FAST,
    WebSocket: recordingWebSocket(sent),
    onStatus: recorder.onStatus,
  });
  const topics = Array.from({ length: 1000 }, (_, i) => `plant1/real/${i + 1}`);
  try {
    for (const topic of topics) {
      client.subscribe(topic, (state) => {
        if (state.reason === "snapshot") snapshots.set(topic, [...(snapshots.get(topic) ?? []), state]);
      });
    }
    await waitFor("1,000 snapshots", () => snapshots.size === 1000, 30_000);
    // About 18 KB of topics: two frames, each under the limit, every topic once.
    const batches = subscribeBatches(sent);
    assert.deepEqual(batches.length, 2);
    assert.deepEqual(batches.flat(), topics);
    assert.ok(
      sent.every((frame) => frame.bytes <= MAX_BATCH_BYTES),
      `frames of ${sent.map((f) => f.bytes)} bytes`,
    );
    assert.ok([...snapshots.values()].every((states) => states.length === 1), "one snapshot per topic");
    assert.deepEqual(snapshots.get("plant1/real/1000")![0].points.map((p) => p.value), [1000]);
    assert.deepEqual(client.status, "open");
    assert.deepEqual(app.metrics.value("gatecast_client_errors_total", { code: "RATE_LIMITED" }), 0);

    await app.stop();
    await waitFor("the client to notice", () => client.status !== "open");
    sent.length = 0;
    snapshots.clear();
    app = await startTestApp({ plant1: db.settings }, { port });
    await waitFor("1,000 snapshots after the restart", () => snapshots.size === 1000, 30_000);
    assert.deepEqual(
      subscribeBatches(sent).map((batch) => batch.length),
      batches.map((batch) => batch.length),
    );
    assert.deepEqual(subscribeBatches(sent).flat(), topics);
    assert.deepEqual(client.status, "open");
    assert.deepEqual(app.metrics.value("gatecast_client_errors_total", { code: "RATE_LIMITED" }), 0);
    assert.deepEqual(app.registry.subscriptionCount, 1000);
    // Connected, closed by the restart, connected again: no other close.
    const names = recorder.statusNames();
    assert.deepEqual(names.filter((name) => name === "closed").length, 1);
    assert.deepEqual(names[names.length - 1], "open");
  } finally {
    client.close();
    await app.stop();
    await db.drop();
  }
});

Deno.test("subscriptions the server drops for its rate limit are asked for again after a backoff, in one batch, until served", async () => {
  const db = await unitsPlant(8);
  await withTestApp(db, { plant1: db.settings }, async (app) => {
    const sent: SentFrame[] = [];
    const client = new GatecastClient(app.wsUrl, {
      initialDelayMs: 300,
      maxDelayMs: 1000,
      jitter: 0,
      pingIntervalMs: 0,
      WebSocket: recordingWebSocket(sent),
    });
    try {
      await waitFor("open", () => client.status === "open");
      const snapshots = new Set<string>();
      const topics = Array.from({ length: 8 }, (_, i) => `plant1/real/${i + 1}`);
      for (const topic of topics) {
        // One frame per turn: eight frames against a burst of five.
        client.subscribe(topic, (state) => state.reason === "snapshot" && snapshots.add(state.topic));
        await nextTurn();
      }
      await waitFor("8 snapshots", () => snapshots.size === 8);
      assert.deepEqual(subscribeBatches(sent), [...topics.map((topic) => [topic]), topics.slice(5)]);
      assert.deepEqual(app.metrics.value("gatecast_client_errors_total", { code: "RATE_LIMITED" }), 3);
      assert.deepEqual(client.status, "open");
    } finally {
      client.close();
    }
  }, { maxFramesPerSecond: 5 });
});

Deno.test("topics left in one turn are unsubscribed in one batch; a refused topic of a batch reaches only its own handler and needs no unsubscribe", async () => {
  const db = await unitsPlant(3);
  await withTestApp(db, { plant1: db.settings }, async (app) => {
    const sent: SentFrame[] = [];
    const errors: unknown[] = [];
    const client = new GatecastClient(app.wsUrl, {
      ...FAST,
      WebSocket: recordingWebSocket(sent),
      onError: (frame) => errors.push(frame),
    });
    try {
      const states = new Map<string, TopicState>();
      const topics = ["plant1/real/1", "plant9/real/1", "plant1/real/2", "plant1/real/3"];
      const stops = topics.map((topic) => client.subscribe(topic, (state) => states.set(topic, state)));
      await waitFor("every topic answered", () => states.size === 4);
      assert.deepEqual(states.get("plant9/real/1")!.error, {
        code: "UNKNOWN_DB",
        message: "no database 'plant9' is configured",
      });
      assert.deepEqual(
        ["plant1/real/1", "plant1/real/2", "plant1/real/3"].map((t) => states.get(t)!.reason),
        [
          "snapshot",
          "snapshot",
          "snapshot",
        ],
      );
      for (const stop of stops) stop();
      client.subscribe("plant1/real/2", () => {})(); // subscribed and left in the same turn
      await waitFor("the server to end every subscription", () => app.registry.subscriptionCount === 0);
      await nextTurn();
      assert.deepEqual(sent.map(({ bytes: _, ...frame }) => frame), [
        { type: "subscribe", id: 1, topics },
        { type: "unsubscribe", id: 2, topics: ["plant1/real/1", "plant1/real/3", "plant1/real/2"] },
      ]);
      assert.deepEqual(errors, []);
    } finally {
      client.close();
    }
  });
});

// ---- Rows of the configuration's handles ----

Deno.test("rowKey is the JSON of the key columns' values in the key's order; pointKey is rowKey over POINT_KEY", () => {
  assert.deepEqual(rowKey({ tank_id: 3, site: "north", level_m: 4.2 }, ["tank_id"]), "[3]");
  assert.deepEqual(rowKey({ a: 1, b: "x" }, ["b", "a"]), '["x",1]');
  assert.deepEqual(rowKey({ a: null }, ["a", "missing"]), "[null,null]");
  const point = { address: "GW1", code: "ua", value: 1 };
  assert.deepEqual(rowKey(point, POINT_KEY), pointKey(point));
});

Deno.test("topicParts reads three-part and unit-less two-part topics and refuses other shapes; topicOf builds both", () => {
  assert.deepEqual(topicParts("plant1/real/12"), { db: "plant1", handle: "real", unit: "12" });
  assert.deepEqual(topicParts("plant1/tanks/north"), { db: "plant1", handle: "tanks", unit: "north" });
  assert.deepEqual(topicParts("plant1/alarms"), { db: "plant1", handle: "alarms", unit: undefined });
  for (const bad of ["plant1", "plant1/real/1/2", "plant1//1", "/alarms", ""]) {
    assert.throws(() => topicParts(bad), {
      name: "SyntaxError",
      message: `expected a topic <db>/<handle>/<unit> or <db>/<handle>, got ${JSON.stringify(bad)}`,
    });
  }
  assert.deepEqual(topicOf("plant1", "real", 12), "plant1/real/12");
  assert.deepEqual(topicOf("plant1", "tanks", "north"), "plant1/tanks/north");
  assert.deepEqual(topicOf("plant1", "alarms"), "plant1/alarms");
  assert.deepEqual(topicOf("plant1", "alarms", ""), "plant1/alarms");
});

/** A running gatecast over the demo plant's database, with the demo's handles and no simulator. */
interface DemoApp {
  readonly app: TestApp;
  /** The demo database: the test makes every change. */
  readonly db: DatabaseSync;
  /** The rows of a demo handle's SQL for `units`, as the database returns them. */
  query(handle: "tanks" | "alarms", ...units: string[]): Record<string, unknown>[];
}

async function withDemoApp(fn: (demo: DemoApp) => Promise<void>): Promise<void> {
  const db = new DatabaseSync(":memory:");
  createDemoSchema(db, new Date("2026-12-01T08:00:00.000Z"));
  const app = await startTestApp(
    { demo: { driver: "sqlite", path: ":memory:" } },
    { handles: DEMO_HANDLES },
    new Map([["demo", new SqliteSource("demo", db)]]),
  );
  const query = (handle: "tanks" | "alarms", ...units: string[]) => {
    const sql = String(DEMO_HANDLES[handle].sql).replace(":units", units.map(() => "?").join(", "));
    return db.prepare(sql).all(...units).map((row) => ({ ...row }));
  };
  try {
    await fn({ app, db, query });
  } finally {
    await app.stop();
    if (db.isOpen) db.close();
  }
}

/** The rows of a state as plain objects, for comparing with the database's. */
function plainRows(state: TopicState | undefined): Record<string, unknown>[] {
  return (state?.rows ?? []).map((row) => ({ ...row }));
}

Deno.test("on a string-unit handle the SDK's rows equal the table's after the snapshot, an UPDATE, an INSERT at the end and a DELETE, each applied as an update", async () => {
  await withDemoApp(async ({ app, db, query }) => {
    const rec = new Recorder();
    const client = new GatecastClient(app.wsUrl, FAST);
    try {
      client.subscribe("demo/tanks/north", rec.handler);
      const first = await rec.until("the snapshot", (s) => s?.reason === "snapshot");
      assert.deepEqual(first.frames, "rows");
      assert.deepEqual(first.key, ["tank_id"]);
      assert.deepEqual(first.points, []);
      assert.deepEqual(plainRows(first), query("tanks", "north"));
      assert.deepEqual(first.rows.length, 4);
      assert.deepEqual([...first.changed], ["[1]", "[2]", "[3]", "[4]"]);
      assert.deepEqual(first.changedColumns.get("[2]"), [
        "site",
        "tank_id",
        "level_m",
        "temp_c",
        "updated_at",
      ]);

      db.exec("UPDATE tank_level SET level_m = 1.25 WHERE site = 'north' AND tank_id = 2");
      const updated = await rec.until("the UPDATE", (s) => s?.rows[1].level_m === 1.25);
      assert.deepEqual(updated.reason, "update");
      assert.deepEqual(updated.seq, 2);
      assert.deepEqual(plainRows(updated), query("tanks", "north"));
      assert.deepEqual([...updated.changedColumns], [["[2]", ["level_m"]]]);
      assert.deepEqual(updated.removed.size, 0);
      // Rows that did not change are the same objects; the earlier state is as it was.
      assert.equal(updated.rows[0], first.rows[0]);
      assert.deepEqual(first.rows[1].level_m, 6.75);

      db.exec("INSERT INTO tank_level VALUES ('north', 5, 2.5, 11.5, '2026-12-01T08:00:05.000Z')");
      const inserted = await rec.until("the INSERT", (s) => s?.rows.length === 5);
      assert.deepEqual(inserted.reason, "update");
      assert.deepEqual(inserted.seq, 3);
      assert.deepEqual(plainRows(inserted), query("tanks", "north"));
      assert.deepEqual([...inserted.changedColumns], [["[5]", [
        "site",
        "tank_id",
        "level_m",
        "temp_c",
        "updated_at",
      ]]]);

      db.exec("DELETE FROM tank_level WHERE site = 'north' AND tank_id IN (1, 3)");
      const deleted = await rec.until("the DELETE", (s) => s?.rows.length === 3);
      assert.deepEqual(deleted.reason, "update");
      assert.deepEqual(deleted.seq, 4);
      assert.deepEqual(plainRows(deleted), query("tanks", "north"));
      assert.deepEqual(deleted.rows.map((row) => row.tank_id), [2, 4, 5]);
      assert.deepEqual([...deleted.removed], ["[1]", "[3]"]);
      assert.deepEqual(deleted.changed.size, 0);

      // Rows of another site never reach this topic.
      db.exec("UPDATE tank_level SET level_m = 9 WHERE site = 'south'");
      db.exec("UPDATE tank_level SET temp_c = 20.5 WHERE site = 'north' AND tank_id = 4");
      const last = await rec.until("the last UPDATE", (s) => s?.rows[1].temp_c === 20.5);
      assert.deepEqual(plainRows(last), query("tanks", "north"));
      assert.deepEqual(rec.states.map((s) => `${s.reason}:${s.seq}`), [
        "snapshot:1",
        "update:2",
        "update:3",
        "update:4",
        "update:5",
      ]);
    } finally {
      client.close();
    }
  });
});

Deno.test("a row inserted in the middle comes as a fresh snapshot, and the SDK reports only what it changed", async () => {
  await withDemoApp(async ({ app, db, query }) => {
    const rec = new Recorder();
    const client = new GatecastClient(app.wsUrl, FAST);
    try {
      client.subscribe("demo/tanks/south", rec.handler);
      await rec.until("the snapshot", (s) => s?.reason === "snapshot");
      // ORDER BY site, tank_id: tank 0 comes first, before the rows the client holds.
      db.exec("INSERT INTO tank_level VALUES ('south', 0, 3.5, 18, '2026-12-01T08:00:05.000Z')");
      const fresh = await rec.until("the fresh snapshot", (s) => s?.rows.length === 4);
      assert.deepEqual(fresh.reason, "snapshot");
      assert.deepEqual(plainRows(fresh), query("tanks", "south"));
      assert.deepEqual(fresh.rows.map((row) => row.tank_id), [0, 1, 2, 3]);
      assert.deepEqual([...fresh.changedColumns], [["[0]", [
        "site",
        "tank_id",
        "level_m",
        "temp_c",
        "updated_at",
      ]]]);
      assert.deepEqual(fresh.removed.size, 0);
    } finally {
      client.close();
    }
  });
});

Deno.test("on a unit-less topic rows appear and leave as the table changes, and a late handler gets the current rows at once", async () => {
  await withDemoApp(async ({ app, db, query }) => {
    const rec = new Recorder();
    const client = new GatecastClient(app.wsUrl, FAST);
    try {
      client.subscribe("demo/alarms", rec.handler);
      const first = await rec.until("the snapshot", (s) => s?.reason === "snapshot");
      assert.deepEqual(first.key, ["id"]);
      assert.deepEqual(plainRows(first), query("alarms"));
      assert.deepEqual(first.rows.map((row) => row.id), [2, 4, 5]);

      db.exec(
        "INSERT INTO alarm (severity, message, raised_at) VALUES ('critical', 'east tank 2: inlet valve stuck', 'now')",
      );
      const raised = await rec.until("the new alarm", (s) => s?.rows.length === 4);
      assert.deepEqual(raised.reason, "update");
      assert.deepEqual(plainRows(raised), query("alarms"));
      assert.deepEqual([...raised.changed], ["[6]"]);

      db.exec("UPDATE alarm SET cleared_at = 'now' WHERE id IN (2, 6)");
      const cleared = await rec.until("two alarms cleared", (s) => s?.rows.length === 2);
      assert.deepEqual(cleared.reason, "update");
      assert.deepEqual(plainRows(cleared), query("alarms"));
      assert.deepEqual([...cleared.removed], ["[2]", "[6]"]);

      const late = new Recorder();
      client.subscribe("demo/alarms", late.handler);
      assert.deepEqual(late.states.length, 1);
      assert.deepEqual(plainRows(late.last), query("alarms"));
      assert.deepEqual([...late.last.changed], ["[4]", "[5]"]);
    } finally {
      client.close();
    }
  });
});

Deno.test("a seq gap on a topic of rows makes the client subscribe again and end on the table's rows", async () => {
  await withDemoApp(async ({ app, db, query }) => {
    const rec = new Recorder();
    const sent: unknown[] = [];
    const client = new GatecastClient(app.wsUrl, { ...FAST, WebSocket: lossyWebSocket(sent) });
    try {
      client.subscribe("demo/tanks/east", rec.handler);
      await rec.until("the snapshot", (s) => s?.reason === "snapshot");
      db.exec("DELETE FROM tank_level WHERE site = 'east' AND tank_id = 4"); // seq 2: lost
      await waitFor("the lost update to be polled", async () => (await updatesSent(app)) >= 1);
      db.exec("UPDATE tank_level SET level_m = 0.75 WHERE site = 'east' AND tank_id = 1"); // seq 3: a gap
      const fresh = await rec.until(
        "the fresh snapshot",
        (s) => s?.reason === "snapshot" && rec.states.length > 1,
      );
      assert.deepEqual(plainRows(fresh), query("tanks", "east"));
      assert.deepEqual(fresh.rows.map((row) => row.tank_id), [1, 2, 3]);
      assert.deepEqual([...fresh.changedColumns], [["[1]", ["level_m"]]]);
      assert.deepEqual([...fresh.removed], ["[4]"]);
      assert.deepEqual(rec.states.map((s) => `${s.reason}:${s.seq}`), ["snapshot:1", "snapshot:3"]);
      assert.deepEqual(sent, [
        { type: "subscribe", id: 1, topics: ["demo/tanks/east"] },
        { type: "subscribe", id: 2, topics: ["demo/tanks/east"] },
      ]);
    } finally {
      client.close();
    }
  });
});

/** A WebSocket that rewrites the first `update` frame it receives with `rewrite`, and records what is sent. */
function rewritingWebSocket(
  sent: unknown[],
  rewrite: (frame: Record<string, unknown>) => Record<string, unknown>,
) {
  return class RewritingWebSocket extends WebSocket {
    #done = false;
    #handler: ((event: MessageEvent) => void) | null = null;
    override get onmessage() {
      return this.#handler;
    }
    override set onmessage(handler: ((event: MessageEvent) => void) | null) {
      this.#handler = handler;
      super.onmessage = handler && ((event: MessageEvent) => {
        if (!this.#done && typeof event.data === "string" && event.data.startsWith('{"type":"update"')) {
          this.#done = true;
          return handler(
            new MessageEvent("message", { data: JSON.stringify(rewrite(JSON.parse(event.data))) }),
          );
        }
        handler(event);
      });
    }
    override send(data: string) {
      sent.push(JSON.parse(data));
      super.send(data);
    }
  };
}

Deno.test("an update that does not fit the rows held (a row to delete it never had, a new row not whole) makes the client subscribe again", async () => {
  const misfits: [string, (frame: Record<string, unknown>) => Record<string, unknown>][] = [
    ["a delete of an unknown row", (frame) => ({ ...frame, delete: [{ tank_id: 99 }] })],
    ["a partial new row", (frame) => ({ ...frame, upsert: [{ tank_id: 99, level_m: 1 }] })],
  ];
  for (const [what, rewrite] of misfits) {
    await withDemoApp(async ({ app, db, query }) => {
      const rec = new Recorder();
      const sent: unknown[] = [];
      const client = new GatecastClient(app.wsUrl, { ...FAST, WebSocket: rewritingWebSocket(sent, rewrite) });
      try {
        client.subscribe("demo/tanks/north", rec.handler);
        await rec.until("the snapshot", (s) => s?.reason === "snapshot");
        db.exec("UPDATE tank_level SET level_m = 2.5 WHERE site = 'north' AND tank_id = 3");
        const fresh = await rec.until(`the snapshot after ${what}`, () => rec.states.length === 2);
        assert.deepEqual(fresh.reason, "snapshot", what);
        assert.deepEqual(plainRows(fresh), query("tanks", "north"), what);
        assert.deepEqual([...fresh.changedColumns], [["[3]", ["level_m"]]], what);
        assert.deepEqual(sent, [
          { type: "subscribe", id: 1, topics: ["demo/tanks/north"] },
          { type: "subscribe", id: 2, topics: ["demo/tanks/north"] },
        ], what);
      } finally {
        client.close();
      }
    });
  }
});
