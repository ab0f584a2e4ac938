/**
 * The `cluster` section: absent, a single node; given, a Redis URL without a password in it, the
 * password from `passwordEnv`, a lease longer than a poll tick, a key prefix and an optional node
 * name, each bad value refused naming `cluster.<key>`.
 */

import assert from "node:assert/strict";
import { ConfigError, type EnvLookup, parseConfig } from "../../lib/config/config.ts";

const noEnv: EnvLookup = () => undefined;
const BASE = { auth: { mode: "none" }, databases: {} };

function cluster(settings: unknown, extra: Record<string, unknown> = {}, env: EnvLookup = noEnv) {
  return parseConfig({ ...BASE, ...extra, cluster: settings }, env).cluster;
}

/** The one line `parseConfig` refuses the cluster settings with, after checking it names `path`. */
function refusal(path: string, settings: unknown, extra: Record<string, unknown> = {}): string {
  try {
    cluster(settings, extra);
  } catch (error) {
    assert.ok(error instanceof ConfigError, `expected a ConfigError, got ${error}`);
    assert.equal(error.path, path);
    return error.message;
  }
  throw new Error(`accepted ${JSON.stringify(settings)}`);
}

Deno.test("without a cluster section the configuration has none: a single node", () => {
  const config = parseConfig(BASE, noEnv);
  assert.equal(config.cluster, undefined);
  assert.ok(!Object.hasOwn(config, "cluster"));
});

Deno.test("a cluster of just a Redis URL takes lease 3000 ms, prefix gatecast: and no password or node name", () => {
  assert.deepEqual(cluster({ redis: "redis://127.0.0.1:6379" }), {
    redis: "redis://127.0.0.1:6379",
    leaseMs: 3000,
    prefix: "gatecast:",
  });
});

Deno.test("every cluster setting can be given; the URL is kept as written, with its user and database", () => {
  const env: EnvLookup = (name) => name === "GATECAST_REDIS_PASSWORD" ? "s3cret" : undefined;
  assert.deepEqual(
    cluster(
      {
        redis: "rediss://gatecast@redis.example.com:6380/2",
        passwordEnv: "GATECAST_REDIS_PASSWORD",
        leaseMs: 60_000,
        prefix: "plant.floor:",
        node: "edge-1.a_b",
      },
      {},
      env,
    ),
    {
      redis: "rediss://gatecast@redis.example.com:6380/2",
      password: "s3cret",
      leaseMs: 60_000,
      prefix: "plant.floor:",
      node: "edge-1.a_b",
    },
  );
  for (const redis of ["redis://[::1]:6379/0", "redis://localhost/", "redis://cache"]) {
    assert.equal(cluster({ redis })?.redis, redis);
  }
});

Deno.test("cluster.passwordEnv reads like a database's: an unset variable or an unreadable environment is refused naming it", () => {
  assert.equal(
    refusal("cluster.passwordEnv", { redis: "redis://h", passwordEnv: "GATECAST_REDIS_PASSWORD" }),
    "cluster.passwordEnv: environment variable GATECAST_REDIS_PASSWORD is not set",
  );
  assert.throws(
    () =>
      cluster({ redis: "redis://h", passwordEnv: "REDIS_PW" }, {}, () => {
        throw new Deno.errors.NotCapable("env");
      }),
    (error) =>
      error instanceof ConfigError &&
      error.message ===
        "cluster.passwordEnv: cannot read environment variable REDIS_PW: run with --allow-env=REDIS_PW",
  );
  assert.equal(
    refusal("cluster.passwordEnv", { redis: "redis://h", passwordEnv: "" }),
    'cluster.passwordEnv: expected a non-empty string, got ""',
  );
});

Deno.test("a cluster section that is not an object, lacks redis or holds an unknown key is refused", () => {
  assert.equal(refusal("cluster", null), "cluster: expected an object, got null");
  assert.equal(refusal("cluster", ["redis://h"]), "cluster: expected an object, got an array");
  assert.equal(
    refusal("cluster.redis", {}),
    "cluster.redis: is required: the Redis server's URL, like redis://127.0.0.1:6379",
  );
  assert.equal(
    refusal("cluster.password", { redis: "redis://h", password: "p" }),
    "cluster.password: unknown key; accepted keys are redis, passwordEnv, leaseMs, prefix, node",
  );
});

