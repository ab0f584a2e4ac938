/**
 * docs/security.md end to end, over real sockets against a real MariaDB: tokens in the header,
 * the query string or an `auth` frame, expiry and refresh, per-topic access, legacy access,
 * origins and proxies.
 */

import assert from "node:assert/strict";
import { sha256Hex } from "../../lib/net/auth.ts";
import { closeReason } from "../../lib/wire/protocol.ts";
import { delay, startTestApp, type TestApp } from "../support/app.ts";
import { createTestDatabase, type TestDatabase } from "../support/mysql.ts";
import { signToken, tokenAuth } from "../support/tokens.ts";
import { TestClient } from "../support/ws_client.ts";

const API_KEY = "gk_test_5b0c1d7e9f2a4b6c8d0e1f2a3b4c5d6e";

async function plant(): Promise<TestDatabase> {
  const db = await createTestDatabase();
  await db.addPoints([{ unit: 12, code: "ua", address: "GW1" }, { unit: 13, code: "ua", address: "GW2" }]);
  await db.setData("GW1", { ua: 229.5 });
  await db.setData("GW2", { ua: 231 });
  return db;
}

function secured(
  name: string,
  fn: (app: TestApp, db: TestDatabase) => Promise<void>,
  settings: Record<string, unknown> = {},
) {
  Deno.test(name, async () => {
    const db = await plant();
    const app = await startTestApp({ plant1: db.settings }, {
      auth: tokenAuth({
        apiKeys: [{ name: "wall", sha256: await sha256Hex(API_KEY), topics: ["plant1/real/13"] }],
      }),
      ...settings,
    });
    try {
      await fn(app, db);
    } finally {
      await app.stop();
      await db.drop();
    }
  });
}

const sub = (topic: string, id = 1) => ({ type: "subscribe", id, topic });

secured("a Bearer token in the upgrade request opens the topics its patterns grant", async (app) => {
  const token = await signToken({ topics: ["plant1/real/*"] });
  const client = await TestClient.open(app.wsUrl, "gatecast.v1", { authorization: `Bearer ${token}` });
  client.send(sub("plant1/real/12"));
  assert.deepEqual(await client.expect("subscribed"), { type: "subscribed", id: 1, topic: "plant1/real/12" });
  assert.equal((await client.expect("snapshot")).points[0].value, 229.5);
  await client.close();
});

secured("a topic outside the token's patterns gets FORBIDDEN and the connection stays open", async (app) => {
  const token = await signToken({ topics: ["*/real/13"] });
  const client = await TestClient.open(`${app.wsUrl}?token=${token}`, "gatecast.v1");
  client.send(sub("plant1/real/12", 7));
  assert.deepEqual(await client.expect("error"), {
    type: "error",
    id: 7,
    code: "FORBIDDEN",
    message: "your token does not grant 'plant1/real/12'",
  });
  client.send(sub("plant1/real/13", 8));
  assert.equal((await client.expect("subscribed")).id, 8);
  await client.close();
});

secured("an auth frame authenticates a browser client; frames before it get UNAUTHENTICATED", async (app) => {
  const client = await TestClient.open(app.wsUrl, "gatecast.v1");
  client.send(sub("plant1/real/12", 1));
  assert.equal((await client.expect("error")).code, "UNAUTHENTICATED");
  const exp = Math.floor(Date.now() / 1000) + 600;
  client.send({
    type: "auth",
    id: 2,
    token: await signToken({ sub: "browser", exp, topics: ["plant1/real/12"] }),
  });
  // Frames sent while the token is being verified are served after it, in order.
  client.send(sub("plant1/real/12", 3));
  assert.deepEqual(await client.expect("authenticated"), {
    type: "authenticated",
    id: 2,
    sub: "browser",
    expiresAt: exp * 1000,
  });
  assert.equal((await client.expect("subscribed")).id, 3);
  await client.close();
});

secured("an API key authenticates like a token and grants its own topics", async (app) => {
  const client = await TestClient.open(app.wsUrl, "gatecast.v1", { authorization: `Bearer ${API_KEY}` });
  client.send(sub("plant1/real/13"));
  await client.expect("subscribed");
  assert.equal((await client.expect("snapshot")).topic, "plant1/real/13");
  client.send(sub("plant1/real/12", 2));
  assert.equal((await client.expect("error")).code, "FORBIDDEN");
  await client.close();
});

