/**
 * `GET /sse`: Server-Sent Events over a real gatecast on real MariaDB. A plain streaming HTTP
 * client (fetch and a reader) and `EventSource` in headless Chromium get each topic's snapshot,
 * then an update after a database change, as `event:`/`id:`/`data:` lines whose data is the v1
 * frame text a WebSocket client gets. Bad, unknown and forbidden topics are answered with JSON
 * before the stream starts; the WebSocket door's limits apply; a client that goes away or stops
 * reading gives its topics back.
 */

import assert from "node:assert/strict";
import { chromium } from "playwright-core";
import { Registry } from "../../lib/hub/registry.ts";
import type { Handle } from "../../lib/handles/handle.ts";
import { parseConfig } from "../../lib/config/config.ts";
import { topicName } from "../../lib/hub/topic.ts";
import { SSE_RETRY_MS, SsePeer } from "../../lib/net/sse_peer.ts";
import { Logger } from "../../lib/ops/log.ts";
import { METRIC_FAMILIES, Metrics } from "../../lib/ops/metrics.ts";
import { createTestDatabase, type TestDatabase } from "../support/mysql.ts";
import { startTestApp, type TestApp, waitFor, withTestApp } from "../support/app.ts";
import { signToken, tokenAuth } from "../support/tokens.ts";
import { TestClient } from "../support/ws_client.ts";
import { SUBPROTOCOL } from "../../lib/wire/protocol.ts";

const CHROMIUM = "/usr/bin/chromium";
const hasChromium = (() => {
  try {
    return Deno.statSync(CHROMIUM).isFile;
  } catch {
    return false;
  }
})();
const browserRequired = Deno.env.get("GATECAST_REQUIRE_BROWSER") === "1";

/** An event stream read by a plain HTTP client: blocks (up to a blank line) in order, with a timeout. */
class StreamReader {
  private buffer = "";
  private readonly reader: ReadableStreamDefaultReader<string>;

  constructor(readonly response: Response) {
    this.reader = response.body!.pipeThrough(new TextDecoderStream()).getReader();
  }

  /** The next block's lines, comments and `retry:` included; `undefined` once the stream ended. */
  async block(timeoutMs = 5000): Promise<string[] | undefined> {
    const deadline = Date.now() + timeoutMs;
    while (!this.buffer.includes("\n\n")) {
      let timer: ReturnType<typeof setTimeout> | undefined;
      const read = await Promise.race([
        this.reader.read(),
        new Promise<"timeout">((resolve) =>
          timer = setTimeout(() => resolve("timeout"), deadline - Date.now())
        ),
      ]);
      clearTimeout(timer);
      if (read === "timeout") {
        throw new Error(`no event within ${timeoutMs} ms; have ${JSON.stringify(this.buffer)}`);
      }
      if (read.done) return undefined;
      this.buffer += read.value;
    }
    const end = this.buffer.indexOf("\n\n");
    const block = this.buffer.slice(0, end);
    this.buffer = this.buffer.slice(end + 2);
    return block.split("\n");
  }

  /** The next event's lines, skipping `: ping` comments. */
  async event(timeoutMs = 5000): Promise<string[]> {
    for (;;) {
      const lines = await this.block(timeoutMs);
      if (lines === undefined) throw new Error("the stream ended");
      if (lines.length === 1 && lines[0] === ": ping") continue;
      return lines;
    }
  }

  /** Goes away, as a closed browser tab does. */
  async cancel(): Promise<void> {
    await this.reader.cancel();
  }
}

/** Opens `/sse` with `query` and reads past the `retry:` hint. */
async function openStream(
  app: TestApp,
  query: string,
  headers: Record<string, string> = {},
): Promise<StreamReader> {
  const response = await fetch(`${app.httpUrl}/sse?${query}`, { headers });
  assert.deepEqual(response.status, 200, await (response.status === 200 ? "" : response.text()));
  assert.deepEqual(response.headers.get("content-type"), "text/event-stream; charset=utf-8");
  const stream = new StreamReader(response);
  assert.deepEqual(await stream.block(), [`retry: ${SSE_RETRY_MS}`]);
  return stream;
}

async function plant(): Promise<TestDatabase> {
  const db = await createTestDatabase();
  await db.addPoints([
    { unit: 12, code: "ua", address: "GW1", showId: 1 },
    { unit: 12, code: "ia", address: "GW1", showId: 2 },
    { unit: 13, code: "ua", address: "GW3", showId: 1 },
  ]);
  await db.setData("GW1", { ua: 229.5, ia: 10 });
  await db.setData("GW3", { ua: 231 });
  return db;
}

