/**
 * The configuration file and its validation. Every bad value is reported as one line naming
 * its JSON path and what is accepted (`databases.plant1.port: expected an integer 1-65535,
 * got "abc"`). Unknown keys are errors too, so that a typo never falls back to a default.
 */

import { isIP } from "node:net";
import { DB_CODE_PATTERN, describe } from "./names.ts";
import { parseTopicPatterns, type TopicPattern, TopicPatternError } from "./topic_pattern.ts";
import { type HandleSettings, parseHandles } from "./handle_settings.ts";
import {
  LOG_LEVELS,
  type LogLevel,
  type ScalarSetting,
  type ScalarSettings,
  SETTING_ENTRIES,
  SETTINGS,
} from "./settings.ts";

export { LOG_LEVELS, type LogLevel } from "./settings.ts";

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
  /** Follow the database's binlog to poll at once on a change (`lib/sources/binlog.ts`); absent: polling only. */
  readonly binlog?: BinlogSettings;
}

/** `databases.<code>.binlog`: gatecast follows the binlog as a replica with this server id. */
export interface BinlogSettings {
  /** Replica server id, 1 to 4294967295: distinct per gatecast node and database, unlike any real replica's. */
  readonly serverId: number;
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

/**
 * The whole validated configuration, defaults filled in. The scalar settings (`host`, `port`,
 * `pollIntervalMs`, the limits, `logLevel`, …) are typed and documented by their declarations in
 * {@link SETTINGS}; the sections below are parsed by hand.
 */
export interface Config extends ScalarSettings {
  /** Databases by code. */
  readonly databases: Readonly<Record<string, DatabaseSettings>>;
  /** Live topics over the operators' own SELECTs, by handle name; default none. */
  readonly handles: Readonly<Record<string, HandleSettings>>;
  /** Who may connect and read what; required (`{"mode":"none"}` turns it off). */
  readonly auth: AuthSettings;
  /** Topics legacy clients without a token may read (`legacy.allow`), default none. */
  readonly legacyAllow: readonly TopicPattern[];
  /** Browser origins allowed to connect; empty (the default) means same-origin only; `*` any. */
  readonly allowedOrigins: readonly string[];
  /** Proxy addresses or CIDR ranges whose `X-Forwarded-For` is believed; default none. */
  readonly trustedProxies: readonly string[];
  /** Certificate and key files for `wss://` and `https://`; plain text when absent. */
  readonly tls?: TlsSettings;
  /** Share one poll per group with other nodes through Redis; absent: a single node, nothing changes. */
  readonly cluster?: ClusterSettings;
}

/** How clients prove who they are. */
export interface AuthSettings {
  /** `none`: anyone reads everything; `token`: a JWT or an API key is required. */
  readonly mode: "none" | "token";
  /** Time an unauthenticated connection has to send an `auth` frame, default 10000 ms. */
  readonly timeoutMs: number;
  /** JSON Web Tokens, when accepted. */
  readonly jwt?: JwtSettings;
  /** Static API keys, by SHA-256. */
  readonly apiKeys: readonly ApiKeySettings[];
}

/** JWT verification settings; at least one of `secret`, `publicKey`, `jwksFile`. */
export interface JwtSettings {
  /** HS256 shared secret (from `secret` or `secretEnv`), at least 32 bytes. */
  readonly secret?: string;
  /** RS256 or ES256 public key, PEM (SPKI). */
  readonly publicKey?: string;
  /** A JWKS file (RS256/ES256 keys), read at start. */
  readonly jwksFile?: string;
  /** Claim holding the topic patterns, default `topics`. */
  readonly topicsClaim: string;
  /** Claim holding the patterns of the topics it may notify (`POST /notify`), default `notify`; optional in a token. */
  readonly notifyClaim: string;
  /** Required `iss`, when set. */
  readonly issuer?: string;
  /** Required `aud`, when set. */
  readonly audience?: string;
}

/** One static API key. */
export interface ApiKeySettings {
  /** Name for logs (the key itself is never logged). */
  readonly name: string;
  /** SHA-256 of the key, 64 lower-case hex digits. */
  readonly sha256: string;
  /** Topics the key may read. */
  readonly topics: readonly TopicPattern[];
  /** Topics whose groups the key may ask to be polled now (`POST /notify`); default none. */
  readonly notify: readonly TopicPattern[];
}

/** TLS certificate chain and private key files (PEM). */
export interface TlsSettings {
  /** Certificate chain file. */
  readonly certFile: string;
  /** Private key file. */
  readonly keyFile: string;
}

/** Cluster mode: several gatecast nodes share one poll per group through Redis (docs/operating.md). */
export interface ClusterSettings {
  /** `redis://host:port[/db]` or `rediss://…`; no password in it (passwordEnv). */
  readonly redis: string;
  /** Redis's password (ACL user optional via the URL's user part), read from `passwordEnv`; undefined: none. */
  readonly password?: string;
  /** How long a group's lease lives without renewal, ms (default 3000, 500..60000). A node killed is replaced within this plus two ticks. */
  readonly leaseMs: number;
  /** Prefix of every Redis key and channel (default "gatecast:"); nodes of one cluster share it. */
  readonly prefix: string;
  /** This node's name in Redis (default: `<hostname>-<pid>-<random>`, made by the cluster at start; undefined here). 1..64 chars of [A-Za-z0-9._-]. */
  readonly node?: string;
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

/** `$schema` names the schema for editors; gatecast ignores it. */
const TOP_KEYS = ["$schema", ...SETTING_ENTRIES.map(([key]) => key)];
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
  "binlog",
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
  const scalars = parseScalars(root);
  checkRelations(scalars);
  const databases = parseDatabases(root.databases, env);
  const security = parseSecurity(root, env);
  if (root.notifyFrom !== undefined && security.auth.mode === "token") {
    throw new ConfigError(
      "notifyFrom",
      'is used only when auth.mode is "none"; with tokens, a token\'s notify patterns decide who may notify',
    );
  }
  return {
    ...scalars,
    databases,
    // An explicit null is a bad value, not an absent one: no `??` here.
    handles: parseHandles(
      root.handles === undefined ? SETTINGS.handles.default : root.handles,
      Object.keys(databases),
    ),
    ...security,
    ...(root.cluster === undefined ? {} : { cluster: parseCluster(root.cluster, scalars, env) }),
  };
}

/** Every scalar setting of {@link SETTINGS}: the given value, checked, or the declared default. */
function parseScalars(root: Record<string, unknown>): ScalarSettings {
  const values: Record<string, unknown> = {};
  for (const [key, setting] of SETTING_ENTRIES) {
    if (setting.type === "section") continue;
    values[key] = root[key] === undefined ? setting.default : parseScalar(key, setting, root[key]);
  }
  return values as ScalarSettings;
}

function parseScalar(path: string, setting: ScalarSetting, value: unknown): unknown {
  switch (setting.type) {
    case "integer":
      return expectInt(path, value, setting.min, setting.max);
    case "string":
      return expectString(path, value);
    case "choice":
      return expectChoice(path, value, setting.values);
    case "boolean":
      return expectBoolean(path, value);
  }
}

/** The rules that tie one setting to another, which a table of single settings cannot say. */
function checkRelations(settings: ScalarSettings): void {
  if (settings.sendBufferHardBytes < settings.sendBufferSoftBytes) {
    throw new ConfigError(
      "sendBufferHardBytes",
      `must be at least sendBufferSoftBytes (${settings.sendBufferSoftBytes})`,
    );
  }
  if (settings.dbRetryMaxMs !== 0 && settings.dbRetryMaxMs < settings.pollIntervalMs) {
    throw new ConfigError(
      "dbRetryMaxMs",
      `must be 0 (twice pollIntervalMs) or at least pollIntervalMs (${settings.pollIntervalMs})`,
    );
  }
}

/** The sections of the security settings: authentication, seed clients, origins, proxies, TLS. */
function parseSecurity(
  root: Record<string, unknown>,
  env: EnvLookup,
): Pick<Config, "auth" | "legacyAllow" | "allowedOrigins" | "trustedProxies" | "tls"> {
  // An explicit null is a bad value, not an absent one: no `??` here.
  const given = (key: "legacy" | "allowedOrigins" | "trustedProxies") =>
    root[key] === undefined ? SETTINGS[key].default : root[key];
  return {
    auth: parseAuth(root.auth, env),
    legacyAllow: parseLegacyAllow(given("legacy")),
    allowedOrigins: expectStrings("allowedOrigins", given("allowedOrigins"))
      .map((origin, i) => parseOrigin(`allowedOrigins[${i}]`, origin)),
    trustedProxies: expectStrings("trustedProxies", given("trustedProxies"))
      .map((range, i) => parseRange(`trustedProxies[${i}]`, range)),
    tls: root.tls === undefined ? undefined : parseTls(root.tls),
  };
}

function parseLegacyAllow(raw: unknown): TopicPattern[] {
  const legacy = expectObject("legacy", raw, ["allow"]);
  return legacy.allow === undefined ? [] : patterns("legacy.allow", legacy.allow);
}

const AUTH_KEYS = ["mode", "timeoutMs", "jwt", "apiKeys"];
const JWT_KEYS = [
  "secret",
  "secretEnv",
  "publicKey",
  "jwksFile",
  "topicsClaim",
  "notifyClaim",
  "issuer",
  "audience",
];
const API_KEY_KEYS = ["name", "sha256", "topics", "notify"];

function parseAuth(raw: unknown, env: EnvLookup): AuthSettings {
  if (raw === undefined) {
    throw new ConfigError(
      "auth",
      'is required: {"mode":"token", "jwt":{...}, "apiKeys":[...]} to require tokens, or {"mode":"none"} to let anyone read every topic',
    );
  }
  const auth = expectObject("auth", raw, AUTH_KEYS);
  const timeoutMs = optionalInt(auth, "timeoutMs", "auth.timeoutMs", 100, 600_000, 10_000);
  if (auth.mode === "none") {
    for (const key of ["jwt", "apiKeys"]) {
      if (auth[key] !== undefined) {
        throw new ConfigError(`auth.${key}`, 'is not used when auth.mode is "none"');
      }
    }
    return { mode: "none", timeoutMs, apiKeys: [] };
  }
  if (auth.mode !== "token") {
    throw new ConfigError("auth.mode", `expected "token" or "none", got ${describe(auth.mode)}`);
  }
  const jwt = auth.jwt === undefined ? undefined : parseJwt(auth.jwt, env);
  const apiKeys = auth.apiKeys === undefined ? [] : parseApiKeys(auth.apiKeys);
  if (!jwt && apiKeys.length === 0) {
    throw new ConfigError("auth", 'mode "token" needs "jwt" settings or at least one entry in "apiKeys"');
  }
  return { mode: "token", timeoutMs, jwt, apiKeys };
}

function parseJwt(raw: unknown, env: EnvLookup): JwtSettings {
  const jwt = expectObject("auth.jwt", raw, JWT_KEYS);
  let secret: string | undefined;
  if (jwt.secret !== undefined && jwt.secretEnv !== undefined) {
    throw new ConfigError("auth.jwt.secretEnv", "give either secret or secretEnv, not both");
  }
  if (jwt.secretEnv !== undefined) {
    secret = readEnv("auth.jwt.secretEnv", expectString("auth.jwt.secretEnv", jwt.secretEnv), env);
  } else if (jwt.secret !== undefined) secret = expectString("auth.jwt.secret", jwt.secret);
  if (secret !== undefined && new TextEncoder().encode(secret).length < 32) {
    throw new ConfigError(
      jwt.secretEnv ? "auth.jwt.secretEnv" : "auth.jwt.secret",
      "an HS256 secret must be at least 32 bytes",
    );
  }
  const publicKey = jwt.publicKey === undefined
    ? undefined
    : expectString("auth.jwt.publicKey", jwt.publicKey);
  if (publicKey !== undefined && !publicKey.includes("-----BEGIN PUBLIC KEY-----")) {
    throw new ConfigError("auth.jwt.publicKey", "expected a PEM public key (-----BEGIN PUBLIC KEY-----)");
  }
  const jwksFile = jwt.jwksFile === undefined ? undefined : expectString("auth.jwt.jwksFile", jwt.jwksFile);
  if (secret === undefined && publicKey === undefined && jwksFile === undefined) {
    throw new ConfigError("auth.jwt", "needs a key: secret, secretEnv, publicKey or jwksFile");
  }
  const topicsClaim = optionalString(jwt, "topicsClaim", "auth.jwt.topicsClaim", "topics");
  const notifyClaim = optionalString(jwt, "notifyClaim", "auth.jwt.notifyClaim", "notify");
  if (notifyClaim === topicsClaim) {
    // One claim for both would let every reader trigger polls.
    throw new ConfigError("auth.jwt.notifyClaim", `must differ from topicsClaim ("${topicsClaim}")`);
  }
  return {
    secret,
    publicKey,
    jwksFile,
    topicsClaim,
    notifyClaim,
    issuer: jwt.issuer === undefined ? undefined : expectString("auth.jwt.issuer", jwt.issuer),
    audience: jwt.audience === undefined ? undefined : expectString("auth.jwt.audience", jwt.audience),
  };
}

function parseApiKeys(raw: unknown): ApiKeySettings[] {
  if (!Array.isArray(raw)) throw new ConfigError("auth.apiKeys", `expected an array, got ${describe(raw)}`);
  return raw.map((item, i) => {
    const path = `auth.apiKeys[${i}]`;
    const key = expectObject(path, item, API_KEY_KEYS);
    const sha256 = expectString(`${path}.sha256`, key.sha256);
    if (!/^[0-9a-f]{64}$/.test(sha256)) {
      throw new ConfigError(
        `${path}.sha256`,
        "expected the key's SHA-256 as 64 lower-case hex digits (printf %s KEY | sha256sum)",
      );
    }
    return {
      name: expectString(`${path}.name`, key.name),
      sha256,
      topics: patterns(`${path}.topics`, key.topics),
      notify: key.notify === undefined ? [] : patterns(`${path}.notify`, key.notify),
    };
  });
}

function parseTls(raw: unknown): TlsSettings {
  const tls = expectObject("tls", raw, ["certFile", "keyFile"]);
  return {
    certFile: expectString("tls.certFile", tls.certFile),
    keyFile: expectString("tls.keyFile", tls.keyFile),
  };
}

function patterns(path: string, value: unknown): TopicPattern[] {
  try {
    return parseTopicPatterns(value);
  } catch (error) {
    if (error instanceof TopicPatternError) {
      const at = /^\[(\d+)\]: (.*)$/s.exec(error.message);
      throw at ? new ConfigError(`${path}[${at[1]}]`, at[2]) : new ConfigError(path, error.message);
    }
    throw error;
  }
}

function expectStrings(path: string, value: unknown): string[] {
  if (!Array.isArray(value)) {
    throw new ConfigError(path, `expected an array of strings, got ${describe(value)}`);
  }
  return value.map((item, i) => expectString(`${path}[${i}]`, item));
}

function parseOrigin(path: string, value: string): string {
  if (value === "*") return value;
  let url: URL | undefined;
  try {
    url = new URL(value);
  } catch { /* reported below */ }
  if (!url || url.origin === "null" || url.origin !== value.replace(/\/$/, "")) {
    throw new ConfigError(
      path,
      `expected an origin like "https://dash.example.com" or "*", got ${describe(value)}`,
    );
  }
  return url.origin;
}

function parseRange(path: string, value: string): string {
  const [address, bits, extra] = value.split("/");
  const family = isIP(address);
  const max = family === 4 ? 32 : 128;
  if (
    family === 0 || extra !== undefined ||
    (bits !== undefined && !(/^[0-9]{1,3}$/.test(bits) && Number(bits) <= max))
  ) {
    throw new ConfigError(
      path,
      `expected an IP address or CIDR range like "10.0.0.0/8", got ${describe(value)}`,
    );
  }
  return value;
}

/** Validates a log level name. @throws {ConfigError} */
export function parseLogLevel(path: string, value: unknown): LogLevel {
  return expectChoice(path, value, LOG_LEVELS);
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
    if ((raw as Record<string, unknown>).binlog !== undefined) {
      throw new ConfigError(
        `${path}.binlog`,
        "is for MySQL/MariaDB databases only; a sqlite database has no binlog",
      );
    }
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
    ...(db.binlog === undefined ? {} : { binlog: parseBinlog(`${path}.binlog`, db.binlog) }),
  };
}