secured("a bad token in the upgrade request is refused with 401 before any socket", async (app) => {
  const response = await fetch(`${app.httpUrl}/ws?token=not-a-key`, {
    headers: {
      upgrade: "websocket",
      connection: "Upgrade",
      "sec-websocket-key": "dGhlIHNhbXBsZSBub25jZQ==",
      "sec-websocket-version": "13",
    },
  });
  assert.equal(response.status, 401);
  assert.deepEqual(await response.json(), {
    error: "authentication failed: unknown API key or malformed token",
  });
});

secured("a bad token in an auth frame closes an unauthenticated connection with 4003", async (app) => {
  const client = await TestClient.open(app.wsUrl, "gatecast.v1");
  client.send({
    type: "auth",
    token: await signToken({ exp: Math.floor(Date.now() / 1000) - 5, topics: [] }),
  });
  const closed = await client.closed;
  assert.deepEqual([closed.code, closed.reason], [4003, "authentication failed: token expired"]);
});

secured("a connection that does not authenticate in time is closed with 4001", async (app) => {
  const client = await TestClient.open(app.wsUrl, "gatecast.v1");
  client.send({ type: "ping", id: 1 });
  assert.equal((await client.expect("error")).code, "UNAUTHENTICATED");
  const closed = await client.closed;
  assert.deepEqual([closed.code, closed.reason], [4001, "not authenticated within 2000 ms"]);
});

secured("a token that expires closes the connection with 4004", async (app) => {
  const exp = Math.floor(Date.now() / 1000) + 2;
  const client = await TestClient.open(app.wsUrl, "gatecast.v1", {
    authorization: `Bearer ${await signToken({ exp, topics: ["*/*/*"] })}`,
  });
  client.send(sub("plant1/real/12"));
  await client.expect("subscribed");
  const closed = await client.closed;
  assert.equal(closed.code, 4004);
  assert.ok(Date.now() >= exp * 1000, "closed at expiry, not before");
});

secured("a fresh auth frame before expiry keeps the connection and its subscriptions", async (app, db) => {
  const soon = Math.floor(Date.now() / 1000) + 2;
  const client = await TestClient.open(app.wsUrl, "gatecast.v1", {
    authorization: `Bearer ${await signToken({ exp: soon, topics: ["plant1/real/*"] })}`,
  });
  for (const [id, topic] of [[1, "plant1/real/12"], [2, "plant1/real/13"]] as const) {
    client.send(sub(topic, id));
    await client.expect("subscribed");
    await client.expect("snapshot");
  }
  // The fresh token narrows access: unit 13 is dropped with FORBIDDEN, unit 12 stays.
  client.send({ type: "auth", id: 3, token: await signToken({ topics: ["plant1/real/12"] }) });
  assert.deepEqual(await client.expect("error"), {
    type: "error",
    code: "FORBIDDEN",
    message: "the new token does not grant 'plant1/real/13'; unsubscribed",
  });
  assert.equal((await client.expect("authenticated")).id, 3);
  await new Promise((resolve) => setTimeout(resolve, soon * 1000 - Date.now() + 500));
  await db.setData("GW1", { ua: 230 });
  const update = await client.expect("update");
  assert.deepEqual([update.topic, update.changes[0].value], ["plant1/real/12", 230]);
  assert.equal(client.socket.readyState, WebSocket.OPEN);
  // A refused refresh keeps the current token.
  client.send({ type: "auth", id: 4, token: "nonsense" });
  assert.deepEqual(await client.expect("error"), {
    type: "error",
    id: 4,
    code: "AUTH_FAILED",
    message: "token refused: unknown API key or malformed token",
  });
  await client.close();
});

secured("a legacy client with a query-string token reads what its token grants", async (app) => {
  const token = await signToken({ topics: ["plant1/real/12"] });
  const client = await TestClient.open(`ws://127.0.0.1:${app.port}/?token=${token}`);
  client.send("{'unit_id': 12, 'handle': 'real', 'db_code': 'plant1', 'config': '{}'}");
  const points = await client.next();
  assert.equal(points[0].value, 229.5);
  client.send({ unit_id: 13, handle: "real", db_code: "plant1" });
  const closed = await client.closed;
  assert.deepEqual([closed.code, closed.reason], [
    1008,
    "forbidden: 'plant1/real/13' needs a token (?token=) or legacy.allow",
  ]);
  // Counted once, as a policy close.
  assert.equal(app.metrics.value("gatecast_clients_dropped_total", { reason: "policy" }), 1);
  assert.equal(app.metrics.value("gatecast_clients_dropped_total", { reason: "forbidden" }), 0);
});

