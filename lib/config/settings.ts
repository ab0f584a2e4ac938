/**
 * Every top-level setting of the configuration file, declared once: its key, what it accepts, its
 * default and one line of documentation. `lib/config/config.ts` parses the scalar settings from this table
 * and derives their types from it; `deno task settings` (tools/settings_docs.ts) writes
 * `config.schema.json` and README's settings table from it, and tests/settings_test.ts holds them to it.
 */

/** Log levels, least to most severe. */
export const LOG_LEVELS = ["debug", "info", "warn", "error"] as const;
/** One of {@link LOG_LEVELS}. */
export type LogLevel = typeof LOG_LEVELS[number];

/** Who may `POST /notify` without tokens: `local` (loopback and trusted proxies) or `any` address. */
export const NOTIFY_FROM = ["local", "any"] as const;

/** A whole number from `min` to `max`. */
export interface IntegerSetting {
  /** Always `integer`. */
  readonly type: "integer";
  /** Least value accepted. */
  readonly min: number;
  /** Greatest value accepted. */
  readonly max: number;
  /** The value when the key is absent. */
  readonly default: number;
  /** One line for operators: the schema's description and README's meaning. */
  readonly doc: string;
}

/** A non-empty string. */
export interface StringSetting {
  /** Always `string`. */
  readonly type: "string";
  /** The value when the key is absent. */
  readonly default: string;
  /** One line for operators. */
  readonly doc: string;
}

/** One of a fixed list of strings. */
export interface ChoiceSetting {
  /** Always `choice`. */
  readonly type: "choice";
  /** The strings accepted. */
  readonly values: readonly string[];
  /** The value when the key is absent. */
  readonly default: string;
  /** One line for operators. */
  readonly doc: string;
}

/** `true` or `false`. */
export interface BooleanSetting {
  /** Always `boolean`. */
  readonly type: "boolean";
  /** The value when the key is absent. */
  readonly default: boolean;
  /** One line for operators. */
  readonly doc: string;
}

/**
 * An object or array with its own structure: `lib/config/config.ts` parses it by hand and
 * tools/settings_docs.ts holds its JSON Schema; the tests check both against each other.
 */
export interface SectionSetting {
  /** Always `section`. */
  readonly type: "section";
  /** Its shape in one line, for README's "accepted" column. */
  readonly accepts: string;
  /** The file must give it. */
  readonly required?: true;
  /** The JSON value used when the key is absent; none: the feature is off. */
  readonly default?: unknown;
  /** One line for operators. */
  readonly doc: string;
}

/** A setting parsed from its declaration alone. */
export type ScalarSetting = IntegerSetting | StringSetting | ChoiceSetting | BooleanSetting;
/** Any top-level setting. */
export type Setting = ScalarSetting | SectionSetting;

/**
 * The top-level settings, in the order the error for an unknown key lists them (after `$schema`,
 * which the file may carry for editors and gatecast ignores).
 */
