/**
 * Topic resolution, as every way into the server names topics (a `subscribe` frame, a seed
 * subscription, `POST /notify`): the database must be configured, the handle offered on it, and
 * the unit of that handle's grammar. One function for all of them, so that a topic one accepts
 * the others accept too. Pure, no I/O; failures are {@link ProtocolError}s with the codes clients
 * already know (`BAD_TOPIC`, `UNKNOWN_DB`, `UNKNOWN_HANDLE`).
 */

import type { Config } from "../config/config.ts";
import type { Handle } from "../handles/handle.ts";
import { splitTopic, TopicError, type TopicName, unitOfTopic } from "../hub/topic.ts";
import { ErrorCode, type FrameId, ProtocolError } from "../wire/protocol.ts";

/** What resolution reads: the configured databases and the handles that exist. */
export interface TopicDirectory {
  /** The configuration in force (its `databases`). */
  readonly config: Pick<Config, "databases">;
  /** Handles by name. */
  readonly handles: ReadonlyMap<string, Handle>;
}

/**
 * The handle of a configured database's topic.
 *
 * @example
 * ```ts
 * resolveHandle(directory, "plant1", "tanks"); // the `tanks` handle, when plant1 is configured and offers it
 * ```
 * @throws {ProtocolError} `UNKNOWN_DB`, or `UNKNOWN_HANDLE` listing the database's handles.
 */
export function resolveHandle(directory: TopicDirectory, db: string, name: string, id?: FrameId): Handle {
  if (!Object.hasOwn(directory.config.databases, db)) {
    throw new ProtocolError(ErrorCode.UNKNOWN_DB, `no database '${db}' is configured`, id);
  }
  const handle = directory.handles.get(name);
  const offered = [...directory.handles.values()].filter((h) => !h.databases || h.databases.has(db));
  if (!handle || !offered.includes(handle)) {
    throw new ProtocolError(
      ErrorCode.UNKNOWN_HANDLE,
      `no handle '${name}' on database '${db}'; its handles: ${offered.map((h) => h.name).join(", ")}`,
      id,
    );
  }
  return handle;
}

/**
 * Parses a topic and checks it names a configured database, a handle offered there, and a unit
 * of that handle's grammar.
 *
 * @example
 * ```ts
 * const [name, handle] = resolveTopic(directory, "plant1/tanks/north");
 * name.key; // "plant1/tanks/north"
 * ```
 * @throws {ProtocolError} `BAD_TOPIC`, `UNKNOWN_DB` or `UNKNOWN_HANDLE`.
 */
export function resolveTopic(directory: TopicDirectory, topic: unknown, id?: FrameId): [TopicName, Handle] {
  try {
    const parts = splitTopic(topic);
    const handle = resolveHandle(directory, parts.db, parts.handle, id);
    return [unitOfTopic(parts, handle.unitType), handle];
  } catch (error) {
    if (error instanceof TopicError) throw new ProtocolError(ErrorCode.BAD_TOPIC, error.message, id);
    throw error;
  }
}
