/**
 * `config.schema.json` says what `lib/config.ts` accepts: it is the file tools/settings_docs.ts
 * generates from lib/settings.ts; its keys, defaults and bounds, the hand-written sections' too, are
 * checked against `parseConfig` itself; the example config points at it and passes both; and a JSON
 * Schema validator (Ajv, draft 2020-12) agrees with `parseConfig` on good and bad files.
 */

import assert from "node:assert/strict";
import { Ajv2020 } from "ajv/dist/2020.js";
import { ConfigError, parseConfig } from "../../lib/config/config.ts";
import { REGENERATE, schemaText } from "../../tools/settings_docs.ts";

const ROOT = new URL("../../", import.meta.url);
const schemaFile = await Deno.readTextFile(new URL("config.schema.json", ROOT));
const schema = JSON.parse(schemaFile);
const example = JSON.parse(await Deno.readTextFile(new URL("config.example.json", ROOT)));
const noEnv = (name: string) => name === "GATECAST_PLANT1_PASSWORD" ? "secret" : undefined;
/** Authentication must be stated; most cases here are about other keys. */
const NO_AUTH = { mode: "none" };
const ajv = new Ajv2020({ allErrors: true, strict: true, strictRequired: false });
const validate = ajv.compile(schema);

/** The keys `parseConfig` accepts at a place, read from its own error for an unknown key. */
function acceptedKeys(raw: unknown): string[] {
  try {
    parseConfig(raw, noEnv);
  } catch (error) {
    const match = /accepted keys are (.*)$/.exec((error as ConfigError).message);
    if (match) return match[1].split(", ").sort();
  }
  throw new Error("parseConfig did not reject an unknown key");
}

function accepts(raw: unknown): boolean {
  try {
    parseConfig(raw, noEnv);
    return true;
  } catch (error) {
    if (error instanceof ConfigError) return false;
    throw error;
  }
}

Deno.test("config.schema.json is the schema generated from lib/settings.ts", () => {
  assert.ok(
    schemaFile === schemaText(),
    `config.schema.json differs from lib/settings.ts: run \`${REGENERATE}\``,
  );
});

Deno.test("config.example.json names the schema, is valid for both, and reads the local test database", () => {
  assert.deepEqual(example.$schema, "./config.schema.json");
  assert.ok(validate(example), JSON.stringify(validate.errors));
  assert.deepEqual(parseConfig(example, noEnv).databases.plant1, {
    driver: "mysql",
    host: "127.0.0.1",
    port: 3306,
    user: "root",
    password: "",
    database: "test",
    connectionLimit: 4,
  });
});

Deno.test("the schema lists exactly the keys gatecast accepts, at the top and in each kind of database", () => {
  assert.deepEqual(Object.keys(schema.properties).sort(), acceptedKeys({ bogus: 1 }));
  const mysqlKeys = acceptedKeys({ databases: { a: { bogus: 1 } } });
  const defs = schema.$defs;
  assert.deepEqual(
    [...new Set([...Object.keys(defs.mysqlSettings.properties), ...Object.keys(defs.mysqlUrl.properties)])]
      .sort(),
    mysqlKeys,
  );
  assert.deepEqual(
    Object.keys(defs.sqlite.properties).sort(),
    acceptedKeys({ databases: { a: { driver: "sqlite", bogus: 1 } } }),
  );
});

Deno.test("the schema lists exactly the keys gatecast accepts in auth, a JWT, an API key, tls, legacy, a handle and cluster", () => {
  const token = (extra: Record<string, unknown>) => ({ databases: {}, auth: { mode: "token", ...extra } });
  const defs = schema.$defs;
  const keysOf = (...nodes: { properties: object }[]) =>
    [...new Set(nodes.flatMap((node) => Object.keys(node.properties)))].sort();
  const cases: [unknown, string[]][] = [
    [{ databases: {}, auth: { mode: "none", bogus: 1 } }, keysOf(...schema.properties.auth.oneOf)],
    [token({ jwt: { bogus: 1 } }), keysOf(defs.jwt)],
    [token({ apiKeys: [{ bogus: 1 }] }), keysOf(defs.apiKey)],
    [{ databases: {}, auth: NO_AUTH, tls: { bogus: 1 } }, keysOf(schema.properties.tls)],
    [{ databases: {}, auth: NO_AUTH, legacy: { bogus: 1 } }, keysOf(schema.properties.legacy)],
    [{ databases: {}, auth: NO_AUTH, handles: { h: { bogus: 1 } } }, keysOf(defs.handle)],
    [{ databases: {}, auth: NO_AUTH, cluster: { bogus: 1 } }, keysOf(schema.properties.cluster)],
  ];
  for (const [doc, keys] of cases) assert.deepEqual(keys, acceptedKeys(doc), JSON.stringify(doc));
});

