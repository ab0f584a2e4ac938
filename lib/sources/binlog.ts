/**
 * Following one MySQL/MariaDB database's binlog as a replica (`npm:@vlasky/zongji`), to learn
 * at once which tables changed. It only ever says "these tables changed": the poll stays the
 * source of truth, so a stream that breaks is restarted from the end and never replayed.
 *
 * At start, the server's settings (`log_bin`, `binlog_format=ROW`) and the user's grants
 * (REPLICATION SLAVE, REPLICATION CLIENT) are checked; a missing one turns the follower off
 * with one log line naming it, and the database is polled as without binlog. A broken stream
 * (an `error`, or no heartbeat for three periods: a stalled server is silent otherwise) is
 * logged and retried with the database's backoff; polling goes on meanwhile.
 */

import ZongJi, { type AnyBinlogEvent, type RowsEvent } from "@vlasky/zongji";
import mysql from "mysql2";
import type { MysqlSettings } from "../config/config.ts";
import { RetryBackoff } from "../ops/backoff.ts";
import type { Logger } from "../ops/log.ts";

/** What a follower is doing, as `/healthz` shows it: `following`, `off: <reason>`, `retrying: <error>`, `starting`. */
export type BinlogStatus = "starting" | "following" | `off: ${string}` | `retrying: ${string}`;

/** Options of a {@link BinlogFollower}. */
export interface BinlogFollowerOptions {
  /** The database code, for logs. */
  readonly db: string;
  /** Where the database is; its user needs the replication grants. */
  readonly settings: MysqlSettings;
  /** The replica server id (`databases.<code>.binlog.serverId`). */
  readonly serverId: number;
  /** The tables to watch, `schema.table`; events of other tables are filtered by zongji. */
  readonly tables: readonly string[];
  /**
   * Called with `schema.table` (as the binlog names it) for each row event of a watched table
   * (`again` false), and once more {@link settleMs} after the last one of a burst (`again` true).
   */
  readonly onChange: (table: string, again: boolean) => void;
  /** Where the follower's start, failures and recoveries are logged. */
  readonly logger: Logger;
  /** The database's poll interval: the first retry delay. */
  readonly retryIntervalMs: number;
  /** The database's longest retry delay. */
  readonly retryMaxMs: number;
  /** The replication heartbeat period; the stream counts as broken after three silent ones. Default 1000 ms. */
  readonly heartbeatMs?: number;
  /**
   * Delay of the second call of `onChange`, default 50 ms. The server sends a transaction's
   * events once it is in the binlog, which may be just before its commit is visible to other
   * sessions: a poll at once can still read the old rows, the second one reads the new.
   */
  readonly settleMs?: number;
}

/** Settings a server needs for row events; `binlog_row_metadata` only exists on newer servers. */
const SETTINGS_QUERY =
  "SHOW GLOBAL VARIABLES WHERE Variable_name IN ('log_bin', 'binlog_format', 'binlog_row_metadata')";
const ROW_EVENTS = ["writerows", "updaterows", "deleterows"];
/**
 * Events that only prove the stream alive: a server busy with other tables sends no heartbeat,
 * and zongji drops those tables' row events before they reach us; commits pass its schema filter.
 */
const LIFE_EVENTS = ["xid", "query", "heartbeat"];

/**
 * What keeps a server or user from serving row events, from `SHOW GLOBAL VARIABLES` and
 * `SHOW GRANTS` rows; empty when nothing does. Pure, no I/O.
 *
 * @example
 * ```ts
 * binlogProblems({ log_bin: "OFF" }, ["GRANT SELECT ON `plant1`.* TO `u`@`%`"]);
 * // ["log_bin is OFF (start the server with --log-bin)", "missing grant REPLICATION SLAVE ON *.*", …]
 * ```
 */
