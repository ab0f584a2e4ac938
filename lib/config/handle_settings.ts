/**
 * The `handles` section of the configuration: live topics over any SELECT an operator writes.
 * Each handle's SQL text is checked at start by one small scanner that reads it as MySQL and
 * MariaDB do (quotes, comments, placeholders), so that a handle can only ever be one read-only
 * statement whose `:units` placeholder is expanded to bound parameters, never spliced. Pure, no I/O.
 */

import { ConfigError, expectInt, expectObject, expectString } from "./config.ts";
import { describe, HANDLE_PATTERN } from "./names.ts";
import type { UnitType } from "./unit.ts";

/** One validated `handles.<name>` entry, defaults filled in. */
export interface HandleSettings {
  /** The handle's name, the middle part of its topics. */
  readonly name: string;
  /** One SELECT (or WITH … SELECT), with `:units` exactly when {@link unit} is set. */
  readonly sql: string;
  /** The result column naming a row's unit; absent: one topic per database, `<db>/<name>`. */
  readonly unit: string | undefined;
  /** The grammar of the units: `int` (the default with `unit`), `string`, or `none` exactly when `unit` is absent. */
  readonly unitType: UnitType;
  /** The result columns that identify a row within its unit, distinct, at least one. */
  readonly key: readonly string[];
  /** The database codes the handle is offered on; absent: all of them. */
  readonly databases: readonly string[] | undefined;
  /** This handle's own poll interval in milliseconds; absent: the top-level `pollIntervalMs`. */
  readonly pollIntervalMs: number | undefined;
  /** Rows a unit may have before its topic turns `stale` (`TOO_MANY_ROWS`), default 10000. */
  readonly maxRowsPerUnit: number;
  /** The tables its SQL reads (`table` in the database's schema, or `schema.table`): a binlog change to one wakes it; absent: never woken, only polled. */
  readonly tables?: readonly string[];
}

/** The placeholder that stands for the subscribed units. */
export const UNITS_PLACEHOLDER = ":units";

/** What a piece of SQL text is, to the server's lexer. */
export type SqlTokenKind =
  | "word"
  | "quoted"
  | "comment"
  | "space"
  | "placeholder"
  | "semicolon"
  | "symbol";

/** One piece of SQL text; the tokens of a text, joined, give it back unchanged. */
export interface SqlToken {
  /** What the piece is: a keyword or bare name, a quoted string or name, a comment, a placeholder… */
  readonly kind: SqlTokenKind;
  /** The piece itself, quotes and comment markers included. */
  readonly text: string;
  /** Its offset in the text, from 0. */
  readonly start: number;
}

/** A handle's SQL text is not accepted; {@link parseHandles} reports it at `handles.<name>.sql`. */
export class SqlTextError extends Error {
  override name = "SqlTextError";
}

const HANDLE_KEYS = [
  "sql",
  "unit",
  "unitType",
  "key",
  "databases",
  "pollIntervalMs",
  "maxRowsPerUnit",
  "tables",
];
/** A table name, optionally behind its schema: unquoted identifiers, as binlog events name them. */
const TABLE_PATTERN = /^[A-Za-z0-9_$]{1,64}(\.[A-Za-z0-9_$]{1,64})?$/;
/** Names taken by built-in handles. */
const RESERVED = new Set(["real"]);
const DEFAULT_MAX_ROWS_PER_UNIT = 10_000;

/**
 * Validates the `handles` section and fills in defaults.
 *
 * @param value the section as parsed from JSON (`{}` when absent)
 * @param databaseCodes the configured database codes, which `handles.<name>.databases` may name
 * @example
 * ```ts
 * const handles = parseHandles({
 *   alarms: { sql: "SELECT id, message FROM alarm WHERE cleared_at IS NULL", key: ["id"] },
 * }, ["plant1"]);
 * handles.alarms.unitType; // "none"
 * ```
 * @throws {ConfigError} naming `handles.<name>.<field>` and what is accepted.
 */
export function parseHandles(
  value: unknown,
  databaseCodes: readonly string[],
): Record<string, HandleSettings> {
  const section = expectObject("handles", value);
  const handles: Record<string, HandleSettings> = {};
  for (const [name, raw] of Object.entries(section)) {
    const path = `handles.${name}`;
    if (!HANDLE_PATTERN.test(name)) {
      throw new ConfigError(path, "a handle name must match [a-z][a-z0-9_]{0,31}");
    }
    if (RESERVED.has(name)) {
      throw new ConfigError(path, `"${name}" is reserved for the built-in handle; choose another name`);
    }
    handles[name] = parseHandle(path, name, expectObject(path, raw, HANDLE_KEYS), databaseCodes);
  }
  return handles;
}

