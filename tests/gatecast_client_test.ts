/**
 * The client SDK (`client/gatecast_client.js`) in Deno against a running gatecast on a real
 * MariaDB: snapshot and updates, restart of the server on the same port, `seq` gaps, stale
 * topics, unsubscribing, and the backoff schedule.
 */

import assert from "node:assert/strict";
import {
  backoffDelay,
  GatecastClient,
  pointKey,
  type Status,
  type StatusDetail,
  type TopicState,
} from "../client/gatecast_client.js";
import { createTestDatabase, freePort, type TestDatabase } from "./support/mysql.ts";
import { startTestApp, type TestApp, waitFor, withTestApp } from "./support/app.ts";

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
        (s) => s?.reason === "snapshot" && s.seq === 1 && rec.states.length > 1,
      );
      assert.deepEqual(rec.values(fresh), { "B1.ua": 2, "B1.ia": 5, "B2.ua": 231 });
      assert.deepEqual([...fresh.changed], ['["B1","ua"]']);
      assert.deepEqual(rec.states.map((s) => `${s.reason}:${s.seq}`), ["snapshot:1", "snapshot:1"]);
      assert.deepEqual(sent, [
        { type: "subscribe", id: 1, topic: TOPIC },
        { type: "subscribe", id: 2, topic: TOPIC },
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

Deno.test("status turns stale while the topic's database fails and open again once it recovers", async () => {
  await withBoilerRoom(async (db, app) => {
    const rec = new Recorder();
    const client = new GatecastClient(app.wsUrl, { ...FAST, onStatus: rec.onStatus });
    try {
      client.subscribe(TOPIC, rec.handler);
      await rec.until("the snapshot", (s) => s?.reason === "snapshot");
      await db.query("RENAME TABLE device_data_real TO device_data_gone");
      const stale = await rec.until("stale", (s) => s?.reason === "stale");
      assert.deepEqual(stale.stale?.code, "SOURCE_UNAVAILABLE");
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
