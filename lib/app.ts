/**
 * Wiring: config → sources → poller → registry/fan-out → sockets. The one place that knows
 * every part; `main.ts` adds flags and signals, tests start it in-process.
 */

import { Authenticator } from "./net/auth.ts";
import { BinlogFollower } from "./sources/binlog.ts";
import { Cluster } from "./cluster/cluster.ts";
import { retryCap } from "./ops/backoff.ts";
import type { Config, DatabaseSettings } from "./config/config.ts";
import type { Connection } from "./net/connection.ts";
import type { SsePeer } from "./net/sse_peer.ts";
import type { WampSession } from "./net/wamp_session.ts";
import { DescriptorWatch, type DescriptorWatchOptions } from "./ops/descriptors.ts";
import type { Handle } from "./handles/handle.ts";
import { ProxySet } from "./net/handshake.ts";
import { healthReport } from "./ops/health.ts";
import { Listener } from "./net/listener.ts";
import { AddressCounter, connectionCap, readOpenFileLimit } from "./net/limits.ts";
import type { Logger } from "./ops/log.ts";
import { MeteredSource } from "./sources/metered_source.ts";
import { METRIC_FAMILIES, Metrics } from "./ops/metrics.ts";
import { MysqlSource } from "./sources/mysql_source.ts";
import { type DatabaseHealth, Poller } from "./hub/poller.ts";
import { CloseCode } from "./wire/protocol.ts";
import { createRealHandle } from "./handles/real_handle.ts";
import { createSqlHandle } from "./handles/sql_handle.ts";
import { Registry } from "./hub/registry.ts";
import { RefusalLog } from "./net/refusal_log.ts";
import { applyReload, type DatabaseChanges } from "./ops/reload.ts";
import { createRoutes } from "./net/server.ts";
import type { Source } from "./sources/source.ts";
import { SqliteSource } from "./sources/sqlite_source.ts";

/** What the handles report besides rows: duplicate keys, counted and logged once per handle. */
export interface HandleReports {
  /** Where duplicate keys are counted. */
  readonly metrics?: Metrics;
  /** Where the first duplicate key of each handle is logged. */
  readonly logger?: Logger;
}

/**
 * The handles of a configuration: `real` (built in) and every `handles.<name>`, each with its
 * own caches.
 */
export function createHandles(config: Config, reports: HandleReports = {}): ReadonlyMap<string, Handle> {
  const logged = new Set<string>();
  const events = {
    duplicateKeys(handle: string, key: string, count: number) {
      reports.metrics?.inc("gatecast_duplicate_keys_total", { handle }, count);
      if (logged.has(handle)) return;
      logged.add(handle);
      reports.logger?.warn("rows with a repeated key were dropped; the first row wins", { handle, key });
    },
  };
  const real = createRealHandle({ pointsRefreshPolls: config.pointsRefreshPolls });
  return new Map<string, Handle>([
    [real.name, real],
    ...Object.values(config.handles).map((settings) =>
      [settings.name, createSqlHandle(settings, events)] as const
    ),
  ]);
}

/** `GET /catalog`: each database's handles, for dashboards to list (names only, no data). */
export function catalog(config: Config, handles: ReadonlyMap<string, Handle>): Record<string, unknown> {
  const databases: Record<string, unknown> = {};
  for (const db of Object.keys(config.databases)) {
    const offered: Record<string, unknown> = {};
    for (const handle of handles.values()) {
      if (handle.databases && !handle.databases.has(db)) continue;
      offered[handle.name] = {
        unitType: handle.unitType,
        frames: handle.frames,
        ...(handle.name in config.handles ? { key: config.handles[handle.name].key } : {}),
      };
    }
    databases[db] = { handles: offered };
  }
  return { databases };
}

/** A running gatecast. */
export interface App {
  /** The address it listens on. */
  readonly hostname: string;
  /** The port it listens on (useful with port 0). */
  readonly port: number;
  /** Whether it serves `https://` and `wss://`. */
  readonly tls: boolean;
  /** The connection cap in force (`maxConnections`, kept below the open-file limit). */
  readonly connectionCap: number;
  /** Counters and gauges, as served at `/metrics`. */
  readonly metrics: Metrics;
  /** Topics and subscribers. */
  readonly registry: Registry;
  /** The poller (its health map backs `/healthz`). */
  readonly poller: Poller;
  /** This node's part of the cluster (`cluster` set), else `undefined`. */
  readonly cluster: Cluster | undefined;
  /** Closes every client with 1001, stops polling, stops listening and closes the databases. */
  stop(): Promise<void>;
  /** Applies a new configuration without dropping connections (SIGHUP; see `lib/reload.ts`). */
  reload(next: Config): Promise<DatabaseChanges>;
}

