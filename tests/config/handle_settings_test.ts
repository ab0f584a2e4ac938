/**
 * The `handles` section: the examples parse with their defaults, every bad value is refused
 * with one message naming `handles.<name>.<field>` and what is accepted, and the SQL scanner never
 * takes what is inside a quote or a comment for code, in the checks and in `:units` expansion alike.
 */

import assert from "node:assert/strict";
import { ConfigError, parseConfig } from "../../lib/config/config.ts";
import {
  expandUnits,
  parseHandles,
  scanSql,
  SqlTextError,
  unitsPlaceholderCount,
} from "../../lib/config/handle_settings.ts";
import { restartNeeded } from "../../lib/ops/reload.ts";

const CODES = ["plant1", "plant2"];
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

/** The message `parseHandles` refuses `handles` with, or `(accepted)`. */
function refusal(handles: unknown, codes: readonly string[] = CODES): string {
  try {
    parseHandles(handles, codes);
  } catch (error) {
    if (error instanceof ConfigError) return error.message;
    throw error;
  }
  return "(accepted)";
}

Deno.test("the issue's tanks and alarms handles parse with every default filled in", () => {
  assert.deepEqual(parseHandles({ tanks: TANKS, alarms: ALARMS }, CODES), {
    tanks: {
      name: "tanks",
      sql: TANKS.sql,
      unit: "site",
      unitType: "string",
      key: ["tank_id"],
      databases: undefined,
      pollIntervalMs: undefined,
      maxRowsPerUnit: 10000,
    },
    alarms: {
      name: "alarms",
      sql: ALARMS.sql,
      unit: undefined,
      unitType: "none",
      key: ["id"],
      databases: undefined,
      pollIntervalMs: undefined,
      maxRowsPerUnit: 10000,
    },
  });
});

Deno.test("a handle with a unit and no unitType has int units; every optional setting can be given", () => {
  const levels = {
    sql: "SELECT plant_id, tank_id, level_m FROM tank_level WHERE plant_id IN (:units)",
    unit: "plant_id",
    key: ["tank_id", "level_m"],
    databases: ["plant2"],
    pollIntervalMs: 50,
    maxRowsPerUnit: 1_000_000,
    tables: ["tank_level", "plant2.site$2"],
  };
  assert.deepEqual(parseHandles({ levels }, CODES).levels, { name: "levels", ...levels, unitType: "int" });
  const edges = { ...levels, pollIntervalMs: 3_600_000, maxRowsPerUnit: 1 };
  assert.deepEqual(parseHandles({ levels: edges }, CODES).levels, {
    name: "levels",
    ...edges,
    unitType: "int",
  });
});

Deno.test("these SELECTs are accepted: quotes, comments, CTEs, hints, unions, := and names after a dot", () => {
  const unitless = [
    "  -- a comment\n# another\n/* and a third */ select ';' AS semi, \"--\" AS dashes, `odd``name` FROM t",
    "WITH RECURSIVE n (i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 3) SELECT i FROM n",
    "with a as (select 1 as x), b (y) as (select x from a) select y from b",
    "(SELECT id FROM a) UNION (SELECT id FROM b) ORDER BY id",
    "SELECT 'it''s', 'a\\'b', \"q\"\"q\", 'back\\\\' FROM t",
    "SELECT id, @n := @n + 1 AS position FROM t",
    "SELECT /*+ MAX_EXECUTION_TIME(1000) */ id FROM t",
    "SELECT note FROM t WHERE note LIKE 'FOR UPDATE INTO ?%' -- INTO OUTFILE ; :site",
    "SELECT id FROM t FOR SYSTEM_TIME AS OF TIMESTAMP '2026-01-01 00:00:00'",
    "SELECT t.into, t.update, SUBSTRING(name FOR 2) FROM t",
    "SELECT 1 -- the end, without a newline",
  ];
  for (const sql of unitless) assert.equal(refusal({ h: { sql, key: ["id"] } }), "(accepted)", sql);
  const withUnit = [
    "SELECT * FROM t WHERE a IN (:units) OR b IN (:units)",
    "SELECT site, id FROM t WHERE site IN (:units) AND note <> ':units' /* :units */",
    "SELECT site, id FROM t WHERE site IN(:units)-- :units",
  ];
  for (const sql of withUnit) {
    assert.equal(refusal({ h: { sql, unit: "site", key: ["id"] } }), "(accepted)", sql);
  }
});

