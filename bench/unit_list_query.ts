/**
 * How a handle's `:units` placeholder should become bound parameters: two strategies measured
 * on a real MariaDB through `mysql2`, the way `lib/mysql_source.ts` calls it (a pool,
 * `getConnection` + `query` + `release` per query, under `SET STATEMENT max_statement_time`).
 *
 * - A, padded IN list: `unit IN (?, ?, ...)` padded to 1, 4, 16, 64, 256 or 1,000 placeholders
 *   (the last unit repeated), one statement text per size, chunks of 1,000 above that.
 * - B, one JSON array: `unit IN (SELECT u FROM JSON_TABLE(?, '$[*]' COLUMNS (u ...)) AS units)`,
 *   one statement text for any count, never chunked.
 *
 * Tables of 1,500 and of 20,000 units, 20 rows a unit, 6 result columns, an int and a string
 * unit column, indexed. Printed, per table, unit type, call (`query`, which gatecast uses, and
 * `execute`), unit count and strategy (the two take turns tick by tick): time per tick (p50,
 * p99), server CPU per tick (from `/proc`: the server must be local, and other clients of it
 * count too), Handler_read_* per tick and client CPU per tick. Then the EXPLAIN plans at 999 and
 * 1,000 units; one tick on unit columns in latin1 and in utf8mb4_unicode_ci (not the
 * connection's utf8mb4_general_ci); the prepared statements left on one connection after cycling
 * 1..1,000 units over an empty table (only the statement texts matter there); whether a read-only session,
 * transaction or statement stops a stored function called from the SELECT from writing to
 * InnoDB, MyISAM, MEMORY and temporary tables, whether the session setting survives the pool,
 * and what each way costs per query.
 *
 *   deno run --allow-all bench/unit_list_query.ts [--mysql-url mysql://root:@127.0.0.1:3306]
 *
 * It creates the database `gatecast_bench_units` and drops it at the end; under 2 minutes.
 */

import { parseArgs } from "node:util";
import process from "node:process";
import mysql from "mysql2/promise";
import { cpuMicros } from "./process_stats.ts";

const DATABASE = "gatecast_bench_units";
const TABLE_UNITS = 1500;
/** A wider table, where 1,000 subscribed units are a small part of it (as on a real plant). */
const WIDE_UNITS = 20_000;
const ROWS_PER_UNIT = 20;
const RESULT_COLUMNS = "unit, tank_id, level_m, temp_c, state, updated_at";
/** The IN list sizes of strategy A; the last is also the chunk size. */
const PAD_SIZES = [1, 4, 16, 64, 256, 1000];
const CHUNK = PAD_SIZES.at(-1)!;
/** Subscribed unit counts, with the ticks timed at each. */
const COUNTS: [units: number, ticks: number][] = [[1, 200], [10, 200], [100, 60], [1000, 20], [1500, 12]];
/** The server-side limit gatecast puts on every query. */
const MAX_STATEMENT_SECONDS = 5;

type UnitType = "int" | "string";
type Unit = number | string;
type Call = "query" | "execute";
type Row = Record<string, unknown>;
/** One statement with its parameters. */
interface Statement {
  sql: string;
  params: (number | string)[];
}
/** A way to turn the subscribed units into the statements of one tick. */
interface Strategy {
  name: string;
  plan(table: string, type: UnitType, units: Unit[]): Statement[];
}

const padded: Strategy = {
  name: "A padded IN",
  plan(table, _type, units) {
    const statements: Statement[] = [];
    for (let start = 0; start < units.length; start += CHUNK) {
      const chunk = units.slice(start, start + CHUNK);
      const size = PAD_SIZES.find((s) => s >= chunk.length)!;
      const params = [...chunk, ...Array(size - chunk.length).fill(chunk.at(-1))];
      statements.push({ sql: inList(table, size), params });
    }
    return statements;
  },
};

const jsonTable: Strategy = {
  name: "B JSON_TABLE",
  plan(table, type, units) {
    const column = type === "int" ? "INT" : "VARCHAR(64)";
    return [{
      sql: `SELECT ${RESULT_COLUMNS} FROM ${table} WHERE unit IN ` +
        `(SELECT u FROM JSON_TABLE(?, '$[*]' COLUMNS (u ${column} PATH '$')) AS units)`,
      params: [JSON.stringify(units)],
    }];
  },
};

