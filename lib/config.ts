/**
 * The configuration file and its validation. Every bad value is reported as one line naming
 * its JSON path and what is accepted (`databases.plant1.port: expected an integer 1-65535,
 * got "abc"`). Unknown keys are errors too, so that a typo never falls back to a default.
 */

import { DB_CODE_PATTERN, describe } from "./topic.ts";

/** Log levels, least to most severe. */
export const LOG_LEVELS = ["debug", "info", "warn", "error"] as const;
/** One of {@link LOG_LEVELS}. */
export type LogLevel = typeof LOG_LEVELS[number];

/** A MySQL/MariaDB database reached over the network. */
export interface MysqlSettings {
  /** Always `mysql`. */
  readonly driver: "mysql";
  /** Host name or address. */
  readonly host: string;
  /** TCP port, default 3306. */
  readonly port: number;
  /** Login user. */
  readonly user: string;
  /** Password, from the file, the URL or `passwordEnv`. */
  readonly password: string;
  /** Schema holding `archive_device` and `device_data_real`. */
  readonly database: string;
  /** Connections in the pool, default 4. */
  readonly connectionLimit: number;
}

/** An embedded SQLite database file (`:memory:` for the demo). */
export interface SqliteSettings {
  /** Always `sqlite`. */
  readonly driver: "sqlite";
  /** File path. */
  readonly path: string;
}

/** One configured database. */
export type DatabaseSettings = MysqlSettings | SqliteSettings;

/** The whole validated configuration, defaults filled in. */
export interface Config {
  /** Address to listen on, default `0.0.0.0`. */
  readonly host: string;
  /** Port to listen on, default 4053 (0 picks a free one). */
  readonly port: number;
  /** Poll interval, default 1000 ms, 50 to 3,600,000. */
  readonly pollIntervalMs: number;
  /** Longest a poll query may run, enforced by the database server too; default 5000 ms. */
  readonly queryTimeoutMs: number;
  /** Largest client frame accepted, default 65536 bytes; larger closes with 1009. */
  readonly maxFrameBytes: number;
  /** Subscriptions one connection may hold, default 1000. */
  readonly maxSubscriptionsPerConnection: number;
  /** Send buffer over which a client gets no intermediate updates, default 1 MiB. */
  readonly sendBufferSoftBytes: number;
  /** Send buffer over which a client is dropped, default 16 MiB. */
  readonly sendBufferHardBytes: number;
  /** How long a client may stay over the soft send-buffer limit before it is dropped, default 10,000 ms. */
  readonly slowClientGraceMs: number;
  /** Keep-alive period: a ping after half of it without traffic, closed without a pong by its end; default 30 s. */
  readonly keepAliveSeconds: number;
  /** Most open WebSocket connections; 0 (default) derives it from the open-file limit. */
  readonly maxConnections: number;
  /** Retry delay cap for a failing database, doubling from one poll interval; 0 (default): 2 × `pollIntervalMs`. */
  readonly dbRetryMaxMs: number;
  /** Least severe log level written, default `info`. */
  readonly logLevel: LogLevel;
  /** Databases by code. */
  readonly databases: Readonly<Record<string, DatabaseSettings>>;
}

/** A bad configuration value; `message` is the one line printed before exiting with 2. */
export class ConfigError extends Error {
  override name = "ConfigError";
  /**
   * @param path the JSON path (or flag) at fault, e.g. `databases.plant1.port`
   * @param problem what is accepted and what was found
   */
  constructor(readonly path: string, problem: string) {
    super(`${path}: ${problem}`);
  }
}

/** Where `passwordEnv` looks names up; injected so that tests need no environment. */
export type EnvLookup = (name: string) => string | undefined;

const TOP_KEYS = [
  "$schema",
  "host",
  "port",
  "pollIntervalMs",
  "queryTimeoutMs",
  "maxFrameBytes",
  "maxSubscriptionsPerConnection",
  "sendBufferSoftBytes",
  "sendBufferHardBytes",
  "slowClientGraceMs",
  "keepAliveSeconds",
  "maxConnections",
  "dbRetryMaxMs",
  "logLevel",
  "databases",
];
const MYSQL_KEYS = [
  "driver",
  "url",
  "host",
  "port",
  "user",
  "password",
  "passwordEnv",
  "database",
  "connectionLimit",
];
const SQLITE_KEYS = ["driver", "path"];

/**
 * Validates a parsed configuration file and fills in defaults.
 *
 * @example
 * ```ts
 * const config = parseConfig(JSON.parse(text), (name) => Deno.env.get(name));
 * ```
 * @throws {ConfigError} naming the first bad value.
 */