secured("a legacy client without a token reads only the topics of legacy.allow", async (app) => {
  const allowed = await TestClient.open(`ws://127.0.0.1:${app.port}/`);
  allowed.send({ unit_id: 13, handle: "real", db_code: "plant1" });
  assert.equal((await allowed.next())[0].value, 231);
  await allowed.close();
  const refused = await TestClient.open(`ws://127.0.0.1:${app.port}/`);
  refused.send({ unit_id: 12, handle: "real", db_code: "plant1" });
  assert.equal((await refused.closed).code, 1008);
}, { legacy: { allow: ["plant1/real/13"] } });

secured("a browser page from another origin is refused with 403", async (app) => {
  await assert.rejects(TestClient.open(app.wsUrl, "gatecast.v1", { origin: "https://evil.example" }));
  const metrics = await (await fetch(`${app.httpUrl}/metrics`)).text();
  assert.match(metrics, /gatecast_upgrades_refused_total\{reason="origin"\} 1/);
  const allowed = await TestClient.open(app.wsUrl, "gatecast.v1", {
    origin: "https://dash.example.com",
    authorization: `Bearer ${API_KEY}`,
  });
  await allowed.close();
}, { allowedOrigins: ["https://dash.example.com"] });

secured("behind a trusted proxy, per-address limits count the forwarded client address", async (app) => {
  const from = (client: string) => ({ "x-forwarded-for": client, authorization: `Bearer ${API_KEY}` });
  const a1 = await TestClient.open(app.wsUrl, "gatecast.v1", from("203.0.113.7"));
  const b1 = await TestClient.open(app.wsUrl, "gatecast.v1", from("203.0.113.8"));
  await assert.rejects(TestClient.open(app.wsUrl, "gatecast.v1", from("203.0.113.7")));
  const log = app.logs.find((line) => line.msg === "upgrade refused");
  assert.deepEqual([log?.remote, log?.reason], ["203.0.113.7", "max_connections_per_address"]);
  await a1.close();
  await b1.close();
}, { trustedProxies: ["127.0.0.1"], maxConnectionsPerAddress: 1 });

Deno.test("a close reason quoting client text is cut to 123 bytes of well-formed UTF-8", () => {
  const reason = closeReason(`db_code must match [A-Za-z0-9_-]{1,64}, got "${"\ud800😀".repeat(40)}"`);
  assert.ok(new TextEncoder().encode(reason).length <= 123);
  assert.equal(reason, reason.toWellFormed());
  assert.ok(reason.startsWith('db_code must match [A-Za-z0-9_-]{1,64}, got "\ufffd😀'));
  assert.equal(closeReason("short"), "short");
});

secured("a bad seed frame with multi-byte text still closes the connection with 1008", async (app) => {
  const client = await TestClient.open(app.wsUrl, "gatecast.v1", { authorization: `Bearer ${API_KEY}` });
  client.send({ unit_id: null, handle: null, db_code: "好😀\u0007".repeat(30) });
  const closed = await Promise.race([
    client.closed,
    delay(3000).then(() => assert.fail("the connection was left open")),
  ]);
  assert.equal(closed.code, 1008);
  assert.match(closed.reason, /^db_code must match/);
});

Deno.test("a server listening beyond loopback with auth off warns at start", async () => {
  const app = await startTestApp({}, { host: "0.0.0.0", auth: { mode: "none" } });
  await app.stop();
  const warning = app.logs.find((line) =>
    line.level === "warn" && String(line.msg).startsWith("auth is off")
  );
  assert.equal(warning?.host, "0.0.0.0");
  const local = await startTestApp({}, { auth: { mode: "none" } });
  await local.stop();
  assert.equal(local.logs.some((line) => String(line.msg).startsWith("auth is off")), false);
});

Deno.test("with auth off an auth frame is answered as anonymous, so one client works with both", async () => {
  const app = await startTestApp({}, { auth: { mode: "none" } });
  try {
    const client = await TestClient.open(app.wsUrl, "gatecast.v1");
    client.send({ type: "auth", id: 9, token: "anything" });
    assert.deepEqual(await client.expect("authenticated"), {
      type: "authenticated",
      id: 9,
      sub: "anonymous",
      expiresAt: null,
    });
    await client.close();
  } finally {
    await app.stop();
  }
});
