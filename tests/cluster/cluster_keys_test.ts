/**
 * A cluster's key names and its lease scripts (lib/cluster/cluster_keys.ts), run with EVAL
 * against a real Redis: a free lease is taken with the next fence, a held one is not, only its
 * holder renews or releases it, and only its holder publishes states under it.
 */

import assert from "node:assert/strict";
import { createClient } from "redis";
import {
  ACQUIRE_SCRIPT,
  ClusterKeys,
  HANDOVER_SCRIPT,
  PUBLISH_SCRIPT,
  RELEASE_SCRIPT,
  RENEW_SCRIPT,
} from "../../lib/cluster/cluster_keys.ts";
import { readStateBatch, valuesField } from "../../lib/cluster/shared_state.ts";
import { waitFor } from "../support/app.ts";
import { testRedis, uniquePrefix } from "../support/redis.ts";

const GROUP = "plant1/real";

Deno.test("every key and channel of a cluster lies under its prefix", () => {
  const keys = new ClusterKeys("gatecast:");
  assert.equal(keys.prefix, "gatecast:");
  assert.equal(keys.lease(GROUP), "gatecast:lease:plant1/real");
  assert.equal(keys.fence(GROUP), "gatecast:fence:plant1/real");
  assert.equal(keys.interest(GROUP), "gatecast:interest:plant1/real");
  assert.equal(keys.state(GROUP), "gatecast:state:plant1/real");
  assert.equal(keys.health(GROUP), "gatecast:health:plant1/real");
  assert.equal(keys.databaseHealth("plant1"), "gatecast:db-health:plant1");
  assert.equal(keys.nodes, "gatecast:nodes");
  assert.equal(keys.load("node-a"), "gatecast:load:node-a");
  assert.equal(keys.states("plant1/real"), "gatecast:states:plant1/real");
  assert.equal(keys.wake, "gatecast:wake");
});

/** A client of the tests' Redis, the keys of one group under a prefix of the test's own, and the scripts. */
async function leases() {
  const client = createClient({ url: (await testRedis()).url, disableOfflineQueue: true });
  const errors: unknown[] = [];
  client.on("error", (error: unknown) => errors.push(error));
  await client.connect();
  const keys = new ClusterKeys(uniquePrefix());
  const lease = keys.lease(GROUP);
  const fence = keys.fence(GROUP);
  const run = async (words: string[]) => Number(await client.sendCommand(["EVAL", ...words]));
  return {
    client,
    keys,
    lease,
    fence,
    acquire: (node: string, ms: number) => run([ACQUIRE_SCRIPT, "2", lease, fence, node, String(ms)]),
    renew: (node: string, ms: number) => run([RENEW_SCRIPT, "1", lease, node, String(ms)]),
    release: (node: string) => run([RELEASE_SCRIPT, "1", lease, node]),
    handover: (from: string, to: string, ms: number) =>
      run([HANDOVER_SCRIPT, "4", lease, fence, keys.load(from), keys.load(to), from, to, String(ms)]),
    /** Runs PUBLISH_SCRIPT as `node` with (topic, `state` or `values`, text) triples. */
    publish: (node: string, states: [string, string, string][]) =>
      run([PUBLISH_SCRIPT, "2", lease, keys.state(GROUP), node, keys.states(GROUP), ...states.flat()]),
    async close() {
      await client.del([lease, fence, keys.state(GROUP), keys.load("node-a"), keys.load("node-b")]);
      client.destroy();
      assert.deepEqual(errors, []);
    },
  };
}

Deno.test("ACQUIRE takes a free lease with fence 1, refuses a second node with 0, and gives fence 2 once it expired", async () => {
  const t = await leases();
  try {
    assert.equal(await t.acquire("node-a", 200), 1);
    assert.equal(await t.client.get(t.lease), "node-a");
    assert.equal(await t.client.get(t.fence), "1");
    assert.equal(await t.acquire("node-b", 200), 0);
    assert.equal(await t.client.get(t.lease), "node-a");
    assert.equal(await t.client.get(t.fence), "1");
    await waitFor("the lease to expire", async () => (await t.client.exists(t.lease)) === 0, 2000);
    assert.equal(await t.acquire("node-b", 200), 2);
    assert.equal(await t.client.get(t.lease), "node-b");
    // The fence outlives the lease: it counts every lease ever taken.
    assert.equal(await t.client.pTTL(t.fence), -1);
  } finally {
    await t.close();
  }
});

Deno.test("ACQUIRE of a lease already the node's (handed to it) extends it and answers its fence, without a new one", async () => {
  const t = await leases();
  try {
    assert.equal(await t.acquire("node-a", 200), 1);
    assert.equal(await t.acquire("node-a", 60_000), 1);
    assert.equal(await t.client.get(t.fence), "1");
    const ttl = await t.client.pTTL(t.lease);
    assert.ok(ttl > 59_000 && ttl <= 60_000, `PTTL ${ttl} after taking it again for 60 s`);
    // A lease whose fence was lost (a Redis emptied under it) gets a fence again, never 0.
    await t.client.del(t.fence);
    assert.equal(await t.acquire("node-a", 60_000), 1);
  } finally {
    await t.close();
  }
});

