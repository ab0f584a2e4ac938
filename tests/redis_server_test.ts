/**
 * Where the tests' Redis comes from (tests/support/redis.ts): REDIS_URL, else the local server,
 * else a throw-away redis-server, else installed or one line; a throw-away server is SIGKILLed and
 * started again on the same port, as the cluster tests will do.
 */

import assert from "node:assert/strict";
import { createClient } from "redis";
import { decide, provide } from "./support/requirements.ts";
import {
  locateRedis,
  parseRedisUrl,
  redisAnswers,
  type RedisFacts,
  redisRequirement,
  startThrowawayRedis,
  testRedis,
  uniquePrefix,
} from "./support/redis.ts";
import { freePort } from "./support/servers.ts";

/** A connected node-redis client of `url` whose errors are collected, not thrown into the event loop. */
async function connect(url: string) {
  const errors: unknown[] = [];
  const client = createClient({ url, disableOfflineQueue: true });
  client.on("error", (error: unknown) => errors.push(error));
  await client.connect();
  return { client, errors };
}

/** Runs `body` with REDIS_URL set to `url`, restoring it after. */
async function withRedisUrl<T>(url: string, body: () => Promise<T>): Promise<T> {
  const saved = Deno.env.get("REDIS_URL");
  try {
    Deno.env.set("REDIS_URL", url);
    return await body();
  } finally {
    if (saved === undefined) Deno.env.delete("REDIS_URL");
    else Deno.env.set("REDIS_URL", saved);
  }
}

Deno.test("the Redis is REDIS_URL, else the local one, else a throw-away one, else installed or one line", () => {
  const remote = { url: "redis://:pw@cache.example:6380", host: "cache.example", port: 6380 };
  const urls: Record<string, RedisFacts["url"]> = {
    unset: undefined,
    answering: { info: remote },
    refusing: { info: remote, error: "Connection refused (os error 111)" },
    malformed: { line: "REDIS_URL is not a URL: expected redis://[user:password@]host:port" },
  };
  const requirement = redisRequirement();
  for (const [name, url] of Object.entries(urls)) {
    for (const localAnswers of [false, true]) {
      for (const programs of [false, true]) {
        const at = JSON.stringify({ name, localAnswers, programs });
        const probe = locateRedis({ url, localAnswers, programs });
        const asRoot = decide(requirement, probe, { root: true, aptGet: true }, false);
        const asUser = decide(requirement, probe, { root: false, aptGet: true }, false);
        if (name === "answering") {
          assert.deepEqual(asUser, { action: "use", value: { kind: "url", info: remote } }, at);
        } else if (name === "refusing") {
          assert.deepEqual(asRoot, {
            action: "fail",
            line:
              "REDIS_URL (redis://cache.example:6380) does not answer PING: Connection refused (os error 111); " +
              "fix it or unset it to use the local server",
          }, at);
        } else if (name === "malformed") {
          assert.deepEqual(asRoot, { action: "fail", line: (url as { line: string }).line }, at);
        } else if (localAnswers) {
          assert.deepEqual(asUser, {
            action: "use",
            value: { kind: "local", info: { url: "redis://127.0.0.1:6379", host: "127.0.0.1", port: 6379 } },
          }, at);
        } else if (programs) {
          assert.deepEqual(asUser, { action: "use", value: { kind: "throwaway" } }, at);
        } else {
          assert.deepEqual(asRoot, { action: "install", packages: ["redis-server"] }, at);
          assert.deepEqual(asUser, {
            action: "fail",
            line:
              "no Redis server for the tests: set REDIS_URL=redis://host:port, run one on 127.0.0.1:6379 " +
              "(no password), or put redis-server on PATH (apt-get install redis-server); " +
              "not installed: not running as root",
          }, at);
        }
      }
    }
  }
});

Deno.test("REDIS_URL is read as redis://[user:password@]host:port, and nothing else", () => {
  assert.deepEqual(parseRedisUrl("redis://gc:s3cret@cache.example:6380/2"), {
    url: "redis://gc:s3cret@cache.example:6380/2",
    host: "cache.example",
    port: 6380,
  });
  assert.deepEqual(parseRedisUrl("redis://127.0.0.1"), {
    url: "redis://127.0.0.1",
    host: "127.0.0.1",
    port: 6379,
  });
  assert.throws(() => parseRedisUrl("127.0.0.1:6379"), {
    name: "SyntaxError",
    message: "REDIS_URL is not a URL: expected redis://[user:password@]host:port",
  });
  assert.throws(() => parseRedisUrl("rediss://:secret@cache.example:6380"), {
    name: "SyntaxError",
    message: "REDIS_URL: expected redis://[user:password@]host:port, got a rediss: URL",
  });
});

Deno.test("the tests' Redis answers PING through node-redis, and prefixes keep tests apart", async () => {
  const { url } = await testRedis();
  const { client, errors } = await connect(url);
  try {
    assert.equal(await client.ping(), "PONG");
    const [a, b] = [uniquePrefix(), uniquePrefix()];
    assert.match(a, /^gatecast-test-[0-9a-f-]+:$/);
    assert.notEqual(a, b);
    await client.set(`${a}key`, "a", { expiration: { type: "PX", value: 60_000 } });
    assert.equal(await client.get(`${a}key`), "a");
    assert.equal(await client.get(`${b}key`), null);
    await client.del(`${a}key`);
  } finally {
    client.destroy();
  }
  assert.deepEqual(errors, []);
});

Deno.test("a throw-away Redis SIGKILLed and restarted answers again on the same port", async () => {
  const redis = await startThrowawayRedis();
  try {
    assert.equal(redis.url, `redis://127.0.0.1:${redis.port}`);
    const { client } = await connect(redis.url);
    try {
      await client.set("k", "before the crash");
      const first = redis.child.pid;
      redis.kill("SIGKILL");
      assert.equal((await redis.child.status).signal, "SIGKILL");
      assert.equal(await redisAnswers(redis.url), false);
      await redis.restart();
      assert.notEqual(redis.child.pid, first);
      // Nothing is persisted: a new, empty server on the same port.
      const again = await connect(`redis://127.0.0.1:${redis.port}`);
      try {
        assert.equal(await again.client.ping(), "PONG");
        assert.equal(await again.client.get("k"), null);
      } finally {
        again.client.destroy();
      }
      assert.deepEqual(again.errors, []);
    } finally {
      client.destroy();
    }
  } finally {
    await redis.stop();
  }
  assert.equal(await redisAnswers(redis.url), false, "stop() ends the server");
});

Deno.test("a REDIS_URL on a closed port rejects with one line naming it, without its password", async () => {
  const port = freePort(); // nothing listens there
  // What testRedis() runs, without its per-file memo (which an earlier test has filled).
  await assert.rejects(
    withRedisUrl(`redis://:hunter2@127.0.0.1:${port}`, () => provide(redisRequirement())),
    {
      name: "MissingRequirement",
      message:
        `REDIS_URL (redis://127.0.0.1:${port}) does not answer PING: Connection refused (os error 111); ` +
        "fix it or unset it to use the local server",
    },
  );
});
