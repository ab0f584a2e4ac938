import assert from "node:assert/strict";
import { startTestApp, type TestApp, waitFor } from "../support/app.ts";
import { createTestDatabase } from "../support/mysql.ts";
import { startGatecastWithConfig } from "../support/process.ts";
import { TestClient } from "../support/ws_client.ts";
import {
  AddressCounter,
  connectionCap,
  FrameRate,
  readOpenFileLimit,
  RESERVED_DESCRIPTORS,
} from "../../lib/net/limits.ts";

Deno.test("the frame bucket allows a burst of its rate, then refills at its rate", () => {
  let now = 0;
  const bucket = new FrameRate(() => now);
  for (let i = 0; i < 10; i++) assert.equal(bucket.take(10), true, `frame ${i}`);
  assert.equal(bucket.take(10), false);
  now = 100; // 0.1 s refills one frame
  assert.equal(bucket.take(10), true);
  assert.equal(bucket.take(10), false);
  now = 60_000; // a long pause refills to the burst size, not beyond
  for (let i = 0; i < 10; i++) assert.equal(bucket.take(10), true);
  assert.equal(bucket.take(10), false);
});

Deno.test("the frame bucket follows a changed rate at once: a lower one caps the saved-up burst, a higher one refills faster", () => {
  let now = 0;
  const bucket = new FrameRate(() => now);
  assert.equal(bucket.take(100), true); // 99 saved up
  for (let i = 0; i < 3; i++) assert.equal(bucket.take(3), true, `frame ${i} at 3 per second`);
  assert.equal(bucket.take(3), false);
  now = 10; // 10 ms at 100 per second refills one frame
  assert.equal(bucket.take(100), true);
  assert.equal(bucket.take(100), false);
});

Deno.test("an address holds at most its maximum of connections and gets slots back on release", () => {
  const counter = new AddressCounter();
  assert.equal(counter.acquire("203.0.113.7", 2), true);
  assert.equal(counter.acquire("203.0.113.7", 2), true);
  assert.equal(counter.acquire("203.0.113.7", 2), false);
  assert.equal(counter.acquire("198.51.100.1", 2), true);
  counter.release("203.0.113.7");
  assert.equal(counter.count("203.0.113.7"), 1);
  assert.equal(counter.acquire("203.0.113.7", 2), true);
  counter.release("198.51.100.1");
  assert.equal(counter.count("198.51.100.1"), 0);
});

Deno.test("the connection cap stays below the open-file limit, with a reserve", () => {
  assert.equal(connectionCap(10_000, 1024), 1024 - RESERVED_DESCRIPTORS - 103);
  assert.equal(connectionCap(500, 1024), 500);
  assert.equal(connectionCap(10_000, 20_000), 10_000);
  assert.equal(connectionCap(10_000, 100), 1);
  assert.equal(connectionCap(10_000, undefined), 10_000);
});

Deno.test("the open-file limit is read from /proc/self/limits", async () => {
  const shell = await new Deno.Command("sh", { args: ["-c", "ulimit -n"] }).output();
  const expected = Number(new TextDecoder().decode(shell.stdout).trim());
  assert.equal(readOpenFileLimit(), expected);
});

// ---- The limits in force on a running server, over real sockets ----

const UPGRADE_HEADERS = {
  upgrade: "websocket",
  connection: "Upgrade",
  "sec-websocket-key": "dGhlIHNhbXBsZSBub25jZQ==",
  "sec-websocket-version": "13",
};

async function withServer(settings: Record<string, unknown>, fn: (app: TestApp) => Promise<void>) {
  const app = await startTestApp({}, settings);
  try {
    await fn(app);
  } finally {
    await app.stop();
  }
}