export function parseConfig(raw: unknown, env: EnvLookup): Config {
  const root = expectObject("(config)", raw, TOP_KEYS);
  const pollIntervalMs = optionalInt(root, "pollIntervalMs", "pollIntervalMs", 50, 3_600_000, 1000);
  const sendBufferSoftBytes = optionalInt(
    root,
    "sendBufferSoftBytes",
    "sendBufferSoftBytes",
    1024,
    2 ** 30,
    1 << 20,
  );
  const sendBufferHardBytes = optionalInt(
    root,
    "sendBufferHardBytes",
    "sendBufferHardBytes",
    1024,
    2 ** 31,
    16 << 20,
  );
  if (sendBufferHardBytes < sendBufferSoftBytes) {
    throw new ConfigError(
      "sendBufferHardBytes",
      `must be at least sendBufferSoftBytes (${sendBufferSoftBytes})`,
    );
  }
  return {
    host: optionalString(root, "host", "host", "0.0.0.0"),
    port: optionalInt(root, "port", "port", 0, 65535, 4053),
    pollIntervalMs,
    queryTimeoutMs: optionalInt(root, "queryTimeoutMs", "queryTimeoutMs", 10, 600_000, 5000),
    maxFrameBytes: optionalInt(root, "maxFrameBytes", "maxFrameBytes", 256, 16 << 20, 65536),
    maxSubscriptionsPerConnection: optionalInt(
      root,
      "maxSubscriptionsPerConnection",
      "maxSubscriptionsPerConnection",
      1,
      1_000_000,
      1000,
    ),
    sendBufferSoftBytes,
    sendBufferHardBytes,
    ...parseReliability(root, pollIntervalMs),
    logLevel: parseLogLevel("logLevel", root.logLevel ?? "info"),
    databases: parseDatabases(root.databases, env),
  };
}

/** The keys of issue 5 (slow clients, keep-alive, connection cap, database retries). */
function parseReliability(
  root: Record<string, unknown>,
  pollIntervalMs: number,
): Pick<Config, "slowClientGraceMs" | "keepAliveSeconds" | "maxConnections" | "dbRetryMaxMs"> {
  const dbRetryMaxMs = optionalInt(root, "dbRetryMaxMs", "dbRetryMaxMs", 0, 3_600_000, 0);
  if (dbRetryMaxMs !== 0 && dbRetryMaxMs < pollIntervalMs) {
    throw new ConfigError(
      "dbRetryMaxMs",
      `must be 0 (twice pollIntervalMs) or at least pollIntervalMs (${pollIntervalMs})`,
    );
  }
  return {
    slowClientGraceMs: optionalInt(root, "slowClientGraceMs", "slowClientGraceMs", 100, 3_600_000, 10_000),
    keepAliveSeconds: optionalInt(root, "keepAliveSeconds", "keepAliveSeconds", 1, 3600, 30),
    maxConnections: optionalInt(root, "maxConnections", "maxConnections", 0, 10_000_000, 0),
    dbRetryMaxMs,
  };
}

/** Validates a log level name. @throws {ConfigError} */
export function parseLogLevel(path: string, value: unknown): LogLevel {
  if (typeof value === "string" && (LOG_LEVELS as readonly string[]).includes(value)) {
    return value as LogLevel;
  }
  throw new ConfigError(path, `expected one of ${LOG_LEVELS.join(", ")}, got ${describe(value)}`);
}

/** Validates a TCP port given as a flag or JSON value (0 picks a free port). @throws {ConfigError} */
export function parsePort(path: string, value: unknown): number {
  const n = typeof value === "string" && /^[0-9]{1,5}$/.test(value) ? Number(value) : value;
  return expectInt(path, n, 0, 65535);
}

function parseDatabases(raw: unknown, env: EnvLookup): Record<string, DatabaseSettings> {
  if (raw === undefined) {
    throw new ConfigError("databases", "is required: an object of database code to settings");
  }
  const dbs = expectObject("databases", raw);
  const out: Record<string, DatabaseSettings> = {};
  for (const [code, value] of Object.entries(dbs)) {
    if (!DB_CODE_PATTERN.test(code)) {
      throw new ConfigError(`databases.${code}`, "a database code must match [A-Za-z0-9_-]{1,64}");
    }
    out[code] = parseDatabase(`databases.${code}`, value, env);
  }
  return out;
}

