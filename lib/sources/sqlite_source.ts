/**
 * A {@link Source} over an SQLite database through `node:sqlite`, used by the embedded demo.
 * Statements are prepared once per SQL text and run synchronously (the demo's data is small).
 */

import { DatabaseSync, type StatementSync } from "node:sqlite";
import { type Row, type Source, SourceError, type SqlParam } from "./source.ts";

/** Reads an SQLite database file (or `:memory:`). */
export class SqliteSource implements Source {
  private readonly statements = new Map<string, StatementSync>();

  /**
   * @param code the database code
   * @param db an open database (the demo shares it with its simulator)
   */
  constructor(readonly code: string, readonly db: DatabaseSync) {}

  /** Opens a database file. */
  static open(code: string, path: string): SqliteSource {
    return new SqliteSource(code, new DatabaseSync(path));
  }

  /** Runs a SELECT; SQLite accepts the same backquoted identifiers and `?` placeholders. */
  select(sql: string, params: readonly SqlParam[]): Promise<Row[]> {
    if (!this.db.isOpen) {
      return Promise.reject(new SourceError(this.code, "unavailable", `database '${this.code}' is closed`));
    }
    try {
      let statement = this.statements.get(sql);
      if (!statement) {
        statement = this.db.prepare(sql);
        this.statements.set(sql, statement);
      }
      return Promise.resolve(statement.all(...params) as Row[]);
    } catch (error) {
      return Promise.reject(
        new SourceError(this.code, "query", `database '${this.code}': ${(error as Error).message}`),
      );
    }
  }

  /** Closes the database. */
  close(): Promise<void> {
    if (this.db.isOpen) this.db.close();
    return Promise.resolve();
  }
}
