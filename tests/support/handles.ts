/**
 * The handles as a server with the default configuration has them (`real` re-reading each
 * unit's metadata every `pointsRefreshPolls` polls, 10 by default), so that tests exercise what
 * runs in production rather than a variant made for them.
 */

import { createHandles } from "../../lib/app.ts";
import { type Config, parseConfig } from "../../lib/config/config.ts";
import type { Handle } from "../../lib/handles/handle.ts";

/** A configuration with every setting at its default (no databases, authentication off). */
export function defaultConfig(): Config {
  return parseConfig({ auth: { mode: "none" }, databases: {} }, () => undefined);
}

/** A fresh set of the default handles, each with its own caches. */
export function defaultHandles(): ReadonlyMap<string, Handle> {
  return createHandles(defaultConfig());
}

/** A fresh default `real` handle, with its own metadata cache. */
export function defaultRealHandle(): Handle {
  return defaultHandles().get("real")!;
}