/** The unpadded list, one text per count: only to count prepared statements against. */
const exact: Strategy = {
  name: "exact IN (no padding)",
  plan: (table, _type, units) => [{ sql: inList(table, units.length), params: units }],
};

function inList(table: string, size: number): string {
  return `SELECT ${RESULT_COLUMNS} FROM ${table} WHERE unit IN (${Array(size).fill("?").join(", ")})`;
}

function tableOf(type: UnitType, units: number): string {
  return `tank_${units === WIDE_UNITS ? "wide_" : ""}${type === "int" ? "int" : "str"}`;
}

function unitName(type: UnitType, n: number): Unit {
  return type === "int" ? n : `site-${String(n).padStart(5, "0")}`;
}

/** `count` distinct units of a table of `tableUnits` units, in a fixed pseudo-random order. */
function subscribedUnits(type: UnitType, count: number, tableUnits = TABLE_UNITS): Unit[] {
  const all = Array.from({ length: tableUnits }, (_, i) => i + 1);
  let seed = 12345;
  for (let i = all.length - 1; i > 0; i--) {
    seed = (seed * 1103515245 + 12345) % 2147483648;
    const j = seed % (i + 1);
    [all[i], all[j]] = [all[j], all[i]];
  }
  return all.slice(0, count).map((n) => unitName(type, n));
}

function withLimit(sql: string, extra = ""): string {
  return `SET STATEMENT max_statement_time=${MAX_STATEMENT_SECONDS}${extra} FOR ${sql}`;
}

function createPool(url: string, options: Partial<mysql.PoolOptions> = {}): mysql.Pool {
  const u = new URL(url);
  return mysql.createPool({
    host: u.hostname,
    port: Number(u.port || 3306),
    user: decodeURIComponent(u.username),
    password: decodeURIComponent(u.password),
    database: DATABASE,
    connectionLimit: 1,
    dateStrings: true,
    decimalNumbers: true,
    supportBigNumbers: true,
    charset: "utf8mb4",
    ...options,
  });
}

/** Runs one statement as gatecast does: take a pool connection, run, release. */
async function run(pool: mysql.Pool, call: Call, statement: Statement, extra = ""): Promise<Row[]> {
  const conn = await pool.getConnection();
  try {
    const sql = withLimit(statement.sql, extra);
    const [rows] = call === "query"
      ? await conn.query(sql, statement.params)
      : await conn.execute(sql, statement.params);
    return rows as unknown as Row[];
  } finally {
    conn.release();
  }
}

async function status(
  pool: mysql.Pool,
  scope: "SESSION" | "GLOBAL",
  like: string,
): Promise<Map<string, number>> {
  const [rows] = await pool.query(`SHOW ${scope} STATUS LIKE ?`, [like]);
  return new Map((rows as Row[]).map((r) => [String(r.Variable_name), Number(r.Value)]));
}

async function handlerReads(pool: mysql.Pool): Promise<number> {
  let sum = 0;
  for (const [, value] of await status(pool, "SESSION", "Handler_read%")) sum += value;
  return sum;
}

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.ceil(p * sorted.length) - 1)];
}

function ms(value: number): string {
  return value.toFixed(value < 10 ? 2 : 1);
}

async function serverPid(pool: mysql.Pool): Promise<number | undefined> {
  try {
    const [rows] = await pool.query("SELECT @@pid_file AS f");
    const pid = Number((await Deno.readTextFile(String((rows as Row[])[0].f))).trim());
    cpuMicros(pid);
    return pid;
  } catch {
    return undefined;
  }
}

