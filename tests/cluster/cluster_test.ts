/**
 * Cluster mode end to end: gatecast nodes as real processes on one real MariaDB and one real
 * Redis, real WebSocket clients. One node polls each group; every node's clients get the same
 * `seq` and `epoch`; a node stopped or killed is replaced; Redis lost and back.
 */

import assert from "node:assert/strict";
import { createClient } from "redis";
import { createTestDatabase, type TestDatabase } from "../support/mysql.ts";
import { type GatecastProcess, startGatecastWithConfig } from "../support/process.ts";
import { startThrowawayRedis, testRedis, uniquePrefix } from "../support/redis.ts";
import { waitFor } from "../support/app.ts";
import { PUBLISH_BATCH } from "../../lib/cluster/cluster.ts";
import { ClusterKeys } from "../../lib/cluster/cluster_keys.ts";
import { valuesField } from "../../lib/cluster/shared_state.ts";
import { type Frame, TestClient } from "../support/ws_client.ts";

const TOPIC = "plant1/real/1";
const POLL_MS = 200;
const LEASE_MS = 1000;

/** A database with one point, `ua` of GW1 in unit 1, at `value`. */
async function plant(value: number): Promise<TestDatabase> {
  const db = await createTestDatabase();
  await db.addPoints([{ unit: 1, code: "ua", address: "GW1" }]);
  await db.setData("GW1", { ua: value });
  return db;
}

/** A cluster of nodes named `names` on `db` and the Redis at `redisUrl`, under a prefix of this test. */
async function startNodes(
  db: TestDatabase,
  redisUrl: string,
  names: string[],
  extra = {},
  leaseMs = LEASE_MS,
  prefix = uniquePrefix(),
): Promise<GatecastProcess[]> {
  const nodes: GatecastProcess[] = [];
  for (const node of names) {
    nodes.push(
      await startGatecastWithConfig({
        pollIntervalMs: POLL_MS,
        logLevel: "info",
        databases: { plant1: db.settings },
        cluster: { redis: redisUrl, prefix, node, leaseMs },
        ...extra,
      }),
    );
  }
  return nodes;
}

const stopped = new WeakMap<GatecastProcess, Promise<number>>();

/** Stops a node (SIGTERM) once, however often it is asked; resolves with its exit code. */
function stopNode(node: GatecastProcess): Promise<number> {
  if (!stopped.has(node)) stopped.set(node, node.stop());
  return stopped.get(node)!;
}

async function stopAll(nodes: GatecastProcess[]): Promise<void> {
  await Promise.all(nodes.map(stopNode));
}

// deno-lint-ignore no-explicit-any
async function health(node: GatecastProcess): Promise<any> {
  return await (await fetch(`${node.httpUrl}/healthz`)).json();
}

/** The sum of a metric's series on a node's `/metrics`. */
async function metric(node: GatecastProcess, name: string): Promise<number> {
  const text = await (await fetch(`${node.httpUrl}/metrics`)).text();
  let sum = 0;
  for (const line of text.split("\n")) {
    if (line.startsWith(`${name} `) || line.startsWith(`${name}{`)) sum += Number(line.split(" ").at(-1));
  }
  return sum;
}

/** The nodes that hold the lease of `plant1/real`, once exactly one does. */
async function leaseholder(nodes: GatecastProcess[]): Promise<GatecastProcess> {
  let holders: GatecastProcess[] = [];
  await waitFor("one node to hold the lease of plant1/real", async () => {
    const reports = await Promise.all(nodes.map(health));
    holders = nodes.filter((_, i) => reports[i].cluster.leases.includes("plant1/real"));
    return holders.length === 1;
  }, 10_000);
  return holders[0];
}

/** A v1 client of a node subscribed to {@link TOPIC}, and its snapshot. */
async function subscriber(node: GatecastProcess): Promise<{ client: TestClient; snapshot: Frame }> {
  const client = await TestClient.open(`ws://127.0.0.1:${node.port}/ws`, "gatecast.v1");
  client.send({ type: "subscribe", id: 1, topic: TOPIC });
  await client.expect("subscribed");
  return { client, snapshot: await client.expect("snapshot") };
}

