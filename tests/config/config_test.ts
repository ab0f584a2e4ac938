/**
 * The configuration file: defaults, the three ways to give MySQL settings, and one message per
 * bad value naming its JSON path and what is accepted.
 */

import assert from "node:assert/strict";
import {
  type Config,
  ConfigError,
  type EnvLookup,
  parseConfig,
  parseLogLevel,
  parsePort,
} from "../../lib/config/config.ts";

const noEnv: EnvLookup = () => undefined;
/** Authentication is required to be stated (docs/security.md); these tests are about the rest. */
const NO_AUTH = { mode: "none" };
const PLANT1 = { host: "127.0.0.1", port: 3306, user: "gatecast", password: "secret", database: "iot" };

function configError(path: string, message: string) {
  return (error: unknown) => {
    assert.ok(error instanceof ConfigError, `expected a ConfigError, got ${error}`);
    assert.equal(error.name, "ConfigError");
    assert.equal(error.path, path);
    assert.equal(error.message, message);
    return true;
  };
}

function withPlant1(settings: Record<string, unknown>): unknown {
  return { auth: NO_AUTH, databases: { plant1: { ...PLANT1, ...settings } } };
}

Deno.test("the contract's example config parses with every default filled in", () => {
  const config: Config = parseConfig({
    host: "0.0.0.0",
    port: 4053,
    pollIntervalMs: 1000,
    databases: { plant1: PLANT1 },
    auth: NO_AUTH,
  }, noEnv);
  assert.deepEqual(config, {
    host: "0.0.0.0",
    port: 4053,
    reusePort: false,
    pollIntervalMs: 1000,
    queryTimeoutMs: 5000,
    pointsRefreshPolls: 10,
    maxFrameBytes: 65536,
    maxSubscriptionsPerConnection: 1000,
    sendBufferSoftBytes: 1048576,
    sendBufferHardBytes: 16777216,
    slowClientGraceMs: 10000,
    keepAliveSeconds: 30,
    dbRetryMaxMs: 0,
    logLevel: "info",
    databases: {
      plant1: {
        driver: "mysql",
        host: "127.0.0.1",
        port: 3306,
        user: "gatecast",
        password: "secret",
        database: "iot",
        connectionLimit: 4,
      },
    },
    handles: {},
    auth: { mode: "none", timeoutMs: 10_000, apiKeys: [] },
    legacyAllow: [],
    allowedOrigins: [],
    trustedProxies: [],
    tls: undefined,
    maxConnections: 10_000,
    maxConnectionsPerAddress: 100,
    maxFramesPerSecond: 100,
    firstFrameTimeoutMs: 10_000,
    notifyFrom: "local",
    wampRealm: "gatecast",
  });
});

/** The security settings, checked in config_security_test.ts. */
const SECURITY_UNSET = {
  auth: undefined,
  legacyAllow: undefined,
  allowedOrigins: undefined,
  trustedProxies: undefined,
  tls: undefined,
  maxConnections: undefined,
  maxConnectionsPerAddress: undefined,
  maxFramesPerSecond: undefined,
  firstFrameTimeoutMs: undefined,
  notifyFrom: undefined,
};

Deno.test("every top-level setting can be given, and $schema is allowed", () => {
  const settings = {
    host: "127.0.0.1",
    port: 0,
    reusePort: true,
    pollIntervalMs: 50,
    queryTimeoutMs: 300,
    pointsRefreshPolls: 1,
    maxFrameBytes: 1024,
    maxSubscriptionsPerConnection: 5,
    sendBufferSoftBytes: 2048,
    sendBufferHardBytes: 4096,
    slowClientGraceMs: 500,
    keepAliveSeconds: 5,
    dbRetryMaxMs: 200,
    logLevel: "debug",
    wampRealm: "plant.floor",
  };
  const config = parseConfig({
    $schema: "./gatecast.schema.json",
    ...settings,
    maxConnections: 100,
    databases: {},
    handles: { alarms: { sql: "SELECT id FROM alarm", key: ["id"] } },
    auth: NO_AUTH,
  }, noEnv);
  assert.deepEqual({ ...config, databases: undefined, handles: undefined, ...SECURITY_UNSET }, {
    ...settings,
    databases: undefined,
    handles: undefined,
    ...SECURITY_UNSET,
  });
  assert.deepEqual(Object.keys(config.handles), ["alarms"]);
});