Deno.test("cluster.redis must be a redis: or rediss: URL of a host and at most a database number", () => {
  const notUrl = "cluster.redis: expected a URL like redis://127.0.0.1:6379 or rediss://host:6380/0";
  const extra = "cluster.redis: expected nothing after the host but a database number, " +
    "as in redis://127.0.0.1:6379/0";
  const cases: [unknown, string][] = [
    ["", 'cluster.redis: expected a non-empty string, got ""'],
    [6379, "cluster.redis: expected a non-empty string, got 6379"],
    ["127.0.0.1:6379", notUrl],
    ["localhost:6379", 'cluster.redis: expected the redis: or rediss: scheme, got "localhost:"'],
    ["localhost", notUrl],
    ["redis:localhost", notUrl],
    ["redis:///0", notUrl],
    ["redis://h:99999", notUrl],
    ["http://127.0.0.1:6379", 'cluster.redis: expected the redis: or rediss: scheme, got "http:"'],
    ["redis://h/db1", extra],
    ["redis://h/0/1", extra],
    ["redis://h?db=1", extra],
    ["redis://h#x", extra],
  ];
  for (const [redis, message] of cases) assert.equal(refusal("cluster.redis", { redis }), message);
});

Deno.test("a password inside cluster.redis is refused, and never echoed", () => {
  for (const redis of ["redis://:hunter2@h:6379", "rediss://gatecast:hunter2@h/0"]) {
    const message = refusal("cluster.redis", { redis });
    assert.equal(message, "cluster.redis: put the password in cluster.passwordEnv, not in the URL");
  }
  // A malformed URL is not quoted either: it may hold a password.
  assert.ok(!refusal("cluster.redis", { redis: "redis://u:hunter2@h:99999" }).includes("hunter2"));
  assert.ok(!refusal("cluster.redis", { redis: "redis://u:hunter2@h/x" }).includes("hunter2"));
});

Deno.test("cluster.leaseMs is an integer 500-60000 greater than pollIntervalMs", () => {
  for (const leaseMs of [499, 60_001, 1500.5, "3000"]) {
    assert.equal(
      refusal("cluster.leaseMs", { redis: "redis://h", leaseMs }),
      `cluster.leaseMs: expected an integer 500-60000, got ${JSON.stringify(leaseMs)}`,
    );
  }
  assert.equal(cluster({ redis: "redis://h", leaseMs: 500 }, { pollIntervalMs: 499 })?.leaseMs, 500);
  assert.equal(
    refusal("cluster.leaseMs", { redis: "redis://h", leaseMs: 1000 }, { pollIntervalMs: 1000 }),
    "cluster.leaseMs: must be greater than pollIntervalMs (1000), got 1000",
  );
  // The default lease too: a 5 s tick needs a longer lease.
  assert.equal(
    refusal("cluster.leaseMs", { redis: "redis://h" }, { pollIntervalMs: 5000 }),
    "cluster.leaseMs: must be greater than pollIntervalMs (5000), got 3000",
  );
});

Deno.test("cluster.prefix is 1-64 characters without whitespace", () => {
  assert.equal(cluster({ redis: "redis://h", prefix: "p".repeat(64) })?.prefix, "p".repeat(64));
  assert.equal(cluster({ redis: "redis://h", prefix: "{gc}/" })?.prefix, "{gc}/");
  assert.equal(
    refusal("cluster.prefix", { redis: "redis://h", prefix: "" }),
    'cluster.prefix: expected a non-empty string, got ""',
  );
  for (const prefix of ["p".repeat(65), "gate cast:", "gatecast:\n", "gate\tcast"]) {
    assert.equal(
      refusal("cluster.prefix", { redis: "redis://h", prefix }),
      `cluster.prefix: expected 1-64 characters without whitespace, got ${
        JSON.stringify(prefix.length > 32 ? prefix.slice(0, 32) + "…" : prefix)
      }`,
    );
  }
});

Deno.test("cluster.node is 1-64 characters of A-Za-z0-9._-", () => {
  assert.equal(cluster({ redis: "redis://h", node: "n".repeat(64) })?.node, "n".repeat(64));
  assert.equal(
    refusal("cluster.node", { redis: "redis://h", node: "" }),
    'cluster.node: expected a non-empty string, got ""',
  );
  assert.equal(
    refusal("cluster.node", { redis: "redis://h", node: 7 }),
    "cluster.node: expected a non-empty string, got 7",
  );
  for (const node of ["n".repeat(65), "edge 1", "edge:1", "édge"]) {
    const shown = node.length > 32 ? node.slice(0, 32) + "…" : node;
    assert.equal(
      refusal("cluster.node", { redis: "redis://h", node }),
      `cluster.node: expected 1-64 characters of A-Za-z0-9._-, got ${JSON.stringify(shown)}`,
    );
  }
});