Deno.test("the schema's defaults are gatecast's defaults", () => {
  const config = parseConfig(
    { auth: NO_AUTH, databases: { a: { user: "u", database: "d" } } },
    noEnv,
  ) as unknown as Record<
    string,
    unknown
  >;
  for (const [key, property] of Object.entries(schema.properties as Record<string, { default?: unknown }>)) {
    // Objects without a default: `auth` is required, `legacy`, `tls` and `cluster` are off when absent.
    if (["$schema", "databases", "auth", "legacy", "tls", "cluster"].includes(key)) continue;
    assert.deepEqual(property.default, config[key], key);
  }
  const db = (config.databases as Record<string, Record<string, unknown>>).a;
  const mysql = schema.$defs.mysqlSettings.properties;
  assert.deepEqual([mysql.host.default, mysql.port.default, schema.$defs.connectionLimit.default], [
    db.host,
    db.port,
    db.connectionLimit,
  ]);
  const jwt = parseConfig(
    { databases: {}, auth: { mode: "token", jwt: { jwksFile: "jwks.json" } } },
    noEnv,
  ).auth;
  assert.deepEqual(
    [schema.$defs.authTimeoutMs.default, schema.$defs.jwt.properties.topicsClaim.default],
    [jwt.timeoutMs, jwt.jwt?.topicsClaim],
  );
  const handle = parseConfig(
    {
      databases: {},
      auth: NO_AUTH,
      handles: { h: { sql: "SELECT * FROM t WHERE u IN (:units)", unit: "u", key: ["k"] } },
    },
    noEnv,
  ).handles.h;
  const handleSchema = schema.$defs.handle.properties;
  assert.deepEqual(
    [handleSchema.unitType.default, handleSchema.maxRowsPerUnit.default],
    [handle.unitType, handle.maxRowsPerUnit],
  );
  const cluster =
    parseConfig({ databases: {}, auth: NO_AUTH, cluster: { redis: "redis://h" } }, noEnv).cluster;
  const clusterSchema = schema.properties.cluster.properties;
  assert.deepEqual(
    [clusterSchema.leaseMs.default, clusterSchema.prefix.default],
    [cluster?.leaseMs, cluster?.prefix],
  );
});

Deno.test("every integer bound in the schema is gatecast's bound: min and max pass, one beyond fails", () => {
  const base = { auth: NO_AUTH, databases: { a: { user: "u", database: "d" } } };
  for (const [key, property] of Object.entries(schema.properties as Record<string, Record<string, number>>)) {
    if (property.type as unknown !== "integer") continue;
    // sendBufferHardBytes must be at least sendBufferSoftBytes: hold the other one at its extreme.
    const doc = (value: number) => ({
      ...base,
      sendBufferSoftBytes: 1024,
      sendBufferHardBytes: 2 ** 31,
      [key]: value,
    });
    for (const value of [property.minimum, property.maximum]) {
      assert.ok(accepts(doc(value)), `${key}=${value} refused by gatecast`);
      assert.ok(validate(doc(value)), `${key}=${value} refused by the schema`);
    }
    for (const value of [property.minimum - 1, property.maximum + 1]) {
      assert.ok(!accepts(doc(value)), `${key}=${value} accepted by gatecast`);
      assert.ok(!validate(doc(value)), `${key}=${value} accepted by the schema`);
    }
  }
});