function parseBinlog(path: string, raw: unknown): BinlogSettings {
  const binlog = expectObject(path, raw, ["serverId"]);
  if (binlog.serverId === undefined) {
    throw new ConfigError(
      `${path}.serverId`,
      "is required: the replica server id gatecast follows the binlog with, 1-4294967295, distinct per node and database",
    );
  }
  return { serverId: expectInt(`${path}.serverId`, binlog.serverId, 1, 4_294_967_295) };
}

const CLUSTER_KEYS = ["redis", "passwordEnv", "leaseMs", "prefix", "node"];
/** A node's name in Redis: it appears in keys and logs, so no spaces or separators of its own. */
const NODE_NAME_PATTERN = /^[A-Za-z0-9._-]{1,64}$/;

function parseCluster(raw: unknown, scalars: ScalarSettings, env: EnvLookup): ClusterSettings {
  const cluster = expectObject("cluster", raw, CLUSTER_KEYS);
  if (cluster.redis === undefined) {
    throw new ConfigError(
      "cluster.redis",
      "is required: the Redis server's URL, like redis://127.0.0.1:6379",
    );
  }
  const redis = parseRedisUrl("cluster.redis", cluster.redis);
  const leaseMs = optionalInt(cluster, "leaseMs", "cluster.leaseMs", 500, 60_000, 3000);
  if (leaseMs <= scalars.pollIntervalMs) {
    // A lease that can lapse between two ticks would change hands every tick (flap).
    throw new ConfigError(
      "cluster.leaseMs",
      `must be greater than pollIntervalMs (${scalars.pollIntervalMs}), got ${leaseMs}`,
    );
  }
  const prefix = optionalString(cluster, "prefix", "cluster.prefix", "gatecast:");
  if (prefix.length > 64 || /\s/.test(prefix)) {
    throw new ConfigError(
      "cluster.prefix",
      `expected 1-64 characters without whitespace, got ${describe(prefix)}`,
    );
  }
  let node: string | undefined;
  if (cluster.node !== undefined) {
    node = expectString("cluster.node", cluster.node);
    if (!NODE_NAME_PATTERN.test(node)) {
      throw new ConfigError(
        "cluster.node",
        `expected 1-64 characters of A-Za-z0-9._-, got ${describe(node)}`,
      );
    }
  }
  return {
    redis,
    ...(cluster.passwordEnv === undefined ? {} : {
      password: readEnv(
        "cluster.passwordEnv",
        expectString("cluster.passwordEnv", cluster.passwordEnv),
        env,
      ),
    }),
    leaseMs,
    prefix,
    ...(node === undefined ? {} : { node }),
  };
}

