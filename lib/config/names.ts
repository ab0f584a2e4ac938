/**
 * The names the configuration, the topics and the access patterns share: database codes and
 * handle names, and how a bad value is quoted in a message. Pure, no I/O.
 */

/** A database code: letters, digits, `_` and `-`, 1 to 64 characters. */
export const DB_CODE_PATTERN = /^[A-Za-z0-9_-]{1,64}$/;

/** A handle name: lower-case letters, digits and `_`, 1 to 32 characters. */
export const HANDLE_PATTERN = /^[a-z][a-z0-9_]{0,31}$/;

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