/** SQL refused for a handle without a unit: [sql, the problem at `handles.h.sql`]. */
// deno-fmt-ignore: one case a line reads as a table
const REFUSED_SQL: [string, string][] = [
  ["  -- nothing\n /* here */ # either", "holds no statement: expected one SELECT (or WITH … SELECT)"],
  ["UPDATE alarm SET cleared_at = NOW()", 'expected one SELECT (or WITH … SELECT) statement, got one starting with "UPDATE"'],
  ["/* x */ show tables", 'expected one SELECT (or WITH … SELECT) statement, got one starting with "show"'],
  ["SELECT 1;", "must be one statement without `;` (found at character 9)"],
  ["SELECT 1; DROP TABLE alarm", "must be one statement without `;` (found at character 9)"],
  // The backslash-escaped quote does not end the string; the one after it does.
  ["SELECT 'it\\'s'; DROP TABLE t", "must be one statement without `;` (found at character 15)"],
  // `--` starts a comment only before a space or a control character.
  ["SELECT 1--1;", "must be one statement without `;` (found at character 12)"],
  ["WITH a AS (SELECT id FROM alarm) UPDATE alarm JOIN a USING (id) SET cleared_at = NOW()", "a WITH must lead to SELECT, got UPDATE: a handle only reads rows"],
  ["WITH a AS (SELECT 1) delete FROM alarm", "a WITH must lead to SELECT, got DELETE: a handle only reads rows"],
  ["with recursive a (n) as (select 1 union all select n + 1 from a where n < 5) insert into t select n from a", "a WITH must lead to SELECT, got INSERT: a handle only reads rows"],
  ["WITH a AS (SELECT 1)", "a WITH must lead to SELECT after its common table expressions"],
  ["SELECT id INTO @x FROM alarm", "SELECT … INTO (OUTFILE, DUMPFILE or variables) is not accepted: a handle only reads rows"],
  ["SELECT id FROM alarm INTO OUTFILE '/tmp/a'", "SELECT … INTO (OUTFILE, DUMPFILE or variables) is not accepted: a handle only reads rows"],
  ["select * from (select id from alarm into dumpfile '/tmp/a') x", "SELECT … INTO (OUTFILE, DUMPFILE or variables) is not accepted: a handle only reads rows"],
  ["SELECT id FROM alarm FOR UPDATE", "FOR UPDATE (a locking read) is not accepted: a handle only reads rows"],
  ["SELECT id FROM alarm for /* ! */ share", "FOR SHARE (a locking read) is not accepted: a handle only reads rows"],
  ["SELECT id FROM alarm Lock\n  In Share Mode", "LOCK IN SHARE MODE (a locking read) is not accepted: a handle only reads rows"],
  ["SELECT 1 /*! , 2 */", "has an executable comment /*! … */ at character 10, which the server runs: write its SQL plainly"],
  ["SELECT 1 /*M!100000 FOR UPDATE */", "has an executable comment /*! … */ at character 10, which the server runs: write its SQL plainly"],
  ["SELECT id FROM alarm WHERE id = ?", "placeholder ? at character 33 is not accepted: the only placeholder is :units (the subscribed units)"],
  ["SELECT id FROM alarm WHERE id = 1--?", "placeholder ? at character 36 is not accepted: the only placeholder is :units (the subscribed units)"],
  // A backslash does not escape inside backticks: the name ends there and `?` is code.
  ["SELECT `a\\` FROM t WHERE id = ?", "placeholder ? at character 31 is not accepted: the only placeholder is :units (the subscribed units)"],
  ["SELECT id FROM alarm WHERE site = :site", "placeholder :site at character 35 is not accepted: the only placeholder is :units (the subscribed units)"],
  ["SELECT id FROM t WHERE site IN (:units)", "uses :units but the handle has no unit: set unit to the column naming a row's unit, or remove :units"],
  ["SELECT ':units FROM t", "has a ' quote left open at character 8"],
  ['SELECT "a\\"', 'has a " quote left open at character 8'],
  ["SELECT `a`` FROM t", "has a ` quote left open at character 8"],
  ["SELECT 1 /* x", "has a /* comment left open at character 10"],
];

