/**
 * The node's link to Redis: one client for commands and one (its duplicate) for pub/sub, by
 * node-redis (`npm:redis`, chosen by measurement: bench/README.md). Both reconnect by themselves
 * (node-redis's backoff, its subscriber subscribes again); commands are never queued while Redis
 * is away (`disableOfflineQueue`), so a lost Redis shows at once as failed commands and the node
 * falls back to polling on its own. The link is {@link RedisLink.up} when both clients are ready;
 * each change is logged once and reported to the cluster.
 */

import { createClient } from "redis";
import type { ClusterSettings } from "../config/config.ts";
import type { Logger } from "../ops/log.ts";

/** The command client's type. */
export type RedisCommands = ReturnType<typeof createClient>;

/** Longest wait between two reconnect attempts, ms. */
export const RECONNECT_MAX_MS = 1000;

/** Both Redis clients of a node and whether they are ready. */
export class RedisLink {
  /** Runs commands (leases, interest, states, publishes). */
  readonly commands: RedisCommands;
  private readonly subscriber: RedisCommands;
  /** `start` until the first connection or failure; then `up` or `down`, each change logged once. */
  private state: "start" | "up" | "down" = "start";
  private closed = false;

  /**
   * @param settings the cluster's Redis URL and password
   * @param logger where "redis connected", "redis lost" and "redis unreachable" are logged, once per change
   * @param onChange called with the new state when the link goes up or down
   */
  constructor(
    settings: Pick<ClusterSettings, "redis" | "password">,
    private readonly logger: Logger,
    private readonly onChange: (up: boolean) => void,
  ) {
    this.commands = createClient({
      url: settings.redis,
      // node-redis takes the URL's user only without a separate password: name it as well.
      ...(settings.password === undefined ? {} : {
        password: settings.password,
        ...(new URL(settings.redis).username
          ? { username: decodeURIComponent(new URL(settings.redis).username) }
          : {}),
      }),
      disableOfflineQueue: true,
      socket: {
        connectTimeout: 2000,
        reconnectStrategy: (retries: number) => Math.min(50 * 2 ** retries, RECONNECT_MAX_MS),
      },
    });
    this.subscriber = this.commands.duplicate();
    for (const client of [this.commands, this.subscriber]) {
      // Mandatory: a node-redis client without an error listener throws. The state change is what matters.
      client.on("error", (error: unknown) => this.check(error));
      client.on("ready", () => this.check());
      client.on("end", () => this.check());
      client.on("reconnecting", () => this.check());
    }
  }

  /** Starts connecting; returns at once (a Redis that is down is retried, the node serves meanwhile). */
  connect(): void {
    for (const client of [this.commands, this.subscriber]) {
      client.connect().catch((error: unknown) => this.check(error));
    }
  }

  /** Whether both clients are connected and ready. */
  get up(): boolean {
    return !this.closed && this.commands.isReady && this.subscriber.isReady;
  }

  /** Listens to a channel; resolves once Redis confirmed the subscription. */
  async subscribe(channel: string, listener: (message: string) => void): Promise<void> {
    await this.subscriber.subscribe(channel, listener);
  }

  /** Stops listening to a channel. */
  async unsubscribe(channel: string): Promise<void> {
    await this.subscriber.unsubscribe(channel);
  }

  /** Closes both clients (pending commands are answered first when Redis is up). */
  async close(): Promise<void> {
    this.closed = true;
    await Promise.allSettled([this.commands.close(), this.subscriber.close()]);
    for (const client of [this.commands, this.subscriber]) {
      if (client.isOpen) client.destroy();
    }
  }

  private check(error?: unknown): void {
    if (this.closed) return;
    const up = this.up;
    if (up) {
      if (this.state === "up") return;
      this.state = "up";
      this.logger.info("redis connected: sharing polls with the cluster");
      this.onChange(true);
      return;
    }
    // While starting, only a failure counts: the clients are not ready before they connect.
    if (this.state === "down" || (this.state === "start" && error === undefined)) return;
    this.logger.warn(
      this.state === "up"
        ? "redis lost: polling this node's own topics until it is back"
        : "redis unreachable: polling this node's own topics until it answers",
      { error: error instanceof Error ? error.message : String(error ?? "connection closed") },
    );
    this.state = "down";
    this.onChange(false);
  }
}