async function createPlant(admin: mysql.Pool): Promise<void> {
  await admin.query(`DROP DATABASE IF EXISTS ${DATABASE}`);
  await admin.query(`CREATE DATABASE ${DATABASE} CHARACTER SET utf8mb4`);
  for (const units of [TABLE_UNITS, WIDE_UNITS]) {
    for (const type of ["int", "string"] as const) {
      const table = `${DATABASE}.${tableOf(type, units)}`;
      await admin.query(
        `CREATE TABLE ${table} (id INT AUTO_INCREMENT PRIMARY KEY, unit ${
          type === "int" ? "INT" : "VARCHAR(64)"
        }
         NOT NULL, tank_id INT NOT NULL, level_m DOUBLE NOT NULL, temp_c DOUBLE NOT NULL,
         state VARCHAR(16) NOT NULL, updated_at DATETIME NOT NULL, KEY unit (unit)) ENGINE=InnoDB`,
      );
      // The SEQUENCE engine's seq_1_to_N tables fill it on the server.
      const unit = type === "int" ? "u.seq" : "CONCAT('site-', LPAD(u.seq, 5, '0'))";
      await admin.query(
        `INSERT INTO ${table} (${RESULT_COLUMNS}) SELECT ${unit}, t.seq, u.seq + t.seq / 4, 20 + t.seq / 8,
         'ok', '2024-05-01 12:00:00' FROM ${DATABASE}.seq_1_to_${units} u JOIN ${DATABASE}.seq_1_to_${ROWS_PER_UNIT} t`,
      );
    }
  }
  // The same rows with a latin1 unit column: does JSON_TABLE's utf8mb4 column still use its index?
  await admin.query(`CREATE TABLE ${DATABASE}.tank_latin1 LIKE ${DATABASE}.tank_str`);
  await admin.query(
    `ALTER TABLE ${DATABASE}.tank_latin1 MODIFY unit VARCHAR(64) CHARACTER SET latin1 NOT NULL`,
  );
  await admin.query(`INSERT INTO ${DATABASE}.tank_latin1 SELECT * FROM ${DATABASE}.tank_str`);
  // And with another collation than the connection's utf8mb4_general_ci (MariaDB 11's default is uca1400).
  await admin.query(`CREATE TABLE ${DATABASE}.tank_unicode LIKE ${DATABASE}.tank_str`);
  await admin.query(
    `ALTER TABLE ${DATABASE}.tank_unicode MODIFY unit VARCHAR(64) COLLATE utf8mb4_unicode_ci NOT NULL`,
  );
  await admin.query(`INSERT INTO ${DATABASE}.tank_unicode SELECT * FROM ${DATABASE}.tank_str`);
  // No rows: cycling unit counts there measures statement texts only.
  await admin.query(`CREATE TABLE ${DATABASE}.tank_none LIKE ${DATABASE}.tank_str`);
  const tables = [
    "tank_int",
    "tank_str",
    "tank_wide_int",
    "tank_wide_str",
    "tank_latin1",
    "tank_unicode",
    "tank_none",
  ];
  await admin.query(`ANALYZE TABLE ${tables.map((t) => `${DATABASE}.${t}`).join(", ")}`);
}

/** Time, CPU and handler reads per tick, for every strategy, call and count. */
async function timings(url: string, pid: number | undefined): Promise<string[]> {
  const lines = [
    "| table units | unit | call | units | strategy | queries/tick | p50 ms | p99 ms | server CPU ms/tick | Handler_read/tick | client CPU ms/tick |",
    "| ---: | --- | --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
  ];
  const scenarios: [tableUnits: number, counts: typeof COUNTS][] = [
    [TABLE_UNITS, COUNTS],
    [WIDE_UNITS, [[100, 60], [1000, 15]]],
  ];
  for (const [tableUnits, counts] of scenarios) {
    for (const type of ["int", "string"] as const) {
      for (const call of ["query", "execute"] as const) {
        lines.push(...await timeTicks(url, pid, { tableUnits, counts, type, call }));
      }
    }
  }
  return lines;
}

/** What one strategy accumulates over the timed ticks. */
interface Tally {
  strategy: Strategy;
  pool: mysql.Pool;
  showCost: number;
  durations: number[];
  serverMicros: number;
  clientMicros: number;
  reads: number;
}

/**
 * One table, unit type and call, at every count; the strategies take turns tick by tick, so
 * that the load of whatever else shares the machine falls on both alike.
 */