function parseHandle(
  path: string,
  name: string,
  handle: Record<string, unknown>,
  databaseCodes: readonly string[],
): HandleSettings {
  if (handle.sql === undefined) {
    throw new ConfigError(`${path}.sql`, "is required: one SELECT (or WITH … SELECT) statement");
  }
  const sql = expectString(`${path}.sql`, handle.sql);
  const unit = handle.unit === undefined ? undefined : expectString(`${path}.unit`, handle.unit);
  try {
    checkHandleSql(sql, unit !== undefined);
  } catch (error) {
    if (error instanceof SqlTextError) throw new ConfigError(`${path}.sql`, error.message);
    throw error;
  }
  if (handle.key === undefined) {
    throw new ConfigError(
      `${path}.key`,
      "is required: a non-empty array of the result columns that identify a row within its unit",
    );
  }
  return {
    name,
    sql,
    unit,
    unitType: parseUnitType(path, handle.unitType, unit),
    key: distinctStrings(`${path}.key`, handle.key, "column names"),
    databases: handle.databases === undefined
      ? undefined
      : parseDatabaseCodes(`${path}.databases`, handle.databases, databaseCodes),
    pollIntervalMs: handle.pollIntervalMs === undefined
      ? undefined
      : expectInt(`${path}.pollIntervalMs`, handle.pollIntervalMs, 50, 3_600_000),
    maxRowsPerUnit: handle.maxRowsPerUnit === undefined
      ? DEFAULT_MAX_ROWS_PER_UNIT
      : expectInt(`${path}.maxRowsPerUnit`, handle.maxRowsPerUnit, 1, 1_000_000),
    ...(handle.tables === undefined ? {} : { tables: parseTables(`${path}.tables`, handle.tables) }),
  };
}

function parseTables(path: string, value: unknown): string[] {
  const tables = distinctStrings(path, value, "table names");
  tables.forEach((table, i) => {
    if (!TABLE_PATTERN.test(table)) {
      throw new ConfigError(
        `${path}[${i}]`,
        `expected a table name like "tank_level" or "plant1.tank_level" ([A-Za-z0-9_$]{1,64}, optionally schema.table), got ${
          describe(table)
        }`,
      );
    }
  });
  return tables;
}

function parseUnitType(path: string, value: unknown, unit: string | undefined): UnitType {
  if (unit === undefined) {
    if (value !== undefined) {
      throw new ConfigError(
        `${path}.unitType`,
        "is only used with unit (a handle without unit has one topic per database)",
      );
    }
    return "none";
  }
  if (value === undefined) return "int";
  if (value === "int" || value === "string") return value;
  throw new ConfigError(`${path}.unitType`, `expected one of int, string, got ${describe(value)}`);
}

function distinctStrings(path: string, value: unknown, what: string): string[] {
  if (!Array.isArray(value) || value.length === 0) {
    const got = Array.isArray(value) ? "an empty array" : describe(value);
    throw new ConfigError(path, `expected a non-empty array of ${what}, got ${got}`);
  }
  return value.map((item, i) => {
    const text = expectString(`${path}[${i}]`, item);
    if (value.indexOf(item) !== i) {
      throw new ConfigError(`${path}[${i}]`, `${describe(text)} is listed twice`);
    }
    return text;
  });
}

function parseDatabaseCodes(path: string, value: unknown, databaseCodes: readonly string[]): string[] {
  const codes = distinctStrings(path, value, "database codes");
  codes.forEach((code, i) => {
    if (!databaseCodes.includes(code)) {
      const configured = databaseCodes.length === 0
        ? "none is configured"
        : `configured: ${databaseCodes.join(", ")}`;
      throw new ConfigError(`${path}[${i}]`, `${describe(code)} is not a configured database; ${configured}`);
    }
  });
  return codes;
}

/**
 * Splits SQL text into tokens the way MySQL and MariaDB read it: `'…'` and `"…"` strings (with
 * backslash and doubled-quote escapes), `` `…` `` names (doubled backticks), `-- ` (a dash pair
 * followed by a space, a control character or the end), `#` and `/* … *\/` comments (which do not
 * nest), the placeholders `?` and `:name`, `;`, words (keywords and bare names), and single
 * symbols. Every check of a handle's SQL and {@link expandUnits} walk these tokens, so that
 * nothing inside a quote or a comment is ever taken for code.
 *
 * @example
 * ```ts
 * scanSql("SELECT ';' -- :units").map((t) => t.kind);
 * // ["word", "space", "quoted", "space", "comment"]
 * ```
 * @throws {SqlTextError} for a quote or a `/*` comment left open.
 */
