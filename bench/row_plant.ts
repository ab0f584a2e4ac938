/**
 * The benchmark's table for a handle of the configuration: sites (string units) of tanks, six
 * result columns a row, and a driver that updates a fixed share of the rows in one batch, as a
 * plant's data logger would between two polls.
 */

import mysql from "mysql2/promise";
import type { MysqlSettings } from "../lib/config/config.ts";
import type { ServerInfo } from "../tests/support/mysql.ts";

/** The handle's SQL as an operator would write it: six columns, rows in a stable order. */
export const TANKS_SQL = "SELECT site, tank_id, level_m, temp_c, state, updated_at FROM tank_level " +
  "WHERE site IN (:units) ORDER BY site, tank_id";

/** The result columns of {@link TANKS_SQL}. */
export const TANK_COLUMNS = 6;

/** Site `n`'s name (from 1): its unit in topics, `bench/tanks/s0001`. */
export function siteName(n: number): string {
  return `s${String(n).padStart(4, "0")}`;
}

/**
 * `count` distinct numbers of `1..total`, a different draw every `step`, the same draw for the
 * same `step` in every run (a partial Fisher-Yates shuffle over a small seeded generator).
 */
export function pickRows(total: number, count: number, step: number): number[] {
  if (count > total) throw new RangeError(`pickRows: ${count} rows asked of ${total}`);
  let state = (step * 2654435761 + 1) >>> 0 || 1;
  const next = () => { // xorshift32
    state ^= state << 13;
    state >>>= 0;
    state ^= state >>> 17;
    state ^= state << 5;
    return (state >>>= 0);
  };
  const ids = Array.from({ length: total }, (_, i) => i + 1);
  for (let i = 0; i < count; i++) {
    const j = i + next() % (total - i);
    [ids[i], ids[j]] = [ids[j], ids[i]];
  }
  return ids.slice(0, count);
}

/** A bench database with the `tank_level` table; {@link RowPlant.drop} removes it. */
export interface RowPlant {
  /** Settings gatecast uses to reach it. */
  readonly settings: MysqlSettings;
  /** Rows in the table. */
  readonly rows: number;
  /**
   * Updates `count` rows picked at random (a new draw each call): `level_m` and `updated_at`
   * change, the other columns stay. One UPDATE statement.
   */
  change(count: number): Promise<void>;
  /** The server's counters of statements run so far, by anyone. */
  statementCounts(): Promise<{ select: number; execute: number; prepare: number }>;
  /** Drops the database and closes the admin connection. */
  drop(): Promise<void>;
}

/** Creates a database with `sites` sites of `tanks` tanks each. */
export async function createRowPlant(server: ServerInfo, sites: number, tanks: number): Promise<RowPlant> {
  const name = `gc_bench_rows_${crypto.randomUUID().replaceAll("-", "").slice(0, 12)}`;
  const admin = await mysql.createConnection({ ...server });
  await admin.query(`CREATE DATABASE \`${name}\``);
  await admin.query(`USE \`${name}\``);
  await admin.query(`CREATE TABLE tank_level (
    id INT AUTO_INCREMENT PRIMARY KEY, site VARCHAR(16) NOT NULL, tank_id INT NOT NULL,
    level_m DOUBLE NOT NULL, temp_c DOUBLE NOT NULL, state VARCHAR(16) NOT NULL,
    updated_at DATETIME NOT NULL, UNIQUE KEY site_tank (site, tank_id))`);
  const values: unknown[][] = [];
  for (let site = 1; site <= sites; site++) {
    for (let tank = 1; tank <= tanks; tank++) {
      values.push([siteName(site), tank, 2 + tank / 4, 15 + site % 10, "filling", "2026-12-01 00:00:00"]);
    }
  }
  for (let i = 0; i < values.length; i += 5000) {
    await admin.query(
      "INSERT INTO tank_level (site, tank_id, level_m, temp_c, state, updated_at) VALUES ?",
      [values.slice(i, i + 5000)],
    );
  }
  const rows = values.length;
  let step = 0;
  const status = async (variable: string) => {
    const [result] = await admin.query("SHOW GLOBAL STATUS LIKE ?", [variable]);
    return Number((result as { Value: string }[])[0].Value);
  };
  return {
    settings: {
      driver: "mysql",
      host: server.host,
      port: server.port,
      user: server.user,
      password: server.password,
      database: name,
      connectionLimit: 4,
    },
    rows,
    async change(count) {
      if (count <= 0) return;
      await admin.query(
        "UPDATE tank_level SET level_m = level_m + 0.25, updated_at = updated_at + INTERVAL 1 SECOND " +
          "WHERE id IN (?)",
        [pickRows(rows, count, step++)],
      );
    },
    async statementCounts() {
      return {
        select: await status("Com_select"),
        execute: await status("Com_stmt_execute"),
        prepare: await status("Com_stmt_prepare"),
      };
    },
    async drop() {
      await admin.query(`DROP DATABASE IF EXISTS \`${name}\``).catch(() => {});
      await admin.end().catch(() => {});
    },
  };
}
