/**
 * Configuration reload (SIGHUP): applies a new configuration to a running server without
 * dropping its connections. Added databases are polled from the next tick; removed ones end
 * their topics with a `DB_REMOVED` error (legacy clients: close 1008); changed ones get a new
 * pool and keep their subscribers; limits take effect at once. `host`, `port`, `reusePort`, `tls`,
 * `auth`, `trustedProxies`, `pointsRefreshPolls`, `handles`, `cluster` and a database's `binlog` need a restart
 * (a reload that changes them says so).
 */

import { retryCap } from "./backoff.ts";
import type { Config, DatabaseSettings } from "../config/config.ts";
import type { Logger } from "./log.ts";
import type { Poller } from "../hub/poller.ts";
import { ErrorCode } from "../wire/protocol.ts";
import type { Registry } from "../hub/registry.ts";
import type { Source } from "../sources/source.ts";

/** Which databases a reload adds, removes and changes. */
export interface DatabaseChanges {
  /** Codes only in the new configuration. */
  readonly added: string[];
  /** Codes only in the old configuration. */
  readonly removed: string[];
  /** Codes in both, with different settings. */
  readonly changed: string[];
}

/** Compares the databases of two configurations. Pure. */
export function databaseChanges(before: Config, after: Config): DatabaseChanges {
  const old = before.databases;
  const next = after.databases;
  return {
    added: Object.keys(next).filter((code) => !Object.hasOwn(old, code)),
    removed: Object.keys(old).filter((code) => !Object.hasOwn(next, code)),
    changed: Object.keys(next).filter((code) =>
      Object.hasOwn(old, code) && JSON.stringify(old[code]) !== JSON.stringify(next[code])
    ),
  };
}

/** Settings read once at start: a reload that changes them says so and keeps the old values. */
const START_ONLY = [
  "host",
  "port",
  "reusePort",
  "tls",
  "auth",
  "trustedProxies",
  "pointsRefreshPolls",
  "handles",
  "cluster",
] as const;

/** The start-only settings that differ between two configurations. Pure. */
export function restartNeeded(before: Config, after: Config): string[] {
  const settings: string[] = START_ONLY.filter((key) =>
    JSON.stringify(before[key]) !== JSON.stringify(after[key])
  );
  // A binlog follower is started once: a database's `binlog` that appears, changes or goes needs a restart
  // (a removed database's follower is stopped with it).
  for (const [code, settings_] of Object.entries(after.databases)) {
    const old = Object.hasOwn(before.databases, code) ? before.databases[code] : undefined;
    if (JSON.stringify(binlogOf(old)) !== JSON.stringify(binlogOf(settings_))) {
      settings.push(`databases.${code}.binlog`);
    }
  }
  return settings;
}

function binlogOf(settings: DatabaseSettings | undefined): unknown {
  return settings?.driver === "mysql" ? settings.binlog : undefined;
}

/** The running parts a reload changes. */
export interface ReloadTarget {
  /** Topics and subscribers. */
  readonly registry: Registry;
  /** The poller and its sources. */
  readonly poller: Poller;
  /** Logs (its level changes too). */
  readonly logger: Logger;
  /** Opens a source for a database. */
  openSource(code: string, settings: DatabaseSettings): Source;
}

/** The message a subscriber of a removed database gets. */
export function removedMessage(code: string, topic: string): string {
  return `database '${code}' was removed from the configuration; subscription to '${topic}' ended`;
}

/**
 * Applies `next` over `current`; returns what changed in the databases. The caller swaps the
 * configuration object the connections read, so limits apply from their next frame.
 */
export async function applyReload(
  target: ReloadTarget,
  current: Config,
  next: Config,
): Promise<DatabaseChanges> {
  const { registry, poller, logger } = target;
  const changes = databaseChanges(current, next);
  const startOnly = restartNeeded(current, next);
  if (startOnly.length > 0) {
    logger.warn("some changed settings need a restart; their old values stay in force", {
      settings: startOnly.join(","),
    });
  }
  const closing: Promise<void>[] = [];
  for (const code of changes.removed) {
    for (const subscription of registry.subscriptionsOf(code)) {
      subscription.peer.revoke(
        subscription,
        ErrorCode.DB_REMOVED,
        removedMessage(code, subscription.topic.name.key),
      );
    }
    const source = poller.removeSource(code);
    if (source) closing.push(source.close());
  }
  for (const code of changes.changed) {
    const old = poller.removeSource(code);
    if (old) closing.push(old.close());
    poller.addSource(code, target.openSource(code, next.databases[code]));
  }
  for (const code of changes.added) poller.addSource(code, target.openSource(code, next.databases[code]));
  if (current.pollIntervalMs !== next.pollIntervalMs || current.dbRetryMaxMs !== next.dbRetryMaxMs) {
    poller.retime(next.pollIntervalMs, retryCap(next));
  }
  logger.level = next.logLevel;
  await Promise.all(closing);
  logger.info("configuration reloaded", {
    added: changes.added.join(","),
    removed: changes.removed.join(","),
    changed: changes.changed.join(","),
  });
  return changes;
}
