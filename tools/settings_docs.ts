/**
 * Writes `config.schema.json` and README's settings table from the declarations in lib/config/settings.ts:
 * `deno task settings`. The scalar settings' schema and rows come from the table; each section's
 * structure (databases, auth, …) is written out here, next to nothing else, and tests hold it to
 * what lib/config/config.ts accepts. tests/settings_test.ts fails while either file differs from this output.
 */

import {
  type ScalarSetting,
  type SectionKey,
  type Setting,
  SETTING_ENTRIES,
} from "../lib/config/settings.ts";

/** The command that regenerates both files, as the tests tell it. */
export const REGENERATE = "deno task settings";
/** The line before README's generated table. */
export const TABLE_BEGIN =
  "<!-- settings table: generated from lib/config/settings.ts by `deno task settings`; edit it there -->";
/** The line after README's generated table. */
export const TABLE_END = "<!-- end of settings table -->";

type Json = Record<string, unknown>;

const TOPIC_PATTERNS = { $ref: "#/$defs/topicPatterns" };

/** Each section's structure; its description and default come from the table. */
const SECTION_SCHEMAS: { readonly [K in SectionKey]: Json } = {
  databases: {
    type: "object",
    propertyNames: { pattern: "^[A-Za-z0-9_-]{1,64}$" },
    additionalProperties: {
      oneOf: [
        { $ref: "#/$defs/mysqlSettings" },
        { $ref: "#/$defs/mysqlUrl" },
        { $ref: "#/$defs/sqlite" },
      ],
    },
  },
  handles: {
    type: "object",
    propertyNames: {
      pattern: "^[a-z][a-z0-9_]{0,31}$",
      not: { const: "real" },
      description: "A handle name; `real` is the built-in handle's.",
    },
    additionalProperties: { $ref: "#/$defs/handle" },
  },
  auth: {
    oneOf: [
      {
        type: "object",
        additionalProperties: false,
        required: ["mode"],
        properties: {
          mode: { const: "none", description: "Anyone who reaches the server reads every topic." },
          timeoutMs: { $ref: "#/$defs/authTimeoutMs" },
        },
      },
      {
        type: "object",
        additionalProperties: false,
        required: ["mode"],
        anyOf: [
          { required: ["jwt"] },
          { required: ["apiKeys"], properties: { apiKeys: { type: "array", minItems: 1 } } },
        ],
        properties: {
          mode: { const: "token", description: "A JWT or an API key is required." },
          timeoutMs: { $ref: "#/$defs/authTimeoutMs" },
          jwt: { $ref: "#/$defs/jwt" },
          apiKeys: { type: "array", items: { $ref: "#/$defs/apiKey" } },
        },
      },
    ],
  },
  legacy: {
    type: "object",
    additionalProperties: false,
    properties: {
      allow: { ...TOPIC_PATTERNS, description: "Topic patterns seed clients without a token may read." },
    },
  },
  allowedOrigins: {
    type: "array",
    items: { type: "string", anyOf: [{ const: "*" }, { pattern: "^https?://[^/]+$" }] },
  },
  trustedProxies: {
    type: "array",
    items: { type: "string", pattern: "^[0-9A-Fa-f:.]+(/[0-9]{1,3})?$" },
  },
  tls: {
    type: "object",
    additionalProperties: false,
    required: ["certFile", "keyFile"],
    properties: {
      certFile: { type: "string", minLength: 1, description: "Certificate chain, PEM." },
      keyFile: { type: "string", minLength: 1, description: "Private key, PEM." },
    },
  },
  cluster: {
    type: "object",
    additionalProperties: false,
    required: ["redis"],
    properties: {
      redis: {
        description: "redis://[user@]host[:port][/db] or rediss://…; the password goes in passwordEnv, " +
          "never in the URL.",
        type: "string",
        pattern: "^rediss?://([^:/@?#]*:?@)?[^:/@?#][^/@?#]*(/[0-9]*)?$",
      },
      passwordEnv: { $ref: "#/$defs/passwordEnv" },
      leaseMs: {
        description: "How long a group's lease lives without renewal, in milliseconds; greater than " +
          "pollIntervalMs. A node killed is replaced within this plus two ticks.",
        type: "integer",
        minimum: 500,
        maximum: 60000,
        default: 3000,
      },
      prefix: {
        description: "Prefix of every Redis key and channel; the nodes of one cluster share it.",
        type: "string",
        pattern: "^\\S{1,64}$",
        default: "gatecast:",
      },
      node: {
        description: "This node's name in Redis; absent: <hostname>-<pid>-<random>, made at start.",
        type: "string",
        pattern: "^[A-Za-z0-9._-]{1,64}$",
      },
    },
  },
};