async function refusal(app: TestApp, query: string, headers: Record<string, string> = {}) {
  const response = await fetch(`${app.httpUrl}/sse${query}`, { headers });
  assert.deepEqual(response.headers.get("content-type"), "application/json");
  return { status: response.status, body: await response.json() };
}

Deno.test("an event stream sends each topic's snapshot, then an update after a database change, as the v1 frame text with event and id lines", async () => {
  const db = await plant();
  await withTestApp(db, { plant1: db.settings }, async (app) => {
    const ws = await TestClient.open(app.wsUrl, SUBPROTOCOL);
    ws.send({ type: "subscribe", topic: "plant1/real/12" });
    await ws.expect("subscribed");
    const wsSnapshot = await ws.nextText();

    const stream = await openStream(app, "topic=plant1/real/12&topic=plant1/real/13");
    const first = await stream.event();
    const second = await stream.event();
    const [twelve, thirteen] = first[1] === "id: plant1/real/12:1" ? [first, second] : [second, first];
    assert.deepEqual(twelve, ["event: snapshot", "id: plant1/real/12:1", `data: ${wsSnapshot}`]);
    assert.deepEqual(thirteen.slice(0, 2), ["event: snapshot", "id: plant1/real/13:1"]);
    assert.deepEqual(
      JSON.parse(thirteen[2].slice("data: ".length)).points.map((p: { value: unknown }) => p.value),
      [
        231,
      ],
    );

    await db.query("UPDATE device_data_real SET ia = 12.25 WHERE equip_address = 'GW1'");
    const wsUpdate = await ws.nextText();
    assert.deepEqual(JSON.parse(wsUpdate).changes, [{ address: "GW1", code: "ia", value: 12.25 }]);
    assert.deepEqual(await stream.event(), ["event: update", "id: plant1/real/12:2", `data: ${wsUpdate}`]);
    await stream.cancel();
    await ws.close();
  });
});

Deno.test("every SSE client of a topic gets the same event text, and a stale topic a stale event without an id", async () => {
  const db = await plant();
  await withTestApp(db, { plant1: db.settings }, async (app) => {
    const a = await openStream(app, "topic=plant1/real/12");
    const b = await openStream(app, "topic=plant1/real/12");
    assert.deepEqual(await a.event(), await b.event());
    await db.query("UPDATE device_data_real SET ua = 230 WHERE equip_address = 'GW1'");
    const update = await a.event();
    assert.deepEqual(update[0], "event: update");
    assert.deepEqual(await b.event(), update);
    await db.query("ALTER TABLE device_data_real RENAME TO device_data_gone");
    const stale = await a.event();
    assert.deepEqual(stale.slice(0, 1), ["event: stale"]);
    assert.deepEqual(stale.length, 2);
    assert.deepEqual(JSON.parse(stale[1].slice("data: ".length)).type, "stale");
    assert.deepEqual(await b.event(), stale);
    await db.query("ALTER TABLE device_data_gone RENAME TO device_data_real");
    await a.cancel();
    await b.cancel();
  });
});

Deno.test("a missing, bad or unknown topic answers with a JSON error before the stream starts", async () => {
  const db = await plant();
  await withTestApp(db, { plant1: db.settings }, async (app) => {
    assert.deepEqual(await refusal(app, ""), {
      status: 400,
      body: { error: "name at least one topic: /sse?topic=<db>/<handle>/<unit>", code: "BAD_TOPIC" },
    });
    const bad = await refusal(app, "?topic=plant1/real/twelve");
    assert.deepEqual([bad.status, bad.body.code], [400, "BAD_TOPIC"]);
    assert.match(bad.body.error, /unit/);
    assert.deepEqual(await refusal(app, "?topic=plant1/real/12&topic=plant9/real/1"), {
      status: 404,
      body: { error: "no database 'plant9' is configured", code: "UNKNOWN_DB" },
    });
    const handle = await refusal(app, "?topic=plant1/tanks/1");
    assert.deepEqual([handle.status, handle.body.code], [404, "UNKNOWN_HANDLE"]);
    assert.deepEqual(app.registry.topicCount, 0);
    assert.deepEqual(
      (await fetch(`${app.httpUrl}/sse?topic=plant1/real/12`, { method: "HEAD" })).status,
      405,
    );
  });
});

