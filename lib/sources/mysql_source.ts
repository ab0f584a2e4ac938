/**
 * A {@link Source} over a MySQL or MariaDB server through a `mysql2` pool.
 *
 * Every query carries a server-side time limit (MariaDB `SET STATEMENT max_statement_time`,
 * MySQL `MAX_EXECUTION_TIME`), because a mysql2 client-side timeout alone leaves the query
 * running on the server. A connection whose query timed out on the client is destroyed, not
 * returned to the pool, since its command queue is still blocked behind that query.
 *
 * Every query is read-only whatever the login may do: on MariaDB the same `SET STATEMENT` sets
 * `tx_read_only=1` (no round trip, nothing left on the pooled connection); MySQL has no
 * `SET STATEMENT`, so each new connection is made read-only for its session. A write, even from
 * a stored function the SELECT calls, fails with error 1792.
 */

import mysql from "mysql2/promise";
import type { MysqlSettings } from "../config/config.ts";
import { type Row, type SelectOptions, type Source, SourceError, type SqlParam } from "./source.ts";

/** Extra time the client waits past the server-side limit before giving up on the connection. */
const CLIENT_GRACE_MS = 1000;

/** Reads one configured MySQL/MariaDB database. */
export class MysqlSource implements Source {
  private readonly pool: mysql.Pool;
  private closed = false;

  /**
   * @param code the database code
   * @param settings connection settings
   * @param queryTimeoutMs the longest a query may run, enforced by the server
   */
  constructor(readonly code: string, settings: MysqlSettings, private readonly queryTimeoutMs: number) {
    this.pool = mysql.createPool({
      host: settings.host,
      port: settings.port,
      user: settings.user,
      password: settings.password,
      database: settings.database,
      connectionLimit: settings.connectionLimit,
      maxIdle: settings.connectionLimit,
      queueLimit: 100,
      connectTimeout: Math.max(queryTimeoutMs, 1000),
      enableKeepAlive: true,
      dateStrings: true,
      decimalNumbers: true,
      supportBigNumbers: true,
      charset: "utf8mb4",
    });
    this.pool.on("connection", (conn) => {
      // A pool emits errors of idle connections (server restart); queries report their own.
      conn.on("error", () => {});
      const core = conn as unknown as {
        _isMariaDB?: boolean;
        query(sql: string, done: (error: unknown) => void): void;
      };
      // Queued before any query of ours: a failure destroys the connection, so none runs writable.
      if (!core._isMariaDB) {
        core.query("SET SESSION TRANSACTION READ ONLY", (error) => error && conn.destroy());
      }
    });
  }

  /** Runs a SELECT with a server-side time limit. */
  async select(sql: string, params: readonly SqlParam[], options: SelectOptions = {}): Promise<Row[]> {
    if (this.closed) throw new SourceError(this.code, "unavailable", `database '${this.code}' is closed`);
    const conn = await this.connection();
    const core = (conn as unknown as { connection: { _isMariaDB?: boolean } }).connection;
    const limited = core._isMariaDB
      ? `SET STATEMENT max_statement_time=${this.queryTimeoutMs / 1000}, tx_read_only=1 FOR ${sql}`
      : sql.replace(/^SELECT /, `SELECT /*+ MAX_EXECUTION_TIME(${this.queryTimeoutMs}) */ `);
    try {
      const statement = { sql: limited, timeout: this.queryTimeoutMs + CLIENT_GRACE_MS };
      const [rows] = options.prepared
        ? await conn.execute(statement, [...params])
        : await conn.query(statement, [...params]);
      conn.release();
      return rows as Row[];
    } catch (error) {
      const code = (error as { code?: string }).code;
      const fatal = (error as { fatal?: boolean }).fatal || code === "PROTOCOL_SEQUENCE_TIMEOUT";
      if (fatal) conn.destroy();
      else conn.release();
      throw this.failure(error);
    }
  }

  /** Ends the pool. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.pool.end().catch(() => {});
  }

  private async connection(): Promise<mysql.PoolConnection> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () =>
          reject(
            new SourceError(
              this.code,
              "timeout",
              `no connection to database '${this.code}' within ${this.queryTimeoutMs} ms`,
            ),
          ),
        this.queryTimeoutMs,
      );
    });
    const pending = this.pool.getConnection();
    try {
      return await Promise.race([pending, timeout]);
    } catch (error) {
      // If the connection arrives after we gave up, hand it back.
      pending.then((conn) => conn.release(), () => {});
      throw error instanceof SourceError ? error : this.failure(error);
    } finally {
      clearTimeout(timer);
    }
  }

  private failure(error: unknown): SourceError {
    const e = error as { code?: string; errno?: number; message?: string };
    if (e.code === "PROTOCOL_SEQUENCE_TIMEOUT" || e.errno === 1969 || e.errno === 3024) {
      return new SourceError(
        this.code,
        "timeout",
        `query on database '${this.code}' exceeded ${this.queryTimeoutMs} ms`,
      );
    }
    if (
      e.errno !== undefined && e.errno >= 1000 && e.errno < 2000 && e.code !== "ER_ACCESS_DENIED_ERROR" &&
      e.code !== "ER_DBACCESS_DENIED_ERROR" && e.code !== "ER_BAD_DB_ERROR"
    ) {
      return new SourceError(
        this.code,
        "query",
        `database '${this.code}': ${e.code ?? "error"}: ${e.message ?? ""}`,
      );
    }
    return new SourceError(
      this.code,
      "unavailable",
      `database '${this.code}' is unavailable: ${e.code ?? e.message ?? String(error)}`,
    );
  }
}