/** The pieces the sections share, under `$defs`. */
const DEFS: Json = {
  driverMysql: { description: "The default driver.", const: "mysql" },
  passwordEnv: {
    description:
      "Name of an environment variable holding the password (the compiled binary may read only GATECAST_* variables).",
    type: "string",
    minLength: 1,
  },
  binlog: {
    description: "Follow the binlog (row format) and poll a handle at once when a table it names in " +
      "tables changes; docs/operating.md, Binlog wake-ups.",
    type: "object",
    additionalProperties: false,
    required: ["serverId"],
    properties: {
      serverId: {
        description:
          "Replica server id, distinct per gatecast node and database and from every real replica's.",
        type: "integer",
        minimum: 1,
        maximum: 4294967295,
      },
    },
  },
  connectionLimit: {
    description: "Connections in the pool.",
    type: "integer",
    minimum: 1,
    maximum: 100,
    default: 4,
  },
  mysqlSettings: {
    title: "MySQL/MariaDB, separate settings",
    type: "object",
    additionalProperties: false,
    required: ["user", "database"],
    not: { required: ["password", "passwordEnv"] },
    properties: {
      driver: { $ref: "#/$defs/driverMysql" },
      host: { type: "string", minLength: 1, default: "127.0.0.1" },
      port: { type: "integer", minimum: 1, maximum: 65535, default: 3306 },
      user: { type: "string", minLength: 1 },
      password: { type: "string", description: "Prefer passwordEnv: keep passwords out of the file." },
      passwordEnv: { $ref: "#/$defs/passwordEnv" },
      database: { type: "string", minLength: 1 },
      connectionLimit: { $ref: "#/$defs/connectionLimit" },
      binlog: { $ref: "#/$defs/binlog" },
    },
  },
  mysqlUrl: {
    title: "MySQL/MariaDB, one URL",
    type: "object",
    additionalProperties: false,
    required: ["url"],
    properties: {
      driver: { $ref: "#/$defs/driverMysql" },
      url: {
        description:
          "mysql://user:pass@host:3306/database (passwordEnv, when given, replaces the URL's password).",
        type: "string",
        pattern: "^mysql://[^/@]+@[^/]+/.+$",
      },
      passwordEnv: { $ref: "#/$defs/passwordEnv" },
      connectionLimit: { $ref: "#/$defs/connectionLimit" },
      binlog: { $ref: "#/$defs/binlog" },
    },
  },
  sqlite: {
    title: "SQLite file (for trials; the demo uses one in memory)",
    type: "object",
    additionalProperties: false,
    required: ["driver", "path"],
    properties: {
      driver: { const: "sqlite" },
      path: { type: "string", minLength: 1 },
    },
  },
  handle: {
    title: "A handle: live topics over one SELECT",
    type: "object",
    additionalProperties: false,
    required: ["sql", "key"],
    dependentRequired: { unitType: ["unit"] },
    // gatecast checks the SQL text itself at start; a schema can only ask for :units with unit.
    if: { required: ["unit"] },
    then: { properties: { sql: { type: "string", pattern: ":units" } } },
    properties: {
      sql: {
        description: "One SELECT (or WITH … SELECT) without `;`; `:units` (required with unit, " +
          "forbidden without) stands for the subscribed units, bound as parameters. No other placeholder.",
        type: "string",
        minLength: 1,
      },
      unit: {
        description: "The result column naming a row's unit; topics <db>/<handle>/<unit>. " +
          "Absent: one topic per database, <db>/<handle>.",
        type: "string",
        minLength: 1,
      },
      unitType: {
        description:
          "The units' grammar: int (1 to 2147483647) or string ([A-Za-z0-9_.:-]{1,64}); only with unit.",
        enum: ["int", "string"],
        default: "int",
      },
      key: {
        description: "The result columns that identify a row within its unit.",
        type: "array",
        minItems: 1,
        uniqueItems: true,
        items: { type: "string", minLength: 1 },
      },
      databases: {
        description: "Configured database codes the handle is offered on; absent: all.",
        type: "array",
        minItems: 1,
        uniqueItems: true,
        items: { type: "string", pattern: "^[A-Za-z0-9_-]{1,64}$" },
      },
      pollIntervalMs: {
        description:
          "This handle's own poll interval, in milliseconds; absent: the top-level pollIntervalMs.",
        type: "integer",
        minimum: 50,
        maximum: 3600000,
      },
      maxRowsPerUnit: {
        description: "Rows one unit may have; more make its topic stale (TOO_MANY_ROWS), never truncated.",
        type: "integer",
        minimum: 1,
        maximum: 1000000,
        default: 10000,
      },
      tables: {
        description: "The tables the SQL reads (table, or schema.table): with binlog on, a change to one " +
          "polls the handle at once; absent: the handle is only polled.",
        type: "array",
        minItems: 1,
        uniqueItems: true,
        items: { type: "string", pattern: "^[A-Za-z0-9_$]{1,64}(\\.[A-Za-z0-9_$]{1,64})?$" },
      },
    },
  },
  topicPattern: {
    type: "string",
    description:
      "A topic pattern: <db>/<handle>/<unit>, each part a value or *; <db>/<handle> for handles without units.",
    pattern: "^(\\*|[A-Za-z0-9_-]{1,64})/(\\*|[a-z][a-z0-9_]{0,31})(/(\\*|[A-Za-z0-9_.:-]{1,64}))?$",
    maxLength: 200,
  },
  topicPatterns: { type: "array", items: { $ref: "#/$defs/topicPattern" } },
  authTimeoutMs: {
    description:
      "Time an unauthenticated connection has to send an auth frame, in milliseconds; then it is closed with 4001.",
    type: "integer",
    minimum: 100,
    maximum: 600000,
    default: 10000,
  },
  jwt: {
    type: "object",
    additionalProperties: false,
    description: "JWT verification: at least one of secret, secretEnv, publicKey, jwksFile.",
    anyOf: [
      { required: ["secret"] },
      { required: ["secretEnv"] },
      { required: ["publicKey"] },
      { required: ["jwksFile"] },
    ],
    not: { required: ["secret", "secretEnv"] },
    properties: {
      secret: { type: "string", minLength: 32, description: "HS256 shared secret, at least 32 bytes." },
      secretEnv: {
        type: "string",
        minLength: 1,
        description: "Environment variable holding the HS256 secret.",
      },
      publicKey: {
        type: "string",
        pattern: "-----BEGIN PUBLIC KEY-----",
        description: "RS256 or ES256 public key, PEM (SPKI).",
      },
      jwksFile: {
        type: "string",
        minLength: 1,
        description: "A JWKS file of RS256/ES256 keys, read at start.",
      },
      topicsClaim: {
        type: "string",
        minLength: 1,
        default: "topics",
        description: "Claim holding the topic patterns.",
      },
      notifyClaim: {
        type: "string",
        minLength: 1,
        default: "notify",
        description:
          "Claim holding the patterns of the topics the token may notify (POST /notify); must differ from topicsClaim. A token without it may not notify.",
      },
      issuer: { type: "string", minLength: 1, description: "Required iss claim." },
      audience: { type: "string", minLength: 1, description: "Required aud claim." },
    },
  },
  apiKey: {
    type: "object",
    additionalProperties: false,
    required: ["name", "sha256", "topics"],
    properties: {
      name: { type: "string", minLength: 1, description: "Name for logs." },
      sha256: {
        type: "string",
        pattern: "^[0-9a-f]{64}$",
        description: "SHA-256 of the key, lower-case hex (printf %s KEY | sha256sum).",
      },
      topics: TOPIC_PATTERNS,
      notify: {
        ...TOPIC_PATTERNS,
        description:
          "Topic patterns whose groups the key may ask to be polled now (POST /notify); absent: none.",
      },
    },
  },
};

