/**
 * The connection cap, derived from the process's open-file limit. Every WebSocket holds a file
 * descriptor, and running out of them kills `Deno.serve`'s listener for good; so the server
 * keeps its connections below the limit, leaving room for the database pools and the files it
 * already has open, and refuses further upgrades with HTTP 503 instead.
 */

import type { Config } from "./config.ts";
import type { Logger } from "./log.ts";

/** Descriptors kept free besides the pools' connections: accepts of refused requests, logs, DNS. */
export const FD_HEADROOM = 16;

/** What {@link connectionCap} decided, for the start-up log line. */
export interface ConnectionCap {
  /** Most WebSocket connections at once. */
  readonly cap: number;
  /** The soft open-file limit (`undefined` when it could not be read). */
  readonly openFileLimit: number | undefined;
  /** Descriptors open at start. */
  readonly openAtStart: number;
  /** Descriptors kept for database connections. */
  readonly database: number;
  /** Set when a configured `maxConnections` was lowered to fit the limit. */
  readonly lowered?: number;
}

/** Descriptors assumed open at start when `/proc/self/fd` cannot be read (Deno alone opens about 20). */
export const ASSUMED_OPEN_AT_START = 32;

/**
 * Reads the soft open-file limit: from `/proc/self/limits` (Linux; Deno allows it only with
 * `--allow-all`), else from `sh -c "ulimit -n"` (needs `--allow-run=sh`); `undefined` when
 * neither works or the limit is unlimited.
 */
export function readOpenFileLimit(): number | undefined {
  try {
    return parseOpenFileLimit(Deno.readTextFileSync("/proc/self/limits"));
  } catch {
    // not Linux, or not allowed: ask the shell, which inherits our limit
  }
  try {
    const output = new Deno.Command("sh", { args: ["-c", "ulimit -n"], stderr: "null" }).outputSync();
    const text = new TextDecoder().decode(output.stdout).trim();
    return /^[0-9]+$/.test(text) ? Number(text) : undefined;
  } catch {
    return undefined;
  }
}

/** The soft "Max open files" of a `/proc/<pid>/limits` text; `undefined` when unlimited or absent. */
export function parseOpenFileLimit(limits: string): number | undefined {
  const match = /^Max open files\s+(\S+)/m.exec(limits);
  if (!match || match[1] === "unlimited") return undefined;
  return Number(match[1]);
}

/** Descriptors this process has open (`/proc/self/fd`); {@link ASSUMED_OPEN_AT_START} when it cannot be read. */
export function countOpenFiles(): number {
  try {
    let n = 0;
    for (const _ of Deno.readDirSync("/proc/self/fd")) n++;
    return n;
  } catch {
    return ASSUMED_OPEN_AT_START;
  }
}

/**
 * Decides the connection cap: the configured `maxConnections` (0: no wish), never more than the
 * open-file limit minus what is open at start, the database connections and {@link FD_HEADROOM}.
 * Without a readable limit the configured value stands (10,000 when none).
 *
 * @example
 * ```ts
 * connectionCap(0, 1024, 20, 8).cap; // 980
 * ```
 */
export function connectionCap(
  configured: number,
  openFileLimit: number | undefined,
  openAtStart: number,
  database: number,
): ConnectionCap {
  const wanted = configured > 0 ? configured : 10_000;
  if (openFileLimit === undefined) return { cap: wanted, openFileLimit, openAtStart, database };
  const fits = Math.max(1, openFileLimit - openAtStart - database - FD_HEADROOM);
  if (configured > 0 && configured <= fits) return { cap: configured, openFileLimit, openAtStart, database };
  return {
    cap: fits,
    openFileLimit,
    openAtStart,
    database,
    ...(configured > fits ? { lowered: configured } : {}),
  };
}

/** Database connections a configuration may open at once (its pool sizes). */
export function databaseConnections(config: Config): number {
  return Object.values(config.databases).reduce(
    (n, db) => n + (db.driver === "mysql" ? db.connectionLimit : 1),
    0,
  );
}

/**
 * The connection cap of a running server: the open-file limit and the descriptors open at start
 * are read once; {@link ConnectionCapper.decide} applies them to a configuration (at start and on
 * every reload), logging when the limit is unknown or `maxConnections` had to be lowered.
 */
export class ConnectionCapper {
  private readonly openFileLimit = readOpenFileLimit();
  private readonly openAtStart = countOpenFiles();

  /** @param logger where the warnings go */
  constructor(private readonly logger: Logger) {
    if (this.openFileLimit === undefined) {
      logger.warn("cannot read the open-file limit (grant --allow-run=sh, or set maxConnections)");
    }
  }

  /** The cap for a configuration. */
  decide(config: Config): ConnectionCap {
    const decided = connectionCap(
      config.maxConnections,
      this.openFileLimit,
      this.openAtStart,
      databaseConnections(config),
    );
    if (decided.lowered !== undefined) {
      this.logger.warn("maxConnections lowered to fit the open-file limit", {
        configured: decided.lowered,
        cap: decided.cap,
        openFileLimit: decided.openFileLimit,
      });
    }
    return decided;
  }
}