export function scanSql(sql: string): SqlToken[] {
  const tokens: SqlToken[] = [];
  let at = 0;
  const push = (kind: SqlTokenKind, end: number) => {
    tokens.push({ kind, text: sql.slice(at, end), start: at });
    at = end;
  };
  while (at < sql.length) {
    const c = sql[at];
    const next = sql[at + 1];
    if (isSpace(c)) push("space", spanWhile(sql, at, isSpace));
    else if (c === "'" || c === '"' || c === "`") push("quoted", quoteEnd(sql, at));
    else if (c === "#" || (c === "-" && next === "-" && isLineCommentStart(sql[at + 2]))) {
      const newline = sql.indexOf("\n", at);
      push("comment", newline < 0 ? sql.length : newline);
    } else if (c === "/" && next === "*") {
      const close = sql.indexOf("*/", at + 2);
      if (close < 0) throw new SqlTextError(`has a /* comment left open at character ${at + 1}`);
      push("comment", close + 2);
    } else if (c === "?") push("placeholder", at + 1);
    else if (c === ":" && next !== undefined && isNameStart(next)) {
      push("placeholder", spanWhile(sql, at + 1, isWordChar));
    } else if (c === ";") push("semicolon", at + 1);
    else if (isWordChar(c)) push("word", spanWhile(sql, at, isWordChar));
    else push("symbol", at + 1);
  }
  return tokens;
}

function isSpace(c: string): boolean {
  return c === " " || c === "\t" || c === "\n" || c === "\r" || c === "\f" || c === "\v";
}

/** MySQL's `--` starts a comment only before a space or a control character (`1--1` is arithmetic). */
function isLineCommentStart(c: string | undefined): boolean {
  return c === undefined || c.charCodeAt(0) <= 0x20 || c.charCodeAt(0) === 0x7f;
}

function isNameStart(c: string): boolean {
  return /[A-Za-z_]/.test(c);
}

/** Bare names take letters, digits, `_`, `$` and any character beyond ASCII. */
function isWordChar(c: string): boolean {
  return /[A-Za-z0-9_$]/.test(c) || c.charCodeAt(0) >= 0x80;
}

function spanWhile(sql: string, from: number, test: (c: string) => boolean): number {
  let end = from;
  while (end < sql.length && test(sql[end])) end++;
  return end;
}

/** The end of the quote opened at `start`: a doubled quote stays inside, so does a backslash's next character except in backticks. */
function quoteEnd(sql: string, start: number): number {
  const quote = sql[start];
  let at = start + 1;
  while (at < sql.length) {
    const c = sql[at];
    if (c === "\\" && quote !== "`") at += 2;
    else if (c !== quote) at++;
    else if (sql[at + 1] === quote) at += 2;
    else return at + 1;
  }
  throw new SqlTextError(`has a ${quote} quote left open at character ${start + 1}`);
}

/** Tokens the server reads as code: neither spaces nor comments. */
function codeOf(tokens: readonly SqlToken[]): SqlToken[] {
  return tokens.filter((token) => token.kind !== "space" && token.kind !== "comment");
}

/** The upper-case keyword each code token is, `undefined` for non-words and a name after `.` (`t.update`). */
function keywordsOf(code: readonly SqlToken[]): (string | undefined)[] {
  return code.map((token, i) =>
    token.kind === "word" && code[i - 1]?.text !== "." ? token.text.toUpperCase() : undefined
  );
}

/** Keywords that begin a statement, which a WITH leads to. */
const STATEMENT_KEYWORDS = new Set(["SELECT", "UPDATE", "DELETE", "INSERT", "REPLACE", "TABLE", "VALUES"]);

/**
 * Checks that a handle's SQL text is one read-only SELECT (or WITH … SELECT) with `:units`
 * exactly when the handle has a unit, and no other placeholder.
 *
 * @example
 * ```ts
 * checkHandleSql("SELECT site, level FROM tank WHERE site IN (:units)", true); // passes
 * ```
 * @throws {SqlTextError} saying what is wrong and what is accepted.
 */
export function checkHandleSql(sql: string, hasUnit: boolean): void {
  const tokens = scanSql(sql);
  for (const token of tokens) {
    if (token.kind === "comment" && /^\/\*M?!/.test(token.text)) {
      throw new SqlTextError(
        `has an executable comment /*! … */ at character ${token.start + 1}, which the server runs: ` +
          "write its SQL plainly",
      );
    }
    if (token.kind === "semicolon") {
      throw new SqlTextError(`must be one statement without \`;\` (found at character ${token.start + 1})`);
    }
  }
  const code = codeOf(tokens);
  checkStatement(code);
  checkReadsOnly(code);
  checkPlaceholders(code, hasUnit);
}