Deno.test("handles default to none; a null section or a bad handle is refused naming handles.<name>.<field>", () => {
  assert.deepEqual(parseConfig({ auth: NO_AUTH, databases: {} }, noEnv).handles, {});
  assert.throws(
    () => parseConfig({ auth: NO_AUTH, databases: {}, handles: null }, noEnv),
    configError("handles", "handles: expected an object, got null"),
  );
  assert.throws(
    () =>
      parseConfig({
        ...withPlant1({}) as object,
        handles: { alarms: { sql: "SELECT id FROM alarm", key: ["id"], databases: ["plant2"] } },
      }, noEnv),
    configError(
      "handles.alarms.databases[0]",
      'handles.alarms.databases[0]: "plant2" is not a configured database; configured: plant1',
    ),
  );
});

Deno.test("dbRetryMaxMs is 0 (twice the interval) or at least pollIntervalMs", () => {
  assert.throws(
    () => parseConfig({ auth: NO_AUTH, databases: {}, pollIntervalMs: 1000, dbRetryMaxMs: 500 }, noEnv),
    configError(
      "dbRetryMaxMs",
      "dbRetryMaxMs: must be 0 (twice pollIntervalMs) or at least pollIntervalMs (1000)",
    ),
  );
  assert.deepEqual(
    parseConfig({ auth: NO_AUTH, databases: {}, pollIntervalMs: 1000, dbRetryMaxMs: 1000 }, noEnv)
      .dbRetryMaxMs,
    1000,
  );
});

Deno.test("a MySQL database defaults to host 127.0.0.1, port 3306, no password and 4 connections", () => {
  const config = parseConfig({ auth: NO_AUTH, databases: { plant1: { user: "u", database: "d" } } }, noEnv);
  assert.deepEqual(config.databases.plant1, {
    driver: "mysql",
    host: "127.0.0.1",
    port: 3306,
    user: "u",
    password: "",
    database: "d",
    connectionLimit: 4,
  });
});

Deno.test("a database given as a mysql:// URL is split into settings, percent-decoded", () => {
  const config = parseConfig({
    auth: NO_AUTH,
    databases: { plant1: { url: "mysql://gate%40cast:p%40ss@db.example:3307/iot" } },
  }, noEnv);
  assert.deepEqual(config.databases.plant1, {
    driver: "mysql",
    host: "db.example",
    port: 3307,
    user: "gate@cast",
    password: "p@ss",
    database: "iot",
    connectionLimit: 4,
  });
  const noPort = parseConfig(
    { auth: NO_AUTH, databases: { plant1: { url: "mysql://u@db/iot", connectionLimit: 2 } } },
    noEnv,
  );
  assert.deepEqual(noPort.databases.plant1, {
    driver: "mysql",
    host: "db",
    port: 3306,
    user: "u",
    password: "",
    database: "iot",
    connectionLimit: 2,
  });
});

Deno.test("passwordEnv reads the password from the named environment variable", () => {
  const env: EnvLookup = (name) => name === "PLANT1_DB_PASSWORD" ? "s3cret" : undefined;
  const config = parseConfig(withPlant1({ password: undefined, passwordEnv: "PLANT1_DB_PASSWORD" }), env);
  assert.equal((config.databases.plant1 as { password: string }).password, "s3cret");
});

Deno.test("passwordEnv overrides the password of a URL", () => {
  const env: EnvLookup = () => "from-env";
  const config = parseConfig(
    { auth: NO_AUTH, databases: { plant1: { url: "mysql://u:inurl@db/iot", passwordEnv: "PW" } } },
    env,
  );
  assert.equal((config.databases.plant1 as { password: string }).password, "from-env");
});

Deno.test("a SQLite database takes a path only", () => {
  const config = parseConfig(
    { auth: NO_AUTH, databases: { demo: { driver: "sqlite", path: ":memory:" } } },
    noEnv,
  );
  assert.deepEqual(config.databases.demo, { driver: "sqlite", path: ":memory:" });
});

Deno.test("a database code of '__proto__' or 'constructor' is an ordinary own key", () => {
  const config = parseConfig(
    JSON.parse(
      '{"auth":{"mode":"none"},"databases":{"__proto__":{"user":"u","database":"a"},"constructor":{"user":"u","database":"b"}}}',
    ),
    noEnv,
  );
  assert.deepEqual(Object.keys(config.databases), ["__proto__", "constructor"]);
  assert.ok(Object.hasOwn(config.databases, "__proto__"));
  assert.equal((config.databases["constructor"] as { database: string }).database, "b");
});

