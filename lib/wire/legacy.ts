/**
 * The seed server's subscription, kept for its old clients:
 * `{"unit_id": 12, "handle": "real", "db_code": "plant1", "config": "..."}`, as JSON or as a
 * Python dict with single quotes. `config` carried database credentials; it is never used.
 */

import { parsePythonLiteral } from "./python_literal.ts";
import { DB_CODE_PATTERN, describe, HANDLE_PATTERN } from "../config/names.ts";
import { MAX_UNIT_ID, parseIntUnit, STRING_UNIT_PATTERN } from "../config/unit.ts";

/** A legacy subscription, validated. */
export interface LegacySubscription {
  /** Database code (`db_code`). */
  readonly db: string;
  /** Handle (`handle`). */
  readonly handle: string;
  /**
   * The unit (`unit_id`) as sent: a number, a name, or `undefined` when absent (a handle without
   * units); the handle's grammar is applied once the handle is known.
   */
  readonly unit: number | string | undefined;
  /** Whether the client sent a `config` (credentials) that was ignored. */
  readonly sentConfig: boolean;
}

/** Raised for a legacy frame that cannot be served; the message becomes the close reason. */
export class LegacyFrameError extends Error {
  override name = "LegacyFrameError";
}

/** True when a parsed frame has the seed's shape (no `type`, a `db_code`). */
export function isLegacyShape(frame: unknown): frame is Record<string, unknown> {
  return typeof frame === "object" && frame !== null && !Array.isArray(frame) &&
    !("type" in frame) && "db_code" in frame;
}

/**
 * Reads a frame's text as JSON or, failing that, as the seed's subscription written as a Python
 * dict (its clients sent `str(dict)`). Returns `undefined` when it is neither: a Python literal
 * of any other shape is not accepted.
 */
export function parseJsonOrLegacyLiteral(text: string): { value: unknown } | undefined {
  try {
    return { value: JSON.parse(text) };
  } catch {
    if (!text.trimStart().startsWith("{")) return undefined;
    try {
      const value = parsePythonLiteral(text);
      return isLegacyShape(value) ? { value } : undefined;
    } catch {
      return undefined;
    }
  }
}

/**
 * Validates a legacy subscription object.
 *
 * @example
 * ```ts
 * parseLegacySubscription({ unit_id: 12, handle: "real", db_code: "plant1", config: "..." });
 * // { db: "plant1", handle: "real", unit: 12, sentConfig: true }
 * ```
 * @throws {LegacyFrameError} naming the field at fault.
 */
export function parseLegacySubscription(frame: Record<string, unknown>): LegacySubscription {
  const { db_code: db, handle, unit_id: unit } = frame;
  if (typeof db !== "string" || !DB_CODE_PATTERN.test(db)) {
    throw new LegacyFrameError(`db_code must match [A-Za-z0-9_-]{1,64}, got ${describe(db)}`);
  }
  if (typeof handle !== "string" || !HANDLE_PATTERN.test(handle)) {
    throw new LegacyFrameError(`handle must match [a-z][a-z0-9_]{0,31}, got ${describe(handle)}`);
  }
  if (unit === undefined || unit === null) {
    return { db, handle, unit: undefined, sentConfig: "config" in frame };
  }
  if (
    typeof unit === "number"
      ? parseIntUnit(unit) === undefined
      : typeof unit !== "string" || !STRING_UNIT_PATTERN.test(unit)
  ) {
    throw new LegacyFrameError(
      `unit_id must be an integer from 1 to ${MAX_UNIT_ID} or a name matching [A-Za-z0-9_.:-]{1,64}, got ${
        describe(unit)
      }`,
    );
  }
  return { db, handle, unit: unit as number | string, sentConfig: "config" in frame };
}
