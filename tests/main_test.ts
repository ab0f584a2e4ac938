/**
 * The process: SIGTERM/SIGINT shut down gracefully (1001 to every client, upgrades refused,
 * exit 0 in bounded time), a second signal exits at once, and SIGHUP reloads the
 * configuration without dropping connections. Real child processes, real MariaDB.
 */

import assert from "node:assert/strict";
import { createTestDatabase, type TestDatabase } from "./support/mysql.ts";
import { delay, waitFor } from "./support/app.ts";
import { startServerProcess } from "./support/process.ts";
import { RawClient } from "./support/raw_ws.ts";
import { TestClient } from "./support/ws_client.ts";

async function plant(value: number): Promise<TestDatabase> {
  const db = await createTestDatabase();
  await db.addPoints([{ unit: 1, code: "ua", address: "GW1" }]);
  await db.setData("GW1", { ua: value });
  return db;
}

async function writeConfig(path: string, databases: Record<string, unknown>, extra = {}): Promise<void> {
  await Deno.writeTextFile(
    path,
    JSON.stringify({
      host: "127.0.0.1",
      port: 0,
      pollIntervalMs: 100,
      logLevel: "info",
      ...extra,
      databases,
    }),
  );
}

Deno.test("SIGTERM closes every client with 1001 and exits 0 within a bounded time", async () => {
  const db = await plant(1);
  const config = await Deno.makeTempFile({ suffix: ".json" });
  await writeConfig(config, { plant1: db.settings });
  const server = await startServerProcess(config);
  const url = `ws://127.0.0.1:${server.listening.port}/ws`;
  try {
    const v1 = await TestClient.open(url, "gatecast.v1");
    v1.send({ type: "subscribe", id: 1, topic: "plant1/real/1" });
    await v1.expect("subscribed");
    await v1.expect("snapshot");
    const legacy = await TestClient.open(url);
    legacy.send("{'unit_id': 1, 'handle': 'real', 'db_code': 'plant1'}");
    await legacy.next();
    const silent = await RawClient.open(server.listening.port); // never reads
    const sentAt = Date.now();
    server.child.kill("SIGTERM");
    const [v1Close, legacyClose] = await Promise.all([v1.closed, legacy.closed]);
    assert.deepEqual([v1Close.code, v1Close.reason], [1001, "server shutting down"]);
    assert.deepEqual([legacyClose.code, legacyClose.reason], [1001, "server shutting down"]);
    const exit = await server.exited(sentAt);
    assert.deepEqual(exit.code, 0);
    assert.ok(exit.ms < 5000, `exited after ${exit.ms} ms`);
    assert.ok(server.logs.some((line) => line.msg === "stopped"));
    silent.destroy();
  } finally {
    try {
      server.child.kill("SIGKILL");
    } catch { /* exited */ }
    await server.child.status;
    await db.drop();
    await Deno.remove(config);
  }
});

Deno.test("a second signal during a slow shutdown exits at once", async () => {
  // A "database" that accepts connections and never answers: polls hang until their timeout.
  const blackhole = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const held: Deno.Conn[] = [];
  const accepting = (async () => {
    for await (const conn of blackhole) held.push(conn);
  })();
  const config = await Deno.makeTempFile({ suffix: ".json" });
  await writeConfig(config, {
    hang: { host: "127.0.0.1", port: blackhole.addr.port, user: "u", database: "d" },
  }, { queryTimeoutMs: 20_000 });
  const server = await startServerProcess(config);
  try {
    await waitFor("the probe connecting", () => held.length > 0);
    const sentAt = Date.now();
    server.child.kill("SIGINT");
    await delay(300);
    server.child.kill("SIGTERM");
    const exit = await server.exited(sentAt);
    assert.deepEqual(exit.code, 1);
    assert.ok(exit.ms < 2000, `exited after ${exit.ms} ms`);
  } finally {
    try {
      server.child.kill("SIGKILL");
    } catch { /* exited */ }
    await server.child.status;
    blackhole.close();
    for (const conn of held) conn.close();
    await accepting.catch(() => {});
    await Deno.remove(config);
  }
});

Deno.test("SIGHUP reload: an added database serves, a removed one ends its topics with DB_REMOVED, new limits apply, connections stay up", async () => {
  const kept = await plant(1);
  const removed = await plant(2);
  const added = await plant(3);
  const config = await Deno.makeTempFile({ suffix: ".json" });
  await writeConfig(config, { kept: kept.settings, removed: removed.settings });
  const server = await startServerProcess(config);
  const url = `ws://127.0.0.1:${server.listening.port}/ws`;
  try {
    const client = await TestClient.open(url, "gatecast.v1");
    for (const [id, topic] of [[1, "kept/real/1"], [2, "removed/real/1"]] as const) {
      client.send({ type: "subscribe", id, topic });
      await client.expect("subscribed");
      await client.expect("snapshot");
    }
    const legacy = await TestClient.open(url);
    legacy.send("{'unit_id': 1, 'handle': 'real', 'db_code': 'removed'}");
    await legacy.next();

    await writeConfig(config, { kept: kept.settings, added: added.settings }, {
      maxSubscriptionsPerConnection: 2,
    });
    server.child.kill("SIGHUP");
    const ended = await client.expect("error");
    assert.deepEqual(ended, {
      type: "error",
      code: "DB_REMOVED",
      topic: "removed/real/1",
      message:
        "database 'removed' was removed from the configuration; subscription to 'removed/real/1' ended",
    });
    const legacyClose = await legacy.closed;
    assert.deepEqual(legacyClose.code, 1008);

    client.send({ type: "subscribe", id: 3, topic: "added/real/1" });
    assert.deepEqual((await client.expect("subscribed")).topic, "added/real/1");
    assert.deepEqual((await client.expect("snapshot")).points[0].value, 3);
    client.send({ type: "subscribe", id: 4, topic: "removed/real/1" });
    assert.deepEqual((await client.expect("error")).code, "UNKNOWN_DB");

    await kept.query("UPDATE device_data_real SET ua = 11");
    const update = await client.expect("update", 2000);
    assert.deepEqual([update.topic, update.changes[0].value], ["kept/real/1", 11]);

    const other = await TestClient.open(url, "gatecast.v1");
    for (const [id, topic] of [[1, "kept/real/1"], [2, "added/real/1"], [3, "kept/real/2"]] as const) {
      other.send({ type: "subscribe", id, topic });
    }
    const frames = [];
    for (let i = 0; i < 5; i++) frames.push(await other.next());
    assert.deepEqual(frames.find((f) => f.type === "error")?.code, "TOO_MANY_SUBSCRIPTIONS");

    // A broken file is refused and the running configuration kept.
    await Deno.writeTextFile(config, "{ not json");
    server.child.kill("SIGHUP");
    await waitFor(
      "the refusal logged",
      () => server.logs.some((l) => l.msg === "configuration not reloaded; keeping the running one"),
    );
    await kept.query("UPDATE device_data_real SET ua = 12");
    assert.deepEqual((await client.expect("update", 2000)).changes[0].value, 12);
    assert.deepEqual(client.socket.readyState, WebSocket.OPEN);
    await client.close();
    await other.close();
  } finally {
    server.child.kill("SIGTERM");
    await server.child.status;
    for (const db of [kept, removed, added]) await db.drop();
    await Deno.remove(config);
  }
});
