/**
 * The benchmark's plant: a MariaDB database with the seed's two tables, filled with units of
 * devices (ten measurement columns `c0`..`c9` each, so ten points per device), and a driver
 * that changes a chosen fraction of the values, as a plant's data logger would.
 */

import mysql from "mysql2/promise";
import type { MysqlSettings } from "../lib/config/config.ts";
import type { ServerInfo } from "../tests/support/mysql.ts";

/** Measurement columns per device; each is one point. */
export const CODES_PER_DEVICE = 10;

const CODES = Array.from({ length: CODES_PER_DEVICE }, (_, i) => `c${i}`);

/**
 * A value's start; values then grow by 0.25 a step. Quarters are exact in binary, so the
 * database, gatecast and the ceiling all print them with the same digits.
 */
export function startValue(device: number, code: number): number {
  return 100 + code + device / 4;
}

/** Point `code` of a unit's device as gatecast sends it in a snapshot (at its start value). */
export function benchPoint(unit: number, device: number, code: number) {
  const address = deviceAddress(unit, device);
  return {
    code: `c${code}`,
    recode: `C${code}`,
    name: `c${code} of ${address}`,
    rename: `${address} c${code}`,
    show_id: (device - 1) * CODES_PER_DEVICE + code + 1,
    address,
    gateway_id: device,
    address_type: "modbus",
    value: startValue(device, code),
  };
}

/** A device's address, as stored in `gateway_address` and `equip_address`. */
export function deviceAddress(unit: number, device: number): string {
  return `U${unit}D${device}`;
}

/** A bench database; {@link BenchPlant.drop} removes it. */
export interface BenchPlant {
  /** Settings gatecast uses to reach it. */
  readonly settings: MysqlSettings;
  /** Adds units `1..units`, each with `devices` devices of ten points. */
  fill(units: number, devices: number): Promise<void>;
  /**
   * Changes `fraction` (0 to 1) of the values: every column of that share of the device rows,
   * a different share each step, so that successive steps spread over the whole plant.
   */
  change(fraction: number): Promise<void>;
  /** Changes `fraction` of the values every `everyMs` until the returned function is called. */
  drive(fraction: number, everyMs: number): () => Promise<void>;
  /** The server's `Com_select` (SELECT statements run so far, by anyone). */
  selectCount(): Promise<number>;
  /** Drops the database and closes the admin connection. */
  drop(): Promise<void>;
}

/** Creates an empty bench database on a server. */
export async function createBenchPlant(server: ServerInfo): Promise<BenchPlant> {
  const name = `gc_bench_${crypto.randomUUID().replaceAll("-", "").slice(0, 12)}`;
  const admin = await mysql.createConnection({ ...server });
  await admin.query(`CREATE DATABASE \`${name}\``);
  await admin.query(`USE \`${name}\``);
  await admin.query(`CREATE TABLE archive_device (
    id INT AUTO_INCREMENT PRIMARY KEY, unit_id INT NOT NULL, code VARCHAR(64), recode VARCHAR(64),
    name VARCHAR(128), \`rename\` VARCHAR(128), show_id INT, gateway_address VARCHAR(64),
    gateway_id INT, lot_type VARCHAR(32), status CHAR(1) NOT NULL DEFAULT 'a',
    KEY unit_status (unit_id, status))`);
  await admin.query(`CREATE TABLE device_data_real (
    id INT AUTO_INCREMENT PRIMARY KEY, equip_address VARCHAR(64) NOT NULL,
    ${CODES.map((c) => `${c} DOUBLE`).join(", ")}, KEY equip (equip_address))`);
  let step = 0;
  const plant: BenchPlant = {
    settings: {
      driver: "mysql",
      host: server.host,
      port: server.port,
      user: server.user,
      password: server.password,
      database: name,
      connectionLimit: 4,
    },
    async fill(units, devices) {
      const points: unknown[][] = [];
      const data: unknown[][] = [];
      for (let unit = 1; unit <= units; unit++) {
        for (let device = 1; device <= devices; device++) {
          const address = deviceAddress(unit, device);
          data.push([address, ...CODES.map((_, i) => startValue(device, i))]);
          for (let i = 0; i < CODES_PER_DEVICE; i++) {
            const p = benchPoint(unit, device, i);
            points.push([
              unit,
              p.code,
              p.recode,
              p.name,
              p.rename,
              p.show_id,
              p.address,
              p.gateway_id,
              p.address_type,
              "a",
            ]);
          }
        }
      }
      for (let i = 0; i < points.length; i += 5000) {
        await admin.query(
          "INSERT INTO archive_device (unit_id, code, recode, name, `rename`, show_id, gateway_address, gateway_id, lot_type, status) VALUES ?",
          [points.slice(i, i + 5000)],
        );
      }
      for (let i = 0; i < data.length; i += 5000) {
        await admin.query(`INSERT INTO device_data_real (equip_address, ${CODES.join(", ")}) VALUES ?`, [
          data.slice(i, i + 5000),
        ]);
      }
    },
    async change(fraction) {
      if (fraction <= 0) return;
      const set = CODES.map((c) => `${c} = ${c} + 0.25`).join(", ");
      if (fraction >= 1) {
        await admin.query(`UPDATE device_data_real SET ${set}`);
        return;
      }
      // Row ids are 1..rows: take every (1/fraction)-th row, shifted by one each step.
      const every = Math.round(1 / fraction);
      await admin.query(`UPDATE device_data_real SET ${set} WHERE id % ? = ?`, [every, step++ % every]);
    },
    drive(fraction, everyMs) {
      let running = true;
      const loop = (async () => {
        while (running) {
          const started = Date.now();
          await plant.change(fraction);
          await new Promise((r) => setTimeout(r, Math.max(0, everyMs - (Date.now() - started))));
        }
      })();
      return async () => {
        running = false;
        await loop;
      };
    },
    async selectCount() {
      const [result] = await admin.query("SHOW GLOBAL STATUS LIKE 'Com_select'");
      return Number((result as { Value: string }[])[0].Value);
    },
    async drop() {
      await admin.query(`DROP DATABASE IF EXISTS \`${name}\``).catch(() => {});
      await admin.end().catch(() => {});
    },
  };
  return plant;
}