Deno.test("with tokens, a stream needs one granting every topic: 401 without, 403 for a topic it does not grant", async () => {
  const db = await plant();
  await withTestApp(db, { plant1: db.settings }, async (app) => {
    const token = await signToken({ topics: ["plant1/real/12"] });
    assert.deepEqual(await refusal(app, "?topic=plant1/real/12"), {
      status: 401,
      body: {
        error: "a token is required: Authorization: Bearer <token> or ?token=",
        code: "UNAUTHENTICATED",
      },
    });
    assert.deepEqual(
      await refusal(app, "?topic=plant1/real/12&topic=plant1/real/13", { authorization: `Bearer ${token}` }),
      { status: 403, body: { error: "your token does not grant 'plant1/real/13'", code: "FORBIDDEN" } },
    );
    const bad = await refusal(app, "?topic=plant1/real/12&token=nonsense");
    assert.deepEqual(bad.status, 401);
    const byHeader = await openStream(app, "topic=plant1/real/12", { authorization: `Bearer ${token}` });
    assert.deepEqual((await byHeader.event()).slice(0, 2), ["event: snapshot", "id: plant1/real/12:1"]);
    const byQuery = await openStream(app, `topic=plant1/real/12&token=${token}`);
    assert.deepEqual((await byQuery.event()).slice(0, 2), ["event: snapshot", "id: plant1/real/12:1"]);
    await byHeader.cancel();
    await byQuery.cancel();
  }, { auth: tokenAuth() });
});

Deno.test("streams pass the WebSocket door: origin, per-address limit (they count as connections) and subscription limit", async () => {
  const db = await plant();
  await withTestApp(db, { plant1: db.settings }, async (app) => {
    assert.deepEqual(await refusal(app, "?topic=plant1/real/12", { origin: "https://elsewhere.example" }), {
      status: 403,
      body: { error: "origin not allowed; see allowedOrigins" },
    });
    const stream = await openStream(app, "topic=plant1/real/12");
    assert.deepEqual(await refusal(app, "?topic=plant1/real/12"), {
      status: 429,
      body: { error: "at most 1 connections per address" },
    });
    assert.deepEqual((await (await fetch(`${app.httpUrl}/healthz`)).json()).connections, 1);
    await stream.cancel();
    await waitFor("the address slot given back", async () => {
      const response = await fetch(`${app.httpUrl}/healthz`);
      return (await response.json()).connections === 0;
    });
    assert.deepEqual(await refusal(app, "?topic=plant1/real/12&topic=plant1/real/13&topic=plant1/real/14"), {
      status: 400,
      body: { error: "a stream may hold at most 2 topics", code: "TOO_MANY_SUBSCRIPTIONS" },
    });
  }, { maxConnectionsPerAddress: 1, maxSubscriptionsPerConnection: 2 });
});

Deno.test("an idle stream gets a ': ping' comment every half keepAliveSeconds, and a reconnect with Last-Event-ID a fresh snapshot", async () => {
  const db = await plant();
  await withTestApp(db, { plant1: db.settings }, async (app) => {
    const first = await openStream(app, "topic=plant1/real/12");
    const snapshot = await first.event();
    assert.deepEqual(await first.block(1500), [": ping"]);
    await first.cancel();
    const again = await openStream(app, "topic=plant1/real/12", { "last-event-id": "plant1/real/12:1" });
    // The topic was forgotten with its last subscriber: the new snapshot is of a new poll.
    const fresh = await again.event();
    assert.deepEqual(fresh.slice(0, 2), snapshot.slice(0, 2));
    const points = (lines: string[]) => JSON.parse(lines[2].slice("data: ".length)).points;
    assert.deepEqual(points(fresh), points(snapshot));
    await again.cancel();
  }, { keepAliveSeconds: 1 });
});

Deno.test("a topic whose database a reload removes ends with a revoked event, and the stream with its last topic", async () => {
  const db = await plant();
  await withTestApp(db, { plant1: db.settings, plant2: db.settings }, async (app) => {
    const stream = await openStream(app, "topic=plant2/real/12");
    await stream.event();
    const { plant2: _, ...kept } = app.config.databases;
    await app.reload({ ...app.config, databases: kept });
    const revoked = await stream.event();
    assert.deepEqual(revoked.length, 2);
    assert.deepEqual(revoked[0], "event: revoked");
    const frame = JSON.parse(revoked[1].slice("data: ".length));
    assert.deepEqual([frame.type, frame.code, frame.topic], ["error", "DB_REMOVED", "plant2/real/12"]);
    assert.deepEqual(await stream.block(), undefined);
    await waitFor("the stream to be forgotten", async () => {
      const response = await fetch(`${app.httpUrl}/healthz`);
      return (await response.json()).connections === 0;
    });
  });
});