export function binlogProblems(
  variables: Readonly<Record<string, string>>,
  grants: readonly string[],
): string[] {
  const problems: string[] = [];
  if (variables.log_bin !== "ON") {
    problems.push(`log_bin is ${variables.log_bin ?? "missing"} (start the server with --log-bin)`);
  } else if (variables.binlog_format !== "ROW") {
    problems.push(`binlog_format is ${variables.binlog_format ?? "missing"} (set binlog_format=ROW)`);
  }
  // SHOW GRANTS lists the user's own grants and those of its default role.
  const global = new Set<string>();
  for (const line of grants) {
    const match = /^GRANT (.+?) ON \*\.\* TO /.exec(line);
    if (match) { for (const privilege of match[1].split(",")) global.add(privilege.trim().toUpperCase()); }
  }
  const has = (...any: string[]) => global.has("ALL PRIVILEGES") || any.some((p) => global.has(p));
  if (!has("REPLICATION SLAVE")) problems.push("missing grant REPLICATION SLAVE ON *.*");
  // MariaDB >= 10.5 shows REPLICATION CLIENT as BINLOG MONITOR; SHOW BINARY LOGS also takes SUPER.
  if (!has("REPLICATION CLIENT", "BINLOG MONITOR", "SUPER")) {
    problems.push("missing grant REPLICATION CLIENT ON *.* (BINLOG MONITOR on MariaDB >= 10.5)");
  }
  return problems;
}

/**
 * `includeSchema` for zongji: the watched tables by schema.
 *
 * @example
 * ```ts
 * includeSchema(["plant1.tank", "plant1.alarm"]); // { plant1: ["tank", "alarm"] }
 * ```
 */
export function includeSchema(tables: readonly string[]): Record<string, string[]> {
  const schemas: Record<string, string[]> = {};
  for (const table of tables) {
    const dot = table.indexOf(".");
    (schemas[table.slice(0, dot)] ??= []).push(table.slice(dot + 1));
  }
  return schemas;
}

/**
 * Follows one database's binlog from its end and reports row events of the watched tables.
 *
 * @example
 * ```ts
 * const follower = new BinlogFollower({
 *   db: "plant1", settings, serverId: 4242, tables: ["plant1.tank_level"],
 *   onChange: (table) => console.log(table, "changed"), logger,
 *   retryIntervalMs: 1000, retryMaxMs: 2000,
 * });
 * follower.start();
 * await follower.stop();
 * ```
 */
export class BinlogFollower {
  private state: BinlogStatus = "starting";
  /** The control connection: a pool survives `wait_timeout` closing an idle connection. */
  private readonly pool: mysql.Pool;
  private readonly backoff: RetryBackoff;
  private readonly heartbeatMs: number;
  private readonly settleMs: number;
  /** The second call of `onChange` due per table. */
  private readonly settling = new Map<string, ReturnType<typeof setTimeout>>();
  private zongji: ZongJi | undefined;
  private retryTimer: ReturnType<typeof setTimeout> | undefined;
  private watchdog: ReturnType<typeof setInterval> | undefined;
  private lastHeard = 0;
  /** When the current attempt (check or stream) started, ms since the epoch. */
  private attemptAt = 0;
  /** The start-up check passed: retries restart the stream only. */
  private checked = false;
  private stopped = false;
  private checking: Promise<void> | undefined;

  /** @param options see {@link BinlogFollowerOptions} */
  constructor(private readonly options: BinlogFollowerOptions) {
    const { settings } = options;
    this.pool = mysql.createPool({
      host: settings.host,
      port: settings.port,
      user: settings.user,
      password: settings.password,
      connectionLimit: 1,
      connectTimeout: 5000,
      enableKeepAlive: true,
    });
    // Errors of an idle pooled connection (a server restart); queries report their own.
    this.pool.on("connection", (conn) => conn.on("error", () => {}));
    this.backoff = new RetryBackoff(options.retryIntervalMs, options.retryMaxMs);
    this.heartbeatMs = options.heartbeatMs ?? 1000;
    this.settleMs = options.settleMs ?? 50;
  }

  /** `following`, `off: <reason>`, `retrying: <error>` or `starting`. */
  get status(): BinlogStatus {
    return this.state;
  }

  /** Checks the server and the grants, then follows the binlog from its end. */
  start(): void {
    this.checking ??= this.check();
  }