Deno.test("an upgrade over maxConnections is refused with 503 and Retry-After", async () => {
  await withServer({ maxConnections: 2 }, async (app) => {
    const clients = [await TestClient.open(app.wsUrl), await TestClient.open(app.wsUrl)];
    const refused = await fetch(app.wsUrl.replace("ws:", "http:"), { headers: UPGRADE_HEADERS });
    assert.equal(refused.status, 503);
    assert.equal(refused.headers.get("retry-after"), "5");
    assert.deepEqual(await refused.json(), { error: "the server holds its maximum of 2 connections" });
    await clients[0].close();
    await waitFor("the slot to free", () => app.metrics.value("gatecast_connections") === 1);
    const again = await TestClient.open(app.wsUrl);
    await Promise.all([again.close(), clients[1].close()]);
  });
});

Deno.test("an upgrade over maxConnectionsPerAddress is refused with 429", async () => {
  await withServer({ maxConnectionsPerAddress: 1 }, async (app) => {
    const client = await TestClient.open(app.wsUrl);
    const refused = await fetch(app.wsUrl.replace("ws:", "http:"), { headers: UPGRADE_HEADERS });
    assert.equal(refused.status, 429);
    assert.deepEqual(await refused.json(), { error: "at most 1 connections per address" });
    await client.close();
  });
});

Deno.test("frames over maxFramesPerSecond get RATE_LIMITED, and a client that goes on is closed with 4029", async () => {
  await withServer({ maxFramesPerSecond: 5 }, async (app) => {
    const client = await TestClient.open(app.wsUrl, "gatecast.v1");
    for (let i = 1; i <= 6; i++) client.send({ type: "ping", id: i });
    for (let i = 1; i <= 5; i++) assert.deepEqual(await client.expect("pong"), { type: "pong", id: i });
    assert.deepEqual(await client.expect("error"), {
      type: "error",
      code: "RATE_LIMITED",
      message: "frame dropped: at most 5 frames per second",
    });
    // Ten more refusals (twice the rate) close it; these are the last frames it sends.
    for (let i = 0; i < 10; i++) client.send({ type: "ping" });
    const closed = await client.closed;
    assert.deepEqual([closed.code, closed.reason], [4029, "over 5 frames per second"]);
  });
});

/** Sends `count` pings and counts the pongs and RATE_LIMITED errors among the answers. */
async function pingBurst(client: TestClient, count: number): Promise<{ pongs: number; refused: number }> {
  for (let i = 1; i <= count; i++) client.send({ type: "ping", id: i });
  const answers = { pongs: 0, refused: 0 };
  for (let i = 0; i < count; i++) {
    const frame = await client.next();
    if (frame.type === "pong") answers.pongs++;
    else if (frame.code === "RATE_LIMITED") answers.refused++;
    else throw new Error(`unexpected ${JSON.stringify(frame)}`);
  }
  return answers;
}

Deno.test("a reload of maxFramesPerSecond applies to open connections, to the bucket and the close alike", async () => {
  await withServer({ maxFramesPerSecond: 1000 }, async (app) => {
    const client = await TestClient.open(app.wsUrl, "gatecast.v1");
    await app.reload({ ...app.config, maxFramesPerSecond: 4 });
    // The bucket had 1000 frames saved up; the new rate allows a burst of 4.
    assert.deepEqual(await pingBurst(client, 6), { pongs: 4, refused: 2 });
    // Twice the new rate refused in a row closes it (two so far, seven more make nine).
    for (let i = 0; i < 7; i++) client.send({ type: "ping" });
    const closed = await client.closed;
    assert.deepEqual([closed.code, closed.reason], [4029, "over 4 frames per second"]);

    const raised = await TestClient.open(app.wsUrl, "gatecast.v1");
    await app.reload({ ...app.config, maxFramesPerSecond: 50 });
    assert.deepEqual(await pingBurst(raised, 20), { pongs: 20, refused: 0 });
    await raised.close();
  });
});