/** One SELECT, or a WITH whose common table expressions lead to SELECT; leading `(` allowed. */
function checkStatement(code: readonly SqlToken[]): void {
  const keywords = keywordsOf(code);
  let first = 0;
  while (code[first]?.text === "(") first++;
  if (first === code.length) {
    throw new SqlTextError("holds no statement: expected one SELECT (or WITH … SELECT)");
  }
  if (keywords[first] === "SELECT") return;
  if (keywords[first] !== "WITH") {
    throw new SqlTextError(
      `expected one SELECT (or WITH … SELECT) statement, got one starting with ${describe(code[first].text)}`,
    );
  }
  // Common table expressions are names, AS and parenthesised queries: the first statement
  // keyword outside their parentheses is the statement's own (a CTE name cannot be a bare keyword).
  let depth = 0;
  for (let i = first + 1; i < code.length && depth >= 0; i++) {
    if (code[i].text === "(") depth++;
    else if (code[i].text === ")") depth--;
    else if (depth === 0 && STATEMENT_KEYWORDS.has(keywords[i] ?? "")) {
      if (keywords[i] === "SELECT") return;
      throw new SqlTextError(`a WITH must lead to SELECT, got ${keywords[i]}: a handle only reads rows`);
    }
  }
  throw new SqlTextError("a WITH must lead to SELECT after its common table expressions");
}

/** No `INTO` (files, variables) and no locking reads, at any depth. */
function checkReadsOnly(code: readonly SqlToken[]): void {
  const keywords = keywordsOf(code);
  keywords.forEach((keyword, i) => {
    const next = keywords[i + 1];
    if (keyword === "INTO") {
      throw new SqlTextError(
        "SELECT … INTO (OUTFILE, DUMPFILE or variables) is not accepted: a handle only reads rows",
      );
    }
    const locking = keyword === "FOR" && (next === "UPDATE" || next === "SHARE")
      ? `FOR ${next}`
      : keyword === "LOCK" && next === "IN" && keywords[i + 2] === "SHARE" && keywords[i + 3] === "MODE"
      ? "LOCK IN SHARE MODE"
      : undefined;
    if (locking) {
      throw new SqlTextError(`${locking} (a locking read) is not accepted: a handle only reads rows`);
    }
  });
}

function checkPlaceholders(code: readonly SqlToken[], hasUnit: boolean): void {
  let units = 0;
  for (const token of code) {
    if (token.kind !== "placeholder") continue;
    if (token.text !== UNITS_PLACEHOLDER) {
      throw new SqlTextError(
        `placeholder ${token.text} at character ${token.start + 1} is not accepted: ` +
          "the only placeholder is :units (the subscribed units)",
      );
    }
    units++;
  }
  if (hasUnit && units === 0) {
    throw new SqlTextError(
      "must use :units for the subscribed units (as in WHERE site IN (:units)), since unit is set",
    );
  }
  if (!hasUnit && units > 0) {
    throw new SqlTextError(
      "uses :units but the handle has no unit: set unit to the column naming a row's unit, or remove :units",
    );
  }
}

/**
 * How many times `:units` occurs outside quotes and comments: the handle binds its unit list
 * once per occurrence.
 *
 * @example
 * ```ts
 * unitsPlaceholderCount("SELECT * FROM t WHERE a IN (:units) OR b IN (:units) -- :units"); // 2
 * ```
 * @throws {SqlTextError} for a quote or comment left open.
 */
export function unitsPlaceholderCount(sql: string): number {
  return scanSql(sql).filter((token) => token.kind === "placeholder" && token.text === UNITS_PLACEHOLDER)
    .length;
}

/**
 * The SQL text with every `:units` outside quotes and comments replaced by `count` bound
 * parameters, `?, ?, …`; everything else is left exactly as written.
 *
 * @example
 * ```ts
 * expandUnits("SELECT * FROM tank WHERE site IN (:units) AND note <> ':units'", 3);
 * // "SELECT * FROM tank WHERE site IN (?, ?, ?) AND note <> ':units'"
 * ```
 * @throws {RangeError} when `count` is not a positive integer (`IN ()` is not SQL).
 * @throws {SqlTextError} for a quote or comment left open.
 */
export function expandUnits(sql: string, count: number): string {
  if (!Number.isInteger(count) || count < 1) {
    throw new RangeError(`expandUnits needs at least one unit, got ${count}`);
  }
  const list = Array(count).fill("?").join(", ");
  return scanSql(sql).map((token) =>
    token.kind === "placeholder" && token.text === UNITS_PLACEHOLDER ? list : token.text
  ).join("");
}