/** Longest wait for the listener to finish open requests on stop, before the pools are ended anyway. */
export const SHUTDOWN_LISTENER_GRACE_MS = 2000;

/** Options for {@link startApp}. */
export interface AppOptions {
  /** Where logs go. */
  readonly logger: Logger;
  /** Sources to use instead of opening the configured ones (the demo's shared SQLite). */
  readonly sources?: ReadonlyMap<string, Source>;
  /** Interval of the refused-upgrades summary line (default 10 s; `refusal_log.ts`). */
  readonly refusalSummaryMs?: number;
  /** Sampling interval and warning threshold of the descriptor watch (defaults in `descriptors.ts`). */
  readonly descriptorWatch?: Pick<DescriptorWatchOptions, "intervalMs" | "warnAt" | "warnEveryMs">;
}

/** Opens the configured databases. Pools connect lazily, so a database that is down does not stop the start. */
export function openSources(config: Config): Map<string, Source> {
  const sources = new Map<string, Source>();
  for (const [code, settings] of Object.entries(config.databases)) {
    sources.set(code, openSource(code, settings, config.queryTimeoutMs));
  }
  return sources;
}

/** Opens one configured database. */
export function openSource(code: string, settings: DatabaseSettings, queryTimeoutMs: number): Source {
  return settings.driver === "mysql"
    ? new MysqlSource(code, settings, queryTimeoutMs)
    : SqliteSource.open(code, settings.path);
}

/** The tables `real` reads, in the database's own schema. */
const REAL_TABLES = ["archive_device", "device_data_real"];

/**
 * Which handles a binlog change of a table wakes on one database: `schema.table` (lower case)
 * to handle names. A handle's `tables` without a schema are in the database's; a handle that
 * names no tables is never woken, only polled.
 */
export function wakeTargets(config: Config, db: string): Map<string, string[]> {
  const settings = config.databases[db];
  const targets = new Map<string, string[]>();
  if (settings?.driver !== "mysql") return targets;
  const handles: [string, readonly string[] | undefined][] = [
    ["real", REAL_TABLES],
    ...Object.values(config.handles)
      .filter((handle) => handle.databases === undefined || handle.databases.includes(db))
      .map((handle) => [handle.name, handle.tables] as [string, readonly string[] | undefined]),
  ];
  for (const [handle, tables] of handles) {
    for (const table of tables ?? []) {
      const qualified = (table.includes(".") ? table : `${settings.database}.${table}`).toLowerCase();
      const woken = targets.get(qualified) ?? [];
      if (!woken.includes(handle)) woken.push(handle);
      targets.set(qualified, woken);
    }
  }
  return targets;
}

/**
 * A binlog follower for each MySQL/MariaDB database with `binlog` set: a row event on a table
 * wakes (polls now, coalesced) every subscribed group of the handles that read it.
 */
function startBinlogFollowers(
  config: Config,
  parts: { registry: Registry; poller: Poller; metrics: Metrics; logger: Logger },
): Map<string, BinlogFollower> {
  const followers = new Map<string, BinlogFollower>();
  for (const [db, settings] of Object.entries(config.databases)) {
    if (settings.driver !== "mysql" || settings.binlog === undefined) continue;
    const targets = wakeTargets(config, db);
    parts.metrics.inc("gatecast_binlog_events_total", { db }, 0);
    const follower = new BinlogFollower({
      db,
      settings,
      serverId: settings.binlog.serverId,
      tables: [...targets.keys()],
      onChange(table, again) {
        if (!again) parts.metrics.inc("gatecast_binlog_events_total", { db });
        for (const handle of targets.get(table.toLowerCase()) ?? []) {
          const group = parts.registry.group(`${db}/${handle}`);
          if (group) parts.poller.pollNow(group);
        }
      },
      logger: parts.logger,
      retryIntervalMs: config.pollIntervalMs,
      retryMaxMs: retryCap(config),
    });
    follower.start();
    followers.set(db, follower);
  }
  return followers;
}