/** The value of `ua` a snapshot or update carries, if any. */
function uaOf(frame: Frame): unknown {
  const points = frame.type === "snapshot" ? frame.points : frame.type === "update" ? frame.changes : [];
  return points.find((point: Frame) => point.code === "ua")?.value;
}

/** Reads frames until one carries `ua` = `value`; returns every frame read, that one last. */
async function untilValue(client: TestClient, value: number, timeoutMs = 5000): Promise<Frame[]> {
  const frames: Frame[] = [];
  const deadline = Date.now() + timeoutMs;
  while (true) {
    const frame = await client.next(Math.max(1, deadline - Date.now()));
    frames.push(frame);
    if (uaOf(frame) === value) return frames;
  }
}

/** A client of a node subscribed to `topics` in one batch (kept in `clients`), once it has every snapshot. */
async function holding(node: GatecastProcess, topics: string[], clients: TestClient[]): Promise<TestClient> {
  const client = await TestClient.open(`ws://127.0.0.1:${node.port}/ws`, "gatecast.v1");
  clients.push(client);
  client.send({ type: "subscribe", id: 1, topics });
  const snapshots = new Set<string>();
  while (snapshots.size < topics.length) {
    const frame = await client.next();
    if (frame.type === "snapshot") snapshots.add(frame.topic);
    else assert.equal(frame.type, "subscribed", JSON.stringify(frame));
  }
  return client;
}

/** A database of units 1..`units`, one point each (`ua` of GW<unit>, at 1). */
async function plantOfUnits(units: number): Promise<TestDatabase> {
  const db = await createTestDatabase();
  await db.addPoints(
    Array.from({ length: units }, (_, i) => ({ unit: i + 1, code: "ua", address: `GW${i + 1}` })),
  );
  await db.query(
    `INSERT INTO device_data_real (equip_address, ua) VALUES ${
      Array.from({ length: units }, () => "(?, 1)").join(", ")
    }`,
    Array.from({ length: units }, (_, i) => `GW${i + 1}`),
  );
  return db;
}

/** The leaseholder's messages and states sent, and the follower's messages and states received. */
function messageCounts(holder: GatecastProcess, follower: GatecastProcess): Promise<number[]> {
  return Promise.all([
    metric(holder, "gatecast_cluster_messages_sent_total"),
    metric(holder, "gatecast_cluster_states_sent_total"),
    metric(follower, "gatecast_cluster_messages_received_total"),
    metric(follower, "gatecast_cluster_states_received_total"),
  ]);
}

/** A Redis client of the test's own and the keys under `prefix`; `close` deletes those keys. */
async function inspector(url: string, prefix: string) {
  const client = createClient({ url, disableOfflineQueue: true });
  client.on("error", () => {});
  await client.connect();
  const close = async () => {
    await client.del(await client.keys(`${prefix}*`)).catch(() => {});
    client.destroy();
  };
  return { client, keys: new ClusterKeys(prefix), close };
}

/** Every frame follows the one before it: the next `seq` of the same epoch, or a snapshot. */
function assertNoGap(previous: Frame, frames: Frame[]): void {
  let last = previous;
  for (const frame of frames) {
    if (frame.type === "update") {
      assert.equal(frame.epoch, last.epoch, `an update of another epoch: ${JSON.stringify(frame)}`);
      assert.equal(frame.seq, last.seq + 1, `a seq gap: ${last.seq} then ${JSON.stringify(frame)}`);
    } else assert.equal(frame.type, "snapshot", `unexpected ${JSON.stringify(frame)}`);
    last = frame;
  }
}

