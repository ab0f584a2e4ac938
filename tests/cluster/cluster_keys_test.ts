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
  PUBLISH_SCRIPT,
  RELEASE_SCRIPT,
  RENEW_SCRIPT,
} from "../../lib/cluster/cluster_keys.ts";
import { readStateBatch } from "../../lib/cluster/shared_state.ts";
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
  assert.equal(keys.nodes, "gatecast:nodes");
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
    /** Publishes (topic key, state) pairs under the lease as `node`. */
    /** Runs PUBLISH_SCRIPT with (topic, whole state, change) triples. */
    publish: (node: string, states: [string, string, string][]) =>
      run([PUBLISH_SCRIPT, "2", lease, keys.state(GROUP), node, keys.states(GROUP), ...states.flat()]),
    async close() {
      await client.del([lease, fence, keys.state(GROUP)]);
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
    assert.equal(await t.acquire("node-a", 200), 0, "not even its holder takes a held lease again");
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

Deno.test("PUBLISH keeps each whole state and publishes the changes in one message, in order, for the leaseholder only; another node's writes nothing", async () => {
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
    const states: [string, string, string][] = [
      ["plant1/real/1", "s1", "c1"],
      ["plant1/real/2", "s2", "c2"],
      ["plant1/real/1", "s3", "c3"],
    ];
    assert.equal(await t.publish("node-a", states), 3);
    await waitFor("the message", () => heard.length === 1, 2000);
    assert.deepEqual(heard, [[
      t.keys.states(GROUP),
      "plant1/real/1\nc1\nplant1/real/2\nc2\nplant1/real/1\nc3",
    ]]);
    assert.deepEqual(readStateBatch(heard[0][1]), states.map(([key, _, change]) => [key, change]));
    // The hash keeps each topic's latest whole state, not its change.
    assert.deepEqual(await t.client.hGetAll(t.keys.state(GROUP)), {
      "plant1/real/1": "s3",
      "plant1/real/2": "s2",
    });
    // A node that is not (or no longer) the leaseholder publishes nothing and keeps nothing.
    assert.equal(await t.publish("node-b", [["plant1/real/3", "from b", "b"]]), 0);
    assert.equal(await t.publish("node-a", []), 0, "an empty batch publishes nothing");
    await t.release("node-a");
    assert.equal(await t.publish("node-a", [["plant1/real/2", "late", "l"]]), 0);
    // A message published after the refused ones arrives: nothing else came before it.
    await t.client.publish(t.keys.states(GROUP), "marker");
    await waitFor("the marker", () => heard.length === 2, 2000);
    assert.deepEqual(heard[1], [t.keys.states(GROUP), "marker"]);
    assert.deepEqual(await t.client.hGetAll(t.keys.state(GROUP)), {
      "plant1/real/1": "s3",
      "plant1/real/2": "s2",
    });
  } finally {
    listener.destroy();
    await t.close();
  }
});