/** `redis://[user@]host[:port][/db]` or `rediss://…`, returned as given. The text is never echoed: it may hold a password. */
function parseRedisUrl(path: string, raw: unknown): string {
  // Echoes only an empty string or a non-string, never a URL.
  const text = expectString(path, raw);
  let url: URL | undefined;
  try {
    url = new URL(text);
  } catch { /* reported below */ }
  if (url && url.protocol !== "redis:" && url.protocol !== "rediss:") {
    throw new ConfigError(path, `expected the redis: or rediss: scheme, got "${url.protocol}"`);
  }
  if (!url || !url.hostname) {
    throw new ConfigError(path, "expected a URL like redis://127.0.0.1:6379 or rediss://host:6380/0");
  }
  if (url.password !== "") {
    throw new ConfigError(path, "put the password in cluster.passwordEnv, not in the URL");
  }
  if (!/^(\/[0-9]*)?$/.test(url.pathname) || url.search !== "" || url.hash !== "") {
    throw new ConfigError(
      path,
      "expected nothing after the host but a database number, as in redis://127.0.0.1:6379/0",
    );
  }
  return text;
}

function passwordFromEnv(path: string, db: Record<string, unknown>, env: EnvLookup): string {
  if (db.password !== undefined) {
    throw new ConfigError(`${path}.passwordEnv`, "give either password or passwordEnv, not both");
  }
  return readEnv(`${path}.passwordEnv`, expectString(`${path}.passwordEnv`, db.passwordEnv), env);
}

