/**
 * The node's link to Redis (lib/cluster/redis_link.ts), against throw-away `redis-server`s that
 * are SIGKILLed and restarted: the link reports each change up or down once (one callback, one
 * log line) however many reconnect attempts it makes, and its subscriptions outlive a restart.
 */

import assert from "node:assert/strict";
import { createClient } from "redis";
import { RedisLink } from "../../lib/cluster/redis_link.ts";
import { Logger } from "../../lib/ops/log.ts";
import { waitFor } from "../support/app.ts";
import { startThrowawayRedis, type ThrowawayRedis } from "../support/redis.ts";
import { freePort } from "../support/servers.ts";

/** A link to `url` whose changes and log lines are recorded, and whose reconnect attempts are counted. */
function link(url: string) {
  const changes: boolean[] = [];
  const logs: Record<string, unknown>[] = [];
  const logger = new Logger("debug", (line) => logs.push(JSON.parse(line)));
  const redis = new RedisLink({ redis: url }, logger, (up) => changes.push(up));
  let reconnects = 0;
  redis.commands.on("reconnecting", () => reconnects++);
  return {
    link: redis,
    changes,
    /** Messages of the lines that start with `prefix`, as level and message. */
    logged: (prefix: string) =>
      logs.filter((l) => String(l.msg).startsWith(prefix)).map((l) => [l.level, l.msg]),
    get reconnects() {
      return reconnects;
    },
  };
}

const CONNECTED = ["info", "redis connected: sharing polls with the cluster"];
const LOST = ["warn", "redis lost: polling this node's own topics until it is back"];
const UNREACHABLE = ["warn", "redis unreachable: polling this node's own topics until it answers"];

Deno.test("a link goes up once, goes down once on a SIGKILLed Redis however often it retries, and up once on its restart", async () => {
  const redis = await startThrowawayRedis();
  const t = link(redis.url);
  try {
    assert.equal(t.link.up, false);
    t.link.connect();
    await waitFor("the link up", () => t.link.up);
    assert.deepEqual(t.changes, [true]);
    assert.deepEqual(t.logged("redis "), [CONNECTED]);

    redis.kill("SIGKILL");
    await redis.child.status;
    await waitFor("the link down", () => t.changes.length === 2);
    assert.equal(t.link.up, false);
    const before = t.reconnects;
    await waitFor("three more reconnect attempts", () => t.reconnects >= before + 3);
    assert.deepEqual(t.changes, [true, false]);
    assert.deepEqual(t.logged("redis "), [CONNECTED, LOST]);

    await redis.restart();
    await waitFor("the link up again", () => t.link.up);
    assert.deepEqual(t.changes, [true, false, true]);
    assert.deepEqual(t.logged("redis "), [CONNECTED, LOST, CONNECTED]);
  } finally {
    await t.link.close();
    await redis.stop();
  }
});

Deno.test("a link to a port where nothing listens logs 'redis unreachable' once and stays down", async () => {
  const t = link(`redis://127.0.0.1:${freePort()}`);
  try {
    t.link.connect();
    await waitFor("the first failure", () => t.changes.length === 1);
    await waitFor("three more reconnect attempts", () => t.reconnects >= 3);
    assert.equal(t.link.up, false);
    assert.deepEqual(t.changes, [false]);
    assert.deepEqual(t.logged("redis "), [UNREACHABLE]);
  } finally {
    await t.link.close();
  }
  assert.deepEqual(t.changes, [false], "closing reports nothing");
});

Deno.test("a link started before its Redis goes up once the Redis answers", async () => {
  const port = freePort();
  const t = link(`redis://127.0.0.1:${port}`);
  let redis: ThrowawayRedis | undefined;
  try {
    t.link.connect();
    await waitFor("the first failure", () => t.changes.length === 1);
    redis = await startThrowawayRedis(port);
    await waitFor("the link up", () => t.link.up);
    assert.deepEqual(t.changes, [false, true]);
    assert.deepEqual(t.logged("redis "), [UNREACHABLE, CONNECTED]);
  } finally {
    await t.link.close();
    await redis?.stop();
  }
});

Deno.test("a subscription receives messages published after Redis was restarted", async () => {
  const redis = await startThrowawayRedis();
  const t = link(redis.url);
  const publisher = createClient({ url: redis.url, disableOfflineQueue: true });
  publisher.on("error", () => {}); // it is cut off by the SIGKILL too
  const received: string[] = [];
  try {
    t.link.connect();
    await waitFor("the link up", () => t.link.up);
    await t.link.subscribe("gatecast-test:topic:plant1/real/1", (text) => received.push(text));
    await publisher.connect();
    await publisher.publish("gatecast-test:topic:plant1/real/1", "before");
    await waitFor("the message before the crash", () => received.length === 1);

    redis.kill("SIGKILL");
    await redis.child.status;
    await waitFor("the link down", () => !t.link.up);
    await redis.restart();
    await waitFor("the link up again", () => t.link.up);
    // node-redis subscribes again by itself: once the server counts the subscriber, publish once.
    await waitFor("the publisher back", () => publisher.isReady);
    await waitFor("the subscription renewed", async () => {
      const counts = await publisher.pubSubNumSub("gatecast-test:topic:plant1/real/1");
      return counts["gatecast-test:topic:plant1/real/1"] === 1;
    });
    assert.equal(await publisher.publish("gatecast-test:topic:plant1/real/1", "after"), 1);
    await waitFor("the message after the restart", () => received.length === 2);
    assert.deepEqual(received, ["before", "after"]);
  } finally {
    publisher.destroy();
    await t.link.close();
    await redis.stop();
  }
});
