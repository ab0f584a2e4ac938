/**
 * The data-source interface shared by MySQL and the embedded SQLite demo. Handles and the
 * poller only see this, never a driver.
 */

/** One result row, column name to driver value. */
export type Row = Record<string, unknown>;

/** A value bound to a `?` placeholder. */
export type SqlParam = string | number;

/** How a statement travels. */
export interface SelectOptions {
  /**
   * `true`: prepared on the server and its values sent apart, so that a `?` inside the SQL's
   * own string literals stays text (the operator's SQL of a configured handle). Otherwise the
   * driver escapes the values into the text (gatecast's own SQL, whose lists vary in length).
   */
  readonly prepared?: boolean;
}

/** A database that gatecast reads with parameterized SELECTs. */
export interface Source {
  /** The database code from the configuration, e.g. `plant1`. */
  readonly code: string;
  /**
   * Runs one SELECT with `?` placeholders in a read-only transaction, so that not even a stored
   * function it calls can write. Rejects with {@link SourceError} when the database is
   * unreachable, refuses the login, fails the query or exceeds the query timeout.
   */
  select(sql: string, params: readonly SqlParam[], options?: SelectOptions): Promise<Row[]>;
  /** Closes connections; later `select` calls reject. */
  close(): Promise<void>;
}

/** Why a source failed. */
export type SourceFailure = "unavailable" | "timeout" | "query";

/** A failed `select`, with a message safe to show to clients (no credentials). */
export class SourceError extends Error {
  override name = "SourceError";
  /**
   * @param code the database code
   * @param failure what kind of failure
   * @param message what happened, without credentials
   */
  constructor(readonly code: string, readonly failure: SourceFailure, message: string) {
    super(message);
  }
}
