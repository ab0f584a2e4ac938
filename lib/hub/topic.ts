/**
 * Topic names: `<db>/<handle>/<unit>` (`plant1/real/12`, `plant1/tanks/north`) or, for a
 * handle without units, `<db>/<handle>` (`plant1/alarms`).
 *
 * The database and handle parts have one grammar; the unit's grammar belongs to the handle
 * (`config/unit.ts`), so a topic is read in two steps: {@link splitTopic} checks the syntax,
 * {@link unitOfTopic} reads the unit once the handle is known. Pure, no I/O. Every message names
 * the part at fault and what is accepted, because these messages travel to clients inside
 * `error` frames.
 */

import { DB_CODE_PATTERN, describe, HANDLE_PATTERN } from "../config/names.ts";
import { MAX_UNIT_ID, parseUnit, STRING_UNIT_PATTERN, type Unit, type UnitType } from "../config/unit.ts";

/** A topic, parsed and checked against its handle's grammar. */
export interface TopicName {
  /** The configured database code, e.g. `plant1`. */
  readonly db: string;
  /** The handle, e.g. `real`. */
  readonly handle: string;
  /** The unit: an id, a name, or `null` for a handle without units. */
  readonly unit: Unit;
  /** The canonical string form. */
  readonly key: string;
}

/** A topic's parts, syntax checked; the unit is the text of the third part, if any. */
export interface TopicParts {
  /** Database code. */
  readonly db: string;
  /** Handle name. */
  readonly handle: string;
  /** The third part as written; `undefined` for a two-part topic. */
  readonly unit: string | undefined;
  /** The topic as written. */
  readonly text: string;
}

/** Raised for a topic that is not well formed; the message says what is wrong and what is accepted. */
export class TopicError extends Error {
  override name = "TopicError";
}

/**
 * Checks a topic's syntax: two or three parts, a database code, a handle name, and a unit
 * that some unit grammar accepts.
 *
 * @example
 * ```ts
 * splitTopic("plant1/real/12"); // { db: "plant1", handle: "real", unit: "12", text: "plant1/real/12" }
 * ```
 * @throws {TopicError} naming the part at fault.
 */
export function splitTopic(topic: unknown): TopicParts {
  if (typeof topic !== "string") {
    throw new TopicError(`topic must be a string like "plant1/real/12", got ${describe(topic)}`);
  }
  if (topic.length > 200) {
    throw new TopicError(`topic is ${topic.length} characters long; at most 200 are accepted`);
  }
  const parts = topic.split("/");
  if (parts.length !== 2 && parts.length !== 3) {
    throw new TopicError(
      `topic ${JSON.stringify(topic)} must have three parts <db>/<handle>/<unit_id> ` +
        "(two, <db>/<handle>, for a handle without units)",
    );
  }
  const [db, handle, unit] = parts;
  if (!DB_CODE_PATTERN.test(db)) {
    throw new TopicError(`topic ${JSON.stringify(topic)}: database code must match [A-Za-z0-9_-]{1,64}`);
  }
  if (!HANDLE_PATTERN.test(handle)) {
    throw new TopicError(`topic ${JSON.stringify(topic)}: handle must match [a-z][a-z0-9_]{0,31}`);
  }
  if (unit !== undefined && !STRING_UNIT_PATTERN.test(unit)) {
    throw new TopicError(
      `topic ${JSON.stringify(topic)}: unit must be an integer from 1 to ${MAX_UNIT_ID} ` +
        "or a name matching [A-Za-z0-9_.:-]{1,64}",
    );
  }
  return { db, handle, unit, text: topic };
}

/**
 * Reads a topic's unit with its handle's grammar.
 *
 * @example
 * ```ts
 * unitOfTopic(splitTopic("plant1/real/12"), "int"); // { db: "plant1", handle: "real", unit: 12, key: "plant1/real/12" }
 * ```
 * @throws {TopicError} when the unit does not follow the grammar (or is missing, or is there for a handle without units).
 */
export function unitOfTopic(parts: TopicParts, type: UnitType): TopicName {
  const quoted = JSON.stringify(parts.text);
  if (type === "none" && parts.unit !== undefined) {
    throw new TopicError(
      `topic ${quoted}: handle '${parts.handle}' has no units; its topic is "${parts.db}/${parts.handle}"`,
    );
  }
  if (type !== "none" && parts.unit === undefined) {
    throw new TopicError(`topic ${quoted} must have three parts <db>/<handle>/<unit>`);
  }
  const unit = parseUnit(type, parts.unit);
  if (unit === undefined) {
    throw new TopicError(
      type === "int"
        ? `topic ${quoted}: unit_id must be an integer from 1 to ${MAX_UNIT_ID}`
        : `topic ${quoted}: unit must match [A-Za-z0-9_.:-]{1,64}`,
    );
  }
  return topicName(parts.db, parts.handle, unit);
}

/** The topic of a unit. */
export function topicName(db: string, handle: string, unit: Unit): TopicName {
  return { db, handle, unit, key: topicKey(db, handle, unit) };
}

/** Formats the canonical topic key: `db/handle/unit`, or `db/handle` without a unit. */
export function topicKey(db: string, handle: string, unit: Unit): string {
  return unit === null ? `${db}/${handle}` : `${db}/${handle}/${unit}`;
}