/** The examples. */
const TANKS = {
  sql: "SELECT site, tank_id, level_m, temp_c, updated_at FROM tank_level WHERE site IN (:units)",
  unit: "site",
  unitType: "string",
  key: ["tank_id"],
};
const ALARMS = {
  sql: "SELECT id, severity, message FROM alarm WHERE cleared_at IS NULL ORDER BY id DESC LIMIT 50",
  key: ["id"],
};

Deno.test("the integer bounds inside databases, auth and handles are gatecast's bounds", () => {
  const defs = schema.$defs;
  const cases: [string, Record<string, number>, (value: number) => unknown][] = [
    ["databases.a.port", defs.mysqlSettings.properties.port, (port) => ({
      auth: NO_AUTH,
      databases: { a: { user: "u", database: "d", port } },
    })],
    ["databases.a.connectionLimit", defs.connectionLimit, (connectionLimit) => ({
      auth: NO_AUTH,
      databases: { a: { url: "mysql://u@db/d", connectionLimit } },
    })],
    ["databases.a.binlog.serverId", defs.binlog.properties.serverId, (serverId) => ({
      auth: NO_AUTH,
      databases: { a: { user: "u", database: "d", binlog: { serverId } } },
    })],
    [
      "auth.timeoutMs",
      defs.authTimeoutMs,
      (timeoutMs) => ({ databases: {}, auth: { mode: "none", timeoutMs } }),
    ],
    // leaseMs must exceed pollIntervalMs, which a schema cannot compare: the shortest tick here.
    ["cluster.leaseMs", schema.properties.cluster.properties.leaseMs, (leaseMs) => ({
      databases: {},
      auth: NO_AUTH,
      pollIntervalMs: 50,
      cluster: { redis: "redis://h", leaseMs },
    })],
    ...(["pollIntervalMs", "maxRowsPerUnit"] as const).map((
      key,
    ): [string, Record<string, number>, (value: number) => unknown] => [
      `handles.h.${key}`,
      defs.handle.properties[key],
      (value) => ({ databases: {}, auth: NO_AUTH, handles: { h: { ...ALARMS, [key]: value } } }),
    ]),
  ];
  for (const [path, property, doc] of cases) {
    for (const value of [property.minimum, property.maximum]) {
      assert.ok(accepts(doc(value)), `${path}=${value} refused by gatecast`);
      assert.ok(validate(doc(value)), `${path}=${value} refused by the schema`);
    }
    for (const value of [property.minimum - 1, property.maximum + 1]) {
      assert.ok(!accepts(doc(value)), `${path}=${value} accepted by gatecast`);
      assert.ok(!validate(doc(value)), `${path}=${value} accepted by the schema`);
    }
  }
});