Deno.test('a port of "abc" is rejected naming databases.plant1.port and the accepted range', () => {
  assert.throws(
    () => parseConfig(withPlant1({ port: "abc" }), noEnv),
    configError("databases.plant1.port", 'databases.plant1.port: expected an integer 1-65535, got "abc"'),
  );
  assert.throws(
    () => parseConfig(withPlant1({ port: 0 }), noEnv),
    configError("databases.plant1.port", "databases.plant1.port: expected an integer 1-65535, got 0"),
  );
});

Deno.test("an unknown key at the top or in a database is rejected listing the accepted keys", () => {
  assert.throws(
    () => parseConfig({ databases: {}, pollIntervalMS: 100 }, noEnv),
    configError(
      "pollIntervalMS",
      "pollIntervalMS: unknown key; accepted keys are $schema, host, port, reusePort, pollIntervalMs, queryTimeoutMs, " +
        "pointsRefreshPolls, maxFrameBytes, maxSubscriptionsPerConnection, sendBufferSoftBytes, sendBufferHardBytes, slowClientGraceMs, keepAliveSeconds, dbRetryMaxMs, logLevel, databases, " +
        "handles, auth, legacy, allowedOrigins, trustedProxies, tls, maxConnections, maxConnectionsPerAddress, " +
        "maxFramesPerSecond, firstFrameTimeoutMs, notifyFrom, wampRealm, cluster",
    ),
  );
  assert.throws(
    () => parseConfig(withPlant1({ prot: 1 }), noEnv),
    configError(
      "databases.plant1.prot",
      "databases.plant1.prot: unknown key; accepted keys are driver, url, host, port, user, password, " +
        "passwordEnv, database, connectionLimit, binlog",
    ),
  );
  assert.throws(
    () =>
      parseConfig(
        { auth: NO_AUTH, databases: { demo: { driver: "sqlite", path: "x.db", host: "h" } } },
        noEnv,
      ),
    configError("databases.demo.host", "databases.demo.host: unknown key; accepted keys are driver, path"),
  );
});

Deno.test("a config that is not an object, or has no databases, is rejected", () => {
  assert.throws(
    () => parseConfig([], noEnv),
    configError("(config)", "(config): expected an object, got an array"),
  );
  assert.throws(
    () => parseConfig(null, noEnv),
    configError("(config)", "(config): expected an object, got null"),
  );
  assert.throws(
    () => parseConfig({}, noEnv),
    configError("databases", "databases: is required: an object of database code to settings"),
  );
  assert.throws(
    () => parseConfig({ databases: [] }, noEnv),
    configError("databases", "databases: expected an object, got an array"),
  );
  assert.throws(
    () => parseConfig({ auth: NO_AUTH, databases: { plant1: "mysql://x" } }, noEnv),
    configError("databases.plant1", 'databases.plant1: expected an object, got "mysql://x"'),
  );
});

Deno.test("a database code outside [A-Za-z0-9_-]{1,64} is rejected", () => {
  assert.throws(
    () => parseConfig({ databases: { "plant 1": PLANT1 } }, noEnv),
    configError("databases.plant 1", "databases.plant 1: a database code must match [A-Za-z0-9_-]{1,64}"),
  );
  const long = "p".repeat(65);
  assert.throws(
    () => parseConfig({ databases: { [long]: PLANT1 } }, noEnv),
    configError(`databases.${long}`, `databases.${long}: a database code must match [A-Za-z0-9_-]{1,64}`),
  );
});

Deno.test("an unknown driver is rejected naming the two accepted", () => {
  assert.throws(
    () => parseConfig(withPlant1({ driver: "postgres" }), noEnv),
    configError(
      "databases.plant1.driver",
      'databases.plant1.driver: expected "mysql" or "sqlite", got "postgres"',
    ),
  );
});

Deno.test("a missing or empty user, database or path is rejected naming it", () => {
  assert.throws(
    () => parseConfig(withPlant1({ user: "" }), noEnv),
    configError("databases.plant1.user", 'databases.plant1.user: expected a non-empty string, got ""'),
  );
  assert.throws(
    () => parseConfig(withPlant1({ database: undefined }), noEnv),
    configError(
      "databases.plant1.database",
      "databases.plant1.database: expected a non-empty string, got undefined",
    ),
  );
  assert.throws(
    () => parseConfig({ auth: NO_AUTH, databases: { demo: { driver: "sqlite" } } }, noEnv),
    configError("databases.demo.path", "databases.demo.path: expected a non-empty string, got undefined"),
  );
});