async function timeTicks(
  url: string,
  pid: number | undefined,
  cell: { tableUnits: number; counts: typeof COUNTS; type: UnitType; call: Call },
): Promise<string[]> {
  const { tableUnits, counts, type, call } = cell;
  const lines: string[] = [];
  const tallies: Tally[] = [];
  for (const strategy of [padded, jsonTable]) {
    const pool = createPool(url);
    const showCost = -(await handlerReads(pool)) + (await handlerReads(pool));
    tallies.push({ strategy, pool, showCost, durations: [], serverMicros: 0, clientMicros: 0, reads: 0 });
  }
  for (const [count, ticks] of counts) {
    const units = subscribedUnits(type, count, tableUnits);
    const ticksOf = tallies.map(({ strategy, pool }) => {
      const statements = strategy.plan(tableOf(type, tableUnits), type, units);
      return async () => {
        let rows = 0;
        for (const statement of statements) rows += (await run(pool, call, statement)).length;
        if (rows !== count * ROWS_PER_UNIT) {
          throw new Error(`${strategy.name}: ${rows} rows at ${count} units`);
        }
        return statements.length;
      };
    });
    for (const tick of ticksOf) for (let i = 0; i < 3; i++) await tick();
    for (const tally of tallies) {
      Object.assign(tally, { durations: [], serverMicros: 0, clientMicros: 0 });
      tally.reads = await handlerReads(tally.pool);
    }
    const queries: number[] = [];
    for (let i = 0; i < ticks; i++) {
      for (const [n, tally] of tallies.entries()) {
        const server = pid === undefined ? 0 : cpuMicros(pid);
        const client = process.cpuUsage();
        const start = performance.now();
        queries[n] = await ticksOf[n]();
        tally.durations.push(performance.now() - start);
        const used = process.cpuUsage(client);
        tally.clientMicros += used.user + used.system;
        if (pid !== undefined) tally.serverMicros += cpuMicros(pid) - server;
      }
    }
    for (const [n, tally] of tallies.entries()) {
      const reads = ((await handlerReads(tally.pool)) - tally.reads - tally.showCost) / ticks;
      const sorted = tally.durations.toSorted((a, b) => a - b);
      const server = pid === undefined ? "n/a" : ms(tally.serverMicros / 1000 / ticks);
      lines.push(
        `| ${tableUnits} | ${type} | ${call} | ${count} | ${tally.strategy.name} | ${queries[n]} | ${
          ms(percentile(sorted, 0.5))
        } | ${ms(percentile(sorted, 0.99))} | ${server} | ${Math.round(reads)} | ${
          ms(tally.clientMicros / 1000 / ticks)
        } |`,
      );
    }
  }
  for (const { pool } of tallies) await pool.end();
  return lines;
}

/** EXPLAIN at 999 (unpadded) and 1,000 units, as `table:type:key:rows:Extra` steps. */
async function plans(url: string): Promise<string[]> {
  const pool = createPool(url);
  const lines = [
    "| table | strategy | call | units | plan (table:type:key:rows:Extra) |",
    "| --- | --- | --- | ---: | --- |",
  ];
  const cases: [string, UnitType, Strategy, number, Call][] = [
    ["tank_int", "int", exact, 999, "query"],
    ["tank_int", "int", padded, 1000, "query"],
    ["tank_int", "int", padded, 1000, "execute"],
    ["tank_int", "int", jsonTable, 1000, "query"],
    ["tank_int", "int", jsonTable, 1000, "execute"],
    ["tank_str", "string", exact, 999, "query"],
    ["tank_str", "string", padded, 1000, "query"],
    ["tank_str", "string", padded, 1000, "execute"],
    ["tank_str", "string", jsonTable, 1000, "query"],
    ["tank_latin1", "string", padded, 1000, "query"],
    ["tank_latin1", "string", padded, 1000, "execute"],
    ["tank_latin1", "string", jsonTable, 1000, "query"],
    ["tank_unicode", "string", padded, 1000, "query"],
    ["tank_unicode", "string", padded, 1000, "execute"],
    ["tank_unicode", "string", jsonTable, 1000, "query"],
    ["tank_wide_int", "int", exact, 999, "query"],
    ["tank_wide_int", "int", padded, 1000, "query"],
    ["tank_wide_int", "int", padded, 1000, "execute"],
    ["tank_wide_int", "int", jsonTable, 1000, "query"],
    ["tank_wide_str", "string", exact, 999, "query"],
    ["tank_wide_str", "string", padded, 1000, "query"],
    ["tank_wide_str", "string", padded, 1000, "execute"],
    ["tank_wide_str", "string", jsonTable, 1000, "query"],
  ];
  for (const [table, type, strategy, count, call] of cases) {
    const units = subscribedUnits(type, count, table.startsWith("tank_wide") ? WIDE_UNITS : TABLE_UNITS);
    const [statement] = strategy.plan(table, type, units);
    const explain = { sql: `EXPLAIN ${statement.sql}`, params: statement.params };
    let plan: string;
    try {
      const rows = call === "query"
        ? (await pool.query(explain.sql, explain.params))[0] as Row[]
        : (await pool.execute(explain.sql, explain.params))[0] as Row[];
      plan = rows.map((r) => `${r.table}:${r.type}:${r.key ?? "-"}:${r.rows}:${r.Extra ?? ""}`).join(" → ");
    } catch (error) {
      plan = describe(error);
    }
    lines.push(`| ${table} | ${strategy.name} | ${call} | ${count} | ${plan} |`);
  }
  await pool.end();
  return lines;
}

