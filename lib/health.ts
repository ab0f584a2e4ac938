/**
 * `GET /healthz`: 200 when every configured database has had a good poll within the last
 * three intervals, 503 otherwise, with a JSON body either way.
 */

import type { DatabaseHealth } from "./poller.ts";

/** What `/healthz` reports. */
export interface HealthReport {
  /** `ok` or `degraded`. */
  readonly status: "ok" | "degraded";
  /** Seconds since start. */
  readonly uptimeSeconds: number;
  /** Open WebSocket connections. */
  readonly connections: number;
  /** Topics with subscribers. */
  readonly topics: number;
  /** Per database: last good poll (ISO time or null), whether healthy, the last error. */
  readonly databases: Record<string, { lastGoodPoll: string | null; healthy: boolean; error?: string }>;
}

/**
 * Builds the health report. A database is healthy when its last good poll is at most three
 * poll intervals old.
 */
export function healthReport(
  now: number,
  startedAt: number,
  intervalMs: number,
  connections: number,
  topics: number,
  databases: ReadonlyMap<string, DatabaseHealth>,
): HealthReport {
  const report: HealthReport["databases"] = {};
  let healthy = true;
  for (const [code, db] of databases) {
    const ok = db.lastGoodPoll > 0 && now - db.lastGoodPoll <= 3 * intervalMs;
    healthy &&= ok;
    report[code] = {
      lastGoodPoll: db.lastGoodPoll > 0 ? new Date(db.lastGoodPoll).toISOString() : null,
      healthy: ok,
      ...(db.error !== undefined ? { error: db.error } : {}),
    };
  }
  return {
    status: healthy ? "ok" : "degraded",
    uptimeSeconds: Math.round((now - startedAt) / 1000),
    connections,
    topics,
    databases: report,
  };
}