Deno.test("a connection that sends no frame within firstFrameTimeoutMs is closed with 4000", async () => {
  await withServer({ firstFrameTimeoutMs: 300 }, async (app) => {
    const idle = await TestClient.open(app.wsUrl);
    const busy = await TestClient.open(app.wsUrl, "gatecast.v1");
    busy.send({ type: "ping", id: 1 });
    await busy.expect("pong");
    const closed = await idle.closed;
    assert.deepEqual([closed.code, closed.reason], [4000, "no frame within 300 ms"]);
    await busy.expectNothing(400);
    assert.equal(busy.socket.readyState, WebSocket.OPEN);
    await busy.close();
  });
});

Deno.test("under a low open-file limit the server caps connections and listens again after a flood", async () => {
  const server = await startGatecastWithConfig(
    { host: "127.0.0.1", port: 0, databases: {}, auth: { mode: "none" }, maxConnectionsPerAddress: 1000 },
    256,
  );
  try {
    // 256 - 128 reserved - 26 (a tenth) = 102
    const listening = JSON.parse(server.stderr.find((line) => line.includes('"msg":"listening"'))!);
    assert.equal(listening.maxConnections, 102);
    const url = `ws://127.0.0.1:${server.port}/ws`;
    const health = `http://127.0.0.1:${server.port}/healthz`;
    // 400 sockets at once need more descriptors than the process has: the accept loop fails.
    const attempts = await Promise.allSettled(Array.from({ length: 400 }, () => TestClient.open(url)));
    const open = attempts.flatMap((a) => a.status === "fulfilled" ? [a.value] : []);
    assert.ok(open.length <= 102, `${open.length} connections held, the cap is 102`);
    // The process survives, listens again once descriptors are free, and the held clients stay served.
    await waitFor("the listener to come back", async () => {
      try {
        const response = await fetch(health);
        return response.status === 200 && (await response.json()).connections === open.length;
      } catch {
        return false;
      }
    }, 10_000);
    assert.ok(server.stderr.every((line) => !line.includes("Uncaught")), "no uncaught error");
    const failed = server.stderr.filter((line) =>
      line.includes('"msg":"listener failed; listening again soon"')
    );
    const metrics = await (await fetch(`http://127.0.0.1:${server.port}/metrics`)).text();
    const restarts = Number(/^gatecast_listener_restarts (\d+)$/m.exec(metrics)?.[1]);
    console.log(
      `held ${open.length} of 400, listener failed ${failed.length} times, restarted ${restarts} times`,
    );
    assert.equal(restarts, failed.length);
    for (const client of open.slice(0, 5)) {
      client.send({ type: "ping", id: 1 });
      assert.deepEqual(await client.next(), { type: "pong", id: 1 });
    }
    await Promise.all(open.map((c) => c.close()));
    const after = await TestClient.open(url);
    await after.close();
  } finally {
    await server.stop();
  }
});

Deno.test("a subscription over maxSubscriptionsPerConnection gets TOO_MANY_SUBSCRIPTIONS; a seed client is closed with 1008", async () => {
  const db = await createTestDatabase();
  const app = await startTestApp({ plant1: db.settings }, { maxSubscriptionsPerConnection: 2 });
  try {
    const client = await TestClient.open(app.wsUrl, "gatecast.v1");
    for (const unit of [1, 2]) {
      client.send({ type: "subscribe", id: unit, topic: `plant1/real/${unit}` });
      await client.expect("subscribed");
      await client.expect("snapshot");
    }
    client.send({ type: "subscribe", id: 3, topic: "plant1/real/3" });
    assert.deepEqual(await client.expect("error"), {
      type: "error",
      id: 3,
      code: "TOO_MANY_SUBSCRIPTIONS",
      message: "a connection may hold at most 2 subscriptions",
    });
    await client.close();
    const legacy = await TestClient.open(`ws://127.0.0.1:${app.port}/`);
    for (const unit of [1, 2, 3]) legacy.send({ unit_id: unit, handle: "real", db_code: "plant1" });
    const closed = await legacy.closed;
    assert.deepEqual([closed.code, closed.reason], [1008, "a connection may hold at most 2 subscriptions"]);
  } finally {
    await app.stop();
    await db.drop();
  }
});