export const SETTINGS = {
  host: { type: "string", default: "0.0.0.0", doc: "Address to listen on (`--host` overrides)." },
  port: {
    type: "integer",
    min: 0,
    max: 65535,
    default: 4053,
    doc: "Port to listen on; 0 picks a free one (`--port` overrides).",
  },
  reusePort: {
    type: "boolean",
    default: false,
    doc: "Lets several gatecast processes on one machine listen on the same host and port (Linux " +
      "SO_REUSEPORT): the kernel spreads new connections among them. Run them as cluster nodes (`cluster`), " +
      "so that they share polls. Needs a restart to change.",
  },
  pollIntervalMs: {
    type: "integer",
    min: 50,
    max: 3_600_000,
    default: 1000,
    doc: "The shared poll interval, in milliseconds.",
  },
  queryTimeoutMs: {
    type: "integer",
    min: 10,
    max: 600_000,
    default: 5000,
    doc: "Longest a poll query may run, in milliseconds; enforced by the database server too.",
  },
  pointsRefreshPolls: {
    type: "integer",
    min: 1,
    max: 1000,
    default: 10,
    doc: "Each unit's point metadata (`archive_device`) is re-read at least every this many polls (values: " +
      "every poll), so a changed point reaches subscribers within that many polls (one more for an address " +
      "new to the database).",
  },
  maxFrameBytes: {
    type: "integer",
    min: 256,
    max: 16 << 20,
    default: 65536,
    doc: "Largest client frame accepted, in bytes; a larger one closes the connection with 1009.",
  },
  maxSubscriptionsPerConnection: {
    type: "integer",
    min: 1,
    max: 1_000_000,
    default: 1000,
    doc: "Topics one connection may hold; more get `TOO_MANY_SUBSCRIPTIONS`.",
  },
  sendBufferSoftBytes: {
    type: "integer",
    min: 1024,
    max: 2 ** 30,
    default: 1 << 20,
    doc: "Send buffer over which a client gets no intermediate updates (a fresh snapshot once drained).",
  },
  sendBufferHardBytes: {
    type: "integer",
    min: 1024,
    max: 2 ** 31,
    default: 16 << 20,
    doc: "Send buffer over which a client is closed with 4008; at least `sendBufferSoftBytes`.",
  },
  slowClientGraceMs: {
    type: "integer",
    min: 100,
    max: 3_600_000,
    default: 10_000,
    doc:
      "How long a client may stay over `sendBufferSoftBytes` before it is closed with 4008, in milliseconds.",
  },
  keepAliveSeconds: {
    type: "integer",
    min: 1,
    max: 3600,
    default: 30,
    doc:
      "Keep-alive period: a ping after half of it without traffic, closed with 1001 without a pong by its end.",
  },
  dbRetryMaxMs: {
    type: "integer",
    min: 0,
    max: 3_600_000,
    default: 0,
    doc: "Longest retry delay of a failing database (delays double from one poll interval): 0 for twice " +
      "`pollIntervalMs`, else at least `pollIntervalMs`.",
  },
  logLevel: {
    type: "choice",
    values: LOG_LEVELS,
    default: "info",
    doc: "Least severe log level written (`--log-level` overrides).",
  },
  databases: {
    type: "section",
    accepts: '`{"<code>": {…}}`: MySQL settings, a `url`, or `{"driver":"sqlite","path":…}`',
    required: true,
    doc: "Databases by code (`[A-Za-z0-9_-]{1,64}`); a topic `<db>/<handle>/<unit_id>` names one of them.",
  },
  handles: {
    type: "section",
    accepts: '`{"<name>": {"sql":…,"key":[…],"unit":…,…}}`: one SELECT each',
    default: {},
    doc: "Live topics over your own SELECTs: `<db>/<name>/<unit>`, or `<db>/<name>` without `unit`; " +
      "`real` is reserved.",
  },
  auth: {
    type: "section",
    accepts: '`{"mode":"none"}`, or `{"mode":"token","jwt":{…},"apiKeys":[…],"timeoutMs":…}`',
    required: true,
    doc: 'Who may connect and read what (docs/security.md); `{"mode":"none"}` turns authentication off.',
  },
  legacy: {
    type: "section",
    accepts: '`{"allow":[…]}`: topic patterns',
    default: { allow: [] },
    doc: "Seed clients: `allow` lists the topics those without a token may read when `auth.mode` is `token`.",
  },
  allowedOrigins: {
    type: "section",
    accepts: 'origins like `"https://dash.example.com"`, or `"*"`',
    default: [],
    doc: 'Browser origins allowed to connect; empty: same origin only; `"*"`: any.',
  },
  trustedProxies: {
    type: "section",
    accepts: 'IP addresses or CIDR ranges like `"10.0.0.0/8"`',
    default: [],
    doc: "Proxy addresses or CIDR ranges whose `X-Forwarded-For` is believed.",
  },
  tls: {
    type: "section",
    accepts: '`{"certFile":…,"keyFile":…}`: PEM files',
    doc: "Serve `https://` and `wss://` (`--cert`/`--key` override); plain text when absent.",
  },
  maxConnections: {
    type: "integer",
    min: 1,
    max: 1_000_000,
    default: 10_000,
    doc:
      "Open connections in total, lowered to stay below the open-file limit; more are refused with HTTP 503.",
  },
  maxConnectionsPerAddress: {
    type: "integer",
    min: 1,
    max: 1_000_000,
    default: 100,
    doc: "Open connections from one client address; more are refused with HTTP 429.",
  },
  maxFramesPerSecond: {
    type: "integer",
    min: 1,
    max: 1_000_000,
    default: 100,
    doc: "Frames a client may send per second (and in a burst); more get `RATE_LIMITED`, then close 4029.",
  },
  firstFrameTimeoutMs: {
    type: "integer",
    min: 100,
    max: 600_000,
    default: 10_000,
    doc: "Time a new connection has to send its first frame, in milliseconds; then it is closed with 4000.",
  },
  notifyFrom: {
    type: "choice",
    values: NOTIFY_FROM,
    default: "local",
    doc: 'Who may `POST /notify` while `auth.mode` is `"none"`: `local` (loopback and `trustedProxies`) or ' +
      "`any`; with tokens, a token's `notify` patterns decide.",
  },
  wampRealm: {
    type: "string",
    default: "gatecast",
    doc: "The WAMP realm served on `/ws` (subprotocol `wamp.2.json`); a HELLO for another realm gets ABORT " +
      "`wamp.error.no_such_realm`.",
  },
  cluster: {
    type: "section",
    accepts: '`{"redis":"redis://…","passwordEnv":…,"leaseMs":…,"prefix":…,"node":…}`',
    doc: "Cluster mode: nodes share one poll per group through Redis (docs/operating.md); a single node " +
      "when absent. Needs a restart to change.",
  },
} as const satisfies Readonly<Record<string, Setting>>;

type Settings = typeof SETTINGS;

/** The key of a setting parsed from the table alone. */
export type ScalarKey = {
  [K in keyof Settings]: Settings[K] extends SectionSetting ? never : K;
}[keyof Settings];

/** The key of a setting parsed by hand. */
export type SectionKey = Exclude<keyof Settings, ScalarKey>;

type ValueOf<S> = S extends { type: "integer" } ? number
  : S extends { type: "string" } ? string
  : S extends { type: "boolean" } ? boolean
  : S extends { values: readonly (infer V)[] } ? V
  : never;

/** The scalar settings' values, typed from their declarations (`logLevel` is a {@link LogLevel}). */
export type ScalarSettings = { readonly [K in ScalarKey]: ValueOf<Settings[K]> };

/** The table as entries, in its order, for code that walks every setting. */
export const SETTING_ENTRIES: readonly (readonly [keyof Settings, Setting])[] = Object.entries(
  SETTINGS,
) as [keyof Settings, Setting][];