Deno.test("a bad URL is rejected naming the url and never echoing it", () => {
  const cases: [string, string][] = [
    ["not a url", "expected a URL like mysql://user:pass@host:3306/iot"],
    ["postgres://u:hunter2@db/iot", 'expected the mysql: scheme, got "postgres:"'],
    ["mysql://db/iot", "expected a user and a database, as in mysql://user:pass@host:3306/iot"],
    ["mysql://u:hunter2@db/", "expected a user and a database, as in mysql://user:pass@host:3306/iot"],
  ];
  for (const [url, problem] of cases) {
    assert.throws(
      () => parseConfig({ auth: NO_AUTH, databases: { plant1: { url } } }, noEnv),
      configError("databases.plant1.url", `databases.plant1.url: ${problem}`),
    );
  }
});

Deno.test("a URL together with separate settings is rejected naming the separate setting", () => {
  assert.throws(
    () =>
      parseConfig(
        { auth: NO_AUTH, databases: { plant1: { url: "mysql://u:p@db/iot", host: "other" } } },
        noEnv,
      ),
    configError(
      "databases.plant1.host",
      "databases.plant1.host: give either url or the separate settings, not both",
    ),
  );
});

Deno.test("a passwordEnv variable that is not set is rejected naming passwordEnv and the variable", () => {
  assert.throws(
    () => parseConfig(withPlant1({ password: undefined, passwordEnv: "PLANT1_DB_PASSWORD" }), noEnv),
    configError(
      "databases.plant1.passwordEnv",
      "databases.plant1.passwordEnv: environment variable PLANT1_DB_PASSWORD is not set",
    ),
  );
});

Deno.test("an environment that cannot be read asks for --allow-env with the variable's name", () => {
  const denied: EnvLookup = () => {
    throw new Deno.errors.NotCapable("env access");
  };
  assert.throws(
    () => parseConfig(withPlant1({ password: undefined, passwordEnv: "PW" }), denied),
    configError(
      "databases.plant1.passwordEnv",
      "databases.plant1.passwordEnv: cannot read environment variable PW: run with --allow-env=PW",
    ),
  );
});

Deno.test("password and passwordEnv together are rejected", () => {
  assert.throws(
    () => parseConfig(withPlant1({ passwordEnv: "PW" }), () => "x"),
    configError(
      "databases.plant1.passwordEnv",
      "databases.plant1.passwordEnv: give either password or passwordEnv, not both",
    ),
  );
});

Deno.test("a password that is not a string is rejected without echoing its value", () => {
  assert.throws(
    () => parseConfig(withPlant1({ password: 1234 }), noEnv),
    configError("databases.plant1.password", "databases.plant1.password: expected a string, got number"),
  );
});

Deno.test("numbers out of range or fractional are rejected naming the key and the range", () => {
  const cases: [Record<string, unknown>, string, string][] = [
    [{ pollIntervalMs: 10 }, "pollIntervalMs", "expected an integer 50-3600000, got 10"],
    [{ pollIntervalMs: 1.5 }, "pollIntervalMs", "expected an integer 50-3600000, got 1.5"],
    [{ port: 65536 }, "port", "expected an integer 0-65535, got 65536"],
    [{ port: "4053" }, "port", 'expected an integer 0-65535, got "4053"'],
    [{ queryTimeoutMs: 5 }, "queryTimeoutMs", "expected an integer 10-600000, got 5"],
    [{ maxFrameBytes: 100 }, "maxFrameBytes", "expected an integer 256-16777216, got 100"],
    [
      { maxSubscriptionsPerConnection: 0 },
      "maxSubscriptionsPerConnection",
      "expected an integer 1-1000000, got 0",
    ],
  ];
  for (const [settings, path, problem] of cases) {
    assert.throws(
      () => parseConfig({ ...settings, databases: {} }, noEnv),
      configError(path, `${path}: ${problem}`),
    );
  }
  assert.throws(
    () => parseConfig(withPlant1({ connectionLimit: 0 }), noEnv),
    configError(
      "databases.plant1.connectionLimit",
      "databases.plant1.connectionLimit: expected an integer 1-100, got 0",
    ),
  );
});

Deno.test("a hard send buffer limit below the soft one is rejected", () => {
  assert.throws(
    () => parseConfig({ sendBufferSoftBytes: 4096, sendBufferHardBytes: 2048, databases: {} }, noEnv),
    configError("sendBufferHardBytes", "sendBufferHardBytes: must be at least sendBufferSoftBytes (4096)"),
  );
});

Deno.test("an empty host or an unknown log level is rejected", () => {
  assert.throws(
    () => parseConfig({ host: "", databases: {} }, noEnv),
    configError("host", 'host: expected a non-empty string, got ""'),
  );
  assert.throws(
    () => parseConfig({ logLevel: "loud", databases: {} }, noEnv),
    configError("logLevel", 'logLevel: expected one of debug, info, warn, error, got "loud"'),
  );
});