function scalarSchema(setting: ScalarSetting): Json {
  switch (setting.type) {
    case "integer":
      return { type: "integer", minimum: setting.min, maximum: setting.max };
    case "string":
      return { type: "string", minLength: 1 };
    case "choice":
      return { enum: [...setting.values] };
    case "boolean":
      return { type: "boolean" };
  }
}

function propertySchema(key: string, setting: Setting): Json {
  const shape = setting.type === "section" ? SECTION_SCHEMAS[key as SectionKey] : scalarSchema(setting);
  return {
    description: setting.doc,
    ...shape,
    ...(setting.default === undefined ? {} : { default: setting.default }),
  };
}

/**
 * The JSON Schema (draft 2020-12) of the configuration file.
 *
 * @example
 * ```ts
 * const properties = configSchema().properties as Record<string, unknown>;
 * ```
 */
export function configSchema(): Json {
  return {
    $schema: "https://json-schema.org/draft/2020-12/schema",
    $id: "https://github.com/gatecast/gatecast/config.schema.json",
    title: "gatecast configuration",
    description:
      "The file given to `gatecast --config`. lib/config/config.ts validates the same rules at start and " +
      "names the JSON path of the first bad value; unknown keys are errors. Generated from lib/config/settings.ts " +
      `by \`${REGENERATE}\`.`,
    type: "object",
    additionalProperties: false,
    required: SETTING_ENTRIES.filter(([, s]) => s.type === "section" && s.required).map(([key]) => key),
    properties: {
      $schema: {
        description: 'This schema, for editors: "./config.schema.json". Ignored by gatecast.',
        type: "string",
      },
      ...Object.fromEntries(SETTING_ENTRIES.map(([key, setting]) => [key, propertySchema(key, setting)])),
    },
    // Without tokens notifyFrom says who may notify; with them the tokens do (lib/config/config.ts).
    if: {
      required: ["auth"],
      properties: { auth: { type: "object", required: ["mode"], properties: { mode: { const: "token" } } } },
    },
    then: { not: { required: ["notifyFrom"] } },
    $defs: DEFS,
  };
}