/** SQL refused for a handle with `unit: "site"`: [sql, the problem at `handles.h.sql`]. */
// deno-fmt-ignore: one case a line reads as a table
const REFUSED_UNIT_SQL: [string, string][] = [
  ["SELECT site, id FROM t WHERE site IN (:UNITS)", "placeholder :UNITS at character 39 is not accepted: the only placeholder is :units (the subscribed units)"],
  ["SELECT site, id FROM t WHERE site IN (:unitsx)", "placeholder :unitsx at character 39 is not accepted: the only placeholder is :units (the subscribed units)"],
  ["SELECT site, id FROM t", "must use :units for the subscribed units (as in WHERE site IN (:units)), since unit is set"],
  ["SELECT site, id FROM t WHERE note = ':units'", "must use :units for the subscribed units (as in WHERE site IN (:units)), since unit is set"],
  ["SELECT site, id FROM t /* :units */ -- :units\n# :units", "must use :units for the subscribed units (as in WHERE site IN (:units)), since unit is set"],
];

/** Other bad settings of a handle named `h`: [its settings, the path at fault, the problem]. */
// deno-fmt-ignore: one case a line reads as a table
const REFUSED_HANDLES: [Record<string, unknown>, string, string][] = [
  [{ ...ALARMS, keys: ["id"] }, "handles.h.keys", "unknown key; accepted keys are sql, unit, unitType, key, databases, pollIntervalMs, maxRowsPerUnit, tables"],
  [{ key: ["id"] }, "handles.h.sql", "is required: one SELECT (or WITH … SELECT) statement"],
  [{ sql: 5, key: ["id"] }, "handles.h.sql", "expected a non-empty string, got 5"],
  [{ sql: "", key: ["id"] }, "handles.h.sql", 'expected a non-empty string, got ""'],
  [{ ...TANKS, unit: 5 }, "handles.h.unit", "expected a non-empty string, got 5"],
  [{ ...TANKS, unit: "" }, "handles.h.unit", 'expected a non-empty string, got ""'],
  [{ ...TANKS, unitType: "uuid" }, "handles.h.unitType", 'expected one of int, string, got "uuid"'],
  [{ ...TANKS, unitType: "none" }, "handles.h.unitType", 'expected one of int, string, got "none"'],
  [{ ...ALARMS, unitType: "int" }, "handles.h.unitType", "is only used with unit (a handle without unit has one topic per database)"],
  [{ sql: ALARMS.sql }, "handles.h.key", "is required: a non-empty array of the result columns that identify a row within its unit"],
  [{ ...ALARMS, key: "id" }, "handles.h.key", 'expected a non-empty array of column names, got "id"'],
  [{ ...ALARMS, key: [] }, "handles.h.key", "expected a non-empty array of column names, got an empty array"],
  [{ ...ALARMS, key: ["id", ""] }, "handles.h.key[1]", 'expected a non-empty string, got ""'],
  [{ ...ALARMS, key: ["id", "severity", "id"] }, "handles.h.key[2]", '"id" is listed twice'],
  [{ ...ALARMS, databases: "plant1" }, "handles.h.databases", 'expected a non-empty array of database codes, got "plant1"'],
  [{ ...ALARMS, databases: [] }, "handles.h.databases", "expected a non-empty array of database codes, got an empty array"],
  [{ ...ALARMS, databases: ["plant1", "plant9"] }, "handles.h.databases[1]", '"plant9" is not a configured database; configured: plant1, plant2'],
  [{ ...ALARMS, databases: ["plant1", "plant1"] }, "handles.h.databases[1]", '"plant1" is listed twice'],
  [{ ...ALARMS, pollIntervalMs: 49 }, "handles.h.pollIntervalMs", "expected an integer 50-3600000, got 49"],
  [{ ...ALARMS, pollIntervalMs: 3_600_001 }, "handles.h.pollIntervalMs", "expected an integer 50-3600000, got 3600001"],
  [{ ...ALARMS, pollIntervalMs: 100.5 }, "handles.h.pollIntervalMs", "expected an integer 50-3600000, got 100.5"],
  [{ ...ALARMS, pollIntervalMs: "100" }, "handles.h.pollIntervalMs", 'expected an integer 50-3600000, got "100"'],
  [{ ...ALARMS, maxRowsPerUnit: 0 }, "handles.h.maxRowsPerUnit", "expected an integer 1-1000000, got 0"],
  [{ ...ALARMS, maxRowsPerUnit: 1_000_001 }, "handles.h.maxRowsPerUnit", "expected an integer 1-1000000, got 1000001"],
  [{ ...ALARMS, maxRowsPerUnit: null }, "handles.h.maxRowsPerUnit", "expected an integer 1-1000000, got null"],
  [{ ...ALARMS, tables: "alarm" }, "handles.h.tables", 'expected a non-empty array of table names, got "alarm"'],
  [{ ...ALARMS, tables: [] }, "handles.h.tables", "expected a non-empty array of table names, got an empty array"],
  [{ ...ALARMS, tables: ["alarm", "alarm"] }, "handles.h.tables[1]", '"alarm" is listed twice'],
  [{ ...ALARMS, tables: ["a.b.c"] }, "handles.h.tables[0]", 'expected a table name like "tank_level" or "plant1.tank_level" ([A-Za-z0-9_$]{1,64}, optionally schema.table), got "a.b.c"'],
  [{ ...ALARMS, tables: ["`alarm`"] }, "handles.h.tables[0]", 'expected a table name like "tank_level" or "plant1.tank_level" ([A-Za-z0-9_$]{1,64}, optionally schema.table), got "`alarm`"'],
];