function parseDatabase(path: string, raw: unknown, env: EnvLookup): DatabaseSettings {
  const driver = (raw as Record<string, unknown> | null)?.driver ?? "mysql";
  if (driver === "sqlite") {
    const db = expectObject(path, raw, SQLITE_KEYS);
    return { driver, path: expectString(`${path}.path`, db.path) };
  }
  if (driver !== "mysql") {
    throw new ConfigError(`${path}.driver`, `expected "mysql" or "sqlite", got ${describe(driver)}`);
  }
  const db = expectObject(path, raw, MYSQL_KEYS);
  const fromUrl: Partial<ReturnType<typeof parseMysqlUrl>> = db.url === undefined
    ? {}
    : parseMysqlUrl(`${path}.url`, db.url);
  for (const key of ["host", "port", "user", "password", "database"] as const) {
    if (db.url !== undefined && db[key] !== undefined) {
      throw new ConfigError(`${path}.${key}`, "give either url or the separate settings, not both");
    }
  }
  let password = fromUrl.password ?? "";
  if (db.passwordEnv !== undefined) password = passwordFromEnv(path, db, env);
  else if (db.password !== undefined) {
    if (typeof db.password !== "string") {
      // Never echo the value: it may be a real password.
      throw new ConfigError(`${path}.password`, `expected a string, got ${typeof db.password}`);
    }
    password = db.password;
  }
  return {
    driver: "mysql",
    host: optionalString(db, "host", `${path}.host`, fromUrl.host ?? "127.0.0.1"),
    port: db.port === undefined ? fromUrl.port ?? 3306 : expectInt(`${path}.port`, db.port, 1, 65535),
    user: fromUrl.user ?? expectString(`${path}.user`, db.user),
    password,
    database: fromUrl.database ?? expectString(`${path}.database`, db.database),
    connectionLimit: optionalInt(db, "connectionLimit", `${path}.connectionLimit`, 1, 100, 4),
  };
}

function passwordFromEnv(path: string, db: Record<string, unknown>, env: EnvLookup): string {
  if (db.password !== undefined) {
    throw new ConfigError(`${path}.passwordEnv`, "give either password or passwordEnv, not both");
  }
  const name = expectString(`${path}.passwordEnv`, db.passwordEnv);
  let value: string | undefined;
  try {
    value = env(name);
  } catch {
    throw new ConfigError(
      `${path}.passwordEnv`,
      `cannot read environment variable ${name}: run with --allow-env=${name}`,
    );
  }
  if (value === undefined) {
    throw new ConfigError(`${path}.passwordEnv`, `environment variable ${name} is not set`);
  }
  return value;
}

function parseMysqlUrl(
  path: string,
  raw: unknown,
): { host: string; port: number; user: string; password: string; database: string } {
  const text = expectString(path, raw);
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new ConfigError(path, "expected a URL like mysql://user:pass@host:3306/iot");
  }
  if (url.protocol !== "mysql:") {
    throw new ConfigError(path, `expected the mysql: scheme, got "${url.protocol}"`);
  }
  const database = decodeURIComponent(url.pathname.replace(/^\//, ""));
  if (!url.username || !database) {
    throw new ConfigError(path, "expected a user and a database, as in mysql://user:pass@host:3306/iot");
  }
  return {
    host: url.hostname,
    port: url.port ? Number(url.port) : 3306,
    user: decodeURIComponent(url.username),
    password: decodeURIComponent(url.password),
    database,
  };
}

function expectObject(path: string, value: unknown, keys?: string[]): Record<string, unknown> {
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new ConfigError(path, `expected an object, got ${describe(value)}`);
  }
  if (keys) {
    for (const key of Object.keys(value)) {
      if (!keys.includes(key)) {
        const where = path === "(config)" ? key : `${path}.${key}`;
        throw new ConfigError(where, `unknown key; accepted keys are ${keys.join(", ")}`);
      }
    }
  }
  return value as Record<string, unknown>;
}

function expectString(path: string, value: unknown): string {
  if (typeof value !== "string" || value.length === 0) {
    throw new ConfigError(path, `expected a non-empty string, got ${describe(value)}`);
  }
  return value;
}

function expectInt(path: string, value: unknown, min: number, max: number): number {
  if (typeof value !== "number" || !Number.isInteger(value) || value < min || value > max) {
    throw new ConfigError(path, `expected an integer ${min}-${max}, got ${describe(value)}`);
  }
  return value;
}

function optionalString(obj: Record<string, unknown>, key: string, path: string, fallback: string): string {
  return obj[key] === undefined ? fallback : expectString(path, obj[key]);
}

function optionalInt(
  obj: Record<string, unknown>,
  key: string,
  path: string,
  min: number,
  max: number,
  fallback: number,
): number {
  return obj[key] === undefined ? fallback : expectInt(path, obj[key], min, max);
}
