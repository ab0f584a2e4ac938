/**
 * Topic names: `<db>/<handle>/<unit_id>`, e.g. `plant1/real/12`.
 *
 * Pure parsing and formatting, no I/O. Every message names the part at fault and what is
 * accepted, because these messages travel to clients inside `error` frames.
 */

/** A database code: letters, digits, `_` and `-`, 1 to 64 characters. */
export const DB_CODE_PATTERN = /^[A-Za-z0-9_-]{1,64}$/;

/** A handle name: lower-case letters, digits and `_`, 1 to 32 characters. */
export const HANDLE_PATTERN = /^[a-z][a-z0-9_]{0,31}$/;

/** The largest unit id (a signed 32-bit integer, as in MySQL's INT). */
export const MAX_UNIT_ID = 2147483647;

/** A parsed topic. */
export interface TopicName {
  /** The configured database code, e.g. `plant1`. */
  readonly db: string;
  /** The data handle, e.g. `real`. */
  readonly handle: string;
  /** The unit (plant, site) id, 1 to {@link MAX_UNIT_ID}. */
  readonly unitId: number;
  /** The canonical string form, `db/handle/unitId`. */
  readonly key: string;
}

/** Raised by {@link parseTopic} with a message that says what is wrong and what is accepted. */
export class TopicError extends Error {
  override name = "TopicError";
}

/**
 * Parses and validates a topic string.
 *
 * @example
 * ```ts
 * parseTopic("plant1/real/12"); // { db: "plant1", handle: "real", unitId: 12, key: "plant1/real/12" }
 * ```
 * @throws {TopicError} when the topic is not of the form `<db>/<handle>/<unit_id>`.
 */
export function parseTopic(topic: unknown): TopicName {
  if (typeof topic !== "string") {
    throw new TopicError(`topic must be a string like "plant1/real/12", got ${describe(topic)}`);
  }
  if (topic.length > 200) {
    throw new TopicError(`topic is ${topic.length} characters long; at most 200 are accepted`);
  }
  const parts = topic.split("/");
  if (parts.length !== 3) {
    throw new TopicError(
      `topic ${JSON.stringify(topic)} must have three parts <db>/<handle>/<unit_id>`,
    );
  }
  const [db, handle, unit] = parts;
  if (!DB_CODE_PATTERN.test(db)) {
    throw new TopicError(
      `topic ${JSON.stringify(topic)}: database code must match [A-Za-z0-9_-]{1,64}`,
    );
  }
  if (!HANDLE_PATTERN.test(handle)) {
    throw new TopicError(
      `topic ${JSON.stringify(topic)}: handle must match [a-z][a-z0-9_]{0,31}`,
    );
  }
  const unitId = parseUnitId(unit);
  if (unitId === undefined) {
    throw new TopicError(
      `topic ${JSON.stringify(topic)}: unit_id must be an integer from 1 to ${MAX_UNIT_ID}`,
    );
  }
  return { db, handle, unitId, key: topicKey(db, handle, unitId) };
}

/**
 * Parses a unit id given as a number or a string of decimal digits; `undefined` when it is not
 * an integer from 1 to {@link MAX_UNIT_ID}.
 */
export function parseUnitId(value: unknown): number | undefined {
  let n: number;
  if (typeof value === "number") n = value;
  else if (typeof value === "string" && /^[1-9][0-9]{0,9}$/.test(value)) n = Number(value);
  else return undefined;
  return Number.isInteger(n) && n >= 1 && n <= MAX_UNIT_ID ? n : undefined;
}

/** Formats the canonical topic key. */
export function topicKey(db: string, handle: string, unitId: number): string {
  return `${db}/${handle}/${unitId}`;
}

/** A short description of a JSON value for error messages, never longer than ~40 characters. */
export function describe(value: unknown): string {
  if (value === null) return "null";
  if (Array.isArray(value)) return "an array";
  if (typeof value === "object") return "an object";
  if (typeof value === "string") {
    const shown = value.length > 32 ? value.slice(0, 32) + "…" : value;
    return JSON.stringify(shown);
  }
  return String(value);
}