Deno.test("two clients on different nodes get the same seq and epoch for the same change, from one node's poll", async () => {
  const db = await plant(1);
  const redis = await testRedis();
  const nodes = await startNodes(db, redis.url, ["a", "b"]);
  const clients: TestClient[] = [];
  try {
    const first = await subscriber(nodes[0]);
    clients.push(first.client);
    const holder = await leaseholder(nodes);
    const other = nodes.find((node) => node !== holder)!;
    // The second node answers from the state its peer shared: no query of its own.
    const second = await subscriber(other);
    clients.push(second.client);
    assert.equal(await metric(other, "gatecast_poll_duration_seconds_count"), 0);
    assert.equal(uaOf(second.snapshot), 1);
    assert.equal(typeof first.snapshot.epoch, "string");
    assert.deepEqual([second.snapshot.seq, second.snapshot.epoch], [
      first.snapshot.seq,
      first.snapshot.epoch,
    ]);

    await db.setData("GW1", { ua: 2 });
    const [a, b] = await Promise.all([untilValue(first.client, 2), untilValue(second.client, 2)]);
    assert.deepEqual(a, [a.at(-1)]);
    assert.deepEqual(b, [b.at(-1)]);
    const [updateA, updateB] = [a.at(-1), b.at(-1)];
    assert.equal(updateA.type, "update");
    assert.deepEqual(updateB, updateA, "the same frame on both nodes");
    assert.deepEqual([updateA.seq, updateA.epoch], [first.snapshot.seq + 1, first.snapshot.epoch]);

    // Only the leaseholder polls the group; the other one ran no group poll at all.
    assert.ok(await metric(holder, "gatecast_poll_duration_seconds_count") > 0);
    assert.equal(await metric(other, "gatecast_poll_duration_seconds_count"), 0);
    assert.ok(await metric(holder, "gatecast_cluster_messages_sent_total") >= 1);
    assert.ok(await metric(other, "gatecast_cluster_messages_received_total") >= 1);
    const [healthA, healthB] = await Promise.all(nodes.map(health));
    assert.deepEqual([healthA.cluster.redis, healthB.cluster.redis], ["up", "up"]);
    assert.deepEqual([healthA.status, healthB.status], ["ok", "ok"]);
    // The follower sends the database nothing at all, not even a health probe: its /healthz
    // takes the leaseholder's report (it probed only before it followed the group).
    await waitFor("the follower to stop querying the database", async () => {
      const before = await metric(other, "gatecast_db_queries_total");
      const polls = await metric(holder, "gatecast_poll_duration_seconds_count");
      await waitFor(
        "three polls of the leaseholder",
        async () => await metric(holder, "gatecast_poll_duration_seconds_count") >= polls + 3,
      );
      return await metric(other, "gatecast_db_queries_total") === before;
    }, 10_000);
    const followed = (await health(other)).databases.plant1;
    assert.equal(followed.healthy, true);
    assert.ok(Date.parse(followed.lastGoodPoll) > Date.now() - 3 * POLL_MS);
    // `peers` is what Redis told at a node's last beat: a node that beat just before its peer's
    // first beat sees it at the next one (a beat is at most a poll interval).
    await waitFor("each node to count the other as its peer", async () => {
      const reports = await Promise.all(nodes.map(health));
      return reports.every((report) => report.cluster.peers === 1);
    }, 5 * POLL_MS);
  } finally {
    for (const client of clients) client.close();
    await stopAll(nodes);
    await db.drop();
  }
});

Deno.test("the lease handover: a node stopped gives its group up and another node polls it at once", async () => {
  const db = await plant(1);
  const redis = await testRedis();
  const nodes = await startNodes(db, redis.url, ["a", "b"]);
  const clients: TestClient[] = [];
  try {
    for (const node of nodes) clients.push((await subscriber(node)).client);
    const holder = await leaseholder(nodes);
    const survivor = nodes.find((node) => node !== holder)!;
    const client = clients[nodes.indexOf(survivor)];
    const before = await health(survivor);
    assert.deepEqual(before.cluster.leases, []);
    assert.equal(await stopNode(holder), 0);
    assert.ok(holder.stderr.some((line) => line.includes('"msg":"cluster lease released"')));
    await waitFor(
      "the survivor to take the lease",
      async () => (await health(survivor)).cluster.leases.length === 1,
    );
    await db.setData("GW1", { ua: 7 });
    const frames = await untilValue(client, 7);
    // The new leaseholder starts a new epoch: its clients get a fresh snapshot first.
    assert.equal(frames[0].type, "snapshot");
    assertNoGap(frames[0], frames.slice(1));
    assert.ok(
      survivor.stderr.some((line) => line.includes('"msg":"cluster lease acquired: polling the group"')),
    );
  } finally {
    for (const client of clients) client.close();
    await stopAll(nodes);
    await db.drop();
  }
});

