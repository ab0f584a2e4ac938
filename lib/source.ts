/**
 * The data-source interface shared by MySQL and the embedded SQLite demo. Handles and the
 * poller only see this, never a driver.
 */

/** One result row, column name to driver value. */
export type Row = Record<string, unknown>;

/** A value bound to a `?` placeholder. */
export type SqlParam = string | number;

/** A database that gatecast reads with parameterized SELECTs. */
export interface Source {
  /** The database code from the configuration, e.g. `plant1`. */
  readonly code: string;
  /**
   * Runs one read-only SELECT with `?` placeholders. Rejects with {@link SourceError} when the
   * database is unreachable, refuses the login, fails the query or exceeds the query timeout.
   */
  select(sql: string, params: readonly SqlParam[]): Promise<Row[]>;
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
