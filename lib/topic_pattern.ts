/**
 * Topic patterns: which topics a token, an API key or the legacy allow list may read.
 * A pattern has the three parts of a topic, each a literal or `*` (any value of that part):
 * `plant1/real/*`, `*\/real/12`, `*\/*\/*`. Pure, no I/O.
 */

import { DB_CODE_PATTERN, describe, HANDLE_PATTERN, parseUnitId, type TopicName } from "./topic.ts";

/** A parsed pattern: `undefined` in a part means `*`. */
export interface TopicPattern {
  /** Database code, or `undefined` for any. */
  readonly db?: string;
  /** Handle, or `undefined` for any. */
  readonly handle?: string;
  /** Unit id, or `undefined` for any. */
  readonly unitId?: number;
  /** The pattern as written. */
  readonly text: string;
}

/** Raised by {@link parseTopicPattern}; the message says which part is wrong. */
export class TopicPatternError extends Error {
  override name = "TopicPatternError";
}

/**
 * Parses one pattern.
 *
 * @example
 * ```ts
 * parseTopicPattern("plant1/real/*"); // { db: "plant1", handle: "real", unitId: undefined, text: "plant1/real/*" }
 * ```
 * @throws {TopicPatternError} when it is not three parts, each `*` or a valid literal.
 */
export function parseTopicPattern(value: unknown): TopicPattern {
  if (typeof value !== "string") {
    throw new TopicPatternError(
      `a topic pattern must be a string like "plant1/real/*", got ${describe(value)}`,
    );
  }
  const parts = value.split("/");
  if (parts.length !== 3 || value.length > 200) {
    throw new TopicPatternError(
      `topic pattern ${describe(value)} must have three parts <db>/<handle>/<unit_id>, each a value or *`,
    );
  }
  const [db, handle, unit] = parts;
  if (db !== "*" && !DB_CODE_PATTERN.test(db)) {
    throw new TopicPatternError(
      `topic pattern ${describe(value)}: database code must be * or match [A-Za-z0-9_-]{1,64}`,
    );
  }
  if (handle !== "*" && !HANDLE_PATTERN.test(handle)) {
    throw new TopicPatternError(
      `topic pattern ${describe(value)}: handle must be * or match [a-z][a-z0-9_]{0,31}`,
    );
  }
  const unitId = unit === "*" ? undefined : parseUnitId(unit);
  if (unit !== "*" && unitId === undefined) {
    throw new TopicPatternError(`topic pattern ${describe(value)}: unit_id must be * or an integer from 1`);
  }
  return {
    db: db === "*" ? undefined : db,
    handle: handle === "*" ? undefined : handle,
    unitId,
    text: value,
  };
}

/** Parses a list of patterns. @throws {TopicPatternError} naming the index at fault. */
export function parseTopicPatterns(value: unknown): TopicPattern[] {
  if (!Array.isArray(value)) {
    throw new TopicPatternError(`expected an array of topic patterns, got ${describe(value)}`);
  }
  return value.map((item, i) => {
    try {
      return parseTopicPattern(item);
    } catch (error) {
      if (error instanceof TopicPatternError) throw new TopicPatternError(`[${i}]: ${error.message}`);
      throw error;
    }
  });
}

/**
 * True when any pattern covers the topic.
 *
 * @example
 * ```ts
 * topicAllowed([parseTopicPattern("*\/real/12")], parseTopic("plant1/real/12")); // true
 * ```
 */
export function topicAllowed(patterns: readonly TopicPattern[], topic: TopicName): boolean {
  return patterns.some((p) =>
    (p.db === undefined || p.db === topic.db) &&
    (p.handle === undefined || p.handle === topic.handle) &&
    (p.unitId === undefined || p.unitId === topic.unitId)
  );
}