Deno.test("a leaseholder killed with SIGKILL: the survivors' clients get the latest values after the lease expires, a fresh snapshot or no gap", async () => {
  const db = await plant(1);
  const redis = await testRedis();
  const nodes = await startNodes(db, redis.url, ["a", "b", "c"]);
  const clients = new Map<GatecastProcess, { client: TestClient; snapshot: Frame }>();
  try {
    for (const node of nodes) clients.set(node, await subscriber(node));
    const holder = await leaseholder(nodes);
    holder.child.kill("SIGKILL");
    await holder.exited;
    const killedAt = Date.now();
    await db.setData("GW1", { ua: 9 });
    const survivors = nodes.filter((node) => node !== holder);
    // Functional bound only (the bench measures the time): the lease, two ticks, and slack for a loaded machine.
    const frames = await Promise.all(
      survivors.map((node) => untilValue(clients.get(node)!.client, 9, LEASE_MS + 2 * POLL_MS + 4000)),
    );
    const recoveredMs = Date.now() - killedAt;
    for (const [i, node] of survivors.entries()) assertNoGap(clients.get(node)!.snapshot, frames[i]);
    const last = frames.map((seen) => seen.at(-1));
    assert.deepEqual([last[1].seq, last[1].epoch], [last[0].seq, last[0].epoch], "the survivors agree");
    assert.notEqual(last[0].epoch, clients.get(holder)!.snapshot.epoch, "a new leaseholder, a new epoch");
    const holders = (await Promise.all(survivors.map(health))).filter((report) =>
      report.cluster.leases.length > 0
    );
    assert.equal(holders.length, 1, `one new leaseholder (recovered in ${recoveredMs} ms)`);
  } finally {
    for (const { client } of clients.values()) client.close();
    await stopAll(nodes);
    await db.drop();
  }
});

Deno.test("Redis killed and restarted: each node polls its own topics, says so once, keeps serving and rejoins", async () => {
  const db = await plant(1);
  const redis = await startThrowawayRedis();
  const nodes = await startNodes(db, redis.url, ["a", "b"]);
  const clients: TestClient[] = [];
  try {
    for (const node of nodes) clients.push((await subscriber(node)).client);
    await leaseholder(nodes);
    redis.kill("SIGKILL");
    await waitFor("both nodes to see Redis gone", async () => {
      const reports = await Promise.all(nodes.map(health));
      return reports.every((report) => report.cluster.redis === "down" && report.status === "ok");
    });
    // Alone, each node polls: both clients get the change.
    await db.setData("GW1", { ua: 3 });
    await Promise.all(clients.map((client) => untilValue(client, 3)));
    await db.setData("GW1", { ua: 4 });
    await Promise.all(clients.map((client) => untilValue(client, 4)));
    for (const node of nodes) {
      assert.equal(
        node.stderr.filter((line) => line.includes('"msg":"redis lost')).length,
        1,
        node.stderr.join("\n"),
      );
    }

    await redis.restart();
    const holder = await leaseholder(nodes);
    const other = nodes.find((node) => node !== holder)!;
    const pollsBefore = await metric(other, "gatecast_poll_duration_seconds_count");
    await db.setData("GW1", { ua: 5 });
    const [a, b] = await Promise.all(clients.map((client) => untilValue(client, 5)));
    assert.deepEqual([a.at(-1).seq, a.at(-1).epoch], [b.at(-1).seq, b.at(-1).epoch], "one sequence again");
    for (const node of nodes) {
      assert.equal(node.stderr.filter((line) => line.includes('"msg":"redis connected')).length, 2);
    }
    // Rejoined: the other node polls no more.
    await db.setData("GW1", { ua: 6 });
    await Promise.all(clients.map((client) => untilValue(client, 6)));
    assert.equal(await metric(other, "gatecast_poll_duration_seconds_count"), pollsBefore);
  } finally {
    for (const client of clients) client.close();
    await stopAll(nodes);
    await redis.stop();
    await db.drop();
  }
});

