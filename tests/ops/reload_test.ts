/**
 * Configuration reload, the pure part: which databases a new configuration adds, removes and
 * changes. The reload itself runs on a real process in main_test.ts (SIGHUP).
 */

import assert from "node:assert/strict";
import { parseConfig } from "../../lib/config/config.ts";
import { databaseChanges, removedMessage, restartNeeded } from "../../lib/ops/reload.ts";

const db = (database: string) => ({ host: "127.0.0.1", user: "u", database });

Deno.test("a reload's database changes: added, removed and changed codes", () => {
  const before = parseConfig(
    { auth: { mode: "none" }, databases: { a: db("a"), b: db("b"), c: db("c") } },
    () => undefined,
  );
  const after = parseConfig(
    { auth: { mode: "none" }, databases: { a: db("a"), c: db("c2"), d: db("d") } },
    () => undefined,
  );
  assert.deepEqual(databaseChanges(before, after), { added: ["d"], removed: ["b"], changed: ["c"] });
  assert.deepEqual(databaseChanges(before, before), { added: [], removed: [], changed: [] });
  assert.deepEqual(
    removedMessage("b", "b/real/1"),
    "database 'b' was removed from the configuration; subscription to 'b/real/1' ended",
  );
});

Deno.test("a reload names the changed settings that only a restart applies, and no others", () => {
  const config = (extra: Record<string, unknown>) =>
    parseConfig({ auth: { mode: "none" }, databases: {}, ...extra }, () => undefined);
  const before = config({ port: 4053, pollIntervalMs: 1000 });
  assert.deepEqual(restartNeeded(before, config({ port: 4053, pollIntervalMs: 500, logLevel: "debug" })), []);
  assert.deepEqual(
    restartNeeded(
      before,
      config({ port: 4054, pollIntervalMs: 1000, trustedProxies: ["10.0.0.1"], pointsRefreshPolls: 2 }),
    ),
    ["port", "trustedProxies", "pointsRefreshPolls"],
  );
});

Deno.test("a database's binlog that appears, changes or goes needs a restart; a database added without one does not", () => {
  const db = (binlog?: unknown) => ({
    host: "127.0.0.1",
    user: "gatecast",
    database: "iot",
    ...(binlog ? { binlog } : {}),
  });
  const config = (databases: Record<string, unknown>) =>
    parseConfig({ auth: { mode: "none" }, databases }, () => undefined);
  const before = config({ plant1: db({ serverId: 4242 }), plant2: db() });
  assert.deepEqual(restartNeeded(before, config({ plant1: db({ serverId: 4242 }), plant2: db() })), []);
  assert.deepEqual(restartNeeded(before, config({ plant1: db({ serverId: 4243 }), plant2: db() })), [
    "databases.plant1.binlog",
  ]);
  assert.deepEqual(
    restartNeeded(before, config({ plant1: db(), plant2: db({ serverId: 7 }), plant3: db() })),
    [
      "databases.plant1.binlog",
      "databases.plant2.binlog",
    ],
  );
  assert.deepEqual(restartNeeded(before, config({ plant2: db() })), []);
});

Deno.test("a cluster section that appears, changes or goes needs a restart; the same one given again does not", () => {
  const config = (cluster?: Record<string, unknown>) =>
    parseConfig(
      { auth: { mode: "none" }, databases: {}, ...(cluster ? { cluster } : {}) },
      (name) => name === "GATECAST_REDIS_PASSWORD" ? "s3cret" : undefined,
    );
  const single = config();
  const clustered = config({ redis: "redis://127.0.0.1:6379" });
  assert.deepEqual(restartNeeded(single, config()), []);
  assert.deepEqual(restartNeeded(clustered, config({ redis: "redis://127.0.0.1:6379" })), []);
  assert.deepEqual(restartNeeded(single, clustered), ["cluster"]);
  assert.deepEqual(restartNeeded(clustered, single), ["cluster"]);
  assert.deepEqual(
    restartNeeded(clustered, config({ redis: "redis://127.0.0.1:6379", leaseMs: 5000 })),
    ["cluster"],
  );
  assert.deepEqual(
    restartNeeded(
      clustered,
      config({ redis: "redis://127.0.0.1:6379", passwordEnv: "GATECAST_REDIS_PASSWORD" }),
    ),
    ["cluster"],
  );
});
