/**
 * Wiring: config → sources → poller → registry/fan-out → sockets. The one place that knows
 * every part; `main.ts` adds flags and signals, tests start it in-process.
 */

import { retryCap } from "./backoff.ts";
import type { Config, DatabaseSettings } from "./config.ts";
import type { Connection } from "./connection.ts";
import { ConnectionCapper } from "./fd_limit.ts";
import type { Handle } from "./handle.ts";
import { healthReport } from "./health.ts";
import type { Logger } from "./log.ts";
import { MeteredSource } from "./metered_source.ts";
import { METRIC_FAMILIES, Metrics } from "./metrics.ts";
import { MysqlSource } from "./mysql_source.ts";
import { Poller } from "./poller.ts";
import { CloseCode } from "./protocol.ts";
import { realHandle } from "./real_handle.ts";
import { Registry } from "./registry.ts";
import { applyReload, type DatabaseChanges } from "./reload.ts";
import { createHandler } from "./server.ts";
import type { Source } from "./source.ts";
import { SqliteSource } from "./sqlite_source.ts";

/** The handles every server has. */
export const HANDLES: ReadonlyMap<string, Handle> = new Map([[realHandle.name, realHandle]]);

/** A running gatecast. */
export interface App {
  /** The address it listens on. */
  readonly hostname: string;
  /** The port it listens on (useful with port 0). */
  readonly port: number;
  /** Counters and gauges, as served at `/metrics`. */
  readonly metrics: Metrics;
  /** Topics and subscribers. */
  readonly registry: Registry;
  /** The poller (its health map backs `/healthz`). */
  readonly poller: Poller;
  /** Closes every client with 1001, stops polling, stops listening and closes the databases. */
  stop(): Promise<void>;
  /** Most open connections, from `maxConnections` and the open-file limit. */
  readonly maxConnections: number;
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
  const connections = new Set<Connection>();
  // The registry calls back into the poller, which is created next (the callback runs later).
  const registry = new Registry((group) => poller.pollNow(group));
  const poller = new Poller(
    registry,
    sources,
    HANDLES,
    config.pollIntervalMs,
    metrics,
    logger,
    retryCap(config),
  );
  // Connections read the configuration through `current`, so that a reload reaches them.
  let current = config;
  let accepting = true;
  const capper = new ConnectionCapper(logger);
  const cap = capper.decide(config);
  let maxConnections = cap.cap;

  metrics.gauge("gatecast_connections", "Open WebSocket connections.", () => connections.size);
  metrics.gauge("gatecast_topics", "Topics with at least one subscriber.", () => registry.topicCount);
  metrics.gauge("gatecast_subscriptions", "Subscriptions over all topics.", () => registry.subscriptionCount);

  const handler = createHandler({
    get config() {
      return current;
    },
    get maxConnections() {
      return maxConnections;
    },
    get accepting() {
      return accepting;
    },
    registry,
    handles: new Set(HANDLES.keys()),
    metrics,
    logger,
    connections,
    health() {
      const body = healthReport(
        Date.now(),
        startedAt,
        current.pollIntervalMs,
        connections.size,
        registry.topicCount,
        poller.health,
      );
      return { healthy: body.status === "ok", body };
    },
  });
  const listening = Promise.withResolvers<Deno.NetAddr>();
  const server = Deno.serve({
    hostname: config.host,
    port: config.port,
    onListen: (addr) => listening.resolve(addr),
    onError: (error) => {
      logger.error("request failed", { error: String(error) });
      return new Response("internal error\n", { status: 500 });
    },
  }, handler);
  const addr = await listening.promise;
  poller.start();
  poller.tick(); // probe databases at once, so /healthz is right from the start
  logger.info("listening", {
    host: addr.hostname,
    port: addr.port,
    databases: Object.keys(config.databases).join(","),
    maxConnections,
    openFileLimit: cap.openFileLimit ?? "unknown",
  });

  let stopping: Promise<void> | undefined;
  return {
    hostname: addr.hostname,
    port: addr.port,
    metrics,
    registry,
    poller,
    get maxConnections() {
      return maxConnections;
    },
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
      maxConnections = capper.decide(next).cap;
      return changes;
    },
    stop() {
      stopping ??= (async () => {
        accepting = false;
        for (const connection of connections) connection.close(CloseCode.GOING_AWAY, "server shutting down");
        await poller.stop();
        // Let the close frames go out before the listener ends what is left.
        const closeDeadline = Date.now() + SHUTDOWN_LISTENER_GRACE_MS;
        while (connections.size > 0 && Date.now() < closeDeadline) {
          await new Promise((resolve) => setTimeout(resolve, 20));
        }
        // A client that stopped reading never completes its close: do not wait for it forever.
        let timer: ReturnType<typeof setTimeout> | undefined;
        await Promise.race([
          server.shutdown(),
          new Promise((resolve) => timer = setTimeout(resolve, SHUTDOWN_LISTENER_GRACE_MS)),
        ]);
        clearTimeout(timer);
        await Promise.all([...sources.values()].map((source) => source.close()));
        logger.info("stopped");
      })();
      return stopping;
    },
  };
}