const SHA = "0".repeat(64);
/** Security settings, given whole (docs/security.md). */
const SECURITY_CASES: [unknown, boolean][] = [
  [{ databases: {} }, false],
  [{ databases: {}, auth: { mode: "open" } }, false],
  [{ databases: {}, auth: { mode: "token" } }, false],
  [{ databases: {}, auth: { mode: "token", apiKeys: [] } }, false],
  [{ databases: {}, auth: { mode: "none", apiKeys: [] } }, false],
  [
    { databases: {}, auth: { mode: "token", apiKeys: [{ name: "a", sha256: SHA, topics: ["*/real/12"] }] } },
    true,
  ],
  [{ databases: {}, auth: { mode: "token", apiKeys: [{ name: "a", sha256: "ABC", topics: [] }] } }, false],
  [{ databases: {}, auth: { mode: "token", apiKeys: [{ name: "a", sha256: SHA, topics: ["x/y"] }] } }, true],
  [
    { databases: {}, auth: { mode: "token", apiKeys: [{ name: "a", sha256: SHA, topics: ["x/y/z/w"] }] } },
    false,
  ],
  [
    {
      databases: {},
      auth: { mode: "token", apiKeys: [{ name: "a", sha256: SHA, topics: ["x/tanks/a b"] }] },
    },
    false,
  ],
  [{ databases: {}, auth: { mode: "token", jwt: { secret: "s".repeat(32), topicsClaim: "t" } } }, true],
  [{ databases: {}, auth: { mode: "token", jwt: { secret: "short" } } }, false],
  [{ databases: {}, auth: { mode: "token", jwt: {} } }, false],
  [
    { databases: {}, auth: { mode: "token", jwt: { jwksFile: "jwks.json", issuer: "i", audience: "a" } } },
    true,
  ],
  [{ databases: {}, auth: { mode: "token", jwt: { secret: "s".repeat(32), secretEnv: "X" } } }, false],
  [{ databases: {}, auth: NO_AUTH, legacy: { allow: ["plant1/real/*"] } }, true],
  [{ databases: {}, auth: NO_AUTH, legacy: { allow: ["plant1/real/0"] } }, true], // a name, as string units are
  [{ databases: {}, auth: NO_AUTH, legacy: { allow: ["plant1/real/1 2"] } }, false],
  [{ databases: {}, auth: NO_AUTH, allowedOrigins: ["https://dash.example.com", "*"] }, true],
  [{ databases: {}, auth: NO_AUTH, allowedOrigins: ["dash.example.com"] }, false],
  [{ databases: {}, auth: NO_AUTH, trustedProxies: ["10.0.0.0/8", "::1"] }, true],
  [{ databases: {}, auth: NO_AUTH, tls: { certFile: "c.pem", keyFile: "k.pem" } }, true],
  [{ databases: {}, auth: NO_AUTH, tls: { certFile: "c.pem" } }, false],
  [
    {
      databases: {},
      auth: { mode: "token", apiKeys: [{ name: "a", sha256: SHA, topics: [], notify: ["plant1/tanks/*"] }] },
    },
    true,
  ],
  [
    {
      databases: {},
      auth: { mode: "token", apiKeys: [{ name: "a", sha256: SHA, topics: [], notify: ["x"] }] },
    },
    false,
  ],
  [
    { databases: {}, auth: { mode: "token", jwt: { secret: "s".repeat(32), notifyClaim: "may_notify" } } },
    true,
  ],
  [{ databases: {}, auth: NO_AUTH, notifyFrom: "any" }, true],
  [{ databases: {}, auth: NO_AUTH, notifyFrom: "everyone" }, false],
  [{ databases: {}, auth: { mode: "token", jwt: { secret: "s".repeat(32) } }, notifyFrom: "any" }, false],
];

/** Handles; the SQL text itself only gatecast checks (handle_settings_test.ts). */
const HANDLE_CASES: [unknown, boolean][] = [
  [{ tanks: TANKS, alarms: ALARMS }, true],
  [
    { tanks: { ...TANKS, unitType: "int", databases: ["plant1"], pollIntervalMs: 500, maxRowsPerUnit: 5 } },
    true,
  ],
  [{ real: ALARMS }, false],
  [{ Tanks: TANKS }, false],
  [{ ["t".repeat(33)]: TANKS }, false],
  [{ alarms: { ...ALARMS, bogus: 1 } }, false],
  [{ alarms: { key: ["id"] } }, false],
  [{ alarms: { sql: ALARMS.sql } }, false],
  [{ alarms: { ...ALARMS, key: [] } }, false],
  [{ alarms: { ...ALARMS, key: ["id", "id"] } }, false],
  [{ alarms: { ...ALARMS, key: [""] } }, false],
  [{ alarms: { ...ALARMS, unitType: "int" } }, false],
  [{ alarms: { ...ALARMS, databases: [] } }, false],
  [{ alarms: { ...ALARMS, databases: ["plant1", "plant1"] } }, false],
  [{ tanks: { ...TANKS, sql: "SELECT site, tank_id FROM tank_level" } }, false],
  [{ tanks: { ...TANKS, unitType: "uuid" } }, false],
  [{ tanks: { ...TANKS, unit: "" } }, false],
  [{ tanks: { ...TANKS, maxRowsPerUnit: 0 } }, false],
  [{ tanks: { ...TANKS, tables: ["tank_level", "plant1.site"] } }, true],
  [{ tanks: { ...TANKS, tables: [] } }, false],
  [{ tanks: { ...TANKS, tables: ["tank_level", "tank_level"] } }, false],
  [{ tanks: { ...TANKS, tables: ["a.b.c"] } }, false],
];