Deno.test("HANDOVER gives the giver's lease to a taker with a load, under a new fence, and moves one lease between their loads", async () => {
  const t = await leases();
  const loadA = t.keys.load("node-a"), loadB = t.keys.load("node-b");
  try {
    assert.equal(await t.acquire("node-a", 60_000), 1);
    assert.equal(await t.handover("node-a", "node-b", 60_000), 0, "a taker without a load is not live");
    assert.equal(await t.client.get(t.lease), "node-a");
    await t.client.set(loadA, "2", { expiration: { type: "PX", value: 60_000 } });
    await t.client.set(loadB, "0", { expiration: { type: "PX", value: 60_000 } });
    assert.equal(await t.handover("node-b", "node-a", 60_000), 0, "only the holder hands its lease over");
    assert.equal(await t.client.get(t.fence), "1");
    assert.equal(await t.handover("node-a", "node-b", 5_000), 2);
    assert.equal(await t.client.get(t.lease), "node-b");
    assert.equal(await t.client.get(t.fence), "2");
    const ttl = await t.client.pTTL(t.lease);
    assert.ok(ttl > 4_000 && ttl <= 5_000, `PTTL ${ttl}: the taker has the whole lease to take it`);
    assert.deepEqual([await t.client.get(loadA), await t.client.get(loadB)], ["1", "1"]);
    assert.ok(await t.client.pTTL(loadB) > 50_000, "the loads keep their expiry");
    // The giver can no longer renew it; the taker takes it with the handover's fence.
    assert.equal(await t.renew("node-a", 60_000), 0);
    assert.equal(await t.acquire("node-b", 60_000), 2);
  } finally {
    await t.close();
  }
});

Deno.test("RENEW extends the holder's lease with 1, and answers another node 0 without touching it", async () => {
  const t = await leases();
  try {
    assert.equal(await t.acquire("node-a", 200), 1);
    assert.ok(await t.client.pTTL(t.lease) <= 200);
    assert.equal(await t.renew("node-a", 60_000), 1);
    const renewed = await t.client.pTTL(t.lease);
    assert.ok(renewed > 59_000 && renewed <= 60_000, `PTTL ${renewed} after renewing for 60 s`);
    assert.equal(await t.renew("node-b", 120_000), 0);
    const after = await t.client.pTTL(t.lease);
    assert.ok(after <= renewed, `PTTL ${after}: another node's RENEW did not extend it`);
    assert.equal(await t.client.get(t.lease), "node-a");
    await t.client.del(t.lease);
    assert.equal(await t.renew("node-a", 60_000), 0, "a lease gone is not renewed");
    assert.equal(await t.client.exists(t.lease), 0);
  } finally {
    await t.close();
  }
});

Deno.test("RELEASE deletes the lease only for its holder", async () => {
  const t = await leases();
  try {
    assert.equal(await t.acquire("node-a", 60_000), 1);
    assert.equal(await t.release("node-b"), 0);
    assert.equal(await t.client.get(t.lease), "node-a");
    assert.equal(await t.release("node-a"), 1);
    assert.equal(await t.client.exists(t.lease), 0);
    assert.equal(await t.release("node-a"), 0, "a lease gone is not released twice");
    // Released, the lease is free at once, with the next fence.
    assert.equal(await t.acquire("node-b", 60_000), 2);
  } finally {
    await t.close();
  }
});

Deno.test("PUBLISH keeps each whole state, and the values since beside it, and publishes every text in one message, in order, for the leaseholder only", async () => {
  const t = await leases();
  const listener = t.client.duplicate();
  listener.on("error", () => {});
  await listener.connect();
  const heard: [string, string][] = [];
  try {
    await listener.subscribe(t.keys.states(GROUP), (message: string, channel: string) => {
      heard.push([channel, message]);
    });
    assert.equal(await t.acquire("node-a", 60_000), 1);
    const first: [string, string, string][] = [
      ["plant1/real/1", "state", "s1"],
      ["plant1/real/2", "state", "s2"],
      ["plant1/real/1", "values", "v1"],
    ];
    assert.equal(await t.publish("node-a", first), 3);
    await waitFor("the message", () => heard.length === 1, 2000);
    assert.deepEqual(heard, [[
      t.keys.states(GROUP),
      "plant1/real/1\ns1\nplant1/real/2\ns2\nplant1/real/1\nv1",
    ]]);
    assert.deepEqual(readStateBatch(heard[0][1]), first.map(([key, _, text]) => [key, text]));
    assert.deepEqual(await t.client.hGetAll(t.keys.state(GROUP)), {
      "plant1/real/1": "s1",
      [valuesField("plant1/real/1")]: "v1",
      "plant1/real/2": "s2",
    });
    // Later values replace the values kept; a whole state clears them, even within one batch.
    const second: [string, string, string][] = [
      ["plant1/real/2", "values", "v2"],
      ["plant1/real/1", "values", "v9"],
      ["plant1/real/1", "state", "s3"],
    ];
    assert.equal(await t.publish("node-a", second), 3);
    assert.deepEqual(await t.client.hGetAll(t.keys.state(GROUP)), {
      "plant1/real/1": "s3",
      "plant1/real/2": "s2",
      [valuesField("plant1/real/2")]: "v2",
    });
    await waitFor("the second message", () => heard.length === 2, 2000);
    // A node that is not (or no longer) the leaseholder publishes nothing and keeps nothing.
    assert.equal(await t.publish("node-b", [["plant1/real/3", "state", "from b"]]), 0);
    assert.equal(await t.publish("node-a", []), 0, "an empty batch publishes nothing");
    await t.release("node-a");
    assert.equal(await t.publish("node-a", [["plant1/real/2", "values", "late"]]), 0);
    // A message published after the refused ones arrives: nothing else came before it.
    await t.client.publish(t.keys.states(GROUP), "marker");
    await waitFor("the marker", () => heard.length === 3, 2000);
    assert.deepEqual(heard[2], [t.keys.states(GROUP), "marker"]);
    assert.deepEqual(await t.client.hGetAll(t.keys.state(GROUP)), {
      "plant1/real/1": "s3",
      "plant1/real/2": "s2",
      [valuesField("plant1/real/2")]: "v2",
    });
  } finally {
    listener.destroy();
    await t.close();
  }
});