Deno.test("a client that goes away gives its topics back, and shutdown ends the streams", async () => {
  const db = await plant();
  try {
    const app = await startTestApp({ plant1: db.settings });
    try {
      const gone = await openStream(app, "topic=plant1/real/12&topic=plant1/real/13");
      await gone.event();
      assert.deepEqual(app.registry.topicCount, 2);
      await gone.cancel();
      await waitFor("the topics to be forgotten", () => app.registry.topicCount === 0);
      const open = await openStream(app, "topic=plant1/real/12");
      await open.event();
      await app.stop();
      assert.deepEqual(await open.block(), undefined);
      assert.deepEqual(app.registry.topicCount, 0);
    } finally {
      await app.stop();
    }
  } finally {
    await db.drop();
  }
});

Deno.test("a stream whose client does not read is held back over the soft limit and ended over the hard one, counted as dropped", async () => {
  const config = parseConfig({
    auth: { mode: "none" },
    sendBufferSoftBytes: 1024,
    sendBufferHardBytes: 4096,
    databases: { plant1: { driver: "sqlite", path: ":memory:" } },
  }, () => undefined);
  const metrics = new Metrics(METRIC_FAMILIES);
  const registry = new Registry();
  const peer = new SsePeer(
    { config, registry, metrics, logger: new Logger("error") },
    "10.0.0.1",
  );
  peer.subscribe([[topicName("plant1", "real", 12), { frames: "points" } as Handle]]);
  assert.deepEqual(registry.topicCount, 1);
  assert.deepEqual(peer.admit(), "send");
  peer.send("x".repeat(2000));
  assert.deepEqual(peer.admit(), "skip");
  assert.deepEqual(metrics.value("gatecast_frames_held_back_total"), 1);
  peer.send("x".repeat(3000));
  assert.deepEqual(peer.admit(), "dropped");
  assert.deepEqual(metrics.value("gatecast_clients_dropped_total", { reason: "slow_hard_limit" }), 1);
  assert.deepEqual(registry.topicCount, 0);
  const reader = peer.body.getReader();
  await assert.rejects(reader.read(), /client is not reading its events/);
});

Deno.test({
  name: "EventSource in Chromium gets the snapshot and then an update event",
  ignore: !hasChromium && !browserRequired,
  // Playwright's pipes to the browser outlive a test's ops by design.
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const db = await plant();
    await withTestApp(db, { plant1: db.settings }, async (app) => {
      const profile = await Deno.makeTempDir({ prefix: "gatecast-chromium-" });
      const browser = await chromium.launchPersistentContext(profile, {
        executablePath: CHROMIUM,
        args: [
          "--headless",
          "--no-sandbox",
          "--disable-gpu",
          "--no-first-run",
          "--disable-background-networking",
        ],
      });
      try {
        const page = browser.pages()[0] ?? await browser.newPage();
        await page.goto(`${app.httpUrl}/healthz`);
        await page.evaluate((url) => {
          const events: { type: string; id: string; data: string }[] = [];
          (globalThis as unknown as { events: typeof events }).events = events;
          const source = new EventSource(url);
          for (const type of ["snapshot", "update", "stale"]) {
            source.addEventListener(type, (event) => {
              const message = event as MessageEvent;
              events.push({ type, id: message.lastEventId, data: message.data });
            });
          }
        }, `${app.httpUrl}/sse?topic=plant1/real/12`);
        const events = () =>
          page.evaluate(() =>
            (globalThis as unknown as { events: { type: string; id: string; data: string }[] }).events
          );
        await waitFor("the snapshot event", async () => (await events()).length === 1);
        const [snapshot] = await events();
        assert.deepEqual([snapshot.type, snapshot.id, JSON.parse(snapshot.data).type], [
          "snapshot",
          "plant1/real/12:1",
          "snapshot",
        ]);
        await db.query("UPDATE device_data_real SET ia = 12.25 WHERE equip_address = 'GW1'");
        await waitFor("the update event", async () => (await events()).length === 2);
        const update = (await events())[1];
        assert.deepEqual([update.type, update.id], ["update", "plant1/real/12:2"]);
        assert.deepEqual(JSON.parse(update.data).changes, [{ address: "GW1", code: "ia", value: 12.25 }]);
      } finally {
        await browser.close();
        await Deno.remove(profile, { recursive: true });
      }
    });
  },
});