function readEnv(path: string, name: string, env: EnvLookup): string {
  let value: string | undefined;
  try {
    value = env(name);
  } catch {
    throw new ConfigError(path, `cannot read environment variable ${name}: run with --allow-env=${name}`);
  }
  if (value === undefined) {
    throw new ConfigError(path, `environment variable ${name} is not set`);
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

/**
 * The object at `path`; with `keys`, one holding no other key. Shared with the section parsers
 * under lib/config/, so that every section words its errors alike.
 *
 * @throws {ConfigError} for a non-object or an unknown key, listing the accepted ones.
 */
export function expectObject(path: string, value: unknown, keys?: string[]): Record<string, unknown> {
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

/** The non-empty string at `path`. @throws {ConfigError} */
export function expectString(path: string, value: unknown): string {
  if (typeof value !== "string" || value.length === 0) {
    throw new ConfigError(path, `expected a non-empty string, got ${describe(value)}`);
  }
  return value;
}

function expectChoice<V extends string>(path: string, value: unknown, values: readonly V[]): V {
  if (typeof value === "string" && (values as readonly string[]).includes(value)) return value as V;
  throw new ConfigError(path, `expected one of ${values.join(", ")}, got ${describe(value)}`);
}

function expectBoolean(path: string, value: unknown): boolean {
  if (typeof value !== "boolean") {
    throw new ConfigError(path, `expected true or false, got ${describe(value)}`);
  }
  return value;
}

/** The integer from `min` to `max` at `path`. @throws {ConfigError} */
export function expectInt(path: string, value: unknown, min: number, max: number): number {
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
