/**
 * MariaDB/MySQL for tests, over real TCP. The server comes from servers.ts (`MYSQL_URL` when set,
 * else a server on 127.0.0.1:3306, else a throw-away `mariadbd`). Each test gets its own database
 * with the seed's two tables.
 */

import mysql from "mysql2/promise";
import type { MysqlSettings } from "../../lib/config/config.ts";
import { type ServerInfo, testServer } from "./servers.ts";

// The server part (finding, installing, starting) lives in servers.ts; re-exported for the tests.
export {
  canConnect,
  freePort,
  type ServerInfo,
  startThrowawayMariadb,
  testServer,
  type ThrowawayMariadb,
} from "./servers.ts";

/** The seed's two tables, as a MySQL test creates them. `rename` is a reserved word. */
export const SCHEMA_SQL = [
  `CREATE TABLE archive_device (
    id INT AUTO_INCREMENT PRIMARY KEY, unit_id INT NOT NULL, code VARCHAR(64), recode VARCHAR(64),
    name VARCHAR(128), \`rename\` VARCHAR(128), show_id INT, gateway_address VARCHAR(64),
    gateway_id INT, lot_type VARCHAR(32), status CHAR(1) NOT NULL DEFAULT 'a',
    KEY unit_status (unit_id, status))`,
  `CREATE TABLE device_data_real (
    id INT AUTO_INCREMENT PRIMARY KEY, equip_address VARCHAR(64) NOT NULL,
    ua DOUBLE, ub DOUBLE, ia DOUBLE, p DECIMAL(10,2), state VARCHAR(32),
    KEY equip (equip_address))`,
];

/** A point to insert with {@link TestDatabase.addPoint}. */
export interface PointRow {
  unit: number;
  code: string;
  address: string;
  name?: string;
  rename?: string;
  showId?: number;
  gatewayId?: number;
  status?: string;
}

/** A database of one test, dropped by `drop()`. */
export interface TestDatabase {
  /** Settings gatecast uses to reach it. */
  settings: MysqlSettings;
  /** The server it lives on. */
  server: ServerInfo;
  /** Runs SQL as the admin user in this database. */
  query(sql: string, params?: unknown[]): Promise<unknown>;
  /** Inserts `archive_device` rows. */
  addPoints(points: PointRow[]): Promise<void>;
  /** Inserts or replaces a `device_data_real` row. */
  setData(address: string, values: Record<string, number | string | null>): Promise<void>;
  /** `Com_select` of the whole server (SELECT statements run so far). */
  selectCount(): Promise<number>;
  /**
   * Creates a login of its own for gatecast (SELECT on this database only) and a counter of the
   * SELECTs the server ran for it: MariaDB's USER_STATISTICS (userstat), or MySQL's
   * performance_schema. Other clients of the same server do not disturb the count.
   */
  dedicatedUser(): Promise<{ settings: MysqlSettings; selects(): Promise<number> }>;
  /** Drops the database (and its dedicated user) and closes the admin pool. */
  drop(): Promise<void>;
}

/** Creates a fresh database with the seed's tables on the test server (or on `server`). */
export async function createTestDatabase(server?: ServerInfo): Promise<TestDatabase> {
  const info = server ?? await testServer();
  const name = `gc_test_${crypto.randomUUID().replaceAll("-", "").slice(0, 12)}`;
  const admin = await mysql.createConnection({ ...info, multipleStatements: false });
  await admin.query(`CREATE DATABASE \`${name}\``);
  await admin.query(`USE \`${name}\``);
  for (const sql of SCHEMA_SQL) await admin.query(sql);
  const database: TestDatabase = {
    server: info,
    settings: {
      driver: "mysql",
      host: info.host,
      port: info.port,
      user: info.user,
      password: info.password,
      database: name,
      connectionLimit: 4,
    },
    query: async (sql, params) => (await admin.query(sql, params))[0],
    async addPoints(points) {
      for (const p of points) {
        await admin.query(
          "INSERT INTO archive_device (unit_id, code, recode, name, `rename`, show_id, gateway_address, gateway_id, lot_type, status) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
          [
            p.unit,
            p.code,
            p.code.toUpperCase(),
            p.name ?? p.code,
            p.rename ?? `${p.address} ${p.code}`,
            p.showId ?? 1,
            p.address,
            p.gatewayId ?? 1,
            "modbus",
            p.status ?? "a",
          ],
        );
      }
    },
    async setData(address, values) {
      // One transaction: a poll between the two statements would see the address without a row.
      await admin.beginTransaction();
      await admin.query("DELETE FROM device_data_real WHERE equip_address = ?", [address]);
      const columns = Object.keys(values);
      await admin.query(
        `INSERT INTO device_data_real (equip_address${columns.map((c) => `, \`${c}\``).join("")}) VALUES (?${
          columns.map(() => ", ?").join("")
        })`,
        [address, ...Object.values(values)],
      );
      await admin.commit();
    },
    async selectCount() {
      const [rows] = await admin.query("SHOW GLOBAL STATUS LIKE 'Com_select'");
      return Number((rows as { Value: string }[])[0].Value);
    },
    async dedicatedUser() {
      const password = crypto.randomUUID();
      await admin.query(`CREATE USER IF NOT EXISTS '${name}'@'%' IDENTIFIED BY '${password}'`);
      await admin.query(`GRANT SELECT ON \`${name}\`.* TO '${name}'@'%'`);
      let selects: () => Promise<number>;
      try {
        await admin.query("SET GLOBAL userstat = 1");
        selects = async () => {
          const [rows] = await admin.query(
            "SELECT SELECT_COMMANDS AS n FROM information_schema.USER_STATISTICS WHERE USER = ?",
            [name],
          );
          return Number((rows as { n: number }[])[0]?.n ?? 0);
        };
      } catch {
        selects = async () => {
          const [rows] = await admin.query(
            "SELECT COUNT_STAR AS n FROM performance_schema.events_statements_summary_by_user_by_event_name WHERE USER = ? AND EVENT_NAME = 'statement/sql/select'",
            [name],
          );
          return Number((rows as { n: number }[])[0]?.n ?? 0);
        };
      }
      return { settings: { ...database.settings, user: name, password }, selects };
    },
    async drop() {
      await admin.query(`DROP USER IF EXISTS '${name}'@'%'`).catch(() => {});
      await admin.query(`DROP DATABASE IF EXISTS \`${name}\``).catch(() => {});
      await admin.end().catch(() => {});
    },
  };
  return database;
}
