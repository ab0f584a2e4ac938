/**
 * `GET /healthz`: 200 when every configured database has had a good poll within the last
 * three intervals and no handle is failing, 503 otherwise, with a JSON body either way.
 */

import type { DatabaseHealth, HandleHealth } from "../hub/poller.ts";

/** What the health report is made of. */
export interface HealthInputs {
  /** Now, ms since the epoch. */
  readonly now: number;
  /** When the server started, ms since the epoch. */
  readonly startedAt: number;
  /** The poll interval. */
  readonly intervalMs: number;
  /** Open WebSocket connections. */
  readonly connections: number;
  /** Topics with subscribers. */
  readonly topics: number;
  /** Per configured database. */
  readonly databases: ReadonlyMap<string, DatabaseHealth>;
  /** The (database, handle) groups failing while their database answers; none by default. */
  readonly handles?: Iterable<HandleHealth>;
  /**
   * The binlog follower's status of each database that has `binlog` set (`following`,
   * `off: <reason>`, `retrying: <error>`); it never makes a database unhealthy: polling goes on.
   */
  readonly binlog?: ReadonlyMap<string, string>;
  /** Cluster mode: the node, its Redis link, its leases and peers. It never makes the node unhealthy. */
  readonly cluster?: ClusterReport;
}

/** The cluster part of the report (`lib/cluster/cluster.ts` fills it). */
export interface ClusterReport {
  /** This node's name. */
  readonly node: string;
  /** `up`, or `down` (this node polls its own topics). */
  readonly redis: "up" | "down";
  /** Groups (`db/handle`) this node holds the lease of. */
  readonly leases: string[];
  /** Other live nodes. */
  readonly peers: number;
}

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
  /** Per database: last good poll (ISO time or null), whether healthy, the last error, the binlog's status. */
  readonly databases: Record<
    string,
    { lastGoodPoll: string | null; healthy: boolean; error?: string; binlog?: string }
  >;
  /** Failing handles by topic group (`db/handle`), with their error; absent when none fails. */
  readonly handles?: Record<string, { error: string }>;
  /** Cluster mode only. */
  readonly cluster?: ClusterReport;
}

/**
 * Builds the health report. A database is healthy when its last good poll is at most three
 * poll intervals old; the server is, when every database is and no handle is failing.
 */
export function healthReport(inputs: HealthInputs): HealthReport {
  const { now, startedAt, intervalMs, connections, topics, databases } = inputs;
  const report: HealthReport["databases"] = {};
  let healthy = true;
  for (const [code, db] of databases) {
    const ok = db.lastGoodPoll > 0 && now - db.lastGoodPoll <= 3 * intervalMs;
    healthy &&= ok;
    report[code] = {
      lastGoodPoll: db.lastGoodPoll > 0 ? new Date(db.lastGoodPoll).toISOString() : null,
      healthy: ok,
      ...(db.error !== undefined ? { error: db.error } : {}),
      ...(inputs.binlog?.has(code) ? { binlog: inputs.binlog.get(code) } : {}),
    };
  }
  const failing: NonNullable<HealthReport["handles"]> = {};
  for (const handle of inputs.handles ?? []) {
    failing[`${handle.db}/${handle.handle}`] = { error: handle.error };
    healthy = false;
  }
  return {
    status: healthy ? "ok" : "degraded",
    uptimeSeconds: Math.round((now - startedAt) / 1000),
    connections,
    topics,
    databases: report,
    ...(Object.keys(failing).length > 0 ? { handles: failing } : {}),
    ...(inputs.cluster === undefined ? {} : { cluster: inputs.cluster }),
  };
}