/** Wraps every source so that its queries are counted and timed for `/metrics`. */
function meter(sources: ReadonlyMap<string, Source>, metrics: Metrics): Map<string, Source> {
  return new Map([...sources].map(([code, source]) => [code, new MeteredSource(source, metrics)]));
}

/**
 * Starts the server: listens, starts polling, and returns once it is listening.
 *
 * @example
 * ```ts
 * const app = await startApp(config, { logger: new Logger("info") });
 * console.log(`ws://${app.hostname}:${app.port}/ws`);
 * await app.stop();
 * ```
 */
export async function startApp(config: Config, options: AppOptions): Promise<App> {
  const { logger } = options;
  const startedAt = Date.now();
  const metrics = new Metrics(METRIC_FAMILIES);
  const sources = meter(options.sources ?? openSources(config), metrics);
  // WebSocket connections and event streams: both count against the connection cap.
  const connections = new Set<Connection | SsePeer | WampSession>();
  // The registry calls back into the cluster and the poller, created next (the callbacks run later).
  const registry = new Registry(
    (group, topic) => cluster ? cluster.topicAdded(group, topic) : poller.pollNow(group),
    (topic) => cluster?.topicRemoved(topic),
  );
  const handles = createHandles(config, { metrics, logger });
  // Connections read the configuration through `current`, so that a reload reaches them.
  let current = config;
  const cluster = config.cluster && new Cluster({
    settings: config.cluster,
    registry,
    metrics,
    logger,
    pollIntervalMs: config.pollIntervalMs,
    knows: (db) => db in current.databases,
    databases: () => Object.keys(current.databases),
    pollNow: (group) => poller.pollNow(group),
    databaseHealth: (db): DatabaseHealth | undefined => poller.health.get(db),
    adoptHealth: (db, report): void => poller.adoptHealth(db, report),
  });
  const poller = new Poller(
    registry,
    sources,
    handles,
    config.pollIntervalMs,
    metrics,
    logger,
    retryCap(config),
    cluster,
  );
  // Started with the poller, once nothing can fail any more; `/healthz` reads it before.
  let followers = new Map<string, BinlogFollower>();
  let accepting = true;

  metrics.gauge("gatecast_connections", () => connections.size);
  metrics.gauge("gatecast_topics", () => registry.topicCount);
  metrics.gauge("gatecast_subscriptions", () => registry.subscriptionCount);

  const authenticator = config.auth.mode === "token" ? await Authenticator.create(config.auth) : undefined;
  const openFiles = readOpenFileLimit();
  let cap = connectionCap(config.maxConnections, openFiles);
  if (openFiles === undefined) {
    logger.warn("open-file limit unknown: set GATECAST_OPEN_FILE_LIMIT to `ulimit -Hn` (docs/security.md)", {
      maxConnections: cap,
    });
  }
  const tls = config.tls ? await readTls(config.tls) : undefined;
  const refusals = new RefusalLog({ logger, intervalMs: options.refusalSummaryMs });
  const routes = createRoutes({
    get config() {
      return current;
    },
    authenticator,
    proxies: new ProxySet(config.trustedProxies),
    addresses: new AddressCounter(),
    get connectionCap() {
      return cap;
    },
    get accepting() {
      return accepting;
    },
    refusals,
    registry,
    poller,
    handles,
    catalog: () => catalog(current, handles),
    metrics,
    logger,
    connections,
    health() {
      const body = healthReport({
        now: Date.now(),
        startedAt,
        intervalMs: current.pollIntervalMs,
        connections: connections.size,
        topics: registry.topicCount,
        databases: poller.health,
        binlog: new Map([...followers].map(([db, follower]) => [db, follower.status])),
        handles: poller.failingHandles.values(),
        cluster: cluster?.health(),
      });
      return { healthy: body.status === "ok", body };
    },
  });
  const { listener, addr } = await Listener.start(
    {
      hostname: config.host,
      reusePort: config.reusePort,
      port: config.port,
      ...tls,
      failureFields: () => ({
        connections: connections.size,
        connectionCap: cap,
        openFileLimit: openFiles ?? "unknown",
      }),
    },
    routes.handler,
    logger,
  );
  metrics.gauge("gatecast_connection_cap", () => cap);
  metrics.gauge(
    "gatecast_listener_restarts",
    () => listener.restarts,
  );
  if (openFiles !== undefined) metrics.gauge("gatecast_open_file_limit", () => openFiles);
  const watch = await DescriptorWatch.start({
    ...options.descriptorWatch,
    port: addr.port,
    logger,
    known: () => ({ webSockets: connections.size, requests: routes.inFlight }),
    connectionCap: () => cap,
    openFileLimit: openFiles,
  });
  if (watch) {
    metrics.gauge("gatecast_open_descriptors", () => watch.latest.open);
    metrics.gauge("gatecast_unaccounted_connections", () => watch.latest.unaccounted);
  }
  cluster?.start();
  poller.start();
  followers = startBinlogFollowers(config, { registry, poller, metrics, logger });
  poller.tick(); // probe databases at once, so /healthz is right from the start
  logger.info("listening", {
    host: addr.hostname,
    port: addr.port,
    databases: Object.keys(config.databases).join(","),
    tls: tls !== undefined,
    auth: config.auth.mode,
    ...(cluster ? { cluster: cluster.node } : {}),
    maxConnections: cap,
    openFileLimit: openFiles ?? "unknown",
  });
  if (config.auth.mode === "none" && !isLoopback(addr.hostname)) {
    logger.warn(
      'auth is off ("auth": {"mode": "none"}) and the server listens beyond loopback: anyone who can reach it reads every topic',
      {
        host: addr.hostname,
      },
    );
  }

  let stopping: Promise<void> | undefined;
  return {
    hostname: addr.hostname,
    port: addr.port,
    tls: tls !== undefined,
    get connectionCap() {
      return cap;
    },
    metrics,
    registry,
    poller,
    cluster,
    async reload(next) {
      const changes = await applyReload(
        {
          registry,
          poller,
          logger,
          openSource: (code, settings) =>
            new MeteredSource(openSource(code, settings, next.queryTimeoutMs), metrics),
        },
        current,
        next,
      );
      current = next;
      cap = connectionCap(next.maxConnections, openFiles);
      for (const code of changes.removed) {
        await followers.get(code)?.stop();
        followers.delete(code);
      }
      return changes;
    },
    stop() {
      stopping ??= (async () => {
        accepting = false;
        for (const connection of connections) connection.close(CloseCode.GOING_AWAY, "server shutting down");
        await Promise.all([...followers.values()].map((follower) => follower.stop()));
        await poller.stop();
        // After the last poll: the leases are given up, other nodes take the groups over at once.
        await cluster?.stop();
        // Let the close frames go out before the listener ends what is left.
        const closeDeadline = Date.now() + SHUTDOWN_LISTENER_GRACE_MS;
        while (connections.size > 0 && Date.now() < closeDeadline) {
          await new Promise((resolve) => setTimeout(resolve, 20));
        }
        // A client that stopped reading never completes its close: do not wait for it forever.
        let timer: ReturnType<typeof setTimeout> | undefined;
        await Promise.race([
          listener.stop(),
          new Promise((resolve) => timer = setTimeout(resolve, SHUTDOWN_LISTENER_GRACE_MS)),
        ]);
        clearTimeout(timer);
        refusals.flush();
        await watch?.stop();
        await Promise.all([...sources.values()].map((source) => source.close()));
        logger.info("stopped");
      })();
      return stopping;
    },
  };
}

/** Reads the certificate chain and key for `Deno.serve`. @throws {Error} naming the file. */
async function readTls(
  settings: { certFile: string; keyFile: string },
): Promise<{ cert: string; key: string }> {
  const read = async (what: string, path: string) => {
    try {
      return await Deno.readTextFile(path);
    } catch (error) {
      throw new Error(`cannot read the TLS ${what} ${path}: ${(error as Error).message}`);
    }
  };
  return { cert: await read("certificate", settings.certFile), key: await read("key", settings.keyFile) };
}

/** True for addresses only this machine can reach. */
export function isLoopback(hostname: string): boolean {
  return hostname === "localhost" || hostname === "::1" || /^127\./.test(hostname);
}