Deno.test("a node started while Redis is unreachable serves on its own and joins once Redis answers", async () => {
  const db = await plant(1);
  const redis = await startThrowawayRedis();
  redis.kill("SIGKILL");
  await redis.child.status;
  const nodes = await startNodes(db, redis.url, ["a"]);
  const clients: TestClient[] = [];
  try {
    const { client, snapshot } = await subscriber(nodes[0]);
    clients.push(client);
    assert.equal(uaOf(snapshot), 1);
    assert.equal((await health(nodes[0])).cluster.redis, "down");
    assert.equal(nodes[0].stderr.filter((line) => line.includes('"msg":"redis unreachable')).length, 1);
    await redis.restart();
    await leaseholder(nodes);
    await db.setData("GW1", { ua: 8 });
    await untilValue(client, 8);
  } finally {
    for (const client of clients) client.close();
    await stopAll(nodes);
    await redis.stop();
    await db.drop();
  }
});

Deno.test("a notify to a node without subscribers reaches the node that polls the group, long before its tick", async () => {
  const db = await plant(1);
  const redis = await testRedis();
  // A long interval: only the notify can explain a poll within the test.
  const nodes = await startNodes(db, redis.url, ["a", "b"], { pollIntervalMs: 20_000 }, 30_000);
  const clients: TestClient[] = [];
  try {
    const { client } = await subscriber(nodes[0]);
    clients.push(client);
    await leaseholder(nodes);
    await db.setData("GW1", { ua: 11 });
    const response = await fetch(`${nodes[1].httpUrl}/notify`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ topics: [TOPIC] }),
    });
    const body = await response.json();
    assert.equal(response.status, 202, JSON.stringify(body));
    assert.deepEqual(body.scheduled, ["plant1/real"]);
    const frames = await untilValue(client, 11, 5000);
    assert.equal(frames.at(-1).type, "update");
    assert.equal(await metric(nodes[1], "gatecast_poll_duration_seconds_count"), 0);
  } finally {
    for (const client of clients) client.close();
    await stopAll(nodes);
    await db.drop();
  }
});

Deno.test("SIGHUP removing a database on its leaseholder: that node's clients are told, another node polls the group", async () => {
  const db = await plant(1);
  const redis = await testRedis();
  const nodes = await startNodes(db, redis.url, ["a", "b"]);
  const clients = new Map<GatecastProcess, TestClient>();
  try {
    for (const node of nodes) clients.set(node, (await subscriber(node)).client);
    const holder = await leaseholder(nodes);
    const other = nodes.find((node) => node !== holder)!;
    const configPath = (holder as GatecastProcess & { configPath: string }).configPath;
    const config = JSON.parse(await Deno.readTextFile(configPath));
    config.databases = { plant2: db.settings };
    await Deno.writeTextFile(configPath, JSON.stringify(config));
    holder.child.kill("SIGHUP");
    const revoked = await clients.get(holder)!.expect("error");
    assert.deepEqual([revoked.code, revoked.topic], ["DB_REMOVED", TOPIC]);
    await waitFor(
      "the other node to take the lease",
      async () => (await health(other)).cluster.leases.length === 1,
    );
    assert.deepEqual((await health(holder)).cluster.leases, []);
    await db.setData("GW1", { ua: 12 });
    await untilValue(clients.get(other)!, 12);
  } finally {
    for (const client of clients.values()) client.close();
    await stopAll(nodes);
    await db.drop();
  }
});