Deno.test('reusePort is false unless given; "yes" or 1 is refused asking for true or false', () => {
  assert.equal(parseConfig({ databases: {}, auth: NO_AUTH }, noEnv).reusePort, false);
  assert.equal(parseConfig({ databases: {}, auth: NO_AUTH, reusePort: true }, noEnv).reusePort, true);
  assert.throws(
    () => parseConfig({ reusePort: "yes", databases: {}, auth: NO_AUTH }, noEnv),
    configError("reusePort", 'reusePort: expected true or false, got "yes"'),
  );
  assert.throws(
    () => parseConfig({ reusePort: 1, databases: {}, auth: NO_AUTH }, noEnv),
    configError("reusePort", "reusePort: expected true or false, got 1"),
  );
});

Deno.test("no error message carries the password", () => {
  const attempts: unknown[] = [
    withPlant1({ password: "hunter2", port: "abc" }),
    withPlant1({ password: "hunter2", passwordEnv: "PW" }),
    { auth: NO_AUTH, databases: { plant1: { url: "mysql://u:hunter2@db/iot", password: "x" } } },
    { auth: NO_AUTH, databases: { plant1: { url: "mysql://u:hunter2@db:abc/iot" } } },
    { auth: NO_AUTH, databases: { plant1: { url: "mysql://u:hunter2@db/" } } },
  ];
  for (const raw of attempts) {
    assert.throws(() => parseConfig(raw, () => "env"), (error: Error) => !error.message.includes("hunter2"));
  }
});

Deno.test("parsePort accepts 0-65535 as numbers or digit strings, as --port gives them", () => {
  assert.equal(parsePort("--port", "4053"), 4053);
  assert.equal(parsePort("--port", "0"), 0);
  assert.equal(parsePort("port", 65535), 65535);
  assert.throws(
    () => parsePort("--port", "abc"),
    configError("--port", '--port: expected an integer 0-65535, got "abc"'),
  );
  assert.throws(
    () => parsePort("--port", "70000"),
    configError("--port", "--port: expected an integer 0-65535, got 70000"),
  );
  assert.throws(
    () => parsePort("--port", "-1"),
    configError("--port", '--port: expected an integer 0-65535, got "-1"'),
  );
});

Deno.test("parseLogLevel accepts debug, info, warn and error only", () => {
  for (const level of ["debug", "info", "warn", "error"]) {
    assert.equal(parseLogLevel("logLevel", level), level);
  }
  assert.throws(
    () => parseLogLevel("--log-level", "INFO"),
    configError("--log-level", '--log-level: expected one of debug, info, warn, error, got "INFO"'),
  );
});

Deno.test("databases.<code>.binlog takes a serverId 1-4294967295, on MySQL/MariaDB databases only", () => {
  const binlog = (value: unknown) => withPlant1({ binlog: value });
  const parsed = parseConfig(binlog({ serverId: 4_294_967_295 }), noEnv).databases.plant1;
  assert.deepEqual(parsed.driver === "mysql" && parsed.binlog, { serverId: 4_294_967_295 });
  const cases: [unknown, string, string][] = [
    [
      {},
      "databases.plant1.binlog.serverId",
      "is required: the replica server id gatecast follows the binlog with, 1-4294967295, distinct per node and database",
    ],
    [{ serverId: 0 }, "databases.plant1.binlog.serverId", "expected an integer 1-4294967295, got 0"],
    [
      { serverId: 4_294_967_296 },
      "databases.plant1.binlog.serverId",
      "expected an integer 1-4294967295, got 4294967296",
    ],
    [{ serverId: "7" }, "databases.plant1.binlog.serverId", 'expected an integer 1-4294967295, got "7"'],
    [
      { serverId: 7, startAt: "end" },
      "databases.plant1.binlog.startAt",
      "unknown key; accepted keys are serverId",
    ],
    [true, "databases.plant1.binlog", "expected an object, got true"],
  ];
  for (const [value, path, problem] of cases) {
    assert.throws(() => parseConfig(binlog(value), noEnv), configError(path, `${path}: ${problem}`));
  }
  assert.throws(
    () =>
      parseConfig(
        { auth: NO_AUTH, databases: { demo: { driver: "sqlite", path: "x.db", binlog: { serverId: 7 } } } },
        noEnv,
      ),
    configError(
      "databases.demo.binlog",
      "databases.demo.binlog: is for MySQL/MariaDB databases only; a sqlite database has no binlog",
    ),
  );
});