/** One tick on unit columns whose charset or collation is not the connection's. */
async function foreignCollations(url: string): Promise<string[]> {
  const pool = createPool(url);
  const lines = ["| unit column | strategy | call | units | one tick |", "| --- | --- | --- | ---: | --- |"];
  const cases: [string, Strategy, Call, number][] = [];
  for (const table of ["tank_latin1", "tank_unicode"]) {
    for (const count of [100, 1000]) {
      cases.push([table, padded, "query", count], [table, padded, "execute", count], [
        table,
        jsonTable,
        "query",
        count,
      ]);
    }
  }
  for (const [table, strategy, call, count] of cases) {
    let outcome: string;
    const start = performance.now();
    try {
      let rows = 0;
      for (const statement of strategy.plan(table, "string", subscribedUnits("string", count))) {
        rows += (await run(pool, call, statement)).length;
      }
      outcome = `${ms(performance.now() - start)} ms, ${rows} rows`;
    } catch (error) {
      outcome = `after ${ms(performance.now() - start)} ms: ${describe(error)}`;
    }
    const column = table === "tank_latin1" ? "latin1_swedish_ci" : "utf8mb4_unicode_ci";
    lines.push(`| ${column} | ${strategy.name} | ${call} | ${count} | ${outcome} |`);
  }
  await pool.end();
  return lines;
}

/** Prepared statements left after cycling 1..1,000 units through one connection. */
async function preparedStatements(url: string): Promise<string[]> {
  const lines = [
    "| strategy | call | Com_stmt_prepare (session) | mysql2 cache size | Prepared_stmt_count (global, shared server) | cycle s |",
    "| --- | --- | ---: | ---: | ---: | ---: |",
  ];
  const cases: [Strategy, Call][] = [[exact, "execute"], [padded, "execute"], [jsonTable, "execute"], [
    padded,
    "query",
  ]];
  for (const [strategy, call] of cases) {
    const pool = createPool(url);
    const before = (await status(pool, "SESSION", "Com_stmt_prepare")).get("Com_stmt_prepare")!;
    const start = performance.now();
    for (let count = 1; count <= 1000; count++) {
      // Units with no rows: only the statement texts matter here.
      const units = Array.from({ length: count }, (_, i) => `none-${i}`);
      for (const statement of strategy.plan("tank_none", "string", units)) await run(pool, call, statement);
    }
    const seconds = (performance.now() - start) / 1000;
    const prepared = (await status(pool, "SESSION", "Com_stmt_prepare")).get("Com_stmt_prepare")! - before;
    const conn = await pool.getConnection();
    const cache =
      (conn as unknown as { connection: { _statements: { size: number } } }).connection._statements.size;
    conn.release();
    const global = (await status(pool, "GLOBAL", "Prepared_stmt_count")).get("Prepared_stmt_count");
    lines.push(`| ${strategy.name} | ${call} | ${prepared} | ${cache} | ${global} | ${seconds.toFixed(1)} |`);
    await pool.end();
  }
  return lines;
}

/** How a handle query is made read-only, and what each way adds to the SELECT. */
interface ReadOnlyMode {
  name: string;
  /** Run once on a new pool connection (the pool's `connection` event). */
  onConnect?: string;
  /** Extra `SET STATEMENT` variables. */
  statementVariables?: string;
  /** Wrap the SELECT in `START TRANSACTION READ ONLY` ... `COMMIT`. */
  transaction?: boolean;
}

const READ_ONLY_MODES: ReadOnlyMode[] = [
  { name: "none (control)" },
  { name: "SET SESSION TRANSACTION READ ONLY on connect", onConnect: "SET SESSION TRANSACTION READ ONLY" },
  { name: "START TRANSACTION READ ONLY … COMMIT", transaction: true },
  { name: "SET STATEMENT tx_read_only=1 FOR", statementVariables: ", tx_read_only=1" },
];

