/**
 * The envelope every message a cluster node reads from Redis shares: a JSON object whose `v` is
 * the format's version. One reader, so that a shared state and a database report refuse a
 * malformed message with the same words. Pure.
 */

/**
 * Parses `text` as a JSON object of format version `version`.
 *
 * @param what names the message in errors ("shared state", "database report")
 * @param fail makes the error to throw, of the caller's class
 * @throws what `fail` makes, saying "<what> is not JSON", "<what> is not an object" or
 *   "<what> of version <v>; this node reads <version>"
 */
export function readVersioned(
  text: string,
  what: string,
  version: number,
  fail: (message: string) => Error,
): Record<string, unknown> {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch {
    throw fail(`${what} is not JSON`);
  }
  if (typeof raw !== "object" || raw === null || Array.isArray(raw)) throw fail(`${what} is not an object`);
  const message = raw as Record<string, unknown>;
  if (message.v !== version) {
    throw fail(`${what} of version ${JSON.stringify(message.v)}; this node reads ${version}`);
  }
  return message;
}
