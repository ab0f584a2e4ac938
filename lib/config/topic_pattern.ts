/**
 * Topic patterns: which topics a token, an API key or the legacy allow list may read.
 * A pattern has the parts of a topic, each a literal or `*` (any value of that part):
 * `plant1/real/*`, `*\/real/12`, `*\/tanks/north`, `*\/*\/*`. A unit part `*` also covers the
 * topic of a handle without units (`plant1/alarms`); a two-part pattern (`plant1/alarms`,
 * `*\/*`) covers only such topics. Pure, no I/O.
 */

import { DB_CODE_PATTERN, describe, HANDLE_PATTERN } from "./names.ts";
import { STRING_UNIT_PATTERN, type Unit } from "./unit.ts";

/** What a pattern is matched against: a topic's parts (`hub/topic.ts` has the full name). */
export interface PatternSubject {
  /** Database code. */
  readonly db: string;
  /** Handle name. */
  readonly handle: string;
  /** The unit; `null` for a handle without units. */
  readonly unit: Unit;
}

/** A parsed pattern: `undefined` in a part means `*`. */
export interface TopicPattern {
  /** Database code, or `undefined` for any. */
  readonly db?: string;
  /** Handle, or `undefined` for any. */
  readonly handle?: string;
  /** The unit as written, `undefined` for any (`*`), `null` for a two-part pattern (no unit). */
  readonly unit?: string | null;
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
 * parseTopicPattern("plant1/real/*"); // { db: "plant1", handle: "real", unit: undefined, text: "plant1/real/*" }
 * ```
 * @throws {TopicPatternError} when it is not two or three parts, each `*` or a valid literal.
 */
export function parseTopicPattern(value: unknown): TopicPattern {
  if (typeof value !== "string") {
    throw new TopicPatternError(
      `a topic pattern must be a string like "plant1/real/*", got ${describe(value)}`,
    );
  }
  const parts = value.split("/");
  if ((parts.length !== 3 && parts.length !== 2) || value.length > 200) {
    throw new TopicPatternError(
      `topic pattern ${describe(value)} must have three parts <db>/<handle>/<unit_id>, each a value or * ` +
        "(two, <db>/<handle>, for handles without units)",
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
  if (unit !== undefined && unit !== "*" && !STRING_UNIT_PATTERN.test(unit)) {
    throw new TopicPatternError(
      `topic pattern ${
        describe(value)
      }: unit must be *, an integer from 1 or a name matching [A-Za-z0-9_.:-]{1,64}`,
    );
  }
  return {
    db: db === "*" ? undefined : db,
    handle: handle === "*" ? undefined : handle,
    unit: unit === undefined ? null : unit === "*" ? undefined : unit,
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
 * topicAllowed([parseTopicPattern("*\/real/12")], { db: "plant1", handle: "real", unit: 12 }); // true
 * ```
 */
export function topicAllowed(patterns: readonly TopicPattern[], topic: PatternSubject): boolean {
  return patterns.some((p) =>
    (p.db === undefined || p.db === topic.db) &&
    (p.handle === undefined || p.handle === topic.handle) &&
    unitMatches(p.unit, topic.unit)
  );
}

/** An integer unit matches its decimal text; `*` matches any unit or none. */
function unitMatches(pattern: string | null | undefined, unit: Unit): boolean {
  if (pattern === undefined) return true;
  if (pattern === null || unit === null) return pattern === null && unit === null;
  return pattern === String(unit);
}