  /** Stops following and closes the connections. */
  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.retryTimer);
    for (const timer of this.settling.values()) clearTimeout(timer);
    this.settling.clear();
    await this.checking;
    await this.halt();
    await new Promise<void>((resolve) => this.pool.end(() => resolve()));
  }

  private async check(): Promise<void> {
    const { db, logger } = this.options;
    this.attemptAt = Date.now();
    let problems: string[];
    try {
      const [variables] = await this.pool.promise().query(SETTINGS_QUERY) as unknown as [
        { Variable_name: string; Value: string }[],
      ];
      const [grants] = await this.pool.promise().query("SHOW GRANTS") as unknown as [
        Record<string, string>[],
      ];
      problems = binlogProblems(
        Object.fromEntries(variables.map((row) => [row.Variable_name, row.Value])),
        grants.map((row) => String(Object.values(row)[0])),
      );
    } catch (error) {
      // The database does not answer now: not a missing setting; try again later.
      if (!this.stopped) this.broken(undefined, error);
      return;
    }
    if (problems.length > 0) {
      this.state = `off: ${problems.join("; ")}`;
      logger.warn("binlog off: the database is polled as without binlog", {
        db,
        reason: problems.join("; "),
      });
      return;
    }
    this.checked = true;
    if (!this.stopped) this.follow();
  }

  private follow(): void {
    const { serverId, tables } = this.options;
    const zongji = new ZongJi(this.pool);
    this.zongji = zongji;
    this.attemptAt = Date.now();
    this.lastHeard = performance.now();
    zongji.on("ready", () => {
      if (this.zongji !== zongji) return;
      // Queued on the binlog connection before zongji's dump command: the server then sends a
      // heartbeat whenever the stream idles that long (the period is in nanoseconds).
      zongji.connection?.query(`SET @master_heartbeat_period = ${this.heartbeatMs * 1_000_000}`, () => {});
    });
    zongji.on("binlog", (event: AnyBinlogEvent) => this.heard(zongji, event));
    zongji.on("error", (error: Error) => this.broken(zongji, error));
    zongji.start({
      serverId,
      startAtEnd: true,
      includeEvents: ["tablemap", ...ROW_EVENTS, ...LIFE_EVENTS],
      includeSchema: includeSchema(tables),
    });
    this.watchdog = setInterval(() => {
      const quiet = performance.now() - this.lastHeard;
      if (quiet > 3 * this.heartbeatMs + 2000) {
        this.broken(zongji, new Error(`no binlog event or heartbeat for ${(quiet / 1000).toFixed(1)} s`));
      }
    }, this.heartbeatMs);
  }

  private heard(zongji: ZongJi, event: AnyBinlogEvent): void {
    if (this.zongji !== zongji) return;
    this.lastHeard = performance.now();
    if (this.state !== "following") {
      // The first heartbeat or event: the dump runs.
      if (this.state !== "starting") {
        this.options.logger.info("binlog following again", { db: this.options.db });
      }
      this.state = "following";
      this.backoff.succeeded();
    }
    const name = event.getEventName();
    if (!ROW_EVENTS.includes(name)) return;
    const rows = event as RowsEvent;
    const table = rows.tableMap[rows.tableId];
    if (table) this.changed(`${table.parentSchema}.${table.tableName}`);
  }

  private changed(table: string): void {
    this.options.onChange(table, false);
    clearTimeout(this.settling.get(table));
    this.settling.set(
      table,
      setTimeout(() => {
        this.settling.delete(table);
        if (!this.stopped) this.options.onChange(table, true);
      }, this.settleMs),
    );
  }

  /** The stream (or the check) failed: stop, log, retry from the end after the backoff. */
  private broken(zongji: ZongJi | undefined, error: unknown): void {
    // Two errors arrive per break (the connection's and the command's): the first one counts.
    if (zongji !== this.zongji || this.stopped) return;
    const message = error instanceof Error
      ? error.message || String((error as { code?: string }).code)
      : String(error);
    void this.halt();
    const delay = this.backoff.failed(this.attemptAt);
    // Logged once per outage, like a failing database; the recovery is logged too.
    if (!this.state.startsWith("retrying")) {
      this.options.logger.warn("binlog stream broken; polling goes on, retrying from the end", {
        db: this.options.db,
        error: message,
        retryMs: delay,
      });
    }
    this.state = `retrying: ${message}`;
    this.retryTimer = setTimeout(() => {
      this.retryTimer = undefined;
      if (this.stopped) return;
      if (this.checked) this.follow();
      else this.checking = this.check();
    }, delay);
  }

  private async halt(): Promise<void> {
    clearInterval(this.watchdog);
    this.watchdog = undefined;
    const zongji = this.zongji;
    this.zongji = undefined;
    if (!zongji) return;
    await new Promise<void>((resolve) => {
      zongji.once("stopped", () => resolve());
      zongji.stop();
    });
  }
}