Deno.test("a poll that changes more topics than one publish script takes reaches the followers whole, in one message a script", async () => {
  const units = PUBLISH_BATCH + 44;
  const db = await plantOfUnits(units);
  const redis = await testRedis();
  const nodes = await startNodes(db, redis.url, ["a", "b"]);
  const topics = Array.from({ length: units }, (_, i) => `plant1/real/${i + 1}`);
  const clients: TestClient[] = [];
  const holdingAll = (node: GatecastProcess) => holding(node, topics, clients);
  try {
    await holdingAll(nodes[0]);
    const holder = await leaseholder(nodes);
    const followerClient = await holdingAll(nodes.find((node) => node !== holder)!);
    const follower = nodes.find((node) => node !== holder)!;
    const counts = () => messageCounts(holder, follower);
    const before = await counts();
    await db.query("UPDATE device_data_real SET ua = 2"); // one statement: one poll sees every change
    const updated = new Set<string>();
    while (updated.size < units) {
      const frame = await followerClient.next();
      assert.equal(frame.type, "update", JSON.stringify(frame));
      assert.equal(uaOf(frame), 2);
      updated.add(frame.topic);
    }
    const after = await counts();
    // Two messages (256 + 44 states), each with every state of its part of the poll.
    assert.deepEqual(after.map((count, i) => count - before[i]), [2, units, 2, units]);
  } finally {
    for (const client of clients) client.close();
    await stopAll(nodes);
    await db.drop();
  }
});

Deno.test("one message a poll for the whole group: a follower decodes the states of its own topics only", async () => {
  const units = 4;
  const db = await plantOfUnits(units);
  const redis = await testRedis();
  const nodes = await startNodes(db, redis.url, ["a", "b"]);
  const clients: TestClient[] = [];
  try {
    await holding(nodes[0], Array.from({ length: units }, (_, i) => `plant1/real/${i + 1}`), clients);
    const holder = await leaseholder(nodes);
    const follower = nodes.find((node) => node !== holder)!;
    const one = await subscriber(follower); // plant1/real/1 only
    clients.push(one.client);
    const counts = () => messageCounts(holder, follower);
    const before = await counts();
    await db.query("UPDATE device_data_real SET ua = 2"); // one statement: one poll sees every change
    assertNoGap(one.snapshot, await untilValue(one.client, 2));
    let grown: number[] = [];
    await waitFor("the leaseholder to count its publish", async () => {
      grown = (await counts()).map((count, i) => count - before[i]);
      return grown[0] >= 1;
    }, 5000);
    // One message of 4 states out, one message in, and one state decoded: the follower's topic.
    assert.deepEqual(grown, [1, units, 1, 1]);
  } finally {
    for (const client of clients) client.close();
    await stopAll(nodes);
    await db.drop();
  }
});

Deno.test("values change by change; a follower that missed one reads the whole state from the hash, not the values", async () => {
  const db = await plant(1);
  const redis = await testRedis();
  const prefix = uniquePrefix();
  const { client, keys, close } = await inspector(redis.url, prefix);
  const nodes = await startNodes(db, redis.url, ["a", "b"], {}, LEASE_MS, prefix);
  const clients: TestClient[] = [];
  try {
    const first = await subscriber(nodes[0]);
    clients.push(first.client);
    const holder = await leaseholder(nodes);
    const follower = nodes.find((node) => node !== holder)!;
    const { client: watcher, snapshot } = await subscriber(follower);
    clients.push(watcher);
    // Changes of the value alone travel as values, and the follower applies them in order.
    const heard: string[] = [];
    const listener = client.duplicate();
    listener.on("error", () => {});
    await listener.connect();
    try {
      await listener.subscribe(keys.states("plant1/real"), (message: string) => heard.push(message));
      await db.setData("GW1", { ua: 2 });
      const frames = await untilValue(watcher, 2);
      assertNoGap(snapshot, frames);
      await waitFor("the leaseholder's message", () => heard.length > 0, 5000);
    } finally {
      listener.destroy();
    }
    const [key, change] = heard.at(-1)!.split("\n");
    assert.equal(key, TOPIC);
    assert.deepEqual(JSON.parse(change).values, [2]);
    // The leaseholder's whole state, moved on by five: the follower cannot apply values to what it holds.
    const whole = JSON.parse((await client.hGet(keys.state("plant1/real"), TOPIC))!);
    const seq = whole.seq + 5;
    whole.seq = seq;
    whole.rows.cells[whole.rows.columns.indexOf("value")] = 77;
    await client.hSet(keys.state("plant1/real"), TOPIC, JSON.stringify(whole));
    const gap = { ...JSON.parse(change), seq, values: [55] };
    await client.publish(keys.states("plant1/real"), `${TOPIC}\n${JSON.stringify(gap)}`);
    const caughtUp = await untilValue(watcher, 77);
    assert.deepEqual(caughtUp.map((frame) => [frame.type, frame.seq]), [["snapshot", seq]]);
    assert.equal(caughtUp[0].epoch, snapshot.epoch);
  } finally {
    for (const c of clients) c.close();
    await stopAll(nodes);
    await close();
    await db.drop();
  }
});