/** The cluster section; its lease against pollIntervalMs only gatecast checks (cluster_settings_test.ts). */
const CLUSTER_CASES: [unknown, boolean][] = [
  [{ redis: "redis://127.0.0.1:6379" }, true],
  [{ redis: "rediss://gatecast@redis.example.com:6380/2", passwordEnv: "GATECAST_PLANT1_PASSWORD" }, true],
  [{ redis: "redis://[::1]:6379/0", leaseMs: 10_000, prefix: "{gc}:", node: "edge-1.a_b" }, true],
  [{ redis: "redis://localhost/" }, true],
  [{ redis: "redis://gatecast:@localhost" }, true], // an empty password is none
  [{}, false],
  [{ redis: "" }, false],
  [{ redis: "http://127.0.0.1:6379" }, false],
  [{ redis: "localhost:6379" }, false],
  [{ redis: "redis://:hunter2@localhost" }, false],
  [{ redis: "redis://gatecast:hunter2@localhost/0" }, false],
  [{ redis: "redis://localhost/db1" }, false],
  [{ redis: "redis://localhost?db=1" }, false],
  [{ redis: "redis://localhost", password: "p" }, false],
  [{ redis: "redis://localhost", passwordEnv: "" }, false],
  [{ redis: "redis://localhost", prefix: "" }, false],
  [{ redis: "redis://localhost", prefix: "gate cast:" }, false],
  [{ redis: "redis://localhost", prefix: "p".repeat(65) }, false],
  [{ redis: "redis://localhost", node: "edge 1" }, false],
  [{ redis: "redis://localhost", node: "n".repeat(65) }, false],
  [null, false],
];

Deno.test("the schema and gatecast agree on these files", () => {
  const cases: [unknown, boolean][] = [
    [{ databases: { plant1: { url: "mysql://u:p@db:3306/iot" } } }, true],
    [
      { databases: { plant1: { url: "mysql://u:p@db:3306/iot", passwordEnv: "GATECAST_PLANT1_PASSWORD" } } },
      true,
    ],
    [{ databases: { demo: { driver: "sqlite", path: "demo.db" } } }, true],
    [{ databases: { plant1: { url: "mysql://u:p@db:3306/iot", binlog: { serverId: 4242 } } } }, true],
    [{ databases: { plant1: { user: "u", database: "d", binlog: { serverId: 7 } } } }, true],
    [{ databases: { plant1: { user: "u", database: "d", binlog: {} } } }, false],
    [{ databases: { plant1: { user: "u", database: "d", binlog: { serverId: 7, x: 1 } } } }, false],
    [{ databases: { demo: { driver: "sqlite", path: "demo.db", binlog: { serverId: 7 } } } }, false],
    [{ databases: {} }, true],
    [{}, false],
    [{ databases: { "plant 1": { user: "u", database: "d" } } }, false],
    [{ databases: { plant1: { url: "mysql://u:p@db/iot", host: "x" } } }, false],
    [{ databases: { plant1: { user: "u", database: "d", password: "p", passwordEnv: "X" } } }, false],
    [{ databases: { plant1: { user: "u" } } }, false],
    [{ databases: { plant1: { driver: "postgres", user: "u", database: "d" } } }, false],
    [{ logLevel: "verbose", databases: {} }, false],
    [{ port: "4053", databases: {} }, false],
    [{ pollIntervalMs: 1.5, databases: {} }, false],
    ...CLUSTER_CASES.map(([cluster, valid]): [unknown, boolean] => [{ databases: {}, cluster }, valid]),
  ];
  for (
    const [doc, valid] of [
      ...cases.map(([doc, valid]) => [{ auth: NO_AUTH, ...doc as object }, valid]),
      ...SECURITY_CASES,
      ...HANDLE_CASES.map(([handles, valid]) => [
        { auth: NO_AUTH, databases: { plant1: { url: "mysql://u@db/iot" } }, handles },
        valid,
      ]),
    ]
  ) {
    assert.deepEqual(accepts(doc), valid, `gatecast on ${JSON.stringify(doc)}`);
    assert.deepEqual(validate(doc), valid, `schema on ${JSON.stringify(doc)}`);
  }
});