Deno.test("every SQL text that is not one read-only SELECT with the right placeholders is refused saying why", () => {
  for (const [sql, problem] of REFUSED_SQL) {
    assert.equal(refusal({ h: { sql, key: ["id"] } }), `handles.h.sql: ${problem}`, sql);
  }
  for (const [sql, problem] of REFUSED_UNIT_SQL) {
    assert.equal(refusal({ h: { sql, unit: "site", key: ["id"] } }), `handles.h.sql: ${problem}`, sql);
  }
});

Deno.test("every other bad handle setting is refused naming handles.<name>.<field> and what is accepted", () => {
  for (const [settings, path, problem] of REFUSED_HANDLES) {
    assert.equal(refusal({ h: settings }), `${path}: ${problem}`, JSON.stringify(settings));
  }
});

Deno.test("a bad section or handle name is refused naming it and what is accepted; real is reserved", () => {
  const cases: [unknown, string][] = [
    [[], "handles: expected an object, got an array"],
    [null, "handles: expected an object, got null"],
    [{ Tanks: ALARMS }, "handles.Tanks: a handle name must match [a-z][a-z0-9_]{0,31}"],
    [{ "1tanks": ALARMS }, "handles.1tanks: a handle name must match [a-z][a-z0-9_]{0,31}"],
    [
      { ["a".repeat(33)]: ALARMS },
      `handles.${"a".repeat(33)}: a handle name must match [a-z][a-z0-9_]{0,31}`,
    ],
    [{ real: ALARMS }, 'handles.real: "real" is reserved for the built-in handle; choose another name'],
    [{ alarms: "SELECT 1" }, 'handles.alarms: expected an object, got "SELECT 1"'],
    [{ alarms: [ALARMS] }, "handles.alarms: expected an object, got an array"],
  ];
  for (const [handles, message] of cases) assert.equal(refusal(handles), message, JSON.stringify(handles));
  assert.equal(refusal({ ["a".repeat(32)]: ALARMS }), "(accepted)");
});

Deno.test("databases naming a code when none is configured says so", () => {
  assert.equal(
    refusal({ h: { ...ALARMS, databases: ["plant1"] } }, []),
    'handles.h.databases[0]: "plant1" is not a configured database; none is configured',
  );
});