function readOnlyPool(url: string, mode: ReadOnlyMode, options: Partial<mysql.PoolOptions> = {}): mysql.Pool {
  const pool = createPool(url, options);
  if (mode.onConnect) {
    const sql = mode.onConnect;
    pool.on("connection", (conn) => {
      // The SET is queued on the connection before the caller's first query.
      (conn as unknown as { query(sql: string, cb: (e: unknown) => void): void }).query(sql, (error) => {
        if (error) throw error;
      });
    });
  }
  return pool;
}

async function selectReadOnly(pool: mysql.Pool, mode: ReadOnlyMode, sql: string): Promise<Row[]> {
  const conn = await pool.getConnection();
  try {
    if (!mode.transaction) {
      return (await conn.query(withLimit(sql, mode.statementVariables ?? "")))[0] as Row[];
    }
    await conn.query("START TRANSACTION READ ONLY");
    try {
      const [rows] = await conn.query(withLimit(sql));
      await conn.query("COMMIT");
      return rows as Row[];
    } catch (error) {
      await conn.query("ROLLBACK");
      throw error;
    }
  } finally {
    conn.release();
  }
}

function describe(error: unknown): string {
  const e = error as { errno?: number; code?: string; sqlMessage?: string };
  return `${e.errno} ${e.code}: ${e.sqlMessage}`;
}

/** Does each mode stop a stored function called from the SELECT from writing to each engine? */
async function readOnlyWrites(url: string, admin: mysql.Pool): Promise<string[]> {
  const targets = ["innodb", "myisam", "memory", "temporary", "innodb, after SET SESSION tx_read_only=0"];
  for (const engine of ["InnoDB", "MyISAM", "MEMORY"]) {
    await admin.query(`CREATE TABLE ${DATABASE}.ro_${engine.toLowerCase()} (n INT) ENGINE=${engine}`);
  }
  const functions: [string, string][] = [
    ["write_innodb", "INSERT INTO ro_innodb VALUES (1)"],
    ["write_myisam", "INSERT INTO ro_myisam VALUES (1)"],
    ["write_memory", "INSERT INTO ro_memory VALUES (1)"],
    ["write_temporary", "INSERT INTO ro_temporary VALUES (1)"],
    ["escape_innodb", "SET SESSION tx_read_only = 0; INSERT INTO ro_innodb VALUES (1)"],
  ];
  for (const [name, body] of functions) {
    await admin.query(
      `CREATE FUNCTION ${DATABASE}.${name}() RETURNS INT MODIFIES SQL DATA BEGIN ${body}; RETURN 1; END`,
    );
  }
  const lines = [`| mode | ${targets.join(" | ")} |`, `| --- |${" --- |".repeat(targets.length)}`];
  for (const mode of READ_ONLY_MODES) {
    const cells: string[] = [];
    for (const [name] of functions) {
      const table = name === "escape_innodb" ? "ro_innodb" : `ro_${name.slice("write_".length)}`;
      const pool = readOnlyPool(url, mode);
      const conn = await pool.getConnection();
      let note = "";
      try {
        await conn.query("CREATE TEMPORARY TABLE ro_temporary (n INT)");
      } catch (error) {
        if (name === "write_temporary") note = `CREATE TEMPORARY TABLE fails: ${describe(error)}; `;
        await conn.query("SET SESSION TRANSACTION READ WRITE");
        await conn.query("CREATE TEMPORARY TABLE ro_temporary (n INT)");
        await conn.query(mode.onConnect!);
      }
      conn.release();
      let outcome: string;
      try {
        await selectReadOnly(pool, mode, `SELECT ${name}() AS w`);
        outcome = "no error";
      } catch (error) {
        outcome = describe(error);
      }
      const [counted] = await pool.query(`SELECT COUNT(*) AS n FROM ${table}`);
      const [after] = await pool.query("SELECT @@tx_read_only AS ro");
      await pool.end();
      const written = Number((counted as Row[])[0].n);
      const left = mode.onConnect ? `; session tx_read_only after: ${(after as Row[])[0].ro}` : "";
      cells.push(`${note}${outcome}; rows written: ${written}${left}`);
      if (table !== "ro_temporary") await admin.query(`DELETE FROM ${DATABASE}.${table}`);
    }
    lines.push(`| ${mode.name} | ${cells.join(" | ")} |`);
  }
  return lines;
}