/** `config.schema.json` as committed: the schema, two-space indented, with a final newline. */
export function schemaText(): string {
  return JSON.stringify(configSchema(), null, 2) + "\n";
}

function shownDefault(setting: Setting): string {
  if (setting.type === "section") {
    if (setting.required) return "(required)";
    return setting.default === undefined ? "none" : `\`${JSON.stringify(setting.default)}\``;
  }
  return typeof setting.default === "number" ? String(setting.default) : `\`${setting.default}\``;
}

function shownAccepted(setting: Setting): string {
  switch (setting.type) {
    case "integer":
      return `integer ${setting.min}-${setting.max}`;
    case "string":
      return "non-empty string";
    case "choice":
      return setting.values.map((value) => `\`${value}\``).join(", ");
    case "boolean":
      return "`true`, `false`";
    case "section":
      return setting.accepts;
  }
}

/** One row per top-level setting, padded as `deno fmt` pads a Markdown table. */
export function settingsTable(): string {
  const rows = [
    ["key", "default", "accepted", "meaning"],
    ...SETTING_ENTRIES.map(([key, setting]) => [
      `\`${key}\``,
      shownDefault(setting),
      shownAccepted(setting),
      setting.doc,
    ]),
  ];
  for (const cell of rows.flat()) {
    if (cell.includes("|")) throw new Error(`a settings table cell may not hold "|": ${cell}`);
  }
  const width = (text: string) => [...text].length;
  const widths = rows[0].map((_, column) => Math.max(...rows.map((row) => width(row[column]))));
  const line = (cells: string[]) =>
    `| ${cells.map((cell, i) => cell + " ".repeat(widths[i] - width(cell))).join(" | ")} |`;
  return [line(rows[0]), line(widths.map((w) => "-".repeat(w))), ...rows.slice(1).map(line)].join("\n");
}

/**
 * README's text with the generated table between its markers.
 *
 * @throws {Error} when the markers are missing.
 */
export function withSettingsTable(readme: string): string {
  const begin = readme.indexOf(TABLE_BEGIN);
  const end = readme.indexOf(TABLE_END);
  if (begin < 0 || end < begin) {
    throw new Error(`README.md needs the lines ${TABLE_BEGIN} and ${TABLE_END} around the settings table`);
  }
  return readme.slice(0, begin + TABLE_BEGIN.length) + "\n\n" + settingsTable() + "\n\n" + readme.slice(end);
}

if (import.meta.main) {
  const root = new URL("../", import.meta.url);
  const files: [string, (old: string) => string][] = [
    ["config.schema.json", () => schemaText()],
    ["README.md", withSettingsTable],
  ];
  for (const [name, generate] of files) {
    const url = new URL(name, root);
    const old = await Deno.readTextFile(url);
    const text = generate(old);
    if (text === old) {
      console.log(`${name}: up to date`);
    } else {
      await Deno.writeTextFile(url, text);
      console.log(`${name}: written`);
    }
  }
}