Deno.test("leases spread: a node that took every group hands leases over until each node polls one, its clients kept in order", async () => {
  const db = await plant(1);
  const redis = await testRedis();
  const databases = { plant1: db.settings, plant2: db.settings, plant3: db.settings };
  const topics = ["plant1/real/1", "plant2/real/1", "plant3/real/1"];
  const prefix = uniquePrefix();
  const nodes = await startNodes(db, redis.url, ["a"], { databases }, LEASE_MS, prefix);
  const clients: TestClient[] = [];
  try {
    const first = await TestClient.open(`ws://127.0.0.1:${nodes[0].port}/ws`, "gatecast.v1");
    clients.push(first);
    first.send({ type: "subscribe", id: 1, topics });
    const last = new Map<string, Frame>();
    while (last.size < topics.length) {
      const frame = await first.next();
      if (frame.type === "snapshot") last.set(frame.topic, frame);
    }
    await waitFor(
      "a to poll all three groups",
      async () => (await health(nodes[0])).cluster.leases.length === 3,
    );
    nodes.push(...await startNodes(db, redis.url, ["b", "c"], { databases }, LEASE_MS, prefix));
    for (const node of nodes.slice(1)) await holding(node, topics, clients);
    await waitFor("each node to poll one group", async () => {
      const reports = await Promise.all(nodes.map(health));
      return reports.every((report) => report.cluster.leases.length === 1);
    }, 10_000);
    assert.equal(await metric(nodes[0], 'gatecast_cluster_lease_changes_total{change="handed_over"}'), 2);
    assert.equal(
      nodes[0].stderr.filter((line) => line.includes('"msg":"cluster lease handed over"')).length,
      2,
    );
    // a's client saw the groups move as a new epoch each (a fresh snapshot), never a gap; and
    // every client of every node gets the next value of every topic.
    await db.setData("GW1", { ua: 4 });
    const seen = new Map<string, Frame[]>(topics.map((topic) => [topic, []]));
    while ([...seen.values()].some((frames) => uaOf(frames.at(-1) ?? {}) !== 4)) {
      const frame = await first.next();
      if (frame.type === "snapshot" || frame.type === "update") seen.get(frame.topic)!.push(frame);
    }
    const moved = [...seen.values()].filter((frames) => frames.some((frame) => frame.type === "snapshot"));
    assert.equal(moved.length, 2, "two groups moved: their topics start again in a new epoch");
    for (const topic of topics) assertNoGap(last.get(topic)!, seen.get(topic)!);
    for (const client of clients.slice(1)) {
      const values = new Map<string, unknown>();
      while (topics.some((topic) => values.get(topic) !== 4)) {
        const frame = await client.next();
        if (frame.type === "snapshot" || frame.type === "update") values.set(frame.topic, uaOf(frame));
      }
    }
    const changes = (node: GatecastProcess, change: string) =>
      metric(node, `gatecast_cluster_lease_changes_total{change="${change}"}`);
    assert.deepEqual(
      await Promise.all(
        nodes.map(async (node) => [await changes(node, "acquired"), await changes(node, "lost")]),
      ),
      [[3, 0], [1, 0], [1, 0]],
    );
    assert.deepEqual(
      (await Promise.all(nodes.map(health))).map((report) => report.cluster.leases.length),
      [1, 1, 1],
    );
  } finally {
    for (const client of clients) client.close();
    await stopAll(nodes);
    await db.drop();
  }
});