/** Whether the session setting survives pooled reuse, and the cost of each mode per query. */
async function readOnlyCost(url: string): Promise<string[]> {
  const lines: string[] = [];
  for (const resetOnRelease of [false, true]) {
    const mode = READ_ONLY_MODES[1];
    const pool = readOnlyPool(url, mode, { connectionLimit: 2, resetOnRelease });
    const seen: string[] = [];
    for (let round = 0; round < 3; round++) {
      const conns = await Promise.all([pool.getConnection(), pool.getConnection()]);
      for (const conn of conns) {
        const [rows] = await conn.query("SELECT CONNECTION_ID() AS id, @@tx_read_only AS ro");
        seen.push(`${(rows as Row[])[0].id}:${(rows as Row[])[0].ro}`);
        conn.release();
      }
    }
    await pool.end();
    lines.push(
      `- pool 'connection' event + resetOnRelease=${resetOnRelease}: connection:tx_read_only per use ${
        seen.join(" ")
      }`,
    );
  }
  lines.push(
    "",
    "| mode (1-unit SELECT, query) | p50 ms | p99 ms | statements sent per SELECT (Questions) |",
    "| --- | ---: | ---: | ---: |",
  );
  const [statement] = padded.plan("tank_int", "int", subscribedUnits("int", 1));
  for (const mode of READ_ONLY_MODES) {
    const pool = readOnlyPool(url, mode);
    const select = `SELECT ${RESULT_COLUMNS} FROM tank_int WHERE unit IN (${statement.params[0]})`;
    for (let i = 0; i < 10; i++) await selectReadOnly(pool, mode, select);
    const questions = async () => (await status(pool, "SESSION", "Questions")).get("Questions")!;
    const showCost = -(await questions()) + (await questions());
    const q0 = await questions();
    const durations: number[] = [];
    const ticks = 300;
    for (let i = 0; i < ticks; i++) {
      const start = performance.now();
      await selectReadOnly(pool, mode, select);
      durations.push(performance.now() - start);
    }
    const sent = ((await questions()) - q0 - showCost) / ticks;
    durations.sort((a, b) => a - b);
    lines.push(
      `| ${mode.name} | ${ms(percentile(durations, 0.5))} | ${ms(percentile(durations, 0.99))} | ${
        sent.toFixed(1)
      } |`,
    );
    await pool.end();
  }
  return lines;
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    args: Deno.args,
    options: { "mysql-url": { type: "string", default: "mysql://root:@127.0.0.1:3306" } },
  });
  const url = values["mysql-url"]!;
  const admin = createPool(url, { database: undefined, connectionLimit: 2 });
  const started = performance.now();
  try {
    await createPlant(admin);
    const [version] = await admin.query("SELECT VERSION() AS v, @@in_predicate_conversion_threshold AS t");
    const pid = await serverPid(admin);
    const v = (version as Row[])[0];
    console.log(
      `# Unit lists: ${v.v}, in_predicate_conversion_threshold=${v.t}, ${TABLE_UNITS} units x ${ROWS_PER_UNIT} rows\n`,
    );
    console.log("## Time per tick\n");
    console.log((await timings(url, pid)).join("\n"));
    console.log("\n## Plans\n");
    console.log((await plans(url)).join("\n"));
    console.log("\n## Unit column in another charset or collation than the connection's\n");
    console.log((await foreignCollations(url)).join("\n"));
    console.log("\n## Prepared statements after cycling 1..1,000 units on one connection\n");
    console.log((await preparedStatements(url)).join("\n"));
    console.log("\n## Read only: a stored function called from the SELECT writes one row\n");
    console.log((await readOnlyWrites(url, admin)).join("\n"));
    console.log("\n## Read only: pooled reuse and cost\n");
    console.log((await readOnlyCost(url)).join("\n"));
  } finally {
    await admin.query(`DROP DATABASE IF EXISTS ${DATABASE}`);
    await admin.end();
    console.log(`\n(${((performance.now() - started) / 1000).toFixed(0)} s)`);
  }
}

if (import.meta.main) await main();