Deno.test("the scanner gives back the text unchanged, split where the server splits it", () => {
  const tricky = [
    "SELECT ';' -- ;\n, x",
    'SELECT \'a\\\'b\' , "c""d" , `e``f` /* :units */ # :units\n:units ?',
    "SELECT 1--1, 2-- c",
    "SELECT 'it''s' FROM t WHERE a IN (:units) AND b := :x",
    "SELECT naïve, 1.5e-3, @v, `x\\` FROM t",
  ];
  for (const sql of tricky) assert.equal(scanSql(sql).map((token) => token.text).join(""), sql);
  assert.deepEqual(
    scanSql("SELECT ';' -- ;\n:units").map(({ kind, text }) => [kind, text]),
    [
      ["word", "SELECT"],
      ["space", " "],
      ["quoted", "';'"],
      ["space", " "],
      ["comment", "-- ;"],
      ["space", "\n"],
      ["placeholder", ":units"],
    ],
  );
  assert.deepEqual(
    scanSql("a--b 'x\\'y' `p\\`;").map(({ kind, text }) => [kind, text]),
    [
      ["word", "a"],
      ["symbol", "-"],
      ["symbol", "-"],
      ["word", "b"],
      ["space", " "],
      ["quoted", "'x\\'y'"],
      ["space", " "],
      ["quoted", "`p\\`"],
      ["semicolon", ";"],
    ],
  );
  assert.deepEqual(
    scanSql("@n:=1 /*x*/#y").map(({ kind, text }) => [kind, text]),
    [
      ["symbol", "@"],
      ["word", "n"],
      ["symbol", ":"],
      ["symbol", "="],
      ["word", "1"],
      ["space", " "],
      ["comment", "/*x*/"],
      ["comment", "#y"],
    ],
  );
  assert.throws(() => scanSql("SELECT 'a"), SqlTextError);
});

Deno.test("expandUnits binds every :units outside quotes and comments, leaving the rest as written", () => {
  assert.equal(
    expandUnits("SELECT * FROM tank WHERE site IN (:units) AND note <> ':units' /* :units */ -- :units", 3),
    "SELECT * FROM tank WHERE site IN (?, ?, ?) AND note <> ':units' /* :units */ -- :units",
  );
  assert.equal(
    expandUnits("SELECT * FROM t WHERE a IN (:units)\n# :units\nOR b IN (:units)", 2),
    "SELECT * FROM t WHERE a IN (?, ?)\n# :units\nOR b IN (?, ?)",
  );
  assert.equal(
    expandUnits('SELECT \'a\\\':units\', "b"":units", `:units` FROM t WHERE u IN (:units)', 1),
    'SELECT \'a\\\':units\', "b"":units", `:units` FROM t WHERE u IN (?)',
  );
  assert.equal(
    expandUnits("SELECT 1 FROM t WHERE u IN(:units)-- :units", 2),
    "SELECT 1 FROM t WHERE u IN(?, ?)-- :units",
  );
  assert.throws(() => expandUnits("SELECT :units", 0), RangeError);
  assert.throws(() => expandUnits("SELECT :units", 1.5), RangeError);
});

Deno.test("unitsPlaceholderCount counts :units outside quotes and comments only", () => {
  assert.equal(unitsPlaceholderCount("SELECT * FROM t WHERE a IN (:units) OR b IN (:units) -- :units"), 2);
  assert.equal(unitsPlaceholderCount("SELECT ':units', `:units`, \":units\" /* :units */ # :units"), 0);
  assert.equal(unitsPlaceholderCount("SELECT 'a\\'' , :units, :unitsx"), 1);
});

Deno.test("parseConfig reads handles, checking their databases against the configured codes", () => {
  const databases = { plant1: { driver: "sqlite", path: ":memory:" } };
  const config = parseConfig(
    { auth: { mode: "none" }, databases, handles: { tanks: TANKS } },
    () => undefined,
  );
  assert.equal(config.handles.tanks.unitType, "string");
  assert.deepEqual(parseConfig({ auth: { mode: "none" }, databases }, () => undefined).handles, {});
  assert.throws(
    () =>
      parseConfig({
        auth: { mode: "none" },
        databases,
        handles: { tanks: { ...TANKS, databases: ["plant2"] } },
      }, () => undefined),
    {
      name: "ConfigError",
      message: 'handles.tanks.databases[0]: "plant2" is not a configured database; configured: plant1',
    },
  );
});

Deno.test("a reload that changes handles says a restart is needed", () => {
  const base = { auth: { mode: "none" }, databases: {} };
  const before = parseConfig({ ...base, handles: { alarms: ALARMS } }, () => undefined);
  const after = parseConfig(
    { ...base, handles: { alarms: { ...ALARMS, maxRowsPerUnit: 5 } } },
    () => undefined,
  );
  assert.deepEqual(restartNeeded(before, after), ["handles"]);
  assert.deepEqual(restartNeeded(before, before), []);
});