Deno.test("a database none of a node's clients watch is not probed by it while another node polls one of its groups", async () => {
  const db = await plant(1);
  const redis = await testRedis();
  const databases = { plant1: db.settings, plant2: db.settings };
  const nodes = await startNodes(db, redis.url, ["a", "b"], { databases });
  const [a, b] = nodes;
  const clients: TestClient[] = [];
  try {
    await holding(a, ["plant1/real/1", "plant2/real/1"], clients);
    await holding(b, ["plant1/real/1"], clients);
    const queriesOfPlant2 = () => metric(b, 'gatecast_db_queries_total{db="plant2"}');
    // b polls nothing of plant2 and follows no group of it: it takes a's report of the database.
    await waitFor("b to stop probing plant2", async () => {
      const before = await queriesOfPlant2();
      const polls = await metric(a, "gatecast_poll_duration_seconds_count");
      await waitFor(
        "three polls of a",
        async () => await metric(a, "gatecast_poll_duration_seconds_count") >= polls + 3,
      );
      return await queriesOfPlant2() === before;
    }, 10_000);
    const reported = (await health(b)).databases.plant2;
    assert.equal(reported.healthy, true);
    assert.ok(Date.parse(reported.lastGoodPoll) > Date.now() - 3 * POLL_MS, JSON.stringify(reported));
  } finally {
    for (const client of clients) client.close();
    await stopAll(nodes);
    await db.drop();
  }
});

Deno.test("a node's first subscriber after changes of values alone gets the latest state from the hash's whole state and the values since", async () => {
  const db = await plant(1);
  const redis = await testRedis();
  const prefix = uniquePrefix();
  const { client, keys, close } = await inspector(redis.url, prefix);
  const [a, b] = await startNodes(db, redis.url, ["a", "b"], {}, LEASE_MS, prefix);
  const clients: TestClient[] = [];
  try {
    const first = await subscriber(a);
    clients.push(first.client);
    assert.equal(await leaseholder([a, b]), a, "the only node with a client polls");
    let last = first.snapshot;
    for (const ua of [2, 3]) {
      await db.setData("GW1", { ua });
      last = (await untilValue(first.client, ua)).at(-1)!;
    }
    assert.equal(last.type, "update");
    // The hash holds the first poll's whole state, and beside it the values of the latest.
    const kept = await client.hmGet(keys.state("plant1/real"), [TOPIC, valuesField(TOPIC)]);
    const [whole, values] = kept.map((text) => JSON.parse(text!));
    assert.deepEqual([whole.seq, whole.rows.cells.includes(1)], [first.snapshot.seq, true]);
    assert.deepEqual([values.seq, values.values], [last.seq, [3]]);
    const second = await subscriber(b);
    clients.push(second.client);
    assert.deepEqual([second.snapshot.seq, second.snapshot.epoch, uaOf(second.snapshot)], [
      last.seq,
      last.epoch,
      3,
    ]);
    assert.equal(await metric(b, "gatecast_poll_duration_seconds_count"), 0, "no query of its own");
  } finally {
    for (const c of clients) c.close();
    await stopAll([a, b]);
    await close();
    await db.drop();
  }
});

Deno.test("a lease handed to a node whose clients of the group left meanwhile goes back at once; wakes that are not wakes are dropped", async () => {
  const db = await plant(1);
  const redis = await testRedis();
  const prefix = uniquePrefix();
  const { client, keys, close } = await inspector(redis.url, prefix);
  const nodes = await startNodes(db, redis.url, ["b"], {}, LEASE_MS, prefix);
  try {
    // As HANDOVER_SCRIPT leaves it: the lease is b's for a long while, and b is told to take it.
    await client.set(keys.lease("plant1/real"), "b", { expiration: { type: "PX", value: 60_000 } });
    const wake = JSON.stringify({ group: "plant1/real", reason: "lease", from: "a", to: "b" });
    await waitFor("b to give back a lease of a group it has no topic in", async () => {
      // Messages that are not wakes come first each time: b drops them and still hears the wake.
      for (const text of ["null", "7", "[]", "{}", "not json"]) await client.publish(keys.wake, text);
      // Wakes before b listens are lost, as on pub/sub: tell it until it acts.
      await client.publish(keys.wake, wake);
      return await client.exists(keys.lease("plant1/real")) === 0;
    }, 5000);
  } finally {
    await stopAll(nodes);
    await close();
    await db.drop();
  }
});
